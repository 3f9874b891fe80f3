"""The correlator's state for one scope, and the decisions it returns.

:class:`CorrelationState` is immutable and serialises to JSON (:meth:`to_bytes`) so it
can live in a Faust table with a changelog and survive restarts and rebalances. It holds
open problems, resolved ones for ``reopen_window_ms`` (to reopen rather than duplicate),
what was alerted per problem, silences until ``silence_retention_ms`` after they end, and
the detections held until event time passes them (:mod:`pipeline.correlate.reorder`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from pipeline.alerts.notify import Track
from pipeline.alerts.silences import Silence
from pipeline.correlate.reorder import Reorder
from pipeline.errors import TocsinError
from pipeline.events.problem import Problem

STATE_FORMAT = 1


class StateError(TocsinError):
    """Stored correlation state could not be read."""




@dataclass(frozen=True)
class CorrelationState:
    """Problems, alert tracks and silences of one correlation scope."""

    scope: str
    now_ms: int = 0  # latest event time processed
    problems: Mapping[str, Problem] = field(default_factory=dict)
    tracks: Mapping[str, Track] = field(default_factory=dict)
    silences: Mapping[str, Silence] = field(default_factory=dict)
    reorder: Reorder = field(default_factory=Reorder)  # detections not yet in order

    @classmethod
    def empty(cls, scope: str) -> CorrelationState:
        """No problems, no silences."""
        return cls(scope)

    def open_problems(self) -> list[Problem]:
        """Open and acknowledged problems, oldest first."""
        return sorted((p for p in self.problems.values() if p.active),
                      key=lambda p: (p.opened_at, p.id))

    def to_bytes(self) -> bytes:
        """The state as zlib-compressed JSON (a big problem's members and the held
        detections compress about tenfold: changelog messages stay far under Kafka's
        1 MB default)."""
        return zlib.compress(orjson.dumps({
            "format": STATE_FORMAT, "scope": self.scope, "now_ms": self.now_ms,
            "problems": [p.to_wire() for p in self.problems.values()],
            "tracks": {k: t.to_wire() for k, t in self.tracks.items()},
            "silences": [s.to_wire() for s in self.silences.values()],
            "reorder": self.reorder.to_wire(),
        }), 6)

    @staticmethod
    def progress_of(data: bytes) -> tuple[Reorder, int]:
        """The detection sources' watermarks (an empty buffer with them) and the event
        time of a stored state, without reading its problems and held detections."""
        try:
            obj = orjson.loads(data if data[:1] == b"{" else zlib.decompress(data))
            sources = (obj.get("reorder") or {}).get("sources") or {}
            return (Reorder((), {str(k): int(v) for k, v in sources.items()}),
                    int(obj["now_ms"]))
        except (orjson.JSONDecodeError, zlib.error, KeyError, TypeError, ValueError,
                AttributeError) as exc:
            raise StateError(f"correlation state unreadable: {exc}") from exc

    @classmethod
    def from_bytes(cls, data: bytes) -> CorrelationState:
        """The inverse of :meth:`to_bytes`; raises StateError on unreadable input."""
        try:
            obj = orjson.loads(data if data[:1] == b"{" else zlib.decompress(data))
            if obj.get("format") != STATE_FORMAT:
                raise StateError(f"correlation state: format {obj.get('format')!r}, expected "
                                 f"{STATE_FORMAT}")
            problems = [Problem.from_wire(p) for p in obj["problems"]]
            silences = [Silence.from_wire(s) for s in obj["silences"]]
            return cls(obj["scope"], obj["now_ms"], {p.id: p for p in problems},
                       {k: Track.from_wire(t) for k, t in obj["tracks"].items()},
                       {s.id: s for s in silences}, Reorder.from_wire(obj.get("reorder")))
        except StateError:
            raise
        except (orjson.JSONDecodeError, zlib.error, KeyError, TypeError, AttributeError,
                TocsinError) as exc:
            raise StateError(f"correlation state unreadable: {exc}") from exc
