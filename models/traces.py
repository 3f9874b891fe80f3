"""Trace analytics per service: RED per operation per window, and the service call graph.

Spans are bucketed by start time into tumbling windows per *operation*: the service's
server/consumer spans by span name, and its outgoing calls (client/producer spans) by
callee, as ``-> callee``. When a window closes, each operation yields rate (spans/s),
errors and duration percentiles (p50, p95, p99):

- rate and durations (log-scaled, so a 2 ms and a 2 s operation are alike) are scored
  like metrics by a :class:`~models.series.SeriesBank` of
  :class:`~models.univariate.RobustSeasonal` series (one point per window);
- errors are scored as the binomial tail probability of that many failed spans given
  the operation's usual error ratio, so one failure in a quiet minute does not alarm but
  a run of failures does.

The call graph: every client/producer span with ``peer.service`` is an edge
caller → callee; a span whose parent span (seen in the same batch) belongs to another
service is one too. Edges keep a count and the last time seen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import binom

from models.base import Finding
from models.calibration import score_from_log10p
from models.counts import Windows
from models.series import SeriesBank
from models.univariate import RobustSeasonal

MODEL = "trace-red"
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


class TraceAnalytics:
    """One service's trace model: RED windows, series bank, error baselines, call graph."""

    def __init__(self, window_ms: int = 60_000, grace_ms: int = 10_000,
                 warmup_windows: int = 10, threshold: float = 0.6, clear: float = 0.4,
                 error_rate: float = 0.05, error_prior: float = 0.01,
                 min_errors: int = 3) -> None:
        self.window_ms, self.warmup_windows = window_ms, warmup_windows
        self.threshold, self.clear = threshold, clear
        self.error_rate, self.error_prior, self.min_errors = error_rate, error_prior, min_errors
        self.windows = Windows(window_ms, grace_ms)
        self.detector = RobustSeasonal(warmup=warmup_windows, rest_points=10,
                                       threshold=threshold, shift_after=5)
        self.bank = SeriesBank(self.detector)
        self.errors: dict[str, list[float]] = {}  # op -> [EW error ratio, windows seen]
        self.firing: dict[str, int] = {}  # error keys firing since
        self.edges: dict[str, list[int]] = {}  # "caller\tcallee" -> [count, last seen ms]

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

    def advance(self, service: str, watermark_ms: int | None = None) -> list[Finding]:
        """Close the windows the watermark passed; score RED; return the state changes."""
        out: list[Finding] = []
        for start, acc in self.windows.close(watermark_ms):
            end = start + self.window_ms
            keys, values, meta = [], [], []
            for op, (n, errors, durations) in sorted(acc.items()):
                d = np.asarray(durations)
                p50, p95, p99 = np.percentile(d, [50, 95, 99])
                red = {"rate": n * 1000.0 / self.window_ms, "duration.p50": p50,
                       "duration.p95": p95, "duration.p99": p99}
                for name in _SERIES:
                    keys.append(f"{op}|{name}")
                    values.append(red[name] if name == "rate" else math.log1p(red[name]))
                    meta.append((op, name, red[name]))
                out.extend(self._errors(op, n, errors, start, end))
            if not keys:
                continue
            slots = self.bank.slots(keys)
            res = self.bank.process(slots, np.full(len(keys), end, dtype=np.int64),
                                    np.asarray(values), self.threshold, self.clear,
                                    accept_points=30)
            for i, state in res.events:
                op, name, observed = meta[i]
                expected = res.expected[i]
                low, high = res.bands[i]
                if name != "rate":
                    expected, low, high = math.expm1(expected), math.expm1(low), math.expm1(high)
                since = int(self.bank.since[slots[i]]) if state == "resolved" else start
                score = res.peaks[i]
                what = "request rate" if name == "rate" else f"{name.split('.')[1]} duration"
                out.append(Finding(
                    MODEL, "traces", state, end, op, float(score), float(observed),
                    since, end, category="performance" if name != "rate" else "availability",
                    title=f"{service} {op}: {what} {observed:.4g}"
                          f"{'' if name == 'rate' else ' ms'} (expected {expected:.4g})",
                    labels={"operation": op, "series": f"trace.{name}"},
                    evidence={"expected": expected, "band_low": max(low, 0.0),
                              "band_high": high, "model": f"{MODEL}/{self.detector.name}",
                              "series": f"trace.{name}", "window_ms": self.window_ms}))
        return out

    def _errors(self, op: str, n: int, errors: int, start: int, end: int) -> list[Finding]:
        base = self.errors.setdefault(op, [self.error_prior, 0.0])
        p0 = max(base[0], 1e-3)
        log10p = float(binom.logsf(errors - 1, n, p0)) / _LN10 if errors else 0.0
        score = float(score_from_log10p(np.array([log10p]))[0])
        if errors < self.min_errors:
            score = min(score, self.clear - 1e-9)
        warm = base[1] >= self.warmup_windows
        base[0] += self.error_rate * (errors / n - base[0])
        base[1] += 1
        key = f"{op}|errors"
        since = self.firing.get(key)
        ratio = errors / n
        if since is None and warm and score >= self.threshold:
            self.firing[key] = start
            state, first = "firing", start
        elif since is not None and score < self.clear:
            del self.firing[key]
            state, first = "resolved", since
        else:
            return []
        return [Finding(
            MODEL, "traces", state, end, op, score, ratio, first, end,
            category="availability",
            title=f"{op}: {errors} of {n} spans failed (usual error ratio {p0:.3g})",
            labels={"operation": op, "series": "trace.errors"},
            evidence={"expected": p0, "band_low": 0.0,
                      "band_high": float(binom.isf(10 ** -(self.threshold * 8), n, p0) / n),
                      "model": MODEL, "series": "trace.errors", "errors": errors,
                      "spans": n, "window_ms": self.window_ms})]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data state (the series bank as bytes, hex-encoded)."""
        return {"windows": self.windows.to_dict(), "bank": self.bank.to_bytes().hex(),
                "errors": self.errors, "firing": self.firing, "edges": self.edges}

    def load(self, data: Mapping[str, Any]) -> None:
        """Restore :meth:`to_dict` output."""
        self.windows.load(data["windows"])
        self.bank = SeriesBank.from_bytes(bytes.fromhex(data["bank"]), self.detector)
        self.errors = {k: list(v) for k, v in data["errors"].items()}
        self.firing = {k: int(v) for k, v in data["firing"].items()}
        self.edges = {k: list(v) for k, v in data["edges"].items()}
