"""Tocsin: operations telemetry from Kafka into detections, problems and alerts."""

from pipeline.errors import (
    BrokerError,
    DecodeError,
    SettingsError,
    StoreError,
    StoreUnavailable,
    TocsinError,
)

__version__ = "0.1.0"

__all__ = [
    "BrokerError",
    "DecodeError",
    "SettingsError",
    "StoreError",
    "StoreUnavailable",
    "TocsinError",
    "__version__",
]
