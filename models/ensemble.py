"""The seasonal ensemble: Tocsin's default per-series metric detector, vectorised.

Detector families score every point, each on its own calibrated tail; the smallest tail
probability (times the number of families, Bonferroni) is the score, on the scale of
:func:`~models.calibration.score_from_log10p` (0.5 = one point in 10,000 of that series):

- **level** (point anomalies, always on): the robust seasonal model of
  :mod:`models.univariate` (a robust level and scale, an hour-of-day profile read and
  learnt by linear interpolation between the hours' centres, so a smooth daily cycle
  leaves no step every hour, a slow "global" level), its z statistics calibrated
  with extreme-value tails (:func:`~models.calibration.evt_tail_log10`): spikes that a
  series routinely has are learnt, not alarmed on forever, and a spike far beyond the
  usual ones still stands out. By default only the statistic against the slow global
  level scores (``global_weight=1``); the fast local level gives the expected value and
  follows shifts. Mixing in the local statistic (0.7 of the global one before) scored
  higher on the series it was tuned on and lower on held-out NAB categories;
- **likelihood** (sustained surprise, on by default), in the spirit of the "anomaly
  likelihood" NAB's HTM detector puts after its raw scores: the short mean of the level
  score (rate ``likelihood_rate``, about the last 10 points) against the normal law of the
  recent short means (mean and mean square at ``calibration_rate``, the spread at least
  ``likelihood_floor``), from ``likelihood_after`` points on. A run of moderately unusual
  points (a shift the level family half absorbs, a broken daily pattern) reaches the
  threshold where no single point does. With the rest period after an alarm it added
  7 points on NAB in-sample and 5 cross-validated (``bench/nab_bench.py``);
- **context** (contextual anomalies, opt-in: ``context=True``): transitions between five
  quantised states of the value (against the slow level), counted with decay, in the
  spirit of CAD OSE: a value common in itself that never follows the previous one (a
  clean periodic series breaking its pattern: a day whose high phase stays low) scores.
  On NAB it finds every anomaly of the artificial series and costs false positives on
  noisy ones (``bench/nab_bench.py``), and 232 bytes more per series: a tier for chosen
  series, not the default.

**Count scale** (on by default: ``count_power`` 0.5; 1 turns it off): while every point
of a series has been a non-negative whole number (a property of the data, learnt online:
one state row), the model sees ``((x + 1) ** count_power - 1) / count_power`` (Box-Cox of
``x + 1``; 0.5 is close to the square root that gives a Poisson count the same spread at
every rate; 0: ``log1p``). A burst of a low-rate count (tweets, requests, errors) is then
less extreme than on the raw scale, where a 4 among 0s and 1s is a 6-sigma point;
expected values and bands are reported in the series' units. The first point that is not
a count (a fraction, a negative) restarts the series from that point as an ordinary series
(about 10 points of warm-up).

**What is reported** (``score``; ``raw`` is the score before any of this): a point at or
above ``threshold`` raises an alarm and starts a rest period of ``rest_points`` in which
nothing is reported (a sustained anomaly is one detection, not dozens). A point below the
threshold but at or above ``watch`` (0.15; 1 turns it off) starts a
*quiet* period of ``rest_points`` in which scores below the threshold are reported as 0
(an alarm-level score still is reported, and ends the quiet): whoever alarms at a lower
threshold than the model's own gets one detection per rest period from a run of
moderately unusual points, not one per point, and the model's own alarms are never
silenced by them. On NAB (``bench/nab_bench.py``) the count scale and the watch level,
chosen per held-out category, raise the cross-validated standard score from 62.6 to 70.4
(the README has the ablation).

Cold start: nothing is scored during the first ``warmup`` points (10); while a series is
young, the scale is widened by ``1 + youth / n`` so a handful of points cannot make a
normal value look extreme. A series can also be seeded from its stored history
(:meth:`SeasonalEnsemble.seed_columns`, through :meth:`~models.series.SeriesBank.seed`),
so it is not young at all.

Parameters may be numpy arrays with one value per column: the NAB benchmark scores many
configurations at once that way. One series' state is :attr:`~SeasonalEnsemble.n_fields`
float64 numbers (384 bytes; 616 with the context tier).

>>> det = SeasonalEnsemble(warmup=20)
>>> for i in range(300):
...     det.learn_one({"value": 10.0 + (i % 7) * 0.1, "time": 1_700_000_000_000 + i * 60_000})
>>> det.score_one({"value": 10.3, "time": 1_700_018_000_000}) < 0.2
True
>>> det.score_one({"value": 60.0, "time": 1_700_018_000_000}) > 0.9
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr

from models.base import ColumnarSeriesDetector
from models.calibration import (
    EVT_ROWS,
    evt_prior,
    evt_tail_log10,
    evt_update,
    score_from_log10p,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
BINS = 24
Q = 5
"""Quantised states of the context tier (edges at -2, -0.5, 0.5, 2 global scales)."""
_EDGES = np.array([-2.0, -0.5, 0.5, 2.0])
_MAD_TO_SD = 1.2533  # sqrt(pi / 2): mean absolute deviation -> standard deviation

N, T_FIRST, T_LAST, DT, LEVEL, SCALE, GLEVEL, GSCALE, RUN, REST, PREV = range(11)
SEASON = slice(11, 11 + BINS)
LOCAL_CAL = slice(SEASON.stop, SEASON.stop + EVT_ROWS)
GLOBAL_CAL = slice(LOCAL_CAL.stop, LOCAL_CAL.stop + EVT_ROWS)
SMEAN, AMEAN, ASQ = GLOBAL_CAL.stop, GLOBAL_CAL.stop + 1, GLOBAL_CAL.stop + 2
"""The likelihood family: the short mean of the level score, the long mean of that short
mean and of its square."""
COUNT = ASQ + 1
"""1 while every point of the series has been a non-negative whole number (a count)."""
QUIET = COUNT + 1
"""Points left of the quiet period a watch-level score started (see ``watch``)."""
BASE_FIELDS = QUIET + 1
"""Rows of the default state (the context tier appends transitions and a calibration)."""
TRANS = slice(BASE_FIELDS, BASE_FIELDS + Q * Q)
CTX_CAL = slice(TRANS.stop, TRANS.stop + EVT_ROWS)
CONTEXT_FIELDS = CTX_CAL.stop


@dataclass
class Evaluation:
    """What scoring one point per column produced (before the model learnt them)."""

    score: np.ndarray  # reported: 0 during warm-up, rest and quiet
    raw: np.ndarray  # before rest suppression (used to clear a firing detection)
    expected: np.ndarray  # in the series' units
    scale: np.ndarray  # in the series' units, about the expected value
    y: np.ndarray  # the point as the model sees it (counts transformed)
    mu: np.ndarray  # expected and (widened) scale on that scale
    sd: np.ndarray
    z: np.ndarray
    gz: np.ndarray
    bins: np.ndarray  # the hour-of-day bin before the point's time, and how far past its
    frac: np.ndarray  # centre (0-1): the profile is interpolated between two bin centres
    seasonal: np.ndarray
    lp_level: np.ndarray  # log10 tail probability of the level family
    state: np.ndarray  # quantised state (context tier; 0 without it)
    cstat: np.ndarray  # -ln P(state | previous state)
    lp_ctx: np.ndarray
    short: np.ndarray  # the likelihood family's short mean of the level score
    lp_like: np.ndarray

    def select(self, idx: np.ndarray) -> Evaluation:
        """The evaluation of some columns."""
        return Evaluation(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def _season_position(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hour-of-day profile position of times ``t`` (ms): the bin whose centre is at or
    before ``t`` and the fraction of the way to the next centre."""
    hours = (t % DAY_MS) / HOUR_MS - 0.5
    below = np.floor(hours)
    return (below.astype(np.intp) % BINS), hours - below


