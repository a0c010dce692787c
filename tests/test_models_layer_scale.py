"""Constant factors a forward multiplies by, read as scales (`Passthrough("scale:c")`): a trained
tensor of __init__ filled with one value (LayerScale's `x * self.gamma`, gamma =
`init_values * torch.ones(dim)`), timm's LayerScale block, `torch.addcmul`, and a stack summed
over its dimension (`torch.stack([...]).sum(0)`: the sum of its branches). Before, the first three
read as the identity, the last as a sum of unknown scale; a factor not known is `scale:?`."""

from __future__ import annotations

import pytest

from gradlint.model.ir import Opaque, Passthrough, Residual, walk
from gradlint.model.propagation import analyse
from gradlint.source import models, parse

HEAD = "import torch\nimport torch.nn as nn\nfrom timm.layers import LayerScale\n"

# bench/measure_forward_scales.py: the tanh chain after a residual whose branch (E ~ 240) a
# LayerScale of 1e-5 scales (timm's own class, and `x * self.gamma`), and after a stack of four
# branches summed, torch 2.x CPU, batch 256, 5 seeds. Read as the identity, the LayerScale made
# the prediction 0.19; the stack's sum of unknown scale left only a bound (6.2).
MEASURED_AFTER_LAYER_SCALE = 0.8859
MEASURED_AFTER_STACK_SUM = 0.5444

GAMMA = """
class M(nn.Module):
    def __init__(self, d=256, init_values=1e-5):
        super().__init__()
        self.fc1 = nn.Linear(d, d)
        self.fc2 = nn.Linear(d, d)
        nn.init.normal_(self.fc1.weight, std=1.0)
        nn.init.normal_(self.fc2.weight, std=1.0)
        self.gamma = MAKE
        self.chain = nn.ModuleList([nn.Linear(d, d) for _ in range(6)])
        for layer in self.chain:
            nn.init.normal_(layer.weight, std=0.09)

    def forward(self, x):
        x = x + SCALED
        for layer in self.chain:
            x = torch.tanh(layer(x))
        return x
"""

ONES = "nn.Parameter(init_values * torch.ones(d))"


def lower(body: str):
    networks, _ = models.extract(parse("m.py", HEAD + body))
    return {n.name: n for n in networks}


def scales(net) -> list[str]:
    return [n.what for p in net.paths for n in walk(p) if isinstance(n, Passthrough) and n.what.startswith("scale:")]


def chain_gain(net) -> float | None:
    return next((c.gain for c in analyse(net).chains if c.modules[0] == "chain.0"), None)


@pytest.mark.parametrize("scaled", [
    "self.fc2(torch.tanh(self.fc1(x))) * self.gamma",
    "self.gamma * self.fc2(torch.tanh(self.fc1(x)))",
    "self.fc2(torch.tanh(self.fc1(x))).mul(self.gamma.reshape(1, -1))",
    "self.fc2(torch.tanh(self.fc1(x))).mul_(self.gamma.view(1, -1))",
    "torch.mul(self.fc2(torch.tanh(self.fc1(x))), self.gamma)",
])
def test_a_gamma_filled_with_init_values_scales_the_branch(scaled):
    net = lower(GAMMA.replace("MAKE", ONES).replace("SCALED", scaled))["M"]
    assert scales(net) == ["scale:1e-05"]
    assert chain_gain(net) == pytest.approx(MEASURED_AFTER_LAYER_SCALE, rel=0.05)


def test_timm_layer_scale_and_an_in_place_gamma_are_the_same_scale():
    timm = GAMMA.replace("self.gamma = MAKE", "self.ls = LayerScale(d, init_values=init_values)").replace(
        "SCALED", "self.ls(self.fc2(torch.tanh(self.fc1(x))))")
    net = lower(timm)["M"]
    assert scales(net) == ["scale:1e-05"]
    assert chain_gain(net) == pytest.approx(MEASURED_AFTER_LAYER_SCALE, rel=0.05)
    # its default init_values is 1e-5; one given by position is read as well
    assert scales(lower(timm.replace("init_values=init_values", "0.1"))["M"]) == ["scale:0.1"]
    assert scales(lower(timm.replace(", init_values=init_values", ""))["M"]) == ["scale:1e-05"]


def test_timm_layer_scale_class_written_in_the_file():
    # timm's layers/layer_scale.py: an empty gamma filled by `constant_` in reset_parameters
    body = """
class LayerScale2(nn.Module):
    def __init__(self, dim: int, init_values: float = 1e-5, inplace: bool = False) -> None:
        super().__init__()
        self.init_values = init_values
        self.inplace = inplace
        self.gamma = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.constant_(self.gamma, self.init_values)

    def forward(self, x):
        return x.mul_(self.gamma) if self.inplace else x * self.gamma


class M(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.ls = LayerScale2(d, init_values=1e-4)

    def forward(self, x):
        x *= 2
        return x + self.ls(self.fc(x))
"""
    net = lower(body)["M"]
    assert scales(net) == ["scale:2", "scale:0.0001"]
    assert isinstance(net.nodes[-1], Residual)


@pytest.mark.parametrize("make", [
    "nn.Parameter(torch.randn(d) * init_values)",  # a random fill: no one value
    "init_values * torch.ones(d)",  # a plain tensor, no parameter: a buffer may be filled later
    "nn.Parameter(scale * torch.ones(d))",  # a value not known
])
def test_a_factor_that_is_not_one_known_value_leaves_the_scale_unknown(make):
    body = GAMMA.replace("MAKE", make).replace("SCALED", "self.fc2(torch.tanh(self.fc1(x))) * self.gamma")
    net = lower(body.replace("init_values=1e-5):", "init_values=1e-5, scale=None):"))["M"]
    assert scales(net) == ["scale:?"]


