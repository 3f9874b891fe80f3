"""NAB-style scoring (Numenta Anomaly Benchmark), written from its published description.

Each series is streamed once and a detector gives a score per point; one threshold per
detector and profile (chosen to maximise the corpus score, as NAB's optimiser does)
turns scores into detections. Inside a labelled window only the earliest detection
counts, worth ``tp_weight`` scaled by a sigmoid of its position (earlier is better);
every detection outside windows costs ``fp_weight`` scaled by how far it is past the
previous window (a detection just after a window costs little, one far away the full
weight); a window without detection costs ``fn_weight``. The first 15 % of a series
(at most 750 points) is probation and is not scored. Corpus scores are normalised so
that the null detector (no detections) scores 0 and the perfect one 100.

>>> round(float(scaled_sigmoid(np.array([-1.0, 0.0, 3.0]))[0]), 5)
0.98661
"""

from __future__ import annotations

import csv
import inspect
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_FP_rate": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}
PROBATION_FRACTION = 0.15
PROBATION_CAP = 750


def parse_timestamp_ms(text: str) -> int:
    """``2014-04-10 07:15:00[.000000]`` (UTC) as epoch milliseconds."""
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return int(datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp() * 1000)


@dataclass(frozen=True)
class LabelledSeries:
    """One NAB series: times (epoch ms), values and anomaly windows as index pairs."""

    name: str
    times_ms: np.ndarray
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]  # inclusive [first, last] point indices


def read_series_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A ``timestamp,value`` CSV as (epoch-ms int64 array, float64 array)."""
    times, values = [], []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            times.append(parse_timestamp_ms(row["timestamp"]))
            values.append(float(row["value"]))
    return np.asarray(times, dtype=np.int64), np.asarray(values, dtype=np.float64)


def load_corpus(nab_dir: str | Path, names: Iterable[str] | None = None) -> list[LabelledSeries]:
    """The series of a NAB directory (``data/``, ``combined_windows.json``), sorted by name."""
    root = Path(nab_dir)
    windows = json.loads((root / "combined_windows.json").read_text())
    wanted = sorted(windows) if names is None else list(names)
    out = []
    for name in wanted:
        times, values = read_series_csv(root / "data" / name)
        pairs = []
        for start, end in windows[name]:
            first = int(np.searchsorted(times, parse_timestamp_ms(start), side="left"))
            last = int(np.searchsorted(times, parse_timestamp_ms(end), side="right")) - 1
            if last >= first:
                pairs.append((first, last))
        out.append(LabelledSeries(name, times, values, tuple(pairs)))
    return out


def scaled_sigmoid(position: np.ndarray) -> np.ndarray:
    """NAB's reward curve: ~1 at a window's left edge, 0 at its right edge, -1 far past it."""
    out = 2.0 / (1.0 + np.exp(5.0 * position)) - 1.0
    return np.where(position >= 3.0, -1.0, out)


def probation_length(n: int) -> int:
    """Points at the start of a series that are not scored."""
    return int(min(math.floor(PROBATION_FRACTION * n), PROBATION_FRACTION * 5000))


def point_weights(series: LabelledSeries, profile: Mapping[str, float]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per point: the score a detection there earns, and its window number (-1 outside).

    Probationary points get window number -2 (never scored).
    """
    n = len(series.values)
    idx = np.arange(n)
    weight = np.full(n, -profile["fp"])  # before any window: a full false positive
    window = np.full(n, -1, dtype=np.int64)
    max_tp = float(scaled_sigmoid(np.array([-1.0]))[0])
    for k, (first, last) in enumerate(series.windows):
        width = last - first + 1
        inside = slice(first, last + 1)
        weight[inside] = profile["tp"] * scaled_sigmoid(
            -(last - idx[inside] + 1) / width) / max_tp
        window[inside] = k
        end = series.windows[k + 1][0] if k + 1 < len(series.windows) else n
        after = slice(last + 1, end)
        past = np.abs(idx[after] - last) / max(width - 1, 1)
        weight[after] = profile["fp"] * scaled_sigmoid(past)
    window[: probation_length(n)] = -2
    return weight, window


