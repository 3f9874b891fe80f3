"""Reading a service's recent metric history back from the embedded store (real chdb)."""

from __future__ import annotations

import orjson
import pytest

from pipeline.events.codec import decode_values
from pipeline.events.schema import RecordKind
from pipeline.store import EmbeddedStore
from pipeline.store.history import recent_metrics, recent_metrics_many

pytestmark = pytest.mark.integration

NOW = 1_764_000_000_000
MIN = 60_000


def test_recent_metrics_is_bounded_ordered_and_only_the_asked_series(tmp_path):
    store = EmbeddedStore(tmp_path / "store", database="tocsin", ttl_days=0)
    try:
        store.ensure_schema()
        records = [{"time": NOW - i * MIN, "service.name": service, "host.name": host,
                    "name": name, "value": float(i)}
                   for i in range(1, 121)
                   for service, host, name in (("api", "api-1", "cpu"),
                                               ("api", "api-2", "cpu"),
                                               ("api", "api-1", "it's odd"),
                                               ("db", "api-1", "cpu"))]
        records.append({"time": NOW, "service.name": "api", "host.name": "api-1",
                        "name": "cpu", "value": -1.0})  # at 'before': not history
        batch = decode_values(RecordKind.METRIC, [orjson.dumps(records)], NOW + MIN)
        store.insert_arrow("metrics", batch.to_arrow())
        cols = recent_metrics(store, "api", [("api-1", "cpu"), ("api-1", "it's odd")], NOW,
                              lookback_ms=60 * MIN, max_points=25)
        pairs = list(zip(cols["host"], cols["name"], strict=True))
        assert sorted(set(pairs)) == [("api-1", "cpu"), ("api-1", "it's odd")]
        assert pairs.count(("api-1", "cpu")) == 25  # the last 25 of the hour
        cpu = [i for i, p in enumerate(pairs) if p == ("api-1", "cpu")]
        times = cols["time"][cpu].tolist()
        assert times == sorted(times) and times[-1] == NOW - MIN  # oldest first, < NOW
        assert cols["value"][cpu].tolist() == [float(i) for i in range(25, 0, -1)]
        # hosts and names asked crosswise: not the series their product would add
        crossed = recent_metrics(store, "api", [("api-1", "it's odd"), ("api-2", "cpu")], NOW,
                                 60 * MIN, 25)
        assert sorted(set(zip(crossed["host"], crossed["name"], strict=True))) == [
            ("api-1", "it's odd"), ("api-2", "cpu")]
        empty = recent_metrics(store, "api", [("nope", "cpu")], NOW, 60 * MIN, 25)
        assert empty["time"].size == 0 and empty["host"] == []
    finally:
        store.close()


def test_many_services_history_in_one_statement_is_each_service_s_own(tmp_path):
    """Requests with their own windows (one before the other's data, one with a name no
    other asks, a service asked twice), in one statement or cut into several: each
    answer equals that request's own :func:`recent_metrics`."""
    store = EmbeddedStore(tmp_path / "store", database="tocsin", ttl_days=0)
    try:
        store.ensure_schema()
        records = [{"time": NOW - i * MIN, "service.name": service, "host.name": host,
                    "name": name, "value": float(i * 10 + k)}
                   for i in range(0, 90)
                   for k, (service, host, name) in enumerate((
                       ("api", "api-1", "cpu"), ("api", "api-2", "cpu"),
                       ("db", "db-1", "cpu"), ("db", "db-1", "it's odd"),
                       ("web", "api-1", "cpu")))]
        batch = decode_values(RecordKind.METRIC, [orjson.dumps(records)], NOW + MIN)
        store.insert_arrow("metrics", batch.to_arrow())
        requests = [("api", [("api-1", "cpu"), ("api-2", "cpu")], NOW - 10 * MIN),
                    ("db", [("db-1", "it's odd"), ("db-1", "cpu")], NOW - 50 * MIN),
                    ("web", [("api-1", "cpu"), ("api-9", "cpu")], NOW),
                    ("nobody", [], NOW),
                    ("api", [("api-2", "cpu")], NOW - 80 * MIN)]
        alone = [recent_metrics(store, s, series, before, 30 * MIN, 20)
                 for s, series, before in requests]
        assert [len(a["time"]) for a in alone] == [40, 40, 20, 0, 9]
        for limit in (200_000, 2_100):  # one statement per distinct services; one each
            many = recent_metrics_many(store, requests, 30 * MIN, 20, max_sql_chars=limit)
            assert len(many) == len(requests)
            for got, want in zip(many, alone, strict=True):
                assert got["time"].tolist() == want["time"].tolist()
                assert got["host"] == want["host"] and got["name"] == want["name"]
                assert got["value"].tolist() == want["value"].tolist()
    finally:
        store.close()
