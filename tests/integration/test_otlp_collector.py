"""A real OpenTelemetry Collector and telemetrygen into the test broker, through a worker.

telemetrygen sends traces, metrics and logs over OTLP/gRPC to a Collector (otlp receiver
-> batch processor -> kafka exporter: protobuf for traces and metrics, OTLP/JSON for logs)
on loopback; a worker stores them. Both Go programs are built once per machine by
``scripts/build-otelcol.sh`` (``scripts/test.sh`` runs it first); without them the test
skips locally and fails in CI.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.kafka import find_free_port
from pipeline.kafka.transport import ensure_topics
from tests.conftest import pipeline_env, settings_from
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

CACHE = Path(os.environ.get("TOCSIN_CACHE_DIR", Path.home() / ".cache" / "tocsin")) / "otelcol"
OTELCOL, TELEMETRYGEN = CACHE / "otelcol", CACHE / "telemetrygen"

# telemetrygen v0.161.0's histogram samples (pkg/metrics/worker.go): point i carries
# sample i % 10 over the bounds below, each with 10 observations, as a delta over 1 s
BOUNDS = [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000]
SAMPLES = [
    ({2: 1, 6: 3, 7: 4, 8: 1, 9: 1}, 3940), ({6: 2, 7: 4, 8: 4}, 4455),
    ({6: 1, 7: 4, 8: 3, 9: 2}, 5337), ({2: 1, 4: 1, 6: 2, 7: 2, 8: 1, 9: 3}, 4477),
    ({5: 1, 6: 3, 7: 2, 8: 2, 9: 2}, 4670), ({3: 1, 4: 1, 6: 1, 7: 1, 8: 1, 9: 5}, 5670),
    ({5: 2, 6: 1, 7: 1, 8: 4, 9: 2}, 5091), ({2: 2, 6: 2, 7: 4, 8: 1, 9: 1}, 3420),
    ({6: 1, 7: 3, 8: 2, 9: 4}, 5917), ({2: 1, 4: 1, 7: 4, 8: 4}, 3988),
]
TRACES, CHILD_SPANS, LOGS, GAUGES, HISTOGRAMS, COUNTER_POINTS = 40, 2, 30, 20, 10, 6


def reference_quantile(buckets: dict[int, int], q: float) -> float:
    """The quantile by walking the buckets: the rank's bucket, linear inside it."""
    rank, seen = q * sum(buckets.values()), 0
    for i in sorted(buckets):
        if seen + buckets[i] >= rank:
            lower = BOUNDS[i - 1] if i > 0 else 0
            return lower + (BOUNDS[i] - lower) * (rank - seen) / buckets[i]
        seen += buckets[i]
    raise AssertionError("rank beyond the buckets")


def collector_config(bootstrap: str, prefix: str, grpc_port: int) -> str:
    return f"""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
processors:
  batch:
    timeout: 200ms
    send_batch_size: 100
    send_batch_max_size: 500
exporters:
  kafka:
    brokers: ["{bootstrap}"]
    traces: {{topic: {prefix}otlp_spans, encoding: otlp_proto}}
    metrics: {{topic: {prefix}otlp_metrics, encoding: otlp_proto}}
    logs: {{topic: {prefix}otlp_logs, encoding: otlp_json}}
    partition_metrics_by_resource_attributes: true
    producer: {{max_message_bytes: 1000000}}
service:
  telemetry:
    logs: {{level: warn}}
    metrics: {{level: none}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [kafka]}}
    metrics: {{receivers: [otlp], processors: [batch], exporters: [kafka]}}
    logs: {{receivers: [otlp], processors: [batch], exporters: [kafka]}}
"""


def binaries() -> None:
    missing = [p for p in (OTELCOL, TELEMETRYGEN) if not os.access(p, os.X_OK)]
    if missing:
        why = (f"{', '.join(map(str, missing))} not built: run scripts/build-otelcol.sh "
               "(scripts/test.sh does)")
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"collector exited with {proc.returncode}:\n{log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"collector not listening after {timeout_s}s:\n{log.read_text()}")


