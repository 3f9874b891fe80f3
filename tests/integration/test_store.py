"""The storage contract, run on the embedded engine and, when configured, a server.

Set TOCSIN_TEST_CLICKHOUSE_URL (and _USER/_PASSWORD) to run the same tests against a
ClickHouse server through clickhouse-connect.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import orjson
import pytest

from pipeline.api.query import run_query
from pipeline.errors import StoreError, StoreUnavailable, TocsinError
from pipeline.events.codec import decode_values
from pipeline.events.deadletter import deadletter_table
from pipeline.events.schema import RecordKind
from pipeline.kafka import find_free_port
from pipeline.settings import load_settings
from pipeline.store import TABLES, EmbeddedStore, ServerStore, is_read_only
from pipeline.store.writer import StoreWriter

pytestmark = pytest.mark.integration

NOW = int(time.time() * 1000)
SERVER_URL = os.environ.get("TOCSIN_TEST_CLICKHOUSE_URL", "")


@pytest.fixture(params=["embedded", "server"])
def store(request, tmp_path):
    if request.param == "embedded":
        backend = EmbeddedStore(tmp_path / "store", database="tocsin", ttl_days=0)
    else:
        if not SERVER_URL:
            pytest.skip("no ClickHouse server: set TOCSIN_TEST_CLICKHOUSE_URL to run these")
        backend = ServerStore(SERVER_URL, os.environ.get("TOCSIN_TEST_CLICKHOUSE_USER", "default"),
                              os.environ.get("TOCSIN_TEST_CLICKHOUSE_PASSWORD", ""),
                              database=f"tocsin_test_{uuid.uuid4().hex[:8]}", ttl_days=0)
    backend.ensure_schema()
    yield backend
    if request.param == "server":
        backend._call("drop test database",
                      lambda c: c.command(f"DROP DATABASE IF EXISTS {backend.database}"))
    backend.close()


def metric_batch(n: int, offset: int = 0):
    values = [orjson.dumps([{"time": NOW - 60_000 + i, "service.name": f"s{i % 3}",
                             "name": "cpu", "value": float(i + offset)} for i in range(n)])]
    return decode_values(RecordKind.METRIC, values, NOW)


def test_schema_is_idempotent_and_complete(store):
    store.ensure_schema()
    tables = {row[0] for row in store.query(f"SHOW TABLES FROM {store.database}").rows}
    assert set(TABLES) <= tables


def test_replayed_batch_is_stored_once(store):
    batch = metric_batch(500)
    store.insert_arrow("metrics", batch.to_arrow())
    store.insert_arrow("metrics", batch.to_arrow())  # a replay after a crash
    store.insert_arrow("metrics", metric_batch(10, offset=1000).to_arrow())
    rows = store.query(f"SELECT count(), uniqExact(event_id), sum(value) "
                       f"FROM {store.database}.metrics").rows
    assert rows == [(510, 510, float(sum(range(500)) + sum(range(1000, 1010))))]
    by_service = store.query(f"SELECT service, count() FROM {store.database}.metrics "
                             "GROUP BY service ORDER BY service").rows
    assert by_service == [("s0", 171), ("s1", 170), ("s2", 169)]


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


def test_read_only_statements():
    assert is_read_only("SELECT 1") and is_read_only("  with x as (select 1) select * from x")
    assert is_read_only("(SELECT 1) UNION ALL (SELECT 2)") and is_read_only("SHOW TABLES")
    assert not is_read_only("DROP TABLE tocsin.metrics")
    assert not is_read_only("INSERT INTO t VALUES (1)")


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


def test_query_without_a_worker_opens_the_store_directly(tmp_path):
    env = {"TOCSIN_STORE_PATH": str(tmp_path / "store"),
           "TOCSIN_WORKER_WEB_PORT": str(find_free_port()), "TOCSIN_STORE_TTL_DAYS": "0"}
    settings = load_settings(environ=env)
    result = run_query(settings, "SELECT count() FROM tocsin.metrics")
    assert result.columns == ["count()"] and result.rows == [(0,)]
    with pytest.raises(TocsinError, match="read statements only"):
        run_query(settings, "DROP TABLE tocsin.metrics")
