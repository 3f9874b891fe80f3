"""Start, stop and report the local broker process (KRaft, loopback only).

The broker runs from the cached jars (:func:`~pipeline.kafka.jars.ensure_jars`), as a
detached JVM whose whole state lives in one directory::

    broker.pid  broker.json  server.properties  log4j2.yaml  broker.log  data/

:func:`start_broker` is idempotent per state directory, :func:`broker_status` reports the
broker recorded there, and :func:`stop_broker` only ever signals the PID it recorded, after
checking that the PID still belongs to that broker (``kafka.Kafka`` with our properties file).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline.errors import BrokerError
from pipeline.kafka.config import (
    HOST,
    MAX_MESSAGE_BYTES,
    find_free_port,
    new_cluster_id,
    render_server_properties,
)
from pipeline.kafka.jars import KAFKA_VERSION, check_version, default_cache_dir, ensure_jars
from pipeline.kafka.java import check_java_version, find_java
from pipeline.kafka.tools import locked, run_tool, tail, tail_file, write_atomic

_MAIN_CLASS = "kafka.Kafka"
_TOOL_TIMEOUT_S = 120.0
_KILL_WAIT_S = 10.0
_POLL_S = 0.1
_HEAP_RE = re.compile(r"[1-9][0-9]*[kKmMgG]?")
# Runs the JVM in the background of a throw-away shell, so the broker is re-parented to
# init: it outlives the caller, and it is never left a zombie of the Python process.
_DETACH = 'log=$1; shift; "$@" >"$log" 2>&1 </dev/null & echo $!'


@dataclass(frozen=True)
class BrokerHandle:
    """A running local broker: where to connect, its PID and where its files are."""

    bootstrap: str
    pid: int
    state_dir: Path
    data_dir: Path
    log_file: Path
    version: str


@dataclass(frozen=True)
class _Layout:
    """The files of one state directory."""

    root: Path
    pid_file: Path
    record: Path
    properties: Path
    log4j: Path
    log: Path
    data: Path
    lock: Path


def _layout(state_dir: Path | None) -> _Layout:
    root = Path(state_dir or default_state_dir()).expanduser().resolve()
    names = ("broker.pid", "broker.json", "server.properties", "log4j2.yaml", "broker.log")
    return _Layout(root, *(root / name for name in names), root / "data", root / ".lock")


def default_state_dir() -> Path:
    """Where the local broker keeps its pid, config, log and data by default."""
    return default_cache_dir() / "broker"


def start_broker(
    port: int = 9092,
    controller_port: int = 0,
    state_dir: Path | None = None,
    keep_data: bool = False,
    version: str = KAFKA_VERSION,
    timeout_s: float = 90.0,
    heap: str = "512m",
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> BrokerHandle:
    """Start a broker (port 0 = any free port) and wait until it accepts connections.

    Returns the running broker's handle if one from ``state_dir`` is already up. The data
    directory starts empty unless ``keep_data``. The broker takes messages of up to
    ``max_message_bytes`` (``kafka.max_message_bytes``).
    """
    check_version(version)
    if not _HEAP_RE.fullmatch(heap):
        raise BrokerError(f"heap must look like 512m or 2g, got {heap!r}")
    java = find_java()
    layout = _layout(state_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    with locked(layout.lock):
        running = _live_pid(layout)
        if running is not None:
            handle, record = _load(layout, running)
            if (port and port != record.get("port")) or version != handle.version:
                raise BrokerError(
                    f"a Kafka {handle.version} broker from {layout.root} is already running "
                    f"on {handle.bootstrap} (pid {running}); stop it first"
                )
            _wait_ready(running, int(record["port"]), layout, timeout_s)
            return handle
        _clear(layout)
        check_java_version(java)
        port = port or find_free_port()
        if not controller_port:
            controller_port = next(free for free in iter(find_free_port, None) if free != port)
        layout.properties.write_text(render_server_properties(port, controller_port, layout.data,
                                                              max_message_bytes))
        for taken in (port, controller_port):
            if _accepts(taken):
                raise BrokerError(f"port {taken} on {HOST} is already in use")
        classpath = str(ensure_jars(version) / "*")
        layout.log4j.write_text(
            resources.files("pipeline.kafka").joinpath("log4j2.yaml").read_text("utf-8")
        )
        if not keep_data:
            shutil.rmtree(layout.data, ignore_errors=True)
        if not (layout.data / "meta.properties").is_file():
            _format(java, classpath, layout)
        pid = _launch([
            java, f"-Xmx{heap}", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={layout.log4j}", "-cp", classpath,
            _MAIN_CLASS, str(layout.properties),
        ], layout)  # fmt: skip
        handle = BrokerHandle(f"{HOST}:{port}", pid, layout.root, layout.data, layout.log, version)
        record = {
            "bootstrap": handle.bootstrap, "pid": pid, "version": version, "port": port,
            "controller_port": controller_port, "state_dir": str(layout.root),
            "data_dir": str(layout.data), "log_file": str(layout.log),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }  # fmt: skip
        write_atomic(layout.record, json.dumps(record, indent=2) + "\n")
        write_atomic(layout.pid_file, f"{pid}\n")
        try:
            _wait_ready(pid, port, layout, timeout_s)
        except BrokerError:
            _terminate(pid, layout, 0.0)
            _clear(layout)
            raise
        return handle


def broker_status(state_dir: Path | None = None) -> BrokerHandle | None:
    """The broker running from ``state_dir``, or None; stale pid files are removed."""
    layout = _layout(state_dir)
    if not layout.root.is_dir():
        return None
    pid = _live_pid(layout)
    if pid is None:
        with locked(layout.lock):
            if _live_pid(layout) is None:
                _clear(layout)
        return None
    return _load(layout, pid)[0]


def stop_broker(state_dir: Path | None = None, timeout_s: float = 30.0) -> bool:
    """Stop the broker running from ``state_dir``: SIGTERM, then SIGKILL after ``timeout_s``.

    Returns True if a broker was running and has stopped.
    """
    layout = _layout(state_dir)
    if not layout.root.is_dir():
        return False
    with locked(layout.lock):
        pid = _live_pid(layout)
        if pid is not None:
            _terminate(pid, layout, timeout_s)
        _clear(layout)
        return pid is not None


def _format(java: str, classpath: str, layout: _Layout) -> None:
    layout.data.mkdir(parents=True, exist_ok=True)
    command = [
        java, f"-Dlog4j2.configurationFile={layout.log4j}", "-cp", classpath,
        # "=" keeps an id that starts with "-" (1 in 64) from being read as an option
        "kafka.tools.StorageTool", "format", f"--cluster-id={new_cluster_id()}",
        "-c", str(layout.properties),
    ]  # fmt: skip
    output, code = run_tool(command, layout.root, _TOOL_TIMEOUT_S, "formatting the Kafka storage")
    if code != 0:
        raise BrokerError(f"formatting {layout.data} failed (exit {code}):\n{tail(output)}")


def _launch(argv: list[str], layout: _Layout) -> int:
    """Start ``argv`` detached, in a new session, output to the broker log; its PID."""
    command = ["/bin/sh", "-c", _DETACH, "sh", str(layout.log), *argv]
    try:
        done = subprocess.run(
            command, cwd=layout.root, stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=_TOOL_TIMEOUT_S, start_new_session=True,
        )  # fmt: skip
        return int(done.stdout.strip())
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"the Kafka broker could not be launched: {exc}") from exc


def _wait_ready(pid: int, port: int, layout: _Layout, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not _accepts(port):
        if not _is_broker(pid, layout):
            raise BrokerError(
                f"the Kafka broker exited during start-up; last lines of {layout.log}:\n"
                f"{tail_file(layout.log)}"
            )
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"the Kafka broker did not accept connections on {HOST}:{port} within "
                f"{timeout_s:g} s; last lines of {layout.log}:\n{tail_file(layout.log)}"
            )
        time.sleep(_POLL_S)


def _terminate(pid: int, layout: _Layout, timeout_s: float) -> None:
    """SIGTERM, wait, then SIGKILL: each signal only while the PID is still our broker."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, _KILL_WAIT_S)):
        if not _is_broker(pid, layout):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while _is_broker(pid, layout) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
    if _is_broker(pid, layout):
        raise BrokerError(f"the Kafka broker (pid {pid}) did not exit after SIGKILL")


