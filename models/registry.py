"""The model registry: published model versions as files in a directory.

A model is a metric detector (:mod:`models.univariate`, :mod:`models.forecast`,
:mod:`models.multivariate`) or the configuration of the log or trace analytics
(:class:`~models.analytics.LogPatterns`, :class:`~models.analytics.TraceRED`).

Layout (``root`` is configurable; nothing else is written)::

    root/<name>/<version>/model.json      class + constructor parameters (always)
    root/<name>/<version>/model.pkl       the pickled detector, only when its parameters
                                          are not plain JSON (e.g. a river forecaster)
    root/<name>/<version>/metadata.json   training range, parameters, evaluation, who/when
    root/<name>/current.json              {"version": ..., "history": [...]}

Versions are 1, 2, 3 ... per name. ``publish`` makes the new version current unless told
not to; ``set_current`` points at any version; ``rollback`` returns to the version that
was current before. Files are written to a temporary name and renamed, so a reader
(a worker polling for a new version) never sees half a file.

>>> import tempfile
>>> from models.univariate import RobustSeasonal
>>> reg = ModelRegistry(tempfile.mkdtemp())
>>> reg.publish("robust-seasonal", RobustSeasonal(alpha=0.01), author="ds",
...             created_ms=1_700_000_000_000).version
1
>>> reg.load("robust-seasonal").alpha
0.01
>>> from models.analytics import LogPatterns
>>> reg.publish("log-patterns", LogPatterns(min_count=20), created_ms=1_700_000_000_000).cls
'LogPatterns'
>>> reg.load("log-patterns").min_count
20
"""

from __future__ import annotations

import os
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from models.analytics import AnalyticsModel
from models.base import Detector, ModelError

Model = Detector | AnalyticsModel
"""What the registry versions: a detector, or a log or trace model's configuration."""


def detector_classes() -> dict[str, type[Detector]]:
    """Detector classes the registry can rebuild from parameters, by class name."""
    from models.ensemble import SeasonalEnsemble
    from models.forecast import ForecastResidual, HalfSpaceTreesScorer
    from models.multivariate import ServiceVectorHST
    from models.univariate import RobustSeasonal

    return {c.__name__: c for c in (SeasonalEnsemble, RobustSeasonal, ForecastResidual,
                                    HalfSpaceTreesScorer, ServiceVectorHST)}


def analytics_classes() -> dict[str, type[AnalyticsModel]]:
    """Log and trace model configurations the registry can rebuild, by class name."""
    from models.analytics import LogPatterns, TraceRED

    return {c.__name__: c for c in (LogPatterns, TraceRED)}


def model_classes() -> dict[str, type[Model]]:
    """Every class the registry rebuilds from parameters alone, by class name."""
    return {**detector_classes(), **analytics_classes()}


@dataclass(frozen=True)
class ModelVersion:
    """Metadata of one published version."""

    name: str
    version: int
    cls: str
    params: dict[str, Any]
    created_ms: int
    author: str = ""
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # e.g. {"start_ms", "end_ms"}
    evaluation: dict[str, Any] = field(default_factory=dict)  # e.g. NAB scores

    @property
    def label(self) -> str:
        """The version as detections carry it."""
        return str(self.version)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _json_params(detector: Model) -> dict[str, Any] | None:
    params = detector.params
    try:
        return orjson.loads(orjson.dumps(params))
    except TypeError:
        return None


