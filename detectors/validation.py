"""Parse and validate one rule mapping from YAML, collecting every problem.

Each problem is reported as ``field``, ``message``; :mod:`detectors.loading` prefixes the
file and the rule name, giving ``file: rule 'name': field 'x': what is wrong``.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import orjson

from detectors.columns import ATTRIBUTE_PREFIX
from detectors.fields import (
    condition_field,
    duration_field,
    parse_aggregation,
    parse_baseline,
    parse_clear,
    parse_group_by,
    parse_window,
    string_list,
    unknown_key,
)
from detectors.rules import FITTED, KINDS, ZERO_FILLED, Baseline, Condition, Rule
from detectors.selectors import Selector, parse_selector
from detectors.templates import check_template, template_fields
from pipeline.events.columns import SIGNALS
from pipeline.events.detection import CATEGORIES, SEVERITIES
from pipeline.events.units import dimension, split_quantity

RULE_KEYS = ("name", "kind", "signal", "select", "numerator", "denominator", "group_by",
             "window", "aggregation", "condition", "clear", "hysteresis", "for", "baseline",
             "min_samples", "min_events", "min_fit", "capacity", "severity", "category", "title",
             "description", "symptoms", "potential_causes", "confidence", "points_at")
POINTS_AT = ("own", "callers")
EVALUATION_KEYS = ("kind", "signal", "select", "numerator", "denominator", "group_by",
                   "window", "aggregation", "condition", "clear", "hysteresis", "for",
                   "baseline", "min_samples", "min_events", "min_fit", "capacity")
"""Keys whose change resets a rule's state on reload (the rest is presentation)."""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*\Z")
Report = Callable[[str, str], None]


