"""Alert messages for ``tocsin.alerts``: CloudEvents 1.0, structured JSON mode.

One message per alerted decision (``Decision.notify``), keyed by problem id
(:func:`alert_key`) so one problem's messages stay ordered in one partition:

- ``specversion``: ``"1.0"``
- ``id``: ``<problem id>.<version>`` (a repeat adds ``.repeat.<time ms>``); one id per
  change, so consumers dedupe on it
- ``source``: ``/tocsin/correlator/<scope>``
- ``type``: ``io.tocsin.problem.`` + ``opened``, ``updated``, ``escalated``,
  ``acknowledged``, ``reopened``, ``resolved`` or ``repeated`` (a merge is a ``resolved``
  with ``data.resolution == "merged"`` and ``data.merged_into``)
- ``subject``: the problem id
- ``time``: event time of the change, RFC 3339 UTC
- ``datacontenttype``: ``application/json``
- ``problemversion`` (extension): the problem's version; order one problem's messages by it
- ``severity``, ``scope`` (extensions): for routing without parsing ``data``
- ``data``: the whole problem (``detection_ids``, ``members``, ``root_causes``,
  ``diagnostic_plan``, ``runbook`` ...) plus ``change: {kind, reason}``; when that is
  over ``kafka.max_message_bytes``, ``members`` and ``detection_ids`` are cut and
  ``data.truncated`` says how many there were (``{"members": n, "detection_ids": n,
  "bytes": full size}``): the ``problems`` and ``problem_detections`` tables have them all
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

from pipeline.events.problem import Decision
from pipeline.events.sizes import MessageTooLarge
from pipeline.events.times import format_ms

SPECVERSION = "1.0"
TYPE_PREFIX = "io.tocsin.problem."
ALERT_TYPES = tuple(TYPE_PREFIX + k for k in ("opened", "updated", "escalated", "acknowledged",
                                              "reopened", "resolved", "repeated"))


def alert_type(kind: str) -> str:
    """The CloudEvents ``type`` of a decision kind (``merged`` is a ``resolved``)."""
    return TYPE_PREFIX + ("resolved" if kind == "merged" else kind)


def alert_id(decision: Decision) -> str:
    """The CloudEvents ``id`` of a decision's alert: ``<problem id>.<version>``, a repeat
    with ``.repeat.<time ms>``."""
    ident = f"{decision.problem.id}.{decision.problem.version}"
    if decision.kind == "repeated":
        ident += f".repeat.{decision.time_ms}"
    return ident


def problem_changes_table(decisions: Sequence[Decision]) -> pa.Table:
    """Decisions as rows of ``problem_changes``: a problem's history, each row naming the
    CloudEvent its change went out as (``event_id`` and ``event_type`` empty when it
    alerted nothing)."""
    d = decisions
    return pa.table({
        "problem_id": pa.array([x.problem.id for x in d], pa.string()),
        "version": pa.array([x.problem.version for x in d], pa.uint32()),
        "time": pa.array([x.time_ms for x in d], pa.timestamp("ms", tz="UTC")),
        "kind": pa.array([x.kind for x in d], pa.string()),
        "reason": pa.array([x.reason for x in d], pa.string()),
        "event_id": pa.array([alert_id(x) if x.notify else "" for x in d], pa.string()),
        "event_type": pa.array([alert_type(x.kind) if x.notify else "" for x in d],
                               pa.string()),
        "status": pa.array([x.problem.status for x in d], pa.string()),
        "severity": pa.array([x.problem.severity for x in d], pa.string()),
        "acknowledged_by": pa.array([x.problem.acknowledged_by for x in d], pa.string()),
    })


def alert_event(decision: Decision) -> dict[str, Any]:
    """The CloudEvent of a decision as a dict (see the module docstring)."""
    p = decision.problem
    ident = alert_id(decision)
    data = p.to_wire()
    data.pop("links", None)  # detection_ids says the same, shorter
    data["change"] = {"kind": decision.kind, "reason": decision.reason}
    return {
        "specversion": SPECVERSION,
        "id": ident,
        "source": f"/tocsin/correlator/{p.scope}",
        "type": alert_type(decision.kind),
        "subject": p.id,
        "time": format_ms(decision.time_ms),
        "datacontenttype": "application/json",
        "problemversion": p.version,
        "severity": p.severity,
        "scope": p.scope,
        "data": data,
    }


def alert_envelope(decision: Decision) -> bytes:
    """The message value for ``tocsin.alerts`` (publish only ``notify`` decisions)."""
    return orjson.dumps(alert_event(decision))


def alert_message(decision: Decision, max_value_bytes: int) -> bytes:
    """:func:`alert_envelope` within ``max_value_bytes``: the first members and the latest
    detection ids only, as many as fit (halving), with ``data.truncated`` counting them
    all. Raises :class:`~pipeline.events.sizes.MessageTooLarge` if even none fit."""
    event = alert_event(decision)
    value = orjson.dumps(event)
    if len(value) <= max_value_bytes:
        return value
    data = event["data"]
    members, ids = data["members"], data["detection_ids"]
    data["truncated"] = {"members": len(members), "detection_ids": len(ids),
                         "bytes": len(value)}
    keep = max(len(members), len(ids))
    while keep:
        keep //= 2
        data["members"], data["detection_ids"] = members[:keep], ids[len(ids) - keep:]
        value = orjson.dumps(event)
        if len(value) <= max_value_bytes:
            return value
    raise MessageTooLarge(f"alert {event['id']} is {len(value)} bytes without members, over "
                          f"the {max_value_bytes} bytes a message may carry")


def alert_key(decision: Decision) -> bytes:
    """The message key: the problem id."""
    return decision.problem.id.encode()
