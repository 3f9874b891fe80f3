"""The evaluation's detections read back from the embedded store: when each episode began."""

from __future__ import annotations

from pathlib import Path

from pipeline.evaluate.load import load_detections
from pipeline.events.detection import Detection, detections_table
from pipeline.simulate.labels import Labels
from pipeline.store.embedded import EmbeddedStore

BASE = 1_764_000_000_000


def detection(ident: str, time: int, evidence: dict) -> Detection:
    return Detection(id=ident, time=time, detector="r", detector_version="1",
                     signal="metrics", service="svc", category="resource", severity="high",
                     state="firing", title="t", observed=1.0, threshold=2.0,
                     window_start=BASE, window_end=BASE + 60_000, evidence=evidence)


def test_a_keepalive_reads_back_with_when_its_episode_began(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store", ttl_days=0)
    store.ensure_schema()
    try:
        store.insert_arrow("detections", detections_table([
            detection("ka", BASE + 600_000, {"firing_since": BASE + 1_000, "keepalive": True}),
            detection("new", BASE + 120_000, {})]))
        rows = load_detections(store.query, "tocsin", Labels(1, BASE, BASE + 3_600_000), 0)
    finally:
        store.close()
    assert rows == [{"id": "new", "time": BASE + 120_000, "service": "svc",
                     "since": BASE + 120_000},
                    {"id": "ka", "time": BASE + 600_000, "service": "svc", "since": BASE + 1_000}]
