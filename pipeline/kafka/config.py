"""What the local broker is configured with: loopback ports, ``server.properties``, a cluster id.

Pure functions (no process is started), so they are unit tested directly.
"""

from __future__ import annotations

import base64
import secrets
import socket
from pathlib import Path

from pipeline.errors import BrokerError

HOST = "127.0.0.1"
MAX_MESSAGE_BYTES = 1_048_576
"""The broker's default ``message.max.bytes``: ``kafka.max_message_bytes``'s default."""


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def render_server_properties(port: int, controller_port: int, data_dir: Path,
                             max_message_bytes: int = MAX_MESSAGE_BYTES) -> str:
    """The ``server.properties`` of a single-node KRaft broker listening on 127.0.0.1 only,
    taking messages of up to ``max_message_bytes`` (``kafka.max_message_bytes``)."""
    for name, value in (("port", port), ("controller_port", controller_port)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise BrokerError(f"{name} must be a TCP port between 1 and 65535, got {value!r}")
    if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int) \
            or max_message_bytes <= 0:
        raise BrokerError(f"max_message_bytes must be a positive integer, "
                          f"got {max_message_bytes!r}")
    if port == controller_port:
        raise BrokerError(f"port and controller_port must differ, both are {port}")
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir).replace("\\", "\\\\"),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "message.max.bytes": str(max_message_bytes),
        "replica.fetch.max.bytes": str(max_message_bytes),
        "log.retention.hours": "168",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    header = "# Written by Tocsin's local Kafka launcher on every start; edits are lost.\n"
    return header + "".join(f"{key}={value}\n" for key, value in settings.items())


def new_cluster_id() -> str:
    """A fresh KRaft cluster id: 16 random bytes, url-safe base64 without padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")
