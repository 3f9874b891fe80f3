"""The command line's rough edges, each refused or shown the way an operator expects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.api.operate import check_ackable, check_expirable, problem_detail
from pipeline.cli.main import main
from pipeline.cli.models import models_command
from pipeline.cli.operate import problem_lines, silence_lines
from pipeline.cli.rules import validate_command
from pipeline.correlate import Recurrence, Silence, problems_table
from pipeline.errors import TocsinError
from pipeline.kafka import find_free_port
from pipeline.settings import load_settings
from pipeline.simulate.schedule import ScenarioError
from pipeline.store import QueryResult, open_store
from tests.unit.correlate.support import MIN, T0, Run, cleared, det

ROOT = Path(__file__).resolve().parents[3]
HOUR = 3_600_000


@pytest.fixture
def store_env(tmp_path, monkeypatch) -> dict[str, str]:
    """An embedded store of its own and a web port where no worker listens."""
    for key in [k for k in os.environ if k.startswith("TOCSIN_")]:
        monkeypatch.delenv(key)
    env = {"TOCSIN_STORE_PATH": str(tmp_path / "store"),
           "TOCSIN_WORKER_WEB_PORT": str(find_free_port()),
           "TOCSIN_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def store_problems(env: dict[str, str], problems) -> None:
    settings = load_settings(environ=env)
    store = open_store(settings.store)
    try:
        store.ensure_schema()
        store.insert_arrow("problems", problems_table(list(problems)))
    finally:
        store.close()


def resolved_problem():
    run = Run()
    first = det("high-error-rate", "orders", T0, confidence=0.9)
    run.feed([first])
    run.feed([cleared(first, T0 + 3 * MIN)])
    run.tick(T0 + 10 * MIN)
    [problem] = run.state.problems.values()
    assert problem.status == "resolved"
    return problem


# --- ack and silence expire ---------------------------------------------------------

def test_ack_of_an_unknown_problem_is_refused(store_env, capsys):
    store_problems(store_env, [])
    assert main(["ack", "p-doesnotexist"]) == 2
    err = capsys.readouterr().err
    assert "no problem with id 'p-doesnotexist'" in err and "tocsin problems" in err


def test_ack_of_a_resolved_problem_is_refused(store_env, capsys):
    problem = resolved_problem()
    store_problems(store_env, [problem])
    assert main(["ack", problem.id]) == 2
    assert f"problem {problem.id} is resolved" in capsys.readouterr().err


def test_an_open_problem_can_be_acknowledged():
    check_ackable("p-1", ("open", ""))
    check_ackable("p-1", ("acknowledged", ""))
    with pytest.raises(TocsinError, match="no problem with id"):
        check_ackable("p-1", None)


def _silence(end_ms: int | None, **kw) -> dict:
    return Silence.create(["service=orders"], T0, end_ms, created_by="ops",
                          created_at=T0, **kw).to_wire()


def test_expiring_an_unknown_or_ended_silence_is_refused():
    running = _silence(T0 + HOUR)
    with pytest.raises(TocsinError, match="no silence with id 's-nonexist'"):
        check_expirable("s-nonexist", [running], T0 + MIN)
    with pytest.raises(TocsinError, match="already ended at 2025-11-24T17:00:00"):
        check_expirable(running["id"], [running], T0 + 2 * HOUR)
    check_expirable(running["id"], [running], T0 + MIN)


def test_silence_expire_without_a_worker_to_check_names_the_way_out(store_env, capsys):
    assert main(["silence", "expire", "s-nonexist"]) == 2
    err = capsys.readouterr().err
    assert "cannot check silence s-nonexist" in err and "--force" in err


# --- tables -----------------------------------------------------------------------

def test_silence_list_is_a_table_with_times_not_epoch_ms():
    one_off = _silence(T0 + 2 * HOUR, comment="database maintenance " * 5)
    weekly = _silence(None, recurrence=Recurrence.parse("0 2 * * 6", HOUR))
    lines = silence_lines([weekly, one_off], T0 + MIN, 80)
    assert lines[0].split() == ["id", "state", "when", "(UTC)", "matchers", "by", "comment"]
    assert len(lines) == 3 and all(len(line) <= 80 for line in lines)
    text = "\n".join(lines)
    assert "11-24 16:00 to 18:00" in text
    assert "0 2 * * 6 for 1h" in text and "active" in text
    assert str(T0) not in text and "{" not in text
    assert silence_lines([], T0, 80) == ["no silences"]


PROBLEM_COLUMNS = ["id", "status", "severity", "category", "title", "affected", "root_cause",
                   "opened", "updated", "version"]


def _problems() -> QueryResult:
    title = ("payments: http.server.error.ratio on payments-1 is 0.2103, expected about "
             "0.005469 (+3 affected services)")
    return QueryResult(PROBLEM_COLUMNS, [
        ("p-1b7a407a3e66", "acknowledged", "critical", "availability", title,
         "payments, orders, api, gateway", "payments", "2026-12-06 02:14:00", "02:48:10", 7),
        ("p-0e48594e710e", "open", "medium", "resource", "gateway: CPU 97%",
         "gateway", "gateway", "2026-12-06 04:11:00", "04:19:00", 3)])


def test_problems_fit_80_columns_and_wide_shows_everything():
    narrow = problem_lines(_problems(), False, 80)
    assert narrow[0].split() == ["id", "status", "severity", "opened", "title"]
    assert all(len(line) <= 80 for line in narrow)
    assert "p-1b7a407a3e66  acknowledged  critical  12-06 02:14  payments:" in narrow[1]
    assert narrow[1].endswith("…") and narrow[2].endswith("gateway: CPU 97%")
    wide = problem_lines(_problems(), True, 80)
    assert "(+3 affected services)" in wide[1] and "payments, orders, api, gateway" in wide[1]
    assert problem_lines(QueryResult(PROBLEM_COLUMNS, []), False, 80) == ["no problems"]


def test_problem_confidence_prints_rounded(store_env):
    problem = resolved_problem()
    store_problems(store_env, [problem])
    shown = problem_detail(load_settings(environ=store_env), problem.id)["confidence"]
    assert shown == round(problem.confidence, 3) and len(repr(shown)) <= 5


# --- rules -------------------------------------------------------------------------

def test_rules_validate_takes_a_directory(capsys):
    assert validate_command([str(ROOT / "detectors" / "rules")]) == 0
    out = capsys.readouterr().out
    assert "http.yaml: 7 rules OK" in out and "traces.yaml" in out


def test_rules_validate_of_a_directory_without_rules(tmp_path, capsys):
    assert validate_command([str(tmp_path)]) == 1
    assert "no rule files (*.yaml, *.yml) in this directory" in capsys.readouterr().out


def test_a_missing_category_says_missing(tmp_path, capsys):
    path = tmp_path / "nocat.yaml"
    path.write_text('version: "1"\nrules:\n  - name: x\n    signal: metrics\n'
                    "    select: {metric: cpu}\n    window: {type: tumbling, size: 1m}\n"
                    '    aggregation: mean\n    condition: "> 1"\n    severity: high\n'
                    "    title: t\n")
    assert validate_command([str(path)]) == 1
    out = capsys.readouterr().out
    assert "field 'category': missing: expected one of performance" in out
    assert "None" not in out


# --- models ------------------------------------------------------------------------

def test_models_publish_with_an_unknown_parameter_names_it(tmp_path, capsys):
    code = models_command("publish", tmp_path, name="robust-seasonal", params={"bogus": 1})
    err = capsys.readouterr().err
    assert code == 2
    assert ("model 'robust-seasonal': bad parameters: it has no parameter 'bogus' "
            "(its parameters: alpha") in err
    assert "__init__" not in err and "keyword argument" not in err
    assert not list(tmp_path.iterdir())  # nothing published


def test_models_publish_with_a_text_for_a_number_is_refused(tmp_path, capsys):
    assert models_command("publish", tmp_path, name="robust-seasonal",
                          params={"alpha": "x"}) == 2
    assert "--param alpha= expects a number, got 'x'" in capsys.readouterr().err


def test_models_list_without_a_registry_lists_the_builtin_models(store_env, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("robust-seasonal", "holt-winters", "log-patterns", "trace-red"):
        assert name in out
    assert all(len(line) <= 80 for line in out.splitlines())


# --- settings | head, simulate -----------------------------------------------------

def test_settings_into_a_closed_pipe_ends_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "settings"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written (like `| head`)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_simulate_overlap_error_prints_times_and_the_flag(capsys):
    code = main(["simulate", "--duration", "2h", "--start", "2026-01-01T00:00:00Z",
                 "--incidents", "db_outage@30m+20m,error_spike:orders@40m+10m",
                 "--out", os.devnull, "--labels", os.devnull])
    err = capsys.readouterr().err
    assert code == 2
    assert ("db_outage from 30m (2026-01-01T00:30:00Z) to 50m (2026-01-01T00:50:00Z) "
            "overlaps error_spike starting at 40m (2026-01-01T00:40:00Z)") in err
    assert "pass --allow-overlap" in err and "allow_overlap=" not in err
    assert "1767" not in err  # no epoch milliseconds


def test_a_schedule_outside_the_range_prints_times():
    from pipeline.simulate import load_system
    from pipeline.simulate.schedule import ScheduledIncident, resolve_schedule

    start = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    with pytest.raises(ScenarioError, match=r"from 50m \(2026-01-01T00:50:00Z\) to 1h10m"):
        resolve_schedule(load_system(), [ScheduledIncident("db_outage", start + 50 * MIN,
                                                           20 * MIN)],
                         start_ms=start, end_ms=start + HOUR, interval_ms=10_000,
                         rng=__import__("numpy").random.default_rng(0))
