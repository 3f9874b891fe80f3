"""The ``[correlate]`` settings: defaults, validation naming the field, every field loaded
from TOML and from the environment, and the step's call graph from the dependencies file."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from pipeline.correlate.step import CorrelationStep, with_dependencies
from pipeline.errors import SettingsError
from pipeline.settings import CorrelateSettings, InhibitRule, load_settings

# Every field's default. The first ten are those the worker's [correlate] section had, the
# rest the correlator's own tuning: both classes had these values before they became one.
DEFAULTS = {
    "enabled": True, "scope": "default", "dependencies": "", "knowledge": "",
    "group_wait_ms": 30_000, "group_interval_ms": 300_000, "repeat_interval_ms": 14_400_000,
    "resolve_timeout_ms": 1_800_000, "reopen_window_ms": 1_800_000,
    "max_duration_ms": 86_400_000,
    "resolve_hold_ms": 300_000, "flap_window_ms": 3_600_000, "flap_threshold": 3,
    "flap_hold_ms": 900_000, "relatedness_window_ms": 600_000, "alive_ms": 360_000,
    "max_symptom_hops": 4,
    "escalate_spread": (3, 6), "escalate_after_ms": (3_600_000, 14_400_000),
    "deploy_lookback_ms": 3_600_000,
    "symptom_categories": ("availability", "performance", "connectivity", "coordination"),
    "cause_categories": ("resource", "configuration", "coordination", "security", "data"),
    "relate_labels": ("trace_id", "deployment.id", "k8s.node.name"),
    "peer_labels": ("peer.service", "db.instance"), "max_root_causes": 5,
    "max_links_per_problem": 2000, "silence_retention_ms": 86_400_000,
    "diagnostics": True, "static_dependencies": {}, "inhibit_rules": (),
}

# A non-default value per field, as an environment string and as what it loads to.
FROM_ENV = {
    "enabled": ("false", False), "scope": ("prod-eu", "prod-eu"),
    "dependencies": ("graph.yaml", "graph.yaml"), "knowledge": ("a.yaml,b.yaml", "a.yaml,b.yaml"),
    "group_wait_ms": ("45s", 45_000), "group_interval_ms": ("600000", 600_000),
    "repeat_interval_ms": ("1d", 86_400_000), "resolve_timeout_ms": ("1h", 3_600_000),
    "reopen_window_ms": ("10m", 600_000), "max_duration_ms": ("2d", 172_800_000),
    "resolve_hold_ms": ("1m30s", 90_000), "flap_window_ms": ("2h", 7_200_000),
    "flap_threshold": ("5", 5), "flap_hold_ms": ("0", 0),
    "relatedness_window_ms": ("5m", 300_000), "alive_ms": ("3m", 180_000),
    "max_symptom_hops": ("2", 2),
    "escalate_spread": ("2, 4,8", (2, 4, 8)), "escalate_after_ms": ("30m,2h", (1_800_000,
                                                                              7_200_000)),
    "deploy_lookback_ms": ("500ms", 500),
    "symptom_categories": ("availability,performance", ("availability", "performance")),
    "cause_categories": ("resource", ("resource",)), "relate_labels": ("", ()),
    "peer_labels": ("peer.service", ("peer.service",)), "max_root_causes": ("3", 3),
    "max_links_per_problem": ("100", 100), "silence_retention_ms": ("12h", 43_200_000),
    "diagnostics": ("false", False),
}
TOML_ONLY = {"static_dependencies", "inhibit_rules"}


def test_every_field_has_its_pinned_default_and_loading_nothing_gives_it():
    assert dataclasses.asdict(CorrelateSettings()) == DEFAULTS
    assert load_settings(environ={}).correlate == CorrelateSettings()


def test_every_scalar_and_list_field_loads_from_its_environment_variable():
    assert set(FROM_ENV) | TOML_ONLY == set(DEFAULTS)
    env = {f"TOCSIN_CORRELATE_{name.upper()}": raw for name, (raw, _) in FROM_ENV.items()}
    loaded = load_settings(environ=env).correlate
    assert {name: getattr(loaded, name) for name in FROM_ENV} == {
        name: value for name, (_, value) in FROM_ENV.items()}


def test_every_field_loads_from_toml_with_durations_lists_and_tables(tmp_path):
    config = tmp_path / "tocsin.toml"
    config.write_text("""
[correlate]
enabled = false
scope = "prod-eu"
knowledge = "extra.yaml"
group_wait_ms = "45s"
group_interval_ms = 600000
repeat_interval_ms = "1d"
flap_threshold = 5
escalate_spread = [2, 4]
escalate_after_ms = ["30m", 7200000]
symptom_categories = ["availability"]
relate_labels = "trace_id, deployment.id"
static_dependencies = { api = ["orders", "auth"], orders = ["postgres"] }

