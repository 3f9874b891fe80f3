"""Log and trace model configurations, and what a new configuration keeps of a service."""

from __future__ import annotations

import pickle

import pytest

from models import LogAnalytics, LogPatterns, ModelError, TraceAnalytics, TraceRED
from models.counts import Windows

MIN = 60_000
T0 = 28_633_331 * MIN + 40_000  # 40 s into a minute, 1 minute into 5
BODIES = ("user 17 logged in from 10.0.0.1", "cache miss for key=abc", "GET /health 200")


@pytest.mark.parametrize(("cls", "params", "field"), [
    (LogPatterns, {"window_ms": 0}, "window_ms=0"),
    (LogPatterns, {"window_ms": "1m"}, "window_ms='1m'"),
    (LogPatterns, {"depth": 2}, "depth=2"),
    (LogPatterns, {"threshold": 0.5, "clear": 0.6}, "clear=0.6"),
    (TraceRED, {"min_errors": True}, "min_errors=True"),
    (TraceRED, {"error_rate": 2.0}, "error_rate=2.0"),
])
def test_bad_parameters_are_named(cls, params, field):
    with pytest.raises(ModelError, match=f"{cls.__name__}: {field}: expected"):
        cls(**params)


@pytest.mark.parametrize("cls", [LogPatterns, TraceRED])
def test_configurations_pickle_clone_and_resolve_levels(cls):
    model = cls(window_ms=30_000, threshold=0.8)
    assert pickle.loads(pickle.dumps(model)).params == model.params
    assert model.clone({"grace_ms": 0}).params == {**model.params, "grace_ms": 0}
    assert model.resolve(0.6, 0.42).params["threshold"] == 0.8
    assert model.resolve(0.6, 0.42).params["clear"] == pytest.approx(0.56)
    unset = cls().resolve(0.6, 0.42)
    assert (unset.threshold, unset.clear) == (0.6, 0.42)
    assert unset.resolve(0.9) is unset  # resolved: nothing left to fill in


def test_windows_resized_keep_or_restart_the_windows():
    windows = Windows(MIN, 5_000)
    windows.bucket(T0)
    assert [s for s, _ in windows.close(T0 + 2 * MIN)] == [T0 - 40_000]
    windows.bucket(T0 + MIN)
    same = windows.resized(MIN, 0)
    assert same is windows and same.grace_ms == 0 and len(same.open) == 1
    longer = windows.resized(5 * MIN, 0)
    assert longer.open == {} and longer.closed_until == 28_633_335 * MIN
    assert longer.bucket(T0 + MIN) is None and longer.late == 1
    assert longer.bucket(28_633_335 * MIN) == {}


def log_batch(analytics: LogAnalytics, start: int, minutes: int) -> None:
    for m in range(minutes):
        times = [start + m * MIN + i * 1_000 for i in range(len(BODIES) * 4)]
        analytics.add(times, ["h-1"] * len(times), [9] * len(times),
                      [BODIES[i % len(BODIES)] for i in range(len(times))])
        analytics.advance(start + (m + 2) * MIN)


def test_log_reconfigure_keeps_templates_and_rescales_baselines():
    logs = LogAnalytics(LogPatterns(warmup_windows=2))
    log_batch(logs, T0, 12)
    templates = logs.miner.to_dict()
    means = logs.baselines.mean.copy()
    closed, firing = logs.closed, dict(logs.firing)
    logs.reconfigure(LogPatterns(window_ms=2 * MIN, sim_th=0.6, depth=5, min_count=9,
                                 threshold=0.7).resolve())
    assert logs.miner.to_dict() == templates
    assert (logs.miner.drain.sim_th, logs.miner.drain.log_cluster_depth) == (0.6, 5)
    assert logs.baselines.mean == pytest.approx(2 * means)
    assert (logs.baselines.min_count, logs.baselines.threshold) == (9, 0.7)
    assert (logs.closed, logs.firing) == (closed, firing)
    assert logs.windows.window_ms == 2 * MIN and logs.windows.open == {}
    ids = {logs.miner.add(body, 9) for body in BODIES}
    assert ids == {cid for cid, _, _ in templates["clusters"]}


