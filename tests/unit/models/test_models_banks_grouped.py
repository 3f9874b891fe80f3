"""Scoring many banks together in groups of series (bounded memory) gives what one joint
group gives, and what each bank alone gives: same scores, alarms and state.

The one difference allowed: ``peak`` (highest raw score since a series armed) of a series
that is not armed. A round where no series of the group is armed skips the alarm update,
which only refreshes that unused value (an arming resets it), as scoring banks together
already did before groups."""

from __future__ import annotations

import numpy as np
import pytest

from models import SeriesBank
from models.ensemble import SeasonalEnsemble
from models.series import process_banks

T0 = 1_718_000_000_000


def banks_and_batches(seed: int = 5) -> tuple[list[SeriesBank], list[list[tuple]]]:
    """Six banks (services) of 3-40 series, level shifts in some; per step, each bank's
    points in one or two parts (a service's second slice), shuffled, with times out of
    order inside a step."""
    rng = np.random.default_rng(seed)
    banks = [SeriesBank(SeasonalEnsemble(warmup=10)) for _ in range(6)]
    sizes = [3, 40, 7, 25, 12, 30]
    steps = []
    for step in range(12):
        parts = []
        for b, n in enumerate(sizes):
            keys = [f"h{i % 4}|m{i}" for i in range(n)] * 3  # three points per series
            times = T0 + step * 30_000 + rng.integers(0, 30_000, len(keys))
            values = 50 + 5 * rng.standard_normal(len(keys))
            if step >= 8 and b % 2:  # a level shift: alarms fire
                values += 80
            order = rng.permutation(len(keys))
            cut = len(keys) // 2 if b % 3 == 0 else len(keys)  # some banks in two parts
            for chunk in (order[:cut], order[cut:]):
                if chunk.size:
                    parts.append((b, [keys[i] for i in chunk], times[chunk], values[chunk]))
        steps.append(parts)
    return banks, steps


def run(max_series: int | None) -> tuple[list[list], list[bytes]]:
    """Every step's results (per part: score, expected, events) and the banks' bytes,
    going through bytes between steps as the detect step does; None: bank by bank."""
    banks, steps = banks_and_batches()
    det = banks[0].detector
    outputs = []
    for parts in steps:
        staged = [(banks[b], banks[b].slots(keys), t, v) for b, keys, t, v in parts]
        if max_series is None:
            results = [bank.process(slots, t, v, 0.5, 0.35, 1, 20, 60_000)
                       for bank, slots, t, v in staged]
        else:
            results = process_banks(staged, 0.5, 0.35, 1, 20, 60_000, max_series=max_series)
        outputs.append([(r.score.tolist(), r.expected.tolist(), r.events, r.bands)
                        for r in results])
        banks = [SeriesBank.from_bytes(bank.to_bytes(), det) for bank in banks]
    return outputs, [comparable(bank) for bank in banks]


def comparable(bank: SeriesBank) -> tuple:
    """The bank's state, ``peak`` of the armed series only."""
    k = len(bank)
    armed = bank.armed[:k]
    return (bank.keys, bank.state[:, :k].tobytes(), bank.firing[:k].tolist(),
            bank.since[:k].tolist(), bank.sent[:k][bank.firing[:k]].tolist(),
            bank.streak[:k].tolist(), bank.accept[:k].tolist(), armed.tolist(),
            bank.peak[:k][armed].tolist(), bank.band[:, :k].tobytes(),
            bank.calm_band[:, :k].tobytes())


@pytest.mark.parametrize("max_series", [1, 30, 60, 10_000])
def test_grouped_scoring_equals_one_group_and_bank_by_bank(max_series):
    want_out, want_state = run(None)
    got_out, got_state = run(max_series)
    assert any(events for step in want_out for _, _, events, _ in step), "no alarm fired"
    assert got_out == want_out
    assert got_state == want_state


def test_state_round_trips_through_bytes_and_keeps_scoring_the_same():
    banks, steps = banks_and_batches()
    det = banks[0].detector
    for parts in steps[:6]:
        process_banks([(banks[b], banks[b].slots(k), t, v) for b, k, t, v in parts],
                      0.5, 0.35, 1, 20, 60_000, max_series=30)
    copies = [SeriesBank.from_bytes(bank.to_bytes(), det) for bank in banks]
    assert [c.to_bytes() for c in copies] == [b.to_bytes() for b in banks]
    for parts in steps[6:]:
        a = process_banks([(banks[b], banks[b].slots(k), t, v) for b, k, t, v in parts],
                          0.5, 0.35, 1, 20, 60_000, max_series=30)
        c = process_banks([(copies[b], copies[b].slots(k), t, v) for b, k, t, v in parts],
                          0.5, 0.35, 1, 20, 60_000, max_series=30)
        assert [r.score.tolist() for r in a] == [r.score.tolist() for r in c]
        assert [r.events for r in a] == [r.events for r in c]


def test_a_failing_group_leaves_every_bank_unchanged():
    banks, steps = banks_and_batches()
    parts = [(banks[b], banks[b].slots(k), t, v) for b, k, t, v in steps[0]]
    before = [bank.to_bytes() for bank in banks]
    bad = list(parts)
    last = bad[-1]
    bad[-1] = (last[0], last[1], last[2][:1], last[3])  # times shorter than the slots
    with pytest.raises(ValueError):
        process_banks(bad, 0.5, 0.35, 1, 20, 60_000, max_series=30)
    assert [bank.to_bytes() for bank in banks] == before
