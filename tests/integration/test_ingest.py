"""Telemetry through a real Kafka broker and a worker process into embedded ClickHouse
(and once through the clickhouse-connect backend, on chDB)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.events.schema import RecordKind
from pipeline.kafka import find_free_port
from pipeline.kafka.producer import TelemetryProducer
from pipeline.kafka.transport import ensure_topics
from tests.conftest import pipeline_env, settings_from
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


def good_records(now_ms: int) -> dict[RecordKind, list[dict]]:
    """6,000 metric points, 2,500 log records and 1,499 spans, all valid."""
    start = now_ms - HOUR_MS
    metrics = [{"time": start + i * 500, "service.name": f"svc-{i % 7}", "host.name": f"h{i % 3}",
                "name": "http.server.duration.p95", "value": float(i), "unit": "ms",
                "attributes": {"region": "eu-west-1", "shard": i % 4}} for i in range(6000)]
    logs = [{"time": start + i * 1000,
             "service.name": "orders", "severity": ("info", "WARNING", "ERROR")[i % 3],
             "body": f"request {i} handled", "trace_id": f"{i:032x}", "span_id": f"{i:016x}"}
            for i in range(2500)]
    spans = [{"trace_id": f"{i:032x}", "span_id": f"{i + 1:016x}", "service.name": "api",
              "name": "GET /orders", "start": (start + i) * 1_000_000, "duration_ms": 3.5,
              "status": "ok" if i % 10 else "error", "kind": "server",
              "attributes": {"http.status_code": 200 if i % 10 else 500}} for i in range(1499)]
    return {RecordKind.METRIC: metrics, RecordKind.LOG: logs, RecordKind.SPAN: spans}


def bad_messages(now_ms: int, max_bytes: int) -> list[tuple[str, bytes, int]]:
    """(topic kind, message value, number of bad records in it)."""
    ok = {"time": now_ms - 1000, "service.name": "x", "name": "m", "value": 1.0}
    return [
        ("metrics", b"{not json", 1),
        ("metrics", orjson.dumps([ok, {**ok, "value": "12a"}, {**ok, "colour": "red"}]), 2),
        ("metrics", orjson.dumps([{**ok, "time": now_ms + 10 * HOUR_MS}, 42]), 2),
        ("metrics", orjson.dumps([{**ok, "value": i} for i in range(max_bytes // 40)]), 1),
        ("logs", orjson.dumps({"time": now_ms, "service.name": "x", "severity": "LOUD",
                               "body": "?"}), 1),
        ("traces", orjson.dumps({"trace_id": "xyz", "span_id": "1", "service.name": "a",
                                 "name": "op", "start": now_ms, "duration_ms": -1}), 1),
    ]


async def send_all(settings, now_ms: int, max_bytes: int) -> tuple[int, int]:
    """Send the good records and the bad messages; returns (good extra rows, bad records)."""
    await ensure_topics(settings)
    topics = {"metrics": settings.topics.metrics, "logs": settings.topics.logs,
              "traces": settings.topics.traces}
    extra_good = bad = 0
    async with TelemetryProducer(settings, records_per_message=50) as producer:
        for kind, records in good_records(now_ms).items():
            await producer.send(kind, records)
        for topic, value, n_bad in bad_messages(now_ms, max_bytes):
            await producer.send_value(topics[topic], value)
            bad += n_bad
        extra_good += 1  # the one good record beside two bad ones
    return extra_good, bad


async def read_deadletters(settings, expect: int, timeout_s: float = 60.0) -> list:
    consumer = AIOKafkaConsumer(settings.topics.deadletter,
                                bootstrap_servers=settings.kafka.bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(found) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                found.extend(records)
    finally:
        await consumer.stop()
    return found


# the worker's store: Tocsin's embedded backend, or the clickhouse-connect one on chDB
STORES = {"embedded": lambda root: {},
          "chdb-connect": lambda root: {"TOCSIN_STORE_CLICKHOUSE_URL": f"chdb://{root}/cc-store"}}


@pytest.mark.parametrize("backend", list(STORES))
def test_good_records_stored_once_and_bad_ones_dead_lettered(kafka_broker, names, tmp_path,
                                                             backend):
    max_bytes = 100_000
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_INGEST_MAX_MESSAGE_BYTES=str(max_bytes),
                       **STORES[backend](tmp_path))
    settings = settings_from(env)
    now_ms = int(time.time() * 1000)
    extra_good, n_bad = asyncio.run(send_all(settings, now_ms, max_bytes))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        assert worker.status()["backend"] == ("embedded" if backend == "embedded"
                                              else "clickhouse-connect")
        expected = {"metrics": 6000 + extra_good, "logs": 2500, "spans": 1499}
        worker.wait_until(
            lambda w: sum(w.status()["stored"].values()) >= sum(expected.values())
            and sum(w.status()["rejected"].values()) >= n_bad,
            what="all records stored or rejected")
        # the worker hands freed C heap pages back on a timer (pipeline.agents.heap)
        worker.wait_until(lambda w: w.status()["stages"].get("worker.heap_trim", {})
                          .get("calls", 0) >= 1, what="a heap trim")
        # ... and Arrow allocates from malloc, whose freed pages those trims reach
        assert worker.status()["memory"]["arrow_pool"] == "system"
        for table, n in expected.items():
            rows = worker.query(f"SELECT count(), uniqExact(event_id) FROM tocsin.{table}")
            assert rows == [[n, n]], table
        # values survive intact: the sum of 0..5999 plus the one good 1.0 beside the bad ones
        assert worker.query("SELECT sum(value) FROM tocsin.metrics")[0][0] == 5999 * 6000 / 2 + 1
        assert worker.query("SELECT countIf(status = 'error') FROM tocsin.spans") == [[150]]
        assert worker.query("SELECT attributes['shard'] FROM tocsin.metrics "
                            "WHERE value = 5") == [["1"]]
        assert worker.query("SELECT severity_text, count() FROM tocsin.logs "
                            "GROUP BY 1 ORDER BY 1") == [["ERROR", 833], ["INFO", 834],
                                                         ["WARN", 833]]
        assert worker.query("SELECT count() FROM tocsin.dead_letters") == [[n_bad]]
    finally:
        worker.stop()

    dead = asyncio.run(read_deadletters(settings, n_bad))
    assert len(dead) == n_bad
    reasons = sorted(dict(r.headers)["tocsin.reason"].decode() for r in dead)
    assert any(r.startswith("malformed JSON") for r in reasons)
    assert any("field 'value': expected a finite number, got string \"12a\"" in r
               for r in reasons)
    assert any("unknown field 'colour'" in r for r in reasons)
    assert any("ahead of ingest time" in r for r in reasons)
    assert any("expected an object, got number 42" in r for r in reasons)
    assert any("over the limit of 100000" in r for r in reasons)
    assert any("'LOUD' is not one of" in r for r in reasons)
    assert any("field 'trace_id': expected 32 hex digits" in r for r in reasons)
    for record in dead:
        headers = dict(record.headers)
        assert headers["tocsin.topic"].decode().startswith(f"t{names}.")
        assert int(headers["tocsin.offset"]) >= 0
    # the bad value travels as it arrived
    assert b'"value":"12a"' in b"".join(r.value for r in dead)


def test_worker_killed_mid_stream_leaves_every_record_exactly_once(kafka_broker, names,
                                                                    tmp_path: Path):
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_INGEST_BATCH_SIZE="20", TOCSIN_INGEST_BATCH_WITHIN_MS="50",
                       # the ingest path alone: detection has its own restart-safe state
                       TOCSIN_DETECT_ENABLED="false", TOCSIN_CORRELATE_ENABLED="false")
    settings = settings_from(env)
    now_ms = int(time.time() * 1000)
    total = 150_000
    records = [{"time": now_ms - HOUR_MS + i, "service.name": f"svc-{i % 11}",
                "name": "queue.depth", "value": float(i % 1000)} for i in range(total)]

    async def produce() -> None:
        await ensure_topics(settings)
        async with TelemetryProducer(settings, records_per_message=100) as producer:
            await producer.send(RecordKind.METRIC, records)

    asyncio.run(produce())
    count = "SELECT count() FROM tocsin.metrics"
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_until(lambda w: w.status()["stored"].get("metric", 0) >= 10_000,
                          what="a first part stored")
        stored_before_kill = worker.status()["stored"]["metric"]
        assert stored_before_kill < total, "the worker finished before it could be killed"
    finally:
        worker.kill()  # SIGKILL: no graceful commit
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_until(lambda w: w.query(count)[0][0] >= total, timeout_s=240,
                          what="all records stored")
        assert worker.query("SELECT count(), uniqExact(event_id), sum(value) "
                            "FROM tocsin.metrics") == [[total, total, float(
                                sum(i % 1000 for i in range(total)))]]
    finally:
        worker.stop()


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def with_raw(record: dict, name: str, raw_json: bytes) -> bytes:
    """``record`` as JSON with field ``name`` set to the raw JSON text ``raw_json``."""
    record = {k: v for k, v in record.items() if k != name}
    return orjson.dumps(record)[:-1] + b',"' + name.encode() + b'":' + raw_json + b"}"


def poison_stream(now_ms: int) -> tuple[dict[str, list[bytes]], dict[str, int], list[str]]:
    """Per topic: messages alternating good records and the poison records of issue 10;
    the number of distinct good records per table; the reasons expected, one per bad
    record."""
    metric = {"time": now_ms - 1000, "service.name": "orders", "name": "m", "value": 1}
    log = {"time": now_ms - 1000, "service.name": "orders", "severity": "INFO", "body": "b"}
    span = {"trace_id": "1" * 32, "span_id": "2" * 16, "service.name": "api", "name": "op",
            "start": now_ms - 1000, "duration_ms": 1.0}
    counter = iter(range(1, 10**6))

    def good(record: dict, field: str, n: int = 10) -> bytes:
        """``n`` good records told apart by ``field`` (a number, or text for a body)."""
        return orjson.dumps([{**record, field: next(counter) if field != "body"
                              else f"line {next(counter)}"} for _ in range(n)])

    metrics = [
        orjson.dumps({**metric, "time": 1e300}),
        orjson.dumps({**metric, "time": -1e300}),
        with_raw(metric, "time", str(2**70).encode()),
        orjson.dumps({**metric, "time": "9999-12-31T23:59:59-14:00"}),
        with_raw(metric, "zz", nested(300)),
        with_raw(metric, "value", nested(300)),
        # a poison record inside a message of good ones
        b"[" + orjson.dumps({**metric, "value": -1}) + b","
        + orjson.dumps({**metric, "time": 1e300}) + b","
        + orjson.dumps({**metric, "value": -2}) + b"]",
        # a name that would forge a log line if it reached one raw
        orjson.dumps({**metric, "x\nFORGED line \u202e": 1}),
    ]
    logs = [
        with_raw(log, "attributes", nested(300)),
        orjson.dumps([{**log, "body": "no attributes"}, {**log, "attributes": "a=b"},
                      {**log, "attributes": [1]}, {**log, "body": "null attributes",
                                                   "attributes": None}]),
    ]
    spans = [orjson.dumps({**span, "start": "0001-01-01T00:00:00+14:00"})]
    streams: dict[str, list[bytes]] = {"metrics": [], "logs": [], "traces": []}
    for topic, record, field, poison in (("metrics", metric, "value", metrics),
                                         ("logs", log, "body", logs),
                                         ("traces", span, "duration_ms", spans)):
        for value in poison:
            streams[topic] += [good(record, field), value]
        streams[topic].append(good(record, field))
    # an empty array, counted; records older than the TTL, stored and counted
    streams["metrics"] += [b"[]", orjson.dumps([{**metric, "time": now_ms - 40 * 86_400_000,
                                                 "value": -10 - i} for i in range(5)])]
    expected_good = {"metrics": 10 * 9 + 2, "logs": 10 * 3 + 2, "spans": 10 * 2}
    reasons = ["field 'time': number 1e+300 is out of range",
               "field 'time': number -1e+300 is out of range",
               "field 'time': number 1.1805916207174113e+21 is out of range",
               "field 'time': string \"9999-12-31T23:59:59-14:00\" is out of range",
               "unknown field 'zz'",
               "field 'value': expected a finite number, got object",
               "field 'time': number 1e+300 is out of range",
               "unknown field 'x\\nFORGED line \\u202e'",
               "field 'attributes': the value of 'a' is nested too deeply",
               "field 'attributes': expected an object, got string \"a=b\"",
               "field 'attributes': expected an object, got array [1]",
               "field 'start': string \"0001-01-01T00:00:00+14:00\" is out of range"]
    return streams, expected_good, reasons


def test_poison_records_between_good_ones_lose_nothing(kafka_broker, names, tmp_path):
    """Issue 10's poison records, each between good records on one partition: every
    good record is stored once, every bad one is dead-lettered with its reason."""
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_STORE_TTL_DAYS="30", TOCSIN_DETECT_ENABLED="false",
                       TOCSIN_CORRELATE_ENABLED="false")
    settings = settings_from(env)
    now_ms = int(time.time() * 1000)
    streams, expected_good, reasons = poison_stream(now_ms)
    topics = {"metrics": settings.topics.metrics, "logs": settings.topics.logs,
              "traces": settings.topics.traces}
    resent = orjson.loads(streams["metrics"][0])[:4]  # re-sent, batched differently

    async def produce() -> None:
        await ensure_topics(settings)
        async with TelemetryProducer(settings) as producer:
            for topic, values in streams.items():
                for value in values:  # one key: one partition, in this order
                    await producer.send_value(topics[topic], value, key=b"orders")
            for pair in (resent[:2], resent[2:]):
                await producer.send_value(topics["metrics"], orjson.dumps(pair), key=b"x")

    asyncio.run(produce())
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_until(
            lambda w: sum(w.status()["stored"].values())
            >= sum(expected_good.values()) + 5 + len(resent)
            and sum(w.status()["rejected"].values()) >= len(reasons),
            what="all records stored or rejected")
        status = worker.status()
        assert status["rejected"] == {"metric": 8, "log": 3, "span": 1}
        assert status["empty_messages"] == {"metric": 1, "log": 0, "span": 0}
        assert status["older_than_ttl"] == {"metric": 5, "log": 0, "span": 0}
        recent = "WHERE time > now() - INTERVAL 1 DAY"
        for table, n in expected_good.items():
            column = "start" if table == "spans" else "time"
            rows = worker.query(f"SELECT count(), uniqExact(event_id) FROM tocsin.{table} "
                                + recent.replace("time", column))
            assert rows == [[n, n]], table
        assert worker.query(f"SELECT sum(value) FROM tocsin.metrics {recent}") == [
            [sum(range(1, 91)) - 3]]
        assert worker.query("SELECT body, length(attributes) FROM tocsin.logs WHERE body "
                            "LIKE '%attributes' ORDER BY body") == [["no attributes", 0],
                                                                    ["null attributes", 0]]
        dead = worker.query("SELECT `offset`, record_index, reason, length(payload) > 0 "
                            "FROM tocsin.dead_letters ORDER BY topic, `offset`, record_index")
        assert len(dead) == len(reasons)
        assert all(has_payload for *_, has_payload in dead)
        found = [reason for _, _, reason, _ in dead]
        for expected in reasons:
            assert any(expected in reason for reason in found), expected
    finally:
        worker.stop()
    log_text = (tmp_path / "worker.log").read_text(errors="replace")
    assert "older than store.ttl_days" in log_text and "TOCSIN_STORE_TTL_DAYS" in log_text
    assert "internal decode error" not in log_text
    assert not any(line.startswith("FORGED") for line in log_text.splitlines())
    assert "\u202e" not in log_text
