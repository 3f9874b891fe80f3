"""The labels file: ground truth of a simulation run.

JSON schema (version 1)::

    {
      "version": 1,                      # int, required, must be 1
      "system": "shop",                  # str, optional: the simulated system's name
      "seed": 42,                        # int, required
      "start_ms": 1718000000000,         # int epoch ms, required: first simulated instant
      "end_ms": 1718021600000,           # int epoch ms, required, > start_ms (exclusive)
      "interval_ms": 10000,              # int, optional: metric interval
      "incidents": [                     # list, required (may be empty)
        {
          "id": "inc-001",               # str, unique
          "scenario": "db_outage",       # one of SCENARIOS
          "start_ms": 1718003600000,     # int, within [start_ms, end_ms)
          "end_ms": 1718004200000,       # int, > start_ms, <= labels end_ms (exclusive)
          "root_cause_service": "postgres",
          "category": "connectivity",    # one of CATEGORIES
          "affected_services": ["postgres", "orders", "api"],  # non-empty, root included
          "params": {"connect_ms": 400}  # optional: scenario magnitudes (scalars)
        }
      ],
      "quiet_periods": [                 # optional: scheduled stretches with no incident
        {"start_ms": 1718010000000, "end_ms": 1718011800000}
      ]
    }

An incident is active during ``[start_ms, end_ms)``; its signature is in the telemetry
exactly then. :func:`validate_labels` returns readable problems (empty when valid).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline.errors import TocsinError

LABELS_VERSION = 1
SCENARIOS = ("error_spike", "memory_leak", "db_outage", "cpu_saturation",
             "latency_degradation", "coordination_failure", "bad_deploy")
CATEGORIES = ("availability", "performance", "connectivity", "resource", "configuration",
              "data", "coordination")


class LabelsError(TocsinError):
    """A labels file is missing, unreadable or invalid; the message lists the problems."""


@dataclass(frozen=True)
class Incident:
    """One injected incident: what, when, where it started and what it touched."""

    id: str
    scenario: str
    start_ms: int
    end_ms: int
    root_cause_service: str
    category: str
    affected_services: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The incident as it appears in the labels file."""
        return {"id": self.id, "scenario": self.scenario, "start_ms": self.start_ms,
                "end_ms": self.end_ms, "root_cause_service": self.root_cause_service,
                "category": self.category, "affected_services": list(self.affected_services),
                "params": dict(self.params)}


