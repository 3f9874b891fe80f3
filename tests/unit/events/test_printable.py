"""Record values in log lines: control, bidi and invisible characters escaped, bounded."""

from __future__ import annotations

import logging

import pytest

from pipeline.events.deadletter import describe
from pipeline.events.printable import printable
from pipeline.events.schema import RawMessage, Rejection


@pytest.mark.parametrize("text, shown", [
    ("orders", "orders"),
    ("Zürich 東京 café", "Zürich 東京 café"),  # printable non-ASCII stays as it is
    ("a\nb", "a\\nb"),
    ("a\r\nb", "a\\r\\nb"),
    ("a\tb", "a\\tb"),
    ("nul\x00", "nul\\x00"),
    ("esc\x1b[31mred", "esc\\x1b[31mred"),
    ("del\x7f", "del\\x7f"),
    ("\u202eevil", "\\u202eevil"),  # RIGHT-TO-LEFT OVERRIDE
    ("\u2066isolate\u2069", "\\u2066isolate\\u2069"),
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("line\u2028sep", "line\\u2028sep"),
    ("nbsp\u00a0", "nbsp\\xa0"),
    ("tag\U000e0041", "tag\\U000e0041"),
    ("back\\slash", "back\\slash"),
    ("lone\ud800", "lone\\ud800"),
])
def test_non_printable_characters_are_escaped(text, shown):
    assert printable(text) == shown


def test_output_is_one_line_of_printable_text_for_every_code_point():
    every = "".join(chr(c) for c in range(0x20000) if not 0xD800 <= c < 0xE000)
    out = printable(every, limit=len(every))
    assert out.isprintable()


def test_length_is_bounded_and_says_how_long_the_text_was():
    assert printable("x" * 1000, limit=10) == "xxxxxxxxxx... (1000 characters)"
    assert printable("\n" * 1000, limit=3) == "\\n\\n\\n... (1000 characters)"
    assert len(printable("y" * 10**6)) < 250


def test_escaping_twice_changes_nothing_more():
    once = printable("a\nb\u202ec\\n")
    assert printable(once) == once


def test_non_strings_are_shown_by_str():
    assert printable(ValueError("bad\nvalue")) == "bad\\nvalue"


def test_dead_letter_log_line_cannot_forge_lines(caplog):
    source = RawMessage("tocsin.metrics\n", 3, 42, b"{}")
    rejection = Rejection(source, 1, "field 'service.name': got string \"a\nFORGED \u202e\"",
                          b"{}")
    with caplog.at_level(logging.WARNING):
        logging.getLogger("tocsin.test").warning("rejected %s", describe(rejection))
    (record,) = caplog.records
    line = record.getMessage()
    assert "\n" not in line and "\u202e" not in line
    assert line == ("rejected tocsin.metrics\\n[3]@42 record 1: field 'service.name': "
                    "got string \"a\\nFORGED \\u202e\"")
