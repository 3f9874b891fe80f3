"""Lifecycle: resolve (members, timeout, max duration), reopen, flapping, escalation, ack."""

from __future__ import annotations

from pipeline.correlate import ControlEvent
from tests.unit.correlate.support import HOUR, MIN, SEC, T0, Run, again, cleared, det, kinds


def test_resolves_when_every_member_resolved_and_held():
    run = Run(resolve_hold_ms=2 * MIN)
    a = det("error_rate_above_5pct", "orders", T0)
    b = det("db_connection_errors", "orders", T0 + SEC, category="connectivity")
    run.feed([a, b])
    run.feed([cleared(a, T0 + 3 * MIN)])
    assert run.open()[0].clear_since is None  # b still fires
    run.feed([cleared(b, T0 + 4 * MIN)])
    assert run.tick(T0 + 6 * MIN - 1) == []
    out = run.tick(T0 + 6 * MIN)
    assert kinds(out) == [("resolved", True)]
    p = out[0].problem
    assert p.status == "resolved" and p.resolution == "detections_resolved"
    assert p.resolved_at == T0 + 4 * MIN  # when the last member cleared
    assert "resolve_hold" in out[0].reason


def test_resolve_does_not_depend_on_tick_cadence():
    a = det("error_rate_above_5pct", "orders", T0)
    late = det("error_rate_above_5pct", "payments", T0 + 20 * MIN)
    one = Run()
    one.feed([a, cleared(a, T0 + MIN)])
    one.tick(T0 + 5 * MIN)
    one.feed([late])
    other = Run()
    other.feed([a, cleared(a, T0 + MIN)])
    other.feed([late])  # no tick in between: the resolve is settled first, in event time
    def outcome(run):
        return sorted((p.id, p.status, p.opened_at, p.resolved_at, p.resolution, p.affected)
                      for p in run.state.problems.values())
    assert outcome(one) == outcome(other)
    assert [p.status for p in other.state.problems.values()] == ["resolved", "open"]


def test_resolve_timeout_closes_a_silent_problem():
    run = Run(resolve_timeout_ms=30 * MIN)
    a = det("error_rate_above_5pct", "orders", T0)
    run.feed([a])
    run.feed([again(a, T0 + 20 * MIN)])  # a keep-alive pushes the timeout out
    assert run.tick(T0 + 50 * MIN - 1) == []
    out = run.tick(T0 + 50 * MIN)
    p = out[0].problem
    assert out[0].kind == "resolved" and p.resolution == "timeout"
    assert p.resolved_at == T0 + 50 * MIN and all(m.state == "resolved" for m in p.members)


def test_max_duration_caps_a_problem_and_a_new_one_opens():
    run = Run(max_duration_ms=HOUR, resolve_timeout_ms=HOUR)
    a = det("memory_growth", "auth", T0, category="resource")
    run.feed([a])
    first = run.open()[0].id
    for i in range(1, 6):
        run.feed([again(a, T0 + i * 10 * MIN)])
    out = run.feed([again(a, T0 + 70 * MIN)])
    closed = run.problem(first)
    assert closed.resolution == "max_duration" and closed.resolved_at == T0 + HOUR
    assert "max_duration (1h)" in [d for d in out if d.kind == "resolved"][0].reason
    assert len(run.open()) == 1 and run.open()[0].id != first  # not reopened


def test_recurrence_within_reopen_window_reopens_same_problem():
    run = Run(resolve_hold_ms=MIN, reopen_window_ms=30 * MIN)
    a = det("error_rate_above_5pct", "orders", T0)
    run.feed([a, cleared(a, T0 + MIN)])
    run.tick(T0 + 3 * MIN)
    pid = run.state.problems and next(iter(run.state.problems))
    assert run.problem(pid).status == "resolved"
    out = run.feed([again(a, T0 + 20 * MIN)])
    assert out[0].kind == "reopened" and out[0].problem.id == pid
    assert out[0].problem.status == "open" and out[0].problem.reopens == (T0 + 20 * MIN,)
    assert len(run.state.problems) == 1


