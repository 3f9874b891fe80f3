"""Rule files reload in a running worker; a bad file is rejected and the old rules run on."""

from __future__ import annotations

import re
import shutil

import pytest

from detectors import builtin_rule_paths
from pipeline.cli import main
from pipeline.kafka import find_free_port
from tests.conftest import pipeline_env
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration


def test_rules_reload_on_change_and_reject_a_bad_file(kafka_broker, names, tmp_path,
                                                     monkeypatch, capsys):
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    http_rules = next(p for p in builtin_rule_paths() if p.name == "http.yaml")
    shutil.copy(http_rules, rules_dir / "http.yaml")
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_DETECT_RULES=str(rules_dir),
                       TOCSIN_DETECT_RELOAD_INTERVAL_S="0.5")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        first = worker.status()["detect"]["engines"]["rules"]
        # a changed file is picked up by the watcher without a restart
        (rules_dir / "http.yaml").write_text(
            re.sub(r'^version: "[^"]*"', 'version: "99"', http_rules.read_text(), flags=re.M))
        worker.wait_until(lambda w: w.status()["detect"]["engines"]["rules"] != first,
                          timeout_s=30, what="the rule change picked up")
        second = worker.status()["detect"]["engines"]["rules"]
        assert second.startswith("99+")
        # a bad file is rejected with its problems; the running rules stay
        (rules_dir / "broken.yaml").write_text(
            "rules:\n  - name: broken\n    signal: metric\n")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert main(["rules", "reload"]) == 1
        out = capsys.readouterr().out
        assert "rejected, the previous rules keep running" in out
        assert "broken.yaml: rule 'broken': field 'signal'" in out
        assert worker.status()["detect"]["engines"]["rules"] == second
    finally:
        worker.stop()
