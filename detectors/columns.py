"""One service's records of one signal as columns, with cached per-label factorisation.

The engine receives the codec's columns (``pipeline.events.codec.decode_messages(...).columns``):
numpy arrays for times and numbers, lists of strings for text, and ``attributes`` as a
pyarrow ``MapArray`` or a list of dicts. :class:`Batch` gives every rule the same view and
factorises each label column once per batch, so matching a selector costs one test per
*distinct* value (a regex runs over the distinct metric names, not over every point).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.events.columns import SIGNALS, TIME_COLUMN
from pipeline.events.labels import Labels
from pipeline.events.schema import SEVERITY_NUMBER
from pipeline.events.units import factor

ATTRIBUTE_PREFIX = "attributes."
LABEL_COLUMNS: dict[str, dict[str, str]] = {
    "metrics": {"service": "service", "host": "host", "name": "name", "metric": "name",
                "unit": "unit"},
    "logs": {"service": "service", "host": "host", "severity": "severity_text"},
    "traces": {"service": "service", "host": "host", "name": "name", "operation": "name",
               "status": "status", "kind": "kind"},
}
"""Label names a selector or ``group_by`` may use per signal (besides ``attributes.<key>``)."""
SPAN_DURATION_UNIT = "ms"
"""Span values (``duration_ms``) are milliseconds."""


def canonical_label(signal: str, label: str) -> str:
    """The label's canonical name (``metric`` and ``operation`` are aliases of ``name``)."""
    if label.startswith(ATTRIBUTE_PREFIX):
        return label
    return "name" if label in ("metric", "operation") else label


def is_label(signal: str, label: str) -> bool:
    """Whether ``label`` names a column of ``signal`` or an attribute."""
    return (label in LABEL_COLUMNS[signal]
            or (label.startswith(ATTRIBUTE_PREFIX) and len(label) > len(ATTRIBUTE_PREFIX)))


def attribute_values(attributes: Any, key: str, n: int) -> list[str]:
    """The values of one attribute key per record (``""`` where absent).

    Accepts a pyarrow ``MapArray`` (as the codec builds it), a list of dicts, or ``None``.
    """
    if attributes is None:
        return [""] * n
    if isinstance(attributes, pa.ChunkedArray):
        attributes = attributes.combine_chunks()
    if isinstance(attributes, pa.Array):
        looked = pc.map_lookup(attributes, key, "first")
        return [("" if v is None else v) for v in looked.to_pylist()]
    return [("" if d is None else str(d.get(key, ""))) for d in attributes]


