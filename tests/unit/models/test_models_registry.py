"""The model registry (publish, list, load, set current, roll back) and hot reload."""

from __future__ import annotations

import io

import numpy as np
import pytest

from models import (
    LogPatterns,
    ModelEngine,
    ModelError,
    ModelRegistry,
    RobustSeasonal,
    SeasonalEnsemble,
    TraceRED,
)
from models.forecast import ForecastResidual
from pipeline.cli.models import models_command, resolve_detector, score_command

T0 = 1_718_000_000_000


def test_publish_list_load_set_current_and_rollback(tmp_path):
    reg = ModelRegistry(tmp_path / "models")
    v1 = reg.publish("robust-seasonal", RobustSeasonal(alpha=0.01), author="ana",
                     description="first", training={"start_ms": T0, "end_ms": T0 + 1},
                     evaluation={"nab_standard": 50.0}, created_ms=T0)
    v2 = reg.publish("robust-seasonal", RobustSeasonal(alpha=0.02), author="ana",
                     created_ms=T0 + 10)
    assert (v1.version, v2.version) == (1, 2)
    assert reg.names() == ["robust-seasonal"]
    assert [v.version for v in reg.versions("robust-seasonal")] == [1, 2]
    assert reg.current("robust-seasonal").version == 2
    assert reg.load("robust-seasonal").alpha == 0.02
    assert reg.load("robust-seasonal", 1).alpha == 0.01
    assert reg.metadata("robust-seasonal", 1).evaluation == {"nab_standard": 50.0}
    assert reg.rollback("robust-seasonal").version == 1
    assert reg.current("robust-seasonal").version == 1
    with pytest.raises(ModelError, match="nothing to roll back"):
        reg.rollback("robust-seasonal")
    reg.set_current("robust-seasonal", 2)
    assert reg.load("robust-seasonal").alpha == 0.02
    with pytest.raises(ModelError, match="no version 7"):
        reg.set_current("robust-seasonal", 7)


def test_objects_that_are_not_plain_json_are_pickled(tmp_path):
    from river import time_series

    reg = ModelRegistry(tmp_path)
    det = ForecastResidual(forecaster=time_series.HoltWinters(alpha=0.5), warmup=10)
    reg.publish("hw", det, created_ms=T0)
    assert (tmp_path / "hw" / "1" / "model.pkl").exists()
    assert isinstance(reg.load("hw").forecaster, time_series.HoltWinters)


def test_models_command(tmp_path):
    out = io.StringIO()
    assert models_command("publish", tmp_path, name="robust-seasonal",
                          params={"alpha": 0.05}, author="cli", now_ms=T0, out=out) == 0
    assert models_command("publish", tmp_path, name="robust-seasonal", now_ms=T0, out=out) == 0
    assert models_command("rollback", tmp_path, name="robust-seasonal", out=out) == 0
    assert models_command("list", tmp_path, out=out) == 0
    text = out.getvalue()
    assert "* robust-seasonal v1" in text and "  robust-seasonal v2" in text
    assert models_command("set-current", tmp_path, name="robust-seasonal", version=2,
                          out=out) == 0
    assert models_command("frobnicate", tmp_path, name="x", out=out) == 2


@pytest.mark.parametrize("model", [
    LogPatterns(window_ms=120_000, min_count=40, threshold=0.75, clear=0.5, sim_th=0.55,
                depth=5),
    TraceRED(window_ms=30_000, grace_ms=0, min_errors=6, error_prior=0.02, accept_points=9),
], ids=["log-patterns", "trace-red"])
def test_log_and_trace_models_round_trip_as_json(tmp_path, model):
    reg = ModelRegistry(tmp_path)
    meta = reg.publish(model.name, model, author="ana", created_ms=T0)
    assert (meta.cls, meta.params) == (type(model).__name__, model.params)
    assert not (tmp_path / model.name / "1" / "model.pkl").exists()
    loaded = reg.load(model.name)
    assert type(loaded) is type(model) and loaded.params == model.params
    assert reg.metadata(model.name, 1).params == model.params


