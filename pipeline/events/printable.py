"""Record values made safe for a log line: control and invisible characters escaped.

Producers choose service names, bodies and attribute values; written raw into a log line,
a ``\\n`` forges a second line, a NUL or an escape sequence confuses terminals and log
shippers, and a bidi control (U+202E) makes text read backwards. :func:`printable` shows
every character that :meth:`str.isprintable` refuses (control, format, separator,
surrogate, private-use and unassigned code points) the way ``repr`` does, and bounds the
length, so one log call is one line of bounded size whatever a record holds.

Backslashes are left alone, so escaping an escaped text changes nothing more
(``printable(printable(s)) == printable(s)`` when nothing is cut).
"""

from __future__ import annotations

DEFAULT_LIMIT = 200
"""Characters of the original text shown before it is cut."""


def _escape(char: str) -> str:
    if char == "\n":
        return "\\n"
    if char == "\t":
        return "\\t"
    if char == "\r":
        return "\\r"
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` as text fit for one log line: non-printable characters escaped, at most
    ``limit`` characters of the original kept (the rest replaced by a count).

    >>> printable("orders\\n2026-01-01 ERROR forged\\u202e")
    'orders\\\\n2026-01-01 ERROR forged\\\\u202e'
    >>> printable("x" * 12, limit=5)
    'xxxxx... (12 characters)'
    """
    text = value if isinstance(value, str) else str(value)
    cut = len(text) > limit
    shown = text[:limit] if cut else text
    if not shown.isprintable():
        shown = "".join(c if c.isprintable() else _escape(c) for c in shown)
    return f"{shown}... ({len(text)} characters)" if cut else shown
