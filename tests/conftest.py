"""Shared fixtures: one real Kafka broker per test session, fresh names per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.kafka import BrokerHandle, start_broker, stop_broker
from pipeline.kafka.isolated import isolated_env
from pipeline.settings import Settings, load_settings


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerHandle]:
    """A real single-node Kafka broker on free loopback ports, stopped by its PID after."""
    state_dir = tmp_path_factory.mktemp("kafka-broker")
    handle = start_broker(port=0, state_dir=state_dir)
    try:
        yield handle
    finally:
        stop_broker(state_dir=state_dir)


@pytest.fixture
def names() -> str:
    """A short unique suffix for topics, consumer groups and databases of one test."""
    return uuid.uuid4().hex[:8]


def pipeline_env(bootstrap: str, suffix: str, root: Path, web_port: int,
                 **extra: str) -> dict[str, str]:
    """TOCSIN_* variables for a worker with its own topics, group, store and web port."""
    return isolated_env(bootstrap, f"t{suffix}.", f"tocsin-{suffix}", root, web_port, **extra)


def settings_from(env: dict[str, str]) -> Settings:
    """Settings as a worker started with ``env`` would load them."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    return load_settings(environ={**base, **env})
