"""What a Faust user writes first: a per-event agent that ingests metric points into chdb.

Run by ``bench/ingest_bench.py`` as a child process, beside the ceiling and Tocsin, on the
same topic. The agent takes one message at a time (``async for value in stream``),
``orjson.loads`` it, checks each point's fields (present, of the right JSON type),
gathers the points as columns and inserts them into embedded ClickHouse (chdb, an Arrow
table through ``Python(table)``) every ``--flush-rows`` rows, in an executor thread.
When it has stored ``--expect`` points it writes one JSON line to ``--result``
(points, seconds from the first message to the last insert, peak RSS) and exits.

    python bench/faust_agent.py --bootstrap HOST:PORT --topic T --group G \
        --store DIR --expect N --result FILE [--flush-rows 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import faust
import orjson
import pyarrow as pa

REQUIRED = (("time", int), ("service.name", str), ("host.name", str), ("name", str),
            ("value", (int, float)))
DDL = ("CREATE TABLE IF NOT EXISTS bench.metrics (time DateTime64(3, 'UTC'), service String, "
       "host String, name String, value Float64, unit String, "
       "attributes Map(String, String)) ENGINE = MergeTree ORDER BY (service, name, time)")


def peak_mib() -> float:
    """VmHWM of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sink:
    """Points as columns, inserted into chdb every ``flush_rows``."""

    def __init__(self, path: str, flush_rows: int) -> None:
        from chdb import session

        self.session = session.Session(path)
        self.session.query("CREATE DATABASE IF NOT EXISTS bench")
        self.session.query(DDL)
        self.flush_rows = flush_rows
        self.stored = 0
        self.rejected = 0
        self._clear()

    def _clear(self) -> None:
        self.cols: dict[str, list] = {k: [] for k in
                                      ("time", "service", "host", "name", "value", "unit",
                                       "attributes")}

    def add(self, point: object) -> None:
        """Check one point's fields and append it (or count it rejected)."""
        if not isinstance(point, dict) or any(
                not isinstance(point.get(k), t) for k, t in REQUIRED):
            self.rejected += 1
            return
        c = self.cols
        c["time"].append(point["time"])
        c["service"].append(point["service.name"])
        c["host"].append(point["host.name"])
        c["name"].append(point["name"])
        c["value"].append(float(point["value"]))
        c["unit"].append(point.get("unit", ""))
        c["attributes"].append(list((point.get("attributes") or {}).items()))

    def pending(self) -> int:
        return len(self.cols["time"])

    def flush(self) -> int:
        """Insert the pending rows (blocking: call it in a thread); returns how many."""
        c = self.cols
        rows = pa.table({
            "time": pa.array(c["time"], pa.timestamp("ms", tz="UTC")),
            "service": c["service"], "host": c["host"], "name": c["name"],
            "value": pa.array(c["value"], pa.float64()), "unit": c["unit"],
            "attributes": pa.array(c["attributes"], pa.map_(pa.string(), pa.string())),
        })
        self._clear()
        self.session.query("INSERT INTO bench.metrics SELECT * FROM Python(rows)")
        return rows.num_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--flush-rows", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()

    sink = Sink(args.store, args.flush_rows)
    app = faust.App(args.group, broker=f"kafka://{args.bootstrap}", store="memory://",
                    web_enabled=False, consumer_auto_offset_reset="earliest",
                    topic_partitions=args.partitions, datadir=f"{args.store}-faust",
                    autodiscover=False)
    topic = app.topic(args.topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    began: list[float] = []

    @app.agent(topic)
    async def ingest(stream):  # noqa: ANN001 - Faust's stream
        loop = asyncio.get_running_loop()
        async for value in stream:
            if not began:
                began.append(time.perf_counter())
            for point in orjson.loads(value):
                sink.add(point)
            done = sink.stored + sink.rejected + sink.pending() >= args.expect
            if sink.pending() >= sink.flush_rows or (done and sink.pending()):
                sink.stored += await loop.run_in_executor(None, sink.flush)
            if sink.stored + sink.rejected >= args.expect:
                elapsed = time.perf_counter() - began[0]
                Path(args.result).write_text(json.dumps({
                    "points": sink.stored, "rejected": sink.rejected, "seconds": elapsed,
                    "peak_mib": peak_mib()}))
                os._exit(0)  # the figure is written: no need for a graceful stop

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
