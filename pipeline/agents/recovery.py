"""Where Faust's table recovery stands, for the status snapshot.

A worker restoring table state waits until every active changelog partition is read up
to the end it measured when recovery began (Faust's ``Recovery``: ``highwater`` is the
last offset then, ``offset`` the last one applied to the table). When it waits long
(Faust logs "No event received for active tp ... since recovery start"), this section
and the ``consumer`` section of the status (``pipeline.agents.partitions``) together
say where the changelog partition stands: sought and fetched (``position`` moving,
``fetched`` counting), handed to the changelog queue (``delivered``), dropped by the
fetch loop (``dropped``; read again after recovery's next seek) or by Faust's own
filter (``fetched`` past ``delivered`` + ``dropped``), received by recovery
(``event_age_s``), applied (``offset``).

Reading Faust's fields from the web handler is a snapshot, not a transaction.
"""

from __future__ import annotations

from typing import Any


def _rows(tps: Any, highwaters: Any, offsets: Any, received_at: dict[Any, float],
          now_s: float | None) -> list[dict[str, Any]]:
    rows = []
    for tp in sorted(tps):
        highwater = highwaters.get(tp)
        offset = offsets.get(tp)
        last = received_at.get(tp)
        rows.append({
            "topic": tp.topic, "partition": tp.partition,
            "highwater": highwater,  # last offset when recovery began (-1: empty)
            "offset": offset,  # last offset applied (None or -1: none yet)
            "remaining": (highwater - offset
                          if highwater is not None and offset is not None else None),
            "event_received": last is not None,  # since this recovery began
            "event_age_s": (round(now_s - last, 3)
                            if last is not None and now_s is not None else None),
        })
    return rows


def recovery_state(app: Any, now_s: float | None = None) -> dict[str, Any]:
    """Table recovery's state: whether it runs, since when (seconds, from the monotonic
    ``now_s``), and per active and standby changelog partition its end, applied offset
    and last event received (see the module doc); ``{}`` before the tables start."""
    tables = getattr(app, "tables", None)
    recovery = getattr(tables, "_recovery", None) if tables is not None else None
    if recovery is None:
        return {}
    started = getattr(recovery, "_recovery_started_at", None)
    ended = getattr(recovery, "_recovery_ended_at", None)
    signal_end = getattr(recovery, "_signal_recovery_end", None)
    queue = getattr(tables, "_changelog_queue", None)
    return {
        "in_recovery": bool(getattr(recovery, "in_recovery", False)),
        "started_s_ago": (round(now_s - started, 3)
                          if started is not None and now_s is not None else None),
        "ended_s_ago": (round(now_s - ended, 3)
                        if ended is not None and now_s is not None else None),
        "end_signalled": bool(signal_end.is_set()) if signal_end is not None else None,
        "changelog_queue": queue.qsize() if queue is not None else None,
        # records of an earlier generation kept off the queue (pipeline.agents.changelog)
        "changelog_refused": getattr(queue, "refused", None),
        "active": _rows(getattr(recovery, "active_tps", ()),
                        getattr(recovery, "active_highwaters", {}),
                        getattr(recovery, "active_offsets", {}),
                        getattr(recovery, "_active_events_received_at", {}), now_s),
        "standby": _rows(getattr(recovery, "standby_tps", ()),
                         getattr(recovery, "standby_highwaters", {}),
                         getattr(recovery, "standby_offsets", {}),
                         getattr(recovery, "_standby_events_received_at", {}), now_s),
    }
