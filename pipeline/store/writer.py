"""Writes into the store, off the event loop.

An insert is one attempt: when the store refuses it, :meth:`StoreWriter.insert` counts
the failure and raises, and the agent that asked retries its whole batch with a capped
backoff (``pipeline.agents.batches``). The batch's Kafka offsets stay uncommitted in the
meantime, so no row is lost while ClickHouse is away, and a worker asked to stop is not
held by a store that never comes back.

Analysts' reads run in a thread pool of their own, so a few slow queries never take the
threads that inserts and Tocsin's own queries run in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from pipeline.errors import StoreError, StoreUnavailable
from pipeline.events.faults import Faults
from pipeline.store.base import QueryResult, Store
from pipeline.store.readonly import ReadRefused

log = logging.getLogger("tocsin.store")


@dataclass
class ReadCounters:
    """Analysts' reads: in flight, answered, refused by the checks, failed in the engine."""

    running: int = 0
    served: int = 0
    refused: int = 0
    failed: int = 0


class StoreWriter:
    """Runs store calls in a worker thread and counts the inserts the store refused."""

    def __init__(self, store: Store, faults: Faults | None = None,
                 read_threads: int = 2,
                 on_insert: Callable[[str, float], None] | None = None,
                 on_read: Callable[[float], None] | None = None) -> None:
        self.store = store
        self.on_insert = on_insert  # (table, seconds) of each successful insert
        self.on_read = on_read  # seconds of each analyst's read, whatever its outcome
        self.faults = faults or Faults()
        self.failed_attempts = 0
        self.read_threads = read_threads
        self.reads = ReadCounters()
        self._read_pool: ThreadPoolExecutor | None = None

    async def insert(self, table: str, rows: pa.Table) -> None:
        """Append ``rows`` to ``table``; raises :class:`StoreError` if the store refuses."""
        if rows.num_rows == 0:
            return
        started = time.monotonic()
        try:
            self.faults.check("store.insert", StoreUnavailable)
            await asyncio.get_running_loop().run_in_executor(
                None, self.store.insert_arrow, table, rows)
        except StoreError:
            self.failed_attempts += 1
            raise
        if self.on_insert is not None:
            self.on_insert(table, time.monotonic() - started)

    async def ping(self, timeout_s: float = 5.0) -> str | None:
        """Why the store does not answer a trivial query within ``timeout_s``, or None."""
        try:
            self.faults.check("store.ping", StoreUnavailable)
            await asyncio.wait_for(self.query("SELECT 1"), timeout_s)
        except asyncio.TimeoutError:
            return f"no answer to SELECT 1 within {timeout_s:.0f}s"
        except StoreError as exc:
            return str(exc)
        return None

    async def query(self, sql: str) -> QueryResult:
        """Run one of Tocsin's queries in a worker thread (the engine call blocks)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.store.query, sql)

    async def read(self, sql: str) -> QueryResult:
        """Run an analyst's statement on the store's read path, in the read threads."""
        if self._read_pool is None:
            self._read_pool = ThreadPoolExecutor(self.read_threads, "tocsin-read")
        loop = asyncio.get_running_loop()
        self.reads.running += 1
        started = time.monotonic()
        try:
            result = await loop.run_in_executor(self._read_pool, self.store.read, sql)
        except ReadRefused:
            self.reads.refused += 1
            raise
        except StoreError:
            self.reads.failed += 1
            raise
        finally:
            self.reads.running -= 1
            if self.on_read is not None:
                self.on_read(time.monotonic() - started)
        self.reads.served += 1
        return result

    def close(self) -> None:
        """Stop taking reads; a read in flight finishes (the engine bounds its time)."""
        if self._read_pool is not None:
            self._read_pool.shutdown(wait=False, cancel_futures=True)
            self._read_pool = None
