"""The correlator: detections, time and control events in; new state and decisions out.

Every entry point is a pure function of (state, input, now) - the clock is never read:

- :meth:`Correlator.on_detections` takes a batch in event-time order. Before each
  detection, problems whose resolve fell due by its time are resolved (so results do not
  depend on how often ticks come); then it refreshes, joins, merges, reopens or opens. A
  keep-alive that saw its series back (calm) refreshes only a problem where that series
  still fires: otherwise it takes part in nothing (a problem all of whose members are
  calm resolves while the alarms go on); one finding a calm series out of band again
  is a new onset at its own time, which joins or reopens by the usual rules but opens
  no problem of its own (:meth:`Correlator._after_calm`).
- :meth:`Correlator.on_tick` lets time pass: resolves, duration escalation, alerts due.
- :meth:`Correlator.on_control` applies an acknowledgement or a silence change.

Each call ends with one decision per problem that changed (its version goes up by one),
then the alerts that time alone made due (``opened`` after group_wait, ``updated`` after
group_interval, ``repeated`` after repeat_interval, ``suppressed`` when muted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from pipeline.alerts.control import ControlEvent
from pipeline.alerts.notify import Track, flush, next_due, plan
from pipeline.alerts.silences import Silence, silencing
from pipeline.correlate.graph import Graph
from pipeline.correlate.grouping import (
    add_link,
    aftermath_of,
    change_point,
    is_calm,
    is_keepalive,
    is_live,
    member_from,
    merge,
    new_excursion,
    problem_id,
    recurs_in,
    relation,
    series_key,
    update_member,
    was_live,
    with_late_member,
    with_member,
)
from pipeline.correlate.inhibit import fold_candidates, rule_mute
from pipeline.correlate.lifecycle import (
    Context,
    acknowledge,
    change_kind,
    derive,
    escalate,
    reopen,
    resolve,
    resolve_due,
    same_content,
)
from pipeline.correlate.reorder import Reorder
from pipeline.correlate.state import CorrelationState, StateError
from pipeline.events.detection import MODEL_PREFIX, Detection
from pipeline.events.problem import Decision, Link, Member, Problem
from pipeline.knowledge import KnowledgeBase
from pipeline.settings import CorrelateSettings

MAX_NOTES = 6  # reasons listed per decision before "and N more"


@dataclass
class _Work:
    """Mutable working copy of a state during one call."""

    scope: str
    now: int
    problems: dict[str, Problem]
    tracks: dict[str, Track]
    silences: dict[str, Silence]
    before: Mapping[str, Problem]
    seen: set[str]
    notes: dict[str, list[str]] = field(default_factory=dict)
    reopened: set[str] = field(default_factory=set)
    stale: set[str] = field(default_factory=set)  # members changed, derivation deferred
    links: dict[str, list[Link]] = field(default_factory=dict)
    reorder: Reorder = field(default_factory=Reorder)  # carried through untouched

    @classmethod
    def start(cls, state: CorrelationState, now_ms: int) -> _Work:
        problems = dict(state.problems)
        seen = {link.detection_id for p in problems.values() for link in p.links}
        return cls(state.scope, max(now_ms, state.now_ms), problems, dict(state.tracks),
                   dict(state.silences), state.problems, seen, reorder=state.reorder)

    def put(self, p: Problem, note: str = "") -> None:
        self.problems[p.id] = p
        if note:
            self.notes.setdefault(p.id, []).append(note)

    def active(self) -> list[Problem]:
        return sorted((p for p in self.problems.values() if p.active),
                      key=lambda p: (p.opened_at, p.id))


class Correlator:
    """Groups detections into problems for one scope (see the module docstring)."""

    def __init__(self, settings: CorrelateSettings, knowledge: KnowledgeBase,
                 scope: str = "default") -> None:
        self.settings = settings
        self.knowledge = knowledge
        self.scope = scope
        self._static = Graph(settings.static_dependencies, settings.max_symptom_hops)

    def on_detections(self, state: CorrelationState, detections: Sequence[Detection],
                      now_ms: int, topology: Mapping[str, Sequence[str]] | None = None,
                      ) -> tuple[CorrelationState, list[Decision]]:
        """Take in a batch; ``now_ms`` is its event time (at least its latest detection's).
        ``topology`` (caller → callees) overrides the static dependencies for this batch."""
        end = max([now_ms, *(d.time for d in detections)])
        graph = self._static if topology is None else Graph(topology,
                                                            self.settings.max_symptom_hops)
        ctx = Context(self.settings, self.knowledge, graph)
        w, decisions = self._start(state, state.now_ms), []
        for det in sorted(detections, key=lambda d: (d.time, d.id)):
            if det.id in w.seen:
                continue  # a replayed detection: already taken in
            w = self._run_timers(w, det.time, ctx, decisions)
            self._settle(w, det.time, ctx)
            self._apply(w, det, ctx)
        w = self._run_timers(w, end, ctx, decisions)
        state, out = self._close(w, end, ctx)
        return state, decisions + out

    def on_tick(self, state: CorrelationState, now_ms: int,
                ) -> tuple[CorrelationState, list[Decision]]:
        """Let time pass to ``now_ms``: resolves, escalation by duration, alerts due."""
        w, decisions = self._start(state, state.now_ms), []
        w = self._run_timers(w, now_ms, None, decisions)
        state, out = self._close(w, now_ms, None)
        return state, decisions + out

    def on_control(self, state: CorrelationState, event: ControlEvent, now_ms: int,
                   ) -> tuple[CorrelationState, list[Decision]]:
        """Apply an ack or a silence change (events for another scope are ignored)."""
        if event.scope and event.scope != self.scope:
            return state, []
        w, decisions = self._start(state, state.now_ms), []
        w = self._run_timers(w, now_ms, None, decisions)
        self._settle(w, now_ms)
        w.now = max(w.now, now_ms)
        if event.kind == "ack":
            p = w.problems.get(event.problem_id)
            if p is not None and p.status == "open":
                note = f"acknowledged by {event.by or 'someone'}" + (
                    f": {event.comment}" if event.comment else "")
                w.put(acknowledge(p, event.time_ms, event.by, event.comment), note)
        elif event.kind == "silence" and event.silence is not None:
            w.silences.setdefault(event.silence.id, event.silence)
        elif event.kind == "expire_silence" and event.silence_id in w.silences:
            w.silences[event.silence_id] = w.silences[event.silence_id].expire(event.time_ms)
        state, out = self._finish(w)
        return state, decisions + out

    # -- steps -------------------------------------------------------------------------

    def _start(self, state: CorrelationState, now_ms: int) -> _Work:
        if state.scope != self.scope:
            raise StateError(f"correlator of scope {self.scope!r} handed the state of scope "
                             f"{state.scope!r}")
        return _Work.start(state, now_ms)

    def _run_timers(self, w: _Work, t: int, ctx: Context | None,
                    decisions: list[Decision]) -> _Work:
        """Close the work at every timer falling due by ``t`` - an alert, a resolve, an
        escalation by duration - so one batch decides what ticks at those times would
        have: a problem that outlived group_wait is alerted even if it resolved later in
        the batch, and every decision carries the event time it fell due at."""
        while True:
            due = [d for p in w.active() for d in self._timers(w, p) if w.now < d <= t]
            if not due:
                return w
            state, out = self._close(w, min(due), ctx)
            decisions.extend(out)
            seen = w.seen
            w = self._start(state, state.now_ms)
            w.seen |= seen

    def _timers(self, w: _Work, p: Problem) -> list[int]:
        s = self.settings
        out = [t for t in (next_due(p, w.tracks.get(p.id), s),
                           (resolve_due(p, s) or (None,))[0]) if t is not None]
        if p.status == "open":
            out += [p.opened_at + after for after in s.escalate_after_ms]
        return out

    def _close(self, w: _Work, t: int, ctx: Context | None,
               ) -> tuple[CorrelationState, list[Decision]]:
        """Let the work's time pass to ``t``, finish pending derivations and folds, and
        return the new state with a decision per changed problem."""
        self._settle(w, t, ctx)
        w.now = max(w.now, t)
        if ctx is not None:
            for pid in sorted(w.stale):
                if w.problems[pid].active:
                    self._derive(w, w.problems[pid], ctx, w.now, "")
            for _ in range(len(w.problems)):
                hit = fold_candidates(w.active(), ctx.graph, self.settings)
                if hit is None:
                    break
                a, b = sorted(hit[:2], key=lambda p: (p.opened_at, p.id))
                self._merge(w, a, [b], w.now, hit[2], ctx)
        return self._finish(w)

    def _settle(self, w: _Work, t: int, ctx: Context | None = None) -> None:
        for p in w.active():
            due = resolve_due(p, self.settings)
            if due is not None and due[0] <= t:
                if ctx is not None and p.id in w.stale:
                    p = self._derive(w, p, ctx, due[0], "")
                w.put(resolve(p, due), f"resolved: {due[2]}")

    def _apply(self, w: _Work, det: Detection, ctx: Context) -> None:
        s = self.settings
        w.seen.add(det.id)
        key = series_key(det)
        where = f"{det.detector} on {det.service}"
        if det.state == "resolved":
            owner = max((p for p in w.problems.values() if p.member(key) is not None),
                        key=lambda p: (p.active, p.member(key).last_ms), default=None)
            if owner is not None:
                m = owner.member(key)
                p = self._link(w, with_member(owner, update_member(m, det, s)), det, "resolve")
                every = "; every member resolved" if p.active and p.clear_since else ""
                w.put(p, f"{where} resolved{every}")
            return
        if det.evidence.get("pre_existing"):
            # a condition its detector has seen hold since it first evaluated the series
            # (present when watching began) is no change: it opens nothing and relates
            # nothing; it stays a detection, flagged pre-existing
            return
        anew = False  # a keep-alive finding a calm series out of band again
        if is_keepalive(det):
            after = self._after_calm(w, det, ctx)
            if after is None:
                return
            anew, det = after is not det, after
        # the series' problem takes a keep-alive, or a flap (firing again soon after it
        # was last seen firing); a series that resolved after being silent for longer
        # than alive_ms and fires again is a fresh onset, related like a new detection -
        # as is a model's series firing again with a change point after its resolve (the
        # model confirmed it back to normal, or settled, before: no flap)
        owner = max((p for p in w.active() if p.member(key) is not None),
                    key=lambda p: p.member(key).last_ms, default=None)
        if owner is not None and (owner.member(key).state == "firing"
                                  or (owner.member(key).last_ms >= det.time - s.alive_ms
                                      and not _fresh_model_onset(owner.member(key), det))):
            m = owner.member(key)
            p = self._link(w, with_member(owner, update_member(m, det, s)), det, "keepalive")
            self._derive(w, p, ctx, det.time,
                         f"{where} {'fired again' if m.state == 'resolved' else 'still firing'}",
                         lazy=True)
            return
        related = [(r, p) for p in w.active() if is_live(p, det.time, s)
                   and (r := relation(det, p, ctx.graph, s)) is not None]
        best = max((r.strength for r, _ in related), default=0)
        recurring = [(p, why) for p in w.problems.values()
                     if (why := recurs_in(det, p, s)) is not None]
        if recurring and best < 2:  # a root cause coming back beats a weak relation
            p, why = max(recurring, key=lambda x: (x[0].resolved_at or 0, x[0].id))
            p = reopen(p, det.time, s)
            old = p.member(key)
            member = update_member(old, det, s) if old else replace(
                member_from(det, s), joined=f"reopened the problem: {why}")
            p = self._link(w, with_member(p, member), det, "member")
            w.reopened.add(p.id)
            flap = (f"; flapping ({len(p.reopens)} reopens within flap_window)"
                    if p.flapping else "")
            self._derive(w, p, ctx, det.time, f"reopened: {why}{flap}")
            return
        if related:
            chosen = [(r, p) for r, p in related if r.strength == best]
            if len(chosen) > 1:
                # a detection bridges problems that began at once (one incident seen in
                # pieces); one that began well before the others is an earlier incident,
                # left apart: the detection joins those that began last
                latest = max(_began(p) for _, p in chosen)
                chosen = [(r, p) for r, p in chosen
                          if latest - _began(p) <= s.relatedness_window_ms // 2]
            r, survivor = chosen[0]
            if len(chosen) > 1:
                survivor = self._merge(w, survivor, [p for _, p in chosen[1:]], det.time,
                                       f"bridged by {where}", ctx)
            role = "symptom" if r.kind == "inhibited" else "member"
            member = replace(member_from(det, s), joined=r.why)
            p = self._link(w, with_member(survivor, member), det, role)
            self._derive(w, p, ctx, det.time, f"{where} joined: {r.why}", lazy=True)
            return
        late = [(r, p) for p in w.problems.values() if det.time < w.now
                and was_live(p, det.time, s) and (r := relation(det, p, ctx.graph, s))]
        if late:  # it came after its problem resolved: it joins it (ranked again), no reopen
            r, p = max(late, key=lambda x: (x[0].strength, x[1].opened_at, x[1].id))
            member = replace(member_from(det, s), joined=f"{r.why} (arrived late)")
            p = self._link(w, derive(with_late_member(p, member), ctx), det, "member")
            w.put(p, f"{where} joined after the problem resolved: {r.why}")
            return
        after = [(r, p) for p in w.problems.values()
                 if (r := aftermath_of(det, p, ctx.graph, s)) is not None]
        if after:  # nothing else relates: the last part of a trouble that just ended
            r, p = max(after, key=lambda x: (x[1].clear_since or x[1].resolved_at or 0,
                                             x[1].id))
            note = f"{where} joined: {r.why}"
            if not p.active:  # the same episode goes on: no new onset, no flap
                p, note = reopen(p, det.time, s, recurrence=False), f"reopened: {r.why}"
                w.reopened.add(p.id)
            member = replace(member_from(det, s), joined=r.why, aftermath=True)
            p = self._link(w, with_member(p, member), det, "symptom")
            self._derive(w, p, ctx, det.time, note)
            return
        if anew:  # one point out of band, not a confirmed alarm: it opens nothing
            return
        pid = problem_id(self.scope, det)
        while pid in w.problems:
            pid = problem_id(self.scope, replace(det, id=pid))
        p = Problem(pid, 0, self.scope, "open", det.time, det.time, last_firing_ms=det.time)
        member = replace(member_from(det, s), joined="opened the problem")
        p = self._link(w, with_member(p, member), det, "trigger")
        self._derive(w, p, ctx, det.time, f"opened by {where}: {det.title}")

    def _after_calm(self, w: _Work, det: Detection, ctx: Context) -> Detection | None:
        """A keep-alive as the rest of :meth:`_apply` takes it, or None to drop it.

        A keep-alive of a series firing in an open problem refreshes it, calm or not. A
        calm one (its series seen back) otherwise says no trouble: it opens, joins and
        reopens nothing. Its problem may have resolved while it was calm (the alarm goes
        on): the keep-alive is listed with it (it stays resolved), which keeps it in the
        state while such keep-alives come. A series once calm that a keep-alive finds
        out of band (not calm) again fails anew: its calm episode ended when it was
        seen back (its member resolves then) and the keep-alive is a firing from a
        change point at its own time (a new detection, returned as such), which the
        flap, recurrence and new-excursion rules then judge like any other - but it
        opens no problem of its own: it is one point out of band at a keep-alive tick,
        not an alarm its detector confirmed (a fault raising the series again shows in
        confirmed detections, whose problem it then joins).
        """
        key = series_key(det)
        mine = [(p, m) for p in w.active() if (m := p.member(key)) is not None
                and m.state == "firing"]
        if mine:
            p, m = max(mine, key=lambda x: (x[1].last_ms, x[0].id))
            if not m.calm or is_calm(det):
                return det
            p = with_member(p, replace(m, state="resolved", resolved_ms=m.quiet_since))
            self._derive(w, p, ctx, det.time, f"{det.detector} on {det.service} out of "
                         "band again after its series was seen back: a new onset",
                         lazy=True)
        else:
            calmed = [(p, m) for p in w.problems.values() if (m := p.member(key)) is not None
                      and m.state == "resolved" and m.calm and not p.merged_into]
            if is_calm(det):
                if calmed:
                    p, m = max(calmed, key=lambda x: (x[0].active, x[1].last_ms, x[0].id))
                    p = replace(p, members=tuple(replace(x, last_ms=max(x.last_ms, det.time))
                                                 if x.key == key else x for x in p.members))
                    w.put(self._link(w, p, det, "keepalive"))
                return None
            if not calmed:
                return det
        return replace(det, window_start=det.time)

    def _link(self, w: _Work, p: Problem, det: Detection, role: str) -> Problem:
        link = Link(p.id, det.id, det.time, det.service, role)
        w.links.setdefault(p.id, []).append(link)
        return add_link(p, link, self.settings)

    def _derive(self, w: _Work, p: Problem, ctx: Context, t: int, note: str,
                lazy: bool = False) -> Problem:
        """Recompute ``p``'s derived fields; ``lazy`` defers it to the end of the batch
        while its services, hosts and named peers stay the same (floods stay linear)."""
        last = p.members[-1]
        if lazy and last.service in p.affected and (not last.host or last.host in p.hosts) \
                and (not last.peer or any(c.service == last.peer for c in p.root_causes)):
            w.stale.add(p.id)
            w.put(p, note)
            return p
        w.stale.discard(p.id)
        p, why = escalate(derive(p, ctx), t, self.settings)
        w.put(p, note)
        if why:
            w.put(p, why)
        return p

    def _merge(self, w: _Work, survivor: Problem, victims: list[Problem], t: int, why: str,
               ctx: Context) -> Problem:
        survivor, closed, moved = merge(survivor, victims, t)
        w.links.setdefault(survivor.id, []).extend(moved)
        for v in closed:
            w.put(v, f"merged into {survivor.id}: {why}")
        names = ", ".join(v.id for v in closed)
        return self._derive(w, survivor, ctx, t, f"took in {names}: {why}")

    def _mute(self, w: _Work, p: Problem) -> str:
        silence = silencing(p, w.silences.values(), w.now)
        if silence is not None:
            return f"silenced by {silence.id}" + (f" ({silence.comment})"
                                                  if silence.comment else "")
        return rule_mute(p, w.active(), self.settings.inhibit_rules)

    def _finish(self, w: _Work) -> tuple[CorrelationState, list[Decision]]:
        s = self.settings
        for p in w.active():
            grown, why = escalate(p, w.now, s)
            if why:
                w.put(grown, why)
        decisions, decided = [], set()
        for p in sorted(w.problems.values(), key=lambda p: (p.opened_at, p.id)):
            before = w.before.get(p.id)
            if before is not None and (before is p or same_content(before, p)):
                continue
            kind = change_kind(before, p, p.id in w.reopened)
            p = replace(p, version=(before.version if before else 0) + 1, updated_at=w.now)
            w.problems[p.id] = p
            track = w.tracks.get(p.id) or Track(first_due_ms=p.opened_at + s.group_wait_ms)
            if kind == "reopened" and not track.notified:
                track = replace(track, first_due_ms=p.reopened_at[-1] + s.group_wait_ms)
            mute = self._mute(w, p)
            (kind, notify, why), w.tracks[p.id] = plan(kind, p, track, w.now, s, mute)
            decisions.append(Decision(kind, p, _reason(w.notes.get(p.id, []), why), notify,
                                      w.now, tuple(w.links.get(p.id, ()))))
            decided.add(p.id)
        for p in w.active():
            if p.id not in decided:
                out, w.tracks[p.id] = flush(p, w.tracks[p.id], w.now, s, self._mute(w, p))
                if out is not None:
                    decisions.append(Decision(out[0], p, out[2], out[1], w.now))
        keep = {k: p for k, p in w.problems.items()
                if p.active or (p.resolved_at or 0) + s.reopen_window_ms >= w.now
                or _calm_alarm(p, w.now - s.alive_ms)}
        silences = {k: x for k, x in w.silences.items()
                    if x.end_ms is None or x.end_ms + s.silence_retention_ms >= w.now}
        tracks = {k: t for k, t in w.tracks.items() if k in keep}
        return CorrelationState(w.scope, w.now, keep, tracks, silences, w.reorder), decisions


def _reason(notes: list[str], why: str) -> str:
    shown = notes[:MAX_NOTES]
    if len(notes) > MAX_NOTES:
        shown.append(f"and {len(notes) - MAX_NOTES} more")
    return "; ".join([*shown, why] if why else shown)


def _began(p: Problem) -> int:
    """When ``p`` last began: opened, or reopened since."""
    return max([p.opened_at, *p.reopened_at])


def _calm_alarm(p: Problem, since: int) -> bool:
    """Whether resolved ``p`` lists a series it resolved with while calm whose alarm was
    still confirmed (a calm keep-alive) at or after ``since``."""
    return any(m.state == "resolved" and m.calm and m.last_ms >= since for m in p.members)


def _fresh_model_onset(m: Member, det: Detection) -> bool:
    """Whether ``det`` fires a resolved model member's series anew: an online model's
    alarm resolves only once its series is confirmed back in band (or settled at a
    level it scores as normal), so one that fires again from a change point after that
    is a new excursion, not the old one flapping. (Models only: a service-graph edge
    resolves without confirming its series back in band, so one that cleared and fires
    again within ``alive_ms`` is more often the same incident going on.)"""
    return (m.state == "resolved" and det.detector.startswith(MODEL_PREFIX)
            and new_excursion(det, m, change_point(det)))