def test_log_state_saved_under_another_configuration_is_reconfigured():
    saved = LogAnalytics(LogPatterns(warmup_windows=2))
    log_batch(saved, T0, 6)
    data = saved.to_dict()
    assert data["config"] == saved.config.params
    target = LogPatterns(window_ms=2 * MIN, depth=5).resolve()
    restored = LogAnalytics(target)
    restored.load(data)
    assert restored.config is target and restored.windows.window_ms == 2 * MIN
    assert restored.miner.to_dict() == saved.miner.to_dict()
    assert restored.baselines.mean == pytest.approx(2 * saved.baselines.mean)
    legacy = LogAnalytics(LogPatterns(warmup_windows=2))
    legacy.load({k: v for k, v in data.items() if k != "config"})
    assert legacy.to_dict() == data


def spans(start: int, n: int, errors: int) -> dict:
    return {"start": [start + i * 100 for i in range(n)], "service": ["orders"] * n,
            "span_id": [f"{i:016x}" for i in range(n)], "parent_span_id": [""] * n,
            "kind": ["client"] * n, "name": ["SELECT"] * n,
            "status": ["error"] * errors + ["ok"] * (n - errors),
            "duration_ms": [5.0] * n, "attributes": [{"peer.service": "postgres"}] * n}


def test_trace_reconfigure_keeps_series_errors_and_call_graph():
    traces = TraceAnalytics(TraceRED(warmup_windows=2))
    for m in range(5):
        traces.add(spans(T0 + m * MIN, 20, 1))
        traces.advance("orders", T0 + (m + 2) * MIN)
    bank_keys, errors = list(traces.bank.keys), {k: list(v) for k, v in traces.errors.items()}
    graph = traces.call_graph()
    traces.reconfigure(TraceRED(window_ms=30_000, threshold=0.9, rest_points=3,
                                min_errors=7).resolve())
    assert (traces.bank.keys, traces.errors, traces.call_graph()) == (bank_keys, errors, graph)
    assert traces.bank.detector is traces.detector
    assert (traces.detector.threshold, traces.detector.rest_points) == (0.9, 3)
    assert traces.windows.window_ms == 30_000
    data = traces.to_dict()
    restored = TraceAnalytics(TraceRED().resolve())
    restored.load(data)
    assert restored.config.params == TraceRED().resolve().params
    assert restored.bank.keys == bank_keys and restored.windows.window_ms == MIN


def _rate_findings(counts: list[int]) -> list:
    traces = TraceAnalytics(TraceRED(warmup_windows=20))
    found = []
    for m, n in enumerate(counts):
        traces.add(spans(T0 + m * MIN, n, 0))
        found += [f for f in traces.advance("orders", T0 + (m + 1) * MIN + 20_000)
                  if f.labels["series"] == "trace.rate"]
    return found


def test_trace_rate_counting_noise_does_not_alarm_but_a_collapse_does():
    """A steady rate (no variance learnt at all): a few spans fewer in a minute is
    counting noise; a call path going nearly quiet is not."""
    assert _rate_findings([12] * 60 + [10, 12, 8, 12, 10, 10, 10, 10]) == []
    assert _rate_findings([120] * 60 + [105, 120, 100, 110, 104, 104, 104, 104]) == []
    drop = _rate_findings([120] * 60 + [20] * 8)
    assert drop and drop[0].state == "firing" and drop[0].category == "availability"
    assert drop[0].observed == pytest.approx(20 / 60)
    assert drop[0].evidence["expected"] == pytest.approx(120 / 60, rel=0.05)


