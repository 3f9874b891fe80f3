"""A backtest's or a shadow report's JSON as a short text report."""

from __future__ import annotations

from typing import Any

from pipeline.events.times import format_ms

QUALITY = ("detected", "detection_rate", "mean_time_to_detect_ms", "problems", "false_alarms",
           "false_alarms_per_day", "ac_at_1", "ac_at_3", "grouping_f1")


def counts_line(part: dict[str, Any]) -> str:
    """``current N, candidate M: +a added, -r removed, c changed, s same``."""
    return (f"current {part['current']}, candidate {part['candidate']}: "
            f"+{part['added']} added, -{part['removed']} removed, {part['changed']} changed, "
            f"{part['same']} same")


def group_lines(rows: list[dict[str, Any]], names: tuple[str, ...], limit: int) -> list[str]:
    """A line per group with differences (up to ``limit``), its samples under it."""
    lines = []
    shown = [r for r in rows if r["added"] or r["removed"] or r["changed"]]
    for row in shown[:limit]:
        where = " / ".join(str(row[n]) for n in names)
        lines.append(f"  {where}: +{row['added']} -{row['removed']} ~{row['changed']} "
                     f"={row['same']}")
        for kind, examples in row["samples"].items():
            for example in examples:
                when = example.get("time", example.get("opened_at"))
                if when is None and "candidate" in example:
                    when = example["candidate"]["opened_at"]
                lines.append(f"      {kind:8} {format_ms(int(when)) if when else ''} "
                             f"{_brief(example)}")
    if len(shown) > limit:
        lines.append(f"  ... {len(shown) - limit} more (see --json)")
    return lines


def _brief(example: dict[str, Any]) -> str:
    if "current" in example and "candidate" in example:
        a, b = example["current"], example["candidate"]
        return (f"{a['id']} -> {b['id']}: root cause {a['root_cause']} -> {b['root_cause']}, "
                f"{a['category']}/{a['severity']} -> {b['category']}/{b['severity']}")
    parts = [str(example.get("id", ""))]
    for key in ("state", "root_cause", "severity", "observed"):
        if key in example:
            parts.append(f"{key} {example[key]}")
    return ", ".join(parts)


def format_report(report: dict[str, Any], limit: int = 20) -> str:
    """The report as text: what ran, throughput, differences, quality side by side."""
    r = report["replay"]
    lines = [f"candidate: {report['candidate']}",
             f"range: {format_ms(report['from_ms'])} .. {format_ms(report['to_ms'])}"
             + (f" (warm-up {report['warmup_ms'] // 60_000} min)" if report["warmup_ms"]
                else "")
             + (f", services {', '.join(report['services'])}" if report["services"] else ""),
             f"replayed {r['records']} records in {r['seconds']} s "
             f"({r['records_per_s']:.0f} records/s), {r['late_records']} late, "
             f"{r['engine_errors']} engine errors", "",
             "detections: " + counts_line(report["detections"])]
    lines += group_lines(report["detections"]["by_detector"], ("detector", "service"), limit)
    lines += ["", "problems: " + counts_line(report["problems"])]
    lines += group_lines(report["problems"]["by_service"], ("service",), limit)
    if "quality" in report:
        current, candidate = report["quality"]["current"], report["quality"]["candidate"]
        lines += ["", f"{'quality':24} {'current':>12} {'candidate':>12}"]
        for key in QUALITY:
            lines.append(f"{key:24} {_num(current.get(key)):>12} {_num(candidate.get(key)):>12}")
    return "\n".join(lines)


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
