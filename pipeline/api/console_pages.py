"""The console's pages as HTML, from plain data (no I/O): what each page shows and how.

The worker's adapter (``pipeline.agents.console``) reads the data, then calls one of
these. Every value from the data is escaped (:mod:`pipeline.api.markup`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.api.charts import (
    Band,
    GraphView,
    Lane,
    Series,
    graph_chart,
    line_chart,
    neighbourhood,
    timeline_chart,
)
from pipeline.api.console_data import Filters, ProblemData
from pipeline.api.markup import (
    Markup,
    fmt_age,
    fmt_number,
    fmt_time,
    html,
    join,
    page,
    path_part,
    severity_badge,
    status_label,
    table,
)
from pipeline.events.detection import SEVERITIES

BASE = "/console"
MAX_LANES = 40  # detected series drawn in a problem's timeline, earliest first


def problem_href(problem_id: str) -> str:
    """The problem page's path."""
    return f"{BASE}/problems/{path_part(problem_id)}"


def _options(name: str, values: Sequence[str], chosen: str) -> Markup:
    opts = join(html('<option value="{}"{}>{}</option>', v,
                     Markup(" selected") if v == chosen else Markup(""), v or "any")
                for v in ("", *values))
    return html('<label>{}<select name="{}">{}</select></label>', name, name, opts)


def _filter_form(action: str, filters: Filters, statuses: Sequence[str],
                 status_name: str = "status") -> Markup:
    return html(
        '<form class="filters" method="get" action="{}">{}{}'
        '<label>service<input name="service" value="{}" size="16"></label>'
        '<label>since<input name="since" value="{}" size="5" title="e.g. 1h, 24h, 7d">'
        '</label><button type="submit">filter</button></form>', action,
        _options(status_name, statuses, filters.status),
        _options("severity", SEVERITIES, filters.severity), filters.service, filters.since)


def _notice(text: str, error: bool = False) -> Markup:
    return html('<div class="{}">{}</div>', "error" if error else "note", text) if text \
        else Markup("")


def problems_page(problems: Sequence[Mapping[str, Any]], filters: Filters, now_ms: int,
                  statuses: Sequence[str], user: str = "", error: str = "") -> Markup:
    """The problems list: open first; title, severity, category, affected services, root
    cause, age, status."""
    body = [html("<h1>Problems</h1>"), _filter_form(f"{BASE}/", filters, statuses),
            _notice(error, True)]
    rows = []
    for p in problems:
        status = p["status"]
        if p.get("merged_into"):
            status_cell = html('{} <small>into <a href="{}">{}</a></small>',
                               status_label(status), problem_href(p["merged_into"]),
                               p["merged_into"])
        else:
            status_cell = status_label(status)
        rows.append((html('<a class="problem" href="{}">{}</a>', problem_href(p["id"]),
                          p["title"] or p["id"]),
                     severity_badge(p["severity"]), p["category"],
                     ", ".join(p["affected"][:8]) + (" …" if len(p["affected"]) > 8 else ""),
                     p["root_cause"], fmt_age(p["opened_ms"], now_ms), status_cell))
    body.append(table(("title", "severity", "category", "affected", "root cause", "age",
                       "status"), rows, "problems"))
    body.append(html("<p><small>{} shown (at most 200), updated within {}</small></p>",
                     len(problems), filters.since))
    return page("Problems", join(body), "problems", user)


def _lanes(data: ProblemData) -> list[Lane]:
    lanes: dict[str, list[tuple[int, str, str, str]]] = {}
    for d in data.detections:
        # what was detected first, the detector after: a long label is cut at its end
        label = (f"{d['service']} · {d['entity']} ({d['detector']})" if d.get("entity")
                 else f"{d['service']} · {d['detector']}")
        lanes.setdefault(label, []).append((int(d["time_ms"]), d["state"], d["severity"],
                                            d["title"]))
    ordered = sorted(lanes.items(), key=lambda kv: min(e[0] for e in kv[1]))
    return [Lane(k, v) for k, v in ordered[:MAX_LANES]]


