"""The problem: what an operator acts on, and its rows in ``problems`` / ``problem_detections``.

A :class:`Problem` is immutable; each lifecycle change makes a new one with ``version + 1``.
``members`` holds one :class:`Member` per detected series (detector × labels): whether it
is still firing, when it started, its strongest deviation. ``links`` lists every detection
the problem took in (firing, keep-alive, resolved), which is what ``detection_ids`` and the
``problem_detections`` table show.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Any

import orjson
import pyarrow as pa

STATUSES = ("open", "acknowledged", "resolved")
RESOLUTIONS = ("", "detections_resolved", "timeout", "max_duration", "merged")
ROLES = ("trigger", "member", "symptom", "keepalive", "resolve", "merged")
MAX_REOPENS = 50  # reopen times a problem keeps


@dataclass(frozen=True)
class Member:
    """One detected series inside a problem."""

    key: str  # series key: detector + labels (see grouping.series_key)
    detector: str
    service: str
    host: str
    category: str
    severity: str
    title: str
    signal: str
    state: str  # firing | resolved
    first_ms: int  # first firing detection
    last_ms: int  # latest firing detection (keep-alives included)
    resolved_ms: int | None = None
    strength: float = 0.0  # strongest deviation seen, 0..1
    observed: float | None = None  # at the strongest deviation
    threshold: float | None = None
    confidence: float = 1.0
    peer: str = ""  # a service its labels name as the failing peer
    version: str = ""  # service.version seen on this series
    deploy: str = ""  # deploy evidence text, empty when none
    labels: Mapping[str, str] = field(default_factory=dict)
    symptoms: tuple[str, ...] = ()
    potential_causes: tuple[str, ...] = ()
    drop: bool = False  # its strongest deviation is below the usual value (e.g. idle CPU)
    points_at: str = ""  # "callers": it shows its callers' trouble (traffic stopped upstream)
    score: float | None = None  # a model's anomaly score at the strongest deviation
    band_low: float | None = None  # the model's expected band there (evidence), if any
    band_high: float | None = None
    onset_ms: int | None = None  # when it last began firing (None: first_ms)
    deviation: float = 0.0  # strongest distance from its own baseline, in band half-widths
    joined: str = ""  # why it joined the problem (the relation that linked it)
    growing: bool = False  # a growth (trend) alarm: the trouble is still worsening
    aftermath: bool = False  # joined as the aftermath of a recovered root: no change of it
    # a keep-alive saw its series back (in band, clear) since it fired; on a resolved
    # member: its problem resolved while it was so (its detector's alarm still on)
    calm: bool = False
    calm_ms: int | None = None  # when a keep-alive first saw it back (None: never)

    @property
    def onset(self) -> int:
        """When the series last began firing."""
        return self.first_ms if self.onset_ms is None else self.onset_ms

    @property
    def quiet_since(self) -> int | None:
        """Since when the series shows no trouble: resolved, or (still firing) calm since
        a keep-alive saw it back; None while it still fails.

        >>> Member("k", "d", "s", "", "resource", "high", "t", "metrics", "firing", 1, 9,
        ...        calm=True, calm_ms=5).quiet_since
        5
        """
        if self.state == "resolved":
            return self.last_ms if self.resolved_ms is None else self.resolved_ms
        if not self.calm:
            return None
        return self.last_ms if self.calm_ms is None else self.calm_ms  # (older state)


@dataclass(frozen=True)
class Link:
    """One row of ``problem_detections``: a detection the problem took in, and how."""

    problem_id: str
    detection_id: str
    time: int
    service: str
    role: str  # one of ROLES


@dataclass(frozen=True)
class RootCause:
    """A ranked root-cause candidate with its score (0..1) and the evidence for it."""

    service: str
    score: float
    evidence: tuple[str, ...] = ()
    host: str = ""

    def to_wire(self) -> dict[str, Any]:
        """``{"service", "score", "evidence", "host"}``."""
        return {"service": self.service, "score": self.score, "evidence": list(self.evidence),
                "host": self.host}


@dataclass(frozen=True)
class Problem:
    """A group of related detections with its lifecycle, diagnosis and root causes."""

    id: str
    version: int
    scope: str
    status: str  # open | acknowledged | resolved
    opened_at: int
    updated_at: int
    resolved_at: int | None = None
    title: str = ""
    category: str = ""
    severity: str = "low"
    confidence: float = 0.0
    affected: tuple[str, ...] = ()  # services, most suspect first
    hosts: tuple[str, ...] = ()
    root_causes: tuple[RootCause, ...] = ()
    symptoms: tuple[str, ...] = ()
    potential_causes: tuple[str, ...] = ()
    diagnostic_plan: Mapping[str, Any] = field(default_factory=dict)
    runbook: Mapping[str, Any] = field(default_factory=dict)
    members: tuple[Member, ...] = ()
    links: tuple[Link, ...] = ()
    last_firing_ms: int = 0  # latest firing detection of any member
    clear_since: int | None = None  # every member resolved since then
    resolution: str = ""  # why it resolved (RESOLUTIONS)
    merged_into: str = ""
    acknowledged_at: int | None = None
    acknowledged_by: str = ""
    ack_comment: str = ""
    reopens: tuple[int, ...] = ()  # reopen times inside the flap window
    flapping: bool = False
    reopened_at: tuple[int, ...] = ()  # every reopen time (the latest MAX_REOPENS)
    recurred_at: tuple[int, ...] = ()  # reopens as its root cause failing again (ditto)

    @property
    def detection_ids(self) -> tuple[str, ...]:
        """Ids of every detection the problem took in, in arrival order."""
        return tuple(link.detection_id for link in self.links)

    @property
    def active(self) -> bool:
        """Open or acknowledged."""
        return self.status != "resolved"

    @cached_property
    def _by_key(self) -> dict[str, Member]:
        return {m.key: m for m in self.members}

    def member(self, key: str) -> Member | None:
        """The member of series ``key``, if it is one (a dict lookup, cached)."""
        return self._by_key.get(key)

    @property
    def firing(self) -> tuple[Member, ...]:
        """Members still firing."""
        return tuple(m for m in self.members if m.state == "firing")

    def to_wire(self) -> dict[str, Any]:
        """The full problem as a JSON-ready dict (alert ``data``, state, CLI detail)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("members", "links", "root_causes")}
        for key in ("affected", "hosts", "symptoms", "potential_causes", "reopens",
                    "reopened_at", "recurred_at"):
            out[key] = list(out[key])
        out["root_causes"] = [c.to_wire() for c in self.root_causes]
        out["detection_ids"] = list(self.detection_ids)
        out["members"] = [_member_wire(m) for m in self.members]
        out["links"] = [[x.detection_id, x.time, x.service, x.role] for x in self.links]
        return out

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Problem:
        """The inverse of :meth:`to_wire`."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for key in ("affected", "hosts", "symptoms", "potential_causes", "reopens",
                    "reopened_at", "recurred_at"):
            values[key] = tuple(values.get(key, ()))
        values["root_causes"] = tuple(
            RootCause(c["service"], c["score"], tuple(c.get("evidence", ())), c.get("host", ""))
            for c in data.get("root_causes", ()))
        values["members"] = tuple(
            Member(**{**m, "symptoms": tuple(m.get("symptoms", ())),
                      "potential_causes": tuple(m.get("potential_causes", ()))})
            for m in data.get("members", ()))
        values["links"] = tuple(Link(data["id"], *x) for x in data.get("links", ()))
        return cls(**values)


def _member_wire(m: Member) -> dict[str, Any]:
    out = asdict(m)
    out["symptoms"], out["potential_causes"] = list(m.symptoms), list(m.potential_causes)
    out["labels"] = dict(m.labels)
    return out


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def problems_table(problems: Sequence[Problem]) -> pa.Table:
    """Problems as rows of the ``problems`` table (one row per problem version).

    ``affected`` holds the affected services followed by their hosts; ``root_causes``,
    ``diagnostic_plan`` and ``runbook`` are JSON text.
    """
    ts = pa.timestamp("ms", tz="UTC")
    p = problems
    strings = pa.list_(pa.string())
    return pa.table({
        "id": pa.array([x.id for x in p], pa.string()),
        "version": pa.array([x.version for x in p], pa.uint32()),
        "scope": pa.array([x.scope for x in p], pa.string()),
        "status": pa.array([x.status for x in p], pa.string()),
        "opened_at": pa.array([x.opened_at for x in p], ts),
        "updated_at": pa.array([x.updated_at for x in p], ts),
        "resolved_at": pa.array([x.resolved_at for x in p], ts),
        "title": pa.array([x.title for x in p], pa.string()),
        "category": pa.array([x.category for x in p], pa.string()),
        "severity": pa.array([x.severity for x in p], pa.string()),
        "confidence": pa.array([x.confidence for x in p], pa.float32()),
        "affected": pa.array([[*x.affected, *x.hosts] for x in p], strings),
        "root_causes": pa.array([_json([c.to_wire() for c in x.root_causes]) for x in p],
                                pa.string()),
        "detection_ids": pa.array([list(x.detection_ids) for x in p], strings),
        "symptoms": pa.array([list(x.symptoms) for x in p], strings),
        "potential_causes": pa.array([list(x.potential_causes) for x in p], strings),
        "diagnostic_plan": pa.array([_json(x.diagnostic_plan) for x in p], pa.string()),
        "runbook": pa.array([_json(x.runbook) for x in p], pa.string()),
        "resolution": pa.array([x.resolution for x in p], pa.string()),
        "merged_into": pa.array([x.merged_into for x in p], pa.string()),
        "acknowledged_by": pa.array([x.acknowledged_by for x in p], pa.string()),
        "reopened_at": pa.array([list(x.reopened_at) for x in p], pa.list_(ts)),
        "recurred_at": pa.array([list(x.recurred_at) for x in p], pa.list_(ts)),
    })


def problem_detections_table(links: Iterable[Link]) -> pa.Table:
    """Links (``Decision.links`` or ``Problem.links``) as rows of ``problem_detections``."""
    rows = list(links)
    return pa.table({
        "problem_id": pa.array([x.problem_id for x in rows], pa.string()),
        "detection_id": pa.array([x.detection_id for x in rows], pa.string()),
        "time": pa.array([x.time for x in rows], pa.timestamp("ms", tz="UTC")),
        "service": pa.array([x.service for x in rows], pa.string()),
        "role": pa.array([x.role for x in rows], pa.string()),
    })

KINDS = ("opened", "joined", "updated", "escalated", "acknowledged", "reopened", "resolved",
         "merged", "repeated", "suppressed")

@dataclass(frozen=True)
class Decision:
    """One lifecycle change (or alert due) of one problem, with why and whether to alert.

    ``kind`` is one of :data:`KINDS`; ``problem`` is the problem after the change (write it
    to ``problems``); ``links`` are the detections it took in by this decision (write them
    to ``problem_detections``); ``notify`` says whether an alert goes to ``tocsin.alerts``
    (:func:`pipeline.alerts.cloudevents.alert_envelope`); ``time_ms`` is the event time.
    """

    kind: str
    problem: Problem
    reason: str
    notify: bool
    time_ms: int
    links: tuple[Link, ...] = ()
