"""One correlation step over a batch of detections and control events (no Faust).

Besides detections, the detections topic carries ``{"tick": ms}`` messages: how far
detection's event time got, so group waits and resolve timeouts fall due without a new
detection.

The correlate agent hands over a batch of messages, keyed by correlation scope, and a
way to read each scope's stored state; the step runs the :class:`Correlator` in message
order and returns the new state per scope and the decisions to store and alert.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson
import yaml

from pipeline.correlate import (
    ControlError,
    ControlEvent,
    CorrelationState,
    Correlator,
    Decision,
)
from pipeline.correlate.reorder import Reorder
from pipeline.errors import SettingsError
from pipeline.events.detection import Detection
from pipeline.events.printable import printable
from pipeline.knowledge import load_knowledge
from pipeline.settings import CorrelateSettings

log = logging.getLogger("tocsin.correlate")


def load_dependencies(path: str) -> dict[str, tuple[str, ...]]:
    """A call graph from YAML: ``caller: [callee, ...]`` (empty when no file is set)."""
    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"setting correlate.dependencies ({path}): {exc}") from None
    if not isinstance(data, dict) or not all(
            isinstance(v, list) and all(isinstance(c, str) for c in v) for v in data.values()):
        raise SettingsError(f"setting correlate.dependencies ({path}): expected a mapping of "
                            "caller to a list of callees")
    return {str(k): tuple(v) for k, v in data.items()}


def with_dependencies(settings: CorrelateSettings) -> CorrelateSettings:
    """``settings`` with the ``dependencies`` file's call graph merged into
    ``static_dependencies`` (a caller listed in both gets the callees of both)."""
    from_file = load_dependencies(settings.dependencies)
    if not from_file:
        return settings
    merged = {k: list(v) for k, v in settings.static_dependencies.items()}
    for caller, callees in from_file.items():
        known = merged.setdefault(caller, [])
        known.extend(c for c in callees if c not in known)
    return replace(settings, static_dependencies=merged)


def source_watermark(state: bytes | None, exclude: str = "") -> int:
    """How far every detection source of a stored scope state (but ``exclude``) got in
    event time; -1 before any tick."""
    if state is None:
        return -1
    wm = CorrelationState.progress_of(state)[0].watermark(exclude=exclude)
    return -1 if wm is None else wm


def detection_progress(state: bytes | None, values: Iterable[bytes], exclude: str,
                       ) -> tuple[int, int]:
    """Where a scope stands once a batch's ticks are in: the event time every detection
    source but ``exclude`` will have passed (-1 before any tick), and the event time the
    correlator has already passed (-1 if none).

    ``state`` is the scope's stored state, ``values`` the batch's detections-topic
    messages of that scope. The service-graph step runs up to the first before the
    correlation step takes the batch in (its edge detections are then never late), and
    never pairs buckets before the second (their detections would be).
    """
    reorder, now_ms = (CorrelationState.progress_of(state) if state is not None
                       else (Reorder(), 0))
    for value in values:
        if b'"tick"' not in value:
            continue
        try:
            data = orjson.loads(value)
            if "tick" in data:
                reorder = reorder.tick(str(data.get("source", "")), int(data["tick"]))
        except (orjson.JSONDecodeError, TypeError, ValueError):
            continue  # the step reports it
    wm = reorder.watermark(exclude=exclude)
    passed = now_ms if now_ms > 0 else -1
    return (-1 if wm is None else wm), passed


@dataclass(frozen=True)
class Message:
    """A detections-topic or control-topic message as the step needs it."""

    scope: str
    is_control: bool
    value: bytes


@dataclass
class CorrelationResult:
    """New states per scope and the decisions of one step."""

    states: dict[str, bytes] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    rejected: int = 0
    open_problems: dict[str, int] = field(default_factory=dict)  # per scope touched
    event_time_ms: dict[str, int] = field(default_factory=dict)  # per scope touched
    feedback: list[ControlEvent] = field(default_factory=list)  # to store, not to apply


class CorrelationStep:
    """Runs one :class:`Correlator` per scope over messages in order."""

    def __init__(self, settings: CorrelateSettings) -> None:
        self.settings = with_dependencies(settings)
        self.knowledge = load_knowledge(settings.knowledge_paths)
        self._correlators: dict[str, Correlator] = {}

    def correlator(self, scope: str) -> Correlator:
        """The correlator of ``scope``."""
        if scope not in self._correlators:
            self._correlators[scope] = Correlator(self.settings, self.knowledge,
                                                  scope)
        return self._correlators[scope]

    def run(self, messages: Iterable[Message], read_state: Callable[[str], bytes | None],
            learned: Mapping[str, Sequence[str]] | None = None) -> CorrelationResult:
        """Apply detections (in batches between control events, in event-time order once
        the detect workers' watermark passes them) and control events.

        ``learned`` is the call graph learned from traces (caller → callees); it is
        merged with the static dependencies from settings.
        """
        topology = None
        if learned:
            merged = {k: set(v) for k, v in self.settings.static_dependencies.items()}
            for caller, callees in learned.items():
                merged.setdefault(caller, set()).update(callees)
            topology = {k: tuple(sorted(v)) for k, v in merged.items()}
        result = CorrelationResult()
        states: dict[str, CorrelationState] = {}
        pending: dict[str, list[Detection]] = {}

        def state_of(scope: str) -> CorrelationState:
            if scope not in states:
                stored = read_state(scope)
                states[scope] = (CorrelationState.empty(scope) if stored is None
                                 else CorrelationState.from_bytes(stored))
            return states[scope]

        def flush(scope: str) -> None:
            """Take in what event time has passed; let time pass to the watermark."""
            state = state_of(scope)
            reorder, ready, watermark = state.reorder.hold(pending.pop(scope, [])).release()
            state = replace(state, reorder=reorder)
            correlator = self.correlator(scope)
            if ready:
                now = max(watermark or 0, ready[-1].time)
                state, decisions = correlator.on_detections(state, ready, now, topology)
                result.decisions.extend(decisions)
            elif watermark is not None and watermark > state.now_ms:
                state, decisions = correlator.on_tick(state, watermark)
                result.decisions.extend(decisions)
            states[scope] = state

        for message in messages:
            try:
                if message.is_control:
                    event = ControlEvent.from_json(message.value)
                else:
                    data = orjson.loads(message.value)
                    if "tick" in data:  # a detect worker's event time moved on
                        state = state_of(message.scope)
                        states[message.scope] = replace(state, reorder=state.reorder.tick(
                            str(data.get("source", "")), int(data["tick"])))
                        continue
                    detection = Detection.from_wire(data)
            except (ControlError, orjson.JSONDecodeError, TypeError, ValueError, KeyError,
                    AttributeError) as exc:
                result.rejected += 1
                log.error("skipped an unreadable %s message of scope %s: %s",
                          "control" if message.is_control else "detection",
                          printable(message.scope), printable(exc))
                continue
            if message.is_control and event.kind == "feedback":  # stored beside problems
                result.feedback.append(replace(event, scope=event.scope or message.scope))
                continue
            if message.is_control:
                flush(message.scope)
                # an operator's wall-clock time must not move the scope's event time on
                # (in a replay that would time every problem out); the ack keeps its time
                state = state_of(message.scope)
                states[message.scope], decisions = self.correlator(message.scope).on_control(
                    state, event, state.now_ms)
                result.decisions.extend(decisions)
            else:
                pending.setdefault(message.scope, []).append(detection)
        for scope in sorted(set(states) | set(pending)):
            flush(scope)
        result.states = {scope: state.to_bytes() for scope, state in states.items()}
        result.open_problems = {scope: len(state.open_problems())
                                for scope, state in states.items()}
        result.event_time_ms = {scope: state.now_ms for scope, state in states.items()}
        return result
