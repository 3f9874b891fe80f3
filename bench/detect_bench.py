"""The detect step alone, offline, on the ingest benchmark's workload.

The points of ``bench/ingest_bench.py`` (200 services x 5 hosts x 5 metrics by default)
are decoded, cut into ingest batches of ``--batch`` messages of ``--per-message`` points
and forwarded per service as the ingest agent does (one Arrow slice per service and batch,
a tick per partition after each batch). Each batch is one :class:`DetectionStep` run with
the worker's default engines (rules and models), metric slices of all services scored
together (``--per-slice``: one by one, as before); states go through bytes between steps
as through the worker's tables. No broker, no store: ``--history`` adds a history reader
that returns nothing (the cost of asking, not of a query).

``--live-rate R`` gives the step the shape of a live worker at R points/s instead (as
``bench/live_bench.py`` produces: every series in turn, stamped with the time, one
ingest batch per 0.5 s, ``ingest.batch_within_ms``): small slices, few of them closing a
window. The first ``--warm-steps`` steps (new series, new states) are not counted.

    .venv/bin/python bench/detect_bench.py [--points 200000] [--profile FILE]
    .venv/bin/python bench/detect_bench.py --live-rate 20000 --points 400000
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import logging
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_bench import make_points  # noqa: E402
from live_bench import Source  # noqa: E402

from pipeline.agents.detect import partition_of  # noqa: E402
from pipeline.detect.engines import build_engines  # noqa: E402
from pipeline.detect.live import LIVE_STATE_BYTES  # noqa: E402
from pipeline.detect.step import MAX_STEP_RECORDS, DetectionStep, Message  # noqa: E402
from pipeline.events.codec import decode_values  # noqa: E402
from pipeline.events.schema import RecordKind  # noqa: E402
from pipeline.events.slices import TICK_KEY, Tick, encode_ticks, split_by_service  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402

NOW_MS = 1_764_000_000_000
logging.getLogger("tocsin.detect").setLevel(logging.ERROR)  # late records are counted


def step_batches(points: list[dict[str, Any]], per_message: int, batch: int,
                 partitions: int) -> list[list[Message]]:
    """The by-service messages each ingest batch forwards, slices then ticks."""
    out = []
    size = per_message * batch
    for start in range(0, len(points), size):
        chunk = points[start:start + size]
        values = [orjson.dumps(chunk[i:i + per_message])
                  for i in range(0, len(chunk), per_message)]
        decoded = decode_values(RecordKind.METRIC, values, NOW_MS + 60_000)
        forwarded = split_by_service("metrics", decoded.to_arrow(), 1 << 20)
        messages = [Message(partition_of(k, partitions), k, v) for k, v in forwarded.messages]
        tick = encode_ticks([Tick("metrics/0", max(p["time"] for p in chunk), False)])
        messages += [Message(p, TICK_KEY, tick) for p in range(partitions)]
        out.append(messages)
    return out


def live_batches(points: int, rate: int, series: int, partitions: int,
                 batch_ms: int = 500) -> list[list[Message]]:
    """The by-service messages of a live worker's ingest batches at ``rate`` points/s:
    one batch per ``batch_ms`` of points stamped with their time, 100 per message."""
    source = Source(series)
    per_batch = max(1, rate * batch_ms // 1000)
    return [messages
            for k in range(max(1, points // per_batch))
            for messages in step_batches(source.take(per_batch, NOW_MS + k * batch_ms), 100,
                                         per_batch, partitions)]


def run(batches: list[list[Message]], history: bool, batched: bool = True,
        only: str | None = None, states: dict[tuple[str, str], bytes] | None = None,
        warm_steps: int = 0, per_step: list[float] | None = None,
        **options: Any) -> tuple[float, list, int]:
    """CPU seconds in the step (the first ``warm_steps`` not counted; each counted
    step's appended to ``per_step``), every detection, history reads; ``states``
    (engine, service) -> bytes are kept in the dict given; ``options`` go to the step."""
    settings = load_settings(environ={})
    engines = build_engines(settings)
    if only:
        engines = {only: engines[only]}
    reads = [0]

    def nothing(service: str, series: Any, before_ms: int) -> dict[str, Any]:
        reads[0] += 1
        return {"time": [], "host": [], "name": [], "value": []}

    step = DetectionStep(engines, settings.detect.allowed_lateness_ms,
                         nothing if history else None, batched=batched, **options)
    states = {} if states is None else states
    detections = []
    spent = 0.0
    for n, messages in enumerate(batches):
        began = time.process_time()
        result = step.run(messages, lambda e, s: states.get((e, s)),
                          lambda p: sorted({s for _, s in states}))
        if n >= warm_steps:
            spent += time.process_time() - began
            if per_step is not None:
                per_step.append(time.process_time() - began)
        states.update(result.states)
        detections += result.detections
    return spent, detections, reads[0]


def main(argv: list[str] | None = None) -> int:
    """Run the bench; print seconds per 100k points."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--per-message", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000, help="messages per ingest batch")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--history", action="store_true")
    parser.add_argument("--series", type=int, default=5000,
                        help="distinct series (200 services x 5 metrics x hosts, as "
                        "ingest_bench.py); with --memory, e.g. 1000000")
    parser.add_argument("--memory", action="store_true",
                        help="also print the states' bytes per engine and the peak RSS")
    parser.add_argument("--profile", metavar="FILE")
    parser.add_argument("--max-records", type=int, default=MAX_STEP_RECORDS,
                        help="metric records a step scores at once at most")
    parser.add_argument("--live-bytes", type=int, default=LIVE_STATE_BYTES,
                        help="stored bytes of the states kept decoded between steps (0: "
                        "decode every state at every step, as before)")
    parser.add_argument("--only", choices=("rules", "models"), help="run one engine")
    parser.add_argument("--live-rate", type=int, default=0, metavar="R",
                        help="live-shaped input at R points/s: one ingest batch per 0.5 s "
                        "(see the module docstring)")
    parser.add_argument("--warm-steps", type=int, default=10,
                        help="with --live-rate: first steps not counted")
    parser.add_argument("--per-slice", action="store_true",
                        help="score each metric slice alone (the step before batching)")
    args = parser.parse_args(argv)
    hosts = max(1, round(args.series / 1000))
    if args.live_rate:
        points = []
        batches = live_batches(args.points, args.live_rate, hosts * 1000, args.partitions)
    else:
        points = make_points(args.points, NOW_MS, hosts_per_service=hosts)
        batches = step_batches(points, args.per_message, args.batch, args.partitions)
    warm = min(args.warm_steps, len(batches) - 1) if args.live_rate else 0
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    del points
    states: dict[tuple[str, str], bytes] = {}
    if args.memory:  # the points and batches are built: count the step's peak from here
        gc.collect()
        before = rss_mib()
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    per_step: list[float] = []
    spent, detections, reads = run(batches, args.history, not args.per_slice, args.only, states,
                                   warm, per_step, max_records=args.max_records,
                                   live_bytes=args.live_bytes)
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    counted = args.points * (len(batches) - warm) // len(batches)
    print(f"{counted:,} points in {len(batches) - warm} steps: {spent:.2f} CPU s in the step, "
          f"{spent / counted * 1e5:.2f} s per 100k points, {len(detections)} detections, "
          f"{reads} history reads")
    if args.live_rate:  # the least disturbed steps say most on a busy machine
        per_step.sort()
        print(f"  CPU ms per step: min {per_step[0] * 1e3:.0f}, quartile "
              f"{per_step[len(per_step) // 4] * 1e3:.0f}, median "
              f"{per_step[len(per_step) // 2] * 1e3:.0f}")
    if args.memory:
        per_engine: dict[str, list[int]] = {}
        for (engine, _), value in states.items():
            per_engine.setdefault(engine, []).append(len(value))
        for engine, sizes in sorted(per_engine.items()):
            print(f"  state {engine}: {sum(sizes) / 2**20:,.1f} MiB in {len(sizes)} services "
                  f"(largest {max(sizes) / 2**20:,.2f} MiB)")
        print(f"  RSS before the steps {before:,.0f} MiB (points and messages built), "
              f"peak during them (VmHWM) {peak_mib():,.0f} MiB, after {rss_mib():,.0f} MiB")
    return 0


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_mib() -> float:
    """VmHWM of this process (peak resident set), MiB."""
    return _status_mib("VmHWM:")


def rss_mib() -> float:
    """VmRSS of this process, MiB."""
    return _status_mib("VmRSS:")


if __name__ == "__main__":
    raise SystemExit(main())
