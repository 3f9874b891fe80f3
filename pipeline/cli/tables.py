"""Plain-text tables for the terminal that fit its width (80 columns in a pipe)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence

GAP = "  "
MIN_STRETCH = 8


def terminal_width() -> int:
    """The terminal's width in columns (``COLUMNS``, else 80 when not a terminal)."""
    return shutil.get_terminal_size((80, 24)).columns


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(0, width - 1)] + "…"


def text_table(columns: Sequence[str], rows: Sequence[Sequence[object]], *,
               width: int | None = None, stretch: str | None = None) -> list[str]:
    """Aligned lines of ``rows`` under ``columns``. With ``width``, the ``stretch``
    column (the last by default) is cut with "…" so that each line fits, down to 8
    characters; without, nothing is cut.

    >>> text_table(["id", "title"], [["p-1", "a long title here"]], width=20)
    ['id   title', 'p-1  a long title h…']
    """
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    if width is not None and columns:
        at = columns.index(stretch) if stretch in columns else len(columns) - 1
        others = sum(w for i, w in enumerate(widths) if i != at) + len(GAP) * (len(columns) - 1)
        widths[at] = max(min(widths[at], width - others), min(MIN_STRETCH, widths[at]))
    lines = []
    for row in [list(columns), *cells]:
        parts = [_cut(c, w).ljust(w) for c, w in zip(row, widths, strict=True)]
        lines.append(GAP.join(parts).rstrip())
    return lines
