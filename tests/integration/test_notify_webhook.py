"""``tocsin notify`` on a real broker, to local HTTP receivers: retries with backoff until a
flaky receiver takes the alert, dead letters naming the receiver after N failures, an
alert Alertmanager refuses found and dead-lettered alone, and offsets committed only once
every message was delivered or dead-lettered."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.alerts.cloudevents import alert_envelope
from pipeline.alerts.notifier import RECEIVER_HEADER, Notifier, NotifyCounts, group_id
from pipeline.events.problem import Decision, Problem
from pipeline.kafka import find_free_port
from pipeline.kafka.transport import ensure_topics
from tests.conftest import pipeline_env, settings_from

pytestmark = pytest.mark.integration

T0 = 1_764_000_000_000


class Receiver:
    """A webhook on 127.0.0.1 that answers 503 to its first ``fail_first`` POSTs."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.attempts = 0
        self.bodies: list[dict] = []
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    self.wfile.write(b"busy, try later")
                    return
                receiver.bodies.append(json.loads(body))
                receiver.headers.append(dict(self.headers))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def cloudevent(problem_id: str, version: int, status: str = "open") -> bytes:
    p = Problem(id=problem_id, version=version, scope="default", status=status, opened_at=T0,
                updated_at=T0 + version, title=f"{problem_id} failing",
                category="availability", severity="high", affected=("orders",),
                resolved_at=T0 + 60_000 if status == "resolved" else None)
    kind = "resolved" if status == "resolved" else "opened"
    return alert_envelope(Decision(kind, p, "", True, T0 + version))


async def produce(settings, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(settings.topics.alerts, value, key=key, partition=0)
    finally:
        await producer.stop()


async def run_until(notifier: Notifier, done, timeout_s: float = 60.0) -> NotifyCounts:
    """Run the notifier until ``done(counts)`` holds (bounded), then stop it gracefully."""
    task = asyncio.create_task(notifier.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not done(notifier.counts) and loop.time() < deadline and not task.done():
        await asyncio.sleep(0.1)
    notifier.stop.set()
    counts = await asyncio.wait_for(task, 60)
    assert done(counts), counts
    return counts


async def committed(settings) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id(settings))
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items()
            if tp.topic == settings.topics.alerts}


async def dead_letters(settings, expected: int) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out = []
    try:
        parts = consumer.partitions_for_topic(settings.topics.deadletter) or set()
        if not parts:
            await consumer._client.force_metadata_update()  # a fresh topic
            parts = consumer.partitions_for_topic(settings.topics.deadletter) or set()
        consumer.assign([TopicPartition(settings.topics.deadletter, p) for p in parts])
        await consumer.seek_to_beginning()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(out) < expected and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            out += [r for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    return out


def test_webhooks_retry_with_backoff_then_dead_letter_and_commit(kafka_broker, names, tmp_path):
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_NOTIFY_MAX_ATTEMPTS="3", TOCSIN_NOTIFY_BACKOFF_INITIAL_MS="50",
                       TOCSIN_NOTIFY_BACKOFF_MAX_MS="200", TOCSIN_NOTIFY_TIMEOUT_MS="5000",
                       TOCSIN_NOTIFY_WEBHOOK_HEADERS="X-Team: sre",
                       TOCSIN_NOTIFY_WEBHOOK_TOKEN="t0ken")
    base = settings_from(env)
    with Receiver(fail_first=2) as flaky, Receiver(fail_first=10**6) as broken:
        settings = dataclasses.replace(base, notify=dataclasses.replace(
            base.notify, webhook_urls=(flaky.url, broken.url)))
        asyncio.run(ensure_topics(settings))
        values = [(b"p-1", cloudevent("p-1", 1)), (b"p-1", cloudevent("p-1", 2, "resolved")),
                  (b"junk", b"{not a cloudevent")]
        asyncio.run(produce(settings, values))
        counts = asyncio.run(run_until(Notifier(settings), lambda c: c.dead_lettered >= 3))

        # the flaky receiver took both alerts, in order, after two 503s and a retry
        assert flaky.attempts == 2 + 2
        assert [(b["id"], b["type"]) for b in flaky.bodies] == [
            ("p-1.1", "io.tocsin.problem.opened"), ("p-1.2", "io.tocsin.problem.resolved")]
        sent = flaky.headers[0]
        assert sent["X-Team"] == "sre" and sent["Authorization"] == "Bearer t0ken"
        assert sent["Content-Type"].startswith("application/cloudevents+json")
        # the broken one got max_attempts tries per alert; the junk went to nobody
        assert broken.attempts == 2 * 3
    assert counts.messages == 3

    letters = asyncio.run(dead_letters(settings, 3))
    by_value = {r.value: dict(r.headers) for r in letters}
    assert set(by_value) == {v for _, v in values}
    for value in (values[0][1], values[1][1]):
        headers = by_value[value]
        reason = headers["tocsin.reason"].decode()
        assert broken.url in reason and "HTTP 503" in reason, reason
        assert "gave up after 3 attempts" in reason, reason
        assert headers[RECEIVER_HEADER].decode() == broken.url
    junk = by_value[values[2][1]]
    assert "not a Tocsin alert CloudEvent: not JSON" in junk["tocsin.reason"].decode()
    assert junk["tocsin.offset"] == b"2"
    # every message delivered or dead-lettered: the offsets are committed past them
    assert asyncio.run(committed(settings)) == {0: 3}


