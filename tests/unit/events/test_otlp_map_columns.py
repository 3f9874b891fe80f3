"""Map columns built and taken by the C extension equal Arrow's own.

The attribute map columns of OTLP rows are built from dicts (``shared_string_maps``) and
taken per row (``take_maps``, and once per batch for the C path's chunks, ``MapRows``):
the C extension copies the buffers itself; these must be the arrays Arrow builds and
takes, including empty maps and strings, non-ASCII text, sliced inputs, and falling back
to Arrow for what it does not take.
"""

from __future__ import annotations

import random
from itertools import chain

import numpy as np
import pyarrow as pa
import pytest

from pipeline.events import otlp_rows
from pipeline.events.otlp_rows import MapRows, _map_column, shared_string_maps, take_maps

pytest.importorskip("pipeline.events._otlpwire",
                    reason="the C extension is not built (no C compiler?)")

TEXTS = ["", "a", "http.route", "/orders/{id}", "é中😀", "x" * 300, "GET"]


def arrow_maps(dicts: list[dict[str, str]]) -> pa.MapArray:
    """What Arrow builds from the same dicts (no C)."""
    offsets = np.zeros(len(dicts) + 1, np.int32)
    np.cumsum([len(d) for d in dicts], out=offsets[1:])
    return pa.MapArray.from_arrays(
        pa.array(offsets), pa.array(list(chain.from_iterable(dicts)), pa.string()),
        pa.array(list(chain.from_iterable(d.values() for d in dicts)), pa.string()))


def random_dicts(rng: random.Random, n: int) -> list[dict[str, str]]:
    return [{rng.choice(TEXTS) + str(k): rng.choice(TEXTS) for k in range(rng.randint(0, 4))}
            for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_built_and_taken_as_arrow_does(seed: int) -> None:
    rng = random.Random(seed)
    unique = random_dicts(rng, rng.randint(1, 30))
    rows = [rng.choice(unique) for _ in range(rng.randint(0, 400))]  # shared dict objects
    built = shared_string_maps(rows)
    assert built.equals(arrow_maps(rows))
    assert built.to_pylist() == [list(d.items()) for d in rows]
    maps = arrow_maps(unique)
    index = np.asarray([rng.randrange(len(unique)) for _ in range(500)], np.int64)
    assert take_maps(maps, index).equals(maps.take(pa.array(index)))
    # a sliced array (offsets not from 0) is taken by Arrow
    sliced = maps.slice(1)
    if len(sliced):
        assert take_maps(sliced, index % len(sliced)).equals(
            sliced.take(pa.array(index % len(sliced))))
    # chunks' rows taken once for the batch
    parts = [MapRows(maps, index[:200]), MapRows(arrow_maps(unique[:1]), np.zeros(3, np.int64)),
             MapRows(maps, index[200:])]
    want = pa.concat_arrays([maps.take(pa.array(index[:200])),
                             arrow_maps(unique[:1]).take(pa.array([0, 0, 0])),
                             maps.take(pa.array(index[200:]))])
    assert _map_column(parts).equals(want)
    assert _map_column([parts[0], rows]).equals(
        pa.concat_arrays([maps.take(pa.array(index[:200])), arrow_maps(rows)]))


def test_what_the_extension_refuses_is_built_by_arrow(monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    assert shared_string_maps([{"a": "1"}, {}]).equals(arrow_maps([{"a": "1"}, {}]))
    with pytest.raises(TypeError):  # not str: refused by the extension, then by Arrow
        shared_string_maps([{"a": 1}])
    with pytest.raises(IndexError):
        take_maps(arrow_maps([{"a": "1"}]), np.asarray([1]))
    monkeypatch.setattr(otlp_rows, "_otlpwire", None)  # built without a compiler
    rows = [{"k": "v"}, {"k": "w", "x": ""}]
    assert shared_string_maps(rows).equals(arrow_maps(rows))
    assert take_maps(arrow_maps(rows), np.asarray([1, 1, 0])).to_pylist() == \
        [[("k", "w"), ("x", "")], [("k", "w"), ("x", "")], [("k", "v")]]
