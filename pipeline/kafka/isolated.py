"""TOCSIN_* variables for a worker that shares a Kafka broker with other workers.

Every topic setting (whatever :class:`~pipeline.settings.TopicSettings` holds), the
consumer group, the state and store directories and the web port are its own, so
nothing it reads, writes or commits is another worker's. Tests and benchmarks start
their workers with these.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from pipeline.settings import TopicSettings


def isolated_env(bootstrap: str, topic_prefix: str, app_id: str, root: Path, web_port: int,
                 partitions: int = 3, **extra: str) -> dict[str, str]:
    """Variables for a worker with topics ``<topic_prefix><name>``, group ``app_id`` and
    its directories under ``root``; ``extra`` variables are added last."""
    env = {"TOCSIN_KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    for f in fields(TopicSettings):
        if isinstance(f.default, str):  # a topic name: tocsin.<name>
            env[f"TOCSIN_TOPICS_{f.name.upper()}"] = topic_prefix + f.default.split(".", 1)[-1]
    env.update({
        "TOCSIN_TOPICS_PARTITIONS": str(partitions),
        "TOCSIN_WORKER_APP_ID": app_id,
        "TOCSIN_WORKER_DATA_DIR": str(root / "worker"),
        "TOCSIN_WORKER_WEB_PORT": str(web_port),
        "TOCSIN_WORKER_LOG_LEVEL": "warn",
        "TOCSIN_WORKER_SESSION_TIMEOUT_MS": "6000",
        "TOCSIN_STORE_PATH": str(root / "store"),
        "TOCSIN_STORE_TTL_DAYS": "0",
    })
    env.update(extra)
    return env
