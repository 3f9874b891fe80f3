"""The small interface both ClickHouse backends implement, and its query result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows of a query, as plain Python values."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    @classmethod
    def from_arrow(cls, table: pa.Table) -> QueryResult:
        """Rows of an Arrow table (as a query returned it); a Map value is a dict, as
        clickhouse-connect returns it."""
        columns = [_plain(c) for c in table.columns]
        return cls(list(table.column_names), list(zip(*columns, strict=True)) if columns else [])

    def scalar(self) -> Any:
        """The single value of a one-row, one-column result."""
        return self.rows[0][0]


def _plain(column: pa.ChunkedArray) -> list[Any]:
    values = column.to_pylist()
    if pa.types.is_map(column.type):
        return [dict(v) if v is not None else None for v in values]
    return values


class Store(Protocol):
    """A ClickHouse engine Tocsin writes to and analysts read from."""

    database: str

    def ensure_schema(self) -> None:
        """Create the database and tables if they do not exist yet."""

    def insert_arrow(self, table: str, rows: pa.Table) -> None:
        """Append rows; columns missing from ``rows`` take their defaults."""

    def query(self, sql: str) -> QueryResult:
        """Run one of Tocsin's own statements and return its result (reads see
        deduplicated rows). Never pass an analyst's SQL here: that is :meth:`read`."""

    def read(self, sql: str) -> QueryResult:
        """Run an analyst's statement on the read-only path (``pipeline.store.readonly``):
        one read statement under the engine's read-only mode and the operator's limits,
        on connections of its own so that it never waits for, or holds up, an insert."""

    def read_arrow(self, sql: str) -> pa.Table:
        """Run one of Tocsin's own read statements on the read-only path's session (read
        limits, ``readonly``, ``final``), unchecked; the answer as Arrow."""

    def close(self) -> None:
        """Release the engine or connection."""

