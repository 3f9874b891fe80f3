"""The knowledge base: what to tell an operator about a problem of a category and rules.

Entries are keyed by category first; rule entries, matched by detector-name or title globs,
add symptoms, causes, checks and steps and may swap the runbook. :meth:`KnowledgeBase.diagnose`
merges them into what a problem carries: symptoms, potential causes, a diagnostic plan and a
runbook, with ``{service}`` / ``{host}`` filled in. Nothing here runs a command.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pipeline.errors import TocsinError

_PLACEHOLDER = re.compile(r"\{(service|host)\}")


class KnowledgeError(TocsinError):
    """The knowledge base is invalid; the message lists every problem with its location."""


@dataclass(frozen=True)
class Check:
    """An automated check, described: what to run and what a healthy answer looks like."""

    name: str
    command: str
    expect: str


@dataclass(frozen=True)
class DiagnosticPlan:
    """How to diagnose a problem of one category."""

    automated_checks: tuple[Check, ...]
    manual_steps: tuple[str, ...]
    escalation_criteria: tuple[str, ...]
    estimated_resolution_minutes: int
    required_expertise: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """One runbook step."""

    title: str
    action: str
    command: str = ""


@dataclass(frozen=True)
class EscalationLevel:
    """Who is called after how many minutes, and when to call them earlier."""

    level: int
    after_minutes: int
    contact: str
    when: str


@dataclass(frozen=True)
class Runbook:
    """A runbook: steps, escalation levels and post-incident follow-ups."""

    id: str
    title: str
    steps: tuple[Step, ...]
    escalation_levels: tuple[EscalationLevel, ...]
    follow_ups: tuple[str, ...]


@dataclass(frozen=True)
class CategoryEntry:
    """Knowledge about one detection category."""

    category: str
    summary: str
    symptoms: tuple[str, ...]
    potential_causes: tuple[str, ...]
    plan: DiagnosticPlan
    runbook: str


@dataclass(frozen=True)
class RuleEntry:
    """Knowledge about detections whose detector or title matches the globs."""

    name: str
    detectors: tuple[str, ...]
    titles: tuple[str, ...] = ()
    symptoms: tuple[str, ...] = ()
    potential_causes: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    manual_steps: tuple[str, ...] = ()
    escalation_criteria: tuple[str, ...] = ()
    required_expertise: tuple[str, ...] = ()
    estimated_resolution_minutes: int | None = None
    runbook: str = ""

    def applies(self, detectors: Iterable[str], titles: Iterable[str]) -> bool:
        """Whether any detector name or title matches (case-insensitive globs)."""
        d, t = _compiled(self.detectors), _compiled(self.titles)
        return (any(d.match(x) for x in detectors) if d else False) or (
            any(t.match(x) for x in titles) if t else False)


@dataclass(frozen=True)
class Diagnosis:
    """What the knowledge base says about one problem."""

    symptoms: tuple[str, ...]
    potential_causes: tuple[str, ...]
    diagnostic_plan: dict[str, Any]
    runbook: dict[str, Any]
    rules: tuple[str, ...]  # names of the rule entries that applied


@dataclass(frozen=True)
class KnowledgeBase:
    """Category entries, rule entries (in priority order) and runbooks by id."""

    categories: Mapping[str, CategoryEntry]
    rules: tuple[RuleEntry, ...]
    runbooks: Mapping[str, Runbook]

    def diagnose(self, category: str, detectors: Sequence[str], titles: Sequence[str] = (),
                 service: str = "", host: str = "") -> Diagnosis:
        """Merge the category entry with every rule entry that applies.

        ``detectors`` and ``titles`` come most relevant first (root cause's members first).
        Rule knowledge comes before the category's generic knowledge; the first rule naming
        a runbook wins over the category's. An unknown category gets rule knowledge only.
        """
        cat = self.categories.get(category)
        detectors, titles = tuple(dict.fromkeys(detectors)), tuple(dict.fromkeys(titles))
        rules = [r for r in self.rules if r.applies(detectors, titles)]
        fill = _filler(service, host)
        plan = cat.plan if cat else DiagnosticPlan((), (), (), 0, ())
        checks = _unique([c for r in rules for c in r.checks] + list(plan.automated_checks))
        minutes = next((r.estimated_resolution_minutes for r in rules
                        if r.estimated_resolution_minutes is not None),
                       plan.estimated_resolution_minutes)
        runbook_id = next((r.runbook for r in rules if r.runbook), cat.runbook if cat else "")
        book = self.runbooks.get(runbook_id)
        return Diagnosis(
            symptoms=tuple(_unique([s for r in rules for s in r.symptoms]
                                   + list(cat.symptoms if cat else ()))),
            potential_causes=tuple(_unique([s for r in rules for s in r.potential_causes]
                                           + list(cat.potential_causes if cat else ()))),
            diagnostic_plan={
                "summary": cat.summary if cat else "",
                "automated_checks": [{"name": fill(c.name), "command": fill(c.command),
                                      "expect": c.expect} for c in checks],
                "manual_steps": [fill(s) for s in _unique(
                    [s for r in rules for s in r.manual_steps] + list(plan.manual_steps))],
                "escalation_criteria": _unique([s for r in rules for s in r.escalation_criteria]
                                               + list(plan.escalation_criteria)),
                "estimated_resolution_minutes": minutes,
                "required_expertise": _unique([s for r in rules for s in r.required_expertise]
                                              + list(plan.required_expertise)),
            },
            runbook=_runbook_dict(book, fill) if book else {},
            rules=tuple(r.name for r in rules),
        )


def _runbook_dict(book: Runbook, fill) -> dict[str, Any]:
    return {
        "id": book.id, "title": book.title,
        "steps": [{"title": s.title, "action": fill(s.action), "command": fill(s.command)}
                  for s in book.steps],
        "escalation_levels": [{"level": e.level, "after_minutes": e.after_minutes,
                               "contact": e.contact, "when": e.when}
                              for e in book.escalation_levels],
        "follow_ups": list(book.follow_ups),
    }


def _filler(service: str, host: str):
    values = {"service": service, "host": host}

    def fill(text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)] or m.group(0), text)
    return fill


@lru_cache(maxsize=1024)
def _compiled(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive regex for a tuple of shell-style globs (None when empty)."""
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(p) for p in patterns), re.IGNORECASE)


def _unique(items: Iterable[Any]) -> list[Any]:
    seen: list[Any] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
