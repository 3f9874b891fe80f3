"""``tocsin demo`` stops on Ctrl-C while it streams: its worker is stopped, it exits 130."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration

# the worker's own shutdown bound in the demo is 10 s; the old demo took over 75 s
EXIT_BOUND_S = 45


def _default_sigint() -> None:
    """Ctrl-C as a terminal delivers it: a suite started in the background of a shell
    without job control (`.ci/run &`) inherits SIGINT ignored, and so would the demo."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_stops_the_demo_and_its_worker(kafka_broker, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    env.update(TOCSIN_KAFKA_BOOTSTRAP_SERVERS=kafka_broker.bootstrap,
               XDG_CACHE_HOME=str(tmp_path / "cache"), COLUMNS="100")
    out_path = tmp_path / "demo.out"
    with out_path.open("wb") as out:
        # its own process group, which Ctrl-C in a terminal signals as a whole
        demo = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "demo", "--hours", "2",
                                 "--minutes", "5"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_default_sigint)
    worker_pid = None
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and demo.poll() is None:
            text = out_path.read_text(errors="replace")
            found = re.search(r"Worker: pid (\d+)", text)
            if found and "Simulating" in text:
                worker_pid = int(found.group(1))
                break
            time.sleep(0.5)
        assert worker_pid is not None, out_path.read_text(errors="replace")
        time.sleep(3)  # let it stream a little: the interrupt lands mid-run
        os.killpg(demo.pid, signal.SIGINT)
        try:
            code = demo.wait(timeout=EXIT_BOUND_S)
        except subprocess.TimeoutExpired:
            code = None
        output = out_path.read_text(errors="replace")
        assert code == 130, f"demo exit {code} after Ctrl-C:\n{output[-3000:]}"
        assert "interrupted" in output
        assert not _alive(worker_pid), "the demo's worker outlived the demo"
    finally:
        for pid in (demo.pid, worker_pid):
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if demo.poll() is None:
            demo.wait(timeout=10)
