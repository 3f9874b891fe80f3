"""The detector engines a worker runs, built from settings, and their hot reload."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detectors import RuleEngine, RuleFileError, ServiceState, builtin_rule_paths, load_rules
from pipeline.errors import TocsinError
from pipeline.events.detection import Detection
from pipeline.events.packing import unpacked_size
from pipeline.settings import DetectSettings, Settings

log = logging.getLogger("tocsin.rules")


@dataclass(frozen=True)
class ReloadResult:
    """What a reload attempt did: whether rules changed, the version, the problems."""

    changed: bool
    version: str
    problems: list[str] = field(default_factory=list)


def rule_files(paths: Sequence[str | Path]) -> list[Path]:
    """The YAML files behind configured paths (a directory stands for its *.yaml)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]))
        else:
            files.append(path)
    return files


def _fingerprint(files: Sequence[Path]) -> str:
    digest = hashlib.blake2b(digest_size=12)
    for path in files:
        digest.update(str(path).encode())
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"<missing>")
    return digest.hexdigest()


class RuleEngineRunner:
    """The rule engine as the detect step runs it, reloadable from its rule files."""

    def __init__(self, paths: Sequence[str | Path], allowed_lateness_ms: int,
                 keepalive_ms: int = 0) -> None:
        self.paths = list(paths) or list(builtin_rule_paths())
        files = rule_files(self.paths)
        try:
            ruleset = load_rules(files)
        except RuleFileError as exc:
            raise TocsinError("invalid rule files:\n  " + "\n  ".join(exc.problems)) from None
        self._fingerprint = _fingerprint(files)
        self.engine = RuleEngine(ruleset, allowed_lateness_ms, keepalive_ms)

    @property
    def version(self) -> str:
        """The running rule set's version."""
        return self.engine.ruleset.version

    def new_state(self) -> ServiceState:
        """Empty state for a new service."""
        return self.engine.new_state()

    def state_from_bytes(self, data: bytes) -> ServiceState:
        """A stored service state."""
        return ServiceState.from_bytes(data)

    def process(self, signal: str, columns: Mapping[str, Any],
                state: ServiceState) -> tuple[ServiceState, list[Detection], Any]:
        """Fold one service's records into its state."""
        return self.engine.process(signal, columns, state)

    def process_many(self, batches: Sequence[tuple[str, Mapping[str, Any], ServiceState]]
                     ) -> list[tuple[ServiceState, list[Detection], Any]]:
        """Fold many slices (of any services, each service's in order) at once."""
        return self.engine.process_many(batches)

    def advance(self, state: ServiceState, watermark_ms: int
                ) -> tuple[ServiceState, list[Detection]]:
        """Let event time pass for a service."""
        return self.engine.advance(state, watermark_ms)

    def reload(self, force: bool = False) -> ReloadResult:
        """Load the rule files again if they changed; a bad file keeps the old rules."""
        files = rule_files(self.paths)
        fingerprint = _fingerprint(files)
        if fingerprint == self._fingerprint and not force:
            return ReloadResult(False, self.version)
        try:
            ruleset = load_rules(files)
        except RuleFileError as exc:
            for problem in exc.problems:
                log.error("rule reload rejected, the previous rules keep running: %s", problem)
            self._fingerprint = fingerprint  # report a broken file once, not every poll
            return ReloadResult(False, self.version, list(exc.problems))
        self._fingerprint = fingerprint
        changed = ruleset.version != self.version
        self.engine.reload(ruleset)
        if changed:
            log.warning("rules reloaded: version %s, %d rules", ruleset.version,
                        len(ruleset.rules))
        return ReloadResult(changed, self.version)


class ModelEngineRunner:
    """The online models as the detect step runs them; new registry versions hot-reload.

    ``keepalive_ms`` re-sends firing model alarms like the rules' (0: off);
    ``accept_points`` is the policy for a series that settled at a new level (see
    :class:`~models.series.SeriesBank`).
    """

    def __init__(self, registry_dir: str, keepalive_ms: int = 0,
                 accept_points: int = 360, accept_ms: int = 0, rearm: bool = True,
                 stale_ms: int = 0) -> None:
        from models import ModelRegistry

        registry = ModelRegistry(registry_dir) if registry_dir else None
        self.engine = self._engine(registry, keepalive_ms=keepalive_ms,
                                   accept_points=accept_points, accept_ms=accept_ms,
                                   rearm=rearm, stale_ms=stale_ms)

    @staticmethod
    def _engine(registry: Any, **policy: Any) -> Any:
        from models import ModelEngine

        return ModelEngine(registry=registry, **policy)

    @property
    def version(self) -> str:
        """The running model versions, e.g. ``robust-seasonal=3,service-hst=builtin-1``."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.engine.versions.items()))

    def new_state(self) -> Any:
        """Empty model state for a new service."""
        return self.engine.new_state()

    def state_from_bytes(self, data: bytes) -> Any:
        """A stored service state."""
        from models import ServiceModelState

        return ServiceModelState.from_bytes(data, self.engine)

    def decoded_size(self, data: bytes) -> int:
        """About the memory a stored state takes decoded (its JSON's length: the series
        as hex take about what their columns and keys take), without decoding it."""
        return unpacked_size(data)

    def process(self, signal: str, columns: Mapping[str, Any], state: Any) -> tuple:
        """Score one service's records."""
        return self.engine.process(signal, columns, state)

    def advance(self, state: Any, watermark_ms: int) -> tuple:
        """Let event time pass for a service."""
        return self.engine.advance(state, watermark_ms)

    def stage(self, signal: str, columns: Mapping[str, Any], state: Any) -> Any:
        """A metric slice made ready to score with others (None: process it alone)."""
        return self.engine.stage(signal, columns, state)

    def process_staged(self, staged: Sequence[Any]) -> list:
        """Score staged slices of any services together, as one by one."""
        return self.engine.process_staged(staged)

    def call_graph(self, state: Any) -> list[tuple[str, str, int, int]]:
        """Caller → callee edges learned from a service's spans."""
        return self.engine.call_graph(state)

    def missing_series(self, columns: Mapping[str, Any], state: Any) -> list[tuple[str, str]]:
        """(host, metric) of the batch's series without model state."""
        return self.engine.missing_series(columns, state)

    def seed(self, state: Any, history: Mapping[str, Any]) -> int:
        """Teach series without state their stored history; the number seeded."""
        return self.engine.seed(state, history)

    def reload(self, force: bool = False) -> ReloadResult:
        """Pick up newly published current versions from the registry."""
        changed = self.engine.reload()
        if changed:
            log.warning("models reloaded: %s", self.version)
        return ReloadResult(changed, self.version)


def model_policy(detect: DetectSettings) -> dict[str, Any]:
    """The model engine's alarm policy as the settings give it (keep-alives, a new level
    accepted, re-arming, silence): every engine built from the settings runs this one."""
    return {"keepalive_ms": detect.keepalive_ms, "accept_points": detect.accept_points,
            "accept_ms": detect.accept_ms, "rearm": detect.rearm, "stale_ms": detect.stale_ms}


def build_engines(settings: Settings) -> dict[str, Any]:
    """The engines the settings enable, by name (the name keys their state table)."""
    if not settings.detect.enabled:
        return {}
    engines: dict[str, Any] = {"rules": RuleEngineRunner(settings.detect.rule_paths,
                                                         settings.detect.allowed_lateness_ms,
                                                         settings.detect.keepalive_ms)}
    if settings.detect.models:
        engines["models"] = ModelEngineRunner(settings.detect.model_registry,
                                              **model_policy(settings.detect))
    return engines
