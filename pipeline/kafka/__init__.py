"""The local Apache Kafka broker (KRaft, single node, loopback) started from Maven-resolved jars.

>>> from pipeline.kafka import start_broker, stop_broker
>>> handle = start_broker(port=0)  # doctest: +SKIP
>>> stop_broker()  # doctest: +SKIP
True
"""

from pipeline.kafka.launcher import (
    KAFKA_VERSION,
    MAX_MESSAGE_BYTES,
    BrokerHandle,
    broker_status,
    default_cache_dir,
    default_state_dir,
    ensure_jars,
    find_free_port,
    render_server_properties,
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