def _duration_findings(slow: list[int], confirm: int | None = None,
                       quiet: tuple[int, ...] = ()) -> list:
    """Spans of one operation, 5-6 ms for 40 windows, then 500 ms in the windows listed
    in ``slow`` (counted from 40), back to usual after; no calls in those in ``quiet``."""
    traces = TraceAnalytics(TraceRED(warmup_windows=10) if confirm is None
                            else TraceRED(warmup_windows=10, confirm_windows=confirm))
    found = []
    for m in range(50):
        if m - 40 in quiet:
            found += [f for f in traces.advance("orders", T0 + (m + 1) * MIN + 20_000)
                      if f.labels["series"].startswith("trace.duration")]
            continue
        batch = spans(T0 + m * MIN, 30, 0)
        batch["duration_ms"] = ([500.0] * 30 if m - 40 in slow
                                else [5.0 + (i + m) % 4 * 0.3 for i in range(30)])
        traces.add(batch)
        found += [f for f in traces.advance("orders", T0 + (m + 1) * MIN + 20_000)
                  if f.labels["series"].startswith("trace.duration")]
    return found


def test_a_slow_operation_alarms_once_two_windows_in_a_row_say_so():
    """One slow window is a blip, not a problem (in a real replay such blips opened a
    problem a minute before the fault's own and were taken for it); two in a row fire,
    at the second window, dated from the first. ``confirm_windows=1``: the first."""
    assert _duration_findings([0]) == []
    [firing, *_] = _duration_findings([0, 1, 2])
    [first, *_] = _duration_findings([0], confirm=1)
    assert firing.state == first.state == "firing"
    assert firing.time == first.time + MIN  # the second slow window's end
    assert firing.window_start == first.window_start  # the episode began with the first
    with pytest.raises(ModelError, match="confirm_windows=0"):
        TraceRED(confirm_windows=0)


def test_slow_windows_with_quiet_ones_between_are_not_in_a_row():
    """A rarely called operation: one slow window, four without calls, one slow window
    are two blips, not two windows in a row. Taken for a run, they fired an alarm dated
    from the first, which in a real replay put a service's onset 9 minutes before the
    fault whose problem it joined."""
    assert _duration_findings([0, 5], quiet=(1, 2, 3, 4)) == []
    assert _duration_findings([0, 2], quiet=(1,)) == []
    [firing, *_] = _duration_findings([0, 1], quiet=(2, 3))  # adjacent: a run
    assert firing.state == "firing"


def test_errors_going_quiet_after_a_burst_are_no_dropped_template():
    """A failing dependency: ERROR lines burst for ten minutes, then stop (the recovery).
    Their baseline learnt the burst, yet their going quiet is no lost code path."""
    logs = LogAnalytics(LogPatterns(warmup_windows=3))
    minute = 60_000
    out = []

    def window(k, failed, served):
        bodies = ([f"request failed: GET /orders/{i} status=503" for i in range(failed)]
                  + [f"served GET /orders/{i} in 12 ms" for i in range(served)])
        severities = [17] * failed + [9] * served
        t = [k * minute + i for i in range(len(bodies))]
        logs.add(t, ["h-1"] * len(t), severities, bodies)
        out.extend(logs.advance((k + 1) * minute + 20_000))

    for k in range(60):
        window(k, 30 + k % 5, 40)
    for k in range(60, 70):
        window(k, 300, 40)
    for k in range(70, 80):
        window(k, 2, 40)
    kinds = {f.evidence["kind"] for f in out if f.state == "firing"}
    assert "template_burst" in kinds or "error_rate" in kinds
    assert not kinds & {"template_drop", "vanished_template"}, kinds


def test_a_statement_logged_far_less_or_no_more_alarms_with_its_template():
    """A code defect: a statement logged ~49 times a minute drops to 5, another vanishes;
    a rare one going quiet says nothing."""
    logs = LogAnalytics(LogPatterns(warmup_windows=3))
    minute = 60_000
    out = []

    def window(k, charged, rendered, rare):
        bodies = ([f"charged card {i} for order {k}" for i in range(charged)]
                  + [f"rendered page home in {i} ms" for i in range(rendered)]
                  + ["cache warmed"] * rare)
        t = [k * minute + i for i in range(len(bodies))]
        logs.add(t, ["h-1"] * len(t), [9] * len(t), bodies)
        out.extend(logs.advance((k + 1) * minute + 20_000))

    for k in range(80):  # long enough for the baselines to settle
        window(k, 49 + k % 3, 30, 1 if k % 4 == 0 else 0)
    assert [f for f in out if f.state == "firing"] == []
    for k in range(80, 83):
        window(k, 5, 0, 0)
    fired = [f for f in out if f.state == "firing"]
    kinds = sorted(f.evidence["kind"] for f in fired)
    assert kinds == ["template_drop", "vanished_template"]
    drop = next(f for f in fired if f.evidence["kind"] == "template_drop")
    assert "charged card" in drop.evidence["template"] and drop.observed == 5
    assert drop.window_start == 80 * minute and drop.host == "h-1"  # two windows in a row
    assert drop.evidence["expected"] > 40 and drop.evidence["band_low"] > 5
    for k in range(83, 86):
        window(k, 50, 30, 0)
    resolved = [f for f in out if f.state == "resolved"]
    assert sorted(f.labels["template_id"] for f in resolved) == sorted(
        f.labels["template_id"] for f in fired)


