"""GL704 on healthy models that are not smooth or not plainly differentiated (issue 11): kinks,
straight-through estimators, stop-gradients, frozen backbones and gradient hooks are no wrong
backward; a wrong backward is still caught at 1% relative error. Small models, torch on CPU."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from gradlint.probe.run import ProbeOptions, run_probe

DEVICE = os.environ.get("GRADLINT_PROBE_TEST_DEVICE", "cpu")
_counter = iter(range(10**6))


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / f"probe_gc_case_{next(_counter)}.py"
    path.write_text("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n" + textwrap.dedent(body))
    return path


def run(path: Path, attr: str, **kw):
    kw.setdefault("device", DEVICE)
    kw.setdefault("steps", 1)
    return run_probe(ProbeOptions(target=f"{path}:{attr}", **kw), findings=[])


def gl704(report):
    return [v for v in report.verdicts if v.finding.code == "GL704"]


RESNET = """
    class Block(nn.Module):
        def __init__(self, c, stride=1):
            super().__init__()
            cin = c if stride == 1 else c // 2
            self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)
            nn.init.zeros_(self.bn2.weight)  # zero_init_residual: the block starts as the identity
            self.down = None if stride == 1 else nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False),
                                                               nn.BatchNorm2d(c))

        def forward(self, x):
            skip = x if self.down is None else self.down(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + skip)


    class TinyResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
            self.layers = nn.Sequential(Block(8), Block(8), Block(16, 2), Block(16))
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))
"""


def test_resnet_with_zero_init_residual_and_max_pooling_passes(tmp_path):
    path = write(tmp_path, RESNET)
    report = run(path, "TinyResNet", input_shape=(4, 3, 16, 16))
    assert not gl704(report), [v.finding.message for v in gl704(report)]
    assert report.gradcheck.passed is True
    for row in report.gradcheck.directions:
        assert abs(row["autograd"] - row["numeric"]) <= row["tolerance"]


def test_the_kink_fingerprint_drops_a_direction_that_crosses_a_relu():
    import torch

    from gradlint.probe.gradcheck import directional_check

    # relu at exactly 0: every direction crosses the kink; autograd says 0, differences 1/2.
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    check = directional_check(lambda: torch.relu(x).sum(), [x], seed=0)
    assert check.passed is None and check.crossed == 6 and not check.rows
    y = torch.tensor([0.5, -0.5, 2.0], dtype=torch.float64, requires_grad=True)
    check = directional_check(lambda: torch.relu(y).pow(2).sum(), [y], seed=0)
    assert check.passed is True and check.crossed == 0 and len(check.rows) == 3


QUANT = """
    class RoundSTE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return torch.round(x * 4) / 4

        @staticmethod
        def backward(ctx, g):
            return g


    class GradReverse(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.view_as(x)

        @staticmethod
        def backward(ctx, g):
            return -0.5 * g


    class Quantised(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(16, 16)
            self.b = nn.Linear(16, 16)
            self.c = nn.Linear(16, 4)

        def forward(self, x):
            h = RoundSTE.apply(self.a(x))
            h = h + (torch.round(h * 2) / 2 - h).detach()  # the detach form of the same estimator
            h = GradReverse.apply(self.b(torch.relu(h)))
            y = h * 1.0
            y.register_hook(lambda g: g * 0.1)  # gradient scaling by a hook
            return self.c(y)
"""


def test_straight_through_reversal_and_hooks_are_deliberate_not_gl704(tmp_path):
    path = write(tmp_path, QUANT)
    report = run(path, "Quantised", input_shape=(8, 16))
    assert not gl704(report), [v.finding.message for v in gl704(report)]
    gc = report.gradcheck
    assert gc.deliberate == {"RoundSTE": "straight-through", "GradReverse": "gradient-reversal"}
    assert gc.passed is True
    assert any("straight-through" in n for n in report.notes)
    assert any("gradient hook" in n for n in report.notes)


SIMSIAM = """
    class SimSiam(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))
            self.pred = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))

        def forward(self, x):
            x1, x2 = x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)
            z1, z2 = self.enc(x1), self.enc(x2)
            p1, p2 = self.pred(z1), self.pred(z2)
            return -(F.cosine_similarity(p1, z2.detach()).mean() + F.cosine_similarity(p2, z1.data).mean()) / 2


    class Frozen(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32))
            self.head = nn.Linear(32, 4)

        def forward(self, x):
            with torch.no_grad():
                f = self.backbone(x)
            return self.head(f) + 0.0 * f.mean().item()
"""


@pytest.mark.parametrize("attr", ["SimSiam", "Frozen"])
def test_stop_gradient_and_frozen_backbone_pass(tmp_path, attr):
    path = write(tmp_path, SIMSIAM)
    report = run(path, attr, input_shape=(8, 16))
    assert not gl704(report), [v.finding.message for v in gl704(report)]
    assert report.gradcheck.passed is True


WRONG = """
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 2 * x * FACTOR


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(16, 16)
            self.b = nn.Linear(16, 4)

        def forward(self, x):
            return self.b(torch.relu(Square.apply(self.a(x))))
"""


@pytest.mark.parametrize("factor,found", [(1.01, True), (0.99, True), (1.0, False)])
def test_a_backward_wrong_by_one_percent_is_caught(tmp_path, factor, found):
    path = write(tmp_path, WRONG + f"\n    FACTOR = {factor}\n")
    report = run(path, "Net", input_shape=(8, 16))
    assert bool(gl704(report)) == found, [v.finding.message for v in report.verdicts]
    assert report.gradcheck.deliberate == {}
    if found:
        assert "`Square`" in gl704(report)[0].finding.message


def test_built_in_modules_are_never_blamed(tmp_path):
    path = write(tmp_path, """
        class Tail(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 3)

            def forward(self, x):
                y = x.clone()
                return self.fc(torch.where(y > 0, y, y * 0.5) * BadScale.apply(x))


        class BadScale(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x.sin()

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return g * x.cos() * 1.05


        def make_model():
            return nn.Sequential(nn.Linear(8, 8), nn.MaxPool1d(1), Tail())
    """)
    report = run(path, "make_model", input_shape=(4, 8))
    blamed = [v.finding.data_dict.get("target") for v in gl704(report)]
    assert blamed == ["BadScale"], [v.finding.message for v in gl704(report)]


@pytest.mark.parametrize("through_apply", [True, False])
def test_a_custom_functions_forward_is_told_whether_apply_is_python_or_built_in(through_apply):
    # torch 2.14 made Function.apply a built-in: reading its `__func__` raised, and the gradient
    # check never ran; without it a Function's forward is told by its own code
    import torch

    from gradlint.probe.evaluate import function_forward_test

    inside = function_forward_test(torch, through_apply=through_apply)
    seen: list[bool] = []

    def probe() -> None:
        seen.append(inside())

    class Double(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            probe()
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2

    class Module(torch.nn.Module):
        def forward(self, x):
            probe()
            return x * 2

    Double.apply(torch.ones(2, requires_grad=True))
    Module()(torch.ones(2))
    probe()
    assert seen == [True, False, False]
