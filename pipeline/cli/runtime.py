"""Commands that run Tocsin: a worker, the local Kafka broker, producing records, the demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from pipeline.errors import TocsinError
from pipeline.settings import Settings


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run a worker until it is stopped."""
    from pipeline.agents.heap import environ_for_arrow_pool
    from pipeline.agents.worker import run_worker

    environ = environ_for_arrow_pool(settings.worker.arrow_memory_pool, os.environ)
    if environ is not None:
        # Arrow chose its memory pool as pyarrow loaded: start again (the same process,
        # so the same PID) with the pool chosen in the environment, and the command line
        # as given (interpreter options and a profiler's -m included)
        os.execve(sys.executable, sys.orig_argv, environ)
    run_worker(settings)
    return 0


def cmd_notify(args: argparse.Namespace, settings: Settings) -> int:
    """Deliver the alerts topic to Alertmanager and webhooks until stopped."""
    import dataclasses
    import logging
    import signal

    from pipeline.alerts.notifier import Notifier

    overrides = {}
    if args.alertmanager:
        overrides["alertmanager_urls"] = tuple(args.alertmanager)
    if args.webhook:
        overrides["webhook_urls"] = tuple(args.webhook)
    if overrides:
        from pipeline.settings import validate_notify

        notify = dataclasses.replace(settings.notify, **overrides)
        validate_notify(notify)
        settings = dataclasses.replace(settings, notify=notify)
    level = {"crit": "CRITICAL", "warn": "WARNING"}.get(settings.worker.log_level,
                                                        settings.worker.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        counts = await Notifier(settings, stop).run()
        print(f"notify: {counts.messages} alerts consumed, {counts.dead_lettered} "
              f"dead-lettered", file=sys.stderr)

    asyncio.run(run())
    return 0


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    """Start, stop or show the local single-node Kafka broker."""
    from pipeline.kafka import broker_status, start_broker, stop_broker

    configured = os.environ.get("TOCSIN_KAFKA_BOOTSTRAP_SERVERS")
    state_dir = Path(args.state_dir) if args.state_dir else None
    if args.action == "start":
        if configured and not args.force:
            print(f"using the configured Kafka cluster at {configured}; not starting a broker")
            return 0
        handle = start_broker(port=args.port, state_dir=state_dir, keep_data=args.keep_data,
                              max_message_bytes=settings.kafka.max_message_bytes)
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
    """Send an NDJSON file (plain, .gz, or - for standard input) of records to their topics."""
    from pipeline.kafka.producer import produce_file
    from pipeline.kafka.transport import ensure_topics

    if args.file != "-" and not Path(args.file).is_file():
        raise TocsinError(f"no such file: {args.file}")

    async def run():
        await ensure_topics(settings)
        return await produce_file(settings, args.file, args.records_per_message,
                                  progress=not args.quiet,
                                  max_event_lag_ms=args.max_event_lag_ms,
                                  max_wait_ms=args.max_wait_ms)

    report = asyncio.run(run())
    sent = ", ".join(f"{n} {kind}s" for kind, n in sorted(report.records.items())) or "nothing"
    print(f"sent {sent} in {report.messages} messages")
    for number, reason in report.unroutable[:10]:
        print(f"  line {number}: {reason} (sent to {settings.topics.deadletter})",
              file=sys.stderr)
    if len(report.unroutable) > 10:
        print(f"  ... and {len(report.unroutable) - 10} more unroutable lines", file=sys.stderr)
    return 1 if report.unroutable else 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Run the whole pipeline on a simulated system and show the results."""
    from pipeline.cli.demo import run_demo

    return run_demo(hours=args.hours, seed=args.seed, minutes=args.minutes,
                    keep_running=args.keep_running)


def cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    """Print the effective settings, secrets masked."""
    print(json.dumps(settings.redacted(), indent=2))
    return 0
