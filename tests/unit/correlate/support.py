"""Builders shared by the correlator tests: detections shaped like rules emit them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import lru_cache

from pipeline.correlate import (
    CorrelateSettings,
    CorrelationState,
    Correlator,
    Decision,
    Problem,
)
from pipeline.events.detection import Detection, detection_id
from pipeline.knowledge import KnowledgeBase, load_knowledge

T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z
SEC = 1_000
MIN = 60_000
HOUR = 3_600_000

# the simulator's shop (pipeline/simulate/default_system.yaml): caller -> callees
SHOP = {
    "gateway": ("api",), "api": ("auth", "orders"), "auth": ("cache",),
    "orders": ("postgres", "cache", "inventory", "payments"),
    "inventory": ("postgres", "cache"), "agent-coordinator": ("agent-worker",),
    "agent-worker": ("postgres",),
}


@lru_cache(maxsize=1)
def kb() -> KnowledgeBase:
    """The built-in knowledge base, loaded once."""
    return load_knowledge()


def det(detector: str, service: str, t: int, *, state: str = "firing",
        category: str = "availability", severity: str = "high", host: str = "",
        labels: dict[str, str] | None = None, observed: float = 0.2, threshold: float = 0.05,
        score: float = float("nan"), title: str = "", signal: str = "metrics",
        evidence: dict | None = None, confidence: float = 1.0) -> Detection:
    """One detection; the id depends on detector, labels, time and state like a rule's."""
    lab = {"service.name": service, **({"host.name": host} if host else {}), **(labels or {})}
    return Detection(
        id=detection_id(detector, lab, t, state), time=t, detector=detector,
        detector_version="1", signal=signal, service=service, category=category,
        severity=severity, state=state, title=title or detector.replace("_", " "),
        observed=observed, threshold=threshold, score=score, window_start=t - MIN,
        window_end=t, host=host, labels=lab, evidence=evidence or {}, confidence=confidence)


def cleared(d: Detection, t: int) -> Detection:
    """The ``resolved`` detection of the same series at ``t``."""
    return replace(d, id=detection_id(d.detector, d.labels, t, "resolved"), time=t,
                   state="resolved", window_start=t - MIN, window_end=t)


def again(d: Detection, t: int) -> Detection:
    """Another firing detection of the same series (keep-alive or recurrence) at ``t``."""
    return replace(d, id=detection_id(d.detector, d.labels, t, "firing"), time=t,
                   window_start=t - MIN, window_end=t)


def settings(**overrides) -> CorrelateSettings:
    """Default settings on the shop's call graph, with overrides."""
    return CorrelateSettings(**{"static_dependencies": SHOP, **overrides})


def correlator(**overrides) -> Correlator:
    """A correlator of scope ``test``."""
    return Correlator(settings(**overrides), kb(), scope="test")


class Run:
    """Feeds a correlator step by step, keeping the state and every decision."""

    def __init__(self, corr: Correlator | None = None, **overrides) -> None:
        self.corr = corr or correlator(**overrides)
        self.state = CorrelationState.empty(self.corr.scope)
        self.decisions: list[Decision] = []

    def feed(self, dets: Iterable[Detection], now: int | None = None,
             topology=None) -> list[Decision]:
        dets = list(dets)
        now = max(d.time for d in dets) if now is None else now
        self.state, out = self.corr.on_detections(self.state, dets, now, topology)
        self.decisions += out
        return out

    def tick(self, now: int) -> list[Decision]:
        self.state, out = self.corr.on_tick(self.state, now)
        self.decisions += out
        return out

    def control(self, event, now: int) -> list[Decision]:
        self.state, out = self.corr.on_control(self.state, event, now)
        self.decisions += out
        return out

    def open(self) -> list[Problem]:
        return self.state.open_problems()

    def problem(self, pid: str) -> Problem:
        return self.state.problems[pid]


def kinds(decisions: Sequence[Decision]) -> list[tuple[str, bool]]:
    """``(kind, notify)`` of each decision."""
    return [(d.kind, d.notify) for d in decisions]
