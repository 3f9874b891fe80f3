"""Simulator-shaped incidents end to end: detections as rules would emit them, through the
correlator, scored by the evaluator against the incident labels."""

from __future__ import annotations

from pipeline.evaluate import evaluate
from pipeline.simulate import Incident, Labels
from pipeline.simulate.topology import load_system
from tests.unit.correlate.support import HOUR, MIN, SEC, T0, Run, again, cleared, det

SYSTEM = load_system()
TOPOLOGY = {s.name: s.calls for s in SYSTEM.services}
DB_START, DB_END = T0 + 30 * MIN, T0 + 40 * MIN
LEAK_START, LEAK_END = T0 + 5 * MIN, T0 + 65 * MIN


def db_outage():
    """postgres down: its heartbeat and errors; callers' connection errors and error
    ratios, latency cascading upstream - callers first, as windows often close that way."""
    t = DB_START
    out = [det("heartbeat_missing", "postgres", t + 40 * SEC, severity="critical",
               host="pg-primary-1", observed=0, threshold=1, title="heartbeat missing")]
    for i, svc in enumerate(SYSTEM.callers("postgres")):
        for host in SYSTEM.service(svc).hosts:
            out.append(det("db_connection_errors", svc, t + (10 + i) * SEC, host=host,
                           category="connectivity", signal="logs", observed=12, threshold=5,
                           labels={"peer.service": "postgres"},
                           title="database connection errors"))
    for i, svc in enumerate(("orders", "api", "gateway", "agent-coordinator")):
        out.append(det("error_rate_above_5pct", svc, t + (30 + 5 * i) * SEC, observed=0.4))
    out.append(det("response_time_above_1000ms", "gateway", t + 60 * SEC,
                   category="performance", observed=1900, threshold=1000))
    return out


def memory_leak():
    """auth leaks: a growth trend early, memory above 85% later, latency at the end."""
    growth = det("memory_growth", "auth", LEAK_START + 10 * MIN, category="resource",
                 severity="medium", score=0.8, host="auth-1", title="memory growth (leak)")
    high = det("memory_above_85pct", "auth", LEAK_START + 45 * MIN, category="resource",
               observed=88, threshold=85, host="auth-1")
    keep = [again(growth, LEAK_START + k * 10 * MIN) for k in range(2, 6)]
    return [growth, high, *keep]


def test_db_outage_and_memory_leak_at_once_make_two_problems():
    run = Run(resolve_timeout_ms=HOUR)
    db, leak = db_outage(), memory_leak()
    everything = sorted(db + leak, key=lambda d: d.time)
    for start in range(T0, T0 + 70 * MIN, MIN):  # one-minute batches, like an agent's
        batch = [d for d in everything if start <= d.time < start + MIN]
        if batch:
            run.feed(batch, start + MIN, topology=TOPOLOGY)
        else:
            run.tick(start + MIN)
    run.feed([cleared(d, DB_END + MIN) for d in db], DB_END + MIN, topology=TOPOLOGY)
    run.feed([cleared(d, LEAK_END + MIN) for d in leak if d.detector != "memory_growth"]
             + [cleared(leak[0], LEAK_END + MIN)], LEAK_END + MIN, topology=TOPOLOGY)
    run.tick(LEAK_END + 10 * MIN)

    latest = {d.problem.id: d.problem for d in run.decisions}  # what the problems table holds
    problems = sorted(latest.values(), key=lambda p: p.opened_at)
    assert len(problems) == 2 and all(p.status == "resolved" for p in problems)
    leak_problem, db_problem = problems
    assert db_problem.root_causes[0].service == "postgres"
    assert set(db_problem.affected) == {"postgres", *SYSTEM.upstream("postgres")}
    assert db_problem.severity == "critical" and db_problem.runbook["id"] == "database_issues"
    assert leak_problem.affected == ("auth",) and leak_problem.root_causes[0].service == "auth"
    assert leak_problem.runbook["id"] == "resource_exhaustion"
    alerts = [(d.kind, d.problem.id) for d in run.decisions if d.notify]
    assert alerts.count(("opened", db_problem.id)) == 1
    assert alerts[-1] == ("resolved", leak_problem.id)

    labels = Labels(seed=1, start_ms=T0, end_ms=T0 + 2 * HOUR, incidents=(
        Incident("inc-1", "db_outage", DB_START, DB_END, "postgres", "connectivity",
                 ("postgres", *SYSTEM.upstream("postgres"))),
        Incident("inc-2", "memory_leak", LEAK_START, LEAK_END, "auth", "resource", ("auth",)),
    ))
    rows = [{"id": p.id, "opened_at": p.opened_at, "resolved_at": p.resolved_at,
             "affected": list(p.affected), "root_causes": [c.to_wire() for c in p.root_causes],
             "detections": list(p.detection_ids)} for p in problems]
    dets = [{"id": d.id, "time": d.time, "service": d.service} for d in db + leak]
    result = evaluate(labels, rows, dets)
    assert result.detection_rate == 1.0 and result.ac_at(1) == 1.0
    assert result.false_alarm_ids == () and result.grouping.f1 == 1.0
