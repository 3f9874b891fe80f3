"""Server-rendered SVG charts of the console: plain functions of their data, no script.

- :func:`line_chart`: series over time, with the model's expected band and a rule's
  threshold where there is one, and the problem's onset marked;
- :func:`timeline_chart`: a problem's member detections, one lane per detected series;
- :func:`graph_chart`: the call graph around the affected services, callers above callees.

Every text is escaped (:mod:`pipeline.api.markup`); each data point is a ``circle`` with
class ``pt`` so tests (and people) can count what was drawn.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pipeline.api.markup import Markup, html, join

COLOURS = ("#1c7ed6", "#e8590c", "#2b8a3e", "#7048e8", "#c2255c", "#0b7285", "#5c940d")
SEVERITY_COLOURS = {"critical": "#b3261e", "high": "#e8590c", "medium": "#f59f00",
                    "low": "#1c7ed6"}


@dataclass(frozen=True)
class Series:
    """One line: a name and (epoch ms, value) points."""

    name: str
    points: Sequence[tuple[int, float]]


@dataclass(frozen=True)
class Band:
    """The model's expectation at some times: (epoch ms, low, high, expected)."""

    points: Sequence[tuple[int, float, float, float]]


@dataclass(frozen=True)
class Lane:
    """One detected series of a problem: its label and its detections
    (epoch ms, state, severity, title)."""

    label: str
    events: Sequence[tuple[int, str, str, str]]


@dataclass(frozen=True)
class Plot:
    """Where data lands: the drawing area inside the axes and the data ranges."""

    t0: int
    t1: int
    y0: float
    y1: float
    left: int = 52
    top: int = 22
    width: int = 560
    height: int = 150

    def x(self, t: float) -> float:
        """Horizontal position of epoch ms ``t``."""
        span = max(self.t1 - self.t0, 1)
        return round(self.left + (t - self.t0) / span * self.width, 1)

    def y(self, v: float) -> float:
        """Vertical position of value ``v``."""
        span = (self.y1 - self.y0) or 1.0
        return round(self.top + self.height - (v - self.y0) / span * self.height, 1)


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values covering ``low``..``high`` (about ``count`` of them).

    >>> nice_ticks(0, 97)
    [0.0, 25.0, 50.0, 75.0, 100.0]
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value < high + step * 0.999 and len(ticks) < 12:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _clock(ms: float, with_date: bool) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return moment.strftime("%m-%d %H:%M" if with_date else "%H:%M")


def _label(value: float) -> str:
    """A short number: ``0.25``, ``750``, ``2.5k``, ``12M``."""
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(value) >= limit:
            return f"{value / (limit if limit > 1e4 else 1e3):.3g}{suffix}"
    return f"{value:.4g}" if abs(value) >= 1000 else f"{value:.3g}"


def _axes(plot: Plot, ticks: Sequence[float]) -> Markup:
    parts = [html('<rect x="{}" y="{}" width="{}" height="{}" fill="#fff" stroke="#ced4da"/>',
                  plot.left, plot.top, plot.width, plot.height)]
    for value in ticks:
        y = plot.y(value)
        parts.append(html('<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#eef0f4"/>'
                          '<text x="{}" y="{}" text-anchor="end">{}</text>',
                          plot.left, plot.left + plot.width, y, y, plot.left - 4, y + 4,
                          _label(value)))
    with_date = plot.t1 - plot.t0 > 86_400_000
    for i in range(5):
        t = plot.t0 + (plot.t1 - plot.t0) * i / 4
        x = plot.x(t)
        parts.append(html('<text x="{}" y="{}" text-anchor="middle">{}</text>', x,
                          plot.top + plot.height + 14, _clock(t, with_date)))
    return join(parts)


def _finite(points: Iterable[tuple[int, float]]) -> list[tuple[int, float]]:
    return [(int(t), float(v)) for t, v in points if v is not None and math.isfinite(v)]


