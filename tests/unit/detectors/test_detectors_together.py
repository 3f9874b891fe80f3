"""The rule engine over all of a step's slices at once (``process_many``) gives what it
gives slice by slice: the same detections, stats and state bytes, step after step."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import yaml

from detectors import RuleEngine, builtin_rule_paths, load_rules, parse_rules
from detectors.rules import RuleSet
from pipeline.events.labels import labels_of

T0 = 1_699_999_200_000
S, M = 1_000, 60_000

CUSTOM = [
    {"name": "hot", "signal": "metrics", "select": {"metric": "cpu"},
     "group_by": ["service", "host"], "window": {"type": "hopping", "size": "2m", "step": "1m"},
     "aggregation": "mean", "condition": "> 80", "clear": "< 70", "for": "1m",
     "severity": "high", "category": "resource", "title": "{host}: {value:.1f}"},
    {"name": "slide", "signal": "metrics", "select": {"metric": "cpu"},
     "group_by": ["service", "host"], "window": {"type": "sliding", "size": "1m"},
     "aggregation": "max", "condition": "> 95", "for": "30s", "severity": "low",
     "category": "resource", "title": "{host}: {value:.1f}"},
    {"name": "tail", "signal": "metrics", "select": {"metric": "=~ lat.*"},
     "group_by": ["service", "attributes.region", "name"],
     "window": {"type": "tumbling", "size": "1m"}, "aggregation": "p95",
     "condition": "> 300", "severity": "low", "category": "performance", "title": "{value}"},
    {"name": "latest", "signal": "metrics", "select": {"metric": "cpu", "host": "!= h2"},
     "group_by": ["host"], "window": {"type": "hopping", "size": "3m", "step": "1m"},
     "aggregation": "last", "condition": "> 90", "severity": "low",
     "category": "resource", "title": "{value}"},
    {"name": "fills", "kind": "exhaustion", "signal": "metrics",
     "select": {"metric": "=~ cpu|latency"}, "group_by": ["service", "host"],
     "window": {"type": "hopping", "size": "3m", "step": "1m"},
     "capacity": {"metric": "latency"}, "condition": "< 2h", "min_samples": 3,
     "min_fit": 0.1, "severity": "low", "category": "resource", "title": "{value}"},
    {"name": "full", "kind": "exhaustion", "signal": "metrics",
     "select": {"metric": "process.memory.usage"}, "group_by": ["service", "host"],
     "window": {"type": "hopping", "size": "3m", "step": "1m"}, "capacity": "8GiBy",
     "condition": "< 2h", "min_samples": 3, "min_fit": 0.1, "severity": "low",
     "category": "resource", "title": "{value}"},
    {"name": "gone", "kind": "absence", "signal": "metrics",
     "select": {"metric": "heartbeat"}, "group_by": ["service", "host"], "for": "1m",
     "severity": "high", "category": "availability", "title": "{host} silent {value}s"},
]

NAMES = ["cpu", "heartbeat", "latency", "lat.db", "system.cpu.utilization",
         "system.memory.utilization", "process.memory.usage", "http.server.error.ratio",
         "http.server.request.duration.count_rate", "http.server.request.rate",
         "http.server.duration.p95"]
WEIGHTS = np.array([3, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1]) / 17  # cpu, latencies: many points
UNITS = {"system.cpu.utilization": ["1", "%"], "system.memory.utilization": ["1"],
         "process.memory.usage": ["By", "MiBy"], "http.server.duration.p95": ["ms", "s"]}


def ruleset() -> RuleSet:
    """The built-in rules and a few more of every window kind."""
    custom = parse_rules(yaml.safe_dump({"rules": CUSTOM}))
    builtin = load_rules(builtin_rule_paths())
    return RuleSet((*builtin.rules, *custom.rules), "together")


def slice_columns(rng: np.random.Generator, service: str, start: int, arrow: bool,
                  hot: bool) -> dict:
    """Random metric records of one service around ``start`` (some out of order, some
    late), columns as the codec gives them (Arrow-factorised text when ``arrow``)."""
    n = int(rng.integers(1, 40 if rng.random() < 0.7 else 300))
    t = start + rng.integers(-40 * S, 20 * S, n)
    t[rng.random(n) < 0.05] -= 5 * M  # late
    names = rng.choice(NAMES, n, p=WEIGHTS)
    hosts = rng.choice(["h1", "h2", "h3"], n)
    level = np.where(hot, 97.0, 50.0)
    value = np.abs(rng.normal(level, 25.0, n))
    units = [str(rng.choice(UNITS.get(name, [""]))) for name in names]
    attrs = [{"region": str(rng.choice(["eu", "us"])), "state": str(rng.choice(["used", "free"])),
              **({"error.type": "500"} if rng.random() < 0.3 else {})} for _ in range(n)]
    text = {"service": [service] * n, "host": hosts.tolist(), "name": names.tolist(),
            "unit": units}
    if arrow:
        text = {k: labels_of(pa.array(v)) for k, v in text.items()}
        attributes = pa.array([list(a.items()) for a in attrs], pa.map_(pa.string(),
                                                                        pa.string()))
    else:
        attributes = attrs
    return {"time": t.astype(np.int64), "value": value, **text, "attributes": attributes}


@pytest.mark.parametrize("seed", [1, 2])
def test_all_slices_at_once_equal_one_by_one(seed: int) -> None:
    rules = ruleset()
    one = RuleEngine(rules, allowed_lateness_ms=30 * S, keepalive_ms=2 * M)
    many = RuleEngine(rules, allowed_lateness_ms=30 * S, keepalive_ms=2 * M)
    rng = np.random.default_rng(seed)
    services = [f"svc-{k}" for k in range(7)]
    alone = {s: one.new_state() for s in services}
    together = {s: many.new_state() for s in services}
    fired = 0
    for step in range(60):
        start = T0 + step * 20 * S
        arrow = bool(rng.random() < 0.5)
        picks = [s for s in services if rng.random() < 0.8]  # the others fall silent
        picks += list(rng.choice(services, 2))  # a service met twice in a step
        hot = {s: bool(20 <= step < 40 and s in ("svc-1", "svc-4")) for s in services}
        pieces = [(s, slice_columns(rng, s, start, arrow, hot[s])) for s in picks]
        if rng.random() < 0.1:  # an empty slice
            pieces.append((services[0], {**pieces[0][1], "time": np.zeros(0, np.int64),
                                         "value": np.zeros(0), "service": [], "host": [],
                                         "name": [], "unit": [], "attributes": []}))
        expected = [one.process("metrics", cols, alone[s]) for s, cols in pieces]
        got = many.process_many([("metrics", cols, together[s]) for s, cols in pieces])
        for (s, _), (_, found_a, stats_a), (_, found_b, stats_b) in zip(
                pieces, expected, got, strict=True):
            assert repr(found_b) == repr(found_a), (step, s)  # NaN values compare equal
            assert stats_b == stats_a, (step, s)
            fired += len(found_a)
        for s in services:
            assert together[s].to_bytes() == alone[s].to_bytes(), (step, s)
        if step % 5 == 4:  # time passes for every service (a tick)
            for s in services:
                _, found_a = one.advance(alone[s], start - 30 * S)
                _, found_b = many.advance(together[s], start - 30 * S)
                assert repr(found_b) == repr(found_a)
                fired += len(found_a)
    assert fired > 0  # the streams do fire and resolve alarms
