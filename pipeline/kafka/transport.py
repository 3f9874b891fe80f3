"""Kafka connection settings for aiokafka and Faust, and topic creation."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from pipeline.errors import TocsinError
from pipeline.settings import KafkaSettings, Settings

log = logging.getLogger("tocsin.kafka")

DEADLETTER_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
CORRELATION_TABLE = "correlation-state"


def engine_table(engine: str) -> str:
    """The Faust table holding a detector engine's per-service state."""
    return f"{engine}-state"


class KafkaUnavailable(TocsinError):
    """The Kafka cluster could not be reached or refused a request."""


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
    """Topics Tocsin uses, with per-topic broker configs."""
    t = settings.topics
    configs: dict[str, dict[str, str]] = {
        name: {} for name in (t.metrics, t.logs, t.traces, t.detections, t.alerts, t.by_service,
                            t.control)
    }
    configs[t.deadletter] = {"max.message.bytes": str(DEADLETTER_MAX_MESSAGE_BYTES)}
    if settings.ingest.otlp:
        configs.update({name: {} for name in (t.otlp_metrics, t.otlp_logs, t.otlp_spans)})
    for table in state_tables(settings):
        configs[f"{settings.worker.app_id}-{table}-changelog"] = {"cleanup.policy": "compact"}
    return configs


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


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics with the configured partitions; returns the ones created."""
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
