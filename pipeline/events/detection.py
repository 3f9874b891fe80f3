"""The detection: what a rule detector or an online model says about one series.

Detections travel on ``tocsin.detections`` as JSON (:meth:`Detection.to_json`) and are
stored in the ``detections`` table (:func:`detections_table`). A detection is emitted on
state changes only: ``firing`` when a condition starts to hold, ``resolved`` when it
clears (plus periodic keep-alives when a detector is configured for them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import orjson
import pyarrow as pa

from pipeline.events.sizes import MessageTooLarge

SEVERITIES = ("low", "medium", "high", "critical")
CATEGORIES = ("performance", "connectivity", "resource", "configuration", "security", "data",
              "availability", "coordination")
STATES = ("firing", "resolved")
MODEL_PREFIX = "model:"  # detectors named model:<name> are online models, the rest rules


_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _plain(value: Any) -> Any:
    """numpy scalars and other number-likes that orjson does not take as they are."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def detection_id(detector: str, labels: Mapping[str, str], window_start_ms: int,
                 state: str) -> str:
    """A stable id: the same detector, series, window and state always give the same id."""
    key = orjson.dumps([detector, sorted(labels.items()), window_start_ms, state])
    return hashlib.blake2b(key, digest_size=12).hexdigest()


@dataclass(frozen=True)
class Detection:
    """One state change of one detector on one series (``labels``), in event time."""

    id: str
    time: int  # epoch ms: when the state changed (end of the window that decided it)
    detector: str  # rule name or model name
    detector_version: str
    signal: str  # metrics | logs | traces
    service: str
    category: str
    severity: str
    state: str  # firing | resolved
    title: str
    observed: float
    threshold: float = float("nan")
    score: float = float("nan")  # model score, calibrated to 0..1 (NaN for rules)
    window_start: int = 0
    window_end: int = 0
    host: str = ""
    entity: str = ""  # what the series is about beyond service/host (metric, operation ...)
    labels: dict[str, str] = field(default_factory=dict)
    description: str = ""
    confidence: float = 1.0
    symptoms: tuple[str, ...] = ()
    potential_causes: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)  # expected band, inputs ...

    def to_wire(self) -> dict[str, Any]:
        """The detection as a JSON-ready dict (NaN numbers become null)."""
        out = asdict(self)
        for key in ("threshold", "score", "observed", "confidence"):
            out[key] = None if out[key] != out[key] else float(out[key])
        out["symptoms"], out["potential_causes"] = list(self.symptoms), list(
            self.potential_causes)
        return out

    def to_json(self) -> bytes:
        """One message of the ``tocsin.detections`` topic."""
        return orjson.dumps(self.to_wire(), option=_JSON_OPTIONS, default=_plain)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Detection:
        """A detection from :meth:`to_wire` output (nulls back to NaN)."""
        values = dict(data)
        for key in ("threshold", "score", "observed"):
            if values.get(key) is None:
                values[key] = float("nan")
        values["symptoms"] = tuple(values.get("symptoms", ()))
        values["potential_causes"] = tuple(values.get("potential_causes", ()))
        return cls(**values)


MAX_TRIMMED_TEXT = 1024
"""Characters a text or label value keeps in a detection trimmed to fit a message."""


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TRIMMED_TEXT else text[:MAX_TRIMMED_TEXT - 3] + "..."


def detection_message(detection: Detection, max_value_bytes: int) -> bytes:
    """The detection's ``tocsin.detections`` message within ``max_value_bytes``.

    Over the limit, the evidence becomes ``{"truncated": true, "bytes": <full size>}``
    and the title, description and label values are cut to :data:`MAX_TRIMMED_TEXT`
    characters (the ``detections`` table keeps the whole detection). Raises
    :class:`~pipeline.events.sizes.MessageTooLarge` if even that is over.
    """
    data = detection.to_json()
    if len(data) <= max_value_bytes:
        return data
    trimmed = replace(detection, title=_cut(detection.title),
                      description=_cut(detection.description),
                      labels={_cut(k): _cut(v) for k, v in detection.labels.items()},
                      evidence={"truncated": True, "bytes": len(data)})
    small = trimmed.to_json()
    if len(small) > max_value_bytes:
        raise MessageTooLarge(f"detection {detection.id} of {detection.detector} on "
                              f"{detection.service[:80]!r} is {len(small)} bytes even trimmed, "
                              f"over the {max_value_bytes} bytes a message may carry")
    return small


def detections_table(detections: Sequence[Detection]) -> pa.Table:
    """Detections as rows of the ``detections`` table."""
    ts = pa.timestamp("ms", tz="UTC")
    d = detections
    return pa.table({
        "id": pa.array([x.id for x in d], pa.string()),
        "time": pa.array([x.time for x in d], ts),
        "detector": pa.array([x.detector for x in d], pa.string()),
        "detector_version": pa.array([x.detector_version for x in d], pa.string()),
        "signal": pa.array([x.signal for x in d], pa.string()),
        "service": pa.array([x.service for x in d], pa.string()),
        "host": pa.array([x.host for x in d], pa.string()),
        "entity": pa.array([x.entity for x in d], pa.string()),
        "category": pa.array([x.category for x in d], pa.string()),
        "severity": pa.array([x.severity for x in d], pa.string()),
        "state": pa.array([x.state for x in d], pa.string()),
        "title": pa.array([x.title for x in d], pa.string()),
        "description": pa.array([x.description for x in d], pa.string()),
        "observed": pa.array([x.observed for x in d], pa.float64()),
        "threshold": pa.array([x.threshold for x in d], pa.float64()),
        "score": pa.array([x.score for x in d], pa.float64()),
        "confidence": pa.array([x.confidence for x in d], pa.float32()),
        "window_start": pa.array([x.window_start for x in d], ts),
        "window_end": pa.array([x.window_end for x in d], ts),
        "labels": pa.array([list(x.labels.items()) for x in d],
                           pa.map_(pa.string(), pa.string())),
        "symptoms": pa.array([list(x.symptoms) for x in d], pa.list_(pa.string())),
        "potential_causes": pa.array([list(x.potential_causes) for x in d],
                                     pa.list_(pa.string())),
        "evidence": pa.array([orjson.dumps(x.evidence, option=_JSON_OPTIONS,
                                           default=_plain).decode() for x in d], pa.string()),
    })
