"""The server store: a ClickHouse server over HTTP(S) through clickhouse-connect."""

from __future__ import annotations

import threading
from urllib.parse import urlparse

import pyarrow as pa

from pipeline.errors import StoreError, StoreUnavailable
from pipeline.store.base import QueryResult
from pipeline.store.ddl import schema_statements


class ServerStore:
    """ClickHouse server at ``url``; reads run with ``final = 1``."""

    def __init__(
        self,
        url: str,
        user: str = "default",
        password: str = "",
        database: str = "tocsin",
        ttl_days: int = 30,
    ) -> None:
        self.url = url
        self.user = user
        self._password = password
        self.database = database
        self.ttl_days = ttl_days
        self._client = None
        self._lock = threading.Lock()

    def _connect(self):
        if self._client is None:
            import clickhouse_connect
            from clickhouse_connect.driver.exceptions import OperationalError

            parsed = urlparse(self.url)
            try:
                self._client = clickhouse_connect.get_client(
                    host=parsed.hostname,
                    port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
                    secure=parsed.scheme == "https",
                    username=self.user,
                    password=self._password,
                    connect_timeout=5,
                    send_receive_timeout=60,
                    settings={"final": 1},
                )
            except OperationalError as exc:
                raise StoreUnavailable(f"ClickHouse server {self.url} unreachable: {exc}") from exc
            except Exception as exc:
                raise StoreError(f"ClickHouse server {self.url}: {exc}") from exc
        return self._client

    def _call(self, what: str, fn):
        from clickhouse_connect.driver.exceptions import OperationalError

        with self._lock:
            client = self._connect()
            try:
                return fn(client)
            except OperationalError as exc:
                raise StoreUnavailable(f"{what} on {self.url}: {exc}") from exc
            except Exception as exc:
                raise StoreError(f"{what} on {self.url}: {exc}") from exc

    def ensure_schema(self) -> None:
        """Create the database and tables if they do not exist yet."""
        for statement in schema_statements(self.database, self.ttl_days):
            self._call("create schema", lambda c, s=statement: c.command(s))

    def insert_arrow(self, table: str, rows: pa.Table) -> None:
        """Append rows as Arrow (columns missing from ``rows`` take their defaults)."""
        if rows.num_rows == 0:
            return
        self._call(f"insert into {self.database}.{table}",
                   lambda c: c.insert_arrow(f"{self.database}.{table}", rows))

    def query(self, sql: str) -> QueryResult:
        """Run a statement and return its rows."""
        result = self._call("query", lambda c: c.query(sql))
        return QueryResult(list(result.column_names), [tuple(r) for r in result.result_rows])

    def close(self) -> None:
        """Close the HTTP connection pool."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
