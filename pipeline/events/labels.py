"""A text column that carries its own factorisation.

The detectors group and select records by label values (service, host, metric name ...)
and factorise each label column of a slice: distinct values and each record's code.
Doing that in every detector was a large part of a live detect step of small slices; it
is done once while the slice is read (:func:`labels_of`: by Arrow in C for large
columns, by one dict pass for small ones, where Arrow's fixed cost per call dominates),
and :class:`Labels` hands both forms on: it *is* the list of strings every reader takes,
with ``uniques`` and ``codes`` beside it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


class Labels(list):
    """A list of strings (one per record) with its factorisation: ``uniques`` (distinct
    values in first-seen order) and ``codes`` (each record's index into them, int64).

    Treat it as read-only: the factorisation is not updated when the list changes.
    """

    __slots__ = ("uniques", "codes")

    def __init__(self, uniques: list[str], codes: np.ndarray,
                 values: list[str] | None = None) -> None:
        super().__init__(np.array(uniques, dtype=object)[codes].tolist()
                         if values is None else values)
        self.uniques = uniques
        self.codes = codes


SMALL_COLUMN = 256
"""Columns of at most this many records are factorised in Python: Arrow's dictionary
encoding has a fixed cost of about 25 us, three times Python's for a live slice of 50."""


def labels_of(column: pa.Array) -> list[str]:
    """An Arrow string column as a list of ``str``: :class:`Labels` when it has no nulls
    (factorised in Python up to :data:`SMALL_COLUMN` records, by Arrow beyond), a plain
    list otherwise.

    >>> col = labels_of(pa.array(["b", "a", "b"]))
    >>> col, col.uniques, col.codes.tolist()
    (['b', 'a', 'b'], ['b', 'a'], [0, 1, 0])
    >>> big = labels_of(pa.array(["b", "a", "b"] * 100))  # factorised by Arrow
    >>> big.uniques, big.codes[:3].tolist(), big[:3]
    (['b', 'a'], [0, 1, 0], ['b', 'a', 'b'])
    """
    if column.null_count or not (pa.types.is_string(column.type)
                                 or pa.types.is_large_string(column.type)):
        return column.to_pylist()
    if len(column) <= SMALL_COLUMN:
        values = column.to_pylist()
        first: dict[str, int] = {}
        codes = np.fromiter((first.setdefault(v, len(first)) for v in values), np.int64,
                            count=len(values))
        return Labels(list(first), codes, values)
    encoded = column.dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return Labels(encoded.dictionary.to_pylist(), codes)
