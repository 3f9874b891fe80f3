"""Root cause on real fault cases, offline: the worker's own steps over recorded telemetry.

Runs the detect, service-graph and correlate steps in-process (no Kafka, no Faust; see
``pipeline.evaluate.offline``) over an NDJSON file of records in event-time order, then
scores the problems against case labels (``tocsin evaluate``'s definitions): detected,
AC@1/3/5, Avg@5, time to detect, problems per case, false problems, per fault type.

Two modes:

- a continuous replay (a system that has been running)::

    .venv/bin/python bench/rca_bench.py --labels ../shared/data/nezha-ob/labels.json \\
        ../shared/data/nezha-ob/replay-2022-08-22.ndjson.gz

- per case from a cold worker (a fresh pipeline per case file)::

    .venv/bin/python bench/rca_bench.py --labels ../shared/data/nezha-ob/labels.json \\
        --cases ../shared/data/nezha-ob/cases

Decoding is the slow part (about 20 s per 500,000 spans): ``--cache DIR`` keeps the
decoded tables as Feather files for the next run. Spans go into a temporary embedded
ClickHouse store so the graph step pairs them as in the worker (``--no-graph``: without).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pyarrow as pa

from pipeline.evaluate.cases import Case, evaluate_cases, load_cases
from pipeline.evaluate.offline import OfflinePipeline, read_tables
from pipeline.evaluate.report import case_result_to_dict, format_case_table
from pipeline.events.columns import TIME_COLUMN
from pipeline.settings import Settings, load_settings
from pipeline.store.embedded import EmbeddedStore


def _settings(args: argparse.Namespace) -> Settings:
    """The worker's settings as ``TOCSIN_*`` variables and ``TOCSIN_CONFIG`` give them."""
    settings = load_settings()
    if args.no_graph and hasattr(settings, "graph"):
        settings = dataclasses.replace(
            settings, graph=dataclasses.replace(settings.graph, enabled=False))
    return settings


def _engines(args: argparse.Namespace) -> dict | None:
    """The settings' engines; ``--model-warmup`` stands in for a cold-start fix of the
    metric models (points before a series is scored; the engine's default is 100)."""
    if args.model_warmup is None:
        return None
    from models import ModelEngine
    from pipeline.detect.engines import build_engines, model_policy

    settings = _settings(args)
    engines = build_engines(settings)
    engines["models"].engine = ModelEngine(warmup_points=args.model_warmup,
                                           warmup_windows=min(10, args.model_warmup),
                                           **model_policy(settings.detect))
    return engines


def run_file(path: Path, args: argparse.Namespace) -> tuple[list[dict], int, int]:
    """Problems (as the evaluation reads them) of one file run through a fresh pipeline,
    and the file's first and last event times."""
    began = time.perf_counter()
    tables = read_tables(path, args.cache)
    read_s = time.perf_counter() - began
    recording = args.cache / f"{path.name}.{args.tag}.steps.jsonl.gz" if args.cache else None
    if args.rerun and recording is not None and recording.exists():
        pipeline = OfflinePipeline(_settings(args), engines={})
        with gzip.open(recording, "rb") as fh:
            result = pipeline.rerun(orjson.loads(line) for line in fh)
    else:
        with tempfile.TemporaryDirectory(prefix="rca-bench-") as tmp:
            store = None if args.no_graph else EmbeddedStore(tmp, ttl_days=0)
            if store is not None:
                store.ensure_schema()
            pipeline = OfflinePipeline(_settings(args), engines=_engines(args), store=store)
            pipeline.record = [] if recording is not None else None
            result = pipeline.run(tables, step_ms=args.step_ms)
            if store is not None:
                store.close()
        if recording is not None:
            with gzip.open(recording, "wb") as fh:
                for step in pipeline.record:
                    fh.write(orjson.dumps(step) + b"\n")
    rows = result.problem_rows()
    if args.verbose:
        print(f"{path.name}: read {read_s:.1f}s, run {time.perf_counter() - began - read_s:.1f}s, "
              f"{len(result.detections)} detections, {len(rows)} problems, "
              f"{len(result.edges)} edge rows", file=sys.stderr)
    if args.dump:
        with open(args.dump, "a") as fh:
            for p in sorted(result.problems.values(), key=lambda p: p.opened_at):
                fh.write(json.dumps({"file": path.name, **p.to_wire()}) + "\n")
    times = [t.column(TIME_COLUMN[s]).cast(pa.int64()) for s, t in tables.items() if t.num_rows]
    return rows, min(int(c[0].as_py()) for c in times), max(int(c[-1].as_py()) for c in times)


