"""Ingest throughput of a real tocsin worker into embedded ClickHouse, against a ceiling.

The ceiling is a plain aiokafka consumer that only reads and JSON-decodes the same topic.

One topic is filled with ``--points`` metric points (default 1,000,000) in JSON-array
messages of ``--per-message`` points (default 100) by :class:`TelemetryProducer`. Then:

1. ceiling: a plain ``AIOKafkaConsumer`` reads the whole topic from the earliest offset
   with ``getmany`` and ``orjson.loads`` each message value, counting points (timed from
   the first record received to the last one decoded);
2. tocsin: a ``tocsin worker`` subprocess (own app id, group, store dir and web port)
   consumes the topic into embedded ClickHouse; ``GET /tocsin/status`` is polled every
   0.2 s and the rate is taken from the first poll that shows stored rows to the poll that
   shows all of them; ``SELECT count() FROM tocsin.metrics`` through ``/tocsin/query``
   must then answer exactly ``--points``;
3. the per-event Faust agent (``bench/faust_agent.py``: ``async for value in stream``,
   orjson, a field check, a chdb insert every 10k rows), what a Faust user writes first,
   on the same topic in its own group (``--no-faust`` skips it);
4. the ratios tocsin / ceiling and tocsin / Faust agent; with detection on, the seconds
   from the last row stored until the detect watermark, then the correlator, pass the
   last point (minus the allowed lateness);
5. the worker's time per stage (``stages`` on the status page: decode, store insert,
   forward by service, each agent's wait for its next batch and its busy time), its
   CPU seconds and its peak resident memory (``VmHWM``), read once all rows are stored
   and again just before it is stopped.

    .venv/bin/python bench/ingest_bench.py [--points 1000000] [--per-message 100]
        [--bootstrap HOST:PORT] [--partitions 4] [--batch-size N] [--json]
        [--verbose] [--worker-env NAME=VALUE ...] [--profile FILE] [--series N]
        [--no-faust] [--lag-timeout S] [--rss-log FILE]

Without ``--bootstrap`` a local broker is started on free ports and stopped at the end.
See bench/README.md for what each figure means and the figures measured so far.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline.api.web import QUERY_PATH, STATUS_PATH, client_headers
from pipeline.events.schema import RecordKind
from pipeline.kafka import find_free_port, start_broker, stop_broker
from pipeline.kafka.isolated import isolated_env
from pipeline.kafka.producer import TelemetryProducer
from pipeline.kafka.transport import client_kwargs, ensure_topics
from pipeline.settings import GraphSettings, IngestSettings, Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
POLL_S = 0.2
STOP_GRACE_S = 20.0
READY_TIMEOUT_S = 120.0

SERVICES = 200
HOSTS_PER_SERVICE = 5
METRICS = (  # name, unit, typical value, spread
    ("cpu.utilization", "1", 0.35, 0.15),
    ("memory.usage", "By", 1.5e9, 3e8),
    ("http.server.request.rate", "{request}/s", 120.0, 40.0),
    ("http.server.duration.p99", "ms", 180.0, 60.0),
    ("disk.io", "By/s", 2.0e6, 8e5),
)
REGIONS = ("eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-southeast-1")
HOUR_MS = 3_600_000


@dataclass
class Figures:
    """What one run measured."""

    points: int
    per_message: int
    messages: int
    partitions: int
    batch_size: int
    produce_s: float = 0.0
    produce_points_per_s: float = 0.0
    ceiling_s: float = 0.0
    ceiling_points: int = 0
    ceiling_points_per_s: float = 0.0
    worker_first_row_s: float = 0.0  # from worker start to the first poll showing rows
    ingest_first_seen: int = 0  # rows stored at that first poll (excluded from the rate)
    ingest_s: float = 0.0  # from that first poll to the poll showing all rows
    ingest_points_per_s: float = 0.0
    stored_rows: int = 0  # SELECT count() FROM tocsin.metrics
    ratio: float = 0.0
    worker_peak_mib: float = 0.0
    worker_peak_stored_mib: float = 0.0  # VmHWM when all rows were stored (ingest's share)
    worker_cpu_s: float = 0.0  # user + system CPU seconds of the worker, start to all stored
    worker_cpu_detected_s: float = 0.0  # the same, start to the correlator caught up
    series: int = 0  # distinct (service, host, metric) series in the points
    last_event_ms: int = 0  # the latest event time among the points
    detected_after_s: float = float("nan")  # all stored -> detect watermark past the last
    correlated_after_s: float = float("nan")  # all stored -> correlator past it too
    faust_points: int = 0
    faust_s: float = 0.0
    faust_points_per_s: float = 0.0
    faust_peak_mib: float = 0.0
    ratio_faust: float = 0.0  # tocsin / the per-event Faust agent
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    cpus: int = 0
    load_before: float = 0.0  # 1-minute load average when the run started
    status: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- points


def make_points(n: int, now_ms: int, seed: int = 7,
                hosts_per_service: int = HOSTS_PER_SERVICE) -> list[dict[str, Any]]:
    """``n`` metric points in wire format: 200 services x ``hosts_per_service`` hosts x 5
    metrics (5 hosts: 5,000 series), last hour.

    Series are sampled in rounds (one point per series per round, like a scrape), the
    rounds spread evenly over the hour before ``now_ms``; values are drawn around a typical
    level per metric. Hosts of one service share a region; attributes dicts are shared
    per host (they are only read).
    """
    rng = random.Random(seed)
    series = []
    for s in range(SERVICES):
        service = f"svc-{s:03d}"
        region = REGIONS[s % len(REGIONS)]
        for h in range(hosts_per_service):
            host = f"{service}-{h}"
            attrs = {"region": region, "az": f"{region}{'abc'[h % 3]}"}
            for name, unit, level, spread in METRICS:
                series.append((service, host, name, unit, attrs, level, spread))
    rounds = -(-n // len(series))
    step_ms = max(1, HOUR_MS // rounds)
    start_ms = now_ms - HOUR_MS + 1
    gauss = rng.gauss
    points: list[dict[str, Any]] = []
    append = points.append
    for r in range(rounds):
        t = start_ms + r * step_ms
        for service, host, name, unit, attrs, level, spread in series:
            if len(points) == n:
                return points
            append({"time": t + rng.randrange(step_ms), "service.name": service,
                    "host.name": host, "name": name,
                    "value": abs(level + gauss(0.0, spread)), "unit": unit,
                    "attributes": attrs})
    return points


# --------------------------------------------------------------------------- kafka side


async def produce(settings: Settings, points: list[dict[str, Any]], per_message: int) \
        -> tuple[float, int]:
    """Send ``points`` with TelemetryProducer; seconds from the first send to flushed."""
    # every message full (``per_message`` points of one service): no flush on event-time
    # lag or wall time, so the messages are the same whatever the machine's speed
    async with TelemetryProducer(settings, records_per_message=per_message,
                                 max_event_lag_ms=2 * HOUR_MS,
                                 max_wait_ms=3_600_000) as producer:
        began = time.perf_counter()
        await producer.send(RecordKind.METRIC, points)
        await producer.flush()
        elapsed = time.perf_counter() - began
        return elapsed, producer.report.messages


async def ceiling(settings: Settings, topic: str, expected: int, timeout_s: float) \
        -> tuple[int, float]:
    """Read the whole topic with a plain consumer, orjson-decode each value, count points.

    Returns (points, seconds from the first record received to the last decoded).
    """
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, **client_kwargs(settings.kafka), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()  # without a group: every partition of the topic is assigned
    try:
        tps = sorted(consumer.assignment())
        if not tps:
            raise RuntimeError(f"topic {topic} has no partitions")
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > 0}
        points = 0
        first = last = None
        loads = orjson.loads
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"ceiling consumer: {points} of {expected} points after "
                                   f"{timeout_s:.0f}s")
            batches = await consumer.getmany(timeout_ms=1000)
            if not batches:
                continue
            if first is None:
                first = time.perf_counter()
            for tp, records in batches.items():
                for record in records:
                    points += len(loads(record.value))
                if records and records[-1].offset + 1 >= end[tp]:
                    pending.discard(tp)
            last = time.perf_counter()
        return points, (last - first) if first is not None else 0.0
    finally:
        await consumer.stop()


async def delete_topics(settings: Settings, suffix: str) -> list[str]:
    """Remove this run's topics (ours and the worker's internal ones) from a broker we
    did not start; returns their names."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_kwargs(settings.kafka))
    await admin.start()
    try:
        ours = sorted(t for t in await admin.list_topics()
                      if t.startswith((topic_prefix(suffix), f"{app_id(suffix)}-")))
        if ours:
            await admin.delete_topics(ours)
        return ours
    finally:
        await admin.close()


