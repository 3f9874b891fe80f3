"""What the ingest counters count beyond stored and rejected: empty arrays, old records."""

from __future__ import annotations

import orjson

from pipeline.events.codec import decode_values
from pipeline.events.schema import RecordKind
from pipeline.ingest.step import IngestCounters, older_than_ttl

NOW = 1_764_000_000_000
DAY_MS = 86_400_000


def spans_at(*starts: int):
    spans = [{"trace_id": "1" * 32, "span_id": f"{i:016x}", "service.name": "api",
              "name": "op", "start": start, "duration_ms": 1.0}
             for i, start in enumerate(starts)]
    return decode_values(RecordKind.SPAN, [orjson.dumps(spans)], NOW)


def test_records_older_than_the_ttl_are_counted_with_the_oldest_time():
    batch = spans_at(NOW - 31 * DAY_MS, NOW - 30 * DAY_MS, NOW - 29 * DAY_MS,
                     NOW - 45 * DAY_MS, NOW)
    assert older_than_ttl(batch, NOW, ttl_days=30) == (2, NOW - 45 * DAY_MS)
    assert older_than_ttl(batch, NOW, ttl_days=60) == (0, 0)


def test_no_ttl_means_nothing_is_too_old():
    batch = spans_at(NOW - 3000 * DAY_MS)
    assert older_than_ttl(batch, NOW, ttl_days=0) == (0, 0)
    assert older_than_ttl(spans_at(), NOW, ttl_days=1) == (0, 0)


def test_counters_keep_every_kind_they_saw():
    counters = IngestCounters()
    counters.add(RecordKind.METRIC, messages=3, stored=10, rejected=1, empty_messages=2)
    counters.add(RecordKind.METRIC, messages=1, stored=1, rejected=0, older_than_ttl=1)
    counters.add(RecordKind.LOG, messages=1, stored=0, rejected=0, empty_messages=1)
    assert counters.empty_messages == {"metric": 2, "log": 1}
    assert counters.older_than_ttl == {"metric": 1, "log": 0}
    assert counters.messages == {"metric": 4, "log": 1}
