"""The one duration parser, and how each caller turns its refusal into its own error."""

from __future__ import annotations

import pytest

import detectors
from pipeline.errors import SettingsError
from pipeline.events.durations import DurationError, format_duration, parse_duration_ms
from pipeline.settings import load_settings
from pipeline.simulate import ScenarioError, parse_schedule
from pipeline.simulate import parse_duration_ms as simulate_duration_ms


@pytest.mark.parametrize(("text", "ms"), [
    ("500ms", 500), ("30s", 30_000), ("5m", 300_000), ("4h", 14_400_000),
    ("2d", 172_800_000), ("0s", 0), ("1h30m", 5_400_000), ("1d2h3m4s5ms", 93_784_005),
    ("1m1ms", 60_001), (" 5m ", 300_000), ("5 m", 300_000), ("1h 30m", 5_400_000),
    (0, 0), (0.0, 0),
])
def test_valid_forms(text: object, ms: int) -> None:
    assert parse_duration_ms(text) == ms
    assert parse_duration_ms(text, ints_as_ms=True) == ms


@pytest.mark.parametrize("text", [
    "", " ", "5", "1500", "5 minutes", "5M", "1w", "-1m", "1.5h", "h", "m5", "1h-30m",
    "1h,30m", 30, -5, 1.5, True, False, None, ["5m"],
])
def test_invalid_forms_name_what_was_expected_and_what_came(text: object) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration_ms(text)
    assert str(info.value) == f"expected a duration like 30s, 5m, 1h or 1h30m, got {text!r}"
    assert info.value.value == text
    assert isinstance(info.value, ValueError)


def test_integers_are_milliseconds_only_when_asked_and_pass_unchecked() -> None:
    assert parse_duration_ms(1500, ints_as_ms=True) == 1500
    assert parse_duration_ms(-5, ints_as_ms=True) == -5  # the range is the caller's check
    for bad in ("1500", 1.5, True):
        with pytest.raises(DurationError, match="^expected milliseconds or a duration like"):
            parse_duration_ms(bad, ints_as_ms=True)


@pytest.mark.parametrize(("ms", "text"), [
    (0, "0s"), (-1, "0s"), (500, "500ms"), (90_000, "1m30s"), (5_400_000, "1h30m"),
    (86_400_000, "1d"), (93_784_005, "1d2h3m4s5ms"),
])
def test_format_is_the_shortest_form_and_parses_back(ms: int, text: str) -> None:
    assert format_duration(ms) == text
    if ms > 0:
        assert parse_duration_ms(text) == ms


def test_every_caller_accepts_the_same_forms() -> None:
    for text in ("500ms", "10m", "1h30m", "1h 30m"):
        ms = parse_duration_ms(text)
        assert simulate_duration_ms(text) == settings_duration_ms(text) == ms
        assert detectors.parse_duration(text) == ms
    assert parse_schedule("db_outage@1h30m+1m30s", 0)[0].start_ms == 5_400_000


def settings_duration_ms(text: str) -> int:
    """A duration as a ``*_ms`` setting from the environment reads it."""
    return load_settings(environ={"TOCSIN_CORRELATE_GROUP_WAIT_MS": text}).correlate.group_wait_ms


def test_each_caller_raises_its_own_error_naming_the_value() -> None:
    with pytest.raises(ScenarioError, match=r"^cannot parse duration '10 mins'; expected a "
                                            r"duration like 30s, 5m, 1h or 1h30m$"):
        simulate_duration_ms("10 mins")
    with pytest.raises(ScenarioError, match=r"cannot parse duration '10x'"):
        parse_schedule("db_outage@10x+5m", 0)
    with pytest.raises(SettingsError, match=r"^setting correlate\.group_wait_ms \(from "
                                            r"TOCSIN_CORRELATE_GROUP_WAIT_MS\): expected "
                                            r"milliseconds or a duration like .*, got 'soon'$"):
        settings_duration_ms("soon")
    with pytest.raises(SettingsError, match=r"setting correlate\.group_wait_ms: expected an "
                                            r"integer >= 0, got -5"):
        settings_duration_ms("-5")
    _, problems, _ = detectors.parse_rule_text(
        "rules:\n- {name: a, signal: metrics, for: 5 minutes}", "r.yaml")
    assert any("field 'for': expected a duration like 30s, 5m, 1h or 1h30m, got '5 minutes'"
               in problem for problem in problems), problems