def factorize(values: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Distinct values (first-seen order) and each record's index into them (a
    :class:`~pipeline.events.labels.Labels` column gives its own: a forwarded slice's
    text is factorised as it is read)."""
    if isinstance(values, Labels):
        return values.uniques, values.codes
    seen: dict[str, int] = {}
    codes = np.fromiter((seen.setdefault(v, len(seen)) for v in values), dtype=np.int64,
                        count=len(values))
    return list(seen), codes


class Batch:
    """A view of one batch: event times, values and label columns, factorised lazily."""

    def __init__(self, signal: str, columns: Mapping[str, Any]) -> None:
        if signal not in SIGNALS:
            raise ValueError(f"signal must be one of {', '.join(SIGNALS)}, got {signal!r}")
        self.signal = signal
        self.columns = columns
        self.time = np.asarray(columns[TIME_COLUMN[signal]], dtype=np.int64)
        self.n = int(self.time.size)
        self._factors: dict[str, tuple[list[str], np.ndarray]] = {}
        self._groups: dict[tuple[str, ...], tuple[list[tuple[str, ...]], np.ndarray]] = {}
        self._units: dict[str, np.ndarray] = {}

    def labels(self, label: str) -> Sequence[str]:
        """The raw string values of a label column (or attribute) per record."""
        label = canonical_label(self.signal, label)
        if label.startswith(ATTRIBUTE_PREFIX):
            return attribute_values(self.columns.get("attributes"),
                                    label[len(ATTRIBUTE_PREFIX):], self.n)
        column = self.columns.get(LABEL_COLUMNS[self.signal][label])
        if column is None and label == "unit":  # records without units: compared as is
            return [""] * self.n
        return column if isinstance(column, list) else [str(v) for v in column]

    def attribute_at(self, key: str, rows: np.ndarray) -> list[str]:
        """One attribute's values (``""`` where absent) of some records only."""
        label = f"{ATTRIBUTE_PREFIX}{key}"
        if label in self._factors:  # already factorised for the whole batch
            uniques, codes = self._factors[label]
            return [uniques[c] for c in codes[rows].tolist()]
        attributes = self.columns.get("attributes")
        if attributes is None:
            return [""] * rows.size
        if isinstance(attributes, (pa.Array, pa.ChunkedArray)):
            return attribute_values(attributes.take(pa.array(rows, type=pa.int64())), key,
                                    rows.size)
        return attribute_values([attributes[i] for i in rows.tolist()], key, rows.size)

    def factor(self, label: str) -> tuple[list[str], np.ndarray]:
        """Distinct values of a label and the per-record codes (cached per batch)."""
        label = canonical_label(self.signal, label)
        if label not in self._factors:
            self._factors[label] = factorize(self.labels(label))
        return self._factors[label]

    def groups(self, labels: tuple[str, ...]) -> tuple[list[tuple[str, ...]], np.ndarray]:
        """Distinct label tuples over the batch and each record's index into them."""
        if labels not in self._groups:
            factors = [self.factor(label) for label in labels]
            if all(len(u) == 1 for u, _ in factors):
                keys = [tuple(u[0] for u, _ in factors)]
                self._groups[labels] = keys, np.zeros(self.n, np.int64)
            else:
                combined = np.zeros(self.n, np.int64)
                for uniques, codes in factors:
                    combined = combined * len(uniques) + codes
                distinct, inverse = np.unique(combined, return_inverse=True)
                parts, rest = [], distinct.copy()
                for uniques, _ in reversed(factors):
                    parts.append((rest % len(uniques)).tolist())
                    rest //= len(uniques)
                parts.reverse()
                keys = [tuple(f[0][p[i]] for f, p in zip(factors, parts, strict=True))
                        for i in range(distinct.size)]
                self._groups[labels] = keys, inverse.ravel()
        return self._groups[labels]

    def values(self) -> np.ndarray:
        """The numeric value per record: metric value, span duration (ms), 1.0 per log."""
        if self.signal == "metrics":
            return np.asarray(self.columns["value"], dtype=np.float64)
        if self.signal == "traces":
            return np.asarray(self.columns["duration_ms"], dtype=np.float64)
        return np.ones(self.n, dtype=np.float64)

    def unit_factors(self, unit: str) -> np.ndarray:
        """Per record, the factor that expresses its value in ``unit``: metrics by their
        ``unit`` column, span durations from ms; 1 where a unit is unknown (as is), NaN
        where it cannot convert (another dimension). Cached per batch and unit."""
        cached = self._units.get(unit)
        if cached is None:
            if self.signal == "metrics":
                uniques, codes = self.factor("unit")
                cached = np.array([factor(u, unit) for u in uniques], dtype=np.float64)[codes]
            elif self.signal == "traces":
                cached = np.full(self.n, factor(SPAN_DURATION_UNIT, unit))
            else:
                cached = np.ones(self.n)
            self._units[unit] = cached
        return cached

    def severity_number(self) -> np.ndarray:
        """OpenTelemetry severity numbers of log records (from ``severity_text`` when the
        columns carry no ``severity_number``)."""
        if "severity_number" in self.columns:
            return np.asarray(self.columns["severity_number"], dtype=np.int64)
        uniques, codes = self.factor("severity")
        numbers = np.array([SEVERITY_NUMBER.get(str(u).upper(), 0) for u in uniques],
                           dtype=np.int64)
        return numbers[codes]

    def bodies(self) -> Sequence[str]:
        """Log bodies."""
        return self.columns["body"]

    def first_service(self) -> str:
        """The service of the batch's first record (a batch holds one service)."""
        services = self.columns.get("service")
        return str(services[0]) if services is not None and len(services) else ""
