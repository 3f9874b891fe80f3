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
    CorrelatorSettings,
    Decision,
)
from pipeline.detection import Detection
from pipeline.errors import SettingsError
from pipeline.knowledge import load_knowledge
from pipeline.printable import printable
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


def build_correlator_settings(settings: CorrelateSettings) -> CorrelatorSettings:
    """The correlator's settings from Tocsin's ``[correlate]`` section."""
    return CorrelatorSettings(
        group_wait_ms=settings.group_wait_ms,
        group_interval_ms=settings.group_interval_ms,
        repeat_interval_ms=settings.repeat_interval_ms,
        resolve_timeout_ms=settings.resolve_timeout_ms,
        reopen_window_ms=settings.reopen_window_ms,
        max_duration_ms=settings.max_duration_ms,
        static_dependencies=load_dependencies(settings.dependencies),
    )


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


class CorrelationStep:
    """Runs one :class:`Correlator` per scope over messages in order."""

    def __init__(self, settings: CorrelateSettings) -> None:
        self.correlator_settings = build_correlator_settings(settings)
        paths = [p.strip() for p in settings.knowledge.split(",") if p.strip()]
        self.knowledge = load_knowledge(paths)
        self._correlators: dict[str, Correlator] = {}

    def correlator(self, scope: str) -> Correlator:
        """The correlator of ``scope``."""
        if scope not in self._correlators:
            self._correlators[scope] = Correlator(self.correlator_settings, self.knowledge,
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
            merged = {k: set(v) for k, v in self.correlator_settings.static_dependencies.items()}
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
        return result
