"""Calibrated scores: an anomaly statistic becomes a tail probability, then a 0–1 score.

Every detector reduces a point to a non-negative statistic (a robust z, the size of a
burst ...). Raw statistics are not comparable across series: a heavy-tailed series sees
``|z| > 8`` every day, a quiet one never. So each series keeps the exceedance frequency
of a few fixed levels (exponentially weighted, starting from a prior), and a statistic
maps to the log10 probability of seeing one at least as large, interpolated between the
levels and extrapolated past the last one. The score is that probability on a log
scale: ``score = min(1, -log10(p) / DECADES)``; 0.5 means one point in 10,000 of *this*
series' recent history, on every series.

All functions work on numpy arrays of many series at once (one row per series).

>>> f = prior_freq(1)
>>> bool(tail_log10(np.array([6.0]), f)[0] > tail_log10(np.array([9.0]), f)[0])
True
>>> round(float(score_from_log10p(np.array([-4.0]))[0]), 2)
0.5
"""

from __future__ import annotations

import numpy as np

DECADES = 8.0
"""A score of 1.0 is a tail probability of 1e-8 or less."""

LEVELS = np.array([1.5, 2.5, 4.0, 6.0, 9.0, 13.5, 20.0])
"""Statistic levels whose exceedance frequency each series tracks."""

_KNOTS = np.concatenate([[0.0], LEVELS])
_PRIOR = np.exp(-LEVELS)  # Laplace-like prior: P(stat > L) = exp(-L)
MIN_SLOPE = 0.3  # past the last level, log10 p falls at least this much per unit


def prior_freq(n: int) -> np.ndarray:
    """Prior exceedance frequencies for ``n`` series, shape ``(n, len(LEVELS))``."""
    return np.tile(_PRIOR, (n, 1))


def tail_log10(stat: np.ndarray, freq: np.ndarray) -> np.ndarray:
    """log10 P(statistic >= stat) per series (row of ``freq``), interpolated in log10."""
    stat = np.maximum(stat, 0.0)
    rows = np.arange(stat.size)
    j = np.minimum(np.searchsorted(_KNOTS, stat) - 1, _KNOTS.size - 2)
    j = np.maximum(j, 0)
    y1 = np.log10(freq[rows, j])
    y0 = np.where(j > 0, np.log10(freq[rows, np.maximum(j - 1, 0)]), 0.0)
    x0 = _KNOTS[j]
    slope = (y1 - y0) / (_KNOTS[j + 1] - x0)
    past = stat > _KNOTS[-1]
    if past.any():
        steep = np.minimum(slope, -MIN_SLOPE)
        return np.minimum(np.where(past, y1 + steep * (stat - _KNOTS[-1]),
                                   y0 + slope * (stat - x0)), 0.0)
    return np.minimum(y0 + slope * (stat - x0), 0.0)


def update_freq(freq: np.ndarray, stat: np.ndarray, rate: np.ndarray,
                floor: float) -> np.ndarray:
    """Exceedance frequencies after one more statistic per series (EW, ``rate`` per row)."""
    freq = freq + rate[:, None] * ((stat[:, None] > LEVELS) - freq)
    return np.maximum(freq, floor)


def score_from_log10p(log10p: np.ndarray) -> np.ndarray:
    """The calibrated 0–1 score of a log10 tail probability."""
    return np.clip(-np.asarray(log10p) / DECADES, 0.0, 1.0)


def log10p_from_score(score: float) -> float:
    """The log10 tail probability a score stands for (inverse of the above)."""
    return -float(score) * DECADES


def severity_of(score: float, threshold: float) -> str:
    """Severity from how far past the threshold a score is: medium or high, never
    critical. A score says how unusual a value is, not how bad (it saturates at 1.0 on
    any clear anomaly); critical is for rules that say so and for escalation.

    >>> severity_of(1.0, 0.6), severity_of(0.7, 0.6), severity_of(0.5, 0.6)
    ('high', 'medium', 'low')
    """
    span = max(1.0 - threshold, 1e-9)
    excess = (score - threshold) / span
    if excess >= 0.4:
        return "high"
    if excess >= 0.0:
        return "medium"
    return "low"


class Calibrator:
    """One series' calibration as a small picklable object (for river-based detectors).

    >>> cal = Calibrator(rate=0.01)
    >>> for v in [0.5, 1.0, 0.7, 1.2] * 50:
    ...     cal.learn(v)
    >>> cal.score(1.0) < cal.score(30.0)
    True
    """

    def __init__(self, rate: float = 1 / 5000, prior_count: float = 100.0,
                 floor_fraction: float = 0.05) -> None:
        self.rate = rate
        self.prior_count = prior_count
        self.floor_fraction = floor_fraction
        self.n = 0
        self.freq = prior_freq(1)

    def log10p(self, stat: float) -> float:
        """log10 of the tail probability of ``stat``."""
        return float(tail_log10(np.array([stat]), self.freq)[0])

    def score(self, stat: float) -> float:
        """The calibrated 0–1 score of ``stat``."""
        return float(score_from_log10p(np.array([self.log10p(stat)]))[0])

    def learn(self, stat: float) -> None:
        """Count one more statistic."""
        rate = np.array([max(self.rate, 1.0 / (self.n + self.prior_count))])
        self.freq = update_freq(self.freq, np.array([stat]), rate,
                                self.rate * self.floor_fraction)
        self.n += 1


