"""A real single-node Apache Kafka broker (KRaft, loopback only) for tests and the quick start.

The broker runs from jars that Maven resolves once into a cache (:func:`ensure_jars`), as a
detached JVM whose whole state lives in one directory::

    broker.pid  broker.json  server.properties  log4j2.yaml  broker.log  data/

:func:`start_broker` is idempotent per state directory, :func:`broker_status` reports the
broker recorded there, and :func:`stop_broker` only ever signals the PID it recorded, after
checking that the PID still belongs to that broker (``kafka.Kafka`` with our properties file).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline.errors import BrokerError

KAFKA_VERSION = "4.1.1"
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # the dead-letter topic must take any message that came in
MIN_JAVA = 17

_HOST = "127.0.0.1"
_MAIN_CLASS = "kafka.Kafka"
_MARKER = ".tocsin-complete"
_MVN_TIMEOUT_S = 900.0
_TOOL_TIMEOUT_S = 120.0
_KILL_WAIT_S = 10.0
_POLL_S = 0.1
_TAIL_LINES = 20
_VERSION_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]*")
_HEAP_RE = re.compile(r"[1-9][0-9]*[kKmMgG]?")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MAVEN_NOISE = re.compile(
    r"^\[ERROR\] *(|To see .*|Re-run Maven .*|For more .*|\[Help 1\].*)\n", re.M
)
# Runs the JVM in the background of a throw-away shell, so the broker is re-parented to
# init: it outlives the caller, and it is never left a zombie of the Python process.
_DETACH = 'log=$1; shift; "$@" >"$log" 2>&1 </dev/null & echo $!'

_JAVA_MISSING = (
    f"Java is not installed: the local Kafka broker needs a Java {MIN_JAVA}+ runtime "
    "(java on PATH, or JAVA_HOME set), e.g. `apt-get install openjdk-17-jre-headless`; "
    "or use docker compose or an existing Kafka cluster"
)
_MAVEN_MISSING = (
    "Maven is not installed: the local Kafka broker's jars are resolved with Maven "
    "(mvn on PATH), e.g. `apt-get install maven`; or use docker compose or an existing "
    "Kafka cluster"
)


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


def default_cache_dir() -> Path:
    """Tocsin's cache: ``$XDG_CACHE_HOME/tocsin``, else ``~/.cache/tocsin``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "tocsin"


