"""A model version published to the registry reaches a running worker without a restart."""

from __future__ import annotations

import pytest

from pipeline.cli import main
from pipeline.kafka import find_free_port
from tests.conftest import pipeline_env
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration


def test_published_model_version_is_hot_reloaded(kafka_broker, names, tmp_path, monkeypatch):
    registry = tmp_path / "registry"
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_DETECT_MODEL_REGISTRY=str(registry),
                       TOCSIN_DETECT_RELOAD_INTERVAL_S="0.5")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        before = worker.status()["detect"]["engines"]["models"]
        assert "seasonal-ensemble=builtin-1" in before
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert main(["models", "publish", "seasonal-ensemble", "--param", "alpha=0.02"]) == 0
        worker.wait_until(
            lambda w: "seasonal-ensemble=1" in w.status()["detect"]["engines"]["models"],
            timeout_s=30, what="the published version picked up")
        assert main(["models", "publish", "seasonal-ensemble", "--param", "alpha=0.03"]) == 0
        worker.wait_until(
            lambda w: "seasonal-ensemble=2" in w.status()["detect"]["engines"]["models"],
            timeout_s=30, what="the second version picked up")
        assert main(["models", "rollback", "seasonal-ensemble"]) == 0
        worker.wait_until(
            lambda w: "seasonal-ensemble=1" in w.status()["detect"]["engines"]["models"],
            timeout_s=30, what="the rollback picked up")
    finally:
        worker.stop()
