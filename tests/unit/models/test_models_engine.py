"""The model engine on simulator scenarios, replayed through the stream's codec."""

from __future__ import annotations

from collections import Counter

import pytest

from models import LogPatterns, ModelEngine, ModelRegistry, ServiceModelState, TraceRED
from pipeline.detect.replay import replay
from pipeline.simulate import load_system, parse_schedule, simulate

START = 1_718_000_000_000
MIN = 60_000


def engine(registry: ModelRegistry | None = None) -> ModelEngine:
    return ModelEngine(registry, warmup_points=60, warmup_windows=5)


def run(schedule: str | None, minutes: int, seed: int = 3):
    system = load_system()
    incidents = parse_schedule(schedule, START) if schedule else None
    sim = simulate(system, START, minutes * MIN, seed=seed, incidents=incidents)
    return sim, replay(engine(), sim)


@pytest.fixture(scope="module")
def quiet():
    return run(None, 26)


@pytest.fixture(scope="module")
def outage_ticks():
    sim = simulate(load_system(), START, 28 * MIN, seed=3,
                   incidents=parse_schedule("db_outage@20m+6m", START))
    return sim.labels.incidents[0], list(sim)


@pytest.fixture(scope="module")
def db_outage(outage_ticks):
    inc, ticks = outage_ticks
    return inc, replay(engine(), ticks)


@pytest.fixture(scope="module")
def latency():
    sim, result = run("latency_degradation:inventory@20m+6m", 27)
    return sim.labels.incidents[0], result


def firing(detections, detector=None, signal=None):
    return [d for d in detections if d.state == "firing"
            and (detector is None or d.detector == detector)
            and (signal is None or d.signal == signal)]


def test_quiet_run_raises_no_detections(quiet):
    _, result = quiet
    assert result.records > 30_000
    assert firing(result.detections) == []


def test_db_outage_raises_log_template_detections_on_the_callers(db_outage):
    inc, result = db_outage
    assert inc.scenario == "db_outage"
    logs = [d for d in firing(result.detections, "model:log-patterns")
            if inc.start_ms <= d.time <= inc.end_ms + 2 * MIN]
    callers = set(load_system().callers("postgres"))
    assert callers <= {d.service for d in logs}
    new = [d for d in logs if d.evidence["kind"] == "new_template" and d.service in callers]
    assert any("postgres" in d.evidence["template"] for d in new)
    assert all(d.category == "connectivity" for d in new if "postgres" in d.title)
    assert {d.detector_version for d in logs} == {"builtin-1"}


def test_db_outage_raises_trace_error_detections_on_the_callers(db_outage):
    inc, result = db_outage
    errors = [d for d in firing(result.detections, "model:trace-red")
              if d.labels["series"] == "trace.errors"
              and inc.start_ms <= d.time <= inc.end_ms + 2 * MIN]
    services = {d.service for d in errors}
    assert set(load_system().callers("postgres")) <= services
    calls = [d for d in errors if d.entity == "-> postgres"]
    assert calls and all(d.observed > 0.3 for d in calls)
    assert all(0.0 <= d.score <= 1.0 and d.evidence["expected"] < d.observed for d in calls)


def test_db_outage_call_graph(db_outage):
    _, result = db_outage
    edges = ModelEngine().call_graph(result.states["orders"])
    callees = {callee for caller, callee, count, last in edges if caller == "orders"}
    assert callees == {"postgres", "cache", "inventory", "payments"}
    assert all(count > 0 and last > START for *_, count, last in edges)


def test_latency_degradation_raises_a_trace_duration_detection(latency):
    inc, result = latency
    assert inc.scenario == "latency_degradation"
    durations = [d for d in firing(result.detections, "model:trace-red")
                 if d.service == "inventory" and d.labels["series"].startswith(
                     "trace.duration") and inc.start_ms <= d.time <= inc.end_ms]
    assert durations
    first = min(durations, key=lambda d: d.time)
    assert first.observed > first.evidence["band_high"] > first.evidence["expected"]
    assert first.category == "performance"


