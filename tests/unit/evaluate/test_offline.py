"""The offline pipeline (the worker's own detect and correlate steps in-process) over a
small recording: records become detections, detections a problem, and a rerun of the
recorded correlator input gives the same problems."""

from __future__ import annotations

import dataclasses

import orjson

from pipeline.evaluate.offline import OfflinePipeline, read_tables
from pipeline.settings import Settings

MIN = 60_000
T0 = 1_700_000_000_000


def recording(path, saturated_from_min: int, minutes: int, heartbeat: bool = False) -> None:
    """Two pods' CPU every 10 s; one goes over 80 % of its limit from a given minute
    (with ``heartbeat``, each pod's heartbeat beside it)."""
    lines = []
    for i in range(minutes * 6):
        t = T0 + i * 10_000
        for service, host in (("cart", "cart-1"), ("ads", "ads-1")):
            hot = service == "cart" and t >= T0 + saturated_from_min * MIN
            lines.append(orjson.dumps({
                "type": "metric", "time": t, "service.name": service, "host.name": host,
                "name": "k8s.pod.cpu.utilization", "value": 95.0 if hot else 20.0 + i % 3,
                "unit": "%", "attributes": {}}))
            if heartbeat:
                lines.append(orjson.dumps({
                    "type": "metric", "time": t, "service.name": service, "host.name": host,
                    "name": "heartbeat", "value": 1.0, "unit": "", "attributes": {}}))
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_records_become_a_problem_and_a_rerun_repeats_it(tmp_path):
    path = tmp_path / "run.ndjson"
    recording(path, saturated_from_min=20, minutes=30)
    settings = Settings()
    settings = dataclasses.replace(settings, detect=dataclasses.replace(
        settings.detect, models=False))
    tables = read_tables(path, tmp_path / "cache")
    assert tables["metrics"].num_rows == 30 * 6 * 2
    assert list((tmp_path / "cache").iterdir())  # decoded once, read back next time

    pipeline = OfflinePipeline(settings)
    pipeline.record = []
    result = pipeline.run(tables, step_ms=MIN)

    firing = [d for d in result.detections if d.state == "firing"]
    assert {d.service for d in firing} == {"cart"}
    assert min(d.time for d in firing) >= T0 + 20 * MIN
    rows = result.problem_rows()
    assert [r["root_causes"][0] for r in rows] == ["cart"]
    assert T0 + 20 * MIN <= rows[0]["opened_at"] <= T0 + 24 * MIN

    again = OfflinePipeline(settings, engines={}).rerun(
        orjson.loads(orjson.dumps(step)) for step in pipeline.record)
    assert [(r["opened_at"], r["root_causes"]) for r in again.problem_rows()] == \
        [(r["opened_at"], r["root_causes"]) for r in rows]


def test_the_end_of_the_recording_is_no_silence_of_the_services(tmp_path):
    """After the last record the run lets event time pass so that windows close; the
    heartbeats stopping there is the recording's end (a worker's event time never passes
    its last record), not every service going down: no absence alarm, no problem. A
    rerun leaves them out as well, of a recording made before the flush was marked too."""
    path = tmp_path / "run.ndjson"
    recording(path, saturated_from_min=40, minutes=30, heartbeat=True)
    settings = Settings()
    settings = dataclasses.replace(settings, detect=dataclasses.replace(
        settings.detect, models=False))
    pipeline = OfflinePipeline(settings)
    pipeline.record = []
    result = pipeline.run(read_tables(path), step_ms=MIN)
    assert result.detections == [] and result.problem_rows() == []
    flush = pipeline.record[-1]
    assert flush["data_end_ms"] == T0 + (30 * 6 - 1) * 10_000
    unmarked = [dict(step) for step in pipeline.record]
    del unmarked[-1]["data_end_ms"]
    for steps in (pipeline.record, unmarked):
        again = OfflinePipeline(settings, engines={}).rerun(
            orjson.loads(orjson.dumps(step)) for step in steps)
        assert again.detections == [] and again.problem_rows() == []


def test_absence_after_the_data_is_told_from_other_detections():
    """Only a firing absence alarm later than the data's end is the flush's artefact."""
    from pipeline.evaluate.offline import after_the_data
    from pipeline.events.detection import Detection

    def det(kind: str, t: int, state: str = "firing") -> Detection:
        return Detection(id=f"{kind}{t}{state}", time=t, detector="d", detector_version="1",
                         signal="metrics", service="cart", category="availability",
                         severity="high", state=state, title="t", observed=60.0,
                         threshold=60.0, window_start=t - MIN, window_end=t,
                         evidence={"kind": kind})

    end = T0 + 30 * MIN
    assert after_the_data(det("absence", end + MIN), end)
    assert not after_the_data(det("absence", end), end)  # silent before the data ended
    assert not after_the_data(det("absence", end + MIN, "resolved"), end)
    assert not after_the_data(det("threshold", end + MIN), end)  # a window that closed
    assert not after_the_data(det("absence", end + MIN), None)  # not the flush
