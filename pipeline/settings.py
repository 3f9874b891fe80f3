"""Frozen, validated settings built once at start-up.

Sources, later ones winning: built-in defaults, an optional TOML file (``--config`` or
``TOCSIN_CONFIG``), then environment variables named ``TOCSIN_<SECTION>_<FIELD>``
(``TOCSIN_KAFKA_BOOTSTRAP_SERVERS``, ``TOCSIN_STORE_CLICKHOUSE_URL`` ...). Each TOML
section matches one dataclass below. A bad value fails at start with the setting's name.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import SettingsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_PREFIX = "TOCSIN_"


class Secret(str):
    """A string that never shows its value in ``repr``, logs or tracebacks."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"

    def __str__(self) -> str:
        return "***" if self else ""

    def reveal(self) -> str:
        """The real value, for handing to a client library."""
        return str.__str__(self)


def _default_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tocsin"


@dataclass(frozen=True)
class KafkaSettings:
    """Where the Kafka cluster is and how to authenticate to it."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: Secret = Secret("")
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    client_id: str = "tocsin"


@dataclass(frozen=True)
class TopicSettings:
    """Topic names and how new topics are created."""

    metrics: str = "tocsin.metrics"
    logs: str = "tocsin.logs"
    traces: str = "tocsin.traces"
    detections: str = "tocsin.detections"
    alerts: str = "tocsin.alerts"
    deadletter: str = "tocsin.deadletter"
    by_service: str = "tocsin.by-service"
    control: str = "tocsin.control"
    partitions: int = 4
    replication_factor: int = 1


@dataclass(frozen=True)
class StoreSettings:
    """The ClickHouse store: embedded (chdb, a data directory) or a server URL."""

    path: str = str(_default_home() / "store")
    clickhouse_url: str = ""  # http(s)://host:port, or chdb:///abs/path (chDB in-process)
    clickhouse_user: str = "default"
    clickhouse_password: Secret = Secret("")
    database: str = "tocsin"
    ttl_days: int = 30

    @property
    def embedded(self) -> bool:
        """True when Tocsin's own chdb backend (a data directory, no URL) is the store."""
        return not self.clickhouse_url

    @property
    def in_process(self) -> bool:
        """True when the engine runs inside the process that opens it (one process per
        data directory): the embedded backend, or clickhouse-connect on ``chdb:///path``."""
        return self.embedded or self.clickhouse_url.startswith("chdb:")

    @property
    def identity(self) -> str:
        """Which store this is, without credentials: ``chdb:<real path>/<database>`` for an
        in-process engine, ``<scheme>://<host>:<port>/<database>`` for a server."""
        if self.in_process:
            path = self.path if self.embedded else self.clickhouse_url[len("chdb://"):]
            return f"chdb:{os.path.realpath(path)}/{self.database}"
        parsed = urlsplit(self.clickhouse_url)
        port = parsed.port or (8443 if parsed.scheme == "https" else 8123)
        return f"{parsed.scheme}://{parsed.hostname}:{port}/{self.database}"


@dataclass(frozen=True)
class QuerySettings:
    """Limits on the read queries analysts run (the query page and ``tocsin query``).

    They are set on the read-only connection before ``readonly = 1``, so a query cannot
    lift them; 0 means no limit, as in ClickHouse.
    """

    max_execution_time_s: float = 60.0
    max_memory_bytes: int = 2_000_000_000
    max_result_rows: int = 1_000_000


@dataclass(frozen=True)
class IngestSettings:
    """Batching and input limits of the ingest agents."""

    batch_size: int = 1000
    batch_within_ms: int = 500
    max_message_bytes: int = 1_048_576
    max_future_ms: int = 3_600_000
    store_retry_max_s: float = 30.0


@dataclass(frozen=True)
class DetectSettings:
    """Rule detectors in the stream: which rule files, lateness, keep-alives, reloads."""

    enabled: bool = True
    rules: str = ""  # comma-separated rule files or directories; empty: the built-in rules
    allowed_lateness_ms: int = 60_000
    keepalive_ms: int = 300_000  # re-send a firing detection: the correlator's liveness
    reload_interval_s: float = 5.0
    models: bool = True  # run the online anomaly models beside the rules
    model_registry: str = ""  # directory of published model versions (empty: built-ins)

    @property
    def rule_paths(self) -> list[str]:
        """The configured rule files and directories (empty: built-in rules)."""
        return [p.strip() for p in self.rules.split(",") if p.strip()]


