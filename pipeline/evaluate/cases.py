"""Score problems against labelled real fault cases (pure logic).

Case labels are a JSON list, one object per injected fault, with at least ``id``,
``start`` and ``end`` (epoch ms) and ``root_cause_service``; ``fault_type`` (or
``scenario``) groups the figures when present. Other fields are kept, not read.

Definitions (``before`` = 1 min, ``after`` = 5 min by default):

- A case's *window* is ``[start - before, end + after]``. A problem counts for a case only
  if it **opened** within that window: a problem opened long before (a background one
  still open) does not detect a new fault. A problem that had resolved and *recurred*
  (its root cause failing again: the same id, alerted again as ``reopened``) within the
  window counts from that reopening: the operator is told then, as for a new problem.
  A reopen that took in the problem's own aftermath (a caller's symptom of the failure
  that had just ended) is no opening.
- A problem opened within several cases' windows (adjacent faults) counts for one: the
  case whose root cause is its first candidate, else the case that started last at or
  before its opening, else the earliest.
- A case is *detected* when a problem counts for it; its *primary* problem is the
  earliest-opened one; *time to detect* is the primary's ``opened_at - start`` (floored
  at 0); *problems per case* is how many count for it.
- AC@k: the root-cause service is among the primary problem's first k candidates; the
  denominator is every case (undetected cases are misses). Avg@5 is the mean of AC@1..5.
- A *false problem* opened within the labelled range (first window start to last window
  end) but in no case's window.

:func:`case_labels` / :func:`load_case_labels` read the same list as
:class:`~pipeline.simulate.labels.Labels` instead, so a backtest scores real cases like
simulated incidents (the labelled range runs from the first case's ``window.start``, else
its start, to the last case's ``window.end``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline.errors import TocsinError
from pipeline.simulate.labels import Incident, Labels, LabelsError

CASE_BEFORE_MS = 60_000
CASE_AFTER_MS = 300_000
MAX_K = 5


class CaseLabelsError(TocsinError):
    """A case labels file is missing, unreadable or invalid; the message says where."""


@dataclass(frozen=True)
class Case:
    """One labelled fault: when, where, what kind."""

    id: str
    start_ms: int
    end_ms: int
    root_cause_service: str
    fault_type: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def parse_cases(data: Any, where: str = "labels") -> list[Case]:
    """Cases from decoded JSON (a list of objects); errors name the entry and field."""
    if not isinstance(data, list):
        raise CaseLabelsError(f"{where}: expected a JSON list of cases, got "
                              f"{type(data).__name__}")
    cases, seen = [], set()
    for i, obj in enumerate(data):
        at = f"{where}[{i}]"
        if not isinstance(obj, Mapping):
            raise CaseLabelsError(f"{at}: expected an object, got {type(obj).__name__}")
        for key, kind in (("id", str), ("start", int), ("end", int),
                          ("root_cause_service", str)):
            value = obj.get(key)
            if isinstance(value, bool) or not isinstance(value, kind) or value == "":
                raise CaseLabelsError(f"{at}.{key}: expected {kind.__name__}, got {value!r}")
        if obj["end"] < obj["start"]:
            raise CaseLabelsError(f"{at}: end {obj['end']} is before start {obj['start']}")
        if obj["id"] in seen:
            raise CaseLabelsError(f"{at}.id: {obj['id']!r} appears twice")
        seen.add(obj["id"])
        kind = obj.get("fault_type") or obj.get("scenario") or ""
        cases.append(Case(obj["id"], obj["start"], obj["end"], obj["root_cause_service"],
                          str(kind), {k: v for k, v in obj.items() if k not in (
                              "id", "start", "end", "root_cause_service")}))
    return sorted(cases, key=lambda c: (c.start_ms, c.id))


def load_cases(path: str | Path) -> list[Case]:
    """Cases from a labels file (see :func:`parse_cases`)."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise CaseLabelsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise CaseLabelsError(f"{path}: not JSON: {exc}") from None
    return parse_cases(data, str(path))


