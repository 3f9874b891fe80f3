"""Correlator throughput: detections per second into problems, by batch size.

Pure logic, no Kafka: synthetic floods of firing detections, in event-time order, go
through :class:`pipeline.correlate.Correlator` in batches, as the correlate agent takes
them. Two shapes:

- ``incidents``: ``--incidents`` separate incidents 45 min apart, each a few services of a
  300-service call graph firing several rules on their hosts for 10 min (small problems);
- ``storm``: every detection on one shared set of hosts, so all of them join one problem
  that grows to thousands of members (the worst case: work per detection grows with the
  problem).

Times are CPU seconds of this process (``time.process_time``).

    .venv/bin/python bench/correlate_bench.py [--detections 4000] [--incidents 40]
"""

from __future__ import annotations

import argparse
import random
import time

from pipeline.correlate import CorrelateSettings, CorrelationState, Correlator
from pipeline.events.detection import Detection, detection_id
from pipeline.knowledge import load_knowledge

T0 = 1_764_000_000_000
HOUR = 3_600_000
SERVICES = 300


def _graph(rng: random.Random) -> dict[str, tuple[str, ...]]:
    """A layered call graph: each service calls two or three of the next layer."""
    names = [f"svc-{i}" for i in range(SERVICES)]
    return {s: tuple(rng.sample(names[(i // 30 + 1) * 30:(i // 30 + 2) * 30], 3))
            for i, s in enumerate(names) if (i // 30 + 2) * 30 <= SERVICES}


def _detection(rule: str, service: str, host: str, t: int) -> Detection:
    labels = {"service.name": service, "host.name": host}
    return Detection(id=detection_id(rule, labels, t, "firing"), time=t, detector=rule,
                     detector_version="1", signal="metrics", service=service,
                     category="availability", severity="high", state="firing",
                     title=rule, observed=0.3, threshold=0.05, score=0.8,
                     window_start=t - 60_000, window_end=t, host=host, labels=labels)


def flood(shape: str, n: int, incidents: int, seed: int) -> list[Detection]:
    """``n`` firing detections of the given shape, in time order."""
    rng = random.Random(seed)
    out = []
    if shape == "storm":
        for _ in range(n):
            svc = f"svc-{rng.randrange(SERVICES)}"
            out.append(_detection(f"rule-{rng.randrange(20)}", svc,
                                  f"node-{rng.randrange(50)}", T0 + rng.randrange(HOUR)))
    else:
        for _ in range(n):
            k = rng.randrange(incidents)
            svc = f"svc-{(k * 7 + rng.randrange(4)) % SERVICES}"
            out.append(_detection(f"rule-{rng.randrange(10)}", svc, f"{svc}-{rng.randrange(3)}",
                                  T0 + k * 45 * 60_000 + rng.randrange(10 * 60_000)))
    return sorted(out, key=lambda d: (d.time, d.id))


def run(dets: list[Detection], batch: int, graph: dict) -> tuple[float, int, int]:
    """CPU seconds, problems left at the end (not merged away), decisions made."""
    corr = Correlator(CorrelateSettings(static_dependencies=graph), load_knowledge())
    state = CorrelationState.empty("default")
    merged: dict[str, bool] = {}
    decisions = 0
    began = time.process_time()
    for i in range(0, len(dets) + 1, batch):
        if i < len(dets):
            chunk = dets[i:i + batch]
            state, out = corr.on_detections(state, chunk, chunk[-1].time)
        else:
            state, out = corr.on_tick(state, dets[-1].time + 2 * HOUR)
        decisions += len(out)
        merged.update((d.problem.id, bool(d.problem.merged_into)) for d in out)
    seconds = time.process_time() - began
    return seconds, sum(not m for m in merged.values()), decisions


def main() -> None:
    """Print detections/s per shape and batch size."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--detections", type=int, default=4000)
    ap.add_argument("--incidents", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    graph = _graph(random.Random(args.seed))
    load_knowledge()
    print(f"{args.detections} firing detections per run, {SERVICES}-service graph")
    print(f"{'shape':>10} {'batch':>6} {'detections/s':>13} {'problems':>9} {'decisions':>10}")
    for shape in ("incidents", "storm"):
        dets = flood(shape, args.detections, args.incidents, args.seed)
        for batch in (1, 50, 500):
            seconds, problems, decisions = run(dets, batch, graph)
            print(f"{shape:>10} {batch:>6} {len(dets) / seconds:>13,.0f} {problems:>9} "
                  f"{decisions:>10}")


if __name__ == "__main__":
    main()
