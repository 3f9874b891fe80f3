"""Built-in rules on what the OTLP decoder stores: histograms as rates and quantiles.

The Collector sends ``http.server.request.duration`` (seconds) and ``rpc.server.duration``
(milliseconds) as histograms split by attributes, failed requests carrying ``error.type``;
the decoder stores ``<name>.count_rate`` (1/s), ``.sum_rate``, ``.p50``/``.p95``/``.p99``
in the histogram's unit. The latency and error rules must meet those rows as they come out
of the decoder, converted to the thresholds' units.
"""

from __future__ import annotations

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Histogram, HistogramDataPoint, Metric

from detectors import RuleEngine, builtin_rule_paths, load_rules
from pipeline.detect.replay import Replayer
from pipeline.events.otlp import decode_otlp_values
from pipeline.events.otlp_series import SeriesMemory
from pipeline.events.schema import RecordKind
from pipeline.events.slices import read_slice, split_by_service
from tests.unit.events.otlp_support import key_values, metrics

T0_MS = 1_780_000_000_000
DELTA = 1
STEP_S = 10
BOUNDS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]


def counts_around(seconds: float, n: int) -> list[int]:
    """``n`` observations all in the bucket holding ``seconds`` (bounds in seconds)."""
    counts = [0] * (len(BOUNDS_S) + 1)
    counts[next((i for i, b in enumerate(BOUNDS_S) if seconds <= b), len(BOUNDS_S))] = n
    return counts


def point(t_s: int, seconds: float, n: int, scale: float, **attrs) -> HistogramDataPoint:
    """A delta point of ``n`` requests near ``seconds``, bounds in the unit 1/``scale`` s."""
    dp = HistogramDataPoint(
        time_unix_nano=(T0_MS + t_s * 1000) * 1_000_000,
        start_time_unix_nano=(T0_MS + (t_s - STEP_S) * 1000) * 1_000_000,
        count=n, sum=seconds * n * scale, bucket_counts=counts_around(seconds, n),
        explicit_bounds=[b * scale for b in BOUNDS_S])
    dp.attributes.extend(key_values(attrs))
    return dp


def stream(name: str, unit: str, minutes: int, slow_from: int, error_from: int) -> list:
    """Detections of the built-in rules on ``minutes`` of one service's histogram through
    the decoder and the by-service slices, as the stream carries them: 50 ok requests
    per 10 s at 80 ms; from ``slow_from`` minutes at 3 s; from ``error_from`` minutes 20
    failed requests per 10 s beside them."""
    scale = 1000.0 if unit == "ms" else 1.0
    replayer = Replayer(RuleEngine(load_rules(builtin_rule_paths())))
    memory = SeriesMemory()
    for minute in range(minutes):
        points = []
        for t_s in range(minute * 60 + STEP_S, (minute + 1) * 60 + 1, STEP_S):
            latency = 3.0 if minute >= slow_from else 0.08
            points.append(point(t_s, latency, 50, scale, **{"http.route": "/cart"}))
            if minute >= error_from:
                points.append(point(t_s, latency, 20, scale, **{
                    "http.route": "/cart", "error.type": "500"}))
        metric = Metric(name=name, unit=unit, histogram=Histogram(
            aggregation_temporality=DELTA, data_points=points))
        batch = decode_otlp_values(RecordKind.METRIC,
                                   [metrics([metric], resource={"service.name": "cart",
                                                                "host.name": "cart-1"})
                                    .SerializeToString()],
                                   T0_MS + minutes * 60_000, memory)
        assert batch.rejections == []
        for key, value in split_by_service("metrics", batch.to_arrow(), 1_048_576).messages:
            piece = read_slice(key, value)
            replayer.feed(piece.signal, piece.columns)
    replayer.finish()
    return [d for d in replayer.detections if d.state == "firing"]


@pytest.mark.parametrize(("name", "unit"), [("http.server.request.duration", "s"),
                                             ("rpc.server.duration", "ms")])
def test_latency_and_errors_fire_on_decoded_histograms(name: str, unit: str) -> None:
    found = stream(name, unit, minutes=30, slow_from=12, error_from=20)
    first = {}
    for d in found:
        first.setdefault(d.detector, d)
    slow = first["slow-responses"]
    # p95 and p99 of 3 s requests, reported in the threshold's unit (ms)
    assert slow.evidence["unit"] == "ms" and 2000 < slow.observed < 5000
    assert slow.entity.startswith(f"{name}.p9")
    assert T0_MS + 12 * 60_000 < slow.time < T0_MS + 20 * 60_000
    # 20 of 70 requests carry error.type: the ratio of request counts, not of rows
    # (rows would give 1/2); the first firing window still holds minutes without errors
    errors = first["request-error-rate"]
    assert 0.05 < errors.observed <= 20 / 70 + 1e-9
    assert errors.time > T0_MS + 20 * 60_000


def test_fast_requests_without_errors_raise_nothing() -> None:
    assert stream("http.server.request.duration", "s", minutes=30, slow_from=99,
                  error_from=99) == []
