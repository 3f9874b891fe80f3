"""Shadow detections: marked in the table and by a header the correlate agent drops."""

from __future__ import annotations

from pipeline.agents.correlate import is_shadow
from pipeline.agents.detect import SHADOW_HEADER, shadow_table
from pipeline.backtest.candidates import shadow_engines
from pipeline.settings import load_settings
from tests.unit.correlate.support import T0, det


def test_header_marks_shadow_messages_in_either_header_shape():
    assert is_shadow([SHADOW_HEADER]) and is_shadow(dict([SHADOW_HEADER]))
    assert not is_shadow(None) and not is_shadow([]) and not is_shadow([("tocsin-shadow", b"")])
    assert not is_shadow([("other", b"true")])


def test_shadow_rows_carry_the_flag():
    table = shadow_table([det("r", "s", T0), det("r", "t", T0)])
    assert table.column("shadow").to_pylist() == [True, True]
    assert table.column("detector").to_pylist() == ["r", "r"]


def test_shadow_engines_from_settings(tmp_path):
    rules = tmp_path / "r.yaml"
    rules.write_text('version: "9"\nrules:\n  - {name: x, signal: metrics, select: {metric: m},'
                     ' window: {type: tumbling, size: 1m}, aggregation: max, condition: "> 1",'
                     ' severity: low, category: performance, title: t}\n')
    settings = load_settings(environ={"TOCSIN_DETECT_SHADOW_RULES": str(tmp_path)})
    engines = shadow_engines(settings)
    assert list(engines) == ["shadow-rules"] and engines["shadow-rules"].version
    assert shadow_engines(load_settings(environ={})) == {}
