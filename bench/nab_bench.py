"""NAB scores of Tocsin's metric detectors, in-sample and cross-validated by category.

Every series of the NAB development subset (42 series, 6 categories) is streamed once, in
order, through each detector: the vectorised detectors with every (configuration,
series) as a column of one pass over time (``pipeline.evaluate.nab.score_configs``; the
same numbers as the stream's series bank), river baselines point by point. Two ways to
turn scores into detections are reported, each with the standard, reward-low-FP and
reward-low-FN profiles:

- **NAB**: the detector's scores as they are, one threshold per profile chosen by NAB's
  optimiser (how published NAB figures are made);
- **alerts**: the detector's own alerts (score at or above its ``threshold``, then its
  ``rest_points`` of silence): the threshold and rest period are tuned over a grid.

Each figure comes *in-sample* (tuned on all 42 series) and *leave-one-category-out*:
every tuned parameter (threshold, rest period, the families switched on) is chosen on
the other five categories and the held-out category is scored with it; the held-out
results are pooled into one score. The cross-validated figure is the one that says what
to expect on series nobody tuned on.

    .venv/bin/python bench/nab_bench.py [--quick] [--baselines] [--json out.json]

The data directory is ``../shared/data/nab`` (next to the repository or its worktree
folder), or $TOCSIN_NAB_DIR. Published (full 58-series corpus, standard profile, NAB
protocol): Windowed Gaussian 39.6, Skyline 58.2, CAD OSE 69.9, Numenta HTM 70.1,
ARTime 74.9.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.ensemble import SeasonalEnsemble  # noqa: E402
from models.forecast import HalfSpaceTreesScorer  # noqa: E402
from models.univariate import RobustSeasonal  # noqa: E402
from pipeline.evaluate.nab import (  # noqa: E402
    PROFILES,
    LabelledSeries,
    cross_validate,
    load_corpus,
    optimise,
    score_configs,
)

PUBLISHED = {"Windowed Gaussian": 39.6, "Skyline": 58.2, "CAD OSE": 69.9,
             "Numenta HTM": 70.1, "ARTime": 74.9}
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55)
RESTS = (100, 200)
BEFORE = {"count_power": 1, "watch": 1}
"""The default before the count scale and the watch level."""
VARIANTS: dict[str, tuple[Callable[..., Any], dict[str, float]]] = {
    "robust-seasonal (previous default)": (RobustSeasonal, {}),
    "ensemble: level family only": (SeasonalEnsemble,
                                     {**BEFORE, "likelihood": 0, "threshold": 0.35}),
    "ensemble: no rest (nor quiet) after alarms": (SeasonalEnsemble, {"rest_points": 0}),
    "ensemble: tails not learnt (tail_rate 0)": (SeasonalEnsemble, {"tail_rate": 0}),
    "ensemble: level + likelihood (before)": (SeasonalEnsemble, BEFORE),
    "ensemble: without the count scale": (SeasonalEnsemble, {"count_power": 1}),
    "ensemble: without the watch level": (SeasonalEnsemble, {"watch": 1}),
    "ensemble (default)": (SeasonalEnsemble, {}),
    "ensemble + context tier (opt-in)": (SeasonalEnsemble, {"context": 1}),
}
"""The ablation: each family's contribution, under the same tuning."""
WATCHES = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 1.0)
COUNT_POWERS = (1.0, 0.5)
"""NAB protocol, chosen per fold: the watch level (1: off) and the count scale."""


