"""The service graph from spans paired in a real embedded ClickHouse store."""

from __future__ import annotations

import orjson
import pytest

from pipeline.events.codec import decode_values
from pipeline.events.detection import Detection
from pipeline.events.schema import RecordKind
from pipeline.graph.pairing import EdgeStat
from pipeline.graph.step import SOURCE, GraphStep, edges_table
from pipeline.settings import GraphSettings
from pipeline.store import EmbeddedStore
from pipeline.store.ddl import schema_statements

pytestmark = pytest.mark.integration

T0 = 1_700_000_040_000  # a minute boundary
MIN = 60_000
FAR = 4_102_444_800_000


def _hex(text: str, digits: int) -> str:
    return text.encode().hex().rjust(digits, "0")[-digits:]


def span(trace, sid, service, start, ms, kind, parent="", attrs=None, status="ok"):
    """A span; ids are readable names turned into the hex ids the codec wants."""
    trace, sid = _hex(trace, 32), _hex(sid, 16)
    parent = _hex(parent, 16) if parent else ""
    out = {"type": "span", "trace_id": trace, "span_id": sid, "service.name": service,
           "name": f"{service}-op", "start": start, "duration_ms": ms, "status": status,
           "kind": kind, "attributes": attrs or {}}
    if parent:
        out["parent_span_id"] = parent
    return out


def call(i, start, ms, callee="cart"):
    """front's server span, its client span, and the callee's server span (no peer)."""
    t = f"{i:04d}{start}"
    return [span(t, f"a{i}", "front", start, ms + 2, "server"),
            span(t, f"b{i}", "front", start + 1, ms, "client", f"a{i}"),
            span(t, f"c{i}", callee, start + 1, ms - 1, "server", f"b{i}")]


@pytest.fixture
def store(tmp_path):
    s = EmbeddedStore(tmp_path / "store", ttl_days=0)
    s.ensure_schema()
    yield s
    s.close()


def insert(store, records):
    by_kind = {"span": RecordKind.SPAN, "metric": RecordKind.METRIC}
    for kind, rk in by_kind.items():
        rows = [r for r in records if r["type"] == kind]
        if rows:
            batch = decode_values(rk, [orjson.dumps(rows)], now_ms=FAR)
            assert not batch.rejections
            store.insert_arrow("spans" if kind == "span" else "metrics", batch.to_arrow())


def test_spans_of_different_services_pair_into_edges_per_bucket(store):
    records = []
    for k in range(3):  # three usual minutes, then a delayed one
        records += [r for i in range(25) for r in call(i, T0 + k * MIN + i * 1000, 8.0)]
    records += [r for i in range(25) for r in call(i, T0 + 3 * MIN + i * 1000, 250.0)]
    # a database call named by attribute only; a client span naming a peer that also has
    # its child span (counted once, by the pair); a parent far too old to pair
    records += [span("db1", "d1", "cart", T0 + 5_000, 3.0, "client",
                     attrs={"db.system": "redis"}),
                span("x1", "x1", "front", T0 + 6_000, 9.0, "client",
                     attrs={"peer.service": "ads"}),
                span("x1", "x2", "ads", T0 + 6_001, 7.0, "server", "x1"),
                span("old", "o1", "front", T0 - 90 * MIN, 5.0, "client"),
                span("old", "o2", "slow", T0 + 10_000, 4.0, "server", "o1")]
    records += [{"type": "metric", "time": T0 + 2_000, "service.name": "front",
                 "name": "rpc.edge.duration.p50", "value": 0.004, "unit": "s",
                 "attributes": {"peer.service": "email"}}]
    insert(store, records)

    step = GraphStep(GraphSettings(bucket_ms=MIN, pair_window_ms=5 * MIN, min_calls=20))
    first = step.run(T0 + 3 * MIN + 30_000, store.query, None)  # the first 3 buckets only
    rows = {(e.caller, e.callee, e.bucket_ms, e.source): e for e in first.edges}
    cart = rows[("front", "cart", T0, "spans")]
    assert (cart.calls, cart.errors, cart.p50_ms) == (25, 0, 8.0)  # the client span's time
    assert sum(c for _, c in cart.hist) == 25
    assert rows[("cart", "redis", T0, "attribute")].calls == 1
    assert rows[("front", "ads", T0, "spans")].calls == 1  # not also as an attribute edge
    assert ("front", "ads", T0, "attribute") not in rows
    assert not any(e.callee == "slow" for e in first.edges)  # parent outside the window
    assert rows[("front", "email", T0, "metrics")].calls == 0
    assert first.topology == {"cart": ("redis",), "front": ("ads", "cart", "email")}
    assert first.detections == []
    assert orjson.loads(first.messages[-1]) == {"tick": T0 + 3 * MIN, "source": SOURCE}

    second = step.run(T0 + 4 * MIN + 1, store.query, first.state)  # the delayed bucket
    assert [e.bucket_ms for e in second.edges] == [T0 + 3 * MIN]
    fired = [Detection.from_wire(orjson.loads(m)) for m in second.messages[:-1]]
    assert [(d.service, d.state, d.labels["caller"]) for d in fired] == [
        ("cart", "firing", "front")]
    assert fired == second.detections
    assert step.run(T0 + 4 * MIN + 2, store.query, second.state).edges == []  # nothing new
    rows = [r["bucket"] for r in second.edge_rows]
    assert rows == [T0 + 3 * MIN]


