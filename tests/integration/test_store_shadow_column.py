"""A store created before the shadow flag gains it at start-up, in its key: a shadow
detection with the id of a current one is kept beside it, never replacing it."""

from __future__ import annotations

import pytest

from pipeline.agents.detect import shadow_table
from pipeline.events.detection import detections_table
from pipeline.store.ddl import schema_statements
from tests.store_backends import IN_PROCESS, close_backend, open_backend
from tests.unit.correlate.support import T0, det

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", IN_PROCESS)
def test_old_store_gains_the_shadow_flag_in_its_key(kind, tmp_path):
    store = open_backend(kind, tmp_path)
    try:
        old = [s.replace("    shadow           Bool  -- raised by a candidate running in "
                         "shadow (never correlated)\n", "").replace(", shadow)", ")")
               .replace("ingested_at      DateTime64(3, 'UTC') DEFAULT now64(3),",
                        "ingested_at      DateTime64(3, 'UTC') DEFAULT now64(3)")
               for s in schema_statements("tocsin", 0) if "ALTER" not in s]
        for statement in old:
            store.query(statement)
        assert "shadow" not in str(store.query("DESCRIBE TABLE tocsin.detections").rows)
        current = det("high-error-rate", "orders", T0)
        store.insert_arrow("detections", detections_table([current]))
        store.ensure_schema()
        store.ensure_schema()  # idempotent
        store.insert_arrow("detections", shadow_table([current]))
        store.insert_arrow("detections", detections_table([current]))  # a replay collapses
        rows = store.query("SELECT id, shadow FROM tocsin.detections ORDER BY shadow").rows
        assert rows == [(current.id, False), (current.id, True)]
    finally:
        close_backend(store)
