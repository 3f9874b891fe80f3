"""Operators' feedback as labels: quality figures from verdicts, and labels for backtests.

Definitions, over the problems opened in ``[from_ms, to_ms)`` (latest version, not merged
into another) and each problem's *latest* feedback (a later verdict replaces an earlier):

- *judged*: problems with a verdict; *coverage* = judged / problems;
- *precision* = true / judged (a duplicate is a real fault, but a page too many);
- *false-alarm rate* = false-positive / judged; *duplicate rate* = duplicate / judged;
- *root-cause accuracy* (AC@1, AC@3): over the ``true`` verdicts that name the root
  cause, how often it is the problem's first (among its first three) ranked candidates.

Empty inputs give zeros, never NaN.

>>> problems = [{"id": "p1", "root_causes": ["db", "api"]}, {"id": "p2", "root_causes": []}]
>>> verdicts = [{"problem_id": "p1", "verdict": "true", "root_cause": "api"},
...             {"problem_id": "p2", "verdict": "false-positive", "root_cause": ""}]
>>> s = score_feedback(problems, verdicts)
>>> s.precision, s.false_alarm_rate, s.root_cause_ac1, s.root_cause_ac3
(0.5, 0.5, 0.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.evaluate.load import _root_cause_services
from pipeline.simulate.labels import Incident, Labels
from pipeline.store import QueryResult

Query = Callable[[str], QueryResult]


@dataclass(frozen=True)
class FeedbackScore:
    """Counts and ratios of a range's problems judged by operators."""

    problems: int
    judged: int
    true: int
    false_positive: int
    duplicate: int
    root_cause_named: int
    root_cause_top1: int
    root_cause_top3: int

    @property
    def coverage(self) -> float:
        """Judged problems / problems."""
        return _ratio(self.judged, self.problems)

    @property
    def precision(self) -> float:
        """True verdicts / judged problems."""
        return _ratio(self.true, self.judged)

    @property
    def false_alarm_rate(self) -> float:
        """False-positive verdicts / judged problems."""
        return _ratio(self.false_positive, self.judged)

    @property
    def duplicate_rate(self) -> float:
        """Duplicate verdicts / judged problems."""
        return _ratio(self.duplicate, self.judged)

    @property
    def root_cause_ac1(self) -> float:
        """Named root cause == the problem's first candidate, over true verdicts naming one."""
        return _ratio(self.root_cause_top1, self.root_cause_named)

    @property
    def root_cause_ac3(self) -> float:
        """Named root cause among the first three candidates."""
        return _ratio(self.root_cause_top3, self.root_cause_named)

    def to_dict(self) -> dict[str, Any]:
        """Counts and ratios, JSON-ready."""
        return {**asdict(self), "coverage": self.coverage, "precision": self.precision,
                "false_alarm_rate": self.false_alarm_rate,
                "duplicate_rate": self.duplicate_rate,
                "root_cause_ac1": self.root_cause_ac1, "root_cause_ac3": self.root_cause_ac3}


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def latest_verdicts(feedback: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The last verdict per problem (``feedback`` in time order)."""
    return {f["problem_id"]: f for f in feedback}


def score_feedback(problems: Sequence[Mapping[str, Any]],
                   feedback: Sequence[Mapping[str, Any]]) -> FeedbackScore:
    """Figures of ``problems`` (``id``, ``root_causes``: ranked service names) judged by
    ``feedback`` (``problem_id``, ``verdict``, ``root_cause``; oldest first)."""
    ids = {p["id"] for p in problems}
    verdicts = {k: v for k, v in latest_verdicts(feedback).items() if k in ids}
    counts = {"true": 0, "false-positive": 0, "duplicate": 0}
    named = top1 = top3 = 0
    for problem in problems:
        verdict = verdicts.get(problem["id"])
        if verdict is None:
            continue
        counts[verdict["verdict"]] = counts.get(verdict["verdict"], 0) + 1
        if verdict["verdict"] == "true" and verdict.get("root_cause"):
            named += 1
            ranked = list(problem.get("root_causes") or [])
            top1 += ranked[:1] == [verdict["root_cause"]]
            top3 += verdict["root_cause"] in ranked[:3]
    return FeedbackScore(len(problems), len(verdicts), counts["true"],
                         counts["false-positive"], counts["duplicate"], named, top1, top3)


def load_judged(query: Query, database: str, from_ms: int, to_ms: int
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Problems opened in ``[from_ms, to_ms)`` and the feedback given on them."""
    result = query(
        "SELECT id, toUnixTimestamp64Milli(opened_at), "
        "if(resolved_at IS NULL, NULL, toUnixTimestamp64Milli(assumeNotNull(resolved_at))), "
        f"affected, root_causes, category FROM {database}.problems WHERE merged_into = '' "
        f"AND toUnixTimestamp64Milli(opened_at) >= {int(from_ms)} "
        f"AND toUnixTimestamp64Milli(opened_at) < {int(to_ms)} ORDER BY opened_at, id")
    problems = [{"id": pid, "opened_at": int(opened),
                 "resolved_at": None if resolved is None else int(resolved),
                 "affected": list(affected), "root_causes": _root_cause_services(causes),
                 "category": category}
                for pid, opened, resolved, affected, causes, category in result.rows]
    rows = query(
        "SELECT problem_id, toUnixTimestamp64Milli(time), author, verdict, root_cause, "
        f"comment FROM {database}.feedback WHERE problem_id IN (SELECT id FROM "
        f"{database}.problems WHERE toUnixTimestamp64Milli(opened_at) >= {int(from_ms)} "
        f"AND toUnixTimestamp64Milli(opened_at) < {int(to_ms)}) ORDER BY time, author").rows
    feedback = [{"problem_id": pid, "time_ms": int(t), "author": author, "verdict": verdict,
                 "root_cause": cause, "comment": comment}
                for pid, t, author, verdict, cause, comment in rows]
    return problems, feedback


def feedback_labels(problems: Sequence[Mapping[str, Any]],
                    feedback: Sequence[Mapping[str, Any]], from_ms: int, to_ms: int
                    ) -> Labels:
    """Labels for :func:`pipeline.evaluate.evaluate` from verdicts: each problem judged
    ``true`` is an incident over its lifetime (root cause: the one the operator named,
    else the problem's first candidate); problems judged false positives become no
    incident, so whatever covers them again is a false alarm. Duplicates are left out
    (the problem they duplicate carries the incident)."""
    verdicts = latest_verdicts(feedback)
    incidents = []
    for p in problems:
        verdict = verdicts.get(p["id"])
        if verdict is None or verdict["verdict"] != "true":
            continue
        causes = list(p.get("root_causes") or [])
        root = verdict.get("root_cause") or (causes[0] if causes else "")
        end = p.get("resolved_at") or to_ms
        affected = tuple(dict.fromkeys([root, *p.get("affected", ())]))
        incidents.append(Incident(f"feedback:{p['id']}", "feedback", int(p["opened_at"]),
                                  int(max(end, p["opened_at"])), root,
                                  p.get("category") or "unknown", affected))
    return Labels(0, int(from_ms), int(to_ms), tuple(incidents), system="feedback")


def format_feedback(score: FeedbackScore) -> str:
    """A small text table of the figures."""
    lines = [f"problems opened        {score.problems}",
             f"judged                 {score.judged} ({score.coverage:.0%})",
             f"  true                 {score.true}",
             f"  false-positive       {score.false_positive}",
             f"  duplicate            {score.duplicate}",
             f"precision              {score.precision:.3f}",
             f"false-alarm rate       {score.false_alarm_rate:.3f}",
             f"duplicate rate         {score.duplicate_rate:.3f}",
             f"root cause named       {score.root_cause_named}",
             f"root-cause AC@1        {score.root_cause_ac1:.3f}",
             f"root-cause AC@3        {score.root_cause_ac3:.3f}"]
    return "\n".join(lines)
