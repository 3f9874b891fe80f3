"""Load and validate knowledge-base YAML files.

A file may hold any of three sections (all files are merged, later files win)::

    version: 1
    categories:            # every detection category must end up with an entry
      <category>: {summary, symptoms: [..], potential_causes: [..], runbook: <id>,
                   diagnostic_plan: {automated_checks: [{name, command, expect}],
                                     manual_steps: [..], escalation_criteria: [..],
                                     estimated_resolution_minutes: int,
                                     required_expertise: [..]}}
    rules:                 # later files' rules take priority over earlier ones
      - {name, detectors: [glob..], titles: [glob..], symptoms, potential_causes,
         checks: [{name, command, expect}], manual_steps, escalation_criteria,
         required_expertise, estimated_resolution_minutes, runbook}
    runbooks:
      <id>: {title, steps: [{title, action, command}], follow_ups: [..],
             escalation_levels: [{level, after_minutes, contact, when}]}

Every problem found is reported at once, each with its file and path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pipeline.events.detection import CATEGORIES
from pipeline.knowledge.base import (
    CategoryEntry,
    Check,
    DiagnosticPlan,
    EscalationLevel,
    KnowledgeBase,
    KnowledgeError,
    RuleEntry,
    Runbook,
    Step,
)

_TOP = {"version", "categories", "rules", "runbooks"}
_CATEGORY = {"summary", "symptoms", "potential_causes", "diagnostic_plan", "runbook"}
_PLAN = {"automated_checks", "manual_steps", "escalation_criteria",
         "estimated_resolution_minutes", "required_expertise"}
_RULE = {"name", "detectors", "titles", "symptoms", "potential_causes", "checks",
         "manual_steps", "escalation_criteria", "required_expertise",
         "estimated_resolution_minutes", "runbook"}
_RUNBOOK = {"title", "steps", "escalation_levels", "follow_ups"}


def builtin_paths() -> list[Path]:
    """The knowledge files shipped with Tocsin, in name order."""
    root = resources.files("pipeline.knowledge")
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml"))


def load_knowledge(paths: Sequence[str | Path] = (), *, builtin: bool = True) -> KnowledgeBase:
    """The built-in knowledge (unless ``builtin=False``) extended by ``paths``."""
    docs = []
    for path in [*(builtin_paths() if builtin else []), *map(Path, paths)]:
        try:
            docs.append((str(path), yaml.safe_load(path.read_text(encoding="utf-8"))))
        except OSError as exc:
            raise KnowledgeError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except yaml.YAMLError as exc:
            raise KnowledgeError(f"{path}: not valid YAML ({exc})") from None
    return parse_knowledge(docs)


def parse_knowledge(documents: Sequence[tuple[str, Any]]) -> KnowledgeBase:
    """A knowledge base from ``(source name, parsed YAML)`` pairs; raises KnowledgeError."""
    v = _Validator()
    categories: dict[str, CategoryEntry] = {}
    rules: list[RuleEntry] = []
    runbooks: dict[str, Runbook] = {}
    for source, doc in documents:
        if not isinstance(doc, Mapping):
            v.fail(source, "expected a mapping with categories, rules or runbooks")
            continue
        v.keys(doc, _TOP, source)
        if doc.get("version", 1) != 1:
            v.fail(f"{source}: version", f"expected 1, got {doc.get('version')!r}")
        for name, entry in v.mapping(doc, "categories", source).items():
            where = f"{source}: categories.{name}"
            if name not in CATEGORIES:
                v.fail(where, f"unknown category (expected one of {', '.join(CATEGORIES)})")
            elif (cat := _category(v, name, entry, where)) is not None:
                categories[name] = cat
        new_rules = [_rule(v, r, f"{source}: rules[{i}]")
                     for i, r in enumerate(v.seq(doc, "rules", source))]
        rules[:0] = [r for r in new_rules if r is not None]
        for ident, entry in v.mapping(doc, "runbooks", source).items():
            if (book := _runbook(v, str(ident), entry, f"{source}: runbooks.{ident}")):
                runbooks[str(ident)] = book
    for name in CATEGORIES:
        if name not in categories:
            v.fail("knowledge base", f"no entry for category {name!r}")
    for cat in categories.values():
        if cat.runbook not in runbooks:
            v.fail(f"categories.{cat.category}.runbook", f"unknown runbook {cat.runbook!r}")
    for rule in rules:
        if rule.runbook and rule.runbook not in runbooks:
            v.fail(f"rules[{rule.name}].runbook", f"unknown runbook {rule.runbook!r}")
    names = [r.name for r in rules]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        v.fail(f"rules[{dup}]", "rule name used more than once")
    v.raise_if_any()
    return KnowledgeBase(categories, tuple(rules), runbooks)


def _category(v: _Validator, name: str, e: Any, where: str) -> CategoryEntry | None:
    if not v.is_mapping(e, where):
        return None
    v.keys(e, _CATEGORY, where)
    plan = e.get("diagnostic_plan")
    pw = f"{where}.diagnostic_plan"
    if v.is_mapping(plan, pw):
        v.keys(plan, _PLAN, pw)
        diag = DiagnosticPlan(
            automated_checks=_checks(v, plan.get("automated_checks"), f"{pw}.automated_checks",
                                     required=True),
            manual_steps=v.strings(plan, "manual_steps", pw, required=False),
            escalation_criteria=v.strings(plan, "escalation_criteria", pw),
            estimated_resolution_minutes=v.integer(plan, "estimated_resolution_minutes", pw, 1),
            required_expertise=v.strings(plan, "required_expertise", pw))
    else:
        diag = DiagnosticPlan((), (), (), 0, ())
    return CategoryEntry(name, v.text(e, "summary", where, required=False),
                         v.strings(e, "symptoms", where), v.strings(e, "potential_causes", where),
                         diag, v.text(e, "runbook", where))


def _rule(v: _Validator, e: Any, where: str) -> RuleEntry | None:
    if not v.is_mapping(e, where):
        return None
    v.keys(e, _RULE, where)
    name = v.text(e, "name", where)
    where = f"{where} ({name})" if name else where
    detectors = v.strings(e, "detectors", where, required=False)
    titles = v.strings(e, "titles", where, required=False)
    if not detectors and not titles:
        v.fail(where, "needs detectors or titles globs to match on")
    minutes = e.get("estimated_resolution_minutes")
    return RuleEntry(
        name=name, detectors=detectors, titles=titles,
        symptoms=v.strings(e, "symptoms", where, required=False),
        potential_causes=v.strings(e, "potential_causes", where, required=False),
        checks=_checks(v, e.get("checks", []), f"{where}.checks", required=False),
        manual_steps=v.strings(e, "manual_steps", where, required=False),
        escalation_criteria=v.strings(e, "escalation_criteria", where, required=False),
        required_expertise=v.strings(e, "required_expertise", where, required=False),
        estimated_resolution_minutes=None if minutes is None else v.integer(
            e, "estimated_resolution_minutes", where, 1),
        runbook=v.text(e, "runbook", where, required=False))


def _runbook(v: _Validator, ident: str, e: Any, where: str) -> Runbook | None:
    if not v.is_mapping(e, where):
        return None
    v.keys(e, _RUNBOOK, where)
    steps = []
    for i, s in enumerate(v.seq(e, "steps", where, required=True)):
        w = f"{where}.steps[{i}]"
        if v.is_mapping(s, w):
            v.keys(s, {"title", "action", "command"}, w)
            steps.append(Step(v.text(s, "title", w), v.text(s, "action", w),
                              v.text(s, "command", w, required=False)))
    levels = []
    for i, s in enumerate(v.seq(e, "escalation_levels", where, required=True)):
        w = f"{where}.escalation_levels[{i}]"
        if v.is_mapping(s, w):
            v.keys(s, {"level", "after_minutes", "contact", "when"}, w)
            levels.append(EscalationLevel(v.integer(s, "level", w, 1),
                                          v.integer(s, "after_minutes", w, 0),
                                          v.text(s, "contact", w), v.text(s, "when", w)))
    if [x.level for x in levels] != sorted({x.level for x in levels}):
        v.fail(f"{where}.escalation_levels", "levels must be distinct and increasing")
    return Runbook(ident, v.text(e, "title", where), tuple(steps), tuple(levels),
                   v.strings(e, "follow_ups", where))


def _checks(v: _Validator, items: Any, where: str, required: bool) -> tuple[Check, ...]:
    if items is None or not isinstance(items, list) or (required and not items):
        v.fail(where, f"expected a{' non-empty' if required else ''} list of checks "
                      f"{{name, command, expect}}, got {items!r}")
        return ()
    out = []
    for i, c in enumerate(items):
        w = f"{where}[{i}]"
        if v.is_mapping(c, w):
            v.keys(c, {"name", "command", "expect"}, w)
            out.append(Check(v.text(c, "name", w), v.text(c, "command", w),
                             v.text(c, "expect", w)))
    return tuple(out)


class _Validator:
    """Collects problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")

    def raise_if_any(self) -> None:
        if self.problems:
            raise KnowledgeError("invalid knowledge base:\n  " + "\n  ".join(self.problems))

    def is_mapping(self, obj: Any, where: str) -> bool:
        if isinstance(obj, Mapping):
            return True
        self.fail(where, f"expected a mapping, got {obj!r}")
        return False

    def keys(self, obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in obj:
            if key not in allowed:
                self.fail(where, f"unknown key {key!r} (expected {', '.join(sorted(allowed))})")

    def mapping(self, obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
        value = obj.get(key, {})
        return value if self.is_mapping(value, f"{where}: {key}") else {}

    def seq(self, obj: Mapping[str, Any], key: str, where: str,
            required: bool = False) -> list[Any]:
        value = obj.get(key, None if required else [])
        if not isinstance(value, list) or (required and not value):
            self.fail(f"{where}.{key}", f"expected a{' non-empty' if required else ''} list, "
                                        f"got {value!r}")
            return []
        return value

    def text(self, obj: Mapping[str, Any], key: str, where: str, required: bool = True) -> str:
        value = obj.get(key, None if required else "")
        if not isinstance(value, str) or (required and not value.strip()):
            self.fail(f"{where}.{key}", f"expected a non-empty string, got {value!r}")
            return ""
        return value

    def strings(self, obj: Mapping[str, Any], key: str, where: str,
                required: bool = True) -> tuple[str, ...]:
        value = obj.get(key, None if required else [])
        if (not isinstance(value, list) or (required and not value)
                or not all(isinstance(s, str) and s.strip() for s in value)):
            self.fail(f"{where}.{key}", f"expected a{' non-empty' if required else ''} list of "
                                        f"non-empty strings, got {value!r}")
            return ()
        return tuple(value)

    def integer(self, obj: Mapping[str, Any], key: str, where: str, minimum: int) -> int:
        value = obj.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(f"{where}.{key}", f"expected an integer >= {minimum}, got {value!r}")
            return minimum
        return value
