"""Commands of an operator: query the store, list and inspect problems, ack, silences,
feedback."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from typing import Any

from pipeline.cli.tables import terminal_width, text_table
from pipeline.errors import TocsinError
from pipeline.events.durations import format_duration
from pipeline.events.times import format_ms
from pipeline.settings import Settings
from pipeline.store import QueryResult


def _print_result(result: QueryResult, fmt: str) -> None:
    def plain(value: object) -> object:
        if isinstance(value, list) and value and isinstance(value[0], tuple | list) \
                and all(len(v) == 2 for v in value):
            return dict(value)
        return value

    if fmt == "json":
        for row in result.rows:
            print(json.dumps({c: plain(v) for c, v in zip(result.columns, row, strict=True)},
                             default=str))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows([[plain(v) for v in row] for row in result.rows])
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*result.columns, show_lines=False)
        for row in result.rows:
            table.add_row(*[str(plain(v)) for v in row])
        Console().print(table)
        print(f"{len(result.rows)} row{'s' if len(result.rows) != 1 else ''}")


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    """Run a read-only SQL statement and print its result."""
    from pipeline.api.query import run_query

    _print_result(run_query(settings, args.sql), args.format)
    return 0


NARROW_PROBLEM_COLUMNS = ("id", "status", "severity", "opened", "title")


def problem_lines(result: QueryResult, wide: bool, width: int) -> list[str]:
    """``tocsin problems`` as text: in ``width`` columns the id, status, severity, when
    it opened and the title (cut to fit); ``wide``: every column, nothing cut."""
    if not result.rows:
        return ["no problems"]
    if wide:
        return text_table(result.columns, result.rows)
    at = {c: i for i, c in enumerate(result.columns)}
    rows = [[row[at["id"]], row[at["status"]], row[at["severity"]],
             str(row[at["opened"]])[5:16], row[at["title"]]] for row in result.rows]
    return text_table(NARROW_PROBLEM_COLUMNS, rows, width=width, stretch="title")


def cmd_problems(args: argparse.Namespace, settings: Settings) -> int:
    """Open and recent problems: a table that fits the terminal (``--wide``: every
    column), JSON lines or CSV."""
    from pipeline.api.operate import list_problems

    result = list_problems(settings, not args.open, args.limit)
    if args.format != "table":
        _print_result(result, args.format)
        return 0
    print("\n".join(problem_lines(result, args.wide, terminal_width())))
    return 0


def cmd_problem(args: argparse.Namespace, settings: Settings) -> int:
    """One problem in full: evidence, root causes, diagnostic plan, runbook, members."""
    from pipeline.api.operate import problem_detail

    print(json.dumps(problem_detail(settings, args.id), indent=2, default=str))
    return 0


def cmd_ack(args: argparse.Namespace, settings: Settings) -> int:
    """Acknowledge a problem (an event on the control topic)."""
    from pipeline.api.operate import acknowledge

    acknowledge(settings, args.id, args.by, args.comment)
    print(f"acknowledgement of {args.id} sent (the correlator applies it in order with "
          "detections)")
    return 0


def cmd_feedback(args: argparse.Namespace, settings: Settings) -> int:
    """An operator's verdict on a problem (an event on the control topic)."""
    from pipeline.api.operate import give_feedback

    give_feedback(settings, args.id, args.verdict, args.user, args.root_cause or "",
                  args.comment)
    cause = f", root cause {args.root_cause}" if args.root_cause else ""
    print(f"feedback on {args.id}: {args.verdict}{cause} by {args.user} (stored by the "
          "worker in the feedback table)")
    return 0


def cmd_silence(args: argparse.Namespace, settings: Settings) -> int:
    """Create, list or expire silences and maintenance windows."""
    from pipeline.api.operate import create_silence, expire_silence, list_silences

    if args.action == "create":
        if not args.match:
            raise TocsinError("a silence needs at least one --match (e.g. service=orders)")
        silence = create_silence(settings, args.match, args.duration, args.by, args.comment,
                                 args.starts or "", args.every or "")
        print(f"created silence {silence.id}")
    elif args.action == "expire":
        if not args.id:
            raise TocsinError("tocsin silence expire needs the silence id")
        expire_silence(settings, args.id, args.by, force=args.force)
        print(f"expired silence {args.id}")
    else:
        silences = list_silences(settings)
        if args.format == "json":
            for s in silences:
                print(json.dumps(s, default=str))
        else:
            print("\n".join(silence_lines(silences, int(time.time() * 1000),
                                          terminal_width())))
    return 0


def _span(start_ms: int, end_ms: int | None) -> str:
    """``MM-DD HH:MM to HH:MM`` (UTC; the end's date when it is another day)."""
    start = format_ms(start_ms)[5:16].replace("T", " ")
    if end_ms is None:
        return f"{start} on"
    end = format_ms(end_ms)[5:16].replace("T", " ")
    return f"{start} to {end[6:] if end[:5] == start[:5] else end}"


def silence_lines(silences: list[dict[str, Any]], now_ms: int, width: int) -> list[str]:
    """The worker's silences as a table: id, state at ``now_ms``, when (UTC, or the
    recurrence), matchers, who and why (the comment cut to fit ``width``)."""
    from pipeline.correlate import Silence

    if not silences:
        return ["no silences"]
    rows = []
    for wire in sorted(silences, key=lambda s: (s.get("starts_at") or 0, s.get("id", ""))):
        silence = Silence.from_wire({k: v for k, v in wire.items() if k != "scope"})
        if silence.recurrence is not None:
            when = (f"{silence.recurrence.text} for "
                    f"{format_duration(silence.recurrence.duration_ms)}")
        else:
            when = _span(silence.starts_at, silence.end_ms)
        rows.append([silence.id, silence.state(now_ms), when,
                     ", ".join(m.to_wire() for m in silence.matchers),
                     silence.created_by or "-", silence.comment])
    return text_table(("id", "state", "when (UTC)", "matchers", "by", "comment"), rows,
                      width=width, stretch="comment")
