"""NAB-style scores of Tocsin's detectors and of river's HalfSpaceTrees (the baseline).

Streams every series of the NAB development subset through each detector, point by
point in event time (the robust seasonal detector through the same vectorised series
bank as the stream, all series at once), and scores the result as NAB does: one
threshold per detector and profile chosen to maximise the corpus score, normalised so
the null detector scores 0 and the perfect one 100 (see ``pipeline/evaluate/nab.py``).

    .venv/bin/python bench/nab_bench.py [--detectors robust-seasonal,river-hst]
                                        [--param threshold=0.35 ...] [--json out.json]

The data directory is ``../shared/data/nab`` next to the repository, or $TOCSIN_NAB_DIR.
Published (full 58-series corpus, standard profile): Windowed Gaussian 39.6, Skyline
58.2, CAD OSE 69.9, Numenta HTM 70.1, ARTime 74.9.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.forecast import ForecastResidual, HalfSpaceTreesScorer  # noqa: E402
from models.univariate import RobustSeasonal  # noqa: E402
from pipeline.evaluate.nab import PROFILES, LabelledSeries, load_corpus, optimise  # noqa: E402
from pipeline.evaluate.score import score_many  # noqa: E402

PUBLISHED = {"Windowed Gaussian": 39.6, "Skyline": 58.2, "CAD OSE": 69.9,
             "Numenta HTM": 70.1, "ARTime": 74.9}


def nab_dir() -> Path:
    """$TOCSIN_NAB_DIR, else ``shared/data/nab`` beside the repository (or beside the
    directory of worktrees it is in)."""
    env = os.environ.get("TOCSIN_NAB_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    found = [p / "shared" / "data" / "nab" for p in here.parents[1:4]]
    return next((p for p in found if p.is_dir()), found[1])


def robust_seasonal(corpus: list[LabelledSeries], **params) -> list[np.ndarray]:
    """All series at once through one series bank (as the stream scores them)."""
    scores = score_many({s.name: (s.times_ms, s.values) for s in corpus},
                        RobustSeasonal(**params))
    return [scores[s.name] for s in corpus]


def per_point(make: Callable[[], object]) -> Callable[[list[LabelledSeries]], list[np.ndarray]]:
    """Score each series with a fresh per-object detector: score_one, then learn_one."""
    def run(corpus: list[LabelledSeries]) -> list[np.ndarray]:
        out = []
        for s in corpus:
            det = make()
            scores = np.zeros(len(s.values))
            for i, (t, v) in enumerate(zip(s.times_ms.tolist(), s.values.tolist(),
                                           strict=True)):
                x = {"value": v, "time": t}
                scores[i] = det.score_one(x)
                det.learn_one(x)
            out.append(scores)
        return out
    return run


def river_hst() -> object:
    """river's HalfSpaceTrees with defaults behind a min-max scaler (its documented use)."""
    from river import anomaly, compose, preprocessing

    class Baseline:
        def __init__(self) -> None:
            self.model = compose.Pipeline(preprocessing.MinMaxScaler(),
                                          anomaly.HalfSpaceTrees(seed=42))

        def score_one(self, x: dict) -> float:
            return self.model.score_one({"value": x["value"]})

        def learn_one(self, x: dict) -> None:
            self.model.learn_one({"value": x["value"]})

    return Baseline()


def detectors(params: dict) -> dict[str, Callable[[list[LabelledSeries]], list[np.ndarray]]]:
    return {
        "robust-seasonal": lambda corpus: robust_seasonal(corpus, **params),
        "holt-winters": per_point(lambda: ForecastResidual(seasonality=0, gamma=None)),
        "half-space-trees": per_point(lambda: HalfSpaceTreesScorer()),
        "river-hst": per_point(river_hst),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", default="robust-seasonal,river-hst")
    parser.add_argument("--param", action="append", default=[],
                        help="robust-seasonal parameter override, e.g. threshold=0.4")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    params = {k: json.loads(v) for k, v in (p.split("=", 1) for p in args.param)}
    root = nab_dir()
    corpus = load_corpus(root)
    n_points = sum(len(s.values) for s in corpus)
    n_windows = sum(len(s.windows) for s in corpus)
    print(f"NAB development subset at {root}: {len(corpus)} series, {n_points:,} points, "
          f"{n_windows} anomaly windows")
    available = detectors(params)
    results = {}
    for name in args.detectors.split(","):
        began = time.perf_counter()
        scores = available[name](corpus)
        elapsed = time.perf_counter() - began
        res = {p: optimise(corpus, scores, p) for p in PROFILES}
        results[name] = {p: {"score": round(r.score, 1), "threshold": r.threshold,
                             "tp": r.tp, "fp": r.fp, "fn": r.fn} for p, r in res.items()}
        std = res["standard"]
        print(f"{name:18s} standard {res['standard'].score:5.1f}  reward_low_FP "
              f"{res['reward_low_FP_rate'].score:5.1f}  reward_low_FN "
              f"{res['reward_low_FN_rate'].score:5.1f}   (standard: threshold "
              f"{std.threshold:.4f}, {std.tp} windows found, {std.fn} missed, {std.fp} false "
              f"positives; {elapsed:.1f}s, {n_points / elapsed:,.0f} points/s)")
    print("published, standard profile, full corpus: " + ", ".join(
        f"{k} {v}" for k, v in PUBLISHED.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
