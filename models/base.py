"""The detector contract, in the style of river's anomaly detectors.

Every detector is a :class:`river.base.AnomalyDetector`:

- ``learn_one(x)`` updates the model; ``score_one(x)`` returns a calibrated score in
  [0, 1] (higher is more anomalous) and never changes the model, so a stream scores each
  point *before* learning it;
- constructor arguments are the configuration, stored under the same names (``clone()``
  and the registry rebuild a detector from them); no I/O in ``__init__``;
- randomness comes from a per-instance generator seeded by ``seed``;
- instances pickle, so a trained detector can be published to the registry.

Metric detectors take ``x = {"value": float, "time": epoch_ms}``; ``time`` drives
seasonality and may be left out (no seasonality then). Multivariate detectors take a
dict of named features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from river.base import AnomalyDetector

from models.calibration import log10p_from_score
from pipeline.errors import TocsinError


class ModelError(TocsinError):
    """A model, its configuration or a registry entry is invalid; the message says which."""


class Detector(AnomalyDetector):
    """Base of Tocsin's detectors: a river anomaly detector with a name and an explanation."""

    name: ClassVar[str] = ""
    """Model name used in detections (``model:<name>``) and in the registry."""

    warmup: int = 0

    def explain_one(self, x: Mapping[str, Any]) -> dict[str, Any]:
        """What the model expected for ``x`` (``expected``, ``band_low``, ``band_high``)."""
        return {}

    @property
    def params(self) -> dict[str, Any]:
        """The configuration: constructor arguments by name (JSON-friendly values)."""
        return dict(self._get_params())


def metric_input(x: Mapping[str, Any] | float) -> tuple[float, int]:
    """``(value, time_ms)`` of a metric detector's input (a dict or a bare number)."""
    if isinstance(x, Mapping):
        try:
            value = float(x["value"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"expected x = {{'value': number, 'time': epoch_ms}}, got {x!r}"
                             ) from exc
        return value, int(x.get("time", 0) or 0)
    return float(x), 0


@dataclass
class Finding:
    """A state change found by a model, before the engine turns it into a Detection."""

    model: str  # model name, e.g. "robust-seasonal" (the detector is "model:<name>")
    signal: str  # metrics | logs | traces
    state: str  # firing | resolved
    time: int  # epoch ms of the point or window end that decided it
    entity: str
    score: float
    observed: float
    window_start: int
    window_end: int
    host: str = ""
    category: str = ""
    title: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    severity: str = ""  # empty: from the score
    threshold: float | None = None  # the model's alarm level; None: the engine's
    keepalive: bool = False  # a firing alarm re-sent; ``time`` is the keep-alive tick


class ColumnarSeriesDetector(Detector):
    """A per-series metric model whose state is numpy columns: the band search and
    river's one-series contract, shared by the models that score with ``evaluate`` (an
    evaluation with ``expected`` and ``scale``), learn with ``update`` and say how
    surprising a value is with ``_log10p_at``."""

    threshold: float
    _state: Any

    def band(self, s: np.ndarray, ev: Any, threshold: float) -> tuple[np.ndarray,
                                                                         np.ndarray]:
        """Per series, the values (low, high) that score below ``threshold`` (bisection);
        an empty band (low = high = expected) when the expected value itself scores past it."""
        target = log10p_from_score(threshold)
        out = []
        for side in (-1.0, 1.0):
            lo = np.zeros(ev.expected.size)
            hi = np.maximum(ev.scale, 1e-9) * 64.0
            for _ in range(8):  # widen until the far end scores past the threshold
                inside = self._log10p_at(s, ev, ev.expected + side * hi) > target
                if not inside.any():
                    break
                hi = np.where(inside, hi * 8.0, hi)
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                inside = self._log10p_at(s, ev, ev.expected + side * mid) > target
                lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
            out.append(ev.expected + side * lo)
        return out[0], out[1]

    # -- the river contract for one series -------------------------------------------------

    def _point(self, x: Mapping[str, Any] | float) -> tuple[np.ndarray, np.ndarray]:
        value, time_ms = metric_input(x)
        return np.array([value]), np.array([float(time_ms)])

    def score_one(self, x: Mapping[str, Any] | float) -> float:
        """Calibrated 0–1 score of ``x`` (``{"value", "time"}``); the model is unchanged."""
        xs, ts = self._point(x)
        return float(self.evaluate(self._state, xs, ts).score[0])

    def learn_one(self, x: Mapping[str, Any] | float) -> None:
        """Learn ``x``."""
        xs, ts = self._point(x)
        self.update(self._state, xs, ts, self.evaluate(self._state, xs, ts))

    def explain_one(self, x: Mapping[str, Any] | float) -> dict[str, Any]:
        """Expected value and the band of values below the threshold, for ``x``."""
        xs, ts = self._point(x)
        ev = self.evaluate(self._state, xs, ts)
        low, high = self.band(self._state, ev, self.threshold)
        return {"expected": float(ev.expected[0]), "band_low": float(low[0]),
                "band_high": float(high[0])}


def keepalive_due(sent_ms: int, now_ms: int, keepalive_ms: int) -> int | None:
    """The latest keep-alive tick ``sent_ms + k * keepalive_ms`` (k >= 1) at or before
    ``now_ms``, or ``None`` (none due, or keep-alives off).

    >>> keepalive_due(1_000, 8_500, 3_000), keepalive_due(1_000, 3_999, 3_000)
    (7000, None)
    """
    if keepalive_ms <= 0 or now_ms - sent_ms < keepalive_ms:
        return None
    return sent_ms + (now_ms - sent_ms) // keepalive_ms * keepalive_ms
