"""Parsers of single rule fields (durations, conditions, windows, baselines, labels ...).

Each takes the raw YAML value and a ``report(field, message)`` callback, and returns the
parsed value or None after reporting what is wrong.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from detectors.columns import ATTRIBUTE_PREFIX, LABEL_COLUMNS, canonical_label, is_label
from detectors.rules import AGGREGATIONS, WINDOW_TYPES, ZERO_FILLED, Baseline, Condition, Window
from pipeline.events.durations import parse_duration_ms

Report = Callable[[str, str], None]


def unknown_key(key: object, allowed: tuple[str, ...]) -> str:
    """The message for an unknown key, with a close match when there is one."""
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key{hint} (expected one of {', '.join(allowed)})"


def duration_field(data: Mapping, key: str, report: Report, where: str = "") -> int | None:
    try:
        return parse_duration_ms(data[key])
    except ValueError as exc:
        report(where or key, str(exc))
        return None


def condition_field(data: Mapping, key: str, report: Report, where: str = "") -> Condition | None:
    try:
        return Condition.parse(data[key])
    except ValueError as exc:
        report(where or key, str(exc))
        return None


def parse_window(data: Any, report: Report) -> Window | None:
    if not isinstance(data, Mapping):
        report("window", f"expected a mapping like {{type: hopping, size: 5m, step: 1m}}, "
                         f"got {data!r}")
        return None
    for key in data:
        if key not in ("type", "size", "step"):
            report(f"window.{key}", unknown_key(key, ("type", "size", "step")))
    wtype = data.get("type", "hopping" if "step" in data else "tumbling")
    if wtype not in WINDOW_TYPES:
        report("window.type", f"expected one of {', '.join(WINDOW_TYPES)}, got {wtype!r}")
        return None
    if "size" not in data:
        report("window.size", "missing (e.g. size: 5m)")
        return None
    size = duration_field(data, "size", report, "window.size")
    step = duration_field(data, "step", report, "window.step") if "step" in data else None
    if size is None or ("step" in data and step is None):
        return None
    if size <= 0:
        report("window.size", f"must be > 0, got {data['size']!r}")
        return None
    if wtype == "sliding":
        if step is not None:
            report("window.step", "sliding windows are evaluated at every record and at "
                                  "every record leaving the window; they take no step")
        return Window("sliding", size, 0)
    if wtype == "tumbling":
        if step is not None and step != size:
            report("window.step", f"a tumbling window's step is its size ({data['size']}); "
                                  "use type: hopping for overlapping windows")
        return Window("tumbling", size, size)
    if step is None:
        report("window.step", "missing: a hopping window needs a step (e.g. step: 1m)")
        return None
    if step <= 0 or step > size:
        report("window.step", f"must be > 0 and <= size {data['size']}, got {data['step']!r}")
        return None
    if size % step:
        report("window.step", f"size {data['size']} is not a multiple of step {data['step']}")
        return None
    return Window("hopping", size, step)


def parse_baseline(data: Any, report: Report) -> Baseline | None:
    keys = ("halflife", "warmup", "level", "ratio", "clear_ratio")
    if not isinstance(data, Mapping):
        report("baseline", f"expected a mapping with {', '.join(keys)}, got {data!r}")
        return None
    for key in data:
        if key not in keys:
            report(f"baseline.{key}", unknown_key(key, keys))
    if "halflife" not in data:
        report("baseline.halflife", "missing (e.g. halflife: 1h)")
        return None
    halflife = duration_field(data, "halflife", report, "baseline.halflife")
    warmup = (duration_field(data, "warmup", report, "baseline.warmup") if "warmup" in data
              else halflife)
    level = condition_field(data, "level", report, "baseline.level") if "level" in data else None
    ratio = condition_field(data, "ratio", report, "baseline.ratio") if "ratio" in data else None
    clear_ratio = (condition_field(data, "clear_ratio", report, "baseline.clear_ratio")
                   if "clear_ratio" in data else None)
    ratio = _fraction(ratio, "baseline.ratio", report)
    clear_ratio = _fraction(clear_ratio, "baseline.clear_ratio", report)
    if clear_ratio is not None and ratio is None:
        report("baseline.clear_ratio", "needs a ratio condition to be the clear side of")
    elif clear_ratio is not None and ratio is not None and clear_ratio.overlaps(ratio):
        report("baseline.clear_ratio", f"{clear_ratio.text} overlaps ratio {ratio.text}: a "
                                       "value could both fire and clear")
    if "level" not in data and "ratio" not in data:
        report("baseline", "give level (a condition on the usual value) and/or ratio "
                           "(a condition on value / usual value)")
    if halflife is not None and halflife <= 0:
        report("baseline.halflife", "must be > 0")
    if halflife is None or warmup is None or halflife <= 0:
        return None
    return Baseline(halflife, warmup, level, ratio, clear_ratio)


def _fraction(cond: Condition | None, where: str, report: Report) -> Condition | None:
    """A condition on value / usual value, a unit (``60%``) converted to a fraction."""
    if cond is None or not cond.unit:
        return cond
    try:
        return cond.in_unit("1")
    except ValueError:
        report(where, f"{cond.text}: value / usual value is a fraction (e.g. 0.6 or 60%)")
        return None


def string_list(data: Mapping, key: str, report: Report) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        report(key, f"expected a list of strings, got {value!r}")
        return ()
    return tuple(value)


def parse_group_by(value: Any, signal: str, report: Report) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        report("group_by", f"expected a list of labels, got {value!r}")
        return ("service",)
    out: list[str] = []
    for label in value:
        if not is_label(signal, label):
            report("group_by", f"unknown label {label!r} for {signal}; expected "
                               f"{', '.join(LABEL_COLUMNS[signal])} or "
                               f"{ATTRIBUTE_PREFIX}<key>")
        elif canonical_label(signal, label) in out:
            report("group_by", f"label {label!r} listed twice")
        else:
            out.append(canonical_label(signal, label))
    return tuple(out)


def parse_aggregation(data: Mapping, kind: str, signal: str, report: Report) -> str | None:
    agg = data.get("aggregation")
    if kind in ("trend", "exhaustion"):
        if agg is not None:
            report("aggregation", f"{kind} rules fit a least-squares line; they take no "
                                  "aggregation")
        return kind
    if kind == "log_count":
        if agg not in (None, "count"):
            report("aggregation", f"log_count counts records; got {agg!r}")
        return "count"
    if kind == "ratio":
        agg = agg or ("sum" if signal == "metrics" else "count")
        if agg not in ("count", "sum"):
            report("aggregation", f"a ratio divides counts or sums; expected count or sum, "
                                  f"got {agg!r}")
            return None
        return agg
    if agg is None:
        report("aggregation", f"missing; expected one of {', '.join(AGGREGATIONS)}")
        return None
    if agg not in AGGREGATIONS:
        report("aggregation", f"unknown aggregation {agg!r}; expected one of "
                              f"{', '.join(AGGREGATIONS)}")
        return None
    if signal == "logs" and agg not in ZERO_FILLED:
        report("aggregation", f"log records have no value; expected count, sum or rate, "
                              f"got {agg!r}")
        return None
    return agg


def parse_clear(data: Mapping, condition: Condition | None, report: Report) -> Condition | None:
    if "clear" in data and "hysteresis" in data:
        report("hysteresis", "give clear or hysteresis, not both")
        return None
    if "clear" in data:
        clear = condition_field(data, "clear", report)
        if clear is not None and condition is not None:
            try:
                clear = clear.in_unit(condition.unit)
            except ValueError as exc:
                report("clear", str(exc))
                return None
        if clear is not None and condition is not None and clear.overlaps(condition):
            report("clear", f"{clear.text} overlaps the condition {condition.text}: a value "
                            "could both fire and clear")
            return None
        return clear
    if "hysteresis" in data:
        h = data["hysteresis"]
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not 0 < h < 1:
            report("hysteresis", f"expected a fraction between 0 and 1 (0.1 = clear 10% "
                                 f"below the threshold), got {h!r}")
            return None
        if condition is None:
            return None
        if condition.op not in (">", ">=", "<", "<=") or condition.threshold == 0:
            report("hysteresis", f"needs a condition with >, >=, < or <= and a non-zero "
                                 f"threshold, got {condition.text}; use clear instead")
            return None
        t = condition.threshold
        if condition.op in (">", ">="):
            return Condition("<", t - abs(t) * h, condition.unit)
        return Condition(">", t + abs(t) * h, condition.unit)
    return None