class AlertGate:
    """Warm-up, calibration and rest period of one series (for per-object detectors).

    ``score(stat)`` is the reported score: 0 during the first ``warmup`` points and for
    ``rest_points`` points after a score reached ``threshold``. A low frequency floor
    lets a bounded statistic (e.g. a HalfSpaceTrees score) still reach high scores.
    """

    def __init__(self, warmup: int, threshold: float, rest_points: int,
                 calibration_rate: float, floor_fraction: float = 1e-3) -> None:
        self.warmup = warmup
        self.threshold = threshold
        self.rest_points = rest_points
        self.calibrator = Calibrator(rate=calibration_rate, floor_fraction=floor_fraction)
        self.n = 0
        self.rest = 0

    def raw(self, stat: float) -> float:
        """The calibrated score before warm-up and rest are applied."""
        return self.calibrator.score(stat)

    def score(self, stat: float) -> float:
        """The reported score of ``stat`` (no state change)."""
        if self.n < self.warmup or self.rest > 0:
            return 0.0
        return self.raw(stat)

    def learn(self, stat: float) -> None:
        """Count ``stat``: calibration, warm-up and rest advance."""
        fired = self.score(stat) >= self.threshold
        self.rest = self.rest_points if fired else max(self.rest - 1, 0)
        if self.n >= 10:
            self.calibrator.learn(stat)
        self.n += 1


EVT_LEVELS = np.array([2.0, 5.0, 12.0])
"""Levels whose exceedance frequency an extreme-value calibration tracks; past the last
one, the tail is an exponential whose mean excess is learnt (peaks over threshold)."""
EVT_ROWS = EVT_LEVELS.size + 1
"""State rows of one extreme-value calibration: a frequency per level, then the mean
excess over the last level."""
_EVT_KNOTS = np.concatenate([[0.0], EVT_LEVELS])
_LOG10_E = float(np.log10(np.e))


def evt_prior(k: int, mean_excess: float | np.ndarray) -> np.ndarray:
    """Prior rows ``(EVT_ROWS, k)``: Laplace-like frequencies ``exp(-L)`` and the prior
    mean excess (in units of the statistic)."""
    out = np.empty((EVT_ROWS, k))
    out[:-1] = np.exp(-EVT_LEVELS)[:, None]
    out[-1] = mean_excess
    return out


def evt_tail_log10(stat: np.ndarray, cal: np.ndarray) -> np.ndarray:
    """log10 P(statistic >= stat) per column of ``cal`` (rows as :func:`evt_prior`).

    Between 0 and the last level: interpolated in log10 between the tracked
    frequencies; past it: ``log10 f_last - excess / mean_excess * log10(e)``, so a
    series whose spikes are routinely huge (a spiky counter, a series that is flat
    between bursts) learns how huge, and one twice as large as its usual spikes is
    rarer by the learnt rate, not by a fixed slope.

    >>> cal = evt_prior(2, np.array([1.0, 50.0]))
    >>> lp = evt_tail_log10(np.array([40.0, 40.0]), cal)
    >>> bool(lp[0] < lp[1] < 0)  # a larger learnt mean excess: a milder tail
    True
    """
    stat = np.maximum(stat, 0.0)
    cols = np.arange(stat.size)
    j = np.clip(np.searchsorted(_EVT_KNOTS, stat) - 1, 0, _EVT_KNOTS.size - 2)
    lf = np.log10(cal[:-1])
    y1 = lf[j, cols]
    y0 = np.where(j > 0, lf[np.maximum(j - 1, 0), cols], 0.0)
    x0 = _EVT_KNOTS[j]
    inside = y0 + (y1 - y0) / (_EVT_KNOTS[j + 1] - x0) * (stat - x0)
    excess = stat - EVT_LEVELS[-1]
    past = lf[-1] - np.maximum(excess, 0.0) / np.maximum(cal[-1], 1e-300) * _LOG10_E
    return np.minimum(np.where(excess > 0, past, inside), 0.0)


def evt_update(cal: np.ndarray, stat: np.ndarray, rate: np.ndarray, floor: float | np.ndarray,
               excess_rate: float | np.ndarray) -> None:
    """Count one more statistic per column in place: frequencies at ``rate`` (no change
    where it is 0), and the mean excess at ``excess_rate`` when the statistic passes the
    last level."""
    hit = (stat[None, :] > EVT_LEVELS[:, None]).astype(np.float64)
    cal[:-1] += rate[None, :] * (hit - cal[:-1])
    np.maximum(cal[:-1], floor, out=cal[:-1])
    excess = stat - EVT_LEVELS[-1]
    grow = (excess > 0) & (rate > 0)
    cal[-1] = np.where(grow, cal[-1] + excess_rate * (excess - cal[-1]), cal[-1])
