"""Log analytics per service: drain3 template mining, template bursts, error-rate bands.

Each log body is masked (numbers, ids, hosts, durations) and mined into a template with
drain3's Drain. Per tumbling window the service counts records per template and records
of ERROR severity or worse; when a window closes, :class:`~models.counts.CountBaselines`
scores every count against its own baseline:

- a *template burst*: a known template far above its usual count;
- a *new template in volume*: a template first seen in this window, at least
  ``min_count`` times (after the service's warm-up, so start-up chatter never alarms);
- *error-severity rate out of band*: the ERROR+FATAL count above its usual band.

Bursts and error rates must hold for two windows in a row (a one-window blip does not
alarm); a new template fires in the window it appears.

A key fires when its score reaches the threshold and resolves when a later window scores
below the clear level. State is plain data: the mined templates, the baselines and the
open windows (see :meth:`LogAnalytics.to_dict`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from drain3.drain import Drain, LogCluster

from models.base import Finding
from models.counts import CountBaselines, Windows

MODEL = "log-patterns"
ERRORS_KEY = "severity:error"
_ERROR_SEVERITY = 17  # OpenTelemetry ERROR range start
_MASKS = (
    (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "UUID"),
    (r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b", "IP"),
    (r"(?<==)[^\s,;)]+", "VALUE"),  # key=value: the value
    (r"\b[\w.-]+:\d{2,5}\b", "HOSTPORT"),
    (r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{12,}\b", "HEX"),
    (r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:ms|s|us|%)?(?![\w.])", "NUM"),
)
_CATEGORY_WORDS = (
    ("connectivity", re.compile(r"connection|refused|unreachable|unavailable|timeout|503",
                                re.I)),
    ("resource", re.compile(r"memory|oom|heap|disk|space|cpu|thread pool|exhausted", re.I)),
    ("configuration", re.compile(r"deploy|version|config|rollback", re.I)),
    ("coordination", re.compile(r"coordinat|lease|heartbeat|stuck|dispatch", re.I)),
    ("performance", re.compile(r"slow|latency|took", re.I)),
)


_MASK = re.compile("|".join(f"(?P<{name}>{pattern})" for pattern, name in _MASKS))


def mask(body: str) -> str:
    """The body with its variable parts (ids, numbers, hosts ...) replaced by ``<KIND>``.

    >>> mask("connection refused: could not connect to postgres at pg-1:5432 in 30ms")
    'connection refused: could not connect to postgres at <HOSTPORT> in <NUM>'
    """
    return _MASK.sub(lambda m: f"<{m.lastgroup}>", body)


def log_category(template: str, severity_number: int) -> str:
    """Detection category of a log template, from its words (default: availability)."""
    for category, words in _CATEGORY_WORDS:
        if words.search(template):
            return category
    return "availability"


class TemplateMiner:
    """drain3 template mining of masked bodies; state is the list of templates."""

    def __init__(self, sim_th: float = 0.4, depth: int = 4, max_children: int = 100,
                 max_clusters: int = 1000) -> None:
        self.drain = Drain(sim_th=sim_th, depth=depth, max_children=max_children,
                           max_clusters=max_clusters)

        self.severity: dict[int, int] = {}  # worst severity seen per template

    def add(self, body: str, severity_number: int) -> int:
        """The template id of ``body`` (mining it in)."""
        cluster, _ = self.drain.add_log_message(mask(body))
        cid = cluster.cluster_id
        if severity_number > self.severity.get(cid, 0):
            self.severity[cid] = severity_number
        return cid

    def template(self, cid: int) -> str:
        cluster = self.drain.id_to_cluster.get(cid)
        return cluster.get_template() if cluster is not None else f"template {cid}"

    def to_dict(self) -> dict[str, Any]:
        clusters = sorted(self.drain.id_to_cluster.values(), key=lambda c: c.cluster_id)
        return {"counter": self.drain.clusters_counter,
                "clusters": [[c.cluster_id, list(c.log_template_tokens), c.size]
                             for c in clusters],
                "severity": [[k, v] for k, v in self.severity.items()]}

    def load(self, data: Mapping[str, Any]) -> None:
        for cid, tokens, size in data["clusters"]:
            cluster = LogCluster(tokens, cid)
            cluster.size = size
            self.drain.id_to_cluster[cid] = cluster
            self.drain.add_seq_to_prefix_tree(self.drain.root_node, cluster)
        self.drain.clusters_counter = data["counter"]
        self.severity = {int(k): int(v) for k, v in data["severity"]}


class LogAnalytics:
    """One service's log model: templates, windows, baselines and alarm state."""

    def __init__(self, window_ms: int = 60_000, grace_ms: int = 5_000,
                 warmup_windows: int = 10, min_count: int = 5, rate: float = 0.05,
                 threshold: float = 0.5, clear: float = 0.3, sim_th: float = 0.4) -> None:
        self.window_ms, self.warmup_windows = window_ms, warmup_windows
        self.threshold, self.clear = threshold, clear
        self.miner = TemplateMiner(sim_th=sim_th)
        self.windows = Windows(window_ms, grace_ms)
        self.baselines = CountBaselines(rate=rate, min_count=min_count, threshold=threshold)
        self.closed = 0
        self.firing: dict[str, int] = {}  # key -> firing since (ms)
        self.pending: dict[str, int] = {}  # key -> start of a first window over threshold
        self.hosts: dict[str, str] = {}  # key -> a host that logged it (last window)

    def add(self, times: Sequence[int], hosts: Sequence[str], severities: Sequence[int],
            bodies: Sequence[str]) -> int:
        """Count records into their windows (in time order); returns how many were late."""
        late = self.windows.late
        order = sorted(range(len(times)), key=times.__getitem__)
        for i in order:
            acc = self.windows.bucket(int(times[i]))
            if acc is None:
                continue
            key = f"t{self.miner.add(bodies[i], int(severities[i]))}"
            counts = acc.setdefault("c", {})
            counts[key] = counts.get(key, 0) + 1
            acc.setdefault("h", {})[key] = hosts[i]
            if severities[i] >= _ERROR_SEVERITY:
                counts[ERRORS_KEY] = counts.get(ERRORS_KEY, 0) + 1
                acc["h"][ERRORS_KEY] = hosts[i]
        return self.windows.late - late

    def advance(self, watermark_ms: int | None = None) -> list[Finding]:
        """Close the windows the watermark passed; score them; return the state changes."""
        out: list[Finding] = []
        for start, acc in self.windows.close(watermark_ms):
            scores = self.baselines.observe(acc.get("c", {}))
            self.hosts.update(acc.get("h", {}))
            warm = self.closed >= self.warmup_windows
            self.closed += 1
            end = start + self.window_ms
            for key, cs in scores.items():
                since = self.firing.get(key)
                if since is None and warm and cs.score >= self.threshold:
                    first = self.pending.pop(key, None)
                    if cs.age > 0 and first is None:  # a burst must last two windows
                        self.pending[key] = start
                        continue
                    self.firing[key] = start if first is None else first
                    out.append(self._finding(key, "firing", self.firing[key], end, cs))
                    continue
                self.pending.pop(key, None)
                if since is not None and cs.score < self.clear:
                    del self.firing[key]
                    out.append(self._finding(key, "resolved", since, end, cs))
        return out

    def _finding(self, key: str, state: str, start: int, end: int, cs: Any) -> Finding:
        if key == ERRORS_KEY:
            template, kind, worst = "ERROR and FATAL records", "error_rate", _ERROR_SEVERITY
            title = f"error-severity logs out of band: {cs.count:.0f} in the window"
        else:
            cid = int(key[1:])
            template, worst = self.miner.template(cid), self.miner.severity.get(cid, 9)
            kind = "new_template" if cs.age == 0 else "template_burst"
            what = "new log template" if kind == "new_template" else "log template burst"
            title = f"{what}: {template[:120]} ({cs.count:.0f} in the window)"
        category = log_category(template, worst) if key != ERRORS_KEY else "availability"
        severity = "high" if worst >= 21 and state == "firing" else ""
        return Finding(MODEL, "logs", state, end, key, cs.score, cs.count, start, end,
                       host=self.hosts.get(key, ""), category=category, title=title,
                       labels={"template_id": key}, severity=severity,
                       evidence={"expected": cs.expected, "band_low": 0.0,
                                 "band_high": cs.band_high, "model": MODEL, "kind": kind,
                                 "template": template, "window_ms": self.window_ms})

    def to_dict(self) -> dict[str, Any]:
        """Plain-data state (JSON-ready)."""
        return {"miner": self.miner.to_dict(), "windows": self.windows.to_dict(),
                "baselines": self.baselines.to_dict(), "closed": self.closed,
                "firing": self.firing, "pending": self.pending, "hosts": self.hosts}

    def load(self, data: Mapping[str, Any]) -> None:
        """Restore :meth:`to_dict` output."""
        self.miner.load(data["miner"])
        self.windows.load(data["windows"])
        self.baselines.load(data["baselines"])
        self.closed = data["closed"]
        self.firing = {k: int(v) for k, v in data["firing"].items()}
        self.pending = {k: int(v) for k, v in data["pending"].items()}
        self.hosts = dict(data["hosts"])
