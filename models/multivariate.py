"""A service's health as one vector, scored by river's HalfSpaceTrees.

Per timestamp the engine folds a service's metrics over its hosts into one vector
(:data:`FEATURES`: p95 latency, error ratio, CPU, memory, mean over hosts) and scores it
with :class:`ServiceVectorHST`: each feature as a robust z against its own running
centre and scale, squashed into (0, 1), then HalfSpaceTrees, its raw score calibrated
per service (see :mod:`models.calibration`). The per-feature centres also let a
detection say which feature moved most and what was expected of it.

The trees are river objects, kept by pickling (the one pickle in the engine's state):
with the defaults (``n_trees=10``, ``height=6``) about 46 KB per service, 14 KB once
compressed with the rest of the state, once per service, not per series.

>>> import random
>>> rng = random.Random(1)
>>> def normal():
...     return {"latency_p95": rng.gauss(20, 1), "error_ratio": rng.gauss(0.01, 0.002),
...             "cpu": rng.gauss(40, 2), "memory": rng.gauss(50, 1)}
>>> det = ServiceVectorHST(warmup=100, window_size=50)
>>> for _ in range(400):
...     det.learn_one(normal())
>>> bad = {"latency_p95": 400, "error_ratio": 0.6, "cpu": 99, "memory": 50}
>>> det.score_one(bad) > 0.6, det.score_one(normal()) < 0.3
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from river import anomaly

from models.base import Detector
from models.calibration import AlertGate
from models.forecast import _RobustScale

FEATURES: dict[str, str] = {
    "latency_p95": "http.server.request.duration.p95",
    "error_ratio": "http.server.error.ratio",
    "cpu": "system.cpu.utilization",
    "memory": "system.memory.utilization",
}
"""Vector feature -> the metric it is the mean over hosts of (OpenTelemetry names)."""
FEATURE_METRICS: dict[str, tuple[str, ...]] = {
    "latency_p95": (FEATURES["latency_p95"], "http.server.duration.p95",
                    "rpc.server.duration.p95", "rpc.server.call.duration.p95"),
    "error_ratio": (FEATURES["error_ratio"], "rpc.server.error.ratio"),
    "cpu": (FEATURES["cpu"], "container.cpu.utilization", "k8s.pod.cpu.utilization"),
    "memory": (FEATURES["memory"], "container.memory.utilization",
               "k8s.pod.memory.utilization"),
}
"""Every metric name a feature is read from: the conventions' older and Kubernetes names
too (each feature is a robust z against its own history, so units do not matter)."""


def _expand(raw: float) -> float:
    """HalfSpaceTrees scores crowd below 1 (1: no mass anywhere): spread the top end."""
    return -math.log(1.0 - min(raw, 1.0) + 1e-3)


class ServiceVectorHST(Detector):
    """HalfSpaceTrees over a service's vector of latency, errors, CPU and memory."""

    name = "service-hst"

    def __init__(self, n_trees: int = 10, height: int = 6, window_size: int = 100,
                 calibration_rate: float = 1 / 2000, warmup: int = 360,
                 threshold: float = 0.5, rest_points: int = 60, seed: int = 42) -> None:
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.calibration_rate = calibration_rate
        self.warmup = warmup
        self.threshold = threshold
        self.rest_points = rest_points
        self.seed = seed
        self._model = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height,
                                             window_size=window_size, seed=seed)
        self._score_scale = _RobustScale(0.01)
        self._features: dict[str, _RobustScale] = {}
        self._gate = AlertGate(max(warmup - window_size, 0), threshold, rest_points,
                               calibration_rate)
        self._seen = 0

    @staticmethod
    def _vector(x: Mapping[str, Any]) -> dict[str, float]:
        return {k: float(v) for k, v in x.items() if v is not None}

    def _squashed(self, vector: Mapping[str, float]) -> dict[str, float]:
        """Each feature as a robust z against its own history, squashed into (0, 1)."""
        out = {}
        for key, value in vector.items():
            scale = self._features.get(key)
            z = 0.0 if scale is None else max(min(scale.z(value), 60.0), -60.0)
            out[key] = 1.0 / (1.0 + math.exp(-z / 4.0))
        return out

    def _stat(self, raw: float) -> float:
        return max(self._score_scale.z(_expand(raw)), 0.0)

    def score_one(self, x: Mapping[str, Any]) -> float:
        """Calibrated 0–1 score of the vector ``x``; the model is unchanged."""
        return self.score_learn(x, learn=False)[0]

    def raw_score(self, x: Mapping[str, Any]) -> float:
        """The calibrated score without warm-up and rest (to decide when to resolve)."""
        return self.score_learn(x, learn=False)[1]

    def learn_one(self, x: Mapping[str, Any]) -> None:
        """Learn the vector ``x``."""
        self.score_learn(x, learn=True)

    def score_learn(self, x: Mapping[str, Any], learn: bool = True) -> tuple[float, float]:
        """(reported score, raw score) of ``x``, then learn it: one pass over the trees."""
        vector = self._vector(x)
        squashed = self._squashed(vector)
        hst = self._model.score_one(squashed)
        stat = self._stat(hst)
        raw = self._gate.raw(stat)
        score = 0.0 if self._gate.n < self._gate.warmup or self._gate.rest > 0 else raw
        if not learn:
            return score, raw
        if self._seen >= self.window_size:  # HST scores 0 until its first window is full
            self._gate.learn(stat)
            self._score_scale.learn(_expand(hst))
        self._seen += 1
        self._model.learn_one(squashed)
        for key, value in vector.items():
            self._features.setdefault(key, _RobustScale(0.01)).learn(value)
        return score, raw

    def explain_one(self, x: Mapping[str, Any]) -> dict[str, Any]:
        """The feature furthest from its usual value, with expectations per feature."""
        vector = self._vector(x)
        zs = {k: self._features[k].z(v) for k, v in vector.items() if k in self._features}
        if not zs:
            return {}
        top = max(zs, key=lambda k: abs(zs[k]))
        scale = self._features[top]
        return {"feature": top, "expected": scale.centre,
                "band_low": scale.centre - 3 * scale.scale,
                "band_high": scale.centre + 3 * scale.scale,
                "expected_by_feature": {k: round(self._features[k].centre, 6) for k in zs},
                "z_by_feature": {k: round(z, 3) for k, z in zs.items()}}

    @classmethod
    def _unit_test_params(cls):
        yield {"warmup": 40, "window_size": 30, "n_trees": 5, "height": 5}
        yield {"warmup": 40, "window_size": 30, "n_trees": 5, "height": 6, "seed": 3,
               "rest_points": 0}
