"""A real Prometheus Alertmanager in a child process, on free loopback ports.

The binary comes from ``scripts/build-alertmanager.sh`` (``~/.cache/tocsin/alertmanager``,
or ``$TOCSIN_CACHE_DIR/alertmanager``); without it the test fails naming the script.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pipeline.kafka import find_free_port

BUILD_SCRIPT = "scripts/build-alertmanager.sh"
CONFIG = """\
global:
  resolve_timeout: 5m
route:
  receiver: blackhole
  group_by: [problem_id]
  group_wait: 1s
receivers:
  - name: blackhole
"""


def alertmanager_binary() -> Path:
    """The cached Alertmanager binary; fails the test, naming the build script, if absent."""
    cache = Path(os.environ.get("TOCSIN_CACHE_DIR") or Path.home() / ".cache" / "tocsin")
    binary = cache / "alertmanager" / "alertmanager"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no Alertmanager binary at {binary}: run `bash {BUILD_SCRIPT}` (scripts/"
                    "test.sh does) to build v0.35.0 from its Go module", pytrace=False)
    return binary


class AlertmanagerProcess:
    """Alertmanager with a temp config and storage dir under ``root``; stopped by its PID."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, ready_timeout_s: float = 60.0) -> AlertmanagerProcess:
        """Start it and wait until ``/-/ready`` answers."""
        binary = alertmanager_binary()
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "alertmanager.yml"
        config.write_text(CONFIG)
        self.log_path = self.root / "alertmanager.log"
        self.proc = subprocess.Popen(
            [str(binary), f"--config.file={config}", f"--storage.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             "--log.level=debug"],
            stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"alertmanager exited with {self.proc.returncode}:\n"
                                   f"{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=5):
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"alertmanager not ready after {ready_timeout_s}s:\n{self.log()}")

    def log(self) -> str:
        """The tail of Alertmanager's log."""
        return self.log_path.read_text(errors="replace")[-4000:]

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (active, silenced and inhibited; resolved ones are not
        listed), filtered by label matchers ``name="value"``."""
        query = urllib.parse.urlencode([("filter", f'{k}="{v}"') for k, v in filters.items()])
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{query}", timeout=10) as resp:
            return json.loads(resp.read())

    def metric(self, name: str, **labels: str) -> float:
        """The value of one series of Alertmanager's own ``/metrics`` (0 when absent); give
        every label of the series."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        series = f"{name}{{{want}}}" if want else name
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> None:
        """Stop it by its PID (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