def test_network_time_pairs_client_and_server_spans_and_alarms_from_cold(store):
    """The first minute of traces a worker ever sees: front's calls take 258 ms, cart's
    server spans 8 ms of them. The store pairs each client span with its server span;
    the 250 ms spent outside cart alarm as a network delay on cart, with no baseline."""
    records = []
    for i in range(25):
        t, start = f"n{i:03d}", T0 + i * 1000
        records += [span(t, f"a{i}", "front", start, 260.0, "server"),
                    span(t, f"b{i}", "front", start + 1, 258.0, "client", f"a{i}"),
                    span(t, f"c{i}", "cart", start + 126, 8.0, "server", f"b{i}"),
                    # a producer -> consumer hop is no call awaited: no network time
                    span(t, f"q{i}", "front", start + 2, 1.0, "producer", f"a{i}"),
                    span(t, f"r{i}", "mailer", start + 900, 4.0, "consumer", f"q{i}")]
    insert(store, records)
    step = GraphStep(GraphSettings(bucket_ms=MIN, pair_window_ms=5 * MIN, min_calls=20,
                                   network_ms=100))
    result = step.run(T0 + MIN + 1, store.query, None, passed_ms=T0)
    rows = {(e.caller, e.callee): e for e in result.edges}
    cart = rows[("front", "cart")]
    assert (cart.calls, cart.network_calls, cart.network_p50_ms) == (25, 25, 250.0)
    assert rows[("front", "mailer")].network_calls == 0
    fired = [(d.service, d.labels["series"], d.labels["caller"], d.state)
             for d in result.detections]
    assert fired == [("cart", "edge.network", "front", "firing")]
    assert result.detections[0].evidence["network_ms"] == 250.0


def test_an_old_store_gains_the_network_columns_and_keeps_its_edges(tmp_path):
    """service_edges created before network time: start-up adds the columns (0 for the
    rows stored before), and the graph step's rows go in with theirs."""
    old = EmbeddedStore(tmp_path / "old", ttl_days=0)
    try:
        for statement in schema_statements("tocsin", 0):
            if "ALTER" not in statement:
                old.query(statement.replace(
                    "    p99_ms    Float64,\n", "    p99_ms    Float64\n").replace(
                    "    network_calls  UInt64 DEFAULT 0,          -- calls paired client "
                    "span -> server span\n", "").replace(
                    "    network_p50_ms Float64 DEFAULT 0          -- their median client "
                    "less server duration\n", ""))
        columns = str(old.query("DESCRIBE TABLE tocsin.service_edges").rows)
        assert "p99_ms" in columns and "network_calls" not in columns
        before = EdgeStat("front", "cart", T0, "spans", 25, 0, 8.0, 9.0, 9.5)
        old.insert_arrow("service_edges", edges_table([before], MIN).drop_columns(
            ["network_calls", "network_p50_ms"]))
        old.ensure_schema()
        old.ensure_schema()  # idempotent
        after = EdgeStat("front", "cart", T0 + MIN, "spans", 25, 0, 258.0, 259.0, 260.0,
                         network_calls=25, network_p50_ms=250.0)
        old.insert_arrow("service_edges", edges_table([after], MIN))
        rows = old.query("SELECT toUnixTimestamp64Milli(bucket), network_calls, "
                         "network_p50_ms FROM tocsin.service_edges ORDER BY bucket").rows
        assert [tuple(r) for r in rows] == [(T0, 0, 0.0), (T0 + MIN, 25, 250.0)]
    finally:
        old.close()
