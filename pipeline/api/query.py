"""``tocsin query``: run a read-only SQL statement wherever the data is.

With a ClickHouse server configured, the query goes to the server. With the embedded
store, the worker that owns the data directory answers over its web server; when no
worker runs, the data directory is opened directly.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from pipeline.api.paths import QUERY_PATH
from pipeline.errors import StoreError, TocsinError
from pipeline.settings import Settings
from pipeline.store import QueryResult, is_read_only, open_store


class WorkerUnreachable(TocsinError):
    """No worker answers on the configured web address."""


def call_worker(settings: Settings, path: str, payload: dict, timeout_s: float = 120.0) -> dict:
    """POST ``payload`` to a page of the running worker and return its JSON answer.

    An error answer with problems (HTTP 400 with a ``problems`` list) is returned as is;
    other errors raise :class:`StoreError`, no worker :class:`WorkerUnreachable`.
    """
    url = f"http://{settings.worker.web_host}:{settings.worker.web_port}{path}"
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read())
        except ValueError:
            answer = {}
        if answer.get("problems"):
            return answer
        raise StoreError(f"worker at {url}: {answer.get('error', exc.reason)}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        raise WorkerUnreachable(f"no worker answers at {url} (is `tocsin worker` running, "
                                "with the same TOCSIN_WORKER_WEB_PORT?)") from None


def _ask_worker(settings: Settings, sql: str, timeout_s: float) -> QueryResult | None:
    """The worker's answer, or None when no worker listens on the configured port."""
    try:
        payload = call_worker(settings, QUERY_PATH, {"sql": sql}, timeout_s)
    except WorkerUnreachable:
        return None
    return QueryResult(payload["columns"], [tuple(r) for r in payload["rows"]])


def run_query(settings: Settings, sql: str, timeout_s: float = 120.0) -> QueryResult:
    """Run a read statement on the store and return its result."""
    if not is_read_only(sql):
        raise TocsinError(
            "tocsin query runs read statements only (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, "
            "EXISTS)"
        )
    if settings.store.embedded:
        answer = _ask_worker(settings, sql, timeout_s)
        if answer is not None:
            return answer
    store = open_store(settings.store)
    try:
        store.ensure_schema()
        return store.query(sql)
    finally:
        store.close()
