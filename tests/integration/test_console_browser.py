"""The web console in a real browser: a worker and a broker, a simulated database outage
that opens a problem, and headless Chromium signing in, reading every page, and
acknowledging and silencing the problem from its page. Screenshots land under the
test's tmp dir (``screenshots/``)."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from pipeline.events.detection import Detection
from pipeline.kafka import find_free_port
from tests.browser import chromium, screenshot, wait_for
from tests.conftest import pipeline_env
from tests.integration.test_detect_stream import simulate, wait_for_all
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

TOKEN = "console-test-token"
XSS_TITLE = "<script>window.__pwned = 1</script> burst"
XSS_SERVICE = "<img src=x onerror=window.__pwned=2>"


async def produce(bootstrap: str, topic: str, key: bytes, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def hostile_detection(time_ms: int) -> bytes:
    """A detection whose service and title are markup: the console must show them as text."""
    return Detection(id="xss-probe-1", time=time_ms, detector="xss-probe",
                     detector_version="1", signal="logs", service=XSS_SERVICE,
                     category="security", severity="high", state="firing", title=XSS_TITLE,
                     observed=1.0, window_start=time_ms - 60_000, window_end=time_ms).to_json()


def http(url: str, headers: dict[str, str] | None = None,
         data: bytes | None = None) -> tuple[int, dict[str, str], str]:
    """Status, headers and body of one request, without following redirects."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, data=data, headers=headers or {},
                                     method="POST" if data is not None else "GET")
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode(errors="replace")


