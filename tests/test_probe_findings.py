"""The probe's findings read right (issue 11): GL707 parameters without gradient, GL702 over the
worst sub-chain, GL705 only where a unit can be dead, the join limited to the finding's own
class, any parameter dtype. Small models, torch on CPU."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from gradlint.findings import Finding, Severity, SourceSpan, make_data
from gradlint.probe.join import CONFIRMED, FOUND, INCONCLUSIVE, REFUTED, confirmed_or_found
from gradlint.probe.run import ProbeOptions, run_probe

DEVICE = os.environ.get("GRADLINT_PROBE_TEST_DEVICE", "cpu")
_counter = iter(range(10**6))


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / f"probe_find_case_{next(_counter)}.py"
    path.write_text("import torch\nimport torch.nn as nn\n" + textwrap.dedent(body))
    return path


def run(path: Path, attr: str, findings=(), **kw):
    kw.setdefault("device", DEVICE)
    kw.setdefault("steps", 1)
    return run_probe(ProbeOptions(target=f"{path}:{attr}", **kw), findings=list(findings))


def of(report, code):
    return [v for v in report.verdicts if v.finding.code == code]


def line_of(path: Path, text: str, nth: int = 0) -> int:
    return [i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line][nth]


def static(code, path, line, **data):
    return Finding(code=code, name="x", message="m", severity=Severity.WARNING, path=str(path),
                   span=SourceSpan.point(line), data=make_data(data))


CUTS = """
    class PartCut(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(16, 16)
            self.head = nn.Linear(16, 4)

        def forward(self, x):
            return self.head(self.body(x).detach())


    class FullCut(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(16, 4)

        def forward(self, x):
            return self.body(x).detach()


    class FrozenBackbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Linear(16, 16)
            self.head = nn.Linear(16, 4)

        def forward(self, x):
            with torch.no_grad():
                f = self.backbone(x)
            return self.head(f)


    class Healthy(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(16, 4)

        def forward(self, x):
            return self.body(x)
"""


def test_fully_cut_loss_is_gl707_for_every_parameter_and_exits_1(tmp_path, cli):
    path = write(tmp_path, CUTS)
    report = run(path, "FullCut", input_shape=(8, 16))
    [v] = of(report, "GL707")
    assert v.verdict == FOUND and v.finding.severity == Severity.WARNING
    assert v.finding.data_dict["loss_cut"] is True
    assert set(v.finding.data_dict["parameters"]) == {"body.weight", "body.bias"}
    line = line_of(path, "return self.body(x).detach()")
    assert f".detach() at line {line}" in v.finding.message and v.finding.span.line == line
    assert confirmed_or_found(report.verdicts)
    result = cli("probe", f"{path}:FullCut", "--input-shape", "8,16", "--device", DEVICE, "--no-gradcheck")
    assert result.returncode == 1, result.stderr
    assert "GL707" in result.stdout


def test_partly_cut_model_names_the_parameters_and_confirms_gl403(tmp_path):
    path = write(tmp_path, CUTS)
    cut = line_of(path, "self.head(self.body(x).detach())")
    gl403 = static("GL403", path, cut)
    report = run(path, "PartCut", findings=[gl403], input_shape=(8, 16))
    [v] = of(report, "GL707")
    assert v.finding.data_dict["parameters"] == ("body.weight", "body.bias")
    assert v.finding.data_dict["modules"] == ("body",)
    assert v.finding.severity == Severity.WARNING and f"cut by .detach() at line {cut}" in v.finding.message
    assert of(report, "GL403")[0].verdict == CONFIRMED


def test_gl403_refuted_when_every_parameter_trains_and_other_classes_are_not_judged(tmp_path):
    path = write(tmp_path, CUTS)
    healthy, cut = line_of(path, "return self.body(x)", -1), line_of(path, "self.head(self.body(x).detach())")
    report = run(path, "Healthy", findings=[static("GL403", path, healthy), static("GL403", path, cut)],
                 input_shape=(8, 16))
    verdicts = {v.finding.span.line: v.verdict for v in of(report, "GL403")}
    assert verdicts == {cut: INCONCLUSIVE, healthy: REFUTED}  # PartCut is not in this model
    assert not of(report, "GL707")


def test_frozen_backbone_is_info_and_exits_0(tmp_path):
    path = write(tmp_path, CUTS)
    report = run(path, "FrozenBackbone", input_shape=(8, 16))
    [v] = of(report, "GL707")
    assert v.finding.severity == Severity.INFO
    assert v.finding.data_dict["parameters"] == ("backbone.weight", "backbone.bias")
    assert f"torch.no_grad() at line {line_of(path, 'f = self.backbone(x)')}" in v.finding.message
    assert not confirmed_or_found(report.verdicts)


def test_unused_layer_is_named_without_an_explanation(tmp_path):
    path = write(tmp_path, """
        class Spare(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Linear(16, 4)
                self.spare = nn.Linear(16, 4)

            def forward(self, x):
                return self.body(x)
    """)
    [v] = of(run(path, "Spare", input_shape=(8, 16)), "GL707")
    assert v.finding.data_dict["modules"] == ("spare",)
    assert "are they used at all" in v.finding.message


TANH_HEAD = """
    class TanhHead(nn.Module):
        def __init__(self):
            super().__init__()
            layers = []
            for _ in range(12):
                lin = nn.Linear(64, 64)
                nn.init.normal_(lin.weight, std=1.0)
                layers += [lin, nn.Tanh()]
            self.body = nn.Sequential(*layers)
            self.head = nn.Linear(64, 10)
            nn.init.normal_(self.head.weight, std=1e-3)

        def forward(self, x):
            return self.head(self.body(x))
"""


def test_tanh_stack_exploding_behind_a_head_is_found_over_its_worst_sub_chain(tmp_path):
    path = write(tmp_path, TANH_HEAD)
    report = run(path, "TanhHead", input_shape=(32, 64), gradcheck=False)
    meas = report.measurements
    assert meas.grad_ratio("body.0", "head") < 1e3  # the head dilutes the endpoints' ratio
    [v] = of(report, "GL702")
    assert v.measured > 1e3 and "head" not in v.finding.data_dict["modules"]
    # A static GL102 over the whole chain, head included, is confirmed by the same sub-chain.
    modules = tuple(f"body.{2 * i}" for i in range(12)) + ("head",)
    report = run(path, "TanhHead", [static("GL102", path, 5, network="TanhHead", modules=modules, predicted=1e4)],
                 input_shape=(32, 64), gradcheck=False)
    [v] = of(report, "GL102")
    assert v.verdict == CONFIRMED and v.measured > 1e3
    assert not of(report, "GL702")


SHALLOW_FACTORY = """
    class DeepTanh(nn.Module):
        def __init__(self, width=256, depth=40, std=1.0):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
            for layer in self.layers:
                nn.init.normal_(layer.weight, std=std)

        def forward(self, x):
            for layer in self.layers:
                x = torch.tanh(layer(x))
            return x


    def make_model():
        return DeepTanh(width=64, depth={depth}, std={std})
"""


def test_a_factory_that_builds_fewer_layers_than_the_defaults_still_confirms_the_static_finding(tmp_path):
    """The static pass reads the class's defaults (40 layers); the factory builds 20. The finding
    is judged over the layers the model has, and says so, rather than 'not found'; and GL702
    does not call the explosion unpredicted."""
    path = write(tmp_path, SHALLOW_FACTORY.format(depth=20, std=1.0))
    report = run_probe(ProbeOptions(target=f"{path}:make_model", device=DEVICE, steps=1, input_shape=(16, 64),
                                    gradcheck=False))  # with the static pass
    [v] = of(report, "GL102")
    assert len(v.finding.data_dict["modules"]) == 40
    assert v.verdict == CONFIRMED and v.measured > 1e3
    assert len(v.sites) == 20 and v.extra.get("shortened")
    assert "first 20 of the 40 layers" in v.detail
    assert not of(report, "GL702")


def test_a_shorter_model_that_does_not_explode_leaves_the_finding_inconclusive_not_refuted(tmp_path):
    path = write(tmp_path, SHALLOW_FACTORY.format(depth=2, std=0.05))
    finding = static("GL102", path, 3, network="DeepTanh", modules=tuple(f"layers.{i}" for i in range(40)),
                     predicted=1e18)
    report = run(path, "make_model", [finding], input_shape=(16, 64), gradcheck=False)
    [v] = of(report, "GL102")
    assert v.measured is not None and v.measured < 1e2
    assert v.verdict == INCONCLUSIVE and "first 2 of the 40 layers" in v.detail


def test_a_zero_gradient_at_the_chain_end_is_no_infinite_gain(tmp_path):
    path = write(tmp_path, """
        def make_model():
            last = nn.Linear(16, 16)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            return nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), last)
    """)
    report = run(path, "make_model", input_shape=(8, 16), gradcheck=False)
    for v in report.verdicts:
        assert v.measured is None or v.measured != float("inf"), v.finding.message
    assert not of(report, "GL702")


@pytest.mark.parametrize("act,dead", [("nn.ReLU()", True), ("nn.ReLU6()", True), ("nn.Threshold(0.5, 0.0)", True),
                                      ("nn.ELU()", False), ("nn.PReLU()", False), ("nn.LeakyReLU()", False),
                                      ("nn.GELU()", False), ("nn.SiLU()", False)])
def test_dead_units_only_where_the_derivative_is_zero(tmp_path, act, dead):
    path = write(tmp_path, f"""
        def make_model():
            lin = nn.Linear(16, 32)
            nn.init.constant_(lin.bias, -10.0)
            return nn.Sequential(lin, {act}, nn.Linear(32, 4))
    """)
    report = run(path, "make_model", input_shape=(8, 16), gradcheck=False)
    assert bool(of(report, "GL705")) == dead, [v.finding.message for v in report.verdicts]


def test_another_class_with_the_same_paths_never_confirms_a_finding(tmp_path):
    path = write(tmp_path, """
        class LeakyMLP(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(*[nn.Linear(16, 16) for _ in range(4)])

            def forward(self, x):
                return self.body(x)


        class SigmoidMLP(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(16, 16), nn.Sigmoid())])

            def forward(self, x):
                return self.body(x)
    """)
    finding = static("GL101", path, 3, network="LeakyMLP", modules=("body.0", "body.2"), predicted=6.5e-5)
    report = run(path, "SigmoidMLP", [finding], input_shape=(8, 16), gradcheck=False)
    [v] = of(report, "GL101")
    assert v.verdict == INCONCLUSIVE and v.measured is None


@pytest.mark.parametrize("dtype", ["double", "bfloat16"])
def test_any_parameter_dtype(tmp_path, dtype):
    path = write(tmp_path, f"""
        def make_model():
            return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)).to(torch.{dtype})
    """)
    report = run(path, "make_model", steps=2)
    assert report.measurements.nonfinite is None
    assert report.gradcheck.passed is True
    assert report.measurements.mean(report.measurements.grad_norm, "0") > 0


def test_gradlint_own_bug_is_not_blamed_on_the_users_forward(tmp_path, monkeypatch):
    from gradlint.probe import measure
    from gradlint.probe.target import ProbeError

    monkeypatch.setattr(measure, "_TANH_EDGE", "not a number")  # breaks gradlint, not the model
    path = write(tmp_path, """
        def make_model():
            return nn.Sequential(nn.Linear(8, 4), nn.Tanh())
    """)
    with pytest.raises(ProbeError) as err:
        run(path, "make_model")
    assert "internal error in gradlint" in err.value.message
    assert "TypeError" in err.value.message and "measure.py" in err.value.user_traceback
