"""Grouping: which open problem a detection joins, when problems merge, when one opens.

A firing detection of a series already in an open problem refreshes it (a keep-alive).
Otherwise it joins the *live* problems it relates to (open, and firing or active within
``relatedness_window_ms``) through a member that *changed recently* (began firing within
half of ``relatedness_window_ms``, and still current), strongest relation first:

3. same service or host (unless it is a local fault - a category outside
   ``symptom_categories`` - that began after the root cause's trouble, on a service that
   only shows symptoms of it), or a ``peer.service``-style label naming an affected
   service (or vice versa), or an edge observation (label ``caller``) seen from an
   affected service;
2. a symptom (error, latency, connectivity) of a service that depends on the problem's
   failing root cause, up to ``max_symptom_hops`` calls away (inhibition: folded in), or
   the same caller's calls to another callee going wrong at once, or trouble continuing
   on the same service or host: a series of the same category (for a symptom, of the
   same detector) firing for longer and confirmed within ``alive_ms``, or (for a
   slowdown) its own resource trouble that began within ``relatedness_window_ms`` before
   it - never for a series of the problem firing again after going quiet (a fresh
   onset, as is a learned-baseline series going out of band again after it resolved),
   unless it is a symptom of the problem's root cause still failing, nor through
   an alarm one of whose keep-alives saw its series back (calm: a model's value inside
   its band, a windowed rule's last step meeting its clear condition; the alarm not yet
   resolved; out of band again before it resolves is another fault raising it, not the
   first going on: see the engine); a symptom
   on the root's own service, while the root's failure began within two relatedness
   windows, continues whichever detector and whichever symptom shows it (the same
   incident unfolding: a slowdown, then errors as timeouts pile up);
1. adjacent in the call graph (a caller's symptom; or a dependency of an affected service
   whose trouble is not already put down to a root cause below it), a caller failing the
   same way as another caller of the same dependency within half the relatedness window,
   or sharing a ``relate_labels`` value.

Several problems at the best strength that began (opened or reopened) within half of
``relatedness_window_ms`` of each other are merged (the detection bridges them); one that
began earlier is another incident, left apart (the detection joins the later ones). The
detector that fired on the root-cause service of a problem resolved within
``reopen_window_ms`` firing there again reopens it, unless a relation of strength 2 or 3
holds - not a detector that learns its series' baseline (:func:`learns_baseline`) firing
from a change point after its series resolved: a new excursion. With no relation at all,
a symptom on a service depending on the root cause of a problem whose members have all
resolved, that began no later than the root's own members did (within a window), is that
problem's *aftermath* (:func:`aftermath_of`): it joins the problem, or reopens it without
starting a new episode, relates nothing further and does not change its ranking;
otherwise a new problem opens.

A calm member counts as resolved since its series was seen back (:attr:`Member.quiet_since`):
a problem whose members have all resolved or are calm is clear (:func:`with_member`) and
resolves after its hold, as one whose members all resolved.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, replace
from typing import Literal

import orjson

from pipeline.correlate.graph import Graph
from pipeline.correlate.inhibit import CAUSE_LAG_MS, ONSET_LAG_MS, failing_root, symptom_of_root
from pipeline.events.detection import MODEL_PREFIX, SEVERITIES, Detection
from pipeline.events.problem import Link, Member, Problem
from pipeline.events.times import format_ms
from pipeline.settings import CorrelateSettings

_DEPLOY = re.compile(r"deploy|rollout|release", re.IGNORECASE)
_SEVERITY_STRENGTH = {"low": 0.2, "medium": 0.4, "high": 0.6, "critical": 0.8}


RelationKind = Literal["same_place", "reports_peer", "named_peer", "seen_from", "calls_at_once",
                       "continuing", "inhibited", "adjacent", "shared_callee", "shared_label",
                       "aftermath"]
# how strongly each kind of relation ties a detection to a problem (see the module
# docstring); an aftermath (:func:`aftermath_of`) is weaker than any: it is taken only when
# nothing else relates
RELATION_STRENGTH: dict[RelationKind, int] = {
    "same_place": 3, "reports_peer": 3, "named_peer": 3, "seen_from": 3,
    "calls_at_once": 2, "continuing": 2, "inhibited": 2,
    "adjacent": 1, "shared_callee": 1, "shared_label": 1,
    "aftermath": 0,
}


@dataclass(frozen=True)
class Relation:
    """How a detection relates to a problem: the kind of link, its strength (from the
    kind) and the reason in words (kept as the member's ``joined``)."""

    kind: RelationKind
    why: str

    @property
    def strength(self) -> int:
        """3 (same place, a named peer, an edge seen from a member), 2 (a symptom of the
        failing root, trouble continuing, one caller's calls failing at once), 1 (adjacent
        in the call graph, a shared callee or label) or 0 (an aftermath)."""
        return RELATION_STRENGTH[self.kind]


def series_key(det: Detection) -> str:
    """What identifies one detected series across its firing and resolved detections."""
    raw = orjson.dumps([det.detector, det.service, det.host, det.entity,
                        sorted(det.labels.items())])
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def problem_id(scope: str, det: Detection) -> str:
    """A stable id from the scope and the detection that opened the problem."""
    return "p-" + hashlib.blake2b(f"{scope}\x00{det.id}".encode(), digest_size=6).hexdigest()


def member_from(det: Detection, settings: CorrelateSettings) -> Member:
    """A new member from its first firing detection."""
    observed, threshold = _finite(det.observed), _finite(det.threshold)
    version = det.labels.get("service.version") or str(det.evidence.get("service.version", ""))
    return Member(
        key=series_key(det), detector=det.detector, service=det.service, host=det.host,
        category=det.category, severity=det.severity, title=det.title, signal=det.signal,
        state="firing", first_ms=det.time, last_ms=det.time, strength=strength(det),
        observed=observed, threshold=threshold, confidence=float(det.confidence),
        peer=peer_of(det, settings), version=version, deploy=_deploy(det),
        labels=dict(det.labels), symptoms=tuple(det.symptoms),
        potential_causes=tuple(det.potential_causes), drop=_is_drop(det, observed),
        points_at=str(det.evidence.get("points_at", "")),
        score=_finite(det.score), band_low=_number(det.evidence.get("band_low")),
        band_high=_number(det.evidence.get("band_high")),
        onset_ms=change_point(det), deviation=deviation(det),
        growing=det.evidence.get("kind") in ("trend", "exhaustion"))


def update_member(m: Member, det: Detection, settings: CorrelateSettings) -> Member:
    """The member after another detection of its series (firing again or resolved).

    Once a keep-alive saw the series back (calm), its trouble ended then for the
    correlator: later calm keep-alives leave its last firing time where it was, and its
    resolve dates its end back to that time."""
    if det.state == "resolved":
        return replace(m, state="resolved", calm=False,
                       resolved_ms=m.quiet_since if m.calm else det.time)
    new = member_from(det, settings)
    # calm sticks while the alarm fires (see below); a resolved member (closed with its
    # problem while calm) firing again is a new episode
    was_calm = m.calm and m.state == "firing"
    calm = is_keepalive(det) and (was_calm or _calm(det))
    # a model's keep-alive restates its episode: the peak score so far, beside the value
    # now and an expected value that has followed the shift since the band was fixed (a
    # CPU that dropped reads as above its adapted expectation): it says the trouble goes
    # on, not how far or which way it went
    restated = is_keepalive(det) and det.detector.startswith(MODEL_PREFIX)
    stronger = not restated and new.strength > m.strength
    return replace(
        m, state="firing", resolved_ms=None,
        last_ms=m.last_ms if was_calm and calm else max(m.last_ms, det.time),
        first_ms=min(m.first_ms, det.time) if m.state == "firing" else m.first_ms,
        # a flap (firing again within alive_ms of when it was last seen firing) goes on
        # with the same trouble; after longer, the series begins anew
        onset_ms=(m.onset if m.state == "firing" or det.time - m.last_ms <= settings.alive_ms
                  else change_point(det)),
        deviation=m.deviation if restated else max(m.deviation, new.deviation),
        severity=max(m.severity, new.severity, key=SEVERITIES.index),
        strength=max(m.strength, new.strength),
        observed=new.observed if stronger else m.observed,
        threshold=new.threshold if stronger else m.threshold,
        drop=new.drop if stronger else m.drop,
        score=new.score if stronger else m.score,
        band_low=new.band_low if stronger else m.band_low,
        band_high=new.band_high if stronger else m.band_high,
        version=new.version or m.version, deploy=m.deploy or new.deploy,
        # once a keep-alive saw the series back inside its band, its episode is over for
        # the correlator until the alarm resolves: going out of band again later is not
        # the first trouble going on (another fault raising the same series)
        confidence=max(m.confidence, new.confidence),
        calm=calm, calm_ms=(m.calm_ms if was_calm else det.time) if calm else None)


def is_calm(det: Detection) -> bool:
    """Whether ``det`` is a keep-alive that saw its series back (see :func:`_calm`)."""
    return is_keepalive(det) and _calm(det)


def is_keepalive(det: Detection) -> bool:
    """Whether ``det`` re-sends an alarm still firing (a keep-alive)."""
    return bool(det.evidence.get("keepalive")) and det.state == "firing"


def _calm(det: Detection) -> bool:
    """Whether a keep-alive says its series is back: a model's value inside the band it
    fired against, or a rule's last step meeting its clear condition (``calm`` in its
    evidence: the window still holds the trouble of up to a window ago)."""
    if det.detector.startswith(MODEL_PREFIX):
        return _inside(det)
    return bool(det.evidence.get("calm"))


def _inside(det: Detection) -> bool:
    """Whether a model's detection saw its value inside the band it fired against (its
    evidence ``band_low`` .. ``band_high``): a keep-alive of a series back to normal."""
    o = _finite(det.observed)
    low, high = (_number(det.evidence.get(k)) for k in ("band_low", "band_high"))
    return o is not None and low is not None and high is not None and low <= o <= high


def strength(det: Detection) -> float:
    """How far the detection deviates, 0..1: model score, or observed/threshold ratio."""
    if _finite(det.score) is not None and det.score > 0:
        return min(1.0, float(det.score))
    o, t = _finite(det.observed), _finite(det.threshold)
    if o and t:
        ratio = abs(o / t)
        ratio = max(ratio, 1 / ratio)
        return round(1 - 1 / ratio, 4) if ratio > 1 else 0.1
    return _SEVERITY_STRENGTH.get(det.severity, 0.2)


def change_point(det: Detection) -> int:
    """When the detected change began, not when it was confirmed: a model's first point
    out of band (its window start); for a rule, the evaluation before its condition began
    to hold (``for`` plus one step before it fired), within its aggregation window."""
    start = det.window_start if 0 < det.window_start <= det.time else det.time
    ev = det.evidence
    if _is_rule(det):
        step = ev.get("step_ms") if isinstance(ev.get("step_ms"), int) else 0
        return max(start, det.time - ev["for_ms"] - step)
    return start


def _is_rule(det: Detection) -> bool:
    return "window" in det.evidence and isinstance(det.evidence.get("for_ms"), int)


def deviation(det: Detection) -> float:
    """How far the detection's value is from its series' own baseline, in half-widths of
    the band the model accepts (1: at the band's edge); for a rule, observed/threshold
    (or its inverse below a lower threshold); 0 when neither is known."""
    ev = det.evidence
    o = _finite(det.observed)
    expected, low, high = (ev.get(k) for k in ("expected", "band_low", "band_high"))
    if o is not None and all(isinstance(x, (int, float)) and math.isfinite(x)
                             for x in (expected, low, high)):
        if o >= expected:
            return round((o - expected) / max(high - expected, 1e-12), 4)
        return round((expected - o) / max(expected - low, 1e-12), 4)
    t = _finite(det.threshold)
    if o and t:
        ratio = abs(o / t)
        return round(max(ratio, 1 / ratio), 4)
    return 0.0


def peer_of(det: Detection, settings: CorrelateSettings) -> str:
    """The service a detection names as its failing peer (labels, then evidence)."""
    for key in settings.peer_labels:
        value = det.labels.get(key) or det.evidence.get(key)
        if isinstance(value, str) and value and value != det.service:
            return value
    return ""


def is_live(p: Problem, t: int, settings: CorrelateSettings) -> bool:
    """Whether ``p`` still takes in detections at ``t``."""
    if not p.active or t < p.opened_at - settings.relatedness_window_ms:
        return False
    firing = p.clear_since is None  # some member still fires
    horizon = settings.resolve_timeout_ms if firing else settings.relatedness_window_ms
    return t - p.last_firing_ms <= horizon


def was_live(p: Problem, t: int, settings: CorrelateSettings) -> bool:
    """Whether ``p``, resolved since, still took in detections at ``t`` (for a detection
    that arrives after event time has moved past it)."""
    return (not p.active and not p.merged_into and p.resolved_at is not None
            and p.opened_at - settings.relatedness_window_ms <= t <= p.resolved_at)


def relation(det: Detection, p: Problem, graph: Graph,
             settings: CorrelateSettings) -> Relation | None:
    """How ``det`` relates to ``p`` (its kind, strength and why); None when unrelated.

    Only members that *changed recently* count: they began firing within half of
    ``relatedness_window_ms`` before the detection (the window in which failures count
    as beginning at once), and are current: their detector
    confirmed them, or they resolved, within ``alive_ms``. A problem kept open by a long-running
    (background) member does not take in a fresh onset elsewhere, nor through services
    that recovered long ago: a detection must be causally close, in the graph and in
    time, to a change of the problem."""
    s = det.service
    # changes that began this close are linked: to when the detection's trouble began
    # for a rule (it says when its condition began to hold), else to when it came
    horizon = (change_point(det) if _is_rule(det) else det.time) \
        - settings.relatedness_window_ms // 2
    # a series firing for longer (and confirmed recently) still takes in the same kind of
    # trouble on its own service or host (a memory growth, then memory above its limit)
    alive = det.time - settings.alive_ms  # a firing member confirmed since is current
    began = change_point(det)
    symptom = det.category in settings.symptom_categories
    # an aftermath (a caller failing as the root recovered) is the end of the problem's
    # trouble, no change of it: it relates nothing
    changes = [m for m in p.members if not m.aftermath]
    # a series of the problem firing again reaches here only after a silence longer than
    # alive_ms (a shorter one is a flap, taken as a keep-alive): a fresh onset, which
    # the problem's trouble did not go on through - unless it is a symptom of the
    # problem's root cause, which still fails its callers: its failure still explains it
    refired = p.member(series_key(det)) is not None
    rooted = refired and symptom and symptom_of_root(
        s, p, graph, settings.symptom_categories, None, alive) is not None
    # a symptom on the root cause's own service while the root's failure is young (began
    # within two relatedness windows: the same incident still unfolding, not background),
    # whatever symptom it is (a slowdown, then errors as timeouts pile up)
    young = began - 2 * settings.relatedness_window_ms
    own_root = symptom and failing_root(p, settings.symptom_categories, young, alive) == s
    rooted = rooted or own_root
    # a learned series of the problem going out of band again after it resolved (back in
    # band) is a new excursion, as a re-fire: it continues only a root still failing
    anew = new_excursion(det, p.member(series_key(det)), began)
    ongoing = [m for m in changes if (rooted or not (refired or anew))
               and m.onset < horizon
               and not m.calm
               and m.state == "firing" and m.last_ms >= alive and ((
                   # a symptom continues only as measured by the same detector (another
                   # detector's alarm of the same symptom is a new signal going wrong),
                   # or as the still-failing root's symptom it was
                   (m.category == det.category
                    or (own_root and m.category in settings.symptom_categories))
                   and (not symptom or rooted or m.detector == det.detector)
               ) or (
                   # its own resource trouble, still current (confirmed within
                   # alive_ms: detectors re-confirm at their keep-alive cadence, so the
                   # last confirmation may fall just before the slowdown began),
                   # explains the service slowing down (memory pressure, then latency)
                   # while it is growing (a trend alarm) or if it began within the
                   # relatedness window before it; a resource level reached longer ago
                   # is background, not this slowdown's cause
                   det.category == "performance" and m.category == "resource"
                   and not m.drop
                   and (m.growing or m.onset >= began - settings.relatedness_window_ms)))
               and (m.service == s or (det.host and m.host == det.host))]
    if ongoing:
        # weaker than a recent change: a detection that also relates to a fresh problem
        # joins that one instead of bridging it into the long-running one
        m = ongoing[0]
        where = f"same service ({s})" if m.service == s else f"same host ({det.host})"
        return Relation("continuing",
                        f"{where}, {m.category} trouble continuing since {format_ms(m.onset)}")
    # a calm member counts as resolved when it was seen back
    members = [m for m in changes if m.onset >= horizon
               and (m.quiet_since or m.last_ms) >= alive]
    # a symptom of the problem's failing root may be confirmed late (a rule's long
    # window): its own change point must fall near the root's failure
    since = change_point(det) - settings.relatedness_window_ms // 2
    if not members:  # no recent change: only a symptom of the problem's failing root
        why = (symptom_of_root(s, p, graph, settings.symptom_categories, since, alive)
               if symptom else None)
        return Relation("inhibited", why) if why else None
    services = ({m.service for m in members} | {m.peer for m in members if m.peer}
                | {m.labels["caller"] for m in members if m.labels.get("caller")})
    top = p.root_causes[0].service if p.root_causes else ""

    def explained(x: str) -> bool:  # x's trouble is already put down to a root below it
        return bool(top) and top != x and top in graph.dependencies(x)

    places = [m for m in members if m.service == s or (det.host and m.host == det.host)]
    if places:
        # a local fault (a category outside symptom_categories) on a service that so far
        # only shows symptoms of the root cause, and that began after the root's trouble
        # (beyond detection delays), is a problem of its own; one that began with it may
        # be the cause
        root_onset = min((m.onset for m in p.members if m.service == top), default=None)
        local_on_symptom = (not symptom and explained(s) and root_onset is not None
                            and change_point(det) > root_onset + ONSET_LAG_MS
                            and all(m.category in settings.symptom_categories
                                    for m in places))
        if not local_on_symptom:
            same = "same service" if any(m.service == s for m in places) else "same host"
            return Relation("same_place",
                            f"{same} ({s if same == 'same service' else det.host})")
    peer = peer_of(det, settings)
    if peer and peer in services:
        return Relation("reports_peer", f"{s} reports failures of {peer}")
    if any(m.peer == s for m in members):
        return Relation("named_peer", f"{s} is named as failing by detections of this problem")
    caller = det.labels.get("caller", "")  # an edge observation: seen from the caller
    if caller and caller != s:
        if caller in services:
            return Relation("seen_from",
                            f"seen from {caller}, a service of this problem, calling {s}")
        seen = sorted({m.service for m in members if m.labels.get("caller") == caller})
        if seen:
            return Relation("calls_at_once",
                            f"{caller}'s calls to {s} and to {_list(seen)} went wrong at once")
    if symptom and (why := symptom_of_root(s, p, graph, settings.symptom_categories,
                                           since, alive)):
        return Relation("inhibited", why)
    onset = change_point(det)
    for x in sorted(services):
        # a callee's trouble explains its caller's only if it began no later than that
        # (within a window or two of detection delay): a callee going wrong minutes
        # after its caller did is not what made the caller fail
        if s in graph.callees(x) and not explained(x) and any(
                m.service == x and onset <= m.onset + CAUSE_LAG_MS for m in members):
            return Relation("adjacent", f"adjacent: {x} calls {s}")
        if x in graph.callees(s) and symptom:
            return Relation("adjacent", f"adjacent: {s} calls {x}")
    if symptom:  # callers failing the same way at once point at what they both call
        at_once = settings.relatedness_window_ms // 2  # their failures began this close
        for x in sorted(services):
            common = set(graph.callees(s)) & set(graph.callees(x))
            if common and any(m.service == x and m.category == det.category
                              and abs(det.time - m.first_ms) <= at_once for m in members):
                return Relation("shared_callee",
                                f"{s} and {x} both call {', '.join(sorted(common))}")
    for key in settings.relate_labels:
        value = det.labels.get(key)
        if value and any(m.labels.get(key) == value for m in members):
            return Relation("shared_label", f"shared {key}={value}")
    return None


def aftermath_of(det: Detection, p: Problem, graph: Graph,
                 settings: CorrelateSettings) -> Relation | None:
    """Whether ``det`` is the aftermath of ``p``, whose own trouble has ended.

    Every member of ``p`` has resolved (earlier aftermath aside), and ``p`` is still open
    (holding before it resolves) or resolved so: its root cause recovered. ``det`` is a
    symptom (``symptom_categories``) on a service that depends on ``p``'s root cause
    (within ``max_symptom_hops`` calls), whose trouble began after ``p`` opened and no
    later than when the root's own members resolved (within ``ONSET_LAG_MS``: change
    points this close are simultaneous; a caller's symptom of it may clear later). A
    caller failing as its dependency's trouble ends (its pods killed and restarting),
    confirmed after the dependency's own alarms cleared, is that trouble's last part, not
    a problem of its own; one that began after it is. Neither is a detection naming
    another failing peer (``peer_labels``) than the root or a service calling it, nor a
    learned-baseline series of ``p`` (:func:`learns_baseline`) going out of band again
    after it resolved: a new excursion."""
    if not p.root_causes or det.category not in settings.symptom_categories:
        return None
    if not p.active and p.resolution != "detections_resolved":
        return None  # merged, timed out (gone silent) or capped: nothing recovered
    own = [m for m in p.members if not m.aftermath]
    if not own or any(m.quiet_since is None for m in own):  # calm counts as recovered
        return None
    root = p.root_causes[0].service
    if root == det.service or root not in graph.dependencies(det.service):
        return None
    peer = peer_of(det, settings)  # it names what fails it: the root, or a way to it
    if peer and peer != root and root not in graph.dependencies(peer):
        return None
    # when the root's own trouble ended (its callers' symptoms may clear later)
    ended = max(m.quiet_since or m.last_ms
                for m in [r for r in own if r.service == root] or own)
    onset = change_point(det)
    if not p.opened_at <= onset <= ended + ONSET_LAG_MS:
        return None
    if new_excursion(det, p.member(series_key(det)), onset):  # not the old one's end
        return None
    return Relation("aftermath", f"aftermath: {det.service} depends on {root}, the root "
                                 f"cause of {p.id}, and began failing at {format_ms(onset)}"
                                 f" as {root}'s trouble ended ({format_ms(ended)})")


def _list(items: list[str], limit: int = 3) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more"
                                       if len(items) > limit else "")