@dataclass(frozen=True)
class NabResult:
    """A detector's corpus result for one profile."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    tp: int
    fp: int
    fn: int

    @property
    def score(self) -> float:
        """Normalised: null detector 0, perfect detector 100 (NaN without windows: a
        corpus of clean series only has false positives to count)."""
        if self.perfect == self.null:
            return math.nan
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def _flatten(corpus: list[LabelledSeries], scores: list[np.ndarray], profile: Mapping[str, float]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Scored points of the corpus: score, weight, global window id (-1 outside); and the
    number of scored windows."""
    all_scores, all_weights, all_windows = [], [], []
    offset = 0
    for series, s in zip(corpus, scores, strict=True):
        weight, window = point_weights(series, profile)
        keep = window != -2
        scored_windows = np.unique(window[keep & (window >= 0)])
        remap = np.full(len(series.windows) + 1, -1, dtype=np.int64)
        remap[scored_windows] = np.arange(len(scored_windows)) + offset
        all_scores.append(np.asarray(s, dtype=np.float64)[keep])
        all_weights.append(weight[keep])
        all_windows.append(np.where(window[keep] >= 0, remap[window[keep]], -1))
        offset += len(scored_windows)
    return (np.concatenate(all_scores), np.concatenate(all_weights),
            np.concatenate(all_windows), offset)


def optimise(corpus: list[LabelledSeries], scores: list[np.ndarray], profile_name: str
             ) -> NabResult:
    """The best single threshold over the corpus for one profile, and its result."""
    profile = PROFILES[profile_name]
    s, w, win, n_windows = _flatten(corpus, scores, profile)
    null = -profile["fn"] * n_windows
    perfect = profile["tp"] * n_windows
    order = np.argsort(-s, kind="stable")
    s, w, win = s[order], w[order], win[order]
    best = (null, 1.1, 0, 0)  # raw, threshold, tp windows, fp points: no detections at all
    window_best = np.full(n_windows, -profile["fn"])
    total, fp_points, tp_windows = null, 0, 0
    i, n = 0, len(s)
    while i < n:
        j = i
        while j < n and s[j] == s[i]:
            k = win[j]
            if k < 0:
                total += w[j]
                fp_points += 1
            elif w[j] > window_best[k]:
                if window_best[k] == -profile["fn"]:
                    tp_windows += 1
                total += w[j] - window_best[k]
                window_best[k] = w[j]
            j += 1
        if total > best[0]:
            best = (total, float(s[i]), tp_windows, fp_points)
        i = j
    raw, threshold, tp, fp = best
    return NabResult(profile_name, threshold, raw, null, perfect, tp, fp, n_windows - tp)


def score_at(corpus: list[LabelledSeries], scores: list[np.ndarray], profile_name: str,
             threshold: float) -> NabResult:
    """The corpus result of one profile with a threshold fixed in advance (detections:
    scores at or above it)."""
    profile = PROFILES[profile_name]
    s, w, win, n_windows = _flatten(corpus, scores, profile)
    hit = s >= threshold
    outside = hit & (win < 0)
    best = np.full(n_windows, -profile["fn"])
    np.maximum.at(best, win[hit & (win >= 0)], w[hit & (win >= 0)])
    tp = int(np.count_nonzero(best > -profile["fn"]))
    raw = float(w[outside].sum() + best.sum())
    return NabResult(profile_name, float(threshold), raw, -profile["fn"] * n_windows,
                     profile["tp"] * n_windows, tp, int(np.count_nonzero(outside)),
                     n_windows - tp)


def category(series: LabelledSeries) -> str:
    """A series' NAB category: the folder of its name (``realTweets/...``)."""
    return series.name.split("/", 1)[0]


@dataclass(frozen=True)
class FoldResult:
    """One held-out category: the setting chosen on the others, and its result there."""

    held_out: str
    config: str
    threshold: float
    train_score: float
    result: NabResult


