"""Cross-validate the correlator's grouping windows on recorded real fault days.

``bench/rca_bench.py --cache DIR`` records what the correlator took in for each replay
(detections, ticks and the learned call graph per step). This script replays only the
correlator over those recordings for every combination of a small grid of grouping
settings, then for each day picks the combination that is best on the *other* day(s)
(AC@1, then AC@3, then fewer problems per case) and reports it on the held-out day,
beside the in-sample best and the defaults::

    .venv/bin/python bench/rca_cv.py --labels ../shared/data/nezha-ob/labels.json \\
        --cache /tmp/rca-cache --tag default \\
        ../shared/data/nezha-ob/replay-2022-08-22.ndjson.gz \\
        ../shared/data/nezha-ob/replay-2022-08-23.ndjson.gz

The grid: ``relatedness_window_ms`` (changes within half of it relate), ``alive_ms`` (how
long an unconfirmed alarm stays current) and the cause lag (how much later a callee's
trouble may show than its caller's and still be its cause).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import itertools
import sys
from pathlib import Path

import orjson

import pipeline.correlate.grouping as grouping
import pipeline.correlate.inhibit as inhibit
from pipeline.evaluate.cases import evaluate_cases, load_cases
from pipeline.evaluate.offline import OfflinePipeline
from pipeline.settings import Settings

MIN = 60_000
GRID = {
    "relatedness_window_ms": (6 * MIN, 10 * MIN, 16 * MIN),
    "alive_ms": (4 * MIN, 6 * MIN, 10 * MIN),
    "cause_lag_ms": (MIN, 2 * MIN, 4 * MIN),
}
DEFAULTS = {"relatedness_window_ms": 10 * MIN, "alive_ms": 6 * MIN, "cause_lag_ms": 2 * MIN}


def score(recording: list[dict], cases, params: dict) -> tuple[float, float, float]:
    """(AC@1, AC@3, problems per case) of one recording under ``params``."""
    settings = Settings()
    settings = dataclasses.replace(settings, correlate=dataclasses.replace(
        settings.correlate, relatedness_window_ms=params["relatedness_window_ms"],
        alive_ms=params["alive_ms"]))
    pipeline = OfflinePipeline(settings, engines={})
    grouping.CAUSE_LAG_MS = inhibit.CAUSE_LAG_MS = params["cause_lag_ms"]
    result = pipeline.rerun(recording)
    ev = evaluate_cases(cases, result.problem_rows())
    return ev.ac_at(1), ev.ac_at(3), ev.problems_per_case


def _key(figures: tuple[float, float, float]) -> tuple[float, float, float]:
    return figures[0], figures[1], -figures[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="the replay files recorded")
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--cache", required=True, type=Path)
    parser.add_argument("--tag", default="default")
    args = parser.parse_args()
    cases = load_cases(args.labels)
    days = {}
    for path in args.inputs:
        recording = args.cache / f"{path.name}.{args.tag}.steps.jsonl.gz"
        with gzip.open(recording, "rb") as fh:
            steps = [orjson.loads(line) for line in fh]
        records = [orjson.loads(m) for s in steps for m in s["messages"]]
        times = [r["time"] for r in records if "tick" not in r]
        lo, hi = min(times), max(times)
        days[path.name] = (steps, [c for c in cases if lo - 30 * MIN <= c.start_ms <= hi])
    combos = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
    table: dict[str, list[tuple[float, float, float]]] = {}
    for name, (steps, day_cases) in days.items():
        table[name] = [score(steps, day_cases, p) for p in combos]
        print(f"{name}: {len(combos)} settings scored", file=sys.stderr)
    default = combos.index(DEFAULTS)
    print("day                          defaults (AC@1/AC@3/pp)   in-sample best   held-out "
          "(tuned on the other days)")
    for name in days:
        others = [n for n in days if n != name]
        pooled = [tuple(sum(table[o][i][k] for o in others) for k in range(3))
                  for i in range(len(combos))]
        chosen = max(range(len(combos)), key=lambda i: _key(pooled[i]))
        best = max(range(len(combos)), key=lambda i: _key(table[name][i]))
        fmt = "{:.2f}/{:.2f}/{:.2f}".format
        print(f"{name:28s} {fmt(*table[name][default]):24s} {fmt(*table[name][best]):16s} "
              f"{fmt(*table[name][chosen])}  ({combos[chosen]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