def recurs_in(det: Detection, p: Problem, settings: CorrelateSettings) -> str | None:
    """Why ``det`` is a recurrence of resolved ``p`` (reopen), or None: the same detector
    must fire again on ``p``'s top root-cause service, on the same kind of trouble (its
    category) and, for a model (one detector watching every signal of a service), the
    same signal: its labels but the host (the metric, operation, peer) - a symptom
    service acting up, or a different failure of the same service, is a new problem. A
    detector that learns its series' baseline (:func:`learns_baseline`) firing from a
    change point after that series resolved recurs nothing: it resolved only once the
    series was back in band, so this is a new excursion (back-to-back faults on one
    service are problems of their own), as a model's re-fire is a fresh onset within a
    problem (see the engine)."""
    if p.active or p.resolution not in ("detections_resolved", "timeout") or not p.root_causes:
        return None
    if p.resolved_at is None or det.time - p.resolved_at > settings.reopen_window_ms:
        return None
    root = p.root_causes[0].service
    model = det.detector.startswith(MODEL_PREFIX)
    signal = _signal(det.labels)
    # a detector that learns its series' baseline resolved only once the series was back
    # in band: firing again from a change point after that is a new excursion (a problem
    # of its own, or a join), not the old trouble recurring
    onset = change_point(det)
    if det.service == root and any(m.service == root and m.detector == det.detector
                                   and m.category == det.category
                                   and (not model or _signal(m.labels) == signal)
                                   and not new_excursion(det, m, onset)
                                   for m in p.members):
        return f"{det.detector} on {det.service}, its root cause, fired again"
    return None


