"""The one DDL of Tocsin's ClickHouse tables, shared by the embedded and server backends.

Raw tables are ``ReplacingMergeTree`` keyed by the analysts' access path (service, name,
time) with a deterministic ``event_id`` last, so a replayed batch collapses into the rows
already stored. Reads that must count exactly use ``FINAL`` (``tocsin query`` sets
``final = 1`` for you). Partitions are daily; rows expire ``ttl_days`` after their event
time (0 keeps them forever).

On a ClickHouse cluster (``store.cluster``) every table becomes a pair, created ``ON
CLUSTER``: ``<name>_local``, a ``ReplicatedReplacingMergeTree`` on each shard's replicas
(ZooKeeper/Keeper path ``/clickhouse/tables/{shard}/<db>/<name>``, replica ``{replica}``:
the usual server macros), and ``<name>``, a ``Distributed`` table over them that workers
insert into and analysts read. Rows are sharded so that the copies a replay writes land on
one shard and collapse there: raw telemetry by service, problems by id.
"""

from __future__ import annotations

import re

TABLES = ("metrics", "logs", "spans", "detections", "problems", "problem_detections",
          "problem_changes", "service_edges", "dead_letters", "metric_buckets", "feedback",
          "problem_diagnostics")

_TEMPLATES: dict[str, str] = {
    "metrics": """
CREATE TABLE IF NOT EXISTS {db}.metrics (
    event_id    UInt64,
    time        DateTime64(3, 'UTC') CODEC(Delta, ZSTD),
    service     LowCardinality(String),
    host        LowCardinality(String),
    name        LowCardinality(String),
    value       Float64 CODEC(Gorilla, ZSTD),
    unit        LowCardinality(String),
    attributes  Map(String, String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (service, name, host, time, event_id)
{ttl}""",
    "logs": """
CREATE TABLE IF NOT EXISTS {db}.logs (
    event_id        UInt64,
    time            DateTime64(3, 'UTC') CODEC(Delta, ZSTD),
    service         LowCardinality(String),
    host            LowCardinality(String),
    severity_text   LowCardinality(String),
    severity_number UInt8,
    body            String CODEC(ZSTD),
    trace_id        String,
    span_id         String,
    attributes      Map(String, String),
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX body_tokens body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 4,
    INDEX trace_ids trace_id TYPE bloom_filter GRANULARITY 4
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (service, severity_number, time, event_id)
{ttl}""",
    "spans": """
CREATE TABLE IF NOT EXISTS {db}.spans (
    event_id       UInt64,
    trace_id       String,
    span_id        String,
    parent_span_id String,
    service        LowCardinality(String),
    host           LowCardinality(String),
    name           LowCardinality(String),
    start          DateTime64(3, 'UTC') CODEC(Delta, ZSTD),
    duration_ms    Float64,
    status         LowCardinality(String),
    kind           LowCardinality(String),
    attributes     Map(String, String),
    ingested_at    DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX trace_ids trace_id TYPE bloom_filter GRANULARITY 4
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(start)
ORDER BY (service, name, start, event_id)
{ttl_start}""",
    "detections": """
CREATE TABLE IF NOT EXISTS {db}.detections (
    id               String,
    time             DateTime64(3, 'UTC'),
    detector         LowCardinality(String),
    detector_version LowCardinality(String),
    signal           LowCardinality(String),
    service          LowCardinality(String),
    host             LowCardinality(String),
    entity           String,
    category         LowCardinality(String),
    severity         LowCardinality(String),
    state            LowCardinality(String),
    title            String,
    description      String,
    observed         Float64,
    threshold        Float64,
    score            Float64,
    confidence       Float32,
    window_start     DateTime64(3, 'UTC'),
    window_end       DateTime64(3, 'UTC'),
    labels           Map(String, String),
    symptoms         Array(String),
    potential_causes Array(String),
    evidence         String,
    ingested_at      DateTime64(3, 'UTC') DEFAULT now64(3),
    shadow           Bool  -- raised by a candidate running in shadow (never correlated)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (service, time, id, shadow)
{ttl}""",
    "problems": """
CREATE TABLE IF NOT EXISTS {db}.problems (
    id               String,
    version          UInt32,
    scope            LowCardinality(String),
    status           LowCardinality(String),
    opened_at        DateTime64(3, 'UTC'),
    updated_at       DateTime64(3, 'UTC'),
    resolved_at      Nullable(DateTime64(3, 'UTC')),
    title            String,
    category         LowCardinality(String),
    severity         LowCardinality(String),
    confidence       Float32,
    affected         Array(String),
    root_causes      String,
    detection_ids    Array(String),
    symptoms         Array(String),
    potential_causes Array(String),
    diagnostic_plan  String,
    runbook          String,
    resolution       LowCardinality(String),  -- detections_resolved, timeout, merged ...
    merged_into      String,
    acknowledged_by  String,
    reopened_at      Array(DateTime64(3, 'UTC')),  -- every time it reopened (same id)
    recurred_at      Array(DateTime64(3, 'UTC'))  -- those its root cause failed again
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(opened_at)
ORDER BY (scope, id)""",
    "problem_detections": """
CREATE TABLE IF NOT EXISTS {db}.problem_detections (
    problem_id   String,
    detection_id String,
    time         DateTime64(3, 'UTC'),
    service      LowCardinality(String),
    role         LowCardinality(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (problem_id, detection_id)""",
    # one row per lifecycle decision: a problem's history, with the CloudEvent it alerted
    # (event_id empty when the change went out as none: joined, suppressed ...)
    "problem_changes": """
CREATE TABLE IF NOT EXISTS {db}.problem_changes (
    problem_id      String,
    version         UInt32,
    time            DateTime64(3, 'UTC'),
    kind            LowCardinality(String),
    reason          String,
    event_id        String,
    event_type      LowCardinality(String),
    status          LowCardinality(String),
    severity        LowCardinality(String),
    acknowledged_by String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (problem_id, version, time, kind)""",
    "service_edges": """
CREATE TABLE IF NOT EXISTS {db}.service_edges (
    bucket    DateTime64(3, 'UTC'),           -- start of the time bucket
    bucket_ms UInt32,                         -- its length
    caller    LowCardinality(String),
    callee    LowCardinality(String),
    source    LowCardinality(String),         -- spans (paired), attribute, metrics
    calls     UInt64,
    errors    UInt64,
    p50_ms    Float64,                        -- client-side latency percentiles
    p95_ms    Float64,
    p99_ms    Float64,
    network_calls  UInt64 DEFAULT 0,          -- calls paired client span -> server span
    network_p50_ms Float64 DEFAULT 0          -- their median client less server duration
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(bucket)
ORDER BY (caller, callee, bucket, source)
{ttl_bucket}""",
    # the buckets behind an OTLP histogram point's stored quantiles: the interval's
    # counts (a cumulative histogram's increase since its previous point), bucket i
    # holding (lower[i], upper[i]]; enough to recompute any quantile or merge series
    "metric_buckets": """
CREATE TABLE IF NOT EXISTS {db}.metric_buckets (
    event_id    UInt64,
    time        DateTime64(3, 'UTC') CODEC(Delta, ZSTD),
    service     LowCardinality(String),
    host        LowCardinality(String),
    name        LowCardinality(String),
    unit        LowCardinality(String),
    interval_s  Float64,
    lower       Array(Float64),
    upper       Array(Float64),
    counts      Array(Float64),
    attributes  Map(String, String),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (service, name, host, time, event_id)
{ttl}""",
    # operators' verdicts on problems (control events); a replayed event collapses
    "feedback": """
CREATE TABLE IF NOT EXISTS {db}.feedback (
    problem_id  String,
    scope       LowCardinality(String),
    time        DateTime64(3, 'UTC'),
    author      String,
    verdict     LowCardinality(String),  -- true, false-positive, duplicate
    root_cause  String,
    comment     String,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (scope, problem_id, time, author)""",
    # automated diagnostics run for a problem (pipeline.knowledge.diagnostics): one row per
    # run, results as JSON evidence; time is the event time they were run at
    "problem_diagnostics": """
CREATE TABLE IF NOT EXISTS {db}.problem_diagnostics (
    problem_id      String,
    problem_version UInt32,
    time            DateTime64(3, 'UTC'),
    service         LowCardinality(String),
    results         String,
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (problem_id, time, service)""",
    "dead_letters": """
CREATE TABLE IF NOT EXISTS {db}.dead_letters (
    received_at  DateTime64(3, 'UTC'),
    topic        LowCardinality(String),
    partition    Int32,
    offset       Int64,
    record_index Int32,
    reason       String,
    payload      String CODEC(ZSTD)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (topic, partition, offset, record_index)""",
}


