"""``read_arrow``: Tocsin's own reads as Arrow on the read-only session, on every
in-process backend: text as strings, the read limits applied, nothing writable."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipeline.backtest.stored import StoredTelemetry
from pipeline.errors import StoreError
from pipeline.store import ReadLimits
from tests.store_backends import IN_PROCESS, NOW, close_backend, metric_batch, open_backend

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", IN_PROCESS)
def test_read_arrow_is_typed_bounded_and_read_only(kind, tmp_path):
    store = open_backend(kind, tmp_path, limits=ReadLimits(max_result_rows=50))
    try:
        store.ensure_schema()
        store.insert_arrow("metrics", metric_batch(30).to_arrow())
        answer = store.read_arrow("SELECT service, value FROM tocsin.metrics ORDER BY value")
        assert answer.num_rows == 30
        service = answer.column("service").type
        assert pa.types.is_string(service) or pa.types.is_dictionary(service)
        chunks = list(StoredTelemetry(store.read_arrow, "tocsin", ("s1",), max_rows=4)
                      .chunks(NOW - 120_000, NOW, 60_000))
        assert sum(c.table.num_rows for c in chunks) == 10
        assert all(c.table.num_rows <= 4 for c in chunks)
        assert {s for c in chunks for s in c.table.column("service").to_pylist()} == {"s1"}
        with pytest.raises(StoreError):
            store.read_arrow("SELECT number FROM system.numbers LIMIT 100")  # over 50 rows
        with pytest.raises(StoreError):
            store.read_arrow("INSERT INTO tocsin.feedback (problem_id) VALUES ('x')")
    finally:
        close_backend(store)
