"""The detect step scores the metric slices of all services of a batch together
(``batched``, the default) and finds exactly what scoring each slice on its own finds.

The rule engine likewise folds the slices before each tick at once (last test).

The reference is the step with ``batched=False`` and ``live_bytes=0``: every metric
slice through the model engine's ``process`` in message order, every state decoded from
its bytes at each step, as the step always did. The step as the worker runs it (states
kept decoded between steps) and in parts of a few records must find the same. Both run the worker's
model engine as the default settings build it (keep-alives on; the rules are not
batched) over the same by-service messages, their states going through bytes between
steps as through the worker's tables; the detections must match one for one (numbers
within 1e-9) and so must the states' series.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from pipeline.agents.detect import partition_of
from pipeline.detect.engines import build_engines
from pipeline.detect.step import DetectionStep, Message
from pipeline.evaluate.nab import read_series_csv
from pipeline.events.codec import decode_values
from pipeline.events.columns import SIGNAL_OF_KIND
from pipeline.events.schema import RecordKind
from pipeline.events.slices import TICK_KEY, Tick, encode_ticks, read_slice, split_by_service
from pipeline.settings import load_settings
from pipeline.simulate import load_system, simulate, tick_wire

T0 = 1_718_000_000_000
PARTITIONS = 2
NAB_SERIES = "realTraffic/TravelTime_387.csv"


def forwarded(kind: RecordKind, records: list[dict[str, Any]], now_ms: int) -> list[Message]:
    """The by-service messages ingest forwards for ``records`` of one kind."""
    batch = decode_values(kind, [orjson.dumps(records)], now_ms)
    out = split_by_service(SIGNAL_OF_KIND[kind], batch.to_arrow(), 1 << 20)
    return [Message(partition_of(k, PARTITIONS), k, v) for k, v in out.messages]


def ticks(source: str, time_ms: int) -> list[Message]:
    value = encode_ticks([Tick(source, time_ms, False)])
    return [Message(p, TICK_KEY, value) for p in range(PARTITIONS)]


def run(steps: list[list[Message]], batched: bool, history: Any = None,
        history_many: Any = None, **options: Any
        ) -> tuple[list[Any], dict[tuple[str, str], Any], int]:
    """Every detection, the last states (decoded) and the series seeded; ``options``
    go to the step."""
    settings = load_settings(environ={})
    engines = {"models": build_engines(settings)["models"]}  # the rules are not batched
    step = DetectionStep(engines, settings.detect.allowed_lateness_ms, history,
                         batched=batched, history_many=history_many, **options)
    detections, stored, seeded = run_steps(step, steps)
    states = {key: engines[key[0]].state_from_bytes(data) for key, data in stored.items()}
    return detections, states, seeded


def run_steps(step: DetectionStep, steps: list[list[Message]]
              ) -> tuple[list[Any], dict[tuple[str, str], bytes], int]:
    """Every detection of ``step`` over ``steps``, the state bytes last stored and the
    series seeded (each step reads the states the ones before stored)."""
    stored: dict[tuple[str, str], bytes] = {}
    detections, seeded = [], 0
    for messages in steps:
        result = step.run(messages, lambda e, s: stored.get((e, s)),
                          lambda p: sorted({s for _, s in stored
                                            if partition_of(s.encode(), PARTITIONS) == p}))
        assert result.errors == 0
        stored.update(result.states)
        detections += result.detections
        seeded += result.seeded
    return detections, stored, seeded


def same(a: Any, b: Any, where: str = "") -> None:
    """Equal, floats within 1e-9 (NaN equals NaN)."""
    if isinstance(a, float) or isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9,
                                                                  abs_tol=1e-9), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), where
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_equivalent(steps: list[list[Message]], history: Any = None,
                      history_many: Any = None, **options: Any) -> list[Any]:
    """The batched step (with ``options``) finds what the per-slice step decoding every
    state finds; returns its detections."""
    old, old_states, old_seeded = run(steps, batched=False, history=history,
                                      live_bytes=0)
    new, new_states, new_seeded = run(steps, batched=True, history=history,
                                      history_many=history_many, **options)
    assert new_seeded == old_seeded
    assert len(new) == len(old)
    for i, (d_old, d_new) in enumerate(zip(old, new, strict=True)):
        same(d_old.to_wire(), d_new.to_wire(), f"detection {i} ({d_old.id})")
    assert sorted(new_states) == sorted(old_states)
    for key, state in old_states.items():
        if key[0] != "models":
            continue
        bank, other = state.metrics, new_states[key].metrics
        assert bank.keys == other.keys
        k = len(bank)
        np.testing.assert_allclose(other.state[:, :k], bank.state[:, :k], rtol=1e-9,
                                   atol=1e-12)
        for name in ("firing", "since", "sent", "streak", "accept", "armed"):
            assert getattr(other, name)[:k].tolist() == getattr(bank, name)[:k].tolist()
    return new


def simulator_steps(minutes: int, ticks_per_step: int) -> list[list[Message]]:
    """A seeded simulator run with incidents: metrics, logs and spans of every service,
    ``ticks_per_step`` simulator ticks (10 s each) per detect step, ticks in between."""
    sim = simulate(load_system(), T0, minutes * 60_000, seed=5, mixed=True)
    steps, current = [], []
    for n, tick in enumerate(sim, 1):
        for kind, records in tick_wire(tick).items():
            if records:
                current += forwarded(kind, records, tick.time_ms + 3_600_000)
                current += ticks(f"{SIGNAL_OF_KIND[kind]}/0", tick.time_ms)
        if n % ticks_per_step == 0:
            steps.append(current)
            current = []
    return steps + [current]


def test_a_simulator_run_is_detected_alike_batched_or_slice_by_slice():
    detections = assert_equivalent(simulator_steps(45, 12))
    models = [d for d in detections if d.detector.startswith("model:")]
    assert {d.state for d in models} >= {"firing", "resolved"}  # the comparison has teeth
    assert len({d.service for d in models}) >= 3


def test_a_step_scored_in_groups_of_a_few_records_detects_alike():
    """A batch larger than ``max_records`` is scored a group of services at a time, each
    group's states stored before the next is decoded: with about 97 records a group,
    the services of each step of this run fall in many groups."""
    steps = simulator_steps(45, 12)
    metric_records = [sum(len(read_slice(m.key, m.value).columns["time"]) for m in step
                          if m.key != TICK_KEY and read_slice(m.key, m.value).signal == "metrics")
                      for step in steps]
    assert min(metric_records[:-1]) > 10 * 97  # far more than one group's worth
    detections = assert_equivalent(steps, max_records=97)
    assert {d.state for d in detections if d.detector.startswith("model:")} >= {
        "firing", "resolved"}


def test_a_step_scored_in_groups_of_a_few_decoded_bytes_detects_alike(monkeypatch):
    """A group also closes once its services' states take ``max_group_bytes`` decoded
    (each engine's estimate from the stored bytes): with one byte, every service that
    has a state is scored in a group of its own, and the detections do not change."""
    from pipeline.detect.engines import ModelEngineRunner

    groups = []
    scored = ModelEngineRunner.process_staged

    def counted(self, staged):
        groups.append(len(staged))
        return scored(self, staged)

    monkeypatch.setattr(ModelEngineRunner, "process_staged", counted)
    steps = simulator_steps(45, 12)
    detections = assert_equivalent(steps, max_group_bytes=1)
    assert len(groups) > 5 * len(steps)  # many groups a step, not one
    assert {d.state for d in detections if d.detector.startswith("model:")} >= {
        "firing", "resolved"}


def nab_path() -> Path | None:
    env = os.environ.get("TOCSIN_NAB_DIR")
    here = Path(__file__).resolve()
    roots = [Path(env)] if env else [p / "shared" / "data" / "nab" for p in here.parents]
    for root in roots:
        if (root / "data" / NAB_SERIES).is_file():
            return root / "data" / NAB_SERIES
    return None


def nab_steps(path: Path, services: int = 3, chunk: int = 120) -> list[list[Message]]:
    """A NAB series as the cpu of ``services`` services (each shifted and scaled), in
    slices of ``chunk`` points with two slices per service and step; every other step
    sends its later slice first, and a slice's points come shuffled: a series then sees
    its points in message order, not in time order."""
    times, values = read_series_csv(path)
    rng = np.random.default_rng(2)
    steps = []
    for s0 in range(0, times.size, 2 * chunk):
        messages = []
        parts = [(s0, s0 + chunk), (s0 + chunk, s0 + 2 * chunk)]
        if (s0 // (2 * chunk)) % 2:
            parts.reverse()
        for lo, hi in parts:
            idx = rng.permutation(np.arange(lo, min(hi, times.size)))
            for k in range(services):
                records = [{"time": int(times[i]), "service.name": f"nab-{k}",
                            "host.name": f"nab-{k}-1", "name": "cpu",
                            "value": float(values[i]) * (1 + k / 10) + k, "unit": "%"}
                           for i in idx.tolist()]
                if records:
                    messages += forwarded(RecordKind.METRIC, records,
                                          int(times[-1]) + 3_600_000)
        if s0 + 2 * chunk <= times.size:
            messages += ticks("metrics/0", int(times[min(s0 + 2 * chunk, times.size) - 1]))
        steps.append(messages)
    return steps


def test_a_nab_series_is_detected_alike_batched_or_slice_by_slice():
    path = nab_path()
    if path is None:
        pytest.skip(f"NAB data ({NAB_SERIES}) not found: set TOCSIN_NAB_DIR")
    detections = assert_equivalent(nab_steps(path))
    models = [d for d in detections if d.detector == "model:seasonal-ensemble"]
    assert {d.state for d in models} == {"firing", "resolved"}
    assert len({d.service for d in models}) >= 2


def test_series_warmed_up_from_history_are_detected_alike():
    """New series seeded from stored history (as a restarted worker reads it) first; the
    batched step asks for the history of all services new in a step in one read."""
    def stored(service: str, series: Any, before_ms: int) -> dict[str, Any]:
        n = 200
        rng = np.random.default_rng(zlib.crc32(f"{service}{before_ms}".encode()))
        pairs = list(series)
        return {"time": np.repeat(before_ms - 10_000 * np.arange(n, 0, -1), len(pairs)),
                "host": [h for _ in range(n) for h, _ in pairs],
                "name": [m for _ in range(n) for _, m in pairs],
                "value": 50.0 + rng.standard_normal(n * len(pairs))}

    reads: list[int] = []

    def many(requests: Any) -> list[dict[str, Any]]:
        services = [service for service, _, _ in requests]
        assert len(set(services)) == len(services)
        reads.append(len(requests))
        return [stored(*request) for request in requests]

    steps = simulator_steps(8, 6)
    detections = assert_equivalent(steps, history=stored, history_many=many)
    assert any(d.detector.startswith("model:") for d in detections)
    assert reads and reads[0] >= 10  # every service of the first step in one read
    assert len(reads) < len(steps) + 2  # a read per step (and round) at most


def test_a_failed_batch_history_read_counts_each_service_and_they_start_cold():
    def down(requests: Any) -> list[dict[str, Any]]:
        raise RuntimeError("the store is down")

    settings = load_settings(environ={})
    step = DetectionStep({"models": build_engines(settings)["models"]}, 60_000,
                         history=lambda *a: {}, history_many=down)
    out = step.run(simulator_steps(1, 6)[0], lambda e, s: None, lambda p: [])
    services = {key[1] for key in out.states}
    assert out.history_errors == len(services) > 3 and out.seeded == 0 and out.errors == 0


def rule_run(steps: list[list[Message]], batched: bool, **options: Any
             ) -> tuple[list[Any], dict[tuple[str, str], bytes]]:
    """Every detection of the rule engine alone, and the state bytes last stored."""
    settings = load_settings(environ={})
    step = DetectionStep({"rules": build_engines(settings)["rules"]},
                         settings.detect.allowed_lateness_ms, batched=batched, **options)
    detections, stored, _ = run_steps(step, steps)
    return detections, stored


def test_the_rules_fold_a_step_at_once_as_slice_by_slice() -> None:
    """The rule engine folds the slices before each tick together (``process_many``);
    the detections and the state bytes are those of one slice at a time, with states
    kept decoded between steps or not, and folded a few records at a time."""
    steps = simulator_steps(45, 12)
    old, old_bytes = rule_run(steps, batched=False, live_bytes=0)
    assert sum(d.state == "firing" for d in old) >= 3  # the comparison has teeth
    for options in ({}, {"max_records": 97, "live_bytes": 0}):
        new, new_bytes = rule_run(steps, batched=True, **options)
        assert [repr(d.to_wire()) for d in new] == [repr(d.to_wire()) for d in old]
        assert new_bytes == old_bytes
