"""Trace analytics per service: RED per operation per window, and the service call graph.

Spans are bucketed by start time into tumbling windows per *operation*: the service's
server/consumer spans by span name, and its outgoing calls (client/producer spans) by
callee, as ``-> callee`` (their detections name the callee in ``peer.service``). When a
window closes, each operation yields rate (spans/s), errors and duration percentiles
(p50, p95, p99):

- durations (log-scaled, so a 2 ms and a 2 s operation are alike) are scored like
  metrics by a :class:`~models.series.SeriesBank` of
  :class:`~models.univariate.RobustSeasonal` series (one point per window);
- rates by a bank of their own, on counts per window on Anscombe's scale with a smallest
  scale of half its Poisson noise: 10 spans in a minute that always had 12 is chance,
  none at all is not;
- errors are scored as the binomial tail probability of that many failed spans given
  the operation's usual error ratio, so one failure in a quiet minute does not alarm but
  a run of failures does; the usual ratio is not learnt while the alarm fires (a
  lasting outage would otherwise become usual and clear itself mid-way).

With ``keepalive_ms`` a window that keeps a series or error alarm firing re-sends it once
a tick ``fired + k * keepalive_ms`` has passed (a keep-alive, at that tick).

With ``stale_ms`` an operation that had no span for that long (its last window's end
plus ``stale_ms`` passed, by a later window or the watermark) ends its alarms, resolved
at that time with ``silent`` in their evidence, as Prometheus resolves an alert whose
series went stale: no calls tell nothing of latency or errors, and an alarm held open
by silence would keep its problem open and take in whatever fails there next. A
service that stops answering altogether is the rate's and the callers' to show (and
the absence rules').

The call graph: every client/producer span with ``peer.service`` is an edge
caller → callee; a span whose parent span (seen in the same batch) belongs to another
service is one too. Edges keep a count and the last time seen.

The parameters are a :class:`~models.analytics.TraceRED` (the registry's ``trace-red``);
:meth:`TraceAnalytics.reconfigure` moves a running service to a newly published one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import binom

from models.analytics import TraceRED
from models.base import Finding, keepalive_due
from models.calibration import score_from_log10p
from models.counts import Windows
from models.series import KEY_BYTES, SeriesBank
from models.univariate import RobustSeasonal

MODEL = TraceRED.name
_LN10 = math.log(10.0)
_OUTGOING = ("client", "producer")
_SERIES = ("rate", "duration.p50", "duration.p95", "duration.p99")


def _attr(attrs: Any, key: str) -> str:
    if not attrs:
        return ""
    if isinstance(attrs, Mapping):
        return str(attrs.get(key, ""))
    for k, v in attrs:  # a map row as (key, value) pairs
        if k == key:
            return str(v)
    return ""


def _series_detector(config: TraceRED, abs_floor: float | None = None) -> RobustSeasonal:
    extra = {} if abs_floor is None else {"abs_floor": abs_floor}
    return RobustSeasonal(warmup=config.warmup_windows, rest_points=config.rest_points,
                          threshold=config.threshold, shift_after=config.shift_after, **extra)


def _rate_detector(config: TraceRED) -> RobustSeasonal:
    # rates are scored as counts per window on Anscombe's scale, 2 sqrt(count + 3/8), where
    # Poisson noise has a standard deviation of about 1: a scale under half of it is noise
    return _series_detector(config, abs_floor=0.5)


def _peer(op: str) -> dict[str, str]:
    """The callee an outgoing operation (``-> callee``) names, as a label."""
    return {"peer.service": op[3:]} if op.startswith("-> ") else {}


def _in_units(name: str, window_s: float, *values: float) -> tuple[float, ...]:
    """Values of series ``name`` from the bank's scale (Anscombe counts per window, or
    log1p milliseconds) back to its units (spans/s, ms)."""
    if name == "rate":
        return tuple(_count_of(v) / window_s for v in values)
    return tuple(math.expm1(v) for v in values)


def _what(name: str) -> str:
    """How a title names series ``name``: request rate, p95 duration ..."""
    return "request rate" if name == "rate" else f"{name.split('.')[1]} duration"


def _anscombe(count: float) -> float:
    return 2.0 * math.sqrt(count + 0.375)


def _count_of(anscombe: float) -> float:
    return max(0.0, (anscombe / 2.0) ** 2 - 0.375)


class TraceAnalytics:
    """One service's trace model: RED windows, series bank, error baselines, call graph.

    ``config`` is the :class:`~models.analytics.TraceRED` it runs (alarm levels left
    unset are resolved with the defaults; the engine passes its own).
    """

    def __init__(self, config: TraceRED | None = None) -> None:
        self.config = config = (config or TraceRED()).resolve()
        self.windows = Windows(config.window_ms, config.grace_ms)
        self.detector = _series_detector(config)
        self.bank = SeriesBank(self.detector)  # durations (log scale)
        self.rate_bank = SeriesBank(_rate_detector(config))  # span counts per window
        self.errors: dict[str, list[float]] = {}  # op -> [EW error ratio, windows seen]
        self.firing: dict[str, int] = {}  # error keys firing since
        self.sent: dict[str, int] = {}  # firing error key -> last firing or keep-alive time
        self.edges: dict[str, list[int]] = {}  # "caller\tcallee" -> [count, last seen ms]
        self.seen: dict[str, int] = {}  # op -> end of its last window (with stale_ms)

    def reconfigure(self, config: TraceRED) -> None:
        """Run ``config`` from now on, keeping the series, error baselines, alarms and
        call graph (rates are per second and error ratios per span, so they outlive a
        new window size); a new window size restarts the windows
        (see :meth:`Windows.resized`)."""
        self.config = config = config.resolve()
        self.windows = self.windows.resized(config.window_ms, config.grace_ms)
        self.detector = self.bank.detector = _series_detector(config)
        self.rate_bank.detector = _rate_detector(config)

    def add(self, spans: Mapping[str, Sequence[Any]]) -> int:
        """Count spans (columns as the codec gives them) into windows and the call graph."""
        late = self.windows.late
        starts = spans["start"]
        by_id = {sid: svc for sid, svc in zip(spans["span_id"], spans["service"],
                                                 strict=True)}
        attrs = spans.get("attributes") or [None] * len(starts)
        for i in sorted(range(len(starts)), key=starts.__getitem__):
            start, service, kind = int(starts[i]), spans["service"][i], spans["kind"][i]
            peer = _attr(attrs[i], "peer.service")
            parent = by_id.get(spans["parent_span_id"][i])
            if kind in _OUTGOING and peer:
                self._edge(service, peer, start)
            if parent is not None and parent != service:
                self._edge(parent, service, start)
            acc = self.windows.bucket(start)
            if acc is None:
                continue
            op = f"-> {peer}" if kind in _OUTGOING and peer else spans["name"][i]
            cell = acc.setdefault(op, [0, 0, []])
            cell[0] += 1
            cell[1] += spans["status"][i] == "error"
            cell[2].append(float(spans["duration_ms"][i]))
        return self.windows.late - late

    def _edge(self, caller: str, callee: str, time_ms: int) -> None:
        edge = self.edges.setdefault(f"{caller}\t{callee}", [0, 0])
        edge[0] += 1
        edge[1] = max(edge[1], time_ms)

    def call_graph(self) -> list[tuple[str, str, int, int]]:
        """Edges (caller, callee, count, last seen ms), sorted."""
        return sorted((*key.split("\t"), c, t) for key, (c, t) in self.edges.items())

    def advance(self, service: str, watermark_ms: int | None = None,
                keepalive_ms: int = 0, stale_ms: int = 0) -> list[Finding]:
        """Close the windows the watermark passed; score RED; return the state changes
        (and keep-alives of alarms still firing, every ``keepalive_ms``; 0: none; and the
        alarms of operations silent for ``stale_ms`` ended; 0: never)."""
        out: list[Finding] = []
        window_s = self.config.window_ms / 1000.0
        for start, acc in self.windows.close(watermark_ms):
            end = start + self.config.window_ms
            if stale_ms > 0:
                out.extend(self._silent(service, start, stale_ms))
                self.seen.update(dict.fromkeys(acc, end))
            series: dict[str, tuple[list, list, list]] = {"rate": ([], [], []),
                                                          "duration": ([], [], [])}
            for op, (n, errors, durations) in sorted(acc.items()):
                p50, p95, p99 = np.percentile(np.asarray(durations), [50, 95, 99])
                red = {"rate": n / window_s, "duration.p50": p50, "duration.p95": p95,
                       "duration.p99": p99}
                for name in _SERIES:
                    keys, values, meta = series[name.split(".")[0]]
                    keys.append(f"{op}|{name}")
                    values.append(_anscombe(n) if name == "rate" else math.log1p(red[name]))
                    meta.append((op, name, red[name]))
                out.extend(self._errors(op, n, errors, start, end, keepalive_ms))
            for kind, bank in (("rate", self.rate_bank), ("duration", self.bank)):
                keys, values, meta = series[kind]
                if keys:
                    out.extend(self._score(bank, keys, values, meta, service, start, end,
                                           keepalive_ms))
        if stale_ms > 0 and watermark_ms is not None:
            out.extend(self._silent(service, watermark_ms, stale_ms))
        return out

    def _silent(self, service: str, now_ms: int, stale_ms: int) -> list[Finding]:
        """End the alarms of the operations with no span for ``stale_ms`` before
        ``now_ms``, resolved when that silence reached ``stale_ms``."""
        out: list[Finding] = []
        window_s = self.config.window_ms / 1000.0
        for op in [op for op, t in self.seen.items() if t + stale_ms <= now_ms]:
            seen = self.seen.pop(op)
            at, quiet = seen + stale_ms, f"no span for {stale_ms // 1000} s"
            evidence = {"model": MODEL, "silent": True, "last_seen": seen,
                        "window_ms": self.config.window_ms}
            for kind, bank in (("rate", self.rate_bank), ("duration", self.bank)):
                names = [n for n in _SERIES if n.split(".")[0] == kind]
                for key, began, band, peak in bank.end_alarms(
                        [f"{op}|{name}" for name in names]):
                    name = key.rsplit("|", 1)[1]
                    low, high = _in_units(name, window_s, *band)
                    out.append(Finding(
                        MODEL, "traces", "resolved", at, op, peak, math.nan,
                        began - self.config.window_ms, at,
                        category="performance" if kind != "rate" else "availability",
                        title=f"{service} {op}: {_what(name)} alarm ended, {quiet}",
                        labels={"operation": op, "series": f"trace.{name}", **_peer(op)},
                        threshold=self.config.threshold,
                        evidence={**evidence, "band_low": max(low, 0.0), "band_high": high,
                                  "series": f"trace.{name}"}))
            since = self.firing.pop(f"{op}|errors", None)
            if since is not None:
                self.sent.pop(f"{op}|errors", None)
                out.append(Finding(
                    MODEL, "traces", "resolved", at, op, 0.0, math.nan, since, at,
                    category="availability", title=f"{op}: errors alarm ended, {quiet}",
                    labels={"operation": op, "series": "trace.errors", **_peer(op)},
                    threshold=self.config.threshold,
                    evidence={**evidence, "series": "trace.errors"}))
        return out

    def _score(self, bank: SeriesBank, keys: list[str], values: list[float],
               meta: list[tuple[str, str, float]], service: str, start: int, end: int,
               keepalive_ms: int) -> list[Finding]:
        """Score one window's rate or duration series; findings in the series' units."""
        window_s = self.config.window_ms / 1000.0
        res = bank.process(bank.slots(keys), np.full(len(keys), end, dtype=np.int64),
                           np.asarray(values), self.config.threshold, self.config.clear,
                           accept_points=self.config.accept_points, keepalive_ms=keepalive_ms,
                           confirm_points=self.config.confirm_windows,
                           # "in a row": windows without calls in between break the run
                           confirm_within_ms=(self.config.confirm_windows - 1)
                           * self.config.window_ms)
        out = []
        for i, kind in res.events:
            op, name, observed = meta[i]
            expected, low, high = _in_units(name, window_s, res.expected[i], *res.bands[i])
            what = _what(name)
            out.append(Finding(
                MODEL, "traces", "resolved" if kind == "resolved" else "firing",
                res.ticks.get(i, end), op, float(res.peaks[i]), float(observed),
                # points are timed at their window's end: the episode began with the
                # window of its first point out of band
                res.since.get(i, end) - self.config.window_ms, end,
                keepalive=kind == "keepalive",
                category="performance" if name != "rate" else "availability",
                title=f"{service} {op}: {what} {observed:.4g}"
                      f"{'' if name == 'rate' else ' ms'} (expected {expected:.4g})",
                labels={"operation": op, "series": f"trace.{name}", **_peer(op)},
                threshold=self.config.threshold,
                evidence={"expected": expected, "band_low": max(low, 0.0),
                          "band_high": high, "model": f"{MODEL}/{self.detector.name}",
                          "series": f"trace.{name}", "window_ms": self.config.window_ms}))
        return out

    def _errors(self, op: str, n: int, errors: int, start: int, end: int,
                keepalive_ms: int = 0) -> list[Finding]:
        cfg = self.config
        base = self.errors.setdefault(op, [cfg.error_prior, 0.0])
        p0 = max(base[0], 1e-3)
        log10p = float(binom.logsf(errors - 1, n, p0)) / _LN10 if errors else 0.0
        score = float(score_from_log10p(np.array([log10p]))[0])
        if errors < cfg.min_errors:
            score = min(score, cfg.clear - 1e-9)
        warm = base[1] >= cfg.warmup_windows
        base[1] += 1
        key = f"{op}|errors"
        since = self.firing.get(key)
        ratio = errors / n
        tick = None
        state, first = "", 0
        if since is None and warm and score >= cfg.threshold:
            self.firing[key], self.sent[key] = start, end
            state, first = "firing", start
        elif since is not None and score < cfg.clear:
            del self.firing[key]
            self.sent.pop(key, None)
            state, first = "resolved", since
        elif since is not None and (tick := keepalive_due(self.sent.get(key, since), end,
                                                          keepalive_ms)) is not None:
            self.sent[key] = tick
            state, first = "firing", since
        if key not in self.firing:  # an outage's errors are not learnt as usual
            base[0] += cfg.error_rate * (ratio - base[0])
        if not state:
            return []
        return [Finding(
            MODEL, "traces", state, end if tick is None else tick, op, score, ratio, first,
            end, keepalive=tick is not None, category="availability",
            title=f"{op}: {errors} of {n} spans failed (usual error ratio {p0:.3g})",
            labels={"operation": op, "series": "trace.errors", **_peer(op)},
            threshold=cfg.threshold,
            evidence={"expected": p0, "band_low": 0.0,
                      "band_high": float(binom.isf(10 ** -(cfg.threshold * 8), n, p0) / n),
                      "model": MODEL, "series": "trace.errors", "errors": errors,
                      "spans": n, "window_ms": cfg.window_ms})]

    def held_bytes(self) -> int:
        """About the memory this model takes: its banks and its per-key tables."""
        keys = len(self.errors) + len(self.firing) + len(self.edges) + len(self.seen)
        return self.bank.held_bytes() + self.rate_bank.held_bytes() + keys * KEY_BYTES

    def to_dict(self) -> dict[str, Any]:
        """Plain-data state (the series bank as bytes, hex-encoded), with the
        configuration it ran."""
        return {"config": self.config.params, "windows": self.windows.to_dict(),
                "bank": self.bank.to_bytes().hex(),
                "rate_bank": self.rate_bank.to_bytes().hex(), "errors": self.errors,
                "firing": self.firing, "sent": self.sent, "edges": self.edges,
                "seen": self.seen}

    def load(self, data: Mapping[str, Any]) -> None:
        """Restore :meth:`to_dict` output; state saved under another configuration is
        restored as saved, then reconfigured to this one."""
        current = self.config
        self.config = current.saved_as(data.get("config"))
        self.windows = Windows(self.config.window_ms, self.config.grace_ms)
        self.windows.load(data["windows"])
        self.bank = SeriesBank.from_bytes(bytes.fromhex(data["bank"]), self.detector)
        if "rate_bank" in data:  # state saved before rates had their own bank starts anew
            self.rate_bank = SeriesBank.from_bytes(bytes.fromhex(data["rate_bank"]),
                                                   self.rate_bank.detector)
        self.errors = {k: list(v) for k, v in data["errors"].items()}
        self.firing = {k: int(v) for k, v in data["firing"].items()}
        # state saved before keep-alives: last sent = firing since
        self.sent = {k: int(v) for k, v in data.get("sent", self.firing).items()}
        self.edges = {k: list(v) for k, v in data["edges"].items()}
        self.seen = {k: int(v) for k, v in data.get("seen", {}).items()}
        self.reconfigure(current)
