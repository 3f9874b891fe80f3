"""Command functions behind ``tocsin score`` and ``tocsin models`` (the CLI wires them).

They print a short summary and return an exit code: 0 done, 2 bad input (the message
says what). The wall clock is read here, at the command boundary, never deeper.
"""

from __future__ import annotations

import inspect
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from models.base import Detector, ModelError
from models.registry import Model, ModelRegistry, model_classes
from pipeline.evaluate.score import score_csv

BUILTIN_MODELS = {"seasonal-ensemble": "SeasonalEnsemble", "robust-seasonal": "RobustSeasonal",
                  "holt-winters": "ForecastResidual",
                  "half-space-trees": "HalfSpaceTreesScorer", "service-hst": "ServiceVectorHST",
                  "log-patterns": "LogPatterns", "trace-red": "TraceRED"}
"""Model names usable without a registry, and their classes."""


def resolve_detector(model: str, registry_dir: str | Path | None = None,
                     version: int | None = None,
                     params: Mapping[str, Any] | None = None) -> tuple[Model, str]:
    """The model ``model`` names (registry first, then built-ins) and its version."""
    if registry_dir is not None:
        registry = ModelRegistry(registry_dir)
        if model in registry.names() and (version is not None or registry.current(model)):
            detector = registry.load(model, version)
            label = str(version or registry.current(model).version)
            if not params:
                return detector, label
            checked = check_params(model, type(detector), params)
            try:
                clone = detector.clone(checked)
            except ModelError:
                raise
            except (TypeError, ValueError) as exc:
                raise ModelError(f"model {model!r}: bad parameter value: {exc}") from None
            check_values(model, type(detector), checked)
            return clone, label
    if version is not None:
        raise ModelError(f"model {model!r} version {version}: no registry with that model "
                         f"(give --registry)")
    cls_name = BUILTIN_MODELS.get(model)
    if cls_name is None:
        raise ModelError(f"unknown model {model!r}; built-in models: "
                         f"{', '.join(BUILTIN_MODELS)}")
    cls = model_classes()[cls_name]
    checked = check_params(model, cls, params or {})
    try:
        detector = cls(**checked)  # a model's own checks speak first
    except ModelError:
        raise
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model {model!r}: bad parameter value: {exc}") from None
    check_values(model, cls, checked)
    return detector, "builtin-1"


def parameters_of(cls: type) -> dict[str, Any]:
    """The constructor parameters of a model class and their defaults."""
    return {name: p.default for name, p in inspect.signature(cls).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_params(model: str, cls: type, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` checked against the model's constructor: :class:`ModelError` naming
    a parameter it does not take; ``true`` and ``false`` become booleans where the
    default is one."""
    known = parameters_of(cls)
    unknown = [name for name in params if name not in known]
    if unknown:
        raise ModelError(f"model {model!r}: bad parameters: it has no parameter "
                         f"{', '.join(repr(n) for n in unknown)} (its parameters: "
                         f"{', '.join(known)})")
    out = dict(params)
    for name, value in params.items():
        if isinstance(known[name], bool) and str(value).lower() in ("true", "false"):
            out[name] = str(value).lower() == "true"
    return out


def check_values(model: str, cls: type, params: Mapping[str, Any]) -> None:
    """:class:`ModelError` for a value of another kind than the parameter's default (a
    text for a number, anything but true or false for a flag): not every model checks
    its own parameters."""
    known = parameters_of(cls)
    for name, value in params.items():
        default = known[name]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ModelError(f"model {model!r}: --param {name}= expects true or false, "
                             f"got {value!r}")
        if (isinstance(default, (int, float)) and not isinstance(default, bool)
                and (isinstance(value, bool) or not isinstance(value, (int, float)))):
            raise ModelError(f"model {model!r}: --param {name}= expects a number, "
                             f"got {value!r}")


def list_builtin(out: TextIO | None = None) -> int:
    """``tocsin models list`` without a registry: the built-in models."""
    out = out or sys.stdout
    classes = model_classes()
    width = max(len(n) for n in BUILTIN_MODELS)
    print("built-in models (to publish versions, give a registry: --registry DIR or\n"
          "TOCSIN_DETECT_MODEL_REGISTRY):", file=out)
    for name, cls_name in BUILTIN_MODELS.items():
        params = ", ".join(parameters_of(classes[cls_name]))
        print(f"  {name:<{width}}  {cls_name}", file=out)
        print(textwrap.fill(f"parameters: {params}", 78, initial_indent=" " * (width + 4),
                            subsequent_indent=" " * (width + 6)), file=out)
    return 0


def score_command(input: str | Path, output: str | Path, model: str = "seasonal-ensemble",
                  registry_dir: str | Path | None = None, version: int | None = None,
                  params: Mapping[str, Any] | None = None, out: TextIO = sys.stdout) -> int:
    """``tocsin score``: stream a ``timestamp,value`` CSV through a detector into a CSV."""
    try:
        detector, label = resolve_detector(model, registry_dir, version, params)
        if not isinstance(detector, Detector):
            raise ModelError(f"model {model!r} scores windows of log or trace records, "
                             "not a timestamp,value series")
        try:
            rows = score_csv(input, output, detector)
        except (ArithmeticError, ValueError, TypeError) as exc:  # the detector's own
            raise ModelError(f"model {model!r} could not score {input}: "
                             f"{type(exc).__name__}: {exc}") from exc
    except (ModelError, OSError) as exc:
        print(f"tocsin score: {_one_line(exc)}", file=sys.stderr)
        return 2
    print(f"scored {rows} points of {input} with {model} v{label} -> {output}", file=out)
    return 0


def _one_line(exc: BaseException) -> str:
    """An error as one line (OS errors as their reason and file)."""
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = str(exc)
    return " ".join(text.split())


def models_command(action: str, registry_dir: str | Path, name: str | None = None,
                   version: int | None = None, params: Mapping[str, Any] | None = None,
                   author: str = "", description: str = "", now_ms: int | None = None,
                   out: TextIO = sys.stdout) -> int:
    """``tocsin models list|publish|set-current|rollback``."""
    registry = ModelRegistry(registry_dir)
    try:
        if action == "list":
            names = [name] if name else registry.names()
            for n in names:
                current = registry.current(n)
                for v in registry.versions(n):
                    mark = "*" if current is not None and v.version == current.version else " "
                    print(f"{mark} {n} v{v.version}  {v.cls}  by {v.author or '-'}  "
                          f"{v.description}", file=out)
            if not names:
                print(f"no models in {registry_dir}", file=out)
            return 0
        if not name:
            raise ModelError(f"models {action}: give the model name")
        if action == "publish":
            detector, _ = resolve_detector(name, None, None, params)
            meta = registry.publish(name, detector, author=author, description=description,
                                    created_ms=now_ms if now_ms is not None
                                    else int(time.time() * 1000))
            print(f"published {name} v{meta.version} (current)", file=out)
        elif action == "set-current":
            if version is None:
                raise ModelError("models set-current: give the version")
            meta = registry.set_current(name, version)
            print(f"{name}: current version is now v{meta.version}", file=out)
        elif action == "rollback":
            meta = registry.rollback(name)
            print(f"{name}: rolled back to v{meta.version}", file=out)
        else:
            raise ModelError(f"models: unknown action {action!r}; expected list, publish, "
                             "set-current or rollback")
    except ModelError as exc:
        print(f"tocsin models: {exc}", file=sys.stderr)
        return 2
    return 0
