"""Run the automated diagnostics of a correlate batch's decisions and attach the results.

The checks (:mod:`pipeline.knowledge.diagnostics`) run on the store's read-only session,
in a thread, each bounded by the ``[query]`` limits; a check that fails is attached with
its error and never fails the batch. Each run is stored in ``problem_diagnostics``; every
decision of a problem that has results carries them in ``diagnostic_plan.results``, so
the stored problem version and its alert both show them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson
import pyarrow as pa

from pipeline.errors import StoreError
from pipeline.events.problem import Decision
from pipeline.knowledge.diagnostics import diagnostic_queries, due, evidence, top_root_cause
from pipeline.store.writer import StoreWriter

log = logging.getLogger("tocsin.diagnostics")

REMEMBERED = 10_000  # problems whose latest results are kept in memory


def diagnostics_table(runs: Sequence[tuple[Decision, str, list[dict[str, Any]]]]) -> pa.Table:
    """Runs (decision, service, results) as rows of ``problem_diagnostics``."""
    return pa.table({
        "problem_id": pa.array([d.problem.id for d, _, _ in runs], pa.string()),
        "problem_version": pa.array([d.problem.version for d, _, _ in runs], pa.uint32()),
        "time": pa.array([d.time_ms for d, _, _ in runs], pa.timestamp("ms", tz="UTC")),
        "service": pa.array([s for _, s, _ in runs], pa.string()),
        "results": pa.array([orjson.dumps(r).decode() for _, _, r in runs], pa.string()),
    })


class Diagnostician:
    """Decides which problems need their checks, runs them, remembers the results."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer
        self.database = writer.store.database
        self.known: OrderedDict[str, tuple[str, list[dict[str, Any]]]] = OrderedDict()
        self.runs = 0
        self.failed_checks = 0

    async def _recall(self, ids: set[str]) -> None:
        """Results of problems not in memory, from the table (after a restart)."""
        missing = sorted(i for i in ids if i not in self.known)
        if not missing:
            return
        listed = ", ".join("'" + i.replace("\\", "\\\\").replace("'", "\\'") + "'"
                           for i in missing)
        rows = (await self.writer.query(
            "SELECT problem_id, argMax(service, time), argMax(results, time) FROM "
            f"{self.database}.problem_diagnostics WHERE problem_id IN ({listed}) "
            "GROUP BY problem_id")).rows
        for pid, service, results in rows:
            self._remember(pid, service, orjson.loads(results))

    def _remember(self, pid: str, service: str, results: list[dict[str, Any]]) -> None:
        self.known[pid] = (service, results)
        self.known.move_to_end(pid)
        while len(self.known) > REMEMBERED:
            self.known.popitem(last=False)

    def _run(self, decision: Decision, service: str) -> list[dict[str, Any]]:
        """Every check of one problem (in a worker thread)."""
        p = decision.problem
        out = []
        for query in diagnostic_queries(self.database, service, p.opened_at, decision.time_ms):
            try:
                answer = self.writer.store.read_arrow(query.sql)
                rows = [tuple(r.values()) for r in answer.to_pylist()]
                out.append(evidence(query, service, decision.time_ms, answer.column_names,
                                    rows))
            except StoreError as exc:  # evidence missing, the problem still alerts
                self.failed_checks += 1
                log.warning("diagnostic %s of %s failed: %s", query.name, p.id, exc)
                out.append(evidence(query, service, decision.time_ms, [], [], str(exc)))
        return out

    async def attach(self, decisions: list[Decision]) -> tuple[list[Decision], pa.Table]:
        """The decisions with results attached, and the rows of the runs made now."""
        await self._recall({d.problem.id for d in decisions})
        last = {pid: service for pid, (service, _) in self.known.items()}
        loop = asyncio.get_running_loop()
        runs = []
        for d in due(decisions, last):
            service = top_root_cause(d)
            results = await loop.run_in_executor(None, self._run, d, service)
            self._remember(d.problem.id, service, results)
            runs.append((d, service, results))
        self.runs += len(runs)
        out = []
        for d in decisions:
            known = self.known.get(d.problem.id)
            if known is None:
                out.append(d)
                continue
            plan = {**d.problem.diagnostic_plan, "results": known[1]}
            out.append(replace(d, problem=replace(d.problem, diagnostic_plan=plan)))
        return out, diagnostics_table(runs)
