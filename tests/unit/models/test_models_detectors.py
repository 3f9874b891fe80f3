"""The shared detector suite: every detector class, every parameter set it declares."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from models import DETECTORS, ServiceVectorHST
from models.base import Detector

T0 = 1_718_000_000_000
CASES = [pytest.param(cls, params, id=f"{cls.__name__}-{i}")
         for cls in DETECTORS for i, params in enumerate(cls._unit_test_params())]


def stream(cls: type[Detector], n: int, seed: int = 1) -> list[dict]:
    """Normal inputs for ``cls``: a daily-cycle series with noise (or a service vector)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = T0 + i * 60_000
        if cls is ServiceVectorHST:
            out.append({"latency_p95": rng.gauss(20, 1), "error_ratio": rng.gauss(0.01, 0.002),
                        "cpu": rng.gauss(40, 2), "memory": rng.gauss(50, 1)})
        else:
            season = 3.0 * math.sin(2 * math.pi * ((t / 3_600_000) % 24) / 24)
            out.append({"value": 50.0 + season + rng.gauss(0, 1), "time": t})
    return out


def spike_of(cls: type[Detector], x: dict) -> dict:
    if cls is ServiceVectorHST:
        return {**x, "latency_p95": 400.0, "error_ratio": 0.5}
    return {**x, "value": x["value"] + 60.0}


@pytest.mark.parametrize(("cls", "params"), CASES)
def test_pickles_and_keeps_scoring_the_same(cls, params):
    det = cls(**params)
    data = stream(cls, 300)
    for x in data[:250]:
        det.learn_one(x)
    copy = pickle.loads(pickle.dumps(det))
    for x in data[250:]:
        assert copy.score_one(x) == det.score_one(x)
        copy.learn_one(x)
        det.learn_one(x)


@pytest.mark.parametrize(("cls", "params"), CASES)
def test_same_seed_same_scores(cls, params):
    a, b = cls(**params), cls(**params)
    for x in stream(cls, 300):
        assert a.score_one(x) == b.score_one(x)
        a.learn_one(x)
        b.learn_one(x)


@pytest.mark.parametrize(("cls", "params"), CASES)
def test_score_before_learn_does_not_change_the_model(cls, params):
    det = cls(**params)
    data = stream(cls, 260)
    for x in data[:250]:
        det.learn_one(x)
    probe = spike_of(cls, data[250])
    first = det.score_one(probe)
    for x in data[250:255]:
        det.score_one(x)
    assert det.score_one(probe) == first


@pytest.mark.parametrize(("cls", "params"), CASES)
def test_spike_scores_higher_than_normal_points(cls, params):
    det = cls(**{**params, "rest_points": 0})  # no rest: every point reports its score
    data = stream(cls, 600)
    for x in data[:500]:
        det.learn_one(x)
    normal = []
    for x in data[500:]:
        normal.append(det.score_one(x))
        det.learn_one(x)
    spike = det.score_one(spike_of(cls, data[-1]))
    assert spike > max(normal)
    assert spike >= 0.3
    assert 0.0 <= min(normal) and max(normal) <= 1.0


@pytest.mark.parametrize(("cls", "params"), CASES)
def test_no_alarms_in_warm_up(cls, params):
    det = cls(**params)
    data = stream(cls, det.warmup)
    for i, x in enumerate(data):
        weird = spike_of(cls, x) if i % 7 == 3 else x
        assert det.score_one(weird) == 0.0
        det.learn_one(weird)


@pytest.mark.parametrize(("cls", "params"), CASES)
def test_constructor_arguments_are_the_configuration(cls, params):
    det = cls(**params)
    for name, value in params.items():
        assert getattr(det, name) == value
    clone = det.clone()
    assert clone.params == det.params
    assert type(clone) is cls
