"""The console's reads on a real chdb store, through the read-only path: filters, quoting
of hostile values, the problem page's series, bands, call graph and history."""

from __future__ import annotations

import asyncio
import math

import pyarrow as pa
import pytest

from pipeline.agents.detect import shadow_table
from pipeline.alerts.cloudevents import problem_changes_table
from pipeline.alerts.control import ControlEvent
from pipeline.alerts.feedback import feedback_table
from pipeline.api.console_data import (
    MAX_POINTS,
    Filters,
    list_detections,
    list_problems,
    read_edges,
    read_problem,
    read_series,
)
from pipeline.events.detection import Detection, detections_table
from pipeline.events.problem import (
    STATUSES,
    Decision,
    Link,
    Problem,
    RootCause,
    problem_detections_table,
    problems_table,
)
from pipeline.store import EmbeddedStore, ReadLimits

pytestmark = pytest.mark.integration

NOW = 1_764_000_000_000
HOSTILE = "o'rders\\' OR 1=1 --"


def metrics_table(service: str, name: str, start: int, count: int, every_ms: int) -> pa.Table:
    ts = pa.timestamp("ms", tz="UTC")
    return pa.table({
        "event_id": pa.array(range(count), pa.uint64()),
        "time": pa.array([start + i * every_ms for i in range(count)], ts),
        "service": pa.array([service] * count), "host": pa.array(["h1"] * count),
        "name": pa.array([name] * count),
        "value": pa.array([float(i % 10) for i in range(count)], pa.float64()),
        "unit": pa.array([""] * count),
        "attributes": pa.array([[] for _ in range(count)], pa.map_(pa.string(), pa.string())),
    })


@pytest.fixture
def store(tmp_path):
    s = EmbeddedStore(tmp_path / "store", "tocsin", 0, ReadLimits(30, 1_000_000_000, 100_000))
    s.ensure_schema()
    yield s
    s.close()


def test_console_reads(store):
    async def read(sql: str):
        return await asyncio.to_thread(store.read, sql)

    opened = NOW - 3_600_000
    open_p = Problem("p-open", 2, "default", "open", opened, NOW - 60_000,
                     title="postgres: <b>errors</b>", category="availability",
                     severity="critical", affected=("postgres", "orders"),
                     root_causes=(RootCause("postgres", 0.9, ("first to fail",)),))
    old_p = Problem("p-old", 1, "default", "resolved", NOW - 30 * 86_400_000,
                    NOW - 29 * 86_400_000, resolved_at=NOW - 29 * 86_400_000, title="old",
                    severity="low", affected=("auth",))
    store.insert_arrow("problems", problems_table([open_p, old_p]))
    model = Detection("d-model", opened + 60_000, "metric-model", "3", "metrics", "postgres",
                      "availability", "critical", "firing", "latency high", 40.0,
                      score=0.99, host="h1", labels={"metric": "db.latency", "host": "h1"},
                      evidence={"expected": 5.0, "band_low": 2.0, "band_high": 8.0})
    rule = Detection("d-rule", opened + 120_000, "orders-errors", "1", "metrics", "orders",
                     "availability", "high", "firing", "errors", 0.2, threshold=0.05,
                     entity="http.server.error.ratio")
    store.insert_arrow("detections", detections_table([model, rule]))
    # a shadow candidate's twin of the rule's detection: never on the console
    store.insert_arrow("detections", shadow_table([rule]))
    store.insert_arrow("feedback", feedback_table([ControlEvent.feedback(
        "p-open", "true", "alice", NOW - 1_000, "postgres", "pool", scope="default")]))
    store.insert_arrow("problem_detections", problem_detections_table([
        Link("p-open", "d-model", model.time, "postgres", "trigger"),
        Link("p-open", "d-rule", rule.time, "orders", "member")]))
    store.insert_arrow("problem_changes", problem_changes_table([
        Decision("opened", open_p, "new onset", True, opened)]))
    store.insert_arrow("metrics", metrics_table("postgres", "db.latency", opened - 7_200_000,
                                                2000, 5_000))
    store.insert_arrow("metrics", metrics_table("orders", "http.server.error.ratio",
                                                opened - 600_000, 100, 10_000))
    store.insert_arrow("service_edges", pa.table({  # two buckets of one edge, one of another
        "bucket": pa.array([NOW - 120_000, NOW - 60_000, NOW - 60_000],
                           pa.timestamp("ms", tz="UTC")),
        "bucket_ms": pa.array([60_000] * 3, pa.uint32()),
        "caller": ["orders", "orders", "api"], "callee": ["postgres", "postgres", "orders"],
        "source": ["spans"] * 3, "calls": pa.array([10, 12, 5], pa.uint64()),
        "errors": pa.array([0, 1, 0], pa.uint64()),
        "p50_ms": [3.0, 3.5, 40.0], "p95_ms": [9.0, 9.5, 90.0], "p99_ms": [12.0, 13.0, 99.0]}))

    async def scenario() -> None:
        everything = await list_problems(read, "tocsin", Filters(since="60d"), NOW)
        assert [p["id"] for p in everything] == ["p-open", "p-old"]  # open first
        assert everything[0]["root_cause"] == "postgres"
        recent = await list_problems(read, "tocsin", Filters(), NOW)
        assert [p["id"] for p in recent] == ["p-open"]
        for filters in (Filters.parse({"status": "resolved", "since": "60d"}, STATUSES),
                        Filters(severity="low", since="60d"), Filters(service="auth",
                                                                      since="60d")):
            assert [p["id"] for p in await list_problems(read, "tocsin", filters, NOW)] \
                == ["p-old"], filters
        # a hostile filter value is a string literal: no rows, no error
        assert await list_problems(read, "tocsin", Filters(service=HOSTILE), NOW) == []
        assert await list_detections(read, "tocsin", Filters(service=HOSTILE), NOW) == []
        found = await list_detections(read, "tocsin", Filters(service="orders", since="7d"),
                                      NOW)
        assert [d["id"] for d in found] == ["d-rule"]

        data = await read_problem(read, "tocsin", "p-open")
        assert data is not None and data.problem["title"] == "postgres: <b>errors</b>"
        assert [link["detection_id"] for link in data.links] == ["d-model", "d-rule"]
        assert sorted(d["id"] for d in data.detections) == ["d-model", "d-rule"]
        assert [(f["author"], f["verdict"], f["root_cause"]) for f in data.feedback] == \
            [("alice", "true", "postgres")]
        assert [(c["kind"], c["event_id"]) for c in data.changes] == [("opened", "p-open.2")]
        assert await read_problem(read, "tocsin", HOSTILE) is None

        await read_series(read, "tocsin", data)
        by_key = {(s["service"], s["metric"]): s for s in data.series}
        assert set(by_key) == {("postgres", "db.latency"), ("orders", "http.server.error.ratio")}
        latency = by_key[("postgres", "db.latency")]
        assert 100 <= len(latency["points"]) <= MAX_POINTS + 1
        times = [t for t, _ in latency["points"]]
        assert times == sorted(times) and data.window[0] <= times[0]
        assert latency["band"] == [(model.time, 2.0, 8.0, 5.0)]
        errors = by_key[("orders", "http.server.error.ratio")]
        assert errors["threshold"] == 0.05 and errors["band"] == []
        assert all(math.isfinite(v) for _, v in errors["points"])

        edges = await read_edges(read, "tocsin", ["postgres", "orders"], {"orders": ["cache"]})
        assert edges == [("api", "orders"), ("orders", "cache"), ("orders", "postgres")]

    asyncio.run(scenario())
