"""Store backends head to head: Tocsin's embedded chdb backend against clickhouse-connect
on chDB (``chdb:///path``), both in this process on one fresh data directory.

chdb hosts one engine per process: both backends open the same directory and share its
engine, each with a database of its own (the same rows, its own parts and merges). A
round (``--rounds``, default 3, each on a fresh directory; the backend that goes first
alternates):

1. inserts, one backend after the other: metric rows shaped by the stream's codec
   (``decode_values(...).to_arrow()``, 90 services x 20 names x 5 hosts, an attributes
   map) by ``insert_arrow``, in Arrow batches of 10,000 rows (``--batches-10k``, default
   20), then of 100,000 rows (``--batches-100k``, default 4), then half as many of each
   while another thread decodes JSON without pause (as a worker's event loop does while
   its inserts run in executor threads: both want the GIL): rows/s over wall-clock
   seconds; ``OPTIMIZE TABLE ... FINAL`` after each figure, so no merge of one backend
   runs into the next figure;
2. query latency, median of ``--repeats`` runs each (default 9, after one warm-up; the
   backends alternate run by run, so both see the same machine load): a count with FINAL,
   a GROUP BY over every row, one service's per-minute series, a 10,000-row wide read
   (the conversion of rows into Python values included), and the count through
   ``Store.read`` (the analysts' path: ClickHouse parses, the AST is checked, the
   read-only connection runs it).

The table shows the median over rounds and the ratio clickhouse-connect / embedded (for
rows/s above 1 means clickhouse-connect is faster; for ms above 1 means it is slower).

    .venv/bin/python bench/store_bench.py [--rounds 3] [--batches-10k 20]
        [--batches-100k 4] [--repeats 9] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

BACKENDS = {"embedded": "embedded (chdb)", "chdb-connect": "clickhouse-connect on chDB"}
QUERIES = {
    "count, FINAL": "SELECT count() FROM tocsin.metrics",
    "group by service, name": "SELECT service, name, avg(value), max(value) FROM "
                              "tocsin.metrics GROUP BY service, name ORDER BY service, name",
    "one service per minute": "SELECT toStartOfMinute(time) AS t, avg(value) FROM "
                              "tocsin.metrics WHERE service = 'svc-7' GROUP BY t ORDER BY t",
    "10k rows, all columns": "SELECT * FROM tocsin.metrics ORDER BY time DESC LIMIT 10000",
    "count, read path": "SELECT count() FROM tocsin.metrics",
}


def metric_batches(n_batches: int, rows: int, first: int, now_ms: int) -> list:
    """``n_batches`` Arrow tables of ``rows`` metric rows each, as the codec builds them."""
    from pipeline.events.codec import decode_values
    from pipeline.events.schema import RecordKind

    tables = []
    for b in range(n_batches):
        start = first + b * rows
        values = [orjson.dumps([
            {"time": now_ms - 3_600_000 + (i % 3_000_000), "service.name": f"svc-{i % 90}",
             "host.name": f"h{i % 5}", "name": f"metric.{i % 20}", "value": float(i % 1000),
             "attributes": {"region": "eu-west-1", "shard": str(i % 4)}}
            for i in range(lo, min(lo + 500, start + rows))])
            for lo in range(start, start + rows, 500)]
        batch = decode_values(RecordKind.METRIC, values, now_ms)
        assert not batch.rejections, batch.rejections[:1]
        tables.append(batch.to_arrow())
    return tables


class BusyThread:
    """While active, a thread decodes JSON in a loop: the worker's event loop decoding
    messages while inserts run in executor threads, so both compete for the GIL."""

    PAYLOAD = orjson.dumps([{"time": 1, "service.name": "svc", "name": "m", "value": 1.0,
                             "attributes": {"region": "eu"}}] * 100)

    def __init__(self, active: bool) -> None:
        self.active = active
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        while not self._stop.is_set():
            orjson.loads(self.PAYLOAD)

    def __enter__(self) -> BusyThread:
        if self.active:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            self._stop.set()
            self._thread.join()


def measure(root: Path, batches_10k: int, batches_100k: int, repeats: int,
            first: str) -> dict:
    """One round's figures: {backend: {figure: {unit: value}}}; ``first`` inserts first."""
    from pipeline.store import EmbeddedStore, ServerStore

    now_ms = int(time.time() * 1000)
    small = metric_batches(batches_10k, 10_000, 0, now_ms)
    large = metric_batches(batches_100k, 100_000, 10_000 * batches_10k, now_ms)
    first_busy = 10_000 * batches_10k + 100_000 * batches_100k
    busy = (metric_batches(batches_10k // 2, 10_000, first_busy, now_ms)
            + metric_batches(batches_100k // 2, 100_000, first_busy + 5_000 * batches_10k,
                             now_ms))
    total = sum(t.num_rows for t in small + large + busy)
    # one engine, one database each: the same rows, parts and merges of its own
    stores = {"embedded": EmbeddedStore(root / "store", "embedded", ttl_days=0),
              "chdb-connect": ServerStore(f"chdb://{root / 'store'}", database="connect",
                                          ttl_days=0)}
    figures: dict = {backend: {} for backend in stores}
    try:
        order = [first] + [b for b in stores if b != first]
        for backend in order:
            store = stores[backend]
            store.ensure_schema()
            for label, tables in (("insert 10k", small), ("insert 100k", large),
                                  ("insert 10k+100k, busy thread", busy)):
                with BusyThread(label.endswith("busy thread")):
                    began = time.perf_counter()
                    for table in tables:
                        store.insert_arrow("metrics", table)
                    seconds = time.perf_counter() - began
                rows = sum(t.num_rows for t in tables)
                figures[backend][label] = {"rows_per_s": rows / seconds}
                # merges of its own parts end before the next figure is taken
                store.query(f"OPTIMIZE TABLE {store.database}.metrics FINAL")
        for name, template in QUERIES.items():
            times: dict[str, list[float]] = {backend: [] for backend in stores}
            for k in range(repeats + 1):
                for backend in (order if k % 2 else order[::-1]):
                    store = stores[backend]
                    sql = template.replace("tocsin.", f"{store.database}.")
                    run = store.read if name.endswith("read path") else store.query
                    began = time.perf_counter()
                    result = run(sql)
                    if k:  # the first run of each is a warm-up
                        times[backend].append(time.perf_counter() - began)
                    if name.startswith("count"):
                        assert result.scalar() == total, (backend, result.rows)
            for backend in stores:
                figures[backend][name] = {"ms": statistics.median(times[backend]) * 1000}
    finally:
        for store in stores.values():
            store.close()
    return figures


def summarize(rounds: list[dict[str, dict]]) -> dict[str, dict[str, float]]:
    """Median over rounds of every figure: {backend: {figure: value}}."""
    out: dict[str, dict[str, float]] = {}
    for backend in BACKENDS:
        figures = [r[backend] for r in rounds]
        out[backend] = {}
        for name, values in figures[0].items():
            for unit in values:
                out[backend][f"{name} [{unit}]"] = statistics.median(
                    f[name][unit] for f in figures)
    return out


def print_table(summary: dict[str, dict[str, float]]) -> None:
    a, b = summary["embedded"], summary["chdb-connect"]
    header = f"{'figure':<42}{BACKENDS['embedded']:>18}{BACKENDS['chdb-connect']:>30}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for name in a:
        ratio = b[name] / a[name] if a[name] else float("nan")
        print(f"{name:<42}{a[name]:>18,.1f}{b[name]:>30,.1f}{ratio:>8.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches-10k", type=int, default=20)
    parser.add_argument("--batches-100k", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args(argv)
    rounds = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="tocsin-store-bench-") as root:
            first = list(BACKENDS)[r % 2]
            rounds.append(measure(Path(root), args.batches_10k, args.batches_100k,
                                  args.repeats, first))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    summary = summarize(rounds)
    print_table(summary)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
