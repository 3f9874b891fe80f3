"""Unit tests of the local Kafka launcher's pure parts and its refusals (no JVM started)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline.kafka
from pipeline.errors import BrokerError
from pipeline.kafka import (
    MAX_MESSAGE_BYTES,
    broker_status,
    default_cache_dir,
    default_state_dir,
    ensure_jars,
    find_free_port,
    render_server_properties,
    start_broker,
    stop_broker,
)
from pipeline.kafka.config import new_cluster_id
from pipeline.kafka.java import java_major_version
from pipeline.settings import KafkaSettings


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return {key: value for key, value in pairs}


def dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_state(state_dir: Path, pid: int) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "broker.pid").write_text(f"{pid}\n")
    record = {
        "bootstrap": "127.0.0.1:9092",
        "pid": pid,
        "version": "4.1.1",
        "port": 9092,
        "data_dir": str(state_dir / "data"),
        "log_file": str(state_dir / "broker.log"),
    }
    (state_dir / "broker.json").write_text(json.dumps(record))


@pytest.fixture
def no_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH with neither java nor mvn on it."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)


def test_public_api_is_pinned() -> None:
    assert set(pipeline.kafka.__all__) == {
        "KAFKA_VERSION",
        "MAX_MESSAGE_BYTES",
        "BrokerHandle",
        "broker_status",
        "default_cache_dir",
        "default_state_dir",
        "ensure_jars",
        "find_free_port",
        "render_server_properties",
        "start_broker",
        "stop_broker",
    }
    assert pipeline.kafka.KAFKA_VERSION == "4.1.1"


def test_server_properties_listen_on_loopback_with_given_ports_and_data_dir() -> None:
    props = parse_properties(render_server_properties(19092, 19093, Path("/srv/kafka data")))

    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["log.dirs"] == "/srv/kafka data"
    assert props["process.roles"] == "broker,controller"
    assert props["controller.listener.names"] == "CONTROLLER"


def test_server_properties_suit_a_single_node_dev_broker() -> None:
    props = parse_properties(render_server_properties(9092, 9093, Path("/d")))

    assert props["auto.create.topics.enable"] == "true"
    # the broker's default is kafka.max_message_bytes's default: Kafka's own 1 MiB
    assert int(props["message.max.bytes"]) == MAX_MESSAGE_BYTES \
        == KafkaSettings().max_message_bytes
    assert int(props["replica.fetch.max.bytes"]) == MAX_MESSAGE_BYTES
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "1", key


def test_server_properties_take_the_configured_message_size() -> None:
    props = parse_properties(render_server_properties(9092, 9093, Path("/d"), 4_194_304))
    assert props["message.max.bytes"] == props["replica.fetch.max.bytes"] == "4194304"
    with pytest.raises(BrokerError, match="max_message_bytes must be a positive integer, "
                       "got 0"):
        render_server_properties(9092, 9093, Path("/d"), 0)


@pytest.mark.parametrize(
    ("port", "controller_port", "message"),
    [
        (0, 9093, "port must be a TCP port between 1 and 65535, got 0"),
        (9092, 70000, "controller_port must be a TCP port between 1 and 65535, got 70000"),
        (9092, 9092, "port and controller_port must differ, both are 9092"),
    ],
)
def test_server_properties_reject_bad_ports(port: int, controller_port: int, message: str) -> None:
    with pytest.raises(BrokerError, match=message):
        render_server_properties(port, controller_port, Path("/d"))


def test_cluster_id_is_22_url_safe_characters() -> None:
    ids = {new_cluster_id() for _ in range(50)}

    assert len(ids) == 50
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert set(cluster_id) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_292"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("something else", None),
    ],
)
def test_java_major_version(output: str, major: int | None) -> None:
    assert java_major_version(output) == major


def test_find_free_port_returns_a_bindable_loopback_port() -> None:
    port = find_free_port()

    assert 0 < port < 65536
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


def test_default_dirs_follow_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    assert default_cache_dir() == tmp_path / "tocsin"
    assert default_state_dir() == tmp_path / "tocsin" / "broker"


@pytest.mark.usefixtures("no_tools")
def test_missing_java_is_a_clear_broker_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerError) as caught:
        start_broker(port=0, state_dir=tmp_path / "state")

    message = str(caught.value)
    assert message.startswith("Java is not installed: the local Kafka broker needs a Java 17+")
    assert "\n" not in message


@pytest.mark.usefixtures("no_tools")
def test_missing_maven_is_a_clear_broker_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match=r"^Maven is not installed: .*mvn on PATH"):
        ensure_jars(cache_dir=tmp_path)


@pytest.mark.usefixtures("no_tools")
def test_cached_jars_need_no_maven_but_a_half_download_is_redone(tmp_path: Path) -> None:
    libs = tmp_path / "kafka" / "4.1.1" / "libs"
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-4.1.1.jar").write_bytes(b"")

    with pytest.raises(BrokerError, match="Maven is not installed"):
        ensure_jars("4.1.1", cache_dir=tmp_path)  # no marker: resolve again

    (libs / ".tocsin-complete").write_text("kafka_2.13-4.1.1.jar\n")
    assert ensure_jars("4.1.1", cache_dir=tmp_path) == libs


@pytest.mark.parametrize("version", ["../etc", "4.1.1/..", ""])
def test_versions_that_are_not_a_plain_name_are_refused(tmp_path: Path, version: str) -> None:
    with pytest.raises(BrokerError, match="version must look like"):
        ensure_jars(version, cache_dir=tmp_path)


def test_stale_pid_file_is_cleaned_up(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write_state(state, dead_pid())

    assert broker_status(state) is None
    assert not (state / "broker.pid").exists()
    assert not (state / "broker.json").exists()
    assert stop_broker(state) is False


def test_a_recycled_pid_is_not_mistaken_for_the_broker_nor_signalled(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write_state(state, os.getpid())  # alive, but this is pytest, not kafka.Kafka

    assert broker_status(state) is None
    write_state(state, os.getpid())
    assert stop_broker(state, timeout_s=0.1) is False  # and we are still here
    assert not (state / "broker.pid").exists()


def test_status_and_stop_of_a_state_dir_that_does_not_exist(tmp_path: Path) -> None:
    assert broker_status(tmp_path / "nowhere") is None
    assert stop_broker(tmp_path / "nowhere") is False
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.skipif(shutil.which("java") is None, reason="needs java on PATH")
def test_a_port_already_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]

        with pytest.raises(BrokerError, match=f"port {taken} on 127.0.0.1 is already in use"):
            start_broker(port=taken, state_dir=tmp_path / "state")

    assert not (tmp_path / "state" / "broker.pid").exists()


def test_a_bad_heap_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="heap must look like 512m or 2g, got '512 MB'"):
        start_broker(port=0, state_dir=tmp_path / "state", heap="512 MB")


@pytest.mark.skipif(shutil.which("java") is None, reason="needs java on PATH")
def test_equal_explicit_ports_are_refused_not_silently_changed(tmp_path: Path) -> None:
    port = find_free_port()

    with pytest.raises(BrokerError, match=f"port and controller_port must differ, both are {port}"):
        start_broker(port=port, controller_port=port, state_dir=tmp_path / "state")
