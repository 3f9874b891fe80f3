"""Who may call a worker page, and whose answers a client believes (pure checks)."""

from __future__ import annotations

import pytest

from pipeline.api.web import (
    CLIENT_HEADER,
    WrongWorker,
    check_served_by,
    client_headers,
    refuse,
    served_by,
)
from pipeline.settings import load_settings

JSON = {"Content-Type": "application/json", CLIENT_HEADER: "1"}


def test_a_json_post_with_the_client_header_passes_without_a_token():
    assert refuse("POST", JSON, token="") is None
    assert refuse("POST", {"content-type": "application/json; charset=utf-8",
                           "x-tocsin-client": "1"}, token="") is None
    assert refuse("GET", {}, token="") is None


@pytest.mark.parametrize("headers, status", [
    ({"Content-Type": "application/x-www-form-urlencoded", CLIENT_HEADER: "1"}, 415),
    ({"Content-Type": "text/plain", CLIENT_HEADER: "1"}, 415),
    ({"Content-Type": "multipart/form-data; boundary=x", CLIENT_HEADER: "1"}, 415),
    ({CLIENT_HEADER: "1"}, 415),
    ({"Content-Type": "application/json"}, 403),
    ({"Content-Type": "application/json", CLIENT_HEADER: ""}, 403),
])
def test_what_a_cross_site_form_or_script_can_send_is_refused(headers, status):
    refusal = refuse("POST", headers, token="")
    assert refusal is not None and refusal.status == status


def test_a_token_is_wanted_on_every_page_when_set():
    token = "s3cret-token"
    assert refuse("POST", {**JSON, "Authorization": f"Bearer {token}"}, token) is None
    assert refuse("GET", {"authorization": f"bearer {token}"}, token) is None
    for given in ("", f"Basic {token}", "Bearer wrong", f"Bearer {token}x", "Bearer"):
        for method, headers in (("POST", JSON), ("GET", {})):
            refusal = refuse(method, {**headers, "Authorization": given}, token)
            assert refusal is not None and refusal.status == 401
            assert token not in refusal.reason


def test_client_headers_carry_the_marker_type_and_token():
    assert client_headers() == {CLIENT_HEADER: "1"}
    assert client_headers("t", json_body=True) == {
        CLIENT_HEADER: "1", "Content-Type": "application/json", "Authorization": "Bearer t"}
    assert refuse("POST", client_headers("t", json_body=True), "t") is None


def test_served_by_tells_stores_apart_without_showing_paths(tmp_path):
    a = load_settings(environ={"TOCSIN_STORE_PATH": str(tmp_path / "a")})
    b = load_settings(environ={"TOCSIN_STORE_PATH": str(tmp_path / "b")})
    via_link = tmp_path / "link"
    via_link.symlink_to(tmp_path)
    a_again = load_settings(environ={"TOCSIN_STORE_PATH": str(via_link / "a")})
    chdb = load_settings(environ={"TOCSIN_STORE_CLICKHOUSE_URL": f"chdb://{tmp_path / 'a'}"})
    server = load_settings(environ={"TOCSIN_STORE_CLICKHOUSE_URL": "https://ch.example"})
    assert served_by(a) == served_by(a_again) == served_by(chdb)  # one data directory
    assert served_by(a) != served_by(b)
    assert served_by(server)["store"].startswith("server:tocsin#")
    assert served_by(server) == served_by(load_settings(environ={
        "TOCSIN_STORE_CLICKHOUSE_URL": "https://ch.example:8443/"}))
    assert all(str(tmp_path) not in v for v in served_by(a).values())


def test_a_client_refuses_answers_from_another_app_or_store(tmp_path):
    ours = load_settings(environ={"TOCSIN_STORE_PATH": str(tmp_path / "a")})
    url = "http://127.0.0.1:6066/tocsin/query"
    check_served_by({"served_by": served_by(ours)}, ours, url)
    other_app = load_settings(environ={"TOCSIN_STORE_PATH": str(tmp_path / "a"),
                                       "TOCSIN_WORKER_APP_ID": "other"})
    other_store = load_settings(environ={"TOCSIN_STORE_PATH": str(tmp_path / "b")})
    for answer in ({"served_by": served_by(other_app)}, {"served_by": served_by(other_store)},
                   {"columns": [], "rows": []}, {"served_by": "tocsin"}):
        with pytest.raises(WrongWorker, match="refusing its answer"):
            check_served_by(answer, ours, url)