def default_state_dir() -> Path:
    """Where the local broker keeps its pid, config, log and data by default."""
    return default_cache_dir() / "broker"


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def render_server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    """The ``server.properties`` of a single-node KRaft broker listening on 127.0.0.1 only."""
    for name, value in (("port", port), ("controller_port", controller_port)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise BrokerError(f"{name} must be a TCP port between 1 and 65535, got {value!r}")
    if port == controller_port:
        raise BrokerError(f"port and controller_port must differ, both are {port}")
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{_HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{_HOST}:{port},CONTROLLER://{_HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{_HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir).replace("\\", "\\\\"),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "message.max.bytes": str(MAX_MESSAGE_BYTES),
        "replica.fetch.max.bytes": str(MAX_MESSAGE_BYTES),
        "log.retention.hours": "168",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    header = "# Written by Tocsin's local Kafka launcher on every start; edits are lost.\n"
    return header + "".join(f"{key}={value}\n" for key, value in settings.items())


def ensure_jars(version: str = KAFKA_VERSION, cache_dir: Path | None = None) -> Path:
    """The directory of the broker jars for ``version``, resolved with Maven if not cached."""
    _check_version(version)
    root = Path(cache_dir or default_cache_dir()).expanduser() / "kafka" / version
    libs = root / "libs"
    if (libs / _MARKER).is_file():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(_MAVEN_MISSING)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        if (libs / _MARKER).is_file():  # another process finished while we waited
            return libs
        partial = root / "libs.partial"
        for leftover in (libs, partial):  # a half download is redone from scratch
            shutil.rmtree(leftover, ignore_errors=True)
        pom = root / "pom.xml"
        pom.write_text(resources.files("pipeline.kafka").joinpath("pom.xml").read_text("utf-8"))
        command = [
            mvn, "-q", "-B", "-U", "-Dstyle.color=never", "-f", str(pom),
            "dependency:copy-dependencies", f"-Dkafka.version={version}",
            f"-DoutputDirectory={partial}", "-Dmdep.includeScope=runtime",
        ]  # fmt: skip
        output, code = _run(command, root, _MVN_TIMEOUT_S, f"Maven resolving Kafka {version}")
        jars = sorted(path.name for path in partial.glob("*.jar"))
        if code != 0 or not any(name.startswith("kafka_2.13-") for name in jars):
            raise BrokerError(
                f"Maven could not resolve the Kafka {version} broker jars (exit {code}):\n"
                f"{_tail(_MAVEN_NOISE.sub('', output))}"
            )
        (partial / _MARKER).write_text("\n".join(jars) + "\n")
        os.replace(partial, libs)
    return libs


def start_broker(
    port: int = 9092,
    controller_port: int = 0,
    state_dir: Path | None = None,
    keep_data: bool = False,
    version: str = KAFKA_VERSION,
    timeout_s: float = 90.0,
    heap: str = "512m",
) -> BrokerHandle:
    """Start a broker (port 0 = any free port) and wait until it accepts connections.

    Returns the running broker's handle if one from ``state_dir`` is already up. The data
    directory starts empty unless ``keep_data``.
    """
    _check_version(version)
    if not _HEAP_RE.fullmatch(heap):
        raise BrokerError(f"heap must look like 512m or 2g, got {heap!r}")
    java = _find_java()
    layout = _layout(state_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    with _locked(layout.lock):
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
        _check_java_version(java)
        port = port or find_free_port()
        if not controller_port:
            controller_port = next(free for free in iter(find_free_port, None) if free != port)
        layout.properties.write_text(render_server_properties(port, controller_port, layout.data))
        for taken in (port, controller_port):
            if _accepts(taken):
                raise BrokerError(f"port {taken} on {_HOST} is already in use")
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
        handle = BrokerHandle(f"{_HOST}:{port}", pid, layout.root, layout.data, layout.log, version)
        record = {
            "bootstrap": handle.bootstrap, "pid": pid, "version": version, "port": port,
            "controller_port": controller_port, "state_dir": str(layout.root),
            "data_dir": str(layout.data), "log_file": str(layout.log),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }  # fmt: skip
        _write_atomic(layout.record, json.dumps(record, indent=2) + "\n")
        _write_atomic(layout.pid_file, f"{pid}\n")
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
        with _locked(layout.lock):
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
    with _locked(layout.lock):
        pid = _live_pid(layout)
        if pid is not None:
            _terminate(pid, layout, timeout_s)
        _clear(layout)
        return pid is not None


def new_cluster_id() -> str:
    """A fresh KRaft cluster id: 16 random bytes, url-safe base64 without padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")


def java_major_version(version_output: str) -> int | None:
    """The major version in ``java -version`` output (``1.8.0`` is 8), or None."""
    found = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def _check_version(version: str) -> None:
    if not _VERSION_RE.fullmatch(version):
        raise BrokerError(f"version must look like {KAFKA_VERSION}, got {version!r}")


def _find_java() -> str:
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home, "bin", "java") if home else None
    if candidate is not None and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise BrokerError(_JAVA_MISSING)
    return found


def _check_java_version(java: str) -> None:
    output, _ = _run([java, "-version"], None, 60.0, "java -version")
    major = java_major_version(output)
    if major is not None and major < MIN_JAVA:
        raise BrokerError(
            f"Java {major} found at {java}, the local Kafka broker needs Java {MIN_JAVA}+"
        )


def _run(command: list[str], cwd: Path | None, timeout_s: float, what: str) -> tuple[str, int]:
    """Run a tool to completion; its combined output (colours removed) and exit code."""
    try:
        done = subprocess.run(
            command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", timeout=timeout_s,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"{what} did not finish within {timeout_s:.0f} s") from exc
    except OSError as exc:
        raise BrokerError(f"{what} could not be run: {exc}") from exc
    return _ANSI_RE.sub("", done.stdout), done.returncode


def _format(java: str, classpath: str, layout: _Layout) -> None:
    layout.data.mkdir(parents=True, exist_ok=True)
    command = [
        java, f"-Dlog4j2.configurationFile={layout.log4j}", "-cp", classpath,
        # "=" keeps an id that starts with "-" (1 in 64) from being read as an option
        "kafka.tools.StorageTool", "format", f"--cluster-id={new_cluster_id()}",
        "-c", str(layout.properties),
    ]  # fmt: skip
    output, code = _run(command, layout.root, _TOOL_TIMEOUT_S, "formatting the Kafka storage")
    if code != 0:
        raise BrokerError(f"formatting {layout.data} failed (exit {code}):\n{_tail(output)}")


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
                f"{_tail_file(layout.log)}"
            )
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"the Kafka broker did not accept connections on {_HOST}:{port} within "
                f"{timeout_s:g} s; last lines of {layout.log}:\n{_tail_file(layout.log)}"
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
        with socket.create_connection((_HOST, port), timeout=1.0):
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
    output, code = _run(["ps", "-o", "command=", "-p", str(pid)], None, 10.0, "ps")
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


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` so concurrent starts and stops take turns."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


def _tail_file(path: Path, lines: int = _TAIL_LINES) -> str:
    try:
        return _tail(path.read_text(errors="replace"), lines)
    except OSError:
        return "(no log)"
