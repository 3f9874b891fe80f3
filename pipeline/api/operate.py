"""What an operator does with problems: list, inspect, acknowledge, silence, judge.

Reads come from the store (``problems`` keeps every version; ``final = 1`` shows the
latest). Acknowledgements and silences are events on the control topic, keyed by scope,
so every worker sees them in order and they survive restarts in the correlator's state.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from pipeline.api.query import run_query
from pipeline.correlate import ControlEvent, Recurrence, Silence, SilenceError
from pipeline.errors import TocsinError
from pipeline.events import durations
from pipeline.events.times import format_ms
from pipeline.kafka.transport import KafkaUnavailable, client_kwargs, ensure_topics
from pipeline.settings import Settings
from pipeline.store import QueryResult


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def list_problems(settings: Settings, include_resolved: bool = True,
                  limit: int = 20) -> QueryResult:
    """Open problems first, then the most recently updated ones."""
    db = settings.store.database
    where = "" if include_resolved else "WHERE status != 'resolved' "
    return run_query(settings, (
        "SELECT id, status, severity, category, title, arrayStringConcat(affected, ', ') AS "
        "affected, JSONExtractString(root_causes, 1, 'service') AS root_cause, "
        "formatDateTime(opened_at, '%Y-%m-%d %H:%i:%S') AS opened, "
        "formatDateTime(updated_at, '%H:%i:%S') AS updated, version, "
        "ifNull(f.verdict, '') AS feedback "
        f"FROM {db}.problems AS p LEFT JOIN (SELECT problem_id, argMax(verdict, time) AS "
        f"verdict FROM {db}.feedback GROUP BY problem_id) AS f ON f.problem_id = p.id "
        f"{where}ORDER BY status = 'resolved', updated_at DESC LIMIT {int(limit)}"))


def problem_detail(settings: Settings, problem_id: str) -> dict[str, Any]:
    """The latest version of one problem, JSON fields decoded."""
    db = settings.store.database
    result = run_query(settings, f"SELECT * FROM {db}.problems WHERE id = {_quote(problem_id)}")
    if not result.rows:
        raise TocsinError(f"no problem with id {problem_id!r}")
    row = dict(zip(result.columns, result.rows[0], strict=True))
    if isinstance(row.get("confidence"), float):  # a Float32 column: 0.9900000095367432
        row["confidence"] = round(row["confidence"], 3)
    for key in ("root_causes", "diagnostic_plan", "runbook"):
        if isinstance(row.get(key), str) and row[key]:
            row[key] = json.loads(row[key])
    links = run_query(settings, (
        f"SELECT detection_id, service, role, time FROM {db}.problem_detections "
        f"WHERE problem_id = {_quote(problem_id)} ORDER BY time"))
    row["members"] = [dict(zip(links.columns, r, strict=True)) for r in links.rows]
    row["feedback"] = problem_feedback(settings, problem_id)
    return row


def problem_feedback(settings: Settings, problem_id: str) -> list[dict[str, Any]]:
    """Every piece of feedback given on a problem, oldest first (who, when, verdict)."""
    db = settings.store.database
    result = run_query(settings, (
        "SELECT formatDateTime(time, '%Y-%m-%dT%H:%i:%SZ') AS time, author, verdict, "
        f"root_cause, comment FROM {db}.feedback WHERE problem_id = {_quote(problem_id)} "
        "ORDER BY time, author"))
    return [dict(zip(result.columns, r, strict=True)) for r in result.rows]


def give_feedback(settings: Settings, problem_id: str, verdict: str, by: str,
                  root_cause: str = "", comment: str = "") -> ControlEvent:
    """Publish an operator's verdict on a stored problem; an unknown problem id is
    refused (:class:`TocsinError`) before anything is sent."""
    db = settings.store.database
    known = run_query(settings, f"SELECT count() FROM {db}.problems "
                                f"WHERE id = {_quote(problem_id)}").scalar()
    if not known:
        raise TocsinError(f"no problem with id {problem_id!r} in {db}.problems (see "
                          "`tocsin problems`); feedback is only taken on stored problems")
    event = ControlEvent.feedback(problem_id, verdict, by, int(time.time() * 1000),
                                  root_cause, comment, scope=settings.correlate.scope)
    asyncio.run(_send_control(settings, event))
    return event


async def _send_control(settings: Settings, event: ControlEvent) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    await ensure_topics(settings)
    producer = AIOKafkaProducer(**client_kwargs(settings.kafka), acks="all",
                                enable_idempotence=True,
                                max_request_size=settings.kafka.max_message_bytes)
    try:
        await producer.start()
        await producer.send_and_wait(settings.topics.control, event.to_json(),
                                     key=settings.correlate.scope.encode())
    except KafkaError as exc:
        raise KafkaUnavailable(f"sending to {settings.topics.control} on "
                               f"{settings.kafka.bootstrap_servers}: {exc}") from exc
    finally:
        await producer.stop()


def problem_status(settings: Settings, problem_id: str) -> tuple[str, str] | None:
    """The status of a problem's latest version and when it was resolved (``""`` when
    it is not), or None when no problem has that id."""
    db = settings.store.database
    result = run_query(settings, (
        "SELECT status, ifNull(formatDateTime(resolved_at, '%Y-%m-%d %H:%i:%S'), '') "
        f"FROM {db}.problems WHERE id = {_quote(problem_id)} ORDER BY version DESC LIMIT 1"))
    return (str(result.rows[0][0]), str(result.rows[0][1])) if result.rows else None


def check_ackable(problem_id: str, status: tuple[str, str] | None) -> None:
    """Raise :class:`TocsinError` unless a problem in ``status`` can be acknowledged."""
    if status is None:
        raise TocsinError(f"no problem with id {problem_id!r} (`tocsin problems` lists them)")
    if status[0] == "resolved":
        raise TocsinError(f"problem {problem_id} is resolved (at {status[1]} UTC): there is "
                          "nothing to acknowledge")


def acknowledge(settings: Settings, problem_id: str, by: str, comment: str) -> ControlEvent:
    """Publish an acknowledgement of an open problem; :class:`TocsinError` when there is
    no such problem or it is resolved."""
    check_ackable(problem_id, problem_status(settings, problem_id))
    event = ControlEvent.ack(problem_id, by, comment, int(time.time() * 1000),
                             scope=settings.correlate.scope)
    asyncio.run(_send_control(settings, event))
    return event


def create_silence(settings: Settings, matchers: Sequence[str], duration: str, by: str,
                   comment: str, starts: str = "", every: str = "") -> Silence:
    """Publish a silence: one-off (from now or ``starts`` for ``duration``) or recurring
    (``every``: a cron expression or ``FREQ=...`` rule, each window ``duration`` long)."""
    from pipeline.events.times import parse_rfc3339_ms

    now = int(time.time() * 1000)
    start = parse_rfc3339_ms(starts) if starts else now
    try:
        length = durations.parse_duration_ms(duration, ints_as_ms=True)
    except durations.DurationError as exc:
        raise SilenceError(f"silence --duration: {exc}") from None
    if every:
        silence = Silence.create(matchers, start, None,
                                 recurrence=Recurrence.parse(every, length),
                                 comment=comment, created_by=by, created_at=now)
    else:
        silence = Silence.create(matchers, start, start + length, comment=comment,
                                 created_by=by, created_at=now)
    event = ControlEvent.create_silence(silence, now, scope=settings.correlate.scope)
    asyncio.run(_send_control(settings, event))
    return silence


def check_expirable(silence_id: str, silences: Sequence[dict[str, Any]], now_ms: int) -> None:
    """Raise :class:`TocsinError` unless ``silences`` (the worker's) hold ``silence_id``
    and it has not ended by ``now_ms``."""
    found = next((s for s in silences if s.get("id") == silence_id), None)
    if found is None:
        raise TocsinError(f"no silence with id {silence_id!r} (`tocsin silence list` "
                          "shows them)")
    silence = Silence.from_wire({k: v for k, v in found.items() if k != "scope"})
    if silence.ended(now_ms):
        raise TocsinError(f"silence {silence_id} already ended at "
                          f"{format_ms(silence.end_ms or 0)}")


def expire_silence(settings: Settings, silence_id: str, by: str, force: bool = False) -> None:
    """Publish the end of a silence, now. The running worker is asked first whether the
    silence exists and still runs (:class:`TocsinError` if not); ``force`` sends the
    expiry even when no worker answers."""
    from pipeline.api.query import WorkerUnreachable

    now_ms = int(time.time() * 1000)
    try:
        check_expirable(silence_id, list_silences(settings), now_ms)
    except WorkerUnreachable as exc:
        if not force:
            raise TocsinError(f"cannot check silence {silence_id}: {exc}; pass --force to "
                              "send the expiry anyway") from None
    event = ControlEvent.expire_silence(silence_id, by, now_ms, scope=settings.correlate.scope)
    asyncio.run(_send_control(settings, event))


def list_silences(settings: Settings) -> list[dict[str, Any]]:
    """The silences the running worker holds (active, future and recently ended)."""
    from pipeline.api.query import WorkerUnreachable, call_worker, worker_url
    from pipeline.api.web import SILENCES_PATH

    try:
        return call_worker(settings, SILENCES_PATH, timeout_s=30)["silences"]
    except WorkerUnreachable:
        raise WorkerUnreachable(f"no worker answers at {worker_url(settings, SILENCES_PATH)}"
                                ": silences live in the running worker's correlator state"
                                ) from None

