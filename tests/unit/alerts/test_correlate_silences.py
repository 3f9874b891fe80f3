"""Silences and maintenance windows: matchers, one-off, recurring, expiry, resolves."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pipeline.alerts.silences import subject_of
from pipeline.correlate import (
    ControlEvent,
    Matcher,
    MatcherError,
    Recurrence,
    ScheduleError,
    Silence,
    SilenceError,
)
from tests.unit.correlate.support import HOUR, MIN, SEC, T0, Run, cleared, det, kinds


def utc(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def silence(*matchers: str, start: int = T0 - HOUR, end: int | None = T0 + HOUR,
            recurrence: Recurrence | None = None) -> Silence:
    return Silence.create(list(matchers), start, end, recurrence=recurrence,
                          comment="maintenance", created_by="alice", created_at=start)


def test_matchers_parse_and_match():
    subject = {"service": ("postgres", ("postgres", "orders")), "severity": ("high", ("high",))}
    assert Matcher.parse("service=postgres").matches(subject)
    assert Matcher.parse('service=~"post.*"').matches(subject)
    assert not Matcher.parse("service=~post").matches(subject)  # anchored
    assert Matcher.parse("severity!=low").matches(subject)
    assert not Matcher.parse("service!~post.*").matches(subject)
    assert Matcher.parse("env!=prod").matches(subject)  # a missing name is ""
    assert Matcher.parse("env=").matches(subject)
    for bad in ("service", "=x", "service=~(", "bad name=x"):
        with pytest.raises(MatcherError):
            Matcher.parse(bad)


def test_problem_subject_uses_root_cause_or_all_affected():
    run = Run()
    run.feed([det("heartbeat_missing", "postgres", T0, host="pg-primary-1"),
              det("error_rate_above_5pct", "orders", T0 + SEC, labels={"env": "prod"})])
    subject = subject_of(run.open()[0])
    assert Matcher.parse("service=postgres").matches(subject)  # the root cause
    assert not Matcher.parse("service=orders").matches(subject)
    assert Matcher.parse("service=~postgres|orders").matches(subject)  # all affected
    assert Matcher.parse("host=pg-primary-1").matches(subject)
    assert Matcher.parse("env=prod").matches(subject)  # every value of the label


def test_silence_validation_names_the_problem():
    with pytest.raises(SilenceError, match="at least one matcher"):
        Silence.create([], T0, T0 + 1)
    with pytest.raises(SilenceError, match="needs ends_at"):
        Silence.create(["service=x"], T0)
    with pytest.raises(SilenceError, match="must be after"):
        Silence.create(["service=x"], T0, T0)
    with pytest.raises(SilenceError, match="silence.starts_at"):
        Silence.from_wire({"id": "s-1", "matchers": ["a=b"], "starts_at": "soon",
                           "ends_at": 5})


def test_cron_and_rrule_windows():
    nightly = Recurrence.parse("30 2 * * *", duration_ms=HOUR)
    assert nightly.window_at(utc(2025, 11, 24, 3, 0)) == (utc(2025, 11, 24, 2, 30),
                                                          utc(2025, 11, 24, 3, 30))
    assert nightly.window_at(utc(2025, 11, 24, 3, 30)) is None
    weekend = Recurrence.parse("FREQ=WEEKLY;BYDAY=SA,SU;BYHOUR=22", duration_ms=4 * HOUR)
    assert weekend.window_at(utc(2025, 11, 30, 1, 0)) == (utc(2025, 11, 29, 22),
                                                         utc(2025, 11, 30, 2))  # over midnight
    assert weekend.window_at(utc(2025, 11, 24, 23, 0)) is None  # a Monday
    paris = Recurrence.parse("0 2 * * mon-fri", duration_ms=HOUR, timezone="Europe/Paris")
    assert paris.window_at(utc(2025, 11, 24, 1, 30)) is not None  # 02:30 in Paris
    assert paris.window_at(utc(2025, 11, 24, 2, 30)) is None
    monthly = Recurrence.parse("RRULE:FREQ=MONTHLY;BYMONTHDAY=1", duration_ms=HOUR)
    assert monthly.window_at(utc(2025, 12, 1, 0, 10)) is not None


@pytest.mark.parametrize("text, message", [
    ("0 2 * *", "expected 5 cron fields"),
    ("0 25 * * *", "outside 0-23"),
    ("0 2 * * funday", "not a number or a name"),
    ("FREQ=HOURLY", "FREQ must be DAILY"),
    ("FREQ=WEEKLY", "needs BYDAY"),
    ("FREQ=DAILY;COUNT=3", "unsupported COUNT"),
])
def test_bad_recurrences_say_why(text, message):
    with pytest.raises(ScheduleError, match=message):
        Recurrence.parse(text, duration_ms=HOUR)


def test_bad_timezone_and_duration():
    with pytest.raises(ScheduleError, match="unknown time zone"):
        Recurrence.parse("0 2 * * *", HOUR, timezone="Mars/Olympus")
    with pytest.raises(ScheduleError, match="duration_ms"):
        Recurrence.parse("0 2 * * *", 0)


def test_silenced_problem_is_suppressed_once_and_alerted_after_expiry():
    run = Run(group_wait_ms=30 * SEC)
    s = silence("service=payments")
    run.control(ControlEvent.create_silence(s, T0 - HOUR), T0 - HOUR)
    out = run.feed([det("error_rate_above_5pct", "payments", T0)])
    assert kinds(out) == [("opened", False)]
    assert f"not alerted: silenced by {s.id} (maintenance)" in out[0].reason
    assert run.tick(T0 + MIN) == []  # suppression is reported once
    assert kinds(run.feed([det("error_rate_above_5pct", "agent-coordinator", T0 + MIN)])) == \
        [("opened", False)]  # another service: not silenced (and waiting for group_wait)
    out = run.control(ControlEvent.expire_silence(s.id, "alice", T0 + 2 * MIN), T0 + 2 * MIN)
    assert sorted(kinds(out)) == [("opened", True), ("opened", True)]
    assert run.state.silences[s.id].state(T0 + 2 * MIN) == "expired"


def test_silence_suppressed_decision_when_it_starts_after_opening():
    run = Run(group_wait_ms=MIN)
    run.feed([det("error_rate_above_5pct", "payments", T0)])
    s = silence("service=payments", start=T0 + 10 * SEC)
    run.control(ControlEvent.create_silence(s, T0 + 5 * SEC), T0 + 5 * SEC)
    out = run.tick(T0 + MIN)
    assert kinds(out) == [("suppressed", False)] and s.id in out[0].reason


def test_resolve_of_alerted_problem_goes_out_despite_a_silence():
    run = Run(group_wait_ms=0, resolve_hold_ms=0)
    a = det("error_rate_above_5pct", "payments", T0)
    assert kinds(run.feed([a])) == [("opened", True)]
    s = silence("service=payments", start=T0 + SEC)
    run.control(ControlEvent.create_silence(s, T0 + SEC), T0 + SEC)
    out = run.feed([det("response_time_above_1000ms", "payments", T0 + 2 * SEC,
                        category="performance", severity="critical")])
    assert kinds(out) == [("escalated", False)]  # muted
    out = run.feed([cleared(a, T0 + MIN)])
    assert kinds(out) == [("joined", False)]
    out = run.feed([cleared(det("response_time_above_1000ms", "payments", T0 + 2 * SEC,
                                category="performance", severity="critical"), T0 + 2 * MIN)])
    assert kinds(out) == [("resolved", True)] and "despite: silenced by" in out[0].reason


def test_silenced_problem_never_alerted_resolves_quietly():
    run = Run(group_wait_ms=0, resolve_hold_ms=0)
    run.control(ControlEvent.create_silence(silence("category=availability"), T0), T0)
    a = det("error_rate_above_5pct", "payments", T0)
    run.feed([a])
    out = run.feed([cleared(a, T0 + MIN)])
    assert kinds(out) == [("resolved", False)]


def test_recurring_maintenance_window_mutes_only_inside_its_windows():
    nightly = Recurrence.parse("0 2 * * *", duration_ms=HOUR)
    s = silence("service=postgres", start=utc(2025, 11, 1), end=None, recurrence=nightly)
    assert Silence.from_wire(s.to_wire()) == s
    run = Run(group_wait_ms=0, resolve_timeout_ms=2 * HOUR)
    run.control(ControlEvent.create_silence(s, utc(2025, 11, 1)), utc(2025, 11, 1))
    inside = run.feed([det("heartbeat_missing", "postgres", utc(2025, 11, 24, 2, 10))])
    assert kinds(inside) == [("opened", False)] and s.id in inside[0].reason
    out = run.tick(utc(2025, 11, 24, 3, 0))  # the window closed: the problem goes out
    assert kinds(out) == [("opened", True)]
    assert s.state(utc(2025, 11, 24, 3, 0)) == "waiting"


def test_expired_silences_are_forgotten_after_retention():
    run = Run(silence_retention_ms=HOUR)
    s = silence("service=x", start=T0, end=T0 + MIN)
    run.control(ControlEvent.create_silence(s, T0), T0)
    run.tick(T0 + HOUR)
    assert s.id in run.state.silences
    run.tick(T0 + MIN + HOUR + 1)
    assert s.id not in run.state.silences