[[correlate.inhibit_rules]]
source = ["severity=critical"]
target = ["severity=~low|medium"]
equal = ["service"]
""")
    s = load_settings(config, environ={}).correlate
    assert (s.enabled, s.scope, s.knowledge, s.knowledge_paths) == (
        False, "prod-eu", "extra.yaml", ["extra.yaml"])
    assert (s.group_wait_ms, s.group_interval_ms, s.repeat_interval_ms) == (
        45_000, 600_000, 86_400_000)
    assert s.flap_threshold == 5 and s.escalate_spread == (2, 4)
    assert s.escalate_after_ms == (1_800_000, 7_200_000)
    assert s.symptom_categories == ("availability",)
    assert s.relate_labels == ("trace_id", "deployment.id")
    assert s.static_dependencies == {"api": ("orders", "auth"), "orders": ("postgres",)}
    (rule,) = s.inhibit_rules
    assert isinstance(rule, InhibitRule) and rule.equal == ("service",)
    assert [m.to_wire() for m in rule.target] == ['severity=~"low|medium"']
    assert s.resolve_timeout_ms == DEFAULTS["resolve_timeout_ms"]  # untouched: the default


def test_environment_wins_over_toml_as_before(tmp_path):
    config = tmp_path / "tocsin.toml"
    config.write_text('[correlate]\ngroup_wait_ms = 10000\nscope = "file"\n')
    s = load_settings(config, environ={"TOCSIN_CORRELATE_GROUP_WAIT_MS": "20000"}).correlate
    assert (s.group_wait_ms, s.scope) == (20_000, "file")


@pytest.mark.parametrize("name", sorted(TOML_ONLY))
def test_tables_from_the_environment_are_refused_saying_where_they_go(name):
    var = f"TOCSIN_CORRELATE_{name.upper()}"
    with pytest.raises(SettingsError, match=rf"^setting correlate\.{name} \(from {var}\): set "
                                            r"it in the TOML file .* not in the environment$"):
        load_settings(environ={var: "api=orders"})


@pytest.mark.parametrize("field, value, message", [
    ("group_wait_ms", -1, "correlate.group_wait_ms: expected an integer >= 0, got -1"),
    ("flap_threshold", 0, "correlate.flap_threshold: expected an integer >= 1"),
    ("escalate_spread", (5, 3), "correlate.escalate_spread: expected strictly increasing"),
    ("escalate_after_ms", 5, "correlate.escalate_after_ms: expected a list of strictly"),
    ("symptom_categories", ("weather",), "correlate.symptom_categories: expected categories"),
    ("peer_labels", "peer.service", "correlate.peer_labels: expected a list of strings"),
    ("static_dependencies", {"api": "orders"}, "correlate.static_dependencies.api"),
    ("resolve_timeout_ms", "5m", "correlate.resolve_timeout_ms: expected an integer"),
    ("inhibit_rules", ({"source": []},), "correlate.inhibit_rules: expected InhibitRule"),
    ("enabled", "yes", "correlate.enabled: expected true or false"),
    ("scope", None, "correlate.scope: expected a string"),
])
def test_bad_values_name_the_field(field, value, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        CorrelateSettings(**{field: value})


@pytest.mark.parametrize("env, message", [
    ({"TOCSIN_CORRELATE_REOPEN_WINDOW_MS": "soon"},
     "setting correlate.reopen_window_ms (from TOCSIN_CORRELATE_REOPEN_WINDOW_MS): expected "
     "milliseconds or a duration like 30s, 5m, 1h or 1h30m, got 'soon'"),
    ({"TOCSIN_CORRELATE_ESCALATE_AFTER_MS": "1h,later"},
     "setting correlate.escalate_after_ms (from TOCSIN_CORRELATE_ESCALATE_AFTER_MS): expected "
     "milliseconds or a duration like 30s, 5m, 1h or 1h30m, got 'later'"),
    ({"TOCSIN_CORRELATE_ESCALATE_SPREAD": "3,many"},
     "setting correlate.escalate_spread (from TOCSIN_CORRELATE_ESCALATE_SPREAD): expected an "
     "integer, got 'many'"),
    ({"TOCSIN_CORRELATE_GROUP_WAIT_MS": "-5"},
     "setting correlate.group_wait_ms: expected an integer >= 0, got -5"),
    ({"TOCSIN_CORRELATE_ESCALATE_AFTER_MS": "4h,1h"},
     "setting correlate.escalate_after_ms: expected strictly increasing numbers"),
    ({"TOCSIN_CORRELATE_CAUSE_CATEGORIES": "resource,weather"},
     "setting correlate.cause_categories: expected categories among"),
    ({"TOCSIN_CORRELATE_GROUP_WAIT": "5m"}, "unknown environment variable "
     "TOCSIN_CORRELATE_GROUP_WAIT"),
])
def test_bad_environment_values_name_the_setting(env, message):
    with pytest.raises(SettingsError) as error:
        load_settings(environ=env)
    assert message in str(error.value)


@pytest.mark.parametrize("toml, message", [
    ("group_wiat_ms = 1", "unknown setting correlate.group_wiat_ms"),
    ("repeat_interval_ms = true", "setting correlate.repeat_interval_ms (from {path}): "
     "expected an integer, got True"),
    ("relate_labels = [1, 2]", "setting correlate.relate_labels (from {path}): expected a "
     "string, got 1"),
    ("escalate_spread = 3", "setting correlate.escalate_spread (from {path}): expected a list "
     "or comma-separated values, got 3"),
    ("static_dependencies = { api = \"orders\" }",
     "setting correlate.static_dependencies.api: expected a list of service names"),
    ("inhibit_rules = { source = [] }", "setting correlate.inhibit_rules (from {path}): "
     "expected a list of tables ([[correlate.inhibit_rules]])"),
    ("[[correlate.inhibit_rules]]\nsource = [\"nope\"]\ntarget = [\"a=b\"]",
     "setting correlate.inhibit_rules[0].source[0]: matcher 'nope': expected name=value"),
    ("[[correlate.inhibit_rules]]\nsource = [\"a=b\"]",
     "setting correlate.inhibit_rules[0].target: expected at least one matcher, got None"),
    ("[[correlate.inhibit_rules]]\nsource = [\"a=b\"]\ntarget = [\"c=d\"]\nequal = \"svc\"",
     "setting correlate.inhibit_rules[0].equal: expected a list of label names, got 'svc'"),
    ("[[correlate.inhibit_rules]]\nsources = [\"a=b\"]\ntarget = [\"c=d\"]",
     "setting correlate.inhibit_rules[0]: expected a table of source, target and equal"),
])
def test_bad_toml_values_name_the_setting(tmp_path, toml, message):
    config = tmp_path / "tocsin.toml"
    config.write_text(f"[correlate]\n{toml}\n")
    with pytest.raises(SettingsError) as error:
        load_settings(config, environ={})
    assert message.format(path=config) in str(error.value)


def test_printed_settings_are_plain_json(tmp_path):
    config = tmp_path / "tocsin.toml"
    config.write_text('[correlate]\nstatic_dependencies = { api = ["orders"] }\n'
                      '[[correlate.inhibit_rules]]\nsource = ["severity=critical"]\n'
                      'target = ["severity=low"]\n')
    shown = json.loads(json.dumps(load_settings(config, environ={}).redacted()))["correlate"]
    assert shown["static_dependencies"] == {"api": ["orders"]}
    assert shown["inhibit_rules"] == [{"source": ['severity="critical"'],
                                       "target": ['severity="low"'], "equal": []}]
    assert shown["escalate_after_ms"] == [3_600_000, 14_400_000]
    assert InhibitRule.from_wire(shown["inhibit_rules"][0]) == load_settings(
        config, environ={}).correlate.inhibit_rules[0]


def test_the_step_merges_the_dependencies_file_into_the_static_graph(tmp_path):
    graph = tmp_path / "graph.yaml"
    graph.write_text(yaml.safe_dump({"api": ["orders", "auth"], "orders": ["postgres"]}))
    settings = CorrelateSettings(dependencies=str(graph),
                                 static_dependencies={"api": ["orders", "cache"]})
    merged = with_dependencies(settings)
    assert merged.static_dependencies == {"api": ("orders", "cache", "auth"),
                                          "orders": ("postgres",)}
    assert dataclasses.replace(merged, static_dependencies={}) == dataclasses.replace(
        settings, static_dependencies={})  # nothing else changes
    assert with_dependencies(CorrelateSettings()) == CorrelateSettings()
    step = CorrelationStep(settings)
    assert step.correlator("default").settings is step.settings == merged


def test_a_bad_dependencies_file_names_the_setting(tmp_path):
    graph = tmp_path / "graph.yaml"
    graph.write_text("api: orders\n")
    with pytest.raises(SettingsError, match=r"^setting correlate\.dependencies \(.*graph\.yaml\)"
                                            r": expected a mapping of caller to a list"):
        CorrelationStep(CorrelateSettings(dependencies=str(graph)))
