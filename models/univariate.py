"""The robust seasonal scorer: Tocsin's per-series metric detector, vectorised over series.

One series' state is a column of :data:`N_FIELDS` float64 numbers (384 bytes): a fast
robust level and scale, a slow ("global") level and scale, an hour-of-day seasonal
profile, two calibrations (see :mod:`models.calibration`) and a few counters. The math
works on a matrix of such columns, so :class:`~models.series.SeriesBank` scores every
series of a batch with a handful of numpy operations; :class:`RobustSeasonal` is the
same math for one series behind the river contract.

How a point is scored:

- expected = level + season[hour of day] (season used once a day of history exists,
  learnt at a rate per *day*, so a 10 s and a 5 min series learn their cycle alike);
- the scale is at least ``rel_floor`` x |level| + ``abs_floor`` (a series that never
  varied still has a smallest change worth a scale: e.g. counting noise);
- the local statistic ``|x - expected| / scale`` and the global one (against the slow
  level) become tail probabilities under the series' own recent tail; their geometric
  mean, on the log scale of :func:`~models.calibration.score_from_log10p`, is the score;
- updates are winsorised (a spike moves the level and scale by at most ``clip`` scales)
  and an alerting point teaches the calibration only ``alert_learning`` of a normal one
  (an incident must not make itself look normal within a few points);
  ``shift_after`` consecutive points beyond the band on one side re-anchor the level
  (a step change alarms once, then becomes the new normal);
- nothing is scored during the first ``warmup`` points; after a score at or above
  ``threshold`` the detector rests for ``rest_points`` points (reports 0): one alert per
  episode, not one per point.

>>> det = RobustSeasonal(warmup=20)
>>> for i in range(300):
...     x = {"value": 10.0 + (i % 7) * 0.1, "time": 1_700_000_000_000 + i * 60_000}
...     det.learn_one(x)
>>> det.score_one({"value": 10.3, "time": 1_700_018_000_000}) < 0.2
True
>>> det.score_one({"value": 60.0, "time": 1_700_018_000_000}) > 0.9
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.base import ColumnarSeriesDetector
from models.calibration import (
    LEVELS,
    prior_freq,
    score_from_log10p,
    tail_log10,
    update_freq,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
BINS = 24
_NL = LEVELS.size
N, T_FIRST, T_LAST, DT, LEVEL, SCALE, GLEVEL, GSCALE, RUN, REST = range(10)
SEASON = slice(10, 10 + BINS)
LOCAL_CAL = slice(SEASON.stop, SEASON.stop + _NL)
GLOBAL_CAL = slice(LOCAL_CAL.stop, LOCAL_CAL.stop + _NL)
N_FIELDS = GLOBAL_CAL.stop
_ABS_FLOOR = 1e-9
_MAD_TO_SD = 1.2533  # sqrt(pi / 2): mean absolute deviation -> standard deviation


@dataclass
class Evaluation:
    """What scoring a round of points produced (one entry per series of the round)."""

    score: np.ndarray  # reported: 0 during warm-up and rest
    raw: np.ndarray  # before rest suppression (used to clear a firing detection)
    expected: np.ndarray
    scale: np.ndarray
    z: np.ndarray
    gz: np.ndarray
    bins: np.ndarray
    seasonal: np.ndarray

    def select(self, idx: np.ndarray) -> Evaluation:
        """The evaluation of some of the round's series."""
        return Evaluation(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


class RobustSeasonal(ColumnarSeriesDetector):
    """Robust, seasonal, self-calibrating univariate scorer (see the module docstring).

    Rates are per point unless said otherwise; ``season_rate`` is per day.
    """

    name = "robust-seasonal"
    abs_floor = _ABS_FLOOR  # for detectors pickled before it was a parameter

    def __init__(self, alpha: float = 0.003, scale_rate: float = 0.02,
                 global_rate: float = 1 / 3000, season_rate: float = 0.6,
                 calibration_rate: float = 1 / 2000, global_weight: float = 0.7,
                 clip: float = 4.0, clip_scale: float = 5.0, shift_after: int = 10,
                 warmup: int = 100, threshold: float = 0.35, rest_points: int = 200,
                 rel_floor: float = 1e-3, prior_count: float = 30.0,
                 alert_learning: float = 1.0, calibration_floor: float = 0.001,
                 seasonality: bool = True, abs_floor: float = _ABS_FLOOR,
                 seed: int = 0) -> None:
        self.alpha = alpha
        self.scale_rate = scale_rate
        self.global_rate = global_rate
        self.season_rate = season_rate
        self.calibration_rate = calibration_rate
        self.global_weight = global_weight
        self.clip = clip
        self.clip_scale = clip_scale
        self.shift_after = shift_after
        self.warmup = warmup
        self.threshold = threshold
        self.rest_points = rest_points
        self.rel_floor = rel_floor
        self.prior_count = prior_count
        self.alert_learning = alert_learning
        self.calibration_floor = calibration_floor
        self.seasonality = seasonality
        self.abs_floor = abs_floor  # the smallest scale, in the series' units
        self.seed = seed  # deterministic model: kept for the common contract
        self._state = self.new_state(1)

    # -- vectorised math over a (N_FIELDS, k) matrix of series states --------------------

    @staticmethod
    def new_state(k: int) -> np.ndarray:
        """Fresh state columns for ``k`` series."""
        state = np.zeros((N_FIELDS, k))
        state[LOCAL_CAL] = prior_freq(k).T
        state[GLOBAL_CAL] = prior_freq(k).T
        return state

    def evaluate(self, s: np.ndarray, x: np.ndarray, t: np.ndarray) -> Evaluation:
        """Score one point per series (column) of ``s``; does not change ``s``."""
        k = x.size
        n = s[N]
        first = n == 0
        bins = ((t // HOUR_MS) % BINS).astype(np.intp)
        season = s[SEASON.start + bins, np.arange(k)]
        ready = (t - s[T_FIRST] >= DAY_MS) & ~first if self.seasonality else np.zeros(k, bool)
        seasonal = np.where(ready, season, 0.0)
        floor = self.rel_floor * np.abs(s[LEVEL]) + self.abs_floor
        scale = np.maximum(s[SCALE], floor)
        expected = np.where(first, x, s[LEVEL] + seasonal)
        z = np.where(first, 0.0, (x - expected) / scale)
        gscale = np.maximum(s[GSCALE], floor)
        gz = np.where(first, 0.0, (x - s[GLEVEL] - seasonal) / gscale)
        w = self.global_weight
        both = tail_log10(np.abs(np.concatenate([z, gz])),
                          np.concatenate([s[LOCAL_CAL].T, s[GLOBAL_CAL].T]))
        log10p = (1.0 - w) * both[:k] + w * both[k:]
        raw = np.where(n < self.warmup, 0.0, score_from_log10p(log10p))
        score = np.where(s[REST] > 0, 0.0, raw)
        return Evaluation(score, raw, expected, scale, z, gz, bins, seasonal)

    def update(self, s: np.ndarray, x: np.ndarray, t: np.ndarray, ev: Evaluation) -> None:
        """Learn one point per series (column) of ``s`` in place, given its evaluation."""
        k = x.size
        n = s[N]
        first = n == 0
        early = n < 10  # no winsorising before the scale means something
        r = x - ev.expected
        a = np.maximum(self.alpha, 1.0 / (n + 1.0))
        lim = self.clip * ev.scale
        rc = np.where(early, r, np.minimum(np.maximum(r, -lim), lim))
        level = np.where(first, x, s[LEVEL] + a * rc)
        gap = t - s[T_LAST]
        s[DT] = np.where(n == 1, gap, np.where(n > 1, 0.9 * s[DT] + 0.1 * gap, 0.0))
        if self.seasonality:
            gamma = self.season_rate * np.minimum(1.0, np.maximum(s[DT], 0.0) / HOUR_MS)
            cols = np.arange(k)
            s[SEASON.start + ev.bins, cols] += np.where(first, 0.0, gamma * (1.0 - a) * rc)
        b = np.maximum(self.scale_rate, 1.0 / (n + 1.0))
        ra = np.where(early, np.abs(r), np.minimum(np.abs(r), self.clip_scale * ev.scale))
        s[SCALE] = np.where(first, 0.0, s[SCALE] + b * (_MAD_TO_SD * ra - s[SCALE]))
        side = np.sign(r) * (np.abs(ev.z) > self.clip)
        run = np.where(side == 0, 0.0, np.where(np.sign(s[RUN]) == side, s[RUN] + side, side))
        shift = np.abs(run) >= self.shift_after
        s[LEVEL] = np.where(shift, x - ev.seasonal, level)
        s[RUN] = np.where(shift, 0.0, run)
        g = np.maximum(self.global_rate, 1.0 / (n + 1.0))
        gr = x - s[GLEVEL] - ev.seasonal
        gfloor = self.rel_floor * np.abs(s[GLEVEL]) + self.abs_floor
        gscale = np.maximum(s[GSCALE], gfloor)
        glim = self.clip * gscale
        grc = np.where(early, gr, np.minimum(np.maximum(gr, -glim), glim))
        s[GLEVEL] = np.where(first, x, s[GLEVEL] + g * grc)
        gra = np.where(early, np.abs(gr), np.minimum(np.abs(gr), self.clip_scale * gscale))
        s[GSCALE] = np.where(first, 0.0, s[GSCALE] + g * (_MAD_TO_SD * gra - s[GSCALE]))
        lam = np.where(early, 0.0, np.maximum(self.calibration_rate,
                                              1.0 / (n + self.prior_count)))
        lam = np.where(ev.raw >= self.threshold, lam * self.alert_learning, lam)
        floor = self.calibration_rate * self.calibration_floor
        cal = update_freq(np.concatenate([s[LOCAL_CAL].T, s[GLOBAL_CAL].T]),
                          np.abs(np.concatenate([ev.z, ev.gz])), np.concatenate([lam, lam]),
                          floor)
        s[LOCAL_CAL], s[GLOBAL_CAL] = cal[:k].T, cal[k:].T
        s[REST] = np.where(ev.score >= self.threshold, self.rest_points,
                           np.maximum(s[REST] - 1.0, 0.0))
        s[T_FIRST] = np.where(first, t, s[T_FIRST])
        s[T_LAST] = t
        s[N] = n + 1.0

    def _log10p_at(self, s: np.ndarray, ev: Evaluation, x: np.ndarray) -> np.ndarray:
        """The combined log10 tail probability the columns of ``s`` give value ``x``."""
        k = x.size
        gscale = np.maximum(s[GSCALE], self.rel_floor * np.abs(s[LEVEL]) + self.abs_floor)
        z = (x - ev.expected) / ev.scale
        gz = (x - s[GLEVEL] - ev.seasonal) / gscale
        both = tail_log10(np.abs(np.concatenate([z, gz])),
                          np.concatenate([s[LOCAL_CAL].T, s[GLOBAL_CAL].T]))
        return (1.0 - self.global_weight) * both[:k] + self.global_weight * both[k:]

    @property
    def n_fields(self) -> int:
        """State rows per series."""
        return N_FIELDS

    @property
    def state_bytes(self) -> int:
        """Bytes of numeric state per series."""
        return N_FIELDS * 8

    @classmethod
    def _unit_test_params(cls):
        yield {}
        yield {"seasonality": False, "global_weight": 0.0, "rest_points": 0, "warmup": 30}