def _more_lanes(shown: int, detections: int) -> Markup:
    if shown < MAX_LANES:
        return Markup("")
    return html("<p><small>the {} earliest detected series of {} detections are drawn"
                "</small></p>", shown, detections)


def _root_causes(causes: Sequence[Mapping[str, Any]]) -> Markup:
    if not causes:
        return html('<p class="empty">no root-cause candidate</p>')
    items = []
    for rank, c in enumerate(causes, 1):
        evidence = join(html("<li>{}</li>", e) for e in c.get("evidence", ()))
        host = html(" on {}", c["host"]) if c.get("host") else Markup("")
        items.append(html('<li class="cause"><strong>{}</strong>{} <small>score {}</small>'
                          "<ul>{}</ul></li>", c.get("service", ""), host,
                          fmt_number(c.get("score")), evidence))
        if rank >= 5:
            break
    return html('<ol class="causes">{}</ol>', join(items))


def _plan(plan: Mapping[str, Any]) -> Markup:
    if not plan:
        return html('<p class="empty">no diagnostic plan</p>')
    checks = table(("check", "command", "expect"),
                   [(c.get("name", ""), html("<code>{}</code>", c.get("command", "")),
                     c.get("expect", "")) for c in plan.get("automated_checks", ())])
    steps = join(html("<li>{}</li>", s) for s in plan.get("manual_steps", ()))
    criteria = join(html("<li>{}</li>", s) for s in plan.get("escalation_criteria", ()))
    return html("<p>{}</p>{}<h3>Automated checks (described, not run)</h3>{}"
                "<h3>Manual steps</h3><ol>{}</ol><h3>Escalate when</h3><ul>{}</ul>"
                "<dl><dt>estimated resolution</dt><dd>{} min</dd>"
                "<dt>required expertise</dt><dd>{}</dd></dl>",
                plan.get("summary", ""), _diagnostics(plan.get("results") or ()), checks,
                steps, criteria,
                plan.get("estimated_resolution_minutes", ""),
                ", ".join(plan.get("required_expertise", ())))


def _diagnostics(results: Sequence[Mapping[str, Any]]) -> Markup:
    """The automated diagnostics run on the store (read-only), each with its rows."""
    if not results:
        return Markup("")
    parts = []
    for r in results:
        if r.get("error"):
            body = html('<p class="empty">not answered: {}</p>', r["error"])
        elif not r.get("rows"):
            body = html('<p class="empty">no rows</p>')
        else:
            body = table(tuple(r.get("columns") or ()), [tuple(row) for row in r["rows"]])
        parts.append(html("<h4>{}</h4><p><small>expect: {}</small></p>{}", r.get("title", ""),
                          r.get("expect", ""), body))
    return html('<h3>Diagnostics run on the store (read-only)</h3><div id="diagnostics">{}'
                "</div>", join(parts))


def _feedback(rows: Sequence[Mapping[str, Any]]) -> Markup:
    if not rows:
        return html('<p class="empty">no feedback yet</p>')
    return table(("time", "by", "verdict", "root cause", "comment"),
                 [(fmt_time(f["time_ms"]), f["author"], f["verdict"], f["root_cause"],
                   f["comment"]) for f in rows], "feedback")


def _runbook(book: Mapping[str, Any]) -> Markup:
    if not book:
        return html('<p class="empty">no runbook</p>')
    steps = join(html("<li><strong>{}</strong>: {}{}</li>", s.get("title", ""),
                      s.get("action", ""),
                      html(" <code>{}</code>", s["command"]) if s.get("command") else "")
                 for s in book.get("steps", ()))
    follow = join(html("<li>{}</li>", f) for f in book.get("follow_ups", ()))
    return html("<p><strong>{}</strong></p><ol>{}</ol><h3>Follow-ups</h3><ul>{}</ul>",
                book.get("title", ""), steps, follow)


