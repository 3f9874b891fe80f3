"""The telemetry simulator: determinism, wire validity, scenario signatures, labels."""

from __future__ import annotations

import io
import re

import numpy as np
import orjson
import pytest

from pipeline.events.schema import (
    SEVERITIES,
    SPAN_KINDS,
    SPAN_STATUSES,
    SPECS,
    FieldType,
    MetricPoint,
    RecordKind,
)
from pipeline.simulate import (
    Labels,
    LabelsError,
    ScenarioError,
    ScheduledIncident,
    TopologyError,
    load_labels,
    load_system,
    parse_schedule,
    parse_system,
    save_labels,
    simulate,
    validate_labels,
    wire_batches,
    write_ndjson,
)
from pipeline.simulate.metrics import METRIC_NAMES

START = 1_718_000_000_000  # 2024-06-10T06:13:20Z
MIN = 60_000
SIGNATURES = {  # strings only the named scenarios write
    "connection refused": {"db_outage"},
    "database unavailable": {"db_outage"},
    "coordination_failed": {"coordination_failure"},
    "OutOfMemoryError": {"memory_leak"},
    "OOMKilled": {"memory_leak"},
    "restarted": {"memory_leak"},
    "deploy": {"bad_deploy"},
    "unhandled exception": {"error_spike", "bad_deploy"},
    "slow response from": {"latency_degradation"},
    "thread pool exhausted": {"cpu_saturation"},
}
SCHEDULE = [  # every scenario once, 10 minutes apart
    ScheduledIncident("error_spike", START + 10 * MIN, 10 * MIN, "orders"),
    ScheduledIncident("db_outage", START + 30 * MIN, 10 * MIN),
    ScheduledIncident("cpu_saturation", START + 50 * MIN, 10 * MIN, "inventory"),
    ScheduledIncident("latency_degradation", START + 70 * MIN, 10 * MIN, "payments"),
    ScheduledIncident("coordination_failure", START + 90 * MIN, 10 * MIN),
    ScheduledIncident("bad_deploy", START + 110 * MIN, 10 * MIN, "auth"),
    ScheduledIncident("memory_leak", START + 130 * MIN, 30 * MIN, "api"),
    ScheduledIncident("quiet", START + 170 * MIN, 15 * MIN),
]


@pytest.fixture(scope="module")
def system():
    return load_system()


@pytest.fixture(scope="module")
def run(system):
    sim = simulate(system, START, 190 * MIN, seed=11, incidents=SCHEDULE, traces_per_tick=1)
    return sim, list(sim)


def incident(sim, scenario):
    return next(i for i in sim.labels.incidents if i.scenario == scenario)


def series(sim, ticks, service, name):
    """[(time, mean over reporting hosts or None when every host is missing)]."""
    out = []
    for tick in ticks:
        values = tick.metrics.series(service, name, sim.layout)
        out.append((tick.time_ms, np.mean(list(values.values())) if values else None))
    return out


def inside(t, inc):
    return inc.start_ms <= t < inc.end_ms


def logs_with(ticks, text):
    return [r for tick in ticks for r in tick.logs if text in r.body]


# --- determinism and wire format -----------------------------------------------------


def ndjson(seed, **kw):
    buf = io.BytesIO()
    sim = simulate(load_system(), START, 15 * MIN, seed,
                   [ScheduledIncident("db_outage", START + 5 * MIN, 5 * MIN)], **kw)
    write_ndjson(sim, buf)
    return buf.getvalue()


def test_same_seed_gives_byte_identical_ndjson_and_other_seeds_differ():
    first = ndjson(3)
    assert first == ndjson(3)
    assert first != ndjson(4)
    assert len(first.splitlines()) > 3000


def test_metric_stream_does_not_depend_on_which_kinds_are_generated(system):
    full = simulate(system, START, 5 * MIN, 9, mixed=False)
    only = simulate(system, START, 5 * MIN, 9, kinds=("metric",))
    assert [t.metrics.wire() for t in full] == [t.metrics.wire() for t in only]
    assert all(not t.logs and not t.spans for t in only)


