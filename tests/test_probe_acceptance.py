"""The acceptance cases of `gradlint probe` (issue 6), on CPU with real torch."""

from __future__ import annotations

import os
import json
import re
from pathlib import Path

import pytest

from gradlint.findings import Finding, Severity, SourceSpan, make_data
from gradlint.probe.join import CONFIRMED, FOUND, confirmed_or_found
from gradlint.probe.run import ProbeOptions, run_probe
from tests.conftest import FIXTURES

# Runs models in torch (the probe extra): outside the README's fast subset, `-m "not slow and not torch"`.
pytestmark = pytest.mark.torch

PROBE = FIXTURES / "probe"
# bench/probe_gpu.sh runs these same tests on CUDA; CI and laptops run them on the CPU.
DEVICE = os.environ.get("GRADLINT_PROBE_TEST_DEVICE", "cpu")


def probe(name: str, findings=None, **kw):
    return run_probe(ProbeOptions(target=f"{PROBE / name}.py:make_model", device=DEVICE, **kw), findings=findings)


def codes(report) -> list[str]:
    return [v.finding.code for v in report.verdicts]


def expected(path: Path) -> set[tuple[int, str]]:
    out = set()
    for i, line in enumerate(path.read_text().splitlines(), 1):
        for m in re.finditer(r"# expect: (GL\d{3})", line):
            out.add((i, m.group(1)))
    return out


def sigmoid_gl101(predicted: float = 5e-10) -> Finding:
    """What the static GL101 of the 12 x Linear(256)+Sigmoid chain carries (hand-made: the join
    must work from the data keys alone)."""
    modules = tuple(f"body.{2 * i}" for i in range(12))
    return Finding(code="GL101", name="vanishing-gradient", message=f"predicted gradient gain {predicted:.1e} across 12 layers",
                   severity=Severity.WARNING, path=str(PROBE / "sigmoid_mlp.py"), span=SourceSpan.point(13, 9),
                   data=make_data({"network": "SigmoidMLP", "modules": modules, "predicted": predicted, "depth": 12}))


def test_deep_sigmoid_mlp_static_gl101_confirmed_end_to_end():
    report = probe("sigmoid_mlp")  # the static pass runs on the file: GL101 comes from the rule
    [v] = [v for v in report.verdicts if v.finding.code == "GL101"]
    assert v.verdict == CONFIRMED
    assert v.predicted / 10 <= v.measured <= v.predicted * 10, (v.predicted, v.measured)
    assert v.finding.data_dict["network"] == "SigmoidMLP"
    assert "GL701" not in codes(report)


def test_hand_made_gl101_finding_joins_on_its_data_alone():
    report = probe("sigmoid_mlp", findings=[sigmoid_gl101()])
    [v] = [v for v in report.verdicts if v.finding.code == "GL101"]
    assert v.verdict == CONFIRMED
    assert v.predicted == 5e-10
    assert v.predicted / 10 <= v.measured <= v.predicted * 10, v.measured
    # Predicted already: the probe must not report the same chain again as GL701.
    assert "GL701" not in codes(report)


def test_deep_sigmoid_mlp_without_static_finding_is_gl701():
    report = probe("sigmoid_mlp", findings=[])
    [v] = [v for v in report.verdicts if v.finding.code == "GL701"]
    assert v.verdict == FOUND and v.measured < 1e-8
    assert v.finding.data_dict["modules"][0] == "body.0" and v.finding.data_dict["modules"][-1] == "body.22"


def test_he_initialised_relu_mlp_reports_nothing():
    report = probe("relu_mlp")
    assert not confirmed_or_found(report.verdicts), [(v.finding.code, v.verdict, v.finding.message) for v in report.verdicts]
    assert not [c for c in codes(report) if c.startswith("GL7")]
    assert report.gradcheck.passed is True


def test_wrong_custom_backward_is_gl704_naming_the_function():
    report = probe("custom_function_wrong")
    [v] = [v for v in report.verdicts if v.finding.code == "GL704"]
    assert "`Square`" in v.finding.message
    assert v.finding.data_dict["target"] == "Square"
    assert {(v.finding.span.line, "GL704")} == expected(PROBE / "custom_function_wrong.py")
    assert report.gradcheck.checked_functions == {"Square": False}


def test_correct_custom_backward_is_not_flagged():
    report = probe("custom_function_right")
    assert "GL704" not in codes(report)
    assert report.gradcheck.checked_functions == {"Square": True}
    assert report.gradcheck.passed is True


def test_log_of_negative_is_gl703_naming_the_module():
    report = probe("nan_model")
    [v] = [v for v in report.verdicts if v.finding.code == "GL703"]
    assert "`features.1` (LogFeatures)" in v.finding.message
    assert v.finding.data_dict["phase"] == "forward"
    assert (v.finding.span.line, "GL703") in expected(PROBE / "nan_model.py")


@pytest.mark.parametrize("fixture", sorted(p.stem for p in PROBE.glob("*.py")))
def test_fixture_expectations_match_probe_findings(fixture):
    report = probe(fixture)
    # The fixtures are about architecture predictions and probe findings; other families'
    # verdicts (GL406 on a custom Function, say) have their own tests.
    got = {(v.finding.span.line, v.finding.code) for v in report.verdicts
           if confirmed_or_found([v]) and v.finding.code[:3] in ("GL1", "GL7")}
    assert got == expected(PROBE / f"{fixture}.py")


def test_cli_json_exit_code_and_shape(cli, tmp_path):
    res = cli("probe", f"{PROBE / 'custom_function_wrong.py'}:make_model", "--device", DEVICE, "--format", "json", "--steps", "1")
    assert res.returncode == 1, res.stderr
    payload = json.loads(res.stdout)
    [f] = [f for f in payload["findings"] if f["code"] == "GL704"]
    for key in ("code", "message", "filename", "location", "name", "severity", "url", "verdict", "predicted", "measured"):
        assert key in f
    assert f["location"]["row"] == 7 and f["verdict"] == "found"
    modules = {m["module"]: m for m in payload["measurements"]["modules"]}
    assert modules["fc1"]["grad_norm"] > 0 and modules["fc1"]["grad_weight_ratio"] > 0
    assert payload["measurements"]["gradcheck"]["functions"] == {"Square": False}


def test_cli_clean_model_exits_0(cli):
    res = cli("probe", f"{PROBE / 'relu_mlp.py'}:make_model", "--device", DEVICE, "--steps", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Summary" in res.stdout
    assert "probe [" not in res.stderr  # the progress bar is for terminals only
    # The table: module, activation std, grad norm, grad/weight.
    assert re.search(r"^body\.0\s+Linear\s+\S+\s+\S+\s+\S+", res.stdout, re.M)