# --------------------------------------------------------------------------- the worker


def topic_prefix(suffix: str) -> str:
    return f"b{suffix}."


def app_id(suffix: str) -> str:
    return f"tocsin-bench-{suffix}"


def worker_env(bootstrap: str, suffix: str, root: Path, web_port: int, partitions: int,
               batch_size: int | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """TOCSIN_* variables of an isolated worker (as the tests start theirs)."""
    env = isolated_env(bootstrap, topic_prefix(suffix), app_id(suffix), root, web_port,
                       partitions)
    if batch_size is not None:
        env["TOCSIN_INGEST_BATCH_SIZE"] = str(batch_size)
    env.update(extra or {})
    return env


def bench_settings(bootstrap: str, suffix: str, root: Path, partitions: int,
                   batch_size: int | None, extra: list[str]) -> tuple[dict[str, str], Settings]:
    """A bench worker's environment (``extra``: ``NAME=VALUE`` items) and the settings it
    gives, with its topics created."""
    env = worker_env(bootstrap, suffix, root, find_free_port(), partitions, batch_size,
                     dict(item.split("=", 1) for item in extra))
    base = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    settings = load_settings(environ={**base, **env})
    asyncio.run(ensure_topics(settings))
    return env, settings


def release(started_broker: bool, broker_dir: Path, settings: Settings | None, suffix: str,
            root: Path) -> None:
    """Stop the broker the bench started, or delete its topics from the one it was given;
    remove its files."""
    if started_broker:
        stop_broker(state_dir=broker_dir)
    elif settings is not None:
        try:
            asyncio.run(delete_topics(settings, suffix))
        except Exception as exc:  # noqa: BLE001 - cleanup only, report and go on
            print(f"could not delete the benchmark topics: {exc}", file=sys.stderr)
    shutil.rmtree(root, ignore_errors=True)


class Worker:
    """``python -m pipeline.cli worker`` in a child process, stopped by its own PID."""

    def __init__(self, env: dict[str, str], log_path: Path, profile: str | None) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        self.env.update(env)
        self.port = int(env["TOCSIN_WORKER_WEB_PORT"])
        self.log_path = log_path
        self.profile = profile
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.rss_log: Path | None = None  # a CSV line per status poll (see sample)

    def start(self) -> None:
        prefix = ["-m", "cProfile", "-o", self.profile] if self.profile else []
        with self.log_path.open("ab") as log:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                [sys.executable, *prefix, "-m", "pipeline.cli", "worker"], env=self.env,
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _call(self, path: str, payload: dict | None = None, timeout_s: float = 10.0) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data,
            method="POST" if data else "GET",
            headers=client_headers(self.env.get("TOCSIN_WORKER_API_TOKEN", ""),
                                   json_body=data is not None))
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())

    def status(self) -> dict[str, Any] | None:
        """The status page, or None while the web server does not answer yet."""
        try:
            return self._call(STATUS_PATH)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def query(self, sql: str) -> list[list[Any]]:
        return self._call(QUERY_PATH, {"sql": sql}, timeout_s=120.0)["rows"]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def peak_mib(self) -> float:
        """VmHWM of the worker process (peak resident set), MiB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def memory_mib(self) -> dict[str, float]:
        """VmRSS, RssAnon and RssFile of the worker process now, MiB (empty once gone)."""
        assert self.proc is not None
        out = {}
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                name = line.split(":", 1)[0]
                if name in ("VmRSS", "RssAnon", "RssFile"):
                    out[name] = int(line.split()[1]) / 1024
        except OSError:
            pass
        return out

    def sample(self, status: dict[str, Any] | None) -> None:
        """Append the worker's memory and progress now to ``--rss-log``, if asked."""
        if self.rss_log is None:
            return
        memory = self.memory_mib()
        status = status or {}
        detect = status.get("detect", {})
        with self.rss_log.open("a") as out:
            out.write(f"{time.monotonic() - self.started:.2f},{memory.get('VmRSS', 0):.0f},"
                      f"{memory.get('RssAnon', 0):.0f},{memory.get('RssFile', 0):.0f},"
                      f"{status.get('stored', {}).get('metric', '')},"
                      f"{detect.get('batches', '')},{detect.get('watermark_ms', '')}\n")

    def cpu_s(self) -> float:
        """User + system CPU seconds of the worker process so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> str:
        """SIGTERM (SIGINT under cProfile, so it writes its file), SIGKILL after 20 s.

        Returns how it went, for the log.
        """
        if not self.alive():
            return "worker had already exited"
        assert self.proc is not None
        sig = signal.SIGINT if self.profile else signal.SIGTERM
        began = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=STOP_GRACE_S)
            code = self.proc.returncode
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
            return f"worker stopped by {sig.name} in {time.monotonic() - began:.1f}s ({how})"
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return f"worker did not stop within {STOP_GRACE_S:.0f}s of {sig.name}: killed"


def run_worker(worker: Worker, figures: Figures, timeout_s: float,
               verbose: bool = False, lag_timeout_s: float = 120.0) -> None:
    """Start the worker, time the ingest from the status page, verify the row count."""
    total = figures.points
    last_stored = 0
    worker.start()
    ready_by = time.monotonic() + READY_TIMEOUT_S
    deadline = None
    first_t = None
    while True:
        if not worker.alive():
            raise RuntimeError(f"worker exited with {worker.proc.returncode}:\n"
                               f"{worker.log_tail()}")
        status = worker.status()
        worker.sample(status)
        seen = time.monotonic()
        if status is None:
            if seen > ready_by:
                raise RuntimeError(f"worker not answering after {READY_TIMEOUT_S:.0f}s:\n"
                                   f"{worker.log_tail()}")
        else:
            deadline = deadline or seen + timeout_s
            stored = status["stored"].get("metric", 0)
            if verbose and stored != last_stored:
                print(f"  t={seen - worker.started:6.2f}s stored {stored:>9,} "
                      f"(+{stored - last_stored:,})", flush=True)
                last_stored = stored
            if stored > 0 and first_t is None:
                first_t = seen
                figures.ingest_first_seen = stored
                figures.worker_first_row_s = seen - worker.started
            if stored >= total:
                figures.status = status
                if stored > total:
                    raise RuntimeError(f"worker stored {stored} points, more than {total}")
                break
            if seen > deadline:
                raise RuntimeError(f"timed out after {timeout_s:.0f}s: status {status}\n"
                                   f"{worker.log_tail()}")
        time.sleep(POLL_S)
    figures.ingest_s = seen - first_t
    counted = total - figures.ingest_first_seen
    if counted > 0 and figures.ingest_s > 0:
        figures.ingest_points_per_s = counted / figures.ingest_s
    else:  # everything landed before the first poll that saw rows: no rate to measure
        figures.ingest_points_per_s = float("nan")
    stored_at = seen
    figures.stages = status.get("stages", {})
    figures.worker_cpu_s = worker.cpu_s()
    figures.worker_peak_stored_mib = worker.peak_mib()
    if status["detect"]["engines"]:
        wait_for_detection(worker, figures, stored_at, lag_timeout_s, verbose)
        figures.worker_cpu_detected_s = worker.cpu_s()
    rows = worker.query(f"SELECT count() FROM {settings_db(worker)}.metrics")
    figures.stored_rows = int(rows[0][0])
    if figures.stored_rows != total:
        raise RuntimeError(f"SELECT count() answered {figures.stored_rows}, expected {total}")
    figures.worker_peak_mib = worker.peak_mib()


def wait_for_detection(worker: Worker, figures: Figures, stored_at: float,
                       timeout_s: float, verbose: bool) -> None:
    """Poll until the detect watermark, then the correlator's event time, pass the last
    point's time minus the allowed lateness (every window up to the last one evaluated,
    its detections written and correlated); seconds after the last row was stored. A
    figure stays NaN if it is not reached within ``timeout_s``."""
    deadline = stored_at + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = worker.status() or status
        worker.sample(status)
        seen = time.monotonic()
        detect = status.get("detect", {})
        target = figures.last_event_ms - detect.get("allowed_lateness_ms", 0)
        if figures.detected_after_s != figures.detected_after_s \
                and detect.get("watermark_ms", -1) >= target:
            figures.detected_after_s = seen - stored_at
        # the service graph moves the correlator's watermark in whole buckets (the
        # built-in rules' windows end on those minutes too): the last boundary will do
        correlated = status.get("correlate", {}).get("watermark_ms", -1)
        if figures.detected_after_s == figures.detected_after_s \
                and correlated >= target // GraphSettings.bucket_ms * GraphSettings.bucket_ms:
            figures.correlated_after_s = seen - stored_at
            break
        time.sleep(POLL_S)
    if verbose:
        print(f"  detect watermark {status.get('detect', {}).get('watermark_ms')}, "
              f"correlator {status.get('correlate', {}).get('watermark_ms')}, "
              f"last point {figures.last_event_ms}", flush=True)
    figures.status = status or figures.status
    figures.stages = figures.status.get("stages", figures.stages)


def run_faust_agent(bootstrap: str, topic: str, suffix: str, root: Path, expect: int,
                    partitions: int, timeout_s: float) -> dict[str, Any]:
    """The per-event Faust agent (``bench/faust_agent.py``) over the same topic, in a
    child process of its own group; its figures (points, seconds, peak_mib)."""
    result = root / "faust-agent.json"
    log_path = root / "faust-agent.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "faust_agent.py"), "--bootstrap", bootstrap,
             "--topic", topic, "--group", f"faust-bench-{suffix}", "--store",
             str(root / "faust-store"), "--expect", str(expect), "--result", str(result),
             "--partitions", str(partitions)],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise RuntimeError(f"the per-event Faust agent did not finish in {timeout_s:.0f}s:\n"
                           f"{log_path.read_text(errors='replace')[-3000:]}") from None
    if not result.exists():
        raise RuntimeError(f"the per-event Faust agent exited with {proc.returncode}:\n"
                           f"{log_path.read_text(errors='replace')[-3000:]}")
    return json.loads(result.read_text())


def settings_db(worker: Worker) -> str:
    return worker.env.get("TOCSIN_STORE_DATABASE", "tocsin")


# --------------------------------------------------------------------------- report


def _rate(value: float) -> str:
    return "n/a" if value != value else f"{value:,.0f}"  # NaN check


def _ratio(value: float) -> str:
    return "n/a" if value != value or not value else f"{value:.1%}"


def _after(value: float) -> str:
    return "not reached" if value != value else f"{value:.1f} s"


def print_table(f: Figures) -> None:
    rows = [
        ("points (messages x per message)",
         f"{f.points:,} ({f.messages:,} x up to {f.per_message}), {f.series:,} series"),
        ("partitions / worker batch (messages)", f"{f.partitions} / {f.batch_size}"),
        ("producer (TelemetryProducer)",
         f"{_rate(f.produce_points_per_s)} points/s ({f.produce_s:.2f} s)"),
        ("ceiling (aiokafka getmany + orjson)",
         f"{_rate(f.ceiling_points_per_s)} points/s ({f.ceiling_s:.2f} s)"),
        ("per-event Faust agent (ingest only)",
         f"{_rate(f.faust_points_per_s)} points/s ({f.faust_s:.2f} s, peak "
         f"{f.faust_peak_mib:,.0f} MiB)" if f.faust_s else "not run"),
        ("tocsin worker",
         f"{_rate(f.ingest_points_per_s)} points/s ({f.points - f.ingest_first_seen:,} "
         f"points in {f.ingest_s:.2f} s)"),
        ("ratio tocsin / ceiling", _ratio(f.ratio)),
        ("ratio tocsin / Faust agent", "n/a" if not f.ratio_faust or f.ratio_faust != f.ratio_faust
         else f"{f.ratio_faust:.1f}x"),
        ("all stored -> detect watermark past the last point",
         _after(f.detected_after_s) if f.worker_cpu_detected_s else "detection off"),
        ("all stored -> correlator past it",
         _after(f.correlated_after_s) if f.worker_cpu_detected_s else "detection off"),
        ("worker start -> first stored row", f"{f.worker_first_row_s:.1f} s "
         f"({f.ingest_first_seen:,} rows at that poll)"),
        ("rows in tocsin.metrics", f"{f.stored_rows:,}"),
        ("worker peak memory (VmHWM)", f"{f.worker_peak_mib:,.0f} MiB"),
        ("worker peak memory when all rows were stored", f"{f.worker_peak_stored_mib:,.0f} MiB"),
        ("worker CPU (user + system), start to all stored", f"{f.worker_cpu_s:.1f} s"),
        ("worker CPU, start to the correlator caught up", f"{f.worker_cpu_detected_s:.1f} s"
         if f.worker_cpu_detected_s else "detection off"),
        ("machine", f"{f.cpus} CPUs, 1-min load average {f.load_before:.2f} at start"),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    if f.stages:
        print("\n  worker stages (wall seconds holding a batch; threads overlap the loop)")
        per = 100_000 / f.points
        print(f"  {'stage':<34} {'seconds':>8} {'calls':>6} {'s per 100k points':>18}")
        for name, st in sorted(f.stages.items(), key=lambda kv: -kv[1]["seconds"]):
            print(f"  {name:<34} {st['seconds']:8.2f} {st['calls']:6d} "
                  f"{st['seconds'] * per:18.3f}")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000, help="metric points to send")
    parser.add_argument("--per-message", type=int, default=100, help="points per message")
    parser.add_argument("--bootstrap", help="use this broker (HOST:PORT) instead of a local one")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the topic")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="worker's TOCSIN_INGEST_BATCH_SIZE, messages per batch "
                        f"(None: the settings default, {IngestSettings.batch_size})")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--profile", metavar="FILE",
                        help="run the worker under cProfile, writing FILE (slows it down)")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment variable for the worker (repeatable), "
                        "e.g. TOCSIN_INGEST_BATCH_WITHIN_MS=2000")
    parser.add_argument("--verbose", action="store_true",
                        help="print the stored counter whenever a poll sees it change")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="give up on the ingest after this many seconds")
    parser.add_argument("--series", type=int, default=SERVICES * HOSTS_PER_SERVICE * len(METRICS),
                        help="distinct series (200 services x 5 metrics x hosts: rounded "
                        "to a multiple of 1,000); e.g. --series 1000000 with --points "
                        "1000000: every point its own series")
    parser.add_argument("--no-faust", action="store_true",
                        help="skip the per-event Faust agent (the slowest of the three)")
    parser.add_argument("--rss-log", metavar="FILE",
                        help="write the worker's memory at each status poll to FILE (CSV: "
                        "seconds since start, VmRSS, RssAnon, RssFile MiB, rows stored, "
                        "detect batches, detect watermark)")
    parser.add_argument("--lag-timeout", type=float, default=180.0,
                        help="after all rows are stored, wait this long at most for the "
                        "detect watermark and the correlator to pass the last point")
    args = parser.parse_args(argv)
    if args.points < 1 or args.per_message < 1 or args.partitions < 1 or args.series < 1:
        parser.error("--points, --per-message, --partitions and --series must be >= 1")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if any("=" not in item for item in args.worker_env):
        parser.error("--worker-env takes NAME=VALUE")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([sys.executable, *(sys.argv if argv is None else [__file__, *argv])])
    root = Path(tempfile.mkdtemp(prefix="tocsin-ingest-bench-"))
    broker_dir = root / "broker"
    started_broker = False
    suffix = uuid.uuid4().hex[:8]
    settings: Settings | None = None
    worker: Worker | None = None
    figures = Figures(args.points, args.per_message, -(-args.points // args.per_message),
                      args.partitions, args.batch_size or IngestSettings.batch_size,
                      cpus=os.cpu_count() or 0, load_before=os.getloadavg()[0])
    try:
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            t = time.perf_counter()
            started_broker = True  # stop_broker is a no-op if nothing was launched
            handle = start_broker(port=0, state_dir=broker_dir)
            bootstrap = handle.bootstrap
            print(f"local Kafka broker at {bootstrap} (pid {handle.pid}) "
                  f"in {time.perf_counter() - t:.1f}s", flush=True)
        env, settings = bench_settings(bootstrap, suffix, root, args.partitions,
                                       args.batch_size, args.worker_env)
        topic = settings.topics.metrics

        t = time.perf_counter()
        hosts = max(1, round(args.series / (SERVICES * len(METRICS))))
        points = make_points(args.points, int(time.time() * 1000), hosts_per_service=hosts)
        figures.series = len({(p["service.name"], p["host.name"], p["name"]) for p in points})
        figures.last_event_ms = max(p["time"] for p in points)
        print(f"generated {len(points):,} points ({figures.series:,} series) in "
              f"{time.perf_counter() - t:.1f}s", flush=True)
        figures.produce_s, sent = asyncio.run(produce(settings, points, args.per_message))
        del points
        figures.messages = sent  # per service: ceil(its points / per_message)
        figures.produce_points_per_s = args.points / figures.produce_s
        print(f"produced {args.points:,} points in {sent:,} messages to {topic} in "
              f"{figures.produce_s:.1f}s", flush=True)

        figures.ceiling_points, figures.ceiling_s = asyncio.run(
            ceiling(settings, topic, args.points, args.timeout))
        if figures.ceiling_points != args.points:
            raise RuntimeError(f"ceiling consumer counted {figures.ceiling_points} points, "
                               f"expected {args.points}")
        figures.ceiling_points_per_s = (figures.ceiling_points / figures.ceiling_s
                                        if figures.ceiling_s else float("nan"))
        print(f"ceiling: read + decoded {figures.ceiling_points:,} points in "
              f"{figures.ceiling_s:.1f}s", flush=True)

        if not args.no_faust:
            faust = run_faust_agent(bootstrap, topic, suffix, root, args.points,
                                    args.partitions, args.timeout)
            if faust["points"] != args.points:
                raise RuntimeError(f"the Faust agent stored {faust['points']} points, "
                                   f"expected {args.points}")
            figures.faust_points, figures.faust_s = faust["points"], faust["seconds"]
            figures.faust_points_per_s = faust["points"] / faust["seconds"]
            figures.faust_peak_mib = faust["peak_mib"]
            print(f"per-event Faust agent: stored {faust['points']:,} points in "
                  f"{faust['seconds']:.1f}s", flush=True)

        worker = Worker(env, root / "worker.log", args.profile)
        if args.rss_log:
            worker.rss_log = Path(args.rss_log)
            worker.rss_log.write_text("s,rss_mib,anon_mib,file_mib,stored,batches,"
                                      "watermark_ms\n")
        run_worker(worker, figures, args.timeout, args.verbose, args.lag_timeout)
        figures.ratio = figures.ingest_points_per_s / figures.ceiling_points_per_s
        if figures.faust_points_per_s:
            figures.ratio_faust = figures.ingest_points_per_s / figures.faust_points_per_s
        print(f"tocsin: stored {figures.stored_rows:,} rows", flush=True)
        if args.verbose:
            print(f"status {figures.status}", flush=True)
    except BaseException:
        if worker is not None and worker.proc is not None:
            print(f"worker log tail:\n{worker.log_tail()}", file=sys.stderr)
        raise
    finally:
        if worker is not None:
            print(worker.stop(), flush=True)
            if worker.proc is not None and worker.proc.returncode not in (0, None):
                print(f"WARNING: the worker exited with {worker.proc.returncode}; its log "
                      f"ends:\n{worker.log_tail()}", file=sys.stderr, flush=True)
        release(started_broker, broker_dir, settings, suffix, root)

    print_table(figures)
    print(f"\ncommand: {command}")
    if args.json:
        payload = asdict(figures)
        payload.pop("status")
        payload.pop("stages")
        print(json.dumps({k: (None if isinstance(v, float) and v != v else
                              round(v, 3) if isinstance(v, float) else v)
                          for k, v in payload.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
