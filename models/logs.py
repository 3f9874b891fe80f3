"""Log analytics per service: drain3 template mining, template bursts, error-rate bands.

Each log body is masked (numbers, ids, hosts, durations) and mined into a template with
drain3's Drain. Per tumbling window the service counts records per template and records
of ERROR severity or worse; when a window closes, :class:`~models.counts.CountBaselines`
scores every count against its own baseline:

- a *template burst*: a known template far above its usual count;
- a *new template in volume*: a template first seen in this window, at least
  ``min_count`` times (after the service's warm-up, so start-up chatter never alarms);
- *error-severity rate out of band*: the ERROR+FATAL count above its usual band;
- *a template dropped or vanished*: a template usually logged at least twice
  ``min_count`` times a window, now far less or not at all (a code path no longer taken,
  e.g. after a code defect); only templates below WARN severity (errors and warnings
  going quiet are a recovery).

Bursts, drops and error rates must hold for two windows in a row (a one-window blip does
not alarm); a new template fires in the window it appears.

A key fires when its score reaches the threshold and resolves when a later window scores
below the clear level; with ``keepalive_ms`` a window that keeps it firing re-sends it
once a tick ``fired + k * keepalive_ms`` has passed (a keep-alive, at that tick). A
firing key's keep-alives and resolution name the host it fired on. State is plain data:
the mined templates, the baselines and the open windows (see
:meth:`LogAnalytics.to_dict`). The parameters are a
:class:`~models.analytics.LogPatterns` (the registry's ``log-patterns``);
:meth:`LogAnalytics.reconfigure` moves a running service to a newly published one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from drain3.drain import Drain, LogCluster

from models.analytics import LogPatterns
from models.base import Finding, keepalive_due
from models.counts import CountBaselines, Windows

MODEL = LogPatterns.name
ERRORS_KEY = "severity:error"
DROP = "|drop"  # alarm key suffix of a template logged far less than usual
_ERROR_SEVERITY = 17  # OpenTelemetry ERROR range start
_WARN_SEVERITY = 13  # OpenTelemetry WARN range start
_DRAIN_PARAMS = ("sim_th", "depth", "max_children", "max_clusters")
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


TEMPLATE_BYTES = 1024
"""Memory a counted log template takes, about (text, Drain cluster, baseline columns)."""


class TemplateMiner:
    """drain3 template mining of masked bodies; state is the list of templates."""

    def __init__(self, sim_th: float = 0.4, depth: int = 4, max_children: int = 100,
                 max_clusters: int = 1000) -> None:
        self.drain = Drain(sim_th=sim_th, depth=depth, max_children=max_children,
                           max_clusters=max_clusters)
        self.severity: dict[int, int] = {}  # worst severity seen per template

    @classmethod
    def configured(cls, config: LogPatterns) -> TemplateMiner:
        """A miner with the drain3 parameters of ``config``."""
        return cls(**{k: getattr(config, k) for k in _DRAIN_PARAMS})

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
    """One service's log model: templates, windows, baselines and alarm state.

    ``config`` is the :class:`~models.analytics.LogPatterns` it runs (alarm levels left
    unset are resolved with the defaults; the engine passes its own).
    """

    def __init__(self, config: LogPatterns | None = None) -> None:
        self.config = config = (config or LogPatterns()).resolve()
        self.miner = TemplateMiner.configured(config)
        self.windows = Windows(config.window_ms, config.grace_ms)
        self.baselines = CountBaselines(rate=config.rate, min_count=config.min_count,
                                        threshold=config.threshold)
        self.closed = 0
        self.firing: dict[str, int] = {}  # key -> firing since (ms)
        self.sent: dict[str, int] = {}  # firing key -> last firing or keep-alive time
        self.fired_on: dict[str, str] = {}  # firing key -> the host it fired on
        self.pending: dict[str, int] = {}  # key -> start of a first window over threshold
        self.hosts: dict[str, str] = {}  # key -> a host that logged it (last window)

    def reconfigure(self, config: LogPatterns) -> None:
        """Run ``config`` from now on, keeping the service's templates, baselines,
        warm-up and alarms.

        New drain3 parameters re-index the known templates (same ids) in a new tree. A
        new window size restarts the windows (see :meth:`Windows.resized`) and rescales
        the count baselines to the new window length; alarms then resolve as usual.
        """
        old, config = self.config, config.resolve()
        self.config = config
        if config.window_ms != old.window_ms:
            self.baselines.mean = self.baselines.mean * (config.window_ms / old.window_ms)
        self.windows = self.windows.resized(config.window_ms, config.grace_ms)
        if any(getattr(old, k) != getattr(config, k) for k in _DRAIN_PARAMS):
            miner = TemplateMiner.configured(config)
            miner.load(self.miner.to_dict())
            self.miner = miner
        self.baselines.rate, self.baselines.min_count = config.rate, config.min_count
        self.baselines.threshold = config.threshold

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

    def advance(self, watermark_ms: int | None = None, keepalive_ms: int = 0
                ) -> list[Finding]:
        """Close the windows the watermark passed; score them; return the state changes
        (and keep-alives of keys still firing, every ``keepalive_ms``; 0: none)."""
        out: list[Finding] = []
        for start, acc in self.windows.close(watermark_ms):
            scores = self.baselines.observe(acc.get("c", {}))
            self.hosts.update(acc.get("h", {}))
            warm = self.closed >= self.config.warmup_windows
            self.closed += 1
            end = start + self.config.window_ms
            for key, cs in scores.items():
                since = self.firing.get(key)
                if since is None and warm and cs.score >= self.config.threshold:
                    first = self.pending.pop(key, None)
                    if cs.age > 0 and first is None:  # a burst must last two windows
                        self.pending[key] = start
                        continue
                    self.firing[key] = start if first is None else first
                    self.sent[key], self.fired_on[key] = end, self.hosts.get(key, "")
                    out.append(self._finding(key, "firing", self.firing[key], end, cs))
                    continue
                self.pending.pop(key, None)
                if since is None:
                    continue
                if cs.score < self.config.clear:
                    del self.firing[key]
                    out.append(self._finding(key, "resolved", since, end, cs))
                    self.sent.pop(key, None)
                    self.fired_on.pop(key, None)
                elif (tick := keepalive_due(self.sent.get(key, since), end,
                                            keepalive_ms)) is not None:
                    self.sent[key] = tick
                    out.append(replace(self._finding(key, "firing", since, end, cs),
                                       time=tick, keepalive=True))
            out += self._drops(scores, warm, start, end, keepalive_ms)
        return out

    def _drops(self, scores: Mapping[str, Any], warm: bool, start: int, end: int,
               keepalive_ms: int) -> list[Finding]:
        """Templates logged far less than usual, or no more (two windows in a row)."""
        out: list[Finding] = []
        for key, cs in scores.items():
            if key == ERRORS_KEY or self.miner.severity.get(int(key[1:]), 0) >= _WARN_SEVERITY:
                continue  # warnings and errors going quiet is a recovery, not a lost path
            dkey = f"{key}{DROP}"
            since = self.firing.get(dkey)
            if since is None and warm and cs.drop >= self.config.threshold:
                first = self.pending.pop(dkey, None)
                if first is None:
                    self.pending[dkey] = start
                    continue
                self.firing[dkey], self.sent[dkey] = first, end
                self.fired_on[dkey] = self.hosts.get(key, "")
                out.append(self._finding(dkey, "firing", first, end, cs))
                continue
            self.pending.pop(dkey, None)
            if since is None:
                continue
            if cs.drop < self.config.clear:
                del self.firing[dkey]
                out.append(self._finding(dkey, "resolved", since, end, cs))
                self.sent.pop(dkey, None)
                self.fired_on.pop(dkey, None)
            elif (tick := keepalive_due(self.sent.get(dkey, since), end,
                                        keepalive_ms)) is not None:
                self.sent[dkey] = tick
                out.append(replace(self._finding(dkey, "firing", since, end, cs),
                                   time=tick, keepalive=True))
        return out

    def _finding(self, key: str, state: str, start: int, end: int, cs: Any) -> Finding:
        if key == ERRORS_KEY:
            template, kind, worst = "ERROR and FATAL records", "error_rate", _ERROR_SEVERITY
            title = f"error-severity logs out of band: {cs.count:.0f} in the window"
        elif key.endswith(DROP):
            cid = int(key[1:-len(DROP)])
            template, worst = self.miner.template(cid), self.miner.severity.get(cid, 9)
            kind = "vanished_template" if cs.count == 0 else "template_drop"
            what = "log template vanished" if cs.count == 0 else "log template dropped"
            title = (f"{what}: {template[:120]} ({cs.count:.0f} in the window, usually "
                     f"{cs.expected:.0f})")
        else:
            cid = int(key[1:])
            template, worst = self.miner.template(cid), self.miner.severity.get(cid, 9)
            kind = "new_template" if cs.age == 0 else "template_burst"
            what = "new log template" if kind == "new_template" else "log template burst"
            title = f"{what}: {template[:120]} ({cs.count:.0f} in the window)"
        category = log_category(template, worst) if key != ERRORS_KEY else "availability"
        if key.endswith(DROP):  # a code path no longer taken: what the service does changed
            category = "availability"
        severity = "high" if worst >= 21 and state == "firing" else ""
        host = self.fired_on.get(key, self.hosts.get(key.removesuffix(DROP), ""))
        score = cs.drop if key.endswith(DROP) else cs.score
        return Finding(MODEL, "logs", state, end, key, score, cs.count, start, end,
                       host=host, category=category, title=title,
                       labels={"template_id": key}, severity=severity,
                       threshold=self.config.threshold,
                       evidence={"expected": cs.expected,
                                 "band_low": cs.band_low if key.endswith(DROP) else 0.0,
                                 "band_high": cs.band_high, "model": MODEL, "kind": kind,
                                 "template": template, "window_ms": self.config.window_ms})

    def held_bytes(self) -> int:
        """About the memory this model takes: per template counted, its text, tree
        node and baseline."""
        return len(self.baselines.mean) * TEMPLATE_BYTES

    def to_dict(self) -> dict[str, Any]:
        """Plain-data state (JSON-ready), with the configuration it ran."""
        return {"config": self.config.params, "miner": self.miner.to_dict(),
                "windows": self.windows.to_dict(), "baselines": self.baselines.to_dict(),
                "closed": self.closed, "firing": self.firing, "sent": self.sent,
                "fired_on": self.fired_on, "pending": self.pending, "hosts": self.hosts}

    def load(self, data: Mapping[str, Any]) -> None:
        """Restore :meth:`to_dict` output; state saved under another configuration is
        restored as saved, then reconfigured to this one."""
        current = self.config
        self.config = current.saved_as(data.get("config"))
        self.windows = Windows(self.config.window_ms, self.config.grace_ms)
        self.miner.load(data["miner"])
        self.windows.load(data["windows"])
        self.baselines.load(data["baselines"])
        self.closed = data["closed"]
        self.firing = {k: int(v) for k, v in data["firing"].items()}
        # state saved before keep-alives: last sent = firing since, host = last host seen
        self.sent = {k: int(v) for k, v in data.get("sent", self.firing).items()}
        self.fired_on = dict(data.get("fired_on", {}))
        self.pending = {k: int(v) for k, v in data["pending"].items()}
        self.hosts = dict(data["hosts"])
        self.reconfigure(current)
