"""Grouping: join, open, merge by bridge, fold symptoms (inhibition), time windows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.correlate.grouping import series_key
from tests.unit.correlate.support import MIN, SEC, T0, Run, again, cleared, det, kinds


def test_same_service_joins_one_problem():
    run = Run()
    first = run.feed([det("error_rate_above_5pct", "orders", T0)])
    second = run.feed([det("response_time_above_1000ms", "orders", T0 + MIN,
                           category="performance", observed=1500, threshold=1000)])
    assert kinds(first) == [("opened", False)]
    assert len(run.open()) == 1
    p = run.open()[0]
    # group_wait (30 s) elapsed before the second detection: the first alert went then
    assert kinds(second) == [("opened", True), ("joined", False)]
    assert second[0].time_ms == T0 + 30 * SEC
    assert second[-1].problem.id == p.id and p.version == 2
    assert "same service (orders)" in second[-1].reason
    assert len(p.detection_ids) == 2 and p.affected == ("orders",)


def test_same_host_joins_across_services():
    run = Run()
    run.feed([det("cpu_above_80pct", "payments", T0, category="resource", host="node-7")])
    out = run.feed([det("heartbeat_missing", "agent-coordinator", T0 + 20 * SEC, host="node-7")])
    assert len(run.open()) == 1 and "same host (node-7)" in out[0].reason
    assert run.open()[0].hosts == ("node-7",)


def test_call_graph_neighbours_join():
    run = Run()
    run.feed([det("error_rate_above_5pct", "api", T0)])
    out = run.feed([det("error_rate_above_5pct", "orders", T0 + 30 * SEC)])
    assert len(run.open()) == 1 and "adjacent: api calls orders" in out[-1].reason


def test_unrelated_services_open_separate_problems():
    run = Run()
    run.feed([det("error_rate_above_5pct", "payments", T0),
              det("coordination_failed_burst", "agent-coordinator", T0 + SEC,
                  category="coordination", signal="logs")])
    assert len(run.open()) == 2
    assert {p.affected for p in run.open()} == {("payments",), ("agent-coordinator",)}


def test_shared_label_relates_unrelated_services():
    run = Run()
    run.feed([det("error_rate_above_5pct", "payments", T0, labels={"deployment.id": "d-42"}),
              det("error_rate_above_5pct", "agent-worker", T0 + SEC,
                  labels={"deployment.id": "d-42"})])
    assert len(run.open()) == 1
    assert "shared deployment.id=d-42" in run.decisions[0].reason


def test_too_far_apart_in_time_is_not_related():
    run = Run(resolve_hold_ms=30 * MIN)  # keeps the first problem open, all cleared
    a = det("error_rate_above_5pct", "api", T0)
    run.feed([a, cleared(a, T0 + MIN)])
    run.feed([det("error_rate_above_5pct", "orders", T0 + 12 * MIN)])  # window is 10 min
    assert len(run.open()) == 2


def test_detection_bridging_two_problems_merges_them():
    run = Run()
    run.feed([det("error_rate_above_5pct", "payments", T0)])
    run.feed([det("db_connection_errors", "inventory", T0 + 10 * SEC,
                  category="connectivity", signal="logs")])
    assert len(run.open()) == 2
    first, second = run.open()
    out = run.feed([det("error_rate_above_5pct", "orders", T0 + 20 * SEC)])
    assert len(run.open()) == 1
    survivor = run.open()[0]
    assert survivor.id == first.id  # the older problem survives
    by_kind = {d.kind: d for d in out}
    merged = by_kind["merged"].problem
    assert merged.id == second.id and merged.status == "resolved"
    assert merged.resolution == "merged" and merged.merged_into == first.id
    assert merged.detection_ids == ()  # its detections moved to the survivor
    assert "bridged by error_rate_above_5pct on orders" in by_kind["merged"].reason
    assert set(survivor.affected) == {"payments", "inventory", "orders"}
    assert len(survivor.detection_ids) == 3
    roles = [link.role for d in out for link in d.links if d.problem.id == first.id]
    assert roles == ["merged", "symptom"]  # orders depends on both failing roots


def test_a_detection_bridging_an_older_incident_and_a_fresh_one_joins_the_fresh_one():
    """Problems that began minutes apart are separate incidents: a detection relating to
    both joins the one that began last, nothing is merged."""
    run = Run()
    run.feed([det("error_rate_above_5pct", "payments", T0)])
    run.feed([det("latency_high", "payments", T0 + 4 * MIN, category="performance")])
    run.feed([det("db_connection_errors", "inventory", T0 + 8 * MIN,
                  category="connectivity", signal="logs")])
    older, fresh = sorted(run.open(), key=lambda p: p.opened_at)
    out = run.feed([det("error_rate_above_5pct", "orders", T0 + 8 * MIN + 20 * SEC)])
    assert "merged" not in {d.kind for d in out} and len(run.open()) == 2
    assert "orders" in run.problem(fresh.id).affected
    assert "orders" not in run.problem(older.id).affected


def test_symptoms_of_a_failing_root_are_folded_in():
    run = Run()
    run.feed([det("heartbeat_missing", "postgres", T0, severity="critical",
                  host="pg-primary-1")])
    out = run.feed([det("response_time_above_1000ms", "gateway", T0 + 40 * SEC,
                        category="performance", observed=2500, threshold=1000)])
    assert len(run.open()) == 1
    assert "inhibited: gateway depends on postgres" in out[-1].reason
    assert out[-1].links[0].role == "symptom"
    assert run.open()[0].root_causes[0].service == "postgres"


def test_symptom_problem_opened_first_is_folded_into_the_root_cause():
    run = Run()
    run.feed([det("error_rate_above_5pct", "api", T0)])  # api is far from postgres
    out = run.feed([det("heartbeat_missing", "postgres", T0 + 20 * SEC,
                        severity="critical", host="pg-primary-1")])
    assert len(run.open()) == 1
    p = run.open()[0]
    assert p.root_causes[0].service == "postgres" and set(p.affected) == {"api", "postgres"}
    merged = [d for d in out if d.kind == "merged"]
    assert len(merged) == 1 and "inhibited" in merged[0].reason
    assert not merged[0].notify  # never alerted on its own


def test_local_fault_on_a_symptom_service_opens_its_own_problem():
    run = Run()
    run.feed([det("heartbeat_missing", "postgres", T0, host="pg-primary-1"),
              det("db_connection_errors", "orders", T0 + 10 * SEC, category="connectivity",
                  signal="logs", labels={"peer.service": "postgres"})])
    assert len(run.open()) == 1
    # orders' memory began growing two minutes after postgres failed: not its cause
    run.feed([det("memory_growth", "orders", T0 + 3 * MIN, category="resource",
                  severity="medium"),
              det("memory_growth", "auth", T0 + 3 * MIN + 10 * SEC, category="resource",
                  severity="medium")])
    problems = run.open()
    assert len(problems) == 3
    assert [p.root_causes[0].service for p in problems] == ["postgres", "orders", "auth"]


def test_replayed_detection_is_taken_in_once():
    run = Run()
    d = det("error_rate_above_5pct", "orders", T0)
    run.feed([d])
    out = run.feed([d], now=T0 + SEC)
    assert out == [] and run.open()[0].detection_ids == (d.id,)


def test_problem_ids_are_stable_for_the_same_input():
    ids = []
    for _ in range(2):
        run = Run()
        run.feed([det("error_rate_above_5pct", "orders", T0)])
        ids.append(run.open()[0].id)
    assert ids[0] == ids[1] and ids[0].startswith("p-")


def test_topology_argument_overrides_static_dependencies():
    run = Run()
    run.feed([det("error_rate_above_5pct", "x", T0)], topology={"x": ["y"]})
    out = run.feed([det("error_rate_above_5pct", "y", T0 + SEC)], topology={"x": ["y"]})
    assert len(run.open()) == 1 and "adjacent: x calls y" in out[0].reason


def test_callers_failing_alike_on_a_shared_dependency_join_before_it_is_detected():
    # a database outage seen first from its callers: inventory and agent-worker are not
    # adjacent, but both call postgres and both report connection errors
    run = Run()
    run.feed([det("database-connection-errors", "inventory", T0, category="connectivity",
                  signal="logs")])
    out = run.feed([det("database-connection-errors", "agent-worker", T0 + 20 * SEC,
                        category="connectivity", signal="logs")])
    assert len(run.open()) == 1
    assert "agent-worker and inventory both call postgres" in out[0].reason
    # a different kind of trouble on a service sharing a dependency stays apart
    run.feed([det("cpu_above_80pct", "auth", T0 + 30 * SEC, category="resource")])
    assert len(run.open()) == 2


def test_members_that_recovered_long_ago_relate_nothing():
    """A problem kept open by one member: a detection next to a service of it that
    recovered 20 minutes ago is a new incident, not part of the old one."""
    run = Run(resolve_hold_ms=30 * MIN)
    api = det("error_rate_above_5pct", "api", T0, labels={"deployment.id": "d-1"})
    run.feed([api, det("queue_stuck", "agent-coordinator", T0 + SEC, category="coordination",
                       labels={"deployment.id": "d-1"})])  # one problem: shared label
    assert len(run.open()) == 1
    run.feed([cleared(api, T0 + 5 * MIN)])
    later = run.feed([det("error_rate_above_5pct", "auth", T0 + 25 * MIN)])  # api calls it
    assert [d.problem.affected for d in later if d.kind == "opened"] == [("auth",)]
    # while api still fired, the same detection joined through the call graph
    run = Run()
    run.feed([api])
    out = run.feed([det("error_rate_above_5pct", "auth", T0 + 2 * MIN)])
    assert "adjacent: api calls auth" in out[-1].reason


def _background(run, minutes):
    """auth's CPU out of band for ``minutes``, re-confirmed every 5 min (keep-alives)."""
    cpu = det("model:robust-seasonal", "auth", T0, category="resource", host="auth-1",
              labels={"metric": "k8s.pod.cpu.utilization"})
    run.feed([cpu])
    for k in range(1, minutes // 5 + 1):
        run.feed([again(cpu, T0 + k * 5 * MIN)])
    return run.open()[0].id


def test_a_long_running_background_problem_does_not_absorb_a_fresh_onset():
    run = Run()
    background = _background(run, 60)
    # an hour later api (a caller of auth) slows down: a fresh onset, its own problem
    out = run.feed([det("latency_high", "api", T0 + 61 * MIN, category="performance")])
    assert len(run.open()) == 2 and out[-1].kind == "opened"
    fresh = next(p for p in run.open() if p.id != background)
    assert fresh.affected == ("api",) and fresh.members[0].joined == "opened the problem"
    # auth failing a minute after its caller slowed down: linked to that fresh change,
    # not to auth's background trouble
    out = run.feed([det("error_rate_above_5pct", "auth", T0 + 62 * MIN)])
    assert len(run.open()) == 2 and out[-1].problem.id == fresh.id
    assert "adjacent: api calls auth" in out[-1].problem.members[-1].joined


def test_a_change_joins_the_problem_that_changed_with_it_and_says_why():
    run = Run()
    background = _background(run, 60)
    # auth fails 3 min after its CPU was last seen out of band: a fresh onset of its own
    run.feed([det("error_rate_above_5pct", "auth", T0 + 63 * MIN)])
    out = run.feed([det("latency_high", "api", T0 + 64 * MIN, category="performance")])
    fresh = out[-1].problem
    assert fresh.id != background and set(fresh.affected) == {"api", "auth"}
    joined = {m.service: m.joined for m in fresh.members}
    assert joined["api"].startswith("inhibited: api depends on auth")
    # more trouble on auth: the fresh change on auth is a closer relation than the
    # background's continuing trouble on the same host, and no bridge between the two
    run.feed([det("memory_above_85pct", "auth", T0 + 65 * MIN, category="resource",
                  host="auth-1")])
    fresh = run.problem(fresh.id)
    assert fresh.members[-1].joined == "same service (auth)"
    assert run.problem(background).status == "open" and len(run.open()) == 2
    # with nothing fresh around, the same kind of trouble continues the background
    run = Run()
    background = _background(run, 60)
    run.feed([det("memory_above_85pct", "auth", T0 + 61 * MIN, category="resource",
                  host="auth-1")])
    p = run.problem(background)
    assert "resource trouble continuing since" in p.members[-1].joined


def test_a_service_own_ongoing_resource_trouble_takes_in_its_symptoms():
    """Memory above its limit, then the service slows down (garbage collection): one
    problem; a slowdown an hour into a resource trouble that has not changed since is a
    fresh onset (the trouble is background, not this slowdown's cause)."""
    run = Run()
    background = _background(run, 60)
    run.feed([det("memory_above_85pct", "auth", T0 + 52 * MIN, category="resource",
                  host="auth-1")])
    run.feed([again(det("memory_above_85pct", "auth", T0 + 52 * MIN, category="resource",
                        host="auth-1"), T0 + 60 * MIN)])
    run.feed([det("latency_high", "auth", T0 + 60 * MIN + 30 * SEC, category="performance")])
    assert [p.id for p in run.open()] == [background]
    assert "resource trouble continuing since" in run.problem(background).members[-1].joined

    run = Run()
    background = _background(run, 60)
    run.feed([det("latency_high", "auth", T0 + 60 * MIN + 30 * SEC, category="performance")])
    assert len(run.open()) == 2

    # a growth alarm (a trend rule) is still worsening: an hour on, it explains a slowdown
    run = Run()
    growth = det("memory-growth", "auth", T0, category="resource", host="auth-1",
                 evidence={"kind": "trend"})
    run.feed([growth])
    for k in range(1, 13):
        run.feed([again(growth, T0 + k * 5 * MIN)])
    [leak] = run.open()
    run.feed([det("latency_high", "auth", T0 + 60 * MIN + 30 * SEC, category="performance")])
    assert [p.id for p in run.open()] == [leak.id]
    # its last keep-alive came before the slowdown began: still current (confirmed
    # within alive_ms), so the slowdown joins it whatever the keep-alive's phase
    run = Run()
    run.feed([growth])
    for k in range(1, 13):
        run.feed([again(growth, T0 + k * 5 * MIN)])
    [leak] = run.open()
    run.feed([det("latency_high", "auth", T0 + 63 * MIN, category="performance")])
    assert [p.id for p in run.open()] == [leak.id]
    assert "resource trouble continuing since" in run.problem(leak.id).members[-1].joined


def test_a_member_its_detector_stopped_confirming_relates_nothing():
    run = Run()
    run.feed([det("latency_high", "orders", T0, category="performance")])  # never again
    run.feed([det("latency_high", "api", T0 + 7 * MIN, category="performance")])
    assert len(run.open()) == 2  # orders' alarm is 7 min old, unconfirmed: not current


def test_a_change_point_is_when_the_trouble_began_not_when_it_was_confirmed():
    from dataclasses import replace

    from pipeline.correlate.grouping import change_point

    model = det("model:robust-seasonal", "orders", T0 + 4 * MIN, category="performance")
    assert change_point(replace(model, window_start=T0)) == T0  # first point out of band
    rule = replace(det("elevated-error-rate", "api", T0 + 15 * MIN), window_start=T0,
                   evidence={"window": "10m", "for_ms": 5 * MIN, "step_ms": MIN})
    assert change_point(rule) == T0 + 9 * MIN  # held for `for`, not at the previous step


def test_an_earlier_symptom_problem_is_not_folded_into_a_failure_that_began_after_it():
    run = Run()
    run.feed([det("error_rate_above_5pct", "api", T0)])  # api alone, first
    run.feed([det("heartbeat_missing", "postgres", T0 + 4 * MIN, severity="critical",
                  host="pg-primary-1")])  # postgres fails 4 minutes later
    assert len(run.open()) == 2


def test_two_problems_opened_together_blaming_the_same_root_are_one():
    from pipeline.correlate.inhibit import same_root

    run = Run()
    run.feed([det("heartbeat_missing", "postgres", T0, host="pg-primary-1")])
    first = run.open()[0]
    # a second problem on the same root, as if its detections came in another batch
    # before any could relate (built directly: the correlator would have joined them)
    second = replace(first, id="p-other", opened_at=T0 + 30 * SEC)
    assert same_root([first, second], MIN)[:2] == (second, first)
    assert same_root([first, replace(second, opened_at=T0 + 3 * MIN)], MIN) is None


def test_a_caller_and_its_failing_calls_join_in_either_order():
    """orders' own errors and its failing calls to inventory (an edge observation) are one
    incident whichever of the two the correlator takes in first (detections of the same
    minute arrive in one batch, ordered by id)."""
    own = det("database-connection-errors", "orders", T0, category="connectivity")
    edge = det("service-graph", "inventory", T0, category="availability", signal="traces",
               labels={"caller": "orders", "callee": "inventory",
                       "series": "edge.errors.ratio"})
    for first, second in ((own, edge), (edge, own)):
        run = Run()
        run.feed([first])
        out = run.feed([second])
        assert len(run.open()) == 1, [p.affected for p in run.open()]
        assert {"orders", "inventory"} <= set(run.open()[0].affected)
        assert "orders" in out[-1].reason


def test_a_detection_arriving_after_its_problem_resolved_joins_it_without_reopening():
    """An edge observation of the outage's minute that reaches the correlator after event
    time moved on (and the outage's problem resolved) belongs to that problem: it joins
    it, resolved, and opens nothing."""
    run = Run()
    first = det("error_rate_above_5pct", "api", T0)
    run.feed([first])
    run.feed([cleared(first, T0 + 2 * MIN)])
    run.tick(T0 + 30 * MIN)
    (outage,) = [p for p in run.state.problems.values()]
    assert outage.status == "resolved"
    late = det("service-graph", "api", T0 + MIN, labels={"caller": "gateway",
                                                         "series": "edge.errors"})
    out = run.feed([late], now=T0 + 30 * MIN)
    assert run.open() == []
    p = run.problem(outage.id)
    assert p.status == "resolved" and late.id in p.detection_ids
    assert any("arrived late" in m.joined and m.state == "resolved" for m in p.members)
    assert "joined after the problem resolved" in out[-1].reason
    # a detection of a time the problem did not cover still opens its own
    run.feed([det("error_rate_above_5pct", "payments", T0 + 40 * MIN)])
    assert len(run.open()) == 1


def test_a_series_firing_again_after_going_quiet_is_a_fresh_onset():
    """auth's memory alarm joined its CPU background as the same trouble continuing,
    resolved, and fires again 25 min later (longer than alive_ms): a fresh onset, not the
    background's trouble going on, so it opens its own problem and the slowdown that
    follows joins that fresh change - the background takes in neither."""
    run = Run()
    background = _background(run, 60)
    memory = det("memory_above_85pct", "auth", T0 + 10 * MIN, category="resource",
                 host="auth-1")
    run.feed([memory])
    assert "resource trouble continuing since" in run.problem(background).members[-1].joined
    run.feed([cleared(memory, T0 + 12 * MIN)])
    out = run.feed([again(memory, T0 + 37 * MIN)])
    assert out[-1].kind == "opened" and len(run.open()) == 2
    fresh = out[-1].problem
    assert fresh.members[0].onset > T0 + 30 * MIN  # when it began again, not at 10 min
    assert run.problem(background).member(fresh.members[0].key).state == "resolved"
    run.feed([det("latency_high", "auth", T0 + 38 * MIN, category="performance")])
    assert len(run.open()) == 2
    assert [m.detector for m in run.problem(fresh.id).members] == [
        "memory_above_85pct", "latency_high"]
    assert "latency_high" not in {m.detector for m in run.problem(background).members}
    # also when another series of the same trouble still fires: errors on auth's two
    # routes, /b quiet for half an hour while /a goes on; /b failing again is its own
    run = Run()
    a, b = (det("error_rate_above_5pct", "auth", T0, labels={"route": r}) for r in "ab")
    run.feed([a, b])
    run.feed([cleared(b, T0 + 5 * MIN)])
    for k in range(1, 9):
        run.feed([again(a, T0 + k * 5 * MIN)])
    [old] = run.open()
    out = run.feed([again(b, T0 + 41 * MIN)])
    assert out[-1].kind == "opened" and len(run.open()) == 2
    assert run.problem(old.id).member(series_key(b)).state == "resolved"


def test_a_symptom_of_a_root_still_failing_firing_again_is_that_trouble_continuing():
    """postgres is down; api (calling it through orders) fails with it, seen from its
    caller and by its error-rate rule. The edge alarm clears while the outage goes on and
    fires again 9 min later: postgres still fails, so it is still postgres' trouble (one
    problem, as the live test's database outage), whichever detector keeps api's errors
    current."""
    run = Run()
    down = det("connection_refused", "postgres", T0)
    edge = det("edge_errors", "api", T0 + MIN, labels={"caller": "gateway"})
    rate = det("high_error_rate", "api", T0 + 2 * MIN)
    run.feed([down])
    run.feed([edge])
    run.feed([rate])
    run.feed([cleared(edge, T0 + 3 * MIN)])
    run.feed([again(down, T0 + 5 * MIN)])
    run.feed([again(rate, T0 + 7 * MIN)])
    out = run.feed([again(edge, T0 + 10 * MIN), again(down, T0 + 10 * MIN)])
    [p] = run.open()
    assert p.root_causes[0].service == "postgres" and out[0].problem.id == p.id
    assert p.member(series_key(edge)).state == "firing"
    assert "availability trouble continuing since" in p.member(series_key(edge)).joined
    # postgres recovered: the same re-fire is a fresh onset of api's (its own problem)
    run = Run()
    run.feed([down])
    run.feed([edge])
    run.feed([rate])
    run.feed([cleared(edge, T0 + 3 * MIN), cleared(down, T0 + 4 * MIN)])
    run.feed([again(rate, T0 + 7 * MIN)])
    out = run.feed([again(edge, T0 + 10 * MIN)])
    assert out[-1].kind == "opened" and len(run.open()) == 2


def test_a_symptom_continues_only_as_its_own_detector_measures_it():
    """auth's error rate has been out of bounds for an hour: errors on auth seen by
    another detector (its traces) are a new signal going wrong, a problem of its own;
    the same detector on another of auth's routes is the same trouble continuing."""
    def errors_for_an_hour(run: Run) -> str:
        errors = det("error_rate_above_5pct", "auth", T0)
        run.feed([errors])
        for k in range(1, 13):
            run.feed([again(errors, T0 + k * 5 * MIN)])
        [p] = run.open()
        return p.id

    run = Run()
    background = errors_for_an_hour(run)
    out = run.feed([det("trace_errors", "auth", T0 + 61 * MIN, signal="traces")])
    assert out[-1].kind == "opened" and len(run.open()) == 2
    assert [m.detector for m in run.problem(background).members] == ["error_rate_above_5pct"]

    run = Run()
    background = errors_for_an_hour(run)
    run.feed([det("error_rate_above_5pct", "auth", T0 + 61 * MIN, labels={"route": "/login"})])
    [p] = run.open()
    assert p.id == background and "availability trouble continuing since" in p.members[-1].joined


def test_another_detectors_symptom_on_a_young_failing_root_is_its_trouble():
    """A bad deploy on auth: its error rate fires, and 12 min later its traces' error rule
    (another detector, past the relatedness window's half) fires on auth too. The root's
    failure is young (within two relatedness windows): the same incident unfolding, one
    problem; an hour of background errors is not (the test above)."""
    run = Run()
    errors = det("error_rate_above_5pct", "auth", T0)
    run.feed([errors])
    for k in range(1, 3):
        run.feed([again(errors, T0 + k * 5 * MIN)])
    out = run.feed([det("trace_errors", "auth", T0 + 12 * MIN, signal="traces")])
    [p] = run.open()
    assert out[-1].problem.id == p.id
    assert "availability trouble continuing since" in p.members[-1].joined


def test_another_symptom_on_a_young_failing_root_is_its_trouble():
    """auth slows down; 12 min later, its requests time out: its error rate fires (another
    symptom, another detector). The root's failure is young and still going on: the same
    incident unfolding on the root itself, whatever symptom shows it next."""
    run = Run()
    slow = det("latency_high", "auth", T0, category="performance", observed=1500,
               threshold=1000)
    run.feed([slow])
    for k in range(1, 3):
        run.feed([again(slow, T0 + k * 5 * MIN)])
    out = run.feed([det("error_rate_above_5pct", "auth", T0 + 12 * MIN)])
    [p] = run.open()
    assert out[-1].problem.id == p.id
    assert "performance trouble continuing since" in p.members[-1].joined


def test_a_symptom_that_began_after_its_dependency_recovered_is_not_put_down_to_it():
    """The same slow operations beginning at T0+14 min, after postgres came back at
    T0+12 min (beyond a window's detection delay), are not the outage's symptom."""
    run = Run()
    down = det("db_down", "postgres", T0)
    errors = det("error_rate_above_5pct", "orders", T0 + MIN)
    run.feed([down, errors])
    for k in range(1, 3):
        run.feed([again(down, T0 + k * 5 * MIN), again(errors, T0 + k * 5 * MIN + MIN)])
    run.feed([cleared(down, T0 + 12 * MIN), again(errors, T0 + 13 * MIN)])
    slow = replace(det("slow_operation", "agent-worker", T0 + 18 * MIN,
                       category="performance", observed=1100, threshold=1000,
                       evidence={"window": "5m", "for_ms": 3 * MIN, "step_ms": MIN}),
                   window_start=T0 + 13 * MIN)
    run.feed([slow])
    assert len(run.open()) == 2


def test_a_flap_within_alive_ms_goes_on_with_the_same_onset():
    """A member that resolved and fires again within alive_ms of when it was last seen
    firing is the same trouble: its onset stays, so its problem does not count as
    changing again."""
    run = Run()
    memory = det("memory_above_85pct", "auth", T0, category="resource", host="auth-1")
    run.feed([memory])
    [p] = run.open()
    onset = p.members[0].onset
    run.feed([cleared(memory, T0 + 2 * MIN)])
    run.feed([again(memory, T0 + 4 * MIN)])
    [p] = run.open()
    assert p.members[0].state == "firing" and p.members[0].onset == onset


def test_a_model_series_firing_again_after_its_alarm_resolved_is_a_fresh_onset():
    """A model's alarm resolves only once its series is confirmed back in band: the same
    series firing again from a later change point, even within alive_ms, is a new
    excursion with its own onset (a rule's quick re-fire stays a flap, above)."""
    run = Run()
    cpu = det("model:seasonal-ensemble", "auth", T0, category="resource", host="auth-1",
              labels={"metric": "k8s.pod.cpu.utilization"})
    run.feed([cpu])
    [p] = run.open()
    onset = p.members[0].onset
    run.feed([cleared(cpu, T0 + 2 * MIN)])
    run.feed([again(cpu, T0 + 5 * MIN)])  # its change point (T0 + 4 min) after the resolve
    members = [m for q in run.state.problems.values() for m in q.members]
    assert all(m.onset == onset for m in members if m.state == "resolved")
    assert any(m.state == "firing" and m.onset == T0 + 4 * MIN for m in members)


def test_a_pre_existing_condition_opens_nothing_and_absorbs_nothing():
    """auth's memory has been above its limit since the detector first evaluated it (a
    condition present when watching began): it opens no problem, even kept alive, and
    the slowdown of auth that follows opens its own problem, named after auth's latency,
    not the old memory level. The same alarm going off after it cleared is a change."""
    run = Run()
    pre = {"pre_existing": True}
    memory = det("memory_above_85pct", "auth", T0, category="resource", host="auth-1",
                 evidence=pre)
    assert run.feed([memory]) == [] and run.open() == []
    run.feed([again(memory, T0 + 5 * MIN)])
    run.feed([det("latency_high", "auth", T0 + 7 * MIN, category="performance",
                  host="auth-1")])
    [p] = run.open()
    assert [m.detector for m in p.members] == ["latency_high"]
    assert p.root_causes[0].service == "auth"
    run.feed([cleared(memory, T0 + 9 * MIN)])
    assert [m.detector for m in run.open()[0].members] == ["latency_high"]
    fresh = replace(again(memory, T0 + 30 * MIN), evidence={})
    run.feed([fresh])
    assert any(m.detector == "memory_above_85pct" for q in run.open() for m in q.members)


def test_a_relation_says_its_kind_beside_its_strength_and_reason():
    """The correlator decides on the kind of a relation (a symptom folded in, trouble
    continuing), never on the words of its reason."""
    from pipeline.correlate.graph import Graph
    from pipeline.correlate.grouping import relation

    run = Run()
    s = run.corr.settings
    graph = Graph(s.static_dependencies, s.max_symptom_hops)
    run.feed([det("error_rate_above_5pct", "auth", T0)])
    [p] = run.open()
    r = relation(det("latency_high", "api", T0 + MIN, category="performance"), p, graph, s)
    assert (r.kind, r.strength) == ("inhibited", 2) and "api depends on auth" in r.why
    r = relation(det("memory_above_85pct", "auth", T0 + MIN, category="resource"), p, graph, s)
    assert (r.kind, r.strength, r.why) == ("same_place", 3, "same service (auth)")
    r = relation(det("queue_depth", "cache", T0 + MIN, category="saturation"), p, graph, s)
    assert (r.kind, r.strength) == ("adjacent", 1)
    assert relation(det("error_rate_above_5pct", "payments", T0 + MIN), p, graph, s) is None
    # long after auth's trouble began, while it is still confirmed: the same kind of
    # trouble on auth is that trouble continuing
    for k in range(1, 8):
        run.feed([again(det("error_rate_above_5pct", "auth", T0), T0 + k * 2 * MIN)])
    [p] = run.open()
    r = relation(det("error_rate_above_5pct", "auth", T0 + 14 * MIN,
                     labels={"route": "/login"}), p, graph, s)
    assert (r.kind, r.strength) == ("continuing", 2) and "continuing since" in r.why


def _errors(service: str, t: int, category: str = "availability"):
    """``elevated-error-rate`` as the rule fires it: confirmed at ``t`` after holding for
    5 min over a 10-min window, so its trouble began at ``t - 6 min``."""
    return replace(det("elevated-error-rate", service, t, category=category,
                       severity="low"), window_start=t - 10 * MIN,
                   evidence={"window": "10m", "for_ms": 5 * MIN, "step_ms": MIN})


def _recovered_leak(run: Run) -> str:
    """auth's memory leak from T0, every member resolved at T0 + 30 min: the problem
    holds until T0 + 35 min (resolve_hold), then resolves."""
    leak = det("memory-growth", "auth", T0, category="resource", host="auth-1",
               evidence={"kind": "trend"})
    run.feed([leak])
    for k in range(1, 6):
        run.feed([again(leak, T0 + k * 5 * MIN)])
    run.feed([cleared(leak, T0 + 30 * MIN)])
    [p] = run.open()
    assert p.root_causes[0].service == "auth" and p.clear_since == T0 + 30 * MIN
    return p.id


def test_a_caller_failing_as_its_dependency_recovers_reopens_the_dependency_problem():
    """auth's leak ends with its pods OOM-killed: its alarms clear, and api's error rate,
    rising from then on, is confirmed after the leak's problem resolved (its rule holds
    for 5 min). It is the leak's aftermath: it reopens that problem - the same episode,
    not a flap, its root cause still auth - instead of opening a problem of its own."""
    run = Run()
    leak = _recovered_leak(run)
    run.tick(T0 + 36 * MIN)
    assert run.problem(leak).status == "resolved"
    out = run.feed([_errors("api", T0 + 36 * MIN)])  # began at T0 + 30 min, as auth's ended
    assert [p.id for p in run.open()] == [leak] and out[-1].kind == "reopened"
    p = run.problem(leak)
    assert p.root_causes[0].service == "auth" and "api" in p.affected
    assert p.reopens == () and not p.flapping and p.reopened_at == (T0 + 36 * MIN,)
    assert p.recurred_at == ()  # no opening for the evaluator either
    assert p.members[-1].aftermath and p.links[-1].role == "symptom"
    assert p.members[-1].joined.startswith("aftermath: api depends on auth")
    # it resolves again with api's errors, still blaming auth alone: an aftermath says
    # nothing about where the trouble began
    run.feed([cleared(_errors("api", T0 + 36 * MIN), T0 + 40 * MIN)])
    run.tick(T0 + 46 * MIN)
    p = run.problem(leak)
    assert p.status == "resolved" and p.resolved_at == T0 + 40 * MIN
    assert [c.service for c in p.root_causes] == ["auth"] and len(run.state.problems) == 1
    # the aftermath does not carry the problem on: a caller failing from T0 + 40 min
    # (when api's errors ended, long after auth's trouble) is a problem of its own
    run.feed([_errors("gateway", T0 + 46 * MIN)])
    assert [p.affected for p in run.open()] == [("gateway",)]


def test_a_caller_failing_while_its_dependency_problem_holds_keeps_it_open():
    run = Run()
    leak = _recovered_leak(run)
    run.feed([_errors("gateway", T0 + 33 * MIN)])  # two calls above auth; the hold runs
    [p] = run.open()
    assert p.id == leak and p.clear_since is None and p.members[-1].aftermath
    assert p.members[-1].joined.startswith("aftermath: gateway depends on auth")
    run.tick(T0 + 40 * MIN)  # past the hold: gateway's errors still fire
    assert [p.id for p in run.open()] == [leak]
    assert [c.service for c in run.problem(leak).root_causes] == ["auth"]
    # another caller failing meanwhile relates to no change of the problem through the
    # aftermath: it began after auth's trouble ended, so it opens its own
    run.feed([det("latency_high", "api", T0 + 40 * MIN, category="performance")])
    assert len(run.open()) == 2


def test_what_is_not_a_dependency_problem_aftermath_opens_its_own():
    # began after auth's trouble ended (T0 + 30 min): a fresh onset
    run = Run()
    leak = _recovered_leak(run)
    run.feed([_errors("api", T0 + 38 * MIN)])  # began at T0 + 32 min
    assert [p.affected for p in run.open()] == [("api",)]
    assert run.problem(leak).status == "resolved"
    # a service that does not call auth
    run = Run()
    leak = _recovered_leak(run)
    run.feed([_errors("payments", T0 + 36 * MIN)])
    assert [p.affected for p in run.open()] == [("payments",)]
    # a fault of the caller's own (not a symptom)
    run = Run()
    leak = _recovered_leak(run)
    run.feed([_errors("api", T0 + 36 * MIN, category="resource")])
    assert [p.affected for p in run.open()] == [("api",)]
    # a problem that timed out (nothing recovered: it went silent) has no aftermath
    run = Run(resolve_timeout_ms=10 * MIN)
    run.feed([det("memory-growth", "auth", T0, category="resource")])
    run.tick(T0 + 11 * MIN)
    run.feed([_errors("api", T0 + 12 * MIN)])  # began at T0 + 6 min
    assert [p.affected for p in run.open()] == [("api",)]


def _model_alarm(service: str, t: int, metric: str, band: tuple[float, float, float], *,
                 observed: float = 0.2, category: str = "resource"):
    """The default model's alarm on ``metric`` of ``service`` at ``t``, fired against
    ``band`` (expected, low, high)."""
    expected, low, high = band
    return det("model:seasonal-ensemble", service, t, category=category, observed=observed,
               score=1.0, labels={"metric": metric},
               evidence={"expected": expected, "band_low": low, "band_high": high})


def _model_keepalive(alarm, t: int, value: float):
    """A model alarm's keep-alive at ``t`` seeing ``value`` against the band it fired on."""
    return replace(again(alarm, t), observed=value,
                   evidence={**alarm.evidence, "keepalive": True, "firing_since": alarm.time})


def test_a_model_alarm_whose_value_is_back_in_band_continues_no_trouble():
    """A model's memory alarm (a step at the fault before) whose latest keep-alive saw
    the value back inside the band it fired against is calm: the series has returned,
    its alarm not yet resolved. The next fault's slowdown on that service is a fresh
    onset, not that resource trouble continuing; while the value stays out of band it
    still is."""
    mem = _model_alarm("auth", T0, "k8s.pod.memory.usage", (12.7, 12.6, 12.8), observed=21.6)

    slow = det("model:trace-red", "auth", T0 + 8 * MIN, category="performance",
               score=1.0, labels={"operation": "Login", "series": "trace.duration.p95"})
    for value, joins in ((12.7, False), (21.0, True)):
        run = Run()
        run.feed([mem])
        run.feed([_model_keepalive(mem, T0 + 5 * MIN, value)])
        [first] = run.open()
        assert first.members[0].calm is (not joins)
        run.feed([slow])
        if joins:
            assert [p.id for p in run.open()] == [first.id]
            assert "resource trouble continuing since" in run.open()[0].members[-1].joined
        else:
            assert len(run.open()) == 2
            assert run.problem(first.id).member(series_key(slow)) is None


def test_a_model_alarm_out_of_band_again_after_it_was_calm_is_a_new_onset():
    """Back in band at one keep-alive, out of band again at the next (a new fault on the
    service raising the same series, before the model resolved the first alarm): the
    first episode ended when the value was seen back - its problem, calm since, resolved
    - so a keep-alive out of band fails anew from its own time: a new excursion of a
    learned series, which reopens nothing. One point out of band at a keep-alive tick is
    no confirmed alarm: it opens no problem of its own, but joins the new fault's (its
    slowdown) as a fresh member. A new firing (after a resolve) starts a new episode,
    not calm."""
    queue = _model_alarm("api", T0, "queue.depth", (5.0, 4.0, 6.0), observed=16.0)

    run = Run()
    run.feed([queue])
    [first] = run.open()
    run.feed([_model_keepalive(queue, T0 + 5 * MIN, 5.0)])
    run.feed([_model_keepalive(queue, T0 + 10 * MIN, 19.0)])  # the next fault raises it again
    assert run.open() == []
    old = run.problem(first.id)
    assert old.status == "resolved" and old.resolved_at == T0 + 5 * MIN
    slow = det("model:trace-red", "api", T0 + 11 * MIN, category="performance",
               score=1.0, labels={"operation": "GET /", "series": "trace.duration.p95"})
    run.feed([slow])
    run.feed([_model_keepalive(queue, T0 + 15 * MIN, 19.0)])
    [second] = run.open()
    assert second.id != first.id and run.problem(first.id).reopened_at == ()
    member = second.member(series_key(queue))
    assert member.onset == T0 + 15 * MIN and not member.calm
    run.feed([cleared(queue, T0 + 16 * MIN)])
    run.feed([again(queue, T0 + 20 * MIN)])
    fresh = [p.member(series_key(queue)) for p in run.open()]
    assert [m.calm for m in fresh if m is not None and m.state == "firing"] == [False]


def test_a_problem_whose_every_firing_member_is_calm_resolves_and_stays_resolved():
    """api's CPU model alarm is seen back in band at its first keep-alive, but the model
    holds the alarm for over an hour. Its problem is clear from then on: it resolves
    after resolve_hold (as of the calm keep-alive), and the alarm's later keep-alives -
    still in band - neither reopen it nor open a problem of their own, also past
    reopen_window: they are listed with the resolved problem. A fault on api an hour
    later opens its own problem."""
    cpu = _model_alarm("api", T0, "system.cpu.utilization", (0.3, 0.2, 0.4), observed=0.9)
    run = Run()
    run.feed([cpu])
    [p] = run.open()
    run.feed([_model_keepalive(cpu, T0 + 5 * MIN, 0.3)])
    assert run.open()[0].clear_since == T0 + 5 * MIN
    keepalives = [_model_keepalive(cpu, T0 + k * 5 * MIN, 0.3) for k in range(2, 15)]
    for alive in keepalives:  # until T0 + 70 min, all in band
        run.feed([alive])
        assert run.open() == [], alive.time
    closed = run.problem(p.id)
    assert closed.resolution == "detections_resolved" and closed.reopened_at == ()
    assert {d.id for d in keepalives} <= set(closed.detection_ids)
    assert [d.problem.resolved_at for d in run.decisions
            if d.problem.id == p.id and d.kind == "resolved"] == [T0 + 5 * MIN]
    run.feed([det("high-error-rate", "api", T0 + 72 * MIN)])
    [new] = run.open()
    assert new.id != p.id and new.members[0].detector == "high-error-rate"


def test_a_calm_member_holds_no_problem_open_once_the_others_resolved():
    """A problem with a calm model alarm and an error rule still failing stays open; once
    the rule resolves, every member left firing is calm: the problem is clear since then
    and resolves after resolve_hold, its calm member dated back to when it was seen back."""
    cpu = _model_alarm("api", T0, "system.cpu.utilization", (0.3, 0.2, 0.4), observed=0.9)
    errors = det("high-error-rate", "api", T0 + 30 * SEC)
    run = Run()
    run.feed([cpu, errors])
    run.feed([_model_keepalive(cpu, T0 + 5 * MIN, 0.3)])
    [p] = run.open()
    assert p.clear_since is None and len(p.members) == 2
    run.feed([cleared(errors, T0 + 8 * MIN)])
    assert run.open()[0].clear_since == T0 + 8 * MIN
    run.tick(T0 + 13 * MIN)
    closed = run.problem(p.id)
    assert closed.status == "resolved" and closed.resolved_at == T0 + 8 * MIN
    assert closed.member(series_key(cpu)).resolved_ms == T0 + 5 * MIN


def test_a_calm_rule_alarm_failing_again_recurs_like_a_rule():
    """A rule on a fixed threshold whose keep-alive said calm: its problem resolves as
    clear; a later keep-alive no longer calm (its condition holds again) is its root
    cause failing again, as a rule re-firing after its resolve: it reopens the problem
    (a recurrence, with a new episode), while calm keep-alives in between reopen
    nothing."""
    errors = det("high-error-rate", "api", T0, category="availability", observed=0.2,
                 threshold=0.05)

    def keepalive(t: int, calm: bool):
        return replace(again(errors, t), evidence={"keepalive": True, "calm": calm,
                                                   "latest_step": 0.0 if calm else 0.2})

    run = Run()
    run.feed([errors])
    [p] = run.open()
    run.feed([keepalive(T0 + 5 * MIN, True)])
    run.feed([keepalive(T0 + 10 * MIN, True)])
    assert run.open() == [] and run.problem(p.id).resolved_at == T0 + 5 * MIN
    run.feed([keepalive(T0 + 15 * MIN, False)])
    [again_] = run.open()
    assert again_.id == p.id and again_.recurred_at == (T0 + 15 * MIN,)
    member = again_.member(series_key(errors))
    assert member.state == "firing" and not member.calm


def test_a_rule_alarm_whose_last_step_is_clear_no_longer_fails_its_callers():
    """auth's error-rate rule (a 10-minute window) still fires after its errors ended:
    its keep-alive says the window's last step is back to clear (calm). api's error model
    firing anew minutes later is then no symptom of auth's trouble going on but a problem
    of its own; while auth's keep-alive says it still fails (not calm), it is auth's."""
    errors = det("high-error-rate", "auth", T0, category="availability", observed=0.2,
                 threshold=0.05)
    elevated = det("elevated-error-rate", "api", T0 + MIN, category="availability",
                   observed=0.03, threshold=0.01)
    model = _model_alarm("api", T0 + MIN, "http.server.error.ratio", (0.01, 0.0, 0.02),
                         category="availability")
    for calm, joins in ((True, False), (False, True)):
        run = Run()
        run.feed([errors, elevated, model])
        run.feed([cleared(model, T0 + 2 * MIN)])
        alive = replace(again(errors, T0 + 5 * MIN),
                        evidence={"keepalive": True, "latest_step": 0.0 if calm else 0.2,
                                  "calm": calm})
        run.feed([alive, replace(again(elevated, T0 + 5 * MIN),
                                 evidence={"keepalive": True})])
        [first] = run.open()
        assert first.member(series_key(errors)).calm is calm
        run.feed([replace(again(model, T0 + 9 * MIN), window_start=T0 + 9 * MIN)])
        assert (len(run.open()) == 1) is joins, [p.affected for p in run.open()]


def test_a_symptom_naming_another_failing_peer_is_no_aftermath():
    """A caller's alarm that names its failing peer (``peer.service``) blames that peer:
    it is the aftermath of a recovered root only if the peer is the root or calls it;
    otherwise it is a fault of its own (here api's calls to orders going slow as auth's
    leak ended)."""
    for peer, aftermath in (("auth", True), ("orders", False)):
        run = Run()
        leak = _recovered_leak(run)
        slow = det("model:seasonal-ensemble", "api", T0 + 31 * MIN, category="performance",
                   score=1.0, labels={"metric": "rpc.edge.duration.p50",
                                      "peer.service": peer})
        run.feed([slow])
        p = run.problem(leak)
        assert (p.member(series_key(slow)) is not None) is aftermath
        if not aftermath:
            assert [q.affected[0] for q in run.open() if q.id != leak] == ["api"]


def test_an_aftermath_begins_as_the_root_own_trouble_ends():
    """The aftermath window runs from the root's own members' end, not from a caller's
    symptom of the problem that cleared later: a caller failing after the root had
    recovered is a fault of its own."""
    run = Run()
    root = det("error_rate_above_5pct", "auth", T0)
    symptom = det("latency_high", "api", T0 + MIN, category="performance")
    run.feed([root])
    run.feed([symptom])
    [p] = run.open()
    assert p.root_causes[0].service == "auth" and p.member(series_key(symptom))
    run.feed([cleared(root, T0 + 20 * MIN)])
    run.feed([cleared(symptom, T0 + 26 * MIN)])  # api's symptom clears later
    gateway = _errors("gateway", T0 + 30 * MIN)  # began at T0 + 24 min, after auth's end
    run.feed([gateway])
    assert run.problem(p.id).member(series_key(gateway)) is None
    assert [q.affected for q in run.open() if q.id != p.id] == [("gateway",)]
    # one that began as auth's own trouble ended is its aftermath
    run = Run()
    run.feed([root])
    run.feed([symptom])
    run.feed([cleared(root, T0 + 20 * MIN)])
    run.feed([cleared(symptom, T0 + 26 * MIN)])
    run.feed([_errors("gateway", T0 + 27 * MIN)])  # began at T0 + 21 min
    assert run.problem(p.id).member(series_key(gateway)).aftermath


def test_a_learned_series_of_the_problem_going_out_again_is_no_aftermath():
    """A problem's own member series (a service-graph edge, on a band it learned) that
    resolved with the root's recovery and goes out of band again from then on is a new
    excursion, not the end of the old trouble."""
    band = {"expected": 12.0, "band_low": 0.0, "band_high": 39.0, "kind": "edge"}
    edge = det("service-graph", "api", T0 + 10 * MIN, category="performance",
               evidence=band, labels={"caller": "gateway", "callee": "api",
                                      "series": "edge.latency.slower"})
    for refire, aftermath in ((edge, False), (replace(
            edge, labels={**edge.labels, "caller": "web"}), True)):
        run = Run()
        errors = det("error_rate_above_5pct", "auth", T0 + 9 * MIN)
        run.feed([errors])
        run.feed([edge])
        [p] = run.open()
        assert p.root_causes[0].service == "auth" and p.member(series_key(edge))
        run.feed([cleared(edge, T0 + 30 * MIN), cleared(errors, T0 + 30 * MIN)])
        run.feed([replace(again(refire, T0 + 31 * MIN), window_start=T0 + 30 * MIN)])
        joined = run.problem(p.id).member(series_key(refire))
        assert (joined is not None and joined.aftermath) is aftermath


@pytest.mark.parametrize("root_failing", [True, False])
def test_a_learned_series_going_out_of_band_again_continues_only_a_failing_root(
        root_failing: bool) -> None:
    """As above, but the edge alarm is on a band its detector learned from the edge (the
    service graph's): it resolved once the edge was back in band, so firing again from a
    change point after that is a new excursion. Like any re-fire it continues the
    outage's trouble only as a symptom of the root still failing (the callers' errors of
    a database outage are the outage's); once the root is no longer failing it is a
    problem of its own, though a symptom of it on the same service still fires."""
    band = {"expected": 0.01, "band_low": 0.0, "band_high": 0.03, "kind": "edge"}
    run = Run()
    down = det("connection_refused", "postgres", T0)
    edge = det("edge_errors", "api", T0 + MIN, labels={"caller": "gateway"}, evidence=band)
    rate = det("high_error_rate", "api", T0 + 2 * MIN)
    run.feed([down])
    run.feed([edge])
    run.feed([rate])
    run.feed([cleared(edge, T0 + 3 * MIN)])
    run.feed([again(down, T0 + 5 * MIN) if root_failing else cleared(down, T0 + 5 * MIN)])
    run.feed([again(rate, T0 + 7 * MIN)])
    run.feed([again(edge, T0 + 10 * MIN)]
             + ([again(down, T0 + 10 * MIN)] if root_failing else []))
    first = min(run.state.problems.values(), key=lambda p: p.opened_at)
    others = [p.affected for p in run.state.problems.values() if p.id != first.id]
    if root_failing:
        assert first.member(series_key(edge)).state == "firing" and not others
    else:
        assert first.member(series_key(edge)).state == "resolved"
        assert others == [("api",)]
