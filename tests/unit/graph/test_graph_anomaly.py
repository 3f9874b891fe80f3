"""Edge anomalies: calls tested against the edge's own latency baseline, blamed on the callee."""

from __future__ import annotations

from pipeline.graph.anomaly import EdgeModel
from pipeline.graph.pairing import EdgeStat, latency_bin

B = 60_000
T0 = 1_700_000_000_000


def stat(k: int, latencies: list[float], errors: int = 0, caller: str = "front",
         callee: str = "cart") -> EdgeStat:
    hist: dict[int, int] = {}
    for ms in latencies:
        hist[latency_bin(ms)] = hist.get(latency_bin(ms), 0) + 1
    ordered = sorted(latencies)
    q = [ordered[int(f * (len(ordered) - 1))] for f in (0.5, 0.95, 0.99)]
    return EdgeStat(caller, callee, T0 + k * B, "spans", len(latencies), errors, *q,
                    hist=tuple(sorted(hist.items())))


def usual(k: int, n: int = 30) -> EdgeStat:
    return stat(k, [5.0 + (i % 7) for i in range(n)])  # 5-11 ms


def test_a_delay_fires_on_the_callee_after_one_usual_bucket_and_resolves():
    model = EdgeModel(min_calls=20)
    assert model.score([usual(0)], B) == []
    fired = model.score([stat(1, [250.0 + i for i in range(30)])], B)
    assert [(d.state, d.service, d.labels["caller"]) for d in fired] == [
        ("firing", "cart", "front")]
    d = fired[0]
    assert d.time == T0 + 2 * B and d.window_start == T0 + B and d.score >= 0.6
    assert d.evidence["kind"] == "edge" and d.evidence["beyond"] == 30
    assert "slower than usual" in d.title
    # the delayed bucket was not learned: the delay keeps firing (no news), then ends
    assert model.score([stat(2, [250.0] * 30)], B) == []
    resolved = model.score([usual(3)], B)
    assert [(r.state, r.window_start) for r in resolved] == [("resolved", T0 + B)]


def test_a_few_slow_calls_or_a_young_edge_do_not_alarm():
    model = EdgeModel(min_calls=20)
    assert model.score([stat(0, [300.0] * 10)], B) == []  # 10 calls: no baseline yet
    model = EdgeModel(min_calls=20)
    model.score([usual(0, 40)], B)
    outliers = [6.0] * 36 + [400.0] * 4  # 10% slow: a tail, not the typical call
    assert model.score([stat(1, outliers)], B) == []


def test_faster_calls_and_failures_alarm_too():
    model = EdgeModel(min_calls=20)
    model.score([usual(0, 60)], B)
    fast = model.score([stat(1, [0.2] * 30)], B)
    assert [d.labels["series"] for d in fast] == ["edge.latency.faster"]
    assert fast[0].evidence["drop"] is True
    model = EdgeModel(min_calls=20)
    for k in range(5):
        model.score([usual(k)], B)
    failed = model.score([stat(5, [6.0] * 30, errors=12)], B)
    assert [(d.category, d.observed) for d in failed] == [("availability", 0.4)]


def test_state_round_trips():
    model = EdgeModel(min_calls=20)
    model.score([usual(0), stat(1, [250.0] * 30)], B)
    again = EdgeModel(min_calls=20)
    again.load(model.to_dict())
    assert again.to_dict() == model.to_dict()
    assert again.score([usual(2)], B)[0].state == "resolved"


def test_a_significant_but_small_shift_does_not_alarm():
    model = EdgeModel(min_calls=20)
    model.score([stat(0, [8.0 + (i % 5) * 0.2 for i in range(60)])], B)  # 8.0-8.8 ms
    slightly = stat(1, [14.0 + (i % 3) * 0.2 for i in range(30)])  # all in the tail, x1.7
    assert model.score([slightly], B) == []
    assert model.score([stat(2, [20.0] * 30)], B)[0].state == "firing"  # x2.4