def _power(x: np.ndarray, lam: float | np.ndarray) -> np.ndarray:
    """Box-Cox transform of ``x + 1`` (``lam`` 0: ``log1p``; 1: ``x`` itself)."""
    lam = np.asarray(lam, dtype=np.float64)
    safe = np.where(lam == 0.0, 1.0, lam)
    return np.where(lam == 0.0, np.log1p(x), ((x + 1.0) ** safe - 1.0) / safe)


def _unpower(y: np.ndarray, lam: float | np.ndarray) -> np.ndarray:
    """The inverse of :func:`_power`."""
    lam = np.asarray(lam, dtype=np.float64)
    safe = np.where(lam == 0.0, 1.0, lam)
    return np.where(lam == 0.0, np.expm1(np.where(lam == 0.0, y, 0.0)),
                    np.maximum(1.0 + safe * y, 0.0) ** (1.0 / safe) - 1.0)


def _is_count(x: np.ndarray) -> np.ndarray:
    """Whether each value is a non-negative whole number."""
    return (x >= 0.0) & (x == np.floor(x)) & np.isfinite(x)


def _twice(value: float | np.ndarray) -> float | np.ndarray:
    """A per-column parameter for two calibrations side by side (a scalar as it is)."""
    a = np.asarray(value)
    return np.concatenate((a, a)) if a.ndim else value