def run_simulations(args: argparse.Namespace) -> int:
    """The demo's simulator (mixed incidents, 10-s metrics) per seed, through the same
    offline pipeline with the demo's static call graph; scored like ``tocsin evaluate``."""
    from pipeline.evaluate import evaluate, format_table
    from pipeline.simulate import load_system, simulate, write_call_graph, write_ndjson

    system = load_system()
    rows = []
    for seed in [int(x) for x in args.simulate.split(",")]:
        with tempfile.TemporaryDirectory(prefix="rca-sim-") as tmp:
            start = 1_764_000_000_000
            sim = simulate(system, start, int(args.hours * 3_600_000), seed, mixed=True,
                           interval_ms=10_000)
            write_call_graph(system, Path(tmp) / "dependencies.yaml")
            settings = _settings(args)
            settings = dataclasses.replace(settings, correlate=dataclasses.replace(
                settings.correlate, dependencies=str(Path(tmp) / "dependencies.yaml")))
            recording = (args.cache / f"sim-{seed}-{args.hours:g}h.{args.tag}.steps.jsonl.gz"
                         if args.cache else None)
            if args.rerun and recording is not None and recording.exists():
                with gzip.open(recording, "rb") as fh:
                    result = OfflinePipeline(settings, engines={}).rerun(
                        orjson.loads(line) for line in fh)
            else:
                path = Path(tmp) / f"sim-{seed}.ndjson"
                write_ndjson(sim, path)
                tables = read_tables(path)
                store = (None if args.no_graph
                         else EmbeddedStore(Path(tmp) / "store", ttl_days=0))
                if store is not None:
                    store.ensure_schema()
                pipeline = OfflinePipeline(settings, store=store)
                pipeline.record = [] if recording is not None else None
                result = pipeline.run(tables, step_ms=args.step_ms)
                if store is not None:
                    store.close()
                if recording is not None:
                    with gzip.open(recording, "wb") as fh:
                        for step in pipeline.record:
                            fh.write(orjson.dumps(step) + b"\n")
        if args.dump:
            with open(args.dump, "a") as fh:
                for p in sorted(result.problems.values(), key=lambda p: p.opened_at):
                    fh.write(json.dumps({"seed": seed, **p.to_wire()}) + "\n")
        dets = [{"id": d.id, "time": d.time, "service": d.service,
                 "since": int(d.evidence.get("firing_since", d.time))}
                for d in result.detections if d.state == "firing"]
        ev = evaluate(sim.labels, result.problem_rows(), dets)
        if args.verbose:
            print(f"seed {seed}\n{format_table(ev)}\n")
        leak = [o.time_to_detect_ms for o in ev.incidents
                if o.incident.scenario == "memory_leak" and o.detected]
        rows.append((seed, ev.ac_at(1), ev.ac_at(3), ev.grouping.f1, ev.detection_rate,
                     len(ev.false_alarm_ids), max(leak) if leak else None,
                     len(ev.incidents)))
        print(f"seed {seed}: AC@1 {ev.ac_at(1):.2f} AC@3 {ev.ac_at(3):.2f} grouping F1 "
              f"{ev.grouping.f1:.2f} detected {ev.detection_rate:.2f} false alarms "
              f"{len(ev.false_alarm_ids)} memory leak TTD "
              f"{'-' if not leak else f'{max(leak) / 60000:.1f} min'} "
              f"({len(ev.incidents)} incidents)", flush=True)
    n = sum(r[7] for r in rows)
    print(f"all: AC@1 {sum(r[1] * r[7] for r in rows) / n:.3f} AC@3 "
          f"{sum(r[2] * r[7] for r in rows) / n:.3f} mean F1 "
          f"{sum(r[3] for r in rows) / len(rows):.3f} min F1 {min(r[3] for r in rows):.2f} "
          f"false alarms {sum(r[5] for r in rows)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="*", type=Path, help="NDJSON(.gz) replay files")
    parser.add_argument("--labels", type=Path, help="case labels (JSON list)")
    parser.add_argument("--simulate", help="comma-separated simulator seeds instead of "
                        "recorded cases (the demo's system, mixed incidents)")
    parser.add_argument("--hours", type=float, default=3.0, help="simulated hours per seed")
    parser.add_argument("--cases", type=Path, help="directory of per-case files <id>.ndjson.gz:"
                        " each case from a cold pipeline")
    parser.add_argument("--only", default="", help="comma-separated case ids (with --cases)")
    parser.add_argument("--step-ms", type=int, default=60_000, help="event time per batch")
    parser.add_argument("--cache", type=Path, help="keep decoded tables here")
    parser.add_argument("--no-graph", action="store_true", help="no span pairing")
    parser.add_argument("--rerun", action="store_true", help="with --cache: run only the "
                        "correlator over the detections recorded by the last full run")
    parser.add_argument("--model-warmup", type=int, help="points before a metric series is "
                        "scored (stands in for the cold start of issue #14)")
    parser.add_argument("--tag", default="default", help="name of the recording (--rerun)")
    parser.add_argument("--json", type=Path, help="write the evaluation as JSON here")
    parser.add_argument("--dump", type=Path, help="append every problem as a JSON line")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if args.cache:
        args.cache.mkdir(parents=True, exist_ok=True)
    if args.simulate:
        return run_simulations(args)
    if args.labels is None:
        parser.error("--labels is required (or --simulate)")
    cases = load_cases(args.labels)
    began = time.perf_counter()
    problems: list[dict] = []
    scored: list[Case] = []
    if args.cases:
        only = {x for x in args.only.split(",") if x}
        for case in cases:
            path = args.cases / f"{case.id}.ndjson.gz"
            if (only and case.id not in only) or not path.exists():
                continue
            rows, _, _ = run_file(path, args)
            # a cold pipeline per case: its problems count for its own case only
            window = case.start_ms - 60_000, case.end_ms + 300_000
            problems += [dict(r, id=f"{case.id}/{r['id']}") for r in rows
                         if window[0] <= r["opened_at"] <= window[1]]
            scored.append(case)
    else:
        for path in args.inputs:
            rows, lo, hi = run_file(path, args)
            problems += rows
            scored += [c for c in cases if lo <= c.start_ms <= hi]
    ev = evaluate_cases(scored, problems)
    print(format_case_table(ev))
    print(f"\n{len(scored)} cases, {time.perf_counter() - began:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(case_result_to_dict(ev), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
