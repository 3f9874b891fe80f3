"""``tocsin query``: run one read-only SQL statement wherever the data is.

With a ClickHouse server configured, the query goes to the server. With an in-process
store (the embedded backend, or ``chdb:///path``), the worker that owns the data directory
answers over its web server, and only a worker of the configured app id and store is
believed; when no worker runs, the data directory is opened directly. Either way the
statement takes the store's read-only path (``pipeline.store.readonly``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from pipeline.api.web import QUERY_PATH, STATUS_PATH, check_served_by, client_headers
from pipeline.errors import StoreError, TocsinError
from pipeline.settings import Settings
from pipeline.store import QueryResult, ReadLimits, ReadRefused, open_store


class WorkerUnreachable(TocsinError):
    """No worker answers on the configured web address."""


def worker_url(settings: Settings, path: str) -> str:
    """The address of one of the configured worker's pages."""
    return f"http://{settings.worker.web_host}:{settings.worker.web_port}{path}"


def call_worker(settings: Settings, path: str, payload: dict | None = None,
                timeout_s: float = 120.0) -> dict[str, Any]:
    """POST ``payload`` as JSON to a page of the running worker (GET when it is None) and
    return its JSON answer, with the client header and the configured bearer token.

    An error answer with problems (HTTP 400 with a ``problems`` list) or one that names
    who served it (``served_by``) is returned as is; other errors raise
    :class:`StoreError`, no worker :class:`WorkerUnreachable`.
    """
    url = worker_url(settings, path)
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(
        url, data=data, method="POST" if data is not None else "GET",
        headers=client_headers(settings.worker.api_token.reveal(), json_body=data is not None),
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read())
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        if answer.get("problems") or answer.get("served_by"):
            return answer
        raise StoreError(f"worker at {url}: {answer.get('error', exc.reason)}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        raise WorkerUnreachable(f"no worker answers at {url} (is `tocsin worker` running, "
                                "with the same TOCSIN_WORKER_WEB_PORT?)") from None


def worker_status(settings: Settings, timeout_s: float = 10.0) -> dict | None:
    """The running worker's status page, or None when no worker answers."""
    try:
        return call_worker(settings, STATUS_PATH, None, timeout_s)
    except (WorkerUnreachable, ValueError):
        return None


def caught_up(status: dict, end_ms: int, lateness_ms: int) -> bool:
    """Whether a worker's detectors and correlator have passed ``end_ms`` (the last
    record's time) as far as event time can go: every detector's watermark trails the
    newest record by the allowed lateness."""
    target = end_ms - lateness_ms
    detect = status.get("detect", {}).get("watermark_ms", -1)
    correlate = status.get("correlate", {}).get("watermark_ms", target)
    return detect >= target and correlate >= target - 60_000


def _ask_worker(settings: Settings, sql: str, timeout_s: float) -> QueryResult | None:
    """The worker's answer, or None when no worker listens on the configured port.

    Raises :class:`~pipeline.api.web.WrongWorker` when the worker serves another app id
    or store, :class:`ReadRefused` or :class:`StoreError` with the worker's reason.
    """
    try:
        answer = call_worker(settings, QUERY_PATH, {"sql": sql}, timeout_s)
    except WorkerUnreachable:
        return None
    check_served_by(answer, settings, worker_url(settings, QUERY_PATH))
    if answer.get("refused"):
        raise ReadRefused(answer.get("error", "refused"))
    if "error" in answer:
        raise StoreError(f"the worker refused: {answer['error']}")
    return QueryResult(answer["columns"], [tuple(r) for r in answer["rows"]])


def run_query(settings: Settings, sql: str, timeout_s: float = 120.0) -> QueryResult:
    """Run one read statement on the store and return its result.

    Raises :class:`ReadRefused` for a statement the read path does not serve (when the
    store is opened here) and :class:`StoreError` with the engine's or worker's reason.
    """
    if settings.store.in_process:
        answer = _ask_worker(settings, sql, timeout_s)
        if answer is not None:
            return answer
    store = open_store(settings.store, ReadLimits.from_settings(settings.query))
    try:
        store.ensure_schema()
        return store.read(sql)
    finally:
        store.close()


__all__ = ["ReadRefused", "WorkerUnreachable", "call_worker", "run_query", "worker_url"]
