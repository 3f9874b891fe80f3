"""The model engine: every online model of one service, behind one small interface.

The stream calls it per service key with that service's records, as the codec decodes
them; the engine holds no per-service state itself (that is the
:class:`ServiceModelState` the caller keeps, e.g. in a Faust table)::

    engine = ModelEngine(registry)
    state = engine.new_state()
    state, detections, stats = engine.process("metrics", columns, state)
    state, detections = engine.advance(state, watermark_ms)   # time passes without data
    engine.reload()                                           # new published version?

- metrics: every series (host, metric) scored by the registry's current metric model
  (``seasonal-ensemble`` by default, :class:`~models.ensemble.SeasonalEnsemble`; or
  ``robust-seasonal`` with ``metric_model``), vectorised across the batch; plus the
  service vector (p95 latency, error ratio, CPU, memory) scored by ``service-hst``. A
  series met for the first time can be seeded from its stored history first
  (:meth:`ModelEngine.missing_series`, :meth:`ModelEngine.seed`);
- logs: :class:`~models.logs.LogAnalytics` run by the current ``log-patterns``
  (:class:`~models.analytics.LogPatterns`); traces:
  :class:`~models.traces.TraceAnalytics` run by the current ``trace-red``
  (:class:`~models.analytics.TraceRED`).

Detections are emitted on state changes and carry the model name and version; with
``keepalive_ms`` a firing alarm is also re-sent (``evidence["keepalive"]``) whenever its
model re-evaluates it still firing and a ``keepalive_ms`` tick of event time has passed
since it was last sent. Event time only: nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.analytics import AnalyticsModel, LogPatterns, TraceRED
from models.base import Detector, Finding, ModelError, keepalive_due
from models.calibration import severity_of
from models.columns import metric_category, peer_series, times_of, values_of
from models.ensemble import SeasonalEnsemble
from models.logs import LogAnalytics
from models.multivariate import FEATURE_METRICS, FEATURES, ServiceVectorHST
from models.registry import ModelRegistry
from models.series import BankResult, process_banks
from models.service_state import ServiceModelState
from models.traces import TraceAnalytics
from models.univariate import RobustSeasonal
from pipeline.events.detection import Detection, detection_id

BUILTIN = "builtin-1"
METRIC_MODEL = SeasonalEnsemble.name
VECTOR_MODEL = ServiceVectorHST.name
LOG_MODEL = LogPatterns.name
TRACE_MODEL = TraceRED.name
METRIC_CLASSES: dict[str, type[SeasonalEnsemble | RobustSeasonal]] = {
    SeasonalEnsemble.name: SeasonalEnsemble, RobustSeasonal.name: RobustSeasonal}
"""Metric models the engine can run per series, by registry name."""
_OTHERS: dict[str, type[Detector | AnalyticsModel]] = {
    VECTOR_MODEL: ServiceVectorHST, LOG_MODEL: LogPatterns, TRACE_MODEL: TraceRED}
SKIP_METRICS = frozenset({"heartbeat"})  # constant while up; absence is a rule's job
_FEATURE_OF = {metric: feature for feature, metrics in FEATURE_METRICS.items()
               for metric in metrics}


@dataclass
class StagedMetrics:
    """One service's metric slice, ready to score: columns, kept rows, series slots."""

    state: ServiceModelState
    times: np.ndarray
    names: list[str]
    hosts: list[str]
    values: np.ndarray
    idx: np.ndarray  # rows scored (finite values of metrics not skipped)
    edges: dict[int, tuple[str, dict[str, str]]]  # per-edge series, by position in idx
    slots: np.ndarray  # bank slot of each scored row


