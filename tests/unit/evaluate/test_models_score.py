"""Offline scoring of a timestamp,value CSV, exactly as the stream scores the series."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from models import RobustSeasonal
from pipeline.cli.models import score_command
from pipeline.evaluate.nab import load_corpus, optimise, scaled_sigmoid
from pipeline.evaluate.score import score_series


def write_series(path, n=600, spike_at=450):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        for i in range(n):
            hh, mm = divmod(i * 5, 60)
            value = 10 + 2 * math.sin(i / 20) + (0.3 if i % 3 else -0.2)
            if i == spike_at:
                value += 40
            w.writerow([f"2024-01-{1 + hh // 24:02d} {hh % 24:02d}:{mm:02d}:00", value])


def test_score_csv_round_trip(tmp_path):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write_series(src)
    out = io.StringIO()
    assert score_command(src, dst, model="robust-seasonal", out=out) == 0
    assert "scored 600 points" in out.getvalue()
    with open(src) as a, open(dst) as b:
        rows_in, rows_out = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert [r["timestamp"] for r in rows_in] == [r["timestamp"] for r in rows_out]
    assert [float(r["value"]) for r in rows_in] == [float(r["value"]) for r in rows_out]
    scores = np.array([float(r["anomaly_score"]) for r in rows_out])
    assert scores[:100].max() == 0.0  # warm-up
    assert scores.argmax() == 450
    # the same numbers as feeding the detector one point at a time
    det = RobustSeasonal()
    one_by_one = []
    for r in rows_in:
        t, _, _ = score_series([r["timestamp"]], [0.0], det)  # parse the time alike
        x = {"value": float(r["value"]), "time": int(t[0])}
        one_by_one.append(det.score_one(x))
        det.learn_one(x)
    np.testing.assert_allclose(scores, one_by_one, atol=1e-6)


def test_score_command_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,val\n1,2\n")
    assert score_command(bad, tmp_path / "o.csv") == 2
    assert "expected columns timestamp,value" in capsys.readouterr().err
    assert score_command(bad, tmp_path / "o.csv", model="nope") == 2


def test_score_with_a_river_detector(tmp_path):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write_series(src, n=300, spike_at=250)
    assert score_command(src, dst, model="holt-winters",
                         params={"seasonality": 12, "warmup": 50}, out=io.StringIO()) == 0
    with open(dst) as fh:
        scores = [float(r["anomaly_score"]) for r in csv.DictReader(fh)]
    assert int(np.argmax(scores)) == 250


def test_nab_scoring_null_perfect_and_a_late_detection(tmp_path):
    root = tmp_path / "nab"
    (root / "data" / "x").mkdir(parents=True)
    write_series(root / "data" / "x" / "s.csv", n=1000)
    (root / "combined_windows.json").write_text(
        '{"x/s.csv": [["2024-01-02 12:00:00.000000", "2024-01-02 20:00:00.000000"]]}')
    corpus = load_corpus(root)
    first, last = corpus[0].windows[0]
    null = np.zeros(1000)
    perfect = np.zeros(1000)
    perfect[first] = 1.0
    late = np.zeros(1000)
    late[(first + last) // 2] = 1.0
    late[10] = 1.0  # in probation: ignored
    for profile in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        assert optimise(corpus, [null], profile).score == 0.0
        assert math.isclose(optimise(corpus, [perfect], profile).score, 100.0)
        mid = optimise(corpus, [late], profile)
        assert 50.0 < mid.score < 100.0 and mid.tp == 1 and mid.fp == 0
    fp = np.zeros(1000)
    fp[[first, 900, 950]] = 1.0  # one true positive, two far false positives
    res = optimise(corpus, [fp], "standard")
    assert math.isclose(res.raw, 1.0 - 2 * 0.11) and res.fp == 2
    assert math.isclose(float(scaled_sigmoid(np.array([0.0]))[0]), 0.0, abs_tol=1e-12)


def test_holt_winters_scores_a_series_that_starts_at_zero(tmp_path):
    """river's HoltWinters divides by the mean of its first season: 24 zeros crashed it."""
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    with open(src, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        for i in range(400):
            value = 0.0 if i < 30 else 5 + math.sin(i / 4) + (40.0 if i == 350 else 0.0)
            w.writerow([f"2024-01-{1 + i // 1440:02d} {i // 60 % 24:02d}:{i % 60:02d}:00",
                        value])
    assert score_command(src, dst, model="holt-winters", out=io.StringIO()) == 0
    with open(dst) as fh:
        scores = np.array([float(r["anomaly_score"]) for r in csv.DictReader(fh)])
    assert np.isfinite(scores).all()
    assert int(np.argmax(scores)) == 350


@pytest.mark.parametrize(("content", "args", "expected"), [
    (b"timestamp,value\nnot-a-time,1\n", {}, "in.csv:2: timestamp 'not-a-time'"),
    (b"timestamp,value\n2024-01-01 00:00:00,nan\n", {}, "in.csv:2: value 'nan' is not finite"),
    (b"\xff\xfe\x00\x01", {}, "not UTF-8 text"),
    (b"timestamp,value\n", {}, "no rows after the timestamp,value header"),
    (b"timestamp,value\n2024-01-01 00:00:00,1\n", {"params": {"alpha": "abc"}},
     "--param alpha= expects a number, got 'abc'"),
    (b"timestamp,value\n2024-01-01 00:00:00,1\n", {"params": {"nope": 1}},
     "has no parameter 'nope'"),
    (b"timestamp,value\n2024-01-01 00:00:00,1\n",
     {"model": "holt-winters", "params": {"seasonality": -3}},
     "seasonality must be >= 0 points, got -3"),
])
def test_score_errors_are_one_line_naming_the_problem(tmp_path, capsys, content, args,
                                                      expected):
    src = tmp_path / "in.csv"
    src.write_bytes(content)
    assert score_command(src, tmp_path / "out.csv", out=io.StringIO(), **args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tocsin score: ")
    assert expected in err


def test_score_a_missing_file_is_one_line(tmp_path, capsys):
    assert score_command(tmp_path / "nope.csv", tmp_path / "out.csv") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.csv: cannot read: No such file" in err
