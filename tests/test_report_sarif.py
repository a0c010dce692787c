"""The SARIF 2.1.0 reporter, validated against the OASIS schema (../shared/schemas/)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from gradlint import __version__
from gradlint.findings import FileResult, Finding, GraphNode, RunResult, Severity, SourceSpan
from gradlint.report.sarif import build_sarif, render_sarif
from tests.report_samples import CWD, sample_rules, empty_result, sample_result
from tests.conftest import SARIF_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = SARIF_SCHEMA


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _validate(validator, result: RunResult) -> dict:
    doc = json.loads(render_sarif(result, cwd=CWD, rules=sample_rules()))
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    return doc


def test_sample_is_valid_sarif(validator):
    _validate(validator, sample_result())


def test_zero_findings_is_valid_sarif(validator):
    doc = _validate(validator, empty_result())
    run = doc["runs"][0]
    assert run["results"] == [] and run["tool"]["driver"]["rules"] == []
    assert run["invocations"] == [{"executionSuccessful": True}]


def test_graph_finding_alone_is_valid_and_has_a_logical_location(validator):
    f = Finding(code="GL002", name="unreadable-model", message="bad node", severity=Severity.ERROR,
                path="m.onnx", span=SourceSpan.point(1, 1), node=GraphNode("relu_7", "Relu", 7))
    doc = _validate(validator, RunResult(files=[FileResult(path="m.onnx", findings=(f,))]))
    loc = doc["runs"][0]["results"][0]["locations"][0]
    assert loc["logicalLocations"] == [{"name": "relu_7", "fullyQualifiedName": "m/relu_7", "kind": "function",
                                        "properties": {"opType": "Relu", "nodeIndex": 7}}]


def test_unknown_rule_code_still_gives_a_valid_descriptor(validator):
    f = Finding(code="GL998", name="made-up", message="from a newer probe", severity=Severity.INFO,
                path="a.py", span=SourceSpan(2, 1, 2, 5))
    doc = _validate(validator, RunResult(files=[FileResult(path="a.py", findings=(f,))]))
    assert doc["runs"][0]["tool"]["driver"]["rules"][0]["id"] == "GL998"


def test_driver_and_rules():
    doc = build_sarif(sample_result(), cwd=CWD, rules=sample_rules())
    assert doc["version"] == "2.1.0"
    driver = doc["runs"][0]["tool"]["driver"]
    assert driver["name"] == "gradlint" and driver["version"] == __version__
    assert driver["informationUri"] == "https://gradlint.dev"
    assert [r["id"] for r in driver["rules"]] == ["GL001", "GL002"]
    gl001 = driver["rules"][0]
    assert gl001["name"] == "syntax-error"
    assert gl001["shortDescription"]["text"] == "File cannot be read, decoded or parsed"
    assert gl001["fullDescription"]["text"].startswith("Reports a `.py` file that cannot be read")
    assert gl001["helpUri"] == "https://gradlint.dev/rules/syntax-error"
    assert gl001["defaultConfiguration"] == {"level": "error"}
    assert "## Why is this bad?" in gl001["help"]["markdown"]


def test_results_point_at_rules_and_regions():
    doc = build_sarif(sample_result(), cwd=CWD, rules=sample_rules())
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    for res in run["results"]:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
    levels = [r["level"] for r in run["results"]]
    assert levels == ["note", "warning", "error", "warning"]
    first = run["results"][2]
    assert first["message"] == {"text": "syntax error: expected ':'"}
    assert first["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "pkg/model.py", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 3, "startColumn": 21, "endLine": 3, "endColumn": 22},
    }
    assert run["originalUriBaseIds"] == {"%SRCROOT%": {"uri": "file:///project/"}}


def test_uri_is_percent_encoded_and_outside_paths_are_absolute():
    doc = build_sarif(sample_result(), cwd=CWD, rules=sample_rules())
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in doc["runs"][0]["results"]]
    assert uris[0] == "models/my%20net%20%C3%A9.py"
    f = Finding(code="GL001", name="syntax-error", message="m", severity=Severity.ERROR,
                path="../elsewhere/x.py", span=SourceSpan.point(1, 1))
    doc = build_sarif(RunResult(files=[FileResult(path=f.path, findings=(f,))]), cwd=CWD)
    art = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert art == {"uri": "file:///elsewhere/x.py"}


def test_fix_becomes_a_sarif_fix():
    doc = build_sarif(sample_result(), cwd=CWD, rules=sample_rules())
    res = doc["runs"][0]["results"][0]
    assert res["fixes"] == [{
        "description": {"text": "Add the missing colon (unsafe)"},
        "artifactChanges": [{
            "artifactLocation": {"uri": "models/my%20net%20%C3%A9.py", "uriBaseId": "%SRCROOT%"},
            "replacements": [{"deletedRegion": {"startLine": 7, "startColumn": 25, "endLine": 7, "endColumn": 25},
                              "insertedContent": {"text": ":"}}],
        }],
    }]
    assert res["properties"]["data"]["ratio"] == "inf"


def test_skipped_files_and_failures_become_notifications(validator):
    result = sample_result()
    result.files.append(FileResult(path="gone.py", skipped="no such file or directory", error=True))
    result.files.append(FileResult(path="boom.py", internal_error="Traceback ..."))
    doc = _validate(validator, result)
    inv = doc["runs"][0]["invocations"][0]
    assert inv["executionSuccessful"] is False
    texts = [n["message"]["text"] for n in inv["toolExecutionNotifications"]]
    assert texts == ["models/big.onnx: skipped: ONNX models are not supported yet",
                     "gone.py: no such file or directory",
                     "internal error while checking boom.py: Traceback ..."]


def test_the_schema_check_has_teeth(validator):
    # A wrong level and a region with line 0 must fail, or the validation tests prove nothing.
    doc = build_sarif(sample_result(), cwd=CWD, rules=sample_rules())
    doc["runs"][0]["results"][0]["level"] = "fatal"
    doc["runs"][0]["results"][1]["locations"][0]["physicalLocation"]["region"]["startLine"] = 0
    assert len(list(validator.iter_errors(doc))) >= 2


def test_the_command_line_gives_the_reporter_each_rules_documentation(tmp_path):
    # The reporter no longer looks rules up: the command line passes registry.describe(...) in.
    from click.testing import CliRunner

    from gradlint.cli import main

    (tmp_path / "bad.py").write_text("def f(:\n")
    out = tmp_path / "r.sarif"
    res = CliRunner().invoke(main, ["check", str(tmp_path / "bad.py"), "--no-cache", "--format", "sarif",
                                    "--output-file", str(out)])
    assert res.exit_code == 1, res.output
    (descriptor,) = json.loads(out.read_text())["runs"][0]["tool"]["driver"]["rules"]
    assert descriptor["id"] == "GL001"
    assert descriptor["fullDescription"]["text"].startswith("Reports a `.py` file that cannot be read")
    assert descriptor["properties"]["tags"] == ["inputs"]


def test_without_rule_documentation_a_descriptor_comes_from_the_findings():
    f = Finding(code="GL999", name="made-up", message="what it found", severity=Severity.WARNING,
                path="a.py", span=SourceSpan.point(1, 1))
    (descriptor,) = build_sarif(RunResult(files=[FileResult(path="a.py", findings=(f,))]), cwd=CWD)["runs"][0][
        "tool"]["driver"]["rules"]
    assert descriptor == {"id": "GL999", "name": "made-up", "shortDescription": {"text": "what it found"},
                          "helpUri": "https://gradlint.dev/rules/made-up",
                          "defaultConfiguration": {"level": "warning"}}
