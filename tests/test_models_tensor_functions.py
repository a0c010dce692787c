"""torch's function forms of tensor methods and operators (`torch.sum(x, 1)`, `torch.mul(a, b)`),
sums over a dimension and reciprocals in forward: the IR the source front-end lowers them to and
what propagation makes of it."""

from __future__ import annotations

import pytest

from gradlint.model.ir import Activation, Opaque, Param, Passthrough, Residual, walk
from gradlint.model.propagation import analyse
from gradlint.source import models, parse

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"

CHAIN = """
class M(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.a = nn.Linear(d, d)
        self.b = nn.Linear(d, d)
        self.c = nn.Linear(d, d)

    def forward(self, x):
        x = torch.tanh(self.a(x))
        x = MIDDLE
        x = torch.tanh(self.b(x))
        return self.c(x)
"""

GATE = """
class M(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.conv = nn.Conv2d(d, d, 1)

    def forward(self, x):
        identity = x
        x = x.mean((2, 3), keepdim=True)
        x = self.conv(x).sigmoid()
        return JOIN
"""

RES = """
class M(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        return JOIN
"""


def lower(body: str):
    networks, _ = models.extract(parse("m.py", HEAD + body))
    return {n.name: n for n in networks}["M"]


def opaque(net) -> list[str]:
    return [n.what for p in net.paths for n in walk(p) if isinstance(n, Opaque)]


def chain_modules(net) -> list[tuple[str, ...]]:
    return [c.modules for c in analyse(net).chains]


@pytest.mark.parametrize("middle", ["torch.sum(x, dim=1)", "x.sum(1)", "torch.nansum(x, 1, keepdim=True)"])
def test_a_sum_is_modelled_and_ends_the_chain(middle):
    # sum of n parts: the scale after it grows by sqrt(n) to n, which the IR does not know
    net = lower(CHAIN.replace("MIDDLE", middle))
    assert opaque(net) == []
    assert [type(n).__name__ for n in net.nodes] == ["Param", "Activation", "Passthrough", "Param",
                                                     "Activation", "Param"]
    assert net.nodes[2].what == "scale:?"
    assert chain_modules(net) == [("b", "c")]


@pytest.mark.parametrize("middle", ["torch.mean(x, dim=1)", "x.mean(1)"])
def test_a_mean_keeps_the_chain_as_the_method_form_does(middle):
    net = lower(CHAIN.replace("MIDDLE", middle))
    assert opaque(net) == []
    assert net.nodes[2] == Passthrough("", "mean")
    assert chain_modules(net) == [("a", "b", "c")]


def test_torch_mul_is_the_gate_its_operator_form_is():
    written = lower(GATE.replace("JOIN", "identity * x"))
    function = lower(GATE.replace("JOIN", "torch.mul(identity, x)"))
    assert opaque(function) == []
    assert function.nodes == written.nodes
    gate = function.nodes[0]
    assert isinstance(gate, Residual) and gate.join == "mul"


@pytest.mark.parametrize("join", ["torch.add(x, torch.relu(self.fc(x)))", "torch.add(torch.relu(self.fc(x)), x)"])
def test_torch_add_of_the_input_and_a_branch_is_a_residual(join):
    net = lower(RES.replace("JOIN", join))
    assert opaque(net) == []
    assert len(net.nodes) == 1 and isinstance(net.nodes[0], Residual) and net.nodes[0].join == "add"
    assert [p.name for p in walk(net.nodes) if isinstance(p, Param)] == ["fc"]


@pytest.mark.parametrize("join", [
    "torch.add(x, self.fc(x), alpha=0.5)",  # alpha scales the branch
    "torch.div(self.fc(x), x, rounding_mode='floor')",  # no gradient of a rounded quotient
    "torch.sum(self.fc(x), dim=1, out=x)",
])
def test_function_forms_with_other_arguments_stay_opaque(join):
    assert opaque(lower(RES.replace("JOIN", join)))


@pytest.mark.parametrize("join", ["1 / self.fc(x)", "torch.div(2.0, self.fc(x))"])
def test_a_reciprocal_of_a_tensor_is_no_scale(join):
    # d(c / x)/dx = -c / x^2 depends on x: not the constant factor `x / c` is
    net = lower(RES.replace("JOIN", join))
    assert opaque(net) == ["division by a tensor"]


@pytest.mark.parametrize("join", ["self.fc(x) / 4", "torch.div(self.fc(x), 4)"])
def test_a_tensor_divided_by_a_number_is_a_known_scale(join):
    net = lower(RES.replace("JOIN", join))
    assert opaque(net) == []
    assert net.nodes[-1] == Passthrough("", "scale:0.25")


# ---- isinstance on forward's values ----------------------------------------------------------

DENSE = """
class Other:
    pass


class M(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.conv = nn.Conv2d(d, d, 3)
        self.fc = nn.Conv2d(d, d, 1)

    def forward(self, x):
        if TEST:
            prev = [x]
        else:
            prev = x
        return self.conv(torch.cat(prev, 1))
"""


@pytest.mark.parametrize("test", ["isinstance(x, torch.Tensor)", "not isinstance(x, (list, tuple))",
                                  "not isinstance(x, list) and not isinstance(x, tuple)"])
def test_isinstance_of_the_input_tensor_is_decided(test):
    # DenseNet's layers take a tensor or the list of earlier features: the class alone takes a tensor
    net = lower(DENSE.replace("TEST", test))
    assert opaque(net) == [] and net.variants == ()
    assert [p.name for p in walk(net.nodes) if isinstance(p, Param)] == ["conv"]


@pytest.mark.parametrize("test", ["isinstance(x, Other)", "isinstance(x, list)"])
def test_isinstance_against_a_type_it_cannot_place_stays_undecided(test):
    # a class of the project (x may be one), or `list` alone while the test of `x` above is one
    # of a tensor is decided; here `isinstance(x, list)` on a tensor is False: the first branch
    net = lower(DENSE.replace("TEST", test))
    if test == "isinstance(x, list)":
        assert opaque(net) and net.variants == ()  # prev = x: a concatenation of unknown parts
    else:
        assert len(net.paths) == 2 and opaque(net)  # both sides followed, one opaque


LISTED = """
class M(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        feats = [x]
        if TEST:
            y = self.fc(x)
        else:
            y = torch.relu(feats[0])
        return y
"""


def test_isinstance_of_a_list_of_forward_is_decided_when_the_types_settle_it():
    assert lower(LISTED.replace("TEST", "isinstance(feats, torch.Tensor)")).nodes == (Activation("", "relu"),)
    assert [type(n).__name__ for n in lower(LISTED.replace("TEST", "isinstance(feats, (tuple, list))")).nodes] == ["Param"]
    # a type of the project: not decided, both sides followed
    assert len(lower("class Other:\n    pass\n" + LISTED.replace("TEST", "isinstance(feats, Other)")).paths) == 2
