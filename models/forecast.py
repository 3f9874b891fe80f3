"""Detectors built on river estimators, one object per series.

:class:`ForecastResidual` scores the residual of a river forecaster (an additive
Holt-Winters by default: level, trend and a season of ``seasonality`` points,
:class:`AdditiveHoltWinters`) against a robust running scale;
:class:`HalfSpaceTreesScorer` is river's HalfSpaceTrees on the value as a robust z
squashed into (0, 1), its raw score calibrated. Both cost tens of microseconds and a few
kilobytes per series (the forecaster keeps ``seasonality + 5`` floats, the trees
``n_trees * 2**height`` nodes), so the stream uses
:class:`~models.univariate.RobustSeasonal` per series and these where a series is worth
it (notebooks, tuning, small fleets).

>>> det = ForecastResidual(seasonality=4, warmup=20)
>>> for i in range(200):
...     det.learn_one({"value": [1.0, 2.0, 3.0, 2.0][i % 4]})
>>> det.score_one({"value": 2.0}) < det.score_one({"value": 9.0})
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from river import anomaly, time_series

from models.base import Detector, metric_input
from models.calibration import AlertGate

_MAD_TO_SD = 1.2533


class _RobustScale:
    """EW mean absolute deviation around an EW median-ish centre (winsorised)."""

    def __init__(self, rate: float, clip: float = 5.0) -> None:
        self.rate, self.clip = rate, clip
        self.centre = 0.0
        self.scale = 0.0
        self.n = 0

    def z(self, value: float) -> float:
        if self.n == 0:
            return 0.0
        return (value - self.centre) / max(self.scale, 1e-9 + 1e-3 * abs(self.centre))

    def learn(self, value: float) -> None:
        rate = max(self.rate, 1.0 / (self.n + 1))
        dev = value - self.centre
        if self.n >= 10:
            lim = self.clip * max(self.scale, 1e-9)
            dev = min(max(dev, -lim), lim)
        self.centre = value if self.n == 0 else self.centre + rate * dev
        self.scale = 0.0 if self.n == 0 else self.scale + rate * (_MAD_TO_SD * abs(dev)
                                                                  - self.scale)
        self.n += 1


class AdditiveHoltWinters(time_series.base.Forecaster):
    """Additive Holt-Winters (level, optional trend, optional season of ``seasonality``
    points) as a river forecaster, initialised without dividing by the data.

    river's ``HoltWinters`` starts its additive season at ``value / mean`` of the first
    ``seasonality`` values: a series that starts at 0 divides by zero, and any other
    starts its forecasts about one unit off. Here the season starts at ``value - mean``,
    so the first forecasts are the first cycle itself.

    >>> hw = AdditiveHoltWinters(alpha=0.3, beta=0.01, gamma=0.1, seasonality=3)
    >>> for y in [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]:
    ...     hw.learn_one(y)
    >>> hw.forecast(horizon=1)
    [0.0]
    """

    def __init__(self, alpha: float, beta: float | None = None, gamma: float | None = None,
                 seasonality: int = 0) -> None:
        if seasonality < 0:
            raise ValueError(f"seasonality must be >= 0 points, got {seasonality}")
        if seasonality and gamma is None:
            raise ValueError("gamma must be set if seasonality is set")
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.seasonality = seasonality
        self._first: list[float] = []
        self._level = 0.0
        self._trend = 0.0
        self._season: list[float] = []
        self._t = 0  # points learnt since initialisation: the season's phase

    def learn_one(self, y: float, x: dict | None = None) -> None:
        """Update level, trend and season with ``y``."""
        if len(self._first) < max(2, self.seasonality):
            self._first.append(float(y))
            if len(self._first) == max(2, self.seasonality):
                first = self._first
                self._level = sum(first) / len(first)
                if self.beta:
                    self._trend = (first[-1] - first[0]) / (len(first) - 1)
                if self.seasonality:
                    self._season = [v - self._level for v in first[-self.seasonality:]]
            return
        m = self.seasonality
        season = self._season[self._t % m] if m else 0.0
        level = self._level
        self._level = self.alpha * (y - season) + (1 - self.alpha) * (level + self._trend)
        if self.beta:
            self._trend = self.beta * (self._level - level) + (1 - self.beta) * self._trend
        if m:
            self._season[self._t % m] = (self.gamma * (y - level - self._trend)
                                         + (1 - self.gamma) * season)
        self._t += 1

    def forecast(self, horizon: int, xs: list[dict] | None = None) -> list[float]:
        """Forecasts 1 .. ``horizon`` steps ahead (the last learnt level before that)."""
        m = self.seasonality
        if not self._first:
            return [0.0] * horizon
        if len(self._first) < max(2, m):
            return [self._first[-1]] * horizon
        return [self._level + (h + 1) * self._trend
                + (self._season[(self._t + h) % m] if m else 0.0) for h in range(horizon)]


class ForecastResidual(Detector):
    """Residuals of a river forecaster (Holt-Winters by default), calibrated.

    ``forecaster`` is any river forecaster; ``None`` builds an
    :class:`AdditiveHoltWinters` ``(alpha, beta, gamma, seasonality)``, which also works
    on series that start at 0.
    """

    name = "holt-winters"

    def __init__(self, forecaster: time_series.base.Forecaster | None = None,
                 alpha: float = 0.3, beta: float = 0.01, gamma: float = 0.1,
                 seasonality: int = 24, scale_rate: float = 0.02,
                 calibration_rate: float = 1 / 5000, warmup: int = 100,
                 threshold: float = 0.35, rest_points: int = 200, seed: int = 0) -> None:
        self.forecaster = forecaster
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.seasonality = seasonality
        self.scale_rate = scale_rate
        self.calibration_rate = calibration_rate
        self.warmup = max(warmup, seasonality + 2)
        self.threshold = threshold
        self.rest_points = rest_points
        self.seed = seed
        self._model = (forecaster.clone() if forecaster is not None else
                       AdditiveHoltWinters(alpha=alpha, beta=beta, gamma=gamma,
                                           seasonality=seasonality))
        self._scale = _RobustScale(scale_rate)
        self._gate = AlertGate(self.warmup, threshold, rest_points, calibration_rate)
        self._seen = 0

    def _expected(self) -> float | None:
        if self._seen < max(2, self.seasonality) + 1:
            return None
        return float(self._model.forecast(horizon=1)[0])

    def _stat(self, value: float) -> float:
        expected = self._expected()
        return 0.0 if expected is None else abs(self._scale.z(value - expected))

    def score_one(self, x: Mapping[str, Any] | float) -> float:
        """Calibrated 0–1 score of ``x``; the model is unchanged."""
        return self._gate.score(self._stat(metric_input(x)[0]))

    def learn_one(self, x: Mapping[str, Any] | float) -> None:
        """Learn ``x``."""
        value = metric_input(x)[0]
        expected = self._expected()
        if expected is not None:
            self._gate.learn(abs(self._scale.z(value - expected)))
            self._scale.learn(value - expected)
        self._model.learn_one(value)
        self._seen += 1

    def explain_one(self, x: Mapping[str, Any] | float) -> dict[str, Any]:
        """The forecast for ``x`` and a 3-scale band around it."""
        expected = self._expected()
        if expected is None:
            return {}
        width = 3.0 * self._scale.scale
        return {"expected": expected, "band_low": expected - width,
                "band_high": expected + width}

    @classmethod
    def _unit_test_params(cls):
        yield {"seasonality": 4, "warmup": 20}
        yield {"seasonality": 8, "alpha": 0.5, "rest_points": 0, "warmup": 30}


def _expand(raw: float) -> float:
    """HalfSpaceTrees scores crowd below 1 (1: no mass anywhere): spread the top end."""
    return -math.log(1.0 - min(raw, 1.0) + 1e-3)


class HalfSpaceTreesScorer(Detector):
    """river's HalfSpaceTrees on one series (robust z, squashed), its score calibrated."""

    name = "half-space-trees"

    def __init__(self, n_trees: int = 10, height: int = 8, window_size: int = 250,
                 calibrated: bool = True, calibration_rate: float = 1 / 5000,
                 warmup: int = 100, threshold: float = 0.35, rest_points: int = 200,
                 seed: int = 42) -> None:
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.calibrated = calibrated
        self.calibration_rate = calibration_rate
        self.warmup = warmup
        self.threshold = threshold
        self.rest_points = rest_points
        self.seed = seed
        self._model = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height,
                                             window_size=window_size, seed=seed)
        self._value = _RobustScale(0.01)
        self._scale = _RobustScale(0.01)
        self._gate = AlertGate(max(warmup - window_size, 0), threshold, rest_points,
                               calibration_rate)
        self._seen = 0

    def _features(self, x: Mapping[str, Any] | float) -> dict[str, float]:
        """The value as a robust z against its history, squashed into (0, 1)."""
        z = max(min(self._value.z(metric_input(x)[0]), 60.0), -60.0)
        return {"value": 1.0 / (1.0 + math.exp(-z / 4.0))}

    def _stat(self, raw: float) -> float:
        return max(self._scale.z(_expand(raw)), 0.0)

    def score_one(self, x: Mapping[str, Any] | float) -> float:
        """Calibrated (or raw, with ``calibrated=False``) score of ``x``."""
        raw = self._model.score_one(self._features(x))
        return self._gate.score(self._stat(raw)) if self.calibrated else raw

    def learn_one(self, x: Mapping[str, Any] | float) -> None:
        """Learn ``x``."""
        features = self._features(x)
        raw = self._model.score_one(features)
        if self._seen >= self.window_size:  # HST scores 0 until its first window is full
            self._gate.learn(self._stat(raw))
            self._scale.learn(_expand(raw))
        self._seen += 1
        self._model.learn_one(features)
        self._value.learn(metric_input(x)[0])

    @classmethod
    def _unit_test_params(cls):
        yield {"warmup": 30, "n_trees": 5, "height": 6, "window_size": 50}
        yield {"warmup": 30, "n_trees": 3, "height": 4, "window_size": 30, "seed": 7,
               "rest_points": 0}
