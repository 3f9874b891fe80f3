"""Edge anomalies: a caller's calls to one callee got slower or fail, blamed on the callee.

Each edge caller -> callee is three series, one point per bucket: client-side latency
p50 and p95 (log-scaled like the trace model's durations, scored by a
:class:`~models.series.SeriesBank` of :class:`~models.univariate.RobustSeasonal`), and
errors, scored as the binomial tail probability of that many failed calls given the
edge's usual error ratio. A network delay or a failing dependency shows on the callers'
side of the call, often not in the callee's own metrics, so the detection is raised *on
the callee* (``service`` = callee), naming the caller in its labels and evidence.

Scores and thresholds are the models' calibrated 0-1 scale (one meaning everywhere).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy.stats import binom

from models.calibration import score_from_log10p
from models.series import SeriesBank
from models.univariate import RobustSeasonal
from pipeline.events.detection import Detection, detection_id
from pipeline.graph.pairing import EdgeStat

DETECTOR = "service-graph"
VERSION = "1"
_LN10 = math.log(10.0)
_LATENCY = ("p50", "p95")


class EdgeModel:
    """Latency and error series of every edge; state is plain data (:meth:`to_dict`)."""

    def __init__(self, warmup: int = 5, threshold: float = 0.6, clear: float | None = None,
                 confirm: int = 1, error_rate: float = 0.05, error_prior: float = 0.01,
                 min_errors: int = 3) -> None:
        self.warmup = warmup
        self.threshold = threshold
        self.clear = 0.7 * threshold if clear is None else clear
        self.confirm = confirm
        self.error_rate = error_rate
        self.error_prior = error_prior
        self.min_errors = min_errors
        self.bank = SeriesBank(self._detector())
        self.errors: dict[str, list[float]] = {}  # edge -> [EW error ratio, buckets seen]
        self.firing: dict[str, int] = {}  # error key -> firing since

    def _detector(self) -> RobustSeasonal:
        return RobustSeasonal(warmup=self.warmup, threshold=self.threshold, rest_points=10,
                              shift_after=5, seasonality=False)

    def score(self, stats: Iterable[EdgeStat], bucket_ms: int) -> list[Detection]:
        """Score one or more buckets of edge statistics (in bucket order)."""
        stats = [s for s in stats if s.calls > 0]
        out: list[Detection] = []
        for bucket in sorted({s.bucket_ms for s in stats}):
            batch = [s for s in stats if s.bucket_ms == bucket]
            end = bucket + bucket_ms
            keys, values, meta = [], [], []
            for s in batch:
                for q in _LATENCY:
                    keys.append(f"{s.caller}\t{s.callee}|{q}")
                    values.append(math.log1p(getattr(s, f"{q}_ms")))
                    meta.append((s, q))
                out.extend(self._errors(s, bucket, end))
            if keys:
                out.extend(self._latency(keys, values, meta, bucket, end))
        return out

    def _latency(self, keys: list[str], values: list[float], meta: list[tuple[EdgeStat, str]],
                 start: int, end: int) -> list[Detection]:
        bank = self.bank
        res = bank.process(bank.slots(keys), np.full(len(keys), end, dtype=np.int64),
                           np.asarray(values), self.threshold, self.clear, self.confirm,
                           accept_points=30)
        out = []
        for i, kind in res.events:
            if kind == "keepalive":
                continue
            s, q = meta[i]
            low, high = (math.expm1(v) for v in res.bands[i])
            expected = math.expm1(res.expected[i])
            observed = getattr(s, f"{q}_ms")
            firing = kind == "firing"
            since = res.since.get(i, start)
            out.append(self._detection(
                s, f"latency.{q}", "firing" if firing else "resolved", end,
                since if firing else since, float(res.peaks[i]), observed, "performance",
                f"calls {s.caller} -> {s.callee}: {q} {observed:.4g} ms "
                f"(expected {expected:.4g} ms, {s.calls} calls)",
                {"expected": expected, "band_low": max(low, 0.0), "band_high": high}))
        return out

    def _errors(self, s: EdgeStat, start: int, end: int) -> list[Detection]:
        edge = f"{s.caller}\t{s.callee}"
        base = self.errors.setdefault(edge, [self.error_prior, 0.0])
        p0 = max(base[0], 1e-3)
        log10p = float(binom.logsf(s.errors - 1, s.calls, p0)) / _LN10 if s.errors else 0.0
        score = float(score_from_log10p(np.array([log10p]))[0])
        if s.errors < self.min_errors:
            score = min(score, self.clear - 1e-9)
        warm = base[1] >= self.warmup
        base[0] += self.error_rate * (s.error_ratio - base[0])
        base[1] += 1
        since = self.firing.get(edge)
        if since is None and warm and score >= self.threshold:
            self.firing[edge] = start
            state, first = "firing", start
        elif since is not None and score < self.clear:
            del self.firing[edge]
            state, first = "resolved", since
        else:
            return []
        high = float(binom.isf(10 ** -(self.threshold * 8), s.calls, p0) / s.calls)
        return [self._detection(
            s, "errors", state, end, first, score, s.error_ratio, "availability",
            f"calls {s.caller} -> {s.callee}: {s.errors} of {s.calls} failed "
            f"(usual error ratio {p0:.3g})",
            {"expected": p0, "band_low": 0.0, "band_high": high, "errors": s.errors})]

    def _detection(self, s: EdgeStat, series: str, state: str, time: int, since: int,
                   score: float, observed: float, category: str, title: str,
                   evidence: Mapping[str, Any]) -> Detection:
        labels = {"caller": s.caller, "callee": s.callee, "series": f"edge.{series}"}
        return Detection(
            id=detection_id(DETECTOR, labels, since, state), time=time, detector=DETECTOR,
            detector_version=VERSION, signal="traces", service=s.callee, category=category,
            severity="medium" if state == "firing" else "low", state=state, title=title,
            observed=float(observed), threshold=self.threshold, score=float(score),
            window_start=since, window_end=time, entity=f"{s.caller} -> {s.callee}",
            labels=labels,
            description=f"{DETECTOR} v{VERSION}: score {score:.2f} (threshold "
                        f"{self.threshold:.2f}), seen by {s.caller}",
            confidence=float(min(1.0, max(score, 0.0))),
            evidence={**evidence, "caller": s.caller, "callee": s.callee, "calls": s.calls,
                      "source": s.source, "model": DETECTOR, "kind": "edge"})

    def to_dict(self) -> dict[str, Any]:
        """Plain-data state (the series bank hex-encoded)."""
        return {"bank": self.bank.to_bytes().hex(), "errors": self.errors,
                "firing": self.firing}

    def load(self, data: Mapping[str, Any]) -> None:
        """Restore :meth:`to_dict` output."""
        self.bank = SeriesBank.from_bytes(bytes.fromhex(data["bank"]), self._detector())
        self.errors = {k: list(v) for k, v in data.get("errors", {}).items()}
        self.firing = {k: int(v) for k, v in data.get("firing", {}).items()}
