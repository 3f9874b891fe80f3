"""Compare a candidate's detections and problems with the current ones (pure logic).

- Detections are matched by id (derived from detector, series labels, time and state,
  not from the detector's version): *added* only the candidate raised, *removed* only
  the current one did, *changed* both raised with another severity or observed value.
  Counts are per (detector, service), with a sample of each kind.
- Problems are matched by overlap: a candidate problem matches a current one when their
  lifetimes overlap and they share an affected service. *Changed*: matched, but the top
  root cause, category or severity differs. Counts are per service (top root cause,
  else the first affected service).

>>> a = {"id": "d1", "time": 1, "detector": "r", "service": "s", "state": "firing",
...      "severity": "high", "observed": 1.0}
>>> diff = compare_detections([a], [{**a, "severity": "low"}, {**a, "id": "d2"}])
>>> diff.totals()
{'added': 1, 'removed': 0, 'changed': 1, 'same': 0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

KINDS = ("added", "removed", "changed", "same")


@dataclass
class Diff:
    """Counts per group and kind, and up to ``sample`` examples of each kind per group."""

    sample: int = 3
    counts: dict[tuple[str, ...], dict[str, int]] = field(default_factory=dict)
    samples: dict[tuple[str, ...], dict[str, list[Any]]] = field(default_factory=dict)

    def add(self, group: tuple[str, ...], kind: str, example: Any) -> None:
        """Count one item of ``kind`` in ``group`` (kept as a sample while room is left)."""
        counts = self.counts.setdefault(group, dict.fromkeys(KINDS, 0))
        counts[kind] += 1
        kept = self.samples.setdefault(group, {k: [] for k in KINDS})[kind]
        if kind != "same" and len(kept) < self.sample:
            kept.append(example)

    def totals(self) -> dict[str, int]:
        """Counts of every kind over all groups."""
        return {k: sum(c[k] for c in self.counts.values()) for k in KINDS}

    def to_dict(self, names: Sequence[str]) -> list[dict[str, Any]]:
        """One JSON-ready row per group (``names`` name the group's parts)."""
        return [{**dict(zip(names, group, strict=True)), **self.counts[group],
                 "samples": {k: v for k, v in self.samples[group].items() if v}}
                for group in sorted(self.counts)]


def _get(item: Any, key: str) -> Any:
    return item[key] if isinstance(item, Mapping) else getattr(item, key)


def _differs(a: float, b: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return False
    return not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def compare_detections(current: Sequence[Any], candidate: Sequence[Any],
                       sample: int = 3) -> Diff:
    """Detections (dicts or objects with id, time, detector, service, state, severity,
    observed) of the current detectors against the candidate's."""
    diff = Diff(sample)
    now = {_get(d, "id"): d for d in current}
    new = {_get(d, "id"): d for d in candidate}
    for ident in sorted(set(now) | set(new), key=lambda i: (_get(now.get(i) or new[i],
                                                                  "time"), i)):
        a, b = now.get(ident), new.get(ident)
        item = b if b is not None else a
        group = (_get(item, "detector"), _get(item, "service"))
        if a is None:
            kind = "added"
        elif b is None:
            kind = "removed"
        elif _get(a, "severity") != _get(b, "severity") or \
                _differs(float(_get(a, "observed")), float(_get(b, "observed"))):
            kind = "changed"
        else:
            kind = "same"
        diff.add(group, kind, _example(a, b))
    return diff


def _example(a: Any, b: Any) -> dict[str, Any]:
    item = b if b is not None else a
    out = {"id": _get(item, "id"), "time": _get(item, "time"), "state": _get(item, "state")}
    if a is not None and b is not None:
        out["severity"] = [_get(a, "severity"), _get(b, "severity")]
        out["observed"] = [_get(a, "observed"), _get(b, "observed")]
    else:
        out["severity"] = _get(item, "severity")
    return out


def _overlap(a: Mapping[str, Any], b: Mapping[str, Any], end_ms: int) -> bool:
    a_end = a["resolved_at"] if a["resolved_at"] is not None else end_ms
    b_end = b["resolved_at"] if b["resolved_at"] is not None else end_ms
    return a["opened_at"] <= b_end and b["opened_at"] <= a_end


def _service(p: Mapping[str, Any]) -> str:
    causes, affected = p.get("root_causes") or [], p.get("affected") or []
    return causes[0] if causes else (affected[0] if affected else "")


def compare_problems(current: Sequence[Mapping[str, Any]],
                     candidate: Sequence[Mapping[str, Any]], end_ms: int,
                     sample: int = 3) -> Diff:
    """Problems (dicts with id, opened_at, resolved_at, affected, root_causes — service
    names, ranked — category, severity); an open problem lasts until ``end_ms``."""
    diff = Diff(sample)
    matched: set[str] = set()
    for b in candidate:
        peers = [a for a in current if a["id"] not in matched and _overlap(a, b, end_ms)
                 and set(a.get("affected") or ()) & set(b.get("affected") or ())]
        if not peers:
            diff.add((_service(b),), "added", _problem_example(None, b))
            continue
        a = min(peers, key=lambda p: (abs(p["opened_at"] - b["opened_at"]), p["id"]))
        matched.add(a["id"])
        same = (_service(a), a.get("category"), a.get("severity")) == \
            (_service(b), b.get("category"), b.get("severity"))
        diff.add((_service(a),), "same" if same else "changed", _problem_example(a, b))
    for a in current:
        if a["id"] not in matched:
            diff.add((_service(a),), "removed", _problem_example(a, None))
    return diff


def _problem_example(a: Mapping[str, Any] | None,
                     b: Mapping[str, Any] | None) -> dict[str, Any]:
    def brief(p: Mapping[str, Any]) -> dict[str, Any]:
        return {"id": p["id"], "opened_at": p["opened_at"], "root_cause": _service(p),
                "category": p.get("category", ""), "severity": p.get("severity", "")}

    if a is not None and b is not None:
        return {"current": brief(a), "candidate": brief(b)}
    return brief(a if a is not None else b)  # type: ignore[arg-type]
