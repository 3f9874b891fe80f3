"""Absence: a series that was seen before has had no data for longer than ``for``.

A silence is decided by the watermark: no record arrived in ``(last_seen, last_seen +
for]`` and the watermark has passed ``last_seen + for`` (later records in that interval
would be late). The detection's time is ``last_seen + for``; it resolves at the next
record. A gap inside one batch counts when the watermark had passed ``last_seen + for``
before the record ending it arrived, so the result does not depend on batching.

A firing silence is re-sent every ``keepalive_ms`` of event time (the correlator's sign
that it still holds). Every keep-alive due before the record that ends the silence is
sent, whether the watermark passed it in small steps or the ending record came in the
same batch as a jump of the watermark: in a fast replay a database silent for ten
minutes must not look unconfirmed for most of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.machine import FIRING, KEEPALIVE, RESOLVED
from detectors.windows import KEY_BITS


@dataclass
class Silences:
    """Absence state changes: per row a series, time, state and the silent interval."""

    series: np.ndarray
    time: np.ndarray
    kind: np.ndarray  # machine.FIRING / RESOLVED / KEEPALIVE
    start: np.ndarray  # last record before the silence
    end: np.ndarray  # when the silence was decided (firing) or ended (resolved)
    fired: np.ndarray  # when the silence began to fire


def observe(series_state: dict[str, np.ndarray], for_ms: int, s: np.ndarray, t: np.ndarray,
            wm_before: np.ndarray, keepalive_ms: int = 0) -> Silences:
    """Fold accepted records in: silences that ended inside the batch, their keep-alives
    due before the record ending them, and resolutions."""
    empty = np.zeros(0, np.int64)
    if not s.size:
        return Silences(empty, empty, empty, empty, empty, empty)
    seen, firing = series_state["seen"], series_state["firing"]
    keep = t > seen[s]
    s, t, wm_before = s[keep], t[keep], wm_before[keep]
    if not s.size:
        return Silences(empty, empty, empty, empty, empty, empty)
    c = (s << KEY_BITS) | t
    order = np.lexsort((wm_before, c))
    c, wm_before = c[order], wm_before[order]
    first = np.ones(c.size, dtype=bool)
    first[1:] = c[1:] != c[:-1]
    c, wm_before = c[first], wm_before[first]  # earliest arrival of each (series, time)
    s, t = c >> KEY_BITS, c & ((1 << KEY_BITS) - 1)
    seg = np.ones(s.size, dtype=bool)
    seg[1:] = s[1:] != s[:-1]
    prev = np.empty_like(t)
    prev[1:] = t[:-1]
    prev[seg] = seen[s[seg]]
    has_prev = prev >= 0
    was_firing = seg & (firing[s] > 0)
    gap = has_prev & ~was_firing & (wm_before > prev + for_ms)
    g = np.flatnonzero(gap)
    w = np.flatnonzero(was_firing)
    ended = np.concatenate([g, w])  # silences this batch ends: fired here, or before
    fired_at_end = np.concatenate([prev[g] + for_ms, series_state["fired"][s[w]]])
    last_sent = np.concatenate([prev[g] + for_ms, series_state["emitted"][s[w]]])
    k_of, k_t = keepalives(last_sent, t[ended], keepalive_ms)
    k_row, k_fired = ended[k_of], fired_at_end[k_of]
    out_s = np.concatenate([s[g], s[g], s[w], s[k_row]])
    out_t = np.concatenate([prev[g] + for_ms, t[g], t[w], k_t])
    kind = np.concatenate([np.full(g.size, FIRING), np.full(g.size, RESOLVED),
                           np.full(w.size, RESOLVED), np.full(k_row.size, KEEPALIVE)])
    start = np.concatenate([prev[g], prev[g], prev[w], prev[k_row]])
    end = np.concatenate([prev[g] + for_ms, t[g], t[w], k_t])
    fired_at = np.concatenate([prev[g] + for_ms, prev[g] + for_ms, series_state["fired"][s[w]],
                               k_fired])
    last = np.append(np.flatnonzero(seg)[1:], s.size) - 1
    seen[s[last]] = t[last]
    firing[s[last]] = 0
    series_state["fired"][s[last]] = -1
    series_state["emitted"][s[w]] = t[w]
    order = np.lexsort((out_t, out_s))
    return Silences(out_s[order], out_t[order], kind[order], start[order], end[order],
                    fired_at[order])


def check(series_state: dict[str, np.ndarray], for_ms: int, watermark: int,
          keepalive_ms: int) -> Silences:
    """Series whose silence the watermark has now decided (plus due keep-alives)."""
    seen, firing = series_state["seen"], series_state["firing"]
    fired, emitted = series_state["fired"], series_state["emitted"]
    due = np.flatnonzero((seen >= 0) & (firing == 0) & (watermark > seen + for_ms))
    at = seen[due] + for_ms
    firing[due] = 1
    fired[due] = at
    emitted[due] = at
    kinds = [np.full(due.size, FIRING)]
    ids, times, starts = [due], [at], [seen[due]]
    if keepalive_ms > 0:
        alive = np.flatnonzero((firing > 0) & (watermark - emitted >= keepalive_ms))
        row, when = keepalives(emitted[alive], np.full(alive.size, watermark + 1),
                               keepalive_ms)
        alive = alive[row]
        np.maximum.at(emitted, alive, when)
        ids.append(alive)
        times.append(when)
        starts.append(seen[alive])
        kinds.append(np.full(alive.size, KEEPALIVE))
    s, t = np.concatenate(ids), np.concatenate(times)
    return Silences(s, t, np.concatenate(kinds), np.concatenate(starts), t.copy(), fired[s])


def keepalives(last_sent: np.ndarray, before: np.ndarray, keepalive_ms: int,
               ) -> tuple[np.ndarray, np.ndarray]:
    """Keep-alives due after ``last_sent`` and strictly before ``before`` (per row), every
    ``keepalive_ms``: the row each belongs to and its time, in row then time order."""
    counts = _counts(last_sent, before, keepalive_ms)
    row = np.repeat(np.arange(counts.size), counts)
    if not row.size:
        return row, np.zeros(0, np.int64)
    step = np.arange(row.size) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    return row, last_sent[row] + step * keepalive_ms


def _counts(last_sent: np.ndarray, before: np.ndarray, keepalive_ms: int) -> np.ndarray:
    """How many keep-alives fall in ``(last_sent, before)`` per row (none when off)."""
    if keepalive_ms <= 0:
        return np.zeros(last_sent.size, np.int64)
    return np.maximum((before - last_sent - 1) // keepalive_ms, 0).astype(np.int64)