@dataclass(frozen=True)
class Labels:
    """Ground truth of one simulation run (see the module docstring for the JSON)."""

    seed: int
    start_ms: int
    end_ms: int
    incidents: tuple[Incident, ...] = ()
    quiet_periods: tuple[tuple[int, int], ...] = ()
    system: str = ""
    interval_ms: int = 10_000
    version: int = LABELS_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The labels as the JSON object of the labels file."""
        return {"version": self.version, "system": self.system, "seed": self.seed,
                "start_ms": self.start_ms, "end_ms": self.end_ms,
                "interval_ms": self.interval_ms,
                "incidents": [inc.to_dict() for inc in self.incidents],
                "quiet_periods": [{"start_ms": s, "end_ms": e} for s, e in self.quiet_periods]}

    @classmethod
    def from_dict(cls, obj: Any, source: str = "labels") -> Labels:
        """Validate a parsed labels object and build :class:`Labels`."""
        problems = validate_labels(obj)
        if problems:
            raise LabelsError(f"{source}: invalid labels:\n  " + "\n  ".join(problems))
        incidents = tuple(
            Incident(i["id"], i["scenario"], i["start_ms"], i["end_ms"],
                     i["root_cause_service"], i["category"], tuple(i["affected_services"]),
                     dict(i.get("params") or {}))
            for i in obj["incidents"])
        quiet = tuple((q["start_ms"], q["end_ms"]) for q in obj.get("quiet_periods") or ())
        return cls(obj["seed"], obj["start_ms"], obj["end_ms"], incidents, quiet,
                   obj.get("system", ""), obj.get("interval_ms", 10_000), obj["version"])


def save_labels(labels: Labels, path: str | Path) -> None:
    """Write the labels file (pretty-printed JSON)."""
    Path(path).write_bytes(orjson.dumps(labels.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")


def load_labels(path: str | Path) -> Labels:
    """Read and validate a labels file; raises :class:`LabelsError` naming the problems."""
    try:
        obj = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise LabelsError(f"{path}: cannot read labels file: {exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise LabelsError(f"{path}: not valid JSON: {exc}") from exc
    return Labels.from_dict(obj, source=str(path))


def validate_labels(obj: Any) -> list[str]:
    """Check a parsed labels object against the schema; return readable problems."""
    if not isinstance(obj, Mapping):
        return [f"expected a JSON object at the top, got {type(obj).__name__}"]
    problems: list[str] = []
    if obj.get("version") != LABELS_VERSION:
        problems.append(f"version: expected {LABELS_VERSION}, got {obj.get('version')!r}")
    for key in ("seed", "start_ms", "end_ms"):
        _int(obj, key, key, problems)
    if "interval_ms" in obj:
        _int(obj, "interval_ms", "interval_ms", problems, minimum=1)
    start, end = obj.get("start_ms"), obj.get("end_ms")
    bounds_ok = _is_int(start) and _is_int(end)
    if bounds_ok and end <= start:
        problems.append(f"end_ms: {end} must be after start_ms {start}")
        bounds_ok = False
    incidents = obj.get("incidents")
    if not isinstance(incidents, list):
        problems.append(f"incidents: expected a list, got {_tname(incidents)}")
        incidents = []
    seen: set[str] = set()
    for n, inc in enumerate(incidents):
        where = f"incidents[{n}]"
        if not isinstance(inc, Mapping):
            problems.append(f"{where}: expected an object, got {_tname(inc)}")
            continue
        ident = inc.get("id")
        if not isinstance(ident, str) or not ident:
            problems.append(f"{where}.id: expected a non-empty string, got {ident!r}")
        elif ident in seen:
            problems.append(f"{where}.id: duplicate id {ident!r}")
        else:
            seen.add(ident)
            where = f"incidents[{n}] ({ident})"
        _choice(inc, "scenario", SCENARIOS, where, problems)
        _choice(inc, "category", CATEGORIES, where, problems)
        root = inc.get("root_cause_service")
        if not isinstance(root, str) or not root:
            problems.append(f"{where}.root_cause_service: expected a service name, got {root!r}")
        affected = inc.get("affected_services")
        if (not isinstance(affected, list) or not affected
                or not all(isinstance(a, str) and a for a in affected)):
            problems.append(f"{where}.affected_services: expected a non-empty list of "
                            f"service names, got {affected!r}")
        elif isinstance(root, str) and root not in affected:
            problems.append(f"{where}.affected_services: must include the root cause {root!r}")
        if "params" in inc and not isinstance(inc["params"], Mapping):
            problems.append(f"{where}.params: expected an object, got {_tname(inc['params'])}")
        s_ok = _int(inc, "start_ms", where, problems)
        e_ok = _int(inc, "end_ms", where, problems)
        if s_ok and e_ok:
            s, e = inc["start_ms"], inc["end_ms"]
            if e <= s:
                problems.append(f"{where}.end_ms: {e} must be after its start_ms {s}")
            if bounds_ok and (s < start or e > end):
                problems.append(f"{where}: [{s}, {e}) lies outside the run [{start}, {end})")
    quiet = obj.get("quiet_periods", [])
    if not isinstance(quiet, list):
        problems.append(f"quiet_periods: expected a list, got {_tname(quiet)}")
        quiet = []
    for n, q in enumerate(quiet):
        where = f"quiet_periods[{n}]"
        if not isinstance(q, Mapping):
            problems.append(f"{where}: expected an object, got {_tname(q)}")
            continue
        if (_int(q, "start_ms", where, problems) & _int(q, "end_ms", where, problems)
                and q["end_ms"] <= q["start_ms"]):
            problems.append(f"{where}.end_ms: must be after its start_ms")
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(obj: Mapping, key: str, where: str, problems: list[str], minimum: int = 0) -> bool:
    value = obj.get(key)
    name = key if where == key else f"{where}.{key}"
    if not _is_int(value):
        problems.append(f"{name}: expected an integer, got {value!r}"
                        if key in obj else f"{name}: missing (an integer)")
        return False
    if value < minimum:
        problems.append(f"{name}: expected >= {minimum}, got {value}")
        return False
    return True


def _choice(obj: Mapping, key: str, choices: tuple[str, ...], where: str,
            problems: list[str]) -> None:
    value = obj.get(key)
    if value not in choices:
        problems.append(f"{where}.{key}: expected one of {', '.join(choices)}, got {value!r}")


def _tname(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