def test_a_model_firing_on_another_metric_of_the_root_is_a_new_problem_not_a_reopen():
    """A model detector covers every metric of a service: its CPU alarm, resolved, does
    not make a later latency alarm of the same service a recurrence."""
    run = Run(resolve_hold_ms=MIN, reopen_window_ms=30 * MIN)
    cpu = det("model:robust-seasonal", "api", T0, category="resource",
              labels={"metric": "system.cpu.utilization"})
    run.feed([cpu, cleared(cpu, T0 + MIN)])
    run.tick(T0 + 3 * MIN)
    first = next(iter(run.state.problems))
    latency = det("model:robust-seasonal", "api", T0 + 20 * MIN, category="performance",
                  labels={"metric": "http.server.duration.p99"})
    out = run.feed([latency])
    assert out[0].kind == "opened" and out[0].problem.id != first
    assert run.problem(first).status == "resolved"


def test_a_model_firing_on_another_operation_of_the_root_is_a_new_problem():
    """The same goes for a trace model's alarm on another operation (its labels but the
    host name what it measures)."""
    run = Run(resolve_hold_ms=MIN, reopen_window_ms=30 * MIN)
    pay = det("model:trace-red", "api", T0, category="performance",
              labels={"operation": "Pay", "series": "trace.duration.p50"})
    run.feed([pay, cleared(pay, T0 + MIN)])
    run.tick(T0 + 3 * MIN)
    first = next(iter(run.state.problems))
    ship = det("model:trace-red", "api", T0 + 20 * MIN, category="performance",
               labels={"operation": "Ship", "series": "trace.duration.p50"})
    out = run.feed([ship])
    assert out[0].kind == "opened" and out[0].problem.id != first


def test_a_learned_baseline_firing_again_after_its_resolve_is_a_new_problem():
    """A detector that learns its series' baseline (an online model, or a band in its
    evidence, as the service graph's edges) resolved only once the series was back in
    band: the same series firing again from a change point after that is a new
    excursion (back-to-back faults on one service), not the old problem recurring. A
    rule on a fixed threshold firing again still reopens (see above)."""
    pay = det("model:trace-red", "api", T0, category="performance",
              labels={"operation": "Pay", "series": "trace.duration.p50"})
    band = {"expected": 12.0, "band_low": 0.0, "band_high": 39.0, "kind": "edge"}
    edge = det("service-graph", "api", T0, category="performance", evidence=band,
               labels={"caller": "gateway", "callee": "api", "series": "edge.latency.slower"})
    for first_fire in (pay, edge):
        run = Run(resolve_hold_ms=MIN, reopen_window_ms=30 * MIN)
        run.feed([first_fire, cleared(first_fire, T0 + MIN)])
        run.tick(T0 + 3 * MIN)
        first = next(iter(run.state.problems))
        out = run.feed([again(first_fire, T0 + 20 * MIN)])
        assert out[0].kind == "opened" and out[0].problem.id != first
        assert run.problem(first).status == "resolved" and run.problem(first).reopens == ()


def test_recurrence_after_reopen_window_is_a_new_problem():
    run = Run(resolve_hold_ms=MIN, reopen_window_ms=10 * MIN)
    a = det("error_rate_above_5pct", "orders", T0)
    run.feed([a, cleared(a, T0 + MIN)])
    run.tick(T0 + 3 * MIN)
    first = next(iter(run.state.problems))
    run.feed([again(a, T0 + 20 * MIN)])
    assert [p.id for p in run.open()] != [first] and len(run.open()) == 1


def test_resolve_hold_absorbs_a_quick_refire():
    run = Run(resolve_hold_ms=2 * MIN)
    a = det("error_rate_above_5pct", "orders", T0)
    run.feed([a, cleared(a, T0 + MIN)])
    out = run.feed([again(a, T0 + 2 * MIN)])
    assert [d.kind for d in out] == ["joined"]  # neither resolved nor reopened
    assert run.open()[0].clear_since is None


def test_flapping_problem_holds_its_resolve_longer():
    run = Run(resolve_hold_ms=MIN, flap_threshold=3, flap_window_ms=HOUR,
              flap_hold_ms=20 * MIN, group_wait_ms=0)
    a = det("error_rate_above_5pct", "orders", T0)
    t = T0
    run.feed([a])
    for _ in range(3):  # fire, clear, resolve after the hold, fire again → reopen
        run.feed([cleared(a, t + MIN)])
        run.tick(t + 3 * MIN)
        t += 5 * MIN
        run.feed([again(a, t)])
    p = run.open()[0]
    assert p.flapping and len(p.reopens) == 3
    assert "flapping" in run.decisions[-1].reason
    run.feed([cleared(a, t + MIN)])
    assert run.tick(t + 5 * MIN) == []  # a normal hold would have resolved it
    out = run.tick(t + 21 * MIN)
    assert out[0].kind == "resolved" and "flap hold (20m)" in out[0].reason


