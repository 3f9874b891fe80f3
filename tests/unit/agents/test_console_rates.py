"""The status page's rates: counter increases per second over the last minute."""

from __future__ import annotations

from pipeline.agents.console import Rates


def test_rates_are_the_increase_over_the_samples_in_the_window():
    rates = Rates(window_s=60.0)
    assert rates.rates() == {}
    rates.observe(0.0, {"stored": 0.0})
    rates.observe(10.0, {"stored": 50.0})
    assert rates.rates() == {"stored": 5.0}
    for t in range(20, 200, 10):
        rates.observe(float(t), {"stored": 100.0 + t})
    # only the last minute counts (plus the sample that opens it)
    assert rates.samples[0][0] >= 190.0 - 70.0
    assert rates.rates() == {"stored": 1.0}


def test_a_counter_that_went_back_counts_as_no_increase():
    rates = Rates()
    rates.observe(0.0, {"stored": 10.0})
    rates.observe(5.0, {"stored": 2.0})
    assert rates.rates() == {"stored": 0.0}
