"""Analysts' reads: ClickHouse's own read-only mode, operator limits, one checked statement.

A statement from the query page or ``tocsin query`` goes through three layers:

1. **The engine's read-only mode.** It runs on a connection of its own whose limits
   (``max_execution_time``, ``max_memory_usage``, ``max_result_rows`` with
   ``result_overflow_mode = 'throw'``) and ``final = 1`` are set first and ``readonly = 1``
   last. From then on ClickHouse refuses writes, DDL, ``SET``, any query-level ``SETTINGS``
   (``readonly = 0`` included) and the table functions that reach outside (``file``,
   ``url``, ``s3``, ``remote``, ``executable`` ...).
2. **One statement, parsed by ClickHouse.** ``formatQuerySingleLine`` over the text as a
   bound parameter fails on zero or several statements; the engine's canonical text of the
   one statement is what is checked and what runs.
3. **Its syntax tree** (``EXPLAIN AST``, on a second read-only connection) is checked
   here, for what read-only mode lets through: the statement is a SELECT, SHOW, DESCRIBE,
   EXPLAIN or EXISTS; it has no ``INTO OUTFILE`` (clickhouse-local, hence chDB, writes that
   file itself) and no ``FORMAT`` (the caller picks the format); it names no table function
   other than the row generators, in any position (``1 IN file(...)`` and the scalar
   ``file()`` read files even with ``readonly = 1``; chDB's ``Python()`` reads the
   process's objects), and no function that reads files or server configuration.

Errors that reach the caller carry no local filesystem paths (:func:`scrub_paths`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import StoreError, StoreUnavailable
from pipeline.store.base import QueryResult

#: Statement kinds (the root of ClickHouse's AST dump) a read may be.
READ_STATEMENTS = frozenset({
    "SelectWithUnionQuery", "Explain", "DescribeQuery",
    "ShowTables", "ShowColumns", "ShowIndexes", "ShowFunctions", "ShowEngineQuery",
    "ShowProcesslistQuery", "ShowSetting", "ShowCreateTableQuery", "ShowCreateDatabaseQuery",
    "ShowCreateViewQuery", "ShowCreateDictionaryQuery",
    "ExistsTableQuery", "ExistsDatabaseQuery", "ExistsViewQuery", "ExistsDictionaryQuery",
})
#: Table functions that only generate rows (lower case): allowed anywhere.
ROW_GENERATORS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series",
                            "generateseries", "values"})
#: Ordinary functions that share a table function's name and touch nothing outside.
SCALAR_TWINS = frozenset({"format"})
#: Ordinary functions that read files or the server's configuration (lower case).
DENIED_FUNCTIONS = frozenset({"file", "getserversetting", "catboostevaluate",
                              "naivebayesclassifier", "naivebayesclassifierwithprob",
                              "naivebayesclassifierwithallprobs"})

# an absolute path of two or more parts, alone or after chdb:// (not a URL's path)
_PATH = re.compile(r"(?:(?<=chdb://)|(?<![\w.:/~-]))/(?:[^\s/'\"`,;()\[\]]+/)+"
                   r"[^\s/'\"`,;:()\[\]]*")


class ReadRefused(StoreError):
    """A statement is not a single read the read path serves; the message says why."""


@dataclass(frozen=True)
class ReadLimits:
    """What one analyst's read may use; 0 means no limit (as in ClickHouse)."""

    max_execution_time_s: float = 60.0
    max_memory_bytes: int = 2_000_000_000
    max_result_rows: int = 1_000_000

    @classmethod
    def from_settings(cls, query: Any) -> ReadLimits:
        """The limits of a :class:`~pipeline.settings.QuerySettings`."""
        return cls(query.max_execution_time_s, query.max_memory_bytes, query.max_result_rows)


def reader_settings(limits: ReadLimits) -> dict[str, str]:
    """Settings of the connection reads run on, in the order they must be applied:
    ``readonly = 1`` last, because from then on nothing can change them."""
    return {
        "final": "1",
        "max_execution_time": _number(limits.max_execution_time_s),
        "max_memory_usage": str(limits.max_memory_bytes),
        "max_result_rows": str(limits.max_result_rows),
        "result_overflow_mode": "throw",
        "readonly": "1",
    }


def checker_settings(limits: ReadLimits) -> dict[str, str]:
    """Settings of the connection that parses statements (it runs no analyst's query)."""
    seconds = min(limits.max_execution_time_s or 10.0, 10.0)
    return {"max_execution_time": _number(seconds),
            "max_memory_usage": str(limits.max_memory_bytes), "readonly": "1"}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class _Node:
    kind: str
    name: str
    parent: int  # index of the parent node, -1 for the root


