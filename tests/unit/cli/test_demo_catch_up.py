"""The demo scores a run only once the worker has processed it: it waits while anything
moves and says so when nothing has for the stall bound."""

from pipeline.cli.demo import CatchUp

END, LATENESS = 10 * 60_000, 60_000


def status(detect_ms: int, correlate_ms: int = -1, stored: int = 0) -> dict:
    return {"detect": {"watermark_ms": detect_ms}, "correlate": {"watermark_ms": correlate_ms},
            "stored": {"metric": stored}}


def test_done_once_detectors_and_correlator_pass_the_end():
    catch_up = CatchUp(END, LATENESS, stall_s=60)
    assert catch_up.observe(status(END - LATENESS, END - LATENESS), 0.0) == "done"


def test_a_slow_worker_is_waited_for_as_long_as_it_moves():
    catch_up = CatchUp(END, LATENESS, stall_s=60)
    # an hour of wall time, the watermark creeping forward every 50 s: never stalled
    for step in range(72):
        state = catch_up.observe(status(step * 1_000), step * 50.0)
        assert state == "waiting"
    assert catch_up.behind_min(status(0)) == (END - LATENESS) / 60_000


def test_stored_rows_moving_count_as_progress_before_any_detection():
    catch_up = CatchUp(END, LATENESS, stall_s=60)
    assert catch_up.observe(status(-1, stored=10), 0.0) == "waiting"
    assert catch_up.observe(status(-1, stored=20), 59.0) == "waiting"
    assert catch_up.observe(status(-1, stored=30), 118.0) == "waiting"


def test_nothing_moving_for_the_stall_bound_is_stalled():
    catch_up = CatchUp(END, LATENESS, stall_s=60)
    assert catch_up.observe(status(5 * 60_000, stored=100), 0.0) == "waiting"
    assert catch_up.observe(status(5 * 60_000, stored=100), 59.0) == "waiting"
    assert catch_up.observe(status(5 * 60_000, stored=100), 60.0) == "stalled"
    assert catch_up.behind_min(status(5 * 60_000)) == 4.0