@dataclass(frozen=True)
class CrossValidation:
    """Leave-one-category-out result of one profile: every fold, and the pooled score."""

    profile: str
    folds: tuple[FoldResult, ...]

    @property
    def score(self) -> float:
        """Held-out results pooled as one corpus (raw scores summed, then normalised)."""
        raw = sum(f.result.raw for f in self.folds)
        null = sum(f.result.null for f in self.folds)
        perfect = sum(f.result.perfect for f in self.folds)
        return 100.0 * (raw - null) / (perfect - null)


def cross_validate(corpus: list[LabelledSeries], candidates: Mapping[str, list[np.ndarray]],
                   profile_name: str) -> CrossValidation:
    """Leave one category out: for each category, choose the candidate (a detector
    configuration's scores of every series) and threshold that score best on the other
    categories, and score the held-out category with them. Every tuned parameter is
    thus chosen without the series it is judged on."""
    groups = sorted({category(s) for s in corpus})
    folds = []
    for held in groups:
        train = [i for i, s in enumerate(corpus) if category(s) != held]
        test = [i for i, s in enumerate(corpus) if category(s) == held]
        best: tuple[float, str, float] | None = None
        for name, scores in candidates.items():
            res = optimise([corpus[i] for i in train], [scores[i] for i in train],
                           profile_name)
            if best is None or res.score > best[0]:
                best = (res.score, name, res.threshold)
        assert best is not None, "no candidates"
        score, name, threshold = best
        held_res = score_at([corpus[i] for i in test], [candidates[name][i] for i in test],
                            profile_name, threshold)
        folds.append(FoldResult(held, name, threshold, score, held_res))
    return CrossValidation(profile_name, tuple(folds))


def score_configs(corpus: list[LabelledSeries], make: Callable[..., Any],
                  configs: list[Mapping[str, float]]) -> list[list[np.ndarray]]:
    """Scores of every series under every configuration, in one pass over time.

    ``make(**params)`` builds a vectorised detector (``new_state``, ``evaluate``,
    ``update``, as :class:`~models.ensemble.SeasonalEnsemble`) whose parameters may be
    arrays, one value per column: each (configuration, series) is a column, series are
    padded past their end (causal: padding never changes an earlier score), and one loop
    over time scores them all, as the stream would one by one. A key missing from a
    configuration takes the detector's default.
    """
    if not configs or not corpus:
        return [[] for _ in configs]
    defaults = {k: v.default for k, v in inspect.signature(make).parameters.items()}
    n_series, depth = len(corpus), max(len(s.values) for s in corpus)
    values = np.zeros((depth, n_series))
    times = np.zeros((depth, n_series))
    for j, series in enumerate(corpus):
        n = len(series.values)
        step = float(series.times_ms[-1] - series.times_ms[-2]) if n > 1 else 60_000.0
        values[:n, j], values[n:, j] = series.values, series.values[-1]
        times[:n, j] = series.times_ms
        times[n:, j] = series.times_ms[-1] + step * np.arange(1, depth - n + 1)
    keys = sorted({k for c in configs for k in c})
    params = {k: np.repeat(np.array([float(c.get(k, defaults[k])) for c in configs]),
                           n_series) for k in keys}
    detector = make(**params)
    width = n_series * len(configs)
    state = detector.new_state(width)
    x_all, t_all = np.tile(values, (1, len(configs))), np.tile(times, (1, len(configs)))
    scores = np.zeros((depth, width))
    for i in range(depth):
        ev = detector.evaluate(state, x_all[i], t_all[i])
        detector.update(state, x_all[i], t_all[i], ev)
        scores[i] = ev.score
    return [[scores[:len(s.values), c * n_series + j].copy() for j, s in enumerate(corpus)]
            for c in range(len(configs))]


ScoreFn = Callable[[LabelledSeries], np.ndarray]


def evaluate(corpus: list[LabelledSeries], score_fn: ScoreFn,
             profiles: Iterable[str] = PROFILES) -> dict[str, NabResult]:
    """Score every series with ``score_fn`` and optimise the threshold per profile."""
    scores = [np.asarray(score_fn(series), dtype=np.float64) for series in corpus]
    return {p: optimise(corpus, scores, p) for p in profiles}
