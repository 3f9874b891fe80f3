"""Writes into the store, off the event loop.

An insert is one attempt: when the store refuses it, :meth:`StoreWriter.insert` counts
the failure and raises, and the agent that asked retries its whole batch with a capped
backoff (``pipeline.agents.batches``). The batch's Kafka offsets stay uncommitted in the
meantime, so no row is lost while ClickHouse is away, and a worker asked to stop is not
held by a store that never comes back.
"""

from __future__ import annotations

import asyncio
import logging

import pyarrow as pa

from pipeline.errors import StoreError, StoreUnavailable
from pipeline.events.faults import Faults
from pipeline.store.base import QueryResult, Store

log = logging.getLogger("tocsin.store")


class StoreWriter:
    """Runs store calls in a worker thread and counts the inserts the store refused."""

    def __init__(self, store: Store, faults: Faults | None = None) -> None:
        self.store = store
        self.faults = faults or Faults()
        self.failed_attempts = 0

    async def insert(self, table: str, rows: pa.Table) -> None:
        """Append ``rows`` to ``table``; raises :class:`StoreError` if the store refuses."""
        if rows.num_rows == 0:
            return
        try:
            self.faults.check("store.insert", StoreUnavailable)
            await asyncio.get_running_loop().run_in_executor(
                None, self.store.insert_arrow, table, rows)
        except StoreError:
            self.failed_attempts += 1
            raise

    async def query(self, sql: str) -> QueryResult:
        """Run a query in a worker thread (the engine call blocks)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.store.query, sql)