def is_case_list(data: Any) -> bool:
    """Whether decoded labels are case labels (a list) rather than a simulator's (an
    object with ``incidents``)."""
    return isinstance(data, list)


@dataclass(frozen=True)
class CaseOutcome:
    """How one case fared."""

    case: Case
    problem_ids: tuple[str, ...]  # problems that count for it, earliest opened first
    time_to_detect_ms: int | None
    root_cause_rank: int | None  # 1-based in the primary problem's candidates
    candidates: tuple[str, ...] = ()  # the primary problem's ranked services

    @property
    def detected(self) -> bool:
        """Whether a problem counts for the case."""
        return bool(self.problem_ids)


@dataclass(frozen=True)
class CaseEvaluation:
    """Everything :func:`evaluate_cases` measured (see the module docstring)."""

    outcomes: tuple[CaseOutcome, ...]
    false_problem_ids: tuple[str, ...]
    problem_count: int
    range_ms: int
    before_ms: int
    after_ms: int

    def subset(self, fault_type: str) -> CaseEvaluation:
        """The figures of one fault type (false problems are not split by type)."""
        return CaseEvaluation(tuple(o for o in self.outcomes if o.case.fault_type == fault_type),
                              (), 0, self.range_ms, self.before_ms, self.after_ms)

    @property
    def fault_types(self) -> list[str]:
        """Fault types present, in first-seen order."""
        return list(dict.fromkeys(o.case.fault_type for o in self.outcomes))

    @property
    def detected_count(self) -> int:
        """Cases a problem counts for."""
        return sum(o.detected for o in self.outcomes)

    def ac_at(self, k: int) -> float:
        """Share of all cases whose root cause is in the primary problem's top ``k``."""
        hits = sum(1 for o in self.outcomes
                   if o.root_cause_rank is not None and o.root_cause_rank <= k)
        return hits / len(self.outcomes) if self.outcomes else 0.0

    @property
    def avg_at_5(self) -> float:
        """Mean of AC@1 .. AC@5."""
        return sum(self.ac_at(k) for k in range(1, MAX_K + 1)) / MAX_K

    @property
    def mean_time_to_detect_ms(self) -> float | None:
        """Mean time to detect over detected cases (None when none was)."""
        times = [o.time_to_detect_ms for o in self.outcomes if o.time_to_detect_ms is not None]
        return sum(times) / len(times) if times else None

    @property
    def problems_per_case(self) -> float:
        """Problems that count for a case, per case (over every case)."""
        n = sum(len(o.problem_ids) for o in self.outcomes)
        return n / len(self.outcomes) if self.outcomes else 0.0

    @property
    def problems_per_detected_case(self) -> float:
        """Problems that count for a case, per detected case."""
        n = sum(len(o.problem_ids) for o in self.outcomes)
        return n / self.detected_count if self.detected_count else 0.0


def evaluate_cases(cases: Sequence[Case], problems: Sequence[Mapping[str, Any]], *,
                   before_ms: int = CASE_BEFORE_MS, after_ms: int = CASE_AFTER_MS,
                   ) -> CaseEvaluation:
    """Score ``problems`` (``id``, ``opened_at``, ``root_causes`` best first, as service
    names or ``{"service": ...}``, optionally ``recurred_at``: times it reopened as its
    root cause failing again; without that key, every ``reopened_at``) against ``cases``
    (see the module docstring)."""
    probs = sorted((_problem(p, i) for i, p in enumerate(problems)),
                   key=lambda p: (p[1][0], p[0]))
    cases = sorted(cases, key=lambda c: (c.start_ms, c.id))
    owner: dict[str, list[tuple[str, int, tuple[str, ...]]]] = {c.id: [] for c in cases}
    false_ids = []
    lo = min((c.start_ms - before_ms for c in cases), default=0)
    hi = max((c.end_ms + after_ms for c in cases), default=0)
    for pid, openings, causes in probs:
        fits, opened = [], openings[0]
        for at in openings:  # its opening, else the first reopening inside a window
            fits = [c for c in cases if c.start_ms - before_ms <= at <= c.end_ms + after_ms]
            if fits:
                opened = at
                break
        if not fits:
            if lo <= opened <= hi:
                false_ids.append(pid)
            continue
        named = [c for c in fits if causes and causes[0] == c.root_cause_service]
        begun = [c for c in fits if c.start_ms <= opened]
        case = named[-1] if named else begun[-1] if begun else fits[0]
        owner[case.id].append((pid, opened, causes))
    outcomes = []
    for c in cases:
        hits = sorted(owner[c.id], key=lambda h: (h[1], h[0]))
        ttd = rank = None
        causes: tuple[str, ...] = ()
        if hits:
            _, opened, causes = hits[0]
            ttd = max(0, opened - c.start_ms)
            if c.root_cause_service in causes:
                rank = causes.index(c.root_cause_service) + 1
        outcomes.append(CaseOutcome(c, tuple(h[0] for h in hits), ttd, rank, causes))
    return CaseEvaluation(tuple(outcomes), tuple(false_ids), len(probs), max(0, hi - lo),
                          before_ms, after_ms)