def _accepts(port: int) -> bool:
    """Does something accept TCP connections on 127.0.0.1:``port``?"""
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def _live_pid(layout: _Layout) -> int | None:
    """The recorded PID if that process is still our broker, else None."""
    try:
        pid = int(layout.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and _is_broker(pid, layout) else None


def _is_broker(pid: int, layout: _Layout) -> bool:
    """Is ``pid`` alive and running kafka.Kafka on this state dir's properties file?

    Guards against a recycled PID: a live process with another command line is not ours.
    """
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").is_dir():
        try:
            argv = proc.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return False
        return _MAIN_CLASS in argv and str(layout.properties) in argv
    output, code = run_tool(["ps", "-o", "command=", "-p", str(pid)], None, 10.0, "ps")
    return code == 0 and f" {_MAIN_CLASS} {layout.properties}" in output


def _load(layout: _Layout, pid: int) -> tuple[BrokerHandle, dict[str, Any]]:
    try:
        record = json.loads(layout.record.read_text())
        handle = BrokerHandle(
            bootstrap=str(record["bootstrap"]),
            pid=pid,
            state_dir=layout.root,
            data_dir=Path(record["data_dir"]),
            log_file=Path(record["log_file"]),
            version=str(record["version"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BrokerError(
            f"a Kafka broker (pid {pid}) is running but {layout.record} is unreadable ({exc}); "
            "stop it and start it again"
        ) from exc
    return handle, record


def _clear(layout: _Layout) -> None:
    for path in (layout.pid_file, layout.record):
        path.unlink(missing_ok=True)
