"""The web console's routes on the worker's web server: a thin adapter.

Pages read through the store's read-only path (``StoreWriter.read``), render with
``pipeline.api.console_pages`` and answer HTML; actions check the form
(``pipeline.api.console_auth``) and publish a control event on the control topic, the
way ``tocsin ack`` and ``tocsin silence`` do, with the acting user's name.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from typing import Any
from urllib.parse import quote, unquote

from faust.web import Request, Response, View

from pipeline.api import console_pages as pages
from pipeline.api.console_auth import (
    SESSION_COOKIE,
    USER_COOKIE,
    ConsoleAuth,
    acting_user,
    cookie_header,
)
from pipeline.api.console_data import (
    FilterError,
    Filters,
    dead_letters_sql,
    list_detections,
    list_problems,
    read_edges,
    read_problem,
    read_series,
)
from pipeline.api.markup import Markup
from pipeline.correlate import ControlEvent, Silence, SilenceError
from pipeline.errors import StoreError, TocsinError
from pipeline.events import durations
from pipeline.events.detection import STATES
from pipeline.events.problem import STATUSES
from pipeline.store.readonly import scrub_paths

log = logging.getLogger("tocsin.console")

CONSOLE_PATH = "/console"
RATE_WINDOW_S = 60.0


class Rates:
    """Per-second rates of the worker's counters over the last minute, from samples a
    timer takes (the clock is the caller's)."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self.samples: deque[tuple[float, dict[str, float]]] = deque()

    def observe(self, now_s: float, counters: dict[str, float]) -> None:
        """Add a sample; samples older than the window (but the last one before it) go."""
        self.samples.append((now_s, counters))
        while len(self.samples) > 2 and self.samples[1][0] <= now_s - self.window_s:
            self.samples.popleft()

    def rates(self) -> dict[str, float]:
        """Counter name -> increase per second between the oldest and newest samples."""
        if len(self.samples) < 2:
            return {}
        (t0, first), (t1, last) = self.samples[0], self.samples[-1]
        span = max(t1 - t0, 1e-9)
        return {k: max(v - first.get(k, 0.0), 0.0) / span for k, v in last.items()}


def _total(value: Any) -> float:
    return float(sum(value.values())) if isinstance(value, dict) else float(value or 0)


def status_of(pipeline: Any) -> dict[str, Any]:
    """The counters the status page shows, from the worker's own objects."""
    from pipeline.api.web import served_by

    counters = pipeline.ingestor.counters
    detect = pipeline.detect_counters
    return {
        **served_by(pipeline.settings),
        "backend": "embedded" if pipeline.settings.store.embedded else "clickhouse-connect",
        "messages": counters.messages, "stored": counters.stored,
        "rejected": counters.rejected,
        "store_failed_attempts": pipeline.writer.failed_attempts,
        "agents": pipeline.health.to_wire(),
        "detect": {"watermark_ms": detect.watermark_ms, "errors": detect.errors,
                   "detections": detect.detections, "late_records": detect.late_records},
        "correlate": {"decisions": pipeline.correlate_counters.decisions,
                      "alerts": pipeline.correlate_counters.alerts},
    }


def register_console(pipeline: Any) -> None:
    """Add the console's pages to the pipeline's app (under ``/console/``)."""
    from pipeline.correlate.step import with_dependencies

    def status() -> dict[str, Any]:
        return status_of(pipeline)

    app = pipeline.app
    settings = pipeline.settings
    db = settings.store.database
    auth = ConsoleAuth(settings.worker.api_token.reveal(), os.urandom(32))
    rates = Rates()
    try:
        static_graph = with_dependencies(settings.correlate).static_dependencies
    except TocsinError as exc:
        log.warning("the console shows learned calls only: %s", exc)
        static_graph = {}

    def counters_now() -> dict[str, float]:
        s = status()
        return {"records received": _total(s["messages"]), "records stored": _total(s["stored"]),
                "dead-lettered": _total(s["rejected"]),
                "detections": _total(s["detect"]["detections"]),
                "correlator decisions": _total(s["correlate"]["decisions"]),
                "alerts": _total(s["correlate"]["alerts"])}

    log.info("web console at http://%s:%s%s/ (%s)", settings.worker.web_host,
             settings.worker.web_port, CONSOLE_PATH,
             "token or session cookie required" if auth.token else "no token set: open")

    @app.timer(5.0, name="tocsin.console.rates")
    async def sample_rates() -> None:
        rates.observe(time.monotonic(), counters_now())

    def now_ms() -> int:
        return int(time.time() * 1000)

    def user_of(request: Request) -> str:
        return acting_user(request.headers, {"by": unquote(request.cookies.get(USER_COOKIE,
                                                                               ""))})

    def answer(view: View, body: Markup, status_code: int = 200,
               headers: dict[str, str] | None = None) -> Response:
        response = view.html(str(body), status=status_code, headers=headers or {})
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    def denied(view: View, request: Request) -> Response | None:
        if auth.may_read(request.headers, request.cookies):
            return None
        return redirect(view, f"{CONSOLE_PATH}/login")

    def redirect(view: View, location: str, cookies: list[str] | None = None) -> Response:
        response = view.text("", status=303, headers={"Location": location})
        for cookie in cookies or ():
            response.headers.add("Set-Cookie", cookie)
        return response

    async def form_of(request: Request) -> dict[str, str]:
        data = await request.post()
        return {k: str(v) for k, v in data.items() if isinstance(v, str)}

    async def send_control(event: ControlEvent) -> None:
        await app.producer.send_and_wait(settings.topics.control,
                                         settings.correlate.scope.encode(), event.to_json(),
                                         None, None, None)

    def store_error(exc: StoreError) -> str:
        return f"the store did not answer: {scrub_paths(str(exc))}"

    @app.page(f"{CONSOLE_PATH}/")
    class ProblemsPage(View):
        """The problems list (open first), filterable."""

        async def get(self, request: Request) -> Response:
            refused = denied(self, request)
            if refused is not None:
                return refused
            error, found = "", []
            try:
                filters = Filters.parse(request.query, STATUSES)
            except FilterError as exc:
                error, filters = str(exc), Filters()
            try:
                found = await list_problems(pipeline.writer.read, db, filters, now_ms())
            except StoreError as exc:
                error = store_error(exc)
            return answer(self, pages.problems_page(found, filters, now_ms(), STATUSES,
                                                    user_of(request), error))

    @app.page(CONSOLE_PATH)
    class ConsoleRoot(View):
        """``/console`` goes to ``/console/``."""

        async def get(self, request: Request) -> Response:
            return redirect(self, f"{CONSOLE_PATH}/")

    @app.page(f"{CONSOLE_PATH}/login")
    class LoginPage(View):
        """The token form; a right token sets the session cookie."""

        async def get(self, request: Request) -> Response:
            return answer(self, pages.login_page(token_needed=bool(auth.token)))

        async def post(self, request: Request) -> Response:
            form = await form_of(request)
            cookies = []
            if auth.token:
                if not auth.token_matches(form.get("token", "")):
                    return answer(self, pages.login_page("that is not the worker's token"),
                                  401)
                cookies.append(cookie_header(SESSION_COOKIE, auth.session_value))
            name = acting_user(request.headers, form)
            if name:
                cookies.append(cookie_header(USER_COOKIE, quote(name)))
            return redirect(self, f"{CONSOLE_PATH}/", cookies)

    @app.page(f"{CONSOLE_PATH}/problems/{{problem_id}}")
    class ProblemPage(View):
        """One problem with its charts, knowledge and actions."""

        async def get(self, request: Request, problem_id: str) -> Response:
            refused = denied(self, request)
            if refused is not None:
                return refused
            user = user_of(request)
            try:
                data = await read_problem(pipeline.writer.read, db, problem_id)
                if data is None:
                    return answer(self, pages.error_page(
                        404, f"no problem with id {problem_id!r} in the store", user), 404)
                await read_series(pipeline.writer.read, db, data)
                services = [s for s in data.problem["affected"] if s]
                services += [c.get("service", "") for c in data.root_causes[:1]]
                data.edges = await read_edges(pipeline.writer.read, db,
                                              list(dict.fromkeys(services)), static_graph)
            except StoreError as exc:
                return answer(self, pages.error_page(503, store_error(exc), user), 503)
            notice = {"acked": "acknowledgement sent: the correlator applies it in order "
                               "with detections (reload to see it)",
                      "silenced": "silence sent to the correlator",
                      "judged": "feedback sent: the worker stores it beside the problem "
                                "(reload to see it)"}.get(
                request.query.get("done", ""), "")
            # a big problem takes ~0.1 s to render: off the event loop the agents run on
            body = await asyncio.get_running_loop().run_in_executor(
                None, pages.problem_page, data, now_ms(), auth.form_key, user, user, notice)
            return answer(self, body)

    async def act(view: View, request: Request, build: Any, back: str) -> Response:
        form = await form_of(request)
        refusal = auth.refuse_action(request.headers, request.cookies, form)
        if refusal is not None:
            return answer(view, pages.error_page(refusal.status, refusal.reason), refusal.status)
        by = acting_user(request.headers, form)
        if not by:
            return answer(view, pages.error_page(400, "say who you are: fill in your name",
                                                 back=back), 400)
        try:
            event, done = await build(form, by)
            await send_control(event)
        except (TocsinError, SilenceError, ValueError) as exc:
            return answer(view, pages.error_page(400, str(exc)[:500], by, back), 400)
        log.info("console: %s by %s", event.kind, by)
        return redirect(view, f"{back}?done={done}", [cookie_header(USER_COOKIE, quote(by))])

    @app.page(f"{CONSOLE_PATH}/problems/{{problem_id}}/ack")
    class AckAction(View):
        """Acknowledge: an ack event on the control topic."""

        async def post(self, request: Request, problem_id: str) -> Response:
            async def build(form: dict[str, str], by: str) -> tuple[ControlEvent, str]:
                data = await read_problem(pipeline.writer.read, db, problem_id)
                if data is None:
                    raise TocsinError(f"no problem with id {problem_id!r}")
                if data.problem["status"] != "open":
                    raise TocsinError(f"problem {problem_id} is {data.problem['status']}: "
                                      "only an open problem can be acknowledged")
                return ControlEvent.ack(problem_id, by, form.get("comment", "")[:500],
                                        now_ms(), scope=settings.correlate.scope), "acked"
            return await act(self, request, build, pages.problem_href(problem_id))

    @app.page(f"{CONSOLE_PATH}/problems/{{problem_id}}/feedback")
    class FeedbackAction(View):
        """Feedback: an operator's verdict, a feedback event on the control topic."""

        async def post(self, request: Request, problem_id: str) -> Response:
            async def build(form: dict[str, str], by: str) -> tuple[ControlEvent, str]:
                if await read_problem(pipeline.writer.read, db, problem_id) is None:
                    raise TocsinError(f"no problem with id {problem_id!r}")
                # a bad verdict raises ControlError (a TocsinError): an error page
                return ControlEvent.feedback(
                    problem_id, form.get("verdict", ""), by, now_ms(),
                    form.get("root_cause", "").strip()[:200], form.get("comment", "")[:500],
                    scope=settings.correlate.scope), "judged"
            return await act(self, request, build, pages.problem_href(problem_id))

    @app.page(f"{CONSOLE_PATH}/problems/{{problem_id}}/silence")
    class SilenceAction(View):
        """Silence: a silence event on the control topic."""

        async def post(self, request: Request, problem_id: str) -> Response:
            async def build(form: dict[str, str], by: str) -> tuple[ControlEvent, str]:
                matchers = [m.strip() for m in form.get("matchers", "").split(",") if m.strip()]
                if not matchers:
                    raise TocsinError("a silence needs at least one matcher (service=orders)")
                try:
                    length = durations.parse_duration_ms(form.get("duration", "").strip())
                except durations.DurationError as exc:
                    raise TocsinError(f"silence duration: {exc}") from None
                if length <= 0:
                    raise TocsinError("silence duration: must be positive")
                now = now_ms()
                silence = Silence.create(matchers, now, now + length,
                                         comment=form.get("comment", "")[:500], created_by=by,
                                         created_at=now)
                return ControlEvent.create_silence(silence, now,
                                                   scope=settings.correlate.scope), "silenced"
            return await act(self, request, build, pages.problem_href(problem_id))

    def silences_held() -> list[dict[str, Any]]:
        from pipeline.agents.correlate import held_silences

        return held_silences(pipeline.correlation_table)

    @app.page(f"{CONSOLE_PATH}/silences")
    class SilencesPage(View):
        """The silences this worker holds."""

        async def get(self, request: Request) -> Response:
            refused = denied(self, request)
            if refused is not None:
                return refused
            user = user_of(request)
            notice = "expiry sent to the correlator" if request.query.get("done") else ""
            return answer(self, pages.silences_page(silences_held(), now_ms(), auth.form_key,
                                                    user, user, notice))

    @app.page(f"{CONSOLE_PATH}/silences/{{silence_id}}/expire")
    class ExpireAction(View):
        """End a silence now."""

        async def post(self, request: Request, silence_id: str) -> Response:
            async def build(form: dict[str, str], by: str) -> tuple[ControlEvent, str]:
                if not any(s["id"] == silence_id for s in silences_held()):
                    raise TocsinError(f"this worker holds no silence {silence_id!r}")
                return ControlEvent.expire_silence(silence_id, by, now_ms(),
                                                   scope=settings.correlate.scope), "expired"
            return await act(self, request, build, f"{CONSOLE_PATH}/silences")

    @app.page(f"{CONSOLE_PATH}/detections")
    class DetectionsPage(View):
        """Detections, newest first, filterable."""

        async def get(self, request: Request) -> Response:
            refused = denied(self, request)
            if refused is not None:
                return refused
            error, found = "", []
            try:
                filters = Filters.parse(request.query, STATES, "24h")
            except FilterError as exc:
                error, filters = str(exc), Filters(since="24h")
            try:
                found = await list_detections(pipeline.writer.read, db, filters, now_ms())
            except StoreError as exc:
                error = store_error(exc)
            return answer(self, pages.detections_page(found, filters, now_ms(), STATES,
                                                      user_of(request), error))

    async def consumer_lag() -> list[tuple[str, int, int | None]]:
        out = []
        try:
            consumer = app.consumer
            for tp in sorted(consumer.assignment()):
                high = consumer.highwater(tp)
                position = await consumer.position(tp)
                lag = None if high is None or position is None else max(high - position, 0)
                out.append((f"{tp.topic}[{tp.partition}]", high, lag))
        except Exception as exc:  # noqa: BLE001 - lag is best effort while (re)assigning
            log.debug("consumer lag not available: %s", exc)
        return out

    @app.page(f"{CONSOLE_PATH}/status")
    class StatusPage(View):
        """Lag, watermarks, rates, late records, dead letters with reasons."""

        async def get(self, request: Request) -> Response:
            refused = denied(self, request)
            if refused is not None:
                return refused
            now = now_ms()
            rates.observe(time.monotonic(), counters_now())
            by_reason, latest, error = [], [], ""
            try:
                reason_sql, latest_sql = dead_letters_sql(db, now - 7 * 86_400_000)
                by_reason = _rows(await pipeline.writer.read(reason_sql))
                latest = _rows(await pipeline.writer.read(latest_sql))
            except StoreError as exc:
                error = store_error(exc)
            return answer(self, pages.status_page(status(), await consumer_lag(),
                                                  rates.rates(), by_reason, latest, now,
                                                  user_of(request), error))


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(zip(result.columns, r, strict=True)) for r in result.rows]
