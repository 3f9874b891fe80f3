"""``tocsin backtest``: a candidate replayed over stored telemetry, compared with what the
current detectors stored."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from pipeline.errors import StoreUnavailable, TocsinError
from pipeline.settings import Settings


def with_store(settings: Settings, store: str | None) -> Settings:
    """``settings`` with ``--store`` (a data directory, or a URL) as the store."""
    if not store:
        return settings
    if store.startswith(("http://", "https://", "chdb://")):
        changed = dataclasses.replace(settings.store, clickhouse_url=store)
    else:
        changed = dataclasses.replace(settings.store, path=store, clickhouse_url="")
    return dataclasses.replace(settings, store=changed)


def duration_ms(name: str, text: str) -> int:
    """A duration option (``5m``, ``1h30m``; a bare number is milliseconds)."""
    from pipeline.events.durations import DurationError, parse_duration_ms

    text = text.strip()
    try:
        return parse_duration_ms(int(text) if text.isdigit() else text, ints_as_ms=True)
    except DurationError as exc:
        raise TocsinError(f"{name}: {exc}") from None


def time_range(args: argparse.Namespace) -> tuple[int, int]:
    """``--from`` and ``--to`` (RFC 3339 or epoch ms; ``--to`` defaults to now)."""
    from pipeline.evaluate.score import parse_time

    if not args.from_:
        raise TocsinError("--from is required (RFC 3339 or epoch ms)")
    lo = parse_time(args.from_)
    hi = parse_time(args.to) if args.to else int(time.time() * 1000)
    if hi <= lo:
        raise TocsinError(f"--to ({args.to}) must be after --from ({args.from_})")
    return lo, hi


def _labels(args: argparse.Namespace, settings: Settings, read, lo: int, hi: int):
    if args.labels:
        from pipeline.simulate import load_labels

        return load_labels(args.labels)
    if args.cases:
        from pipeline.evaluate.cases import load_case_labels

        return load_case_labels(args.cases)
    if args.feedback:
        from pipeline.evaluate.feedback import feedback_labels, load_judged
        from pipeline.store import QueryResult

        def query(sql: str) -> QueryResult:
            return QueryResult.from_arrow(read(sql))

        problems, feedback = load_judged(query, settings.store.database, lo, hi)
        return feedback_labels(problems, feedback, lo, hi)
    return None


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    """Replay the range through the candidate and print (and write) the comparison."""
    from pipeline.backtest.backtest import Range, backtest
    from pipeline.backtest.candidates import parse_candidate
    from pipeline.backtest.report import format_report
    from pipeline.events.times import format_ms
    from pipeline.store import ReadLimits, open_store

    candidate = parse_candidate(args.rules or (), args.model or ())
    if args.registry:
        settings = dataclasses.replace(settings, detect=dataclasses.replace(
            settings.detect, model_registry=args.registry))
    settings = with_store(settings, args.store)
    lo, hi = time_range(args)
    services = tuple(s.strip() for s in (args.services or "").split(",") if s.strip())
    span = Range(lo, hi, duration_ms("--warmup", args.warmup), services,
                 duration_ms("--chunk", args.chunk))
    if span.chunk_ms <= 0:
        raise TocsinError("--chunk must be more than 0")
    store = open_store(settings.store, ReadLimits.from_settings(settings.query))

    shown = {"at": 0.0}

    def progress(p) -> None:
        if args.quiet or time.monotonic() - shown["at"] < 0.5:
            return
        shown["at"] = time.monotonic()
        done = (p.event_ms - (lo - span.warmup_ms)) / max(1, hi - lo + span.warmup_ms)
        print(f"\r{min(max(done, 0.0), 1.0):6.1%}  at {format_ms(p.event_ms)}  "
              f"{p.records} records  {p.records_per_s:,.0f} records/s", end="",
              file=sys.stderr, flush=True)

    try:
        report = backtest(settings, store.read_arrow, candidate, span,
                          _labels(args, settings, store.read_arrow, lo, hi),
                          on_progress=progress)
    except StoreUnavailable as exc:
        raise TocsinError(f"{exc}; a backtest reads the data directory itself: stop the "
                          "worker, or give --store a copy of it or a ClickHouse URL") from None
    finally:
        store.close()
    if not args.quiet:
        print(file=sys.stderr)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwrote {args.json}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``backtest`` subcommand."""
    p = sub.add_parser(
        "backtest", help="replay stored telemetry through a candidate rule set or model",
        description="Reads stored metrics, logs and spans of --from..--to (after a warm-up "
        "before --from) from the store in bounded chunks, in event-time order, through the "
        "stream's detection and correlation steps with the candidate in place of the "
        "current rules (--rules) or model version (--model); writes nothing. Reports the "
        "candidate's detections and problems against those stored for the current "
        "detectors (added, removed, changed; per detector and service, with samples) and, "
        "with labels, the quality figures of both. With the embedded store, stop the "
        "worker first (one process per data directory) or point --store at a server.")
    p.add_argument("--rules", nargs="+", metavar="FILE", help="candidate rule files")
    p.add_argument("--model", action="append", metavar="NAME=VERSION",
                   help="candidate model version from the registry (repeatable)")
    p.add_argument("--registry", help="model registry (default: detect.model_registry)")
    p.add_argument("--from", dest="from_", required=True, help="RFC 3339 or epoch ms")
    p.add_argument("--to", help="RFC 3339 or epoch ms (default: now)")
    p.add_argument("--services", help="comma-separated services (default: all)")
    p.add_argument("--warmup", default="30m", help="replayed before --from, not compared "
                   "(default 30m)")
    p.add_argument("--chunk", default="5m", help="event time read per query (default 5m)")
    p.add_argument("--store", help="data directory or URL (default: the store settings)")
    labels = p.add_mutually_exclusive_group()
    labels.add_argument("--labels", help="simulator labels file")
    labels.add_argument("--cases", help="case labels (a JSON list, as nezha-ob/labels.json)")
    labels.add_argument("--feedback", action="store_true",
                        help="operators' feedback of the range as labels")
    p.add_argument("--json", help="write the full report here")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_backtest)


