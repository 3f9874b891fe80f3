"""The server store: ClickHouse through clickhouse-connect, over HTTP(S) or on chDB.

``http(s)://host:port`` reaches a ClickHouse server. ``chdb:///abs/path`` runs the same
client API over clickhouse-connect's in-process chDB interface (one engine per process, a
data directory one process at a time): that is how CI runs this backend without a server.

Three clients, like the embedded store's three sessions: the writer (DDL, inserts,
Tocsin's own queries), the reader (analysts' statements, read-only with limits) and the
checker (parses those statements), each with its own lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

import pyarrow as pa

from pipeline.errors import StoreError, StoreUnavailable
from pipeline.store.base import QueryResult
from pipeline.store.ddl import schema_statements
from pipeline.store.readonly import ReadLimits, ReadPath, checker_settings, reader_settings

T = TypeVar("T")


class _Client:
    """One clickhouse-connect client with its settings, created on first use."""

    def __init__(self, store: ServerStore, settings: dict[str, str], timeout_s: float) -> None:
        self.store = store
        self.settings = settings
        self.timeout_s = timeout_s
        self.lock = threading.Lock()
        self._client: Any = None

    def call(self, what: str, fn: Callable[[Any], T]) -> T:
        """``fn(client)`` under the lock; client errors become :class:`StoreError`."""
        from clickhouse_connect.driver.exceptions import OperationalError

        url = self.store.url
        with self.lock:
            client = self._connect()
            try:
                return fn(client)
            except OperationalError as exc:
                raise StoreUnavailable(f"{what} on {url}: {exc}") from exc
            except Exception as exc:
                raise StoreError(f"{what} on {url}: {exc}") from exc

    def _connect(self) -> Any:
        if self._client is None:
            import clickhouse_connect
            from clickhouse_connect.driver.exceptions import OperationalError

            url = self.store.url
            try:
                if url.startswith("chdb:"):
                    self._client = clickhouse_connect.get_client(
                        interface="chdb", path=url[len("chdb://"):], settings=self.settings,
                        tz_mode="aware")
                else:
                    parsed = urlparse(url)
                    self._client = clickhouse_connect.get_client(
                        host=parsed.hostname,
                        port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
                        secure=parsed.scheme == "https",
                        username=self.store.user,
                        password=self.store._password,
                        connect_timeout=5,
                        send_receive_timeout=self.timeout_s,
                        settings=self.settings,
                        tz_mode="aware",
                    )
            except OperationalError as exc:
                raise StoreUnavailable(f"ClickHouse server {url} unreachable: {exc}") from exc
            except Exception as exc:
                raise StoreError(f"ClickHouse at {url}: {exc}") from exc
        return self._client

    def close(self) -> None:
        """Close the client (its HTTP pool, or its chDB connection)."""
        with self.lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class ServerStore:
    """ClickHouse at ``url`` through clickhouse-connect; reads run with ``final = 1``."""

    def __init__(
        self,
        url: str,
        user: str = "default",
        password: str = "",
        database: str = "tocsin",
        ttl_days: int = 30,
        limits: ReadLimits | None = None,
        cluster: str = "",
    ) -> None:
        self.url = url
        self.cluster = cluster
        self.user = user
        self._password = password
        self.database = database
        self.ttl_days = ttl_days
        self.limits = limits or ReadLimits()
        read_timeout_s = 60.0 + self.limits.max_execution_time_s if \
            self.limits.max_execution_time_s else 3600.0
        # on a cluster an insert returns once every shard has its rows (at-least-once
        # holds: a batch is acknowledged only after its rows are stored)
        writes = {"final": "1", "insert_distributed_sync": "1"} if cluster else {"final": "1"}
        self._writer = _Client(self, writes, 60.0)
        self._reader = _Client(self, reader_settings(self.limits), read_timeout_s)
        self._checker = _Client(self, checker_settings(self.limits), 60.0)
        self._read_path = ReadPath(self._ask, self._explain, self._run_read)

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        """``fn(writer client)``, errors translated."""
        return self._writer.call(what, fn)

    def ensure_schema(self) -> None:
        """Create the database and tables if they do not exist yet."""
        for statement in schema_statements(self.database, self.ttl_days, self.cluster):
            self._call("create schema", lambda c, s=statement: c.command(s))

    def insert_arrow(self, table: str, rows: pa.Table) -> None:
        """Append rows as Arrow (columns missing from ``rows`` take their defaults)."""
        if rows.num_rows == 0:
            return
        self._call(f"insert into {self.database}.{table}",
                   lambda c: c.insert_arrow(f"{self.database}.{table}", rows))

    def query(self, sql: str) -> QueryResult:
        """Run one of Tocsin's statements and return its rows."""
        return _result(self._call("query", lambda c: c.query(sql)))

    def read(self, sql: str) -> QueryResult:
        """Run an analyst's statement on the read-only path (see ``pipeline.store.readonly``)."""
        return self._read_path.read(sql)

    def read_arrow(self, sql: str) -> pa.Table:
        """Run one of Tocsin's own read statements (a backtest's, a diagnostic's; never an
        analyst's: it is not checked) on the read-only connection, under the read
        limits; the answer as Arrow (text as strings)."""
        return self._reader.call("query", lambda c: c.query_arrow(sql, use_strings=True))

    def _ask(self, sql: str, params: dict[str, str] | None) -> list[tuple]:
        return _result(self._checker.call("parse", lambda c: c.query(sql, parameters=params))).rows

    def _explain(self, statement: str) -> str:
        # command() sends the statement as it is; query() would append FORMAT Native,
        # which EXPLAIN AST shows as part of the statement
        answer = self._checker.call("parse", lambda c: c.command(f"EXPLAIN AST {statement}"))
        return "\n".join(answer) if isinstance(answer, list) else str(answer)

    def _run_read(self, sql: str) -> QueryResult:
        return _result(self._reader.call("query", lambda c: c.query(sql)))

    def close(self) -> None:
        """Close every client."""
        for client in (self._checker, self._reader, self._writer):
            client.close()


def _result(result: Any) -> QueryResult:
    return QueryResult(list(result.column_names), [tuple(r) for r in result.result_rows])
