"""Alert timing: group_wait, group_interval, repeat_interval, resolves, inhibit rules."""

from __future__ import annotations

from pipeline.correlate import InhibitRule, Matcher
from tests.unit.correlate.support import HOUR, MIN, SEC, T0, Run, again, cleared, det, kinds


def test_first_alert_waits_group_wait():
    run = Run(group_wait_ms=30 * SEC)
    out = run.feed([det("error_rate_above_5pct", "orders", T0)])
    assert kinds(out) == [("opened", False)]
    assert "first alert after group_wait, at 2025-11-24T16:00:30.000Z" in out[0].reason
    run.feed([det("error_rate_above_5pct", "api", T0 + 10 * SEC)])  # lands in the same alert
    assert run.tick(T0 + 29 * SEC) == []
    out = run.tick(T0 + 30 * SEC)
    assert kinds(out) == [("opened", True)]
    assert set(out[0].problem.affected) == {"orders", "api"}
    assert run.tick(T0 + 31 * SEC) == []


def test_late_batch_alerts_at_once_when_group_wait_is_over_in_event_time():
    run = Run(group_wait_ms=30 * SEC)
    out = run.feed([det("error_rate_above_5pct", "orders", T0)], now=T0 + MIN)
    assert kinds(out) == [("opened", True)]


def test_updates_wait_for_group_interval_and_non_material_joins_are_silent():
    run = Run(group_wait_ms=0, group_interval_ms=5 * MIN, resolve_timeout_ms=HOUR)
    a = det("error_rate_above_5pct", "orders", T0)
    assert kinds(run.feed([a])) == [("opened", True)]
    assert kinds(run.feed([again(a, T0 + MIN)])) == [("joined", False)]  # keep-alive
    out = run.feed([det("error_rate_above_5pct", "inventory", T0 + 2 * MIN, severity="low")])
    assert kinds(out) == [("updated", False)]
    assert "alerted after group_interval, at 2025-11-24T16:05:00.000Z" in out[0].reason
    assert run.tick(T0 + 5 * MIN - 1) == []
    out = run.tick(T0 + 5 * MIN)
    assert kinds(out) == [("updated", True)] and out[0].problem.version == 3


def test_open_problem_is_repeated_every_repeat_interval():
    run = Run(group_wait_ms=0, repeat_interval_ms=HOUR, resolve_timeout_ms=3 * HOUR,
              escalate_after_ms=(10 * HOUR,))
    run.feed([det("error_rate_above_5pct", "orders", T0)])
    assert run.tick(T0 + HOUR - 1) == []
    out = run.tick(T0 + HOUR)
    assert kinds(out) == [("repeated", True)] and "repeat_interval" in out[0].reason
    assert run.tick(T0 + HOUR + MIN) == []
    assert kinds(run.tick(T0 + 2 * HOUR)) == [("repeated", True)]


def test_resolve_of_an_alerted_problem_is_always_sent():
    run = Run(group_wait_ms=0, resolve_hold_ms=0)
    a = det("error_rate_above_5pct", "orders", T0)
    run.feed([a])
    out = run.feed([cleared(a, T0 + MIN)])
    assert kinds(out) == [("resolved", True)]
    assert "alerted before, so its resolve is always sent" in out[0].reason


def test_blip_resolved_within_group_wait_is_never_alerted():
    run = Run(group_wait_ms=MIN, resolve_hold_ms=0)
    a = det("error_rate_above_5pct", "orders", T0)
    run.feed([a])
    out = run.feed([cleared(a, T0 + 20 * SEC)])
    assert kinds(out) == [("resolved", False)]
    assert run.tick(T0 + 2 * MIN) == []
    assert not any(d.notify for d in run.decisions)


def test_reopened_problem_that_was_alerted_is_alerted_again():
    run = Run(group_wait_ms=0, resolve_hold_ms=0)
    a = det("error_rate_above_5pct", "orders", T0)
    run.feed([a])
    run.feed([cleared(a, T0 + MIN)])
    out = run.feed([again(a, T0 + 5 * MIN)])
    assert kinds(out) == [("reopened", True)] and out[0].problem.version == 3


def test_inhibit_rule_mutes_target_while_source_is_open():
    rule = InhibitRule(source=(Matcher.parse("severity=critical"),),
                       target=(Matcher.parse("category=resource"),), equal=("cluster",))
    run = Run(group_wait_ms=0, inhibit_rules=(rule,), resolve_hold_ms=0)
    src = det("heartbeat_missing", "payments", T0, severity="critical",
              labels={"cluster": "eu-1"})
    run.feed([src])
    out = run.feed([det("memory_above_85pct", "agent-coordinator", T0 + SEC,
                        category="resource", severity="medium", labels={"cluster": "eu-1"})])
    assert kinds(out) == [("opened", False)]
    assert "inhibited by " + run.open()[0].id in out[0].reason
    other = run.feed([det("memory_above_85pct", "cache", T0 + 2 * SEC, category="resource",
                          severity="medium", labels={"cluster": "us-1"})])
    assert kinds(other) == [("opened", True)]  # different cluster: not inhibited
    out = run.feed([cleared(src, T0 + MIN)])
    assert kinds(out) == [("resolved", True), ("opened", True)]  # the source resolved: the
    assert out[1].problem.affected == ("agent-coordinator",)  # target goes out