def test_every_record_is_valid_wire_format_and_inside_its_tick(run):
    sim, ticks = run
    for tick in ticks[::7]:
        for kind, records in ((RecordKind.METRIC, tick.metrics.wire()),
                              (RecordKind.LOG, [r.to_wire() for r in tick.logs]),
                              (RecordKind.SPAN, [s.to_wire() for s in tick.spans])):
            for rec in records:
                check_wire(kind, rec)
                if kind == RecordKind.SPAN:  # a slow trace may outlast its tick
                    assert rec["start"] >= tick.time_ms
                    if "parent_span_id" not in rec:
                        assert rec["start"] < tick.time_ms + tick.interval_ms
                else:
                    assert tick.time_ms <= rec["time"] < tick.time_ms + tick.interval_ms


def check_wire(kind, rec):
    spec = SPECS[kind]
    assert rec["type"] == kind.value
    assert set(rec) <= spec.json_names
    for f in spec.fields:
        if f.json_name not in rec:
            assert not f.required, (f.json_name, rec)
            continue
        value = rec[f.json_name]
        if f.type == FieldType.HEX_ID:
            assert re.fullmatch(f"[0-9a-f]{{{f.hex_length}}}", value), (f.json_name, value)
        elif f.type in (FieldType.NUMBER, FieldType.NON_NEGATIVE):
            assert isinstance(value, float) and np.isfinite(value)
            assert f.type != FieldType.NON_NEGATIVE or value >= 0
        elif f.type == FieldType.ATTRIBUTES:
            assert all(isinstance(v, str) for v in value.values())
    if kind == RecordKind.LOG:
        assert rec["severity"] in SEVERITIES
    if kind == RecordKind.SPAN:
        assert rec["kind"] in SPAN_KINDS and rec["status"] in SPAN_STATUSES


def test_metric_block_wire_equals_metric_point_to_wire(run):
    sim, ticks = run
    block = ticks[40].metrics
    assert [p.to_wire() for p in block.points()] == block.wire()
    assert all(isinstance(p, MetricPoint) for p in block.points())
    names = {d["name"] for d in block.wire()}
    assert names == set(METRIC_NAMES)


def test_spans_follow_the_call_graph(run, system):
    sim, ticks = run
    spans = [s for tick in ticks[:30] for s in tick.spans]
    by_id = {s.span_id: s for s in spans}
    for s in spans:
        if s.kind == "client":
            callee = s.attributes["peer.service"]
            assert callee in system.service(s.service).calls
            children = [c for c in spans if c.parent_span_id == s.span_id]
            assert [c.service for c in children] == [callee]
        elif s.parent_span_id:
            parent = by_id[s.parent_span_id]
            assert parent.kind == "client" and parent.trace_id == s.trace_id
        else:
            assert s.service in system.roots()


def test_wire_batches_and_ndjson_hold_every_record(system, tmp_path):
    sim = simulate(system, START, 3 * MIN, 5)
    expected = {k.value: 0 for k in RecordKind}
    for tick in sim:
        expected["metric"] += len(tick.metrics)
        expected["log"] += len(tick.logs)
        expected["span"] += len(tick.spans)
    got = {k.value: 0 for k in RecordKind}
    times = []
    for batch in wire_batches(sim, batch_size=100):
        assert 0 < len(batch.records) <= 100
        assert all(r["type"] == batch.kind.value for r in batch.records)
        assert len(orjson.loads(batch.encode())) == len(batch.records)
        got[batch.kind.value] += len(batch.records)
        times.append(batch.time_ms)
    assert got == expected and times == sorted(times)
    counts = write_ndjson(sim, tmp_path / "out.ndjson")
    lines = (tmp_path / "out.ndjson").read_bytes().splitlines()
    assert counts == expected and len(lines) == sum(expected.values())
    assert {orjson.loads(line)["type"] for line in lines} == {"metric", "log", "span"}


