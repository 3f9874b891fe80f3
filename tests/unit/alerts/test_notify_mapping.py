"""CloudEvent → Alertmanager alert JSON, the open-problem tracker, and the retry backoff."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from pipeline.alerts.alertmanager import (
    AlertFormatError,
    alertmanager_alert,
    console_base,
    parse_alert,
)
from pipeline.alerts.cloudevents import alert_envelope
from pipeline.alerts.delivery import OpenProblems, backoff_ms, collapse, retryable_status
from pipeline.errors import SettingsError
from pipeline.events.problem import Decision, Problem, RootCause
from pipeline.events.times import format_ms, parse_rfc3339_ms
from pipeline.settings import NotifySettings, load_settings

T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z
MIN = 60_000
CONSOLE = "http://console.example:6066"


def problem(**changes) -> Problem:
    base = Problem(
        id="p-59c7c10af9ee", version=3, scope="prod-eu", status="open", opened_at=T0,
        updated_at=T0 + MIN, title="postgres down: orders and inventory failing",
        category="availability", severity="critical", confidence=0.93,
        affected=("postgres", "orders", "inventory"), hosts=("db-1",),
        root_causes=(RootCause("postgres", 0.91, ("depended on by 2 failing services",
                                                   "first to go anomalous"), "db-1"),
                     RootCause("orders", 0.4)),
        runbook={"id": "database_issues", "title": "Database issues", "steps": []})
    return dataclasses.replace(base, **changes)


def event(p: Problem, kind: str = "opened", time_ms: int | None = None) -> dict:
    value = alert_envelope(Decision(kind, p, "", True, time_ms or p.updated_at))
    return parse_alert(value)


def test_an_open_problem_maps_to_a_firing_alert_valid_for_four_resends():
    settings = NotifySettings(resend_interval_ms=MIN, labels=("env=prod", "team=sre"))
    now = T0 + 2 * MIN
    alert = alertmanager_alert(event(problem()), now, settings, CONSOLE)
    assert alert["labels"] == {
        "alertname": "TocsinProblem", "problem_id": "p-59c7c10af9ee", "severity": "critical",
        "category": "availability", "service": "postgres", "scope": "prod-eu",
        "env": "prod", "team": "sre"}
    notes = alert["annotations"]
    assert notes["summary"] == "postgres down: orders and inventory failing"
    assert notes["root_cause"] == ("postgres on db-1 (score 0.91): depended on by 2 failing "
                                   "services; first to go anomalous")
    assert notes["services"] == "postgres, orders, inventory"
    assert notes["runbook"] == "Database issues"
    assert notes["runbook_url"] == CONSOLE + "/console/problems/p-59c7c10af9ee#runbook"
    assert notes["status"] == "open" and notes["problem_version"] == "3"
    assert notes["event_id"] == "p-59c7c10af9ee.3"
    assert "critical availability problem affecting postgres, orders" in notes["description"]
    assert alert["startsAt"] == "2025-11-24T16:00:00.000Z"
    assert parse_rfc3339_ms(alert["endsAt"]) == now + 4 * MIN
    assert alert["generatorURL"] == CONSOLE + "/console/problems/p-59c7c10af9ee"


def test_a_resolved_problem_ends_at_its_resolve_time_never_in_the_future():
    settings = NotifySettings()
    resolved = problem(status="resolved", resolved_at=T0 + 10 * MIN, version=5)
    alert = alertmanager_alert(event(resolved, "resolved"), T0 + 20 * MIN, settings, CONSOLE)
    assert alert["endsAt"] == format_ms(T0 + 10 * MIN)
    assert alert["startsAt"] == format_ms(T0)
    # a resolve stamped ahead of the wall clock ends the alert now
    alert = alertmanager_alert(event(resolved, "resolved"), T0 + 5 * MIN, settings, CONSOLE)
    assert alert["endsAt"] == format_ms(T0 + 5 * MIN)
    # and never before it started (Alertmanager refuses that)
    alert = alertmanager_alert(event(resolved, "resolved"), T0 - MIN, settings, CONSOLE)
    assert alert["startsAt"] == alert["endsAt"] == format_ms(T0 - MIN)


def test_acknowledged_and_templated_runbook_and_missing_root_cause():
    settings = NotifySettings(runbook_url="https://wiki.example/rb/{runbook}?p={problem_id}",
                              alertname="Tocsin")
    acked = problem(status="acknowledged", acknowledged_by="ana", root_causes=())
    alert = alertmanager_alert(event(acked, "acknowledged"), T0, settings, CONSOLE)
    assert alert["labels"]["alertname"] == "Tocsin"
    assert alert["labels"]["service"] == "postgres"  # first affected without a root cause
    assert "root_cause" not in alert["annotations"]
    assert alert["annotations"]["status"] == "acknowledged by ana"
    assert alert["annotations"]["runbook_url"] == \
        "https://wiki.example/rb/database_issues?p=p-59c7c10af9ee"


@pytest.mark.parametrize(("value", "why"), [
    (b"", "empty message"),
    (b"{not json", "not JSON"),
    (b"[1]", "expected a JSON object, got list"),
    (b'{"type": "com.other.thing", "data": {}}', "type 'com.other.thing' is not"),
    (b'{"type": "io.tocsin.problem.opened", "id": "x"}', "data is missing"),
    (b'{"type": "io.tocsin.problem.opened", "id": "x", "data": {"id": "p", "status": "open",'
     b' "opened_at": "yesterday", "version": 1}}', "data.opened_at is missing or not a int"),
])
def test_messages_that_are_not_tocsin_alerts_are_refused_with_the_reason(value, why):
    with pytest.raises(AlertFormatError, match=why):
        parse_alert(value)


def test_console_base_defaults_to_the_worker_web_address():
    assert console_base(NotifySettings(), "0.0.0.0", 6066) == "http://127.0.0.1:6066"
    assert console_base(NotifySettings(), "tocsin-1", 7000) == "http://tocsin-1:7000"
    explicit = NotifySettings(console_url="https://tocsin.example/")
    assert console_base(explicit, "127.0.0.1", 6066) == "https://tocsin.example"


def test_tracker_ends_a_label_set_the_problem_left_and_ignores_older_versions():
    settings = NotifySettings(resend_interval_ms=MIN)
    open_problems = OpenProblems(settings, CONSOLE)
    first = open_problems.apply(event(problem(severity="high", version=2)), T0)
    assert [a["labels"]["severity"] for a in first] == ["high"]
    escalated = open_problems.apply(event(problem(version=3), "escalated"), T0 + MIN)
    # the high alert ends now, the critical one fires: routing follows the new severity
    assert [(a["labels"]["severity"], a["endsAt"]) for a in escalated] == [
        ("high", format_ms(T0 + MIN)), ("critical", format_ms(T0 + 5 * MIN))]
    assert open_problems.apply(event(problem(severity="high", version=2)), T0 + MIN) == []
    assert len(open_problems) == 1


def test_tracker_resends_open_problems_every_interval_and_not_resolved_ones():
    settings = NotifySettings(resend_interval_ms=MIN)
    open_problems = OpenProblems(settings, CONSOLE)
    open_problems.apply(event(problem()), T0)
    open_problems.apply(event(problem(id="p-2")), T0 + 30_000)
    assert open_problems.next_due_ms() == T0 + MIN
    assert open_problems.due(T0 + MIN - 1) == []
    due = open_problems.due(T0 + MIN)
    assert [a["labels"]["problem_id"] for a in due] == ["p-59c7c10af9ee"]
    assert due[0]["endsAt"] == format_ms(T0 + 5 * MIN)  # valid again from the resend
    assert open_problems.next_due_ms() == T0 + 90_000
    resolved = problem(id="p-2", status="resolved", resolved_at=T0 + MIN, version=4)
    open_problems.apply(event(resolved, "resolved"), T0 + MIN)
    assert [a["labels"]["problem_id"] for a in open_problems.due(T0 + 10 * MIN)] == \
        ["p-59c7c10af9ee"]
    assert open_problems.forget_resolved(T0 + 2 * MIN) == 1
    assert len(open_problems) == 1


def test_collapse_keeps_the_last_alert_per_label_set_with_every_message():
    a1 = {"labels": {"problem_id": "a"}, "endsAt": "1"}
    a2 = {"labels": {"problem_id": "a"}, "endsAt": "2"}
    b = {"labels": {"problem_id": "b"}, "endsAt": "3"}
    assert collapse([(a1, "m1"), (b, None), (a2, "m2")]) == [(a2, ["m1", "m2"]), (b, [])]


def test_backoff_doubles_from_the_initial_wait_up_to_the_cap():
    assert [backoff_ms(n, 500, 30_000) for n in range(1, 9)] == [
        500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]
    assert backoff_ms(10_000, 1, 5) == 5  # no overflow however many failures
    with pytest.raises(ValueError, match="failures counts from 1"):
        backoff_ms(0, 500, 1000)


def test_which_http_answers_are_retried():
    assert [s for s in (400, 401, 404, 408, 413, 425, 429, 500, 502, 503) if
            retryable_status(s)] == [408, 425, 429, 500, 502, 503]


def test_notify_settings_from_the_environment_and_their_errors():
    s = load_settings(environ={
        "TOCSIN_NOTIFY_ALERTMANAGER_URLS": "http://am-1:9093,http://am-2:9093",
        "TOCSIN_NOTIFY_WEBHOOK_HEADERS": "X-Team: sre",
        "TOCSIN_NOTIFY_RESEND_INTERVAL_MS": "2m", "TOCSIN_NOTIFY_WEBHOOK_TOKEN": "s3cret"})
    assert s.notify.alertmanager_urls == ("http://am-1:9093", "http://am-2:9093")
    assert s.notify.resend_interval_ms == 2 * MIN
    assert "s3cret" not in orjson.dumps(s.redacted()).decode()
    for env, why in [
        ({"TOCSIN_NOTIFY_WEBHOOK_URLS": "hooks.example/x"},
         "notify.webhook_urls .*'hooks.example/x' is not an http"),
        ({"TOCSIN_NOTIFY_WEBHOOK_HEADERS": "no colon"}, "'no colon' is not 'Name: value'"),
        ({"TOCSIN_NOTIFY_LABELS": "bad-name=1"}, "notify.labels .*'bad-name=1'"),
        ({"TOCSIN_NOTIFY_MAX_ATTEMPTS": "0"}, "notify.max_attempts .*must be > 0"),
        ({"TOCSIN_NOTIFY_BACKOFF_MAX_MS": "100"}, "backoff_max_ms .*less than"),
    ]:
        with pytest.raises(SettingsError, match=why):
            load_settings(environ=env)
