"""Cost of the metric detectors, and throughput of the stream logic with models on.

1. µs per point and bytes of state per series for each metric detector: the seasonal
   ensemble (the default; and its opt-in context tier) and the robust seasonal scorer
   through the series bank at several batch widths (how many series a batch touches),
   1,000 series in 40 services' banks scored one bank after another or together
   (``process_banks``, as the detect step does), and the per-object river-based
   detectors.
2. Time to first possible detection of a new series: a series sampled once a minute
   shifts by 20 sigma at its k-th point; the first k at which the engine's alarm fires
   (threshold 0.6, 4 points out of band), cold and seeded with an hour of history.
3. Records/s of the stream logic over simulated telemetry (metrics, logs, spans):
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
from models.ensemble import SeasonalEnsemble  # noqa: E402
from models.forecast import ForecastResidual, HalfSpaceTreesScorer  # noqa: E402
from models.series import SeriesBank, process_banks  # noqa: E402
from models.univariate import RobustSeasonal  # noqa: E402
from pipeline.detect.replay import split_by_service  # noqa: E402
from pipeline.events.codec import decode_values  # noqa: E402
from pipeline.events.schema import RecordKind  # noqa: E402
from pipeline.simulate import load_system, simulate, wire_batches  # noqa: E402

T0 = 1_718_000_000_000
SIGNALS = {RecordKind.METRIC: "metrics", RecordKind.LOG: "logs", RecordKind.SPAN: "traces"}


def bank_cost(width: int, rounds: int, detector=None) -> tuple[float, int]:
    """µs per point with ``width`` series per batch (one point each), bytes per series."""
    rng = np.random.default_rng(0)
    bank = SeriesBank(detector if detector is not None else SeasonalEnsemble())
    slots = bank.slots([f"s{i}" for i in range(width)])
    values = 50 + rng.standard_normal((rounds, width))
    began = time.perf_counter()
    for r in range(rounds):
        bank.process(slots, np.full(width, T0 + r * 10_000, dtype=np.int64), values[r],
                     0.6, 0.42, 3)
    elapsed = time.perf_counter() - began
    return elapsed / (rounds * width) * 1e6, bank.bytes_per_series


def banks_cost(services: int, per_service: int, rounds: int, joint: bool) -> float:
    """µs per point when ``services`` banks of ``per_service`` series each take a batch
    (one point per series): each bank's ``process`` in turn (as the detect step scored
    one service after another), or all banks in one :func:`process_banks` call (as it
    does now)."""
    rng = np.random.default_rng(0)
    banks = [SeriesBank(SeasonalEnsemble()) for _ in range(services)]
    slots = [b.slots([f"s{i}" for i in range(per_service)]) for b in banks]
    values = 50 + rng.standard_normal((rounds, services, per_service))
    began = time.perf_counter()
    for r in range(rounds):
        times = np.full(per_service, T0 + r * 10_000, dtype=np.int64)
        parts = [(b, s, times, values[r, k])
                 for k, (b, s) in enumerate(zip(banks, slots, strict=True))]
        if joint:
            process_banks(parts, 0.6, 0.42, 3)
        else:
            for bank, s, t, v in parts:
                bank.process(s, t, v, 0.6, 0.42, 3)
    return (time.perf_counter() - began) / (rounds * services * per_service) * 1e6


def first_detection(seeded: bool, seeds: int = 20, longest: int = 120) -> tuple[int, float]:
    """The smallest shift position k (points into the series' life) at which a 20-sigma
    shift fires within 10 points for at least 90 % of ``seeds`` noise draws; and the
    median points from the shift to the alarm at that k."""
    minute = 60_000
    for k in range(1, longest):
        delays = []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            bank = SeriesBank(SeasonalEnsemble(rest_points=180))
            if seeded:  # an hour of stored history before the worker met the series
                hist = 50 + rng.standard_normal(60)
                bank.seed(["s"] * 60, T0 - minute * np.arange(60, 0, -1), hist)
            values = 50 + rng.standard_normal(k + 10)
            values[k:] += 20.0
            t = T0 + np.arange(values.size) * minute
            res = bank.process(bank.slots(["s"] * values.size), t, values, 0.6, 0.42, 4, 360)
            fired = [i for i, state in res.events if state == "firing" and i >= k]
            if fired:
                delays.append(fired[0] - k)
        if len(delays) >= 0.9 * seeds:
            return k, float(np.median(delays))
    return longest, float("nan")


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
    for label, make in (("seasonal-ensemble (default)", SeasonalEnsemble),
                        ("seasonal-ensemble + context tier", lambda: SeasonalEnsemble(
                            context=True)),
                        ("robust-seasonal (previous default)", RobustSeasonal)):
        for width, rounds in ((1, 3000), (20, 1500), (1_000, 200), (100_000, 5)):
            us, size = bank_cost(width, rounds, make())
            print(f"  {label:34s} series bank, {width:>7,} series per batch: "
                  f"{us:8.2f} µs/point, {size} B/series")
    for joint in (False, True):
        how = ("one process_banks call" if joint else "one bank after another")
        print(f"  seasonal-ensemble, 1,000 series as 40 services' banks of 25, {how}: "
              f"{banks_cost(40, 25, 100, joint):8.2f} µs/point")
    for seeded in (False, True):
        k, delay = first_detection(seeded)
        how = "seeded with 1 h of history" if seeded else "cold, no history"
        print(f"  time to first possible detection ({how}): a 20-sigma shift at point "
              f"{k} of a new series fires (90 % of draws), {delay:.0f} points after it")
    for name, det in (("seasonal-ensemble, one object", SeasonalEnsemble()),
                      ("holt-winters (river), seasonality 24",
                       ForecastResidual(seasonality=24)),
                      ("half-space-trees (river)", HalfSpaceTreesScorer())):
        us, size = object_cost(det)
        print(f"  {name:47s} {us:8.2f} µs/point, {size:,} B/series (pickled)")
    stream(args.minutes)


if __name__ == "__main__":
    main()
