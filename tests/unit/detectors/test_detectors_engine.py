"""Stream semantics: late and out-of-order data, batching, state round-trips, reload,
absence, keep-alives, selectors and group labels."""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pytest
import yaml

from detectors import RuleEngine, RuleStateError, ServiceState, parse_rules
from pipeline.events.detection import Detection
from pipeline.events.labels import Labels, labels_of
from pipeline.events.packing import unpack

T0 = 1_699_999_200_000
S, M = 1_000, 60_000

HOT = {"name": "hot", "signal": "metrics", "select": {"metric": "cpu"},
       "group_by": ["service", "host"], "window": {"type": "hopping", "size": "2m",
                                                   "step": "1m"},
       "aggregation": "mean", "condition": "> 80", "clear": "< 70", "for": "1m",
       "severity": "high", "category": "resource", "title": "{host}: {value:.1f}"}
SLIDE = dict(HOT, name="slide", window={"type": "sliding", "size": "1m"}, condition="> 85",
             **{"for": "30s"})
GONE = {"name": "gone", "kind": "absence", "signal": "metrics",
        "select": {"metric": "heartbeat"}, "group_by": ["service", "host"], "for": "1m",
        "severity": "high", "category": "availability", "title": "{host} silent {value}s"}


def make(*rules: dict, lateness: int = 30 * S, keepalive: int = 0) -> RuleEngine:
    return RuleEngine(parse_rules(yaml.safe_dump({"rules": list(rules)})),
                      allowed_lateness_ms=lateness, keepalive_ms=keepalive)


def cols(rows: list[tuple[int, str, str, float]], service: str = "svc") -> dict:
    """Metric columns from (time offset ms, host, metric name, value)."""
    return {"time": np.array([T0 + r[0] for r in rows], np.int64),
            "value": np.array([r[3] for r in rows], np.float64),
            "service": [service] * len(rows), "host": [r[1] for r in rows],
            "name": [r[2] for r in rows], "attributes": [{}] * len(rows)}