class ModelRegistry:
    """Publish, list, load, set current and roll back model versions under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ModelError(f"model name {name!r}: expected a plain name like "
                             "'robust-seasonal'")
        return self.root / name

    def names(self) -> list[str]:
        """Names with at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith("."))

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        base = self._dir(name)
        if not base.is_dir():
            return []
        out = []
        for p in base.iterdir():
            if p.is_dir() and p.name.isdigit() and (p / "metadata.json").exists():
                out.append(ModelVersion(**orjson.loads((p / "metadata.json").read_bytes())))
        return sorted(out, key=lambda v: v.version)

    def _pointer(self, name: str) -> dict[str, Any]:
        path = self._dir(name) / "current.json"
        if not path.exists():
            return {"version": None, "history": []}
        return orjson.loads(path.read_bytes())

    def current(self, name: str) -> ModelVersion | None:
        """The current version of ``name`` (``None`` when nothing was published)."""
        version = self._pointer(name)["version"]
        return None if version is None else self.metadata(name, version)

    def metadata(self, name: str, version: int) -> ModelVersion:
        """Metadata of one version."""
        path = self._dir(name) / str(version) / "metadata.json"
        if not path.exists():
            known = [v.version for v in self.versions(name)]
            raise ModelError(f"model {name!r} has no version {version} (versions: {known})")
        return ModelVersion(**orjson.loads(path.read_bytes()))

    def publish(self, name: str, detector: Model, *, author: str = "",
                description: str = "", training: dict[str, Any] | None = None,
                evaluation: dict[str, Any] | None = None, created_ms: int,
                make_current: bool = True, with_state: bool = False) -> ModelVersion:
        """Store ``detector`` as the next version of ``name``; ``created_ms`` is 'now'.

        Only the configuration is stored (JSON) unless ``with_state`` (a trained
        river model whose learnt state matters) or the parameters are not plain JSON:
        then the detector is pickled too.
        """
        base = self._dir(name)
        base.mkdir(parents=True, exist_ok=True)
        existing = [v.version for v in self.versions(name)]
        version = max(existing, default=0) + 1
        folder = base / str(version)
        folder.mkdir()
        params = _json_params(detector)
        meta = ModelVersion(name, version, type(detector).__name__,
                            params if params is not None else {}, created_ms, author,
                            description, dict(training or {}), dict(evaluation or {}))
        if with_state or params is None or type(detector).__name__ not in model_classes():
            _write_atomic(folder / "model.pkl", pickle.dumps(detector))
        _write_atomic(folder / "model.json", orjson.dumps(
            {"class": meta.cls, "params": meta.params}, option=orjson.OPT_INDENT_2))
        _write_atomic(folder / "metadata.json", orjson.dumps(
            asdict(meta), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
        if make_current:
            self.set_current(name, version)
        return meta

    def load(self, name: str, version: int | None = None) -> Model:
        """A fresh detector (or log/trace configuration) of ``name`` at ``version``
        (default: the current one)."""
        if version is None:
            current = self.current(name)
            if current is None:
                raise ModelError(f"model {name!r} has no current version in {self.root}")
            version = current.version
        meta = self.metadata(name, version)
        folder = self._dir(name) / str(version)
        if (folder / "model.pkl").exists():
            with open(folder / "model.pkl", "rb") as fh:
                return pickle.load(fh)
        classes = model_classes()
        if meta.cls not in classes:
            raise ModelError(f"model {name!r} v{version}: unknown class {meta.cls!r}")
        return classes[meta.cls](**meta.params)

    def set_current(self, name: str, version: int) -> ModelVersion:
        """Make ``version`` current (remembering the previous one for rollback)."""
        meta = self.metadata(name, version)
        pointer = self._pointer(name)
        history = list(pointer["history"])
        if pointer["version"] is not None and pointer["version"] != version:
            history.append(pointer["version"])
        _write_atomic(self._dir(name) / "current.json",
                      orjson.dumps({"version": version, "history": history[-50:]}))
        return meta

    def rollback(self, name: str) -> ModelVersion:
        """Return to the version that was current before the current one."""
        pointer = self._pointer(name)
        if not pointer["history"]:
            raise ModelError(f"model {name!r}: nothing to roll back to")
        previous = pointer["history"][-1]
        self.metadata(name, previous)
        _write_atomic(self._dir(name) / "current.json",
                      orjson.dumps({"version": previous, "history": pointer["history"][:-1]}))
        return self.metadata(name, previous)