@dataclass(frozen=True)
class CorrelateSettings:
    """The correlator: its scope, the call graph it starts from, grouping and alert timing.

    The ``*_ms`` values are Alertmanager's settings of the same names; the rest of the
    correlator's tuning keeps its defaults (``pipeline/correlate/settings.py``).
    """

    enabled: bool = True
    scope: str = "default"  # environment / cluster: one state and one problem set per scope
    dependencies: str = ""  # YAML file: caller -> [callees]; until traces teach the graph
    knowledge: str = ""  # extra knowledge-base YAML files, comma-separated
    group_wait_ms: int = 30_000
    group_interval_ms: int = 300_000
    repeat_interval_ms: int = 14_400_000
    resolve_timeout_ms: int = 1_800_000
    reopen_window_ms: int = 1_800_000
    max_duration_ms: int = 86_400_000


@dataclass(frozen=True)
class WorkerSettings:
    """The Faust worker: consumer group id, state directory and its web server."""

    app_id: str = "tocsin"
    data_dir: str = str(_default_home() / "worker")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    log_level: str = "info"
    session_timeout_ms: int = 10_000
    api_token: Secret = Secret("")  # when set, every /tocsin page wants "Bearer <token>"


@dataclass(frozen=True)
class Settings:
    """All of Tocsin's settings; build with :func:`load_settings`."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    detect: DetectSettings = field(default_factory=DetectSettings)
    correlate: CorrelateSettings = field(default_factory=CorrelateSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    query: QuerySettings = field(default_factory=QuerySettings)

    def redacted(self) -> dict[str, dict[str, Any]]:
        """Every setting as plain data, secrets masked: safe to log or print."""
        return {
            section.name: {
                f.name: (str(v) if isinstance(v, Secret) else v)
                for f in dataclasses.fields(getattr(self, section.name))
                for v in [getattr(getattr(self, section.name), f.name)]
            }
            for section in dataclasses.fields(self)
        }


_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("kafka", "security_protocol"): ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    ("kafka", "sasl_mechanism"): ("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    ("worker", "log_level"): ("crit", "error", "warn", "info", "debug"),
}
_POSITIVE = {
    ("topics", "partitions"),
    ("topics", "replication_factor"),
    ("ingest", "batch_size"),
    ("ingest", "batch_within_ms"),
    ("ingest", "max_message_bytes"),
    ("ingest", "store_retry_max_s"),
    ("worker", "session_timeout_ms"),
    ("detect", "reload_interval_s"),
}
_NON_NEGATIVE = {("store", "ttl_days"), ("ingest", "max_future_ms"), ("worker", "web_port"),
                 ("detect", "allowed_lateness_ms"), ("detect", "keepalive_ms"),
                 ("query", "max_execution_time_s"), ("query", "max_memory_bytes"),
                 ("query", "max_result_rows")}
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_name(section: str, name: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{name.upper()}"


def _coerce(section: str, name: str, kind: Any, raw: Any, source: str) -> Any:
    where = f"setting {section}.{name} (from {source})"
    shown = "***" if kind in (Secret, "Secret") else repr(raw)
    try:
        if kind in (int, "int"):
            if isinstance(raw, bool):
                raise ValueError
            return int(raw)
        if kind in (float, "float"):
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if kind in (bool, "bool"):
            if isinstance(raw, bool):
                return raw
            flag = str(raw).strip().lower()
            if flag in ("1", "true", "yes", "on"):
                return True
            if flag in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind in (Secret, "Secret"):
            if not isinstance(raw, str):
                raise ValueError
            return Secret(raw)
        if not isinstance(raw, str):
            raise ValueError
        return raw
    except (TypeError, ValueError):
        expected = {"int": "an integer", "float": "a number", "bool": "true or false"}.get(
            getattr(kind, "__name__", str(kind)), "a string")
        raise SettingsError(f"{where}: expected {expected}, got {shown}") from None


def _validate(settings: Settings) -> None:
    for (section, name), choices in _CHOICES.items():
        value = getattr(getattr(settings, section), name)
        if value not in choices:
            raise SettingsError(
                f"setting {section}.{name} ({_env_name(section, name)}): {value!r} is not one "
                f"of {', '.join(repr(c) for c in choices)}"
            )
    for section, name in _POSITIVE:
        value = getattr(getattr(settings, section), name)
        if value <= 0:
            raise SettingsError(
                f"setting {section}.{name} ({_env_name(section, name)}): must be > 0, "
                f"got {value!r}"
            )
    for section, name in _NON_NEGATIVE:
        value = getattr(getattr(settings, section), name)
        if value < 0:
            raise SettingsError(
                f"setting {section}.{name} ({_env_name(section, name)}): must be >= 0, "
                f"got {value!r}"
            )
    for f in dataclasses.fields(TopicSettings):
        value = getattr(settings.topics, f.name)
        if f.type in (str, "str") and not _TOPIC_NAME.match(value):
            raise SettingsError(
                f"setting topics.{f.name} ({_env_name('topics', f.name)}): {value!r} is not a "
                "valid Kafka topic name (letters, digits, '.', '_', '-')"
            )
    for server in settings.kafka.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            raise SettingsError(
                "setting kafka.bootstrap_servers (TOCSIN_KAFKA_BOOTSTRAP_SERVERS): "
                f"{server.strip()!r} is not host:port"
            )
    if not _IDENTIFIER.match(settings.store.database):
        raise SettingsError(
            f"setting store.database (TOCSIN_STORE_DATABASE): {settings.store.database!r} "
            "is not a valid database name"
        )
    url = settings.store.clickhouse_url
    if url and not re.match(r"^(https?://[^/\s]+|chdb:///\S+)", url):
        raise SettingsError(
            f"setting store.clickhouse_url (TOCSIN_STORE_CLICKHOUSE_URL): {url!r} is not an "
            "http(s):// URL nor chdb:///absolute/path"
        )
    if settings.worker.web_port > 65535:
        raise SettingsError(
            f"setting worker.web_port (TOCSIN_WORKER_WEB_PORT): {settings.worker.web_port} "
            "is not a port number"
        )
    if settings.kafka.security_protocol.startswith("SASL") and not settings.kafka.sasl_mechanism:
        raise SettingsError(
            "setting kafka.sasl_mechanism (TOCSIN_KAFKA_SASL_MECHANISM): required when "
            f"security_protocol is {settings.kafka.security_protocol}"
        )


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from defaults, an optional TOML file and ``TOCSIN_*`` variables.

    Raises :class:`SettingsError` naming the setting and the bad value.
    """
    env = os.environ if environ is None else environ
    config_file = config_file or env.get(f"{ENV_PREFIX}CONFIG") or None
    from_file: dict[str, Any] = {}
    if config_file:
        path = Path(config_file)
        try:
            from_file = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise SettingsError(f"settings file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from None

    sections = {f.name: f for f in dataclasses.fields(Settings)}
    for section_name, values in from_file.items():
        if section_name not in sections:
            raise SettingsError(
                f"settings file {config_file}: unknown section [{section_name}] "
                f"(known: {', '.join(sections)})"
            )
        if not isinstance(values, dict):
            raise SettingsError(f"settings file {config_file}: [{section_name}] must be a table")

    known_env = set()
    built: dict[str, Any] = {}
    for section_name, section_field in sections.items():
        cls = section_field.default_factory  # type: ignore[misc]
        file_values = from_file.get(section_name, {})
        field_types = {f.name: f.type for f in dataclasses.fields(cls)}
        for key in file_values:
            if key not in field_types:
                raise SettingsError(
                    f"settings file {config_file}: unknown setting {section_name}.{key} "
                    f"(known: {', '.join(field_types)})"
                )
        kwargs: dict[str, Any] = {}
        for name, kind in field_types.items():
            env_name = _env_name(section_name, name)
            known_env.add(env_name)
            if env_name in env:
                kwargs[name] = _coerce(section_name, name, kind, env[env_name], env_name)
            elif name in file_values:
                kwargs[name] = _coerce(
                    section_name, name, kind, file_values[name], str(config_file)
                )
        built[section_name] = cls(**kwargs)

    unknown = sorted(
        k for k in env if k.startswith(ENV_PREFIX) and k not in known_env
        and k != f"{ENV_PREFIX}CONFIG" and not k.startswith(f"{ENV_PREFIX}TEST_")
    )
    if unknown:
        raise SettingsError(
            f"unknown environment variable {unknown[0]} (settings are TOCSIN_<SECTION>_<FIELD>, "
            f"sections: {', '.join(sections)})"
        )
    settings = Settings(**built)
    _validate(settings)
    return settings