def _escalation(book: Mapping[str, Any], opened_ms: int, now_ms: int) -> Markup:
    levels = book.get("escalation_levels", ()) if book else ()
    elapsed_min = max(0, (now_ms - opened_ms) // 60_000)
    rows = [(lvl.get("level", ""), f"after {lvl.get('after_minutes', 0)} min",
             lvl.get("contact", ""), lvl.get("when", ""),
             "due" if elapsed_min >= int(lvl.get("after_minutes", 0) or 0) else "")
            for lvl in levels]
    return table(("level", "when", "contact", "condition", "now"), rows, "escalation")


def _history(data: ProblemData) -> Markup:
    if not data.changes:
        rows = [(fmt_time(t), what, detail) for t, what, detail in history_rows(data)]
        return html("{}<p><small>Derived from the stored problem and its detections (it "
                    "predates <code>problem_changes</code>).</small></p>",
                    table(("time", "change", "detail"), rows, "history"))
    rows = [(fmt_time(c["time_ms"]), c["version"], c["kind"], status_label(c["status"]),
             c["severity"], c["acknowledged_by"],
             html("<code>{}</code> {}", c["event_id"], c["event_type"]) if c["event_id"]
             else "not alerted", c["reason"]) for c in data.changes]
    return html("{}<p><small>Each alerted change went to the alerts topic as the "
                "CloudEvent named here (ordered by <code>problemversion</code>).</small></p>",
                table(("time", "version", "change", "status", "severity", "acknowledged by",
                       "CloudEvent", "reason"), rows, "history"))


def history_rows(data: ProblemData) -> list[tuple[int, str, str]]:
    """The problem's history from what the store keeps: (epoch ms, what, detail), oldest
    first (an acknowledgement has no stored time: 0, after the timed rows). The fallback
    for problems older than the ``problem_changes`` table: ``problems`` keeps the latest
    version only (reads are ``final``)."""
    p = data.problem
    out = [(p["opened_ms"], "opened", f"CloudEvent {p['id']}.1 (io.tocsin.problem.opened)")]
    roles: dict[str, int] = {}
    for link in data.links:
        role = link["role"]
        if role in ("trigger",):
            continue
        if role == "keepalive":
            roles[role] = roles.get(role, 0) + 1
            continue
        out.append((link["time_ms"], f"detection {role}",
                    f"{link['service']}: {link['detection_id']}"))
    if p.get("resolved_ms"):
        detail = p.get("resolution") or ""
        if p.get("merged_into"):
            detail += f" into {p['merged_into']}"
        out.append((p["resolved_ms"], "resolved", detail))
    out.sort(key=lambda r: r[0])
    if p.get("acknowledged_by"):  # the store keeps who, not when
        out.append((0, "acknowledged", f"by {p['acknowledged_by']}"))
    out.append((p["updated_ms"], f"latest version {p['version']}",
                f"CloudEvent {p['id']}.{p['version']}; "
                + (f"{roles['keepalive']} keep-alives folded in" if roles else "")))
    return out


def _series_charts(data: ProblemData) -> Markup:
    if not data.series:
        return html('<p class="empty">no stored metric series for these services in '
                    "this window</p>")
    charts = []
    for s in data.series:
        band = Band(s["band"]) if s["band"] else None
        charts.append(html('<div class="card">{}</div>', line_chart(
            f"{s['service']} · {s['metric']}" + (f" on {s['host']}" if s.get("host") else
                                                 " (mean over hosts)"),
            [Series(s["metric"], s["points"])],
            data.window[0], data.window[1], band=band, threshold=s["threshold"],
            marks={"onset": data.problem["opened_ms"]})))
    return html('<div class="grid">{}</div>', join(charts))


def _actions(data: ProblemData, form_key: str, by: str) -> Markup:
    p = data.problem
    action = problem_href(p["id"])
    name = html('<label>your name<input name="by" value="{}" required size="14"></label>', by)
    key = html('<input type="hidden" name="csrf" value="{}">', form_key)
    ack = Markup("")
    if p["status"] == "open":
        ack = html('<form class="act" method="post" action="{}/ack">{}{}'
                   '<label>comment<input name="comment" size="30"></label>'
                   '<button type="submit" id="ack">Acknowledge</button></form>',
                   action, key, name)
    root = data.root_causes[0]["service"] if data.root_causes else ""
    matcher = f"service={root}" if root else f"id={p['id']}"
    silence = html('<form class="act" method="post" action="{}/silence">{}{}'
                   '<label>matchers (comma separated)<input name="matchers" value="{}" '
                   'size="28"></label><label>for<input name="duration" value="2h" size="5">'
                   '</label><label>comment<input name="comment" size="24"></label>'
                   '<button type="submit" id="silence">Silence</button></form>',
                   action, key, name, matcher)
    verdicts = join(html('<option value="{}">{}</option>', v, v)
                    for v in ("true", "false-positive", "duplicate"))
    feedback = html('<form class="act" method="post" action="{}/feedback">{}{}'
                    '<label>verdict<select name="verdict">{}</select></label>'
                    '<label>root cause<input name="root_cause" value="{}" size="14"></label>'
                    '<label>comment<input name="comment" size="24"></label>'
                    '<button type="submit" id="feedback">Give feedback</button></form>',
                    action, key, name, verdicts, root)
    return join([ack, silence, feedback])


def problem_page(data: ProblemData, now_ms: int, form_key: str, user: str = "",
                 by: str = "", notice: str = "", error: str = "") -> Markup:
    """One problem: summary, timeline, root causes, series, call graph, plan, runbook,
    escalation, history, and the ack and silence forms."""
    p = data.problem
    ack = html(" by {}", p["acknowledged_by"]) if p.get("acknowledged_by") else Markup("")
    summary = html(
        '<h1 id="title">{}</h1>{}<dl>'
        '<dt>status</dt><dd id="status">{}{}</dd><dt>severity</dt><dd>{}</dd>'
        "<dt>category</dt><dd>{}</dd><dt>confidence</dt><dd>{}</dd>"
        "<dt>affected</dt><dd>{}</dd><dt>opened</dt><dd>{} UTC ({} ago)</dd>"
        "<dt>updated</dt><dd>{} UTC</dd><dt>id</dt><dd><code>{}</code> version {}</dd></dl>",
        p["title"] or p["id"], join([_notice(notice), _notice(error, True)]),
        status_label(p["status"]), ack, severity_badge(p["severity"]), p["category"],
        fmt_number(p["confidence"]), ", ".join(p["affected"]), fmt_time(p["opened_ms"]),
        fmt_age(p["opened_ms"], now_ms), fmt_time(p["updated_ms"]), p["id"], p["version"])
    lanes = _lanes(data)
    services = [s for s in p["affected"] if s]
    root = data.root_causes[0]["service"] if data.root_causes else ""
    graph = graph_chart(GraphView(neighbourhood(data.edges, [*services, root]), root,
                                  services))
    symptoms = join(html("<li>{}</li>", s) for s in p.get("symptoms", ()))
    causes = join(html("<li>{}</li>", s) for s in p.get("potential_causes", ()))
    detections = table(("time", "service", "detector", "state", "severity", "title"),
                       [(fmt_time(d["time_ms"]), d["service"], d["detector"], d["state"],
                         severity_badge(d["severity"]), d["title"])
                        for d in data.detections[-50:]])
    history = _history(data)
    body = join([
        summary, _actions(data, form_key, by),
        html("<h2>Member detections</h2>{}{}", timeline_chart(
            lanes, data.window[0], data.window[1], marks={"onset": p["opened_ms"]}),
             _more_lanes(len(lanes), len(data.detections))),
        html("<h2>Root-cause candidates</h2>{}", _root_causes(data.root_causes)),
        html("<h2>Signals around the onset</h2>{}", _series_charts(data)),
        html("<h2>Call graph</h2>{}", graph),
        html("<h2>Symptoms</h2><ul>{}</ul><h2>Potential causes</h2><ul>{}</ul>", symptoms,
             causes),
        html("<h2>Diagnostic plan</h2>{}", _plan(data.diagnostic_plan)),
        html("<h2>Runbook</h2>{}", _runbook(data.runbook)),
        html("<h2>Escalation</h2>{}", _escalation(data.runbook, p["opened_ms"], now_ms)),
        html("<h2>Alert history</h2>{}", history),
        html("<h2>Feedback</h2>{}", _feedback(data.feedback)),
        html("<h2>Latest detections</h2>{}", detections),
    ])
    return page(p["title"] or p["id"], body, "problems", user)


def detections_page(detections: Sequence[Mapping[str, Any]], filters: Filters,
                    now_ms: int, states: Sequence[str], user: str = "",
                    error: str = "") -> Markup:
    """The detections list, newest first."""
    rows = [(fmt_time(d["time_ms"]), d["service"], d["host"],
             f"{d['detector']} {d['detector_version']}".strip(), d["signal"], d["state"],
             severity_badge(d["severity"]), d["category"], d["title"],
             fmt_number(d["observed"]),
             fmt_number(d["threshold"]) or (f"score {fmt_number(d['score'])}"
                                            if fmt_number(d["score"]) else ""))
            for d in detections]
    body = join([html("<h1>Detections</h1>"),
                 _filter_form(f"{BASE}/detections", filters, states, "status"),
                 _notice(error, True),
                 table(("time", "service", "host", "detector", "signal", "state", "severity",
                        "category", "title", "observed", "threshold / score"), rows,
                       "detections"),
                 html("<p><small>{} shown (at most 300)</small></p>", len(detections))])
    return page("Detections", body, "detections", user)


def silences_page(silences: Sequence[Mapping[str, Any]], now_ms: int, form_key: str,
                  user: str = "", by: str = "", notice: str = "", error: str = "") -> Markup:
    """The silences the worker holds, with an expire button on those not ended."""
    from pipeline.alerts.silences import Silence, SilenceError

    rows = []
    for wire in silences:
        try:
            state = Silence.from_wire({k: v for k, v in wire.items() if k != "scope"}
                                      ).state(now_ms)
        except SilenceError:
            state = "unreadable"
        expire = Markup("")
        if state != "expired":
            expire = html('<form method="post" action="{}/silences/{}/expire">'
                          '<input type="hidden" name="csrf" value="{}">'
                          '<input name="by" value="{}" required size="10" placeholder="name">'
                          "<button>expire</button></form>", BASE, path_part(wire["id"]),
                          form_key, by)
        rec = wire.get("recurrence") or {}
        rows.append((wire["id"], ", ".join(wire.get("matchers", ())), state,
                     fmt_time(wire.get("starts_at")),
                     fmt_time(wire.get("ends_at")) or (rec.get("rule", "") if rec else ""),
                     wire.get("created_by", ""), wire.get("comment", ""), wire.get("scope", ""),
                     expire))
    body = join([html("<h1>Silences</h1>"), _notice(notice), _notice(error, True),
                 table(("id", "matchers", "state", "starts", "ends / every", "by", "comment",
                        "scope", ""), rows, "silences"),
                 html("<p><small>Create one from a problem's page or with "
                      "<code>tocsin silence create</code>.</small></p>")])
    return page("Silences", body, "silences", user)


def _counts(value: object) -> object:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in sorted(value.items())) or "none"
    return value


