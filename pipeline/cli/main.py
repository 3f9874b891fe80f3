"""The ``tocsin`` command line: the argument parser and ``main``.

The commands themselves live in :mod:`pipeline.commands`, one module per group.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from pipeline.cli.backtest import add_parser as add_backtest_parser
from pipeline.cli.backtest import add_shadow_parser
from pipeline.cli.detection import cmd_models, cmd_rules, cmd_score
from pipeline.cli.operate import (
    cmd_ack,
    cmd_feedback,
    cmd_problem,
    cmd_problems,
    cmd_query,
    cmd_silence,
)
from pipeline.cli.runtime import (
    cmd_demo,
    cmd_kafka,
    cmd_notify,
    cmd_produce,
    cmd_settings,
    cmd_worker,
)
from pipeline.cli.simulation import cmd_evaluate, cmd_simulate
from pipeline.cli.status import cmd_status
from pipeline.errors import TocsinError
from pipeline.settings import Settings, load_settings

Command = Callable[[argparse.Namespace, Settings], int]


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

    p = sub.add_parser("notify", help="deliver alerts to Alertmanager and webhooks",
                       description="Consume the alerts topic and post each problem to "
                       "Alertmanager's v2 API (re-posting open ones every "
                       "notify.resend_interval_ms) and each CloudEvent to the webhooks, "
                       "retrying with backoff; an alert still undelivered after "
                       "notify.max_attempts goes to the dead-letter topic. Offsets are "
                       "committed after delivery (at-least-once). Runs until Ctrl-C / "
                       "SIGTERM.")
    p.add_argument("--alertmanager", action="append", metavar="URL",
                   help="Alertmanager base URL, repeatable (replaces notify.alertmanager_urls)")
    p.add_argument("--webhook", action="append", metavar="URL",
                   help="webhook URL, repeatable (replaces notify.webhook_urls)")
    p.set_defaults(func=cmd_notify)

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
                       "span. Records are batched into JSON-array messages per (kind, "
                       "service), each within kafka.max_message_bytes; a message goes when "
                       "it is full, when event time has moved on, or after a wall-time wait.")
    p.add_argument("file", help="NDJSON file; .gz is read through gzip; - is standard input "
                   "(plain or gzip)")
    p.add_argument("--records-per-message", type=int, default=100)
    p.add_argument("--max-event-lag-ms", type=int, default=10_000,
                   help="send a service's records once the newest record seen is this far "
                   "ahead of them in event time (default 10000)")
    p.add_argument("--max-wait-ms", type=int, default=500,
                   help="send a service's records after they waited this long (default 500)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser("query", help="run a read-only SQL query on the store",
                       description="One SELECT, SHOW, DESCRIBE, EXPLAIN or EXISTS statement, "
                       "run under ClickHouse's read-only mode and the [query] limits; no "
                       "table functions, INTO OUTFILE or FORMAT. Reads see deduplicated rows "
                       "(final = 1). With an in-process store (embedded, or chdb:///path) "
                       "the running worker of the configured app id and store answers; "
                       "otherwise the data directory is opened directly.")
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
    p.add_argument("--allow-overlap", action="store_true",
                   help="let scheduled incidents overlap in time (two unrelated incidents "
                   "at once)")
    p.add_argument("--out", help="write NDJSON here instead of sending to Kafka (with "
                   "--format otlp-json: one OTLP/JSON export message per line)")
    p.add_argument("--format", choices=("json", "otlp-proto", "otlp-json"), default="json",
                   help="json: Tocsin's records on the tocsin.* topics; otlp-proto / "
                   "otlp-json: OTLP export messages on the otlp_* topics, as the "
                   "OpenTelemetry Collector's Kafka exporter writes them")
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

    p = sub.add_parser("evaluate", help="score stored problems against labels or operators' "
                       "feedback",
                       description="--labels with simulation labels (an object with "
                       "incidents): per incident detected, time to detect, split into how "
                       "many problems; false alarms per simulated day; root-cause AC@1/AC@3; "
                       "pairwise grouping precision/recall/F1. --labels with case labels of "
                       "real faults (a JSON list of id, start, end in epoch ms, "
                       "root_cause_service, optional fault_type): per case detected, time to "
                       "detect, problems, rank of the root cause; AC@1/3/5, Avg@5 and false "
                       "problems, per fault type; a problem counts for a case only if it "
                       "opened within [start - --before, end + --slack]. --feedback: over the "
                       "problems opened between --from and --to, precision, false-alarm rate "
                       "and root-cause accuracy from operators' verdicts. Prints a table, "
                       "writes JSON.")
    p.add_argument("--labels", help="labels file of a simulation run, or case labels")
    p.add_argument("--feedback", action="store_true",
                   help="score from the feedback table instead of labels")
    p.add_argument("--from", dest="from_", help="range start (RFC 3339 or epoch ms)")
    p.add_argument("--to", help="range end (RFC 3339 or epoch ms; default: now)")
    p.add_argument("--json", help="JSON output path (default: LABELS.evaluation.json; "
                   "'-': print only the JSON)")
    p.add_argument("--slack", default="5m", help="matching slack after an incident ends")
    p.add_argument("--before", default="1m",
                   help="case labels: a problem may open this long before a case starts")
    p.add_argument("--wait", type=float, default=600.0,
                   help="seconds to wait for a running worker's detectors to pass the last "
                   "labelled record (0: score at once)")
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
    p.add_argument("--wide", action="store_true",
                   help="every column, nothing cut (the table fits the terminal otherwise)")
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

    p = sub.add_parser("feedback", help="give a verdict on a problem",
                       description="Published on the control topic; the worker stores it in "
                       "the feedback table with who and when, `tocsin problem ID` shows it, "
                       "and `tocsin evaluate --feedback` and backtests use it as labels.")
    p.add_argument("id", help="problem id")
    p.add_argument("--verdict", required=True, choices=("true", "false-positive", "duplicate"))
    p.add_argument("--root-cause", help="the service that really was at fault")
    p.add_argument("--comment", default="")
    p.add_argument("--user", default=operator)
    p.set_defaults(func=cmd_feedback)

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
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="list: a table, or one JSON object per silence")
    p.add_argument("--force", action="store_true",
                   help="expire: send the expiry even when no worker answers to check the id")
    p.set_defaults(func=cmd_silence)

    p = sub.add_parser("score", help="score a timestamp,value CSV with an anomaly model",
                       description="Streams the series through a detector exactly as the "
                       "worker scores it and writes timestamp,value,anomaly_score.")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--model", default="seasonal-ensemble")
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

    add_backtest_parser(sub)
    add_shadow_parser(sub)

    p = sub.add_parser("status", help="the running worker's health at a glance",
                       description="Ready or why not, records in and out, agents, consumer "
                       "lag, and whether the detect watermark is caught up with every source "
                       "(or how far behind it is). Exit 1 when the worker is not ready.")
    p.add_argument("--json", action="store_true", help="the status and readiness as JSON")
    p.set_defaults(func=cmd_status)

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
    except BrokenPipeError:
        return _closed_stdout()


def _closed_stdout() -> int:
    """The reader of our output went away (``tocsin settings | head``): stop quietly,
    with the status a shell gives a process ended by SIGPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's exit flush must not fail again
    except (OSError, ValueError):
        pass
    return 141


if __name__ == "__main__":
    sys.exit(main())
