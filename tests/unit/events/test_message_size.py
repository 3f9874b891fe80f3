"""Every message Tocsin writes fits kafka.max_message_bytes: framing, dead letters,
detections, alerts and the settings and topic configs that carry the limit."""

from __future__ import annotations

import random
from dataclasses import replace

import orjson
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from pipeline.correlate import Member, alert_envelope, alert_message
from pipeline.errors import SettingsError
from pipeline.events.deadletter import (
    MAX_REASON_BYTES,
    TRUNCATED_HEADER,
    deadletter_message,
    fit_payload,
)
from pipeline.events.detection import MAX_TRIMMED_TEXT, detection_message
from pipeline.events.schema import RawMessage, Rejection
from pipeline.events.sizes import MessageTooLarge, framing_bytes, truncate, value_budget
from pipeline.kafka.transport import too_small_topics, topic_configs
from pipeline.settings import load_settings
from tests.unit.correlate.support import T0, Run, det

LIMIT = 1_048_576


def kafka_size(key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> int:
    """What aiokafka checks against max_request_size (an upper bound of the batch)."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)



def test_framing_is_never_below_what_kafka_counts():
    rng = random.Random(5)
    for _ in range(300):
        key = rng.randbytes(rng.choice([0, 1, 127, 128, 5000]))
        value = rng.randbytes(rng.choice([0, 1, 200, 70_000]))
        headers = [(f"h{i}" * rng.randint(1, 70), rng.randbytes(rng.randint(0, 300)))
                   for i in range(rng.randint(0, 6))]
        assert framing_bytes(key, headers) + len(value) >= kafka_size(key, value, headers)


def test_a_value_of_exactly_the_budget_fits_the_limit():
    key, headers = b"orders", [("tocsin.reason", b"x" * 300)]
    budget = value_budget(LIMIT, key, headers)
    assert kafka_size(key, b"v" * budget, headers) <= LIMIT
    assert truncate(b"v" * (budget + 10), budget) == b"v" * budget
    with pytest.raises(MessageTooLarge, match="key and headers take"):
        value_budget(100, b"k" * 200)


def rejection(payload: bytes, reason: str = "malformed JSON: unexpected character") -> Rejection:
    return Rejection(RawMessage("tocsin.logs", 2, 41, payload), -1, reason, payload)


def test_a_dead_letter_that_fits_goes_as_it_came():
    key, value, headers = deadletter_message(rejection(b"{oops"), LIMIT)
    assert key == b"tocsin.logs/2/41/-1" and value == b"{oops"
    assert TRUNCATED_HEADER not in dict(headers)


def test_an_oversized_dead_letter_is_cut_to_fit_and_says_how_big_it_was():
    payload = b"x" * (3 * LIMIT)
    key, value, headers = deadletter_message(rejection(payload), LIMIT)
    assert kafka_size(key, value, headers) <= LIMIT
    assert payload.startswith(value) and len(value) > LIMIT - 1000
    assert dict(headers)[TRUNCATED_HEADER] == str(3 * LIMIT).encode()
    assert dict(headers)["tocsin.reason"].startswith(b"malformed JSON")


def test_a_huge_reason_is_cut_too():
    key, value, headers = deadletter_message(rejection(b"{}", "bad " + "é" * LIMIT), LIMIT)
    reason = dict(headers)["tocsin.reason"]
    assert len(reason) <= MAX_REASON_BYTES and reason.endswith(b"...")
    reason.decode()  # still UTF-8: not cut inside a character
    assert kafka_size(key, value, headers) <= LIMIT and value == b"{}"


def test_fit_payload_keeps_the_headers_given():
    headers = [("tocsin.reason", b"r")]
    value, out = fit_payload(b"k", b"z" * 200_000, headers, 65_536)
    assert out[:1] == headers and out[1] == (TRUNCATED_HEADER, b"200000")
    assert kafka_size(b"k", value, out) <= 65_536


def test_a_detection_over_the_limit_loses_its_evidence_and_long_texts_only():
    d = det("log_pattern", "orders", T0, labels={"pattern": "p" * 5000},
            evidence={"samples": ["line " * 100] * 3000})
    assert len(d.to_json()) > LIMIT
    small = orjson.loads(detection_message(d, LIMIT))
    assert small["evidence"] == {"truncated": True, "bytes": len(d.to_json())}
    assert small["id"] == d.id and small["detector"] == d.detector
    assert len(small["labels"]["pattern"]) == MAX_TRIMMED_TEXT
    assert small["labels"]["service.name"] == "orders"
    fits = det("cpu", "orders", T0)
    assert detection_message(fits, 65_536) == fits.to_json()
    many = replace(d, labels={f"k{i}": "v" * 1000 for i in range(2000)})
    with pytest.raises(MessageTooLarge, match="even trimmed"):
        detection_message(many, LIMIT)


def big_problem_decision(members: int):
    run = Run(group_wait_ms=0, resolve_hold_ms=0)
    opened = run.feed([det("error_rate_above_5pct", "orders", T0)])[0]
    member = opened.problem.members[0]
    crowd = tuple(replace(member, key=f"{member.key}/{i}", title="t" * 200,
                          labels={"pod": f"orders-{i:06d}"}) for i in range(members))
    return replace(opened, problem=replace(opened.problem, members=crowd))


def test_an_alert_of_a_huge_problem_keeps_its_first_members_and_counts_them_all():
    decision = big_problem_decision(8000)
    full = alert_envelope(decision)
    assert len(full) > LIMIT
    value = alert_message(decision, LIMIT)
    assert len(value) <= LIMIT
    event = orjson.loads(value)
    data = event["data"]
    assert data["truncated"] == {"members": 8000, "detection_ids": 1, "bytes": len(full)}
    assert 0 < len(data["members"]) < 8000
    assert data["members"][0]["key"] == decision.problem.members[0].key
    assert event["id"] == orjson.loads(full)["id"] and data["root_causes"]
    small = big_problem_decision(3)
    assert alert_message(small, LIMIT) == alert_envelope(small)
    assert isinstance(decision.problem.members[0], Member)


def test_max_message_bytes_setting_has_a_floor_and_reaches_every_topic():
    settings = load_settings(environ={"TOCSIN_KAFKA_MAX_MESSAGE_BYTES": "2097152"})
    assert settings.kafka.max_message_bytes == 2_097_152
    configs = topic_configs(settings)
    t = settings.topics
    for name in (t.metrics, t.logs, t.traces, t.detections, t.alerts, t.deadletter,
                 t.by_service, t.control, "tocsin-correlation-state-changelog",
                 "tocsin-rules-state-changelog", "tocsin-models-state-changelog"):
        assert configs[name]["max.message.bytes"] == "2097152", name
    assert configs["tocsin-rules-state-changelog"]["cleanup.policy"] == "compact"
    assert load_settings(environ={}).kafka.max_message_bytes == 1_048_576
    with pytest.raises(SettingsError, match="kafka.max_message_bytes .*at least 65536, "
                       "got 1000"):
        load_settings(environ={"TOCSIN_KAFKA_MAX_MESSAGE_BYTES": "1000"})


def test_existing_topics_with_a_smaller_limit_are_named():
    assert too_small_topics({"a": 2_000_000, "b": 500_000, "c": LIMIT}, LIMIT) == [
        f"topic b takes messages of at most 500000 bytes (max.message.bytes), less than "
        f"kafka.max_message_bytes ({LIMIT})"]
