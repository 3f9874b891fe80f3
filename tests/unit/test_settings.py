"""Settings: defaults, TOML, environment overrides, and errors that name the setting."""

from __future__ import annotations

import pytest

from pipeline.errors import SettingsError
from pipeline.settings import Secret, load_settings


def test_defaults_are_the_embedded_quick_start():
    settings = load_settings(environ={})
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.topics.metrics == "tocsin.metrics"
    assert settings.topics.deadletter == "tocsin.deadletter"
    assert settings.store.embedded
    assert settings.worker.web_host == "127.0.0.1"
    # the OpenTelemetry Collector kafka exporter's default topics, either encoding
    assert (settings.topics.otlp_metrics, settings.topics.otlp_logs,
            settings.topics.otlp_spans) == ("otlp_metrics", "otlp_logs", "otlp_spans")
    assert settings.ingest.otlp and settings.ingest.otlp_encoding == "auto"
    # model series re-arm after calm (the rest period no longer hides the next fault)
    assert settings.detect.rearm and settings.detect.accept_ms == 0
    assert not load_settings(environ={"TOCSIN_DETECT_REARM": "false"}).detect.rearm


def test_toml_file_then_environment_wins(tmp_path):
    config = tmp_path / "tocsin.toml"
    config.write_text('[topics]\npartitions = 12\nmetrics = "prod.metrics"\n'
                      '[store]\nclickhouse_url = "https://ch.example:8443"\n'
                      'clickhouse_password = "s3cret"\n')
    settings = load_settings(config, environ={"TOCSIN_TOPICS_PARTITIONS": "6"})
    assert settings.topics.partitions == 6
    assert settings.topics.metrics == "prod.metrics"
    assert not settings.store.embedded
    assert settings.store.clickhouse_password.reveal() == "s3cret"


def test_config_file_from_environment(tmp_path):
    config = tmp_path / "t.toml"
    config.write_text('[ingest]\nbatch_size = 42\n')
    assert load_settings(environ={"TOCSIN_CONFIG": str(config)}).ingest.batch_size == 42


