"""Edge anomalies: a caller's calls to one callee got slower (or faster) or fail.

Each edge caller -> callee keeps a baseline of its calls' client-side latency: a
histogram over log-spaced bins (:func:`~pipeline.graph.pairing.latency_bin`), decayed
with a half-life of ``half_life`` buckets, so it follows slow drifts. A bucket is tested
call by call against it, which works after a minute of traffic instead of after many
buckets:

- *slower*: of the bucket's ``n`` calls, ``x`` took longer than the baseline's upper
  tail edge (the bin above which at most ``tail`` of the baseline lies, probability
  ``p``); the score is the binomial tail probability of ``x`` or more of ``n`` given
  ``p``, on the models' calibrated 0-1 scale; it fires only when at least half the
  calls are in that tail and the bucket's median call is at least ``min_shift`` (2)
  times the usual one (a shift of the typical call that matters, not a few outliers);
- *faster*: the same on the lower tail (a callee failing fast, answering from an error
  path, looks like this when spans carry no status);
- *errors*: the binomial tail of the failed calls given the edge's usual error ratio
  (not learnt while the alarm fires, so a lasting outage does not become usual and
  clear itself mid-way);
- *network*: the median *network time* of the bucket's client -> server calls (the
  client span's duration less the callee's server span's: time on the wire, in proxies
  and in queues) is at least ``network_ms`` (100 ms) over at least ``min_calls`` calls;
  it resolves under 70 % of that. Calls within one cluster spend a few milliseconds
  there, so this needs no baseline: it fires from a cold start, on the first minute of
  traces, and tells a network delay to the callee from the callee being slow (whose
  server spans then take the time).

A firing edge alarm is re-sent every ``keepalive_ms`` of event time while it holds (with
``keepalive`` in its evidence), as the rules and models re-send theirs: the correlator
takes a member it has not heard of for a while as no longer current, and an outage seen
only on the callers' calls would otherwise look over minutes before it is.

A network delay or a failing dependency shows on the callers' side of the call, often
not in the callee's own metrics, so the detection is raised *on the callee* (``service``
= callee), naming the caller in its labels and evidence; the ranking puts it down to the
caller instead when most of the caller's calls are anomalous together. A bucket that
alarms is not learned, so a lasting shift keeps firing until it ends.

With ``stale_ms`` an edge with no call for that long ends its alarms (resolved when the
silence reached ``stale_ms``, ``silent`` in the evidence), as the trace model's
operations do (:mod:`models.traces`): with no calls there is no latency to be slow, and
an alarm held by silence would keep its problem open across whatever fails next.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy.stats import binom

from models.calibration import score_from_log10p
from pipeline.events.detection import Detection, detection_id
from pipeline.graph.pairing import EdgeStat, bin_floor_ms

DETECTOR = "service-graph"
VERSION = "2"
_LN10 = math.log(10.0)


def _score(x: int, n: int, p: float) -> float:
    """Calibrated score of ``x`` or more successes in ``n`` trials of probability ``p``."""
    if x <= 0 or n <= 0:
        return 0.0
    log10p = float(binom.logsf(x - 1, n, max(p, 1e-6))) / _LN10
    return float(score_from_log10p(np.array([log10p]))[0])


class EdgeModel:
    """Latency baselines and error ratios of every edge; state is plain data."""

    def __init__(self, min_calls: int = 10, tail: float = 0.1, half_life: float = 60.0,
                 min_shift: float = 2.0, threshold: float = 0.6, clear: float | None = None,
                 error_rate: float = 0.05, error_prior: float = 0.01,
                 min_errors: int = 3, keepalive_ms: int = 0, stale_ms: int = 0,
                 network_ms: float = 100.0) -> None:
        self.min_calls = min_calls  # baseline calls before an edge is tested
        self.tail = tail
        self.min_shift = min_shift  # the typical call at least this much slower (faster)
        self.decay = 0.5 ** (1.0 / half_life)
        self.threshold = threshold
        self.clear = 0.7 * threshold if clear is None else clear
        self.error_rate = error_rate
        self.error_prior = error_prior
        self.min_errors = min_errors
        self.hist: dict[str, dict[int, float]] = {}  # edge -> bin -> decayed calls
        self.errors: dict[str, list[float]] = {}  # edge -> [EW error ratio, buckets seen]
        self.firing: dict[str, int] = {}  # "edge|kind" -> firing since
        self.keepalive_ms = keepalive_ms  # re-send a firing alarm this often (0: never)
        self.sent: dict[str, int] = {}  # "edge|kind" -> when it was last sent
        self.stale_ms = stale_ms  # an edge without calls this long ends its alarms (0: never)
        self.network_ms = network_ms  # median network time that alarms (0: never)
        self.seen: dict[str, int] = {}  # edge -> end of its last bucket with calls

    def score(self, stats: Iterable[EdgeStat], bucket_ms: int) -> list[Detection]:
        """Test one or more buckets of edge statistics (in bucket order), then learn."""
        out: list[Detection] = []
        swept = None
        for s in sorted((s for s in stats if s.calls > 0),
                        key=lambda s: (s.bucket_ms, s.caller, s.callee)):
            edge = f"{s.caller}\t{s.callee}"
            end = s.bucket_ms + bucket_ms
            if s.bucket_ms != swept:  # silences that ended before this bucket began
                out.extend(self.silent(s.bucket_ms))
                swept = s.bucket_ms
            if self.stale_ms > 0:
                self.seen[edge] = end
            base = self.hist.setdefault(edge, {})
            total = sum(base.values())
            alarmed = False
            if total >= self.min_calls and s.hist:
                for kind in ("slower", "faster"):
                    found, hit = self._latency(edge, kind, s, base, total, end)
                    out.extend(found)
                    alarmed |= hit
            out.extend(self._errors(edge, s, s.bucket_ms, end))
            out.extend(self._network(edge, s, end))
            alarmed |= f"{edge}|network" in self.firing  # a delayed call is no usual one
            for b in list(base):
                base[b] *= self.decay
                if base[b] < 1e-3:
                    del base[b]
            if not alarmed:
                for b, c in s.hist:
                    base[b] = base.get(b, 0.0) + c
        return out

    def _latency(self, edge: str, kind: str, s: EdgeStat, base: Mapping[int, float],
                 total: float, end: int) -> tuple[list[Detection], bool]:
        bins = sorted(base)
        mass, edge_bin = 0.0, None
        for b in (reversed(bins) if kind == "slower" else bins):
            if mass + base[b] > self.tail * total:
                edge_bin = b
                break
            mass += base[b]
        if edge_bin is None:
            return [], False
        p = max(mass / total, 0.5 / total)  # the baseline's share beyond the edge bin
        beyond = (lambda b: b > edge_bin) if kind == "slower" else (lambda b: b < edge_bin)
        x = sum(c for b, c in s.hist if beyond(b))
        score = _score(x, s.calls, p)
        usual = self._median(base, total)
        ratio = s.p50_ms / usual if usual > 0 else math.inf
        shift = ratio if kind == "slower" else (1.0 / ratio if ratio > 0 else math.inf)
        if 2 * x < s.calls or shift < self.min_shift:
            # a few outliers, or a typical call barely changed: not worth a problem
            score = min(score, self.clear - 1e-9)
        key = f"{edge}|{kind}"
        since = self.firing.get(key)
        limit = bin_floor_ms(edge_bin + (1 if kind == "slower" else 0))
        evidence = {"expected": usual,
                    "band_low": 0.0 if kind == "slower" else limit,
                    "band_high": limit if kind == "slower" else math.inf,
                    "beyond": x, "baseline_share": round(p, 4), "drop": kind == "faster"}
        if since is not None and score < self.clear:
            del self.firing[key]
            self.sent.pop(key, None)
            return [self._detection(
                s, f"latency.{kind}", "resolved", end, since, score, s.p50_ms,
                "performance", f"calls {s.caller} -> {s.callee}: latency back to usual "
                f"(p50 {s.p50_ms:.3g} ms)", evidence)], False
        fires = since is None and score >= self.threshold
        if not fires and not (since is not None and self._due(key, end)):
            return [], since is not None
        if fires:
            since = self.firing[key] = s.bucket_ms
            self.sent[key] = end
        what = "slower" if kind == "slower" else "faster"
        return [self._detection(
            s, f"latency.{kind}", "firing", end, since, score, s.p50_ms, "performance",
            f"calls {s.caller} -> {s.callee} {'' if fires else 'still '}{what} than usual: "
            f"{x} of {s.calls} {'over' if kind == 'slower' else 'under'} {limit:.3g} ms "
            f"(usually {p:.0%}), p50 {s.p50_ms:.3g} ms",
            evidence if fires else {**evidence, "keepalive": True})], True

    def silent(self, now_ms: int) -> list[Detection]:
        """End the alarms of the edges without a call for ``stale_ms`` before ``now_ms``
        (resolved when that silence reached ``stale_ms``); none with ``stale_ms`` 0."""
        if self.stale_ms <= 0:
            return []
        out = []
        for edge in [e for e, t in self.seen.items() if t + self.stale_ms <= now_ms]:
            seen = self.seen.pop(edge)
            at = seen + self.stale_ms
            caller, callee = edge.split("\t")
            gone = EdgeStat(caller, callee, seen, "spans", 0, 0, math.nan, math.nan, math.nan)
            for kind, series, category in (("slower", "latency.slower", "performance"),
                                           ("faster", "latency.faster", "performance"),
                                           ("errors", "errors", "availability"),
                                           ("network", "network", "performance")):
                since = self.firing.pop(f"{edge}|{kind}", None)
                if since is None:
                    continue
                self.sent.pop(f"{edge}|{kind}", None)
                out.append(self._detection(
                    gone, series, "resolved", at, since, 0.0, math.nan, category,
                    f"calls {caller} -> {callee}: {kind} alarm ended, no call for "
                    f"{self.stale_ms // 1000} s", {"silent": True, "last_seen": seen}))
        return out

    def _network(self, edge: str, s: EdgeStat, end: int) -> list[Detection]:
        """Whether the bucket's calls spend ``network_ms`` or more outside the callee (the
        median network time of at least ``min_calls`` client -> server calls)."""
        if self.network_ms <= 0 or s.network_calls < self.min_calls:
            return []  # too few paired calls to tell: no news either way
        key = f"{edge}|network"
        since = self.firing.get(key)
        gap = s.network_p50_ms
        score = min(1.0, self.threshold * max(gap, 0.0) / self.network_ms)
        evidence = {"band_low": 0.0, "band_high": self.network_ms, "network_ms": gap,
                    "network_calls": s.network_calls, "client_p50_ms": s.p50_ms}
        if since is None and gap >= self.network_ms:
            since = self.firing[key] = s.bucket_ms
            self.sent[key] = end
            state, title = "firing", "spend"
        elif since is not None and gap < 0.7 * self.network_ms:
            del self.firing[key]
            self.sent.pop(key, None)
            state, title = "resolved", "are back to"
        elif since is not None and self._due(key, end):
            state, title = "firing", "still spend"
            evidence["keepalive"] = True
        else:
            return []
        return [self._detection(
            s, "network", state, end, since, score, gap, "performance",
            f"calls {s.caller} -> {s.callee} {title} {gap:.3g} ms outside {s.callee} "
            f"(median network time of {s.network_calls} calls; limit "
            f"{self.network_ms:g} ms)", evidence)]

    def _due(self, key: str, end: int) -> bool:
        """Whether firing alarm ``key`` is due to be re-sent at ``end`` (and mark it sent)."""
        if self.keepalive_ms <= 0 or end - self.sent.get(key, self.firing[key]) \
                < self.keepalive_ms:
            return False
        self.sent[key] = end
        return True

    @staticmethod
    def _median(base: Mapping[int, float], total: float) -> float:
        """The baseline's median call (ms), at the geometric middle of its bin."""
        mass = 0.0
        for b in sorted(base):
            mass += base[b]
            if mass >= total / 2:
                return (bin_floor_ms(b) * bin_floor_ms(b + 1)) ** 0.5
        return 0.0

    def _errors(self, edge: str, s: EdgeStat, start: int, end: int) -> list[Detection]:
        base = self.errors.setdefault(edge, [self.error_prior, 0.0])
        p0 = max(base[0], 1e-3)
        score = _score(s.errors, s.calls, p0)
        if s.errors < self.min_errors:
            score = min(score, self.clear - 1e-9)
        base[1] += 1
        key = f"{edge}|errors"
        since = self.firing.get(key)
        keepalive = False
        if since is None and score >= self.threshold:
            self.firing[key] = start
            self.sent[key] = end
            state, first = "firing", start
        elif since is not None and score < self.clear:
            del self.firing[key]
            self.sent.pop(key, None)
            state, first = "resolved", since
        elif since is not None and self._due(key, end):
            state, first, keepalive = "firing", since, True
        else:
            state, first = "", 0
        if key not in self.firing:  # an outage's errors are not learnt as usual
            base[0] += self.error_rate * (s.error_ratio - base[0])
        if not state:
            return []
        high = float(binom.isf(10 ** -(self.threshold * 8), s.calls, p0) / s.calls)
        evidence = {"expected": p0, "band_low": 0.0, "band_high": high, "errors": s.errors}
        return [self._detection(
            s, "errors", state, end, first, score, s.error_ratio, "availability",
            f"calls {s.caller} -> {s.callee}: {'still ' if keepalive else ''}{s.errors} of "
            f"{s.calls} failed (usual error ratio {p0:.3g})",
            {**evidence, "keepalive": True} if keepalive else evidence)]

    def _detection(self, s: EdgeStat, series: str, state: str, time: int, since: int,
                   score: float, observed: float, category: str, title: str,
                   evidence: Mapping[str, Any]) -> Detection:
        labels = {"caller": s.caller, "callee": s.callee, "series": f"edge.{series}"}
        ident = (detection_id(DETECTOR, labels, time, "keepalive")
                 if evidence.get("keepalive") else detection_id(DETECTOR, labels, since, state))
        return Detection(
            id=ident, time=time, detector=DETECTOR,
            detector_version=VERSION, signal="traces", service=s.callee, category=category,
            severity="medium" if state == "firing" else "low", state=state, title=title,
            observed=float(observed), threshold=self.threshold, score=float(score),
            window_start=since, window_end=time, entity=f"{s.caller} -> {s.callee}",
            labels=labels,
            description=f"{DETECTOR} v{VERSION}: score {score:.2f} (threshold "
                        f"{self.threshold:.2f}), seen by {s.caller}",
            confidence=float(min(1.0, max(score, 0.0))),
            evidence={**evidence, "caller": s.caller, "callee": s.callee, "calls": s.calls,
                      "p95_ms": s.p95_ms, "source": s.source, "model": DETECTOR,
                      "kind": "edge"})

    def to_dict(self) -> dict[str, Any]:
        """Plain-data state."""
        return {"hist": {e: [[b, round(c, 4)] for b, c in sorted(h.items())]
                         for e, h in self.hist.items()},
                "errors": self.errors, "firing": self.firing, "sent": self.sent,
                "seen": self.seen}

    def load(self, data: Mapping[str, Any]) -> None:
        """Restore :meth:`to_dict` output."""
        self.hist = {e: {int(b): float(c) for b, c in h} for e, h in
                     data.get("hist", {}).items()}
        self.errors = {k: list(v) for k, v in data.get("errors", {}).items()}
        self.firing = {k: int(v) for k, v in data.get("firing", {}).items()}
        self.sent = {k: int(v) for k, v in data.get("sent", {}).items() if k in self.firing}
        self.seen = {k: int(v) for k, v in data.get("seen", {}).items()}
