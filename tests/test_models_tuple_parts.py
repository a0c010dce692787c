"""A module of the file whose forward returns a tuple (`return h, aux`, `return x, (H, W)`), taken
apart by its caller (`x, h = blk(x)`, `blk(x)[0]`): each part is followed as what the module
computed for it (PathVal.parts, source/outputs.parts_of), where the whole tuple was an opaque
node ("tuple") before; a module whose tuple is not known stays opaque."""

from __future__ import annotations

import pytest

from gradlint.model.ir import Opaque, Param, Residual, walk
from gradlint.model.propagation import analyse
from gradlint.source import models, parse

HEAD = "import torch\nimport torch.nn as nn\n"

# bench/measure_forward_scales.py, TupleChain: ||dL/dz_first|| / ||dL/dz_last|| across the eight
# blocks' layers, torch 2.x CPU, batch 256, 5 seeds
MEASURED_TUPLE_CHAIN = 0.01574

BLOCK = """
class Block(nn.Module):
    def __init__(self, d=256):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.aux = nn.Linear(d, 8)

    def forward(self, x):
        h = torch.tanh(self.fc(x))
        return h, self.aux(x)


class Chain(nn.Module):
    def __init__(self, d=256):
        super().__init__()
        self.blocks = nn.ModuleList([Block(d) for _ in range(8)])

    def forward(self, x):
        for blk in self.blocks:
            TAKE
        return x
"""


def lower(body: str):
    networks, _ = models.extract(parse("m.py", HEAD + body))
    return {n.name: n for n in networks}


def opaque(net) -> list[str]:
    return [n.what for p in net.paths for n in walk(p) if isinstance(n, Opaque)]


def params(nodes) -> list[str]:
    return [n.name for n in walk(nodes) if isinstance(n, Param)]


@pytest.mark.parametrize("take", ["x, _aux = blk(x)", "x = blk(x)[0]", "out = blk(x)\n            x = out[0]",
                                  "(x, _aux) = blk(x)"])
def test_a_tuple_taken_apart_follows_its_first_part_across_the_blocks(take):
    net = lower(BLOCK.replace("TAKE", take))["Chain"]
    assert opaque(net) == []
    assert params(net.nodes) == [f"blocks.{i}.fc" for i in range(8)]
    (chain,) = analyse(net).chains
    assert chain.modules == tuple(f"blocks.{i}.fc" for i in range(8))
    # the prediction of a plain tanh chain holds across the tuples (measured in torch)
    assert chain.gain == pytest.approx(MEASURED_TUPLE_CHAIN, rel=0.1)


def test_the_second_part_is_what_the_module_computed_for_it():
    net = lower(BLOCK.replace("TAKE", "_h, x = blk(x)"))["Chain"]
    assert opaque(net) == []
    # x is each block's aux output, which the next block's aux reads: fc's output is dropped
    assert params(net.nodes) == [f"blocks.{i}.aux" for i in range(8)]


def test_a_tuple_whose_module_is_not_known_stays_opaque():
    # a module of another file (or any value gradlint cannot see): its tuple is not known
    body = BLOCK.replace("TAKE", "x, _aux = blk(x)").replace("Block(d) for _", "Other(d) for _")
    net = lower("from elsewhere import Other\n" + body)["Chain"]
    assert any(w == "tuple" for w in opaque(net))


def test_a_tensor_taken_apart_stays_opaque():
    # unpacking a tensor (nn.Linear returns one) takes it apart along its first dimension: not modelled
    body = """
class M(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def forward(self, x):
        a, b = self.fc(x)
        return self.out(a)
"""
    assert "tuple" in opaque(lower(body)["M"])


TWO_INPUTS = """
class Embed(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.proj = nn.Linear(d, d)

    def forward(self, x, size, mask=None):
        return self.proj(x), size, mask


class Skip(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x, skip):
        return torch.tanh(self.fc(x)), skip


class M(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.embed = Embed(d)
        self.skip = Skip(d)
        self.head = nn.Linear(d, d)

    def forward(self, x, size):
        y, size, m = self.embed(x, size)
        z, k = self.skip(y, x)
        return RETURN
"""


def test_a_part_that_is_another_input_is_what_the_caller_passed():
    nets = lower(TWO_INPUTS.replace("RETURN", "self.head(z + k), size"))
    net = nets["M"]
    assert opaque(net) == []
    # `z + k`: k is the caller's x handed back, so the sum is a residual around embed and skip
    (res, head) = net.nodes
    assert isinstance(res, Residual) and res.skip_scale is None
    assert params(res.body) == ["embed.proj", "skip.fc"] and head.name == "head"
    # `size` is the caller's own input handed back: no output of the network of its own
    assert [n.name for n in nets.values() if n.name.startswith("M ")] == []


def test_a_part_of_an_input_the_caller_did_not_pass_stays_opaque_and_is_no_output():
    # `mask` keeps its default None: a plain value; a tensor of an input the call does not name
    # (here `extra`, left to a default tensor-free value) reads as the module's output, opaque
    body = TWO_INPUTS.replace("return self.proj(x), size, mask", "return self.proj(x), size, extra").replace(
        "def forward(self, x, size, mask=None):", "def forward(self, x, size, extra):")
    nets = lower(body.replace("RETURN", "self.head(m)"))
    assert any("another input" in w for w in opaque(nets["M"]))
    nets = lower(body.replace("RETURN", "self.head(z), m"))
    assert [n.name for n in nets.values() if n.name.startswith("M ")] == []


def test_returns_that_differ_between_a_tuple_and_a_tensor_are_not_taken_apart():
    body = """
class Block(nn.Module):
    def __init__(self, d=64, with_aux=True):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.with_aux = with_aux

    def forward(self, x, flag):
        h = self.fc(x)
        if flag:
            return h, x
        return h


class M(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.block = Block(d)
        self.out = nn.Linear(d, d)

    def forward(self, x, flag):
        h, aux = self.block(x, flag)
        return self.out(h)
"""
    net = lower(body)["M"]
    # each path of the undecided `if` is a variant of its own: the tuple one is taken apart, the
    # tensor one (unpacking a tensor) is opaque
    assert sorted("tuple" in [n.what for n in walk(p) if isinstance(n, Opaque)] for p in net.paths) == [False, True]


def test_a_tuple_computed_without_gradient_keeps_its_mark():
    body = """
class Teacher(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.fc = nn.Linear(d, d)

    @torch.no_grad()
    def forward(self, x):
        return self.fc(x), x


class M(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.teacher = Teacher(d)
        self.student = nn.Linear(d, d)

    def forward(self, x):
        t, same = self.teacher(x)
        return self.student(t), self.student(same)
"""
    net = lower(body)["M"]
    whats = [getattr(n, "what", "") for n in net.nodes]
    assert "computed without gradient" in whats
    # the input handed back as it came keeps its gradient: the second output is the student alone
    second = [n for n in lower(body).values() if n.name == "M (output 2)"]
    assert all("computed without gradient" not in [getattr(n, "what", "") for n in s.nodes] for s in second)
