"""Per-service detector state and its compact binary form.

One :class:`ServiceState` holds everything the rules know about one service: per signal
the highest event time seen (the watermark is that minus the allowed lateness), and per
rule its series (label values, firing state, baseline) and items (partial window
aggregates). ``to_bytes`` writes a small JSON header (service, labels, array shapes)
followed by the raw numpy arrays, zstd-compressed when that is smaller (zlib in states
written before); nothing is pickled, so a state read back can only be data.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from detectors.rules import Rule
from detectors.windows import Items
from pipeline.errors import TocsinError
from pipeline.events.packing import PackingError, pack, unpack

NO_TIME = -(2**62)
KEY_BYTES = 200
"""Memory a series' label tuple takes, about, with its list slot and index entry."""
MAGIC = b"TCS1"
SERIES_COLUMNS: dict[str, tuple[str, Any]] = {
    "firing": ("i1", 0), "since": ("i8", -1), "fired": ("i8", -1), "emitted": ("i8", -1),
    # born: the series' first evaluation (-1: not yet; 0: unknown, read from a state
    # written before the column existed); pre: the current firing episode has held since
    # then and that was the rule's first evaluation (a pre-existing condition)
    "born": ("i8", -1), "pre": ("i1", 0),
}
# the value of a column missing from a state written before it existed
_UPGRADE = {"born": 0}
ABSENCE_COLUMNS = {"seen": ("i8", -1)}
BASELINE_COLUMNS = {"bsum": ("f8", 0.0), "bweight": ("f8", 0.0), "btime": ("i8", -1),
                    "bstart": ("i8", -1)}


class RuleStateError(TocsinError, ValueError):
    """Bytes that are not a serialized :class:`ServiceState`."""


def series_columns(rule: Rule) -> dict[str, tuple[str, Any]]:
    """The per-series columns a rule keeps."""
    cols = dict(SERIES_COLUMNS)
    if rule.kind == "absence":
        cols.update(ABSENCE_COLUMNS)
    if rule.baseline is not None:
        cols.update(BASELINE_COLUMNS)
    return cols


