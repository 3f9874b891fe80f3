"""The embedded store: ClickHouse in-process (chdb) on a local data directory.

A chdb data directory can be opened by one process at a time; the worker that owns it
answers other processes' queries over its web server (see ``pipeline.api.query``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa

from pipeline.errors import StoreError, StoreUnavailable
from pipeline.store.base import QueryResult
from pipeline.store.ddl import schema_statements


class EmbeddedStore:
    """ClickHouse via chdb, with data under ``path``; thread-safe."""

    def __init__(self, path: str | Path, database: str = "tocsin", ttl_days: int = 30) -> None:
        self.path = Path(path)
        self.database = database
        self.ttl_days = ttl_days
        self._lock = threading.Lock()
        self._session = None

    def _open(self):
        if self._session is None:
            from chdb import session  # imported late: loading the engine takes a moment

            self.path.mkdir(parents=True, exist_ok=True)
            try:
                self._session = session.Session(str(self.path))
            except Exception as exc:  # chdb raises plain RuntimeErrors
                raise StoreUnavailable(
                    f"cannot open the embedded ClickHouse store at {self.path}: {exc} "
                    "(is a worker already using it? query through `tocsin query`)"
                ) from exc
            self._session.query("SET final = 1")
        return self._session

    def _run(self, sql: str, fmt: str = "ArrowTable"):
        with self._lock:
            session = self._open()
            try:
                return session.query(sql, fmt)
            except Exception as exc:
                raise StoreError(f"embedded ClickHouse: {exc}".strip()) from exc

    def ensure_schema(self) -> None:
        """Create the database and tables if they do not exist yet."""
        for statement in schema_statements(self.database, self.ttl_days):
            self._run(statement, "CSV")

    def insert_arrow(self, table: str, rows: pa.Table) -> None:
        """Append rows through the engine's Arrow reader (the fastest path into chdb)."""
        if rows.num_rows == 0:
            return
        columns = ", ".join(f"`{c}`" for c in rows.column_names)
        sql = f"INSERT INTO {self.database}.{table} ({columns}) SELECT {columns} FROM Python(rows)"
        with self._lock:
            session = self._open()
            try:
                session.query(sql)
            except Exception as exc:
                raise StoreError(f"insert into {self.database}.{table} failed: {exc}") from exc

    def query(self, sql: str) -> QueryResult:
        """Run a statement; reads see deduplicated rows (``final = 1``)."""
        result = self._run(sql)
        if isinstance(result, pa.Table):
            return QueryResult.from_arrow(result)
        return QueryResult([], [])

    def close(self) -> None:
        """Close the engine session, releasing the data directory."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None