def nab_dir() -> Path:
    """$TOCSIN_NAB_DIR, else ``shared/data/nab`` beside the repository (or beside the
    directory of worktrees it is in)."""
    env = os.environ.get("TOCSIN_NAB_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    found = [p / "shared" / "data" / "nab" for p in here.parents[1:4]]
    return next((p for p in found if p.is_dir()), found[1])


def alerts(scores: list[np.ndarray], threshold: float) -> list[np.ndarray]:
    """A detector's alerts as 0/1 per point (its score reached its threshold)."""
    return [(s >= threshold).astype(np.float64) for s in scores]


def summary(corpus: list[LabelledSeries], candidates: Mapping[str, list[np.ndarray]]
            ) -> dict[str, dict[str, float]]:
    """In-sample (best candidate and threshold on all series) and leave-one-category-out
    scores per profile."""
    out: dict[str, dict[str, float]] = {}
    for profile in PROFILES:
        best = max(optimise(corpus, c, profile).score for c in candidates.values())
        cv = cross_validate(corpus, candidates, profile)
        out[profile] = {"in_sample": round(best, 1), "cross_validated": round(cv.score, 1),
                        "folds": {f.held_out: f.config for f in cv.folds}}
    return out


def per_point(make: Callable[[], Any]) -> Callable[[list[LabelledSeries]], list[np.ndarray]]:
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


def river_hst() -> Any:
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


def watch_grid(corpus: list[LabelledSeries]) -> dict[str, dict[str, float]]:
    """NAB protocol with the watch level and the count scale chosen per held-out fold
    (and in-sample, the best of the grid)."""
    grid = [{"watch": w, "count_power": c} for c in COUNT_POWERS for w in WATCHES]
    scored = score_configs(corpus, SeasonalEnsemble, grid)
    return summary(corpus, {f"watch {c['watch']} count_power {c['count_power']}": s
                            for c, s in zip(grid, scored, strict=True)})


def line(name: str, res: Mapping[str, Mapping[str, float]]) -> str:
    cells = "  ".join(f"{res[p]['in_sample']:5.1f} / {res[p]['cross_validated']:5.1f}"
                      for p in PROFILES)
    return f"  {name:40s} {cells}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="the default variant only (one pass, about 30 s)")
    parser.add_argument("--baselines", action="store_true",
                        help="also river's HalfSpaceTrees, point by point (minutes)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    root = nab_dir()
    corpus = load_corpus(root)
    n_points = sum(len(s.values) for s in corpus)
    print(f"NAB development subset at {root}: {len(corpus)} series, {n_points:,} points, "
          f"{sum(len(s.windows) for s in corpus)} anomaly windows, "
          f"{len({s.name.split('/')[0] for s in corpus})} categories")
    header = "  ".join(f"{p[:18]:>15s}" for p in PROFILES)
    variants = {k: v for k, v in VARIANTS.items() if not args.quick or "(default)" in k}
    results: dict[str, Any] = {"nab": {}, "alerts": {}}
    pooled: dict[str, list[np.ndarray]] = {}
    nab_pooled: dict[str, list[np.ndarray]] = {}
    grid = [{"threshold": th, "rest_points": rp} for th in THRESHOLDS for rp in RESTS]
    print(f"NAB protocol (scores as they are; threshold tuned), in-sample / "
          f"cross-validated:\n  {'':40s} {header}")
    alert_lines = []
    for name, (cls, fixed) in variants.items():
        began = time.perf_counter()
        configs = [{**fixed, **g} for g in grid]
        scored = score_configs(corpus, cls, [fixed, *configs])
        elapsed = time.perf_counter() - began
        results["nab"][name] = summary(corpus, {name: scored[0]})
        print(line(name, results["nab"][name]) + f"   ({elapsed:.0f}s for "
              f"{len(configs) + 1} configurations)")
        cands = {f"{name} {c}": alerts(s, c["threshold"])
                 for c, s in zip(configs, scored[1:], strict=True)}
        if cls is SeasonalEnsemble:
            pooled.update(cands)
            nab_pooled[name] = scored[0]
        results["alerts"][name] = summary(corpus, cands)
        alert_lines.append(line(name, results["alerts"][name]))
    if not args.quick:
        name = "ensemble, watch and count scale per fold"
        results["nab"][name] = watch_grid(corpus)
        print(line(name, results["nab"][name]) + f"   (watch {WATCHES}, count_power "
              f"{COUNT_POWERS}; chosen: {results['nab'][name]['standard']['folds']})")
    if len(variants) > 1:
        results["nab"]["ensemble, variant chosen by CV"] = summary(corpus, nab_pooled)
        print(line("ensemble, variant chosen by CV", results["nab"]["ensemble, variant "
                                                              "chosen by CV"]))
        results["alerts"]["ensemble, switches chosen by CV"] = summary(corpus, pooled)
        alert_lines.append(line("ensemble, switches chosen by CV",
                                results["alerts"]["ensemble, switches chosen by CV"]))
    print(f"alerts protocol (threshold {THRESHOLDS}, rest {RESTS} tuned), in-sample / "
          f"cross-validated:\n  {'':40s} {header}")
    print("\n".join(alert_lines))
    if args.baselines:
        for name, run in (("river HalfSpaceTrees (defaults)", per_point(river_hst)),
                          ("half-space-trees (calibrated)",
                           per_point(lambda: HalfSpaceTreesScorer()))):
            results["nab"][name] = summary(corpus, {name: run(corpus)})
            print(line(name, results["nab"][name]))
    print("published, standard profile, NAB protocol, full corpus: " + ", ".join(
        f"{k} {v}" for k, v in PUBLISHED.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
