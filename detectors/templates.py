"""Title and description templates: ``{field}`` or ``{field:spec}`` placeholders, checked at
load time.

A placeholder is a plain field name (no attribute or index access, no nested fields), with
an optional ``!s`` or ``!r`` conversion and a standard format spec whose width and precision
are bounded, so a rule file can neither reach into Python objects nor ask for a huge string.
Rendering goes through the same parser, never through ``str.format`` on the raw template.

>>> render("{service}: error rate {value:.1%} > {threshold:.0%}",
...        {"service": "orders", "value": 0.123, "threshold": 0.05})
'orders: error rate 12.3% > 5%'
>>> check_template("{value.__class__}", template_fields([]))[0][:60]
'placeholder {value.__class__}: attribute and index access ar'
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Iterable, Mapping
from typing import Any

NUMBER_FIELDS = ("value", "threshold", "clear", "samples", "baseline", "confidence")
TEXT_FIELDS = ("rule", "service", "host", "entity", "window", "for", "severity", "category",
               "aggregation", "signal", "condition", "unit")
MAX_WIDTH = 100
"""Largest field width a template may ask for (``{service:>30}``)."""
MAX_PRECISION = 20
"""Largest precision (``{value:.3f}``); a double carries 17 significant digits."""
CONVERSIONS = ("s", "r")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# The standard format spec: [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_SPEC = re.compile(r"(?:[^{}]?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[,_]?"
                   r"(?:\.(?P<precision>\d+))?[bcdeEfFgGnosxX%]?\Z", re.S)


def template_fields(labels: Iterable[str]) -> frozenset[str]:
    """Placeholders a rule's templates may use: the standard ones plus its label names."""
    return frozenset(NUMBER_FIELDS + TEXT_FIELDS) | {x for x in labels if _IDENT.match(x)}


def _placeholder_problem(name: str, conversion: str | None, spec: str,
                         fields: Collection[str]) -> str | None:
    """What is wrong with one placeholder (syntax only), or None."""
    shown = "{" + name + (f"!{conversion}" if conversion else "") + (
        f":{spec}" if spec else "") + "}"
    if not name or name.isdigit():
        return (f"positional placeholder {shown} is not allowed; use a name such as "
                "{value}")
    if not _IDENT.match(name):
        return (f"placeholder {shown}: attribute and index access are not allowed; use a "
                "plain field name such as {value} or {service}")
    if name not in fields:
        return f"unknown placeholder {shown}; expected one of {', '.join(sorted(fields))}"
    if conversion is not None and conversion not in CONVERSIONS:
        return f"placeholder {shown}: conversion !{conversion} is not allowed; use !s or !r"
    if "{" in spec or "}" in spec:
        return f"placeholder {shown}: nested fields in a format spec are not allowed"
    m = _SPEC.match(spec)
    if m is None:
        return f"placeholder {shown}: {spec!r} is not a format spec such as '.1f' or '>10'"
    width, precision = int(m["width"] or 0), int(m["precision"] or 0)
    if width > MAX_WIDTH:
        return f"placeholder {shown}: width {width} is above the limit of {MAX_WIDTH}"
    if precision > MAX_PRECISION:
        return (f"placeholder {shown}: precision {precision} is above the limit of "
                f"{MAX_PRECISION}")
    return None


def check_template(text: str, fields: frozenset[str]) -> list[str]:
    """Problems with a template (unknown or unsafe placeholders, bad format specs), each
    naming the template; empty if fine."""
    problems: list[str] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        return [f"bad template {text!r}: {exc}"]
    sample: dict[str, Any] = {f: 0.5 for f in NUMBER_FIELDS}
    sample.update({f: "x" for f in fields if f not in NUMBER_FIELDS})
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        problem = _placeholder_problem(name, conversion, spec or "", fields)
        if problem is None:
            try:
                _format(sample[name], conversion, spec or "")
            except (ValueError, TypeError) as exc:
                kind = "a number" if name in NUMBER_FIELDS else "text"
                problem = f"placeholder {{{name}:{spec}}}: bad format for {kind}: {exc}"
        if problem is not None:
            shown = text if len(text) <= 80 else text[:77] + "…"
            problems.append(f"{problem} (in template {shown!r})")
    return problems


def render(text: str, context: Mapping[str, Any]) -> str:
    """Fill a template; a template that is not valid, or a value that does not fit its
    format, leaves the template text as it is (nothing is looked up beyond plain names)."""
    pieces: list[str] = []
    try:
        for literal, name, spec, conversion in string.Formatter().parse(text):
            pieces.append(literal)
            if name is None:
                continue
            if _placeholder_problem(name, conversion, spec or "", context.keys()):
                return text
            pieces.append(_format(context[name], conversion, spec or ""))
    except (ValueError, TypeError, KeyError):
        return text
    return "".join(pieces)


def _format(value: Any, conversion: str | None, spec: str) -> str:
    if conversion == "r":
        value = repr(value)
    elif conversion == "s":
        value = str(value)
    return format(value, spec)
