"""One exception root for Tocsin, with a subclass per subsystem.

Third-party errors are translated at the boundary (``raise StoreError(...) from exc``)
so callers catch ours, never a client library's.
"""

from __future__ import annotations


class TocsinError(Exception):
    """Root of every error Tocsin raises on purpose."""


class SettingsError(TocsinError):
    """A setting is missing or has a bad value; the message names it."""


class DecodeError(TocsinError):
    """A record could not be decoded or failed validation."""


class StoreError(TocsinError):
    """The ClickHouse store rejected a statement or could not be reached."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now; retrying later may succeed."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BrokerError(TocsinError):
    """The local Kafka broker could not be set up, started or stopped."""
