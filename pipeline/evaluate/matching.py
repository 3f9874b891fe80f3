"""Compare problems and detections with the labels of a simulation run (pure logic).

Definitions (all times epoch ms; ``slack`` is ``match_slack_ms``):

- An incident's *window* is ``[start_ms, end_ms + slack]``.
- A problem *matches* an incident when its lifetime ``[opened_at, resolved_at]``
  (``resolved_at`` None: still open) overlaps the window and it shares at least one
  service with the incident's ``affected_services``. A problem that matches several
  incidents counts for one: the incident whose root cause is the problem's first
  candidate, else the one whose window (widened by ``slack`` before the start) holds its
  opening, else the earliest. (A long problem that merely overlaps a later incident on a
  shared service does not detect it.)
- An incident is *detected* when some problem matches it. Its *time to detect* is the
  first matching problem's ``opened_at - start_ms``, floored at 0 (a problem already open
  when the incident starts detects it at once); it is *split* into as many problems as
  match it.
- A *false alarm* is a problem that matches no incident; they are reported per simulated
  day (``labels.end_ms - labels.start_ms``).
- AC@k: the true root-cause service is among the first ``k`` ``root_causes`` of the
  incident's *primary* problem (the earliest-opened match). The denominator is **every**
  labelled incident: an undetected incident counts as a miss (the stricter choice).
- Grouping: a detection belongs to the incident whose window contains its ``since`` (when
  its series began firing: a keep-alive restates an episode that began earlier; ``time``
  when not given) and whose affected services include its ``service`` (the earliest such
  incident when several do). The correlator places a series in a problem when it begins
  firing and its keep-alives only refresh it, so an alarm that began in one incident and
  is still re-sent during the next is judged where its grouping was decided. Over the
  detections that belong to an incident, pairs in the same incident
  are the truth, pairs in the same problem (by the problems' ``detections`` lists) the
  prediction; precision, recall and F1 are over those pairs. Detections that belong to no
  incident are judged through false alarms, not here.

Empty inputs give zeros (and ``None`` for times that do not exist), never NaN or errors.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import TocsinError
from pipeline.simulate.labels import Incident, Labels

DAY_MS = 86_400_000
DEFAULT_MATCH_SLACK_MS = 300_000


class EvaluationError(TocsinError):
    """A problem or detection handed to :func:`evaluate` lacks a field or has a bad value."""


@dataclass(frozen=True)
class IncidentOutcome:
    """How one labelled incident fared."""

    incident: Incident
    problem_ids: tuple[str, ...]  # matching problems, earliest opened first
    time_to_detect_ms: int | None
    root_cause_rank: int | None  # 1-based, in the primary problem's candidates

    @property
    def detected(self) -> bool:
        """Whether any problem matched the incident."""
        return bool(self.problem_ids)


@dataclass(frozen=True)
class GroupingScore:
    """Pairwise precision/recall/F1 of detections grouped into problems."""

    detections: int  # detections that belong to an incident
    truth_pairs: int
    predicted_pairs: int
    correct_pairs: int

    @property
    def precision(self) -> float:
        """Correct pairs / pairs put in the same problem (0 when there are none)."""
        return _ratio(self.correct_pairs, self.predicted_pairs)

    @property
    def recall(self) -> float:
        """Correct pairs / pairs from the same incident (0 when there are none)."""
        return _ratio(self.correct_pairs, self.truth_pairs)

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall (0 when both are 0)."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class EvaluationResult:
    """Everything :func:`evaluate` measured; see the module docstring for definitions."""

    incidents: tuple[IncidentOutcome, ...]
    false_alarm_ids: tuple[str, ...]
    problem_count: int
    simulated_days: float
    grouping: GroupingScore
    match_slack_ms: int

    @property
    def detected_count(self) -> int:
        """Incidents matched by at least one problem."""
        return sum(o.detected for o in self.incidents)

    @property
    def detection_rate(self) -> float:
        """Detected incidents / labelled incidents (0 without incidents)."""
        return _ratio(self.detected_count, len(self.incidents))

    @property
    def false_alarms_per_day(self) -> float:
        """False alarms per simulated day."""
        days = self.simulated_days
        return len(self.false_alarm_ids) / days if days > 0 else 0.0

    def ac_at(self, k: int) -> float:
        """Share of all labelled incidents whose root cause is in the top ``k``."""
        hits = sum(1 for o in self.incidents
                   if o.root_cause_rank is not None and o.root_cause_rank <= k)
        return _ratio(hits, len(self.incidents))

    @property
    def mean_time_to_detect_ms(self) -> float | None:
        """Mean time to detect over detected incidents (None when none was detected)."""
        times = [o.time_to_detect_ms for o in self.incidents if o.time_to_detect_ms is not None]
        return sum(times) / len(times) if times else None


def evaluate(labels: Labels | Mapping[str, Any], problems: Sequence[Mapping[str, Any]],
             detections: Sequence[Mapping[str, Any]] = (), *,
             match_slack_ms: int = DEFAULT_MATCH_SLACK_MS) -> EvaluationResult:
    """Score ``problems`` and ``detections`` against ``labels`` (see module docstring)."""
    if not isinstance(labels, Labels):
        labels = Labels.from_dict(labels)
    probs = sorted((_problem(p, i) for i, p in enumerate(problems)),
                   key=lambda p: (p["opened_at"], p["id"]))
    dets = [_detection(d, i) for i, d in enumerate(detections)]
    owner: dict[str, str] = {}
    for p in probs:
        candidates = [i for i in labels.incidents if _matches(p, i, match_slack_ms)]
        if candidates:
            owner[p["id"]] = min(candidates, key=lambda i: _fit(p, i, match_slack_ms)).id
    matched = set(owner)
    outcomes = []
    for inc in labels.incidents:
        hits = [p for p in probs if owner.get(p["id"]) == inc.id]
        ttd = rank = None
        if hits:
            ttd = max(0, int(hits[0]["opened_at"]) - inc.start_ms)
            causes = hits[0]["root_causes"]
            if inc.root_cause_service in causes:
                rank = causes.index(inc.root_cause_service) + 1
        outcomes.append(IncidentOutcome(inc, tuple(p["id"] for p in hits), ttd, rank))
    false_alarms = tuple(p["id"] for p in probs if p["id"] not in matched)
    return EvaluationResult(
        incidents=tuple(outcomes), false_alarm_ids=false_alarms, problem_count=len(probs),
        simulated_days=max(0, labels.end_ms - labels.start_ms) / DAY_MS,
        grouping=_grouping(labels.incidents, probs, dets, match_slack_ms),
        match_slack_ms=match_slack_ms)


def _matches(problem: Mapping[str, Any], inc: Incident, slack_ms: int) -> bool:
    resolved = problem["resolved_at"]
    return (problem["opened_at"] <= inc.end_ms + slack_ms
            and (resolved is None or resolved >= inc.start_ms)
            and not problem["affected"].isdisjoint(inc.affected_services))


def _fit(problem: Mapping[str, Any], inc: Incident, slack_ms: int) -> tuple:
    """Sort key: the incident a problem matching several counts for comes first."""
    causes = problem["root_causes"]
    blames = bool(causes) and causes[0] == inc.root_cause_service
    opened_in = inc.start_ms - slack_ms <= problem["opened_at"] <= inc.end_ms + slack_ms
    return (not blames, not opened_in, inc.start_ms, inc.id)


def _grouping(incidents: Sequence[Incident], probs: Sequence[Mapping[str, Any]],
              dets: Sequence[Mapping[str, Any]], slack_ms: int) -> GroupingScore:
    problem_of: dict[str, str] = {}
    for p in probs:  # earliest-opened problem wins when a detection is listed twice
        for det_id in p["detections"]:
            problem_of.setdefault(det_id, p["id"])
    ordered = sorted(incidents, key=lambda i: (i.start_ms, i.id))
    truth: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    both: Counter[tuple[str, str]] = Counter()
    for d in dets:
        inc = next((i for i in ordered if i.start_ms <= d["since"] <= i.end_ms + slack_ms
                    and d["service"] in i.affected_services), None)
        if inc is None:
            continue
        truth[inc.id] += 1
        prob = problem_of.get(d["id"])
        if prob is not None:
            predicted[prob] += 1
            both[(inc.id, prob)] += 1
    return GroupingScore(detections=sum(truth.values()), truth_pairs=_pairs(truth),
                         predicted_pairs=_pairs(predicted), correct_pairs=_pairs(both))


def _pairs(counts: Counter) -> int:
    return sum(n * (n - 1) // 2 for n in counts.values())


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _problem(p: Mapping[str, Any], index: int) -> dict[str, Any]:
    where = f"problems[{index}]"
    if not isinstance(p, Mapping):
        raise EvaluationError(f"{where}: expected a mapping, got {type(p).__name__}")
    ident = _field(p, "id", where, str)
    where = f"problems[{index}] ({ident})"
    resolved = p.get("resolved_at")
    if resolved is not None:
        resolved = _field(p, "resolved_at", where, (int, float))
    causes = [c.get("service") if isinstance(c, Mapping) else c
              for c in _field(p, "root_causes", where, (list, tuple))]
    return {"id": ident, "opened_at": _field(p, "opened_at", where, (int, float)),
            "resolved_at": resolved, "root_causes": causes,
            "affected": set(_field(p, "affected", where, (list, tuple, set))),
            "detections": [str(d) for d in _field(p, "detections", where, (list, tuple))]}


def _detection(d: Mapping[str, Any], index: int) -> dict[str, Any]:
    where = f"detections[{index}]"
    if not isinstance(d, Mapping):
        raise EvaluationError(f"{where}: expected a mapping, got {type(d).__name__}")
    time = _field(d, "time", where, (int, float))
    return {"id": str(_field(d, "id", where, (str, int))), "time": time,
            "since": _field(d, "since", where, (int, float)) if "since" in d else time,
            "service": _field(d, "service", where, str)}


def _field(obj: Mapping[str, Any], key: str, where: str, types: type | tuple[type, ...]) -> Any:
    if key not in obj:
        raise EvaluationError(f"{where}: missing field {key!r}")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, types):
        names = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise EvaluationError(f"{where}.{key}: expected {names}, got {value!r}")
    return value
