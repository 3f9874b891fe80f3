"""``tocsin notify``: consume ``tocsin.alerts`` and deliver it to Alertmanager and webhooks.

At-least-once: a batch's offsets are committed only after each of its messages was
delivered to every receiver or dead-lettered (after ``notify.max_attempts`` failures, or
at once when a receiver refuses it for good, or when it is no Tocsin CloudEvent). A stop
or crash in between leaves the batch uncommitted, so it is delivered again: receivers
may see a message twice (Alertmanager merges repeats of one alert; a webhook can dedupe
on the CloudEvent ``id``).

Open problems are re-posted to Alertmanager every ``notify.resend_interval_ms``. At start,
the alerts of the last ``notify.lookback_ms`` before the group's committed offsets are read
again (delivering nothing) to learn which problems are open, and those are re-posted at
once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.alerts.alertmanager import AlertFormatError, console_base, parse_alert
from pipeline.alerts.delivery import OpenProblems, collapse
from pipeline.alerts.receivers import NOT_RETRIED, AlertmanagerReceiver, WebhookReceiver
from pipeline.errors import TocsinError
from pipeline.events.deadletter import HEADER_PREFIX, deadletter_message
from pipeline.events.schema import RawMessage, Rejection
from pipeline.kafka.transport import KafkaUnavailable, client_kwargs, ensure_topics
from pipeline.settings import Settings

log = logging.getLogger("tocsin.notify")

RECEIVER_HEADER = f"{HEADER_PREFIX}receiver"
MAX_RECORDS = 200


class Stopping(TocsinError):
    """A stop was asked for while a batch was being delivered: it stays uncommitted."""


@dataclass
class NotifyCounts:
    """What a notifier did, for logs and tests."""

    messages: int = 0
    alertmanager_posts: int = 0
    resends: int = 0
    webhook_posts: int = 0
    dead_lettered: int = 0
    reasons: list[str] = field(default_factory=list)


@dataclass
class _Message:
    raw: RawMessage
    event: dict[str, Any] | None
    failures: list[tuple[str, str]] = field(default_factory=list)  # (receiver URL, reason)


def group_id(settings: Settings) -> str:
    """The consumer group of ``tocsin notify``."""
    return settings.notify.group_id or f"{settings.worker.app_id}-notify"


class Notifier:
    """The delivery loop; :meth:`run` until ``stop`` is set."""

    def __init__(self, settings: Settings, stop: asyncio.Event | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        n = settings.notify
        if not n.alertmanager_urls and not n.webhook_urls:
            raise TocsinError("nothing to deliver to: set notify.alertmanager_urls "
                              "(TOCSIN_NOTIFY_ALERTMANAGER_URLS) or notify.webhook_urls "
                              "(TOCSIN_NOTIFY_WEBHOOK_URLS)")
        self.settings = settings
        self.stop = stop or asyncio.Event()
        self.clock = clock
        self.console = console_base(n, settings.worker.web_host, settings.worker.web_port)
        self.open = OpenProblems(n, self.console)
        self.counts = NotifyCounts()

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except asyncio.TimeoutError:
            return
        raise Stopping("stopped while waiting to retry; undelivered alerts stay uncommitted "
                       "and are delivered on the next start")

    async def run(self) -> NotifyCounts:
        """Consume and deliver until :attr:`stop` is set."""
        import aiohttp
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.errors import KafkaError

        s = self.settings
        await ensure_topics(s)
        limit = s.kafka.max_message_bytes
        consumer = AIOKafkaConsumer(
            s.topics.alerts, group_id=group_id(s), enable_auto_commit=False,
            auto_offset_reset="earliest", max_partition_fetch_bytes=limit,
            **client_kwargs(s.kafka))
        producer = AIOKafkaProducer(**client_kwargs(s.kafka), acks="all",
                                    enable_idempotence=True, max_request_size=limit)
        async with aiohttp.ClientSession() as session:
            self.alertmanagers = [AlertmanagerReceiver(u, session, s.notify)
                                  for u in s.notify.alertmanager_urls]
            self.webhooks = [WebhookReceiver(u, session, s.notify) for u in s.notify.webhook_urls]
            try:
                try:
                    await producer.start()
                    await consumer.start()
                except KafkaError as exc:
                    raise KafkaUnavailable(f"cannot reach Kafka at "
                                           f"{s.kafka.bootstrap_servers}: {exc}") from exc
                if self.alertmanagers:
                    await self._rebuild()
                log.info("notify: consuming %s as group %s, delivering to %s", s.topics.alerts,
                         group_id(s), ", ".join([r.url for r in self.alertmanagers]
                                                + [r.url for r in self.webhooks]))
                await self._loop(consumer, producer)
            except Stopping as exc:
                log.info("notify: %s", exc)
            finally:
                await consumer.stop()
                await producer.stop()
        return self.counts

    async def _loop(self, consumer: Any, producer: Any) -> None:
        from aiokafka.errors import CommitFailedError, KafkaError

        while not self.stop.is_set():
            wait_ms = 1000
            due = self.open.next_due_ms()
            if due is not None:
                wait_ms = max(0, min(wait_ms, due - self._now_ms()))
            batch = await consumer.getmany(timeout_ms=wait_ms, max_records=MAX_RECORDS)
            if self.stop.is_set():
                if batch:
                    raise Stopping("stopped before delivering a fetched batch; it stays "
                                   "uncommitted")
                break
            messages = [_Message(RawMessage(r.topic, r.partition, r.offset, r.value,
                                            r.timestamp), None)
                        for records in batch.values() for r in records]
            if messages:
                await self._deliver(messages, producer)
                offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
                try:
                    await consumer.commit(offsets)
                except (CommitFailedError, KafkaError) as exc:  # redelivered after rebalance
                    log.warning("notify: committing %s failed (%s); those alerts will be "
                                "delivered again", offsets, exc)
                self.open.forget_resolved(self._now_ms() - self.settings.notify.lookback_ms)
            await self._resend()

    async def _deliver(self, messages: list[_Message], producer: Any) -> None:
        now_ms = self._now_ms()
        for m in messages:
            try:
                m.event = parse_alert(m.raw.value)
            except AlertFormatError as exc:
                m.failures.append(("", f"not a Tocsin alert CloudEvent: {exc}"))
        good = [m for m in messages if m.event is not None]
        self.counts.messages += len(messages)
        if self.alertmanagers and good:
            tagged = [(alert, m) for m in good for alert in self.open.apply(m.event, now_ms)]
            collapsed = collapse(tagged)
            for receiver in self.alertmanagers:
                await self._post_alertmanager(receiver, collapsed)
        for receiver in self.webhooks:
            for m in good:
                reason = await receiver.post(m.raw.value or b"", self._sleep)
                self.counts.webhook_posts += 1
                if reason:
                    m.failures.append((receiver.url, reason))
                else:
                    log.info("notify: posted %s to %s", m.event["id"], receiver.url)
        await self._dead_letter([m for m in messages if m.failures], producer)

    async def _post_alertmanager(self, receiver: AlertmanagerReceiver,
                                 collapsed: list[tuple[dict[str, Any], list[_Message]]]) -> None:
        if not collapsed:
            return
        reason = await receiver.post([a for a, _ in collapsed], self._sleep)
        self.counts.alertmanager_posts += 1
        if not reason:
            log.info("notify: posted %d alerts to %s", len(collapsed), receiver.url)
            return
        failed: dict[int, tuple[_Message, str]] = {}
        if reason.endswith(NOT_RETRIED) and len(collapsed) > 1:
            # refused as a whole (e.g. one invalid alert): post them one by one to find it
            for alert, tagged in collapsed:
                one = await receiver.post([alert], self._sleep)
                self.counts.alertmanager_posts += 1
                failed.update({id(m): (m, one) for m in tagged if one})
        else:
            failed = {id(m): (m, reason) for _, tagged in collapsed for m in tagged}
        for m, why in failed.values():  # once per message, however many alerts it made
            m.failures.append((receiver.url, why))

    async def _dead_letter(self, failed: list[_Message], producer: Any) -> None:
        from aiokafka.errors import KafkaError

        limit = self.settings.kafka.max_message_bytes
        topic = self.settings.topics.deadletter
        for m in failed:
            reason = "; ".join(f"{url}: {why}" if url and url not in why else why
                               for url, why in m.failures)
            rejection = Rejection(m.raw, -1, f"alert not delivered: {reason}",
                                  m.raw.value or b"")
            key, value, headers = deadletter_message(rejection, limit)
            receivers = ",".join(url for url, _ in m.failures if url)
            if receivers:
                headers = [*headers, (RECEIVER_HEADER, receivers.encode()[:1024])]
            try:
                await producer.send_and_wait(topic, value, key=key, headers=headers)
            except KafkaError as exc:  # the batch stays uncommitted: delivered again later
                raise KafkaUnavailable(f"dead-lettering {m.raw.topic}[{m.raw.partition}]@"
                                       f"{m.raw.offset} to {topic} failed: {exc}") from exc
            self.counts.dead_lettered += 1
            self.counts.reasons.append(reason)
            log.error("notify: %s[%d]@%d dead-lettered to %s: %s", m.raw.topic,
                      m.raw.partition, m.raw.offset, topic, reason)

    async def _resend(self) -> None:
        if not self.alertmanagers:
            return
        due = self.open.due(self._now_ms())
        if not due:
            return
        for receiver in self.alertmanagers:
            reason = await receiver.post(due, self._sleep)
            self.counts.resends += 1
            if reason:  # the next resend tries again; the alerts stay valid meanwhile
                log.error("notify: re-posting %d open problems failed: %s", len(due), reason)

    async def _rebuild(self) -> None:
        """Learn the open problems from the alerts before the committed offsets."""
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        s = self.settings
        admin = AIOKafkaAdminClient(**client_kwargs(s.kafka))
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(group_id(s))
        finally:
            await admin.close()
        committed = {tp: meta.offset for tp, meta in committed.items()
                     if tp.topic == s.topics.alerts and meta.offset > 0}
        if not committed:
            return
        now_ms = self._now_ms()
        reader = AIOKafkaConsumer(enable_auto_commit=False,
                                  max_partition_fetch_bytes=s.kafka.max_message_bytes,
                                  **client_kwargs(s.kafka))
        await reader.start()
        applied = 0
        try:
            tps = [TopicPartition(tp.topic, tp.partition) for tp in committed]
            reader.assign(tps)
            starts = await reader.offsets_for_times(
                {tp: max(0, now_ms - s.notify.lookback_ms) for tp in tps})
            pending = {}
            for tp in tps:
                start = starts.get(tp)
                if start is None or start.offset >= committed[tp]:
                    continue
                reader.seek(tp, start.offset)
                pending[tp] = committed[tp]
            while pending:
                batch = await reader.getmany(*pending, timeout_ms=2000)
                if not batch:
                    break
                for tp, records in batch.items():
                    for r in records:
                        if r.offset >= pending.get(tp, -1):
                            continue
                        try:
                            self.open.apply(parse_alert(r.value), now_ms,
                                            posted_ms=now_ms - s.notify.resend_interval_ms)
                            applied += 1
                        except AlertFormatError:
                            pass  # dead-lettered when it was delivered
                    if records and records[-1].offset + 1 >= pending.get(tp, 0):
                        pending.pop(tp, None)
        finally:
            await reader.stop()
        log.info("notify: read %d earlier alerts: %d open problems to re-post", applied,
                 len(self.open))
