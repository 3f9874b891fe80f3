"""Per-series state for many series at once: numpy columns indexed by series slot.

A :class:`SeriesBank` maps series keys (any string) to slots of one state matrix and
scores a batch of points of many series with the detector's vectorised math. Points of a
batch may be out of order and a series may appear several times: the batch is sorted by
time and cut into *rounds* holding at most one point per series, processed in order, so
the result equals feeding every series its points one by one.

The bank also keeps each series' alarm state and reports state changes. A point whose
score reaches the threshold *arms* the series and fixes the band of values the model
accepts (expected value +- the width at which the score would reach the threshold);
the series fires when ``confirm_points`` points in a row fall outside that band (or,
with ``confirm_ms``, at least two points in a row spanning that long: a series with a
point a minute confirms a three-minute fault on its second point instead of never),
with the first of them as its start (the change point, not the confirmation), and
resolves when ``confirm_points`` points in a row are back inside the narrower band of
values scoring under ``clear`` (``returned``: a shift hovering near the band's edge does
not flap), or,
the operator's policy for a series that settled at a new level, once the model has
scored the new level as normal (raw score below ``clear``) for ``accept_points``
points in a row (``accepted``; 0: never, the alarm holds until the series returns).
An operator sees one alert per episode with the band that explains it, however the
model's calibration adapts meanwhile. When the band is empty (the model scores even its
expected value past the threshold: a run of surprising points, not one value, is what it
finds unusual, e.g. a spike met as a rest period ends) no value can fall inside it, so
such an alarm follows the raw score instead: it confirms while the score stays at the
threshold and returns once it is under ``clear``. Likewise an empty *calm* band: the
series returns once its values are back inside the alarm's band and score under
``clear``. Both used to hold until ``accepted``.

With ``keepalive_ms`` a firing series also reports a *keep-alive* at a point that keeps
it firing once its time reaches the next tick ``fired + k * keepalive_ms`` (the latest
tick reached when a gap skipped several, at most one per point, as the rule engine does
per evaluation), so downstream consumers see the alarm is still on. The ticks depend on
the points only, not on how they are batched.

>>> from models.univariate import RobustSeasonal
>>> bank = SeriesBank(RobustSeasonal(warmup=5))
>>> slots = bank.slots(["a", "b", "a"])
>>> out = bank.process(slots, np.array([2, 1, 1]), np.array([1.0, 5.0, 1.0]), 0.5, 0.4)
>>> len(bank), out.score.shape
(2, (3,))
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from models.base import ModelError
from models.ensemble import SeasonalEnsemble
from models.univariate import RobustSeasonal

SeriesDetector = RobustSeasonal | SeasonalEnsemble
"""A detector with vectorised ``new_state`` / ``evaluate`` / ``update`` / ``band``."""

_MAGIC = BANK_MAGIC = b"TSB1"  # how a series bank's bytes begin

KEY_BYTES = 160
"""Memory a series key takes besides the columns, about: a short string, its slot in
:attr:`SeriesBank.keys` and its entry in :attr:`SeriesBank.index`."""

GROWTH_DIVISOR = 4
"""A bank that needs more slots grows by a quarter of its capacity (or to what it needs):
amortised like doubling, with at most 25 % of the columns unused."""


@dataclass
class BankResult:
    """Per input point (input order): scores, expectation, and the alarm state changes
    (``firing``, ``resolved`` or ``keepalive``: still firing, sent at ``ticks[index]``)."""

    score: np.ndarray
    raw: np.ndarray
    expected: np.ndarray
    scale: np.ndarray
    events: list[tuple[int, str]] = field(default_factory=list)  # (input index, state)
    bands: dict[int, tuple[float, float]] = field(default_factory=dict)  # per event index
    peaks: dict[int, float] = field(default_factory=dict)  # highest score of the episode
    ticks: dict[int, int] = field(default_factory=dict)  # keep-alive time per event index
    since: dict[int, int] = field(default_factory=dict)  # episode start (first point out)
    reasons: dict[int, str] = field(default_factory=dict)  # resolved: returned | accepted


class SeriesBank:
    """State columns of many series of one detector, plus their alarm state."""

    def __init__(self, detector: SeriesDetector, capacity: int = 16) -> None:
        self.detector = detector
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.state = detector.new_state(capacity)
        self.firing = np.zeros(capacity, dtype=bool)
        self.since = np.zeros(capacity, dtype=np.int64)  # when the alarm fired
        self.began = np.zeros(capacity, dtype=np.int64)  # first point out of band
        self.sent = np.zeros(capacity, dtype=np.int64)  # last firing or keep-alive time
        self.streak = np.zeros(capacity, dtype=np.int32)  # points in a row out of/in band
        self.accept = np.zeros(capacity, dtype=np.int32)  # firing points with a low score
        self.armed = np.zeros(capacity, dtype=bool)
        self.band = np.zeros((2, capacity))  # (low, high) fixed when the series armed
        self.calm_band = np.zeros((2, capacity))  # values scoring under ``clear`` then
        self.peak = np.zeros(capacity)  # highest raw score since the series armed
        self.calm = np.zeros(capacity, dtype=np.int32)  # points in a row scoring under clear
        self.calm_since = np.zeros(capacity, dtype=np.int64)  # the first of them

    def __len__(self) -> int:
        return len(self.keys)

    def held_bytes(self) -> int:
        """About the memory this bank takes: its columns and its keys."""
        arrays = sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))
        return arrays + len(self.keys) * KEY_BYTES

    def _grow(self, needed: int) -> None:
        capacity = self.state.shape[1]
        if needed <= capacity:
            return
        # by a quarter, not double: a bank restored at its exact size and then meeting a
        # few new series would otherwise hold twice its columns (most of a decoded state)
        new = max(needed, capacity + capacity // GROWTH_DIVISOR)
        extra = new - capacity
        self.state = np.concatenate([self.state, self.detector.new_state(extra)], axis=1)
        self.firing = np.concatenate([self.firing, np.zeros(extra, dtype=bool)])
        self.since = np.concatenate([self.since, np.zeros(extra, dtype=np.int64)])
        self.began = np.concatenate([self.began, np.zeros(extra, dtype=np.int64)])
        self.sent = np.concatenate([self.sent, np.zeros(extra, dtype=np.int64)])
        self.streak = np.concatenate([self.streak, np.zeros(extra, dtype=np.int32)])
        self.accept = np.concatenate([self.accept, np.zeros(extra, dtype=np.int32)])
        self.armed = np.concatenate([self.armed, np.zeros(extra, dtype=bool)])
        self.band = np.concatenate([self.band, np.zeros((2, extra))], axis=1)
        self.calm_band = np.concatenate([self.calm_band, np.zeros((2, extra))], axis=1)
        self.peak = np.concatenate([self.peak, np.zeros(extra)])
        self.calm = np.concatenate([self.calm, np.zeros(extra, dtype=np.int32)])
        self.calm_since = np.concatenate([self.calm_since, np.zeros(extra, dtype=np.int64)])

    def slots(self, keys: Sequence[str]) -> np.ndarray:
        """Slot of each key, allocating slots for new series."""
        index = self.index
        out = np.empty(len(keys), dtype=np.intp)
        for i, key in enumerate(keys):
            slot = index.get(key)
            if slot is None:
                slot = len(self.keys)
                index[key] = slot
                self.keys.append(key)
            out[i] = slot
        self._grow(len(self.keys))
        return out

    def process(self, slots: np.ndarray, times: np.ndarray, values: np.ndarray,
                threshold: float, clear: float, confirm_points: int = 1,
                accept_points: int = 360, keepalive_ms: int = 0,
                sequence: np.ndarray | None = None, confirm_ms: int = 0,
                accept_ms: int = 0, rearm: bool = False,
                confirm_within_ms: int = 0) -> BankResult:
        """Score then learn every point; report alarm changes in event-time order (plus
        keep-alives of firing series every ``keepalive_ms``; 0: none). A series armed
        ``confirm_ms`` ago or longer (0: off) fires on its second point out of band; a
        firing series the model has scored normal for ``accept_ms`` (0: off) resolves as
        accepted, as after ``accept_points`` such points. With ``rearm`` a series the model
        rests after an alarm arms again once it has scored calm (see below). With
        ``sequence`` (one number per point) a series takes its points by sequence
        first, then by time: the points of several batches, each fed in turn. With
        ``confirm_within_ms`` (0: off) the points confirming an alarm must come within
        that time of its first point out of band (points "in a row" of a series that has
        gaps); a later one starts the confirmation over, dated from itself."""
        n = len(slots)
        result = BankResult(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n))
        if n == 0:
            return result
        times = np.asarray(times, dtype=np.int64)
        order = (np.argsort(times, kind="stable") if sequence is None
                 else np.lexsort((times, sequence)))
        by_slot = order[np.argsort(slots[order], kind="stable")]
        grouped = slots[by_slot]
        starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
        lengths = np.diff(np.r_[starts, n])
        rank = np.arange(n) - np.repeat(starts, lengths)
        rank_of = np.empty(n, dtype=np.intp)
        rank_of[by_slot] = rank
        rounds = order[np.argsort(rank_of[order], kind="stable")]  # by round, then time
        bounds = np.r_[0, np.cumsum(np.bincount(rank_of))]
        det = self.detector
        changes: list[tuple[int, int, str]] = []
        for r in range(len(bounds) - 1):
            pos = rounds[bounds[r]:bounds[r + 1]]  # one point per series, in time order
            cols = slots[pos]
            x = np.asarray(values[pos], dtype=np.float64)
            t = times[pos].astype(np.float64)
            sub = self.state[:, cols]
            ev = det.evaluate(sub, x, t)
            # the model rests after an alarm-level point (one detection per episode); with
            # ``rearm``, once the series has been calm again (scored under ``clear`` for as
            # long as an alarm takes to confirm) the episode is over: a new excursion arms
            now = times[pos]
            calm = self.calm[cols]
            back = (calm >= max(2, confirm_points)) | (
                (confirm_ms > 0) & (calm >= 2) & (now - self.calm_since[cols] >= confirm_ms))
            back &= rearm
            alarm = (ev.score >= threshold) | (back & (ev.raw >= threshold))
            # a firing series the model had scored normal again (settled at a new level,
            # held only until accepted) that leaves once more: its episode ends here and
            # a new one arms, with its own change point
            renew = self.firing[cols] & back & (ev.raw >= threshold)
            if renew.any():
                self._renew(cols, pos, renew, times, result, changes)
            if confirm_within_ms > 0:  # armed too long ago: this point arms afresh
                stale = self.armed[cols] & (now - self.began[cols] > confirm_within_ms)
                self.armed[cols[stale]] = False
                self.streak[cols[stale]] = 0
            arm = ~self.firing[cols] & ~self.armed[cols] & alarm
            low_score = ev.raw < clear
            self.calm_since[cols] = np.where(low_score & (calm == 0), now, self.calm_since[cols])
            self.calm[cols] = np.where(low_score, calm + 1, 0)
            if arm.any():  # the band the model accepted *before* learning this point
                idx = np.flatnonzero(arm)
                picked = ev.select(idx)
                low, high = det.band(sub[:, idx], picked, threshold)
                self.band[0, cols[idx]], self.band[1, cols[idx]] = low, high
                low, high = det.band(sub[:, idx], picked, min(clear, threshold))
                self.calm_band[0, cols[idx]], self.calm_band[1, cols[idx]] = low, high
            det.update(sub, x, t, ev)
            self.state[:, cols] = sub
            result.score[pos], result.raw[pos] = ev.score, ev.raw
            result.expected[pos], result.scale[pos] = ev.expected, ev.scale
            if arm.any() or self.armed[cols].any() or self.firing[cols].any():
                self._alarms(cols, pos, x, ev, arm, threshold, clear, confirm_points,
                             accept_points, keepalive_ms, times, result, changes,
                             confirm_ms, accept_ms)
        changes.sort()
        result.events = [(p, state) for _, p, state in changes]
        return result

    def _renew(self, cols: np.ndarray, pos: np.ndarray, renew: np.ndarray,
               times: np.ndarray, result: BankResult,
               changes: list[tuple[int, int, str]]) -> None:
        """End the episodes of the ``renew`` series of a round (resolved as accepted at
        this point) so that the point can arm a new one."""
        for i in np.flatnonzero(renew).tolist():
            c, p = int(cols[i]), int(pos[i])
            changes.append((int(times[p]), p, "resolved"))
            result.bands[p] = (float(self.band[0, c]), float(self.band[1, c]))
            result.peaks[p] = float(self.peak[c])
            result.reasons[p] = "accepted"
            result.since[p] = int(self.began[c])
        done = cols[renew]
        self.firing[done] = False
        self.streak[done] = 0
        self.accept[done] = 0

    def _alarms(self, cols: np.ndarray, pos: np.ndarray, x: np.ndarray, ev: Any,
                arm: np.ndarray, threshold: float, clear: float, confirm_points: int,
                accept_points: int, keepalive_ms: int, times: np.ndarray,
                result: BankResult, changes: list[tuple[int, int, str]],
                confirm_ms: int = 0, accept_ms: int = 0) -> None:
        """Advance the alarm state of one round's series (see the module docstring)."""
        firing, armed = self.firing[cols], self.armed[cols]
        low, high = self.band[0, cols], self.band[1, cols]
        calm_low, calm_high = self.calm_band[0, cols], self.calm_band[1, cols]
        # an empty band: the model scored even its expected value past the threshold, so it is
        # the series' recent run that surprises it, not a value; the alarm follows the score
        valued = low < high
        inside = (x >= low) & (x <= high)
        out = np.where(valued, ~inside, ev.raw >= threshold)
        back = np.where(calm_low < calm_high, (x >= calm_low) & (x <= calm_high),
                        (inside | ~valued) & (ev.raw < clear))
        counting = armed | arm
        streak = np.where(counting, np.where(out, self.streak[cols] + 1, 0),
                          np.where(firing & back, self.streak[cols] + 1, 0))
        now = times[pos]
        began = np.where(arm, now, self.began[cols])  # the first point out of band
        long = (confirm_ms > 0) & (streak >= min(2, confirm_points)) \
            & (now - began >= confirm_ms)
        fire = counting & ((streak >= confirm_points) | long)
        armed = counting & out & ~fire
        accept = np.where(firing & (ev.raw < clear), self.accept[cols] + 1, 0)
        returned = firing & (streak >= confirm_points) & back
        # scored normal for accept_ms since it fired (the run of low scores may be older)
        calm_for = now - np.maximum(self.calm_since[cols], self.since[cols])
        settled = (accept_ms > 0) & (accept >= 2) & (calm_for >= accept_ms)
        accepted = firing & ~returned & (((accept_points > 0) & (accept >= accept_points))
                                         | settled)
        calm = returned | accepted
        self.firing[cols] = (firing | fire) & ~calm
        self.armed[cols] = armed
        self.streak[cols] = np.where(fire | calm, 0, streak)
        self.accept[cols] = np.where(calm, 0, accept)
        self.began[cols] = began
        self.since[cols] = np.where(fire, now, self.since[cols])
        sent = np.where(fire, now, self.sent[cols])
        keep = np.zeros(len(cols), dtype=bool)
        if keepalive_ms > 0:  # still firing: the latest tick this point reached, if new
            ticks = (now - sent) // keepalive_ms
            keep = firing & ~calm & (ticks > 0)
            sent = np.where(keep, sent + ticks * keepalive_ms, sent)
        self.sent[cols] = sent
        peak = np.where(arm, ev.raw, np.maximum(self.peak[cols], ev.raw))
        self.peak[cols] = peak
        for i in np.flatnonzero(fire | calm | keep).tolist():
            p = int(pos[i])
            kind = "firing" if fire[i] else "resolved" if calm[i] else "keepalive"
            changes.append((int(sent[i]) if keep[i] else int(times[p]), p, kind))
            result.bands[p] = (float(low[i]), float(high[i]))
            result.peaks[p] = float(ev.raw[i]) if calm[i] else float(peak[i])
            if keep[i]:
                result.ticks[p] = int(sent[i])
            if calm[i]:
                result.reasons[p] = "returned" if returned[i] else "accepted"
            result.since[p] = int(self.began[cols[i]])

    def end_alarms(self, keys: Sequence[str]) -> list[tuple[str, int, tuple[float, float], float]]:
        """End the alarms of those of ``keys`` that fire, whatever their points say (their
        series went silent): ``(key, episode start, band, peak score)`` for each ended."""
        out = []
        for key in keys:
            c = self.index.get(key)
            if c is None or not self.firing[c]:
                continue
            out.append((key, int(self.began[c]), (float(self.band[0, c]),
                                                  float(self.band[1, c])), float(self.peak[c])))
            self.firing[c] = self.armed[c] = False
            self.streak[c] = self.accept[c] = 0
        return out

    def column(self, key: str) -> np.ndarray:
        """The state column of one series (a copy)."""
        return self.state[:, self.index[key]].copy()

    @property
    def bytes_per_series(self) -> int:
        """Numeric state per series: the detector's columns plus the alarm state."""
        return self.detector.n_fields * 8 + 2 + 4 + 4 + 8 + 8 + 8 + 16 + 16 + 8 + 4 + 8

    def adopt(self, detector: SeriesDetector) -> bool:
        """Score with ``detector`` from now on. Series keep what they learnt when its
        state layout is the same; otherwise (another detector class, the context tier
        switched) they start afresh, keeping their alarms. True when state was reset."""
        old = self.detector
        self.detector = detector
        if _layout(old) == _layout(detector):
            return False
        self.state = detector.new_state(self.state.shape[1])
        return True

    def seed(self, keys: Sequence[str], times: np.ndarray, values: np.ndarray) -> int:
        """Teach series that have no state yet their history, as if it had streamed.

        ``keys``, ``times`` (epoch ms) and ``values`` are one history point each, in any
        order; series already in the bank are left alone (a worker met them before).
        Returns how many series were seeded. Pure: the caller reads the history (e.g.
        from the store) and passes it here.
        """
        new = sorted({k for k in keys if k not in self.index})
        if not new or not hasattr(self.detector, "seed_columns"):
            return 0
        slots = self.slots(new)
        where = {k: i for i, k in enumerate(new)}
        col = np.array([where.get(k, -1) for k in keys], dtype=np.intp)
        keep = col >= 0
        times = np.asarray(times, dtype=np.float64)[keep]
        values = np.asarray(values, dtype=np.float64)[keep]
        col = col[keep]
        order = np.lexsort((times, col))
        col, times, values = col[order], times[order], values[order]
        starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
        rank = np.arange(col.size) - np.repeat(starts, np.diff(np.r_[starts, col.size]))
        depth = int(rank.max()) + 1 if rank.size else 0
        t = np.zeros((depth, len(new)))
        v = np.full((depth, len(new)), np.nan)
        t[rank, col], v[rank, col] = times, values
        sub = self.state[:, slots]
        self.detector.seed_columns(sub, t, v)
        self.state[:, slots] = sub
        return len(new)

    def to_bytes(self) -> bytes:
        """Compact bytes: keys and alarm state as JSON, then the state matrix (float64).

        ``sent`` (last firing or keep-alive time) is kept for the firing series only, in
        the order of ``firing``.
        """
        k = len(self.keys)
        firing = np.flatnonzero(self.firing[:k])
        head = orjson.dumps({"keys": self.keys, "layout": _layout(self.detector),
                             "firing": firing.tolist(), "sent": self.sent[firing].tolist(),
                             "armed": np.flatnonzero(self.armed[:k]).tolist(),
                             "since": self.since[:k].tolist(),
                             "began": self.began[:k].tolist(),
                             "streak": self.streak[:k].tolist(),
                             "accept": self.accept[:k].tolist(),
                             "peak": self.peak[:k].tolist(),
                             "calm": self.calm[:k].tolist(),
                             "calm_since": self.calm_since[:k].tolist(),
                             "band": self.band[:, :k].tolist(),
                             "calm_band": self.calm_band[:, :k].tolist()})
        body = np.ascontiguousarray(self.state[:, :k]).tobytes()
        return _MAGIC + struct.pack("<II", len(head), self.detector.n_fields) + head + body

    @classmethod
    def from_bytes(cls, data: bytes, detector: SeriesDetector) -> SeriesBank:
        """A bank from :meth:`to_bytes` output, scoring with ``detector``. State of
        another layout is upgraded when the detector knows how (``upgrade_state``: an
        earlier version of its own layout), else not reused: those series start afresh,
        their alarms kept."""
        if data[:4] != _MAGIC:
            raise ModelError("series state: not a Tocsin series bank (bad magic bytes)")
        head_len, fields = struct.unpack("<II", data[4:12])
        head = orjson.loads(data[12:12 + head_len])
        k = len(head["keys"])
        bank = cls(detector, capacity=max(k, 1))
        matrix = np.frombuffer(data[12 + head_len:], dtype=np.float64)
        if matrix.size != fields * k:
            raise ModelError(f"series state: {matrix.size} numbers for {k} series of "
                             f"{fields} fields (truncated or corrupt)")
        # states saved before layouts were named are robust-seasonal ones
        layout = head.get("layout", f"RobustSeasonal:{fields}")
        state: np.ndarray | None = matrix.reshape(fields, k)
        if layout != _layout(detector):
            upgrade = getattr(detector, "upgrade_state", None)
            state = upgrade(layout, state) if upgrade is not None else None
        if state is not None:
            bank.state[:, :k] = state
        bank.keys = list(head["keys"])
        bank.index = {key: i for i, key in enumerate(bank.keys)}
        bank.armed[head["armed"]] = True
        bank.since[:k] = head["since"]
        bank.began[:k] = head.get("began", head["since"])  # older state: the firing time
        firing = np.asarray(head["firing"], dtype=np.intp)
        bank.firing[firing] = True
        bank.sent[firing] = head.get("sent", bank.since[firing])  # older state: fired time
        bank.streak[:k] = head["streak"]
        bank.accept[:k] = head["accept"]
        bank.peak[:k] = head["peak"]
        bank.calm[:k] = head.get("calm", [0] * k)  # older state: not known to be calm
        bank.calm_since[:k] = head.get("calm_since", [0] * k)
        bank.band[:, :k] = np.asarray(head["band"]).reshape(2, k)
        bank.calm_band[:, :k] = np.asarray(head.get("calm_band", head["band"])).reshape(2, k)
        return bank