def line_chart(title: str, series: Sequence[Series], t0: int, t1: int, *,
               band: Band | None = None, threshold: float | None = None,
               marks: Mapping[str, int] | None = None) -> Markup:
    """An SVG line chart of ``series`` over ``t0``..``t1`` (epoch ms).

    ``band`` shades the model's expected range (its expected value dashed), ``threshold``
    draws a rule's limit, ``marks`` are labelled vertical lines (``{"onset": ms}``).
    """
    lines = [(s.name, _finite(s.points)) for s in series]
    values = [v for _, pts in lines for _, v in pts]
    if band is not None:
        values += [v for p in band.points for v in p[1:] if math.isfinite(v)]
    if threshold is not None and math.isfinite(threshold):
        values.append(threshold)
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if low > 0 and low < (high - low) * 0.5:
        low = 0.0
    ticks = nice_ticks(low, high)
    plot = Plot(t0, max(t1, t0 + 1), ticks[0] if ticks else low, ticks[-1] if ticks else high)
    parts = [html('<text x="{}" y="14" font-weight="600">{}</text>', plot.left, title),
             _axes(plot, ticks)]
    if band is not None and band.points:
        pts = sorted(band.points)
        upper = " ".join(f"{plot.x(t)},{plot.y(hi)}" for t, _lo, hi, _e in pts)
        lower = " ".join(f"{plot.x(t)},{plot.y(lo)}" for t, lo, _hi, _e in reversed(pts))
        if len(pts) == 1:  # one expectation: a short bar around it
            t, lo, hi, _e = pts[0]
            parts.append(html('<rect class="band" x="{}" y="{}" width="6" height="{}" '
                              'fill="#74c0fc" fill-opacity="0.35"/>', plot.x(t) - 3,
                              plot.y(hi), max(plot.y(lo) - plot.y(hi), 1)))
        else:
            parts.append(html('<polygon class="band" points="{} {}" fill="#74c0fc" '
                              'fill-opacity="0.35"/>', upper, lower))
        expected = " ".join(f"{plot.x(t)},{plot.y(e)}" for t, _lo, _hi, e in pts
                            if math.isfinite(e))
        parts.append(html('<polyline class="expected" points="{}" fill="none" '
                          'stroke="#1864ab" stroke-dasharray="4 3"/>', expected))
    if threshold is not None and math.isfinite(threshold):
        y = plot.y(threshold)
        parts.append(html('<line class="threshold" x1="{}" x2="{}" y1="{}" y2="{}" '
                          'stroke="#b3261e" stroke-dasharray="6 3"/>'
                          '<text x="{}" y="{}" fill="#b3261e" text-anchor="end">threshold {}'
                          '</text>', plot.left, plot.left + plot.width, y, y,
                          plot.left + plot.width - 2, y - 3, _label(threshold)))
    for name, at in (marks or {}).items():
        if t0 <= at <= t1:
            x = plot.x(at)
            parts.append(html('<line class="mark" x1="{}" x2="{}" y1="{}" y2="{}" '
                              'stroke="#495057" stroke-dasharray="2 2"/>'
                              '<text x="{}" y="{}">{}</text>', x, x, plot.top,
                              plot.top + plot.height, x + 3, plot.top + 10, name))
    legend = []
    for i, (name, pts) in enumerate(lines):
        colour = COLOURS[i % len(COLOURS)]
        shown = [(t, v) for t, v in pts if t0 <= t <= t1]
        path = " ".join(f"{plot.x(t)},{plot.y(v)}" for t, v in shown)
        dots = join(html('<circle class="pt" cx="{}" cy="{}" r="1.6" fill="{}">'
                         "<title>{} {}</title></circle>", plot.x(t), plot.y(v), colour,
                         _clock(t, True), _label(v)) for t, v in shown)
        parts.append(html('<g class="series" data-name="{}" data-points="{}">'
                          '<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"/>'
                          "{}</g>", name, len(shown), path, colour, dots))
        legend.append(html('<text x="{}" y="{}" fill="{}">{}</text>',
                           plot.left + 8 + 170 * i, plot.top + plot.height + 30, colour, name))
    if not values:
        parts.append(html('<text x="{}" y="{}" fill="#888">no data in this window</text>',
                          plot.left + 10, plot.top + 20))
    return html('<svg class="chart line" xmlns="http://www.w3.org/2000/svg" width="640" '
                'height="{}" viewBox="0 0 640 {}" role="img"><title>{}</title>{}{}</svg>',
                plot.top + plot.height + 38, plot.top + plot.height + 38, title, join(parts),
                join(legend))


