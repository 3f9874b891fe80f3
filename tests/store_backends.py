"""The store backends every storage contract test runs on, and how to open a fresh one.

- ``embedded``: Tocsin's own chdb backend (``pipeline.store.embedded``);
- ``chdb-connect``: the clickhouse-connect backend (``pipeline.store.server``) on
  clickhouse-connect's in-process chDB interface (``chdb:///path``), so CI runs it;
- ``server``: the same backend on a ClickHouse server at TOCSIN_TEST_CLICKHOUSE_URL (and
  _USER/_PASSWORD), marked ``clickhouse_server``: without a server those tests are
  deselected and the summary reports them as not run.

chdb hosts one engine per process, on one data directory at a time: the two in-process
backends share it when they open the same directory, and a test closes its store before
the next test opens another directory.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import orjson
import pytest

from pipeline.events.codec import DecodedBatch, decode_values
from pipeline.events.schema import RecordKind
from pipeline.store import EmbeddedStore, ReadLimits, ServerStore, Store

NOW = int(time.time() * 1000)

SERVER_URL = os.environ.get("TOCSIN_TEST_CLICKHOUSE_URL", "")
BACKENDS = ["embedded", "chdb-connect",
            pytest.param("server", marks=pytest.mark.clickhouse_server)]
IN_PROCESS = ["embedded", "chdb-connect"]


def open_backend(kind: str, root: Path, ttl_days: int = 0,
                 limits: ReadLimits | None = None) -> Store:
    """A fresh store of ``kind``: its own directory under ``root``, or its own database."""
    if kind == "embedded":
        return EmbeddedStore(root / "store", "tocsin", ttl_days, limits)
    if kind == "chdb-connect":
        return ServerStore(f"chdb://{root / 'store'}", database="tocsin", ttl_days=ttl_days,
                           limits=limits)
    return ServerStore(SERVER_URL, os.environ.get("TOCSIN_TEST_CLICKHOUSE_USER", "default"),
                       os.environ.get("TOCSIN_TEST_CLICKHOUSE_PASSWORD", ""),
                       database=f"tocsin_test_{uuid.uuid4().hex[:8]}", ttl_days=ttl_days,
                       limits=limits)


def close_backend(store: Store) -> None:
    """Close ``store``; a test database on a server is dropped first."""
    if isinstance(store, ServerStore) and not store.url.startswith("chdb:"):
        store._call("drop test database",
                    lambda c: c.command(f"DROP DATABASE IF EXISTS {store.database}"))
    store.close()


def metric_batch(n: int, offset: int = 0, age_ms: int = 60_000, **fields) -> DecodedBatch:
    """``n`` valid metric points ``age_ms`` before NOW over services s0-s2, values from
    ``offset``; ``fields`` are added to every record."""
    values = [orjson.dumps([{"time": NOW - age_ms + i, "service.name": f"s{i % 3}",
                             "name": "cpu", "value": float(i + offset), **fields}
                            for i in range(n)])]
    return decode_values(RecordKind.METRIC, values, NOW)