def test_console_pages_in_chromium(kafka_broker, names, tmp_path: Path, monkeypatch):
    graph = tmp_path / "graph.yaml"
    env = pipeline_env(kafka_broker.bootstrap, names, tmp_path, find_free_port(),
                       TOCSIN_CORRELATE_DEPENDENCIES=str(graph),
                       TOCSIN_WORKER_API_TOKEN=TOKEN)
    # the outage runs to the end of the simulated hour: its problem is still open
    labels = simulate(env, monkeypatch, tmp_path / "labels.json", "40m", "db_outage@25m+15m",
                      graph=graph)
    bootstrap = kafka_broker.bootstrap
    asyncio.run(produce(bootstrap, env["TOCSIN_TOPICS_DETECTIONS"], b"default",
                        [hostile_detection(labels["end_ms"] - 20 * 60_000)]))
    asyncio.run(produce(bootstrap, env["TOCSIN_TOPICS_METRICS"], b"",
                        [b'{"not a metric": true}']))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    shots = tmp_path / "screenshots"
    base = f"http://127.0.0.1:{worker.port}/console"
    try:
        wait_for_all(worker, labels)
        worker.wait_until(lambda w: w.query(
            "SELECT count() FROM tocsin.problems WHERE status = 'open'")[0][0] >= 2,
            what="the outage's and the probe's problems to open")
        outage = worker.query(
            "SELECT id, title, JSONExtractString(root_causes, 1, 'service') FROM "
            "tocsin.problems WHERE status = 'open' AND has(affected, 'postgres')")
        assert len(outage) == 1, outage
        problem_id, title, root = outage[0]
        assert root  # which service the correlator blames is its own tests' business
        probe_id = worker.query("SELECT id FROM tocsin.problems WHERE has(affected, "
                                f"'{XSS_SERVICE}')")[0][0]

        # the console wants the token, as the query page does; form posts want the key
        status, headers, _ = http(f"{base}/")
        assert status == 303 and headers["Location"] == "/console/login"
        status, _, body = http(f"{base}/", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and problem_id in body
        status, _, body = http(f"{base}/problems/{problem_id}/ack",
                               {"Authorization": f"Bearer {TOKEN}",
                                "Content-Type": "application/x-www-form-urlencoded"},
                               b"by=mallory")
        assert status == 403 and "form key" in body

        with chromium(tmp_path) as driver:
            from selenium.webdriver.common.by import By

            driver.get(f"{base}/")
            assert driver.title.startswith("Sign in")
            driver.find_element(By.NAME, "token").send_keys(TOKEN)
            driver.find_element(By.NAME, "by").send_keys("alice")
            driver.find_element(By.TAG_NAME, "button").click()
            wait_for(lambda: driver.title.startswith("Problems"), what="the problems list")
            screenshot(driver, shots, "problems")
            rows = driver.find_elements(By.CSS_SELECTOR, "table.problems tbody tr")
            texts = [r.text for r in rows]
            assert any(title in t and "postgres" in t and "open" in t for t in texts), texts
            # data is text, never markup: the probe's title shows literally, nothing ran
            assert any(XSS_TITLE in t for t in texts), texts
            assert driver.execute_script("return window.__pwned === undefined")
            assert "acting as alice" in driver.find_element(By.TAG_NAME, "header").text

            # filters: severity and service narrow the list
            driver.get(f"{base}/?service=postgres&status=open")
            links = driver.find_elements(By.CSS_SELECTOR, "a.problem")
            assert [a.get_attribute("href").rsplit("/", 1)[-1] for a in links] == [problem_id]

            links[0].click()
            wait_for(lambda: driver.find_element(By.ID, "title").text == title,
                     what="the problem page")
            screenshot(driver, shots, "problem")
            causes = driver.find_elements(By.CSS_SELECTOR, "ol.causes > li")
            assert causes and causes[0].text.startswith(root), [c.text for c in causes]
            series = driver.find_elements(By.CSS_SELECTOR, "svg.chart.line g.series")
            assert series, "no series chart on the problem page"
            counts = [int(g.get_attribute("data-points")) for g in series]
            assert max(counts) >= 10, counts
            assert len(driver.find_elements(By.CSS_SELECTOR, "svg.chart.line circle.pt")) \
                == sum(counts)
            assert driver.find_elements(By.CSS_SELECTOR, "svg.chart.timeline circle.pt")
            node = driver.find_element(By.CSS_SELECTOR,
                                       f'svg.chart.graph g.node[data-service="{root}"]')
            assert node.get_attribute("data-role") == "root cause"
            assert driver.find_elements(By.CSS_SELECTOR, "svg.chart.graph line.edge")
            page_text = driver.find_element(By.TAG_NAME, "main").text
            for section in ("Diagnostic plan", "Runbook", "Escalation", "Alert history"):
                assert section in page_text, section
            history = driver.find_element(By.CSS_SELECTOR, "table.history").text
            # the opening alert goes with whichever version ends the hold against flapping
            assert re.search(rf"{re.escape(problem_id)}\.\d+ io\.tocsin\.problem\.opened",
                             history), history

            # acknowledge from the page: through the control topic to the correlator
            assert driver.find_element(By.NAME, "by").get_attribute("value") == "alice"
            driver.find_element(By.NAME, "comment").send_keys("on it")
            driver.find_element(By.ID, "ack").click()
            wait_for(lambda: "acknowledgement sent" in driver.page_source, what="the notice")
            wait_for(lambda: "acknowledged by alice" in driver.find_element(
                By.ID, "status").text, timeout_s=90, refresh=driver,
                what="the problem to show acknowledged by alice")
            screenshot(driver, shots, "problem-acknowledged")
            history = driver.find_element(By.CSS_SELECTOR, "table.history").text
            assert "io.tocsin.problem.acknowledged" in history and "alice" in history
            assert worker.query(f"SELECT status, acknowledged_by FROM tocsin.problems "
                                f"WHERE id = '{problem_id}'") == [["acknowledged", "alice"]]

            # silence the root cause from the page; the silences list shows it
            driver.find_element(By.NAME, "comment").send_keys("maintenance")
            driver.find_element(By.ID, "silence").click()
            wait_for(lambda: "silence sent" in driver.page_source, what="the silence notice")
            driver.get(f"{base}/silences")
            row = wait_for(lambda: [r.text for r in driver.find_elements(
                By.CSS_SELECTOR, "table.silences tbody tr") if f'service="{root}"' in r.text],
                timeout_s=90, refresh=driver, what="the silence in the list")
            assert "alice" in row[0] and "active" in row[0], row
            screenshot(driver, shots, "silences")

            # the diagnostics run on the store show on the page; a verdict from the page
            # reaches the feedback table through the control topic
            driver.get(f"{base}/problems/{problem_id}")
            diagnostics = driver.find_element(By.ID, "diagnostics").text
            assert f"error rate by operation of {root}" in diagnostics, diagnostics
            driver.find_element(By.CSS_SELECTOR,
                                'select[name="verdict"] option[value="false-positive"]').click()
            driver.find_elements(By.NAME, "comment")[-1].send_keys("load test")
            driver.find_element(By.ID, "feedback").click()
            wait_for(lambda: "feedback sent" in driver.page_source, what="the feedback notice")
            judged = wait_for(lambda: [r.text for r in driver.find_elements(
                By.CSS_SELECTOR, "table.feedback tbody tr")], timeout_s=90, refresh=driver,
                what="the verdict on the page")
            assert "alice" in judged[0] and "false-positive" in judged[0], judged
            assert worker.query(f"SELECT author, verdict, root_cause, comment FROM "
                                f"tocsin.feedback WHERE problem_id = '{problem_id}'") == \
                [["alice", "false-positive", root, "load test"]]
            screenshot(driver, shots, "problem-feedback")

            driver.get(f"{base}/detections?service=postgres")
            cells = driver.find_elements(By.CSS_SELECTOR,
                                         "table.detections tbody tr td:nth-child(2)")
            assert cells and {c.text for c in cells} == {"postgres"}
            screenshot(driver, shots, "detections")

            driver.get(f"{base}/status")
            text = driver.find_element(By.TAG_NAME, "main").text
            assert "detect watermark" in text and "late records" in text
            lag = driver.find_elements(By.CSS_SELECTOR, "table.lag tbody tr")
            assert lag and "metrics" in " ".join(r.text for r in lag)
            reasons = driver.find_element(By.CSS_SELECTOR, "table.dead-reasons").text
            assert env["TOCSIN_TOPICS_METRICS"] in reasons, reasons
            screenshot(driver, shots, "status")

            driver.get(f"{base}/problems/{probe_id}")
            assert driver.find_element(By.ID, "title").text.endswith(XSS_TITLE)
            assert driver.execute_script("return window.__pwned === undefined")
            assert not driver.find_elements(By.CSS_SELECTOR, "main img, main script")
            screenshot(driver, shots, "hostile-problem")
    finally:
        worker.stop()
    assert (shots / "problem.png").stat().st_size > 10_000
    print(json.dumps({"screenshots": sorted(str(p) for p in shots.glob("*.png"))}))