def timeline_chart(lanes: Sequence[Lane], t0: int, t1: int,
                   marks: Mapping[str, int] | None = None) -> Markup:
    """One lane per detected series: a bar from its first firing detection to its
    resolution (or the last detection), a dot per detection coloured by severity."""
    lane_h = 22
    plot = Plot(t0, max(t1, t0 + 1), 0.0, 1.0, left=220, top=8, width=700,
                height=max(lane_h * len(lanes), lane_h))
    parts = [html('<rect x="{}" y="{}" width="{}" height="{}" fill="#fff" stroke="#ced4da"/>',
                  plot.left, plot.top, plot.width, plot.height)]
    with_date = plot.t1 - plot.t0 > 86_400_000
    for i in range(5):
        t = plot.t0 + (plot.t1 - plot.t0) * i / 4
        parts.append(html('<text x="{}" y="{}" text-anchor="middle">{}</text>', plot.x(t),
                          plot.top + plot.height + 14, _clock(t, with_date)))
    for at in (marks or {}).values():
        if t0 <= at <= t1:
            x = plot.x(at)
            parts.append(html('<line class="mark" x1="{}" x2="{}" y1="{}" y2="{}" '
                              'stroke="#495057" stroke-dasharray="2 2"/>', x, x, plot.top,
                              plot.top + plot.height))
    for row, lane in enumerate(lanes):
        y = plot.top + row * lane_h + lane_h / 2
        events = sorted(lane.events)
        firing = [t for t, state, _s, _ti in events if state == "firing"]
        resolved = [t for t, state, _s, _ti in events if state == "resolved"]
        label = lane.label if len(lane.label) <= 34 else lane.label[:33] + "…"
        parts.append(html('<text x="{}" y="{}" text-anchor="end"><title>{}</title>{}</text>',
                          plot.left - 6, y + 4, lane.label, label))
        if firing:
            start = min(firing)
            end = max([t for t in resolved if t >= start] or [max(firing)])
            parts.append(html('<rect class="span" x="{}" y="{}" width="{}" height="8" '
                              'fill="#ffc9c9"/>', plot.x(start), y - 4,
                              max(plot.x(end) - plot.x(start), 2)))
        for t, state, severity, title in events:
            colour = "#2b8a3e" if state == "resolved" else SEVERITY_COLOURS.get(severity,
                                                                                "#495057")
            parts.append(html('<circle class="pt" cx="{}" cy="{}" r="4" fill="{}">'
                              "<title>{} {} {}: {}</title></circle>", plot.x(t), y, colour,
                              _clock(t, True), state, severity, title))
    height = plot.top + plot.height + 22
    return html('<svg class="chart timeline" xmlns="http://www.w3.org/2000/svg" width="940" '
                'height="{}" viewBox="0 0 940 {}" role="img"><title>member detections</title>'
                "{}</svg>", height, height, join(parts))


@dataclass(frozen=True)
class GraphView:
    """Services and calls to draw (the nodes are the calls' ends, ``root`` and
    ``extra_nodes``); ``root`` and ``affected`` are highlighted."""

    edges: Sequence[tuple[str, str]]
    root: str = ""
    affected: Sequence[str] = ()
    extra_nodes: Sequence[str] = field(default_factory=tuple)