def test_an_unreachable_webhook_is_named_and_a_stop_mid_retry_commits_nothing(
        kafka_broker, names, tmp_path):
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_NOTIFY_MAX_ATTEMPTS="2", TOCSIN_NOTIFY_BACKOFF_INITIAL_MS="50")
    url = f"http://127.0.0.1:{find_free_port()}/hook"  # nothing listens there
    base = settings_from(env)
    settings = dataclasses.replace(base, notify=dataclasses.replace(base.notify,
                                                                    webhook_urls=(url,)))
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(settings, [(b"p-1", cloudevent("p-1", 1))]))
    asyncio.run(run_until(Notifier(settings), lambda c: c.dead_lettered >= 1))
    [letter] = asyncio.run(dead_letters(settings, 1))
    reason = dict(letter.headers)["tocsin.reason"].decode()
    assert f"{url} is unreachable" in reason and "gave up after 2 attempts" in reason, reason
    assert asyncio.run(committed(settings)) == {0: 1}

    # a long backoff, stopped in the middle: the new alert is neither delivered nor
    # dead-lettered, so its offset stays uncommitted for the next run
    slow = dataclasses.replace(settings, notify=dataclasses.replace(
        settings.notify, max_attempts=5, backoff_initial_ms=60_000, backoff_max_ms=60_000))
    asyncio.run(produce(settings, [(b"p-2", cloudevent("p-2", 1))]))
    counts = asyncio.run(run_until(Notifier(slow), lambda c: c.webhook_posts >= 1 or
                                   c.messages >= 1))
    assert counts.dead_lettered == 0
    assert asyncio.run(committed(settings)) == {0: 1}
    assert orjson.loads(letter.value)["id"] == "p-1.1"


class RefusingAlertmanager:
    """An Alertmanager stand-in on 127.0.0.1 that answers 400 to any post holding an alert
    of ``bad_problem`` (as Alertmanager does for an invalid alert) and keeps the rest."""

    def __init__(self, bad_problem: str) -> None:
        self.posts: list[list[dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                alerts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.posts.append(alerts)
                bad = any(a["labels"]["problem_id"] == bad_problem for a in alerts)
                self.send_response(400 if bad else 200)
                self.end_headers()
                self.wfile.write(b"start time must be before end time" if bad else b"")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def test_an_alert_alertmanager_refuses_is_found_and_dead_lettered_alone(kafka_broker, names,
                                                                        tmp_path):
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port())
    am = RefusingAlertmanager("p-bad")
    try:
        base = settings_from(env)
        settings = dataclasses.replace(base, notify=dataclasses.replace(
            base.notify, alertmanager_urls=(am.url,)))
        asyncio.run(ensure_topics(settings))
        asyncio.run(produce(settings, [(b"p-good", cloudevent("p-good", 1)),
                                       (b"p-bad", cloudevent("p-bad", 1))]))
        counts = asyncio.run(run_until(Notifier(settings), lambda c: c.dead_lettered >= 1))
    finally:
        am.close()
    # one post of both, refused at once (no retry), then one post per alert
    assert [sorted(a["labels"]["problem_id"] for a in post) for post in am.posts[:3]] == [
        ["p-bad", "p-good"], ["p-good"], ["p-bad"]]
    assert counts.dead_lettered == 1
    [letter] = asyncio.run(dead_letters(settings, 1))
    reason = dict(letter.headers)["tocsin.reason"].decode()
    assert orjson.loads(letter.value)["subject"] == "p-bad"
    assert f"{am.url}/api/v2/alerts answered HTTP 400" in reason and "(not retried)" in reason
    assert asyncio.run(committed(settings)) == {0: 2}