def test_public_api_is_pinned():
    import pipeline.evaluate
    import pipeline.simulate

    assert {"simulate", "Simulation", "SimStep", "ScheduledIncident", "load_system", "Labels",
            "validate_labels", "load_labels", "save_labels", "write_ndjson", "wire_batches",
            "mix_incidents", "parse_schedule", "METRIC_NAMES"} <= set(pipeline.simulate.__all__)
    assert all(hasattr(pipeline.simulate, name) for name in pipeline.simulate.__all__)
    assert set(pipeline.evaluate.__all__) == {
        "DEFAULT_MATCH_SLACK_MS", "EvaluationError", "EvaluationResult", "GroupingScore",
        "IncidentOutcome", "evaluate", "format_table", "result_to_dict"}


# --- scenario signatures ---------------------------------------------------------------


def test_signature_strings_appear_only_inside_their_scenarios_windows(run):
    sim, ticks = run
    for text, scenarios in SIGNATURES.items():
        windows = [i for i in sim.labels.incidents if i.scenario in scenarios]
        found = logs_with(ticks, text)
        assert found, text
        for rec in found:
            assert any(inside(rec.time, i) for i in windows), (text, rec)


def test_db_outage_signature_in_callers_logs_metrics_and_traces(run, system):
    sim, ticks = run
    inc = incident(sim, "db_outage")
    assert inc.root_cause_service == "postgres" and inc.category == "connectivity"
    assert {"orders", "inventory", "api", "gateway"} <= set(inc.affected_services)
    refused = logs_with(ticks, "connection refused") + logs_with(ticks, "database unavailable")
    assert {r.service for r in refused} == set(system.callers("postgres"))
    assert all(r.severity_text == "ERROR" for r in refused)
    quiet = {tick.time_ms for tick in ticks if not tick.active}
    for caller, floor in (("orders", 0.3), ("api", 0.15)):
        errs = series(sim, ticks, caller, "http.server.error.ratio")
        assert min(v for t, v in errs if inside(t, inc)) > floor
        assert max(v for t, v in errs if t in quiet) < 0.08
    beats = series(sim, ticks, "postgres", "heartbeat")
    assert all((v is None) == inside(t, inc) for t, v in beats)
    refused_ticks = {tick.time_ms for tick in ticks for s in tick.spans
                     if s.attributes.get("error.type") == "connection_refused"
                     and s.attributes["peer.service"] == "postgres"}
    assert refused_ticks == {tick.time_ms for tick in ticks if inside(tick.time_ms, inc)}
    server = [s for tick in ticks for s in tick.spans if s.service == "postgres"]
    assert server and not any(inside(s.start, inc) for s in server)


def test_error_spike_raises_only_the_roots_error_ratio(run):
    sim, ticks = run
    inc = incident(sim, "error_spike")
    errs = series(sim, ticks, "orders", "http.server.error.ratio")
    assert np.mean([v for t, v in errs if inside(t, inc)]) > 0.1
    assert np.mean([v for t, v in errs if t < inc.start_ms]) < 0.03
    assert {r.service for r in logs_with(ticks, "unhandled exception")
            if inside(r.time, inc)} == {"orders"}


def test_memory_leak_grows_per_hour_then_ooms_and_restarts(run):
    sim, ticks = run
    inc = incident(sim, "memory_leak")
    mem = [(t, v) for t, v in series(sim, ticks, "api", "system.memory.utilization")
           if inside(t, inc) and t + sim.interval_ms < inc.end_ms]
    slope_per_hour = np.polyfit([t / 3_600_000 for t, _ in mem], [v for _, v in mem], 1)[0]
    # reported as a ratio 0..1 (OpenTelemetry's unit "1"); the scenario works in %
    assert slope_per_hour == pytest.approx(inc.params["growth_pct_per_hour"] / 100, rel=0.05)
    assert slope_per_hour > 0.9  # from ~48 % to 99 % in 30 minutes
    last = inc.end_ms - sim.interval_ms
    assert {r.time // sim.interval_ms * sim.interval_ms
            for r in logs_with(ticks, "OOMKilled")} == {last}
    beats = dict(series(sim, ticks, "api", "heartbeat"))
    assert beats[last] is None and beats[last - sim.interval_ms] == 1.0
    after = dict(series(sim, ticks, "api", "system.memory.utilization"))[inc.end_ms]
    assert after < 0.6


