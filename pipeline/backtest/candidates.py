"""Candidate detector engines: a rule set from files, or a model pinned to a version.

A candidate replaces one engine of those the settings run (``rules`` or ``models``) and
leaves the other as it is, so a backtest or a shadow run differs from the stream only
where the candidate does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.detect.engines import (
    ModelEngineRunner,
    RuleEngineRunner,
    build_engines,
    model_policy,
)
from pipeline.errors import TocsinError
from pipeline.settings import Settings


class CandidateError(TocsinError):
    """A candidate is malformed (bad NAME=VERSION, unknown model or version)."""


@dataclass(frozen=True)
class Candidate:
    """What to try: rule files, or model versions (``{"robust-seasonal": 3}``)."""

    rules: tuple[str, ...] = ()
    models: Mapping[str, int] | None = None

    @property
    def engine(self) -> str:
        """The engine the candidate replaces."""
        return "rules" if self.rules else "models"

    def describe(self) -> str:
        """``rules a.yaml,b.yaml`` or ``models robust-seasonal=3``."""
        if self.rules:
            return "rules " + ",".join(self.rules)
        return "models " + ",".join(f"{k}={v}" for k, v in sorted((self.models or {}).items()))


def parse_candidate(rules: Sequence[str] = (), models: Sequence[str] = ()) -> Candidate:
    """A candidate from ``--rules FILE...`` or ``--model NAME=VERSION...`` (one of them)."""
    if bool(rules) == bool(models):
        raise CandidateError("give the candidate as --rules FILE... or --model NAME=VERSION "
                             "(one of the two)")
    pinned: dict[str, int] = {}
    for text in models:
        name, sep, version = text.partition("=")
        if not sep or not name or not version.isdigit():
            raise CandidateError(f"--model {text!r}: expected NAME=VERSION, e.g. "
                                 "robust-seasonal=3")
        pinned[name] = int(version)
    return Candidate(tuple(rules), pinned or None)


class PinnedRegistry:
    """A model registry whose current version of some models is fixed by the candidate."""

    def __init__(self, registry: Any, pinned: Mapping[str, int]) -> None:
        self.registry = registry
        self.pinned = dict(pinned)
        for name, version in self.pinned.items():
            try:
                registry.metadata(name, version)
            except TocsinError as exc:
                raise CandidateError(f"--model {name}={version}: {exc}") from None

    def current(self, name: str) -> Any:
        """The pinned version of ``name``, else the registry's current one."""
        if name in self.pinned:
            return self.registry.metadata(name, self.pinned[name])
        return self.registry.current(name)

    def load(self, name: str, version: int | None = None) -> Any:
        """A published model."""
        return self.registry.load(name, version)


class PinnedModelRunner(ModelEngineRunner):
    """The model engine with some models pinned to a version (no hot reload of those)."""

    def __init__(self, registry_dir: str, pinned: Mapping[str, int], **policy: Any) -> None:
        from models import ModelRegistry

        if not registry_dir:
            raise CandidateError("--model needs a model registry (detect.model_registry or "
                                 "--registry)")
        registry = PinnedRegistry(ModelRegistry(registry_dir), pinned)
        self.engine = self._engine(registry, **policy)


def candidate_engine(settings: Settings, candidate: Candidate) -> Any:
    """The engine a candidate stands for, configured like the settings' own."""
    detect = settings.detect
    if candidate.rules:
        return RuleEngineRunner(list(candidate.rules), detect.allowed_lateness_ms,
                                detect.keepalive_ms)
    return PinnedModelRunner(detect.model_registry, candidate.models or {},
                             **model_policy(detect))


SHADOW_PREFIX = "shadow-"


def shadow_engines(settings: Settings) -> dict[str, Any]:
    """The shadow candidates the settings name (``detect.shadow_rules``,
    ``detect.shadow_models``), by engine name (``shadow-rules``, ``shadow-models``)."""
    detect = settings.detect
    out: dict[str, Any] = {}
    if detect.shadow_rule_paths:
        from pipeline.detect.engines import rule_files

        files = [str(f) for f in rule_files(detect.shadow_rule_paths)]
        out[SHADOW_PREFIX + "rules"] = candidate_engine(settings, Candidate(tuple(files)))
    if detect.shadow_model_versions:
        candidate = parse_candidate(models=detect.shadow_model_versions)
        out[SHADOW_PREFIX + "models"] = candidate_engine(settings, candidate)
    return out


def engines_with(settings: Settings, candidate: Candidate | None) -> dict[str, Any]:
    """The settings' engines, with the candidate's in place of the one it replaces."""
    engines = build_engines(settings)
    if candidate is not None:
        engines[candidate.engine] = candidate_engine(settings, candidate)
    return engines
