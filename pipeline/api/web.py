"""The worker's web pages as both sides see them, without Faust: paths, the headers a
client sends, the checks a page makes before it answers, and who answered.

- Every page wants ``Authorization: Bearer <worker.api_token>`` when a token is set.
- A POST page (the query page, rules reload) takes only ``application/json`` with the
  ``X-Tocsin-Client`` header: a browser cannot send either cross-site without a CORS
  preflight, which the worker never grants, so a web page cannot post to it.
- Query answers name the app id and the store that served them, and the client refuses
  an answer from a worker that serves another app or store.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import TocsinError
from pipeline.settings import Settings

QUERY_PATH = "/tocsin/query"
STATUS_PATH = "/tocsin/status"
RULES_RELOAD_PATH = "/tocsin/rules/reload"
SILENCES_PATH = "/tocsin/silences"
HEALTH_PATH = "/tocsin/health"
CLIENT_HEADER = "X-Tocsin-Client"


class WrongWorker(TocsinError):
    """The worker that answered serves another app id or another store."""


def client_headers(token: str = "", json_body: bool = False) -> dict[str, str]:
    """Headers of a call to a worker page: the client marker, the bearer token when one
    is configured, and the JSON content type for a body."""
    headers = {CLIENT_HEADER: "1"}
    if json_body:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


@dataclass(frozen=True)
class Refusal:
    """Why a page does not answer: the HTTP status and a reason for the caller."""

    status: int
    reason: str


def refuse(method: str, headers: Mapping[str, str], token: str) -> Refusal | None:
    """Why a page must not answer a request with ``method`` and ``headers``, or None.

    ``token`` is the configured ``worker.api_token`` (empty: none required).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    if token:
        given = lower.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode(), token.encode()):
            return Refusal(401, "this worker wants Authorization: Bearer <worker.api_token>")
    if method.upper() == "POST":
        content_type = lower.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            return Refusal(415, "send the body as application/json")
        if not lower.get(CLIENT_HEADER.lower()):
            return Refusal(403, f"send the {CLIENT_HEADER} header (no cross-site posts)")
    return None


def served_by(settings: Settings) -> dict[str, str]:
    """The app id and store a worker with ``settings`` names in its answers. The store is
    its kind, database and a fingerprint of its identity (the data directory's real path or
    the server's address): enough to tell two stores apart, without showing local paths."""
    store = settings.store
    kind = "chdb" if store.in_process else "server"
    digest = hashlib.sha256(store.identity.encode()).hexdigest()[:12]
    return {"app_id": settings.worker.app_id, "store": f"{kind}:{store.database}#{digest}"}


def check_served_by(answer: Mapping[str, Any], settings: Settings, url: str) -> None:
    """Raise :class:`WrongWorker` unless ``answer`` comes from a worker of the app id and
    store ``settings`` configure."""
    expected = served_by(settings)
    got = answer.get("served_by")
    if not isinstance(got, Mapping) or any(got.get(k) != v for k, v in expected.items()):
        shown = dict(got) if isinstance(got, Mapping) else "nothing"
        raise WrongWorker(
            f"the worker at {url} serves {shown}, not app {expected['app_id']!r} with store "
            f"{expected['store']!r}: refusing its answer (check TOCSIN_WORKER_WEB_PORT, "
            "TOCSIN_WORKER_APP_ID and the store settings)")
