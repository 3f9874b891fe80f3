"""Root-cause ranking on small call graphs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.correlate import Graph
from pipeline.correlate.grouping import member_from
from pipeline.correlate.rootcause import rank
from tests.unit.correlate.support import MIN, SEC, SHOP, T0, det, settings


def ranked(dets, graph=SHOP, **overrides):
    s = settings(**overrides)
    members = [member_from(d, s) for d in dets]
    return rank(members, Graph(graph), s)


def test_db_outage_ranks_the_database_first_even_when_callers_fire_first():
    causes = ranked([
        det("error_rate_above_5pct", "orders", T0, observed=0.45),
        det("db_connection_errors", "orders", T0 + 2 * SEC, category="connectivity",
            signal="logs", labels={"peer.service": "postgres"}),
        det("db_connection_errors", "inventory", T0 + 5 * SEC, category="connectivity",
            signal="logs", labels={"peer.service": "postgres"}),
        det("error_rate_above_5pct", "api", T0 + 8 * SEC, observed=0.3),
        det("response_time_above_1000ms", "gateway", T0 + 9 * SEC, category="performance",
            observed=1800, threshold=1000),
        det("heartbeat_missing", "postgres", T0 + 40 * SEC, severity="critical",
            host="pg-primary-1", observed=0, threshold=1),
    ])
    assert causes[0].service == "postgres" and causes[0].host == "pg-primary-1"
    # inventory's only detection names postgres: it is evidence about postgres
    assert any("upstream in the call graph of 3/3" in e for e in causes[0].evidence)
    assert any("named as the failing peer by 2" in e for e in causes[0].evidence)
    assert [c.score for c in causes] == sorted((c.score for c in causes), reverse=True)
    assert causes[-1].service == "gateway"


def test_database_named_by_callers_is_a_candidate_before_its_own_detection():
    causes = ranked([
        det("db_connection_errors", "orders", T0, category="connectivity", signal="logs",
            labels={"peer.service": "postgres"}),
        det("db_connection_errors", "inventory", T0 + SEC, category="connectivity",
            signal="logs", labels={"peer.service": "postgres"}),
    ])
    assert causes[0].service == "postgres"
    assert "no detection of its own yet" in causes[0].evidence


def test_chain_failing_at_the_bottom_first_ranks_the_bottom_first():
    chain = {"a": ["b"], "b": ["c"]}
    causes = ranked([det("latency_high", "a", T0 + 30 * SEC, category="performance"),
                     det("latency_high", "b", T0 + 15 * SEC, category="performance"),
                     det("latency_high", "c", T0, category="performance")], graph=chain)
    assert [c.service for c in causes] == ["c", "b", "a"]
    assert any("first to go anomalous" in e for e in causes[0].evidence)


def test_recent_deploy_boosts_a_candidate():
    siblings = {"front": ["left", "right"]}
    plain = [det("error_rate_above_5pct", "left", T0), det("error_rate_above_5pct", "right", T0)]
    assert [c.service for c in ranked(plain, graph=siblings)] == ["left", "right"]  # by name
    deployed = [det("error_rate_above_5pct", "left", T0), det("error_rate_above_5pct", "right", T0),
                det("deploy_detected", "right", T0 - 60 * SEC, category="configuration",
                    severity="low", signal="logs", title="deploy started: right 1.2 -> 1.3")]
    causes = ranked(deployed, graph=siblings)
    assert causes[0].service == "right"
    assert any(e.startswith("recent deploy: deploy started") for e in causes[0].evidence)


def test_service_version_change_counts_as_a_deploy():
    siblings = {"front": ["left", "right"]}
    causes = ranked([
        det("error_rate_above_5pct", "left", T0, labels={"service.version": "2.0"}),
        det("error_rate_above_5pct", "right", T0, labels={"service.version": "4.1"}),
        det("error_rate_above_1pct", "right", T0 + SEC, labels={"service.version": "4.2"}),
    ], graph=siblings)
    assert causes[0].service == "right"
    assert "recent deploy: service.version changed 4.1 -> 4.2" in causes[0].evidence


def test_memory_leak_on_one_service_ranks_it_first():
    causes = ranked([
        det("memory_growth", "auth", T0, category="resource", severity="medium", score=0.9),
        det("memory_above_85pct", "auth", T0 + 600 * SEC, category="resource", observed=91,
            threshold=85),
        det("response_time_above_1000ms", "auth", T0 + 900 * SEC, category="performance"),
    ])
    assert len(causes) == 1 and causes[0].service == "auth" and causes[0].score > 0.5
    assert any("cause-type signal" in e for e in causes[0].evidence)


def test_ranking_is_capped():
    dets = [det("error_rate_above_5pct", f"s{i}", T0 + i) for i in range(8)]
    assert len(ranked(dets, graph={}, max_root_causes=3)) == 3


def test_coordination_failure_ranks_the_coordinator_over_its_lost_workers():
    causes = ranked([
        det("heartbeat-missing", "agent-worker", T0, host="agent-worker-1", observed=60,
            threshold=60),  # as the absence rule emits it: seconds silent vs its for
        det("heartbeat-missing", "agent-worker", T0, host="agent-worker-2", observed=60,
            threshold=60),
        det("coordination-failures", "agent-coordinator", T0 + 12 * SEC,
            category="coordination", signal="logs", observed=49, threshold=10),
    ])
    assert [c.service for c in causes] == ["agent-coordinator", "agent-worker"]
    assert any("cause-type signal" in e for e in causes[0].evidence)


def test_a_resource_drop_is_not_a_cause_type_signal():
    """Workers a coordinator stopped feeding: their CPU drops (a resource detection below
    the usual value) - an effect of the coordinator, not a cause of anything."""
    coordination = det("coordination_failures", "agent-coordinator", T0, signal="logs",
                       category="coordination", observed=24, threshold=10)

    def worker(observed):
        found = [det(f"model:{m}", "agent-worker", T0 + 10 * SEC, category="resource",
                     observed=observed, threshold=0.6, score=0.9,
                     evidence={"expected": 57.0}) for m in ("cpu", "memory")]
        return next(c for c in ranked([coordination, *found]) if c.service == "agent-worker")

    idle, busy = worker(2.0), worker(99.0)
    assert not any(e.startswith("cause-type") for e in idle.evidence)
    assert any(e.startswith("cause-type") for e in busy.evidence)
    # the coordinator has a cause-type signal too: the busy worker's counts half
    assert idle.score == pytest.approx(busy.score - 0.3 / 2)


def _edge(caller, callee, t, **kw):
    """A service-graph edge detection: raised on the callee, naming the caller."""
    return det("service-graph", callee, t, category="performance", signal="traces",
               labels={"caller": caller, "callee": callee, "series": "edge.latency.slower"},
               observed=250.0, threshold=0.6, score=0.99,
               evidence={"expected": 8.0, "band_low": 0.0, "band_high": 20.0, "kind": "edge"},
               **kw)


def test_a_delay_seen_only_by_callers_ranks_the_callee():
    """Network delay on postgres: its own metrics are quiet; its callers' calls to it and
    their own latency show it."""
    causes = ranked([
        det("latency_high", "orders", T0, category="performance", observed=900,
            threshold=500),
        _edge("orders", "postgres", T0 + 5 * SEC),
        _edge("inventory", "postgres", T0 + 5 * SEC),
        det("latency_high", "api", T0 + 20 * SEC, category="performance", observed=1200,
            threshold=500),
    ])
    assert [c.service for c in causes][:1] == ["postgres"]
    assert any("calls to it from inventory, orders" in e for e in causes[0].evidence)
    assert "no detection of its own yet" in causes[0].evidence


def test_a_caller_slow_on_most_of_its_calls_is_the_common_factor():
    """orders CPU-starved: every call it makes looks slow; its callees are fine."""
    causes = ranked([
        _edge("orders", "postgres", T0),
        _edge("orders", "cache", T0),
        _edge("orders", "payments", T0),
        det("latency_high", "api", T0 + 20 * SEC, category="performance"),
    ])
    assert causes[0].service == "orders"
    assert any("3 of its 4 callees are anomalous together" in e for e in causes[0].evidence)
    assert {c.service for c in causes} == {"orders", "api"}


def _network(caller, callee, t):
    """A service-graph network-time alarm: the calls spend long outside the callee."""
    d = _edge(caller, callee, t)
    return replace(d, labels={**d.labels, "series": "edge.network"})


@pytest.mark.parametrize("trouble", ["cpu", "calls into it"])
def test_a_caller_in_trouble_of_its_own_takes_its_calls_to_a_quiet_callee(trouble):
    """orders starved of CPU calls only postgres: its client spans take longer, so its
    calls to postgres look slow although postgres shows nothing of its own. orders' own
    resource alarm, or api's calls into orders spending long outside orders' handling (its
    accept queue), says the trouble is orders'."""
    own = (det("cpu_high", "orders", T0, category="resource", observed=97, threshold=80)
           if trouble == "cpu" else _network("api", "orders", T0))
    causes = ranked([own, _network("orders", "postgres", T0),
                     det("latency_high", "api", T0 + 20 * SEC, category="performance")])
    assert causes[0].service == "orders"
    assert any("explains its calls to postgres, which show nothing of their own" in e
               for e in causes[0].evidence)
    assert "postgres" not in {c.service for c in causes}


