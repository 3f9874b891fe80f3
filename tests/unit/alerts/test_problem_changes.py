"""``problem_changes``: one row per lifecycle decision, naming the CloudEvent it sent."""

from __future__ import annotations

from pipeline.alerts.cloudevents import alert_event, problem_changes_table
from pipeline.events.problem import Decision, Problem
from pipeline.store.ddl import schema_statements

T0 = 1_764_000_000_000


def _ddl_columns(table: str) -> list[str]:
    statement = next(s for s in schema_statements("db", 0) if f"db.{table} (" in s)
    body = statement.split("(", 1)[1].rsplit(") ENGINE", 1)[0]
    return [line.split()[0] for line in body.strip().splitlines()]


def test_each_decision_is_a_row_with_the_cloudevent_it_alerted():
    opened = Problem("p-1", 1, "default", "open", T0, T0, title="db down", severity="high")
    joined = Problem("p-1", 2, "default", "open", T0, T0 + 60_000, severity="high")
    acked = Problem("p-1", 3, "default", "acknowledged", T0, T0 + 120_000, severity="high",
                    acknowledged_by="alice")
    decisions = [Decision("opened", opened, "new onset", True, T0),
                 Decision("joined", joined, "same service", False, T0 + 60_000),
                 Decision("acknowledged", acked, "acknowledged by alice", True, T0 + 120_000),
                 Decision("repeated", acked, "repeat interval", True, T0 + 3_600_000)]
    table = problem_changes_table(decisions)
    assert table.column_names == _ddl_columns("problem_changes")
    rows = table.to_pylist()
    assert [(r["version"], r["kind"], r["event_id"], r["event_type"]) for r in rows] == [
        (1, "opened", "p-1.1", "io.tocsin.problem.opened"),
        (2, "joined", "", ""),
        (3, "acknowledged", "p-1.3", "io.tocsin.problem.acknowledged"),
        (3, "repeated", f"p-1.3.repeat.{T0 + 3_600_000}", "io.tocsin.problem.repeated")]
    # the ids are the ones the alerts topic carries
    assert [alert_event(d)["id"] for d in decisions if d.notify] == [
        r["event_id"] for r in rows if r["event_id"]]
    assert rows[2]["acknowledged_by"] == "alice" and rows[2]["status"] == "acknowledged"