def test_a_lasting_outage_keeps_firing_until_its_errors_end():
    # half the calls fail for 20 buckets: the usual error ratio is not learnt from the
    # outage, so the alarm holds to its end instead of clearing mid-way
    model = EdgeModel(min_calls=20)
    for k in range(10):
        model.score([usual(k)], B)
    states = []
    for k in range(10, 30):
        states += [d.state for d in model.score([stat(k, [8.0] * 40, errors=20)], B)
                   if d.labels["series"] == "edge.errors"]
    assert states == ["firing"]
    ended = model.score([stat(30, [8.0] * 40)], B)
    assert [d.state for d in ended if d.labels["series"] == "edge.errors"] == ["resolved"]
    assert model.errors["front\tcart"][0] < 0.01  # the outage never became usual


def test_a_firing_edge_is_re_sent_every_keepalive_until_it_ends():
    # a slowdown and an outage holding for 12 buckets: each re-sent every 5 minutes of
    # event time while it holds (the correlator's sign it is current), with its onset kept
    model = EdgeModel(min_calls=20, keepalive_ms=5 * B)
    for k in range(5):
        model.score([usual(k)], B)
    sent: list[tuple[str, str, int, bool]] = []
    for k in range(5, 17):
        sent += [(d.labels["series"], d.state, (d.time - T0) // B,
                  bool(d.evidence.get("keepalive")))
                 for d in model.score([stat(k, [250.0] * 30, errors=15)], B)]
        if k == 10:  # a restored worker goes on with the same cadence
            restored = EdgeModel(min_calls=20, keepalive_ms=5 * B)
            restored.load(model.to_dict())
            model = restored
    for series in ("edge.latency.slower", "edge.errors"):
        assert [(s, t, k) for x, s, t, k in sent if x == series] == [
            ("firing", 6, False), ("firing", 11, True), ("firing", 16, True)]
    again = [d for d in model.score([stat(17, [250.0] * 30, errors=15)], B)]
    assert again == []
    keepalive = [d for d in model.score([stat(20, [250.0] * 30, errors=15)], B)]
    assert {d.window_start for d in keepalive} == {T0 + 5 * B}  # the onset, not the bucket
    assert len({d.id for d in keepalive}) == 2
    ended = model.score([usual(21)], B)
    assert sorted(d.state for d in ended) == ["resolved", "resolved"]
    assert EdgeModel(min_calls=20).keepalive_ms == 0  # off unless asked for


def _slow_then_silent(model: EdgeModel, chunks: list[list[int]]) -> list:
    """Usual calls for 5 buckets, then 30 slow calls at bucket 5; the edge then has no
    call until bucket 20 (usual again); ``chunks`` says which buckets are scored together."""
    for k in range(5):
        model.score([usual(k)], B)
    buckets = {5: stat(5, [250.0] * 30), 20: usual(20), 21: usual(21)}
    out = []
    for chunk in chunks:
        out += model.score([buckets[k] for k in chunk], B)
    return out


def test_a_firing_edge_ends_once_its_calls_stop_for_stale_ms():
    model = EdgeModel(min_calls=20, stale_ms=5 * B)
    fired = _slow_then_silent(model, [[5]])
    assert [d.state for d in fired] == ["firing"]
    assert model.silent(T0 + 10 * B) == []  # 4 buckets of silence after the bucket's end
    restored = EdgeModel(min_calls=20, stale_ms=5 * B)
    restored.load(model.to_dict())  # a restarted worker knows when the edge was last seen
    ended = restored.silent(T0 + 12 * B)
    assert [(d.state, d.window_start, d.time, d.service) for d in ended] == [
        ("resolved", T0 + 5 * B, T0 + 11 * B, "cart")]
    assert ended[0].evidence["silent"] and "no call for 300 s" in ended[0].title
    assert restored.silent(T0 + 30 * B) == [] and not restored.firing


