"""The small interface both ClickHouse backends implement, and its query result."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

_READ_ONLY = re.compile(r"^\s*(\(\s*)*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.I)


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows of a query, as plain Python values."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    @classmethod
    def from_arrow(cls, table: pa.Table) -> QueryResult:
        """Rows of an Arrow table (as a query returned it)."""
        columns = [c.to_pylist() for c in table.columns]
        return cls(list(table.column_names), list(zip(*columns, strict=True)) if columns else [])

    def scalar(self) -> Any:
        """The single value of a one-row, one-column result."""
        return self.rows[0][0]


class Store(Protocol):
    """A ClickHouse engine Tocsin writes to and analysts read from."""

    database: str

    def ensure_schema(self) -> None:
        """Create the database and tables if they do not exist yet."""

    def insert_arrow(self, table: str, rows: pa.Table) -> None:
        """Append rows; columns missing from ``rows`` take their defaults."""

    def query(self, sql: str) -> QueryResult:
        """Run a statement and return its result (reads see deduplicated rows)."""

    def close(self) -> None:
        """Release the engine or connection."""


def is_read_only(sql: str) -> bool:
    """True when ``sql`` is a read statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN ...)."""
    return bool(_READ_ONLY.match(sql))
