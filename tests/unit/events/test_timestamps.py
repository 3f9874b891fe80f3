"""Event times: any number or text maps to epoch ms or a reason, never to an exception."""

from __future__ import annotations

import pytest

from pipeline.events.times import format_ms, is_datetime_ms, number_to_ms

NOW = 1_764_000_000_000


@pytest.mark.parametrize("value, ms", [
    (NOW // 1000, NOW), (NOW, NOW), (NOW * 1000, NOW), (NOW * 1_000_000, NOW),
    (NOW / 1000, NOW), (2**63 - 1, (2**63 - 1) // 1_000_000),
])
def test_numbers_of_every_unit(value, ms):
    assert number_to_ms(value) == ms


@pytest.mark.parametrize("value", [1e300, -1e300, 2**70, -(2**70), 10**400, -(10**400),
                                   1.7976931348623157e308])
def test_huge_numbers_land_out_of_range_instead_of_wrapping(value):
    ms = number_to_ms(value)
    assert not is_datetime_ms(ms)
    assert (ms < 0) == (value < 0)


@pytest.mark.parametrize("value", [2**64 - 1, 2**65, -(2**63)])
def test_numbers_past_int64_keep_their_sign_and_size(value):
    ms = number_to_ms(value)
    assert (ms > NOW) if value > 0 else (ms < 0)


def test_format_ms_shows_what_a_datetime_cannot_hold():
    assert format_ms(NOW) == "2025-11-24T16:00:00.000Z"
    assert format_ms(-62_135_596_800_000) == "0001-01-01T00:00:00.000Z"
    assert format_ms(253_402_300_799_999) == "9999-12-31T23:59:59.999Z"
    assert format_ms(253_402_300_800_000) == "epoch ms 253402300800000"
    assert format_ms(-(2**62)) == f"epoch ms {-(2**62)}"
