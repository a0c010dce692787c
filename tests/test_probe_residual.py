"""GL702 on residual networks: a gain is the gradient through the chain, not beside it.

A branch layer behind a small layer scale (ConvNeXt's gamma 1e-6, ResMLP's 1e-4) gets a tiny
output gradient by design; the layer before it gets most of its gradient down the skip
connection. Their plain ratio (5e5 on torchvision's convnext_tiny) is no gain of the chain; the
part of the earlier gradient that comes through the branch is (0.1 there). Small local replicas
of the blocks (timm and torchvision are not test dependencies), torch on CPU."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from gradlint.probe.measure import THROUGH_FLOOR, Measurements, Site
from gradlint.probe.run import ProbeOptions, run_probe

DEVICE = os.environ.get("GRADLINT_PROBE_TEST_DEVICE", "cpu")
_counter = iter(range(10**6))


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / f"probe_residual_case_{next(_counter)}.py"
    path.write_text("import torch\nimport torch.nn as nn\n" + textwrap.dedent(body))
    return path


def run(path: Path, attr: str, **kw):
    kw.setdefault("device", DEVICE)
    kw.setdefault("steps", 1)
    kw.setdefault("gradcheck", False)
    return run_probe(ProbeOptions(target=f"{path}:{attr}", **kw), findings=[])


def of(report, code):
    return [v for v in report.verdicts if v.finding.code == code]


def plain_ratio(meas, first, last):
    return meas.mean(meas.grad_norm, first) / meas.mean(meas.grad_norm, last)


# timm's ConvNeXt: downsample = norm + strided conv, then blocks of depthwise conv, LayerNorm,
# MLP, x + gamma * branch with gamma = 1e-6; a norm before the head.
CONVNEXT = """
    class LayerNorm2d(nn.LayerNorm):
        def forward(self, x):
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


    class Block(nn.Module):
        def __init__(self, dim, ls):
            super().__init__()
            self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
            self.norm = nn.LayerNorm(dim)
            self.fc1 = nn.Linear(dim, 4 * dim)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(4 * dim, dim)
            self.gamma = nn.Parameter(torch.full((dim,), ls))

        def forward(self, x):
            y = self.norm(self.conv_dw(x).permute(0, 2, 3, 1))
            y = self.fc2(self.act(self.fc1(y))) * self.gamma
            return x + y.permute(0, 3, 1, 2)


    class ConvNeXt(nn.Module):
        def __init__(self, dims=(16, 32, 64), depth=2, ls=1e-6):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), LayerNorm2d(dims[0]))
            stages = []
            for i, d in enumerate(dims):
                down = [LayerNorm2d(dims[i - 1]), nn.Conv2d(dims[i - 1], d, 2, stride=2)] if i else []
                stages.append(nn.Sequential(*down, *[Block(d, ls) for _ in range(depth)]))
            self.stages = nn.Sequential(*stages)
            self.norm = nn.LayerNorm(dims[-1])
            self.head = nn.Linear(dims[-1], 10)

        def forward(self, x):
            return self.head(self.norm(self.stages(self.stem(x)).mean((2, 3))))
