"""Batched, retrying writes into the store, off the event loop.

A write that fails is retried with capped exponential backoff until it succeeds: the
caller (an agent) waits, Kafka offsets stay uncommitted, and no row is lost while
ClickHouse is away. Every failed attempt is logged with the table it concerns.
"""

from __future__ import annotations

import asyncio
import logging

import pyarrow as pa

from pipeline.errors import StoreError, StoreUnavailable
from pipeline.store.base import QueryResult, Store

log = logging.getLogger("tocsin.store")


class StoreWriter:
    """Runs store calls in a worker thread and retries inserts until they land."""

    def __init__(self, store: Store, retry_max_s: float = 30.0, retry_first_s: float = 0.5):
        self.store = store
        self.retry_max_s = retry_max_s
        self.retry_first_s = retry_first_s
        self.failed_attempts = 0

    async def insert(self, table: str, rows: pa.Table) -> None:
        """Append ``rows`` to ``table``, retrying until the store accepts them."""
        if rows.num_rows == 0:
            return
        loop = asyncio.get_running_loop()
        delay = self.retry_first_s
        while True:
            try:
                await loop.run_in_executor(None, self.store.insert_arrow, table, rows)
                return
            except StoreError as exc:
                self.failed_attempts += 1
                if isinstance(exc, StoreUnavailable):
                    delay = max(delay, exc.retry_after_s)
                log.error("insert of %d rows into %s failed, retrying in %.1fs: %s",
                          rows.num_rows, table, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)

    async def query(self, sql: str) -> QueryResult:
        """Run a query in a worker thread (the engine call blocks)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.store.query, sql)
