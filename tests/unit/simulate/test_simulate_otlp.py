"""The simulator's OTLP output decodes to the rows its JSON output gives."""

from __future__ import annotations

import orjson
import pytest

from pipeline.events.codec import decode_values
from pipeline.events.otlp import decode_otlp_values
from pipeline.events.schema import RecordKind
from pipeline.simulate import load_system, simulate, tick_wire
from pipeline.simulate.otlp import otlp_messages

START_MS = 1_718_000_000_000


def comparable(batch) -> list[dict]:
    rows = batch.to_arrow().drop_columns(["event_id"]).to_pylist()
    for row in rows:
        row["attributes"] = sorted(row["attributes"])
        if "duration_ms" in row:
            row["duration_ms"] = round(row["duration_ms"], 6)
    return sorted(rows, key=repr)


@pytest.mark.parametrize("fmt", ["otlp-proto", "otlp-json"])
def test_otlp_and_json_of_one_simulation_store_the_same_rows(fmt):
    sim = simulate(load_system(), start_ms=START_MS, duration_ms=30_000, seed=3)
    now_ms = START_MS + 60_000
    wire: dict[RecordKind, list[bytes]] = {kind: [] for kind in RecordKind}
    for tick in sim:
        for kind, records in tick_wire(tick).items():
            wire[kind].extend(orjson.dumps(r) for r in records)
    messages: dict[RecordKind, list[bytes]] = {kind: [] for kind in RecordKind}
    counts: dict[RecordKind, int] = {kind: 0 for kind in RecordKind}
    for kind, _, value, n in otlp_messages(sim, fmt, records_per_message=50):
        messages[kind].append(value)
        counts[kind] += n
    for kind in RecordKind:
        expected = decode_values(kind, wire[kind], now_ms)
        got = decode_otlp_values(kind, messages[kind], now_ms)
        assert got.rejections == [] and counts[kind] == len(expected) == len(got) > 0
        assert comparable(got) == comparable(expected), kind
