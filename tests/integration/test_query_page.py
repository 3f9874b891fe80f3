"""The query page of a real worker, over HTTP, and ``tocsin query`` against it: who may
call it, what it refuses, that a long read never stalls ingest, and that the client only
believes the worker of its own app id and store."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.api.query import run_query
from pipeline.api.web import CLIENT_HEADER, QUERY_PATH, STATUS_PATH, WrongWorker, served_by
from pipeline.errors import StoreError
from pipeline.events.schema import RecordKind
from pipeline.kafka import find_free_port
from pipeline.kafka.producer import TelemetryProducer
from pipeline.kafka.transport import ensure_topics
from pipeline.store import ReadRefused
from tests.conftest import pipeline_env, settings_from
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

TOKEN = "t0ken-" + uuid.uuid4().hex
LONG_READ = "SELECT sum(sleepEachRow(0.00004)) FROM numbers(10000000)"
READ_TIME_LIMIT_S = 15


class Page:
    """Raw HTTP calls to one worker page, headers exactly as given."""

    def __init__(self, port: int) -> None:
        self.port = port

    def call(self, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, headers=headers or {},
            method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def query(self, sql: str, token: str = TOKEN) -> tuple[int, dict[str, Any]]:
        return self.call(QUERY_PATH, json.dumps({"sql": sql}).encode(), {
            "Content-Type": "application/json", CLIENT_HEADER: "1",
            "Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def worker(kafka_broker, tmp_path_factory) -> Iterator[tuple[WorkerProcess, dict[str, str]]]:
    root = tmp_path_factory.mktemp("query-page")
    env = pipeline_env(kafka_broker.bootstrap, uuid.uuid4().hex[:8], root, find_free_port(),
                       TOCSIN_WORKER_API_TOKEN=TOKEN,
                       TOCSIN_QUERY_MAX_EXECUTION_TIME_S=str(READ_TIME_LIMIT_S),
                       TOCSIN_INGEST_BATCH_WITHIN_MS="100",
                       TOCSIN_DETECT_ENABLED="false", TOCSIN_CORRELATE_ENABLED="false")
    process = WorkerProcess(env, root / "worker.log").start()
    try:
        yield process, env
    finally:
        process.stop()


@pytest.fixture
def page(worker) -> Page:
    return Page(worker[0].port)


def send_metrics(env: dict[str, str], n: int, service: str) -> None:
    settings = settings_from(env)
    now_ms = int(time.time() * 1000)
    records = [{"time": now_ms - 10_000 + i, "service.name": service, "name": "m",
                "value": float(i)} for i in range(n)]

    async def produce() -> None:
        await ensure_topics(settings)
        async with TelemetryProducer(settings, records_per_message=10) as producer:
            await producer.send(RecordKind.METRIC, records)

    asyncio.run(produce())


def stored(worker: WorkerProcess) -> int:
    return worker.status()["stored"].get("metric", 0)


def test_only_json_posts_with_the_client_header_and_the_token_are_served(page):
    sql = json.dumps({"sql": "SELECT 1"}).encode()
    json_headers = {"Content-Type": "application/json", CLIENT_HEADER: "1"}
    assert page.call(QUERY_PATH, sql, json_headers)[0] == 401  # no token
    assert page.query("SELECT 1", token="wrong")[0] == 401
    assert page.call(STATUS_PATH)[0] == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    form = page.call(QUERY_PATH, b"sql=SELECT+1",
                     {"Content-Type": "application/x-www-form-urlencoded", **bearer})
    assert form[0] == 415 and "application/json" in form[1]["error"]
    assert page.call(QUERY_PATH, sql, {"Content-Type": "text/plain", CLIENT_HEADER: "1",
                                       **bearer})[0] == 415
    no_marker = page.call(QUERY_PATH, sql, {"Content-Type": "application/json", **bearer})
    assert no_marker[0] == 403 and CLIENT_HEADER in no_marker[1]["error"]
    assert page.call(QUERY_PATH, b"[1]", {**json_headers, **bearer})[0] == 400
    status, answer = page.query("SELECT 1 AS one")
    assert status == 200 and answer["columns"] == ["one"] and answer["rows"] == [[1]]


@pytest.mark.parametrize("path", ["/router/", "/table/", "/graph/", "/stats/"])
def test_faust_pages_that_bypass_the_token_are_not_served(page, path):
    """Faust's built-in pages do not check Tocsin's token: none of them is served."""
    request = urllib.request.Request(f"http://127.0.0.1:{page.port}{path}")
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=30)
    assert answer.value.code == 404


def test_every_reproduced_hole_is_refused_over_http(worker, page, tmp_path):
    process, env = worker
    settings = settings_from(env)
    outfile = tmp_path / "out.csv"
    refused = [
        ("SELECT * FROM file('/etc/passwd','LineAsString')", "file() is not allowed"),
        ("SELECT * FROM url('http://127.0.0.1:1/x', 'LineAsString')", "url() is not allowed"),
        ("SELECT 1; DROP TABLE tocsin.dead_letters", "Multi-statements are not allowed"),
        ("SELECT 1; INSERT INTO tocsin.metrics (event_id, service) VALUES (1, 'forged')",
         "Multi-statements are not allowed"),
        (f"SELECT 1 INTO OUTFILE '{outfile}'", "INTO OUTFILE is not allowed"),
    ]
    for sql, reason in refused:
        status, answer = page.query(sql)
        assert status == 400 and answer["refused"] and reason in answer["error"], sql
        assert answer["served_by"] == served_by(settings)
    status, answer = page.query("SELECT 1 SETTINGS readonly=0")
    assert status == 400 and "Cannot modify 'readonly' setting in readonly mode" in \
        answer["error"] and "refused" not in answer
    assert not outfile.exists()
    assert page.query("EXISTS TABLE tocsin.dead_letters")[1]["rows"] == [[1]]
    assert page.query("SELECT count() FROM tocsin.metrics WHERE service = 'forged'"
                      )[1]["rows"] == [[0]]
    reads = process.status()["reads"]
    assert reads["refused"] >= len(refused) and reads["failed"] >= 1


def test_errors_name_no_local_path(worker, page):
    store_path = worker[1]["TOCSIN_STORE_PATH"]
    status, answer = page.query(f"SELECT throwIf(1, 'no such file {store_path}/x.bin')")
    assert status == 400 and "<path>" in answer["error"] and store_path not in answer["error"]


def test_a_long_read_never_stalls_ingest(worker, page):
    process, env = worker
    before = stored(process)
    send_metrics(env, 30, "first")  # the ingest agent is up and consuming
    process.wait_until(lambda w: stored(w) >= before + 30, what="a first batch stored")
    answer: dict[str, Any] = {}

    def long_read() -> None:
        answer["status"], answer["body"] = page.query(LONG_READ)

    reader = threading.Thread(target=long_read)
    reader.start()
    try:
        process.wait_until(lambda w: w.status()["reads"]["running"] == 1, what="the long read")
        send_metrics(env, 50, "second")
        process.wait_until(lambda w: stored(w) >= before + 80, what="50 records stored")
        # stored while the read still runs: the read never held up an insert
        assert process.status()["reads"]["running"] == 1 and reader.is_alive()
    finally:
        reader.join(READ_TIME_LIMIT_S + 60)
    assert answer["status"] == 400 and "Timeout exceeded" in answer["body"]["error"]
    assert page.query("SELECT count() FROM tocsin.metrics WHERE service = 'second'"
                      )[1]["rows"] == [[50]]


def test_tocsin_query_believes_only_its_own_worker(worker, tmp_path):
    process, env = worker
    assert run_query(settings_from(env), "SELECT 41 + 1").rows == [(42,)]
    with pytest.raises(ReadRefused, match="not DropQuery"):
        run_query(settings_from(env), "DROP TABLE tocsin.metrics")
    for other in ({"TOCSIN_WORKER_APP_ID": "another-app"},
                  {"TOCSIN_STORE_PATH": str(tmp_path / "another-store")},
                  {"TOCSIN_STORE_DATABASE": "another_db"}):
        with pytest.raises(WrongWorker, match="refusing its answer"):
            run_query(settings_from({**env, **other}), "SELECT 1")
    without_token = {k: v for k, v in env.items() if k != "TOCSIN_WORKER_API_TOKEN"}
    with pytest.raises(StoreError, match="Authorization: Bearer"):
        run_query(settings_from(without_token), "SELECT 1")
    assert process.status()["app_id"] == env["TOCSIN_WORKER_APP_ID"]
