"""``tocsin worker``: prepare topics and tables, then run the Faust worker."""

from __future__ import annotations

import asyncio
import gc

import faust

from pipeline.agents.app import create_pipeline
from pipeline.kafka.transport import ensure_topics
from pipeline.settings import Settings


def tune_gc() -> None:
    """Fewer full collections: ingest allocates many short-lived dicts per batch.

    Objects alive at start-up are frozen out of collection, and the young generation
    is collected every 50,000 allocations instead of 700.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def run_worker(settings: Settings) -> None:
    """Create missing topics and tables, then run a worker until it is stopped."""
    asyncio.run(ensure_topics(settings))
    pipeline = create_pipeline(settings)
    pipeline.store.ensure_schema()
    tune_gc()
    worker = faust.Worker(pipeline.app, loglevel=settings.worker.log_level,
                          redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        # the engine's threads must stop before the interpreter exits, or chdb's
        # destructors race them (a segfault on a graceful stop)
        pipeline.writer.close()
        pipeline.store.close()
