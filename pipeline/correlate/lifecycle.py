"""A problem's lifecycle: open → updated → acknowledged → resolved, reopen, flapping.

- :func:`derive` recomputes what follows from the members: affected services and hosts,
  ranked root causes, category, title, confidence and the knowledge base's diagnosis.
- :func:`escalate` sets the severity: the highest of the detections, one level up per
  ``escalate_spread`` threshold of affected services reached and (unless acknowledged) per
  ``escalate_after_ms`` threshold of time open; it never goes down while open.
- :func:`resolve_due` says when and why an open problem resolves: every member resolved
  or calm (a keep-alive saw its series back) for ``resolve_hold_ms`` (``flap_hold_ms``
  when flapping), nothing firing for ``resolve_timeout_ms``, or open for
  ``max_duration_ms`` - whichever comes first.
- :func:`reopen` brings a recently resolved problem back (same id); ``flap_threshold``
  reopens within ``flap_window_ms`` mark it flapping, which lengthens its resolve hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from pipeline.alerts.notify import digest
from pipeline.correlate.graph import Graph
from pipeline.correlate.rootcause import rank
from pipeline.events.detection import MODEL_PREFIX, SEVERITIES
from pipeline.events.problem import MAX_REOPENS, Member, Problem
from pipeline.knowledge import KnowledgeBase
from pipeline.settings import CorrelateSettings

MAX_LISTED = 12  # symptoms / potential causes kept per problem


@dataclass(frozen=True)
class Context:
    """What derivations need besides the problem: settings, knowledge, call graph."""

    settings: CorrelateSettings
    knowledge: KnowledgeBase
    graph: Graph


def derive(p: Problem, ctx: Context) -> Problem:
    """``p`` with every member-derived field recomputed (severity: see :func:`escalate`)."""
    if not p.members:
        return p
    # an aftermath (a caller failing as the root's trouble ended) says nothing about
    # where the trouble began: the ranking stays with the onset
    onset = tuple(m for m in episode(p) if not m.aftermath)
    causes = rank(onset or episode(p), ctx.graph, ctx.settings)
    order = {c.service: i for i, c in enumerate(causes)}
    firsts: dict[str, int] = {}
    for m in p.members:
        firsts[m.service] = min(firsts.get(m.service, m.first_ms), m.first_ms)
    affected = tuple(sorted(firsts, key=lambda s: (order.get(s, len(order)), firsts[s], s)))
    hosts_of: dict[str, dict[str, None]] = {}
    for m in p.members:
        if m.host:
            hosts_of.setdefault(m.service, {})[m.host] = None
    hosts = tuple(dict.fromkeys(h for s in affected for h in hosts_of.get(s, ())))
    top = causes[0]
    lead = _lead(p.members, top.service)
    ranked = sorted(p.members, key=lambda m: (order.get(m.service, len(order)), m.first_ms))
    diag = ctx.knowledge.diagnose(
        lead.category, [m.detector for m in ranked], [m.title for m in ranked],
        service=top.service, host=top.host)
    more = len(affected) - 1
    head = lead.title if lead.title.startswith(top.service) else f"{top.service}: {lead.title}"
    title = head + (
        f" (+{more} affected service{'s' if more > 1 else ''})" if more else "")
    return replace(
        p, affected=affected, hosts=hosts, root_causes=causes, category=lead.category,
        title=title, confidence=confidence(p.members),
        symptoms=_listed([s for m in ranked for s in m.symptoms], diag.symptoms),
        potential_causes=_listed([c for m in ranked for c in m.potential_causes],
                                 diag.potential_causes),
        diagnostic_plan={**diag.diagnostic_plan, "knowledge_rules": list(diag.rules)},
        runbook=diag.runbook)


def episode(p: Problem) -> tuple[Member, ...]:
    """The members of the problem's current episode: after a reopen, those that fired
    since (an earlier episode's recovered members say nothing about this onset)."""
    if not p.reopens:
        return p.members
    cut = p.reopens[-1]
    current = tuple(m for m in p.members if m.state == "firing" or (m.resolved_ms or 0) >= cut)
    return current or p.members


def confidence(members: Sequence[Member]) -> float:
    """Noisy-or of member confidences (each counted at 0.6), +0.1 per extra signal kind."""
    miss = 1.0
    for m in members:
        miss *= 1.0 - 0.6 * max(0.0, min(1.0, m.confidence))
    signals = len({m.signal for m in members})
    return round(min(0.99, 1.0 - miss + 0.1 * (signals - 1)), 3)


def escalate(p: Problem, now_ms: int, settings: CorrelateSettings) -> tuple[Problem, str]:
    """``p`` with its severity for ``now_ms``, and why it rose (empty when it did not)."""
    if not p.members or not p.active:
        return p, ""
    # a rule states how bad its condition is; a model only how unusual a value is, and
    # its calibrated score saturates on any clear anomaly: models set the base severity
    # only of a problem no rule has detected
    rules = [m for m in p.members if not m.detector.startswith(MODEL_PREFIX)]
    base = max((m.severity for m in rules or p.members), key=SEVERITIES.index)
    why = [f"highest {'rule' if rules else 'model'} detection {base}"]
    levels = 0
    for n in settings.escalate_spread:
        if len(p.affected) >= n:
            levels += 1
            why.append(f"spread to {len(p.affected)} services (>= {n})")
    if p.status != "acknowledged":
        for after in settings.escalate_after_ms:
            if now_ms - p.opened_at >= after:
                levels += 1
                why.append(f"open for {span_text(now_ms - p.opened_at)} (>= {span_text(after)})")
    computed = SEVERITIES[min(len(SEVERITIES) - 1, SEVERITIES.index(base) + levels)]
    if SEVERITIES.index(computed) <= SEVERITIES.index(p.severity) and p.version:
        return p, ""
    old = p.severity
    p = replace(p, severity=computed)
    return p, (f"severity {old} -> {computed}: {'; '.join(why)}" if p.version else "")


def resolve_due(p: Problem, settings: CorrelateSettings) -> tuple[int, str, str] | None:
    """``(time, resolution, reason)`` of the earliest way ``p`` resolves, None if resolved."""
    if not p.active:
        return None
    cap = settings.max_duration_ms
    options = [(p.opened_at + cap, "max_duration",
                f"open for longer than max_duration ({span_text(cap)})")]
    if p.clear_since is not None:
        hold = settings.flap_hold_ms if p.flapping else settings.resolve_hold_ms
        kind = "flap hold" if p.flapping else "resolve_hold"
        options.append((p.clear_since + hold, "detections_resolved",
                        f"all member detections resolved (or calm) and stayed so for "
                        f"{kind} ({span_text(hold)})"))
    else:
        timeout = settings.resolve_timeout_ms
        options.append((p.last_firing_ms + timeout, "timeout",
                        f"no firing detection for resolve_timeout ({span_text(timeout)})"))
    return min(options)


def resolve(p: Problem, due: tuple[int, str, str]) -> Problem:
    """``p`` resolved as ``due`` says; still-firing members are closed with it (a calm
    one as of when it was seen back, still marked calm: its detector's alarm may go on)."""
    at, resolution, _ = due
    resolved_at = p.clear_since if resolution == "detections_resolved" else at
    members = tuple(m if m.state == "resolved" else replace(m, state="resolved",
                                                             resolved_ms=m.quiet_since or at)
                    for m in p.members)
    return replace(p, status="resolved", resolved_at=resolved_at, resolution=resolution,
                   members=members, clear_since=None)


def reopen(p: Problem, t: int, settings: CorrelateSettings, recurrence: bool = True,
           ) -> Problem:
    """``p`` open again at ``t`` (same id). A ``recurrence`` (its root cause failing again)
    begins a new episode and counts towards flapping; otherwise (its aftermath) the
    episode goes on: ``reopens`` stay as they were."""
    reopens = tuple(r for r in (*p.reopens, t) if r >= t - settings.flap_window_ms) \
        if recurrence else p.reopens
    return replace(p, status="open", resolved_at=None, resolution="", reopens=reopens,
                   reopened_at=(*p.reopened_at, t)[-MAX_REOPENS:],
                   recurred_at=(*p.recurred_at, t)[-MAX_REOPENS:] if recurrence
                   else p.recurred_at,
                   flapping=len(reopens) >= settings.flap_threshold, acknowledged_at=None,
                   acknowledged_by="", ack_comment="")


def acknowledge(p: Problem, at_ms: int, by: str, comment: str) -> Problem:
    """``p`` acknowledged (no-op unless it is open)."""
    if p.status != "open":
        return p
    return replace(p, status="acknowledged", acknowledged_at=at_ms, acknowledged_by=by,
                   ack_comment=comment)


def same_content(a: Problem, b: Problem) -> bool:
    """Equal but for version and updated_at."""
    return replace(a, version=0, updated_at=0) == replace(b, version=0, updated_at=0)


def change_kind(before: Problem | None, p: Problem, reopened: bool) -> str:
    """The decision kind of the change from ``before`` (None: new) to ``p``."""
    if before is None:
        if p.resolution == "merged":
            return "merged"
        return "opened" if p.active else "resolved"
    if not p.active:
        if before.active:
            return "merged" if p.resolution == "merged" else "resolved"
        return "joined"
    if not before.active:
        return "reopened"
    if p.status == "acknowledged" and before.status == "open":
        return "acknowledged"
    if SEVERITIES.index(p.severity) > SEVERITIES.index(before.severity):
        return "escalated"
    return "updated" if digest(p) != digest(before) or reopened else "joined"


def span_text(ms: int) -> str:
    """A duration for people: ``90s``, ``5m``, ``1h30m``, ``2d``."""
    if ms < 120_000 and ms % 60_000:
        return f"{ms / 1000:g}s"
    minutes = ms // 60_000
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours >= 48 and not minutes and hours % 24 == 0:
        return f"{hours // 24}d"
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def _lead(members: Sequence[Member], service: str) -> Member:
    own = [m for m in members if m.service == service] or [
        m for m in members if m.peer == service] or list(members)
    return max(own, key=lambda m: (SEVERITIES.index(m.severity), -m.first_ms, m.key))


def _listed(first: Sequence[str], then: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*first, *then]))[:MAX_LISTED]
