"""Keep-alives of firing model alarms: spacing, stable ids, resolution, state round trips.

The series bank is driven with synthetic points (fast, exact); the engine with a
simulated database outage, whose alarms come from the metric series, the trace RED
series and error counts, and the log templates.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np
import orjson
import pytest

from models import (
    ModelEngine,
    ModelError,
    RobustSeasonal,
    SeriesBank,
    ServiceModelState,
    ServiceVectorHST,
)
from pipeline.detect.engines import build_engines
from pipeline.detect.replay import replay
from pipeline.events.detection import Detection, detection_id
from pipeline.events.packing import unpack
from pipeline.settings import SettingsError, load_settings
from pipeline.simulate import load_system, parse_schedule, simulate

T0 = 1_718_000_000_000
S, MIN = 1_000, 60_000
STEP = 10 * S
KA = 5 * MIN


# -- the series bank ------------------------------------------------------------------


def incident(n: int = 700, seed: int = 7) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Three series every 10 s: "long" shifts up for ~50 min, "short" for 100 s, "calm"
    never; points interleaved."""
    rng = np.random.default_rng(seed)
    keys = ["long", "short", "calm"] * n
    times = T0 + np.repeat(np.arange(n), 3) * STEP
    values = 100 + 2 * rng.standard_normal(3 * n)
    step = np.repeat(np.arange(n), 3)
    values[0::3][(step[0::3] >= 200) & (step[0::3] < 500)] += 500.0
    values[1::3][(step[1::3] >= 300) & (step[1::3] < 310)] += 500.0
    return keys, times.astype(np.int64), values


def steady() -> RobustSeasonal:
    """A detector that never re-anchors to a shifted level: one episode per shift."""
    return RobustSeasonal(warmup=20, rest_points=0, shift_after=1_000_000)


def bank_run(keys: Sequence[str], times: np.ndarray, values: np.ndarray, keepalive_ms: int,
             cuts: Sequence[int] = (), bank: SeriesBank | None = None, shuffle: int = 0
             ) -> tuple[list[tuple[str, int, str]], SeriesBank]:
    """(key, time, kind) of every event, the input fed in batches cut at ``cuts``
    (records shuffled inside each batch with seed ``shuffle`` when not 0)."""
    bank = bank or SeriesBank(steady())
    rng = np.random.default_rng(shuffle)
    out = []
    for part in np.split(np.arange(len(keys)), list(cuts)):
        if shuffle:
            part = rng.permutation(part)
        res = bank.process(bank.slots([keys[i] for i in part]), times[part], values[part],
                           0.5, 0.3, confirm_points=3, accept_points=10_000,
                           keepalive_ms=keepalive_ms)
        out += [(keys[part[i]], res.ticks.get(i, int(times[part[i]])), kind)
                for i, kind in res.events]
    return out, bank


def of(events: list[tuple[str, int, str]], key: str) -> list[tuple[int, str]]:
    return [(t, kind) for k, t, kind in events if k == key]


def test_bank_sends_a_keepalive_every_keepalive_ms_until_the_series_resolves():
    keys, times, values = incident()
    events, _ = bank_run(keys, times, values, KA)
    long = of(events, "long")
    (fired, first), *alive, (resolved, last) = long
    assert (first, last) == ("firing", "resolved")
    assert fired == T0 + 202 * STEP and resolved == T0 + 502 * STEP
    # the tenth tick falls on the point that resolves the series: no keep-alive there
    assert alive == [(fired + k * KA, "keepalive") for k in range(1, 10)]
    assert resolved == fired + 10 * KA
    assert [kind for _, kind in of(events, "short")] == ["firing", "resolved"]
    assert of(events, "calm") == []
    off, _ = bank_run(keys, times, values, 0)
    assert off == [e for e in events if e[2] != "keepalive"]


