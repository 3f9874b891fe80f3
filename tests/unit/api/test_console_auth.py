"""Who may read the console and act from it, and in whose name."""

from __future__ import annotations

from pipeline.api.console_auth import (
    SESSION_COOKIE,
    ConsoleAuth,
    acting_user,
    cookie_header,
)

SECRET = b"s" * 32


def test_without_a_token_pages_are_open_but_actions_need_the_form_key():
    auth = ConsoleAuth("", SECRET)
    assert auth.may_read({}, {})
    form = {"csrf": auth.form_key, "by": "alice"}
    assert auth.refuse_action({"Host": "127.0.0.1:6066"}, {}, form) is None
    refusal = auth.refuse_action({}, {}, {"by": "alice"})
    assert refusal is not None and refusal.status == 403 and "form key" in refusal.reason
    # another process (another random secret) makes other keys
    assert ConsoleAuth("", b"t" * 32).form_key != auth.form_key


def test_with_a_token_a_bearer_header_or_the_session_cookie_lets_you_in():
    auth = ConsoleAuth("sekrit", SECRET)
    assert not auth.may_read({}, {})
    assert auth.may_read({"Authorization": "Bearer sekrit"}, {})
    assert not auth.may_read({"Authorization": "Bearer wrong"}, {})
    assert not auth.may_read({"Authorization": "Basic sekrit"}, {})
    assert auth.may_read({}, {SESSION_COOKIE: auth.session_value})
    assert not auth.may_read({}, {SESSION_COOKIE: "forged"})
    # the cookie is not the token, and it changes with the token
    assert auth.session_value != "sekrit"
    assert ConsoleAuth("other", SECRET).session_value != auth.session_value
    refusal = auth.refuse_action({}, {}, {"csrf": auth.form_key})
    assert refusal is not None and refusal.status == 401


def test_a_form_from_another_site_may_not_act():
    auth = ConsoleAuth("", SECRET)
    form = {"csrf": auth.form_key}
    same = {"Host": "127.0.0.1:6066", "Origin": "http://127.0.0.1:6066"}
    assert auth.refuse_action(same, {}, form) is None
    for origin in ("http://evil.example", "null"):
        refusal = auth.refuse_action({**same, "Origin": origin}, {}, form)
        assert refusal is not None and refusal.status == 403


def test_the_acting_user_comes_from_the_proxy_header_else_the_form():
    assert acting_user({}, {"by": "  alice  "}) == "alice"
    assert acting_user({"X-Tocsin-User": "bob"}, {"by": "alice"}) == "bob"
    assert acting_user({}, {}) == ""
    assert acting_user({}, {"by": "eve\x1b[2J\n"}) == "eve[2J"  # no control characters
    assert len(acting_user({}, {"by": "x" * 500})) == 80


def test_cookies_stay_on_the_console_and_off_other_sites():
    header = cookie_header(SESSION_COOKIE, "v")
    assert "Path=/console" in header and "SameSite=Strict" in header and "HttpOnly" in header
