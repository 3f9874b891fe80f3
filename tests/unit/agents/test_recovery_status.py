"""The status says where table recovery stands per changelog partition: its end, the
offset applied last, and whether (and when) an event of it arrived since recovery began,
so a recovery that waits long names the partition and the stage it waits at."""

from __future__ import annotations

import asyncio
from collections import Counter

from faust.types import TP

from pipeline.agents.app import create_pipeline
from pipeline.agents.recovery import recovery_state
from pipeline.settings import load_settings

ACTIVE_0, ACTIVE_1 = TP("app-state-changelog", 0), TP("app-state-changelog", 1)
STANDBY, GONE = TP("app-state-changelog", 2), TP("app-state-changelog", 3)


class _Recovery:
    """The fields of Faust's ``Recovery`` the status reads, as a worker's holds them."""

    def __init__(self) -> None:
        self.in_recovery = True
        self._recovery_started_at = 100.0
        self._recovery_ended_at = None
        self._signal_recovery_end = asyncio.Event()
        self.active_tps = {ACTIVE_0, ACTIVE_1}
        self.standby_tps = {STANDBY}
        self.active_highwaters = Counter({ACTIVE_0: 40, ACTIVE_1: 25})
        self.active_offsets = Counter({ACTIVE_0: 40, ACTIVE_1: -1})
        self._active_events_received_at = {ACTIVE_0: 430.0}
        self.standby_highwaters = Counter({STANDBY: 9})
        # Faust keeps the offsets of a partition no longer standby (not revoked): not shown
        self.standby_offsets = Counter({STANDBY: 3, GONE: 7})
        self._standby_events_received_at: dict[TP, float] = {}


class _Tables:
    def __init__(self) -> None:
        self._recovery = _Recovery()
        self._changelog_queue: asyncio.Queue = asyncio.Queue()
        self._changelog_queue.put_nowait("event")


class _App:
    def __init__(self) -> None:
        self.tables = _Tables()


def test_a_partition_waiting_since_recovery_began_is_named():
    state = recovery_state(_App(), now_s=460.0)
    assert state["in_recovery"] and state["started_s_ago"] == 360.0
    assert state["ended_s_ago"] is None and state["end_signalled"] is False
    assert state["changelog_queue"] == 1
    assert state["changelog_refused"] is None  # Faust's own queue counts nothing
    active = {row["partition"]: row for row in state["active"]}
    assert active[0] == {"topic": "app-state-changelog", "partition": 0, "highwater": 40,
                         "offset": 40, "remaining": 0, "event_received": True,
                         "event_age_s": 30.0}
    waiting = active[1]
    assert (waiting["remaining"], waiting["event_received"], waiting["event_age_s"]) == (
        26, False, None)
    assert [(row["partition"], row["remaining"]) for row in state["standby"]] == [(2, 6)]


def test_without_a_clock_no_ages():
    state = recovery_state(_App())
    assert state["started_s_ago"] is None
    assert [row["event_age_s"] for row in state["active"]] == [None, None]
    assert state["active"][0]["event_received"]


def test_before_the_tables_start_nothing(tmp_path):
    settings = load_settings(environ={"TOCSIN_STORE_PATH": str(tmp_path / "store"),
                                      "TOCSIN_WORKER_DATA_DIR": str(tmp_path / "data")})
    pipeline = create_pipeline(settings)
    try:
        assert recovery_state(pipeline.app, 1.0) == {}
    finally:
        pipeline.store.close()
