"""Commands of an operator: query the store, list and inspect problems, ack, silences,
feedback."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from pipeline.errors import TocsinError
from pipeline.settings import Settings
from pipeline.store import QueryResult


def _print_result(result: QueryResult, fmt: str) -> None:
    def plain(value: object) -> object:
        if isinstance(value, list) and value and isinstance(value[0], tuple | list) \
                and all(len(v) == 2 for v in value):
            return dict(value)
        return value

    if fmt == "json":
        for row in result.rows:
            print(json.dumps({c: plain(v) for c, v in zip(result.columns, row, strict=True)},
                             default=str))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows([[plain(v) for v in row] for row in result.rows])
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*result.columns, show_lines=False)
        for row in result.rows:
            table.add_row(*[str(plain(v)) for v in row])
        Console().print(table)
        print(f"{len(result.rows)} row{'s' if len(result.rows) != 1 else ''}")


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    """Run a read-only SQL statement and print its result."""
    from pipeline.api.query import run_query

    _print_result(run_query(settings, args.sql), args.format)
    return 0


def cmd_problems(args: argparse.Namespace, settings: Settings) -> int:
    """Open and recent problems, a table."""
    from pipeline.api.operate import list_problems

    _print_result(list_problems(settings, not args.open, args.limit), args.format)
    return 0


def cmd_problem(args: argparse.Namespace, settings: Settings) -> int:
    """One problem in full: evidence, root causes, diagnostic plan, runbook, members."""
    from pipeline.api.operate import problem_detail

    print(json.dumps(problem_detail(settings, args.id), indent=2, default=str))
    return 0


def cmd_ack(args: argparse.Namespace, settings: Settings) -> int:
    """Acknowledge a problem (an event on the control topic)."""
    from pipeline.api.operate import acknowledge

    acknowledge(settings, args.id, args.by, args.comment)
    print(f"acknowledged {args.id} (the correlator applies it in order with detections)")
    return 0


def cmd_feedback(args: argparse.Namespace, settings: Settings) -> int:
    """An operator's verdict on a problem (an event on the control topic)."""
    from pipeline.api.operate import give_feedback

    give_feedback(settings, args.id, args.verdict, args.user, args.root_cause or "",
                  args.comment)
    cause = f", root cause {args.root_cause}" if args.root_cause else ""
    print(f"feedback on {args.id}: {args.verdict}{cause} by {args.user} (stored by the "
          "worker in the feedback table)")
    return 0


def cmd_silence(args: argparse.Namespace, settings: Settings) -> int:
    """Create, list or expire silences and maintenance windows."""
    from pipeline.api.operate import create_silence, expire_silence, list_silences

    if args.action == "create":
        if not args.match:
            raise TocsinError("a silence needs at least one --match (e.g. service=orders)")
        silence = create_silence(settings, args.match, args.duration, args.by, args.comment,
                                 args.starts or "", args.every or "")
        print(f"created silence {silence.id}")
    elif args.action == "expire":
        if not args.id:
            raise TocsinError("tocsin silence expire needs the silence id")
        expire_silence(settings, args.id, args.by)
        print(f"expired silence {args.id}")
    else:
        silences = list_silences(settings)
        for s in silences:
            print(json.dumps(s, default=str))
        if not silences:
            print("no silences")
    return 0
