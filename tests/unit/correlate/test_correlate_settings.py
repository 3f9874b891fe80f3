"""Correlator settings: defaults, validation with the field named, mapping input."""

from __future__ import annotations

import pytest

from pipeline.correlate import CorrelatorSettings, InhibitRule, parse_duration_ms
from pipeline.errors import SettingsError


def test_defaults_follow_alertmanager():
    s = CorrelatorSettings()
    assert (s.group_wait_ms, s.group_interval_ms, s.repeat_interval_ms) == (
        30_000, 300_000, 14_400_000)
    assert s.static_dependencies == {} and s.inhibit_rules == ()


@pytest.mark.parametrize("field, value, message", [
    ("group_wait_ms", -1, "correlator.group_wait_ms: expected an integer >= 0, got -1"),
    ("flap_threshold", 0, "correlator.flap_threshold: expected an integer >= 1"),
    ("escalate_spread", (5, 3), "correlator.escalate_spread: expected strictly increasing"),
    ("symptom_categories", ("weather",), "correlator.symptom_categories: expected categories"),
    ("static_dependencies", {"api": "orders"}, "correlator.static_dependencies.api"),
    ("resolve_timeout_ms", "5m", "correlator.resolve_timeout_ms: expected an integer"),
])
def test_bad_values_name_the_field(field, value, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        CorrelatorSettings(**{field: value})


def test_from_mapping_takes_durations_lists_and_rules():
    s = CorrelatorSettings.from_mapping({
        "group_wait_ms": "45s", "repeat_interval_ms": "1d", "escalate_after_ms": ["1h", "2h"],
        "static_dependencies": {"api": ["orders"]},
        "inhibit_rules": [{"source": ["severity=critical"], "target": ["severity=low"],
                           "equal": ["service"]}]})
    assert s.group_wait_ms == 45_000 and s.repeat_interval_ms == 86_400_000
    assert s.escalate_after_ms == (3_600_000, 7_200_000)
    assert s.static_dependencies == {"api": ("orders",)}
    assert isinstance(s.inhibit_rules[0], InhibitRule) and s.inhibit_rules[0].equal == ("service",)


def test_from_mapping_rejects_unknown_and_bad_entries():
    with pytest.raises(SettingsError, match="correlator.group_wiat_ms: unknown"):
        CorrelatorSettings.from_mapping({"group_wiat_ms": 1})
    with pytest.raises(SettingsError, match="correlator.reopen_window_ms: expected milli"):
        CorrelatorSettings.from_mapping({"reopen_window_ms": "soon"})
    with pytest.raises(SettingsError, match=r"inhibit_rules\[0\].source"):
        CorrelatorSettings.from_mapping({"inhibit_rules": [{"source": ["nope"]}]})


def test_parse_duration():
    assert [parse_duration_ms(v) for v in (250, "250ms", "2s", "3m", "4h", "1d")] == [
        250, 250, 2_000, 180_000, 14_400_000, 86_400_000]
