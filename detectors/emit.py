"""Detections from state changes: labels, rendered texts, evidence and a stable id."""

from __future__ import annotations

import math
from typing import Any

from detectors.columns import ATTRIBUTE_PREFIX
from detectors.machine import FIRING, KEEPALIVE, RESOLVED
from detectors.rules import Rule
from detectors.templates import render
from pipeline.events.detection import Detection, detection_id
from pipeline.events.durations import format_duration


def label_names(rule: Rule) -> tuple[str, ...]:
    """Names of a rule's series labels (attribute keys without their prefix)."""
    return tuple(g[len(ATTRIBUTE_PREFIX):] if g.startswith(ATTRIBUTE_PREFIX) else g
                 for g in rule.group_by)


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def build(rule: Rule, version: str, service: str, key: tuple[str, ...], kind: int,
          time: int, window_start: int, window_end: int, value: float, samples: int,
          fired_at: int, usual: float = math.nan, pre_existing: bool = False,
          latest: float | None = None) -> Detection:
    """One :class:`Detection` for a state change of ``rule`` on the series ``key``;
    ``pre_existing``: its condition has held since the series' first evaluation (evidence
    ``pre_existing``: a condition present when the detector began watching); ``latest``:
    a keep-alive's value over the window's last step alone (evidence ``latest_step``,
    and ``calm`` when it meets the clear condition: the trouble is over, the window
    still holds it)."""
    labels = dict(zip(label_names(rule), key, strict=True))
    service = labels.get("service") or service
    host = labels.get("host", "")
    entity = labels.get("name") or rule.entity
    state = "resolved" if kind == RESOLVED else "firing"
    if rule.kind == "absence":
        threshold = rule.for_ms / 1000.0
        evidence: dict[str, Any] = {"kind": "absence", "for_ms": rule.for_ms,
                                    "last_seen": window_start,
                                    "silent_ms": window_end - window_start}
    else:
        assert rule.condition is not None and rule.window is not None
        threshold = rule.condition.threshold
        evidence = {"kind": rule.kind, "aggregation": rule.aggregation,
                    "window": format_duration(rule.window.size_ms),
                    "window_type": rule.window.type, "step_ms": rule.window.step_ms,
                    "condition": rule.condition.text, "clear": rule.clear_condition.text,
                    "for_ms": rule.for_ms, "samples": int(samples)}
        if rule.converts or rule.kind == "exhaustion":
            evidence["unit"] = rule.unit
        if rule.kind == "exhaustion":
            evidence["capacity"] = (rule.capacity_select.describe()
                                    if rule.capacity_select is not None
                                    else f"{rule.capacity:g}{rule.capacity_unit}")
        if rule.baseline is not None:
            evidence["baseline"] = _num(usual)
    evidence["selector"] = rule.select.describe()
    if rule.points_at != "own":
        evidence["points_at"] = rule.points_at
    if kind != FIRING or fired_at != time:
        evidence["firing_since"] = int(fired_at)
    if kind == KEEPALIVE:
        evidence["keepalive"] = True
        if latest is not None and rule.condition is not None and not math.isnan(latest):
            evidence["latest_step"] = latest
            calm = bool(rule.clear_condition.holds(latest))
            ratio = rule.baseline.clear_ratio if rule.baseline is not None else None
            if ratio is not None and not math.isnan(usual) and usual > 0:
                calm = calm or bool(ratio.holds(latest / usual))  # back near its usual
            evidence["calm"] = calm
    if pre_existing:
        evidence["pre_existing"] = True
    context = {"rule": rule.name, "service": service, "host": host, "entity": entity,
               "value": value, "threshold": threshold,
               "clear": rule.clear_condition.threshold if rule.condition else threshold,
               "samples": samples, "baseline": usual, "confidence": rule.confidence,
               "window": format_duration(rule.window.size_ms) if rule.window else "",
               "for": format_duration(rule.for_ms), "severity": rule.severity,
               "category": rule.category, "aggregation": rule.aggregation,
               "signal": rule.signal, "unit": "" if rule.unit == "1" else rule.unit,
               "condition": rule.condition.text if rule.condition else "", **labels}
    id_labels = labels if "service" in labels else {**labels, "service": service}
    ident = detection_id(rule.name, id_labels, time if kind == KEEPALIVE else window_start,
                         state)
    return Detection(
        id=ident, time=int(time), detector=rule.name, detector_version=version,
        signal=rule.signal, service=service, category=rule.category,
        severity=rule.severity, state=state, title=render(rule.title, context),
        observed=float(value), threshold=float(threshold), window_start=int(window_start),
        window_end=int(window_end), host=host, entity=entity, labels=labels,
        description=render(rule.description, context), confidence=rule.confidence,
        symptoms=rule.symptoms, potential_causes=rule.potential_causes, evidence=evidence)
