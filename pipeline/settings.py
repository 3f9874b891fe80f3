"""Frozen, validated settings built once at start-up.

Sources, later ones winning: built-in defaults, an optional TOML file (``--config`` or
``TOCSIN_CONFIG``), then environment variables named ``TOCSIN_<SECTION>_<FIELD>``
(``TOCSIN_KAFKA_BOOTSTRAP_SERVERS``, ``TOCSIN_STORE_CLICKHOUSE_URL`` ...). Each TOML
section matches one dataclass below. A bad value fails at start with the setting's name.

Every ``*_ms`` setting takes milliseconds or a duration (``"30s"``, ``"5m"``, ``"1h30m"``);
a list setting takes a TOML array or a comma-separated string (``"3,6"``, ``"1h,4h"``);
tables (``correlate.static_dependencies``, ``[[correlate.inhibit_rules]]``) come from the
TOML file only.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from pipeline.errors import SettingsError
from pipeline.events import durations
from pipeline.events.detection import CATEGORIES
from pipeline.events.matchers import Matcher, MatcherError, parse_matchers

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
    # the largest message Tocsin writes or expects on a topic, framing included: the
    # producers' max request size, ``max.message.bytes`` of the topics Tocsin creates, the
    # local broker's ``message.max.bytes`` and the consumers' per-partition fetch size
    max_message_bytes: int = 1_048_576
    # how long the broker may hold a worker's fetch when no data is ready. A fetch held
    # for an idle partition blocks every other fetch to that broker meanwhile, so the
    # agents wait for data that is there: Kafka's own consumer default, 500, instead of
    # Faust's 1500 (ingest alone 23-28 % -> 26-35 % of the ceiling, bench/README.md);
    # Faust's own fetch loop, which lost records across a rebalance at 100, is replaced
    fetch_max_wait_ms: int = 500
    # bytes a fetch takes per partition at most (at least max_message_bytes is used)
    fetch_partition_bytes: int = 1_048_576


@dataclass(frozen=True)
class TopicSettings:
    """Topic names and how new topics are created."""

    metrics: str = "tocsin.metrics"
    logs: str = "tocsin.logs"
    traces: str = "tocsin.traces"
    otlp_metrics: str = "otlp_metrics"  # the OpenTelemetry Collector kafka exporter's
    otlp_logs: str = "otlp_logs"  # default topics
    otlp_spans: str = "otlp_spans"
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
    cluster: str = ""  # a server cluster's name: replicated local + Distributed tables

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
    otlp: bool = True  # consume the otlp_* topics
    otlp_encoding: str = "auto"  # of the otlp_* topics: auto, otlp_proto or otlp_json
    otlp_max_series: int = 100_000  # cumulative metric series remembered for rates
    otlp_decoder: str = "auto"  # OTLP protobuf metrics: auto (C when built), c or python
    json_decoder: str = "auto"  # Tocsin JSON (every kind): auto (C when built), c or python


@dataclass(frozen=True)
class DetectSettings:
    """Detectors in the stream: which rule files, lateness, keep-alives, reloads, and the
    online models' warm-up from stored history and level-shift policy."""

    enabled: bool = True
    rules: str = ""  # comma-separated rule files or directories; empty: the built-in rules
    allowed_lateness_ms: int = 60_000
    keepalive_ms: int = 300_000  # re-send a firing detection: the correlator's liveness
    reload_interval_s: float = 5.0
    models: bool = True  # run the online anomaly models beside the rules
    model_registry: str = ""  # directory of published model versions (empty: built-ins)
    # candidates run in shadow beside the current detectors: stored with shadow = true,
    # never correlated nor alerted (empty: none)
    shadow_rules: str = ""  # comma-separated rule files or directories
    shadow_models: str = ""  # comma-separated NAME=VERSION of the model registry
    warmup_history_ms: int = 21_600_000  # seed new model series from this much history (0: off)
    warmup_history_points: int = 720  # at most this many stored points per series
    accept_points: int = 360  # a model alarm on a shifted series resolves once the new
    # level scored normal this many points in a row (0: it fires until the series returns)
    accept_ms: int = 0  # ... or for this long, whatever the point rate (0: off)
    # a model series resting after an alarm arms again once it scored calm (under the clear
    # level) for as long as an alarm takes to confirm, instead of for the whole rest period
    # (false: it rests the whole period, and a settled alarm hides the next excursion)
    rearm: bool = True
    # memory the per-service states a worker keeps decoded between batches may take (by
    # each state's estimate of its arrays and keys); 0: decode every state at every batch
    live_state_bytes: int = 32 * 2**20
    # a firing trace or service-graph alarm whose operation or edge had no call for this
    # long ends (resolved, ``silent``), as a stale series' alert does (0: silence ends none)
    stale_ms: int = 300_000

    @property
    def rule_paths(self) -> list[str]:
        """The configured rule files and directories (empty: built-in rules)."""
        return [p.strip() for p in self.rules.split(",") if p.strip()]

    @property
    def shadow_rule_paths(self) -> list[str]:
        """The shadow candidate's rule files and directories (empty: no shadow rules)."""
        return [p.strip() for p in self.shadow_rules.split(",") if p.strip()]

    @property
    def shadow_model_versions(self) -> list[str]:
        """The shadow candidate's NAME=VERSION entries (empty: no shadow models)."""
        return [p.strip() for p in self.shadow_models.split(",") if p.strip()]


