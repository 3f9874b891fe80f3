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
