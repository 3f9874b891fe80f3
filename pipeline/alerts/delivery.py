"""Delivery decisions, pure: the retry backoff, and which Alertmanager alerts to (re)post.

:class:`OpenProblems` keeps, per problem, the Alertmanager alert last posted, so that
:meth:`OpenProblems.apply` can end the alert of a label set a problem left (its severity,
category or top root cause changed: Alertmanager identifies an alert by its labels) and
:meth:`OpenProblems.due` can re-post open problems before their ``endsAt`` passes. A
message older than what was already applied for its problem (a redelivery after a crash)
changes nothing. Time is a parameter everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.alerts.alertmanager import alertmanager_alert, ended, renewed
from pipeline.errors import TocsinError
from pipeline.settings import NotifySettings


class DeliveryError(TocsinError):
    """A receiver did not take a delivery; the message names the receiver's URL."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


def backoff_ms(failures: int, initial_ms: int, max_ms: int) -> int:
    """The wait after the ``failures``-th failed attempt (1-based): ``initial_ms`` doubling
    each time, capped at ``max_ms``.

    >>> [backoff_ms(n, 500, 3000) for n in range(1, 6)]
    [500, 1000, 2000, 3000, 3000]
    """
    if failures < 1:
        raise ValueError(f"failures counts from 1, got {failures}")
    return min(max_ms, initial_ms << min(failures - 1, 62))


def retryable_status(status: int) -> bool:
    """Whether an HTTP answer may go better on a later attempt: 408, 425, 429 and 5xx."""
    return status in (408, 425, 429) or status >= 500


@dataclass
class _Posted:
    alert: dict[str, Any]  # the last alert posted for the problem
    version: int
    open: bool
    posted_ms: int


def _label_key(alert: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(alert["labels"].items()))


class OpenProblems:
    """What Alertmanager was last told about each problem (see the module docstring)."""

    def __init__(self, settings: NotifySettings, console: str) -> None:
        self.settings = settings
        self.console = console
        self._posted: dict[str, _Posted] = {}

    def __len__(self) -> int:
        return sum(1 for p in self._posted.values() if p.open)

    def apply(self, event: Mapping[str, Any], now_ms: int,
              posted_ms: int | None = None) -> list[dict[str, Any]]:
        """The alerts to post for ``event`` at ``now_ms``: its own, preceded by the end of
        the label set the problem had if that changed; none for a version older than one
        applied. ``posted_ms`` (default ``now_ms``) is when it counts as posted."""
        data = event["data"]
        before = self._posted.get(data["id"])
        if before is not None and data["version"] < before.version:
            return []
        alert = alertmanager_alert(event, now_ms, self.settings, self.console)
        out = []
        if before is not None and before.open and _label_key(before.alert) != _label_key(alert):
            out.append(ended(before.alert, now_ms))
        out.append(alert)
        self._posted[data["id"]] = _Posted(alert, data["version"], data["status"] != "resolved",
                                           now_ms if posted_ms is None else posted_ms)
        return out

    def due(self, now_ms: int) -> list[dict[str, Any]]:
        """Re-posts of the open problems last posted ``resend_interval_ms`` or longer ago,
        marked as posted at ``now_ms``."""
        out = []
        for posted in self._posted.values():
            if posted.open and now_ms - posted.posted_ms >= self.settings.resend_interval_ms:
                posted.alert = renewed(posted.alert, now_ms, self.settings)
                posted.posted_ms = now_ms
                out.append(posted.alert)
        return out

    def next_due_ms(self) -> int | None:
        """When :meth:`due` next has something, if any problem is open."""
        times = [p.posted_ms + self.settings.resend_interval_ms
                 for p in self._posted.values() if p.open]
        return min(times, default=None)

    def forget_resolved(self, before_ms: int) -> int:
        """Drop resolved problems posted before ``before_ms``; returns how many."""
        old = [k for k, p in self._posted.items() if not p.open and p.posted_ms < before_ms]
        for key in old:
            del self._posted[key]
        return len(old)


def collapse(alerts: list[tuple[dict[str, Any], Any]]) -> list[tuple[dict[str, Any], list[Any]]]:
    """One alert per label set, the last of each, with every tag that rode on any of them
    (the messages to dead-letter if the post fails), in first-seen order."""
    out: dict[tuple[tuple[str, str], ...], tuple[dict[str, Any], list[Any]]] = {}
    for alert, tag in alerts:
        key = _label_key(alert)
        tags = out[key][1] if key in out else []
        if tag is not None:
            tags.append(tag)
        out[key] = (alert, tags)
    return list(out.values())