def test_bank_keepalives_carry_the_band_and_peak_of_their_episode():
    keys, times, values = incident()
    bank = SeriesBank(steady())
    res = bank.process(bank.slots(keys), times, values, 0.5, 0.3, confirm_points=3,
                       accept_points=10_000, keepalive_ms=KA)
    fire = next(i for i, kind in res.events if kind == "firing" and keys[i] == "long")
    alive = [i for i, kind in res.events if kind == "keepalive"]
    assert len(alive) == 9
    assert {res.bands[i] for i in alive} == {res.bands[fire]}
    assert all(res.peaks[i] >= res.peaks[fire] for i in alive)
    # the episode began at its first point out of band, two points before it confirmed
    assert {res.since[i] for i in alive} == {res.since[fire]} == {int(times[fire - 6])}
    assert all(res.ticks[i] <= times[i] < res.ticks[i] + STEP for i in alive)


def test_bank_keepalives_do_not_depend_on_batching():
    keys, times, values = incident()
    whole, _ = bank_run(keys, times, values, KA)
    cuts = [5, 600, 601, 907, 1500, 1502]
    batched, _ = bank_run(keys, times, values, KA, cuts=cuts, shuffle=11)
    assert sorted(batched) == sorted(whole)


def test_bank_sends_only_the_latest_tick_after_a_gap():
    keys, times, values = incident()
    gap = (times >= T0 + 260 * STEP) & (times < T0 + 362 * STEP)  # 17 min without points
    keep = ~gap
    events, _ = bank_run([k for k, g in zip(keys, keep, strict=True) if g], times[keep],
                         values[keep], KA)
    fired = T0 + 202 * STEP
    alive = [t for t, kind in of(events, "long") if kind == "keepalive"]
    assert alive[:2] == [fired + KA, fired + 5 * KA]  # ticks 2 to 4 passed in the gap
    assert np.all(np.diff(alive[1:]) == KA)


def without_sent(data: bytes) -> bytes:
    """Series bank bytes as saved before keep-alives (no ``sent`` in the header)."""
    head_len, fields = struct.unpack("<II", data[4:12])
    head = orjson.loads(data[12:12 + head_len])
    del head["sent"]
    new = orjson.dumps(head)
    return data[:4] + struct.pack("<II", len(new), fields) + new + data[12 + head_len:]


@pytest.mark.parametrize("legacy", [False, True])
def test_bank_round_trip_mid_incident_gives_the_same_keepalives(legacy):
    keys, times, values = incident()
    whole, _ = bank_run(keys, times, values, KA)
    cut = 3 * 271  # after the second keep-alive (step 262), before the third (292)
    first, bank = bank_run(keys[:cut], times[:cut], values[:cut], KA)
    assert [kind for _, kind in of(first, "long")] == ["firing", "keepalive", "keepalive"]
    data = bank.to_bytes()
    restored = SeriesBank.from_bytes(without_sent(data) if legacy else data, bank.detector)
    rest, _ = bank_run(keys[cut:], times[cut:], values[cut:], KA, bank=restored)
    if legacy:  # last sent defaults to the firing time: the latest tick may come again
        rest = list(dict.fromkeys(first + rest))[len(first):]
    assert first + rest == whole


# -- the engine on a simulated incident ---------------------------------------------------

ENGINE_KA = 3 * MIN
SPLIT_AT = 150  # ticks of 10 s: 25 min in, mid-incident


def engine(keepalive_ms: int = ENGINE_KA) -> ModelEngine:
    return ModelEngine(warmup_points=60, warmup_windows=5, keepalive_ms=keepalive_ms)


@pytest.fixture(scope="module")
def outage():
    sim = simulate(load_system(), T0, 34 * MIN, seed=3,
                   incidents=parse_schedule("db_outage@20m+10m", T0))
    ticks = list(sim)
    return ticks, replay(engine(), ticks)


def keepalive(d: Detection) -> bool:
    return bool(d.evidence.get("keepalive", False))


def series(d: Detection) -> tuple:
    return (d.detector, d.service, d.host, d.entity, tuple(sorted(d.labels.items())))


def kind_of(d: Detection) -> str:
    """``trace.duration`` or ``trace.errors`` for trace RED series, else empty."""
    return ".".join(d.labels.get("series", "").split(".")[:2])


