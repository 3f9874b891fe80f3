"""The model registry (publish, list, load, set current, roll back) and hot reload."""

from __future__ import annotations

import io

import numpy as np
import pytest

from models import ModelEngine, ModelError, ModelRegistry, RobustSeasonal, models_command
from models.forecast import ForecastResidual

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


def metric_columns(t: int, value: float) -> dict:
    return {"time": np.array([t], dtype=np.int64), "service": ["api"], "host": ["api-1"],
            "name": ["http.server.duration.p95"], "value": np.array([value]), "unit": ["ms"],
            "attributes": [{}]}


def test_engine_hot_reload_names_the_new_version(tmp_path):
    reg = ModelRegistry(tmp_path)
    engine = ModelEngine(reg, warmup_points=30, confirm_points=1, vector=False)
    assert engine.versions["robust-seasonal"] == "builtin-1"
    assert engine.reload() is False
    state = engine.new_state()
    rng = np.random.default_rng(1)
    t = T0
    for _ in range(200):
        state, found, _ = engine.process("metrics", metric_columns(t, 20 + rng.normal()), state)
        t += 10_000
    reg.publish("robust-seasonal", RobustSeasonal(alpha=0.01), created_ms=T0)
    assert engine.reload() is True
    assert engine.reload() is False
    state, found, _ = engine.process("metrics", metric_columns(t, 900.0), state)
    assert [(d.detector, d.detector_version, d.state) for d in found] == [
        ("model:robust-seasonal", "1", "firing")]
    assert found[0].evidence["band_low"] < found[0].evidence["expected"] < \
        found[0].evidence["band_high"] < 900.0
    reg.publish("robust-seasonal", RobustSeasonal(alpha=0.02), created_ms=T0)
    reg.rollback("robust-seasonal")
    assert engine.reload() is False  # v1 again: what the engine already runs
