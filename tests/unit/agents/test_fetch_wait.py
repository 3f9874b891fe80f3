"""The worker's Kafka consumer waits kafka.fetch_max_wait_ms on a fetch (Faust fixes 1500)."""

from __future__ import annotations

import asyncio

from pipeline.agents.app import create_pipeline
from pipeline.settings import load_settings


def _consumer_wait_ms(tmp_path, environ: dict[str, str]) -> int:
    settings = load_settings(environ={"TOCSIN_STORE_PATH": str(tmp_path / "store"),
                                      "TOCSIN_WORKER_DATA_DIR": str(tmp_path / "data"),
                                      **environ})
    pipeline = create_pipeline(settings)

    async def build() -> int:  # the consumer is built, not started: no broker needed
        thread = pipeline.app.consumer._thread
        consumer = thread._create_worker_consumer(pipeline.app.transport)
        return consumer._fetch_max_wait_ms

    try:
        return asyncio.run(build())
    finally:
        pipeline.store.close()


def test_the_default_fetch_wait_is_kafkas_not_fausts(tmp_path) -> None:
    assert _consumer_wait_ms(tmp_path, {}) == 500


def test_the_fetch_wait_follows_the_setting(tmp_path) -> None:
    assert _consumer_wait_ms(tmp_path, {"TOCSIN_KAFKA_FETCH_MAX_WAIT_MS": "750"}) == 750