def test_engine_keepalives_follow_each_firing_every_keepalive_ms(outage):
    _, run = outage
    by_series: dict[tuple, list[Detection]] = {}
    for d in run.detections:
        by_series.setdefault(series(d), []).append(d)
    checked = set()
    for found in by_series.values():
        fired: Detection | None = None
        alive: list[Detection] = []
        for d in sorted(found, key=lambda d: d.time):
            if d.state == "firing" and not keepalive(d):
                assert fired is None
                fired, alive = d, []
            elif d.state == "firing":
                assert fired is not None  # a keep-alive only while its series is firing
                since = (alive[-1] if alive else fired).time
                alive.append(d)
                if d.detector == "model:seasonal-ensemble":  # a point every 10 s
                    assert d.time == since + ENGINE_KA
                else:  # a window with no spans or logs of the series evaluates nothing
                    assert d.time > since and (d.time - since) % ENGINE_KA == 0
                assert d.id == detection_id(d.detector, d.labels, d.time, "firing")
                assert d.evidence["firing_since"] == d.window_start
                assert d.time <= d.window_end
                checked.add(f"{d.detector} {kind_of(d)}".strip())
            else:
                assert fired is not None and d.time > (alive[-1] if alive else fired).time
                assert {a.window_start for a in alive} <= {d.window_start}
                fired = None
    assert checked == {"model:seasonal-ensemble", "model:log-patterns",
                       "model:trace-red trace.duration", "model:trace-red trace.errors"}
    ids = [d.id for d in run.detections]
    assert len(ids) == len(set(ids))


def test_engine_keepalives_are_additive_and_off_by_default(outage):
    ticks, run = outage
    off = replay(engine(0), ticks)
    assert ModelEngine().keepalive_ms == 0
    assert not any(keepalive(d) for d in off.detections)
    assert sum(keepalive(d) for d in run.detections) > 20
    assert [d.to_wire() for d in off.detections] == [
        d.to_wire() for d in run.detections if not keepalive(d)]


def test_engine_round_trip_mid_incident_equals_uninterrupted_run(outage):
    ticks, whole = outage
    eng = engine()  # a second, independent run: same ids
    first = replay(eng, ticks[:SPLIT_AT])
    n = len(first.detections)
    assert any(keepalive(d) for d in first.detections)
    first.states = {name: ServiceModelState.from_bytes(state.to_bytes(), eng)
                    for name, state in first.states.items()}
    second = replay(eng, ticks[SPLIT_AT:], first)
    assert any(keepalive(d) for d in second.detections[n:])
    assert [d.to_wire() for d in second.detections] == [d.to_wire() for d in whole.detections]


def as_saved_before_keepalives(data: bytes) -> bytes:
    """Service model state bytes without the keep-alive bookkeeping, zlib-compressed as
    states were then."""
    obj = orjson.loads(unpack(data))
    del obj["vector_sent"], obj["logs"]["sent"], obj["logs"]["fired_on"]
    del obj["traces"]["sent"]
    obj["metrics"] = without_sent(bytes.fromhex(obj["metrics"])).hex()
    obj["traces"]["bank"] = without_sent(bytes.fromhex(obj["traces"]["bank"])).hex()
    return zlib.compress(orjson.dumps(obj))


def test_a_damaged_service_state_is_refused_with_a_reason(outage):
    ticks, _ = outage
    eng = engine()
    first = replay(eng, ticks[:SPLIT_AT])
    data = next(iter(first.states.values())).to_bytes()
    for damaged in (data[:-6], data[:4] + b"\xff" * 4 + data[8:], b"x\x9cnot zlib"):
        with pytest.raises(ModelError, match="service model state: not readable"):
            ServiceModelState.from_bytes(damaged, eng)


def test_engine_state_saved_before_keepalives_still_loads_and_keeps_alive(outage):
    ticks, whole = outage
    eng = engine()
    first = replay(eng, ticks[:SPLIT_AT])
    n = len(first.detections)
    first.states = {name: ServiceModelState.from_bytes(as_saved_before_keepalives(
        state.to_bytes()), eng) for name, state in first.states.items()}
    after = replay(eng, ticks[SPLIT_AT:], first).detections[n:]
    want = whole.detections[n:]
    assert [d.id for d in after if not keepalive(d)] == [d.id for d in want
                                                         if not keepalive(d)]
    metric = "model:seasonal-ensemble"  # anchored at the firing time: the same ticks
    got = {d.id for d in after if keepalive(d) and d.detector == metric}
    assert {d.id for d in want if keepalive(d) and d.detector == metric} <= got
    assert got <= {d.id for d in whole.detections}  # at most the latest tick sent again
    hostless = [(d.detector, d.service, d.entity, d.labels) for d in after if keepalive(d)]
    assert all((d.detector, d.service, d.entity, d.labels) in hostless  # legacy log alarms:
               for d in want if keepalive(d))  # the host last seen, not the one fired on


