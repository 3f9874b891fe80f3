"""Who may see the console, who may act from it, and in whose name.

- **Access** is the query page's: with ``worker.api_token`` set, a request needs
  ``Authorization: Bearer <token>`` (curl, a reverse proxy that adds it) or the console's
  session cookie, which ``/console/login`` sets after the token was typed once. The cookie
  holds an HMAC of the token, not the token; it is ``HttpOnly`` and ``SameSite=Strict`` and
  stops working when the token changes. Without a token the console is open, like the
  query page (the worker listens on loopback by default).
- **Actions** (ack, silence, expire) are form posts that must carry the page's form key
  (an HMAC of the token, or of a secret made at start-up when there is no token) and, when
  the browser sends one, an ``Origin`` of the worker itself: another site cannot make a
  browser act here.
- **The acting user** is a name, not a login: the token says the caller may operate Tocsin,
  the name says who did, as ``tocsin ack --by`` does. It comes from the ``X-Tocsin-User``
  header when a proxy that signs people in sets it, else from the form's ``by`` field
  (remembered in a cookie for the next form). An action without a name is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pipeline.api.web import Refusal

SESSION_COOKIE = "tocsin_console"
USER_COOKIE = "tocsin_user"
USER_HEADER = "X-Tocsin-User"
MAX_NAME_CHARS = 80


@dataclass(frozen=True)
class ConsoleAuth:
    """The console's checks for one worker: ``token`` is ``worker.api_token`` (empty: no
    access check), ``secret`` keys the form keys when there is no token."""

    token: str
    secret: bytes

    def _mac(self, purpose: str) -> str:
        key = self.token.encode() if self.token else self.secret
        return hmac.new(key, f"tocsin-console:{purpose}".encode(), hashlib.sha256).hexdigest()

    @property
    def session_value(self) -> str:
        """The session cookie's value (an HMAC of the token)."""
        return self._mac("session")

    @property
    def form_key(self) -> str:
        """The hidden ``csrf`` field every action form carries."""
        return self._mac("form")

    def token_matches(self, given: str) -> bool:
        """Whether ``given`` is the configured token (constant time)."""
        return bool(self.token) and hmac.compare_digest(given.encode(), self.token.encode())

    def may_read(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
        """Whether a request with these headers and cookies may see console pages."""
        if not self.token:
            return True
        lower = {k.lower(): v for k, v in headers.items()}
        scheme, _, value = lower.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token_matches(value.strip()):
            return True
        cookie = cookies.get(SESSION_COOKIE, "")
        return bool(cookie) and hmac.compare_digest(cookie.encode(), self.session_value.encode())

    def refuse_action(self, headers: Mapping[str, str], cookies: Mapping[str, str],
                      form: Mapping[str, str]) -> Refusal | None:
        """Why an action post must not be carried out, or None."""
        if not self.may_read(headers, cookies):
            return Refusal(401, "sign in first (/console/login) or send "
                                "Authorization: Bearer <worker.api_token>")
        lower = {k.lower(): v for k, v in headers.items()}
        origin = lower.get("origin", "")
        if origin and origin != "null" and urlsplit(origin).netloc != lower.get("host", ""):
            return Refusal(403, f"a form from {origin} may not act on this worker")
        if origin == "null":
            return Refusal(403, "a form from an opaque origin may not act on this worker")
        if not hmac.compare_digest(form.get("csrf", "").encode(), self.form_key.encode()):
            return Refusal(403, "the form key is missing or stale: reload the page and "
                                "try again")
        return None


def acting_user(headers: Mapping[str, str], form: Mapping[str, str]) -> str:
    """The name an action is recorded under: the ``X-Tocsin-User`` header, else the form's
    ``by`` field; blanks trimmed, at most :data:`MAX_NAME_CHARS` characters; empty when
    neither names anyone."""
    lower = {k.lower(): v for k, v in headers.items()}
    name = (lower.get(USER_HEADER.lower()) or form.get("by") or "").strip()
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:MAX_NAME_CHARS]


def cookie_header(name: str, value: str, max_age_s: int = 7 * 86_400,
                  http_only: bool = True) -> str:
    """A ``Set-Cookie`` value scoped to the console, ``SameSite=Strict``."""
    flags = "; HttpOnly" if http_only else ""
    return (f"{name}={value}; Path=/console; Max-Age={max_age_s}; SameSite=Strict{flags}")