def _kv(pairs: Sequence[tuple[str, object]]) -> Markup:
    return html("<dl>{}</dl>", join(html("<dt>{}</dt><dd>{}</dd>", k, _counts(v))
                                    for k, v in pairs))


def status_page(status: Mapping[str, Any], lag: Sequence[tuple[str, int, int | None]],
                rates: Mapping[str, float], dead_by_reason: Sequence[Mapping[str, Any]],
                dead_latest: Sequence[Mapping[str, Any]], now_ms: int, user: str = "",
                error: str = "") -> Markup:
    """Consumer lag, watermarks, rates, late records, agents and dead letters."""
    detect = status.get("detect", {})
    watermark = detect.get("watermark_ms", -1)
    behind = fmt_age(watermark, now_ms) if watermark and watermark > 0 else "no data yet"
    counters = _kv([("records received", status.get("messages", {})),
                    ("records stored", status.get("stored", {})),
                    ("rejected (dead-lettered)", status.get("rejected", {})),
                    ("store failed attempts", status.get("store_failed_attempts", 0)),
                    ("detections", detect.get("detections", {})),
                    ("detect errors", detect.get("errors", 0)),
                    ("correlator decisions", status.get("correlate", {}).get("decisions", {})),
                    ("alerts sent", status.get("correlate", {}).get("alerts", 0))])
    watermarks = _kv([("detect watermark", f"{fmt_time(watermark)} UTC (event time "
                                           f"{behind} behind the clock)"
                       if watermark and watermark > 0 else "no data yet"),
                      ("late records", detect.get("late_records", 0))])
    rate_rows = [(k, f"{v:.1f}/s") for k, v in sorted(rates.items())]
    lag_rows = [(tp, hw if hw is not None else "", lag_n if lag_n is not None else "")
                for tp, hw, lag_n in lag]
    agents = status.get("agents", {})
    agent_rows = [(name, a.get("consecutive_failures", ""), a.get("last_error", ""))
                  for name, a in (agents.items() if isinstance(agents, dict) else ())]
    body = join([
        html("<h1>Status</h1>"), _notice(error, True),
        _kv([("app", status.get("app_id", "")), ("store", status.get("store", "")),
             ("backend", status.get("backend", ""))]),
        html("<h2>Watermarks</h2>{}", watermarks),
        html("<h2>Rates (last minute)</h2>{}", table(("counter", "rate"), rate_rows, "rates")),
        html("<h2>Consumer lag</h2>{}", table(("topic-partition", "high water", "lag"),
                                             lag_rows, "lag")),
        html("<h2>Counters</h2>{}", counters),
        html("<h2>Agents</h2>{}", table(("agent", "failures in a row", "last error"),
                                        agent_rows)),
        html("<h2>Dead letters by reason (7 days)</h2>{}", table(
            ("topic", "reason", "records", "last"),
            [(d["topic"], d["why"], d["records"], fmt_time(d["last_ms"]))
             for d in dead_by_reason], "dead-reasons")),
        html("<h2>Latest dead letters</h2>{}", table(
            ("received", "topic", "partition", "offset", "record", "reason", "payload"),
            [(fmt_time(d["received_ms"]), d["topic"], d["partition"], d["offset"],
              d["record_index"], d["reason"], html("<code>{}</code>", d["payload"]))
             for d in dead_latest], "dead-latest")),
    ])
    return page("Status", body, "status", user)


def login_page(error: str = "", token_needed: bool = True) -> Markup:
    """The sign-in form: the token (when the worker has one) sets the session cookie, the
    name fills the forms' "your name"."""
    token = Markup('<label>worker API token<input type="password" name="token" required>'
                   "</label>") if token_needed else Markup("")
    body = html('<h1>Sign in</h1>{}<form class="act" method="post" action="{}/login">{}'
                '<label>your name<input name="by" size="14"></label>'
                "<button>sign in</button></form><p><small>The token is "
                "<code>worker.api_token</code>; the name is recorded on what you "
                "acknowledge or silence.</small></p>", _notice(error, True), BASE, token)
    return page("Sign in", body)


def error_page(status: int, message: str, user: str = "", back: str = "") -> Markup:
    """An error page that says what went wrong (and links ``back``)."""
    link = html('<p><a href="{}">back</a></p>', back) if back else Markup("")
    return page(f"Error {status}", html("<h1>{}</h1>{}{}", f"Error {status}",
                                        _notice(message, True), link), "", user)


__all__ = ["detections_page", "error_page", "history_rows", "login_page",
           "problem_href", "problem_page", "problems_page", "silences_page", "status_page"]