# -- the service vector ----------------------------------------------------------------


class ScriptedVector(ServiceVectorHST):
    """The service vector with scripted scores (a stand-in for the trees' verdict)."""

    def __init__(self, high_from: int = 10, high_until: int = 130) -> None:
        super().__init__()
        self.high_from = high_from
        self.high_until = high_until
        self.seen = 0

    def score_learn(self, x, learn=True):
        raw = 0.9 if self.high_from <= self.seen < self.high_until else 0.1
        self.seen += learn
        return raw, raw


def vector_points(n: int) -> list[dict]:
    rng = np.random.default_rng(5)
    names = ["http.server.duration.p95", "http.server.error.ratio",
             "system.cpu.utilization", "system.memory.utilization"]
    usual = np.array([20.0, 0.01, 40.0, 50.0])
    return [{"time": np.full(4, T0 + i * STEP, np.int64), "service": ["svc"] * 4,
             "host": ["h1"] * 4, "name": names,
             "value": usual * (1 + 0.01 * rng.standard_normal(4))} for i in range(n)]


def vector_run(points: list[dict], state: ServiceModelState, eng: ModelEngine
               ) -> tuple[list[Detection], ServiceModelState]:
    out = []
    for cols in points:
        state, found, _ = eng.process("metrics", cols, state)
        out += [d for d in found if d.detector == "model:service-hst"]
    return out, state


def test_service_vector_keepalives_and_round_trip():
    eng = ModelEngine(keepalive_ms=KA)
    points = vector_points(160)
    state = eng.new_state()
    state.vector = ScriptedVector()
    whole, _ = vector_run(points, state, eng)
    fired = T0 + 13 * STEP  # the fourth high score in a row
    assert [(d.time, d.state, keepalive(d)) for d in whole] == [
        (fired, "firing", False), (fired + KA, "firing", True),
        (fired + 2 * KA, "firing", True), (fired + 3 * KA, "firing", True),
        (T0 + 130 * STEP, "resolved", False)]
    assert {d.score for d in whole[:4]} == {whole[0].score}
    assert all(d.labels == whole[0].labels and d.evidence["firing_since"] == fired
               for d in whole[1:4])
    state = eng.new_state()
    state.vector = ScriptedVector()
    first, state = vector_run(points[:70], state, eng)
    state = ServiceModelState.from_bytes(state.to_bytes(), eng)
    rest, _ = vector_run(points[70:], state, eng)
    assert [d.to_wire() for d in first + rest] == [d.to_wire() for d in whole]


# -- configuration ---------------------------------------------------------------------


def test_keepalive_setting_reaches_the_model_engine():
    settings = load_settings(environ={"TOCSIN_DETECT_KEEPALIVE_MS": "120000"})
    assert build_engines(settings)["models"].engine.keepalive_ms == 120_000
    with pytest.raises(ModelError, match="keepalive_ms=-1"):
        ModelEngine(keepalive_ms=-1)


def test_stale_setting_reaches_the_model_engine():
    assert build_engines(load_settings(environ={}))["models"].engine.stale_ms == 300_000
    settings = load_settings(environ={"TOCSIN_DETECT_STALE_MS": "2m"})
    assert build_engines(settings)["models"].engine.stale_ms == 120_000
    with pytest.raises(SettingsError, match=r"detect.stale_ms \(TOCSIN_DETECT_STALE_MS\): "
                                            "must be >= 0"):
        load_settings(environ={"TOCSIN_DETECT_STALE_MS": "-1"})
    with pytest.raises(ModelError, match="stale_ms=-1"):
        ModelEngine(stale_ms=-1)
