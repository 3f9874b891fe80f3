"""The built-in ``traffic-stopped`` rule: a service that usually has traffic gets none."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from detectors import RuleEngine, RuleFileError, builtin_rule_paths, load_rules, parse_rules

T0 = 1_699_999_200_000
S, M = 1_000, 60_000


def engine() -> RuleEngine:
    return RuleEngine(load_rules(builtin_rule_paths()), allowed_lateness_ms=0)


def per_minute(rates: dict[str, list[float]]) -> dict:
    """``rpc.server.request.rate`` once a minute (req/s, 20 s past the minute, as a
    scrape would), one pod each, and one late point that closes the last window."""
    rows = [(i * M + 20 * S, pod, v) for pod, vs in rates.items() for i, v in enumerate(vs)]
    end = max(len(vs) for vs in rates.values())
    rows.append(((end + 2) * M, next(iter(rates)), 1.0))
    return {"time": np.array([T0 + r[0] for r in rows], np.int64),
            "value": np.array([r[2] for r in rows]), "service": ["svc"] * len(rows),
            "host": [r[1] for r in rows], "name": ["rpc.server.request.rate"] * len(rows),
            "unit": ["{req}/s"] * len(rows), "attributes": [{}] * len(rows)}


def test_two_empty_minutes_after_traffic_fire_from_a_cold_start() -> None:
    e = engine()
    _, found, _ = e.process("metrics", per_minute({
        "stopped": [0.3, 0.27, 0.0, 0.0, 0.0, 0.3, 0.3],  # two minutes of traffic first
        "one-gap": [0.3, 0.3, 0.0, 0.3, 0.3, 0.3, 0.3],   # one empty minute is chance
        "rare": [0.05, 0.05, 0.0, 0.0, 0.0, 0.05, 0.05],  # 3 a minute: empty is usual
        "never": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],     # no traffic to lose
    }), e.new_state())
    assert {d.detector for d in found} == {"traffic-stopped"}
    stops = list(found)
    assert [(d.host, d.state, (d.time - T0) // M) for d in stops] == [
        ("stopped", "firing", 4), ("stopped", "resolved", 6)]
    fired = stops[0]
    assert fired.evidence["points_at"] == "callers"
    assert fired.category == "availability"
    # the usual level is a time-decayed mean of the minutes with traffic
    assert fired.title == "svc on stopped: no requests (usually 0.28/s)"


def test_points_at_must_be_own_or_callers() -> None:
    rule = {"name": "r", "signal": "metrics", "select": {"metric": "m"},
            "window": {"type": "tumbling", "size": "1m"}, "aggregation": "max",
            "condition": "> 1", "severity": "low", "category": "availability",
            "title": "t", "points_at": "upstream"}
    with pytest.raises(RuleFileError, match="points_at.*expected one of own, callers"):
        parse_rules(yaml.safe_dump({"rules": [rule]}))
    ok = parse_rules(yaml.safe_dump({"rules": [dict(rule, points_at="own")]}))
    assert [r.points_at for r in ok.rules] == ["own"]
