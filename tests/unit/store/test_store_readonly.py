"""The statement checks of the read path, on ClickHouse's EXPLAIN AST dumps, and the
scrubbing of paths from errors (the engine-backed tests are in tests/integration)."""

from __future__ import annotations

import pytest

from pipeline.settings import QuerySettings
from pipeline.store.readonly import (
    ReadLimits,
    checker_settings,
    reader_settings,
    scrub_paths,
    statement_problem,
)

TABLE_FUNCTIONS = ["file", "url", "numbers", "format", "python", "view", "generate_series"]

SELECT_FROM = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      {table}"""


def problem(dump: str) -> str | None:
    return statement_problem(dump, TABLE_FUNCTIONS)


def test_plain_reads_pass():
    assert problem(SELECT_FROM.format(table="TableIdentifier tocsin.metrics")) is None
    assert problem(SELECT_FROM.format(table="Function numbers (children 1)\n"
                                      "       ExpressionList (children 1)\n"
                                      "        Literal UInt64_3")) is None
    assert problem("ShowTables (children 1)\n Identifier tocsin") is None
    assert problem("ExistsTableQuery tocsin metrics (children 2)\n Identifier tocsin\n"
                   " Identifier metrics") is None
    scalar_format = ("SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n"
                     "  SelectQuery (children 1)\n   ExpressionList (children 1)\n"
                     "    Function format (children 1)\n     ExpressionList (children 2)\n"
                     "      Literal '{}'\n      Literal UInt64_1")
    assert problem(scalar_format) is None


@pytest.mark.parametrize("dump, reason", [
    (SELECT_FROM.format(table="Function file (children 1)"), "function file() is not allowed"),
    (SELECT_FROM.format(table="Function URL (alias u) (children 1)"),
     "table function URL() is not allowed"),
    (SELECT_FROM.format(table="Function Python (children 1)"), "Python() is not allowed"),
    (SELECT_FROM.format(table="Function format (children 1)"), "format() is not allowed"),
    ("SelectWithUnionQuery (children 2)\n ExpressionList (children 1)\n Literal 'x'",
     "INTO OUTFILE"),
    ("ShowTables (children 1)\n Literal 'y'", "INTO OUTFILE"),
    ("Explain EXPLAIN (children 2)\n SelectWithUnionQuery (children 1)\n"
     "  ExpressionList (children 1)\n Literal 'x'", "INTO OUTFILE"),
    ("SelectWithUnionQuery (children 2)\n ExpressionList (children 1)\n Identifier JSON",
     "FORMAT clause"),
    ("Explain EXPLAIN AST (children 1)\n DropQuery  x (children 1)\n  Identifier x",
     "not DropQuery"),
    ("DropQuery  x (children 1)\n Identifier x", "not DropQuery"),
    ("Set", "not Set"),
    ("SHOW USERS query", "not SHOW"),
    ("", "empty"),
])
def test_refused_with_a_reason(dump, reason):
    assert reason in (problem(dump) or "")


def test_a_function_named_like_a_table_function_is_refused_anywhere():
    in_list = ("SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n"
               "  SelectQuery (children 1)\n   ExpressionList (children 1)\n"
               "    Function in (children 1)\n     ExpressionList (children 2)\n"
               "      Literal UInt64_1\n      Function url (children 1)")
    assert "url() is not allowed" in problem(in_list)


def test_limits_come_before_read_only_mode():
    limits = ReadLimits.from_settings(QuerySettings(max_execution_time_s=2.5,
                                                    max_memory_bytes=10, max_result_rows=7))
    settings = reader_settings(limits)
    assert list(settings)[-1] == "readonly"
    assert settings == {"final": "1", "max_execution_time": "2.5", "max_memory_usage": "10",
                        "max_result_rows": "7", "result_overflow_mode": "throw",
                        "readonly": "1"}
    assert checker_settings(ReadLimits(max_execution_time_s=0))["max_execution_time"] == "10"
    assert list(checker_settings(limits))[-1] == "readonly"


@pytest.mark.parametrize("message, scrubbed", [
    ("Cannot open file /var/lib/ch/data/x.bin, errno: 2",
     "Cannot open file <path>, errno: 2"),
    ("store at /home/u/.cache/tocsin/store: locked", "store at <path>: locked"),
    ("chdb:///tmp/a/store: Unable to open '/tmp/a/store'",
     "chdb://<path>: Unable to open '<path>'"),
    ("http://127.0.0.1:8123/db/x failed", "http://127.0.0.1:8123/db/x failed"),
    ("1/2 and a/b and /tmp", "1/2 and a/b and /tmp"),
])
def test_paths_are_scrubbed_from_messages(message, scrubbed):
    assert scrub_paths(message) == scrubbed
