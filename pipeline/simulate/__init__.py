"""The telemetry simulator: a system model, seeded event-time generation, incidents, labels.

Typical use::

    system = load_system()                       # packaged default (or a YAML path)
    sim = simulate(system, start_ms, 6 * 3_600_000, seed=42, mixed=True)
    save_labels(sim.labels, "labels.json")
    write_ndjson(sim, "telemetry.ndjson")        # or: for batch in wire_batches(sim): ...
"""

from pipeline.simulate.generator import KINDS, SimStep, Simulation, simulate
from pipeline.simulate.labels import (
    CATEGORIES,
    SCENARIOS,
    Incident,
    Labels,
    LabelsError,
    load_labels,
    save_labels,
    validate_labels,
)
from pipeline.simulate.metrics import METRIC_NAMES, METRICS, MetricBlock
from pipeline.simulate.output import WireBatch, tick_wire, wire_batches, write_ndjson
from pipeline.simulate.schedule import (
    SCENARIO_NAMES,
    ScenarioError,
    ScheduledIncident,
    mix_incidents,
    parse_duration_ms,
    parse_schedule,
    start_ending_at,
)
from pipeline.simulate.topology import (
    SimulationError,
    System,
    TopologyError,
    load_system,
    parse_system,
    write_call_graph,
)

__all__ = [
    "CATEGORIES",
    "KINDS",
    "METRICS",
    "METRIC_NAMES",
    "SCENARIOS",
    "SCENARIO_NAMES",
    "Incident",
    "Labels",
    "LabelsError",
    "MetricBlock",
    "ScenarioError",
    "ScheduledIncident",
    "Simulation",
    "SimulationError",
    "System",
    "SimStep",
    "TopologyError",
    "WireBatch",
    "load_labels",
    "load_system",
    "mix_incidents",
    "parse_duration_ms",
    "parse_schedule",
    "parse_system",
    "save_labels",
    "simulate",
    "start_ending_at",
    "tick_wire",
    "validate_labels",
    "wire_batches",
    "write_call_graph",
    "write_ndjson",
]
