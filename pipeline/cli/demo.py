"""``tocsin demo``: the whole pipeline on its embedded defaults, watched live.

Starts the local Kafka broker (unless a cluster is configured) and a worker process,
streams a simulated system with a mix of labelled incidents through them, shows problems
and ingest progress live, then prints the evaluation against the labels and the answers
to a few analyst queries. Everything lives under ``~/.cache/tocsin/demo`` and is started
fresh; the broker and worker are stopped by their PIDs at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.api.query import caught_up
from pipeline.api.web import QUERY_PATH, STATUS_PATH, client_headers
from pipeline.errors import TocsinError
from pipeline.evaluate import evaluate, format_table, result_to_dict
from pipeline.evaluate.load import load_detections, load_problems
from pipeline.kafka import default_cache_dir, find_free_port, start_broker, stop_broker
from pipeline.settings import load_settings
from pipeline.simulate import (
    load_system,
    save_labels,
    simulate,
    start_ending_at,
    write_call_graph,
)
from pipeline.simulate.publish import publish_simulation
from pipeline.store import QueryResult

ANALYST_QUERIES = (
    ("Peak error ratio per service",
     "SELECT service, round(max(value), 3) AS peak_error_ratio, "
     "round(avg(value), 4) AS mean_error_ratio FROM tocsin.metrics "
     "WHERE name = 'http.server.error.ratio' GROUP BY service "
     "ORDER BY peak_error_ratio DESC LIMIT 5"),
    ("Services logging the most errors, with a sample message",
     "SELECT service, count() AS errors, any(body) AS sample FROM tocsin.logs "
     "WHERE severity_number >= 17 GROUP BY service ORDER BY errors DESC LIMIT 5"),
    ("Slowest operations by p99 (from traces)",
     "SELECT service, name AS operation, round(quantile(0.99)(duration_ms), 1) AS p99_ms, "
     "countIf(status = 'error') AS errors FROM tocsin.spans GROUP BY service, name "
     "ORDER BY p99_ms DESC LIMIT 5"),
)
CATCH_UP_STALL_S = 300.0  # no detector, correlator or store progress this long: stalled
LIVE_TIMEOUT_S = 5.0  # the live view's calls: a slow answer is skipped, not waited for
WORKER_STOP_S = 10  # the demo worker's shutdown bound (worker.shutdown_timeout_s)
DETECTIONS_SQL = ("SELECT formatDateTime(time, '%H:%i') AS at, state, severity, title "
                  "FROM tocsin.detections WHERE NOT shadow ORDER BY time DESC, title LIMIT 6")
PROBLEMS_SQL = ("SELECT id, status, severity, category, title, "
                "arrayStringConcat(affected, ',') AS affected "
                "FROM tocsin.problems ORDER BY opened_at DESC LIMIT 8")


@dataclass
class CatchUp:
    """Whether the worker has processed a run up to ``end_ms``: done, still moving (the
    demo waits, with no deadline), or stalled (nothing moved for ``stall_s``)."""

    end_ms: int
    lateness_ms: int
    stall_s: float = CATCH_UP_STALL_S
    _mark: tuple[int, int, int] | None = None
    _moved_s: float = 0.0

    def observe(self, status: dict, now_s: float) -> str:
        """``"done"``, ``"waiting"`` or ``"stalled"`` after one status reading at ``now_s``."""
        if caught_up(status, self.end_ms, self.lateness_ms):
            return "done"
        mark = (status.get("detect", {}).get("watermark_ms", -1),
                status.get("correlate", {}).get("watermark_ms", -1),
                sum(status.get("stored", {}).values()))
        if mark != self._mark:
            self._mark, self._moved_s = mark, now_s
        return "stalled" if now_s - self._moved_s >= self.stall_s else "waiting"

    def behind_min(self, status: dict) -> float:
        """Minutes of event time between the detectors' watermark and the run's end."""
        watermark = status.get("detect", {}).get("watermark_ms", -1)
        if watermark < 0:
            return self.end_ms / 60_000  # nothing detected yet: the whole run
        return max(0.0, (self.end_ms - self.lateness_ms - watermark) / 60_000)


class DetectorsStalled(TocsinError):
    """The worker stopped processing before the end of the run: scoring would mislead."""


@dataclass
class DemoWorker:
    """The demo's worker process and how to reach its web pages."""

    proc: subprocess.Popen
    port: int
    log_path: Path

    def call(self, path: str, payload: dict | None = None, timeout_s: float = 60.0) -> Any:
        """GET (or POST ``payload`` as JSON to) one of the worker's pages."""
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data,
            headers=client_headers(json_body=data is not None), method="POST" if data else "GET")
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())

    def query(self, sql: str, timeout_s: float = 60.0) -> QueryResult:
        """A read query answered by the worker."""
        answer = self.call(QUERY_PATH, {"sql": sql}, timeout_s)
        return QueryResult(answer["columns"], [tuple(r) for r in answer["rows"]])

    def stop(self, wait_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if the worker does not exit within ``wait_s`` (at once
        on a second Ctrl-C)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=wait_s)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                self.proc.kill()
                self.proc.wait(timeout=10)


