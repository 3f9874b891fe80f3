"""Labels of real cases (a JSON list of faults, as ``nezha-ob/labels.json``) as
:class:`~pipeline.simulate.labels.Labels`, so real cases score like simulated incidents.

Each case needs ``id``, ``start`` and ``end`` (epoch ms) and ``root_cause_service``;
``fault_type`` and ``category`` are kept when present. The labelled range runs from the
first case's ``window.start`` (else its start) to the last case's ``window.end``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from pipeline.simulate.labels import Incident, Labels, LabelsError


def case_labels(cases: Any, source: str = "cases") -> Labels:
    """Labels from a parsed list of cases; :class:`LabelsError` names what is wrong."""
    if not isinstance(cases, list):
        raise LabelsError(f"{source}: expected a JSON list of cases")
    incidents, lows, highs = [], [], []
    for i, case in enumerate(cases):
        where = f"{source}[{i}]"
        if not isinstance(case, dict):
            raise LabelsError(f"{where}: expected an object")
        for key, kind in (("id", str), ("start", int), ("end", int),
                          ("root_cause_service", str)):
            if not isinstance(case.get(key), kind) or isinstance(case.get(key), bool):
                raise LabelsError(f"{where}.{key}: expected {kind.__name__}, got "
                                  f"{case.get(key)!r}")
        if case["end"] < case["start"]:
            raise LabelsError(f"{where}: end before start")
        window = case.get("window") if isinstance(case.get("window"), dict) else {}
        lows.append(int(window.get("start", case["start"])))
        highs.append(int(window.get("end", case["end"])))
        incidents.append(Incident(case["id"], str(case.get("fault_type", "case")),
                                  case["start"], case["end"], case["root_cause_service"],
                                  str(case.get("category", "unknown")),
                                  (case["root_cause_service"],)))
    if not incidents:
        raise LabelsError(f"{source}: no cases")
    return Labels(0, min(lows), max(highs), tuple(incidents), system=source)


def load_case_labels(path: str | Path) -> Labels:
    """Read a cases file (see the module docstring)."""
    try:
        return case_labels(orjson.loads(Path(path).read_bytes()), str(path))
    except OSError as exc:
        raise LabelsError(f"{path}: cannot read cases file: {exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise LabelsError(f"{path}: not valid JSON: {exc}") from exc
