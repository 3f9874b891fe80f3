"""The vectorised series bank: same answers as one detector per series, compact state."""

from __future__ import annotations

import numpy as np

from models import RobustSeasonal, SeriesBank
from models.ensemble import SeasonalEnsemble
from models.univariate import N_FIELDS

T0 = 1_718_000_000_000


def points(n_series: int, n: int, seed: int = 3) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    keys = [f"s{i % n_series}" for i in range(n * n_series)]
    times = T0 + (np.arange(n * n_series) // n_series) * 10_000
    values = 100 + 10 * rng.standard_normal(n * n_series)
    values[rng.random(values.size) < 0.01] += 200  # spikes
    return keys, times.astype(np.int64), values


def test_bank_equals_one_detector_per_series_even_out_of_order():
    det = RobustSeasonal(warmup=20)
    keys, times, values = points(5, 400)
    bank = SeriesBank(det)
    rng = np.random.default_rng(0)
    bucket = times // 200_000  # batches of 20 ticks, records shuffled inside each batch
    batches = [rng.permutation(np.flatnonzero(bucket == b)) for b in np.unique(bucket)]
    got = np.zeros(len(keys))
    for batch in batches:
        res = bank.process(bank.slots([keys[i] for i in batch]), times[batch],
                           values[batch], 2.0, 0.0)
        got[batch] = res.score
    for s in range(5):
        single = RobustSeasonal(warmup=20)
        rows = [i for i, k in enumerate(keys) if k == f"s{s}"]
        want = []
        for i in rows:
            x = {"value": values[i], "time": int(times[i])}
            want.append(single.score_one(x))
            single.learn_one(x)
        np.testing.assert_allclose(got[rows], want, rtol=1e-12, atol=1e-12)


def test_alarm_changes_fire_once_and_resolve():
    bank = SeriesBank(RobustSeasonal(warmup=20, rest_points=0))
    keys, times, values = points(1, 300)
    values[200:210] += 500.0
    res = bank.process(bank.slots(keys), times, values, 0.5, 0.3, confirm_points=3)
    states = [(int(times[i]), s) for i, s in res.events]
    assert [s for _, s in states] == ["firing", "resolved"]
    assert states[0][0] == int(times[202])  # confirmed on the third point over threshold


def test_an_alarm_with_an_empty_band_follows_the_score_and_clears():
    # a spike met just as the rest after an earlier alarm ends: the model's likelihood
    # family (a run of surprising points) scores even the expected value past the
    # threshold, so the band of accepted values is empty; ordinary points after the
    # spike must neither confirm nor hold the alarm (it used to fire and hold an hour,
    # until the 360 points of ``accepted``)
    det = SeasonalEnsemble(threshold=0.6, rest_points=180, warmup=10)
    rng = np.random.default_rng(1)
    values = 0.155 + 0.017 * rng.standard_normal(1300)
    values[700] = 0.5  # an alarm: the model rests 180 points
    times = T0 + np.arange(values.size, dtype=np.int64) * 10_000
    for start in (876, 877, 878, 879):  # the spike's last points come after the rest
        spiked = values.copy()
        spiked[start:start + 3] = 0.5
        bank = SeriesBank(det)
        res = bank.process(bank.slots(["s"] * spiked.size), times, spiked, 0.6, 0.42,
                           confirm_points=4, accept_points=360)
        fired = [p for p, kind in res.events if kind == "firing"]
        resolved = [p for p, kind in res.events if kind == "resolved"]
        assert len(fired) == len(resolved) <= 1
        for f, r in zip(fired, resolved, strict=True):
            assert r - f < 30, (start, f, r)  # 5 minutes at most, not the accept period
            assert res.reasons[r] == "returned"


def test_an_alarm_with_an_empty_calm_band_returns_inside_its_band():
    # armed while the model's likelihood family was already up: the band of values under
    # the threshold is fine, the narrower one under ``clear`` empty; values back inside
    # the band and scoring under ``clear`` return the alarm (they used to hold it an hour)
    det = SeasonalEnsemble(threshold=0.6, rest_points=180, warmup=10)
    rng = np.random.default_rng(2)
    values = 0.55 + 0.004 * rng.standard_normal(520)
    times = T0 + np.arange(values.size, dtype=np.int64) * 10_000
    bank = SeriesBank(det)
    slots = bank.slots(["s"] * 500)
    bank.process(slots, times[:500], values[:500], 0.6, 0.42)
    bank.firing[0], bank.band[:, 0], bank.calm_band[:, 0] = True, (0.527, 0.570), 0.5514
    res = bank.process(bank.slots(["s"] * 20), times[500:], values[500:], 0.6, 0.42,
                       confirm_points=4)
    assert [kind for _, kind in res.events] == ["resolved"]
    assert res.reasons[res.events[0][0]] == "returned"
    assert res.events[0][0] == 3  # the fourth point back


def test_state_round_trip_and_size():
    det = RobustSeasonal(warmup=10)
    keys, times, values = points(4, 120)
    bank = SeriesBank(det)
    half = len(keys) // 2
    bank.process(bank.slots(keys[:half]), times[:half], values[:half], 0.5, 0.3)
    copy = SeriesBank.from_bytes(bank.to_bytes(), det)
    a = bank.process(bank.slots(keys[half:]), times[half:], values[half:], 0.5, 0.3)
    b = copy.process(copy.slots(keys[half:]), times[half:], values[half:], 0.5, 0.3)
    np.testing.assert_array_equal(a.score, b.score)
    assert a.events == b.events
    assert bank.bytes_per_series <= 470  # "a few hundred bytes"
    assert len(bank.to_bytes()) < 4 * (N_FIELDS * 8 + 210) + 100


def minute_series(n: int = 400, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A steady series with a point a minute (with a second of jitter)."""
    rng = np.random.default_rng(seed)
    times = T0 + np.arange(n, dtype=np.int64) * 60_000 - rng.integers(0, 1_000, n)
    return times, 50.0 + rng.standard_normal(n)


def test_a_minute_series_confirms_a_three_minute_fault_on_its_second_point():
    times, values = minute_series()
    values[300:303] += 40.0  # a three-minute fault: three points
    for confirm_ms, want in ((0, []), (30_000, [(301, "firing"), (306, "resolved")])):
        bank = SeriesBank(SeasonalEnsemble(threshold=0.6, rest_points=180))
        res = bank.process(bank.slots(["s"] * values.size), times, values, 0.6, 0.42,
                           confirm_points=4, confirm_ms=confirm_ms)
        assert res.events == want
        # the episode began with its first point out of band, not when it was confirmed
        assert all(res.since[i] == times[300] for i, _ in res.events)



def test_a_new_excursion_after_the_series_recovered_fires_within_the_rest_period():
    # two three-minute faults 20 minutes apart, and a one-point spike before them: the
    # model's rest (180 points) after each alarm-level point used to silence the series
    # for three hours; once it scored calm again, a new excursion is a new episode
    times, values = minute_series(600)
    values[250] += 40.0  # arms, never confirms
    values[300:303] += 40.0
    values[323:326] += 80.0  # the first taught the tail: a like rise scores lower
    for rearm, want in ((False, []), (True, [301, 324])):
        bank = SeriesBank(SeasonalEnsemble(threshold=0.6, rest_points=180))
        res = bank.process(bank.slots(["s"] * values.size), times, values, 0.6, 0.42,
                           confirm_points=4, confirm_ms=30_000, rearm=rearm)
        fired = [i for i, kind in res.events if kind == "firing"]
        assert fired == want  # without rearm the spike's rest silences both faults
    assert [res.since[i] for i in fired] == [times[300], times[323]]
    # the model itself still rests: its own score reports one point per episode
    assert res.score[301] == 0.0 and res.raw[301] >= 0.6


def test_a_series_still_unusual_does_not_rearm_within_the_rest_period():
    times, values = minute_series(600)
    values[300:303] += 40.0  # an episode, then a spike every other point: never calm
    values[303:330:2] += 40.0
    bank = SeriesBank(SeasonalEnsemble(threshold=0.6, rest_points=180))
    res = bank.process(bank.slots(["s"] * values.size), times, values, 0.6, 0.42,
                       confirm_points=4, confirm_ms=30_000, rearm=True)
    assert [kind for _, kind in res.events].count("firing") == 1


def test_a_series_settled_at_a_new_level_resolves_after_accept_ms():
    # a step the model soon scores as normal: with accept_points alone it fires for 360
    # points (six hours at a point a minute); with accept_ms, ten minutes after it settled
    times, values = minute_series(600)
    values[300:] += 8.0
    for accept_ms, want in ((0, ["firing"]), (600_000, ["firing", "resolved"])):
        bank = SeriesBank(SeasonalEnsemble(threshold=0.6, rest_points=180))
        res = bank.process(bank.slots(["s"] * values.size), times, values, 0.6, 0.42,
                           confirm_points=4, confirm_ms=30_000, accept_ms=accept_ms)
        assert [kind for _, kind in res.events] == want
        if accept_ms:
            fired, resolved = (i for i, _ in res.events)
            assert res.reasons[resolved] == "accepted"
            calm = np.flatnonzero(res.raw[fired:resolved + 1] >= 0.42)[-1] + fired + 1
            assert times[resolved] - times[calm] >= accept_ms  # scored normal since


def test_a_settled_alarm_meeting_a_new_excursion_resolves_and_fires_anew():
    # a step the model soon scores normal (the alarm held until accepted), then a fault
    # on the new level: the first episode ends and the fault fires with its own onset
    times, values = minute_series(600)
    values[300:] += 8.0
    values[330:333] += 80.0
    bank = SeriesBank(SeasonalEnsemble(threshold=0.6, rest_points=180))
    res = bank.process(bank.slots(["s"] * values.size), times, values, 0.6, 0.42,
                       confirm_points=4, confirm_ms=30_000, rearm=True)
    kinds = [(i, kind) for i, kind in res.events]
    assert [k for _, k in kinds][:3] == ["firing", "resolved", "firing"]
    assert kinds[1][0] == 330 and res.reasons[330] == "accepted"
    assert res.since[kinds[2][0]] == times[330]
