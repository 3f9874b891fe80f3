"""Analysts' reads (``Store.read``) on every backend: what the issue reproduced is refused,
the engine's own read-only mode holds on its own, the operator's limits bite, and a long
read never holds up an insert."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.api.query import run_query
from pipeline.errors import StoreError, TocsinError
from pipeline.kafka import find_free_port
from pipeline.settings import load_settings
from pipeline.store import ReadLimits, ReadRefused, Store
from tests.store_backends import BACKENDS, IN_PROCESS, close_backend, metric_batch, open_backend

pytestmark = pytest.mark.integration

# sleeps 40 us a row, 2.6 s a block (under the engine's 3 s a block), minutes in all
LONG_READ = "SELECT sum(sleepEachRow(0.00004)) FROM numbers(10000000)"
RUNNING_LONG_READS = ("SELECT count() FROM system.processes "
                      "WHERE query LIKE 'SELECT sum(sleepEachRow%'")


@pytest.fixture(params=BACKENDS)
def kind(request) -> str:
    return request.param


@pytest.fixture
def store(kind, tmp_path) -> Iterator[Store]:
    backend = open_backend(kind, tmp_path)
    backend.ensure_schema()
    backend.insert_arrow("metrics", metric_batch(30).to_arrow())
    yield backend
    close_backend(backend)


class CountingServer:
    """An HTTP server on a free loopback port that counts the requests it gets."""

    def __init__(self) -> None:
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"secret\n")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def web_server() -> Iterator[CountingServer]:
    server = CountingServer()
    yield server
    server.close()


def count(store: Store, where: str = "") -> int:
    return store.query(f"SELECT count() FROM {store.database}.metrics {where}").scalar()


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_reads_answer_select_show_describe_explain_exists(store):
    db = store.database
    assert store.read(f"SELECT count() FROM {db}.metrics").rows == [(30,)]
    assert store.read(f"  with s as (select service from {db}.metrics) "
                      "select count(DISTINCT service) from s;").rows == [(3,)]
    assert store.read("SELECT n FROM ((SELECT 1 AS n) UNION ALL (SELECT 2 AS n)) ORDER BY n"
                      ).rows == [(1,), (2,)]
    assert store.read("SELECT number FROM numbers(3) WHERE 1 IN (SELECT 1)").rows == \
        [(0,), (1,), (2,)]
    assert ("metrics",) in store.read(f"SHOW TABLES FROM {db}").rows
    assert ("value", "Float64") in [r[:2] for r in store.read(f"DESCRIBE {db}.metrics").rows]
    assert store.read(f"EXISTS TABLE {db}.metrics").rows == [(1,)]
    assert store.read(f"EXPLAIN SELECT count() FROM {db}.metrics").rows
    assert store.read("SELECT format('{}-{}', 'a', 'b')").rows == [("a-b",)]


def test_statements_reach_the_engine_as_written(store):
    """Line breaks, tabs and backslash escapes in the text are the statement's own: the
    text is not re-read as an escaped parameter value on the way to the parser."""
    db = store.database
    assert store.read(f"SELECT count()\n  FROM {db}.metrics\n\tWHERE value >= 0").rows == \
        [(30,)]
    assert store.read("SELECT 'it\\'s', 'it''s', 'back\\\\slash', 'a\\tb'").rows == \
        [("it's", "it's", "back\\slash", "a\tb")]
    assert store.read("SELECT 'line\nbreak'").rows == [("line\nbreak",)]


def test_file_and_url_are_refused_and_nothing_is_read(store, web_server):
    url = f"http://127.0.0.1:{web_server.port}/leak"
    refused = {
        "SELECT * FROM file('/etc/passwd', 'LineAsString')": "file()",
        "SELECT file('/etc/hostname')": "file()",
        "SELECT 1 IN file('/etc/hostname', 'LineAsString')": "file()",
        "DESCRIBE file('/etc/passwd', 'LineAsString')": "file()",
        f"SELECT * FROM url('{url}', 'LineAsString')": "url()",
        f"WITH x AS (SELECT * FROM url('{url}', 'LineAsString')) SELECT * FROM x": "url()",
        "SELECT * FROM s3('http://127.0.0.1:1/b/k', 'CSV')": "s3()",
        "SELECT * FROM remote('127.0.0.1', system.one)": "remote()",
        "SELECT * FROM executable('id', 'TSV', 'x String')": "executable()",
        "SELECT * FROM mysql('127.0.0.1:1', 'd', 't', 'u', 'p')": "mysql()",
        "SELECT * FROM postgresql('127.0.0.1:1', 'd', 't', 'u', 'p')": "postgresql()",
        "SELECT * FROM hdfs('hdfs://127.0.0.1:1/x', 'CSV')": "hdfs()",
        "SELECT * FROM input('a Int8')": "input()",
        "SELECT * FROM view(SELECT 1)": "view()",
        "SELECT getServerSetting('path')": "getServerSetting()",
    }
    for sql, name in refused.items():
        with pytest.raises(ReadRefused, match=rf"{name[:-2]}\(\) is not allowed"):
            store.read(sql)
    assert web_server.hits == []


def test_python_table_function_is_refused(store, kind):
    # chDB's Python() reads objects of the process that hosts the engine
    with pytest.raises(StoreError) as refused:
        store.read("SELECT * FROM Python(rows)")
    if kind != "server":
        assert isinstance(refused.value, ReadRefused)


def test_one_statement_only_and_nothing_written(store, tmp_path: Path):
    db = store.database
    with pytest.raises(ReadRefused, match="Multi-statements are not allowed"):
        store.read(f"SELECT 1; DROP TABLE {db}.dead_letters")
    with pytest.raises(ReadRefused, match="Multi-statements are not allowed"):
        store.read(f"SELECT 1; INSERT INTO {db}.metrics (event_id, service, name, value, time) "
                   "VALUES (1, 'forged', 'm', 1, now())")
    with pytest.raises(ReadRefused, match="not DropQuery"):
        store.read(f"DROP TABLE {db}.dead_letters")
    with pytest.raises(ReadRefused, match="not InsertQuery"):
        store.read(f"INSERT INTO {db}.metrics (event_id, service) VALUES (2, 'forged')")
    with pytest.raises(ReadRefused, match="not DropQuery"):
        store.read(f"EXPLAIN AST DROP TABLE {db}.dead_letters")
    for statement in ("SET readonly = 0", "USE system", "KILL QUERY WHERE 1",
                      f"OPTIMIZE TABLE {db}.metrics FINAL", "SYSTEM FLUSH LOGS",
                      "SHOW GRANTS", ""):
        with pytest.raises(ReadRefused):
            store.read(statement)
    outfile = tmp_path / "out.csv"
    for output in (f"INTO OUTFILE '{outfile}'", f"INTO OUTFILE '{outfile}' FORMAT CSV",
                   f"INTO OUTFILE '{outfile}' TRUNCATE COMPRESSION 'gzip'"):
        with pytest.raises(ReadRefused, match="INTO OUTFILE is not allowed"):
            store.read(f"SELECT * FROM {db}.metrics {output}")
    with pytest.raises(ReadRefused, match="INTO OUTFILE is not allowed"):
        store.read(f"SHOW TABLES FROM {db} INTO OUTFILE '{outfile}'")
    with pytest.raises(ReadRefused, match="FORMAT clause is not allowed"):
        store.read("SELECT 1 FORMAT JSON")
    assert not outfile.exists()
    assert store.query(f"EXISTS TABLE {db}.dead_letters").scalar() == 1
    assert count(store) == 30 and count(store, "WHERE service = 'forged'") == 0


def test_a_query_cannot_lift_read_only_mode_or_the_limits(store):
    for settings in ("readonly = 0", "readonly = 2", "max_execution_time = 0",
                     "max_result_rows = 0", "final = 0"):
        with pytest.raises(StoreError, match="in readonly mode") as refused:
            store.read(f"SELECT count() FROM {store.database}.metrics SETTINGS {settings}")
        assert not isinstance(refused.value, ReadRefused)  # the engine's refusal
    assert store.read("SELECT getSetting('readonly'), getSetting('final')").rows == [(1, True)]


def test_the_engine_read_only_mode_holds_without_the_statement_checks(store):
    """Layer 1 alone: statements sent straight to the read connection, unchecked."""
    db = store.database
    for sql in (f"DROP TABLE {db}.dead_letters",
                f"INSERT INTO {db}.metrics (event_id, service) VALUES (3, 'forged')",
                f"CREATE TABLE {db}.x (a Int8) ENGINE = Memory",
                "SELECT * FROM file('/etc/passwd', 'LineAsString')",
                "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')",
                "SELECT * FROM executable('id', 'TSV', 'x String')",
                "SET readonly = 0",
                "SELECT 1 SETTINGS readonly = 0"):
        with pytest.raises(StoreError, match="readonly mode"):
            store._run_read(sql)
    assert store._run_read("SELECT 1").rows == [(1,)]
    assert store.query(f"EXISTS TABLE {db}.dead_letters").scalar() == 1
    assert count(store, "WHERE service = 'forged'") == 0


@pytest.mark.parametrize("limits, sql, message", [
    (ReadLimits(max_result_rows=100), "SELECT number FROM numbers(1000)",
     "Limit for result exceeded, max rows: 100"),
    (ReadLimits(max_execution_time_s=1), LONG_READ, "Timeout exceeded"),
    (ReadLimits(max_memory_bytes=20_000_000), "SELECT groupArray(number) FROM numbers(10000000)",
     "memory limit"),
])
def test_operator_limits_end_a_read_and_the_next_read_is_sound(kind, tmp_path, limits, sql,
                                                              message):
    store = open_backend(kind, tmp_path, limits=limits)
    try:
        store.ensure_schema()
        for _ in range(2):
            with pytest.raises(StoreError, match=f"(?i){message}"):
                store.read(sql)
            # chdb 4.4 gives a session's next statement the output a failed one left
            assert store.read("SELECT 42 AS answer").rows == [(42,)]
        assert store.read("SELECT number FROM numbers(100)").rows[-1] == (99,)
    finally:
        close_backend(store)


def test_a_long_read_never_holds_up_inserts(kind, tmp_path):
    store = open_backend(kind, tmp_path, limits=ReadLimits(max_execution_time_s=300))
    store.ensure_schema()
    outcome: dict[str, str] = {}

    def long_read() -> None:
        try:
            store.read(LONG_READ)
            outcome["error"] = ""
        except StoreError as exc:
            outcome["error"] = str(exc)

    reader = threading.Thread(target=long_read)
    reader.start()
    try:
        wait_for(lambda: store.query(RUNNING_LONG_READS).scalar() == 1, "the long read")
        for k in range(5):
            store.insert_arrow("metrics", metric_batch(50, offset=50 * k).to_arrow())
        assert count(store) == 250
        # the inserts and Tocsin's own reads went through while the read still runs
        assert reader.is_alive() and store.query(RUNNING_LONG_READS).scalar() == 1
    finally:
        store.query("KILL QUERY WHERE query LIKE 'SELECT sum(sleepEachRow%' SYNC")
        reader.join(120)
    try:
        # killed while running ("cancelled") or before it started ("QUERY_WAS_CANCELLED")
        assert "cancelled" in outcome["error"].lower()
        assert store.read(f"SELECT count() FROM {store.database}.metrics").rows == [(250,)]
    finally:
        close_backend(store)


@pytest.mark.parametrize("kind", IN_PROCESS)
def test_read_errors_name_no_local_path(kind, tmp_path):
    first = open_backend(kind, tmp_path / "first")
    first.ensure_schema()  # the process's one chdb engine now runs on this directory
    second = open_backend(kind, tmp_path / "second")
    try:
        with pytest.raises(StoreError) as failed:
            second.read("SELECT 1")
        assert str(tmp_path) not in str(failed.value) and "<path>" in str(failed.value)
    finally:
        second.close()
        first.close()


@pytest.mark.parametrize("kind", IN_PROCESS)
def test_query_without_a_worker_opens_the_store_directly(kind, tmp_path):
    store_path = tmp_path / "store"
    env = {"TOCSIN_WORKER_WEB_PORT": str(find_free_port()), "TOCSIN_STORE_TTL_DAYS": "0",
           "TOCSIN_QUERY_MAX_RESULT_ROWS": "5"}
    if kind == "embedded":
        env["TOCSIN_STORE_PATH"] = str(store_path)
    else:
        env["TOCSIN_STORE_CLICKHOUSE_URL"] = f"chdb://{store_path}"
    settings = load_settings(environ=env)
    result = run_query(settings, "SELECT count() FROM tocsin.metrics")
    assert result.columns == ["count()"] and result.rows == [(0,)]
    with pytest.raises(ReadRefused, match="not DropQuery"):
        run_query(settings, "DROP TABLE tocsin.metrics")
    with pytest.raises(TocsinError, match="max rows: 5"):
        run_query(settings, "SELECT * FROM numbers(10)")
