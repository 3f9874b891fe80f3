"""The embedded store: ClickHouse in-process (chdb) on a local data directory.

A chdb data directory can be opened by one process at a time; the worker that owns it
answers other processes' queries over its web server (see ``pipeline.api.query``). Inside that
process the store holds three chdb sessions on the one engine: the writer (DDL, inserts,
Tocsin's own queries), the reader (analysts' statements, read-only with limits) and the
checker (parses those statements). Each has its own lock, so a long read never holds up
an insert: the engine runs them side by side.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.errors import StoreError, StoreUnavailable
from pipeline.store.base import QueryResult
from pipeline.store.ddl import schema_statements
from pipeline.store.readonly import ReadLimits, ReadPath, checker_settings, reader_settings

log = logging.getLogger("tocsin.store")


def _set_statements(settings: dict[str, str]) -> list[str]:
    return [f"SET {name} = '{value}'" for name, value in settings.items()]


_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"})


def escaped_value(text: str) -> str:
    r"""``text`` as a query parameter's value in ClickHouse's Escaped format, so the engine
    reads back exactly ``text`` (a backslash, newline or tab would otherwise be taken as an
    escape or the end of the value).

    >>> print(escaped_value("back\\slash, new\nline"))
    back\\slash, new\nline
    """
    return text.translate(_ESCAPES)


class _Session:
    """One chdb session on the data directory, opened on first use, used under its lock."""

    def __init__(self, path: Path, setup: list[str]) -> None:
        self.path = path
        self.setup = setup
        self.lock = threading.Lock()
        self._session: Any = None

    def run(self, sql: str, fmt: str = "ArrowTable", params: dict[str, str] | None = None):
        """The engine's answer to ``sql`` in ``fmt``; :class:`StoreError` when it fails."""
        with self.lock:
            session = self._open()
            try:
                if params:  # chdb reads a parameter's value in the Escaped format
                    return session.query(sql, fmt, params={
                        k: escaped_value(v) for k, v in params.items()})
                return session.query(sql, fmt)
            except Exception as exc:  # chdb raises plain RuntimeErrors
                self._discard()
                raise StoreError(f"embedded ClickHouse: {exc}".strip()) from exc

    def insert(self, sql: str, rows: pa.Table) -> None:
        """Run ``sql``, an INSERT that reads ``Python(rows)``: chdb finds the Arrow table by
        that name among the locals of this frame."""
        with self.lock:
            session = self._open()
            try:
                session.query(sql)
            except Exception as exc:
                self._discard()
                raise StoreError(f"embedded ClickHouse: {exc}".strip()) from exc

    def _discard(self) -> None:
        """Drop the session after a failed statement: chdb 4.4 hands the output a failed
        statement left behind to the session's next statement (garbage, or stale rows)."""
        try:
            self._session.close()
        except Exception as exc:  # dropped all the same: the next call opens a new one
            log.warning("closing a failed chdb session: %s", exc)
        self._session = None

    def _open(self):
        if self._session is None:
            from chdb import session  # imported late: loading the engine takes a moment

            self.path.mkdir(parents=True, exist_ok=True)
            try:
                opened = session.Session(str(self.path))
            except Exception as exc:
                raise StoreUnavailable(
                    f"cannot open the embedded ClickHouse store at {self.path}: {exc} "
                    "(is a worker already using it? query through `tocsin query`)"
                ) from exc
            try:
                for statement in self.setup:
                    opened.query(statement)
            except Exception as exc:
                opened.close()
                raise StoreError(f"embedded ClickHouse: setting up a session: {exc}") from exc
            self._session = opened
        return self._session

    def close(self) -> None:
        """Close the session (waits for a statement in flight)."""
        with self.lock:
            if self._session is not None:
                self._session.close()
                self._session = None


class EmbeddedStore:
    """ClickHouse via chdb, with data under ``path``; thread-safe."""

    def __init__(self, path: str | Path, database: str = "tocsin", ttl_days: int = 30,
                 limits: ReadLimits | None = None) -> None:
        self.path = Path(path)
        self.database = database
        self.ttl_days = ttl_days
        self.limits = limits or ReadLimits()
        self._writer = _Session(self.path, ["SET final = 1"])
        self._reader = _Session(self.path, _set_statements(reader_settings(self.limits)))
        self._checker = _Session(self.path, _set_statements(checker_settings(self.limits)))
        self._read_path = ReadPath(self._ask, self._explain, self._run_read)

    def ensure_schema(self) -> None:
        """Create the database and tables if they do not exist yet."""
        for statement in schema_statements(self.database, self.ttl_days):
            self._writer.run(statement, "CSV")

    def insert_arrow(self, table: str, rows: pa.Table) -> None:
        """Append rows through the engine's Arrow reader (the fastest path into chdb)."""
        if rows.num_rows == 0:
            return
        columns = ", ".join(f"`{c}`" for c in rows.column_names)
        sql = f"INSERT INTO {self.database}.{table} ({columns}) SELECT {columns} FROM Python(rows)"
        try:
            self._writer.insert(sql, rows)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise StoreError(f"insert into {self.database}.{table} failed: {exc}") from exc

    def query(self, sql: str) -> QueryResult:
        """Run one of Tocsin's statements; reads see deduplicated rows (``final = 1``)."""
        return _result(self._writer.run(sql))

    def read(self, sql: str) -> QueryResult:
        """Run an analyst's statement on the read-only path (see ``pipeline.store.readonly``)."""
        return self._read_path.read(sql)

    def read_arrow(self, sql: str) -> pa.Table:
        """Run one of Tocsin's own read statements (a backtest's, a diagnostic's; never an
        analyst's: it is not checked) on the read-only session, under the read limits;
        the answer as Arrow."""
        answer = self._reader.run(sql)
        return answer if isinstance(answer, pa.Table) else pa.table({})

    def _ask(self, sql: str, params: dict[str, str] | None) -> list[tuple]:
        return _result(self._checker.run(sql, params=params)).rows

    def _explain(self, statement: str) -> str:
        return "\n".join(str(r[0]) for r in self._ask(f"EXPLAIN AST {statement}", None))

    def _run_read(self, sql: str) -> QueryResult:
        return _result(self._reader.run(sql))

    def close(self) -> None:
        """Close every session, releasing the data directory."""
        for session in (self._checker, self._reader, self._writer):
            session.close()


def _result(answer: Any) -> QueryResult:
    if isinstance(answer, pa.Table):
        return QueryResult.from_arrow(answer)
    return QueryResult([], [])
