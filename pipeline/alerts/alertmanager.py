"""A ``tocsin.alerts`` CloudEvent as an alert of Alertmanager's v2 API (``POST /api/v2/alerts``).

Labels (what Alertmanager routes, groups, silences and inhibits on, and its identity of
an alert):

==============  ============================================================
``alertname``   ``notify.alertname`` (``TocsinProblem``)
``problem_id``  the problem id (``p-…``): one Alertmanager alert per problem
``severity``    ``low``, ``medium``, ``high`` or ``critical``
``category``    ``availability``, ``performance``, ``resource`` …
``service``     the top root-cause candidate's service (else the first affected one)
``scope``       the correlator's scope (environment / cluster)
==============  ============================================================

plus ``notify.labels`` (static ``name=value`` pairs). Every affected service is in the
``services`` annotation: a label holding the list would change, and with it the alert's
identity, each time the problem spread.

Annotations: ``summary`` (the title), ``description``, ``root_cause``, ``services``,
``hosts``, ``runbook`` (its title), ``runbook_url``, ``status`` (``open`` or
``acknowledged by …``), ``confidence``, ``problem_version`` and ``event_id``.

Times follow Prometheus: ``startsAt`` is when the problem opened; an open problem's
``endsAt`` is ``now + 4 × notify.resend_interval_ms`` and the alert is re-posted every
``resend_interval_ms`` while open, so Alertmanager resolves it by itself if Tocsin stops
sending; a resolved problem's ``endsAt`` is its resolve time, never later than ``now``
(``startsAt`` is moved back to it if the problem opened later, as Alertmanager refuses an
alert that ends before it starts). ``generatorURL`` is the problem's page on the worker's web
console (``<console>/console/problems/<id>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from pipeline.alerts.cloudevents import TYPE_PREFIX
from pipeline.errors import TocsinError
from pipeline.events.times import format_ms
from pipeline.settings import NotifySettings

VALIDITY_RESENDS = 4  # an open alert is valid for this many resend intervals (Prometheus: 4)
CONSOLE_PROBLEM_PATH = "/console/problems/"


class AlertFormatError(TocsinError):
    """A message on the alerts topic is not a Tocsin problem CloudEvent."""


def parse_alert(value: bytes | None) -> dict[str, Any]:
    """The CloudEvent in a message value, checked for what delivery reads; raises
    :class:`AlertFormatError` saying what is wrong."""
    if not value:
        raise AlertFormatError("empty message: expected a CloudEvent")
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise AlertFormatError(f"not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise AlertFormatError(f"expected a JSON object, got {type(event).__name__}")
    kind = event.get("type")
    if not isinstance(kind, str) or not kind.startswith(TYPE_PREFIX):
        raise AlertFormatError(f"type {kind!r} is not {TYPE_PREFIX}<change>")
    data = event.get("data")
    if not isinstance(data, dict):
        raise AlertFormatError("data is missing or not an object")
    for name, types in (("id", str), ("status", str), ("opened_at", int), ("version", int)):
        if not isinstance(data.get(name), types) or isinstance(data.get(name), bool):
            raise AlertFormatError(f"data.{name} is missing or not a {types.__name__}: "
                                   f"{data.get(name)!r}")
    if not isinstance(event.get("id"), str):
        raise AlertFormatError(f"id is missing or not a string: {event.get('id')!r}")
    return event


def console_base(settings: NotifySettings, web_host: str, web_port: int) -> str:
    """The web console's base URL: ``notify.console_url``, else the worker's web address."""
    if settings.console_url:
        return settings.console_url.rstrip("/")
    host = "127.0.0.1" if web_host in ("0.0.0.0", "", "::") else web_host
    return f"http://{host}:{web_port}"


def problem_url(console: str, problem_id: str) -> str:
    """The problem's page on the web console."""
    return f"{console}{CONSOLE_PROBLEM_PATH}{problem_id}"


def static_labels(settings: NotifySettings) -> dict[str, str]:
    """``notify.labels`` as a dict."""
    pairs = (label.partition("=") for label in settings.labels)
    return {name.strip(): value.strip() for name, _, value in pairs}


