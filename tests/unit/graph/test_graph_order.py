"""The service-graph step keeps pace with detection: the correlator takes in every edge
detection before its event time passes it, however far one batch moves detection's
watermark (a fast replay, a worker catching up), in the offline pipeline the bench runs
as in the worker."""

from __future__ import annotations

import dataclasses
import re

from pipeline.correlate.engine import Correlator
from pipeline.correlate.reorder import GRAPH_SOURCE, Reorder
from pipeline.evaluate.offline import OfflinePipeline
from pipeline.graph.pairing import latency_bin
from pipeline.settings import Settings
from pipeline.store.base import QueryResult

MIN = 60_000
T0 = 1_699_999_980_000  # a whole minute
SLOW = (T0 + 90 * MIN, T0 + 100 * MIN)  # frontend -> cart calls slow down


class SpanStore:
    """Answers the graph step's queries as a store holding a steady frontend -> cart edge
    from T0 (30 calls a minute, 5-11 ms; 400 ms while ``SLOW``)."""

    def __init__(self) -> None:
        self.pairing_ranges: list[tuple[int, int]] = []

    def query(self, sql: str) -> QueryResult:
        bounds = [int(x) for x in re.findall(r"toInt64\((-?\d+)\)", sql)]
        if "min(start)" in sql:
            return QueryResult(["first", "spans"], [(T0, 1)] if bounds[1] > T0 else [(0, 0)])
        if "peer.service'] AS callee" in sql and "metrics" in sql:
            return QueryResult(["caller", "callee", "bucket", "points"], [])
        lo, hi = bounds[0], bounds[1]  # the children's range comes first
        self.pairing_ranges.append((lo, hi))
        rows = []
        for bucket in range(max(lo, T0), hi, MIN):
            slow = SLOW[0] <= bucket < SLOW[1]
            latencies = [400.0 + i for i in range(30)] if slow else \
                [5.0 + i % 7 for i in range(30)]
            hist: dict[int, int] = {}
            for ms in latencies:
                hist[latency_bin(ms)] = hist.get(latency_bin(ms), 0) + 1
            ordered = sorted(latencies)
            rows.append(("frontend", "cart", bucket, "spans", 30, 0,
                         [ordered[15], ordered[28], ordered[29]],
                         (list(hist), list(hist.values()))))
        return QueryResult(["caller", "callee", "bucket", "source", "calls", "errors", "q",
                            "hist"], rows)


def test_edge_detections_reach_the_correlator_before_its_event_time_passes_them(
        monkeypatch):
    taken: list[tuple[int, int, str]] = []  # (correlator's event time, detection time, id)
    on_detections = Correlator.on_detections

    def spy(self, state, detections, now, *args, **kwargs):
        taken.extend((state.now_ms, d.time, d.detector) for d in detections)
        return on_detections(self, state, detections, now, *args, **kwargs)

    monkeypatch.setattr(Correlator, "on_detections", spy)
    settings = Settings()
    settings = dataclasses.replace(settings, detect=dataclasses.replace(
        settings.detect, models=False, allowed_lateness_ms=0))
    store = SpanStore()
    pipeline = OfflinePipeline(settings, engines={}, store=store)
    pipeline.step([], T0 + 2 * MIN)  # the worker's first watermark
    pipeline.step([], T0 + 3 * 60 * MIN)  # then detection jumps three hours in one batch
    for k in (1, 2):  # and moves on a little
        pipeline.step([], T0 + (180 + k) * MIN)
    edge = [t for t in taken if t[2] == "service-graph"]
    # slower, still slower five minutes on (a keep-alive: detect.keepalive_ms), back to usual
    assert {t[1] for t in edge} == {SLOW[0] + MIN, SLOW[0] + 6 * MIN, SLOW[1] + MIN}
    assert all(now <= time for now, time, _ in edge), edge
    # the step catches up in bounded queries, from the first stored span
    assert store.pairing_ranges[0][0] == T0
    assert all(hi - lo <= 60 * MIN for lo, hi in store.pairing_ranges)
    assert store.pairing_ranges[-1][1] == T0 + 182 * MIN
    problems = list(pipeline.result.problems.values())
    assert [p.opened_at for p in problems] == [SLOW[0] + MIN], problems


def test_the_graph_holds_the_correlator_back_until_it_lags_the_slowest_detect_worker():
    reorder = Reorder().tick("detect-a", T0 + 40 * MIN).tick("detect-b", T0 + 10 * MIN)
    reorder = reorder.tick(GRAPH_SOURCE, T0 + 9 * MIN)
    # b is within the 30 min allowed lag of a; the graph follows b, a bucket behind it,
    # and holds the correlator back though it lags a by more than 30 min
    assert reorder.watermark() == T0 + 9 * MIN
    # the graph is never the lead, and a stopped graph step stops holding the others
    stopped = Reorder().tick("detect-a", T0 + 60 * MIN).tick(GRAPH_SOURCE, T0 + 10 * MIN)
    assert stopped.watermark() == T0 + 60 * MIN
    assert Reorder().tick(GRAPH_SOURCE, T0).watermark() == T0
