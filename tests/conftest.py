"""Shared fixtures: one real Kafka broker per test session, fresh names per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


SERVER_URL_VARIABLE = "TOCSIN_TEST_CLICKHOUSE_URL"
_NOT_RUN = pytest.StashKey[int]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a ClickHouse server URL, ``clickhouse_server`` tests are deselected, and the
    summary says how many did not run (they are not skipped silently)."""
    if os.environ.get(SERVER_URL_VARIABLE):
        return
    server_only = [item for item in items if item.get_closest_marker("clickhouse_server")]
    if server_only:
        items[:] = [item for item in items if not item.get_closest_marker("clickhouse_server")]
        config.hook.pytest_deselected(items=server_only)
        config.stash[_NOT_RUN] = len(server_only)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Name the server-only tests that did not run."""
    not_run = config.stash.get(_NOT_RUN, 0)
    if not_run:
        terminalreporter.write_line(
            f"{not_run} clickhouse_server tests NOT RUN: set {SERVER_URL_VARIABLE} "
            "(and TOCSIN_TEST_CLICKHOUSE_USER, _PASSWORD) to run them against a server",
            yellow=True)