def test_a_lasting_span_error_outage_fires_until_it_ends():
    """Half the spans fail for 20 windows: the usual error ratio is not learnt from the
    outage, so its alarm holds to the end instead of clearing mid-way."""
    traces = TraceAnalytics(TraceRED(warmup_windows=5))
    states = []
    for m in range(40):
        errors = 20 if 10 <= m < 30 else 0
        traces.add(spans(T0 + m * MIN, 40, errors))
        states += [(m, f.state) for f in traces.advance("orders", T0 + (m + 1) * MIN + 20_000)
                   if f.labels["series"] == "trace.errors"]
    assert [s for _, s in states] == ["firing", "resolved"]
    assert states[0][0] == 10 and states[1][0] == 30


def _outage_then_silence(stale_ms: int, split: bool = False) -> tuple[list, TraceAnalytics]:
    """Half the spans fail and take 50x as long for 5 windows; then the operation gets
    no call for 20 minutes (advanced minute by minute), then calls as usual again."""
    traces = TraceAnalytics(TraceRED(warmup_windows=5))
    found = []
    for m in list(range(15)) + [35, 36]:
        bad = 10 <= m < 15
        batch = spans(T0 + m * MIN, 40, 20 if bad else 0)
        batch["duration_ms"] = [250.0 if bad else 5.0] * 40
        traces.add(batch)
        found += traces.advance("orders", T0 + (m + 1) * MIN + 20_000, stale_ms=stale_ms)
        if m == 14:
            for quiet in range(16, 35):
                found += traces.advance("orders", T0 + quiet * MIN + 20_000, stale_ms=stale_ms)
                if split:  # a restored worker keeps when each operation was last seen
                    restored = TraceAnalytics(TraceRED(warmup_windows=5))
                    restored.load(traces.to_dict())
                    traces = restored
    return found, traces


@pytest.mark.parametrize("split", [False, True])
def test_silent_operations_end_their_alarms_once_stale(split):
    """No calls tell nothing of latency or errors: the alarms of an operation with no span
    for ``stale_ms`` resolve, dated when the silence reached it, each once."""
    found, traces = _outage_then_silence(5 * MIN, split)
    fired = {f.labels["series"] for f in found if f.state == "firing"}
    assert {"trace.errors", "trace.duration.p50"} <= fired
    ended = [f for f in found if f.state == "resolved"]
    assert {f.labels["series"] for f in ended} == fired
    assert len(ended) == len([f for f in found if f.state == "firing"])  # each ends once
    last_window_end = ((T0 + 14 * MIN) // MIN + 1) * MIN
    for f in ended:
        assert f.evidence["silent"] and f.evidence["last_seen"] == last_window_end
        assert f.time == last_window_end + 5 * MIN and f.observed != f.observed  # NaN
        assert "no span for 300 s" in f.title
    assert not traces.firing and not traces.bank.firing.any()
    # calls as usual again: nothing more to end, and the silent op is tracked anew
    assert "-> postgres" in traces.seen


def test_without_stale_ms_a_silent_operation_keeps_firing():
    found, traces = _outage_then_silence(0)
    ended = [f for f in found if f.state == "resolved"]
    assert ended and not [f for f in ended if f.evidence.get("silent")]
    # the alarms waited for spans to say they ended
    assert min(f.time for f in ended) > T0 + 35 * MIN
    assert traces.seen == {}