def _problem(p: Mapping[str, Any], index: int) -> tuple[str, list[int], tuple[str, ...]]:
    where = f"problems[{index}]"
    if not isinstance(p, Mapping):
        raise CaseLabelsError(f"{where}: expected a mapping, got {type(p).__name__}")
    pid, opened, causes = p.get("id"), p.get("opened_at"), p.get("root_causes")
    if not isinstance(pid, str) or isinstance(opened, bool) \
            or not isinstance(opened, (int, float)) or not isinstance(causes, (list, tuple)):
        raise CaseLabelsError(f"{where}: expected id (str), opened_at (ms) and root_causes "
                              f"(list), got {pid!r}, {opened!r}, {causes!r}")
    names = tuple(c.get("service", "") if isinstance(c, Mapping) else str(c) for c in causes)
    # an aftermath reopen (a symptom of the problem resolving late) is not an opening
    reopens = p["recurred_at"] if "recurred_at" in p else p.get("reopened_at")
    reopened = sorted(int(t) for t in reopens or () if t is not None)
    return pid, [int(opened), *reopened], names


def case_labels(cases: Any, source: str = "cases") -> Labels:
    """Labels from a parsed list of cases; :class:`LabelsError` names what is wrong."""
    if not isinstance(cases, list):
        raise LabelsError(f"{source}: expected a JSON list of cases")
    incidents, lows, highs = [], [], []
    for i, case in enumerate(cases):
        where = f"{source}[{i}]"
        if not isinstance(case, dict):
            raise LabelsError(f"{where}: expected an object")
        for key, kind in (("id", str), ("start", int), ("end", int),
                          ("root_cause_service", str)):
            if not isinstance(case.get(key), kind) or isinstance(case.get(key), bool):
                raise LabelsError(f"{where}.{key}: expected {kind.__name__}, got "
                                  f"{case.get(key)!r}")
        if case["end"] < case["start"]:
            raise LabelsError(f"{where}: end before start")
        window = case.get("window") if isinstance(case.get("window"), dict) else {}
        lows.append(int(window.get("start", case["start"])))
        highs.append(int(window.get("end", case["end"])))
        incidents.append(Incident(case["id"], str(case.get("fault_type", "case")),
                                  case["start"], case["end"], case["root_cause_service"],
                                  str(case.get("category", "unknown")),
                                  (case["root_cause_service"],)))
    if not incidents:
        raise LabelsError(f"{source}: no cases")
    return Labels(0, min(lows), max(highs), tuple(incidents), system=source)


def load_case_labels(path: str | Path) -> Labels:
    """Read a cases file (see the module docstring)."""
    try:
        return case_labels(orjson.loads(Path(path).read_bytes()), str(path))
    except OSError as exc:
        raise LabelsError(f"{path}: cannot read cases file: {exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise LabelsError(f"{path}: not valid JSON: {exc}") from exc
