"""The JSON reporter: ruff's shape (so ruff-reading tools read ours) plus gradlint's fields."""

from __future__ import annotations

import json

from gradlint.report import render
from gradlint.report.json import render_json
from tests.report_samples import CWD, sample_rules, empty_result, sample_result

RUFF_KEYS = {"cell", "code", "end_location", "filename", "fix", "location", "message", "noqa_row", "url"}


def _items():
    return json.loads(render_json(sample_result(), cwd=CWD, rules=sample_rules()))


def test_is_a_list_with_ruffs_keys_and_ours():
    items = _items()
    assert isinstance(items, list) and len(items) == 4
    for item in items:
        assert RUFF_KEYS <= set(item)
        assert {"name", "severity", "node", "data"} <= set(item)


def test_sorted_by_path_line_column_code():
    assert [(i["filename"], i["location"]["row"]) for i in _items()] == [
        ("/project/models/my net é.py", 7), ("/project/models/net.onnx", 1),
        ("/project/pkg/model.py", 3), ("/project/pkg/model.py", 10),
    ]


def test_python_finding_fields():
    item = next(i for i in _items() if i["location"]["row"] == 3)
    assert item == {
        "cell": None, "code": "GL001", "name": "syntax-error", "severity": "error",
        "message": "syntax error: expected ':'", "filename": "/project/pkg/model.py",
        "location": {"row": 3, "column": 21}, "end_location": {"row": 3, "column": 22},
        "url": "https://gradlint.dev/rules/syntax-error", "fix": None, "noqa_row": 3,
        "node": None, "data": {},
    }


def test_fix_shape_matches_ruff():
    item = next(i for i in _items() if i["location"]["row"] == 7)
    assert item["fix"] == {
        "applicability": "unsafe", "message": "Add the missing colon",
        "edits": [{"content": ":", "location": {"row": 7, "column": 25}, "end_location": {"row": 7, "column": 25}}],
    }
    safe = next(i for i in _items() if i["location"]["row"] == 10)
    assert safe["fix"]["applicability"] == "safe"


def test_data_is_strict_json():
    item = next(i for i in _items() if i["location"]["row"] == 7)
    # inf is not JSON: it is written as a string so every parser accepts the document.
    assert item["data"] == {"gain": 4.1e-10, "depth": 12, "layers": ["body.0", "body.2"], "ratio": "inf"}
    json.loads(render_json(sample_result(), cwd=CWD, rules=sample_rules()), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def test_graph_finding_has_node_and_no_noqa_row():
    item = next(i for i in _items() if i["node"])
    assert item["node"] == {"name": "/body/Sigmoid_3", "op_type": "Sigmoid", "index": 14}
    assert item["noqa_row"] is None
    assert item["url"] == "https://gradlint.dev/rules/unreadable-model"


def test_no_findings_is_an_empty_list():
    assert render_json(empty_result(), cwd=CWD, rules=sample_rules()) == "[]\n"


def test_render_dispatch_uses_cwd_for_absolute_filenames(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    items = json.loads(render("json", sample_result(), rules=sample_rules()))
    assert items[2]["filename"] == str(tmp_path / "pkg" / "model.py")