def _start_worker(env: dict[str, str], log_path: Path, port: int,
                  timeout_s: float = 120.0) -> DemoWorker:
    log = log_path.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    worker = DemoWorker(proc, port, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise TocsinError(f"the worker exited with {proc.returncode}:\n{tail}")
        try:
            worker.call(STATUS_PATH)
            return worker
        except OSError:
            time.sleep(0.3)
    worker.stop()
    raise TocsinError(f"the worker did not come up within {timeout_s:.0f}s (log: {log_path})")


def _result_table(result: QueryResult, title: str | None = None) -> Table:
    table = Table(*result.columns, title=title, title_justify="left")
    for row in result.rows:
        table.add_row(*[str(v) for v in row])
    return table


def _live_view(progress: Progress, worker: DemoWorker) -> Group:
    status = worker.call(STATUS_PATH, timeout_s=LIVE_TIMEOUT_S)
    counts = Table.grid(padding=(0, 2))
    counts.add_row("stored", *[f"{k}s {v:,}" for k, v in sorted(status["stored"].items())])
    counts.add_row("dead-lettered", f"{sum(status['rejected'].values()):,}")
    detect = status.get("detect", {})
    counts.add_row("detections", *[f"{k} {v:,}" for k, v in
                                   sorted(detect.get("detections", {}).items())])
    views = [progress, counts]
    problems = worker.query(PROBLEMS_SQL, LIVE_TIMEOUT_S)
    if problems.rows:
        views.append(_result_table(problems, "Problems (open and recent)"))
    views.append(_result_table(worker.query(DETECTIONS_SQL, LIVE_TIMEOUT_S),
                               "Latest detections"))
    return Group(*views)


async def _stream(settings, simulation, speed, progress, task, live, worker) -> dict:
    def advance(done_ms: int, total_ms: int) -> None:
        progress.update(task, completed=done_ms / 60_000, total=total_ms / 60_000)

    # the live view's calls run in a pool of their own: on Ctrl-C, asyncio.run waits for
    # the default pool's threads, and a call to a stopping worker can block until timeout
    pool = ThreadPoolExecutor(1, "tocsin-demo-view")

    async def refresh() -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                view = await loop.run_in_executor(pool, _live_view, progress, worker)
            except OSError:  # a slow answer: the next refresh tries again
                await asyncio.sleep(1.0)
                continue
            live.update(view)
            await asyncio.sleep(1.0)

    refresher = asyncio.create_task(refresh())
    try:
        report = await publish_simulation(settings, simulation, speed=speed,
                                          on_progress=advance)
        sent = sum(report.records.values())
        deadline = time.monotonic() + 300
        loop = asyncio.get_running_loop()
        while time.monotonic() < deadline:
            status = await loop.run_in_executor(pool, worker.call, STATUS_PATH, None,
                                                LIVE_TIMEOUT_S)
            if sum(status["stored"].values()) + sum(status["rejected"].values()) >= sent:
                break
            await asyncio.sleep(0.5)
        # score only once every detector (and the correlator) has passed the last record:
        # on a slow machine that takes longer, and the demo says so and waits
        catch_up = CatchUp(simulation.end_ms - simulation.labels.interval_ms,
                           settings.detect.allowed_lateness_ms)
        while True:
            status = await loop.run_in_executor(pool, worker.call, STATUS_PATH, None,
                                                LIVE_TIMEOUT_S)
            state = catch_up.observe(status, time.monotonic())
            if state == "done":
                break
            behind = catch_up.behind_min(status)
            if state == "stalled":
                raise DetectorsStalled(
                    f"the worker made no progress for {catch_up.stall_s:.0f}s with its "
                    f"detectors {behind:.0f} min of event time short of the end of the run; "
                    "not scoring a half-processed run (see the worker log)")
            progress.update(task, description=f"detection {behind:.0f} min behind; waiting")
            await asyncio.sleep(0.5)
        live.update(await loop.run_in_executor(pool, _live_view, progress, worker))
        return report.records
    finally:
        refresher.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


def run_demo(hours: float = 3.0, seed: int = 7, minutes: float = 1.0,
             keep_running: bool = False, console: Console | None = None) -> int:
    """Run the demo end to end; returns the process exit code."""
    console = console or Console()
    home = default_cache_dir() / "demo"
    shutil.rmtree(home / "store", ignore_errors=True)
    shutil.rmtree(home / "worker", ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    configured = os.environ.get("TOCSIN_KAFKA_BOOTSTRAP_SERVERS")
    broker_dir = home / "broker"
    if configured:
        bootstrap = configured
        console.print(f"Kafka: using the configured cluster at {bootstrap}")
    else:
        with console.status("starting the local Kafka broker (first run: Maven fetches it)"):
            bootstrap = start_broker(port=0, state_dir=broker_dir).bootstrap
        console.print(f"Kafka: local broker at {bootstrap}")
    port = find_free_port()
    system = load_system()
    write_call_graph(system, home / "dependencies.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    env.update({
        "TOCSIN_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TOCSIN_STORE_PATH": str(home / "store"),
        "TOCSIN_WORKER_DATA_DIR": str(home / "worker"),
        "TOCSIN_WORKER_WEB_PORT": str(port),
        "TOCSIN_WORKER_APP_ID": f"tocsin-demo-{int(time.time())}",
        "TOCSIN_WORKER_LOG_LEVEL": "warn",
        "TOCSIN_CORRELATE_DEPENDENCIES": str(home / "dependencies.yaml"),
        # a demo stops quickly: batches in hand are simply delivered again next time
        "TOCSIN_WORKER_SHUTDOWN_TIMEOUT_S": str(WORKER_STOP_S),
    })
    settings = load_settings(environ=env)
    worker = None
    try:
        with console.status("starting a worker (embedded ClickHouse)"):
            worker = _start_worker(env, home / "worker.log", port)
        console.print(f"Worker: pid {worker.proc.pid}, store {home / 'store'}, "
                      f"queries on http://127.0.0.1:{port}{QUERY_PATH}")

        interval_ms = 10_000
        now_ms = int(time.time() * 1000)
        duration_ms = int(hours * 3_600_000)
        start_ms = start_ending_at(now_ms, duration_ms, interval_ms)
        # the run ends now, at the shop's daily load peak whatever the hour: a seed gives
        # the same data, and so the same figures, at any time of day
        system = system.peaking_at(start_ms + duration_ms)
        simulation = simulate(system, start_ms, duration_ms, seed, mixed=True,
                              interval_ms=interval_ms)
        save_labels(simulation.labels, home / "labels.json")
        incidents = ", ".join(f"{i.scenario}@{i.root_cause_service}"
                              for i in simulation.labels.incidents)
        console.print(f"Simulating {hours:g} h of a 10-service system (seed {seed}), "
                      f"compressed to about {minutes:g} min; incidents: {incidents}")
        speed = duration_ms / 1000 / (minutes * 60)

        progress = Progress(TextColumn("simulated minutes"), BarColumn(),
                            TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                            TextColumn("{task.description}"),
                            TimeElapsedColumn())
        task = progress.add_task("", total=duration_ms / 60_000)
        with Live(console=console, refresh_per_second=4) as live:
            sent = asyncio.run(_stream(settings, simulation, speed, progress, task, live,
                                       worker))
        console.print("\nSent " + ", ".join(f"{n:,} {k}s" for k, n in sorted(sent.items())))

        slack_ms = 300_000
        problems = load_problems(worker.query, "tocsin", simulation.labels, slack_ms)
        detections = load_detections(worker.query, "tocsin", simulation.labels, slack_ms)
        result = evaluate(simulation.labels, problems, detections, match_slack_ms=slack_ms)
        (home / "evaluation.json").write_text(json.dumps(result_to_dict(result), indent=2))
        console.print("\n[bold]Evaluation against the labels[/bold] "
                      f"({home / 'labels.json'})")
        console.print(format_table(result), markup=False, highlight=False)

        console.print("\n[bold]What an analyst would ask ClickHouse[/bold]")
        for title, sql in ANALYST_QUERIES:
            console.print(f"\n[dim]tocsin query \"{sql}\"[/dim]")
            console.print(_result_table(worker.query(sql), title))
        if keep_running:
            console.print(f"\nStill running. Query with: TOCSIN_STORE_PATH={home / 'store'} "
                          f"TOCSIN_WORKER_WEB_PORT={port} tocsin query \"SELECT ...\"; stop "
                          f"the worker with kill {worker.proc.pid} and the broker with "
                          f"tocsin kafka stop --state-dir {broker_dir}")
            worker = None
        return 0
    except KeyboardInterrupt:
        console.print("\n[bold]interrupted[/bold]: stopping the worker and the broker "
                      "(Ctrl-C again to kill the worker at once)")
        return 130
    finally:
        if worker is not None:
            worker.stop(wait_s=WORKER_STOP_S + 5)
        if not configured and (not keep_running or worker is not None):
            stop_broker(state_dir=broker_dir)
