"""Control events: acknowledgements, silences and feedback, published on a control topic so every
worker and every scope sees them and they survive restarts.

Wire format (JSON)::

    {"kind": "ack", "time_ms": 1764000000000, "problem_id": "p-3f9a2c1b7d10",
     "by": "alice", "comment": "looking into it", "scope": ""}
    {"kind": "silence", "time_ms": ..., "silence": {...Silence.to_wire()...}, "scope": ""}
    {"kind": "expire_silence", "time_ms": ..., "silence_id": "s-...", "by": "alice"}
    {"kind": "feedback", "time_ms": ..., "problem_id": "p-...", "by": "alice",
     "verdict": "false-positive", "root_cause": "", "comment": "batch job", "scope": ""}

``scope`` empty means every scope. An ack for a problem a scope does not hold is ignored
by that scope (acks are broadcast). Feedback (an operator's verdict on a problem) does not
change the correlator's state: the worker stores it in the ``feedback`` table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.alerts.silences import Silence, SilenceError
from pipeline.errors import TocsinError

CONTROL_KINDS = ("ack", "silence", "expire_silence", "feedback")
VERDICTS = ("true", "false-positive", "duplicate")


class ControlError(TocsinError):
    """A control event is malformed; the message names the field."""


@dataclass(frozen=True)
class ControlEvent:
    """An acknowledgement, a new silence, a silence expiry or feedback on a problem."""

    kind: str
    time_ms: int
    by: str = ""
    comment: str = ""
    problem_id: str = ""
    silence: Silence | None = None
    silence_id: str = ""
    scope: str = ""
    verdict: str = ""  # feedback: one of VERDICTS
    root_cause: str = ""  # feedback: the service the operator found at fault

    def __post_init__(self) -> None:
        if self.kind not in CONTROL_KINDS:
            raise ControlError(f"control.kind: expected one of {', '.join(CONTROL_KINDS)}, "
                               f"got {self.kind!r}")
        if isinstance(self.time_ms, bool) or not isinstance(self.time_ms, int):
            raise ControlError(f"control.time_ms: expected epoch ms, got {self.time_ms!r}")
        if self.kind in ("ack", "feedback") and not self.problem_id:
            raise ControlError(f"control.problem_id: {self.kind} needs the problem id")
        if self.kind == "feedback" and self.verdict not in VERDICTS:
            raise ControlError(f"control.verdict: expected one of {', '.join(VERDICTS)}, "
                               f"got {self.verdict!r}")
        if self.kind == "silence" and self.silence is None:
            raise ControlError("control.silence: a silence event needs the silence")
        if self.kind == "expire_silence" and not self.silence_id:
            raise ControlError("control.silence_id: an expiry needs the silence id")

    @classmethod
    def ack(cls, problem_id: str, by: str, comment: str, time_ms: int,
            scope: str = "") -> ControlEvent:
        """Acknowledge a problem."""
        return cls("ack", time_ms, by, comment, problem_id=problem_id, scope=scope)

    @classmethod
    def feedback(cls, problem_id: str, verdict: str, by: str, time_ms: int,
                 root_cause: str = "", comment: str = "", scope: str = "") -> ControlEvent:
        """An operator's verdict on a problem (and, optionally, its true root cause)."""
        return cls("feedback", time_ms, by, comment, problem_id=problem_id, scope=scope,
                   verdict=verdict, root_cause=root_cause)

    @classmethod
    def create_silence(cls, silence: Silence, time_ms: int, scope: str = "") -> ControlEvent:
        """Add a silence (or maintenance window)."""
        return cls("silence", time_ms, silence.created_by, silence.comment, silence=silence,
                   scope=scope)

    @classmethod
    def expire_silence(cls, silence_id: str, by: str, time_ms: int, comment: str = "",
                       scope: str = "") -> ControlEvent:
        """End a silence now."""
        return cls("expire_silence", time_ms, by, comment, silence_id=silence_id, scope=scope)

    def to_wire(self) -> dict[str, Any]:
        """A JSON-ready dict (see the module docstring)."""
        out: dict[str, Any] = {"kind": self.kind, "time_ms": self.time_ms, "by": self.by,
                               "comment": self.comment, "scope": self.scope}
        if self.problem_id:
            out["problem_id"] = self.problem_id
        if self.silence is not None:
            out["silence"] = self.silence.to_wire()
        if self.silence_id:
            out["silence_id"] = self.silence_id
        if self.kind == "feedback":
            out["verdict"] = self.verdict
            out["root_cause"] = self.root_cause
        return out

    def to_json(self) -> bytes:
        """One message of the control topic."""
        return orjson.dumps(self.to_wire())

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ControlEvent:
        """The inverse of :meth:`to_wire`; raises ControlError naming the bad field."""
        if not isinstance(data, Mapping):
            raise ControlError(f"control event: expected an object, got {data!r}")
        unknown = set(data) - {"kind", "time_ms", "by", "comment", "problem_id", "silence",
                               "silence_id", "scope", "verdict", "root_cause"}
        if unknown:
            raise ControlError(f"control event: unknown field(s) {', '.join(sorted(unknown))}")
        for key in ("by", "comment", "problem_id", "silence_id", "scope", "verdict",
                    "root_cause"):
            if not isinstance(data.get(key, ""), str):
                raise ControlError(f"control.{key}: expected a string, got {data[key]!r}")
        try:
            silence = Silence.from_wire(data["silence"]) if data.get("silence") else None
        except SilenceError as exc:
            raise ControlError(f"control.{exc}") from None
        return cls(data.get("kind", ""), data.get("time_ms"), data.get("by", ""),
                   data.get("comment", ""), data.get("problem_id", ""), silence,
                   data.get("silence_id", ""), data.get("scope", ""),
                   data.get("verdict", ""), data.get("root_cause", ""))

    @classmethod
    def from_json(cls, raw: bytes) -> ControlEvent:
        """A control event from one message; raises ControlError."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ControlError(f"control event: not JSON ({exc})") from None
        return cls.from_wire(data)
