"""Frozen, validated settings of the correlator, named after Alertmanager's.

Every ``*_ms`` field is a duration in milliseconds; :meth:`CorrelatorSettings.from_mapping`
also takes duration strings such as ``"30s"``, ``"5m"``, ``"4h"``, ``"1d"`` or ``"1h30m"``
(e.g. from a TOML section). Errors name the field and the bad value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import SettingsError
from pipeline.events import durations
from pipeline.events.detection import CATEGORIES
from pipeline.events.matchers import Matcher, MatcherError, parse_matchers

MINUTE_MS = 60_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class InhibitRule:
    """Alertmanager's inhibit rule: while a problem matching ``source`` is open, problems
    matching ``target`` with the same values for the ``equal`` names are not alerted."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any], where: str = "inhibit_rule") -> InhibitRule:
        """A rule from ``{"source": [...], "target": [...], "equal": [...]}``."""
        try:
            return cls(parse_matchers(obj.get("source", ()), f"{where}.source"),
                       parse_matchers(obj.get("target", ()), f"{where}.target"),
                       tuple(str(x) for x in obj.get("equal", ())))
        except (MatcherError, AttributeError) as exc:
            raise SettingsError(f"correlator.{where}: {exc}") from None


@dataclass(frozen=True)
class CorrelatorSettings:
    """How detections become problems and when problems are alerted."""

    group_wait_ms: int = 30_000  # collect before a problem's first alert
    group_interval_ms: int = 5 * MINUTE_MS  # min gap between alerts about changes
    repeat_interval_ms: int = 4 * HOUR_MS  # re-alert an unacknowledged open problem
    resolve_timeout_ms: int = 30 * MINUTE_MS  # resolve when nothing fired for this long
    resolve_hold_ms: int = 5 * MINUTE_MS  # all members resolved this long → resolved
    reopen_window_ms: int = 30 * MINUTE_MS  # a recurrence this soon reopens, same id
    flap_window_ms: int = HOUR_MS  # reopens counted over this window …
    flap_threshold: int = 3  # … this many make a problem flapping
    flap_hold_ms: int = 15 * MINUTE_MS  # resolve hold of a flapping problem
    max_duration_ms: int = 24 * HOUR_MS  # a problem open longer is closed
    relatedness_window_ms: int = 10 * MINUTE_MS  # how close in time detections relate
    max_symptom_hops: int = 4  # how far up the call graph symptoms are folded
    escalate_spread: tuple[int, ...] = (3, 6)  # affected services raising severity a level
    escalate_after_ms: tuple[int, ...] = (HOUR_MS, 4 * HOUR_MS)  # open this long: +1 level
    deploy_lookback_ms: int = HOUR_MS  # a deploy this long before the first anomaly counts
    symptom_categories: tuple[str, ...] = ("availability", "performance", "connectivity",
                                           "coordination")  # propagate to callers
    cause_categories: tuple[str, ...] = ("resource", "configuration", "coordination",
                                         "security", "data")  # point at their own service
    relate_labels: tuple[str, ...] = ("trace_id", "deployment.id", "k8s.node.name")
    peer_labels: tuple[str, ...] = ("peer.service", "db.instance")
    max_root_causes: int = 5
    max_links_per_problem: int = 2000
    silence_retention_ms: int = 24 * HOUR_MS  # ended silences kept (listed) this long
    static_dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    inhibit_rules: tuple[InhibitRule, ...] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_ms") and f.name != "escalate_after_ms":
                _check_int(f.name, value, minimum=0)
        for name in ("flap_threshold", "max_symptom_hops", "max_root_causes",
                     "max_links_per_problem"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("escalate_spread", "escalate_after_ms"):
            value = tuple(getattr(self, name))
            for v in value:
                _check_int(name, v, minimum=1)
            if list(value) != sorted(set(value)):
                _fail(name, value, "strictly increasing numbers")
            object.__setattr__(self, name, value)
        for name in ("symptom_categories", "cause_categories", "relate_labels", "peer_labels"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                _fail(name, value, "a list of strings")
            object.__setattr__(self, name, tuple(value))
        for name in ("symptom_categories", "cause_categories"):
            unknown = [c for c in getattr(self, name) if c not in CATEGORIES]
            if unknown:
                _fail(name, unknown, f"categories among {', '.join(CATEGORIES)}")
        object.__setattr__(self, "static_dependencies",
                           _dependencies(self.static_dependencies))
        if not all(isinstance(r, InhibitRule) for r in self.inhibit_rules):
            _fail("inhibit_rules", self.inhibit_rules, "InhibitRule objects")
        object.__setattr__(self, "inhibit_rules", tuple(self.inhibit_rules))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CorrelatorSettings:
        """Settings from a plain mapping (a TOML section): durations may be ``"5m"``."""
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise SettingsError(f"setting correlator.{key}: unknown (expected one of "
                                    f"{', '.join(sorted(known))})")
            if key.endswith("_ms"):
                value = ([parse_duration_ms(v, key) for v in value]
                         if isinstance(value, (list, tuple)) else parse_duration_ms(value, key))
            elif key == "inhibit_rules":
                value = tuple(InhibitRule.from_wire(r, f"inhibit_rules[{i}]")
                              for i, r in enumerate(value))
            values[key] = value
        return cls(**values)


def parse_duration_ms(value: Any, name: str = "duration") -> int:
    """``1500`` (ms) or ``"500ms"``, ``"30s"``, ``"5m"``, ``"4h"``, ``"1d"``, ``"1h30m"`` as ms."""
    try:
        return durations.parse_duration_ms(value, ints_as_ms=True)
    except durations.DurationError as exc:
        _fail(name, value, exc.expected)


def _dependencies(value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        _fail("static_dependencies", value, "a mapping of caller to a list of callees")
    out: dict[str, tuple[str, ...]] = {}
    for caller, callees in value.items():
        if (not isinstance(caller, str) or isinstance(callees, str)
                or not isinstance(callees, Sequence)
                or not all(isinstance(c, str) for c in callees)):
            _fail(f"static_dependencies.{caller}", callees, "a list of service names")
        out[caller] = tuple(callees)
    return out


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(name, value, f"an integer >= {minimum}")


def _fail(name: str, value: Any, expected: str):
    raise SettingsError(f"setting correlator.{name}: expected {expected}, got {value!r}")
