"""The correlator: detections into problems, with root causes, diagnosis and alerts.

Pure logic (no Faust, no Kafka, no database): the agents call :class:`Correlator` with a
:class:`CorrelationState` they keep in a Faust table, write ``Decision.problem`` rows
(:func:`problems_table`) and ``Decision.links`` rows (:func:`problem_detections_table`)
to ClickHouse, and publish :func:`alert_message` (the envelope within the message size
limit) for every decision with ``notify``.
"""

from pipeline.correlate.alerts import (
    ALERT_TYPES,
    alert_envelope,
    alert_event,
    alert_key,
    alert_message,
)
from pipeline.correlate.control import CONTROL_KINDS, ControlError, ControlEvent
from pipeline.correlate.engine import Correlator
from pipeline.correlate.graph import Graph
from pipeline.correlate.matchers import Matcher, MatcherError
from pipeline.correlate.problem import (
    Link,
    Member,
    Problem,
    RootCause,
    problem_detections_table,
    problems_table,
)
from pipeline.correlate.schedule import Recurrence, ScheduleError
from pipeline.correlate.settings import CorrelatorSettings, InhibitRule, parse_duration_ms
from pipeline.correlate.silences import Silence, SilenceError
from pipeline.correlate.state import KINDS, CorrelationState, Decision, StateError

__all__ = [
    "ALERT_TYPES",
    "CONTROL_KINDS",
    "KINDS",
    "ControlError",
    "ControlEvent",
    "CorrelationState",
    "Correlator",
    "CorrelatorSettings",
    "Decision",
    "Graph",
    "InhibitRule",
    "Link",
    "Matcher",
    "MatcherError",
    "Member",
    "Problem",
    "Recurrence",
    "RootCause",
    "ScheduleError",
    "Silence",
    "SilenceError",
    "StateError",
    "alert_envelope",
    "alert_event",
    "alert_key",
    "alert_message",
    "parse_duration_ms",
    "problem_detections_table",
    "problems_table",
]