def test_silence_ends_an_edge_alarm_however_the_buckets_are_grouped():
    one = _slow_then_silent(EdgeModel(min_calls=20, stale_ms=5 * B), [[5, 20, 21]])
    apart = _slow_then_silent(EdgeModel(min_calls=20, stale_ms=5 * B), [[5], [20], [21]])
    assert [d.to_wire() for d in one] == [d.to_wire() for d in apart]
    assert [(d.state, d.time) for d in one] == [("firing", T0 + 6 * B),
                                                ("resolved", T0 + 11 * B)]
    # without stale_ms the alarm holds through the silence, until usual calls end it
    held = _slow_then_silent(EdgeModel(min_calls=20), [[5, 20, 21]])
    assert [(d.state, d.time) for d in held] == [("firing", T0 + 6 * B),
                                                 ("resolved", T0 + 21 * B)]
    assert not any(d.evidence.get("silent") for d in held)
    assert held[1].id == one[1].id  # the same alarm's end, whichever way it ended


def wire(k: int, network_ms: float, calls: int = 30, caller: str = "front") -> EdgeStat:
    """A bucket of usual 8 ms client calls plus ``network_ms`` outside the callee."""
    base = stat(k, [8.0 + network_ms] * calls, caller=caller)
    return EdgeStat(base.caller, base.callee, base.bucket_ms, "spans", base.calls, 0,
                    base.p50_ms, base.p95_ms, base.p99_ms, hist=base.hist,
                    network_calls=calls, network_p50_ms=network_ms)


def test_network_time_alarms_on_the_callee_from_a_cold_start():
    # no baseline at all: the first bucket of traces already shows calls spending 240 ms
    # outside the callee (a network delay), which in-cluster calls never do
    model = EdgeModel(min_calls=20, network_ms=100.0, keepalive_ms=5 * B)
    fired = model.score([wire(0, 240.0)], B)
    assert [(d.labels["series"], d.state, d.service, d.labels["caller"]) for d in fired] == [
        ("edge.network", "firing", "cart", "front")]
    d = fired[0]
    assert d.window_start == T0 and d.time == T0 + B and d.observed == 240.0
    assert d.evidence["network_calls"] == 30 and d.score == 1.0
    assert "240 ms outside cart" in d.title
    # still delayed (above 70 % of the limit): no news until the keep-alive is due
    assert model.score([wire(k, 80.0) for k in (1, 2, 3, 4)], B) == []
    again = model.score([wire(5, 90.0)], B)
    assert [(x.state, x.time, bool(x.evidence.get("keepalive"))) for x in again] == [
        ("firing", T0 + 6 * B, True)]
    ended = model.score([wire(6, 3.0)], B)
    assert [(x.labels["series"], x.state, x.window_start) for x in ended] == [
        ("edge.network", "resolved", T0)]


def test_network_time_needs_enough_paired_calls_and_can_be_off():
    model = EdgeModel(min_calls=20, network_ms=100.0)
    assert model.score([wire(0, 240.0, calls=5)], B) == []  # too few to tell
    assert model.score([wire(1, 60.0)], B) == []  # under the limit
    assert EdgeModel(min_calls=20, network_ms=0).score([wire(0, 240.0)], B) == []
    # a callee slow in its own handling takes the time in its server spans: no network time
    slow = EdgeModel(min_calls=20, network_ms=100.0)
    assert slow.score([wire(0, 2.0, calls=30)], B) == []


def test_a_silent_edge_ends_its_network_alarm():
    model = EdgeModel(min_calls=20, network_ms=100.0, stale_ms=5 * B)
    assert len(model.score([wire(0, 240.0)], B)) == 1
    ended = model.silent(T0 + 6 * B)
    assert [(d.labels["series"], d.state, d.time) for d in ended] == [
        ("edge.network", "resolved", T0 + 6 * B)]