_ALARM_ROWS = ("firing", "since", "began", "sent", "streak", "accept", "armed", "peak", "calm",
               "calm_since")


JOINT_SERIES = 16_384
"""Series scored together at most (their columns in one joint bank) by :func:`process_banks`:
wide enough that a round's numpy calls cost far more than their overhead, narrow enough
that the round's temporary arrays stay small (about 1.4 KB per series; a step that meets
a million new series would otherwise hold them all at once)."""


def process_banks(parts: Sequence[tuple[SeriesBank, np.ndarray, np.ndarray, np.ndarray]],
                  threshold: float, clear: float, confirm_points: int = 1,
                  accept_points: int = 360, keepalive_ms: int = 0,
                  max_series: int = JOINT_SERIES, confirm_ms: int = 0,
                  accept_ms: int = 0, rearm: bool = False) -> list[BankResult]:
    """:meth:`SeriesBank.process` of several ``(bank, slots, times, values)`` parts, in
    turn, as one: the touched series of every bank become the columns of one joint
    bank, so a round of numpy math scores one point of every series of every part (the
    banks of many services at once) instead of one bank's. A series sees its points in
    part order, then time order, as when each part is processed after the one before;
    the result is the same, part by part. The banks must score with one detector layout.

    Banks are scored together in groups of about ``max_series`` touched series (a bank
    is never split); series of different banks are independent, so the grouping does not
    change a result, only how much memory a round's arrays take. The banks' state is
    written back once every group is scored: if one raises, no bank has changed.

    >>> from models.univariate import RobustSeasonal
    >>> a, b = SeriesBank(RobustSeasonal(warmup=2)), SeriesBank(RobustSeasonal(warmup=2))
    >>> parts = [(a, a.slots(["x"]), np.array([1]), np.array([1.0])),
    ...          (b, b.slots(["x", "y"]), np.array([1, 1]), np.array([2.0, 3.0]))]
    >>> [r.expected.tolist() for r in process_banks(parts, 0.5, 0.4)]
    [[1.0], [2.0, 3.0]]
    >>> [r.expected.tolist() for r in process_banks(parts, 0.5, 0.4, max_series=1)]
    [[1.0], [2.0, 3.0]]
    """
    if not parts:
        return []
    detector = parts[0][0].detector
    touched: dict[int, tuple[SeriesBank, list[int]]] = {}  # bank -> its part indices
    for i, (bank, _, _, _) in enumerate(parts):
        if _layout(bank.detector) != _layout(detector):
            raise ModelError(f"process_banks: a bank scores with {_layout(bank.detector)}, "
                             f"another with {_layout(detector)}; adopt one detector first")
        touched.setdefault(id(bank), (bank, []))[1].append(i)
    groups: list[list[tuple[SeriesBank, np.ndarray, list[int]]]] = [[]]
    width = 0
    for bank, indices in touched.values():
        used = np.unique(np.concatenate([np.asarray(parts[i][1], dtype=np.intp)
                                         for i in indices]))
        if groups[-1] and width + used.size > max_series:
            groups.append([])
            width = 0
        groups[-1].append((bank, used, indices))
        width += used.size
    out: list[BankResult | None] = [None] * len(parts)
    scored = []
    for group in groups:
        order = sorted(i for _, _, indices in group for i in indices)
        joint, results = _score_jointly(group, [parts[i] for i in order], threshold, clear,
                                        confirm_points, accept_points, keepalive_ms,
                                        confirm_ms, accept_ms, rearm)
        scored.append((joint, group))
        for i, result in zip(order, results, strict=True):
            out[i] = result
    for joint, group in scored:
        start = 0
        for bank, used, _ in group:
            stop = start + used.size
            bank.state[:, used] = joint.state[:, start:stop]
            for name in _ALARM_ROWS:
                getattr(bank, name)[used] = getattr(joint, name)[start:stop]
            bank.band[:, used] = joint.band[:, start:stop]
            bank.calm_band[:, used] = joint.calm_band[:, start:stop]
            start = stop
    return [r for r in out if r is not None]


