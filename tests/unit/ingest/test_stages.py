"""Stage timings: calls and seconds add up per stage, a raising block is counted too."""

from __future__ import annotations

import pytest

from pipeline.ingest.stages import StageTimes


def test_adds_up_per_stage_in_name_order() -> None:
    stages = StageTimes()
    stages.add("store", 0.5)
    stages.add("decode", 0.25)
    stages.add("store", 1.0)
    assert stages.to_wire() == {"decode": {"seconds": 0.25, "calls": 1},
                                "store": {"seconds": 1.5, "calls": 2}}


def test_a_block_that_raises_is_counted() -> None:
    stages = StageTimes()
    with pytest.raises(ValueError), stages.timed("decode"):
        raise ValueError("bad")
    with stages.timed("decode"):
        pass
    wire = stages.to_wire()
    assert wire["decode"]["calls"] == 2
    assert wire["decode"]["seconds"] >= 0.0
