"""State round trip, alert envelope, table rows, control events and the public API."""

from __future__ import annotations

import zlib
from datetime import datetime

import orjson
import pyarrow as pa
import pytest

import pipeline.correlate as correlate
from pipeline.correlate import (
    ControlError,
    ControlEvent,
    CorrelationState,
    Silence,
    StateError,
    alert_envelope,
    alert_key,
    problem_detections_table,
    problems_table,
)
from pipeline.store.ddl import schema_statements
from tests.unit.correlate.support import HOUR, MIN, SEC, T0, Run, again, cleared, det


def stream():
    """Batches of a small incident: (detections, now), with ticks as empty batches."""
    a = det("heartbeat_missing", "postgres", T0, severity="critical", host="pg-primary-1")
    b = det("db_connection_errors", "orders", T0 + 5 * SEC, category="connectivity",
            signal="logs", labels={"peer.service": "postgres"})
    c = det("error_rate_above_5pct", "api", T0 + 20 * SEC)
    d = det("memory_growth", "auth", T0 + 30 * SEC, category="resource", severity="medium")
    return [([a], T0), ([b], T0 + 5 * SEC), ([], T0 + 40 * SEC), ([c, d], T0 + 50 * SEC),
            ([again(a, T0 + 3 * MIN)], T0 + 3 * MIN), ([], T0 + 6 * MIN),
            ([cleared(a, T0 + 7 * MIN), cleared(b, T0 + 7 * MIN), cleared(c, T0 + 7 * MIN)],
             T0 + 7 * MIN), ([], T0 + 10 * MIN), ([cleared(d, T0 + 11 * MIN)], T0 + 11 * MIN),
            ([], T0 + 20 * MIN)]


def play(restart: bool):
    run = Run(silence_retention_ms=HOUR)
    run.control(ControlEvent.create_silence(
        Silence.create(["service=auth"], T0, T0 + 5 * MIN, comment="deploy"), T0), T0)
    for dets, now in stream():
        if restart:
            run.state = CorrelationState.from_bytes(run.state.to_bytes())
        if dets:
            run.feed(dets, now)
        else:
            run.tick(now)
    return run


def test_state_survives_a_restart_between_every_batch():
    straight, restarted = play(restart=False), play(restart=True)
    assert [(d.kind, d.notify, d.reason, d.problem, d.links) for d in straight.decisions] == \
        [(d.kind, d.notify, d.reason, d.problem, d.links) for d in restarted.decisions]
    assert restarted.state == straight.state
    assert CorrelationState.from_bytes(straight.state.to_bytes()) == straight.state
    kinds = [(d.kind, d.problem.affected[0]) for d in straight.decisions if d.notify]
    assert kinds == [("opened", "postgres"), ("updated", "postgres"), ("opened", "auth"),
                     ("resolved", "postgres"), ("resolved", "auth")]


def test_state_is_compressed_and_plain_json_state_still_loads():
    state = play(restart=False).state
    data = state.to_bytes()
    plain = zlib.decompress(data)
    assert plain.startswith(b"{") and len(data) * 3 < len(plain)
    assert CorrelationState.from_bytes(plain) == state  # as written before compression


def test_unreadable_state_raises_state_error():
    for raw in (b"not json", b'{"format": 99}', b'{"format": 1}'):
        with pytest.raises(StateError):
            CorrelationState.from_bytes(raw)
    other = Run()
    with pytest.raises(StateError, match="scope"):
        other.corr.on_tick(CorrelationState.empty("elsewhere"), T0)


def test_alert_envelope_is_a_cloudevent():
    run = Run(group_wait_ms=0, resolve_hold_ms=0)
    a = det("error_rate_above_5pct", "orders", T0)
    opened = run.feed([a])[0]
    event = orjson.loads(alert_envelope(opened))
    assert event["specversion"] == "1.0"
    pid = opened.problem.id
    assert event["id"] == f"{pid}.1" and event["subject"] == pid
    assert event["type"] == "io.tocsin.problem.opened"
    assert event["source"] == "/tocsin/correlator/test"
    assert event["time"] == "2025-11-24T16:00:00.000Z"
    assert datetime.fromisoformat(event["time"]).tzinfo is not None
    assert event["datacontenttype"] == "application/json"
    assert event["problemversion"] == 1 and event["severity"] == "high"
    data = event["data"]
    assert data["id"] == pid and data["detection_ids"] == [a.id]
    assert data["root_causes"][0]["service"] == "orders"
    assert data["diagnostic_plan"]["automated_checks"] and data["runbook"]["steps"]
    assert data["change"]["kind"] == "opened" and "links" not in data
    assert alert_key(opened) == pid.encode()
    resolved = run.feed([cleared(a, T0 + MIN)])[0]
    event = orjson.loads(alert_envelope(resolved))
    assert event["type"] == "io.tocsin.problem.resolved" and event["id"] == f"{pid}.2"
    assert event["data"]["resolved_at"] == T0 + MIN