def _score_jointly(banks: list[tuple[SeriesBank, np.ndarray, list[int]]],
                   parts: Sequence[tuple[SeriesBank, np.ndarray, np.ndarray, np.ndarray]],
                   threshold: float, clear: float, confirm_points: int, accept_points: int,
                   keepalive_ms: int, confirm_ms: int = 0, accept_ms: int = 0,
                   rearm: bool = False) -> tuple[SeriesBank, list[BankResult]]:
    """The ``used`` columns of ``banks`` as one new joint bank, ``parts`` (of those banks,
    in order) scored on it; the banks themselves are not touched."""
    joint = SeriesBank(banks[0][0].detector, capacity=0)
    offsets: dict[int, tuple[int, np.ndarray]] = {}  # bank -> (offset, its used slots)
    offset = 0
    for bank, used, _ in banks:
        offsets[id(bank)] = (offset, used)
        offset += used.size
    joint.state = np.concatenate([b.state[:, u] for b, u, _ in banks], axis=1)
    for name in _ALARM_ROWS:
        setattr(joint, name, np.concatenate([getattr(b, name)[u] for b, u, _ in banks]))
    joint.band = np.concatenate([b.band[:, u] for b, u, _ in banks], axis=1)
    joint.calm_band = np.concatenate([b.calm_band[:, u] for b, u, _ in banks], axis=1)
    sizes = [len(slots) for _, slots, _, _ in parts]
    starts = np.r_[0, np.cumsum(sizes)].astype(np.intp)
    slots = np.concatenate([offsets[id(bank)][0] + np.searchsorted(offsets[id(bank)][1], s)
                            for bank, s, _, _ in parts]).astype(np.intp)
    times = np.concatenate([np.asarray(t, dtype=np.int64) for _, _, t, _ in parts])
    values = np.concatenate([np.asarray(v, dtype=np.float64) for _, _, _, v in parts])
    sequence = np.repeat(np.arange(len(parts)), sizes)
    res = joint.process(slots, times, values, threshold, clear, confirm_points,
                        accept_points, keepalive_ms, sequence=sequence, confirm_ms=confirm_ms,
                        accept_ms=accept_ms, rearm=rearm)
    out = [BankResult(res.score[a:b], res.raw[a:b], res.expected[a:b], res.scale[a:b])
           for a, b in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True)]
    for p, kind in res.events:
        part = int(np.searchsorted(starts, p, side="right")) - 1
        local, into = p - int(starts[part]), out[part]
        into.events.append((local, kind))
        for name in ("bands", "peaks", "ticks", "since", "reasons"):
            found = getattr(res, name)
            if p in found:
                getattr(into, name)[local] = found[p]
    return joint, out


def _layout(detector: SeriesDetector) -> str:
    """What a state column means: the detector class and its number of rows."""
    return f"{type(detector).__name__}:{detector.n_fields}"
