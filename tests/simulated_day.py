"""Simulated runs that end now but always at the same point of the shop's daily load cycle.

``tocsin simulate`` ends its run at the wall clock by default, and the simulated load follows
the hour of day (peaking at ``peak_hour_utc``). A test's data would then depend on the hour
the test runs: a quiet service can cross a CPU rule at the peak and stay far below it at
night. :func:`pinned_run_args` keeps event times recent (silences, TTLs and retention work on
the wall clock) and moves the peak instead, so every run sees the load of a run ending at
the peak: the hour the tests were calibrated at, and the busiest one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

from pipeline.events.times import format_ms
from pipeline.simulate import load_system, parse_duration_ms, start_ending_at
from pipeline.simulate.topology import DEFAULT_SYSTEM

HOUR_MS = 3_600_000
# epoch ms a test run's "now" is taken as: set it to the end a failed run printed
# ("simulating A .. B") to replay that run's data exactly
NOW_VARIABLE = "TOCSIN_TEST_NOW_MS"


def pinned_system(path: Path, end_ms: int, hours_after_peak: float = 0.0) -> Path:
    """Write the packaged system to ``path`` with its daily peak ``hours_after_peak`` hours
    before ``end_ms``; return ``path``."""
    from importlib import resources

    text = resources.files("pipeline.simulate").joinpath(DEFAULT_SYSTEM).read_text("utf-8")
    system = yaml.safe_load(text)
    peak_ms = end_ms - int(hours_after_peak * HOUR_MS)
    system["seasonality"]["peak_hour_utc"] = load_system().peaking_at(peak_ms).peak_hour_utc
    path.write_text(yaml.safe_dump(system, sort_keys=False), "utf-8")
    return path


def pinned_start_ms(duration_ms: int, interval_ms: int = 10_000,
                    now_ms: int | None = None) -> int:
    """The start ``tocsin simulate`` picks by default: the run ends now, on an interval
    (``now_ms``, else :data:`NOW_VARIABLE`, else the wall clock)."""
    if now_ms is None:
        now_ms = int(os.environ.get(NOW_VARIABLE) or time.time() * 1000)
    return start_ending_at(now_ms, duration_ms, interval_ms)


def pinned_run_args(directory: Path, duration: str, interval_ms: int = 10_000) -> list[str]:
    """``--start``/``--system`` arguments for a run of ``duration`` (``"90m"``) ending now,
    at the simulated shop's load peak whatever the hour."""
    duration_ms = parse_duration_ms(duration)
    start_ms = pinned_start_ms(duration_ms, interval_ms)
    system = pinned_system(directory / "system.yaml", start_ms + duration_ms)
    return ["--start", format_ms(start_ms), "--system", str(system)]
