"""Kafka connection settings for aiokafka and Faust, and topic creation."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from pipeline.errors import TocsinError
from pipeline.settings import KafkaSettings, Settings

log = logging.getLogger("tocsin.kafka")

CORRELATION_TABLE = "correlation-state"


def engine_table(engine: str) -> str:
    """The Faust table holding a detector engine's per-service state."""
    return f"{engine}-state"


class KafkaUnavailable(TocsinError):
    """The Kafka cluster could not be reached or refused a request."""


class TopicLimitError(TocsinError):
    """An existing topic takes smaller messages than ``kafka.max_message_bytes``."""


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context the security protocol needs (None for plaintext)."""
    if "SSL" not in kafka.security_protocol:
        return None
    context = ssl.create_default_context(cafile=kafka.ssl_cafile or None)
    if kafka.ssl_certfile:
        context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile or None)
    return context


def client_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for aiokafka producers, consumers and admin clients."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
    }
    context = ssl_context(kafka)
    if context is not None:
        kwargs["ssl_context"] = context
    if kafka.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        kwargs["sasl_plain_password"] = kafka.sasl_password.reveal()
    return kwargs



def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topics Tocsin uses, with per-topic broker configs: every one takes messages of up
    to ``kafka.max_message_bytes`` (the size every Tocsin producer keeps to)."""
    t = settings.topics
    limit = {"max.message.bytes": str(settings.kafka.max_message_bytes)}
    configs: dict[str, dict[str, str]] = {
        name: dict(limit) for name in (t.metrics, t.logs, t.traces, t.detections, t.alerts,
                                       t.by_service, t.control, t.deadletter)
    }
    if settings.ingest.otlp:  # what the Collector's kafka exporter writes
        configs.update({name: dict(limit) for name in (t.otlp_metrics, t.otlp_logs,
                                                       t.otlp_spans)})
    for table in state_tables(settings):
        configs[f"{settings.worker.app_id}-{table}-changelog"] = {"cleanup.policy": "compact",
                                                                   **limit}
    return configs


def too_small_topics(limits: dict[str, int], max_message_bytes: int) -> list[str]:
    """Why each topic of ``limits`` (name → its ``max.message.bytes``) cannot take the
    messages Tocsin writes, one line per topic."""
    return [f"topic {name} takes messages of at most {limit} bytes (max.message.bytes), "
            f"less than kafka.max_message_bytes ({max_message_bytes})"
            for name, limit in sorted(limits.items()) if limit < max_message_bytes]


async def _message_limits(admin: Any, names: list[str]) -> dict[str, int]:
    """``max.message.bytes`` of each existing topic of ``names`` (as the broker applies
    it: the topic's own or the broker's default)."""
    if not names:
        return {}
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n, {"max.message.bytes": None})
         for n in names])
    limits = {}
    for response in responses:
        for error_code, _message, _type, name, entries in (r[:5] for r in response.resources):
            for entry in entries if error_code == 0 else ():
                if entry[0] == "max.message.bytes" and entry[1] is not None:
                    limits[name] = int(entry[1])
    return limits


def state_tables(settings: Settings) -> list[str]:
    """The worker's Faust tables. Their changelog topics are created up front with the
    configured partitions: a worker that creates one itself can read its metadata before
    the broker has it and crash on a partition mismatch."""
    tables = []
    if settings.detect.enabled:
        engines = ["rules"] + (["models"] if settings.detect.models else [])  # build_engines
        tables += [engine_table(name) for name in engines]
    if settings.correlate.enabled:
        tables.append(CORRELATION_TABLE)
    return tables


async def _wait_for_metadata(admin: Any, names: list[str], timeout_s: float) -> None:
    """Until the broker's metadata lists every partition of ``names``."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        if all(d.get("error_code") == 0 and d.get("partitions") for d in described):
            return
        if loop.time() > deadline:
            raise KafkaUnavailable(f"topics {', '.join(names)} created but not in the "
                                   f"broker's metadata after {timeout_s:.0f}s")
        await asyncio.sleep(0.1)


async def _check_limits(admin: Any, names: list[str], max_message_bytes: int) -> None:
    from aiokafka.errors import KafkaError

    try:
        limits = await _message_limits(admin, names)
    except KafkaError as exc:  # e.g. not allowed to describe configs: the broker decides
        log.warning("could not read max.message.bytes of the existing topics: %s", exc)
        return
    problems = too_small_topics(limits, max_message_bytes)
    if problems:
        raise TopicLimitError("; ".join(problems) + ": raise the topics' max.message.bytes "
                              "or lower kafka.max_message_bytes (TOCSIN_KAFKA_MAX_MESSAGE_BYTES)")


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics with the configured partitions and message size limit;
    returns the ones created. Raises :class:`TopicLimitError` when an existing topic
    takes smaller messages than ``kafka.max_message_bytes``."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(
        **client_kwargs(settings.kafka), request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await admin.start()
    except KafkaError as exc:
        raise KafkaUnavailable(
            f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {exc} "
            "(start the local broker with `tocsin kafka start`, or set "
            "TOCSIN_KAFKA_BOOTSTRAP_SERVERS)"
        ) from exc
    try:
        existing = set(await admin.list_topics())
        wanted = topic_configs(settings)
        await _check_limits(admin, sorted(set(wanted) & existing),
                            settings.kafka.max_message_bytes)
        missing = [
            NewTopic(name, settings.topics.partitions, settings.topics.replication_factor,
                     topic_configs=config)
            for name, config in wanted.items() if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created them first
            log.info("created topics %s", ", ".join(t.name for t in missing))
            await _wait_for_metadata(admin, [t.name for t in missing], timeout_s)
        return [t.name for t in missing]
    except KafkaError as exc:
        raise KafkaUnavailable(f"creating topics on {settings.kafka.bootstrap_servers}: {exc}") \
            from exc
    finally:
        await admin.close()
