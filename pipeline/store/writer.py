"""Batched, retrying writes into the store, off the event loop.

A write that fails is retried with capped exponential backoff until it succeeds: the
caller (an agent) waits, Kafka offsets stay uncommitted, and no row is lost while
ClickHouse is away. Every failed attempt is logged with the table it concerns.

Analysts' reads run in a thread pool of their own, so a few slow queries never take the
threads that inserts and Tocsin's own queries run in.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from pipeline.errors import StoreError, StoreUnavailable
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
    """Runs store calls in a worker thread and retries inserts until they land."""

    def __init__(self, store: Store, retry_max_s: float = 30.0, retry_first_s: float = 0.5,
                 read_threads: int = 2):
        self.store = store
        self.retry_max_s = retry_max_s
        self.retry_first_s = retry_first_s
        self.failed_attempts = 0
        self.read_threads = read_threads
        self.reads = ReadCounters()
        self._read_pool: ThreadPoolExecutor | None = None

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
        """Run one of Tocsin's queries in a worker thread (the engine call blocks)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.store.query, sql)

    async def read(self, sql: str) -> QueryResult:
        """Run an analyst's statement on the store's read path, in the read threads."""
        if self._read_pool is None:
            self._read_pool = ThreadPoolExecutor(self.read_threads, "tocsin-read")
        loop = asyncio.get_running_loop()
        self.reads.running += 1
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
        self.reads.served += 1
        return result

    def close(self) -> None:
        """Stop taking reads; a read in flight finishes (the engine bounds its time)."""
        if self._read_pool is not None:
            self._read_pool.shutdown(wait=False, cancel_futures=True)
            self._read_pool = None
