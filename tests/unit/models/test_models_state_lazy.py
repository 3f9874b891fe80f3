"""A restored service model state decodes its metric series only when they are used.

Most of a decoded state's memory is its series bank; a detect step holding many
services' states (ticks touch them all) must not hold every bank decoded. These tests
pin that laziness changes nothing: bytes, scores and errors are those of decoding at
once.
"""

from __future__ import annotations

import numpy as np
import pytest

from models import ModelEngine, ServiceModelState
from models.base import ModelError

START = 1_764_000_000_000


def metrics(n: int, value: float, start: int = START) -> dict:
    hosts = [f"h{i % 3}" for i in range(n)]
    return {"time": np.array([start + 10_000 * i for i in range(n)]),
            "service": ["orders"] * n, "host": hosts, "name": ["queue.depth"] * n,
            "value": np.full(n, value) + np.arange(n) % 2, "unit": [""] * n}


@pytest.fixture
def engine() -> ModelEngine:
    return ModelEngine(warmup_points=5, vector=False)


@pytest.fixture
def stored(engine: ModelEngine) -> bytes:
    state, _, _ = engine.process("metrics", metrics(60, 10.0), engine.new_state())
    return state.to_bytes()


def test_the_series_stay_undecoded_until_used_and_re_encode_to_the_same_bytes(engine, stored):
    state = ServiceModelState.from_bytes(stored, engine)
    assert not state.metrics_decoded
    state, _ = engine.advance(state, START + 3_600_000)  # ticks need no series
    assert not state.metrics_decoded
    assert state.to_bytes() == stored
    assert len(state.metrics) == 3 and state.metrics_decoded
    assert state.to_bytes() == stored


def test_a_lazily_restored_state_scores_as_one_decoded_at_once(engine, stored):
    lazy = ServiceModelState.from_bytes(stored, engine)
    eager = ServiceModelState.from_bytes(stored, engine)
    assert len(eager.metrics) == 3  # decoded now
    later = metrics(40, 30.0, START + 700_000)  # a level shift: alarms fire
    lazy, found_lazy, _ = engine.process("metrics", later, lazy)
    eager, found_eager, _ = engine.process("metrics", later, eager)
    assert [d.to_wire() for d in found_lazy] == [d.to_wire() for d in found_eager]
    assert any(d.state == "firing" for d in found_lazy)
    assert lazy.to_bytes() == eager.to_bytes()


def test_a_state_whose_series_are_not_a_bank_is_refused_on_restore(engine, stored):
    import orjson

    from pipeline.events.packing import pack, unpack

    obj = orjson.loads(unpack(stored))
    bank = obj["metrics"]
    obj["metrics"] = "00" * 40
    with pytest.raises(ModelError, match="not a series bank"):
        ServiceModelState.from_bytes(pack(orjson.dumps(obj)), engine)
    obj["metrics"] = bank[:8] + "ff" * 3  # the magic, then garbage
    state = ServiceModelState.from_bytes(pack(orjson.dumps(obj)), engine)
    for _ in range(2):  # and again at the next use: the state is not half decoded
        with pytest.raises(ModelError, match="metric series are not readable"):
            state.metrics  # noqa: B018 - decoding is what fails


def test_held_bytes_counts_the_series_as_stored_until_decoded_then_their_columns(engine):
    """What the worker's live states budget: a restored state's undecoded series count
    their compressed bytes; decoded, their columns and keys, which grow with the series."""
    few, _, _ = engine.process("metrics", metrics(6, 10.0), engine.new_state())
    many, _, _ = engine.process("metrics", {**metrics(600, 10.0), "host": [
        f"h{i}" for i in range(600)]}, engine.new_state())
    restored = ServiceModelState.from_bytes(many.to_bytes(), engine)
    undecoded = restored.held_bytes()
    restored.metrics  # noqa: B018 - decodes the series
    decoded = restored.held_bytes()
    assert 0.75 * many.held_bytes() <= decoded <= many.held_bytes()  # restored at its size
    assert decoded > undecoded  # the columns take more than their compressed bytes
    assert many.held_bytes() - few.held_bytes() >= (600 - 3) * many.metrics.state.shape[0] * 8
