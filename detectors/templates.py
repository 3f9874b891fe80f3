"""Title and description templates: ``str.format`` placeholders, checked at load time.

>>> render("{service}: error rate {value:.1%} > {threshold:.0%}",
...        {"service": "orders", "value": 0.123, "threshold": 0.05})
'orders: error rate 12.3% > 5%'
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from typing import Any

NUMBER_FIELDS = ("value", "threshold", "clear", "samples", "baseline", "confidence")
TEXT_FIELDS = ("rule", "service", "host", "entity", "window", "for", "severity", "category",
               "aggregation", "signal", "condition")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def template_fields(labels: Iterable[str]) -> frozenset[str]:
    """Placeholders a rule's templates may use: the standard ones plus its label names."""
    return frozenset(NUMBER_FIELDS + TEXT_FIELDS) | {x for x in labels if _IDENT.match(x)}


def check_template(text: str, fields: frozenset[str]) -> list[str]:
    """Problems with a template (unknown placeholders, bad format specs); empty if fine."""
    problems: list[str] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        return [f"bad template {text!r}: {exc}"]
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        root = re.split(r"[.\[]", name, maxsplit=1)[0]
        if not root or root.isdigit():
            problems.append(f"positional placeholder {{{name}}} is not allowed; use a name "
                            f"such as {{value}}")
            continue
        if root not in fields:
            problems.append(f"unknown placeholder {{{name}}}; expected one of "
                            f"{', '.join(sorted(fields))}")
            continue
        sample: dict[str, Any] = {f: 0.5 for f in NUMBER_FIELDS}
        sample.update({f: "x" for f in fields if f not in NUMBER_FIELDS})
        piece = "{" + name + (f"!{conversion}" if conversion else "") + (
            f":{spec}" if spec else "") + "}"
        try:
            piece.format_map(sample)
        except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
            kind = "a number" if root in NUMBER_FIELDS else "text"
            problems.append(f"placeholder {piece}: bad format for {kind}: {exc}")
    return problems


def render(text: str, context: Mapping[str, Any]) -> str:
    """Fill a (validated) template; an unexpected failure returns the template itself."""
    try:
        return text.format_map(context)
    except (ValueError, KeyError, IndexError, AttributeError, TypeError):
        return text
