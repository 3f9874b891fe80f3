"""Automated diagnostics: when the checks are due, how bounded they are, the evidence."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from pipeline.events.problem import Decision, Problem, RootCause
from pipeline.knowledge.diagnostics import MAX_ROWS, MAX_TEXT, diagnostic_queries, due, evidence

T0 = 1_764_000_000_000


def _decision(kind: str, pid: str = "p1", root: str = "orders", status: str = "open"):
    problem = Problem(pid, 1, "default", status, T0, T0,
                      root_causes=(RootCause(root, 0.9),) if root else ())
    return Decision(kind, problem, "", False, T0 + 60_000)


def test_checks_are_due_on_opening_and_on_a_new_root_cause_only():
    assert [d.kind for d in due([_decision("opened")], {})] == ["opened"]
    assert due([_decision("updated")], {"p1": "orders"}) == []
    assert [d.problem.id for d in due([_decision("updated", root="postgres")],
                                      {"p1": "orders"})] == ["p1"]
    assert [d.kind for d in due([_decision("reopened")], {"p1": "orders"})] == ["reopened"]
    assert len(due([_decision("updated")], {})) == 1  # never checked (e.g. older problem)
    assert due([_decision("resolved", status="resolved")], {}) == []
    assert due([_decision("opened", root="")], {}) == []
    # one run per problem per batch, with its latest decision
    both = due([_decision("opened"), _decision("joined", root="cache")], {})
    assert [(d.kind, d.problem.root_causes[0].service) for d in both] == [("joined", "cache")]


def test_every_query_is_bounded_in_time_and_rows_and_names_the_service():
    for query in diagnostic_queries("db", "o'rders", T0, T0 + 600_000):
        assert query.sql.startswith("SELECT") and f"LIMIT {MAX_ROWS}" in query.sql
        assert "fromUnixTimestamp64Milli" in query.sql and "now()" not in query.sql
        assert "'o\\'rders'" in query.sql  # quoted, never spliced raw
        assert "db." in query.sql


def test_evidence_is_short_and_json_ready():
    query = diagnostic_queries("db", "s", T0, T0)[0]
    when = datetime.fromtimestamp(T0 / 1000, UTC)
    rows = [("x" * 500, when, 0.123456789, 3)] * (MAX_ROWS + 5)
    found = evidence(query, "s", T0, ["a", "b", "c", "d"], rows)
    assert len(found["rows"]) == MAX_ROWS
    assert len(found["rows"][0][0]) == MAX_TEXT + 1 and found["rows"][0][2] == 0.1235
    assert found["rows"][0][1] == when.isoformat() and found["error"] == ""
    assert replace(query, sql="").name == "error_rate_by_operation"
