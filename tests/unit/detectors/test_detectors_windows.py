"""Rule kinds and windows with explicit timestamps: for, hysteresis, window types, ratio,
trend, aggregations, baselines."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import yaml

from detectors import RuleEngine, parse_rules
from detectors.closing import evaluate
from detectors.windows import Q_POINTS, record_items
from pipeline.events.detection import Detection, detection_id

T0 = 1_699_999_200_000  # a whole hour, epoch ms
S, M, H = 1_000, 60_000, 3_600_000


def rule(**kw: Any) -> dict:
    base = {"name": "r", "signal": "metrics", "select": {"metric": "m"},
            "window": {"type": "tumbling", "size": "1m"}, "aggregation": "mean",
            "condition": "> 80", "severity": "high", "category": "resource",
            "title": "{service}/{host}: {value:.3g}"}
    base.update(kw)
    return base


def engine(*rules: dict, lateness: int = 0, keepalive: int = 0) -> RuleEngine:
    return RuleEngine(parse_rules(yaml.safe_dump({"version": "t", "rules": list(rules)})),
                      allowed_lateness_ms=lateness, keepalive_ms=keepalive)


def metrics(points: list[tuple[int, float]], name: str = "m", service: str = "svc",
            host: str = "h1") -> dict:
    return {"time": np.array([t for t, _ in points], np.int64),
            "value": np.array([v for _, v in points], np.float64),
            "service": [service] * len(points), "host": [host] * len(points),
            "name": [name] * len(points), "attributes": [{}] * len(points)}


def every(start: int, stop: int, step: int, value: float | list[float]) -> list[tuple]:
    times = range(start, stop, step)
    values = value if isinstance(value, list) else [value] * len(times)
    return [(T0 + t, v) for t, v in zip(times, values, strict=True)]


def run(eng: RuleEngine, batches: list[tuple[str, dict]], end: int | None = None
        ) -> list[Detection]:
    state = eng.new_state()
    out: list[Detection] = []
    for signal, cols in batches:
        state, found, _ = eng.process(signal, cols, state)
        out += found
    if end is not None:
        state, found = eng.advance(state, T0 + end)
        out += found
    return out


def summary(found: list[Detection]) -> list[tuple[int, str, float]]:
    return [((d.time - T0) // S, d.state, round(d.observed, 4)) for d in found]


def test_threshold_fires_after_for_and_resolves() -> None:
    eng = engine(rule(group_by=["service", "host"], **{"for": "2m"}))
    values = [50] * 6 + [90] * 24 + [60] * 12  # 1 min quiet, 4 min hot, 2 min quiet
    found = run(eng, [("metrics", metrics(every(0, 420 * S, 10 * S, values)))], end=420 * S)
    assert summary(found) == [(240, "firing", 90.0), (360, "resolved", 60.0)]
    fire = found[0]
    assert (fire.window_start, fire.window_end) == (T0 + 180 * S, T0 + 240 * S)
    assert fire.labels == {"service": "svc", "host": "h1"}
    assert (fire.service, fire.host, fire.entity, fire.threshold) == ("svc", "h1", "m", 80)
    assert fire.detector_version.startswith("t+") and fire.title == "svc/h1: 90"
    assert fire.id == detection_id("r", fire.labels, fire.window_start, "firing")
    assert fire.evidence["samples"] == 6 and fire.evidence["for_ms"] == 120_000
    assert found[1].evidence["firing_since"] == fire.time


def test_for_needs_consecutive_windows() -> None:
    eng = engine(rule(**{"for": "2m"}))
    values = [90] * 12 + [50] * 6 + [90] * 12 + [50] * 6  # 2 hot, 1 cold, 2 hot, 1 cold
    assert run(eng, [("metrics", metrics(every(0, 360 * S, 10 * S, values)))], 360 * S) == []


def test_hysteresis_keeps_a_hovering_value_from_flapping() -> None:
    hover = [0.051, 0.049] * 15  # alternating across the threshold, minute by minute
    pts = every(0, 30 * M, M, hover)
    flappy = run(engine(rule(condition="> 0.05")), [("metrics", metrics(pts))], 30 * M)
    assert len(flappy) == 30 and {d.state for d in flappy} == {"firing", "resolved"}
    steady = run(engine(rule(condition="> 0.05", hysteresis=0.2)),
                 [("metrics", metrics(pts))], 30 * M)
    assert summary(steady) == [(60, "firing", 0.051)]
    cleared = run(engine(rule(condition="> 0.05", clear="< 0.04")),
                  [("metrics", metrics(pts + every(30 * M, 32 * M, M, 0.03)))], 32 * M)
    assert summary(cleared) == [(60, "firing", 0.051), (1860, "resolved", 0.03)]


def log_batch(times_s: list[float], body: str = "boom", severity: str = "ERROR") -> dict:
    n = len(times_s)
    return {"time": np.array([T0 + int(t * S) for t in times_s], np.int64),
            "service": ["svc"] * n, "host": ["h1"] * n, "severity_text": [severity] * n,
            "severity_number": np.full(n, 17, np.uint8), "body": [body] * n,
            "trace_id": [""] * n, "span_id": [""] * n, "attributes": [{}] * n}


@pytest.mark.parametrize(("window", "expected"), [
    ({"type": "tumbling", "size": "1m"}, []),
    ({"type": "hopping", "size": "1m", "step": "10s"},
     [(70, "firing", 6.0), (120, "resolved", 3.0)]),
    ({"type": "sliding", "size": "1m"}, [(62, "firing", 6.0), (110, "resolved", 5.0)]),
])
def test_tumbling_hopping_and_sliding_windows(window: dict, expected: list) -> None:
    """Six errors straddling a minute boundary: missed by tumbling minutes, caught by a
    hopping window once a window holds all six, and by a sliding one at the sixth."""
    eng = engine({"name": "burst", "kind": "log_count", "select": {"contains": "boom"},
                  "window": window, "condition": "> 5", "severity": "high",
                  "category": "data", "title": "{value:.0f} in {window}"})
    batch = log_batch([50, 52, 55, 60, 61, 62])
    assert summary(run(eng, [("logs", batch)], end=200 * S)) == expected


def test_log_count_selects_severity_and_text() -> None:
    eng = engine({"name": "db", "kind": "log_count", "group_by": ["service"],
                  "select": {"severity": "ERROR",
                             "contains": ["connection refused", "database unavailable"]},
                  "window": {"type": "tumbling", "size": "1m"}, "condition": "> 2",
                  "severity": "critical", "category": "connectivity", "title": "x"})
    batches = [("logs", log_batch([1, 2, 3], "connection refused: postgres")),
               ("logs", log_batch([4, 5], "connection refused", severity="WARN")),
               ("logs", log_batch([6], "database unavailable")),
               ("logs", log_batch([7, 8, 9], "all good"))]
    batches[1][1]["severity_number"][:] = 13
    assert summary(run(eng, batches, end=60 * S)) == [(60, "firing", 4.0)]
    for _, cols in batches:  # without severity numbers, the texts decide
        del cols["severity_number"]
    assert summary(run(eng, batches, end=60 * S)) == [(60, "firing", 4.0)]


def spans(times_s: list[float], status: list[str], kind: str = "server",
          duration: float = 10.0) -> dict:
    n = len(times_s)
    return {"start": np.array([T0 + int(t * S) for t in times_s], np.int64),
            "service": ["svc"] * n, "host": ["h1"] * n, "name": ["GET /"] * n,
            "duration_ms": np.full(n, duration), "status": status, "kind": [kind] * n,
            "trace_id": ["0" * 32] * n, "span_id": ["0" * 16] * n,
            "parent_span_id": [""] * n, "attributes": [{}] * n}


def test_ratio_of_error_spans() -> None:
    eng = engine({"name": "span-errors", "kind": "ratio", "signal": "traces",
                  "select": {"kind": "server"}, "numerator": {"status": "error"},
                  "denominator": {}, "window": {"type": "tumbling", "size": "1m"},
                  "condition": "> 0.1", "min_samples": 10, "severity": "high",
                  "category": "availability", "title": "{value:.0%} of {samples} spans"})
    minute1 = spans(list(range(0, 20, 1)), ["error"] * 5 + ["ok"] * 15)  # 25 %
    client = spans(list(range(20, 40)), ["error"] * 20, kind="client")  # not selected
    minute2 = spans(list(range(60, 65)), ["error"] * 5)  # 100 % but only 5 spans
    minute3 = spans(list(range(120, 140)), ["ok"] * 20)
    found = run(eng, [("traces", minute1), ("traces", client), ("traces", minute2),
                      ("traces", minute3)], end=180 * S)
    assert summary(found) == [(60, "firing", 0.25), (180, "resolved", 0.0)]
    assert found[0].title == "25% of 20 spans"


def test_ratio_of_two_metrics_sums() -> None:
    eng = engine({"name": "fail-share", "kind": "ratio", "signal": "metrics",
                  "numerator": {"metric": "failed"}, "denominator": {"metric": "served"},
                  "window": {"type": "tumbling", "size": "1m"}, "condition": "> 0.2",
                  "severity": "low", "category": "availability", "title": "{value:.0%}"})
    failed = metrics(every(0, 2 * M, 10 * S, [1.0] * 6 + [30.0] * 6), name="failed")
    served = metrics(every(0, 2 * M, 10 * S, 100.0), name="served")
    both = {k: (np.concatenate([failed[k], served[k]]) if isinstance(failed[k], np.ndarray)
                else failed[k] + served[k]) for k in failed}
    order = np.argsort(both["time"], kind="stable")  # lateness 0: arrive in time order
    batch = {k: v[order] if isinstance(v, np.ndarray) else [v[i] for i in order]
             for k, v in both.items()}
    assert eng.ruleset.rules[0].aggregation == "sum"
    assert summary(run(eng, [("metrics", batch)], end=2 * M)) == [(120, "firing", 0.3)]


def trend_rule(**kw: Any) -> dict:
    return rule(name="leak", kind="trend", aggregation=None,
                window={"type": "hopping", "size": "30m", "step": "5m"},
                condition="> 0.10", clear="< 0.03", min_samples=30, **kw)


def test_trend_fires_on_growth_not_on_flat_or_steps() -> None:
    clean = {k: v for k, v in trend_rule(min_fit=0.6).items() if v is not None}
    eng = engine(clean)
    minutes = np.arange(0, 90)
    growing = [(T0 + int(m) * M, 50.0 * (1 + 0.2 * m / 60)) for m in minutes]  # +20 %/h
    found = run(eng, [("metrics", metrics(growing))], end=90 * M)
    assert [d.state for d in found] == ["firing"]
    # first full window [0, 30m): slope 10/h over a mean of 50 * (1 + 0.2 * 14.5 / 60)
    assert found[0].time == T0 + 30 * M
    assert found[0].observed == pytest.approx(10.0 / (50 * (1 + 0.2 * 14.5 / 60)))
    rng = np.random.default_rng(1)
    flat = [(T0 + int(m) * M, 50.0 + rng.normal(0, 0.2)) for m in minutes]
    assert run(engine(clean), [("metrics", metrics(flat))], end=90 * M) == []
    step = [(T0 + int(m) * M, 20.0 if m < 3 else 50.0) for m in minutes]  # R² 0.27
    assert run(engine(clean), [("metrics", metrics(step))], end=90 * M) == []
    no_fit = {k: v for k, v in trend_rule().items() if v is not None}
    assert run(engine(no_fit), [("metrics", metrics(step))], end=90 * M) != []


def test_trend_needs_points_over_half_its_window() -> None:
    # a series flat (with noise) for an hour ends on a 4-minute climb and falls silent
    # (the data ended, or the pod was replaced): the windows still closing hold ever
    # fewer, ever newer points, and a line through the last minutes alone is steep and
    # fits well (R² 0.71 over the last 10 minutes, 0.95 over the last 5). Points spanning
    # under half the window say nothing, as for exhaustion rules
    r = {k: v for k, v in trend_rule(min_fit=0.6).items() if v is not None}
    r["min_samples"] = 5
    rng = np.random.default_rng(0)

    def series(minutes: int) -> list[tuple[int, float]]:
        noise = rng.normal(0, 0.3, minutes)
        return [(T0 + m * M, 50.0 + noise[m] + max(0, m - 56)) for m in range(minutes)]

    assert run(engine(r), [("metrics", metrics(series(61)))], end=120 * M) == []
    # the same climb going on is a trend
    found = run(engine(r), [("metrics", metrics(series(90)))], end=90 * M)
    assert [d.state for d in found][:1] == ["firing"]


AGGREGATIONS = ["count", "sum", "mean", "min", "max", "last", "rate", "p50", "p95", "p99"]


@pytest.mark.parametrize("window", [{"type": "tumbling", "size": "1m"},
                                    {"type": "hopping", "size": "3m", "step": "1m"},
                                    {"type": "sliding", "size": "2m"}])
@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_window_values_match_numpy(window: dict, agg: str) -> None:
    ruleset = parse_rules(yaml.safe_dump({"rules": [rule(aggregation=agg, window=window,
                                                         condition="> 1e12")]}))
    r = ruleset.rules[0]
    rng = np.random.default_rng(7)
    t = T0 + np.sort(rng.integers(0, 10 * M, 400))
    v = rng.lognormal(3, 1, t.size)
    series = np.zeros(t.size, np.int64)
    order = rng.permutation(t.size)  # arrival order does not matter
    items = record_items(r, series[order], t[order], v[order])
    ev = evaluate(r, items, T0, T0 + 10 * M)
    assert len(ev) > 5
    for end, start, value, n in zip(ev.time, ev.start, ev.value, ev.samples, strict=True):
        if r.window.type == "sliding":
            inside = (t > end - r.window.size_ms) & (t <= end)
        else:
            inside = (t >= start) & (t < end)
        x = v[inside]
        assert n == x.size
        if not x.size:
            assert (value == 0) if agg in ("count", "sum", "rate") else np.isnan(value)
            continue
        expected = {"count": x.size, "sum": x.sum(), "mean": x.mean(), "min": x.min(),
                    "max": x.max(), "last": x[-1], "rate": x.sum() / (r.window.size_ms / S)}
        if agg in expected:
            assert value == pytest.approx(expected[agg], rel=1e-9)
        else:  # quantile summaries: at most Q_POINTS points per pane, small rank error
            q = {"p50": 0.5, "p95": 0.95, "p99": 0.99}[agg]
            rank = np.searchsorted(np.sort(x), value, side="right") / x.size
            assert abs(rank - q) <= max(2.0 / Q_POINTS, 1.5 / x.size), (rank, q)


def test_baseline_gates_on_the_usual_level() -> None:
    low = rule(name="low-throughput", condition="< 100", clear="> 120",
               window={"type": "tumbling", "size": "1m"},
               baseline={"halflife": "30m", "warmup": "30m", "level": ">= 150",
                         "ratio": "< 0.6"}, title="{value:.0f} usually {baseline:.0f}")
    busy = every(0, 60 * M, M, 200.0) + every(60 * M, 70 * M, M, 80.0)
    found = run(engine(low), [("metrics", metrics(busy))], end=70 * M)
    assert summary(found) == [(3660, "firing", 80.0)]
    assert found[0].title == "80 usually 200"
    assert found[0].evidence["baseline"] == pytest.approx(200.0)
    quiet = every(0, 60 * M, M, 110.0) + every(60 * M, 70 * M, M, 50.0)  # usually < 150
    assert run(engine(low), [("metrics", metrics(quiet))], end=70 * M) == []
    early = every(0, 10 * M, M, 200.0) + every(10 * M, 20 * M, M, 80.0)  # still warming up
    assert run(engine(low), [("metrics", metrics(early))], end=20 * M) == []


def test_baseline_clear_ratio_resolves_relative_to_usual() -> None:
    warn = rule(name="warn", condition="> 0.01", clear="< 0.005",
                baseline={"halflife": "1h", "warmup": "10m", "ratio": "> 2",
                          "clear_ratio": "< 1.5"})
    pts = (every(0, 30 * M, M, 0.009) + every(30 * M, 35 * M, M, 0.05)
           + every(35 * M, 40 * M, M, 0.0095))
    found = run(engine(warn), [("metrics", metrics(pts))], end=40 * M)
    assert summary(found) == [(1860, "firing", 0.05), (2160, "resolved", 0.0095)]