def test_an_init_of_every_parameter_after_it_leaves_the_scale_unknown():
    body = GAMMA.replace("MAKE", ONES).replace("SCALED", "self.fc2(torch.tanh(self.fc1(x))) * self.gamma")
    body = body.replace("        for layer in self.chain:\n            nn.init.normal_(layer.weight, std=0.09)\n",
                        "        for p in self.parameters():\n            nn.init.normal_(p, std=0.02)\n", 1)
    assert scales(lower(body)["M"]) == ["scale:?"]
    timm = """
class M(nn.Module):
    def __init__(self, d=64, init_values=1e-5):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.ls = LayerScale(d, init_values=init_values)
        self.apply(self._init)

    def _init(self, m):
        for p in m.parameters(recurse=False):
            nn.init.normal_(p, std=0.02)

    def forward(self, x):
        return x + self.ls(self.fc(x))
"""
    assert scales(lower(timm)["M"]) == ["scale:?"]


def test_a_layer_scale_whose_init_values_is_not_known_is_an_unknown_scale():
    body = """
class M(nn.Module):
    def __init__(self, d, init_values, **kw):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.ls = LayerScale(d, init_values=init_values)
        self.ls2 = LayerScale(d, **kw)

    def forward(self, x):
        return self.ls2(x + self.ls(self.fc(x)))
"""
    assert scales(lower(body)["M"]) == ["scale:?", "scale:?"]


ADDCMUL = """
class Affine(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones((1, 1, dim)))
        self.beta = nn.Parameter(torch.zeros((1, 1, dim)))

    def forward(self, x):
        return CALL
"""


@pytest.mark.parametrize("call, want", [
    ("torch.addcmul(self.beta, self.alpha, x)", ["scale:1.0"]),  # ResMLP's affine "norm"
    ("torch.addcmul(self.beta, self.alpha, x, value=0.5)", ["scale:1.0", "scale:0.5"]),
    ("self.beta.addcmul(self.alpha, x)", None),  # a method of a tensor of __init__: not read
])
def test_addcmul_is_read_as_its_operators(call, want):
    net = lower(ADDCMUL.replace("CALL", call))["Affine"]
    if want is None:
        assert any(isinstance(n, Opaque) for n in net.nodes)
    else:
        assert not any(isinstance(n, Opaque) for n in walk(net.nodes)) and scales(net) == want


def test_addcmul_of_branches_is_a_gate_added_to_the_input():
    body = """
class M(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.f = nn.Linear(d, d)
        self.g = nn.Linear(d, d)

    def forward(self, x):
        return CALL
"""
    net = lower(body.replace("CALL", "torch.addcmul(x, self.f(x), self.g(x))"))["M"]
    (res,) = net.nodes
    assert res.join == "add" and res.skip_scale is None and res.body[0].join == "mul"
    # `out=` (or anything else it may be given) is not read
    net = lower(body.replace("CALL", "torch.addcmul(x, self.f(x), self.g(x), out=x)"))["M"]
    assert any(isinstance(n, Opaque) and n.what == "call of torch.addcmul" for n in net.nodes)


STACK = """
class M(nn.Module):
    def __init__(self, d=256):
        super().__init__()
        self.branches = nn.ModuleList([nn.Linear(d, d) for _ in range(4)])
        for b in self.branches:
            nn.init.normal_(b.weight, std=0.0625)
        self.chain = nn.ModuleList([nn.Linear(d, d) for _ in range(6)])
        for layer in self.chain:
            nn.init.normal_(layer.weight, std=0.09)

    def forward(self, x):
        x = x + SUMMED
        for layer in self.chain:
            x = torch.tanh(layer(x))
        return x
"""


@pytest.mark.parametrize("summed", [
    "torch.stack([b(x) for b in self.branches]).sum(0)",
    "torch.stack([b(x) for b in self.branches], dim=0).sum(dim=0)",
    "torch.sum(torch.stack([b(x) for b in self.branches]), 0)",
])
def test_a_stack_summed_over_its_dimension_is_the_sum_of_its_branches(summed):
    net = lower(STACK.replace("SUMMED", summed))["M"]
    assert scales(net) == []
    assert chain_gain(net) == pytest.approx(MEASURED_AFTER_STACK_SUM, rel=0.05)


def test_a_stack_averaged_over_its_dimension_is_their_mean():
    net = lower(STACK.replace("SUMMED", "torch.stack([b(x) for b in self.branches]).mean(0)"))["M"]
    assert scales(net) == ["scale:0.25"]


@pytest.mark.parametrize("summed", [
    "torch.stack([b(x) for b in self.branches], dim=1).sum(0)",  # another dimension
    "torch.stack([b(x) for b in self.branches]).sum(1)",
    "torch.stack([b(x) for b in self.branches]).sum()",  # every element: a number
    "torch.stack([b(x) for b in self.branches] + [self.extra]).sum(0)",  # a part not known
])
def test_a_stack_summed_otherwise_stays_a_sum_of_unknown_scale(summed):
    net = lower(STACK.replace("SUMMED", summed).replace("self.chain = ", "self.extra = None\n        self.chain = "))["M"]
    assert "scale:?" in scales(net)
    (chain,) = [c for c in analyse(net).chains if c.modules[0] == "chain.0"] or [None]
    assert chain is None or chain.bound
