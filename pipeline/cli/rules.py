"""``tocsin rules validate`` and ``tocsin rules test``: the command functions.

``pipeline/cli/main.py`` parses the arguments and ``pipeline/cli/detection.py`` calls these;
they print and return the exit status, so they are tested without a subprocess.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from detectors.engine import RuleEngine
from detectors.loading import RuleFileError, load_rules
from pipeline.detect.engines import rule_files
from pipeline.detect.replay import SIGNAL_OF, Replayer, decode_wire, read_ndjson, replay_chunks
from pipeline.events.detection import Detection
from pipeline.events.times import format_ms

MAX_LISTED = 10  # input problems listed before "... and N more"


def expand_rule_paths(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """The rule files behind ``paths`` as the worker reads ``detect.rules`` (a directory
    stands for its ``*.yaml`` and ``*.yml``), and a problem per directory without any."""
    files: list[str] = []
    problems: list[str] = []
    for raw in paths:
        found = [str(p) for p in rule_files([raw])]
        if Path(raw).is_dir() and not found:
            problems.append(f"{raw}: no rule files (*.yaml, *.yml) in this directory")
        files += found
    return files, problems


def validate_command(paths: Sequence[str], out: TextIO | None = None) -> int:
    """Check rule files (a directory: its ``*.yaml`` and ``*.yml``): print every problem
    and return 1, or a summary line per file and 0. Names must be unique across all the
    files given."""
    out = out or sys.stdout
    if not paths:
        print("no rule files given", file=out)
        return 1
    paths, problems = expand_rule_paths(paths)
    summaries: list[str] = []
    for path in paths:
        try:
            ruleset = load_rules([path])
        except RuleFileError as exc:
            problems += exc.problems
            continue
        kinds = Counter(r.kind for r in ruleset.rules)
        detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        summaries.append(f"{path}: {len(ruleset.rules)} rule"
                         f"{'s' if len(ruleset.rules) != 1 else ''} OK ({detail}); "
                         f"version {ruleset.version}")
    if not problems and len(paths) > 1:
        try:
            load_rules(paths)
        except RuleFileError as exc:
            problems += exc.problems
    for line in problems or summaries:
        print(line, file=out)
    if problems:
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found", file=out)
        return 1
    return 0


def test_command(rule_paths: Sequence[str], input_path: str, out: TextIO | None = None, *,
                 json_lines: bool = False, allowed_lateness_ms: int = 60_000,
                 keepalive_ms: int = 0, chunk_ms: int = 60_000) -> int:
    """Replay an NDJSON file of records (with ``"type"``) through rules, per service in
    event-time order, advance to the end, and print the detections (a table, or JSON
    lines). Returns 0, or 1 when the rules or the input cannot be read."""
    out = out or sys.stdout
    note = sys.stderr if json_lines else out
    rule_paths, missing = expand_rule_paths(rule_paths)
    try:
        if missing:
            raise RuleFileError(missing)
        ruleset = load_rules(rule_paths)
    except RuleFileError as exc:
        for line in exc.problems:
            print(line, file=note)
        return 1
    try:
        by_kind, problems = read_ndjson(input_path)
    except OSError as exc:
        print(f"{input_path}: cannot read: {exc.strerror or exc}", file=note)
        return 1
    by_signal = {}
    for kind, records in by_kind.items():
        columns, rejected = decode_wire(kind, records)
        problems += [f"{kind.value} record rejected: {reason}" for reason in rejected]
        by_signal[SIGNAL_OF[kind]] = columns
    replayer = Replayer(RuleEngine(ruleset, allowed_lateness_ms, keepalive_ms))
    for signal, columns in replay_chunks(by_signal, chunk_ms):
        replayer.feed(signal, columns)
    replayer.finish()
    detections = sorted(replayer.detections, key=lambda d: (d.time, d.detector, d.service,
                                                             d.host, d.id))
    if json_lines:
        for d in detections:
            out.write(d.to_json().decode() + "\n")
    else:
        _table(detections, out)
    for line in problems[:MAX_LISTED]:
        print(f"{input_path}: {line}", file=note)
    if len(problems) > MAX_LISTED:
        print(f"{input_path}: ... and {len(problems) - MAX_LISTED} more", file=note)
    states = Counter(d.state for d in detections)
    print(f"{replayer.records} records from {len(replayer.states)} services through "
          f"{len(ruleset.rules)} rules (version {ruleset.version}): {len(detections)} "
          f"detections ({states['firing']} firing, {states['resolved']} resolved), "
          f"{replayer.late} late records, {len(problems)} input problems", file=note)
    return 0


def _table(detections: Sequence[Detection], out: TextIO) -> None:
    """Detections as an aligned text table."""
    head = ("time", "state", "severity", "rule", "service", "host", "observed", "threshold",
            "title")
    rows = [(format_ms(d.time), d.state, d.severity, d.detector, d.service, d.host or "-",
             f"{d.observed:.4g}", f"{d.threshold:.4g}", d.title) for d in detections]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head[:-1])]
    for row in [head, *rows]:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)] + [row[-1]]
        print("  ".join(cells).rstrip(), file=out)
