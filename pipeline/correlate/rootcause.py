"""Rank root-cause candidates of a problem by what the data shows at the onset.

**Attribution.** Each member is evidence about one service: its own, or - for an edge
observation (a caller's calls to a callee got slower or fail: a metric naming
``peer.service``, or a service-graph edge detection) - the callee's, since a network
delay or a failing dependency shows on the callers' side of the call. When the calls
of one caller to two or more callees are anomalous together and none of those callees
explains the others (they do not all depend on one of them), the common factor is the
caller (a CPU-starved caller times every call as slow, a caller returning early makes
every call fast): those edge observations are put down to the caller. So are those of a
caller in trouble of its own - a cause-type detection (``cause_categories``), or calls
*into* it spending long outside its handling (a network-time edge alarm: its network or
its accept queue) - calling callees that show nothing of their own: a starved caller's
client spans take longer whoever it calls, and with one callee the first rule cannot
tell them apart. A member that points at its callers (a rule with ``points_at:
callers``, e.g. ``traffic-stopped``) is evidence about the services calling its service,
unless that service shows trouble of its own beyond drops.

**Scores.** Every candidate is scored in 0..1 as a weighted sum of five signals, each
with readable evidence:

- graph (0.30): 1.0 when every other anomalous service depends on it (within
  ``max_symptom_hops`` calls) and changed no earlier than it; halved when an anomalous
  dependency of its own changed no later than it (the deepest anomalous callee wins);
- first (0.20): its change point (the onset of its earliest anomaly) is the problem's
  first, within ``ONSET_TOLERANCE_MS`` (a windowed rule's change point is known only to
  a window step, a model's to its point: a minute apart is at once); decays with the
  delay beyond that (2 min scale);
- cause (0.30): a cause-type detection of its own (``cause_categories``), not a drop,
  or calls from it that stopped arriving (requests end here: it fails before making
  them); divided by the number of candidates that have one (queues filling in every
  caller of a failing database point at none of them);
- deploy (0.10): a deploy or a ``service.version`` change shows on it;
- deviation (0.10): the largest deviation from its own baseline of the problem (log
  scale, in band half-widths; a rule's observed/threshold).

Change points come from the detections (the start of the anomaly, not when it was
confirmed); "no later" allows ``ONSET_TOLERANCE_MS`` (one detection window). A single
candidate has graph = 1.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

from pipeline.correlate.graph import Graph
from pipeline.events.problem import Member, RootCause
from pipeline.events.times import format_ms
from pipeline.settings import CorrelateSettings

NETWORK_SERIES = "edge.network"  # the service graph's network-time alarms
WEIGHTS = {"graph": 0.30, "first": 0.20, "cause": 0.30, "deploy": 0.10, "deviation": 0.10}
FIRST_DECAY_MS = 120_000
ONSET_TOLERANCE_MS = 60_000


def edge_of(m: Member) -> tuple[str, str] | None:
    """(caller, callee) when ``m`` observes calls between two services, else None."""
    caller = m.labels.get("caller", "")
    if caller and caller != m.service:
        return caller, m.service
    if m.peer and m.peer != m.service:
        return m.service, m.peer
    return None


def attribute(members: Sequence[Member], graph: Graph,
              cause_categories: Sequence[str] = ()) -> tuple[dict[str, list[Member]],
                                                             dict[str, str]]:
    """Members by the service they are evidence about, and why a caller took the blame
    for its own calls (per caller)."""
    callees: dict[str, set[str]] = defaultdict(set)
    for m in members:
        edge = edge_of(m)
        if edge is not None:
            callees[edge[0]].add(edge[1])
    own = {m.service for m in members if edge_of(m) is None}
    troubled: dict[str, str] = {}
    for m in members:
        edge = edge_of(m)
        if edge is None and not m.drop and m.category in cause_categories:
            troubled.setdefault(m.service, f"its own {m.category} trouble ({m.title})")
        elif edge is not None and m.labels.get("series") == NETWORK_SERIES:
            troubled.setdefault(edge[1], f"calls into it spend long outside its handling "
                                         f"({m.title})")
    common: dict[str, str] = {}
    for caller, seen in callees.items():
        if caller in troubled and not seen & own:
            common[caller] = (f"{troubled[caller]} explains its calls to "
                              f"{_names(sorted(seen))}, which show nothing of their own")
    for caller, seen in callees.items():
        known = graph.callees(caller) | seen
        # one of them explains the others when they all depend on it (a shared database)
        shared = any(all(o == d or d in graph.dependencies(o) for o in seen) for d in seen)
        if len(seen) >= 2 and not shared and caller not in common:
            common[caller] = (f"its calls to {len(seen)} of its {len(known)} callees are "
                              "anomalous together, and none of them explains the others: "
                              "the common factor is the caller")
    stopped = upstream_of_stops(members, graph)
    by_service: dict[str, list[Member]] = defaultdict(list)
    for m in members:
        edge = edge_of(m)
        if edge is None and m.key in stopped:
            for caller in stopped[m.key]:
                by_service[caller].append(m)
            continue
        target = m.service if edge is None else edge[0] if edge[0] in common else edge[1]
        by_service[target].append(m)
    return by_service, common


def upstream_of_stops(members: Sequence[Member], graph: Graph) -> dict[str, frozenset[str]]:
    """Callers to credit with each member that points at its callers (by member key).

    Traffic that stops arriving at a service was stopped upstream: its callers fail
    before making the call (an exception, an early return) or no longer route to it. A
    service that shows trouble of its own beyond drops (a crash shows as absence, errors
    or saturation) keeps such a member, and so does one with no known caller."""
    own = {m.service for m in members
           if edge_of(m) is None and not m.drop and m.points_at != "callers"}
    out: dict[str, frozenset[str]] = {}
    for m in members:
        if m.points_at == "callers" and edge_of(m) is None and m.service not in own:
            callers = graph.callers(m.service) - {m.service}
            if callers:
                out[m.key] = frozenset(callers)
    return out


def rank(members: Sequence[Member], graph: Graph,
         settings: CorrelateSettings) -> tuple[RootCause, ...]:
    """Candidates best first (ties: earliest onset, then name), at most max_root_causes."""
    if not members:
        return ()
    by_service, common = attribute(members, graph, settings.cause_categories)
    onset = {c: min(m.onset for m in ms) for c, ms in by_service.items()}
    t0 = min(onset.values())
    dev = {c: max(math.log1p(max(m.deviation, 0.0)) for m in ms)
           for c, ms in by_service.items()}
    top_dev = max(dev.values())
    below = {c: _anomalous_below(c, set(by_service), graph) for c in by_service}
    caused = sum(1 for c, ms in by_service.items() if any(
        (m.category in settings.cause_categories and not m.drop and edge_of(m) is None)
        or m.service != c and m.points_at == "callers" for m in ms)) or 1
    firsts = sorted(set(onset.values()))
    scored = []
    for c in sorted(by_service):
        ms = by_service[c]
        ev: list[str] = []
        f = dict.fromkeys(WEIGHTS, 0.0)
        f["graph"] = _graph(c, onset, below, ev)
        f["first"] = math.exp(-max(onset[c] - t0 - ONSET_TOLERANCE_MS, 0) / FIRST_DECAY_MS)
        if onset[c] == t0 and len(by_service) > 1:
            later = next((t for t in firsts if t > t0), None)
            lead = f", {(later - t0) / 1000:g} s before the next service" if later else ""
            ev.append(f"first to go anomalous (at {format_ms(onset[c])}{lead})")
        if top_dev > 0:
            f["deviation"] = dev[c] / top_dev
            best = max(ms, key=lambda m: (m.deviation, -m.first_ms))
            if dev[c] == top_dev and len(by_service) > 1:
                ev.append(f"strongest deviation from its own baseline: {_deviation(best)}")
        own = [m for m in ms if m.service == c and (edge_of(m) is None or c in common)]
        stops = [m for m in ms if m.service != c and m.points_at == "callers"]
        edges = [m for m in ms if edge_of(m) is not None]
        if edges and c not in common:
            callers = sorted({edge_of(m)[0] for m in edges})
            ev.append(f"named as the failing peer by {len(edges)} detection(s) of other "
                      f"services: calls to it from {_names(callers)} ({edges[0].title})")
        if c in common:
            ev.append(common[c])
        causes = [m for m in own if m.category in settings.cause_categories and not m.drop]
        shared = f", as on {caused - 1} other candidate(s)" if caused > 1 else ""
        if causes:  # shared by n candidates, it points at none of them in particular
            f["cause"] = 1.0 / caused
            ev.append(f"cause-type signal: {causes[0].title} ({causes[0].category}){shared}")
        elif stops:
            f["cause"] = 1.0 / caused
            ev.append(f"requests end here: calls to "
                      f"{_names(sorted({m.service for m in stops}))} stopped arriving "
                      f"({stops[0].title}), which show nothing else of their own{shared}")
        deploy = _deploy(own, onset[c], settings.deploy_lookback_ms)
        if deploy:
            f["deploy"] = 1.0
            ev.append(f"recent deploy: {deploy}")
        if not own:
            ev.append("no detection of its own yet")
        score = round(sum(WEIGHTS[k] * v for k, v in f.items()), 3)
        scored.append((-score, onset[c], c, RootCause(c, score, tuple(ev), _host(own))))
    scored.sort(key=lambda x: x[:3])
    return tuple(x[3] for x in scored[: settings.max_root_causes])


def _anomalous_below(c: str, candidates: set[str], graph: Graph) -> set[str]:
    """Candidates ``c`` depends on (within ``max_hops`` calls)."""
    return set(graph.dependencies(c)) & candidates - {c}


def _graph(c: str, onset: dict[str, int], below: dict[str, set[str]], ev: list[str],
           ) -> float:
    others = len(onset) - 1
    if not others:
        return 1.0
    tol = ONSET_TOLERANCE_MS
    upstream = sorted(d for d in onset if c in below[d] and onset[c] <= onset[d] + tol)
    deeper = sorted(e for e in below[c] if onset[e] <= onset[c] + tol)
    if upstream:
        ev.append(f"upstream in the call graph of {len(upstream)}/{others} other anomalous "
                  f"services ({_names(upstream)}), which changed with or after it")
    if deeper:
        ev.append(f"itself depends on anomalous {_names(deeper)}, which changed no later")
    return len(upstream) / others * (0.5 if deeper else 1.0)


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
    if m.deviation:
        return f"{m.title} ({m.deviation:.3g} band half-widths out)"
    return f"{m.title} (strength {m.strength:.2f})"


def _host(ms: Sequence[Member]) -> str:
    hosts = Counter(m.host for m in ms if m.host)
    return hosts.most_common(1)[0][0] if hosts else ""


def _names(items: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
