"""The silences a worker holds are read from the correlation table, whose keys are
correlation scopes and, beside them, each scope's service-graph step state."""

from __future__ import annotations

from pipeline.agents.correlate import graph_state_key, held_silences
from pipeline.agents.tables import set_value
from pipeline.alerts.silences import Silence
from pipeline.correlate import CorrelationState
from pipeline.events.matchers import parse_matchers

T0 = 1_764_000_000_000


def test_silences_of_every_scope_and_not_the_graph_state():
    silence = Silence("s-1", parse_matchers(['service="postgres"'], "test"), T0, T0 + 3_600_000,
                      comment="maintenance", created_by="alice", created_at=T0)
    state = CorrelationState("default", T0, silences={"s-1": silence})
    table: dict[bytes, bytes] = {}
    set_value(table, b"default", state.to_bytes(), 1_000_000)
    set_value(table, graph_state_key("default"), b'{"graph": "not a correlation state"}',
              1_000_000)
    set_value(table, b"other", CorrelationState("other", T0).to_bytes(), 1_000_000)
    held = held_silences(table)
    assert [(s["scope"], s["id"], s["comment"]) for s in held] == [
        ("default", "s-1", "maintenance")]
    assert held_silences(None) == []