class ModelEngine:
    """Online models for metrics, logs and traces, one :class:`ServiceModelState` per key.

    ``threshold`` is the calibrated score at which every model fires (one meaning
    everywhere). A metric series fires after ``confirm_points`` points in a row outside
    the band fixed when its score crossed the threshold (or two or more spanning
    ``confirm_ms``: a series with a point a minute confirms on its second point), from
    the first of them on, and resolves after as many
    points back inside (or once the model accepted the new level: score below ``clear``,
    default 0.7 x threshold, for ``accept_points`` points); see
    :class:`~models.series.SeriesBank`.

    ``registry`` supplies the current ``robust-seasonal``, ``service-hst``,
    ``log-patterns`` and ``trace-red`` versions; without one (or before a publish) the
    built-in defaults run as version ``builtin-1`` (``log_window_ms``,
    ``trace_window_ms`` and ``warmup_windows`` configure the built-in log and trace
    versions; a published one brings its own, and its unset ``threshold``/``clear`` are
    the engine's). After :meth:`reload` each service switches when it is next
    processed or advanced: its metric series keep their state under the new detector,
    and its log and trace analytics are reconfigured, keeping templates, baselines and
    alarms (see :meth:`LogAnalytics.reconfigure` and :meth:`TraceAnalytics.reconfigure`).

    ``keepalive_ms`` (0: off) re-sends a firing alarm at the ticks ``fired + k x
    keepalive_ms`` of event time, when a point or closed window of its series shows it
    still firing (the latest tick reached, at most one per point or window); a silent
    series sends none, as a rule's series without evaluations does. ``stale_ms`` (0: off)
    ends the trace alarms of an operation that had no span for that long (see
    :mod:`models.traces`).
    """

    def __init__(self, registry: ModelRegistry | None = None, threshold: float = 0.6,
                 clear: float | None = None, warmup_points: int = 10,
                 rest_points: int = 180, log_window_ms: int = 60_000,
                 trace_window_ms: int = 60_000, warmup_windows: int = 10,
                 confirm_points: int = 4, accept_points: int = 360,
                 vector: bool = True, keepalive_ms: int = 0,
                 metric_model: str = METRIC_MODEL, confirm_ms: int = 30_000,
                 accept_ms: int = 0, rearm: bool = False, stale_ms: int = 0) -> None:
        if not isinstance(keepalive_ms, int) or keepalive_ms < 0:
            raise ModelError(f"keepalive_ms={keepalive_ms!r}: expected a whole number of "
                             f"milliseconds >= 0 (0: no keep-alives)")
        if not isinstance(stale_ms, int) or stale_ms < 0:
            raise ModelError(f"stale_ms={stale_ms!r}: expected a whole number of "
                             f"milliseconds >= 0 (0: silence ends no alarm)")
        if not isinstance(accept_points, int) or accept_points < 0:
            raise ModelError(f"accept_points={accept_points!r}: expected a whole number of "
                             f"points >= 0 (0: a shifted series fires until it returns)")
        if metric_model not in METRIC_CLASSES:
            raise ModelError(f"metric_model={metric_model!r}: expected one of "
                             f"{', '.join(METRIC_CLASSES)}")
        self.metric_model = metric_model
        self._classes: dict[str, type[Detector | AnalyticsModel]] = {
            metric_model: METRIC_CLASSES[metric_model], **_OTHERS}
        self.registry = registry
        self.threshold = threshold
        self.clear = 0.7 * threshold if clear is None else clear
        self.warmup_points = warmup_points
        self.rest_points = rest_points
        self.log_window_ms = log_window_ms
        self.trace_window_ms = trace_window_ms
        self.warmup_windows = warmup_windows
        self.confirm_points = confirm_points
        self.confirm_ms = confirm_ms
        self.accept_points = accept_points
        self.accept_ms = accept_ms
        self.rearm = rearm
        self.vector = vector
        self.keepalive_ms = keepalive_ms
        self.stale_ms = stale_ms
        self.versions = dict.fromkeys(self._classes, BUILTIN)
        for name in self._classes:
            self._install(name, self._builtin(name), BUILTIN)
        self.reload()

    def _configure(self, detector: SeasonalEnsemble | RobustSeasonal
                   ) -> SeasonalEnsemble | RobustSeasonal:
        return detector.clone({"warmup": self.warmup_points, "threshold": self.threshold,
                               "rest_points": self.rest_points})

    def _builtin(self, name: str) -> Detector | AnalyticsModel:
        if name == LOG_MODEL:
            return LogPatterns(window_ms=self.log_window_ms, warmup_windows=self.warmup_windows)
        if name == TRACE_MODEL:
            return TraceRED(window_ms=self.trace_window_ms, warmup_windows=self.warmup_windows)
        return self._classes[name]()

    def _install(self, name: str, model: Detector | AnalyticsModel, label: str) -> None:
        """Run ``model`` as version ``label`` of ``name`` (services switch when next run)."""
        if not isinstance(model, self._classes[name]):
            raise ModelError(f"registry {name!r} v{label}: expected a "
                             f"{self._classes[name].__name__}, got {type(model).__name__}")
        if isinstance(model, (SeasonalEnsemble, RobustSeasonal)):
            self.metric_detector = self._configure(model)
        elif isinstance(model, ServiceVectorHST):
            self.vector_template = model.clone({"threshold": self.threshold})
        elif isinstance(model, LogPatterns):
            self.log_model = model.resolve(self.threshold, self.clear)
        elif isinstance(model, TraceRED):
            self.trace_model = model.resolve(self.threshold, self.clear)
        self.versions[name] = label

    def reload(self) -> bool:
        """Pick up newly current registry versions; True when something changed."""
        if self.registry is None:
            return False
        changed = False
        for name in self._classes:
            current = self.registry.current(name)
            label = BUILTIN if current is None else current.label
            if label != self.versions[name]:
                self._install(name, self._builtin(name) if current is None
                              else self.registry.load(name, current.version), label)
                changed = True
        return changed

    def new_state(self, vector: ServiceVectorHST | None = None) -> ServiceModelState:
        """Fresh model state for one service (around ``vector``, a restored service
        vector detector, if given; else a clone of the current one)."""
        return ServiceModelState(self.metric_detector,
                                 self.vector_template.clone() if vector is None else vector,
                                 LogAnalytics(self.log_model), TraceAnalytics(self.trace_model))

    def _sync(self, state: ServiceModelState) -> None:
        """Hand newly installed log and trace versions to one service's analytics."""
        if state.logs.config is not self.log_model:
            state.logs.reconfigure(self.log_model)
        if state.traces.config is not self.trace_model:
            state.traces.reconfigure(self.trace_model)

    # -- processing ---------------------------------------------------------------------

    def process(self, signal: str, columns: Mapping[str, Any], state: ServiceModelState
                ) -> tuple[ServiceModelState, list[Detection], dict[str, int]]:
        """Score one service's records of one signal; returns detections and counters."""
        n = len(values_of(columns, "service")) if "service" in columns else 0
        if n == 0:
            return state, [], {"records": 0}
        services = values_of(columns, "service")
        state.service = state.service or services[0]
        self._sync(state)
        if signal == "metrics":
            findings, stats = self._metrics(columns, state)
        elif signal == "logs":
            late = state.logs.add(times_of(columns, "time").tolist(), values_of(columns, "host"),
                                  values_of(columns, "severity_number"),
                                  values_of(columns, "body"))
            findings, stats = state.logs.advance(None, self.keepalive_ms), {"late": late}
        elif signal == "traces":
            spans = {k: values_of(columns, k) for k in ("service", "span_id", "parent_span_id",
                                                      "kind", "name", "status",
                                                      "duration_ms")}
            spans["start"] = times_of(columns, "start").tolist()
            spans["attributes"] = (values_of(columns, "attributes")
                                   if "attributes" in columns else None)
            late = state.traces.add(spans)
            findings = state.traces.advance(state.service, None, self.keepalive_ms,
                                            self.stale_ms)
            stats = {"late": late, "edges": len(state.traces.edges)}
        else:
            raise ModelError(f"signal {signal!r}: expected metrics, logs or traces")
        stats["records"] = n
        return state, [self._detection(f, state.service) for f in findings], stats

    def advance(self, state: ServiceModelState, watermark_ms: int
                ) -> tuple[ServiceModelState, list[Detection]]:
        """Event time reached ``watermark_ms`` without data: close log and trace windows."""
        self._sync(state)
        findings = state.logs.advance(watermark_ms, self.keepalive_ms)
        findings += state.traces.advance(state.service, watermark_ms, self.keepalive_ms,
                                         self.stale_ms)
        return state, [self._detection(f, state.service) for f in findings]

    def call_graph(self, state: ServiceModelState) -> list[tuple[str, str, int, int]]:
        """Caller → callee edges seen in this service's spans: (caller, callee, count, last)."""
        return state.traces.call_graph()

    def stage(self, signal: str, columns: Mapping[str, Any], state: ServiceModelState
              ) -> StagedMetrics | None:
        """The first half of :meth:`process` for a metric slice: the service named, its
        series given slots; :meth:`process_staged` then scores many staged slices (of
        any services) together. None for other signals and empty slices: process them."""
        if signal != "metrics" or "service" not in columns:
            return None
        services = values_of(columns, "service")
        if not len(services):
            return None
        state.service = state.service or services[0]
        self._sync(state)
        return self._stage(columns, state)

    def process_staged(self, staged: Sequence[StagedMetrics]
                       ) -> list[tuple[ServiceModelState, list[Detection], dict[str, int]]
                                 | Exception]:
        """Score staged metric slices as :meth:`process` would one after the other, with
        the series of every slice in one bank's rounds (see
        :func:`~models.series.process_banks`). If that raises, no state has changed and
        the slices may be processed one by one; a slice whose findings fail afterwards
        gets its exception in its place."""
        results = process_banks([(s.state.metrics, s.slots, s.times[s.idx], s.values[s.idx])
                                 for s in staged], self.threshold, self.clear,
                                self.confirm_points, self.accept_points, self.keepalive_ms,
                                confirm_ms=self.confirm_ms, accept_ms=self.accept_ms,
                                rearm=self.rearm)
        out: list[Any] = []
        for s, res in zip(staged, results, strict=True):
            try:
                findings, stats = self._findings(s, res)
                stats["records"] = len(s.names)
                out.append((s.state, [self._detection(f, s.state.service) for f in findings],
                            stats))
            except Exception as exc:  # noqa: BLE001 - the caller logs it for that slice
                out.append(exc)
        return out

    def _metrics(self, columns: Mapping[str, Any], state: ServiceModelState
                 ) -> tuple[list[Finding], dict[str, int]]:
        staged = self._stage(columns, state)
        res = state.metrics.process(staged.slots, staged.times[staged.idx],
                                    staged.values[staged.idx], self.threshold, self.clear,
                                    self.confirm_points, self.accept_points,
                                    self.keepalive_ms, confirm_ms=self.confirm_ms,
                                    accept_ms=self.accept_ms, rearm=self.rearm)
        return self._findings(staged, res)

    def _stage(self, columns: Mapping[str, Any], state: ServiceModelState) -> StagedMetrics:
        times = times_of(columns, "time")
        names, hosts = values_of(columns, "name"), values_of(columns, "host")
        values = np.asarray(values_of(columns, "value"), dtype=np.float64)
        keep = np.fromiter((name not in SKIP_METRICS for name in names), bool, len(names))
        idx = np.flatnonzero(keep & np.isfinite(values))
        edges = peer_series(columns, idx)  # per-edge series: identified by attributes
        keys = [f"{hosts[i]}|{names[i]}{edges[n][0] if n in edges else ''}"
                for n, i in enumerate(idx.tolist())]
        state.metrics.adopt(self.metric_detector)
        return StagedMetrics(state, times, names, hosts, values, idx, edges,
                             state.metrics.slots(keys))

    def _findings(self, staged: StagedMetrics, res: BankResult
                  ) -> tuple[list[Finding], dict[str, int]]:
        state, times, names, hosts = staged.state, staged.times, staged.names, staged.hosts
        values, idx, edges = staged.values, staged.idx, staged.edges
        findings = []
        for i, kind in res.events:
            j = int(idx[i])
            low, high = res.bands[i]
            keep = kind == "keepalive"
            t = int(times[j])
            evidence = {"expected": float(res.expected[i]), "band_low": low,
                        "band_high": high, "model": self.metric_model}
            if i in res.reasons:
                evidence["resolution"] = res.reasons[i]
            edge = edges.get(i, ("", {}))[1]
            where = (f"to {edge['peer.service']}" if "peer.service" in edge
                     else f"on {hosts[j]}")
            findings.append(Finding(
                self.metric_model, "metrics", "firing" if keep else kind, res.ticks.get(i, t),
                names[j], res.peaks[i], float(values[j]), res.since.get(i, t), t,
                host=hosts[j], keepalive=keep,
                category=metric_category(names[j]),
                title=f"{names[j]} {where} is {values[j]:.4g}, expected about "
                      f"{res.expected[i]:.4g}",
                labels={"host": hosts[j], "metric": names[j], **edge}, evidence=evidence))
        if self.vector:
            findings += self._vector(times, names, values, state)
        return findings, {"points": int(idx.size), "series": len(state.metrics)}

    def missing_series(self, columns: Mapping[str, Any], state: ServiceModelState
                       ) -> list[tuple[str, str]]:
        """(host, metric) of the batch's metric series that have no model state yet: the
        ones worth seeding from stored history before :meth:`process`."""
        names, hosts = values_of(columns, "name"), values_of(columns, "host")
        known = state.metrics.index
        # a per-edge series (a point naming its peer) is learned live, not seeded: the
        # history is read by host and metric, which would mix the edges
        edges = peer_series(columns, np.arange(len(names)))
        pairs = (set(zip(hosts, names, strict=True)) if not edges else
                 {(h, n) for r, (h, n) in enumerate(zip(hosts, names, strict=True))
                  if r not in edges})
        return sorted((h, n) for h, n in pairs
                      if n not in SKIP_METRICS and f"{h}|{n}" not in known)

    def seed(self, state: ServiceModelState, history: Mapping[str, Any]) -> int:
        """Teach series without state their history (metric columns ``time``, ``host``,
        ``name``, ``value``, e.g. a bounded store query), as if it had streamed; no
        detections. Series the state already knows are left alone. Returns how many
        series were seeded."""
        if not len(values_of(history, "name")):
            return 0
        names, hosts = values_of(history, "name"), values_of(history, "host")
        values = np.asarray(values_of(history, "value"), dtype=np.float64)
        keep = np.fromiter((n not in SKIP_METRICS for n in names), bool, len(names))
        keep &= np.isfinite(values)
        idx = np.flatnonzero(keep)
        state.metrics.adopt(self.metric_detector)
        return state.metrics.seed([f"{hosts[i]}|{names[i]}" for i in idx.tolist()],
                                  times_of(history, "time")[idx], values[idx])

    def _vector(self, times: np.ndarray, names: list[str], values: np.ndarray,
                state: ServiceModelState) -> list[Finding]:
        pending = state.vector_pending
        for t, name, value in zip(times.tolist(), names, values.tolist(), strict=True):
            feature = _FEATURE_OF.get(name)
            if feature is None or t < state.vector_done_until:
                continue
            sums = pending.setdefault(str(t), {}).setdefault(feature, [0.0, 0.0])
            sums[0] += value
            sums[1] += 1.0
        if not pending:
            return []
        latest = max(int(t) for t in pending)
        out = []
        det = state.vector
        for t in sorted(int(t) for t in pending if int(t) < latest):
            vec = {f: s / c for f, (s, c) in pending.pop(str(t)).items()}
            if len(vec) < len(FEATURES):
                continue
            explain = det.explain_one(vec)
            score, raw = det.score_learn(vec)
            if state.vector_firing is None:  # armed by a score over the threshold, then
                armed = state.vector_streak > 0 or score >= self.threshold  # confirmed
                state.vector_streak = state.vector_streak + 1 if armed and raw >= self.clear \
                    else 0
                state.vector_peak = max(state.vector_peak, raw) if state.vector_streak else 0.0
            fire = state.vector_firing is None and state.vector_streak >= self.confirm_points
            calm = state.vector_firing is not None and raw < self.clear
            tick = None
            if state.vector_firing is not None and not calm:
                sent = state.vector_firing if state.vector_sent is None else state.vector_sent
                tick = keepalive_due(sent, t, self.keepalive_ms)
            if fire:
                score, state.vector_streak = state.vector_peak, 0
            if fire or calm or tick is not None:
                feature = explain.get("feature", "")
                out.append(Finding(
                    VECTOR_MODEL, "metrics", "resolved" if calm else "firing",
                    t if tick is None else tick, "service-vector",
                    raw if calm else score if fire else state.vector_peak,
                    float(vec.get(feature, float("nan"))) if feature else float("nan"),
                    t if fire else state.vector_firing, t,
                    category=metric_category(FEATURES.get(feature, "")),
                    title=f"unusual combination of latency, errors, CPU and memory"
                          f"{f' (most unusual: {feature})' if feature else ''}",
                    labels={"vector": "latency_p95,error_ratio,cpu,memory"},
                    evidence={**explain, "model": VECTOR_MODEL,
                              "vector": {k: round(v, 6) for k, v in vec.items()}},
                    keepalive=tick is not None))
                state.vector_firing = None if calm else t if fire else state.vector_firing
                state.vector_sent = None if calm else t if fire else tick
            state.vector_done_until = t + 1
        return out

    def _detection(self, f: Finding, service: str) -> Detection:
        detector = f"model:{f.model}"
        version = self.versions.get(f.model, BUILTIN)
        labels = {"service": service, **f.labels}
        threshold = self.threshold if f.threshold is None else f.threshold
        severity = f.severity or severity_of(f.score, threshold)
        if f.state == "resolved":
            severity = f.severity or "low"
        evidence = {**f.evidence, "model_version": version}
        if f.keepalive:  # the rules' convention: id from the keep-alive's own time
            evidence.update(keepalive=True, firing_since=f.window_start)
        return Detection(
            id=detection_id(detector, labels, f.time if f.keepalive else f.window_start,
                            f.state), time=f.time,
            detector=detector, detector_version=version, signal=f.signal, service=service,
            category=f.category or "performance", severity=severity, state=f.state,
            title=f.title, observed=f.observed, threshold=threshold, score=f.score,
            window_start=f.window_start, window_end=f.window_end, host=f.host,
            entity=f.entity, labels=labels,
            description=f"{detector} v{version}: score {f.score:.2f} "
                        f"(threshold {threshold:.2f})",
            confidence=float(min(1.0, max(f.score, 0.0))),
            evidence=evidence)
