"""``tocsin status``: the running worker's health at a glance in the terminal.

It reads the worker's status page (the same snapshot ``/metrics`` exposes) and its
readiness, and prints what an operator looks for first: ready or why not, records in
and out, agents, consumer lag, and per watermark whether it is caught up or how far
behind it is (event time and lag).
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from pipeline.errors import TocsinError
from pipeline.events.durations import format_duration
from pipeline.events.times import format_ms
from pipeline.settings import Settings


def _ago(ms: int) -> str:
    return format_duration(max(0, ms) // 1000 * 1000)


def _time(ms: int) -> str:
    return format_ms(ms)[:19].replace("T", " ") if ms >= 0 else "nothing yet"


def _sum(values: Mapping[str, int] | None) -> int:
    return sum((values or {}).values())


def render_status(status: Mapping[str, Any], ready: Mapping[str, Any]) -> list[str]:
    """The lines ``tocsin status`` prints for a status snapshot and a readiness answer
    (each at most 80 columns, agent and source names aside)."""
    lines = []
    state = "READY" if ready.get("status") == "ready" else "NOT READY"
    lines.append(f"worker {status.get('app_id', '?')} ({status.get('store', '?')}): {state}")
    lines += [f"  - {reason}" for reason in ready.get("reasons", [])]
    kinds = sorted(set(status.get("messages") or {}) | set(status.get("stored") or {}))
    if kinds:
        lines.append(f"{'ingest':<10}{'messages':>12}{'stored':>14}{'dead-lettered':>15}")
        for kind in kinds:
            lines.append(f"  {kind:<8}{status['messages'].get(kind, 0):>12,}"
                         f"{status['stored'].get(kind, 0):>14,}"
                         f"{(status.get('rejected') or {}).get(kind, 0):>15,}")
    agents = status.get("agents") or {}
    if agents:
        lines.append(f"{'agent':<28}{'batches':>9}{'failures':>10}{'crashes':>9}  state")
        for name, a in sorted(agents.items()):
            shown = "STUCK" if a.get("stuck") else "ok"
            if a.get("stuck") or a.get("consecutive_failures"):
                shown += f" ({a['consecutive_failures']} failed in a row)"
            lines.append(f"  {name:<26}{a.get('batches', 0):>9,}{a.get('failures', 0):>10,}"
                         f"{a.get('crashes', 0):>9,}  {shown}")
    lags = [row for row in status.get("consumer_lag") or [] if row["lag"] > 0]
    if lags:
        lines.append(f"consumer lag: {sum(r['lag'] for r in lags):,} messages")
        lines += [f"  {r['topic']}[{r['partition']}]: {r['lag']:,}" for r in lags]
    else:
        lines.append("consumer lag: none (every message committed)")
    lines += _watermark_lines(status)
    correlate = status.get("correlate") or {}
    if correlate.get("decisions") or correlate.get("open_problems"):
        types = ", ".join(f"{n} {t.rsplit('.', 1)[-1]}" for t, n in
                          sorted((correlate.get("alerts_by_type") or {}).items()))
        lines.append(f"problems open: {_sum(correlate.get('open_problems'))}; alerts sent: "
                     f"{correlate.get('alerts', 0)}{f' ({types})' if types else ''}")
    reads = status.get("reads") or {}
    lines.append(f"queries: {reads.get('served', 0)} served, {reads.get('refused', 0)} "
                 f"refused, {reads.get('failed', 0)} failed, {reads.get('running', 0)} running")
    return lines


def _watermark_lines(status: Mapping[str, Any]) -> list[str]:
    detect = status.get("detect") or {}
    if not detect.get("engines"):
        return ["detect: not running on this worker"]
    now_ms = int(status.get("now_ms", 0))
    watermark = int(detect.get("watermark_ms", -1))
    sources = detect.get("sources") or {}
    behind = {name: s for name, s in sources.items() if s["backlog"] or s["lag_ms"] > 0}
    if watermark < 0:
        head = "detect watermark: nothing passed yet"
    else:
        head = (f"detect watermark: {_time(watermark)} UTC "
                f"({_ago(now_ms - watermark)} before now)")
    if not sources:
        return [head, "  no source has ticked yet"]
    if not behind:
        return [head + ", caught up"]
    lines = [head, f"  behind {len(behind)} of {len(sources)} sources:"]
    for name, s in sorted(behind.items()):
        why = "records waiting" if s["backlog"] else "in flight"
        lines.append(f"    {name}: at {_time(s['time_ms'])}, watermark {_ago(s['lag_ms'])} "
                     f"behind ({why})")
    late = detect.get("late_records", 0)
    if late:
        lines.append(f"  late records so far: {late:,}")
    return lines


def _get(url: str, token: str) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {"error": str(exc.reason)}


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print the running worker's health; exit 1 when it is not ready."""
    from pipeline.api.probes import READYZ_PATH
    from pipeline.api.query import WorkerUnreachable, call_worker, worker_url
    from pipeline.api.web import STATUS_PATH

    try:
        status = call_worker(settings, STATUS_PATH, timeout_s=30)
        _, ready = _get(worker_url(settings, READYZ_PATH), "")
    except (WorkerUnreachable, urllib.error.URLError, ConnectionError, TimeoutError):
        raise TocsinError(f"no worker answers at {worker_url(settings, STATUS_PATH)} (is "
                          "`tocsin worker` running, with the same TOCSIN_WORKER_WEB_PORT?)"
                          ) from None
    if args.json:
        print(json.dumps({"status": status, "ready": ready}, indent=2))
    else:
        print("\n".join(render_status(status, ready)))
    return 0 if ready.get("status") == "ready" else 1