def test_detections_resolve_and_have_stable_ids(db_outage):
    _, result = db_outage
    fired = Counter((d.detector, d.service, d.host, d.entity, tuple(sorted(d.labels.items())))
                    for d in result.detections if d.state == "firing")
    ids = [d.id for d in result.detections]
    assert len(ids) == len(set(ids))
    assert sum(fired.values()) > 0


def test_state_round_trip_mid_stream_equals_uninterrupted_run():
    system = load_system()
    incidents = parse_schedule("error_spike:orders@9m+3m", START)
    sim = simulate(system, START, 13 * MIN, seed=5, incidents=incidents)
    ticks = list(sim)
    eng = engine()
    whole = replay(eng, ticks)
    first = replay(eng, ticks[:55])
    restored = {name: ServiceModelState.from_bytes(state.to_bytes(), eng)
                for name, state in first.states.items()}
    sizes = [len(state.to_bytes()) for state in first.states.values()]
    first.states = restored
    second = replay(eng, ticks[55:], first)
    assert [d.to_wire() for d in second.detections] == [d.to_wire() for d in whole.detections]
    assert firing(whole.detections)
    assert max(sizes) < 200_000


def test_columns_as_lists_of_dicts_or_arrow_and_out_of_order():
    import numpy as np
    import pyarrow as pa

    eng = ModelEngine(warmup_points=5, vector=False)
    state = eng.new_state()
    spans = {
        "start": [START + 5, START + 1], "service": ["orders", "orders"],
        "host": ["o-1", "o-1"], "name": ["POST /orders", "INSERT orders"],
        "duration_ms": [12.0, 3.0], "status": ["ok", "error"], "kind": ["server", "client"],
        "trace_id": ["a" * 32] * 2, "span_id": ["1" * 16, "2" * 16],
        "parent_span_id": ["", "1" * 16],
        "attributes": [{}, {"peer.service": "postgres"}],
    }
    state, _, stats = eng.process("traces", spans, state)
    assert stats["records"] == 2
    assert [(a, b, c) for a, b, c, _ in eng.call_graph(state)] == [("orders", "postgres", 1)]
    ts = pa.array([START + 10_000 * i for i in (2, 0, 1)], pa.timestamp("ms", tz="UTC"))
    metrics = {"time": ts, "service": pa.array(["orders"] * 3), "host": pa.array(["o-1"] * 3),
               "name": pa.array(["queue.depth"] * 3), "value": pa.array([3.0, 1.0, 2.0]),
               "unit": pa.array([""] * 3)}
    state, found, stats = eng.process("metrics", metrics, state)
    assert stats["points"] == 3 and found == []
    assert np.isclose(state.metrics.state[4, 0], 2.0, atol=1.0)  # level learnt in time order


def published_mid_run(ticks, registry: ModelRegistry, model, at_ms: int):
    """Replay ``ticks``, publishing ``model`` as current at ``at_ms`` (the engine reloads)."""
    eng = engine(registry)
    first = replay(eng, [t for t in ticks if t.time_ms < at_ms])
    before = {name: state.logs for name, state in first.states.items()}
    registry.publish(model.name, model, created_ms=at_ms)
    assert eng.reload() is True
    assert eng.reload() is False
    result = replay(eng, [t for t in ticks if t.time_ms >= at_ms], first)
    assert all(result.states[name].logs is logs for name, logs in before.items())
    return eng, result