def alert_labels(event: Mapping[str, Any], settings: NotifySettings) -> dict[str, str]:
    """The Alertmanager labels of an alert event (see the module docstring); empty values
    are left out, as Alertmanager drops them."""
    data = event["data"]
    causes = data.get("root_causes") or []
    affected = data.get("affected") or []
    service = causes[0].get("service", "") if causes else (affected[0] if affected else "")
    labels = {
        **static_labels(settings),
        "alertname": settings.alertname,
        "problem_id": data["id"],
        "severity": str(data.get("severity") or event.get("severity") or ""),
        "category": str(data.get("category") or ""),
        "service": str(service),
        "scope": str(data.get("scope") or event.get("scope") or ""),
    }
    return {k: v for k, v in labels.items() if v}


def root_cause_text(data: Mapping[str, Any]) -> str:
    """The top root-cause candidate in one line: service, host, score and evidence."""
    causes = data.get("root_causes") or []
    if not causes:
        return ""
    top = causes[0]
    where = top.get("service", "") + (f" on {top['host']}" if top.get("host") else "")
    text = f"{where} (score {float(top.get('score', 0.0)):.2f})"
    evidence = [str(e) for e in top.get("evidence", [])][:3]
    return text + (": " + "; ".join(evidence) if evidence else "")


def runbook_link(data: Mapping[str, Any], settings: NotifySettings, console: str) -> str:
    """``notify.runbook_url`` filled in, else the runbook section of the console page."""
    runbook = data.get("runbook") or {}
    if settings.runbook_url:
        if not runbook.get("id"):
            return ""
        return settings.runbook_url.format(runbook=runbook["id"], problem_id=data["id"])
    return problem_url(console, data["id"]) + "#runbook"


def alert_annotations(event: Mapping[str, Any], settings: NotifySettings,
                      console: str) -> dict[str, str]:
    """The Alertmanager annotations of an alert event (see the module docstring)."""
    data = event["data"]
    services = ", ".join(data.get("affected") or [])
    cause = root_cause_text(data)
    status = str(data["status"])
    if status == "acknowledged" and data.get("acknowledged_by"):
        status += f" by {data['acknowledged_by']}"
    description = (f"{data.get('severity', '')} {data.get('category', '')} problem "
                   f"affecting {services or 'no named service'}")
    if cause:
        description += f"; most likely root cause: {cause}"
    runbook = data.get("runbook") or {}
    annotations = {
        "summary": str(data.get("title") or data["id"]),
        "description": description,
        "root_cause": cause,
        "services": services,
        "hosts": ", ".join(data.get("hosts") or []),
        "runbook": str(runbook.get("title", "")),
        "runbook_url": runbook_link(data, settings, console) if runbook else "",
        "status": status,
        "confidence": f"{float(data.get('confidence') or 0.0):.2f}",
        "problem_version": str(data["version"]),
        "event_id": str(event["id"]),
    }
    return {k: v for k, v in annotations.items() if v}


def ends_at_ms(event: Mapping[str, Any], now_ms: int, settings: NotifySettings) -> int:
    """``endsAt`` in epoch ms: the resolve time of a resolved problem (at most ``now_ms``),
    else ``now_ms`` plus the validity of an open alert."""
    data = event["data"]
    if data["status"] == "resolved":
        resolved = data.get("resolved_at")
        if not isinstance(resolved, int) or isinstance(resolved, bool):
            resolved = now_ms
        return min(resolved, now_ms)
    return now_ms + VALIDITY_RESENDS * settings.resend_interval_ms


def alertmanager_alert(event: Mapping[str, Any], now_ms: int, settings: NotifySettings,
                       console: str) -> dict[str, Any]:
    """The ``postableAlert`` JSON object of an alert event at wall time ``now_ms``."""
    data = event["data"]
    ends = ends_at_ms(event, now_ms, settings)
    return {
        "labels": alert_labels(event, settings),
        "annotations": alert_annotations(event, settings, console),
        "startsAt": format_ms(min(data["opened_at"], ends)),
        "endsAt": format_ms(ends),
        "generatorURL": problem_url(console, data["id"]),
    }


def ended(alert: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """A copy of a posted alert that ends it at ``now_ms`` (a label set a problem left)."""
    return {**alert, "endsAt": format_ms(now_ms)}


def renewed(alert: Mapping[str, Any], now_ms: int, settings: NotifySettings) -> dict[str, Any]:
    """A copy of an open alert valid again from ``now_ms`` (a re-post)."""
    return {**alert, "endsAt": format_ms(now_ms + VALIDITY_RESENDS * settings.resend_interval_ms)}
