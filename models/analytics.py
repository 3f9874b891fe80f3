"""Configurations of the windowed analytics models, as the registry publishes them.

The log and trace models do not score single points: per service they count records
into tumbling windows and score each closed window (:class:`~models.logs.LogAnalytics`,
:class:`~models.traces.TraceAnalytics`). What the registry versions is their
*configuration*: a :class:`LogPatterns` or :class:`TraceRED`, whose constructor
arguments are the parameters, stored under the same names (plain JSON, so a version is
published without pickling). The engine builds every service's analytics from the
current version and hands a newly published one to the running services.

``threshold`` and ``clear`` left ``None`` mean the engine's levels (one meaning of the
calibrated score everywhere); :meth:`AnalyticsModel.resolve` fills them in.

>>> LogPatterns(min_count=20).resolve(0.6).params["clear"]
0.42
>>> TraceRED(window_ms=0)
Traceback (most recent call last):
...
models.base.ModelError: TraceRED: window_ms=0: expected a whole number >= 1
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Self

from river.base import Base

from models.base import ModelError


def _check(model: str, field: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise ModelError(f"{model}: {field}={value!r}: expected {expected}")


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _number(value: Any, low: float, high: float) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and low <= value <= high)


class AnalyticsModel(Base):
    """A windowed analytics model's configuration: published, loaded and cloned like a
    detector, but the engine builds per-service analytics from it instead of scoring."""

    name: ClassVar[str] = ""
    """Model name used in detections (``model:<name>``) and in the registry."""

    threshold: float | None
    clear: float | None
    _param_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._param_names = tuple(inspect.signature(cls.__init__).parameters)[1:]

    @property
    def params(self) -> dict[str, Any]:
        """The configuration: constructor arguments by name (JSON-friendly values)."""
        return {name: getattr(self, name) for name in self._param_names}

    def _validate(self, whole: dict[str, int], numbers: dict[str, tuple[float, float]]
                  ) -> None:
        """Raise :class:`ModelError` naming the first parameter out of its range."""
        cls = type(self).__name__
        for field, low in whole.items():
            value = getattr(self, field)
            _check(cls, field, value, _whole(value, low), f"a whole number >= {low}")
        for field, (low, high) in numbers.items():
            value = getattr(self, field)
            if value is not None or field not in ("threshold", "clear"):
                _check(cls, field, value, _number(value, low, high),
                       f"a number in [{low}, {high}]")
        if self.threshold is not None and self.clear is not None:
            _check(cls, "clear", self.clear, self.clear < self.threshold,
                   f"a level below threshold={self.threshold}")

    def saved_as(self, params: dict[str, Any] | None) -> Self:
        """The configuration a state was saved under: ``params``, or this one when they
        are the same or absent (states saved before configurations were versioned)."""
        return self if params is None or params == self.params else type(self)(**params)

    def resolve(self, threshold: float = 0.6, clear: float | None = None) -> Self:
        """This configuration with unset levels filled in: ``threshold`` and ``clear``
        (default 0.7 x threshold); a configured threshold brings its own 0.7 x clear."""
        if self.threshold is not None:
            threshold, clear = self.threshold, None
        if self.clear is not None:
            clear = self.clear
        elif clear is None:
            clear = 0.7 * threshold
        if (self.threshold, self.clear) == (threshold, clear):
            return self
        return self.clone({"threshold": threshold, "clear": clear})


class LogPatterns(AnalyticsModel):
    """Configuration of the log model (``log-patterns``): windows, baselines, drain3.

    ``window_ms``/``grace_ms``: tumbling count windows and how long a window waits for
    late records; ``warmup_windows``: windows a service observes before anything fires;
    ``min_count``: the fewest records of a template (or of ERROR+FATAL) in a window that
    can alarm; ``rate``: how fast count baselines follow; ``threshold``/``clear``: alarm
    levels (``None``: the engine's); ``sim_th``, ``depth``, ``max_children``,
    ``max_clusters``: drain3's similarity threshold, tree depth (>= 3) and limits.
    """

    name = "log-patterns"

    def __init__(self, window_ms: int = 60_000, grace_ms: int = 5_000,
                 warmup_windows: int = 10, min_count: int = 5, rate: float = 0.05,
                 threshold: float | None = None, clear: float | None = None,
                 sim_th: float = 0.4, depth: int = 4, max_children: int = 100,
                 max_clusters: int = 1000) -> None:
        self.window_ms = window_ms
        self.grace_ms = grace_ms
        self.warmup_windows = warmup_windows
        self.min_count = min_count
        self.rate = rate
        self.threshold = threshold
        self.clear = clear
        self.sim_th = sim_th
        self.depth = depth
        self.max_children = max_children
        self.max_clusters = max_clusters
        self._validate({"window_ms": 1, "grace_ms": 0, "warmup_windows": 0, "min_count": 1,
                        "depth": 3, "max_children": 1, "max_clusters": 1},
                       {"rate": (1e-6, 1.0), "threshold": (0.01, 1.0), "clear": (0.0, 1.0),
                        "sim_th": (0.0, 1.0)})


class TraceRED(AnalyticsModel):
    """Configuration of the trace model (``trace-red``): RED per operation per window.

    ``window_ms``/``grace_ms``/``warmup_windows``/``threshold``/``clear`` as for
    :class:`LogPatterns`; ``error_rate``: how fast an operation's usual error ratio
    follows; ``error_prior``: the error ratio assumed for a new operation;
    ``min_errors``: the fewest failed spans in a window that can alarm; ``rest_points``,
    ``shift_after`` and ``accept_points``: the rate and duration series' rest after an
    alarm, level-shift acceptance and windows to accept a new level (see
    :class:`~models.series.SeriesBank`); ``confirm_windows``: windows in a row out of
    band before a rate or duration series fires (dated from the first), as a metric
    model confirms on its second point: one slow window is a blip, not a problem. In a
    row means adjacent: windows without calls in between start the count over.
    """

    name = "trace-red"

    def __init__(self, window_ms: int = 60_000, grace_ms: int = 10_000,
                 warmup_windows: int = 10, threshold: float | None = None,
                 clear: float | None = None, error_rate: float = 0.05,
                 error_prior: float = 0.01, min_errors: int = 3, rest_points: int = 10,
                 shift_after: int = 5, accept_points: int = 30,
                 confirm_windows: int = 2) -> None:
        self.window_ms = window_ms
        self.grace_ms = grace_ms
        self.warmup_windows = warmup_windows
        self.threshold = threshold
        self.clear = clear
        self.error_rate = error_rate
        self.error_prior = error_prior
        self.min_errors = min_errors
        self.rest_points = rest_points
        self.shift_after = shift_after
        self.accept_points = accept_points
        self.confirm_windows = confirm_windows
        self._validate({"window_ms": 1, "grace_ms": 0, "warmup_windows": 0, "min_errors": 1,
                        "rest_points": 0, "shift_after": 1, "accept_points": 1,
                        "confirm_windows": 1},
                       {"threshold": (0.01, 1.0), "clear": (0.0, 1.0),
                        "error_rate": (1e-6, 1.0), "error_prior": (0.0, 1.0)})