def test_published_log_model_is_hot_reloaded_and_detections_name_its_version(
        outage_ticks, tmp_path):
    inc, ticks = outage_ticks
    at = START + 15 * MIN
    eng, result = published_mid_run(ticks, ModelRegistry(tmp_path),
                                    LogPatterns(warmup_windows=5, threshold=0.7), at)
    assert eng.versions == {"seasonal-ensemble": "builtin-1", "service-hst": "builtin-1",
                            "log-patterns": "1", "trace-red": "builtin-1"}
    logs = [d for d in result.detections if d.detector == "model:log-patterns"]
    assert logs and all(d.time >= at for d in logs)
    assert {(d.detector_version, d.threshold) for d in logs} == {("1", 0.7)}
    assert all(d.evidence["model_version"] == "1" for d in logs)
    callers = set(load_system().callers("postgres"))
    new = [d for d in firing(logs) if d.evidence["kind"] == "new_template"
           and d.service in callers and inc.start_ms <= d.time <= inc.end_ms + 2 * MIN]
    assert any("postgres" in d.evidence["template"] for d in new)
    traces = firing(result.detections, "model:trace-red")
    assert traces and {(d.detector_version, d.threshold) for d in traces} == {
        ("builtin-1", 0.6)}
    assert result.states["orders"].logs.closed >= 25  # warm-up not restarted by the reload


def test_published_min_count_silences_new_templates_in_a_db_outage(
        db_outage, outage_ticks, tmp_path):
    inc, ticks = outage_ticks
    _, builtin = db_outage
    during = range(inc.start_ms, inc.end_ms + 2 * MIN)
    assert [d for d in firing(builtin.detections, "model:log-patterns") if d.time in during]
    _, result = published_mid_run(ticks, ModelRegistry(tmp_path),
                                  LogPatterns(warmup_windows=5, min_count=1_000_000),
                                  START + 15 * MIN)
    assert firing(result.detections, "model:log-patterns") == []
    errors = [d for d in firing(result.detections, "model:trace-red")
              if d.labels["series"] == "trace.errors" and d.time in during]
    assert set(load_system().callers("postgres")) <= {d.service for d in errors}


def test_state_saved_under_one_version_restores_under_another(db_outage, tmp_path):
    _, result = db_outage
    saved = result.states["orders"]
    registry = ModelRegistry(tmp_path)
    registry.publish("log-patterns", LogPatterns(window_ms=120_000, sim_th=0.5),
                     created_ms=START)
    registry.publish("trace-red", TraceRED(window_ms=30_000, min_errors=5), created_ms=START)
    eng = engine(registry)
    restored = ServiceModelState.from_bytes(saved.to_bytes(), eng)
    assert restored.logs.config is eng.log_model and restored.traces.config is eng.trace_model
    assert restored.logs.windows.window_ms == 120_000
    assert restored.traces.windows.window_ms == 30_000
    assert restored.logs.miner.to_dict() == saved.logs.miner.to_dict()
    assert restored.traces.bank.keys == saved.traces.bank.keys
    again = ServiceModelState.from_bytes(restored.to_bytes(), eng)
    assert again.to_bytes() == restored.to_bytes()


def test_a_metric_naming_a_peer_is_one_series_per_edge():
    """Per-edge latency (a mesh's, on the caller): the edges to two peers, each seen by
    two reporters, are four series; only the edge that shifts alarms, naming its peer."""
    import numpy as np
    import orjson

    from pipeline.events.codec import decode_values
    from pipeline.events.schema import RecordKind

    eng = ModelEngine(warmup_points=20, confirm_points=2)
    state = eng.new_state()
    found = []
    for k in range(40):
        records = []
        for peer, base in (("cart", 0.004), ("ads", 0.02)):
            for reporter in ("source", "destination"):
                shift = 0.25 if peer == "cart" and k >= 35 else 0.0
                records.append({
                    "type": "metric", "time": START + k * MIN, "service.name": "front",
                    "name": "rpc.edge.duration.p50", "unit": "s",
                    "value": float(base * (1 + 0.05 * np.sin(k)) + shift),
                    "attributes": {"peer.service": peer, "istio.reporter": reporter}})
        cols = decode_values(RecordKind.METRIC, [orjson.dumps(records)],
                             now_ms=START + 10**9).columns
        state, dets, _ = eng.process("metrics", cols, state)
        found += dets
    assert len(state.metrics) == 4
    fired = firing(found)
    assert fired and {d.labels["peer.service"] for d in fired} == {"cart"}
    assert {d.labels["istio.reporter"] for d in fired} == {"source", "destination"}
    assert "rpc.edge.duration.p50 to cart" in fired[0].title
