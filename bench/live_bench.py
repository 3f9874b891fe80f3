"""End-to-end lag of a live tocsin worker: produce at a set rate, then time the tail.

A worker with everything on (rules, models, correlator: the defaults) runs first. For each
rate of ``--rates`` (points/s, in that order, one worker for all of them) the bench
produces metric points stamped with the wall clock for ``--seconds``, one batch every
``--tick-ms`` (the messages of a tick sent together, as a Collector's batch exporter or a
scraper does), then measures from the moment the last record was acknowledged by the
broker:

* to all the rate's points stored (``stored`` on ``/tocsin/status``);
* to the detect watermark passing the last point's time minus ``detect.allowed_lateness_ms``
  (every window that event time closes has been evaluated and its detections written);
* to that and the correlator's watermark reaching the last minute boundary before it (it has
  processed those detections: the service graph's source moves the correlator's watermark
  in whole ``graph.bucket_ms`` buckets, and the built-in rules' windows end on minutes).

A warm-up of ``--warmup-s`` at the first rate goes first, not measured: every series'
first points read stored history and create state, a cost paid once per series.

The issue's bound is "<= the window plus 5 s". The watermark above already stands for the
event-time wait of a window (the last window closes at its end plus the lateness, in event
time), so what the lag adds in wall time is processing delay: the verdict column compares
it with ``--window-s`` (default 0.5 s, the ingest batch window ``ingest.batch_within_ms``)
plus 5 s. The bench also prints whether the producer kept the rate (a tick that could not
be sent in time counts as behind).

``--format otlp-proto`` sends the same points as OTLP ``MetricsData`` (gauges, one
resource per service and host) to the ``otlp_metrics`` topic, as the Collector's Kafka
exporter does.

    .venv/bin/python bench/live_bench.py [--rates 5000,20000,50000] [--seconds 30]
        [--format json|otlp-proto] [--tick-ms 1000] [--series 5000] [--partitions 4]
        [--bootstrap HOST:PORT] [--worker-env NAME=VALUE ...] [--lag-timeout 120]
        [--warmup-s 15] [--json] [--verbose]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_bench import (  # noqa: E402
    HOSTS_PER_SERVICE,
    METRICS,
    POLL_S,
    READY_TIMEOUT_S,
    REGIONS,
    SERVICES,
    Worker,
    bench_settings,
    release,
)

from pipeline.events.schema import RecordKind  # noqa: E402
from pipeline.kafka import start_broker  # noqa: E402
from pipeline.kafka.producer import TelemetryProducer  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.simulate.otlp import metrics_message  # noqa: E402


@dataclass
class RatePhase:
    """What one rate gave."""

    rate: int  # points/s asked for
    points: int = 0  # points sent
    send_s: float = 0.0  # first tick to the last record acknowledged
    achieved: float = 0.0  # points / send_s
    ticks_late: int = 0  # ticks that started more than one tick after their schedule
    load: float = 0.0  # 1-minute load average at the end of producing
    stored_after_s: float = float("nan")  # last record acked -> all stored
    detected_after_s: float = float("nan")  # -> detect watermark past the last point
    correlated_after_s: float = float("nan")  # -> correlator watermark past it
    within: bool = False  # correlated_after_s <= window + 5 s
    peak_mib: float = 0.0  # the worker's VmHWM after this phase


def series_table(series: int) -> list[tuple[str, str, str, str, dict, float, float]]:
    """(service, host, name, unit, attributes, level, spread) of ``series`` series: 200
    services x 5 metrics x hosts (as ``ingest_bench.make_points``)."""
    hosts = max(1, round(series / (SERVICES * len(METRICS))))
    table = []
    for s in range(SERVICES):
        service = f"svc-{s:03d}"
        region = REGIONS[s % len(REGIONS)]
        for h in range(hosts):
            attrs = {"region": region, "az": f"{region}{'abc'[h % 3]}"}
            for name, unit, level, spread in METRICS:
                table.append((service, f"{service}-{h}", name, unit, attrs, level, spread))
    return table


class Source:
    """Points of the series in round-robin order, stamped with the time given."""

    def __init__(self, series: int, seed: int = 11) -> None:
        self.table = series_table(series)
        self.rng = random.Random(seed)
        self.next = 0

    def take(self, n: int, now_ms: int) -> list[dict[str, Any]]:
        """The next ``n`` points, all at ``now_ms``."""
        gauss = self.rng.gauss
        out = []
        table, size = self.table, len(self.table)
        for _ in range(n):
            service, host, name, unit, attrs, level, spread = table[self.next]
            self.next = (self.next + 1) % size
            out.append({"time": now_ms, "service.name": service, "host.name": host,
                        "name": name, "value": abs(level + gauss(0.0, spread)), "unit": unit,
                        "attributes": attrs})
        return out


async def send_otlp(producer: TelemetryProducer, topic: str, points: list[dict[str, Any]],
                    per_message: int) -> None:
    """``points`` as OTLP ``MetricsData`` messages of up to ``per_message`` points of one
    service, keyed by service."""
    by_service: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        by_service.setdefault(p["service.name"], []).append(p)
    for service, records in by_service.items():
        for i in range(0, len(records), per_message):
            value = metrics_message(records[i:i + per_message]).SerializeToString()
            await producer.send_value(topic, value, key=service.encode())


async def produce_rate(settings: Settings, source: Source, phase: RatePhase, seconds: float,
                       tick_ms: int, fmt: str, per_message: int) -> int:
    """Send ``phase.rate`` points/s for ``seconds``; returns the last point's time (ms).

    Ticks run on a fixed schedule; each sends ``rate * tick`` points stamped with the wall
    clock and waits for nothing but the queueing (the producer sends in the background);
    the end waits for every message to be acknowledged.
    """
    tick_s = tick_ms / 1000
    per_tick = max(1, round(phase.rate * tick_s))
    ticks = max(1, round(seconds / tick_s))
    last_ms = 0
    async with TelemetryProducer(settings, records_per_message=per_message,
                                 max_event_lag_ms=3_600_000, max_wait_ms=3_600_000) as producer:
        began = time.monotonic()
        for i in range(ticks):
            due = began + i * tick_s
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > tick_s:
                phase.ticks_late += 1
            last_ms = int(time.time() * 1000)
            points = source.take(per_tick, last_ms)
            if fmt == "json":
                await producer.send(RecordKind.METRIC, points)
                await producer.send_partial()
            else:
                await send_otlp(producer, settings.topics.otlp_metrics, points, per_message)
            phase.points += len(points)
        await producer.flush()
        phase.send_s = time.monotonic() - began
    phase.achieved = phase.points / phase.send_s
    return last_ms


def wait_tail(worker: Worker, phase: RatePhase, stored_before: int, last_ms: int,
              acked_at: float, timeout_s: float, bound_s: float, bucket_ms: int,
              verbose: bool = False) -> int:
    """Poll the status page until the phase's points are stored and the detect watermark
    passes the last point minus the allowed lateness, and the correlator's the last
    ``bucket_ms`` boundary before that (the service graph's source moves in whole buckets,
    and the rules' windows end on those minutes); returns the stored counter at the end."""
    deadline = acked_at + timeout_s
    stored = stored_before
    status: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        status = worker.status()
        seen = time.monotonic() - acked_at
        if status is None:
            time.sleep(POLL_S)
            continue
        stored = status["stored"].get("metric", 0)
        target = last_ms - status["detect"]["allowed_lateness_ms"]
        if phase.stored_after_s != phase.stored_after_s \
                and stored - stored_before >= phase.points:
            phase.stored_after_s = seen
        if phase.detected_after_s != phase.detected_after_s \
                and status["detect"]["watermark_ms"] >= target:
            phase.detected_after_s = seen
        if phase.correlated_after_s != phase.correlated_after_s \
                and phase.detected_after_s == phase.detected_after_s \
                and status["correlate"]["watermark_ms"] >= target // bucket_ms * bucket_ms:
            phase.correlated_after_s = seen
        if all(v == v for v in (phase.stored_after_s, phase.detected_after_s,
                                phase.correlated_after_s)):
            break
        time.sleep(POLL_S)
    if verbose and status:
        print(f"  last point {last_ms}, detect {status['detect']['watermark_ms']}, "
              f"correlate {status['correlate']}", flush=True)
    lag = max(phase.stored_after_s, phase.detected_after_s, phase.correlated_after_s)
    phase.within = lag == lag and lag <= bound_s
    phase.peak_mib = worker.peak_mib()
    return stored


def wait_ready(worker: Worker) -> None:
    """Until the worker answers and has its partitions assigned."""
    ready_by = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < ready_by:
        if not worker.alive():
            raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
        status = worker.status()
        if status and any(status.get("assigned", {}).values()) \
                and not status.get("rebalancing"):
            return
        time.sleep(POLL_S)
    raise RuntimeError(f"worker not ready after {READY_TIMEOUT_S:.0f}s:\n{worker.log_tail()}")


def _s(value: float) -> str:
    return "not reached" if value != value else f"{value:.1f}"


def print_table(phases: list[RatePhase], fmt: str, bound_s: float) -> None:
    print(f"\n  input {fmt}; lag in seconds from the last record acknowledged; "
          f"bound {bound_s:.1f} s")
    header = (f"  {'rate/s':>7} {'sent':>9} {'achieved/s':>10} {'late ticks':>10} "
              f"{'stored':>8} {'detected':>9} {'correlated':>10} {'within':>6} "
              f"{'peak MiB':>8} {'load':>5}")
    print(header)
    for p in phases:
        print(f"  {p.rate:>7,} {p.points:>9,} {p.achieved:>10,.0f} {p.ticks_late:>10} "
              f"{_s(p.stored_after_s):>8} {_s(p.detected_after_s):>9} "
              f"{_s(p.correlated_after_s):>10} {'yes' if p.within else 'no':>6} "
              f"{p.peak_mib:>8,.0f} {p.load:>5.2f}")
    kept = [p.rate for p in phases if p.within and not p.ticks_late]
    print(f"\n  highest rate with the lag within the bound: "
          f"{f'{max(kept):,} points/s' if kept else 'none'}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rates", default="5000,20000,50000",
                        help="comma-separated points/s, produced in this order")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per rate")
    parser.add_argument("--tick-ms", type=int, default=1000, help="one batch of points per tick")
    parser.add_argument("--format", choices=("json", "otlp-proto"), default="json")
    parser.add_argument("--per-message", type=int, default=100, help="points per message at most")
    parser.add_argument("--series", type=int, default=SERVICES * HOSTS_PER_SERVICE * len(METRICS),
                        help="distinct series (200 services x 5 metrics x hosts)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--bootstrap", help="use this broker (HOST:PORT) instead of a local one")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--window-s", type=float, default=0.5,
                        help="the window of the bound (window + 5 s): by default the ingest "
                        "batch window; the event-time wait is in the watermark already")
    parser.add_argument("--warmup-s", type=float, default=15.0,
                        help="first send every series for this long at the first rate, not "
                        "measured (the series' first points read history and create state)")
    parser.add_argument("--lag-timeout", type=float, default=120.0,
                        help="seconds to wait for the tail of each rate")
    parser.add_argument("--json", action="store_true", help="also print the phases as JSON")
    parser.add_argument("--verbose", action="store_true",
                        help="print the watermarks on the status page after each rate")
    args = parser.parse_args(argv)
    args.rate_list = [int(r) for r in args.rates.split(",") if r.strip()]
    if not args.rate_list or min(args.rate_list) < 1 or args.seconds <= 0 or args.tick_ms < 1:
        parser.error("--rates must be positive integers; --seconds, --tick-ms > 0")
    if any("=" not in item for item in args.worker_env):
        parser.error("--worker-env takes NAME=VALUE")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([sys.executable, *(sys.argv if argv is None else [__file__, *argv])])
    root = Path(tempfile.mkdtemp(prefix="tocsin-live-bench-"))
    broker_dir = root / "broker"
    suffix = uuid.uuid4().hex[:8]
    settings: Settings | None = None
    worker: Worker | None = None
    started_broker = False
    phases: list[RatePhase] = []
    bound_s = args.window_s + 5.0
    try:
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            started_broker = True
            bootstrap = start_broker(port=0, state_dir=broker_dir).bootstrap
        env, settings = bench_settings(bootstrap, suffix, root, args.partitions, None,
                                       args.worker_env)
        worker = Worker(env, root / "worker.log", None)
        worker.start()
        wait_ready(worker)
        print(f"worker ready in {time.monotonic() - worker.started:.1f}s", flush=True)
        source = Source(args.series)
        stored = 0
        if args.warmup_s > 0:  # new series: history reads, state created; not measured
            warm = RatePhase(args.rate_list[0])
            last_ms = asyncio.run(produce_rate(settings, source, warm, args.warmup_s,
                                               args.tick_ms, args.format, args.per_message))
            stored = wait_tail(worker, warm, stored, last_ms, time.monotonic(),
                               args.lag_timeout, bound_s, settings.graph.bucket_ms)
            print(f"warm-up at {warm.rate:,}/s for {args.warmup_s:.0f}s: detected "
                  f"+{_s(warm.detected_after_s)} s, correlated +{_s(warm.correlated_after_s)} s",
                  flush=True)
        for rate in args.rate_list:
            phase = RatePhase(rate)
            last_ms = asyncio.run(produce_rate(settings, source, phase, args.seconds,
                                               args.tick_ms, args.format, args.per_message))
            acked_at = time.monotonic()
            phase.load = os.getloadavg()[0]
            stored = wait_tail(worker, phase, stored, last_ms, acked_at, args.lag_timeout,
                               bound_s, settings.graph.bucket_ms, args.verbose)
            phases.append(phase)
            print(f"rate {rate:,}: sent {phase.points:,} at {phase.achieved:,.0f}/s; stored "
                  f"+{_s(phase.stored_after_s)} s, detected +{_s(phase.detected_after_s)} s, "
                  f"correlated +{_s(phase.correlated_after_s)} s", flush=True)
    except BaseException:
        if worker is not None and worker.proc is not None:
            print(f"worker log tail:\n{worker.log_tail()}", file=sys.stderr)
        raise
    finally:
        if worker is not None:
            print(worker.stop(), flush=True)
        release(started_broker, broker_dir, settings, suffix, root)
    print_table(phases, args.format, bound_s)
    print(f"\ncommand: {command}")
    if args.json:
        print(json.dumps([{k: (None if isinstance(v, float) and v != v else v)
                           for k, v in asdict(p).items()} for p in phases]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
