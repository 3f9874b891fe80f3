"""Several slices of one signal seen as one :class:`~detectors.columns.Batch`.

The rule engine evaluates all the slices of a detect step together
(:meth:`~detectors.engine.RuleEngine.process_many`): selectors, unit factors and values
are computed once over the records of every slice. :class:`ConcatBatch` factorises a
label by merging the slices' own factorisations (an Arrow slice brings its codes), and
keeps each slice's *local* codes: the series of a slice are numbered in the order its own
factorisation gives, as when the slice is evaluated alone. Other columns (attributes, log
bodies ...) are concatenated only when a rule reads them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from detectors.columns import Batch, canonical_label


class _Joined(Mapping):
    """The slices' columns, each concatenated on first access."""

    def __init__(self, parts: Sequence[Mapping[str, Any]]) -> None:
        self._parts = parts
        self._done: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._done:
            self._done[name] = concat_column([p[name] for p in self._parts])
        return self._done[name]

    def __contains__(self, name: object) -> bool:
        return all(name in p for p in self._parts)

    def __iter__(self) -> Iterator[str]:
        return iter([k for k in self._parts[0] if k in self])

    def __len__(self) -> int:
        return sum(1 for _ in self)


def concat_column(pieces: Sequence[Any]) -> Any:
    """One column from its pieces: numpy arrays, Arrow arrays or lists (kept as such)."""
    first = pieces[0]
    if isinstance(first, (pa.Array, pa.ChunkedArray)):
        return pa.concat_arrays([p.combine_chunks() if isinstance(p, pa.ChunkedArray) else p
                                 for p in pieces])
    if isinstance(first, list):
        out: list[Any] = []
        for p in pieces:
            out.extend(p)
        return out
    return np.concatenate([np.asarray(p) for p in pieces])


class ConcatBatch(Batch):
    """The records of several slices (``parts``, non-empty, same signal and columns) in
    order; ``offsets`` bound each part's records."""

    def __init__(self, signal: str, parts: Sequence[Batch]) -> None:
        super().__init__(signal, _Joined([p.columns for p in parts]))
        self.parts = list(parts)
        sizes = np.array([p.n for p in parts], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.part = np.repeat(np.arange(len(parts)), sizes)  # each record's part
        self._local: dict[str, np.ndarray] = {}
        self._pairs: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}

    def factor(self, label: str) -> tuple[list[str], np.ndarray]:
        """Distinct values over every part (first-seen order) and each record's code."""
        label = canonical_label(self.signal, label)
        if label not in self._factors:
            index: dict[Any, int] = {}
            maps, codes = [], []
            for part in self.parts:
                uniques, local = part.factor(label)
                maps.append(np.fromiter((index.setdefault(u, len(index)) for u in uniques),
                                        dtype=np.int64, count=len(uniques)))
                codes.append(local)
            sizes = np.array([m.size for m in maps], dtype=np.int64)
            shift = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            joined = np.concatenate(maps)[np.concatenate(codes) + shift[self.part]]
            self._factors[label] = list(index), joined
        return self._factors[label]

    def local_codes(self, label: str) -> np.ndarray:
        """Each record's code in its own part's factorisation of ``label``."""
        label = canonical_label(self.signal, label)
        if label not in self._local:
            self._local[label] = np.concatenate([p.factor(label)[1] for p in self.parts])
        return self._local[label]

    def series_pairs(self, labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Each record's (part, label tuple) pair, numbered in order of part then of the
        part's own codes (the order a part alone numbers its groups in), and one record
        of each pair."""
        if labels not in self._pairs:
            local = [self.local_codes(label) for label in labels]
            order = np.lexsort((*reversed(local), self.part))
            first = np.ones(self.n, dtype=bool)
            for column in (self.part, *local):
                ordered = column[order]
                first[1:] &= ordered[1:] == ordered[:-1]
            first[1:] = ~first[1:]
            pair = np.empty(self.n, dtype=np.int64)
            pair[order] = np.cumsum(first) - 1
            self._pairs[labels] = pair, order[first]
        return self._pairs[labels]
