"""Cost of the metric detectors, and throughput of the stream logic with models on.

1. µs per point and bytes of state per series for each metric detector: the robust
   seasonal scorer through the series bank at several batch widths (how many series a
   batch touches), and the per-object river-based detectors.
2. Records/s of the stream logic over simulated telemetry (metrics, logs, spans):
   decoding and splitting per service alone (the ceiling without models), then with
   the model engine on every service key, one core.

    .venv/bin/python bench/models_bench.py [--minutes 30]
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import ModelEngine  # noqa: E402
from models.forecast import ForecastResidual, HalfSpaceTreesScorer  # noqa: E402
from models.series import SeriesBank  # noqa: E402
from models.univariate import RobustSeasonal  # noqa: E402
from pipeline.detect.replay import split_by_service  # noqa: E402
from pipeline.events.codec import decode_values  # noqa: E402
from pipeline.events.schema import RecordKind  # noqa: E402
from pipeline.simulate import load_system, simulate, wire_batches  # noqa: E402

T0 = 1_718_000_000_000
SIGNALS = {RecordKind.METRIC: "metrics", RecordKind.LOG: "logs", RecordKind.SPAN: "traces"}


def bank_cost(width: int, rounds: int) -> tuple[float, int]:
    """µs per point with ``width`` series per batch (one point each), bytes per series."""
    rng = np.random.default_rng(0)
    bank = SeriesBank(RobustSeasonal())
    slots = bank.slots([f"s{i}" for i in range(width)])
    values = 50 + rng.standard_normal((rounds, width))
    began = time.perf_counter()
    for r in range(rounds):
        bank.process(slots, np.full(width, T0 + r * 10_000, dtype=np.int64), values[r],
                     0.6, 0.42, 3)
    elapsed = time.perf_counter() - began
    return elapsed / (rounds * width) * 1e6, bank.bytes_per_series


def object_cost(det, n: int = 3000) -> tuple[float, int]:
    """µs per point (score_one + learn_one) and pickled bytes of one per-series object."""
    rng = np.random.default_rng(0)
    xs = [{"value": 50 + float(v), "time": T0 + i * 10_000}
          for i, v in enumerate(rng.standard_normal(n))]
    began = time.perf_counter()
    for x in xs:
        det.score_one(x)
        det.learn_one(x)
    return (time.perf_counter() - began) / n * 1e6, len(pickle.dumps(det))


def stream(minutes: int) -> None:
    sim = simulate(load_system(), T0, minutes * 60_000, seed=1, mixed=True)
    messages = [(b.kind, b.encode()) for b in wire_batches(sim, batch_size=500,
                                                            flush_each_tick=False)]
    records = sum(m.count(b'"type"') for _, m in messages)
    now = T0 + minutes * 60_000 + 3_600_000

    def run(engine: ModelEngine | None) -> float:
        states: dict[str, object] = {}
        began = time.perf_counter()
        for kind, message in messages:
            batch = decode_values(kind, [message], now_ms=now)
            for service, cols in split_by_service(batch.columns).items():
                if engine is not None:
                    state = states.get(service) or engine.new_state()
                    states[service], _, _ = engine.process(SIGNALS[kind], cols, state)
        return time.perf_counter() - began

    ceiling = run(None)
    with_models = run(ModelEngine())
    print(f"stream logic over {minutes} simulated minutes ({records:,} records, batches of "
          f"500): decode + split {records / ceiling:,.0f} records/s (ceiling); with the "
          f"model engine {records / with_models:,.0f} records/s "
          f"({ceiling / with_models:.0%} of the ceiling)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=30)
    args = parser.parse_args()
    print("metric detectors: µs per point (score + learn), state per series")
    for width, rounds in ((1, 3000), (20, 1500), (1_000, 200), (100_000, 5)):
        us, size = bank_cost(width, rounds)
        print(f"  robust-seasonal, series bank, {width:>7,} series per batch: "
              f"{us:8.2f} µs/point, {size} B/series")
    for name, det in (("robust-seasonal, one object", RobustSeasonal()),
                      ("holt-winters (river), seasonality 24",
                       ForecastResidual(seasonality=24)),
                      ("half-space-trees (river)", HalfSpaceTreesScorer())):
        us, size = object_cost(det)
        print(f"  {name:47s} {us:8.2f} µs/point, {size:,} B/series (pickled)")
    stream(args.minutes)


if __name__ == "__main__":
    main()