@pytest.mark.parametrize("env, message", [
    ({"TOCSIN_TOPICS_PARTITIONS": "many"},
     "setting topics.partitions (from TOCSIN_TOPICS_PARTITIONS): expected an integer, got 'many'"),
    ({"TOCSIN_TOPICS_PARTITIONS": "0"}, "setting topics.partitions (TOCSIN_TOPICS_PARTITIONS): "
     "must be > 0, got 0"),
    ({"TOCSIN_KAFKA_BOOTSTRAP_SERVERS": "localhost"}, "'localhost' is not host:port"),
    ({"TOCSIN_KAFKA_SECURITY_PROTOCOL": "TLS"}, "'TLS' is not one of 'PLAINTEXT'"),
    ({"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "setting kafka.sasl_mechanism"),
    ({"TOCSIN_TOPICS_LOGS": "bad topic!"}, "setting topics.logs"),
    ({"TOCSIN_STORE_CLICKHOUSE_URL": "ch:8123"}, "is not an http(s):// URL"),
    ({"TOCSIN_STORE_DATABASE": "drop table"}, "setting store.database"),
    ({"TOCSIN_STORE_CLUSTER": "prod"}, "setting store.cluster (TOCSIN_STORE_CLUSTER) needs "
     "a ClickHouse server"),
    ({"TOCSIN_STORE_CLUSTER": "a;b", "TOCSIN_STORE_CLICKHOUSE_URL": "http://ch:8123"},
     "'a;b' is not a valid cluster name"),
    ({"TOCSIN_WORKER_WEB_PORT": "70000"}, "setting worker.web_port"),
    ({"TOCSIN_WORKER_SHUTDOWN_TIMEOUT_S": "0"}, "setting worker.shutdown_timeout_s "
     "(TOCSIN_WORKER_SHUTDOWN_TIMEOUT_S): must be > 0, got 0.0"),
    ({"TOCSIN_WORKER_STUCK_AFTER_FAILURES": "0"}, "setting worker.stuck_after_failures"),
    ({"TOCSIN_INGEST_BATCHSIZE": "5"}, "unknown environment variable TOCSIN_INGEST_BATCHSIZE"),
    ({"TOCSIN_INGEST_OTLP_ENCODING": "protobuf"}, "setting ingest.otlp_encoding "
     "(TOCSIN_INGEST_OTLP_ENCODING): 'protobuf' is not one of 'auto', 'otlp_proto', "
     "'otlp_json'"),
    ({"TOCSIN_INGEST_OTLP_MAX_SERIES": "0"}, "setting ingest.otlp_max_series"),
    ({"TOCSIN_TOPICS_OTLP_SPANS": "a b"}, "setting topics.otlp_spans"),
])
def test_bad_values_fail_naming_the_setting(env, message):
    with pytest.raises(SettingsError) as error:
        load_settings(environ=env)
    assert message in str(error.value)


def test_bad_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[topics\n")
    with pytest.raises(SettingsError, match="is not valid TOML"):
        load_settings(bad, environ={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[kafka]\nbootstrap = 'x:1'\n")
    with pytest.raises(SettingsError, match="unknown setting kafka.bootstrap"):
        load_settings(unknown, environ={})
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_secrets_never_show(tmp_path):
    env = {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TOCSIN_KAFKA_SASL_MECHANISM": "PLAIN",
           "TOCSIN_KAFKA_SASL_PASSWORD": "hunter2", "TOCSIN_STORE_CLICKHOUSE_PASSWORD": "pw1",
           "TOCSIN_WORKER_API_TOKEN": "tok3n"}
    settings = load_settings(environ=env)
    shown = f"{settings!r} {settings} {settings.redacted()}"
    assert "hunter2" not in shown and "pw1" not in shown and "tok3n" not in shown
    assert settings.redacted()["kafka"]["sasl_password"] == "***"
    assert settings.redacted()["worker"]["api_token"] == "***"
    assert settings.worker.api_token.reveal() == "tok3n"
    assert settings.kafka.sasl_password.reveal() == "hunter2"
    assert str(Secret("x")) == "***" and repr(Secret("x")) == "Secret('***')"
    config = tmp_path / "bad-secret.toml"
    config.write_text("[kafka]\nsasl_password = 8675309\n")
    with pytest.raises(SettingsError) as error:
        load_settings(config, environ={})
    assert "setting kafka.sasl_password" in str(error.value)
    assert "8675309" not in str(error.value)


def test_query_limits_from_toml_and_environment(tmp_path):
    defaults = load_settings(environ={}).query
    assert (defaults.max_execution_time_s, defaults.max_memory_bytes,
            defaults.max_result_rows) == (60.0, 2_000_000_000, 1_000_000)
    assert load_settings(environ={}).worker.api_token.reveal() == ""
    config = tmp_path / "q.toml"
    config.write_text("[query]\nmax_execution_time_s = 5\nmax_result_rows = 0\n")
    query = load_settings(config, environ={"TOCSIN_QUERY_MAX_MEMORY_BYTES": "1000"}).query
    assert (query.max_execution_time_s, query.max_memory_bytes, query.max_result_rows) == \
        (5.0, 1000, 0)
    with pytest.raises(SettingsError, match="setting query.max_result_rows "
                       r"\(TOCSIN_QUERY_MAX_RESULT_ROWS\): must be >= 0"):
        load_settings(environ={"TOCSIN_QUERY_MAX_RESULT_ROWS": "-1"})


def test_graph_settings_from_toml_and_environment(tmp_path):
    defaults = load_settings(environ={}).graph
    assert (defaults.enabled, defaults.bucket_ms, defaults.pair_window_ms,
            defaults.topology_ms) == (True, 60_000, 300_000, 86_400_000)
    config = tmp_path / "g.toml"
    config.write_text('[graph]\nbucket_ms = "30s"\nenabled = false\n')
    graph = load_settings(config, environ={"TOCSIN_GRAPH_PAIR_WINDOW_MS": "2m"}).graph
    assert (graph.enabled, graph.bucket_ms, graph.pair_window_ms) == (False, 30_000, 120_000)
    with pytest.raises(SettingsError, match="setting graph.bucket_ms "
                       r"\(TOCSIN_GRAPH_BUCKET_MS\): must be > 0"):
        load_settings(environ={"TOCSIN_GRAPH_BUCKET_MS": "0"})


def test_store_kinds_and_identity(tmp_path):
    embedded = load_settings(environ={"TOCSIN_STORE_PATH": str(tmp_path / "s")}).store
    assert embedded.embedded and embedded.in_process
    assert embedded.identity == f"chdb:{tmp_path.resolve() / 's'}/tocsin"
    on_chdb = load_settings(environ={"TOCSIN_STORE_CLICKHOUSE_URL": f"chdb://{tmp_path}/s"}).store
    assert not on_chdb.embedded and on_chdb.in_process
    assert on_chdb.identity == embedded.identity
    server = load_settings(environ={"TOCSIN_STORE_CLICKHOUSE_URL": "http://ch:8123",
                                    "TOCSIN_STORE_DATABASE": "t2"}).store
    assert not server.in_process and server.identity == "http://ch:8123/t2"
    for bad in ("chdb://memory", "chdb:relative/path", "file:///x"):
        with pytest.raises(SettingsError, match="nor chdb:///absolute/path"):
            load_settings(environ={"TOCSIN_STORE_CLICKHOUSE_URL": bad})


def test_settings_are_frozen():
    settings = load_settings(environ={})
    with pytest.raises(AttributeError):
        settings.kafka.bootstrap_servers = "elsewhere:9092"  # type: ignore[misc]


def test_every_ms_setting_takes_milliseconds_or_a_duration(tmp_path):
    config = tmp_path / "t.toml"
    config.write_text('[detect]\nkeepalive_ms = "10m"\nallowed_lateness_ms = 90000\n'
                      '[worker]\nsession_timeout_ms = "30000"\n')
    settings = load_settings(config, environ={"TOCSIN_INGEST_BATCH_WITHIN_MS": "2s",
                                              "TOCSIN_INGEST_MAX_FUTURE_MS": "7200000"})
    assert (settings.ingest.batch_within_ms, settings.ingest.max_future_ms) == (
        2_000, 7_200_000)
    assert (settings.detect.keepalive_ms, settings.detect.allowed_lateness_ms) == (
        600_000, 90_000)
    assert settings.worker.session_timeout_ms == 30_000
    with pytest.raises(SettingsError, match=r"^setting ingest\.batch_within_ms \(from "
                                            r"TOCSIN_INGEST_BATCH_WITHIN_MS\): expected "
                                            r"milliseconds or a duration like 30s"):
        load_settings(environ={"TOCSIN_INGEST_BATCH_WITHIN_MS": "soon"})
    with pytest.raises(SettingsError, match="expected an integer, got '5m'"):
        load_settings(environ={"TOCSIN_TOPICS_PARTITIONS": "5m"})  # not a duration setting