class SeasonalEnsemble(ColumnarSeriesDetector):
    """Level and (opt-in) context families on one calibrated scale.

    Rates are per point unless said otherwise; ``season_rate`` is per day. See the
    module docstring.
    """

    name = "seasonal-ensemble"

    def __init__(self, alpha: float = 0.003, scale_rate: float = 0.02,
                 global_rate: float = 1 / 3000, season_rate: float = 0.6,
                 calibration_rate: float = 1 / 2000, global_weight: float = 1.0,
                 clip: float = 4.0, clip_scale: float = 5.0, shift_after: int = 10,
                 warmup: int = 10, youth: float = 5.0, threshold: float = 0.45,
                 rest_points: int = 100, rel_floor: float = 1e-3, prior_count: float = 30.0,
                 calibration_floor: float = 0.001, tail_mean: float = 1.45,
                 tail_rate: float = 0.02, context: bool = False, context_rate: float = 1 / 500,
                 context_after: int = 30, likelihood: bool = True,
                 likelihood_rate: float = 0.1, likelihood_after: int = 300,
                 likelihood_floor: float = 0.01, count_power: float = 0.5,
                 watch: float = 0.15,
                 seasonality: bool = True,
                 abs_floor: float = 1e-9, seed: int = 0) -> None:
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
        self.youth = youth
        self.threshold = threshold
        self.rest_points = rest_points
        self.rel_floor = rel_floor
        self.prior_count = prior_count
        self.calibration_floor = calibration_floor
        self.tail_mean = tail_mean
        self.tail_rate = tail_rate
        self.context = context
        self.context_rate = context_rate
        self.context_after = context_after
        self.likelihood = likelihood
        self.likelihood_rate = likelihood_rate
        self.likelihood_after = likelihood_after
        self.likelihood_floor = likelihood_floor
        self.count_power = count_power
        self.watch = watch
        self.seasonality = seasonality
        self.abs_floor = abs_floor
        self.seed = seed  # deterministic model: kept for the common contract
        self._state = self.new_state(1)

    @property
    def n_fields(self) -> int:
        """State rows per series."""
        return CONTEXT_FIELDS if np.any(self.context) else BASE_FIELDS

    @property
    def state_bytes(self) -> int:
        """Bytes of numeric state per series."""
        return self.n_fields * 8

    # -- vectorised math over a (n_fields, k) matrix of series states --------------------

    def new_state(self, k: int) -> np.ndarray:
        """Fresh state columns for ``k`` series."""
        state = np.zeros((self.n_fields, k))
        for cal in (LOCAL_CAL, GLOBAL_CAL):
            state[cal] = evt_prior(k, self.tail_mean)
        state[COUNT] = 1.0
        if np.any(self.context):
            state[TRANS] = 1.0 / (Q * Q)
            state[CTX_CAL] = evt_prior(k, self.tail_mean)
        return state

    def _families(self) -> float | np.ndarray:
        return (1.0 + np.asarray(self.context, dtype=np.float64)
                + np.asarray(self.likelihood, dtype=np.float64))

    def _likelihood_log10(self, s: np.ndarray, lp_level: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
        """The likelihood family: the short mean of the level score with this point in it,
        and the log10 probability of a short mean at least that high under the normal law of
        the recent short means (0 while the series is young or the family is off)."""
        n = s[N]
        a = np.maximum(self.likelihood_rate, 1.0 / (n + 1.0))
        level = np.where(n < self.warmup, 0.0, score_from_log10p(lp_level))
        short = (1.0 - a) * s[SMEAN] + a * level
        sd = np.sqrt(np.maximum(s[ASQ] - s[AMEAN] ** 2, self.likelihood_floor ** 2))
        lp = log_ndtr(-(short - s[AMEAN]) / sd) / np.log(10.0)
        on = np.asarray(self.likelihood, bool) & (n >= self.likelihood_after)
        return short, np.where(on, lp, 0.0)

    def evaluate(self, s: np.ndarray, x: np.ndarray, t: np.ndarray) -> Evaluation:
        """Score one point per series (column) of ``s``; does not change ``s``."""
        k = x.size
        cols = np.arange(k)
        left = self._leaving_counts(s, x)
        if left.any():  # scored as the first point of a series that is not a count
            s = s.copy()
            s[:, left] = self._fresh(int(left.sum()))
        counting = self._counting(s) & _is_count(x)
        y = np.where(counting, _power(np.where(counting, x, 0.0), self.count_power), x)
        n = s[N]
        first = n == 0
        bins, frac = _season_position(t)
        season = ((1.0 - frac) * s[SEASON.start + bins, cols]
                  + frac * s[SEASON.start + (bins + 1) % BINS, cols])
        ready = (t - s[T_FIRST] >= DAY_MS) & ~first & np.asarray(self.seasonality, bool)
        seasonal = np.where(ready, season, 0.0)
        widen = 1.0 + self.youth / np.maximum(n, 1.0)  # young: wider bands
        floor = self.rel_floor * np.abs(s[LEVEL]) + self.abs_floor
        scale = np.maximum(s[SCALE], floor) * widen
        mu = np.where(first, y, s[LEVEL] + seasonal)
        z = np.where(first, 0.0, (y - mu) / scale)
        gscale = np.maximum(s[GSCALE], floor) * widen
        gz = np.where(first, 0.0, (y - s[GLEVEL] - seasonal) / gscale)
        lp_level = self._level_log10(s, z, gz)
        short, lp_like = self._likelihood_log10(s, lp_level)
        lp = np.minimum(lp_level, lp_like)
        zeros = np.zeros(k)
        state, cstat, lp_ctx = zeros.astype(np.intp), zeros, zeros
        if np.any(self.context):
            state = np.searchsorted(_EDGES, gz).astype(np.intp)
            prev = s[PREV].astype(np.intp)
            trans = s[TRANS]
            row = trans[prev * Q + np.arange(Q)[:, None], cols].sum(axis=0)
            p = trans[prev * Q + state, cols] / np.maximum(row, 1e-300)
            cstat = -np.log(np.maximum(p, 1e-300))
            on_ctx = np.asarray(self.context, bool) & (n >= self.context_after)
            lp_ctx = np.where(on_ctx, evt_tail_log10(cstat, s[CTX_CAL]), 0.0)
            lp = np.minimum(lp, lp_ctx)
        lp = np.minimum(lp + np.log10(self._families()), 0.0)
        raw = np.where(n < self.warmup, 0.0, score_from_log10p(lp))
        alarm = (s[REST] <= 0) & (raw >= self.threshold)
        quiet = (s[REST] > 0) | ((s[QUIET] > 0) & ~alarm)
        score = np.where(quiet, 0.0, raw)
        expected = np.where(counting, _unpower(np.where(counting, mu, 0.0), self.count_power),
                            mu)
        slope = (np.maximum(expected, 0.0) + 1.0) ** (1.0 - np.asarray(self.count_power))
        shown = np.where(counting, scale * slope, scale)  # dx = dy / (dy/dx) at expected
        return Evaluation(score, raw, expected, shown, y, mu, scale, z, gz, bins, frac,
                          seasonal, lp_level, state, cstat, lp_ctx, short, lp_like)

    def update(self, s: np.ndarray, x: np.ndarray, t: np.ndarray, ev: Evaluation) -> None:
        """Learn one point per series (column) of ``s`` in place, given its evaluation."""
        k = x.size
        cols = np.arange(k)
        left = self._leaving_counts(s, x)
        if left.any():  # a count series met a fraction or a negative: it starts afresh
            s[:, left] = self._fresh(int(left.sum()))
        s[COUNT] = np.where(_is_count(x), s[COUNT], 0.0)
        x = ev.y
        n = s[N]
        first = n == 0
        early = n < 10  # no winsorising before the scale means something
        scale = ev.sd / (1.0 + self.youth / np.maximum(n, 1.0))  # unwidened
        r = x - ev.mu
        a = np.maximum(self.alpha, 1.0 / (n + 1.0))
        lim = self.clip * scale
        rc = np.where(early, r, np.clip(r, -lim, lim))
        level = np.where(first, x, s[LEVEL] + a * rc)
        gap = t - s[T_LAST]
        s[DT] = np.where(n == 1, gap, np.where(n > 1, 0.9 * s[DT] + 0.1 * gap, 0.0))
        gamma = (self.season_rate * np.minimum(1.0, np.maximum(s[DT], 0.0) / HOUR_MS)
                 * np.asarray(self.seasonality, np.float64))
        learn = np.where(early, 0.0, gamma * (1.0 - a) * rc)  # not from a first outlier
        s[SEASON.start + ev.bins, cols] += (1.0 - ev.frac) * learn
        s[SEASON.start + (ev.bins + 1) % BINS, cols] += ev.frac * learn
        b = np.maximum(self.scale_rate, 1.0 / (n + 1.0))
        ra = np.where(early, np.abs(r), np.minimum(np.abs(r), self.clip_scale * scale))
        s[SCALE] = np.where(first, 0.0, s[SCALE] + b * (_MAD_TO_SD * ra - s[SCALE]))
        z = np.where(first, 0.0, r / np.maximum(scale, 1e-300))
        side = np.sign(r) * (np.abs(z) > self.clip)
        run = np.where(side == 0, 0.0, np.where(np.sign(s[RUN]) == side, s[RUN] + side, side))
        shift = np.abs(run) >= self.shift_after
        s[LEVEL] = np.where(shift, x - ev.seasonal, level)
        s[RUN] = np.where(shift, 0.0, run)
        g = np.maximum(self.global_rate, 1.0 / (n + 1.0))
        gr = x - s[GLEVEL] - ev.seasonal
        gfloor = self.rel_floor * np.abs(s[GLEVEL]) + self.abs_floor
        gscale = np.maximum(s[GSCALE], gfloor)
        glim = self.clip * gscale
        grc = np.where(early, gr, np.clip(gr, -glim, glim))
        s[GLEVEL] = np.where(first, x, s[GLEVEL] + g * grc)
        gra = np.where(early, np.abs(gr), np.minimum(np.abs(gr), self.clip_scale * gscale))
        s[GSCALE] = np.where(first, 0.0, s[GSCALE] + g * (_MAD_TO_SD * gra - s[GSCALE]))
        lam = np.where(early, 0.0, np.maximum(self.calibration_rate,
                                              1.0 / (n + self.prior_count)))
        floor = self.calibration_rate * self.calibration_floor
        g_cal = np.maximum(self.calibration_rate, 1.0 / (n + 1.0))
        # both calibrations in one call: the columns side by side (numpy's per-call cost
        # dominates when a service's batch holds a few series)
        cal = np.concatenate((s[LOCAL_CAL], s[GLOBAL_CAL]), axis=1)
        evt_update(cal, np.concatenate((np.abs(ev.z), np.abs(ev.gz))), _twice(lam),
                   _twice(floor), _twice(self.tail_rate))
        s[LOCAL_CAL], s[GLOBAL_CAL] = cal[:, :k], cal[:, k:]
        s[SMEAN] = ev.short
        s[AMEAN] += g_cal * (ev.short - s[AMEAN])
        s[ASQ] += g_cal * (ev.short ** 2 - s[ASQ])
        if np.any(self.context):
            decay = np.where(first, 1.0, 1.0 - self.context_rate)
            s[TRANS] *= decay
            cell = s[PREV].astype(np.intp) * Q + ev.state
            s[TRANS.start + cell, cols] += np.where(first, 0.0, self.context_rate)
            on_ctx = np.asarray(self.context, bool) & (n >= self.context_after)
            evt_update(s[CTX_CAL], ev.cstat, np.where(on_ctx, lam, 0.0), floor,
                       self.tail_rate)
            s[PREV] = ev.state
        alarm = ev.score >= self.threshold
        s[REST] = np.where(alarm, self.rest_points, np.maximum(s[REST] - 1.0, 0.0))
        s[QUIET] = np.where(alarm, 0.0, np.where(
            s[QUIET] > 0, s[QUIET] - 1.0,
            np.where(ev.score >= self.watch, self.rest_points, 0.0)))
        s[T_FIRST] = np.where(first, t, s[T_FIRST])
        s[T_LAST] = t
        s[N] = n + 1.0

    def seed_columns(self, s: np.ndarray, times: np.ndarray, values: np.ndarray) -> None:
        """Learn a history, one point per row of ``times``/``values`` ``(points, k)``
        (NaN: that column has no point in that row), as if it had streamed, without the
        rest period an alert would start (history seeds a model, it alarms nobody)."""
        for i in range(times.shape[0]):
            has = ~np.isnan(values[i])
            if not has.any():
                continue
            cols = np.flatnonzero(has)
            sub = s[:, cols]
            ev = self.evaluate(sub, values[i, cols], times[i, cols])
            self.update(sub, values[i, cols], times[i, cols], ev)
            sub[REST] = sub[QUIET] = 0.0
            s[:, cols] = sub

    def upgrade_state(self, layout: str, state: np.ndarray) -> np.ndarray | None:
        """This detector's state from ``state`` saved with an earlier layout of it
        (before the count scale and the watch level: two rows fewer), else None. Such
        series are not known to be counts, so they are scored as before."""
        name, _, rows = layout.partition(":")
        extra = CONTEXT_FIELDS - BASE_FIELDS if np.any(self.context) else 0
        if name != type(self).__name__ or rows != str(COUNT + extra) \
                or state.shape[0] != COUNT + extra:
            return None
        out = self.new_state(state.shape[1])
        out[:COUNT] = state[:COUNT]
        out[COUNT] = 0.0
        out[QUIET] = 0.0
        out[BASE_FIELDS:] = state[COUNT:]
        return out

    def _counting(self, s: np.ndarray) -> np.ndarray:
        """Columns scored on the count scale: a count series so far, the transform on."""
        return (s[COUNT] > 0) & (np.asarray(self.count_power) != 1.0)

    def _leaving_counts(self, s: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Columns learnt on the count scale whose new point is not a count."""
        return self._counting(s) & (s[N] > 0) & ~_is_count(x)

    def _fresh(self, k: int) -> np.ndarray:
        """State columns of series that start afresh, known not to be counts."""
        fresh = self.new_state(k)
        fresh[COUNT] = 0.0
        return fresh

    def _level_log10(self, s: np.ndarray, z: np.ndarray, gz: np.ndarray) -> np.ndarray:
        """The level family's log10 tail probability: the local and global statistics,
        each on its calibration, weighted (one call for both)."""
        k = z.size
        both = evt_tail_log10(np.concatenate((np.abs(z), np.abs(gz))),
                              np.concatenate((s[LOCAL_CAL], s[GLOBAL_CAL]), axis=1))
        w = self.global_weight
        return (1.0 - w) * both[:k] + w * both[k:]

    def _log10p_at(self, s: np.ndarray, ev: Evaluation, x: np.ndarray) -> np.ndarray:
        """The combined log10 tail probability the columns of ``s`` give value ``x`` (the
        context family's as it was for the point evaluated)."""
        counting = self._counting(s)
        y = np.where(counting, _power(np.maximum(x, 0.0), self.count_power), x)
        z = (y - ev.mu) / ev.sd
        n = s[N]
        widen = 1.0 + self.youth / np.maximum(n, 1.0)
        gscale = np.maximum(s[GSCALE], self.rel_floor * np.abs(s[LEVEL]) + self.abs_floor)
        gz = (y - s[GLEVEL] - ev.seasonal) / (gscale * widen)
        lp = self._level_log10(s, z, gz)
        lp = np.minimum(lp, self._likelihood_log10(s, lp)[1])
        if np.any(self.context):
            lp = np.minimum(lp, ev.lp_ctx)
        return np.minimum(lp + np.log10(self._families()), 0.0)

    @classmethod
    def _unit_test_params(cls):
        yield {}
        yield {"seasonality": False, "global_weight": 0.0, "rest_points": 0, "warmup": 30}
        yield {"context": True, "warmup": 20}
        yield {"likelihood": False, "likelihood_after": 20}
