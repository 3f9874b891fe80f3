"""Commands of the simulator: generate labelled telemetry, evaluate stored results against it."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from pipeline.errors import TocsinError
from pipeline.settings import Settings
from pipeline.store import QueryResult


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Generate labelled telemetry to Kafka or to an NDJSON file."""
    import time

    from pipeline.events.times import format_ms, parse_rfc3339_ms
    from pipeline.simulate import (
        load_system,
        parse_duration_ms,
        parse_schedule,
        save_labels,
        simulate,
        start_ending_at,
        write_call_graph,
        write_ndjson,
    )

    fmt = getattr(args, "format", "json")
    if args.out and fmt == "otlp-proto":
        print("error: --format otlp-proto goes to Kafka; write a file with --format json or "
              "otlp-json")
        return 2
    interval_ms = parse_duration_ms(args.interval)
    duration_ms = parse_duration_ms(args.duration)
    if args.start:
        start_ms = parse_rfc3339_ms(args.start)
    else:  # end now, so event times are neither in the future nor expired
        start_ms = start_ending_at(int(time.time() * 1000), duration_ms, interval_ms)
    incidents = parse_schedule(args.incidents, start_ms) if args.incidents else None
    simulation = simulate(load_system(args.system), start_ms, duration_ms, args.seed,
                          incidents, mixed=incidents is None and not args.quiet_run,
                          interval_ms=interval_ms, allow_overlap=args.allow_overlap)
    labels_path = Path(args.labels)
    save_labels(simulation.labels, labels_path)
    if args.graph:
        write_call_graph(load_system(args.system), args.graph)
    print(f"simulating {format_ms(start_ms)} .. {format_ms(simulation.end_ms)}, seed {args.seed}, "
          f"{len(simulation.labels.incidents)} incidents; labels in {labels_path}")
    if args.out and fmt == "otlp-json":
        counts = _write_otlp_json(simulation, args.out, args.records_per_message)
    elif args.out:
        counts = write_ndjson(simulation, args.out)
    else:
        counts = _publish(settings, simulation, args)
    print("wrote " + ", ".join(f"{n:,} {kind}s" for kind, n in sorted(counts.items()))
          + f" to {args.out or settings.kafka.bootstrap_servers}")
    return 0


def _publish(settings: Settings, simulation, args: argparse.Namespace) -> dict[str, int]:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn

    from pipeline.kafka.transport import ensure_topics
    from pipeline.simulate.publish import publish_simulation

    speed = 1.0 if args.realtime else args.speed
    with Progress("simulated time", BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                  disable=args.no_progress) as bar:
        task = bar.add_task("simulate", total=1)

        async def run():
            await ensure_topics(settings)
            return await publish_simulation(
                settings, simulation, speed=speed, records_per_message=args.records_per_message,
                on_progress=lambda done, total: bar.update(task, completed=done, total=total),
                fmt=getattr(args, "format", "json"))

        return asyncio.run(run()).records