def test_merged_and_repeated_envelopes():
    run = Run(group_wait_ms=0, repeat_interval_ms=HOUR, resolve_timeout_ms=2 * HOUR)
    run.feed([det("error_rate_above_5pct", "payments", T0)])
    run.feed([det("error_rate_above_5pct", "cache", T0 + SEC)])
    out = run.feed([det("error_rate_above_5pct", "orders", T0 + 2 * SEC)])
    merged = next(d for d in out if d.kind == "merged")
    event = orjson.loads(alert_envelope(merged))
    assert event["type"] == "io.tocsin.problem.resolved"
    assert event["data"]["resolution"] == "merged" and event["data"]["merged_into"]
    assert [d.kind for d in out if d.notify] == ["escalated", "merged"]  # spread to 3
    repeated = run.tick(T0 + 2 * SEC + HOUR)[0]
    assert repeated.kind == "repeated"
    assert orjson.loads(alert_envelope(repeated))["id"] == \
        f"{repeated.problem.id}.{repeated.problem.version}.repeat.{T0 + 2 * SEC + HOUR}"


def _ddl_columns(table: str) -> list[str]:
    statement = next(s for s in schema_statements("db", 0) if f"db.{table} (" in s)
    body = statement.split("(", 1)[1].rsplit(") ENGINE", 1)[0]
    return [line.split()[0] for line in body.strip().splitlines()]


def test_table_rows_match_the_ddl():
    run = Run()
    out = run.feed([det("heartbeat_missing", "postgres", T0, host="pg-primary-1"),
                    det("error_rate_above_5pct", "orders", T0 + SEC)])
    problems = problems_table([d.problem for d in out])
    assert problems.column_names == _ddl_columns("problems")
    row = problems.to_pylist()[0]
    assert row["version"] == 1 and row["resolved_at"] is None
    assert row["affected"] == ["postgres", "orders", "pg-primary-1"]
    assert orjson.loads(row["root_causes"])[0]["service"] == "postgres"
    assert orjson.loads(row["runbook"])["id"]
    links = problem_detections_table([link for d in out for link in d.links])
    assert links.column_names == _ddl_columns("problem_detections")
    assert links.num_rows == 2 and links.schema.field("time").type == pa.timestamp("ms", "UTC")
    assert links.column("role").to_pylist() == ["trigger", "symptom"]


def test_control_events_round_trip_and_reject_bad_input():
    s = Silence.create(["service=postgres", "severity=~high|critical"], T0, T0 + HOUR,
                       comment="db upgrade", created_by="alice", created_at=T0)
    for event in (ControlEvent.ack("p-1", "alice", "on it", T0),
                  ControlEvent.create_silence(s, T0, scope="prod"),
                  ControlEvent.expire_silence(s.id, "bob", T0 + MIN)):
        assert ControlEvent.from_json(event.to_json()) == event
    for raw, message in ((b"[]", "expected an object"), (b"{", "not JSON"),
                         (b'{"kind": "nap", "time_ms": 1}', "control.kind"),
                         (b'{"kind": "ack", "time_ms": 1}', "problem_id"),
                         (b'{"kind": "ack", "time_ms": "x", "problem_id": "p"}', "time_ms"),
                         (b'{"kind": "ack", "time_ms": 1, "problem_id": "p", "x": 1}', "unknown"),
                         (b'{"kind": "silence", "time_ms": 1, "silence": {"id": "s", '
                          b'"matchers": ["a"], "starts_at": 0, "ends_at": 5}}', "matcher")):
        with pytest.raises(ControlError, match=message):
            ControlEvent.from_json(raw)


def test_public_api_is_pinned():
    assert sorted(correlate.__all__) == sorted([
        "ALERT_TYPES", "CONTROL_KINDS", "KINDS", "ControlError", "ControlEvent",
        "CorrelateSettings", "CorrelationState", "Correlator", "Decision", "Graph",
        "InhibitRule", "Link", "Matcher", "MatcherError", "Member", "Problem", "Recurrence",
        "RootCause", "ScheduleError", "Silence", "SilenceError", "StateError",
        "alert_envelope", "alert_event", "alert_key", "alert_message",
        "problem_detections_table", "problems_table"])
    for name in correlate.__all__:
        assert getattr(correlate, name) is not None
