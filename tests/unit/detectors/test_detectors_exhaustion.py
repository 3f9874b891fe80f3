"""Exhaustion rules: the time until a window's least-squares line reaches a capacity (a
fixed level or a limit series), with explicit timestamps and exact expectations."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import yaml

from detectors import RuleEngine, RuleFileError, parse_rules
from detectors.closing import evaluate
from detectors.windows import record_items
from pipeline.events.detection import Detection

T0 = 1_699_999_200_000  # a whole hour, epoch ms
S, M, H = 1_000, 60_000, 3_600_000


def rule(**kw: Any) -> dict:
    base = {"name": "full", "kind": "exhaustion", "signal": "metrics",
            "select": {"metric": "=~ mem.*"}, "group_by": ["service", "host"],
            "window": {"type": "hopping", "size": "15m", "step": "1m"},
            "capacity": "100%", "condition": "< 2h", "min_samples": 12, "min_fit": 0.8,
            "severity": "high", "category": "resource",
            "title": "{host}: full in {value:.2f} {unit}"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def engine(*rules: dict) -> RuleEngine:
    return RuleEngine(parse_rules(yaml.safe_dump({"rules": list(rules)})),
                      allowed_lateness_ms=0, keepalive_ms=0)


def points(f, minutes: int, name: str = "mem", unit: str = "1", host: str = "h1",
           every_ms: int = 30 * S) -> list[tuple]:
    """(time, host, name, value, unit) every 30 s from T0 for ``minutes``."""
    return [(T0 + t, host, name, f(t / H), unit) for t in range(0, minutes * M, every_ms)]


def run(rows: list[tuple], *rules: dict, end_min: int = 0) -> list[Detection]:
    rows = sorted(rows, key=lambda r: r[0])
    cols = {"time": np.array([r[0] for r in rows], np.int64), "host": [r[1] for r in rows],
            "name": [r[2] for r in rows], "value": np.array([r[3] for r in rows]),
            "unit": [r[4] for r in rows], "service": ["svc"] * len(rows),
            "attributes": [{}] * len(rows)}
    eng = engine(*(rules or (rule(),)))
    state, found, _ = eng.process("metrics", cols, eng.new_state())
    if end_min:
        state, more = eng.advance(state, T0 + end_min * M)
        found += more
    return found


def test_time_to_exhaustion_is_the_lines_distance_to_capacity_over_its_slope() -> None:
    # 0.5 + 0.2/h as a 0..1 ratio, capacity 100 %: at a window ending e hours after T0
    # the line stands at 50 + 20 e %, so it reaches 100 % after (50 - 20 e) / 20 hours
    r = parse_rules(yaml.safe_dump({"rules": [rule()]})).rules[0]
    t = T0 + np.arange(0, 60 * M, 30 * S)
    v = 100 * (0.5 + 0.2 * (t - T0) / H)  # the engine converts "1" to the capacity's %
    items = record_items(r, np.zeros(t.size, np.int64), t, v)
    ev = evaluate(r, items, T0, T0 + 60 * M)
    full = (ev.start >= T0) & (ev.time <= T0 + 60 * M)  # windows full of points
    e = (ev.time[full] - T0) / H
    assert full.sum() > 30
    np.testing.assert_allclose(ev.value[full], (50 - 20 * e) / 20, rtol=1e-9)


def test_fires_when_the_projection_is_under_the_horizon_in_either_unit() -> None:
    ratio = points(lambda h: 0.5 + 0.2 * h, 60)
    percent = points(lambda h: 50 + 20 * h, 60, unit="%", host="h2")
    found = [d for d in run(ratio + percent, rule(condition="< 1.96h"))
             if d.state == "firing"]
    # under 1.96 h once 50 - 20 e < 39.2, i.e. e > 32.4 min: the first window ending after
    assert [(d.host, d.time) for d in found] == [("h1", T0 + 33 * M), ("h2", T0 + 33 * M)]
    assert found[0].observed == pytest.approx((50 - 20 * 33 / 60) / 20)
    assert found[0].title == f"h1: full in {(50 - 20 * 33 / 60) / 20:.2f} h"
    assert found[0].evidence["capacity"] == "100%" and found[0].evidence["unit"] == "h"


def test_flat_falling_noisy_or_slow_series_never_fire() -> None:
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.02, 120)
    rows = (points(lambda h: 0.9, 60, host="flat-high")  # high but not climbing
            + points(lambda h: 0.9 - 0.2 * h, 60, host="falling")
            + points(lambda h: 0.2 + 0.1 * h, 60, host="slow")  # full in > 7 h
            + [(T0 + i * 30 * S, "noisy", "mem", 0.6 + 0.05 * (i * 30 * S / H) + noise[i],
                "1") for i in range(120)])  # R² far below 0.8
    assert [d for d in run(rows) if d.state == "firing"] == []


def test_a_step_is_not_a_climb_but_a_rising_line_past_capacity_is_zero() -> None:
    step = points(lambda h: 0.3 if h < 0.2 else 0.9, 60, host="step")
    past = points(lambda h: 1.05 + 0.1 * h, 30, host="past")
    found = run(step + past, rule(condition="< 0.5h"))
    assert {d.host for d in found} == {"past"}
    assert found[0].observed == 0.0


def test_resolves_when_the_climb_stops() -> None:
    rows = points(lambda h: 0.5 + 0.4 * min(h, 0.5), 90)  # climbs half an hour, then flat
    found = run(rows, rule(clear="> 4h"), end_min=95)
    assert [d.state for d in found] == ["firing", "resolved"]
    assert found[1].time > T0 + 30 * M
    assert math.isinf(found[1].observed) or found[1].observed > 4


def test_capacity_from_a_limit_series_in_the_same_group() -> None:
    # usage in bytes climbing 1 GiB/h from 2 GiB towards a 4 GiB limit reported beside it:
    # at a window ending e hours after T0, (4 - 2 - e) / 1 hours are left
    gib = 1024.0 ** 3
    usage = points(lambda h: (2 + h) * gib, 60, name="mem.usage", unit="By")
    limit = points(lambda h: 4 * gib, 60, name="mem.limit", unit="By", every_ms=60 * S)
    other = points(lambda h: (2 + h) * gib, 60, name="mem.usage", unit="By", host="no-limit")
    r = rule(capacity={"metric": "mem.limit"}, condition="< 1.46h")
    found = [d for d in run(usage + limit + other, r) if d.state == "firing"]
    assert [(d.host, d.time) for d in found] == [("h1", T0 + 33 * M)]  # 2 - e < 1.46
    assert found[0].observed == pytest.approx(2 - 33 / 60)
    assert found[0].evidence["capacity"] == '{name="mem.limit"}'


@pytest.mark.parametrize(("change", "where", "problem"), [
    ({"capacity": None}, "capacity", "missing: the level at which"),
    ({"capacity": "100 parsecs"}, "capacity", "unknown unit"),
    ({"capacity": "2h"}, "capacity", "is a time"),
    ({"capacity": 0}, "capacity", "a level > 0"),
    ({"capacity": {}}, "capacity", "empty selection"),
    ({"capacity": [1]}, "capacity", "expected a level"),
    ({"condition": "> 2h"}, "condition", "use < or <="),
    ({"condition": "< 80%"}, "condition", "compares a time to exhaustion"),
    ({"clear": "< 3h"}, "clear", "overlaps"),
    ({"aggregation": "mean"}, "aggregation", "fit a least-squares line"),
    ({"signal": "logs", "select": {}}, "signal", "needs numeric values"),
    ({"min_fit": 1.0}, "min_fit", "from 0 to below 1"),
])
def test_invalid_exhaustion_rules_are_refused(change: dict, where: str, problem: str) -> None:
    with pytest.raises(RuleFileError) as info:
        parse_rules(yaml.safe_dump({"rules": [rule(**change)]}))
    assert any(f"field '{where}'" in p and problem in p for p in info.value.problems), \
        info.value.problems


def test_condition_and_clear_are_hours_whatever_the_time_unit() -> None:
    r = parse_rules(yaml.safe_dump({"rules": [rule(condition="< 90min", clear="> 3")]}))
    (x,) = r.rules
    assert (x.condition.threshold, x.condition.unit) == (1.5, "h")
    assert (x.clear_condition.threshold, x.clear_condition.unit) == (3.0, "h")
    assert (x.capacity, x.capacity_unit, x.converts) == (100.0, "%", True)


def test_a_line_needs_points_over_half_its_window() -> None:
    # a steep climb reported for six minutes, then silence: every window holds under half
    # a window of points (stale, or too short to tell a climb from noise) and says nothing
    climb = points(lambda h: 0.6 + 1.2 * h, 6)
    assert run(climb, rule(min_samples=3), end_min=30) == []
    # the same climb going on is projected once its points span half the window
    going = [d for d in run(points(lambda h: 0.6 + 1.2 * h, 20), rule(min_samples=3))
             if d.state == "firing"]
    assert [d.time for d in going][:1] == [T0 + 8 * M]


def _leak_then_restart(service: str, rng: np.random.Generator) -> list[tuple]:
    """A minute's metric rows at a time: memory climbing 0.50 -> 0.93 over an hour, one
    tick at 0.11 (OOM-killed), then flat at 0.35 with noise for an hour (10-s points)."""
    out = []
    for i in range(0, 121 * 6):
        t = T0 + i * 10 * S
        h = i / 360
        v = (0.5 + 0.43 * h if h < 1 else 0.11 if i == 360 else 0.35) + rng.normal(0, 0.003)
        out.append((t, service, round(v, 6)))
    return out


def test_the_built_in_rule_clears_after_a_restart_when_slices_are_folded_together() -> None:
    # the demo's case: a leak on one service, its OOM restart, then memory flat at 35 %;
    # each minute's slice goes through process_many beside another service's, as a
    # worker folds them. The alarm must fire on the climb and resolve right after the
    # drop (a folded batch once converted to the condition's unit, hours: every memory
    # record was dropped, and a window fed only by the odd lone slice never cleared)
    from detectors import builtin_rule_paths, load_rules
    from detectors.rules import RuleSet

    (r,) = [x for x in load_rules(builtin_rule_paths()).rules if x.name == "memory-exhaustion"]
    eng = RuleEngine(RuleSet((r,), version="t"), allowed_lateness_ms=0, keepalive_ms=5 * M)
    rng = np.random.default_rng(7)
    rows = {s: _leak_then_restart(s, rng) for s in ("gateway", "orders")}
    rows["orders"] = [(t, s, 0.4 + rng.normal(0, 0.003)) for t, s, _ in rows["orders"]]
    states = {s: eng.new_state() for s in rows}
    found: list[Detection] = []
    for minute in range(121):
        batches = []
        for s, rs in rows.items():
            part = rs[minute * 6:(minute + 1) * 6]
            cols = {"time": np.array([p[0] for p in part], np.int64),
                    "service": [s] * len(part), "host": [f"{s}-1"] * len(part),
                    "name": ["system.memory.utilization"] * len(part),
                    "value": np.array([p[2] for p in part]), "unit": ["1"] * len(part),
                    "attributes": [{"state": "used"}] * len(part)}
            batches.append(("metrics", cols, states[s]))
        for s, (state, dets, _) in zip(rows, eng.process_many(batches), strict=True):
            states[s] = state
            found += dets
    gw = [(d.state, (d.time - T0) // M) for d in found if d.service == "gateway"]
    fired = [m for s, m in gw if s == "firing"]
    resolved = [m for s, m in gw if s == "resolved"]
    assert fired and fired[0] < 30, gw  # the climb: under 2 h to full well before the hour
    assert len(resolved) == 1 and 60 <= resolved[0] <= 63, gw  # cleared by the drop
    assert max(fired) < 61, gw  # and silent on the flat memory after it
    assert not [d for d in found if d.service == "orders"]