def test_cpu_saturation_pins_cpu_and_slows_the_service(run):
    sim, ticks = run
    inc = incident(sim, "cpu_saturation")
    cpu = series(sim, ticks, "inventory", "system.cpu.utilization")
    assert min(v for t, v in cpu if inside(t, inc)) > 0.88  # ratio 0..1
    assert max(v for t, v in cpu if not inside(t, inc)) < 0.6
    p50 = dict(series(sim, ticks, "inventory", "http.server.request.duration.p50"))
    assert p50[inc.end_ms - sim.interval_ms] > 2 * p50[inc.start_ms - sim.interval_ms]


def test_latency_degradation_cascades_to_callers(run):
    sim, ticks = run
    inc = incident(sim, "latency_degradation")
    for service in ("payments", "orders", "gateway"):
        p50 = dict(series(sim, ticks, service, "http.server.request.duration.p50"))
        assert p50[inc.end_ms - sim.interval_ms] > p50[inc.start_ms - sim.interval_ms] + 0.1
    assert {r.service for r in logs_with(ticks, "slow response from payments")} == {"orders"}


def test_coordination_failure_bursts_stuck_tasks_and_missing_heartbeats(run):
    sim, ticks = run
    inc = incident(sim, "coordination_failure")
    assert set(inc.affected_services) == {"agent-coordinator", "agent-worker"}
    per_tick = [sum("coordination_failed" in r.body for r in tick.logs) for tick in ticks
                if inside(tick.time_ms, inc)]
    assert min(per_tick) >= 8
    queue = dict(series(sim, ticks, "agent-coordinator", "queue.depth"))
    assert queue[inc.end_ms - sim.interval_ms] > queue[inc.start_ms] + 100
    for tick in ticks:
        hosts = tick.metrics.series("agent-worker", "heartbeat", sim.layout)
        assert len(hosts) == (1 if inside(tick.time_ms, inc) else 3)


def test_bad_deploy_changes_the_version_from_the_deploy_line_on(run):
    sim, ticks = run
    inc = incident(sim, "bad_deploy")
    new, old = inc.params["new_version"], inc.params["old_version"]
    [deploy] = logs_with(ticks, "deploy started")
    assert deploy.time == inc.start_ms and new in deploy.body and deploy.service == "auth"
    for tick in ticks:
        want = new if inside(tick.time_ms, inc) else old
        versions = {d["attributes"]["service.version"] for d in tick.metrics.wire()
                    if d["service.name"] == "auth"}
        versions |= {s.attributes["service.version"] for s in tick.spans if s.service == "auth"}
        assert versions == {want}
    errs = series(sim, ticks, "auth", "http.server.error.ratio")
    assert np.mean([v for t, v in errs if inside(t, inc)]) > 0.05


def test_quiet_run_has_no_incident_signature(system):
    sim = simulate(system, START, 40 * MIN, seed=2)
    ticks = list(sim)
    assert sim.labels.incidents == ()
    for text in SIGNATURES:
        assert not logs_with(ticks, text), text
    for tick in ticks:
        assert tick.metrics.present is None and not tick.active  # every heartbeat present
    for service in system.names:
        errs = [v for _, v in series(sim, ticks, service, "http.server.error.ratio")]
        assert np.mean(errs) < 0.03, service


# --- schedules, labels, topology -------------------------------------------------------


def test_mixed_schedule_is_seeded_and_non_overlapping(system):
    a = simulate(system, START, 8 * 3_600_000, seed=5, mixed=True).labels
    assert a == simulate(system, START, 8 * 3_600_000, seed=5, mixed=True).labels
    assert a != simulate(system, START, 8 * 3_600_000, seed=6, mixed=True).labels
    spans = sorted([(i.start_ms, i.end_ms) for i in a.incidents] + list(a.quiet_periods))
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:], strict=False))
    assert len({i.scenario for i in a.incidents}) >= 5


def test_labels_round_trip_and_validate(tmp_path, run):
    sim, _ = run
    path = tmp_path / "labels.json"
    save_labels(sim.labels, path)
    assert validate_labels(orjson.loads(path.read_bytes())) == []
    assert load_labels(path) == sim.labels


