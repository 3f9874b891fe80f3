"""The worker's metrics, readiness and ``tocsin status`` view, from plain snapshots."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pipeline.agents.detect import DetectCounters, source_lags
from pipeline.api.metrics import WorkerMetrics, status_families
from pipeline.api.probes import readiness
from pipeline.cli.status import render_status
from pipeline.detect.step import Watermarks
from pipeline.events.slices import Tick

NOW = 1_764_000_000_000


def samples(metrics: WorkerMetrics) -> dict[tuple[str, tuple], float]:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def status(**overrides) -> dict:
    base = {
        "app_id": "tocsin", "store": "chdb:tocsin#abc", "now_ms": NOW,
        "messages": {"metric": 12, "log": 3}, "stored": {"metric": 1150, "log": 300},
        "rejected": {"metric": 7}, "store_failed_attempts": 2,
        "agents": {"tocsin.ingest.metric": {"batches": 10, "failures": 2, "crashes": 1,
                                            "given_up": 0, "consecutive_failures": 0,
                                            "stuck": False}},
        "consumer_lag": [{"topic": "tocsin.metrics", "partition": 0, "lag": 0},
                         {"topic": "tocsin.metrics", "partition": 1, "lag": 40}],
        "detect": {"engines": {"rules": "1"}, "batches": 4, "late_records": 5,
                   "watermark_ms": NOW - 120_000, "by_detector": {
                       "high-error-rate": {"firing": 2, "resolved": 1}},
                   "sources": {"metrics/0": {"time_ms": NOW - 60_000, "backlog": False,
                                             "lag_ms": 0},
                               "logs/0": {"time_ms": NOW, "backlog": True,
                                          "lag_ms": 60_000}}},
        "correlate": {"decisions": {"opened": 2}, "alerts": 3,
                      "alerts_by_type": {"io.tocsin.problem.opened": 2,
                                         "io.tocsin.problem.resolved": 1},
                      "open_problems": {"default": 1}, "event_time_ms": {"default": NOW},
                      "edge_detections": {"firing": 4, "resolved": 3}},
        "reads": {"served": 4, "refused": 1, "failed": 0, "running": 0},
    }
    return {**base, **overrides}


def test_status_counts_become_prometheus_metrics():
    metrics = WorkerMetrics()
    metrics.collect_status(lambda: status())
    got = samples(metrics)
    assert got[("tocsin_ingest_records_stored_total", (("kind", "metric"),))] == 1150
    assert got[("tocsin_ingest_messages_consumed_total", (("kind", "log"),))] == 3
    assert got[("tocsin_ingest_records_dead_lettered_total", (("kind", "metric"),))] == 7
    assert got[("tocsin_store_insert_failures_total", ())] == 2
    agent = (("agent", "tocsin.ingest.metric"),)
    assert got[("tocsin_agent_batch_failures_total", agent)] == 2
    assert got[("tocsin_agent_crashes_total", agent)] == 1
    assert got[("tocsin_consumer_lag_records",
                (("partition", "1"), ("topic", "tocsin.metrics")))] == 40
    assert got[("tocsin_detections_total",
                (("detector", "high-error-rate"), ("state", "firing")))] == 2
    # the service-graph step runs in the correlator; its detections count the same way
    assert got[("tocsin_detections_total",
                (("detector", "service-graph"), ("state", "resolved")))] == 3
    assert got[("tocsin_detect_late_records_total", ())] == 5
    assert got[("tocsin_detect_watermark_lag_seconds", (("source", "logs/0"),))] == 60
    assert got[("tocsin_detect_source_backlog", (("source", "logs/0"),))] == 1
    assert got[("tocsin_detect_watermark_timestamp_seconds", ())] == (NOW - 120_000) / 1000
    assert got[("tocsin_alerts_sent_total", (("type", "io.tocsin.problem.opened"),))] == 2
    assert got[("tocsin_problems_open", (("scope", "default"),))] == 1
    assert got[("tocsin_queries_total", (("outcome", "refused"),))] == 1


def test_histograms_observe_batches_inserts_and_queries():
    metrics = WorkerMetrics()
    metrics.observe_batch("tocsin.ingest.log", 20, 0.03)
    metrics.observe_batch("tocsin.ingest.log", 5, 0.2)
    metrics.observe_insert("logs", 0.004)
    metrics.observe_query(1.5)
    got = samples(metrics)
    agent = (("agent", "tocsin.ingest.log"),)
    assert got[("tocsin_agent_batch_size_records_count", agent)] == 2
    assert got[("tocsin_agent_batch_size_records_sum", agent)] == 25
    assert got[("tocsin_agent_batch_size_records_bucket", (*agent, ("le", "5.0")))] == 1
    assert got[("tocsin_store_insert_duration_seconds_count", (("table", "logs"),))] == 1
    assert got[("tocsin_query_duration_seconds_bucket", (("le", "2.5"),))] == 1
    assert got[("tocsin_query_duration_seconds_bucket", (("le", "1.0"),))] == 0


def test_two_workers_in_one_process_count_apart():
    one, two = WorkerMetrics(), WorkerMetrics()
    one.observe_batch("tocsin.detect", 7, 0.1)
    assert samples(one)[("tocsin_agent_batch_size_records_count",
                         (("agent", "tocsin.detect"),))] == 1
    assert not any(name == "tocsin_agent_batch_size_records_count" for name, _ in samples(two))


def test_names_follow_prometheus_conventions():
    metrics = WorkerMetrics()
    metrics.collect_status(lambda: status())
    metrics.observe_batch("a", 1, 0.1)
    body = metrics.exposition()[0].decode()
    for family in text_string_to_metric_families(body):
        assert family.name.startswith("tocsin_")
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if "seconds" in family.name or "duration" in family.name:
            assert "_seconds" in family.name


def test_a_disabled_stage_exposes_no_detect_families():
    got = status_families(status(detect={"engines": {}}))
    assert not [f for f in got if f.name.startswith("tocsin_detect")]


def test_readiness_names_every_reason():
    ready = readiness(assigned=6, rebalancing=False, store_error=None, stuck=())
    assert (ready.status, ready.to_wire()["status"]) == (200, "ready")
    not_ready = readiness(assigned=0, rebalancing=False, store_error="Code: 210 refused",
                          stuck=[("tocsin.ingest.metric", 4, "StoreUnavailable: down")])
    assert not_ready.status == 503
    assert not_ready.reasons == (
        "no partitions assigned (the consumer has not joined its group, or more workers "
        "than partitions)",
        "store unreachable: Code: 210 refused",
        "agent tocsin.ingest.metric stuck: its batch failed 4 times in a row "
        "(StoreUnavailable: down)")


def test_source_lags_are_zero_when_caught_up():
    ticks = {"metrics/0": Tick("metrics/0", NOW, False), "logs/0": Tick("logs/0", NOW, True),
             "traces/0": Tick("traces/0", -1, False)}
    lags = source_lags(ticks, NOW - 60_000 - 5_000, allowed_lateness_ms=60_000)
    assert lags["metrics/0"] == {"time_ms": NOW, "backlog": False, "lag_ms": 5_000}
    assert source_lags(ticks, NOW - 60_000, 60_000)["metrics/0"]["lag_ms"] == 0
    assert lags["traces/0"]["lag_ms"] == 0 and lags["logs/0"]["backlog"]


def test_watermarks_merge_each_source_over_partitions():
    marks = Watermarks()
    marks.observe(0, Tick("metrics/0", NOW - 5_000, False))
    marks.observe(1, Tick("metrics/0", NOW, False))
    marks.observe(1, Tick("logs/0", NOW - 1_000, True))
    assert marks.sources() == {"logs/0": Tick("logs/0", NOW - 1_000, True),
                               "metrics/0": Tick("metrics/0", NOW, False)}


def test_detections_are_counted_by_detector_and_state():
    counters = DetectCounters()
    for detector, state in (("a", "firing"), ("a", "resolved"), ("b", "firing")):
        counters.count(detector, state)
    assert counters.detections == {"firing": 2, "resolved": 1}
    assert counters.by_detector == {"a": {"firing": 1, "resolved": 1}, "b": {"firing": 1}}


def test_status_view_says_how_far_behind_each_watermark_is():
    lines = render_status(status(), {"status": "ready"})
    text = "\n".join(lines)
    assert lines[0] == "worker tocsin (chdb:tocsin#abc): READY"
    assert "consumer lag: 40 messages" in text and "tocsin.metrics[1]: 40" in text
    assert "detect watermark: 2025-11-24 15:58:00 UTC (2m before now)\n" \
           "  behind 1 of 2 sources:" in text
    assert "    logs/0: at 2025-11-24 16:00:00, watermark 1m behind (records waiting)" in text
    assert "problems open: 1; alerts sent: 3 (2 opened, 1 resolved)" in text
    assert all(len(line) <= 80 for line in lines)


def test_status_view_says_caught_up_and_not_ready():
    caught_up = status(consumer_lag=[], detect={
        "engines": {"rules": "1"}, "watermark_ms": NOW - 60_000,
        "sources": {"metrics/0": {"time_ms": NOW, "backlog": False, "lag_ms": 0}}})
    lines = render_status(caught_up, {"status": "not ready",
                                      "reasons": ["store unreachable: down"]})
    assert lines[0].endswith(": NOT READY") and lines[1] == "  - store unreachable: down"
    assert "consumer lag: none (every message committed)" in lines
    assert any(line.endswith(", caught up") for line in lines)
