"""Label matchers in Alertmanager's syntax: ``name=value``, ``!=``, ``=~`` and ``!~``.

Regular expressions are RE2 (like Alertmanager's Go regexps: linear time, no backreferences
or lookaround) and fully anchored. A problem is matched through a *subject*: per name, a
primary value (the top root cause's) and all values it carries. A positive matcher holds
when the primary value matches or every value does; a negative matcher holds when its
positive twin does not. A name the problem lacks has the value ``""``.

>>> m = Matcher.parse("service=~post.*")
>>> m.matches({"service": ("postgres", ("postgres", "orders"))})
True
>>> Matcher.parse("severity!=low").matches({"severity": ("high", ("high",))})
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import TocsinError
from pipeline.events.patterns import Pattern, PatternError, compile_pattern

OPS = ("=~", "!~", "!=", "=")
Subject = Mapping[str, tuple[str | None, tuple[str, ...]]]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class MatcherError(TocsinError):
    """A matcher could not be parsed; the message says what was expected."""


@dataclass(frozen=True)
class Matcher:
    """One condition on a name: ``name op value``."""

    name: str
    op: str
    value: str
    _regex: Pattern | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise MatcherError(f"matcher name {self.name!r}: expected letters, digits, _ . -")
        if self.op not in OPS:
            raise MatcherError(f"matcher {self.name!r}: operator {self.op!r} is not one of "
                               f"{', '.join(OPS)}")
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_regex", compile_pattern(self.value))
            except PatternError as exc:
                raise MatcherError(f"matcher {self.name}{self.op}{self.value!r}: {exc}") \
                    from None

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``'service=postgres'``, ``'severity=~high|critical'`` (quotes optional)."""
        for op in OPS:
            name, sep, value = text.partition(op)
            if sep and name.strip() and not any(o in name for o in ("=", "!", "~")):
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                    value = value[1:-1]
                return cls(name.strip(), op, value)
        raise MatcherError(f"matcher {text!r}: expected name=value, name!=value, "
                           "name=~regex or name!~regex")

    @classmethod
    def from_wire(cls, obj: Any) -> Matcher:
        """A matcher from a string or a ``{"name", "op", "value"}`` mapping."""
        if isinstance(obj, str):
            return cls.parse(obj)
        if isinstance(obj, Mapping) and {"name", "value"} <= set(obj):
            return cls(str(obj["name"]), str(obj.get("op", "=")), str(obj["value"]))
        raise MatcherError(f"matcher {obj!r}: expected a string or a mapping with name, op, "
                           "value")

    def to_wire(self) -> str:
        """The matcher as text (``name=~"regex"``)."""
        return f'{self.name}{self.op}"{self.value}"'

    def test(self, value: str) -> bool:
        """Whether one value satisfies the positive form of this matcher."""
        if self._regex is not None:
            return self._regex.fullmatch(value)
        return value == self.value

    def matches(self, subject: Subject) -> bool:
        """Whether the subject satisfies this matcher (see the module docstring)."""
        primary, values = subject.get(self.name, (None, ()))
        if primary is None and not values:
            primary = ""
        positive = ((primary is not None and self.test(primary))
                    or (bool(values) and all(self.test(v) for v in values)))
        return positive if self.op in ("=", "=~") else not positive


def parse_matchers(items: Sequence[Any], where: str) -> tuple[Matcher, ...]:
    """Matchers from strings or mappings; errors name ``where`` and the index."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise MatcherError(f"{where}: expected a list of matchers, got {items!r}")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(Matcher.from_wire(item))
        except MatcherError as exc:
            raise MatcherError(f"{where}[{i}]: {exc}") from None
    return tuple(out)


def all_match(matchers: Sequence[Matcher], subject: Subject) -> bool:
    """Whether every matcher holds (an empty list matches nothing, to be safe)."""
    return bool(matchers) and all(m.matches(subject) for m in matchers)