MINUTE_MS = 60_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class InhibitRule:
    """Alertmanager's inhibit rule: while a problem matching ``source`` is open, problems
    matching ``target`` with the same values for the ``equal`` names are not alerted."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any], where: str = "inhibit_rule") -> InhibitRule:
        """A rule from ``{"source": [...], "target": [...], "equal": [...]}``: source and
        target at least one matcher each (an empty list would match nothing)."""
        if not isinstance(obj, Mapping) or set(obj) - {"source", "target", "equal"}:
            _fail(where, obj, "a table of source, target and equal")
        try:
            source = parse_matchers(obj.get("source", ()), f"{where}.source")
            target = parse_matchers(obj.get("target", ()), f"{where}.target")
        except MatcherError as exc:
            raise SettingsError(f"setting correlate.{exc}") from None
        equal = obj.get("equal", [])
        for name, value in (("source", source), ("target", target)):
            if not value:
                _fail(f"{where}.{name}", obj.get(name), "at least one matcher")
        if (isinstance(equal, str) or not isinstance(equal, Sequence)
                or not all(isinstance(x, str) for x in equal)):
            _fail(f"{where}.equal", equal, "a list of label names")
        return cls(source, target, tuple(equal))

    def to_wire(self) -> dict[str, list[str]]:
        """The inverse of :meth:`from_wire` (matchers as text)."""
        return {"source": [m.to_wire() for m in self.source],
                "target": [m.to_wire() for m in self.target], "equal": list(self.equal)}


@dataclass(frozen=True)
class CorrelateSettings:
    """The correlator: its scope, the call graph it starts from, grouping and alert timing.

    Names follow Alertmanager's (``group_wait_ms`` ...). Every ``*_ms`` value is in
    milliseconds; :func:`load_settings` also takes duration strings (``"5m"``). Built
    directly, the values are checked here, errors naming ``correlate.<field>``.
    """

    enabled: bool = True
    scope: str = "default"  # environment / cluster: one state and one problem set per scope
    dependencies: str = ""  # YAML file: caller -> [callees]; until traces teach the graph
    knowledge: str = ""  # extra knowledge-base YAML files, comma-separated
    group_wait_ms: int = 30_000  # collect before a problem's first alert
    group_interval_ms: int = 5 * MINUTE_MS  # min gap between alerts about changes
    repeat_interval_ms: int = 4 * HOUR_MS  # re-alert an unacknowledged open problem
    resolve_timeout_ms: int = 30 * MINUTE_MS  # resolve when nothing fired for this long
    reopen_window_ms: int = 30 * MINUTE_MS  # a recurrence this soon reopens, same id
    max_duration_ms: int = 24 * HOUR_MS  # a problem open longer is closed
    resolve_hold_ms: int = 5 * MINUTE_MS  # all members resolved this long → resolved
    flap_window_ms: int = HOUR_MS  # reopens counted over this window …
    flap_threshold: int = 3  # … this many make a problem flapping
    flap_hold_ms: int = 15 * MINUTE_MS  # resolve hold of a flapping problem
    relatedness_window_ms: int = 10 * MINUTE_MS  # how close in time detections relate
    alive_ms: int = 6 * MINUTE_MS  # a firing member unconfirmed this long relates nothing
    max_symptom_hops: int = 4  # how far up the call graph symptoms are folded
    escalate_spread: tuple[int, ...] = (3, 6)  # affected services raising severity a level
    escalate_after_ms: tuple[int, ...] = (HOUR_MS, 4 * HOUR_MS)  # open this long: +1 level
    deploy_lookback_ms: int = HOUR_MS  # a deploy this long before the first anomaly counts
    symptom_categories: tuple[str, ...] = ("availability", "performance", "connectivity",
                                           "coordination")  # propagate to callers
    cause_categories: tuple[str, ...] = ("resource", "configuration", "coordination",
                                         "security", "data")  # point at their own service
    relate_labels: tuple[str, ...] = ("trace_id", "deployment.id", "k8s.node.name")
    peer_labels: tuple[str, ...] = ("peer.service", "db.instance")
    max_root_causes: int = 5
    max_links_per_problem: int = 2000
    silence_retention_ms: int = 24 * HOUR_MS  # ended silences kept (listed) this long
    diagnostics: bool = True  # run the read-only automated checks when a problem opens
    # caller -> callees, merged with the ``dependencies`` file by the correlate step
    static_dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    inhibit_rules: tuple[InhibitRule, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            _fail("enabled", self.enabled, "true or false")
        for name in ("scope", "dependencies", "knowledge"):
            if not isinstance(getattr(self, name), str):
                _fail(name, getattr(self, name), "a string")
        for f in dataclasses.fields(self):
            if f.name.endswith("_ms") and f.name != "escalate_after_ms":
                _check_int(f.name, getattr(self, f.name), minimum=0)
        for name in ("flap_threshold", "max_symptom_hops", "max_root_causes",
                     "max_links_per_problem"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("escalate_spread", "escalate_after_ms"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence):
                _fail(name, value, "a list of strictly increasing numbers")
            for v in value:
                _check_int(name, v, minimum=1)
            if list(value) != sorted(set(value)):
                _fail(name, value, "strictly increasing numbers")
            object.__setattr__(self, name, tuple(value))
        for name in ("symptom_categories", "cause_categories", "relate_labels", "peer_labels"):
            value = getattr(self, name)
            if (isinstance(value, str) or not isinstance(value, Sequence)
                    or not all(isinstance(v, str) for v in value)):
                _fail(name, value, "a list of strings")
            object.__setattr__(self, name, tuple(value))
        for name in ("symptom_categories", "cause_categories"):
            unknown = [c for c in getattr(self, name) if c not in CATEGORIES]
            if unknown:
                _fail(name, unknown, f"categories among {', '.join(CATEGORIES)}")
        object.__setattr__(self, "static_dependencies",
                           _dependencies(self.static_dependencies))
        if isinstance(self.inhibit_rules, str | Mapping) or not all(
                isinstance(r, InhibitRule) for r in self.inhibit_rules):
            _fail("inhibit_rules", self.inhibit_rules, "InhibitRule objects")
        object.__setattr__(self, "inhibit_rules", tuple(self.inhibit_rules))

    @property
    def knowledge_paths(self) -> list[str]:
        """The extra knowledge-base files (empty: the built-in knowledge base only)."""
        return [p.strip() for p in self.knowledge.split(",") if p.strip()]


def _dependencies(value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        _fail("static_dependencies", value, "a mapping of caller to a list of callees")
    out: dict[str, tuple[str, ...]] = {}
    for caller, callees in value.items():
        if (not isinstance(caller, str) or isinstance(callees, str)
                or not isinstance(callees, Sequence)
                or not all(isinstance(c, str) for c in callees)):
            _fail(f"static_dependencies.{caller}", callees, "a list of service names")
        out[caller] = tuple(callees)
    return out


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(name, value, f"an integer >= {minimum}")


def _fail(name: str, value: Any, expected: str) -> NoReturn:
    raise SettingsError(f"setting correlate.{name}: expected {expected}, got {value!r}")


@dataclass(frozen=True)
class GraphSettings:
    """The service graph learned from spans, per time bucket (``pipeline/graph``).

    Client and server spans of different services are paired by trace id and span id in
    the store, one bucket at a time once detection's event time has passed it; each edge
    caller -> callee gets calls, errors and client-side latency percentiles per bucket,
    stored in ``service_edges``, scored for anomalies (attributed to the callee) and fed
    to the correlator.
    """

    enabled: bool = True
    bucket_ms: int = 60_000  # one row per edge and bucket
    pair_window_ms: int = 300_000  # a parent span may start this long before its child
    topology_ms: int = 86_400_000  # edges seen this recently make the correlator's graph
    min_calls: int = 10  # calls of an edge in its latency baseline before it is tested
    # a bucket's calls whose median client-minus-server duration reaches this alarm as a
    # network delay to the callee, with no baseline (0: never)
    network_ms: int = 100


@dataclass(frozen=True)
class WorkerSettings:
    """The Faust worker: consumer group id, state directory and its web server."""

    app_id: str = "tocsin"
    data_dir: str = str(_default_home() / "worker")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    log_level: str = "info"
    session_timeout_ms: int = 10_000
    shutdown_timeout_s: float = 30.0  # a stop never takes longer (batches in hand stay uncommitted)
    stuck_after_failures: int = 3  # failed attempts of one batch before the agent is stuck
    api_token: Secret = Secret("")  # when set, every /tocsin page wants "Bearer <token>"
    heap_trim_interval_s: float = 0.25  # give free C heap pages back this often (0: never)
    # where Arrow allocates: "system" (the C library's malloc, whose free pages the heap
    # trims hand back) or "arrow" (Arrow's own default: mimalloc, which keeps them)
    arrow_memory_pool: str = "system"


@dataclass(frozen=True)
class NotifySettings:
    """``tocsin notify``: delivery of ``tocsin.alerts`` to Alertmanager and webhooks.

    Every receiver gets ``max_attempts`` tries per alert, ``backoff_initial_ms`` doubling up
    to ``backoff_max_ms`` between them; an alert still undelivered then goes to the
    dead-letter topic with the reason.
    """

    alertmanager_urls: tuple[str, ...] = ()  # base URLs (http://am:9093); each gets every alert
    webhook_urls: tuple[str, ...] = ()  # each gets every CloudEvent as a JSON POST
    webhook_headers: tuple[str, ...] = ()  # "Name: value" headers sent to the webhooks
    webhook_token: Secret = Secret("")  # when set: Authorization: Bearer <token>
    console_url: str = ""  # the worker's web console (empty: http://worker.web_host:web_port)
    runbook_url: str = ""  # template with {runbook} and {problem_id} (empty: the console page)
    alertname: str = "TocsinProblem"
    labels: tuple[str, ...] = ()  # extra "name=value" labels on every Alertmanager alert
    resend_interval_ms: int = 60_000  # re-post open problems; they are valid for 4 times this
    timeout_ms: int = 10_000  # one HTTP request
    max_attempts: int = 5
    backoff_initial_ms: int = 500
    backoff_max_ms: int = 30_000
    group_id: str = ""  # consumer group (empty: <worker.app_id>-notify)
    lookback_ms: int = 24 * HOUR_MS  # at start, alerts this old rebuild the open problems


@dataclass(frozen=True)
class Settings:
    """All of Tocsin's settings; build with :func:`load_settings`."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    detect: DetectSettings = field(default_factory=DetectSettings)
    correlate: CorrelateSettings = field(default_factory=CorrelateSettings)
    graph: GraphSettings = field(default_factory=GraphSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    query: QuerySettings = field(default_factory=QuerySettings)
    notify: NotifySettings = field(default_factory=NotifySettings)

    def redacted(self) -> dict[str, dict[str, Any]]:
        """Every setting as plain data, secrets masked: safe to log or print."""
        return {
            section.name: {
                f.name: _plain(getattr(getattr(self, section.name), f.name))
                for f in dataclasses.fields(getattr(self, section.name))
            }
            for section in dataclasses.fields(self)
        }


def _plain(value: Any) -> Any:
    """A setting's value as JSON-ready data, secrets masked."""
    if isinstance(value, Secret):
        return str(value)
    if isinstance(value, InhibitRule):
        return value.to_wire()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


ARROW_MEMORY_POOLS = ("system", "arrow")
"""``worker.arrow_memory_pool``: ``system``, the C library's ``malloc``; ``arrow``, Arrow's
own default pool (mimalloc, unless ``ARROW_DEFAULT_MEMORY_POOL`` names another)."""

_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("kafka", "security_protocol"): ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    ("kafka", "sasl_mechanism"): ("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    ("worker", "log_level"): ("crit", "error", "warn", "info", "debug"),
    ("ingest", "otlp_encoding"): ("auto", "otlp_proto", "otlp_json"),
    ("ingest", "otlp_decoder"): ("auto", "c", "python"),
    ("ingest", "json_decoder"): ("auto", "c", "python"),
    ("worker", "arrow_memory_pool"): ARROW_MEMORY_POOLS,
}
_POSITIVE = {
    ("topics", "partitions"),
    ("topics", "replication_factor"),
    ("ingest", "batch_size"),
    ("ingest", "batch_within_ms"),
    ("ingest", "max_message_bytes"),
    ("kafka", "fetch_max_wait_ms"),
    ("kafka", "fetch_partition_bytes"),
    ("ingest", "store_retry_max_s"),
    ("ingest", "otlp_max_series"),
    ("worker", "session_timeout_ms"),
    ("worker", "shutdown_timeout_s"),
    ("worker", "stuck_after_failures"),
    ("detect", "reload_interval_s"),
    ("notify", "resend_interval_ms"),
    ("notify", "timeout_ms"),
    ("notify", "max_attempts"),
    ("notify", "backoff_initial_ms"),
    ("notify", "backoff_max_ms"),
    ("graph", "bucket_ms"),
    ("graph", "topology_ms"),
    ("graph", "min_calls"),
}
MIN_MESSAGE_BYTES = 65_536
"""The smallest ``kafka.max_message_bytes`` accepted: ticks and state chunks must fit."""

_NON_NEGATIVE = {("store", "ttl_days"), ("ingest", "max_future_ms"), ("worker", "web_port"),
                 ("detect", "allowed_lateness_ms"), ("detect", "keepalive_ms"),
                 ("detect", "warmup_history_ms"), ("detect", "warmup_history_points"),
                 ("detect", "accept_points"), ("detect", "accept_ms"),
                 ("detect", "live_state_bytes"), ("detect", "stale_ms"),
                 ("worker", "heap_trim_interval_s"),
                 ("query", "max_execution_time_s"), ("query", "max_memory_bytes"),
                 ("query", "max_result_rows"), ("notify", "lookback_ms"),
                 ("graph", "pair_window_ms"), ("graph", "network_ms")}
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_name(section: str, name: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{name.upper()}"


_TOML_ONLY = {"Mapping[str, tuple[str, ...]]": "a table of caller = [callees]",
              "tuple[InhibitRule, ...]": "a list of tables"}


def _coerce(section: str, name: str, kind: Any, raw: Any, source: str,
            from_env: bool = False) -> Any:
    """``raw`` (a TOML value, or an environment string when ``from_env``) as the field's type.

    Lists come as TOML arrays or comma-separated strings; ``*_ms`` numbers also as
    durations (``"5m"``); tables (dependencies, inhibit rules) from TOML only.
    """
    kind = kind if isinstance(kind, str) else kind.__name__
    where = f"setting {section}.{name} (from {source})"
    if kind in _TOML_ONLY:
        if from_env:
            raise SettingsError(f"{where}: set it in the TOML file ({_TOML_ONLY[kind]} in "
                                f"[{section}]), not in the environment")
        if kind == "tuple[InhibitRule, ...]":
            if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
                raise SettingsError(f"{where}: expected a list of tables "
                                    f"([[{section}.{name}]]), got {raw!r}")
            return tuple(InhibitRule.from_wire(r, f"{name}[{i}]") for i, r in enumerate(raw))
        return raw  # the section's class checks the table and names the bad entry
    if kind.startswith("tuple["):
        if isinstance(raw, str):
            items = [part.strip() for part in raw.split(",") if part.strip()]
        elif isinstance(raw, list):
            items = raw
        else:
            raise SettingsError(f"{where}: expected a list or comma-separated values, "
                                f"got {raw!r}")
        item_kind = kind[len("tuple["):].split(",")[0]
        return tuple(_scalar(where, name, item_kind, item) for item in items)
    return _scalar(where, name, kind, raw)


def _scalar(where: str, name: str, kind: str, raw: Any) -> Any:
    shown = "***" if kind == "Secret" else repr(raw)
    try:
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError
            try:
                return int(raw)
            except (TypeError, ValueError):
                if not name.endswith("_ms"):
                    raise
                return durations.parse_duration_ms(raw, ints_as_ms=True)
        if kind == "float":
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            flag = str(raw).strip().lower()
            if flag in ("1", "true", "yes", "on"):
                return True
            if flag in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "Secret":
            if not isinstance(raw, str):
                raise ValueError
            return Secret(raw)
        if not isinstance(raw, str):
            raise ValueError
        return raw
    except durations.DurationError as exc:
        raise SettingsError(f"{where}: {exc}") from None
    except (TypeError, ValueError):
        expected = {"int": "an integer", "float": "a number", "bool": "true or false"}.get(
            kind, "a string")
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
    cluster = settings.store.cluster
    if cluster and not _IDENTIFIER.match(cluster):
        raise SettingsError(
            f"setting store.cluster (TOCSIN_STORE_CLUSTER): {cluster!r} is not a valid "
            "cluster name"
        )
    if cluster and not settings.store.clickhouse_url.startswith(("http://", "https://")):
        raise SettingsError(
            "setting store.cluster (TOCSIN_STORE_CLUSTER) needs a ClickHouse server: set "
            "store.clickhouse_url (TOCSIN_STORE_CLICKHOUSE_URL) to its http(s):// URL"
        )
    url = settings.store.clickhouse_url
    if url and not re.match(r"^(https?://[^/\s]+|chdb:///\S+)", url):
        raise SettingsError(
            f"setting store.clickhouse_url (TOCSIN_STORE_CLICKHOUSE_URL): {url!r} is not an "
            "http(s):// URL nor chdb:///absolute/path"
        )
    if settings.kafka.max_message_bytes < MIN_MESSAGE_BYTES:
        raise SettingsError(
            "setting kafka.max_message_bytes (TOCSIN_KAFKA_MAX_MESSAGE_BYTES): must be at "
            f"least {MIN_MESSAGE_BYTES}, got {settings.kafka.max_message_bytes}"
        )
    if settings.worker.web_port > 65535:
        raise SettingsError(
            f"setting worker.web_port (TOCSIN_WORKER_WEB_PORT): {settings.worker.web_port} "
            "is not a port number"
        )
    validate_notify(settings.notify)
    if settings.kafka.security_protocol.startswith("SASL") and not settings.kafka.sasl_mechanism:
        raise SettingsError(
            "setting kafka.sasl_mechanism (TOCSIN_KAFKA_SASL_MECHANISM): required when "
            f"security_protocol is {settings.kafka.security_protocol}"
        )


def validate_notify(notify: NotifySettings) -> None:
    """Check the ``[notify]`` section; raises :class:`SettingsError` naming the setting."""
    urls = [("alertmanager_urls", u) for u in notify.alertmanager_urls]
    urls += [("webhook_urls", u) for u in notify.webhook_urls]
    urls += [("console_url", notify.console_url)] if notify.console_url else []
    for name, url in urls:
        if not re.match(r"^https?://[^/\s]+", url):
            raise SettingsError(f"setting notify.{name} ({_env_name('notify', name)}): "
                                f"{url!r} is not an http(s):// URL")
    for header in notify.webhook_headers:
        name, sep, _ = header.partition(":")
        if not sep or not re.match(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", name.strip()):
            raise SettingsError("setting notify.webhook_headers (TOCSIN_NOTIFY_WEBHOOK_HEADERS): "
                                f"{header!r} is not 'Name: value'")
    for label in notify.labels:
        name, sep, _ = label.partition("=")
        if not sep or not _IDENTIFIER.match(name.strip()):
            raise SettingsError(f"setting notify.labels (TOCSIN_NOTIFY_LABELS): {label!r} is "
                                "not name=value with a label name of letters, digits and _")
    if not notify.alertname.strip():
        raise SettingsError("setting notify.alertname (TOCSIN_NOTIFY_ALERTNAME): must not be "
                            "empty")
    if notify.backoff_max_ms < notify.backoff_initial_ms:
        raise SettingsError(f"setting notify.backoff_max_ms (TOCSIN_NOTIFY_BACKOFF_MAX_MS): "
                            f"{notify.backoff_max_ms} is less than notify.backoff_initial_ms "
                            f"({notify.backoff_initial_ms})")


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
                kwargs[name] = _coerce(section_name, name, kind, env[env_name], env_name,
                                       from_env=True)
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
