"""Rank root-cause candidates of a problem from its members and the call graph.

Each affected service (and each service other detections name as their failing peer) is
scored in 0..1 as a weighted sum of six signals, each with readable evidence:

| signal | weight | 1.0 when |
|---|---|---|
| graph | 0.30 | every other failing service depends on it (halved if it depends on one) |
| first | 0.20 | it went anomalous (or was named) first (decays with the delay, 2 min scale) |
| cause | 0.30 | a cause-type detection (``cause_categories``), not a drop (idle CPU is an effect) |
| deploy | 0.10 | a deploy or a ``service.version`` change shows on it |
| strength | 0.05 | it has the strongest deviation of the problem |
| named | 0.05 | every detection on other services names it as ``peer.service`` |

A single-service problem has that service first with graph = 1.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

from pipeline.correlate.graph import Graph
from pipeline.events.problem import Member, RootCause
from pipeline.events.times import format_ms
from pipeline.settings import CorrelateSettings

WEIGHTS = {"graph": 0.30, "first": 0.20, "cause": 0.30, "deploy": 0.10, "strength": 0.05,
           "named": 0.05}
FIRST_DECAY_MS = 120_000


def rank(members: Sequence[Member], graph: Graph,
         settings: CorrelateSettings) -> tuple[RootCause, ...]:
    """Candidates best first (ties: earliest anomaly, then name), at most max_root_causes."""
    if not members:
        return ()
    by_service: dict[str, list[Member]] = defaultdict(list)
    for m in members:
        by_service[m.service].append(m)
    affected = set(by_service)
    named = Counter(m.peer for m in members if m.peer and m.peer != m.service)
    t0 = min(m.first_ms for m in members)
    top_strength = max(m.strength for m in members)
    firsts = sorted({min(x.first_ms for x in ms) for ms in by_service.values()})
    failing = affected | set(named)
    scored = []
    for c in sorted(failing):
        ms = by_service.get(c, [])
        ev: list[str] = []
        f = {"graph": _graph(c, failing, graph, ev), "named": 0.0, "first": 0.0,
             "strength": 0.0, "cause": 0.0, "deploy": 0.0}
        others = len(members) - len(ms)
        if named[c]:
            f["named"] = named[c] / max(1, others)
            ev.append(f"named as the failing peer by {named[c]} detection(s) of other services")
        first = min((m.first_ms for m in ms), default=None)
        if first is None:
            named_at = min(m.first_ms for m in members if m.peer == c)
            f["first"] = math.exp(-(named_at - t0) / FIRST_DECAY_MS)
            ev.append("no detection of its own yet")
        else:
            f["first"] = math.exp(-(first - t0) / FIRST_DECAY_MS)
            if first == t0 and len(affected) > 1:
                later = next((t for t in firsts if t > t0), None)
                lead = f", {(later - t0) / 1000:g} s before the next service" if later else ""
                ev.append(f"first to go anomalous (at {format_ms(first)}{lead})")
            best = max(ms, key=lambda m: (m.strength, -m.first_ms))
            if top_strength > 0:
                f["strength"] = best.strength / top_strength
                if best.strength == top_strength and len(affected) > 1:
                    ev.append(f"strongest deviation: {_deviation(best)}")
            causes = [m for m in ms if m.category in settings.cause_categories and not m.drop]
            if causes:
                f["cause"] = 1.0
                ev.append(f"cause-type signal: {causes[0].title} ({causes[0].category})")
            deploy = _deploy(ms, first, settings.deploy_lookback_ms)
            if deploy:
                f["deploy"] = 1.0
                ev.append(f"recent deploy: {deploy}")
        score = round(sum(WEIGHTS[k] * v for k, v in f.items()), 3)
        host = _host(ms)
        scored.append((-score, first if first is not None else t0, c, RootCause(
            c, score, tuple(ev), host)))
    scored.sort(key=lambda x: x[:3])
    return tuple(x[3] for x in scored[: settings.max_root_causes])


def _graph(c: str, failing: set[str], graph: Graph, ev: list[str]) -> float:
    others = len(failing) - (c in failing)
    if not others:
        return 1.0
    dependents = sorted((graph.dependents(c) & failing) - {c})
    failing_deps = sorted((graph.dependencies(c) & failing) - {c})
    if dependents:
        ev.append(f"upstream in the call graph of {len(dependents)}/{others} other "
                  f"failing services ({_names(dependents)})")
    if failing_deps:
        ev.append(f"itself depends on failing {_names(failing_deps)}")
    return len(dependents) / others * (0.5 if failing_deps else 1.0)


def _deploy(ms: Sequence[Member], first: int, lookback_ms: int) -> str:
    for m in sorted(ms, key=lambda m: m.first_ms):
        if m.deploy and m.first_ms >= first - lookback_ms:
            return m.deploy
    versions = [m.version for m in sorted(ms, key=lambda m: m.first_ms) if m.version]
    distinct = list(dict.fromkeys(versions))
    if len(distinct) > 1:
        return f"service.version changed {distinct[0]} -> {distinct[-1]}"
    return ""


def _deviation(m: Member) -> str:
    """The strongest deviation in words: a rule's value against its threshold; a model's
    value against the band it expected (its threshold is a score's, not a value's)."""
    if m.score is not None:
        value = f"value {m.observed:.4g}, " if m.observed is not None else ""
        if m.band_low is not None and m.band_high is not None:
            return (f"{m.title} ({value}expected {m.band_low:.4g} to {m.band_high:.4g}; "
                    f"anomaly score {m.score:.2f})")
        limit = f" over {m.threshold:.2f}" if m.threshold is not None else ""
        return f"{m.title} ({value}anomaly score {m.score:.2f}{limit})"
    if m.observed is not None and m.threshold is not None:
        return f"{m.title} (observed {m.observed:.4g} vs threshold {m.threshold:.4g})"
    return f"{m.title} (strength {m.strength:.2f})"


def _host(ms: Sequence[Member]) -> str:
    hosts = Counter(m.host for m in ms if m.host)
    return hosts.most_common(1)[0][0] if hosts else ""


def _names(items: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
