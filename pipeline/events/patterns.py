"""Regular expressions written by users (rule selectors, silence and route matchers), run by
RE2: matching takes time linear in the input, whatever the pattern.

Python's ``re`` backtracks, so a pattern such as ``(a+)+$`` takes exponential time on
``"aaaa…b"``; RE2 answers the same question in one pass. RE2 has no backreferences and no
lookaround; :func:`compile_pattern` rejects those (and anything else RE2 cannot compile)
with a reason, so a rule file or a silence that uses them is refused when it is loaded.

>>> p = compile_pattern(r"http\\.server\\..*")
>>> p.fullmatch("http.server.duration"), p.fullmatch("http.client.duration")
(True, False)
>>> compile_pattern("(a+)+$").search("a" * 100_000 + "b")
False
>>> compile_pattern("a(?=b)")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pipeline.events.patterns.PatternError: bad regex 'a(?=b)': lookahead (?=…) is not supported ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import re2

from pipeline.errors import TocsinError

MAX_PATTERN_CHARS = 4096
"""Longer patterns are refused: a rule or matcher regex is a line, not a document."""
_HINTS = (
    ("invalid perl operator: (?=", "lookahead (?=…)", ""),
    ("invalid perl operator: (?!", "lookahead (?!…)", ""),
    ("invalid perl operator: (?<=", "lookbehind (?<=…)", ""),
    ("invalid perl operator: (?<!", "lookbehind (?<!…)", ""),
    ("invalid perl operator: (?P", "a backreference (?P=name)", ""),
    ("invalid perl operator: (?>", "an atomic group (?>…)", ""),
    ("invalid escape sequence: \\Z", "\\Z", "; use \\z (or $) for the end of the text"),
)
_UNSUPPORTED = "{what} is not supported by RE2, the linear-time regex engine{advice} ({message})"

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the error is ours to report, not RE2's to print on stderr
_OPTIONS.never_capture = True  # yes/no answers only: about 1.5x faster per call


class PatternError(TocsinError, ValueError):
    """A regular expression that RE2 cannot compile; the message says why."""


@dataclass(frozen=True)
class Pattern:
    """A compiled RE2 pattern answering yes/no questions about strings."""

    text: str
    _compiled: Any = field(compare=False, repr=False)

    def search(self, value: str) -> bool:
        """Whether the pattern matches somewhere in ``value``."""
        return self._compiled.search(_utf8(value)) is not None

    def fullmatch(self, value: str) -> bool:
        """Whether the pattern matches the whole of ``value``."""
        return self._compiled.fullmatch(_utf8(value)) is not None


def compile_pattern(text: str) -> Pattern:
    """Compile ``text`` with RE2; raise :class:`PatternError` naming the pattern and why."""
    if not isinstance(text, str):
        raise PatternError(f"bad regex {text!r}: expected a string")
    if len(text) > MAX_PATTERN_CHARS:
        raise PatternError(f"bad regex {text[:40]!r}…: {len(text)} characters, at most "
                           f"{MAX_PATTERN_CHARS}")
    try:
        compiled = re2.compile(text, _OPTIONS)
    except re2.error as exc:
        raise PatternError(f"bad regex {text!r}: {_reason(exc)}") from None
    except UnicodeEncodeError:
        raise PatternError(f"bad regex {text!r}: not valid Unicode text") from None
    return Pattern(text, compiled)


def _reason(exc: Exception) -> str:
    """RE2's message, explained for the Python-only constructs people reach for."""
    raw = exc.args[0] if exc.args else ""
    message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    message = message or "RE2 cannot compile it"
    for prefix, what, advice in _HINTS:
        if message.startswith(prefix):
            return _UNSUPPORTED.format(what=what, advice=advice, message=message)
    tail = message.rpartition("\\")[2]
    if message.startswith("invalid escape sequence: ") and tail.isdigit():
        return _UNSUPPORTED.format(what=f"a backreference \\{tail}", advice="", message=message)
    return message


def _utf8(value: str) -> bytes:
    # Bytes avoid the wrapper's offset bookkeeping; lone surrogates still encode.
    return value.encode("utf-8", "surrogatepass")