def test_a_network_delay_on_the_callee_stays_the_callee_s():
    """A network delay on postgres shows as network time on every caller's calls to it;
    a caller with a resource alarm of its own does not take calls to a callee that shows
    trouble of its own, and callers without trouble of their own never take them."""
    causes = ranked([_network("orders", "postgres", T0), _network("inventory", "postgres", T0),
                     det("latency_high", "api", T0 + 20 * SEC, category="performance")])
    assert causes[0].service == "postgres"
    with_own = ranked([det("cpu_high", "orders", T0, category="resource", observed=97,
                           threshold=80),
                       det("db_conn_errors", "postgres", T0, category="availability"),
                       _network("orders", "postgres", T0)])
    assert "postgres" in {c.service for c in with_own}
    assert not any("show nothing of their own" in e for c in with_own for e in c.evidence)


def test_the_change_point_not_the_confirmation_orders_candidates():
    """A metric model confirms 4 points after the change; a trace window right away."""
    late = replace(det("model:robust-seasonal", "c", T0 + 4 * MIN, category="performance"),
                   window_start=T0)  # changed at T0
    causes = ranked([det("latency_high", "a", T0 + 60 * SEC, category="performance"), late],
                    graph={"a": ["c"]})
    assert causes[0].service == "c"
    assert any("first to go anomalous" in e for e in causes[0].evidence)


