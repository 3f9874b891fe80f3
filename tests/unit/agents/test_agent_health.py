"""Agent health records, injected fault specs and the batch runner's retry helpers."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.agents.batches import Backoff, BatchSteps
from pipeline.agents.health import AgentHealth, Health, OffsetRange, describe_error, offset_ranges
from pipeline.errors import SettingsError, StoreUnavailable
from pipeline.events.faults import Faults, InjectedFault, parse_faults


def test_offset_ranges_cover_each_partition_of_a_batch():
    ranges = offset_ranges([("m", 1, 7), ("m", 0, 3), ("m", 1, 5), ("l", 0, 9), ("m", 1, 6)])
    assert ranges == (OffsetRange("l", 0, 9, 9), OffsetRange("m", 0, 3, 3),
                      OffsetRange("m", 1, 5, 7))
    assert str(ranges[2]) == "m[1] offsets 5-7"


def test_an_agent_is_stuck_after_repeated_failures_of_one_batch():
    agent = AgentHealth("tocsin.ingest.metric", stuck_after=3)
    agent.started((OffsetRange("m", 0, 10, 19),))
    for attempt in range(1, 4):
        assert not agent.stuck
        agent.failed(f"StoreUnavailable: down ({attempt})", now_ms=1000 + attempt)
    assert agent.stuck and agent.consecutive_failures == 3 and agent.failures == 3
    wire = agent.to_wire()
    assert wire["stuck"] and wire["last_error"] == "StoreUnavailable: down (3)"
    assert wire["offsets"] == [{"topic": "m", "partition": 0, "first": 10, "last": 19}]
    agent.succeeded()
    assert not agent.stuck and agent.batches == 1 and agent.failures == 3


def test_health_lists_the_stuck_agents():
    health = Health(stuck_after=2)
    health.agent("b").failed("x", 1)
    health.agent("a").failed("x", 1)
    health.agent("a").failed("y", 2)
    assert [a.name for a in health.stuck()] == ["a"]
    assert set(health.to_wire()) == {"a", "b"}
    assert health.agent("a") is health.agent("a")


def test_a_given_up_or_crashed_batch_is_counted_and_no_longer_stuck():
    agent = AgentHealth("x", stuck_after=1)
    agent.failed("e", 1)
    agent.gave_up()
    assert (agent.given_up, agent.stuck) == (1, False)
    agent.crashed("CancelledError: restart", 2)
    assert (agent.crashes, agent.last_error) == (1, "CancelledError: restart")


def test_errors_are_described_on_one_escaped_line():
    text = describe_error(ValueError("bad\nvalue\x00 \u202e" + "x" * 1000))
    assert text.startswith("ValueError: bad\\nvalue\\x00 \\u202e")
    assert "\n" not in text and len(text) == 500


def test_fault_specs_fail_the_chosen_calls():
    faults = Faults(parse_faults("ingest.metric.after:raise:after=2:times=3, store.insert:"
                                 "raise:times=*"))
    outcomes = []
    for _ in range(7):
        try:
            faults.check("ingest.metric.after")
            outcomes.append("ok")
        except InjectedFault:
            outcomes.append("fail")
    assert outcomes == ["ok", "ok", "fail", "fail", "fail", "ok", "ok"]
    for _ in range(5):
        with pytest.raises(StoreUnavailable, match="injected fault at store.insert"):
            faults.check("store.insert", StoreUnavailable)
    faults.check("detect.after")  # no fault set there


def test_a_cancel_fault_cancels_the_task():
    faults = Faults(parse_faults("detect.after:cancel"))
    with pytest.raises(asyncio.CancelledError):
        faults.check("detect.after")
    faults.check("detect.after")


def test_a_delay_fault_waits_while_other_tasks_run():
    faults = Faults(parse_faults("consumer.seek:delay:seconds=0.2:after=1"))

    async def run() -> tuple[int, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.ensure_future(tick())
        await faults.wait("consumer.seek")  # the first call passes
        before = ticks
        await faults.wait("consumer.seek")
        during = ticks - before
        ticker.cancel()
        return before, during

    before, during = asyncio.run(run())
    assert before <= 1 and during >= 5  # the loop ran on while the call waited


def test_a_delay_fault_needs_an_awaited_check():
    faults = Faults(parse_faults("ingest.metric.after:delay"))
    with pytest.raises(SettingsError, match="cannot be delayed"):
        faults.check("ingest.metric.after")
    asyncio.run(faults.wait("detect.after"))  # no fault set there


def test_no_fault_variable_no_faults():
    assert Faults.from_env({}).specs == {}


@pytest.mark.parametrize("text", ["ingest.metric.after", "x:explode", "x:raise:after=two",
                                  "x:raise:every=2", ":raise", "x:raise:seconds=1",
                                  "x:delay:seconds=soon"])
def test_bad_fault_specs_are_refused(text):
    with pytest.raises(SettingsError, match="TOCSIN_TEST_FAULT"):
        parse_faults(text)


def test_backoff_doubles_up_to_its_cap_and_honours_a_hint():
    backoff = Backoff(first_s=0.5, max_s=4.0)
    assert [backoff.delay_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff.delay_s(1, hint_s=3.0) == 3.0
    assert backoff.delay_s(1, hint_s=60.0) == 4.0
    assert backoff.delay_s(10_000) == 4.0


def test_batch_steps_run_once_across_attempts():
    steps = BatchSteps()
    calls = []

    async def store() -> int:
        calls.append("store")
        return len(calls)

    async def attempt() -> int:
        stored = await steps.once("store", store)
        now = steps.value("now", lambda: len(calls) * 100)
        if len(calls) < 2:
            calls.append("failed after store")
            raise RuntimeError("forward failed")
        return stored + now

    with pytest.raises(RuntimeError):
        asyncio.run(attempt())
    assert asyncio.run(attempt()) == 1 + 100
    assert calls == ["store", "failed after store"]
