"""Inhibition: symptoms of a detected root cause do not alert on their own.

Two forms, both pure:

- *Topological* (always on): a symptom (a detection whose category is in
  ``symptom_categories``) on a service that depends, within ``max_symptom_hops`` calls,
  on a problem's failing root cause is folded into that problem
  (:func:`symptom_of_root`, used by grouping); a whole problem made only of such symptoms
  is folded into the root cause's problem, and two problems opened within a minute that
  blame the same root cause are one (:func:`fold_candidates`).
- *Rules* (Alertmanager's ``inhibit_rules``): while a problem matching ``source`` is open,
  a problem matching ``target`` with equal values for the ``equal`` names is not alerted
  (:func:`rule_mute`).
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.alerts.silences import subject_of
from pipeline.correlate.graph import Graph
from pipeline.events.matchers import all_match
from pipeline.events.problem import Problem
from pipeline.settings import CorrelateSettings, InhibitRule

CAUSE_LAG_MS = 120_000  # a cause may show this much later than its effect (detection delay)
ONSET_LAG_MS = 60_000  # change points this close count as simultaneous (one window)


def failing_root(p: Problem, symptom_categories: Sequence[str], since: int | None = None,
                 alive: int | None = None, until: int | None = None) -> str:
    """The top root-cause service of ``p`` when it fails its callers now, else empty.

    Failing means a firing member on it shows errors, latency or unreachability (a
    category in ``symptom_categories``), or a firing member elsewhere names it as its
    failing peer, and that member is not calm (its keep-alive saw the series back). A
    service with only, say, a memory trend is not failing yet. With ``since``, only
    members that began firing at or after it count (a failure that started long before
    explains no fresh onset); with ``alive``, only those confirmed at or after it; with
    ``until``, only those that began at or before it (a failure that began later
    explains no earlier symptom).
    """
    if not p.active or not p.root_causes:
        return ""
    root = p.root_causes[0].service
    return root if any(((m.service == root and m.category in symptom_categories)
                        or m.peer == root) and not m.calm
                       and (since is None or m.onset >= since)
                       and (alive is None or m.last_ms >= alive)
                       and (until is None or m.onset <= until)
                       for m in p.firing) else ""


def symptom_of_root(service: str, p: Problem, graph: Graph,
                    symptom_categories: Sequence[str], since: int | None = None,
                    alive: int | None = None) -> str | None:
    """Why a symptom on ``service`` belongs to ``p`` (it depends on p's failing root,
    whose failure began at or after ``since`` and was confirmed at or after ``alive``)."""
    root = failing_root(p, symptom_categories, since, alive)
    if root and root != service and root in graph.dependencies(service):
        return f"inhibited: {service} depends on {root}, the failing root cause of {p.id}"
    return None


def fold_candidates(problems: Sequence[Problem], graph: Graph,
                    settings: CorrelateSettings) -> tuple[Problem, Problem, str] | None:
    """The first (target, source, reason): ``target`` is only symptoms of ``source``'s root."""
    window = settings.relatedness_window_ms
    twice = same_root(problems, ONSET_LAG_MS)
    if twice is not None:
        return twice
    ordered = sorted((p for p in problems if p.active), key=lambda p: (p.opened_at, p.id))
    for source in ordered:
        if not failing_root(source, settings.symptom_categories):
            continue
        for target in ordered:
            if target is source or not target.members:
                continue
            root = failing_root(source, settings.symptom_categories,
                                target.opened_at - window // 2,
                                target.opened_at - settings.alive_ms,
                                target.opened_at + CAUSE_LAG_MS)
            if not root:
                continue
            if not (source.opened_at - window <= target.opened_at
                    <= source.last_firing_ms + window):
                continue
            if all(m.category in settings.symptom_categories and m.service != root
                   and root in graph.dependencies(m.service) for m in target.members):
                return target, source, (f"inhibited: {', '.join(target.affected)} depend on "
                                        f"{root}, the failing root cause of {source.id}")
    return None


def same_root(problems: Sequence[Problem], window_ms: int,
              ) -> tuple[Problem, Problem, str] | None:
    """Two open problems that opened within ``window_ms`` of each other and blame the same
    root cause first: one incident seen twice (e.g. its detections reached the correlator
    in separate batches before either could relate to the other)."""
    ordered = sorted((p for p in problems if p.active and p.root_causes),
                     key=lambda p: (p.opened_at, p.id))
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            if b.opened_at - a.opened_at > window_ms:
                break
            root = a.root_causes[0].service
            if b.root_causes[0].service == root:
                return b, a, f"the same root cause ({root}), opened together"
    return None


def rule_mute(p: Problem, others: Sequence[Problem], rules: Sequence[InhibitRule]) -> str:
    """Why ``p`` is muted by an inhibit rule (empty when it is not)."""
    if not rules:
        return ""
    target = subject_of(p)
    for i, rule in enumerate(rules):
        if not all_match(rule.target, target):
            continue
        for q in others:
            if q.id == p.id or not q.active:
                continue
            source = subject_of(q)
            if all_match(rule.source, source) and all(
                    source.get(n, (None, ()))[0] == target.get(n, (None, ()))[0]
                    for n in rule.equal):
                return f"inhibited by {q.id} (inhibit_rules[{i}])"
    return ""