"""


def test_layer_scaled_convnext_branch_is_no_exploding_chain(tmp_path):
    path = write(tmp_path, CONVNEXT)
    report = run(path, "ConvNeXt", input_shape=(4, 3, 32, 32))
    meas = report.measurements
    # the trap is there: the downsample conv's gradient over the branch's first layer
    assert plain_ratio(meas, "stages.1.1", "stages.1.2.conv_dw") > 1e4
    # through the branch the downsample conv's gradient is of the order of the branch's own
    assert meas.through["stages.1.2.conv_dw"]["stages.1.1"] < 10
    assert not of(report, "GL702"), [v.finding.message for v in of(report, "GL702")]


# timm's ResMLP: no norm at all (an affine per channel), x + ls * branch with ls = 1e-4 for
# resmlp_12: one chain from the stem through every block.
RESMLP = """
    class Affine(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.alpha = nn.Parameter(torch.ones(dim))
            self.beta = nn.Parameter(torch.zeros(dim))

        def forward(self, x):
            return self.alpha * x + self.beta


    class Block(nn.Module):
        def __init__(self, dim, tokens, ls):
            super().__init__()
            self.norm1 = Affine(dim)
            self.linear_tokens = nn.Linear(tokens, tokens)
            self.norm2 = Affine(dim)
            self.fc1 = nn.Linear(dim, 4 * dim)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(4 * dim, dim)
            self.ls1 = nn.Parameter(ls * torch.ones(dim))
            self.ls2 = nn.Parameter(ls * torch.ones(dim))

        def forward(self, x):
            x = x + self.ls1 * self.linear_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
            return x + self.ls2 * self.fc2(self.act(self.fc1(self.norm2(x))))


    class ResMLP(nn.Module):
        def __init__(self, dim=32, depth=6, ls=1e-4):
            super().__init__()
            self.stem = nn.Conv2d(3, dim, 4, stride=4)
            self.blocks = nn.Sequential(*[Block(dim, 16, ls) for _ in range(depth)])
            self.norm = Affine(dim)
            self.head = nn.Linear(dim, 10)

        def forward(self, x):
            x = self.stem(x).flatten(2).transpose(1, 2)
            return self.head(self.norm(self.blocks(x)).mean(1))


    def exploding():
        # layer scale 0.1 cannot hold branches initialised 4x too large: the stream explodes
        model = ResMLP(depth=12, ls=0.1)
        for block in model.blocks:
            for layer in (block.linear_tokens, block.fc1, block.fc2):
                nn.init.normal_(layer.weight, std=4.0 / layer.weight.shape[1] ** 0.5)
        return model
"""


def test_layer_scaled_resmlp_stack_is_no_exploding_chain(tmp_path):
    path = write(tmp_path, RESMLP)
    report = run(path, "ResMLP", input_shape=(4, 3, 16, 16))
    meas = report.measurements
    assert plain_ratio(meas, "stem", "blocks.3.fc1") > 1e3  # the trap
    assert not of(report, "GL702"), [v.finding.message for v in of(report, "GL702")]


def test_a_layer_scaled_resmlp_whose_stream_explodes_is_still_found(tmp_path):
    path = write(tmp_path, RESMLP)
    report = run(path, "exploding", input_shape=(4, 3, 16, 16))
    [v] = of(report, "GL702")
    assert v.measured > 1e3
    first, last = v.finding.data_dict["modules"][0], v.finding.data_dict["modules"][-1]
    assert v.measured == pytest.approx(report.measurements.through[last][first])


EXPLODING_RESIDUAL = """
    class Residual(nn.Module):
        \"\"\"x + relu(W x) with a large init and no norm, no layer scale: the residual stream's
        gradient grows by ~1.9 per block going back.\"\"\"

        def __init__(self, width=64, depth=16):
            super().__init__()
            self.fcs = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
            for f in self.fcs:
                nn.init.normal_(f.weight, std=2.0 / width ** 0.5)
            self.head = nn.Linear(width, 10)

        def forward(self, x):
            for f in self.fcs:
                x = x + torch.relu(f(x))
            return self.head(x)
"""


def test_a_residual_stack_that_explodes_down_its_skip_connections_is_still_found(tmp_path):
    """The gain through the chain counts every path between its ends, the skip connections
    included: hop by hop (each layer's gradient through the next layer only) this stack would
    read ~10x smaller than it is."""
    path = write(tmp_path, EXPLODING_RESIDUAL)
    report = run(path, "Residual", input_shape=(32, 64))
    [v] = of(report, "GL702")
    assert v.measured > 1e3
    first, last = v.finding.data_dict["modules"][0], v.finding.data_dict["modules"][-1]
    assert v.measured == pytest.approx(report.measurements.through[last][first])


PLAIN_INPLACE = """
    def make_model():
        layers = []
        for _ in range(10):
            conv = nn.Conv2d(8, 8, 3, padding=1)
            nn.init.normal_(conv.weight, std=0.5)
            layers += [conv, nn.ReLU(inplace=True)]
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(8 * 8 * 8, 4))
"""


def test_in_a_plain_chain_the_gain_through_it_is_the_plain_ratio_even_behind_inplace_relus(tmp_path):
    """Every gradient of a plain chain comes through the next layer: on the same batch, the gain
    through it is the ratio of the gradient norms. An in-place ReLU overwrites each conv's output
    tensor; the gain is still taken at the conv's own output."""
    path = write(tmp_path, PLAIN_INPLACE)
    report = run(path, "make_model", input_shape=(4, 8, 8, 8))
    meas = report.measurements
    assert meas.through, "the chain explodes: its pairs are measured through it"
    for last, gains in meas.through.items():
        for first, gain in gains.items():
            assert gain == pytest.approx(plain_ratio(meas, first, last), rel=1e-3), (first, last)
    [v] = of(report, "GL702")
    assert v.measured > 1e3


def test_worst_gain_takes_the_gain_through_the_chain_where_it_was_measured():
    sites = ["stream", "branch", "mlp", "head"]
    meas = Measurements(steps=1, device="cpu", dtype="float32",
                        sites=[Site(s, s, 0, "Linear", "param") for s in sites],
                        grad_norm={"stream": [1.0], "branch": [1e-6], "mlp": [2e-6], "head": [1.0]})
    assert meas.worst_gain(sites) == (pytest.approx(1e6), ("stream", "branch"))
    meas.through = {"branch": {"stream": 0.1}, "mlp": {"stream": 0.05}}
    # the pair (branch, mlp) was not suspicious (ratio 0.5 ≤ THROUGH_FLOOR): its plain ratio stands
    assert meas.worst_gain(sites) == (pytest.approx(1.0), ("stream", "head"))
    # a head at the end does not dilute an exploding stack
    meas.grad_norm = {"stream": [1e4], "branch": [1e4 / 3e3], "mlp": [1.0], "head": [1e3]}
    meas.through = {"mlp": {"stream": 5e3, "branch": 1.5}}
    assert meas.worst_gain(sites) == (pytest.approx(5e3), ("stream", "mlp"))
    assert THROUGH_FLOOR <= 10


def test_a_measurement_through_the_chain_that_fails_leaves_the_plain_ratios_and_says_so(tmp_path, monkeypatch):
    import torch

    real_grad = torch.autograd.grad

    def no_second_backward(outputs, inputs, *args, **kwargs):
        if isinstance(outputs, list):  # the vector-Jacobian products (the loss's gradient is a tensor's)
            raise RuntimeError("this backward cannot be taken twice")
        return real_grad(outputs, inputs, *args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_second_backward)
    path = write(tmp_path, CONVNEXT)
    report = run(path, "ConvNeXt", input_shape=(4, 3, 32, 32))
    assert report.measurements.through == {}
    assert any("could not be measured through them (RuntimeError: this backward cannot be taken twice)" in n
               for n in report.notes)
    assert of(report, "GL702")  # the plain ratio, as before: reported, not hidden
