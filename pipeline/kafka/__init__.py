"""The local Apache Kafka broker (KRaft, single node, loopback) started from Maven-resolved jars.

:mod:`~pipeline.kafka.jars` resolves the broker's jars into Tocsin's cache,
:mod:`~pipeline.kafka.process` starts, stops and reports the broker process, with its
configuration from :mod:`~pipeline.kafka.config` and its runtime from :mod:`~pipeline.kafka.java`.

>>> from pipeline.kafka import start_broker, stop_broker
>>> handle = start_broker(port=0)  # doctest: +SKIP
>>> stop_broker()  # doctest: +SKIP
True
"""

from pipeline.kafka.config import MAX_MESSAGE_BYTES, find_free_port, render_server_properties
from pipeline.kafka.jars import KAFKA_VERSION, default_cache_dir, ensure_jars
from pipeline.kafka.process import (
    BrokerHandle,
    broker_status,
    default_state_dir,
    start_broker,
    stop_broker,
)

__all__ = [
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
]
