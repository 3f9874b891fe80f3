"""Built-in rules on real Kubernetes telemetry: what fires on Online Boutique faults.

Replays the Nezha Online Boutique data (``../shared/data/nezha-ob``: 56 injected faults
over two days, real pod metrics with their units, spans; see its README) through the
stream's codec and the rule engine, per service in event-time order, and prints:

- firing detections per rule (metric rules and span rules apart) and the points read;
- per fault case: whether any rule fired within [start - 1 min, start + 8 min] (the
  dataset's scoring window), and whether one fired on the root-cause service;
- the same figures with unit conversion off (every series compared as is), to show what
  unit awareness changes.

    .venv/bin/python bench/rules_real.py [--data DIR] [--no-spans] [--rules FILE ...]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors import RuleEngine, builtin_rule_paths, load_rules  # noqa: E402
from pipeline.detect.replay import Replayer  # noqa: E402
from pipeline.events.codec import decode_values  # noqa: E402
from pipeline.events.columns import SIGNAL_OF_KIND  # noqa: E402
from pipeline.events.schema import RecordKind  # noqa: E402

KINDS = {"metric": RecordKind.METRIC, "log": RecordKind.LOG, "span": RecordKind.SPAN}
CHUNK = 20_000


def data_dir() -> Path:
    """$TOCSIN_NEZHA_DIR, else ``shared/data/nezha-ob`` beside the repository (or beside
    the directory of worktrees it is in)."""
    env = os.environ.get("TOCSIN_NEZHA_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    found = [p / "shared" / "data" / "nezha-ob" for p in here.parents[1:4]]
    return next((p for p in found if p.is_dir()), found[1])


def replay_file(path: Path, replayer: Replayer, spans: bool, units: bool) -> Counter:
    """Feed one merged NDJSON.gz file through ``replayer`` in chunks of records."""
    counts: Counter = Counter()
    pending: dict[str, list[bytes]] = {k: [] for k in KINDS}

    def flush(kind: str) -> None:
        lines = pending[kind]
        if not lines:
            return
        records = [orjson.loads(line) for line in lines]
        if not units:
            for r in records:
                r.pop("unit", None)
        messages = [orjson.dumps(records[i:i + 500]) for i in range(0, len(records), 500)]
        batch = decode_values(KINDS[kind], messages, now_ms=4_102_444_800_000)
        if batch.rejections:
            raise SystemExit(f"{path}: {len(batch.rejections)} records rejected, e.g. "
                             f"{batch.rejections[0].reason}")
        replayer.feed(SIGNAL_OF_KIND[KINDS[kind]], batch.columns)
        counts[kind] += len(records)
        pending[kind] = []

    with gzip.open(path, "rb") as fh:
        for line in fh:
            kind = orjson.loads(line)["type"] if b'"type"' in line else ""
            if kind == "span" and not spans:
                continue
            pending[kind].append(line)
            if len(pending[kind]) >= CHUNK:
                for k in KINDS:  # keep the signals' event times together
                    flush(k)
    for k in KINDS:
        flush(k)
    return counts


def run(root: Path, rule_paths: list[Path], spans: bool, units: bool) -> dict:
    """Firing detections of both days, counts per rule, and the cases they cover."""
    labels = json.loads((root / "labels.json").read_text())
    firing = []
    points: Counter = Counter()
    began = time.perf_counter()
    for day in sorted(root.glob("replay-*.ndjson.gz")):
        replayer = Replayer(RuleEngine(load_rules(rule_paths), allowed_lateness_ms=60_000))
        points.update(replay_file(day, replayer, spans, units))
        replayer.finish()
        firing += [d for d in replayer.detections if d.state == "firing"
                   and not d.evidence.get("keepalive")]
    elapsed = time.perf_counter() - began
    windows = [(c["start"] - 60_000, c["start"] + 8 * 60_000) for c in labels]

    def in_window(t: int) -> bool:
        return any(lo <= t <= hi for lo, hi in windows)

    per_rule = Counter((d.signal, d.detector) for d in firing)
    per_rule_in = Counter((d.signal, d.detector) for d in firing if in_window(d.time))
    per_service = Counter((d.detector, d.service) for d in firing)
    any_case = root_case = 0
    for case, (lo, hi) in zip(labels, windows, strict=True):
        near = [d for d in firing if lo <= d.time <= hi]
        any_case += bool(near)
        root_case += any(d.service == case["root_cause_service"] for d in near)
    return {"firing": len(firing), "per_rule": per_rule, "per_rule_in": per_rule_in,
            "per_service": per_service, "points": points, "cases": len(labels),
            "any_case": any_case, "root_case": root_case, "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data_dir())
    parser.add_argument("--no-spans", action="store_true", help="metrics and logs only")
    parser.add_argument("--rules", nargs="*", type=Path, help="rule files (default: built-in)")
    args = parser.parse_args()
    paths = args.rules or builtin_rule_paths()
    for units in (True, False):
        res = run(args.data, paths, not args.no_spans, units)
        pts = ", ".join(f"{v:,} {k}s" for k, v in sorted(res["points"].items()))
        print(f"{'with units' if units else 'units ignored (every series as is)'}: "
              f"{res['firing']} firing detections from {pts} ({res['seconds']:.0f}s)")
        for (signal, rule), n in sorted(res["per_rule"].items()):
            services = ", ".join(f"{s} {k}" for (r, s), k in
                                 res["per_service"].most_common() if r == rule)
            print(f"  {signal:8s} {rule:24s} {n:4d} ({res['per_rule_in'][(signal, rule)]} in "
                  f"a fault window): {services}")
        print(f"  fault cases with a rule firing in [start-1m, start+8m]: {res['any_case']}/"
              f"{res['cases']}; on the root-cause service: {res['root_case']}/{res['cases']}")


if __name__ == "__main__":
    main()
