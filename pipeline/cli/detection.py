"""Commands of detection: rule files, scoring a series with a model, the model registry."""

from __future__ import annotations

import argparse

from pipeline.errors import TocsinError
from pipeline.settings import Settings


def cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    """Validate rule files, try them on recorded telemetry, or reload a worker's rules."""
    from pipeline.cli.rules import test_command, validate_command

    if args.action == "validate":
        return validate_command(args.files)
    if args.action == "test":
        if not args.input:
            raise TocsinError("tocsin rules test needs --input NDJSON")
        return test_command(args.files, args.input, json_lines=args.json,
                            allowed_lateness_ms=settings.detect.allowed_lateness_ms,
                            keepalive_ms=settings.detect.keepalive_ms)
    from pipeline.api.query import call_worker
    from pipeline.api.web import RULES_RELOAD_PATH

    answer = call_worker(settings, RULES_RELOAD_PATH, {})
    if answer.get("problems"):
        print("rejected, the previous rules keep running:")
        for problem in answer["problems"]:
            print(f"  {problem}")
        return 1
    print(f"rules version {answer['version']} "
          f"({'reloaded' if answer['changed'] else 'unchanged'})")
    return 0


def _params(items: list[str] | None) -> dict[str, object] | None:
    if not items:
        return None
    bad = [i for i in items if "=" not in i]
    if bad:
        raise TocsinError(f"--param expects NAME=VALUE, got {bad[0]!r}")
    def value(text: str) -> object:
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text

    return {k: value(v) for k, v in (i.split("=", 1) for i in items)}


def cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    """Score a timestamp,value CSV exactly as the stream would."""
    from pipeline.cli.models import score_command

    return score_command(args.input, args.output, model=args.model,
                         registry_dir=args.registry or settings.detect.model_registry or None,
                         version=_version(args.version), params=_params(args.param))


def _version(text: str | None) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise TocsinError(f"--version expects a version number (1, 2 ...), got {text!r}")
    return int(text)


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    """List, publish, set current or roll back model versions in the registry."""
    import time

    from pipeline.cli.models import models_command

    registry = args.registry or settings.detect.model_registry
    if not registry and args.action == "list":
        from pipeline.cli.models import list_builtin

        return list_builtin()
    if not registry:
        raise TocsinError("no model registry: pass --registry DIR or set "
                          "TOCSIN_DETECT_MODEL_REGISTRY")
    version = _version(args.version)
    return models_command(args.action, registry, name=args.name, version=version,
                          params=_params(args.param), author=args.author,
                          description=args.description, now_ms=int(time.time() * 1000))