#: How rows of each table are spread over a cluster's shards (see the module's docstring).
SHARDING_KEYS: dict[str, str] = {
    "metrics": "cityHash64(service)",
    "logs": "cityHash64(service)",
    "spans": "cityHash64(service)",
    "metric_buckets": "cityHash64(service)",
    "detections": "cityHash64(service)",
    "problems": "cityHash64(id)",
    "problem_detections": "cityHash64(problem_id)",
    "problem_changes": "cityHash64(problem_id)",
    "service_edges": "cityHash64(caller, callee)",
    "dead_letters": "cityHash64(topic, partition)",
    "feedback": "cityHash64(problem_id)",
    "problem_diagnostics": "cityHash64(problem_id)",
}

_CREATE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)\.(\w+) \(")
_ENGINE = re.compile(r"ENGINE = ReplacingMergeTree(?:\((\w*)\))?")


def schema_statements(database: str, ttl_days: int, cluster: str = "") -> list[str]:
    """The statements that create the database and every table, idempotently; on
    ``cluster``, replicated local tables and the distributed tables over them."""
    ttl = f"TTL toDateTime(time) + INTERVAL {ttl_days} DAY" if ttl_days else ""
    ttl_start = f"TTL toDateTime(start) + INTERVAL {ttl_days} DAY" if ttl_days else ""
    ttl_bucket = f"TTL toDateTime(bucket) + INTERVAL {ttl_days} DAY" if ttl_days else ""
    on = f" ON CLUSTER {cluster}" if cluster else ""
    statements = [f"CREATE DATABASE IF NOT EXISTS {database}{on}"]
    for name in TABLES:
        statement = _TEMPLATES[name].format(db=database, ttl=ttl, ttl_start=ttl_start,
                                            ttl_bucket=ttl_bucket).strip()
        if cluster:
            statements += _clustered(statement, database, name, cluster)
        else:
            statements.append(statement)
    # columns added after a store was first created (a shadow detection has the id of
    # the current one it shadows: the flag is part of the key, so neither replaces the
    # other; a column new to the key may have no DEFAULT: Bool's own is false)
    shadow = ("ADD COLUMN IF NOT EXISTS shadow Bool, MODIFY ORDER BY "
              "(service, time, id, shadow)")
    recurred = "ADD COLUMN IF NOT EXISTS recurred_at Array(DateTime64(3, 'UTC'))"
    network = ("ADD COLUMN IF NOT EXISTS network_calls UInt64 DEFAULT 0, "
               "ADD COLUMN IF NOT EXISTS network_p50_ms Float64 DEFAULT 0")
    if cluster:
        statements += [f"ALTER TABLE {database}.detections_local{on} {shadow}",
                       f"ALTER TABLE {database}.detections{on} ADD COLUMN IF NOT EXISTS "
                       "shadow Bool",
                       f"ALTER TABLE {database}.problems_local{on} {recurred}",
                       f"ALTER TABLE {database}.problems{on} {recurred}",
                       f"ALTER TABLE {database}.service_edges_local{on} {network}",
                       f"ALTER TABLE {database}.service_edges{on} {network}"]
    else:
        statements += [f"ALTER TABLE {database}.detections {shadow}",
                       f"ALTER TABLE {database}.problems {recurred}",
                       f"ALTER TABLE {database}.service_edges {network}"]
    return statements


def _clustered(statement: str, database: str, name: str, cluster: str) -> list[str]:
    """A single-server table's statement as its replicated local table and the
    distributed table over it."""
    local = f"{name}_local"
    statement, found = _CREATE.subn(
        f"CREATE TABLE IF NOT EXISTS {database}.{local} ON CLUSTER {cluster} (", statement)
    if found != 1:
        raise ValueError(f"{name}: the DDL does not start as a CREATE TABLE")

    def replicated(match: re.Match) -> str:
        args = f"'/clickhouse/tables/{{shard}}/{database}/{name}', '{{replica}}'"
        version = match.group(1)
        return f"ENGINE = ReplicatedReplacingMergeTree({args}{', ' + version if version else ''})"

    statement, found = _ENGINE.subn(replicated, statement)
    if found != 1:
        raise ValueError(f"{name}: the DDL has no ReplacingMergeTree engine")
    distributed = (f"CREATE TABLE IF NOT EXISTS {database}.{name} ON CLUSTER {cluster} "
                   f"AS {database}.{local} ENGINE = Distributed({cluster}, {database}, "
                   f"{local}, {SHARDING_KEYS[name]})")
    return [statement, distributed]