def cmd_shadow(args: argparse.Namespace, settings: Settings) -> int:
    """``tocsin shadow report``: the shadow candidate's detections against the current."""
    from pipeline.api.query import run_query
    from pipeline.backtest.shadow import format_shadow, shadow_report

    lo, hi = time_range(args)
    engine = args.engine or ("rules" if settings.detect.shadow_rule_paths and not
                             settings.detect.shadow_model_versions else
                             "models" if settings.detect.shadow_model_versions and not
                             settings.detect.shadow_rule_paths else "all")
    services = tuple(s.strip() for s in (args.services or "").split(",") if s.strip())
    report = shadow_report(lambda sql: run_query(settings, sql), settings.store.database,
                           lo, hi, engine, services)
    print(format_shadow(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwrote {args.json}")
    return 0


def add_shadow_parser(sub: argparse._SubParsersAction) -> None:
    """The ``shadow`` subcommand."""
    p = sub.add_parser(
        "shadow", help="compare a shadow candidate's detections with the current ones",
        description="A candidate set in detect.shadow_rules (rule files) or "
        "detect.shadow_models (NAME=VERSION) runs in the worker beside the current "
        "detectors; its detections are stored with shadow = true and never correlated or "
        "alerted. report: its detections against the current detectors' over --from..--to "
        "(added, removed, changed per detector and service, with samples). Promote a "
        "model with `tocsin models set-current`, rules by moving the files to detect.rules.")
    p.add_argument("action", choices=("report",))
    p.add_argument("--from", dest="from_", required=True, help="RFC 3339 or epoch ms")
    p.add_argument("--to", help="RFC 3339 or epoch ms (default: now)")
    p.add_argument("--engine", choices=("rules", "models", "all"),
                   help="which current detectors to compare (default: the shadowed engine)")
    p.add_argument("--services", help="comma-separated services (default: all)")
    p.add_argument("--json", help="write the full report here")
    p.set_defaults(func=cmd_shadow)
