"""The correlator: detections into problems, with root causes, diagnosis and alerts.

Pure logic (no Faust, no Kafka, no database): the agents call :class:`Correlator` with a
:class:`CorrelationState` they keep in a Faust table, write ``Decision.problem`` rows
(:func:`problems_table`) and ``Decision.links`` rows (:func:`problem_detections_table`)
to ClickHouse, and publish :func:`alert_message` (the envelope within the message size
limit) for every decision with ``notify``.
"""

from pipeline.alerts.cloudevents import (
    ALERT_TYPES,
    alert_envelope,
    alert_event,
    alert_key,
    alert_message,
)
from pipeline.alerts.control import CONTROL_KINDS, ControlError, ControlEvent
from pipeline.alerts.recurrence import Recurrence, ScheduleError
from pipeline.alerts.silences import Silence, SilenceError
from pipeline.correlate.engine import Correlator
from pipeline.correlate.graph import Graph
from pipeline.correlate.state import CorrelationState, StateError
from pipeline.events.matchers import Matcher, MatcherError
from pipeline.events.problem import (
    KINDS,
    Decision,
    Link,
    Member,
    Problem,
    RootCause,
    problem_detections_table,
    problems_table,
)
from pipeline.settings import CorrelateSettings, InhibitRule

__all__ = [
    "ALERT_TYPES",
    "CONTROL_KINDS",
    "KINDS",
    "ControlError",
    "ControlEvent",
    "CorrelationState",
    "Correlator",
    "CorrelateSettings",
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
    "problem_detections_table",
    "problems_table",
]