def _parse_dump(dump: str) -> list[_Node]:
    """Nodes of an ``EXPLAIN AST`` dump (one node a line, one space of indent a level)."""
    nodes: list[_Node] = []
    stack: list[int] = []  # node index per depth
    for line in dump.splitlines():
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        words = line.strip().split(" ")
        kind = words[0]
        name = words[1] if kind == "Function" and len(words) > 1 else ""
        del stack[depth:]
        nodes.append(_Node(kind, name, stack[-1] if stack else -1))
        stack.append(len(nodes) - 1)
    return nodes


def statement_problem(ast_dump: str, table_functions: Iterable[str]) -> str | None:
    """Why the statement whose ``EXPLAIN AST`` is ``ast_dump`` may not run as a read, or
    None when it may. ``table_functions`` are the engine's (``system.table_functions``)."""
    nodes = _parse_dump(ast_dump)
    if not nodes:
        return "the statement is empty"
    if nodes[0].kind not in READ_STATEMENTS:
        return (f"only read statements (SELECT, SHOW, DESCRIBE, EXPLAIN, EXISTS) are served, "
                f"not {nodes[0].kind}")
    denied_tables = {t.lower() for t in table_functions} - ROW_GENERATORS
    statements = READ_STATEMENTS | {"Set"}  # what an EXPLAIN node may hold besides options
    for node in nodes:
        parent = nodes[node.parent] if node.parent >= 0 else None
        if parent is not None and (node.parent == 0 or parent.kind == "SelectWithUnionQuery"
                                   or parent.kind == "Explain"):
            if node.kind == "Literal":  # out_file, its compression and level
                return "INTO OUTFILE is not allowed: results come back to the caller only"
            if node.kind == "Identifier" and parent.kind in ("SelectWithUnionQuery", "Explain"):
                return "a FORMAT clause is not allowed: the caller chooses the format"
            if parent.kind == "Explain" and node.kind not in statements:
                return f"EXPLAIN serves read statements only, not {node.kind}"
        if node.kind != "Function":
            continue
        name = node.name.lower()
        in_table_position = parent is not None and parent.kind == "TableExpression"
        if name in DENIED_FUNCTIONS:
            return f"function {node.name}() is not allowed: it reads outside the database"
        if name in denied_tables and (in_table_position or name not in SCALAR_TWINS):
            return (f"table function {node.name}() is not allowed: reads see the database's "
                    "tables only (row generators such as numbers() excepted)")
    return None


def scrub_paths(message: str) -> str:
    """``message`` with every absolute filesystem path replaced by ``<path>``."""
    return _PATH.sub("<path>", message)


Ask = Callable[[str, "dict[str, str] | None"], Sequence[Sequence[Any]]]


class ReadPath:
    """Runs an analyst's statement: ClickHouse parses it, it is checked, the read-only
    connection runs it.

    On the checker connection, ``ask(sql, params)`` runs one of Tocsin's queries and
    returns its rows, and ``explain(statement)`` returns the ``EXPLAIN AST`` dump of a
    statement as sent (no format clause added: a client that appends one would change the
    tree). ``run(sql)`` runs the checked statement on the reader connection. All raise
    :class:`StoreError`.
    """

    def __init__(self, ask: Ask, explain: Callable[[str], str],
                 run: Callable[[str], QueryResult]) -> None:
        self._ask = ask
        self._explain = explain
        self._run = run
        self._table_functions: frozenset[str] | None = None

    def read(self, sql: str) -> QueryResult:
        """Rows of ``sql``; :class:`ReadRefused` names what is not allowed, other
        :class:`StoreError` carry the engine's reason (paths scrubbed)."""
        try:
            statement = self.check(sql)
            return self._run(statement)
        except ReadRefused:
            raise
        except StoreUnavailable as exc:
            raise StoreUnavailable(scrub_paths(str(exc)), exc.retry_after_s) from None
        except StoreError as exc:
            raise StoreError(scrub_paths(str(exc))) from None

    def check(self, sql: str) -> str:
        """The engine's canonical text of ``sql`` once it passed every check."""
        if not isinstance(sql, str) or not sql.strip():
            raise ReadRefused("no statement given")
        try:
            rows = self._ask("SELECT formatQuerySingleLine({statement:String})",
                             {"statement": sql})
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise ReadRefused(scrub_paths(f"not one valid statement: {exc}")) from None
        statement = str(rows[0][0])
        problem = statement_problem(self._explain(statement), self._engine_table_functions())
        if problem:
            raise ReadRefused(problem)
        return statement

    def _engine_table_functions(self) -> frozenset[str]:
        if self._table_functions is None:
            rows = self._ask("SELECT name FROM system.table_functions", None)
            self._table_functions = frozenset(str(r[0]) for r in rows)
        return self._table_functions
