"""Tumbling windows and count baselines shared by the log and trace analytics.

:class:`Windows` buckets records by event time into tumbling windows and hands back the
windows a watermark has closed, in order. :class:`CountBaselines` keeps, per key (a log
template, an error counter ...), an exponentially weighted mean count per window and an
over-dispersion factor, and scores a window's counts as the upper tail probability of a
burst (Anscombe-transformed Poisson, widened by the dispersion the key has shown), on
the calibrated 0–1 scale of :mod:`models.calibration`. Arrays are indexed by key slot,
so a window with hundreds of keys is scored in a few numpy operations.

>>> base = CountBaselines(rate=0.1)
>>> for _ in range(30):
...     _ = base.observe({"a": 3})
>>> scores = base.observe({"a": 40})
>>> scores["a"].score > 0.5, base.slot("a") == 0
(True, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import log_ndtr, ndtri

from models.calibration import log10p_from_score, score_from_log10p

_LN10 = np.log(10.0)


def log10_upper_tail(z: np.ndarray) -> np.ndarray:
    """log10 P(Z >= z) for a standard normal Z (accurate far into the tail)."""
    return log_ndtr(-np.asarray(z, dtype=np.float64)) / _LN10


def z_for_score(score: float) -> float:
    """The one-sided normal z whose tail probability a calibrated score stands for."""
    return float(-ndtri(10.0 ** log10p_from_score(score)))


class Windows:
    """Tumbling event-time windows of ``window_ms``; closed ``grace_ms`` after their end."""

    def __init__(self, window_ms: int, grace_ms: int) -> None:
        self.window_ms = window_ms
        self.grace_ms = grace_ms
        self.open: dict[int, dict[str, Any]] = {}
        self.closed_until = 0  # windows starting before this are closed
        self.max_time = 0
        self.late = 0

    def bucket(self, time_ms: int) -> dict[str, Any] | None:
        """The accumulator of the window holding ``time_ms`` (``None``: already closed)."""
        start = time_ms - time_ms % self.window_ms
        if start < self.closed_until:
            self.late += 1
            return None
        self.max_time = max(self.max_time, time_ms)
        acc = self.open.get(start)
        if acc is None:
            acc = self.open[start] = {}
        return acc

    def close(self, watermark_ms: int | None = None) -> list[tuple[int, dict[str, Any]]]:
        """Windows whose end + grace is at or before the watermark, oldest first."""
        mark = self.max_time if watermark_ms is None else max(watermark_ms, self.max_time)
        done = sorted(s for s in self.open if s + self.window_ms + self.grace_ms <= mark)
        out = [(s, self.open.pop(s)) for s in done]
        if out:
            self.closed_until = max(self.closed_until, out[-1][0] + self.window_ms)
        return out

    def resized(self, window_ms: int, grace_ms: int) -> Windows:
        """These windows with a new size and grace, as a new configuration runs them.

        A new grace keeps the open windows. A new size cannot split or merge their
        counts: the open windows are dropped (their records are not scored) and the
        first new window starts at the first boundary of the new size at or after the
        end of the last closed window; records before it count as late.
        """
        if window_ms == self.window_ms:
            self.grace_ms = grace_ms
            return self
        out = Windows(window_ms, grace_ms)
        out.closed_until = -(-self.closed_until // window_ms) * window_ms
        out.max_time, out.late = self.max_time, self.late
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"open": [[s, acc] for s, acc in self.open.items()],
                "closed_until": self.closed_until, "max_time": self.max_time,
                "late": self.late}

    def load(self, data: Mapping[str, Any]) -> None:
        self.open = {int(s): acc for s, acc in data["open"]}
        self.closed_until, self.max_time = data["closed_until"], data["max_time"]
        self.late = data["late"]


@dataclass
class CountScore:
    """One key's window: its count, the expected count and band, the scores."""

    count: float
    expected: float
    band_high: float
    score: float
    age: int  # windows since the key was first seen (0: new in this window)
    drop: float = 0.0  # score of the lower tail: far fewer than usual (0 for rare keys)
    band_low: float = 0.0  # the fewest the baseline accepts at the threshold


class CountBaselines:
    """EW Poisson baselines per key with over-dispersion, scored as burst tail probabilities."""

    def __init__(self, rate: float = 0.05, prior_mean: float = 0.05,
                 min_count: float = 5.0, threshold: float = 0.5) -> None:
        self.rate = rate
        self.prior_mean = prior_mean
        self.min_count = min_count
        self.threshold = threshold
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.mean = np.zeros(0)
        self.disp = np.zeros(0)
        self.age = np.zeros(0)

    def slot(self, key: str) -> int:
        """The slot of ``key``, created with the prior baseline when new."""
        slot = self.index.get(key)
        if slot is None:
            slot = self.index[key] = len(self.keys)
            self.keys.append(key)
            self.mean = np.append(self.mean, self.prior_mean)
            self.disp = np.append(self.disp, 1.0)
            self.age = np.append(self.age, -1.0)
        return slot

    def observe(self, counts: Mapping[str, float]) -> dict[str, CountScore]:
        """Score one closed window (keys absent from ``counts`` had 0), then learn it."""
        for key in counts:
            self.slot(key)
        c = np.zeros(len(self.keys))
        for key, value in counts.items():
            c[self.index[key]] = value
        seen = (self.age >= 0) | (c > 0)
        age = np.where(self.age < 0, 0.0, self.age + 1.0)
        z = 2.0 * (np.sqrt(c + 0.375) - np.sqrt(self.mean + 0.375)) / np.sqrt(self.disp)
        score = np.where(c >= self.min_count, score_from_log10p(log10_upper_tail(z)), 0.0)
        # a drop (a statement logged far less, or no more) is only meaningful for a key
        # usually seen at least twice the smallest burst count per window
        drop = np.where(self.mean >= 2.0 * self.min_count,
                        score_from_log10p(log10_upper_tail(-z)), 0.0)
        zt = z_for_score(self.threshold)
        high = (np.sqrt(self.mean + 0.375) + 0.5 * zt * np.sqrt(self.disp)) ** 2 - 0.375
        low = np.maximum(np.sqrt(self.mean + 0.375) - 0.5 * zt * np.sqrt(self.disp),
                         np.sqrt(0.375)) ** 2 - 0.375
        out = {key: CountScore(float(c[i]), float(self.mean[i]), float(high[i]),
                               float(score[i]), int(age[i]), float(drop[i]), float(low[i]))
               for i, key in enumerate(self.keys) if seen[i]}
        raw_z2 = (z * np.sqrt(self.disp)) ** 2
        self.disp = np.where(seen, np.maximum(1.0, self.disp + self.rate
                                              * (np.minimum(raw_z2, 25.0) - self.disp)),
                             self.disp)
        self.mean = np.where(seen, self.mean + self.rate * (c - self.mean), self.mean)
        self.age = np.where(seen, age, -1.0)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"keys": self.keys, "mean": self.mean.tolist(), "disp": self.disp.tolist(),
                "age": self.age.tolist()}

    def load(self, data: Mapping[str, Any]) -> None:
        self.keys = list(data["keys"])
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.mean = np.asarray(data["mean"], dtype=np.float64)
        self.disp = np.asarray(data["disp"], dtype=np.float64)
        self.age = np.asarray(data["age"], dtype=np.float64)
