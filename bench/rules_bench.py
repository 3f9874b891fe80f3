"""Rule-engine throughput: simulator metric points per second through all built-in rules.

Pure engine, no Kafka: ``--hours`` of the default system's metrics (with its labelled
incident mix) are generated, JSON-encoded and decoded by the stream's codec once, up
front; then the codec columns are cut into batches of ``--ticks`` ticks (10 s each) and
split per service, as the detector agent receives them. Timed:

1. the codec decode of the same points: the ceiling the stream cannot beat;
2. the per-service split of mixed batches (``split_by_service``);
3. ``engine.process`` over every per-service batch plus an ``advance`` of every service
   per batch (as an agent might for services without data): points/s through all
   built-in rules, for several batch sizes (small batches pay a fixed cost per rule);
   then the same with every service's slice of a batch in one ``process_many`` (as the
   detect step folds them);
4. state: serialized bytes per active (rule, series) and ``to_bytes``/``from_bytes``
   time per service state.

Times are CPU seconds of this process (``time.process_time``), so a busy machine skews
them less than wall-clock times would.

    .venv/bin/python bench/rules_bench.py [--hours 6] [--ticks 6] [--seed 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from detectors import RuleEngine, ServiceState, builtin_rule_paths, load_rules
from pipeline.detect.replay import decode_wire, split_by_service, take
from pipeline.events.schema import RecordKind
from pipeline.simulate import load_system, simulate, tick_wire

START_MS = 1_718_000_000_000


def prepare(hours: float, seed: int) -> tuple[dict, float, np.ndarray]:
    """Decoded metric columns of the run, codec decode seconds, and tick start times."""
    sim = simulate(load_system(), START_MS, int(hours * 3_600_000), seed, mixed=True,
                   kinds=("metric",))
    records = [r for tick in sim for r in tick_wire(tick)[RecordKind.METRIC]]
    began = time.process_time()
    columns, rejected = decode_wire(RecordKind.METRIC, records)
    decode_s = time.process_time() - began
    assert not rejected, rejected[:3]
    return columns, decode_s, np.unique(columns["time"])


def batches(columns: dict, ticks: np.ndarray, per_batch: int) -> list[list[tuple]]:
    """Per batch of ``per_batch`` ticks: [(service, columns), ...] (split not timed)."""
    out = []
    t = columns["time"]
    edges = np.searchsorted(t, ticks[::per_batch])
    edges = np.append(edges, t.size)
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        part = take(columns, np.arange(lo, hi))
        out.append(sorted(split_by_service(part).items()))
    return out


def run(columns: dict, ticks: np.ndarray, per_batch: int, together: bool = False
        ) -> dict[str, float]:
    """Time the engine over the batches (``together``: every service's slice of a batch
    in one ``process_many``); return the figures."""
    engine = RuleEngine(load_rules(builtin_rule_paths()))
    work = batches(columns, ticks, per_batch)
    states: dict[str, ServiceState] = {}
    points = detections = calls = 0
    began = time.process_time()
    for batch in work:
        end = 0
        for service, _ in batch:
            states.setdefault(service, engine.new_state())
        if together:
            outs = engine.process_many([("metrics", cols, states[service])
                                        for service, cols in batch])
        else:
            outs = [engine.process("metrics", cols, states[service]) for service, cols in batch]
        for (service, cols), (state, found, stats) in zip(batch, outs, strict=True):
            states[service] = state
            points += stats.records
            detections += len(found)
            calls += 1
            end = max(end, int(cols["time"][-1]))
        for service in states:
            states[service], found = engine.advance(states[service], end - 60_000)
            detections += len(found)
    engine_s = time.process_time() - began
    blobs = {s: st.to_bytes() for s, st in states.items()}
    began = time.process_time()
    for _ in range(20):
        for state in states.values():
            state.to_bytes()
    dump_s = (time.process_time() - began) / 20 / len(states)
    began = time.process_time()
    for _ in range(20):
        for blob in blobs.values():
            ServiceState.from_bytes(blob)
    load_s = (time.process_time() - began) / 20 / len(states)
    series = sum(st.series_count() for st in states.values())
    size = sum(len(b) for b in blobs.values())
    return {"points": points, "engine_s": engine_s, "calls": calls, "detections": detections,
            "series": series, "state_bytes": size, "dump_ms": dump_s * 1e3,
            "load_ms": load_s * 1e3, "services": len(states)}


def split_rate(columns: dict, ticks: np.ndarray, per_batch: int) -> float:
    """Points/s of splitting mixed batches per service (the agent's grouping)."""
    t = columns["time"]
    edges = np.append(np.searchsorted(t, ticks[::per_batch]), t.size)
    began = time.process_time()
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        split_by_service(take(columns, np.arange(lo, hi)))
    return t.size / (time.process_time() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=6.0, help="simulated hours")
    parser.add_argument("--ticks", type=int, nargs="+", default=[1, 6, 60],
                        help="ticks (10 s) per batch; several values run several times")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    columns, decode_s, ticks = prepare(args.hours, args.seed)
    n = columns["time"].size
    rules = len(load_rules(builtin_rule_paths()).rules)
    print(f"{n:,} metric points, {args.hours:g} h of {len(set(columns['service']))} services, "
          f"{rules} built-in rules (all signals; metric rules do the work here)")
    print(f"codec decode (ceiling of the stream): {n / decode_s:,.0f} points/s")
    print(f"per-service split of mixed batches: {split_rate(columns, ticks, 6):,.0f} points/s")
    for per_batch in args.ticks:
        for together in (False, True):
            f = run(columns, ticks, per_batch, together)
            rate = f["points"] / f["engine_s"]
            how = "all services at once" if together else "one service at a time"
            print(f"batches of {per_batch:>3} tick(s), {how:>21}: {rate:>10,.0f} points/s "
                  f"({f['calls']:,} slices, {f['engine_s'] / f['calls'] * 1e3:.2f} ms "
                  f"each, {f['detections']} detections)")
    print(f"state: {f['series']:,} active (rule, series) in {f['services']} services, "
          f"{f['state_bytes']:,} bytes serialized = {f['state_bytes'] / f['series']:.0f} "
          f"bytes per series; to_bytes {f['dump_ms']:.2f} ms, from_bytes "
          f"{f['load_ms']:.2f} ms per service state")


if __name__ == "__main__":
    main()
