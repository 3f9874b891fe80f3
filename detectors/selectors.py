"""Selectors: which records a rule looks at, as label matchers plus log-specific filters.

A matcher value in YAML is a string (equality), a string with a Prometheus operator prefix
(``"!= canary"``, ``"=~ http\\.server\\..*"``, ``"!~ test-.*"``; regexes match the whole
value), or a list of strings (any of them). Matchers run on the *distinct* values of a
label in a batch, then broadcast to records through the label's codes. Regexes are RE2
(:mod:`pipeline.events.patterns`): linear-time matching, no backreferences or lookaround.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.columns import ATTRIBUTE_PREFIX, Batch, canonical_label
from pipeline.events.patterns import Pattern, PatternError, compile_pattern
from pipeline.events.schema import SEVERITIES, SEVERITY_ALIASES, SEVERITY_NUMBER

_OP = re.compile(r"^\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.S)
SELECTOR_KEYS: dict[str, tuple[str, ...]] = {
    "metrics": ("metric", "service", "host", "unit", "attributes"),
    "logs": ("service", "host", "severity", "contains", "regex", "attributes"),
    "traces": ("operation", "service", "host", "status", "kind", "attributes"),
}
Report = Callable[[str, str], None]
"""Collects a problem: ``report(field, message)``."""
REGEX_MEMORY = 4096
"""Distinct label values whose regex answer a matcher remembers."""


@dataclass(frozen=True)
class LabelMatcher:
    """One label test: ``=``, ``!=``, ``=~``, ``!~`` (anchored regex) or ``in`` (a set)."""

    label: str
    op: str
    value: str | tuple[str, ...]
    _regex: Pattern | None = field(default=None, compare=False, repr=False)
    _seen: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~") and self._regex is None:
            object.__setattr__(self, "_regex", compile_pattern(str(self.value)))

    def test(self, value: str) -> bool:
        """Whether one label value passes (regex answers are remembered per value, up
        to :data:`REGEX_MEMORY` values: metric names repeat in every batch)."""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        if self.op == "in":
            return value in self.value
        known = self._seen.get(value)
        if known is not None:
            return known
        hit = bool(self._regex.fullmatch(value))  # type: ignore[union-attr]
        result = hit if self.op == "=~" else not hit
        if len(self._seen) < REGEX_MEMORY:
            self._seen[value] = result
        return result

    def mask(self, batch: Batch) -> np.ndarray:
        """Per-record result over a batch (one test per distinct value)."""
        uniques, codes = batch.factor(self.label)
        ok = np.fromiter((self.test(u) for u in uniques), dtype=bool, count=len(uniques))
        return ok[codes]

    def text(self) -> str:
        """Prometheus-like rendering, e.g. ``name=~"http\\.server\\..*"``."""
        if self.op == "in":
            return f"{self.label} in ({', '.join(self.value)})"
        return f'{self.label}{self.op}"{self.value}"'


def parse_matcher(label: str, spec: Any) -> LabelMatcher:
    """A matcher from its YAML value; raises ValueError with what is wrong."""
    if isinstance(spec, list):
        if not spec or not all(isinstance(v, (str, int, float)) for v in spec):
            raise ValueError(f"expected a non-empty list of strings, got {spec!r}")
        return LabelMatcher(label, "in", tuple(str(v) for v in spec))
    if isinstance(spec, bool) or not isinstance(spec, (str, int, float)):
        raise ValueError(f"expected a string, an operator and a string, or a list, "
                         f"got {spec!r}")
    text = str(spec)
    m = _OP.match(text)
    op, value = (m.group(1), m.group(2)) if m else ("=", text)
    if op in ("=~", "!~"):
        try:
            return LabelMatcher(label, op, value, compile_pattern(value))
        except PatternError as exc:
            raise ValueError(str(exc)) from None
    return LabelMatcher(label, op, value)


@dataclass(frozen=True)
class Selector:
    """Label matchers plus, for logs, a severity filter and body substrings or regex."""

    matchers: tuple[LabelMatcher, ...] = ()
    min_severity: int = 0
    severities: tuple[int, ...] = ()
    contains: tuple[str, ...] = ()
    regex: str = ""
    _regex: Pattern | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.regex and self._regex is None:
            object.__setattr__(self, "_regex", compile_pattern(self.regex))

    def mask(self, batch: Batch) -> np.ndarray:
        """Which records of the batch this selector selects (cheap tests first: column
        labels over the batch's distinct values, then attributes of the records still
        selected only, then severities and bodies)."""
        keep = np.ones(batch.n, dtype=bool)
        for matcher in self.matchers:
            if not matcher.label.startswith(ATTRIBUTE_PREFIX):
                keep &= matcher.mask(batch)
        for matcher in self.matchers:
            if matcher.label.startswith(ATTRIBUTE_PREFIX) and keep.any():
                rows = np.flatnonzero(keep)
                values = batch.attribute_at(matcher.label[len(ATTRIBUTE_PREFIX):], rows)
                keep[rows] = np.fromiter((matcher.test(v) for v in values), dtype=bool,
                                         count=rows.size)
        if self.min_severity:
            keep &= batch.severity_number() >= self.min_severity
        if self.severities:
            keep &= np.isin(batch.severity_number(), self.severities)
        if (self.contains or self._regex is not None) and keep.any():
            rows = np.flatnonzero(keep)
            bodies = batch.bodies()
            subs, rx = self.contains, self._regex
            hits = np.fromiter(
                ((not subs or any(s in bodies[i] for s in subs))
                 and (rx is None or rx.search(bodies[i])) for i in rows.tolist()),
                dtype=bool, count=rows.size)
            keep[rows[~hits]] = False
        return keep

    def entity(self) -> str:
        """The metric name or operation when the selector pins exactly one."""
        for m in self.matchers:
            if m.label == "name" and m.op == "=":
                return str(m.value)
        return ""

    def describe(self) -> str:
        """A one-line rendering for evidence and CLI output."""
        parts = [m.text() for m in self.matchers]
        if self.min_severity:
            parts.append(f"severity>={_severity_name(self.min_severity)}")
        if self.severities:
            parts.append(f"severity in ({', '.join(map(_severity_name, self.severities))})")
        parts += [f'body contains "{s}"' for s in self.contains]
        if self.regex:
            parts.append(f'body=~"{self.regex}"')
        return "{" + ", ".join(parts) + "}"


def _severity_name(number: int) -> str:
    return next((k for k, v in SEVERITY_NUMBER.items() if v == number), str(number))


def _severity(text: Any) -> int:
    name = str(text).strip().upper()
    name = SEVERITY_ALIASES.get(name, name)
    if name not in SEVERITY_NUMBER:
        raise ValueError(f"unknown severity {text!r}; expected one of {', '.join(SEVERITIES)}")
    return SEVERITY_NUMBER[name]


def parse_selector(signal: str, data: Any, where: str, report: Report) -> Selector:
    """Parse a ``select`` mapping for ``signal``; problems go to ``report(field, msg)``."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        report(where, f"expected a mapping of matchers, got {data!r}")
        return Selector()
    matchers: list[LabelMatcher] = []
    kwargs: dict[str, Any] = {}
    for key, spec in data.items():
        here = f"{where}.{key}"
        if key not in SELECTOR_KEYS[signal]:
            report(here, f"unknown key for {signal}; expected one of "
                         f"{', '.join(SELECTOR_KEYS[signal])}")
            continue
        try:
            if key == "attributes":
                if not isinstance(spec, Mapping) or not spec:
                    raise ValueError(f"expected a mapping of attribute matchers, got {spec!r}")
                for attr, aspec in spec.items():
                    try:
                        matchers.append(parse_matcher(f"{ATTRIBUTE_PREFIX}{attr}", aspec))
                    except ValueError as exc:
                        report(f"{here}.{attr}", str(exc))
            elif key == "severity":
                if isinstance(spec, list):
                    kwargs["severities"] = tuple(sorted({_severity(s) for s in spec}))
                else:
                    kwargs["min_severity"] = _severity(str(spec).lstrip(">= "))
            elif key == "contains":
                subs = [spec] if isinstance(spec, str) else spec
                if not isinstance(subs, list) or not subs or not all(
                        isinstance(s, str) and s for s in subs):
                    raise ValueError(f"expected a string or a list of strings, got {spec!r}")
                kwargs["contains"] = tuple(subs)
            elif key == "regex":
                if not isinstance(spec, str) or not spec:
                    raise ValueError(f"expected a regular expression string, got {spec!r}")
                try:
                    kwargs["_regex"] = compile_pattern(spec)
                except PatternError as exc:
                    raise ValueError(str(exc)) from None
                kwargs["regex"] = spec
            else:
                matchers.append(parse_matcher(canonical_label(signal, key), spec))
        except ValueError as exc:
            report(here, str(exc))
    return Selector(tuple(matchers), **kwargs)