def test_models_command_publishes_log_and_trace_models(tmp_path, capsys):
    out = io.StringIO()
    assert models_command("publish", tmp_path, name="log-patterns",
                          params={"min_count": 50, "threshold": 0.8}, now_ms=T0, out=out) == 0
    assert models_command("publish", tmp_path, name="trace-red", params={"min_errors": 4},
                          now_ms=T0, out=out) == 0
    reg = ModelRegistry(tmp_path)
    assert (reg.load("log-patterns").min_count, reg.load("log-patterns").threshold) == (50, 0.8)
    assert reg.load("trace-red").min_errors == 4
    assert models_command("publish", tmp_path, name="trace-red",
                          params={"window_ms": "1m"}, now_ms=T0, out=out) == 2
    assert "TraceRED: window_ms='1m': expected a whole number" in capsys.readouterr().err
    assert models_command("publish", tmp_path, name="log-patterns", params={"windw_ms": 1},
                          now_ms=T0, out=out) == 2
    assert "bad parameters" in capsys.readouterr().err
    model, label = resolve_detector("log-patterns", tmp_path, params={"min_count": 7})
    assert (model.min_count, model.threshold, label) == (7, 0.8, "1")
    assert score_command(tmp_path / "in.csv", tmp_path / "out.csv", model="trace-red") == 2
    assert "not a timestamp,value series" in capsys.readouterr().err


def test_engine_rejects_a_version_of_the_wrong_class(tmp_path):
    reg = ModelRegistry(tmp_path)
    reg.publish("log-patterns", TraceRED(), created_ms=T0)
    with pytest.raises(ModelError, match="'log-patterns' v1: expected a LogPatterns, got "
                                         "TraceRED"):
        ModelEngine(reg)


def metric_columns(t: int, value: float) -> dict:
    return {"time": np.array([t], dtype=np.int64), "service": ["api"], "host": ["api-1"],
            "name": ["http.server.duration.p95"], "value": np.array([value]), "unit": ["ms"],
            "attributes": [{}]}


def test_engine_hot_reload_names_the_new_version(tmp_path):
    reg = ModelRegistry(tmp_path)
    engine = ModelEngine(reg, warmup_points=30, confirm_points=1, vector=False)
    assert engine.versions["seasonal-ensemble"] == "builtin-1"
    assert engine.reload() is False
    state = engine.new_state()
    rng = np.random.default_rng(1)
    t = T0
    for _ in range(200):
        state, found, _ = engine.process("metrics", metric_columns(t, 20 + rng.normal()), state)
        t += 10_000
    reg.publish("seasonal-ensemble", SeasonalEnsemble(alpha=0.01), created_ms=T0)
    assert engine.reload() is True
    assert engine.reload() is False
    state, found, _ = engine.process("metrics", metric_columns(t, 900.0), state)
    assert [(d.detector, d.detector_version, d.state) for d in found] == [
        ("model:seasonal-ensemble", "1", "firing")]
    assert found[0].evidence["band_low"] < found[0].evidence["expected"] < \
        found[0].evidence["band_high"] < 900.0
    reg.publish("seasonal-ensemble", SeasonalEnsemble(alpha=0.02), created_ms=T0)
    reg.rollback("seasonal-ensemble")
    assert engine.reload() is False  # v1 again: what the engine already runs


def test_engine_runs_robust_seasonal_when_asked_and_reloads_its_versions(tmp_path):
    reg = ModelRegistry(tmp_path)
    engine = ModelEngine(reg, metric_model="robust-seasonal", vector=False)
    assert "robust-seasonal" in engine.versions and "seasonal-ensemble" not in engine.versions
    reg.publish("seasonal-ensemble", SeasonalEnsemble(alpha=0.01), created_ms=T0)
    assert engine.reload() is False  # not the model this engine runs
    reg.publish("robust-seasonal", RobustSeasonal(alpha=0.01), created_ms=T0)
    assert engine.reload() is True and engine.versions["robust-seasonal"] == "1"
    with pytest.raises(ModelError, match="metric_model='nope': expected one of"):
        ModelEngine(metric_model="nope")
