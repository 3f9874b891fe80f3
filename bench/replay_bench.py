"""Trace-heavy ingest: a real replay through ``tocsin produce`` into a worker at defaults.

The file (default: the Online Boutique replay of 2022-08-22 in ``../shared/data``, 909 k
records, 93 % spans) is sent by the real CLI, ``tocsin produce FILE --quiet``, to an
isolated worker at the default settings (4 partitions, batches of 1,000 messages, rules,
models and correlator on). Timed:

- ``produce``: the CLI's run, from start to exit (every message acknowledged);
- ``stored``: from the CLI's start until ``/tocsin/status`` counts every record of the
  file stored (polled every 0.2 s): records/s and spans/s are taken over this time;
- ``detected``: until the detect watermark reaches the file's last event (minus the
  allowed lateness), i.e. every record went through detection too;
- the CPU seconds (user + system) the produce run and the worker used: on a shared
  machine the elapsed figures depend on the load, records per worker CPU second much less.

With ``--backlog`` the file is produced first and the worker started after, so the
figure is the worker's alone (from its first stored row to the last).

    .venv/bin/python bench/replay_bench.py [--file F] [--backlog] [--bootstrap HOST:PORT]
        [--worker-env NAME=VALUE ...] [--produce-arg ARG ...] [--json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from ingest_bench import REPO, Worker, worker_env

from pipeline.kafka import find_free_port, start_broker, stop_broker
from pipeline.settings import DetectSettings

DEFAULT_FILE = REPO.parent / "shared" / "data" / "nezha-ob" / "replay-2022-08-22.ndjson.gz"
POLL_S = 0.2


def file_counts(path: Path) -> tuple[dict[str, int], int]:
    """Records per kind in an NDJSON(.gz) replay, and its latest event time (ms)."""
    opener = gzip.open if path.suffix == ".gz" else open
    counts: dict[str, int] = {}
    last = 0
    with opener(path, "rb") as handle:
        for line in handle:
            if line.strip():
                record = orjson.loads(line)
                kind = record["type"]
                counts[kind] = counts.get(kind, 0) + 1
                last = max(last, int(record["start" if kind == "span" else "time"]))
    return counts, last


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def produce(path: Path, env: dict[str, str], extra: list[str]) -> tuple[float, str]:
    """Run ``tocsin produce`` on ``path`` (plus ``extra`` arguments); (seconds, its
    summary line)."""
    child = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "produce", str(path),
                           "--quiet", *extra], env={**child, **env}, cwd=REPO, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"tocsin produce failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.monotonic() - began, done.stdout.strip()


def wait_for(worker: Worker, counts: dict[str, int], watermark: int, began: float,
             timeout_s: float) -> dict[str, float]:
    """Poll until every record is stored and detection passed ``watermark``; the times
    (from ``began``) of the first stored row, all stored, and detected."""
    times: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        if not worker.alive():
            raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
        status = worker.status()
        now = time.monotonic() - began
        if status is not None:
            stored = status["stored"]
            if "first" not in times and sum(stored.values()) > 0:
                times["first"] = now
            if "stored" not in times and all(stored.get(k, 0) >= n for k, n in counts.items()):
                times["stored"] = now
            if "stored" in times and status["detect"]["watermark_ms"] >= watermark:
                times["detected"] = now
                times["status"] = status  # type: ignore[assignment]
                return times
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f}s: {status}\n"
                               f"{worker.log_tail()}")
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--backlog", action="store_true",
                        help="produce everything first, then start the worker")
    parser.add_argument("--bootstrap", help="use this broker instead of a local one")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--produce-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for tocsin produce (repeatable), e.g. "
                        "--produce-arg=--max-event-lag-ms=600000")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        parser.error(f"no replay file at {args.file} (--file)")
    counts, last_ms = file_counts(args.file)
    watermark = last_ms - DetectSettings().allowed_lateness_ms
    root = Path(tempfile.mkdtemp(prefix="tocsin-replay-bench-"))
    load = os.getloadavg()[0]
    bootstrap = args.bootstrap
    if not bootstrap:
        bootstrap = start_broker(port=0, state_dir=root / "broker").bootstrap
    worker = None
    try:
        extra = dict(item.split("=", 1) for item in args.worker_env)
        env = worker_env(bootstrap, uuid.uuid4().hex[:8], root, find_free_port(), 4, None,
                         extra)
        worker = Worker(env, root / "worker.log", None)
        if not args.backlog:
            worker.start()
            while worker.status() is None:
                if not worker.alive():
                    raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
                time.sleep(POLL_S)
        began = time.monotonic()
        before = children_cpu()
        produce_s, summary = produce(args.file, env, args.produce_arg)
        produce_cpu = children_cpu() - before
        if args.backlog:
            began = time.monotonic()
            worker.start()
        times = wait_for(worker, counts, watermark, began, args.timeout)
        status = times.pop("status")
        worker_cpu = cpu_seconds(worker.proc.pid)
        span_s = times["stored"] - (times["first"] if args.backlog else 0.0)
        figures = {
            "file": str(args.file), "records": counts, "mode": "backlog" if args.backlog
            else "live", "produce_s": round(produce_s, 1), "produce_summary": summary,
            "stored_s": round(times["stored"], 1), "detected_s": round(times["detected"], 1),
            "records_per_s": round(sum(counts.values()) / span_s),
            "spans_per_s": round(counts.get("span", 0) / span_s),
            "produce_cpu_s": round(produce_cpu, 1), "worker_cpu_s": round(worker_cpu, 1),
            "records_per_worker_cpu_s": round(sum(counts.values()) / worker_cpu),
            "worker_peak_mib": round(worker.peak_mib()),
            "late_records": status["detect"]["late_records"],
            "cpus": os.cpu_count(), "load_before": round(load, 2),
        }
    finally:
        if worker is not None:
            print(worker.stop(), file=sys.stderr)
        if not args.bootstrap:
            stop_broker(root / "broker")
    for key, value in figures.items():
        print(f"  {key:<16} {value}")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
