"""CPU of the detect step with and without merging a service's slices (no Kafka).

The ingest bench's points (``ingest_bench.make_points``: 200 services x 25 series, last
hour) are sent in messages of 100 points of one service, in event order, decoded in
``--ingest-batches`` ingest batches, each split by service (``split_by_service``) and
followed by a tick of the 4 source partitions, as the ingest agent forwards them. The
detect step (default rules and models) then takes them in batches of ``--detect-batch``
messages, twice: every message on its own (as before ``pipeline.detect.coalesce``) and
merged. It prints the CPU seconds of each and checks that the detections, late records
and watermarks are the same.

    .venv/bin/python bench/detect_step_bench.py [--points 200000] [--detect-batch 1000]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_bench import make_points  # noqa: E402

import pipeline.detect.step as step_module  # noqa: E402
from pipeline.detect.coalesce import operations  # noqa: E402
from pipeline.detect.engines import build_engines  # noqa: E402
from pipeline.detect.step import DetectionStep, Message  # noqa: E402
from pipeline.events.codec import decode_values  # noqa: E402
from pipeline.events.schema import RecordKind  # noqa: E402
from pipeline.events.slices import TICK_KEY, Tick, encode_ticks, split_by_service  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402


def forwarded(points: int, ingest_batches: int, now_ms: int) -> list[Message]:
    """The by-service messages (slices and ticks) the ingest agents would send."""
    by_service: dict[str, list[dict]] = {}
    for point in make_points(points, now_ms):
        by_service.setdefault(point["service.name"], []).append(point)
    values = [orjson.dumps(v[i:i + 100]) for v in by_service.values()
              for i in range(0, len(v), 100)]
    values.sort(key=lambda m: orjson.loads(m)[0]["time"])
    source = {s: zlib.crc32(s.encode()) % 4 for s in by_service}
    size = -(-len(values) // ingest_batches)
    latest: dict[int, int] = {}
    stream = []
    for k in range(0, len(values), size):
        chunk = values[k:k + size]
        batch = decode_values(RecordKind.METRIC, chunk, now_ms)
        stream += [Message(0, key, value) for key, value
                   in split_by_service("metrics", batch.to_arrow(), 1_000_000).messages]
        for value in chunk:
            records = orjson.loads(value)
            p = source[records[0]["service.name"]]
            latest[p] = max(latest.get(p, -1), max(r["time"] for r in records))
        more = k + size < len(values)
        stream.append(Message(0, TICK_KEY, encode_ticks(
            [Tick(f"metrics/{p}", t, more) for p, t in sorted(latest.items())])))
    return stream


def run(stream: list[Message], detect_batch: int, merge: bool) -> tuple[float, list[Any]]:
    """CPU seconds of the step over ``stream`` and its results."""
    step_module.operations = operations if merge else (
        lambda ms, marks, lateness: [op for m in ms for op in operations([m], marks, lateness)])
    try:
        settings = load_settings(environ={})
        step = DetectionStep(build_engines(settings), settings.detect.allowed_lateness_ms)
        states: dict[tuple[str, str], bytes] = {}
        results = []
        began = time.process_time()
        for k in range(0, len(stream), detect_batch):
            result = step.run(stream[k:k + detect_batch], lambda e, s: states.get((e, s)),
                              lambda p: sorted({s for _, s in states}), None)
            states.update(result.states)
            results.append(result)
        return time.process_time() - began, results
    finally:
        step_module.operations = operations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--ingest-batches", type=int, default=10)
    parser.add_argument("--detect-batch", type=int, default=1000, help="messages per step")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # late-record warnings: counted below instead
    stream = forwarded(args.points, args.ingest_batches, int(time.time() * 1000))
    alone_s, alone = run(stream, args.detect_batch, merge=False)
    merged_s, merged = run(stream, args.detect_batch, merge=True)

    def key(results: list[Any]) -> tuple:
        return ([(d.id, d.time, d.state) for r in results for d in r.detections],
                sum(r.late_records for r in results), [r.watermark_ms for r in results])

    print(f"{args.points:,} points, {len(stream):,} by-service messages, steps of "
          f"{args.detect_batch}: one by one {alone_s:.2f} s CPU, merged {merged_s:.2f} s "
          f"({1 - merged_s / alone_s:.0%} less); same detections, late records and "
          f"watermarks: {key(alone) == key(merged)}")
    return 0 if key(alone) == key(merged) else 1


if __name__ == "__main__":
    sys.exit(main())