def _write_otlp_json(simulation, out: str, records_per_message: int) -> dict[str, int]:
    """One OTLP/JSON export message per line (the Collector's file exporter layout)."""
    from pipeline.simulate.otlp import otlp_messages

    counts: dict[str, int] = {}
    with open(out, "wb") as fh:
        for kind, _, value, n in otlp_messages(simulation, "otlp-json", records_per_message):
            fh.write(value + b"\n")
            counts[kind.value] = counts.get(kind.value, 0) + n
    return counts


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    """Compare stored problems and detections with a simulation's labels or with labelled
    real fault cases (a JSON list of ``id``, ``start``, ``end``, ``root_cause_service``), or
    score them from operators' feedback (``--feedback``)."""
    import orjson

    from pipeline.api.query import run_query
    from pipeline.errors import TocsinError
    from pipeline.evaluate import evaluate, format_table, result_to_dict
    from pipeline.evaluate.cases import is_case_list
    from pipeline.evaluate.load import load_detections, load_problems
    from pipeline.simulate import load_labels, parse_duration_ms

    if args.feedback:
        return _evaluate_feedback(args, settings)
    if not args.labels:
        raise TocsinError("tocsin evaluate needs --labels FILE or --feedback --from T --to T")

    def query(sql: str) -> QueryResult:
        return run_query(settings, sql)

    try:
        raw = orjson.loads(Path(args.labels).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise TocsinError(f"{args.labels}: cannot read labels: {exc}") from None
    if is_case_list(raw):
        return _evaluate_cases(args, settings, query)
    labels = load_labels(args.labels)
    _wait_for_worker(args, settings, labels.end_ms - labels.interval_ms)
    slack_ms = parse_duration_ms(args.slack)
    database = settings.store.database
    result = evaluate(labels, load_problems(query, database, labels, slack_ms),
                      load_detections(query, database, labels, slack_ms),
                      match_slack_ms=slack_ms)
    _report(args, format_table(result), result_to_dict(result))
    return 0


def _wait_for_worker(args: argparse.Namespace, settings: Settings, last_ms: int) -> None:
    """With a worker running, wait (up to ``--wait`` seconds) until its detectors and
    correlator have passed ``last_ms``: scoring earlier misses what is still in flight."""
    import sys
    import time

    from pipeline.api.query import caught_up, worker_status

    if args.wait <= 0:
        return
    deadline = time.monotonic() + args.wait
    said = False
    while True:
        status = worker_status(settings)
        if status is None or caught_up(status, last_ms, settings.detect.allowed_lateness_ms):
            return
        if time.monotonic() >= deadline:
            print(f"warning: the worker has not caught up after {args.wait:g}s (detect "
                  f"watermark {status.get('detect', {}).get('watermark_ms')}); scoring "
                  "what is stored", file=sys.stderr)
            return
        if not said:
            print("waiting for the worker's detectors to pass the last labelled record...",
                  file=sys.stderr)
            said = True
        time.sleep(1.0)


def _report(args: argparse.Namespace, text: str, data: dict) -> None:
    if args.json == "-":  # the JSON alone, on stdout
        print(json.dumps(data, indent=2))
        return
    print(text)
    out = Path(args.json or Path(args.labels).with_suffix(".evaluation.json"))
    out.write_text(json.dumps(data, indent=2))
    print(f"\nwrote {out}")


def _evaluate_cases(args: argparse.Namespace, settings: Settings, query) -> int:
    """Score the stored problems against real fault cases (see pipeline.evaluate.cases)."""
    import sys

    from pipeline.errors import TocsinError
    from pipeline.evaluate.cases import CASE_AFTER_MS, CASE_BEFORE_MS, evaluate_cases, load_cases
    from pipeline.evaluate.load import load_problems_between, telemetry_range
    from pipeline.evaluate.report import case_result_to_dict, format_case_table
    from pipeline.events.times import format_ms
    from pipeline.simulate import parse_duration_ms

    cases = load_cases(args.labels)
    after = parse_duration_ms(args.slack) if args.slack else CASE_AFTER_MS
    before = parse_duration_ms(args.before) if args.before else CASE_BEFORE_MS
    stored = telemetry_range(query, settings.store.database)
    if stored is None:
        raise TocsinError("no telemetry stored: replay the recording first (tocsin produce)")
    # only the cases whose start the stored telemetry covers (a replay of one day, or of
    # a few case files, is scored on those cases alone)
    covered = [c for c in cases if stored[0] <= c.start_ms <= stored[1]]
    if len(covered) < len(cases):
        print(f"scoring the {len(covered)} of {len(cases)} cases that began within the "
              f"stored telemetry ({format_ms(stored[0])} .. {format_ms(stored[1])})",
              file=sys.stderr)
    cases = covered
    lo = min((c.start_ms for c in cases), default=0) - before
    hi = max((c.end_ms for c in cases), default=0) + after
    _wait_for_worker(args, settings, min(hi, stored[1]))
    problems = load_problems_between(query, settings.store.database, lo, hi)
    result = evaluate_cases(cases, problems, before_ms=before, after_ms=after)
    _report(args, format_case_table(result), case_result_to_dict(result))
    return 0


def _evaluate_feedback(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from pipeline.api.query import run_query
    from pipeline.evaluate.feedback import format_feedback, load_judged, score_feedback
    from pipeline.evaluate.score import parse_time

    if not args.from_:
        raise TocsinError("tocsin evaluate --feedback needs --from (RFC 3339 or epoch ms)")
    lo = parse_time(args.from_)
    hi = parse_time(args.to) if args.to else int(time.time() * 1000)
    if hi <= lo:
        raise TocsinError(f"--to ({hi}) must be after --from ({lo})")
    problems, feedback = load_judged(lambda sql: run_query(settings, sql),
                                     settings.store.database, lo, hi)
    score = score_feedback(problems, feedback)
    print(format_feedback(score))
    if args.json:
        Path(args.json).write_text(json.dumps(score.to_dict(), indent=2))
        print(f"\nwrote {args.json}")
    return 0