def new_excursion(det: Detection, m: Member | None, onset: int) -> bool:
    """Whether ``det``, from change point ``onset``, fires member ``m``'s series anew
    after it resolved, on a baseline its detector learned (:func:`learns_baseline`): the
    series was back in band, so this is a new excursion, not the old one going on."""
    return (m is not None and m.resolved_ms is not None and onset >= m.resolved_ms
            and learns_baseline(det))


def learns_baseline(det: Detection) -> bool:
    """Whether ``det``'s detector fires against a baseline it learned from the series
    itself (an online model, or a band in its evidence: the service graph's edges), not
    a fixed threshold: its alarm resolved only once the series was back in that band."""
    return det.detector.startswith(MODEL_PREFIX) or (
        _number(det.evidence.get("band_low")) is not None
        and _number(det.evidence.get("band_high")) is not None)


def _signal(labels: dict[str, str]) -> list[tuple[str, str]]:
    """What a model detection measures: its labels but the service and host."""
    return sorted((k, v) for k, v in labels.items() if k not in ("service", "host"))


def add_link(p: Problem, link: Link, settings: CorrelateSettings) -> Problem:
    """``p`` with one more detection listed (beyond the cap, only the table gets it)."""
    if len(p.links) >= settings.max_links_per_problem:
        return p
    return replace(p, links=(*p.links, link))