def test_broken_labels_give_readable_problems(tmp_path):
    broken = {"version": 2, "seed": "x", "start_ms": 10, "end_ms": 5, "incidents": [
        {"id": "a", "scenario": "meltdown", "start_ms": 1, "end_ms": 1,
         "root_cause_service": "db", "category": "resource", "affected_services": ["api"]},
        {"id": "a"}]}
    problems = validate_labels(broken)
    for expected in ("version: expected 1, got 2", "seed: expected an integer, got 'x'",
                     "end_ms: 5 must be after start_ms 10",
                     "incidents[0] (a).scenario: expected one of",
                     "incidents[0] (a).affected_services: must include the root cause 'db'",
                     "incidents[0] (a).end_ms: 1 must be after its start_ms 1",
                     "incidents[1].id: duplicate id 'a'",
                     "incidents[1].start_ms: missing (an integer)"):
        assert any(p.startswith(expected) for p in problems), (expected, problems)
    assert validate_labels([]) == ["expected a JSON object at the top, got list"]
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps(broken))
    with pytest.raises(LabelsError, match=r"bad.json: invalid labels:\n  version"):
        load_labels(path)
    path.write_text("{not json")
    with pytest.raises(LabelsError, match="not valid JSON"):
        load_labels(path)
    assert Labels.from_dict(Labels(1, 0, 10).to_dict()) == Labels(1, 0, 10)


def test_schedule_errors_name_the_problem(system):
    with pytest.raises(ScenarioError, match="overlaps db_outage"):
        simulate(system, START, 60 * MIN, 1, [ScheduledIncident("error_spike", START, 20 * MIN),
                                              ScheduledIncident("db_outage", START + MIN, MIN)])
    with pytest.raises(ScenarioError, match="db_outage cannot start in 'orders'.*postgres"):
        simulate(system, START, 60 * MIN, 1, [ScheduledIncident("db_outage", START, MIN,
                                                                "orders")])
    with pytest.raises(ScenarioError, match="outside the simulated range"):
        simulate(system, START, 10 * MIN, 1, [ScheduledIncident("db_outage", START, 20 * MIN)])
    assert parse_schedule("db_outage@30m+10m, error_spike:orders@1h+90s", START) == [
        ScheduledIncident("db_outage", START + 30 * MIN, 10 * MIN),
        ScheduledIncident("error_spike", START + 60 * MIN, 90_000, "orders")]
    with pytest.raises(ScenarioError, match="expected scenario"):
        parse_schedule("db_outage at noon", START)


def test_invalid_system_errors_name_file_and_field(tmp_path):
    path = tmp_path / "sys.yaml"
    path.write_text("services:\n  a: {kind: http, calls: [b, zz], baseline: {request_rate: 1,"
                    " error_ratio: 2, latency_ms: 1, cpu_pct: 1, memory_pct: 1, queue_depth: 1}}\n"
                    "  b: {kind: blob, calls: [a], baseline: {}}\n")
    with pytest.raises(TopologyError) as err:
        load_system(path)
    text = str(err.value)
    assert text.startswith(f"{path}: invalid system:")
    for expected in ("services.a.calls[1]: unknown service 'zz'",
                     "services.a.baseline.error_ratio: 2 is outside [0, 1]",
                     "services.b.kind: expected one of", "services.b.baseline.cpu_pct: missing"):
        assert expected in text, text
    with pytest.raises(TopologyError, match="call cycle a -> b -> a"):
        parse_system({"services": {n: {"calls": [m], "baseline": dict.fromkeys(
            ("request_rate", "error_ratio", "latency_ms", "cpu_pct", "memory_pct",
             "queue_depth"), 0)} for n, m in (("a", "b"), ("b", "a"))}})


def test_default_system_shape(system):
    assert 8 <= len(system.services) <= 12
    assert system.service("gateway").calls == ("api",)
    assert {"postgres", "cache", "inventory"} <= set(system.service("orders").calls)
    assert "auth" in system.service("api").calls
    assert system.service("agent-coordinator").calls == ("agent-worker",)
    assert set(system.roots()) == {"gateway", "agent-coordinator"}
