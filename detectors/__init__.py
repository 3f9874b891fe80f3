"""Windowed rule detectors: rule model, YAML loading and validation, window aggregation,
evaluators and the engine that turns one service's records into detections.

Pure, deterministic logic (numpy, no Faust, no clock)::

    ruleset = load_rules(builtin_rule_paths())
    engine = RuleEngine(ruleset, allowed_lateness_ms=60_000)
    state = engine.new_state()                       # one per service
    state, detections, stats = engine.process("metrics", columns, state)
    state, detections = engine.advance(state, watermark_ms)
    blob = state.to_bytes(); state = ServiceState.from_bytes(blob)
"""

from detectors.engine import ProcessStats, RuleEngine
from detectors.loading import (
    RuleFileError,
    builtin_rule_paths,
    load_rules,
    parse_rule_text,
    parse_rules,
)
from detectors.rules import (
    AGGREGATIONS,
    KINDS,
    WINDOW_TYPES,
    Baseline,
    Condition,
    Rule,
    RuleSet,
    Window,
)
from detectors.selectors import LabelMatcher, Selector
from detectors.state import RuleStateError, ServiceState
from pipeline.events.durations import format_duration
from pipeline.events.durations import parse_duration_ms as parse_duration

__all__ = [
    "AGGREGATIONS",
    "KINDS",
    "WINDOW_TYPES",
    "Baseline",
    "Condition",
    "LabelMatcher",
    "ProcessStats",
    "Rule",
    "RuleEngine",
    "RuleFileError",
    "RuleSet",
    "Selector",
    "ServiceState",
    "RuleStateError",
    "Window",
    "builtin_rule_paths",
    "format_duration",
    "load_rules",
    "parse_duration",
    "parse_rule_text",
    "parse_rules",
]