def test_severity_escalates_when_the_problem_spreads():
    run = Run(escalate_spread=(3,))
    run.feed([det("heartbeat_missing", "postgres", T0, severity="medium")])
    run.feed([det("error_rate_above_5pct", "orders", T0 + 10 * SEC, severity="medium")])
    assert run.open()[0].severity == "medium"
    out = run.feed([det("error_rate_above_5pct", "inventory", T0 + 20 * SEC,
                        severity="low")])
    assert out[0].kind == "escalated" and out[0].problem.severity == "high"
    assert "spread to 3 services (>= 3)" in out[0].reason


def test_severity_escalates_when_the_problem_lasts():
    run = Run(escalate_after_ms=(30 * MIN,), resolve_timeout_ms=2 * HOUR)
    run.feed([det("error_rate_above_5pct", "orders", T0, severity="medium")])
    run.tick(T0 + MIN)  # first alert
    assert run.tick(T0 + 30 * MIN - 1) == []
    out = run.tick(T0 + 30 * MIN)
    assert kinds(out) == [("escalated", True)]  # escalations do not wait for group_interval
    assert out[0].problem.severity == "high" and "open for 30m (>= 30m)" in out[0].reason


def test_highest_member_severity_wins():
    run = Run()
    run.feed([det("error_rate_above_1pct", "orders", T0, severity="medium"),
              det("error_rate_above_5pct", "orders", T0 + SEC, severity="critical")])
    assert run.open()[0].severity == "critical"


def test_ack_is_alerted_and_stops_repeats_and_duration_escalation():
    run = Run(repeat_interval_ms=HOUR, resolve_timeout_ms=5 * HOUR,
              escalate_after_ms=(2 * HOUR,))
    run.feed([det("error_rate_above_5pct", "orders", T0, severity="medium")])
    run.tick(T0 + MIN)
    pid = run.open()[0].id
    out = run.control(ControlEvent.ack(pid, "alice", "on it", T0 + 2 * MIN), T0 + 2 * MIN)
    assert kinds(out) == [("acknowledged", True)]
    p = out[0].problem
    assert p.status == "acknowledged" and p.acknowledged_by == "alice"
    assert p.ack_comment == "on it" and "acknowledged by alice: on it" in out[0].reason
    assert run.tick(T0 + 3 * HOUR) == []  # no repeat, no escalation by duration
    assert run.control(ControlEvent.ack(pid, "bob", "", T0 + 3 * HOUR), T0 + 3 * HOUR) == []


def test_ack_of_unknown_problem_or_other_scope_is_ignored():
    run = Run()
    run.feed([det("error_rate_above_5pct", "orders", T0)])
    pid = run.open()[0].id
    assert run.control(ControlEvent.ack("p-nope", "alice", "", T0), T0) == []
    before = run.state
    assert run.control(ControlEvent.ack(pid, "alice", "", T0, scope="prod"), T0) == []
    assert run.state is before


def test_reopen_clears_acknowledgement():
    run = Run(resolve_hold_ms=MIN)
    a = det("error_rate_above_5pct", "orders", T0)
    run.feed([a])
    pid = run.open()[0].id
    run.control(ControlEvent.ack(pid, "alice", "", T0 + SEC), T0 + SEC)
    run.feed([cleared(a, T0 + MIN)])
    run.tick(T0 + 3 * MIN)
    run.feed([again(a, T0 + 5 * MIN)])
    p = run.problem(pid)
    assert p.status == "open" and p.acknowledged_by == ""


def test_only_the_root_cause_recurring_reopens():
    run = Run(resolve_hold_ms=MIN)
    root = det("heartbeat_missing", "postgres", T0, host="pg-primary-1")
    symptom = det("error_rate_above_5pct", "orders", T0 + 10 * SEC)
    run.feed([root, symptom])
    pid = run.open()[0].id
    run.feed([cleared(root, T0 + 5 * MIN), cleared(symptom, T0 + 5 * MIN)])
    run.tick(T0 + 7 * MIN)
    run.feed([again(symptom, T0 + 10 * MIN)])  # orders acting up on its own
    assert [p.id for p in run.open()] != [pid] and run.problem(pid).status == "resolved"
    out = run.feed([again(root, T0 + 12 * MIN)])  # postgres again: a recurrence
    assert any(d.kind == "reopened" and d.problem.id == pid for d in out)
    assert [p.id for p in run.open()] == [pid]  # orders' new problem folded back into it