def test_onsets_within_a_detection_window_count_as_simultaneous():
    """A delay on postgres: orders' slow-operation rule (a 5-minute window) fires with a
    change point known only to a window step (T0: the last evaluation before its
    condition held), orders' calls to postgres show the delay 80 s later by the edge's
    first slow minute. Both are the first change within one detection window: neither
    is first, and the callee the calls name ranks first. Two windows apart, the earlier
    one leads."""
    rule = replace(det("slow-operation", "orders", T0 + 4 * MIN, category="performance",
                       observed=1122, threshold=1000, signal="traces",
                       evidence={"window": "5m", "for_ms": 3 * MIN, "step_ms": MIN}),
                   window_start=T0 - MIN)
    edge = replace(_edge("orders", "postgres", T0 + 2 * MIN + 20 * SEC),
                   window_start=T0 + 80 * SEC)
    causes = ranked([rule, edge])
    assert [c.service for c in causes] == ["postgres", "orders"]
    late = replace(_edge("orders", "postgres", T0 + 4 * MIN), window_start=T0 + 3 * MIN)
    assert [c.service for c in ranked([rule, late])][0] == "orders"


def test_a_cause_type_signal_every_caller_shows_points_at_none_of_them():
    """Queues filling up in every caller of a failing database are effects."""
    dets = [det("heartbeat_missing", "postgres", T0, severity="critical", host="pg-1")]
    for svc in ("orders", "inventory", "api"):
        dets.append(det("model:robust-seasonal", svc, T0, category="resource",
                        labels={"metric": "queue.depth"}, observed=90, threshold=0.6,
                        score=0.9, evidence={"expected": 4.0, "band_low": 0.0,
                                             "band_high": 12.0}))
    causes = ranked(dets)
    assert causes[0].service == "postgres"
    assert any("as on 2 other candidate(s)" in e for c in causes[1:] for e in c.evidence)


def _stopped(service, t):
    """The built-in traffic-stopped rule's firing: no request for two minutes."""
    return det("traffic-stopped", service, t, observed=0.0, threshold=0.0,
               evidence={"points_at": "callers", "window": "1m", "for_ms": MIN,
                         "step_ms": MIN})


def test_traffic_that_stops_arriving_points_at_the_callers():
    """orders fails before it calls payments (an exception): payments' traffic stops
    while orders' own requests go on. api's slow responses started earlier (a windowed
    rule on a noisy p99); orders is where the requests now end."""
    causes = ranked([
        det("slow-responses", "api", T0, category="performance", observed=1600,
            threshold=1000),
        det("slow-responses", "orders", T0 + 4 * MIN, category="performance",
            observed=1400, threshold=1000),
        _stopped("payments", T0 + 2 * MIN),
    ])
    assert causes[0].service == "orders"
    assert any("requests end here: calls to payments stopped arriving" in e
               for e in causes[0].evidence)
    assert "payments" not in {c.service for c in causes}
    # the same without the stop: api's earlier onset wins, as before
    assert ranked([
        det("slow-responses", "api", T0, category="performance", observed=1600,
            threshold=1000),
        det("slow-responses", "orders", T0 + 4 * MIN, category="performance",
            observed=1400, threshold=1000),
    ])[0].service == "api"


def test_a_stopped_service_with_trouble_of_its_own_keeps_the_stop():
    """A service that stopped serving and shows errors or a missing heartbeat is down
    itself; with no known caller the stop stays its own too."""
    down = ranked([_stopped("payments", T0),
                   det("heartbeat_missing", "payments", T0, severity="critical")])
    assert down[0].service == "payments"
    assert not any("requests end here" in e for c in down for e in c.evidence)
    alone = ranked([_stopped("payments", T0)], graph={})
    assert [c.service for c in alone] == ["payments"]
