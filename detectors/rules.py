"""The rule model: conditions, windows, baselines, rules and rule sets (all frozen).

Rules are built by :mod:`detectors.loading` from YAML; the engine only reads them. A rule's
``digest`` covers what decides its evaluation (selection, grouping, window, aggregation,
conditions, ``for``, baseline) but not its presentation (severity, texts, confidence), so
editing a title or a runbook line keeps the rule's windows and firing state on reload.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from detectors.selectors import Selector
from pipeline.events.durations import format_duration
from pipeline.events.units import factor, split_quantity

KINDS = ("threshold", "ratio", "trend", "exhaustion", "absence", "log_count")
FITTED = frozenset({"trend", "exhaustion"})
"""Kinds whose value comes from a least-squares line over the window."""
AGGREGATIONS = ("count", "sum", "mean", "min", "max", "last", "rate", "p50", "p95", "p99")
ZERO_FILLED = frozenset({"count", "sum", "rate"})
"""Aggregations whose value over an empty window is 0 (so a burst that ends resolves)."""
PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
WINDOW_TYPES = ("tumbling", "hopping", "sliding")

_OPS = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal,
        "==": np.equal, "!=": np.not_equal}
_NEGATE = {">": "<=", ">=": "<", "<": ">=", "<=": ">", "==": "!=", "!=": "=="}
_CONDITION = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class Condition:
    """A comparison with a threshold, e.g. ``> 0.05``, ``> 1000ms`` or ``> 80%``.

    ``unit`` is the threshold's unit as written ("" for a bare number): the engine
    converts each series to it before comparing (see :mod:`pipeline.events.units`).
    """

    op: str
    threshold: float
    unit: str = ""

    @classmethod
    def parse(cls, text: object) -> Condition:
        """Parse ``"> 0.05"`` or ``"> 1s"``; raises ValueError saying what was expected."""
        m = _CONDITION.match(text) if isinstance(text, str) else None
        if m:
            try:
                number, unit = split_quantity(m.group(2))
            except ValueError as exc:
                if "unknown unit" in str(exc):
                    raise ValueError(f"{text!r}: {exc}") from None
            else:
                return cls(m.group(1), number, unit)
        raise ValueError(f"expected an operator (>, >=, <, <=, ==, !=) and a number with an "
                         f"optional unit, quoted, e.g. \"> 0.05\" or \"> 1000ms\"; "
                         f"got {text!r}")

    def holds(self, values: np.ndarray | float) -> np.ndarray:
        """Element-wise test; NaN (no data) never holds."""
        values = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return _OPS[self.op](values, self.threshold) & ~np.isnan(values)

    def negated(self) -> Condition:
        """The complementary condition (the default clear condition)."""
        return Condition(_NEGATE[self.op], self.threshold, self.unit)

    def overlaps(self, other: Condition) -> bool:
        """Whether some value satisfies both conditions."""
        a, b = self.threshold, other.threshold
        d = max(abs(a), abs(b), 1.0) * 1e-9
        probes = np.array([a, b, (a + b) / 2, a - d, a + d, b - d, b + d, -1e300, 1e300])
        return bool((self.holds(probes) & other.holds(probes)).any())

    @property
    def text(self) -> str:
        """``"> 0.05"``, ``"> 1000ms"``."""
        return f"{self.op} {self.threshold:g}{'' if self.unit == '1' else self.unit}"

    def in_unit(self, unit: str) -> Condition:
        """The same condition with its threshold in ``unit`` (a bare number is taken as
        already in it); raises ValueError when the units do not convert."""
        if not self.unit or self.unit == unit:
            return Condition(self.op, self.threshold, unit)
        f = factor(self.unit, unit)
        if not unit or math.isnan(f):
            raise ValueError(f"{self.text} is in {self.unit}, which does not convert to "
                             f"{unit or 'a bare number'}")
        return Condition(self.op, self.threshold * f, unit)


@dataclass(frozen=True)
class Window:
    """Event-time window: ``size_ms``, evaluated every ``step_ms`` (0 for sliding)."""

    type: str
    size_ms: int
    step_ms: int

    @property
    def panes(self) -> int:
        """Panes (steps) per window; sliding windows have none."""
        return self.size_ms // self.step_ms if self.step_ms else 0

    @property
    def text(self) -> str:
        """``"hopping 5m every 1m"``."""
        if self.type == "hopping":
            return f"hopping {format_duration(self.size_ms)} every {format_duration(self.step_ms)}"
        return f"{self.type} {format_duration(self.size_ms)}"


@dataclass(frozen=True)
class Baseline:
    """The series' usual level: a time-decayed mean of past windows where the condition
    did not hold. ``level`` gates on the usual level, ``ratio`` on value / usual;
    ``clear_ratio`` also resolves a firing series once value / usual satisfies it."""

    halflife_ms: int
    warmup_ms: int
    level: Condition | None = None
    ratio: Condition | None = None
    clear_ratio: Condition | None = None


@dataclass(frozen=True)
class Rule:
    """One detector rule; see the README's rule-file section for the YAML."""

    name: str
    signal: str
    kind: str = "threshold"
    select: Selector = field(default_factory=Selector)
    numerator: Selector | None = None
    denominator: Selector | None = None
    group_by: tuple[str, ...] = ("service",)
    window: Window | None = None
    aggregation: str = ""
    condition: Condition | None = None
    clear: Condition | None = None
    for_ms: int = 0
    baseline: Baseline | None = None
    min_samples: int = 1
    min_events: float = 0.0  # ratio rules: the numerator's least total for the condition
    min_fit: float = 0.0
    # exhaustion rules: the level at which the resource runs out, in capacity_unit (each
    # series is converted to it), or NaN when capacity_select picks the limit's rows
    capacity: float = math.nan
    capacity_unit: str = ""
    capacity_select: Selector | None = None
    severity: str = "medium"
    category: str = "performance"
    title: str = ""
    description: str = ""
    symptoms: tuple[str, ...] = ()
    potential_causes: tuple[str, ...] = ()
    confidence: float = 1.0
    # whose trouble a firing shows: "own" (its service's), or "callers" (the services
    # calling it: traffic that stops arriving was stopped upstream)
    points_at: str = "own"
    source: str = ""
    digest: str = ""

    @property
    def zero_filled(self) -> bool:
        """Whether an empty window counts as 0 (counts, sums, rates) or as no data."""
        return self.kind in ("threshold", "log_count") and self.aggregation in ZERO_FILLED

    @cached_property
    def clear_condition(self) -> Condition:
        """When a firing series resolves: ``clear`` or the negated condition."""
        if self.clear is not None:
            return self.clear
        assert self.condition is not None, "absence rules have no clear condition"
        return self.condition.negated()

    @property
    def unit(self) -> str:
        """The unit values are compared in ("" : as the series reports them)."""
        return self.condition.unit if self.condition is not None else ""

    @property
    def series_unit(self) -> str:
        """The unit each record's value is converted to ("" : as reported): the
        condition's for thresholds, the capacity's for exhaustion rules."""
        return self.capacity_unit if self.kind == "exhaustion" else self.unit

    @property
    def converts(self) -> bool:
        """Whether the engine converts each record's value to :attr:`series_unit` first."""
        if self.kind == "exhaustion":
            return self.capacity_unit != "" and self.capacity_select is None
        return self.unit not in ("", "1") and self.kind == "threshold" \
            and self.signal != "logs" and self.aggregation not in ("count", "rate")

    @property
    def entity(self) -> str:
        """What the series is about beyond service/host when the selector pins it."""
        return self.select.entity() or (self.numerator.entity() if self.numerator else "")


@dataclass(frozen=True)
class RuleSet:
    """Validated rules with the version of the files they came from."""

    rules: tuple[Rule, ...]
    version: str
    sources: tuple[str, ...] = ()

    @cached_property
    def by_name(self) -> Mapping[str, Rule]:
        """Rules by name."""
        return {r.name: r for r in self.rules}

    def for_signal(self, signal: str) -> tuple[Rule, ...]:
        """The rules that read ``signal``."""
        return tuple(r for r in self.rules if r.signal == signal)