@dataclass
class RuleState:
    """One rule's series and window items within one service."""

    digest: str
    keys: list[tuple[str, ...]]
    series: dict[str, np.ndarray]
    items: Items | None
    until: int = 0
    began: int = -1  # the rule's first evaluation (0: unknown, or met in a running system)
    index: dict[tuple[str, ...], int] = field(default_factory=dict, repr=False)

    @classmethod
    def new(cls, rule: Rule) -> RuleState:
        """Empty state for ``rule``."""
        series = {k: np.zeros(0, dtype=d) for k, (d, _) in series_columns(rule).items()}
        items = None if rule.kind == "absence" else Items.empty(rule)
        return cls(rule.digest, [], series, items)

    def ids(self, keys: list[tuple[str, ...]], rule: Rule) -> np.ndarray:
        """Series ids of label tuples, adding unknown series."""
        out = np.empty(len(keys), dtype=np.int64)
        added = 0
        for i, key in enumerate(keys):
            sid = self.index.get(key)
            if sid is None:
                sid = self.index[key] = len(self.keys)
                self.keys.append(key)
                added += 1
            out[i] = sid
        if added:
            for name, (dtype, default) in series_columns(rule).items():
                self.series[name] = np.concatenate(
                    [self.series[name], np.full(added, default, dtype=dtype)])
        return out

    def compact(self, rule: Rule) -> None:
        """Forget series that hold nothing: idle, not pending, no items, no history."""
        if rule.kind == "absence" or rule.baseline is not None or not self.keys:
            return
        busy = (self.series["firing"] > 0) | (self.series["since"] >= 0)
        if self.items is not None and len(self.items):
            busy[np.unique(self.items.series)] = True
        if busy.all():
            return
        remap = np.cumsum(busy) - 1
        self.keys = [k for k, b in zip(self.keys, busy.tolist(), strict=True) if b]
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.series = {k: v[busy] for k, v in self.series.items()}
        if self.items is not None and len(self.items):
            self.items.series = remap[self.items.series]

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class ServiceState:
    """All (rule, series) state of one service key."""

    service: str = ""
    max_time: dict[str, int] = field(default_factory=dict)
    floor: int = NO_TIME
    # the first event time of each signal: when watching this service began
    first_time: dict[str, int] = field(default_factory=dict)
    rules: dict[str, RuleState] = field(default_factory=dict)

    def watermark(self, signal: str, allowed_lateness_ms: int) -> int:
        """Event time before which ``signal`` records are late for this service."""
        seen = self.max_time.get(signal, NO_TIME)
        return max(seen - allowed_lateness_ms if seen > NO_TIME else NO_TIME, self.floor)

    def series_count(self) -> int:
        """Active (rule, series) pairs held."""
        return sum(len(r) for r in self.rules.values())

    def held_bytes(self) -> int:
        """About the memory this state takes: its arrays and its series' label tuples."""
        total = 0
        for rs in self.rules.values():
            total += sum(v.nbytes for v in rs.series.values()) + len(rs.keys) * KEY_BYTES
            if rs.items is not None:
                it = rs.items
                total += sum(a.nbytes for a in (it.series, it.key, it.stats, it.qn, it.qv, it.qw)
                             if a is not None)
        return total

    def to_bytes(self) -> bytes:
        """Compact binary form (header JSON + raw arrays), see :meth:`from_bytes`."""
        labels: dict[tuple[str, ...], int] = {}
        blobs: list[bytes] = []
        rules = []
        for name, rs in self.rules.items():
            arrays: list[tuple[str, np.ndarray]] = [("keys", np.fromiter(
                (labels.setdefault(k, len(labels)) for k in rs.keys), np.int32,
                count=len(rs.keys)))]
            arrays += [(f"s.{k}", v) for k, v in rs.series.items()]
            if rs.items is not None:
                it = rs.items
                arrays += [("i.series", it.series.astype(np.int32)), ("i.key", it.key),
                           ("i.stats", it.stats)]
                if it.qn is not None:
                    arrays += [("i.qn", it.qn.astype(np.int32)), ("i.qv", it.qv),
                               ("i.qw", it.qw)]
            specs = []
            for key, arr in arrays:
                arr = np.ascontiguousarray(arr)
                specs.append([key, arr.dtype.str, list(arr.shape)])
                blobs.append(arr.tobytes())
            rules.append([name, rs.digest, rs.until, rs.items is not None, specs,
                          rs.began])
        header = orjson.dumps({"service": self.service, "max": self.max_time,
                               "floor": self.floor, "first": self.first_time,
                               "labels": [list(k) for k in labels],
                               "rules": rules})
        body = struct.pack("<I", len(header)) + header + b"".join(blobs)
        packed = pack(body)  # zstd: a state is written at nearly every step
        if len(packed) < len(body):
            return MAGIC + b"s" + packed
        return MAGIC + b"r" + body

    @classmethod
    def from_bytes(cls, data: bytes) -> ServiceState:
        """Read :meth:`to_bytes` output; raises RuleStateError on anything else."""
        if data[:4] != MAGIC or data[4:5] not in (b"s", b"z", b"r"):
            raise RuleStateError("not a tocsin detector state (bad magic)")
        try:
            kind = data[4:5]
            body = (unpack(data[5:]) if kind == b"s"  # zstd
                    else zlib.decompress(data[5:]) if kind == b"z"  # written before zstd
                    else data[5:])
            (size,) = struct.unpack_from("<I", body)
            head = orjson.loads(body[4:4 + size])
            offset = 4 + size
            labels = [tuple(k) for k in head["labels"]]
            state = cls(head["service"], {k: int(v) for k, v in head["max"].items()},
                        int(head["floor"]),
                        {k: int(v) for k, v in head.get("first", {}).items()})
            for entry in head["rules"]:
                name, digest, until, has_items, specs = entry[:5]
                began = int(entry[5]) if len(entry) > 5 else 0
                arrays: dict[str, np.ndarray] = {}
                for key, dtype, shape in specs:
                    count = int(np.prod(shape)) if shape else 1
                    arr = np.frombuffer(body, dtype=np.dtype(dtype), count=count,
                                        offset=offset).reshape(shape).copy()
                    offset += arr.nbytes
                    arrays[key] = arr
                keys = [labels[i] for i in arrays.pop("keys").tolist()]
                series = {k[2:]: v for k, v in arrays.items() if k.startswith("s.")}
                for col, (dtype, default) in SERIES_COLUMNS.items():
                    if col not in series:  # a state written before the column existed
                        series[col] = np.full(len(keys), _UPGRADE.get(col, default),
                                              dtype=dtype)
                items = None
                if has_items:
                    items = Items(arrays["i.series"].astype(np.int64), arrays["i.key"],
                                  arrays["i.stats"])
                    if "i.qn" in arrays:
                        items.qn = arrays["i.qn"].astype(np.int64)
                        items.qv, items.qw = arrays["i.qv"], arrays["i.qw"]
                rs = RuleState(digest, keys, series, items, int(until), began)
                rs.index = {k: i for i, k in enumerate(keys)}
                state.rules[name] = rs
        except (ValueError, KeyError, TypeError, IndexError, struct.error, zlib.error,
                orjson.JSONDecodeError, PackingError) as exc:
            raise RuleStateError(f"corrupt detector state: {exc}") from exc
        return state
