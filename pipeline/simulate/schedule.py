"""Scheduling incidents: explicit schedules, seeded random mixes, and their resolution.

A :class:`ScheduledIncident` says *what* and *when*; :func:`resolve_schedule` turns a
schedule into labelled :class:`~pipeline.simulate.labels.Incident` s: times aligned to the
tick grid, a root-cause service chosen (seeded) when none is given, the scenario's
magnitudes drawn, affected services derived from the call graph. Incidents may not
overlap unless ``allow_overlap=True``. The scenario ``quiet`` injects nothing and is
recorded as a quiet period.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.events import durations
from pipeline.events.times import format_ms
from pipeline.simulate.labels import Incident
from pipeline.simulate.scenarios import MINUTE_MS, SCENARIO_CLASSES
from pipeline.simulate.topology import SimulationError, System

QUIET = "quiet"
SCENARIO_NAMES = (*SCENARIO_CLASSES, QUIET)
_QUIET_MS = (15 * MINUTE_MS, 30 * MINUTE_MS)


class ScenarioError(SimulationError):
    """An incident schedule is invalid (unknown scenario or service, overlap, out of range)."""


@dataclass(frozen=True)
class ScheduledIncident:
    """An incident to inject: scenario, start (epoch ms), duration, optional root service."""

    scenario: str
    start_ms: int
    duration_ms: int
    service: str | None = None
    id: str | None = None


def _at(ms: int, start_ms: int) -> str:
    """A time as the schedule writes it (offset from the start) and in UTC."""
    return f"{durations.format_duration(ms - start_ms)} ({format_ms(ms)[:19]}Z)"


def _span(s: int, e: int, start_ms: int) -> str:
    """``from <offset> (<UTC>) to <offset> (<UTC>)``."""
    return f"from {_at(s, start_ms)} to {_at(e, start_ms)}"


def resolve_schedule(system: System, schedule: Sequence[ScheduledIncident], *,
                     start_ms: int, end_ms: int, interval_ms: int,
                     rng: np.random.Generator, allow_overlap: bool = False,
                     ) -> tuple[list[Incident], list[tuple[int, int]]]:
    """Turn a schedule into labelled incidents and quiet periods (both sorted by start)."""
    items = sorted(schedule, key=lambda s: (s.start_ms, s.scenario))
    spans: list[tuple[int, int, ScheduledIncident]] = []
    for item in items:
        if item.scenario not in SCENARIO_NAMES:
            raise ScenarioError(f"unknown scenario {item.scenario!r}; expected one of "
                                f"{', '.join(SCENARIO_NAMES)}")
        if item.duration_ms <= 0:
            raise ScenarioError(f"{item.scenario}: duration_ms must be > 0, "
                                f"got {item.duration_ms}")
        s = start_ms + (item.start_ms - start_ms) // interval_ms * interval_ms
        e = s + max(1, -(-item.duration_ms // interval_ms)) * interval_ms
        if s < start_ms or e > end_ms:
            raise ScenarioError(f"{item.scenario} {_span(s, e, start_ms)} lies outside the "
                                f"simulated range {_span(start_ms, end_ms, start_ms)}")
        spans.append((s, e, item))
    if not allow_overlap:
        for (s1, e1, a), (s2, _, b) in zip(spans, spans[1:], strict=False):
            if s2 < e1:
                raise ScenarioError(f"{a.scenario} {_span(s1, e1, start_ms)} overlaps "
                                    f"{b.scenario} starting at {_at(s2, start_ms)}; pass "
                                    "--allow-overlap to let incidents overlap")
    incidents: list[Incident] = []
    quiet: list[tuple[int, int]] = []
    for s, e, item in spans:
        if item.scenario == QUIET:
            quiet.append((s, e))
            continue
        scenario = SCENARIO_CLASSES[item.scenario]
        eligible = scenario.eligible(system)
        root = item.service
        if root is None:
            if not eligible:
                raise ScenarioError(f"{item.scenario}: the system has no service it can start "
                                    f"in (kinds {', '.join(scenario.root_kinds)})")
            root = eligible[int(rng.integers(len(eligible)))]
        elif root not in system.names:
            raise ScenarioError(f"{item.scenario}: unknown service {root!r}; the system has "
                                f"{', '.join(system.names)}")
        elif root not in eligible:
            raise ScenarioError(f"{item.scenario} cannot start in {root!r} (kind "
                                f"{system.service(root).kind}); eligible: "
                                f"{', '.join(eligible) or 'none'}")
        ident = item.id or f"inc-{len(incidents) + 1:03d}"
        if any(inc.id == ident for inc in incidents):
            raise ScenarioError(f"duplicate incident id {ident!r}")
        incidents.append(Incident(ident, item.scenario, s, e, root, scenario.category,
                                  scenario.affected(system, root),
                                  scenario.draw_params(rng, system, root, e - s)))
    return incidents, quiet


def mix_incidents(system: System, start_ms: int, duration_ms: int,
                  rng: np.random.Generator, *, interval_ms: int = 10_000,
                  scenarios: Sequence[str] | None = None, warmup_ms: int = 15 * MINUTE_MS,
                  gap_ms: tuple[int, int] = (5 * MINUTE_MS, 20 * MINUTE_MS),
                  ) -> list[ScheduledIncident]:
    """A seeded, non-overlapping random schedule cycling through ``scenarios``.

    Every scenario (``quiet`` included) is used once, in shuffled order, before any repeats;
    the first incident starts after ``warmup_ms`` so online models can warm up.
    """
    unknown = sorted(set(scenarios or ()) - set(SCENARIO_NAMES))
    if unknown:
        raise ScenarioError(f"unknown scenario(s) {', '.join(unknown)}; expected "
                            f"{', '.join(SCENARIO_NAMES)}")
    names = [n for n in (scenarios or SCENARIO_NAMES)
             if n == QUIET or SCENARIO_CLASSES[n].eligible(system)]
    end = start_ms + duration_ms
    t = start_ms + warmup_ms
    out: list[ScheduledIncident] = []
    order: list[str] = []
    while names:
        if not order:
            order = [names[i] for i in rng.permutation(len(names))]
        name = order.pop(0)
        lo, hi = _QUIET_MS if name == QUIET else SCENARIO_CLASSES[name].duration_ms
        gap = _align(int(rng.integers(gap_ms[0], gap_ms[1] + 1)), interval_ms)
        dur = max(interval_ms, _align(int(rng.integers(lo, hi + 1)), interval_ms))
        if t + gap + dur > end:
            break
        out.append(ScheduledIncident(name, t + gap, dur))
        t += gap + dur
    return out


def parse_schedule(text: str, start_ms: int) -> list[ScheduledIncident]:
    """Parse ``"db_outage@30m+10m,error_spike:orders@1h+15m"`` (offsets from ``start_ms``).

    Each item is ``scenario[:service]@offset+duration``; units ms, s, m, h, d (``1h30m``).
    """
    out = []
    for raw in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"([a-z_]+)(?::([\w.-]+))?@(\w+)\+(\w+)", raw)
        if not m:
            raise ScenarioError(f"cannot parse incident {raw!r}; expected "
                                "scenario[:service]@offset+duration, e.g. db_outage@30m+10m")
        name, service, offset, duration = m.groups()
        if name not in SCENARIO_NAMES:
            raise ScenarioError(f"{raw!r}: unknown scenario {name!r}; expected one of "
                                f"{', '.join(SCENARIO_NAMES)}")
        out.append(ScheduledIncident(name, start_ms + parse_duration_ms(offset),
                                     parse_duration_ms(duration), service))
    return out


def parse_duration_ms(text: str) -> int:
    """``"90s"`` -> 90000; units ms, s, m, h, d, summed like ``1h30m``."""
    try:
        return durations.parse_duration_ms(text)
    except durations.DurationError as exc:
        raise ScenarioError(f"cannot parse duration {text!r}; expected {exc.expected}") from None


def start_ending_at(end_ms: int, duration_ms: int, interval_ms: int) -> int:
    """The start, on an interval, of a run of ``duration_ms`` that ends at ``end_ms``."""
    return _align(end_ms - duration_ms, interval_ms)


def _align(ms: int, interval_ms: int) -> int:
    return ms // interval_ms * interval_ms
