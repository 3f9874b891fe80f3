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


def recording(path, saturated_from_min: int, minutes: int) -> None:
    """Two pods' CPU every 10 s; one goes over 80 % of its limit from a given minute."""
    lines = []
    for i in range(minutes * 6):
        t = T0 + i * 10_000
        for service, host in (("cart", "cart-1"), ("ads", "ads-1")):
            hot = service == "cart" and t >= T0 + saturated_from_min * MIN
            lines.append(orjson.dumps({
                "type": "metric", "time": t, "service.name": service, "host.name": host,
                "name": "k8s.pod.cpu.utilization", "value": 95.0 if hot else 20.0 + i % 3,
                "unit": "%", "attributes": {}}))
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
