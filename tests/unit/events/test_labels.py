"""Text columns factorised by Arrow as a forwarded slice is read."""

from __future__ import annotations

import random

import pyarrow as pa

from detectors.columns import factorize
from pipeline.events.labels import Labels, labels_of
from pipeline.events.slices import read_slice, split_by_service


def test_labels_are_the_strings_with_the_factorisation_of_a_python_walk() -> None:
    rng = random.Random(5)
    values = [rng.choice(["cpu", "mem", "", "disk.io", "é€"]) for _ in range(500)]
    column = labels_of(pa.array(values))
    assert isinstance(column, Labels)
    assert column == values
    uniques, codes = factorize(values)  # the per-record walk, on a plain list
    assert column.uniques == uniques
    assert column.codes.tolist() == codes.tolist()
    assert labels_of(pa.array([], pa.string())) == []


def test_a_column_with_nulls_stays_a_plain_list() -> None:
    column = labels_of(pa.array(["a", None, "a"]))
    assert type(column) is list
    assert column == ["a", None, "a"]


def test_a_forwarded_slice_reads_back_with_factorised_text() -> None:
    table = pa.table({"time": pa.array([1, 2, 3], pa.timestamp("ms", tz="UTC")),
                      "service": ["api", "api", "api"], "host": ["h2", "h1", "h2"],
                      "name": ["cpu", "cpu", "mem"], "value": [1.0, 2.0, 3.0]})
    forwarded = split_by_service("metrics", table, 1 << 20)
    [(key, value)] = forwarded.messages
    piece = read_slice(key, value)
    assert piece.columns["host"] == ["h2", "h1", "h2"]
    assert piece.columns["host"].uniques == ["h2", "h1"]
    assert piece.columns["name"].codes.tolist() == [0, 0, 1]
    assert piece.columns["time"].tolist() == [1, 2, 3]
