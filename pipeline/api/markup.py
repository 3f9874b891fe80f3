"""Safe HTML for the console: every value is escaped unless it is :class:`Markup`.

Pages are built from small functions that return :class:`Markup`; anything else that
reaches :func:`html` or :func:`esc` (a problem title, a label value, an error text) is
escaped, quotes included, so data never becomes markup:

>>> str(html("<td>{}</td>", "<script>alert(1)</script>"))
'<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>'
>>> str(html("<td>{}</td>", html("<b>{}</b>", "x")))
'<td><b>x</b></td>'
"""

from __future__ import annotations

import html as _html
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from urllib.parse import quote, urlencode


class Markup(str):
    """Text that is already HTML: inserted as it is."""

    __slots__ = ()

    def __add__(self, other: object) -> Markup:
        return Markup(str.__add__(self, esc(other)))


def esc(value: object) -> Markup:
    """``value`` as HTML text: Markup stays, None is empty, anything else is escaped."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(_html.escape(str(value), quote=True))


def html(template: str, *args: object, **kwargs: object) -> Markup:
    """``template.format`` with every argument escaped (Markup arguments kept)."""
    return Markup(template.format(*(esc(a) for a in args),
                                  **{k: esc(v) for k, v in kwargs.items()}))


def join(parts: Iterable[object], sep: str = "") -> Markup:
    """Parts joined, each escaped unless Markup."""
    return Markup(sep.join(esc(p) for p in parts))


def url(path: str, **params: object) -> str:
    """``path`` with the non-empty ``params`` as a query string (values percent-encoded)."""
    query = urlencode({k: str(v) for k, v in params.items() if v not in (None, "")})
    return f"{path}?{query}" if query else path


def path_part(value: str) -> str:
    """One path segment, percent-encoded (a problem id in a link)."""
    return quote(value, safe="")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], cls: str = "") -> Markup:
    """A table: header texts and rows of cells (escaped unless Markup)."""
    head = join(html("<th>{}</th>", h) for h in headers)
    body = join(html("<tr>{}</tr>", join(html("<td>{}</td>", c) for c in row)) for row in rows)
    if not body:
        body = html('<tr><td colspan="{}" class="empty">nothing to show</td></tr>', len(headers))
    return html('<table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
                cls, head, body)


def fmt_time(ms: int | None) -> str:
    """Epoch ms as ``YYYY-MM-DD HH:MM:SS`` UTC (empty for None or 0)."""
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def fmt_age(ms: int | None, now_ms: int) -> str:
    """How long before ``now_ms`` ``ms`` was: ``42s``, ``5m``, ``3h 10m``, ``2d 4h``."""
    if not ms:
        return ""
    seconds = max(0, (now_ms - ms) // 1000)
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h {minutes % 60}m"
    return f"{hours // 24}d {hours % 24}h"


def fmt_number(value: float | None) -> str:
    """A number for people: 4 significant digits, empty for None or NaN."""
    if value is None or value != value:
        return ""
    return f"{value:.4g}"


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:8px 16px;display:flex;gap:18px;align-items:center}
header a{color:#cfd6e4;text-decoration:none}header a.on{color:#fff;font-weight:600}
header .who{margin-left:auto;color:#9aa3b5;font-size:12px}
main{padding:12px 16px;max-width:1280px}
h1{font-size:20px;margin:8px 0}h2{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;background:#fff;width:100%;margin:4px 0 10px}
th,td{border-bottom:1px solid #e3e6eb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600;font-size:12px}
td.empty{color:#888;font-style:italic}
.sev-critical{color:#fff;background:#b3261e}.sev-high{color:#fff;background:#e8590c}
.sev-medium{background:#ffd43b}.sev-low{background:#d0ebff}
.sev{padding:1px 6px;border-radius:3px;font-size:12px}
.st-open{color:#b3261e;font-weight:600}.st-acknowledged{color:#e8590c}
.st-resolved{color:#2b8a3e}
form.filters{display:flex;gap:8px;flex-wrap:wrap;align-items:end;margin:6px 0}
form.filters label,form.act label{display:flex;flex-direction:column;font-size:12px}
form.act{display:flex;gap:8px;flex-wrap:wrap;align-items:end;background:#fff;padding:8px;
margin:6px 0;border:1px solid #e3e6eb}
.note{background:#e7f5ff;border:1px solid #a5d8ff;padding:6px 10px;margin:6px 0}
.error{background:#fff5f5;border:1px solid #ffa8a8;padding:6px 10px;margin:6px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(600px,1fr));gap:10px}
.card{background:#fff;border:1px solid #e3e6eb;padding:8px}
code,pre{font:12px ui-monospace,monospace;background:#f1f3f5;padding:1px 4px}
svg text{font:11px system-ui,sans-serif}svg.chart{max-width:100%;height:auto}
h3{font-size:14px;margin:10px 0 4px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}dt{color:#555}
"""

NAV = (("problems", "/console/", "Problems"), ("detections", "/console/detections",
                                                "Detections"),
       ("silences", "/console/silences", "Silences"), ("status", "/console/status", "Status"))


def page(title: str, body: Markup, active: str = "", user: str = "") -> Markup:
    """A whole console page: head with the inline style sheet, the navigation, ``body``."""
    nav = join(html('<a href="{}" class="{}">{}</a>', href, "on" if key == active else "",
                    label) for key, href, label in NAV)
    who = html('<span class="who">acting as {}</span>', user) if user else Markup("")
    return html('<!doctype html><html lang="en"><head><meta charset="utf-8">'
                '<meta name="viewport" content="width=device-width">'
                "<title>{} · Tocsin</title><style>{}</style></head><body>"
                '<header><strong>Tocsin</strong>{}{}</header><main>{}</main></body></html>',
                title, Markup(CSS), nav, who, body)


def severity_badge(severity: str) -> Markup:
    """A coloured severity label."""
    return html('<span class="sev sev-{}">{}</span>', severity, severity)


def status_label(status: str) -> Markup:
    """A coloured status label."""
    return html('<span class="st-{}">{}</span>', status, status)
