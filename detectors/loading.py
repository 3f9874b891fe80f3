"""Rule files: read YAML, validate every rule, and build a versioned :class:`RuleSet`.

A file is a mapping with an optional ``version`` and a list of ``rules``. Loading never
stops at the first problem: :class:`RuleFileError` lists them all, each as
``file: rule 'name': field 'x': what is wrong``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from detectors.fields import unknown_key
from detectors.rules import Rule, RuleSet
from detectors.validation import NAME, parse_rule
from pipeline.errors import TocsinError

BUILTIN_DIR = Path(__file__).with_name("rules")
TOP_KEYS = ("version", "rules")


class RuleFileError(TocsinError):
    """Rule files could not be loaded; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in rule files:\n"
                         + "\n".join(self.problems))


def builtin_rule_paths() -> list[Path]:
    """The packaged rule files (``detectors/rules/*.yaml``), sorted by name."""
    return sorted(BUILTIN_DIR.glob("*.yaml"))


def parse_rule_text(text: str, source: str) -> tuple[list[Rule], list[str], str]:
    """Rules, problems and the explicit ``version`` ("" if none) of one file's text."""
    problems: list[str] = []
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        lines = text.splitlines()
        if mark and mark.line < len(lines) and re.search(r":\s*[<>!=]", lines[mark.line]):
            reason += ' (quote conditions, e.g. condition: "> 0.05")'
        return [], [f"{source}: {where}YAML syntax error: {reason}"], ""
    if not isinstance(doc, dict):
        return [], [f"{source}: expected a mapping with 'rules' (a list of rules), "
                    f"got {type(doc).__name__}"], ""
    for key in doc:
        if key not in TOP_KEYS:
            problems.append(f"{source}: field '{key}': {unknown_key(key, TOP_KEYS)}")
    version = doc.get("version", "")
    if not isinstance(version, (str, int, float)) or isinstance(version, bool):
        problems.append(f"{source}: field 'version': expected a string, got {version!r}")
        version = ""
    items = doc.get("rules")
    if not isinstance(items, list):
        problems.append(f"{source}: field 'rules': expected a list of rules, got {items!r}")
        return [], problems, str(version)
    rules: list[Rule] = []
    first: dict[str, int] = {}
    for i, data in enumerate(items, start=1):
        name = data.get("name") if isinstance(data, dict) else None
        label = f"rule '{name}'" if isinstance(name, str) and NAME.match(name) else f"rule #{i}"

        def report(field: str, message: str, _label: str = label) -> None:
            problems.append(f"{source}: {_label}: field '{field}': {message}")

        if not isinstance(data, dict):
            problems.append(f"{source}: {label}: expected a mapping, got {data!r}")
            continue
        if isinstance(name, str) and name in first:
            report("name", f"duplicate: rule #{first[name]} of this file has the same name")
        elif isinstance(name, str):
            first[name] = i
        rule = parse_rule(data, source, report)
        if rule is not None:
            rules.append(rule)
    return rules, problems, str(version)


def parse_rules(text: str, source: str = "<string>") -> RuleSet:
    """A :class:`RuleSet` from YAML text (notebooks, tests); raises RuleFileError."""
    rules, problems, version = parse_rule_text(text, source)
    if problems:
        raise RuleFileError(problems)
    digest = hashlib.blake2b(text.encode(), digest_size=4).hexdigest()
    return RuleSet(tuple(rules), f"{version}+{digest}" if version else digest, (source,))


def load_rules(paths: Sequence[str | Path]) -> RuleSet:
    """Load and validate rule files into one :class:`RuleSet`; raise RuleFileError.

    The version is the files' explicit ``version`` values (if any) plus a short hash of
    their contents, so any edit gives a new version: ``"3+1f0c9a2b"``.
    """
    if not paths:
        raise RuleFileError(["no rule files given"])
    problems: list[str] = []
    rules: list[Rule] = []
    versions: list[str] = []
    owner: dict[str, str] = {}
    content = hashlib.blake2b(digest_size=4)
    for path in paths:
        source = str(path)
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            problems.append(f"{source}: cannot read: {exc.strerror or exc}")
            continue
        content.update(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"{source}: not UTF-8 text: {exc}")
            continue
        file_rules, file_problems, version = parse_rule_text(text, source)
        problems.extend(file_problems)
        if version and version not in versions:
            versions.append(version)
        for rule in file_rules:
            if rule.name in owner and owner[rule.name] != source:
                problems.append(f"{source}: rule '{rule.name}': field 'name': duplicate: "
                                f"already defined in {owner[rule.name]}")
                continue
            owner[rule.name] = source
            rules.append(rule)
    if problems:
        raise RuleFileError(problems)
    digest = content.hexdigest()
    version = f"{','.join(versions)}+{digest}" if versions else digest
    return RuleSet(tuple(rules), version, tuple(str(p) for p in paths))

