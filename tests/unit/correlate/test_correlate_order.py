"""Order and batching: the correlator decides the same whatever batches detections come
in, and the stream puts detections back in event-time order before it sees them."""

from __future__ import annotations

import random

import orjson
import yaml

from pipeline.correlate import CorrelationState
from pipeline.correlate.reorder import Reorder
from pipeline.correlate.step import CorrelationStep, Message
from pipeline.settings import CorrelateSettings
from tests.unit.correlate.support import MIN, SEC, T0, Run, cleared, det, kinds
from tests.unit.correlate.test_correlate_scenarios import DB_END, TOPOLOGY, db_outage, memory_leak


def _incidents():
    """A DB outage and an unrelated leak, each cleared later: detections in time order."""
    db, leak = db_outage(), memory_leak()
    dets = db + leak + [cleared(d, DB_END + MIN) for d in db]
    return sorted(dets, key=lambda d: (d.time, d.id))


def _outcome(batches, end):
    run = Run()
    for batch in batches:
        run.feed(batch, topology=TOPOLOGY)
    run.tick(end)
    latest = {d.problem.id: d.problem for d in run.decisions}
    problems = sorted((p.affected, p.root_causes[0].service) for p in latest.values()
                      if not p.merged_into)
    # alerts by time alone (group_wait, resolves) fall due at the same event time in any
    # batching; a change a detection makes is stamped with its batch's close
    alerts = [(d.kind, d.problem.id) + ((d.time_ms,) if d.kind in ("opened", "resolved")
                                        else ()) for d in run.decisions if d.notify]
    return problems, alerts


def test_one_batch_one_by_one_and_random_batches_decide_alike():
    dets = _incidents()
    end = dets[-1].time + 3 * 60 * MIN
    whole = _outcome([dets], end)
    assert whole == _outcome([[d] for d in dets], end)
    rng = random.Random(5)
    for _ in range(5):
        cuts = sorted(rng.sample(range(1, len(dets)), 4))
        batches = [dets[a:b] for a, b in zip([0, *cuts], [*cuts, len(dets)], strict=True)]
        assert _outcome(batches, end) == whole
    problems, alerts = whole
    assert [root for _, root in problems] == ["auth", "postgres"]


def test_problem_opened_and_resolved_in_one_batch_is_alerted_at_group_wait():
    a = det("error_rate_above_5pct", "payments", T0)
    run = Run()
    out = run.feed([a, cleared(a, T0 + 10 * MIN)], T0 + 20 * MIN)
    assert kinds(out)[0] == ("opened", True) and kinds(out)[-1] == ("resolved", True)
    assert out[0].time_ms == T0 + 30 * SEC  # when a tick then would have alerted it


def test_problem_shorter_than_group_wait_is_never_alerted():
    a = det("error_rate_above_5pct", "payments", T0)
    run = Run(resolve_hold_ms=0)
    out = run.feed([a, cleared(a, T0 + 10 * SEC)], T0 + 20 * MIN)
    assert not any(d.notify for d in out) and out[-1].problem.status == "resolved"


# -- the reorder buffer ------------------------------------------------------------------

def test_reorder_holds_until_the_slowest_worker_passes():
    late, early = det("a", "orders", T0 + 2 * MIN), det("b", "postgres", T0 + MIN)
    r = Reorder().tick("w1", T0).tick("w2", T0 + 5 * MIN).hold([late, early])
    r, ready, wm = r.release()
    assert ready == [] and wm == T0 and len(r.held) == 2
    r, ready, wm = r.tick("w1", T0 + 90 * SEC).release()
    assert ready == [early] and wm == T0 + 90 * SEC and r.held == (late,)
    r, ready, _ = r.tick("w1", T0 - MIN).release()  # watermarks never go back
    assert ready == [] and r.sources["w1"] == T0 + 90 * SEC


def test_reorder_ignores_a_worker_far_behind_and_bounds_what_it_holds():
    d = det("a", "orders", T0 + 2 * MIN)
    r = Reorder().tick("gone", T0).tick("live", T0 + 40 * MIN).hold([d])
    _, ready, wm = r.release(max_lag_ms=30 * MIN)
    assert ready == [d] and wm == T0 + 40 * MIN
    many = [det("a", "orders", T0 + i * SEC) for i in range(10)]
    r, ready, _ = Reorder().tick("w", T0 - MIN).hold(many).release(max_held=4)
    assert ready == many[:6] and list(r.held) == many[6:]


def test_reorder_without_ticks_holds_nothing_and_round_trips():
    d = det("a", "orders", T0)
    r, ready, wm = Reorder().hold([d, d]).release()
    assert ready == [d] and wm is None and r.held == ()
    held = Reorder().tick("w", T0).hold([det("b", "api", T0 + MIN, score=0.5)])
    assert Reorder.from_wire(orjson.loads(orjson.dumps(held.to_wire()))) == held


def test_step_puts_callers_first_detections_back_in_order(tmp_path):
    """Callers' symptoms reach the topic before the database's own detection, over
    several batches, as detect workers emit them service by service."""
    db = db_outage()
    root = [d for d in db if d.service == "postgres"]
    callers = sorted((d for d in db if d.service != "postgres"), key=lambda d: -d.time)
    graph = tmp_path / "graph.yaml"
    graph.write_text(yaml.safe_dump({k: list(v) for k, v in TOPOLOGY.items()}))
    step = CorrelationStep(CorrelateSettings(dependencies=str(graph)))
    tick = orjson.dumps({"tick": -1, "source": "w"})  # the worker announces itself
    batches = [[Message("default", False, tick)],
               [Message("default", False, d.to_json()) for d in callers[:4]],
               [Message("default", False, d.to_json()) for d in callers[4:]],
               [Message("default", False, d.to_json()) for d in root]]
    state, decisions = None, []
    for batch in batches:
        result = step.run(batch, lambda scope, stored=state: stored)
        state, decisions = result.states["default"], decisions + result.decisions
    assert decisions == []  # all held: event time has not passed them
    assert len(CorrelationState.from_bytes(state).reorder.held) == len(db)
    done = orjson.dumps({"tick": max(d.time for d in db), "source": "w"})
    result = step.run([Message("default", False, done)], lambda scope: state)
    opened = {d.problem.id: d.problem for d in result.decisions}
    live = [p for p in opened.values() if not p.merged_into]
    assert len(live) == 1 and live[0].root_causes[0].service == "postgres"