def graph_layers(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> list[list[str]]:
    """Nodes in layers: callers above what they call (longest call path from a node that
    nothing calls; cycles are cut where they close).

    >>> graph_layers(["api", "db", "orders"], [("api", "orders"), ("orders", "db")])
    [['api'], ['orders'], ['db']]
    """
    callees: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if a in callees and b in callees and a != b:
            callees[a].append(b)
    depth: dict[str, int] = {}

    def visit(node: str, trail: frozenset[str], level: int) -> None:
        if depth.get(node, -1) >= level:
            return
        depth[node] = level
        for nxt in callees[node]:
            if nxt not in trail:
                visit(nxt, trail | {nxt}, level + 1)

    called = {b for a, bs in callees.items() for b in bs}
    for node in sorted(nodes):
        if node not in called:
            visit(node, frozenset({node}), 0)
    for node in sorted(nodes):  # nodes only on cycles
        if node not in depth:
            visit(node, frozenset({node}), 0)
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node in sorted(nodes):
        layers[depth[node]].append(node)
    return layers


def graph_chart(view: GraphView) -> Markup:
    """The call graph: boxes in layers (callers on top), arrows caller → callee; the root
    cause red, the other affected services orange."""
    nodes = sorted({n for e in view.edges for n in e} | set(view.extra_nodes)
                   | ({view.root} if view.root else set()))
    if not nodes:
        return html('<p class="empty">no call graph known for these services</p>')
    layers = graph_layers(nodes, view.edges)
    box_w, box_h, gap_x, gap_y = 130, 26, 20, 46
    width = max(len(layer) for layer in layers) * (box_w + gap_x) + gap_x
    pos: dict[str, tuple[float, float]] = {}
    for row, layer in enumerate(layers):
        offset = (width - len(layer) * (box_w + gap_x) + gap_x) / 2
        for col, node in enumerate(layer):
            pos[node] = (offset + col * (box_w + gap_x), 10 + row * (box_h + gap_y))
    parts = [Markup('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" '
                    'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
                    '<path d="M0,0 L10,5 L0,10 z" fill="#868e96"/></marker></defs>')]
    for a, b in sorted(set(view.edges)):
        if a == b or a not in pos or b not in pos:
            continue
        (ax, ay), (bx, by) = pos[a], pos[b]
        parts.append(html('<line class="edge" data-from="{}" data-to="{}" x1="{}" y1="{}" '
                          'x2="{}" y2="{}" stroke="#868e96" marker-end="url(#arrow)"/>',
                          a, b, ax + box_w / 2, ay + box_h, bx + box_w / 2,
                          by if by > ay else by + box_h))
    affected = set(view.affected)
    for node, (x, y) in pos.items():
        if node == view.root:
            fill, stroke, role = "#ffe3e3", "#b3261e", "root cause"
        elif node in affected:
            fill, stroke, role = "#fff4e6", "#e8590c", "affected"
        else:
            fill, stroke, role = "#f8f9fa", "#adb5bd", "neighbour"
        label = node if len(node) <= 18 else node[:17] + "…"
        parts.append(html('<g class="node" data-service="{}" data-role="{}"><rect x="{}" '
                          'y="{}" width="{}" height="{}" rx="4" fill="{}" stroke="{}"/>'
                          '<text x="{}" y="{}" text-anchor="middle"><title>{} ({})</title>{}'
                          "</text></g>", node, role, x, y, box_w, box_h, fill, stroke,
                          x + box_w / 2, y + 17, node, role, label))
    height = 10 + len(layers) * (box_h + gap_y)
    return html('<svg class="chart graph" xmlns="http://www.w3.org/2000/svg" width="{}" '
                'height="{}" viewBox="0 0 {} {}" role="img"><title>call graph</title>{}</svg>',
                width, height, width, height, join(parts))


def neighbourhood(edges: Iterable[tuple[str, str]], centre: Iterable[str],
                  max_nodes: int = 30) -> list[tuple[str, str]]:
    """The calls that touch a ``centre`` service (one hop around them), at most
    ``max_nodes`` services in all, the centre's own calls first."""
    centre = set(centre)
    inner = [(a, b) for a, b in edges if a in centre and b in centre]
    outer = sorted((a, b) for a, b in edges if (a in centre) != (b in centre))
    kept = list(dict.fromkeys(sorted(inner)))
    nodes = {n for e in kept for n in e} | centre
    for a, b in outer:
        if len(nodes | {a, b}) > max_nodes:
            continue
        kept.append((a, b))
        nodes |= {a, b}
    return kept


__all__ = ["Band", "GraphView", "Lane", "Series", "graph_chart", "graph_layers",
           "line_chart", "neighbourhood", "nice_ticks", "timeline_chart"]