def digest(data: Mapping) -> str:
    """Hash of the evaluation-relevant part of a rule mapping."""
    relevant = {k: data.get(k) for k in EVALUATION_KEYS  # keys added later: only when
                if k not in ("min_events", "capacity") or k in data}  # given (digests kept)
    raw = orjson.dumps(relevant, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def _choice(value: object, choices: Sequence[str]) -> str:
    """What is wrong with a field that must be one of ``choices``."""
    if value is None:
        return f"missing: expected one of {', '.join(choices)}"
    return f"expected one of {', '.join(choices)}, got {value!r}"


def value_unit(condition: Condition, kind: str, signal: str, aggregation: str | None,
               report: Report) -> Condition | None:
    """The condition in the unit its rule's values are compared in, or None after
    reporting why its unit does not fit the rule.

    Threshold rules on metric values or span durations compare in the unit written
    (each series is converted to it); ratios and trends are fractions (``5%`` is 0.05);
    a ``rate`` aggregation is per second (``100/min`` is 1.67/s); counts have no unit.
    """
    dim = dimension(condition.unit)
    assert dim is not None, "Condition.parse admits known units only"
    want = None
    if kind == "exhaustion":
        want, why = "h", "an exhaustion rule compares a time to exhaustion (e.g. < 2h)"
    elif kind in ("ratio", "trend"):
        want, why = "1", f"a {kind} rule compares a fraction (e.g. 5%)"
    elif kind == "log_count" or signal == "logs" or aggregation == "count":
        report("condition", f"{condition.text}: counts have no unit; write a bare number")
        return None
    elif aggregation == "rate":
        want, why = "/s", "a rate aggregation is per second (e.g. 100/s)"
    elif signal == "traces" and dim[0] != "time":
        report("condition", f"{condition.text}: span values are durations; use a time unit "
                            "(ms, s ...) or a bare number of milliseconds")
        return None
    if want is None:
        return condition
    try:
        return condition.in_unit(want)
    except ValueError:
        report("condition", f"{condition.text}: {why}")
        return None


def baseline_units(baseline: Baseline, unit: str, report: Report) -> Baseline | None:
    """The baseline with ``level`` in the condition's unit."""
    if baseline.level is None:
        return baseline
    try:
        return replace(baseline, level=baseline.level.in_unit(unit))
    except ValueError as exc:
        report("baseline.level", str(exc))
        return None


def parse_capacity(data: Mapping, signal: str, report: Report
                   ) -> tuple[float, str, Selector | None]:
    """An exhaustion rule's capacity: a level with an optional unit (``100%``, ``8GiBy``)
    or a selection of the limit's rows (``{metric: k8s.container.memory_limit}``)."""
    value = data.get("capacity")
    if value is None:
        report("capacity", "missing: the level at which the resource runs out, e.g. "
                           "capacity: 100% (a utilization) or capacity: {metric: "
                           "k8s.container.memory_limit} (the limit's series, same group)")
    elif isinstance(value, Mapping):
        if not value:
            report("capacity", "an empty selection would take the usage as its own limit")
        return math.nan, "", parse_selector(signal, value, "capacity", report)
    elif isinstance(value, bool) or not isinstance(value, (int, float, str)):
        report("capacity", f"expected a level such as 100% or a mapping of matchers, "
                           f"got {value!r}")
    else:
        try:
            number, unit = split_quantity(str(value))
        except ValueError as exc:
            report("capacity", str(exc))
        else:
            if not 0 < number < math.inf:
                report("capacity", f"expected a level > 0, got {value!r}")
            elif dimension(unit) is not None and dimension(unit)[0] == "time":
                report("capacity", f"{value!r} is a time; the capacity is a level of the "
                                   "series (the condition is the time)")
            else:
                return number, unit, None
    return math.nan, "", None


def parse_rule(data: Mapping, source: str, report: Report) -> Rule | None:
    """Build a :class:`Rule` from its mapping, or report every problem and return None."""
    count = [0]

    def note(where: str, message: str) -> None:
        count[0] += 1
        report(where, message)

    for key in data:
        if key not in RULE_KEYS:
            note(str(key), unknown_key(key, RULE_KEYS))
    name = data.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        note("name", f"expected a name of letters, digits, '_', '.', ':' or '-', "
                     f"got {name!r}")
    kind = data.get("kind", "threshold")
    if kind not in KINDS:
        note("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
        return None
    signal = data.get("signal", "logs" if kind == "log_count" else None)
    if signal not in SIGNALS:
        note("signal", _choice(signal, SIGNALS))
        return None
    if kind == "log_count" and signal != "logs":
        note("signal", "log_count rules read logs")
    if kind in FITTED and signal == "logs":
        note("signal", f"{kind} needs numeric values: metrics or traces (span durations)")
    capacity, capacity_unit, capacity_select = math.nan, "", None
    if kind == "exhaustion":
        capacity, capacity_unit, capacity_select = parse_capacity(data, signal, note)
    elif "capacity" in data:
        note("capacity", "only exhaustion rules take a capacity")

    select = parse_selector(signal, data.get("select"), "select", note)
    numerator = denominator = None
    if kind == "ratio":
        for side in ("numerator", "denominator"):
            if side not in data:
                note(side, "missing: a ratio rule divides a numerator selection by a "
                           "denominator selection (use {} for everything 'select' selects)")
        numerator = parse_selector(signal, data.get("numerator"), "numerator", note)
        denominator = parse_selector(signal, data.get("denominator"), "denominator", note)
    else:
        for side in ("numerator", "denominator"):
            if side in data:
                note(side, "only ratio rules have a numerator and a denominator")

    group_by = parse_group_by(data.get("group_by", ["service"]), signal, note)
    window = aggregation = condition = clear = baseline = None
    if kind == "absence":
        for key in ("window", "aggregation", "condition", "clear", "hysteresis", "baseline",
                    "min_samples"):
            if key in data:
                note(key, "absence rules fire when a series seen before has no data for "
                          f"'for'; they take no {key}")
    else:
        if "window" in data:
            window = parse_window(data["window"], note)
        else:
            note("window", "missing (e.g. window: {type: hopping, size: 5m, step: 1m})")
        aggregation = parse_aggregation(data, kind, signal, note)
        if "condition" in data:
            condition = condition_field(data, "condition", note)
            if condition is not None and condition.unit:
                condition = value_unit(condition, kind, signal, aggregation, note)
            elif condition is not None and kind == "exhaustion":
                condition = condition.in_unit("h")  # a bare number of hours
        else:
            note("condition", "missing (e.g. condition: \"> 0.05\")")
        clear = parse_clear(data, condition, note)
        if "baseline" in data:
            if kind in ("threshold", "ratio"):
                baseline = parse_baseline(data["baseline"], note)
                if baseline is not None and condition is not None:
                    baseline = baseline_units(baseline, condition.unit, note)
            else:
                note("baseline", "only threshold and ratio rules take a baseline")
    for_ms = duration_field(data, "for", note) if "for" in data else 0
    if kind == "absence" and "for" not in data:
        note("for", "missing: how long a series must be silent (e.g. for: 2m)")
    elif kind == "absence" and for_ms is not None and for_ms <= 0:
        note("for", "an absence rule needs a duration > 0")
    min_samples = data.get("min_samples", 1)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        note("min_samples", f"expected an integer >= 1, got {min_samples!r}")
    elif "min_samples" in data and aggregation in ZERO_FILLED and kind != "ratio":
        note("min_samples", f"not used with {aggregation}: an empty window counts as 0")
    min_events = data.get("min_events", 0)
    if "min_events" in data and kind != "ratio":
        note("min_events", "only ratio rules take min_events (the numerator's least total)")
    elif isinstance(min_events, bool) or not isinstance(min_events, (int, float)) \
            or not 0 <= min_events < math.inf:
        note("min_events", f"expected a number >= 0, got {min_events!r}")
    min_fit = data.get("min_fit", 0.0)
    if "min_fit" in data and kind not in FITTED:
        note("min_fit", "only trend and exhaustion rules take min_fit (the R² their "
                        "line must reach)")
    elif isinstance(min_fit, bool) or not isinstance(min_fit, (int, float)) \
            or not 0.0 <= min_fit < 1.0:
        note("min_fit", f"expected the R² of the trend line, from 0 to below 1, "
                        f"got {min_fit!r}")
    if condition is not None and kind == "exhaustion" and condition.op not in ("<", "<="):
        note("condition", f"{condition.text}: an exhaustion rule fires when the time left "
                          "is short; use < or <= (e.g. \"< 2h\")")
    if (condition is not None and kind in ("threshold", "log_count")
            and aggregation in ZERO_FILLED and bool(condition.holds(0.0))):
        note("condition", f"{condition.text} holds for an empty window ({aggregation} = 0); "
                          "use kind: absence to detect missing data")

    severity = data.get("severity")
    if severity not in SEVERITIES:
        note("severity", _choice(severity, SEVERITIES))
    category = data.get("category")
    if category not in CATEGORIES:
        note("category", _choice(category, CATEGORIES))
    confidence = data.get("confidence", 1.0)
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) \
            or not math.isfinite(confidence) or not 0.0 <= confidence <= 1.0:
        note("confidence", f"expected a number from 0 to 1, got {confidence!r}")
    points_at = data.get("points_at", "own")
    if points_at not in POINTS_AT:
        note("points_at", _choice(points_at, POINTS_AT))
    fields = template_fields(g[len(ATTRIBUTE_PREFIX):] if g.startswith(ATTRIBUTE_PREFIX)
                             else g for g in group_by)
    for key in ("title", "description"):
        text = data.get(key, "")
        if key == "title" and not text:
            note("title", "missing: a short text such as \"{service}: error rate {value:.1%}\"")
        elif not isinstance(text, str):
            note(key, f"expected a string, got {text!r}")
        else:
            for problem in check_template(text, fields):
                note(key, problem)
    symptoms = string_list(data, "symptoms", note)
    causes = string_list(data, "potential_causes", note)
    if count[0] or not isinstance(name, str):
        return None
    return Rule(
        name=name, signal=signal, kind=kind, select=select, numerator=numerator,
        denominator=denominator, group_by=group_by, window=window,
        aggregation=aggregation or "", condition=condition, clear=clear,
        for_ms=int(for_ms or 0), baseline=baseline, min_samples=int(min_samples),
        min_events=float(min_events),
        min_fit=float(min_fit), capacity=capacity, capacity_unit=capacity_unit,
        capacity_select=capacity_select,
        severity=str(severity), category=str(category), title=str(data["title"]),
        description=str(data.get("description", "")), symptoms=symptoms,
        potential_causes=causes, confidence=float(confidence), points_at=str(points_at),
        source=source,
        digest=digest(data))
