"""The console's HTML and SVG: what each page and chart shows, and that data never
becomes markup."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from pipeline.api import console_pages as pages
from pipeline.api.charts import (
    Band,
    GraphView,
    Lane,
    Series,
    graph_chart,
    graph_layers,
    line_chart,
    neighbourhood,
    nice_ticks,
    timeline_chart,
)
from pipeline.api.console_data import Filters, ProblemData
from pipeline.api.markup import Markup, esc, fmt_age, html, table

NOW = 1_764_000_000_000
HOSTILE = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>"
SVG = "{http://www.w3.org/2000/svg}"


def svg_tree(markup: str) -> ET.Element:
    """The SVG parsed as XML: fails on anything not well-formed."""
    return ET.fromstring(markup)


def test_values_are_escaped_and_markup_is_kept():
    assert esc(HOSTILE) == ("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&gt;"
                            "&lt;img src=x onerror=alert(1)&gt;")
    assert html("<b>{}</b>", Markup("<i>ok</i>")) == "<b><i>ok</i></b>"
    assert html('<a title="{}">', '" onmouseover="x') == '<a title="&quot; onmouseover=&quot;x">'
    assert esc(None) == ""
    assert "nothing to show" in table(("a", "b"), [])
    cells = table(("a",), [(HOSTILE,)])
    assert "<script>" not in cells and "&lt;script&gt;" in cells


def test_ages_read_like_people_say_them():
    assert fmt_age(NOW - 42_000, NOW) == "42s"
    assert fmt_age(NOW - 5 * 60_000, NOW) == "5m"
    assert fmt_age(NOW - (3 * 60 + 10) * 60_000, NOW) == "3h 10m"
    assert fmt_age(NOW - (52 * 60) * 60_000, NOW) == "2d 4h"
    assert fmt_age(None, NOW) == ""


def test_line_chart_draws_each_finite_point_and_the_expected_band():
    points = [(NOW + i * 60_000, float(i % 5)) for i in range(30)] + [(NOW + 31 * 60_000,
                                                                      math.nan)]
    band = Band([(NOW + 10 * 60_000, 1.0, 3.0, 2.0), (NOW + 20 * 60_000, 1.5, 3.5, 2.5)])
    svg = line_chart(f"orders · {HOSTILE}", [Series("p95", points)], NOW, NOW + 40 * 60_000,
                     band=band, threshold=4.5, marks={"onset": NOW + 15 * 60_000})
    root = svg_tree(svg)
    circles = root.findall(f".//{SVG}circle[@class='pt']")
    assert len(circles) == 30  # the NaN is left out
    group = root.find(f".//{SVG}g[@class='series']")
    assert group is not None and group.get("data-points") == "30"
    assert root.find(f".//{SVG}polygon[@class='band']") is not None
    assert root.find(f".//{SVG}polyline[@class='expected']") is not None
    assert root.find(f".//{SVG}line[@class='threshold']") is not None
    assert root.find(f".//{SVG}line[@class='mark']") is not None
    assert "<script>" not in svg and root.find(f"{SVG}title").text.endswith(HOSTILE)
    # every point lies inside the drawing area
    for c in circles:
        assert 52 <= float(c.get("cx")) <= 612 and 22 <= float(c.get("cy")) <= 172


def test_line_chart_without_data_says_so():
    svg = line_chart("empty", [Series("x", [])], NOW, NOW + 60_000)
    assert "no data in this window" in svg
    assert not svg_tree(svg).findall(f".//{SVG}circle")


def test_nice_ticks_cover_the_range_with_round_steps():
    assert nice_ticks(0, 97) == [0.0, 25.0, 50.0, 75.0, 100.0]
    ticks = nice_ticks(0.012, 0.049)
    assert ticks[0] <= 0.012 and ticks[-1] >= 0.049 and len(ticks) <= 12
    assert nice_ticks(5, 5)[0] <= 5 <= nice_ticks(5, 5)[-1]
    assert nice_ticks(math.nan, 1) == []


def test_timeline_has_a_lane_per_series_and_a_dot_per_detection():
    lanes = [Lane("postgres · db-errors", [(NOW, "firing", "critical", HOSTILE),
                                           (NOW + 600_000, "resolved", "critical", "ok")]),
             Lane(HOSTILE, [(NOW + 60_000, "firing", "high", "errors")])]
    svg = timeline_chart(lanes, NOW - 60_000, NOW + 900_000)
    root = svg_tree(svg)
    assert len(root.findall(f".//{SVG}circle[@class='pt']")) == 3
    assert len(root.findall(f".//{SVG}rect[@class='span']")) == 2
    assert "<script>" not in svg and "<img" not in svg


def test_call_graph_puts_callers_above_callees_and_marks_the_root_cause():
    edges = [("api", "orders"), ("orders", "postgres"), ("inventory", "postgres")]
    root = svg_tree(graph_chart(GraphView(edges, "postgres", ["orders", "postgres"])))
    nodes = {g.get("data-service"): g for g in root.findall(f".//{SVG}g[@class='node']")}
    assert set(nodes) == {"api", "orders", "postgres", "inventory"}
    assert nodes["postgres"].get("data-role") == "root cause"
    assert nodes["orders"].get("data-role") == "affected"
    assert nodes["api"].get("data-role") == "neighbour"

    def top(name: str) -> float:
        return float(nodes[name].find(f"{SVG}rect").get("y"))
    assert top("api") < top("orders") < top("postgres")
    assert len(root.findall(f".//{SVG}line[@class='edge']")) == 3


def test_graph_layers_survive_cycles_and_unknown_names():
    assert graph_layers(["a", "b"], [("a", "b"), ("b", "a")]) == [["a"], ["b"]]
    assert graph_layers(["x"], [("x", "y")]) == [["x"]]
    hostile = graph_chart(GraphView([(HOSTILE, "db")], "db"))
    assert "<script>" not in hostile
    svg_tree(hostile)


def test_neighbourhood_keeps_calls_around_the_centre_within_the_bound():
    edges = [("api", "orders"), ("orders", "db"), ("far", "away")] + [
        (f"caller{i}", "db") for i in range(50)]
    kept = neighbourhood(edges, ["orders", "db"], max_nodes=10)
    assert ("orders", "db") in kept and ("api", "orders") in kept
    assert ("far", "away") not in kept
    assert len({n for e in kept for n in e}) <= 10


def problem_data(status: str = "open", title: str = "postgres: connection errors",
                 series: bool = True) -> ProblemData:
    p = {"id": "p-1", "version": 4, "scope": "default", "status": status, "title": title,
         "category": "availability", "severity": "high", "confidence": 0.9,
         "affected": ["orders", "postgres"], "symptoms": [HOSTILE], "potential_causes": ["x"],
         "resolution": "", "merged_into": "", "acknowledged_by": "",
         "opened_ms": NOW - 600_000, "updated_ms": NOW, "resolved_ms": None}
    detections = [{"id": "d1", "time_ms": NOW - 600_000, "detector": "db-errors",
                   "detector_version": "1", "signal": "logs", "service": "postgres",
                   "host": "db-1", "entity": "", "severity": "high", "state": "firing",
                   "title": "errors", "observed": 3.0, "threshold": 1.0, "score": math.nan,
                   "labels": {}, "evidence": "{}"}]
    links = [{"detection_id": "d1", "time_ms": NOW - 600_000, "service": "postgres",
              "role": "trigger"},
             {"detection_id": "d2", "time_ms": NOW - 300_000, "service": "orders",
              "role": "member"}]
    data = ProblemData(p, [{"service": "postgres", "score": 0.8, "evidence": [HOSTILE],
                            "host": "db-1"}],
                       {"summary": "db", "automated_checks": [{"name": "ping",
                                                               "command": "pg_isready",
                                                               "expect": "ok"}],
                        "manual_steps": ["look"], "escalation_criteria": ["down 15m"],
                        "estimated_resolution_minutes": 30, "required_expertise": ["dba"]},
                       {"title": "Database issues", "steps": [{"title": "Check",
                                                               "action": "run",
                                                               "command": "psql"}],
                        "escalation_levels": [{"level": 1, "after_minutes": 0,
                                               "contact": "on-call", "when": "at once"},
                                              {"level": 2, "after_minutes": 60,
                                               "contact": "owner", "when": "later"}],
                        "follow_ups": ["review"]},
                       links, detections, (NOW - 2_400_000, NOW + 900_000),
                       edges=[("orders", "postgres")])
    if series:
        data.series.append({"service": "postgres", "metric": "db.errors",
                            "points": [(NOW - 600_000 + i * 10_000, float(i)) for i in range(20)],
                            "band": [], "threshold": 1.0})
    return data


def test_problem_page_shows_everything_an_operator_acts_on():
    body = pages.problem_page(problem_data(), NOW, "FORMKEY", "alice", "alice")
    for text in ("postgres: connection errors", "Root-cause candidates", "db-1", "pg_isready",
                 "Database issues", "on-call", "CloudEvent p-1.1", "CloudEvent p-1.4",
                 'name="csrf" value="FORMKEY"', 'id="ack"', 'id="silence"',
                 'value="service=postgres"', "acting as alice"):
        assert text in body, text
    assert body.count('class="pt"') == 20 + 1  # the series' points and one detection
    # escalation: level 1 is due 10 minutes in, level 2 is not
    assert body.count("<td>due</td>") == 1
    assert "<script>alert" not in body and "&lt;script&gt;alert" in body


def test_only_an_open_problem_offers_the_ack_button():
    assert 'id="ack"' not in pages.problem_page(problem_data("acknowledged"), NOW, "k")
    assert 'id="ack"' not in pages.problem_page(problem_data("resolved"), NOW, "k")


def test_a_hostile_title_is_text_everywhere():
    data = problem_data(title=HOSTILE, series=False)
    for body in (pages.problem_page(data, NOW, "k"),
                 pages.problems_page([{**data.problem, "root_cause": HOSTILE}], Filters(), NOW,
                                     ("open",), user=HOSTILE)):
        assert "<script>" not in body and "<img" not in body
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in body


def test_history_lists_the_changes_the_store_keeps_in_time_order():
    data = problem_data("resolved")
    data.problem.update(acknowledged_by="bob", resolved_ms=NOW, resolution="timeout")
    rows = pages.history_rows(data)
    assert [r[1] for r in rows] == ["opened", "detection member", "resolved", "acknowledged",
                                    "latest version 4"]
    assert rows[-1][2].startswith("CloudEvent p-1.4")


def test_problems_page_lists_rows_with_links_and_filters():
    problems = [{"id": "p/1", "status": "open", "severity": "critical", "category": "data",
                 "title": "t", "affected": ["a", "b"], "root_cause": "a",
                 "opened_ms": NOW - 120_000, "updated_ms": NOW, "merged_into": ""}]
    body = pages.problems_page(problems, Filters(status="open", service="a"), NOW,
                               ("open", "resolved"))
    assert 'href="/console/problems/p%2F1"' in body
    assert "<td>2m</td>" in body and 'value="a"' in body
    assert '<option value="open" selected>' in body


def test_silences_page_offers_expiry_for_silences_not_ended():
    silences = [{"id": "s-1", "matchers": ['service="orders"'], "starts_at": NOW - 1000,
                 "ends_at": NOW + 3_600_000, "recurrence": None, "comment": HOSTILE,
                 "created_by": "alice", "created_at": NOW - 1000, "expired_at": None,
                 "scope": "default"},
                {"id": "s-2", "matchers": ['service="db"'], "starts_at": NOW - 10_000,
                 "ends_at": NOW - 5000, "recurrence": None, "comment": "", "created_by": "bob",
                 "created_at": NOW - 10_000, "expired_at": None, "scope": "default"}]
    body = pages.silences_page(silences, NOW, "KEY", by="alice")
    assert body.count("/expire") == 1 and "/console/silences/s-1/expire" in body
    assert "active" in body and "expired" in body and "<script>" not in body


def test_status_page_shows_lag_watermark_rates_and_dead_letter_reasons():
    status = {"app_id": "tocsin", "messages": {"metrics": 10}, "stored": {"metrics": 9},
              "rejected": {"metrics": 1}, "detect": {"watermark_ms": NOW - 30_000,
                                                     "late_records": 2},
              "correlate": {"decisions": {}, "alerts": 0}, "agents": {}}
    body = pages.status_page(status, [("t.metrics[0]", 120, 3)], {"records stored": 12.5},
                             [{"topic": "t.metrics", "why": HOSTILE, "records": 1,
                               "last_ms": NOW}],
                             [{"received_ms": NOW, "topic": "t.metrics", "partition": 0,
                               "offset": 7, "record_index": 0, "reason": "not JSON",
                               "payload": HOSTILE}], NOW)
    for text in ("t.metrics[0]", "<td>3</td>", "12.5/s", "30s behind", "late records",
                 "not JSON"):
        assert text in body, text
    assert "<script>" not in body


@pytest.mark.parametrize("query,error", [
    ({"status": "bogus"}, "status: expected one of"),
    ({"severity": "urgent"}, "severity: expected one of"),
    ({"since": "soon"}, "since:"),
    ({"since": "0"}, "since:"),
])
def test_filters_name_what_is_wrong(query, error):
    from pipeline.api.console_data import FilterError

    with pytest.raises(FilterError, match=error):
        Filters.parse(query, ("open", "resolved"))


def test_alert_history_lists_stored_changes_with_their_cloudevents():
    data = problem_data()
    data.changes = [
        {"version": 1, "time_ms": NOW - 600_000, "kind": "opened", "reason": "new onset",
         "event_id": "p-1.1", "event_type": "io.tocsin.problem.opened", "status": "open",
         "severity": "high", "acknowledged_by": ""},
        {"version": 2, "time_ms": NOW - 300_000, "kind": "joined", "reason": HOSTILE,
         "event_id": "", "event_type": "", "status": "open", "severity": "high",
         "acknowledged_by": ""},
        {"version": 3, "time_ms": NOW, "kind": "acknowledged", "reason": "by alice",
         "event_id": "p-1.3", "event_type": "io.tocsin.problem.acknowledged",
         "status": "acknowledged", "severity": "high", "acknowledged_by": "alice"}]
    body = pages.problem_page(data, NOW, "k")
    history = body.split('<table class="history">', 1)[1].split("</table>", 1)[0]
    assert history.count("<tr>") == 4  # the header and three changes
    assert "<code>p-1.1</code> io.tocsin.problem.opened" in history
    assert "not alerted" in history and "<code>p-1.3</code>" in history
    assert "<script>" not in history


def test_a_banded_series_is_the_host_the_model_spoke_of_else_the_mean_over_hosts():
    from pipeline.api.console_data import series_entry

    def det(host: str, t: int, **kw) -> dict:
        return {"service": "db", "signal": "metrics", "labels": {"metric": "lat"},
                "host": host, "time_ms": t, "evidence": "{}", "threshold": math.nan, **kw}
    band = '{"band_low": 1, "band_high": 3, "expected": 2}'
    per_host = {("db", "lat", "h1"): [(0, 1.0), (10, 3.0)],
                ("db", "lat", "h2"): [(0, 5.0), (10, 7.0)]}
    entry = series_entry([det("h2", 5, evidence=band), det("h2", 9, evidence=band),
                          det("h1", 7, evidence=band)], "db", "lat", per_host)
    assert entry["host"] == "h2" and entry["points"] == [(0, 5.0), (10, 7.0)]
    assert entry["band"] == [(5, 1.0, 3.0, 2.0), (9, 1.0, 3.0, 2.0)]
    mean = series_entry([det("h1", 5, threshold=4.0)], "db", "lat", per_host)
    assert mean["host"] == "" and mean["points"] == [(0, 3.0), (10, 5.0)]
    assert mean["threshold"] == 4.0 and mean["band"] == []


def test_problem_page_shows_feedback_and_the_diagnostics_run_and_offers_a_verdict():
    data = problem_data(series=False)
    data.diagnostic_plan = {**data.diagnostic_plan, "results": [
        {"check": "error_rate_by_operation", "title": "error rate by operation of postgres",
         "expect": "no operation above 1% errors", "columns": ["operation", "error_rate"],
         "rows": [["SELECT orders", 0.25], [HOSTILE, 0.1]], "error": ""},
        {"check": "slowest_callees", "title": "slowest callees of postgres", "expect": "fast",
         "columns": [], "rows": [], "error": "timeout"}]}
    data.feedback = [{"time_ms": NOW - 60_000, "author": "bob", "verdict": "false-positive",
                      "root_cause": "", "comment": HOSTILE}]
    body = pages.problem_page(data, NOW, "FORMKEY", "alice", "alice")
    for text in ('id="diagnostics"', "error rate by operation of postgres", "SELECT orders",
                 "0.25", "not answered: timeout", 'id="feedback"', '/p-1/feedback"',
                 '<option value="false-positive">', 'name="root_cause" value="postgres"',
                 "<td>bob</td>", "<td>false-positive</td>"):
        assert text in body, text
    assert "<script>" not in body
    assert "no feedback yet" in pages.problem_page(problem_data(series=False), NOW, "k")
