"""A real Kafka broker started by the launcher: produce, consume, status, stop by PID."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from pipeline.errors import BrokerError
from pipeline.events.sizes import value_budget
from pipeline.kafka import (
    MAX_MESSAGE_BYTES,
    BrokerHandle,
    broker_status,
    start_broker,
    stop_broker,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("java") is None or shutil.which("mvn") is None,
        reason="the local Kafka broker needs java and mvn on PATH",
    ),
]


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/cmdline").is_file() and bool(
        Path(f"/proc/{pid}/cmdline").read_bytes()
    )


def accepts(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


async def round_trip(
    bootstrap: str, topic: str, values: list[bytes], group_id: str = "test-broker", expect: int = 0
) -> list[bytes]:
    """Produce ``values`` to ``topic`` (auto-created), then consume ``expect`` records (default:
    as many as produced) from the group's committed offset or the earliest one."""
    # the producer lets anything through: the broker's own limit is what is tested
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * MAX_MESSAGE_BYTES)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        fetch_max_bytes=MAX_MESSAGE_BYTES * 2,
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES * 2,
    )
    await consumer.start()
    try:
        received = []
        while len(received) < (expect or len(values)):
            record = await asyncio.wait_for(consumer.getone(), timeout=20.0)
            received.append(record.value)
        await consumer.commit()
        return received
    finally:
        await consumer.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerHandle]:
    handle = start_broker(port=0, state_dir=tmp_path / "state", timeout_s=60.0)
    yield handle
    stop_broker(handle.state_dir)


def test_broker_round_trip_status_and_stop(broker: BrokerHandle) -> None:
    state = broker.state_dir
    assert broker.bootstrap.startswith("127.0.0.1:")
    assert (state / "broker.pid").read_text().strip() == str(broker.pid)
    assert (broker.data_dir / "meta.properties").is_file()
    assert broker_status(state) == broker
    assert start_broker(port=0, state_dir=state) == broker  # idempotent: same process

    # the largest value Tocsin sends with a key "k" passes; a value of the limit itself
    # (plus framing) is refused by the broker
    big = b"x" * value_budget(MAX_MESSAGE_BYTES, b"k")
    values = [b"hello tocsin", big]
    assert asyncio.run(round_trip(broker.bootstrap, "tocsin.test", values)) == values
    with pytest.raises(MessageSizeTooLargeError):
        asyncio.run(round_trip(broker.bootstrap, "tocsin.test",
                               [b"x" * (MAX_MESSAGE_BYTES + 1)]))
    log = broker.log_file.read_text()
    assert "Kafka Server started" in log
    assert "SLF4J" not in log

    assert stop_broker(state) is True
    assert not process_exists(broker.pid)
    assert not accepts(broker.bootstrap)
    assert not (state / "broker.pid").exists()
    assert broker_status(state) is None
    assert stop_broker(state) is False


def test_keep_data_keeps_messages_across_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = start_broker(port=0, state_dir=state, timeout_s=60.0)
    try:
        asyncio.run(round_trip(first.bootstrap, "tocsin.kept", [b"before restart"]))
    finally:
        assert stop_broker(state) is True
    meta = (first.data_dir / "meta.properties").read_text()

    second = start_broker(port=0, state_dir=state, keep_data=True, timeout_s=60.0)
    try:
        assert second.pid != first.pid
        assert (second.data_dir / "meta.properties").read_text() == meta  # not re-formatted
        assert asyncio.run(round_trip(second.bootstrap, "tocsin.kept", [b"after restart"])) == [
            b"after restart"  # the group's committed offset survived too
        ]
        replay = round_trip(second.bootstrap, "tocsin.kept", [], group_id="replay", expect=2)
        assert asyncio.run(replay) == [b"before restart", b"after restart"]
    finally:
        assert stop_broker(state) is True


def test_a_broker_that_dies_during_start_up_is_reported_with_its_log(tmp_path: Path) -> None:
    state = tmp_path / "state"

    with pytest.raises(BrokerError, match=r"exited during start-up(.|\n)*Too small"):
        start_broker(port=0, state_dir=state, heap="1k")  # the JVM refuses this heap

    assert broker_status(state) is None
    assert not (state / "broker.pid").exists()
