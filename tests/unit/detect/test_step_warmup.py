"""The detect step warms new model series up from stored history before scoring them."""

from __future__ import annotations

import numpy as np
import orjson

from pipeline.detect.engines import ModelEngineRunner
from pipeline.detect.step import DetectionStep, Message
from pipeline.errors import StoreUnavailable
from pipeline.events.codec import decode_values
from pipeline.events.schema import RecordKind
from pipeline.events.slices import split_by_service

NOW = 1_764_000_000_000
MIN = 60_000


def slice_of(values: list[float], start_ms: int) -> Message:
    """One by-service message: cpu of api-1 once a minute from ``start_ms``."""
    records = [{"time": start_ms + i * MIN, "service.name": "api", "host.name": "api-1",
                "name": "cpu", "value": v, "unit": "%"} for i, v in enumerate(values)]
    batch = decode_values(RecordKind.METRIC, [orjson.dumps(records)], NOW + 3_600_000)
    (key, value), = split_by_service("metrics", batch.to_arrow(), 1_048_576).messages
    return Message(0, key, value)


def stored(service, series, before_ms):
    """The store as the worker would read it: 6 h of calm cpu before ``before_ms``."""
    assert service == "api" and list(series) == [("api-1", "cpu")]
    n = 360
    rng = np.random.default_rng(0)
    return {"time": before_ms - MIN * np.arange(n, 0, -1), "host": ["api-1"] * n,
            "name": ["cpu"] * n, "value": 40.0 + rng.standard_normal(n)}


def firing(result):
    return [d for d in result.detections if d.state == "firing"
            and d.detector == "model:seasonal-ensemble"]


def test_a_worker_meeting_a_shifted_series_fires_only_with_history():
    shifted = (80.0 + np.random.default_rng(1).standard_normal(8)).tolist()  # 40 sigma up
    warm = DetectionStep({"models": ModelEngineRunner("")}, 60_000, history=stored)
    out = warm.run([slice_of(shifted, NOW)], lambda e, s: None, lambda p: [])
    assert out.seeded == 1 and out.history_errors == 0
    # one-minute points: confirmed on the second point out of band (confirm_ms), the
    # detection starting at the first
    assert len(firing(out)) == 1 and firing(out)[0].time == NOW + MIN
    assert firing(out)[0].window_start == NOW
    cold = DetectionStep({"models": ModelEngineRunner("")}, 60_000)
    out = cold.run([slice_of(shifted, NOW)], lambda e, s: None, lambda p: [])
    assert out.seeded == 0 and firing(out) == []


def test_history_is_read_once_per_new_series_and_a_failed_read_is_counted():
    reads = []

    def counting(service, series, before_ms):
        reads.append((service, tuple(series), before_ms))
        return stored(service, series, before_ms)

    step = DetectionStep({"models": ModelEngineRunner("")}, 60_000, history=counting)
    first = step.run([slice_of([40.0, 41.0], NOW)], lambda e, s: None, lambda p: [])
    state = first.states[("models", "api")]
    step.run([slice_of([40.5], NOW + 2 * MIN)], lambda e, s: state, lambda p: [])
    assert reads == [("api", (("api-1", "cpu"),), NOW)]  # the stored state knows it now

    def down(service, series, before_ms):
        raise StoreUnavailable("the store is down")

    step = DetectionStep({"models": ModelEngineRunner("")}, 60_000, history=down)
    out = step.run([slice_of([40.0, 41.0], NOW)], lambda e, s: None, lambda p: [])
    assert out.history_errors == 1 and out.seeded == 0 and out.errors == 0
    assert ("models", "api") in out.states  # scored cold, state kept