def telemetrygen(signal_name: str, port: int, *args: str) -> None:
    """One bounded telemetrygen run at a set rate (unthrottled runs drop data silently)."""
    command = [str(TELEMETRYGEN), signal_name, "--otlp-endpoint", f"127.0.0.1:{port}",
               "--otlp-insecure", "--service", "orders",
               "--otlp-attributes", 'host.name="node-7"',
               "--otlp-attributes", 'deployment.environment.name="e2e"', *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"


def test_the_shipped_collector_config_is_valid():
    """tools/otelcol/config.yaml (docker-compose's, the README's) as the Collector reads it."""
    binaries()
    config = Path(__file__).resolve().parents[2] / "tools" / "otelcol" / "config.yaml"
    done = subprocess.run([str(OTELCOL), "validate", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr


def test_collector_traces_metrics_and_logs_are_stored_as_sent(kafka_broker, names, tmp_path):
    binaries()
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port())
    settings = settings_from(env)
    asyncio.run(ensure_topics(settings))
    grpc_port = find_free_port()
    config = tmp_path / "otelcol.yaml"
    config.write_text(collector_config(kafka_broker.bootstrap, f"t{names}.", grpc_port))
    log = tmp_path / "otelcol.log"
    with log.open("wb") as out:
        collector = subprocess.Popen([str(OTELCOL), "--config", str(config)], stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    worker = None
    try:
        wait_for_port(grpc_port, collector, log)
        telemetrygen("traces", grpc_port, "--traces", str(TRACES), "--child-spans",
                     str(CHILD_SPANS), "--rate", "40", "--status-code", "Error",
                     "--telemetry-attributes", "http.response.status_code=503")
        telemetrygen("logs", grpc_port, "--logs", str(LOGS), "--rate", "40", "--body",
                     "payment declined", "--severity-number", "17", "--severity-text", "Error")
        telemetrygen("metrics", grpc_port, "--metrics", str(GAUGES), "--rate", "40",
                     "--metric-type", "Gauge", "--otlp-metric-name", "queue.depth")
        telemetrygen("metrics", grpc_port, "--metrics", str(HISTOGRAMS), "--rate", "20",
                     "--metric-type", "Histogram", "--aggregation-temporality", "delta",
                     "--otlp-metric-name", "http.server.request.duration")
        telemetrygen("metrics", grpc_port, "--metrics", str(COUNTER_POINTS), "--rate", "10",
                     "--metric-type", "Sum", "--aggregation-temporality", "cumulative",
                     "--otlp-metric-name", "http.server.requests")
        spans = TRACES * (1 + CHILD_SPANS)
        # histograms: count rate, sum rate, p50, p95, p99; a counter's first point seeds
        metrics = GAUGES + HISTOGRAMS * 5 + COUNTER_POINTS - 1
        expected = {"span": spans, "log": LOGS, "metric": metrics}
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        worker.wait_until(lambda w: all(w.status()["stored"].get(k, 0) >= n
                                        for k, n in expected.items()),
                          what=f"{expected} stored")
        status = worker.status()
        assert status["stored"] == expected and sum(status["rejected"].values()) == 0

        assert worker.query("SELECT count(), uniqExact(span_id), any(service), any(host), "
                            "countIf(status = 'error') FROM tocsin.spans") == \
            [[spans, spans, "orders", "node-7", spans]]
        child = worker.query(
            "SELECT kind, attributes['service.peer.name'], attributes['peer.service'],"
            " attributes['http.response.status_code'],"
            " attributes['deployment.environment.name'], attributes['otel.scope.name'] != '',"
            " parent_span_id IN (SELECT span_id FROM tocsin.spans WHERE name = 'lets-go'),"
            " duration_ms > 0 FROM tocsin.spans WHERE name = 'okey-dokey-1' LIMIT 1")
        assert child == [["server", "telemetrygen-client", "telemetrygen-client", "503", "e2e",
                          1, 1, 1]]

        assert worker.query("SELECT count(), any(severity_text), any(severity_number), "
                            "any(body), any(attributes['app']) FROM tocsin.logs") == \
            [[LOGS, "ERROR", 17, "payment declined", "server"]]

        assert worker.query("SELECT count(), min(value), max(value) FROM tocsin.metrics "
                            "WHERE name = 'queue.depth'") == [[GAUGES, 0, GAUGES - 1]]
        name = "http.server.request.duration"
        for q, suffix in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            stored = [row[0] for row in worker.query(
                f"SELECT value FROM tocsin.metrics WHERE name = '{name}.{suffix}' "
                "ORDER BY value")]
            assert stored == pytest.approx(sorted(
                reference_quantile(b, q) for b, _ in SAMPLES[:HISTOGRAMS])), suffix
        assert worker.query(f"SELECT groupUniqArray(value) FROM tocsin.metrics "
                            f"WHERE name = '{name}.count_rate'") == [[[10.0]]]
        sum_rates = worker.query(f"SELECT value FROM tocsin.metrics "
                                 f"WHERE name = '{name}.sum_rate' ORDER BY value")
        assert [r[0] for r in sum_rates] == sorted(float(s) for _, s in SAMPLES[:HISTOGRAMS])
        buckets = worker.query("SELECT counts, upper, interval_s FROM tocsin.metric_buckets "
                               f"WHERE name = '{name}'")
        assert sorted(row[0] for row in buckets) == sorted(
            [float(b.get(i, 0)) for i in range(len(BOUNDS) + 1)] for b, _ in SAMPLES)
        assert all(row[1][:-1] == BOUNDS and row[2] == 1.0 for row in buckets)
        rates = worker.query("SELECT count(), min(value) > 0, any(unit) FROM tocsin.metrics "
                             "WHERE name = 'http.server.requests.rate'")
        assert rates == [[COUNTER_POINTS - 1, True, "1/s"]]
    finally:
        if worker is not None:
            worker.stop()
        if collector.poll() is None:
            collector.send_signal(signal.SIGTERM)
            try:
                collector.wait(timeout=30)
            except subprocess.TimeoutExpired:
                collector.kill()
                collector.wait()
