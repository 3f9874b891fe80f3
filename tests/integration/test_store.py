"""The storage contract, run on every backend (see ``tests/store_backends.py``): Tocsin's
embedded chdb backend and the clickhouse-connect backend on chDB in CI, the
clickhouse-connect backend on a ClickHouse server when TOCSIN_TEST_CLICKHOUSE_URL is set.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import orjson
import pyarrow as pa
import pytest

from pipeline.errors import StoreError, StoreUnavailable
from pipeline.events.codec import decode_values
from pipeline.events.deadletter import deadletter_table
from pipeline.events.schema import RecordKind
from pipeline.store import TABLES, EmbeddedStore
from pipeline.store.ddl import SHARDING_KEYS, schema_statements
from pipeline.store.writer import StoreWriter
from tests.store_backends import BACKENDS, NOW, close_backend, metric_batch, open_backend

pytestmark = pytest.mark.integration

@pytest.fixture(params=BACKENDS)
def kind(request) -> str:
    return request.param


@pytest.fixture
def store(kind, tmp_path):
    backend = open_backend(kind, tmp_path)
    backend.ensure_schema()
    yield backend
    close_backend(backend)


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def test_schema_is_idempotent_and_complete(store):
    store.ensure_schema()
    tables = {row[0] for row in store.query(f"SHOW TABLES FROM {store.database}").rows}
    assert set(TABLES) <= tables


def test_cluster_ddl_is_clickhouse_sql_with_a_distributed_table_over_each_local_one(store):
    """No cluster here to run it on: ClickHouse's own parser checks every statement, and
    each table gets a replicated local table and a sharded Distributed table over it."""
    statements = schema_statements("tocsin", 30, cluster="prod")
    for statement in statements:
        quoted = statement.replace("\\", "\\\\").replace("'", "\\'")
        canonical = store.query(f"SELECT formatQuerySingleLine('{quoted}')").scalar()
        assert "ON CLUSTER prod" in canonical, canonical
    for name in TABLES:
        local, distributed = (s for s in statements if s.startswith("CREATE TABLE") and (
            f"tocsin.{name}_local " in s or f"tocsin.{name} " in s))
        assert f"ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/tocsin/{name}'" \
            in local
        assert distributed.endswith(f"Distributed(prod, tocsin, {name}_local, "
                                    f"{SHARDING_KEYS[name]})")
    problems = next(s for s in statements if "tocsin.problems_local " in s)
    assert "'{replica}', version)" in problems  # the newest version still wins
    # a store created before the shadow flag gains it on every node, in the local key
    assert [s for s in statements if s.startswith("ALTER")] == [
        "ALTER TABLE tocsin.detections_local ON CLUSTER prod ADD COLUMN IF NOT EXISTS shadow "
        "Bool, MODIFY ORDER BY (service, time, id, shadow)",
        "ALTER TABLE tocsin.detections ON CLUSTER prod ADD COLUMN IF NOT EXISTS shadow Bool",
        "ALTER TABLE tocsin.problems_local ON CLUSTER prod ADD COLUMN IF NOT EXISTS "
        "recurred_at Array(DateTime64(3, 'UTC'))",
        "ALTER TABLE tocsin.problems ON CLUSTER prod ADD COLUMN IF NOT EXISTS "
        "recurred_at Array(DateTime64(3, 'UTC'))",
        *(f"ALTER TABLE tocsin.{table} ON CLUSTER prod ADD COLUMN IF NOT EXISTS "
          "network_calls UInt64 DEFAULT 0, ADD COLUMN IF NOT EXISTS network_p50_ms Float64 "
          "DEFAULT 0" for table in ("service_edges_local", "service_edges"))]


def test_replayed_batch_is_stored_once(store):
    batch = metric_batch(500)
    store.insert_arrow("metrics", batch.to_arrow())
    store.insert_arrow("metrics", batch.to_arrow())  # a replay after a crash
    store.insert_arrow("metrics", metric_batch(10, offset=1000).to_arrow())
    expected = [(510, 510, float(sum(range(500)) + sum(range(1000, 1010))))]
    for run in (store.query, store.read):  # Tocsin's own reads and analysts' reads: FINAL
        rows = run(f"SELECT count(), uniqExact(event_id), sum(value) "
                   f"FROM {store.database}.metrics").rows
        assert rows == expected
    by_service = store.query(f"SELECT service, count() FROM {store.database}.metrics "
                             "GROUP BY service ORDER BY service").rows
    assert by_service == [("s0", 171), ("s1", 170), ("s2", 169)]


def test_latest_version_of_a_problem_wins_in_final_reads(store):
    def problem(version: int, status: str) -> pa.Table:
        return pa.table({
            "id": ["p1"], "version": pa.array([version], pa.uint32()), "scope": ["default"],
            "status": [status], "title": [f"v{version}"],
            "opened_at": pa.array([NOW - 5000], pa.timestamp("ms", tz="UTC")),
            "updated_at": pa.array([NOW - 5000 + version], pa.timestamp("ms", tz="UTC")),
            "affected": pa.array([["orders", "db"]], pa.list_(pa.string())),
            "confidence": pa.array([0.5], pa.float32()),
        })

    for version, status in ((1, "open"), (3, "resolved"), (2, "open")):
        store.insert_arrow("problems", problem(version, status))
    sql = (f"SELECT id, version, status, title, affected, confidence, resolved_at, opened_at "
           f"FROM {store.database}.problems")
    expected = [("p1", 3, "resolved", "v3", ["orders", "db"], 0.5, None, utc(NOW - 5000))]
    assert store.query(sql).rows == expected
    assert store.read(sql).rows == expected


def test_values_come_back_as_the_same_python_types(store):
    store.insert_arrow("metrics", metric_batch(1, attributes={"region": "eu", "shard": 2})
                       .to_arrow())
    [(time_, service, value, attributes, event_id)] = store.read(
        f"SELECT time, service, value, attributes, event_id FROM {store.database}.metrics").rows
    assert time_ == utc(NOW - 60_000) and time_.utcoffset().total_seconds() == 0
    assert (service, value, attributes) == ("s0", 0.0, {"region": "eu", "shard": "2"})
    assert isinstance(event_id, int) and event_id > 0


def test_ttl_is_in_the_ddl_and_drops_old_rows(kind, tmp_path):
    store = open_backend(kind, tmp_path, ttl_days=2)
    try:
        store.ensure_schema()
        db = store.database
        for table, column in (("metrics", "time"), ("spans", "start"), ("logs", "time")):
            ddl = store.query(f"SHOW CREATE TABLE {db}.{table}").scalar()
            assert f"TTL toDateTime({column}) + toIntervalDay(2)" in ddl, ddl
            assert "ReplacingMergeTree" in ddl
        store.insert_arrow("metrics", metric_batch(10).to_arrow())
        store.insert_arrow("metrics", metric_batch(7, offset=100, age_ms=3 * 86_400_000)
                           .to_arrow())
        store.query(f"OPTIMIZE TABLE {db}.metrics FINAL")  # merges apply the TTL
        assert store.query(f"SELECT count(), max(value) FROM {db}.metrics").rows == [(10, 9.0)]
    finally:
        close_backend(store)


def test_dead_letters_table_keeps_payload_and_reason(store):
    batch = decode_values(RecordKind.METRIC, [b"{oops", orjson.dumps({"time": NOW})], NOW)
    store.insert_arrow("dead_letters", deadletter_table(batch.rejections, NOW))
    rows = store.query(f"SELECT payload, reason, record_index FROM {store.database}.dead_letters "
                       "ORDER BY offset").rows
    assert rows[0][0] == "{oops" and rows[0][1].startswith("malformed JSON")
    assert "missing required field 'service.name'" in rows[1][1]


def test_bad_sql_raises_store_error_naming_the_problem(store):
    with pytest.raises(StoreError, match="nope"):
        store.query(f"SELECT nope FROM {store.database}.metrics")
    with pytest.raises(StoreError, match="nope"):
        store.read(f"SELECT nope FROM {store.database}.metrics")


def test_writer_counts_a_refused_insert_and_raises(tmp_path):
    real = EmbeddedStore(tmp_path / "store", ttl_days=0)
    real.ensure_schema()

    class FlakyStore:
        """The real store behind an outage of two attempts."""

        database = real.database

        def __init__(self) -> None:
            self.calls = 0

        def insert_arrow(self, table, rows):
            self.calls += 1
            if self.calls <= 2:
                raise StoreUnavailable("connection refused", retry_after_s=0.01)
            real.insert_arrow(table, rows)

        def query(self, sql):
            return real.query(sql)

    flaky = FlakyStore()
    writer = StoreWriter(flaky)
    rows = metric_batch(20).to_arrow()
    for _ in range(2):  # the agent's batch runner retries; the writer reports each refusal
        with pytest.raises(StoreUnavailable, match="connection refused"):
            asyncio.run(writer.insert("metrics", rows))
    asyncio.run(writer.insert("metrics", rows))
    assert flaky.calls == 3 and writer.failed_attempts == 2
    assert real.query("SELECT count() FROM tocsin.metrics").scalar() == 20
    real.close()
