"""The receivers ``tocsin notify`` posts to, over HTTP (aiohttp), with retries.

- :class:`AlertmanagerReceiver`: ``POST <url>/api/v2/alerts`` with a JSON array of alerts
  (:mod:`pipeline.alerts.alertmanager`);
- :class:`WebhookReceiver`: ``POST <url>`` with one CloudEvent, as it is on the topic
  (``Content-Type: application/cloudevents+json``), plus the configured headers.

A failed attempt (no connection, a timeout, HTTP 408/425/429/5xx) is retried after
:func:`~pipeline.alerts.delivery.backoff_ms` up to ``notify.max_attempts`` attempts in all;
any other HTTP error is final at once. Errors name the URL and what happened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import orjson

from pipeline.alerts.delivery import DeliveryError, backoff_ms, retryable_status
from pipeline.settings import NotifySettings

log = logging.getLogger("tocsin.notify")

ALERTS_PATH = "/api/v2/alerts"
Sleep = Callable[[float], Awaitable[None]]
NOT_RETRIED = "(not retried)"


async def post_json(session: aiohttp.ClientSession, url: str, body: bytes,
                    headers: dict[str, str], timeout_s: float) -> None:
    """One POST; raises :class:`DeliveryError` naming ``url`` unless it answers 2xx."""
    try:
        async with session.post(url, data=body, headers=headers,
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            if response.status < 300:
                return
            text = (await response.text(errors="replace")).strip()[:300]
            raise DeliveryError(f"{url} answered HTTP {response.status} {response.reason}"
                                + (f": {text}" if text else ""),
                                retryable=retryable_status(response.status))
    except aiohttp.ClientConnectorError as exc:
        raise DeliveryError(f"{url} is unreachable: {exc.os_error or exc}") from None
    except asyncio.TimeoutError:
        raise DeliveryError(f"{url} did not answer within {timeout_s:g}s") from None
    except aiohttp.ClientError as exc:
        raise DeliveryError(f"{url}: {type(exc).__name__}: {exc}") from None


async def with_retries(attempt: Callable[[], Awaitable[None]], settings: NotifySettings,
                       sleep: Sleep, what: str) -> str:
    """Run ``attempt`` until it succeeds (returns ``""``) or is given up: returns the
    reason then, ending with how many attempts were made or :data:`NOT_RETRIED`."""
    for n in range(1, settings.max_attempts + 1):
        try:
            await attempt()
            if n > 1:
                log.info("%s: delivered on attempt %d", what, n)
            return ""
        except DeliveryError as exc:
            if not exc.retryable:
                return f"{exc} {NOT_RETRIED}"
            if n == settings.max_attempts:
                return f"{exc} (gave up after {n} attempts)"
            delay_ms = backoff_ms(n, settings.backoff_initial_ms, settings.backoff_max_ms)
            log.warning("%s: %s; attempt %d of %d, next in %.1fs", what, exc, n,
                        settings.max_attempts, delay_ms / 1000)
            await sleep(delay_ms / 1000)
    return "no attempt made (notify.max_attempts is 0)"


class AlertmanagerReceiver:
    """One Alertmanager (its base URL, e.g. ``http://alertmanager:9093``)."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession,
                 settings: NotifySettings) -> None:
        self.url = base_url.rstrip("/") + ALERTS_PATH
        self.session = session
        self.settings = settings

    async def post(self, alerts: Sequence[dict[str, Any]], sleep: Sleep) -> str:
        """Post ``alerts`` in one request, with retries; ``""`` or why it failed."""
        body = orjson.dumps(list(alerts))
        return await with_retries(
            lambda: post_json(self.session, self.url, body,
                              {"Content-Type": "application/json"},
                              self.settings.timeout_ms / 1000),
            self.settings, sleep, f"alertmanager {self.url}")


def webhook_headers(settings: NotifySettings) -> dict[str, str]:
    """The headers of a webhook POST: content type, ``notify.webhook_headers`` and the
    bearer token."""
    headers = {"Content-Type": "application/cloudevents+json; charset=utf-8"}
    for header in settings.webhook_headers:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    if settings.webhook_token:
        headers["Authorization"] = f"Bearer {settings.webhook_token.reveal()}"
    return headers


class WebhookReceiver:
    """One generic webhook URL."""

    def __init__(self, url: str, session: aiohttp.ClientSession,
                 settings: NotifySettings) -> None:
        self.url = url
        self.session = session
        self.settings = settings
        self.headers = webhook_headers(settings)

    async def post(self, body: bytes, sleep: Sleep) -> str:
        """Post one CloudEvent (its bytes as on the topic), with retries; ``""`` or why it
        failed."""
        return await with_retries(
            lambda: post_json(self.session, self.url, body, self.headers,
                              self.settings.timeout_ms / 1000),
            self.settings, sleep, f"webhook {self.url}")