def cpu_stream(minutes: int = 20, seed: int = 3) -> list[tuple[int, str, str, float]]:
    """Two hosts, every 10 s: h1 gets hot for minutes 5-12, h2 hovers; heartbeats too,
    h2's heartbeat stops at minute 8."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(0, minutes * M, 10 * S):
        hot = 5 * M <= t < 12 * M
        rows.append((t, "h1", "cpu", (92 if hot else 40) + rng.normal(0, 2)))
        rows.append((t, "h2", "cpu", 75 + rng.normal(0, 3)))
        rows.append((t, "h1", "heartbeat", 1.0))
        if t < 8 * M:
            rows.append((t, "h2", "heartbeat", 1.0))
    return rows


def replay(engine: RuleEngine, batches: list[list], end: int | None = None,
           state: ServiceState | None = None) -> tuple[list[Detection], ServiceState, int]:
    state = state or engine.new_state()
    found: list[Detection] = []
    late = 0
    for rows in batches:
        state, out, stats = engine.process("metrics", cols(rows), state)
        found += out
        late += stats.late
    if end is not None:
        state, out = engine.advance(state, T0 + end)
        found += out
    return found, state, late


def brief(found: list[Detection]) -> list[tuple]:
    return [(d.detector, d.host, d.state, d.time - T0, round(d.observed, 6), d.id)
            for d in found]


def test_results_do_not_depend_on_batching() -> None:
    rows = cpu_stream()
    engine = make(HOT, GONE, SLIDE)
    whole, _, _ = replay(engine, [rows], end=20 * M)
    assert {(d.detector, d.host, d.state) for d in whole} == {
        ("hot", "h1", "firing"), ("hot", "h1", "resolved"), ("gone", "h2", "firing"),
        ("slide", "h1", "firing"), ("slide", "h1", "resolved")}
    for size in (1, 7, 100, 999):
        parts = [rows[i:i + size] for i in range(0, len(rows), size)]
        found, _, _ = replay(make(HOT, GONE, SLIDE), parts, end=20 * M)
        assert brief(found) == brief(whole), size


def test_text_columns_factorised_by_arrow_give_the_same_results() -> None:
    rows = cpu_stream()
    batches = [rows[i:i + 37] for i in range(0, len(rows), 37)]
    p95 = dict(HOT, name="hot95", aggregation="p95", condition="> 85", clear="< 75")
    straight, state, _ = replay(make(HOT, GONE, p95, SLIDE), batches, end=20 * M)
    engine = make(HOT, GONE, p95, SLIDE)
    factorised = engine.new_state()
    found: list[Detection] = []
    for batch in batches:
        columns = cols(batch)
        for name in ("service", "host", "name"):
            columns[name] = labels_of(pa.array(columns[name]))
            assert isinstance(columns[name], Labels)  # the factorisation is used
        factorised, out, _ = engine.process("metrics", columns, factorised)
        found += out
    factorised, out = engine.advance(factorised, T0 + 20 * M)
    assert brief(found + out) == brief(straight)
    assert {d.detector for d in straight} == {"hot", "gone", "hot95", "slide"}
    assert factorised.to_bytes() == state.to_bytes()


def test_out_of_order_within_lateness_counts_in_its_window() -> None:
    rows = cpu_stream()
    rng = np.random.default_rng(5)
    shuffled = []
    for i in range(0, len(rows), 8):  # shuffle within ~20 s: inside the 30 s lateness
        chunk = rows[i:i + 8]
        shuffled += [chunk[j] for j in rng.permutation(len(chunk))]
    ordered, _, late0 = replay(make(HOT, GONE, SLIDE), [rows], end=20 * M)
    mixed, _, late1 = replay(make(HOT, GONE, SLIDE), [shuffled[i:i + 5] for i in
                                                       range(0, len(shuffled), 5)], end=20 * M)
    assert late0 == late1 == 0
    assert brief(mixed) == brief(ordered)


def test_too_late_records_are_counted_not_used() -> None:
    engine = make(HOT, lateness=30 * S)
    state = engine.new_state()
    state, _, stats = engine.process("metrics", cols([(5 * M, "h1", "cpu", 50.0)]), state)
    assert (stats.late, stats.watermark) == (0, T0 + 5 * M - 30 * S)
    batch = cols([(4 * M, "h1", "cpu", 300.0), (4 * M, "h1", "other", 1.0),
                  (6 * M, "h1", "cpu", 10.0), (5 * M + 29 * S, "h1", "cpu", 300.0),
                  (5 * M + 31 * S, "h1", "cpu", 60.0)])
    state, _, stats = engine.process("metrics", batch, state)
    # the watermark moves record by record: after 6m, 5m29s is late, 5m31s is not
    assert (stats.records, stats.late, stats.late_by_rule) == (5, 3, {"hot": 2})
    assert stats.watermark == T0 + 6 * M - 30 * S
    state, found = engine.advance(state, T0 + 10 * M)
    assert found == []  # counted, the 300s would have fired at 6m


def test_state_round_trip_mid_stream_gives_identical_results() -> None:
    rows = cpu_stream()
    batches = [rows[i:i + 37] for i in range(0, len(rows), 37)]
    p95 = dict(HOT, name="hot95", aggregation="p95", condition="> 85", clear="< 75")
    straight, _, _ = replay(make(HOT, GONE, p95, SLIDE), batches, end=20 * M)
    assert {d.detector for d in straight} == {"hot", "gone", "hot95", "slide"}
    engine = make(HOT, GONE, p95, SLIDE)
    state = engine.new_state()
    found: list[Detection] = []
    for batch in batches:
        state, out, _ = engine.process("metrics", cols(batch), state)
        found += out
        blob = state.to_bytes()
        state = ServiceState.from_bytes(blob)
        assert state.to_bytes() == blob
    state, out = engine.advance(engine.state_from_bytes(state.to_bytes()), T0 + 20 * M)
    assert brief(found + out) == brief(straight)


def test_state_is_small_and_validated() -> None:
    engine = make(HOT)
    rows = [(t, f"h{i}", "cpu", 50.0) for t in range(0, 10 * M, 10 * S) for i in range(50)]
    state, _, _ = engine.process("metrics", cols(rows), engine.new_state())
    assert state.series_count() == 50
    assert len(state.to_bytes()) / 50 < 300
    with pytest.raises(RuleStateError):
        ServiceState.from_bytes(b"pickle me")
    with pytest.raises(RuleStateError):
        ServiceState.from_bytes(state.to_bytes()[:40])


def test_a_state_says_what_it_takes_decoded() -> None:
    """``held_bytes`` (what the live states budget) grows with the series."""
    engine = make(HOT)
    sizes = []
    for hosts in (5, 50):
        rows = [(t, f"h{i}", "cpu", 50.0) for t in range(0, 10 * M, 10 * S)
                for i in range(hosts)]
        state, _, _ = engine.process("metrics", cols(rows), engine.new_state())
        sizes.append(state.held_bytes())
    assert sizes[1] - sizes[0] >= 45 * 200  # a label tuple each, at least


def test_a_state_written_zlib_compressed_before_zstd_still_reads() -> None:
    engine = make(HOT, GONE)
    rows = [(t, f"h{i}", "cpu", 50.0 + i) for t in range(0, 10 * M, 10 * S) for i in range(9)]
    state, _, _ = engine.process("metrics", cols(rows), engine.new_state())
    blob = state.to_bytes()
    assert blob[4:5] == b"s"  # zstd now
    old = blob[:4] + b"z" + zlib.compress(unpack(blob[5:]), 1)
    assert ServiceState.from_bytes(old).to_bytes() == blob
    with pytest.raises(RuleStateError):  # damaged zstd body
        ServiceState.from_bytes(blob[:-4])


def test_reload_keeps_unchanged_rules_and_drops_changed_or_removed() -> None:
    rows = cpu_stream()
    first, rest = [r for r in rows if r[0] < 9 * M], [r for r in rows if r[0] >= 9 * M]
    engine = make(HOT, GONE)
    found, state, _ = replay(engine, [first])
    assert [(d.detector, d.state) for d in found] == [("hot", "firing")]
    retitled = dict(HOT, title="now: {value:.0f}", severity="critical")
    engine.reload(parse_rules(yaml.safe_dump({"rules": [retitled]})))  # GONE removed
    found, state, _ = replay(engine, [rest], end=20 * M, state=state)
    assert [(d.detector, d.state, d.severity) for d in found] == [
        ("hot", "resolved", "critical")]  # no second "firing": its state was kept
    assert set(state.rules) == {"hot"}
    # a changed condition is a new detector: its old windows and firing state are dropped
    engine = make(HOT, GONE)
    _, state, _ = replay(engine, [first])
    engine.reload(parse_rules(yaml.safe_dump({"rules": [dict(HOT, condition="> 85")]})))
    found, state, _ = replay(engine, [rest], end=20 * M, state=state)
    assert [(d.detector, d.host, d.state) for d in found] == [
        ("hot", "h1", "firing"), ("hot", "h1", "resolved")]


def test_absence_fires_only_for_series_seen_before() -> None:
    engine = make(GONE, lateness=0)
    beats = [(t, "h1", "heartbeat", 1.0) for t in range(0, 3 * M, 10 * S)]
    found, state, _ = replay(engine, [beats, [(3 * M, "h2", "cpu", 1.0)]])
    assert found == []
    state, found = engine.advance(state, T0 + 3 * M + 50 * S)  # silent 60 s: not yet > 1m
    assert found == []
    state, found = engine.advance(state, T0 + 4 * M + 10 * S)
    assert [(d.host, d.state, d.time - T0, d.observed) for d in found] == [
        ("h1", "firing", 3 * M + 50 * S, 60.0)]
    state, found = engine.advance(state, T0 + 9 * M)  # still silent: no repeat
    assert found == []
    state, found, _ = engine.process("metrics", cols([(10 * M, "h1", "heartbeat", 1.0)]),
                                     state)
    assert [(d.state, d.time - T0, d.window_start - T0) for d in found] == [
        ("resolved", 10 * M, 2 * M + 50 * S)]


def test_absence_gap_inside_one_batch_is_decided_by_the_watermark() -> None:
    engine = make(GONE, lateness=0)
    rows = [(t, "h1", "heartbeat", 1.0) for t in range(0, 2 * M, 10 * S)]
    rows += [(t, "h1", "cpu", 5.0) for t in range(2 * M, 5 * M, 10 * S)]  # h1 alive, no beat
    rows += [(5 * M, "h1", "heartbeat", 1.0)]
    found, _, _ = replay(engine, [rows])
    assert [(d.state, d.time - T0) for d in found] == [
        ("firing", M + 50 * S + M), ("resolved", 5 * M)]
    late_beat = [(t, "h1", "heartbeat", 1.0) for t in range(0, 2 * M, 10 * S)]
    late_beat += [(3 * M, "h1", "heartbeat", 1.0)]  # gap of 70 s, but no later records
    found, _, _ = replay(make(GONE, lateness=60 * S), [late_beat])
    assert found == []  # the watermark never passed 1m50s + 1m before the beat came


def test_a_silence_is_kept_alive_whether_the_watermark_steps_or_jumps() -> None:
    # h1's heartbeat stops after minute 2 and comes back at minute 15 (fired at 3m, from
    # the last beat at 2m): every 5 minutes of the silence the alarm is re-sent, also when
    # the beat ending it comes in the same batch that moves event time past them (a fast
    # replay), else the correlator sees a silent database's alarm as unconfirmed
    beats = [(t, "h1", "heartbeat", 1.0) for t in range(0, 2 * M + 1, 10 * S)]
    busy = [(t, "h1", "cpu", 5.0) for t in range(2 * M + 10 * S, 15 * M, 10 * S)]
    back = [(15 * M, "h1", "heartbeat", 1.0)]

    def brief_gone(found: list[Detection]) -> list[tuple[str, int, bool]]:
        return [(d.state, (d.time - T0) // S, bool(d.evidence.get("keepalive")))
                for d in found if d.detector == "gone"]

    expected = [("firing", 180, False), ("firing", 480, True), ("firing", 780, True),
                ("resolved", 900, False)]
    stepped: list[Detection] = []
    engine = make(GONE, lateness=0, keepalive=5 * M)
    state, found, _ = engine.process("metrics", cols(beats), engine.new_state())
    stepped += found
    for t in range(2 * M + 10 * S, 15 * M, 10 * S):
        state, found, _ = engine.process("metrics", cols([(t, "h1", "cpu", 5.0)]), state)
        stepped += found
        state, found = engine.advance(state, T0 + t)
        stepped += found
    state, found, _ = engine.process("metrics", cols(back), state)
    assert brief_gone(stepped + found) == expected
    # the whole silence and its end in one batch, and in one batch after a tick that
    # jumped past the firing and one keep-alive
    jumped, _, _ = replay(make(GONE, lateness=0, keepalive=5 * M), [beats + busy + back])
    assert brief_gone(jumped) == expected
    engine = make(GONE, lateness=0, keepalive=5 * M)
    state, first, _ = engine.process("metrics", cols(beats), engine.new_state())
    state, ticked = engine.advance(state, T0 + 9 * M)
    state, rest, _ = engine.process("metrics", cols(busy + back), state)
    assert brief_gone(first + ticked + rest) == expected
    assert [d.time for d in ticked] == sorted(d.time for d in ticked)


def test_keepalive_repeats_a_firing_detection() -> None:
    engine = make(dict(HOT, **{"for": "0s"}), keepalive=5 * M)
    rows = [(t, "h1", "cpu", 95.0) for t in range(0, 16 * M, 10 * S)]
    found, _, _ = replay(engine, [rows], end=16 * M)
    firing = [(d.time - T0) // M for d in found if d.state == "firing"]
    assert firing == [1, 6, 11, 16]  # the first hopping window ends a minute in
    assert [d.evidence.get("keepalive", False) for d in found] == [False, True, True, True]
    assert len({d.id for d in found}) == 4


def test_a_series_gone_quiet_is_not_kept_alive() -> None:
    """h1 runs hot, then reports nothing while h2 goes on (its data moves event time).
    The first window that holds none of h1's data is evaluated (as no data); when a
    keep-alive falls due there it must not claim the alarm still holds (it went out with
    no sample and a value of nan). Data coming back re-confirms it."""
    engine = make(dict(HOT, **{"for": "0s"}), lateness=0, keepalive=5 * M)
    rows = [(t, "h2", "cpu", 40.0) for t in range(0, 20 * M, 10 * S)]
    rows += [(t, "h1", "cpu", 95.0) for t in range(0, 20 * M, 10 * S)
             if not 4 * M <= t < 14 * M]
    rows.sort()
    found, _, _ = replay(engine, [rows], end=20 * M)
    h1 = [((d.time - T0) // M, d.state, d.evidence.get("samples")) for d in found
          if d.host == "h1"]
    assert h1[0] == (1, "firing", 6)
    assert all(samples for _, _, samples in h1)  # no detection of an empty window
    assert not [m for m, _, _ in h1 if 2 <= m < 15]  # nothing while h1 is quiet
    assert [m for m, _, _ in h1 if m >= 15]  # confirmed again once data is back


def test_a_keepalive_says_whether_the_windows_last_step_is_back_to_clear() -> None:
    # a 10-minute mean window, hot for 15 minutes then cool: for minutes after the
    # trouble ended the window still holds it and the alarm keeps firing; its keep-alives
    # then carry the last step's value alone and say calm (the correlator's cue that the
    # trouble is over); while hot they say not calm
    long = dict(HOT, name="long", window={"type": "hopping", "size": "10m", "step": "1m"},
                **{"for": "0s"})
    engine = make(long, lateness=0, keepalive=2 * M)
    rows = [(t, "h1", "cpu", 95.0 if t < 15 * M else 40.0) for t in range(0, 25 * M, 10 * S)]
    found, _, _ = replay(engine, [rows], end=25 * M)
    alive = [((d.time - T0) // M, d.evidence.get("latest_step"), d.evidence.get("calm"))
             for d in found if d.evidence.get("keepalive")]
    assert [a for a in alive if a[0] <= 15] == [(m, 95.0, False) for m in (3, 5, 7, 9, 11, 13, 15)]
    later = [a for a in alive if a[0] > 15]
    assert later and all(v == 40.0 and calm for _, v, calm in later)
    resolved = [d for d in found if d.state == "resolved"]
    assert resolved and (resolved[0].time - T0) // M > later[-1][0]  # the window cleared later
    # a count over the window says nothing about its last step alone
    count = dict(long, name="count", aggregation="count", condition="> 10", clear="< 5")
    found, _, _ = replay(make(count, lateness=0, keepalive=2 * M), [rows], end=25 * M)
    assert all("calm" not in d.evidence for d in found)


def test_selectors_and_attribute_labels() -> None:
    rule = {"name": "sel", "signal": "metrics",
            "select": {"metric": "=~ http\\.server\\.duration\\.p9[59]", "host": "!= canary",
                       "service": ["api", "web"], "attributes": {"region": "=~ eu-.*"}},
            "group_by": ["service", "name", "attributes.region"],
            "window": {"type": "tumbling", "size": "1m"}, "aggregation": "max",
            "condition": "> 100", "severity": "low", "category": "performance",
            "title": "{entity} in {region}: {value:.0f}"}
    engine = make(rule, lateness=0)
    names = ["http.server.duration.p95", "http.server.duration.p99",
             "http.server.duration.p50", "http.server.duration.p95", "http.server.duration.p95"]
    hosts = ["a", "a", "a", "canary", "a"]
    regions = [{"region": "eu-west"}, {"region": "eu-north"}, {"region": "eu-west"},
               {"region": "eu-west"}, {"region": "us-east"}]
    batch = {"time": np.full(5, T0, np.int64), "value": np.full(5, 500.0),
             "service": ["api"] * 5, "host": hosts, "name": names}
    for attributes in (regions, pa.array([list(r.items()) for r in regions],
                                         pa.map_(pa.string(), pa.string()))):
        state, found, _ = engine.process("metrics", {**batch, "attributes": attributes},
                                         engine.new_state())
        state, found = engine.advance(state, T0 + M)
        assert sorted(d.title for d in found) == [
            "http.server.duration.p95 in eu-west: 500", "http.server.duration.p99 in eu-north: 500"]
        assert {d.labels["region"] for d in found} == {"eu-west", "eu-north"}
        assert all(d.entity == d.labels["name"] for d in found)
    web = engine.process("metrics", {**batch, "service": ["db"] * 5, "attributes": regions},
                         engine.new_state())
    assert web[0].series_count() == 0


def test_empty_batches_and_bad_signal() -> None:
    engine = make(HOT)
    state, found, stats = engine.process("metrics", cols([]), engine.new_state())
    assert (found, stats.records, stats.late) == ([], 0, 0)
    with pytest.raises(ValueError, match="signal"):
        engine.process("events", cols([]), state)
    with pytest.raises(ValueError, match="lateness"):
        RuleEngine(engine.ruleset, allowed_lateness_ms=-1)


def _pre_existing_stream() -> list[tuple[int, str, str, float]]:
    """h1 hot from the start until minute 6, cool, hot again from minute 10; h2 hovers
    until it gets hot at minute 4; h3 appears at minute 5 already hot."""
    rows = []
    for t in range(0, 16 * M, 10 * S):
        rows.append((t, "h1", "cpu", 92.0 if t < 6 * M or t >= 10 * M else 40.0))
        rows.append((t, "h2", "cpu", 92.0 if t >= 4 * M else 40.0))
        if t >= 5 * M:
            rows.append((t, "h3", "cpu", 95.0))
    return rows


def test_a_condition_held_since_the_first_evaluation_is_flagged_pre_existing() -> None:
    rows = _pre_existing_stream()
    whole, _, _ = replay(make(HOT, keepalive=2 * M), [rows], end=16 * M)
    flags = {(d.host, d.state, d.time - T0, bool(d.evidence.get("pre_existing")))
             for d in whole}
    h1 = sorted(x for x in flags if x[0] == "h1")
    # the first episode, with its keep-alive and its resolve, is pre-existing; the
    # condition coming back after it cleared is a change the detector saw
    assert [x[3] for x in h1 if x[2] < 8 * M] == [True] * len([x for x in h1 if x[2] < 8 * M])
    assert any(x[1] == "firing" and x[2] < 6 * M for x in h1)
    assert any(x[1] == "resolved" for x in h1)
    again = [x for x in h1 if x[1] == "firing" and x[2] >= 10 * M]
    assert again and not any(x[3] for x in again)
    # a series that went wrong after it was first evaluated, or that appeared once the
    # rule was evaluating, is no pre-existing condition
    assert {x[3] for x in flags if x[0] in ("h2", "h3")} == {False}
    assert {x[0] for x in flags if x[1] == "firing"} == {"h1", "h2", "h3"}
    # the same flags whatever the batching, with the state written and read between
    state = None
    found: list[Detection] = []
    engine = make(HOT, keepalive=2 * M)
    for i in range(0, len(rows), 23):
        state, out, _ = engine.process("metrics", cols(rows[i:i + 23]),
                                       state or engine.new_state())
        found += out
        state = ServiceState.from_bytes(state.to_bytes())
    state, out = engine.advance(state, T0 + 16 * M)
    assert [(x, bool(d.evidence.get("pre_existing"))) for x, d in
            zip(brief(found + out), found + out, strict=True)] == \
        [(x, bool(d.evidence.get("pre_existing"))) for x, d in
         zip(brief(whole), whole, strict=True)]


def test_a_rule_first_matched_in_a_running_service_flags_nothing_pre_existing() -> None:
    # the service is watched from minute 0 (memory), the rule's metric appears only at
    # minute 5, hot at once: like a count of OOM log lines, whose series begins with the
    # first OOM. It is a change in a running system, not a condition present from the start
    rows = [(t, "h1", "mem", 50.0) for t in range(0, 12 * M, 10 * S)]
    rows += [(t, "h1", "cpu", 95.0) for t in range(5 * M, 12 * M, 10 * S)]
    rows.sort()
    for size in (len(rows), 7):  # one batch, or the state written and read between
        state = None
        found: list[Detection] = []
        engine = make(HOT)
        for i in range(0, len(rows), size):
            state, out, _ = engine.process("metrics", cols(rows[i:i + size]),
                                           state or engine.new_state())
            found += out
            state = ServiceState.from_bytes(state.to_bytes())
        assert any(d.state == "firing" for d in found)
        assert not any(d.evidence.get("pre_existing") for d in found)
    # the same series watched from the start is pre-existing
    early = [(t, "h1", "cpu", 95.0) for t in range(0, 12 * M, 10 * S)]
    found, _, _ = replay(make(HOT), [early], end=12 * M)
    assert any(d.state == "firing" and d.evidence.get("pre_existing") for d in found)


def test_a_state_written_before_pre_existing_was_tracked_flags_nothing() -> None:
    engine = make(HOT)
    rows = _pre_existing_stream()
    state, _, _ = engine.process("metrics", cols(rows[:3]), engine.new_state())
    for rs in state.rules.values():  # as an older version wrote it
        del rs.series["born"], rs.series["pre"]
    state = ServiceState.from_bytes(state.to_bytes())
    found, _, _ = replay(engine, [rows[3:]], end=16 * M, state=state)
    assert any(d.host == "h1" and d.state == "firing" for d in found)
    assert not any(d.evidence.get("pre_existing") for d in found)
