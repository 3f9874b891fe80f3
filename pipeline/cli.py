"""The ``tocsin`` command line."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.errors import TocsinError
from pipeline.settings import Settings, load_settings
from pipeline.store import QueryResult

Command = Callable[[argparse.Namespace, Settings], int]


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


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run a worker until it is stopped."""
    from pipeline.worker import run_worker

    run_worker(settings)
    return 0


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    """Start, stop or show the local single-node Kafka broker."""
    import os

    from pipeline.kafka import broker_status, start_broker, stop_broker

    configured = os.environ.get("TOCSIN_KAFKA_BOOTSTRAP_SERVERS")
    state_dir = Path(args.state_dir) if args.state_dir else None
    if args.action == "start":
        if configured and not args.force:
            print(f"using the configured Kafka cluster at {configured}; not starting a broker")
            return 0
        handle = start_broker(port=args.port, state_dir=state_dir, keep_data=args.keep_data)
        print(f"Kafka {handle.version} running at {handle.bootstrap} (pid {handle.pid}, "
              f"log {handle.log_file})")
    elif args.action == "stop":
        stopped = stop_broker(state_dir=state_dir)
        print("local Kafka broker stopped" if stopped else "no local Kafka broker was running")
    else:
        handle = broker_status(state_dir=state_dir)
        if handle is None:
            print("no local Kafka broker is running")
            return 3
        print(f"Kafka {handle.version} running at {handle.bootstrap} (pid {handle.pid}, "
              f"data {handle.data_dir})")
    return 0


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    """Send an NDJSON file of records to their topics."""
    from pipeline.produce import produce_file
    from pipeline.transport import ensure_topics

    path = Path(args.file)
    if not path.is_file():
        raise TocsinError(f"no such file: {path}")

    async def run():
        await ensure_topics(settings)
        return await produce_file(settings, path, args.records_per_message,
                                  progress=not args.quiet)

    report = asyncio.run(run())
    sent = ", ".join(f"{n} {kind}s" for kind, n in sorted(report.records.items())) or "nothing"
    print(f"sent {sent} in {report.messages} messages")
    for number, reason in report.unroutable[:10]:
        print(f"  line {number}: {reason} (sent to {settings.topics.deadletter})",
              file=sys.stderr)
    if len(report.unroutable) > 10:
        print(f"  ... and {len(report.unroutable) - 10} more unroutable lines", file=sys.stderr)
    return 1 if report.unroutable else 0


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    """Run a read-only SQL statement and print its result."""
    from pipeline.query import run_query

    _print_result(run_query(settings, args.sql), args.format)
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Generate labelled telemetry to Kafka or to an NDJSON file."""
    import time

    from pipeline.simulate import (
        load_system,
        parse_duration_ms,
        parse_schedule,
        save_labels,
        simulate,
        write_call_graph,
        write_ndjson,
    )
    from pipeline.timestamps import format_ms, parse_rfc3339_ms

    interval_ms = parse_duration_ms(args.interval)
    duration_ms = parse_duration_ms(args.duration)
    if args.start:
        start_ms = parse_rfc3339_ms(args.start)
    else:  # end now, so event times are neither in the future nor expired
        start_ms = (int(time.time() * 1000) - duration_ms) // interval_ms * interval_ms
    incidents = parse_schedule(args.incidents, start_ms) if args.incidents else None
    simulation = simulate(load_system(args.system), start_ms, duration_ms, args.seed,
                          incidents, mixed=incidents is None and not args.quiet_run,
                          interval_ms=interval_ms)
    labels_path = Path(args.labels)
    save_labels(simulation.labels, labels_path)
    if args.graph:
        write_call_graph(load_system(args.system), args.graph)
    print(f"simulating {format_ms(start_ms)} .. {format_ms(simulation.end_ms)}, seed {args.seed}, "
          f"{len(simulation.labels.incidents)} incidents; labels in {labels_path}")
    if args.out:
        counts = write_ndjson(simulation, args.out)
    else:
        counts = _publish(settings, simulation, args)
    print("wrote " + ", ".join(f"{n:,} {kind}s" for kind, n in sorted(counts.items()))
          + f" to {args.out or settings.kafka.bootstrap_servers}")
    return 0


def _publish(settings: Settings, simulation, args: argparse.Namespace) -> dict[str, int]:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn

    from pipeline.simulate.publish import publish_simulation
    from pipeline.transport import ensure_topics

    speed = 1.0 if args.realtime else args.speed
    with Progress("simulated time", BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                  disable=args.no_progress) as bar:
        task = bar.add_task("simulate", total=1)

        async def run():
            await ensure_topics(settings)
            return await publish_simulation(
                settings, simulation, speed=speed, records_per_message=args.records_per_message,
                on_progress=lambda done, total: bar.update(task, completed=done, total=total))

        return asyncio.run(run()).records


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    """Compare stored problems and detections with a simulation's labels."""
    from pipeline.evaluate import evaluate, format_table, result_to_dict
    from pipeline.evaluate.load import load_detections, load_problems
    from pipeline.query import run_query
    from pipeline.simulate import load_labels, parse_duration_ms

    labels = load_labels(args.labels)
    slack_ms = parse_duration_ms(args.slack)

    def query(sql: str) -> QueryResult:
        return run_query(settings, sql)

    database = settings.store.database
    result = evaluate(labels, load_problems(query, database, labels, slack_ms),
                      load_detections(query, database, labels, slack_ms),
                      match_slack_ms=slack_ms)
    print(format_table(result))
    out = Path(args.json or Path(args.labels).with_suffix(".evaluation.json"))
    out.write_text(json.dumps(result_to_dict(result), indent=2))
    print(f"\nwrote {out}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Run the whole pipeline on a simulated system and show the results."""
    from pipeline.demo import run_demo

    return run_demo(hours=args.hours, seed=args.seed, minutes=args.minutes,
                    keep_running=args.keep_running)


def cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    """Validate rule files, try them on recorded telemetry, or reload a worker's rules."""
    from detectors.cli import test_command, validate_command

    if args.action == "validate":
        return validate_command(args.files)
    if args.action == "test":
        if not args.input:
            raise TocsinError("tocsin rules test needs --input NDJSON")
        return test_command(args.files, args.input, json_lines=args.json,
                            allowed_lateness_ms=settings.detect.allowed_lateness_ms,
                            keepalive_ms=settings.detect.keepalive_ms)
    from pipeline.query import call_worker

    answer = call_worker(settings, "/tocsin/rules/reload", {})
    if answer.get("problems"):
        print("rejected, the previous rules keep running:")
        for problem in answer["problems"]:
            print(f"  {problem}")
        return 1
    print(f"rules version {answer['version']} "
          f"({'reloaded' if answer['changed'] else 'unchanged'})")
    return 0


def cmd_problems(args: argparse.Namespace, settings: Settings) -> int:
    """Open and recent problems, a table."""
    from pipeline.operate import list_problems

    _print_result(list_problems(settings, not args.open, args.limit), args.format)
    return 0


def cmd_problem(args: argparse.Namespace, settings: Settings) -> int:
    """One problem in full: evidence, root causes, diagnostic plan, runbook, members."""
    from pipeline.operate import problem_detail

    print(json.dumps(problem_detail(settings, args.id), indent=2, default=str))
    return 0


def cmd_ack(args: argparse.Namespace, settings: Settings) -> int:
    """Acknowledge a problem (an event on the control topic)."""
    from pipeline.operate import acknowledge

    acknowledge(settings, args.id, args.by, args.comment)
    print(f"acknowledged {args.id} (the correlator applies it in order with detections)")
    return 0


def cmd_silence(args: argparse.Namespace, settings: Settings) -> int:
    """Create, list or expire silences and maintenance windows."""
    from pipeline.operate import create_silence, expire_silence, list_silences

    if args.action == "create":
        if not args.match:
            raise TocsinError("a silence needs at least one --match (e.g. service=orders)")
        silence = create_silence(settings, args.match, args.duration, args.by, args.comment,
                                 args.starts or "", args.every or "")
        print(f"created silence {silence.id}")
    elif args.action == "expire":
        if not args.id:
            raise TocsinError("tocsin silence expire needs the silence id")
        expire_silence(settings, args.id, args.by)
        print(f"expired silence {args.id}")
    else:
        silences = list_silences(settings)
        for s in silences:
            print(json.dumps(s, default=str))
        if not silences:
            print("no silences")
    return 0


def _params(items: list[str] | None) -> dict[str, object] | None:
    if not items:
        return None
    bad = [i for i in items if "=" not in i]
    if bad:
        raise TocsinError(f"--param expects NAME=VALUE, got {bad[0]!r}")
    def value(text: str) -> object:
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text

    return {k: value(v) for k, v in (i.split("=", 1) for i in items)}


def cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    """Score a timestamp,value CSV exactly as the stream would."""
    from models.cli import score_command

    return score_command(args.input, args.output, model=args.model,
                         registry_dir=args.registry or settings.detect.model_registry or None,
                         version=int(args.version) if args.version else None,
                         params=_params(args.param))


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    """List, publish, set current or roll back model versions in the registry."""
    import time

    from models.cli import models_command

    registry = args.registry or settings.detect.model_registry
    if not registry:
        raise TocsinError("no model registry: pass --registry DIR or set "
                          "TOCSIN_DETECT_MODEL_REGISTRY")
    version = int(args.version) if args.version else None
    return models_command(args.action, registry, name=args.name, version=version,
                          params=_params(args.param), author=args.author,
                          description=args.description, now_ms=int(time.time() * 1000))


def cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    """Print the effective settings, secrets masked."""
    print(json.dumps(settings.redacted(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``tocsin`` subcommand."""
    parser = argparse.ArgumentParser(
        prog="tocsin",
        description="Operations telemetry from Kafka into ClickHouse, detections and alerts.",
    )
    parser.add_argument("--config", help="TOML settings file (also TOCSIN_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("worker", help="run a stream worker (ingest agents, query page)",
                       description="Create missing topics and tables, then consume the "
                       "telemetry topics into the store until stopped (Ctrl-C / SIGTERM).")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("kafka", help="start, stop or show the local Kafka broker",
                       description="A real single-node Apache Kafka broker (KRaft) on "
                       "127.0.0.1, from jars Maven resolves into ~/.cache/tocsin. Does nothing "
                       "when TOCSIN_KAFKA_BOOTSTRAP_SERVERS points at a cluster.")
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--port", type=int, default=9092, help="broker port (0: a free one)")
    p.add_argument("--keep-data", action="store_true",
                   help="keep the previous data directory instead of starting fresh")
    p.add_argument("--state-dir", help="where pid, config, log and data live")
    p.add_argument("--force", action="store_true",
                   help="start a local broker even when a cluster is configured")
    p.set_defaults(func=cmd_kafka)

    p = sub.add_parser("produce", help="send an NDJSON file of records to Kafka",
                       description="Each line is one record with \"type\": metric, log or "
                       "span. Records are batched into JSON-array messages per topic.")
    p.add_argument("file")
    p.add_argument("--records-per-message", type=int, default=100)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser("query", help="run a read-only SQL query on the store",
                       description="Reads see deduplicated rows (final = 1). With the "
                       "embedded store, a running worker answers; otherwise the data "
                       "directory is opened directly.")
    p.add_argument("sql")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("simulate", help="generate labelled telemetry of a simulated system",
                       description="Metrics, logs and traces of a microservice system with "
                       "injected incidents, in event time from a seeded generator (same seed, "
                       "same output), to Kafka (default) or an NDJSON file, with a labels "
                       "file of the incidents.")
    p.add_argument("--system", help="system YAML (default: the packaged 10-service system)")
    p.add_argument("--duration", default="6h", help="simulated time span (e.g. 90m, 6h)")
    p.add_argument("--start", help="RFC 3339 start (default: so that the run ends now)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--interval", default="10s", help="metric interval")
    p.add_argument("--incidents", help="schedule, e.g. 'db_outage@30m+10m,error_spike:orders@2h"
                   "+15m' (default: a random mix)")
    p.add_argument("--quiet-run", action="store_true", help="no incidents at all")
    p.add_argument("--out", help="write NDJSON here instead of sending to Kafka")
    p.add_argument("--labels", default="labels.json", help="where to write the labels")
    p.add_argument("--graph", help="also write the system's call graph (YAML, caller: "
                   "[callees]) for correlate.dependencies")
    p.add_argument("--speed", type=float, default=None,
                   help="simulated seconds per second (360: 6 h in a minute; default: as fast "
                   "as possible)")
    p.add_argument("--realtime", action="store_true", help="pace at real time (speed 1)")
    p.add_argument("--records-per-message", type=int, default=100)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("evaluate", help="score stored problems against simulation labels",
                       description="Per incident: detected, time to detect, split into how "
                       "many problems; false alarms per simulated day; root-cause AC@1/AC@3; "
                       "pairwise grouping precision/recall/F1. Prints a table, writes JSON.")
    p.add_argument("--labels", required=True)
    p.add_argument("--json", help="JSON output path (default: LABELS.evaluation.json)")
    p.add_argument("--slack", default="5m", help="matching slack after an incident ends")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="the whole pipeline on a simulated system, live",
                       description="Starts the local Kafka broker and a worker, streams a "
                       "few simulated hours with incidents through them, shows problems live, "
                       "then the evaluation and example analyst queries.")
    p.add_argument("--hours", type=float, default=3.0, help="simulated hours")
    p.add_argument("--minutes", type=float, default=1.0, help="wall-clock minutes to take")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep-running", action="store_true",
                   help="leave the broker and worker running afterwards")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("rules", help="validate, test or reload rule files",
                       description="validate FILE...: every problem with file, rule and field "
                       "(exit 1 if any). test FILE... --input NDJSON: replay recorded records "
                       "through the rules and print the detections they would raise. reload: "
                       "make the running worker load its rule files now (a bad file is "
                       "rejected and the old rules keep running).")
    p.add_argument("action", choices=("validate", "test", "reload"))
    p.add_argument("files", nargs="*", help="rule files (validate, test)")
    p.add_argument("--input", help="NDJSON records with \"type\" (test)")
    p.add_argument("--json", action="store_true", help="detections as JSON lines (test)")
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser("problems", help="open and recent problems",
                       description="Open problems first, then the most recently updated.")
    p.add_argument("--open", action="store_true", help="open and acknowledged only")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=cmd_problems)

    p = sub.add_parser("problem", help="one problem in full (evidence, plan, runbook)")
    p.add_argument("id")
    p.set_defaults(func=cmd_problem)

    operator = os.environ.get("USER", "operator")
    p = sub.add_parser("ack", help="acknowledge a problem")
    p.add_argument("id")
    p.add_argument("--by", default=operator)
    p.add_argument("--comment", default="")
    p.set_defaults(func=cmd_ack)

    p = sub.add_parser("silence", help="create, list or expire silences",
                       description="Silences mute matching problems' alerts (never a resolve "
                       "of something already alerted). Matchers: name=value, name!=value, "
                       "name=~regex on service, category, severity, host or labels.")
    p.add_argument("action", choices=("create", "list", "expire"))
    p.add_argument("id", nargs="?", help="silence id (expire)")
    p.add_argument("--match", action="append", help="matcher, repeatable (create)")
    p.add_argument("--duration", default="2h", help="length, or each window's (create)")
    p.add_argument("--starts", help="RFC 3339 start (default: now)")
    p.add_argument("--every", help="recurring maintenance window: cron ('0 2 * * 6') or "
                   "FREQ=WEEKLY;BYDAY=SA;BYHOUR=2")
    p.add_argument("--by", default=operator)
    p.add_argument("--comment", default="")
    p.set_defaults(func=cmd_silence)

    p = sub.add_parser("score", help="score a timestamp,value CSV with an anomaly model",
                       description="Streams the series through a detector exactly as the "
                       "worker scores it and writes timestamp,value,anomaly_score.")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--model", default="robust-seasonal")
    p.add_argument("--registry", help="model registry directory")
    p.add_argument("--version", help="registry version (default: current)")
    p.add_argument("--param", action="append", help="NAME=VALUE, repeatable")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("models", help="the model registry: list, publish, set-current, "
                       "rollback")
    p.add_argument("action", choices=("list", "publish", "set-current", "rollback"))
    p.add_argument("name", nargs="?")
    p.add_argument("version", nargs="?")
    p.add_argument("--registry", help="directory (default: detect.model_registry)")
    p.add_argument("--param", action="append", help="NAME=VALUE, repeatable (publish)")
    p.add_argument("--author", default=os.environ.get("USER", ""))
    p.add_argument("--description", default="")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("settings", help="print the effective settings (secrets masked)")
    p.set_defaults(func=cmd_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tocsin`` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        return args.func(args, settings)
    except TocsinError as exc:
        print(f"tocsin {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
