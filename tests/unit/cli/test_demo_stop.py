"""The demo's live view never holds up a Ctrl-C: a cancelled stream returns while a call
to a worker that does not answer is still blocked."""

from __future__ import annotations

import asyncio
import io
import threading

from rich.console import Console
from rich.live import Live
from rich.progress import Progress

from pipeline.cli import demo


class StuckWorker:
    """A worker whose pages never answer (one that is stopping, say)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.finished = 0

    def call(self, path, payload=None, timeout_s=60.0):
        self.calls += 1
        self.release.wait(timeout=20)
        self.finished += 1
        raise OSError("timed out")

    def query(self, sql, timeout_s=60.0):
        return self.call("/query")


def test_a_cancelled_stream_does_not_wait_for_a_blocked_live_view(monkeypatch):
    async def publish_forever(*args, **kwargs):
        await asyncio.sleep(3600)

    monkeypatch.setattr(demo, "publish_simulation", publish_forever)
    worker = StuckWorker()
    progress = Progress()
    task = progress.add_task("simulate", total=1)

    async def interrupted() -> None:
        with Live(console=Console(file=io.StringIO())) as live:
            stream = asyncio.create_task(demo._stream(None, None, 1.0, progress, task, live,
                                                      worker))
            while worker.calls == 0:  # the live view is blocked in its first call
                await asyncio.sleep(0.01)
            stream.cancel()  # what asyncio.run does with the main task on Ctrl-C
            try:
                await stream
            except asyncio.CancelledError:
                pass

    try:
        asyncio.run(interrupted())  # returns without waiting for the blocked call
        assert worker.finished == 0
    finally:
        worker.release.set()