def with_member(p: Problem, member: Member) -> Problem:
    """``p`` with ``member`` added or replaced (by key), firing bookkeeping updated: it is
    clear once every member has resolved or is calm (its series seen back), since the
    last of them did."""
    members = tuple(m for m in p.members if m.key != member.key) + (member,)
    quiet = [m.quiet_since for m in members]
    clear = None if None in quiet else max(t for t in quiet if t is not None)
    last = max(p.last_firing_ms, member.last_ms)
    return replace(p, members=members, clear_since=clear, last_firing_ms=last)


def with_late_member(p: Problem, member: Member) -> Problem:
    """Resolved ``p`` with ``member`` added or replaced (by key) as resolved with it; its
    status and times stay as they are."""
    member = replace(member, state="resolved", resolved_ms=p.resolved_at)
    return replace(p, members=tuple(m for m in p.members if m.key != member.key) + (member,))


def merge(survivor: Problem, victims: list[Problem], t: int) -> tuple[Problem, list[Problem],
                                                                     list[Link]]:
    """Fold ``victims`` into ``survivor``; they resolve as merged (their links move)."""
    moved: list[Link] = []
    closed = []
    for v in victims:
        for m in v.members:
            mine = next((x for x in survivor.members if x.key == m.key), None)
            if mine is not None:
                m = replace(mine, first_ms=min(mine.first_ms, m.first_ms),
                            last_ms=max(mine.last_ms, m.last_ms),
                            state="firing" if "firing" in (mine.state, m.state) else m.state)
            survivor = with_member(survivor, m)
        links = [Link(survivor.id, x.detection_id, x.time, x.service, "merged")
                 for x in v.links]
        moved.extend(links)
        survivor = replace(survivor, links=(*survivor.links, *links),
                           last_firing_ms=max(survivor.last_firing_ms, v.last_firing_ms))
        closed.append(replace(v, status="resolved", resolved_at=t, resolution="merged",
                              merged_into=survivor.id, members=(), links=(),
                              clear_since=None))
    return survivor, closed, moved


def _deploy(det: Detection) -> str:
    if _DEPLOY.search(det.detector) or _DEPLOY.search(det.title):
        return f"{det.title} at {format_ms(det.time)}"
    old = det.evidence.get("previous_version") or det.evidence.get("old_version")
    new = det.evidence.get("service.version") or det.evidence.get("new_version")
    return f"service.version {old} -> {new}" if old and new and old != new else ""


def _is_drop(det: Detection, observed: float | None) -> bool:
    """Whether a model saw the value below what it expected (evidence ``expected``)."""
    expected = det.evidence.get("expected")
    return (isinstance(expected, (int, float)) and observed is not None
            and math.isfinite(expected) and observed < expected)


def _number(x: object) -> float | None:
    """A finite number from evidence, else None."""
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None
