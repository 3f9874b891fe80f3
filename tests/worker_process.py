"""A ``tocsin worker`` in a child process, driven the way an operator would drive it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pipeline.api.web import HEALTH_PATH, QUERY_PATH, STATUS_PATH, client_headers


class WorkerProcess:
    """Starts ``python -m pipeline.cli worker`` with ``env``; stopped by its own PID."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        self.env.update(env)
        self.log_path = log_path
        self.port = int(env["TOCSIN_WORKER_WEB_PORT"])
        self.proc: subprocess.Popen | None = None

    def start(self, ready_timeout_s: float = 90.0) -> WorkerProcess:
        """Start the worker and wait until its web server answers."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker"], env=self.env,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                self.status()
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"worker not ready after {ready_timeout_s}s:\n{self.log()}")

    def log(self) -> str:
        """The tail of the worker's output."""
        return self.log_path.read_text(errors="replace")[-4000:]

    def _call(self, path: str, payload: dict | None = None) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        data = json.dumps(payload).encode() if payload is not None else None
        token = self.env.get("TOCSIN_WORKER_API_TOKEN", "")
        request = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                         headers=client_headers(token, json_body=bool(data)))
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def status(self) -> dict[str, Any]:
        """The worker's ingest counters."""
        return self._call(STATUS_PATH)

    def health(self) -> tuple[int, dict[str, Any]]:
        """The health page's HTTP status and body (503 when an agent is stuck)."""
        try:
            return 200, self._call(HEALTH_PATH)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def query(self, sql: str) -> list[list[Any]]:
        """Rows of a read query answered by the worker."""
        return self._call(QUERY_PATH, {"sql": sql})["rows"]

    def wait_until(self, predicate, timeout_s: float = 120.0, what: str = "condition") -> None:
        """Poll ``predicate(self)`` until it is true; fail with the worker's log otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker died waiting for {what}:\n{self.log()}")
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}; status {self.status()}\n{self.log()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the worker's PID and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def terminate(self, wait_s: float) -> int | None:
        """SIGTERM, then wait up to ``wait_s`` for the exit; its code, or None if the
        worker was still running (it is then killed)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return None

    def stop(self) -> None:
        """Graceful stop (SIGTERM), SIGKILL if it does not exit in time."""
        self.kill(signal.SIGTERM)
