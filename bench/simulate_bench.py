"""Simulator throughput: metric points generated and JSON-encoded per second, one core.

Pure generation + encoding (no Kafka): the default system is simulated metrics-only,
its points cut into batches of 100 wire dicts, each batch encoded as one JSON-array
message, as the Kafka producer sends them. The issue's target is >= 500,000 points/s.
A second figure shows the full mix (metrics, logs, spans) for reference.

    .venv/bin/python bench/simulate_bench.py [--hours 24] [--seed 1]
"""

from __future__ import annotations

import argparse
import time

from pipeline.events.schema import RecordKind
from pipeline.simulate import load_system, simulate, wire_batches

START_MS = 1_718_000_000_000
TARGET = 500_000


def run(hours: float, seed: int, kinds: tuple[str, ...]) -> tuple[dict[str, int], int, float]:
    """Generate + encode; return record counts per kind, bytes and elapsed seconds."""
    sim = simulate(load_system(), START_MS, int(hours * 3_600_000), seed, mixed=True,
                   kinds=kinds)
    counts = {kind.value: 0 for kind in RecordKind}
    size = 0
    began = time.perf_counter()
    for batch in wire_batches(sim, batch_size=100, flush_each_tick=False):
        size += len(batch.encode())
        counts[batch.kind.value] += len(batch.records)
    return counts, size, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    counts, size, elapsed = run(args.hours, args.seed, ("metric",))
    rate = counts["metric"] / elapsed
    verdict = "OK" if rate >= TARGET else "BELOW TARGET"
    print(f"metrics only: {counts['metric']:,} points in {elapsed:.2f}s = {rate:,.0f} points/s "
          f"generated + JSON-encoded in batches of 100 ({size / elapsed / 1e6:.0f} MB/s); "
          f"target {TARGET:,}: {verdict}")
    counts, size, elapsed = run(args.hours, args.seed, ("metric", "log", "span"))
    total = sum(counts.values())
    print(f"full mix:     {counts['metric']:,} metrics + {counts['log']:,} logs + "
          f"{counts['span']:,} spans in {elapsed:.2f}s = {total / elapsed:,.0f} records/s "
          f"({counts['metric'] / elapsed:,.0f} metric points/s)")


if __name__ == "__main__":
    main()
