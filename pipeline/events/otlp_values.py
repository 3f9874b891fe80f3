"""OTLP values as Tocsin's columns: AnyValue to text, attributes to a string map, resources.

Follows the OpenTelemetry semantic conventions for what a resource says about where a
record comes from: ``service.name`` is the service (``unknown_service`` when absent, as the
SDKs do), ``host.name`` the host (else ``k8s.pod.name``, else ``container.id``), and the
resource attributes in :data:`KEPT_RESOURCE_KEYS` or starting with ``k8s.`` travel in every
record's attributes, with the instrumentation scope as ``otel.scope.name`` / ``.version``.
Everything else on the resource (process, SDK details ...) is left out: it would split
one series into many without telling an operator anything.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

UNKNOWN_SERVICE = "unknown_service"
HOST_KEYS = ("host.name", "k8s.pod.name", "container.id")
KEPT_RESOURCE_KEYS = frozenset({
    "service.namespace", "service.version", "deployment.environment.name",
})
KEPT_RESOURCE_PREFIXES = ("k8s.",)
_LEGACY_ENVIRONMENT = "deployment.environment"
SCOPE_NAME = "otel.scope.name"
SCOPE_VERSION = "otel.scope.version"


def plain_value(value: Any) -> Any:
    """An ``AnyValue`` as a plain Python value (bytes as base64 text, like OTLP/JSON)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [plain_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: plain_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, which)


def text_value(value: Any) -> str:
    """An ``AnyValue`` as one string: a string as is, anything else as JSON text.

    Scalars read the way the JSON codec stores them: ``true``, ``200``, ``0.5``.
    """
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which is None:
        return ""
    if which == "int_value":
        return str(value.int_value)
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    return orjson.dumps(plain_value(value)).decode()


def attributes_dict(attributes: Any) -> dict[str, str]:
    """Repeated ``KeyValue`` as a dict of strings (a later duplicate key wins)."""
    out = {}
    for kv in attributes:
        v = kv.value
        s = v.string_value  # the common case, read without asking which value is set
        out[kv.key] = s if s or v.WhichOneof("value") == "string_value" else text_value(v)
    return out


def resource_fields(attributes: dict[str, str]) -> tuple[str, str, dict[str, str]]:
    """(service, host, kept attributes) of a resource's attributes."""
    service = attributes.get("service.name") or UNKNOWN_SERVICE
    host = ""
    for key in HOST_KEYS:
        if attributes.get(key):
            host = attributes[key]
            break
    kept = {k: v for k, v in attributes.items()
            if k in KEPT_RESOURCE_KEYS or k.startswith(KEPT_RESOURCE_PREFIXES)}
    if _LEGACY_ENVIRONMENT in attributes and "deployment.environment.name" not in kept:
        kept["deployment.environment.name"] = attributes[_LEGACY_ENVIRONMENT]
    return service, host, kept


def scope_attributes(scope: Any, base: dict[str, str]) -> dict[str, str]:
    """``base`` plus the instrumentation scope's name and version, when set."""
    if not scope.name and not scope.version:
        return base
    out = dict(base)
    if scope.name:
        out[SCOPE_NAME] = scope.name
    if scope.version:
        out[SCOPE_VERSION] = scope.version
    return out
