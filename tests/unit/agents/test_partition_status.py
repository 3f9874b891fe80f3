"""The status names where each input partition stands in the worker's consumer:
fetched, delivered to the streams, acknowledged, committed."""

from __future__ import annotations

from faust.types import TP
from mode.utils.queues import FlowControlEvent

from pipeline.agents.app import create_pipeline
from pipeline.agents.partitions import DeliveryLog, partition_states
from pipeline.settings import load_settings


def test_no_consumer_started_no_rows(tmp_path):
    settings = load_settings(environ={"TOCSIN_STORE_PATH": str(tmp_path / "store"),
                                      "TOCSIN_WORKER_DATA_DIR": str(tmp_path / "data")})
    pipeline = create_pipeline(settings)
    try:
        assert partition_states(pipeline.app, None) == {}
    finally:
        pipeline.store.close()


class _Consumer:
    """The consumer fields the status reads, as a worker's consumer holds them."""

    def __init__(self, assigned: set[TP]) -> None:
        self._assigned = assigned
        self._paused_partitions = {TP("t.logs", 0)}
        self._active_partitions = {TP("t.metrics", 0)}
        self._buffered_partitions: set[TP] = set()
        self._committed_offset = {TP("t.metrics", 0): 15}
        self._acked = {TP("t.metrics", 0): [40, 41]}
        self.flow_active = True

    def assignment(self) -> set[TP]:
        return self._assigned

    def highwater(self, tp: TP) -> int:
        return 70


class _App:
    def __init__(self, consumer: _Consumer) -> None:
        self._consumer = consumer
        self.consumer_generation_id = 3
        self.flow_control = FlowControlEvent()


def test_the_status_says_where_each_partition_stands():
    delivery = DeliveryLog()
    for offset in range(10, 70):
        delivery.delivered("t.metrics", 0, offset, 3)
    delivery.dropped("t.metrics", 0, 9, flow_stopped=False)
    consumer = _Consumer({TP("t.metrics", 0), TP("t.logs", 0), TP("app-rules-changelog", 0)})
    state = partition_states(_App(consumer), delivery)
    assert state["generation"] == 3 and state["flow_active"]
    assert state["flow_control_active"] is False  # suspended until the first resume
    rows = {r["topic"]: r for r in state["partitions"]}
    assert set(rows) == {"t.metrics", "t.logs", "app-rules-changelog"}
    assert rows["app-rules-changelog"]["changelog"] and not rows["t.metrics"]["changelog"]
    metrics = rows["t.metrics"]
    assert (metrics["paused"], metrics["active"], metrics["highwater"],
            metrics["committed"]) == (False, True, 70, 15)
    assert metrics["position"] is None  # no client behind this consumer: unknown
    assert metrics["acked"] == {"count": 2, "min": 40, "max": 41}
    assert (metrics["delivered"], metrics["last_offset"], metrics["last_generation"]) == (
        60, 69, 3)
    assert metrics["dropped"] == {"flow_stopped": 0, "old_generation": 1}
    logs = rows["t.logs"]
    assert logs["paused"] and not logs["active"] and logs["delivered"] == 0


def test_records_faust_filtered_out_show_as_fetched_but_not_delivered():
    delivery = DeliveryLog()
    delivery.fetched("app-rules-changelog", 0, 19, 20)  # offsets 0..19 returned
    for offset in range(0, 5):
        delivery.delivered("app-rules-changelog", 0, offset, 3)
    delivery.dropped("app-rules-changelog", 0, 5, flow_stopped=True)
    consumer = _Consumer({TP("app-rules-changelog", 0)})
    row = partition_states(_App(consumer), delivery)["partitions"][0]
    assert (row["fetched"], row["last_fetched_offset"]) == (20, 19)
    assert row["delivered"] + sum(row["dropped"].values()) == 6  # 14 filtered by getmany
