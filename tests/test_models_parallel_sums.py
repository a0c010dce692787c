"""Sums of branches in forward (issue 9 item 6): `a + b` of one input whose two parts both hold layers
(a projection shortcut, MobileOne's `scale(x) + conv(x) + bn(x)`, a parallel attention + MLP
block) keeps both parts, the longer as the body and the other as a branch, where it used to read
the sum as x + f(x) and drop the shorter part's layers. Look-alikes: x + f(x), a scaled skip and a
pooled skip stay plain residuals. The second moment after a sum of uncorrelated branches is the sum
of theirs, measured in torch."""

from __future__ import annotations

import pytest

from gradlint.model.blocks import block_count
from gradlint.model.ir import Activation, Attention, InitSpec, Norm, Opaque, Param, Passthrough, Residual, walk
from gradlint.model.propagation import analyse, analyse_nodes
from gradlint.source import models, parse


def lower(source: str, path: str = "m.py"):
    networks, _summaries = models.extract(parse(path, source))
    return {n.name: n for n in networks}


def names(nodes) -> list[str]:
    return [n.name for n in nodes if isinstance(n, (Param, Norm, Opaque))]


SUMS = '''
import torch.nn as nn


class TwoBranch(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.a = nn.Linear(d, d)
        self.b1 = nn.Linear(d, d)
        self.act = nn.ReLU()
        self.b2 = nn.Linear(d, d)

    def forward(self, x):
        return self.a(x) + self.b2(self.act(self.b1(x)))


class Skip(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.b1 = nn.Linear(d, d)
        self.act = nn.ReLU()
        self.b2 = nn.Linear(d, d)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        return self.drop(x) + self.b2(self.act(self.b1(x)))


class ScaledSkip(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.f = nn.Linear(d, d)

    def forward(self, x):
        return x * 0.5 + self.f(x)


class Three(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.a = nn.Linear(d, d)
        self.b = nn.Linear(d, d)

    def forward(self, x):
        return x + self.a(x) + self.b(x)


class Projection(nn.Module):
    def __init__(self, cin=32, cout=64):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += identity
        return self.relu(out)


class MobileOne(nn.Module):
    """timm's MobileOneBlock at training time: branches added in a loop onto a start of 0."""
    def __init__(self, d=64, n=2):
        super().__init__()
        self.conv_scale = nn.Conv2d(d, d, 1)
        self.conv_kxk = nn.ModuleList([nn.Conv2d(d, d, 3, padding=1) for _ in range(n)])
        self.identity = nn.BatchNorm2d(d)
        self.act = nn.ReLU()

    def forward(self, x):
        identity_out = self.identity(x)
        scale_out = 0
        scale_out = self.conv_scale(x)
        out = 0
        out += scale_out
        for ck in self.conv_kxk:
            out += ck(x)
        out += identity_out
        return self.act(out)


class Hidden(nn.Module):
    """A shorter part that cannot be followed is an opaque branch, no longer dropped."""
    def __init__(self, d=64):
        super().__init__()
        self.f1 = nn.Linear(d, d)
        self.f2 = nn.Linear(d, d)

    def forward(self, x):
        return self.f2(self.f1(x)) + self.mystery(x)
'''


def test_two_layer_branches_are_both_kept():
    net = lower(SUMS)["TwoBranch"]
    (res,) = net.nodes
    assert isinstance(res, Residual) and res.join == "add"
    assert names(res.body) == ["b1", "b2"]
    assert [names(b) for b in res.branches] == [["a"]]
    assert res.skip_scale == 0.0  # the input itself is not summed
    assert sorted(n.name for n in walk(net.nodes) if isinstance(n, Param)) == ["a", "b1", "b2"]


def test_look_alike_residuals_are_unchanged():
    nets = lower(SUMS)
    (res,) = nets["Skip"].nodes
    assert isinstance(res, Residual) and res.branches == () and res.skip_scale is None
    assert names(res.body) == ["b1", "b2"]
    (scaled,) = nets["ScaledSkip"].nodes
    assert scaled.branches == () and scaled.skip_scale == 0.5 and names(scaled.body) == ["f"]


def test_a_sum_added_to_again_gets_one_more_branch():
    (res,) = lower(SUMS)["Three"].nodes
    assert res.skip_scale is None  # x is summed
    assert [names(res.body), *[names(b) for b in res.branches]] == [["a"], ["b"]]


def test_projection_shortcut_is_a_branch():
    nodes = lower(SUMS)["Projection"].nodes
    res, relu = nodes
    assert isinstance(res, Residual) and isinstance(relu, Activation)
    assert names(res.body) == ["conv1", "bn1", "conv2", "bn2"]
    assert [names(b) for b in res.branches] == [["downsample.0", "downsample.1"]]
    assert res.skip_scale == 0.0


def test_mobileone_branches_added_in_a_loop():
    res, act = lower(SUMS)["MobileOne"].nodes
    assert isinstance(res, Residual) and act.fn == "relu"
    parts = [names(res.body), *[names(b) for b in res.branches]]
    assert sorted(p[0] for p in parts) == ["conv_kxk.0", "conv_kxk.1", "conv_scale", "identity"]
    assert res.skip_scale == 0.0


def test_an_opaque_shorter_part_is_not_dropped():
    net = lower(SUMS)["Hidden"]
    (res,) = net.nodes
    assert [n.what for b in res.branches for n in b if isinstance(n, Opaque)] == ["self.mystery: not set in __init__"]


PARALLEL = '''
import torch.nn as nn
import torch.nn.functional as F


class ParallelBlock(nn.Module):
    """GPT-J / ViT-22B: attention and MLP side by side on one norm, both added to x."""
    def __init__(self, d=64):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * d, d)
        self.fc3 = nn.Linear(d, d)

    def forward(self, x):
        y = self.norm(x)
        q, k, v = self.qkv(y).chunk(3, dim=-1)
        a = self.proj(F.scaled_dot_product_attention(q, k, v))
        m = self.fc3(self.fc2(self.act(self.fc1(y))))
        return x + a + m


class NoInput(nn.Module):
    """The same two parts summed without x: not a residual block."""
    def __init__(self, d=64):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * d, d)
        self.fc3 = nn.Linear(d, d)

    def forward(self, x):
        y = self.norm(x)
        q, k, v = self.qkv(y).chunk(3, dim=-1)
        a = self.proj(F.scaled_dot_product_attention(q, k, v))
        m = self.fc3(self.fc2(self.act(self.fc1(y))))
        return a + m
'''


def test_parallel_attention_block_is_a_transformer_block():
    nets = lower(PARALLEL)
    net = nets["ParallelBlock"]
    (res,) = net.nodes
    assert isinstance(res, Residual) and res.skip_scale is None
    # x + a first (a residual around attention), then + m: the MLP joins it as a branch; each
    # part holds the shared norm, applied to x inside it.
    assert names(res.body)[0] == "norm" and any(isinstance(n, Attention) for n in res.body)
    assert [names(b) for b in res.branches] == [["norm", "fc1", "fc2", "fc3"]]
    assert block_count(net.paths) == 1
    assert block_count(nets["NoInput"].paths) == 0


# -- the second moment after a sum, against torch -------------------------------------------------

DEFAULT = InitSpec("torch-linear")


def linear(name: str, fan_in: int, fan_out: int, init: InitSpec = DEFAULT) -> Param:
    return Param(name, "linear", fan_in, fan_out, init, bias_init=None)


def _measured(build, d: int = 256, batch: int = 4096, seeds: int = 4) -> float:
    torch = pytest.importorskip("torch")
    total = 0.0
    for seed in range(seeds):
        torch.manual_seed(seed)
        x = torch.randn(batch, d)
        with torch.no_grad():
            total += float(build(torch, d)(x).pow(2).mean())
    return total / seeds


def _predicted(nodes) -> float:
    """E[x^2] feeding an activation placed after the nodes (the input has E[x^2] = 1)."""
    stats = analyse_nodes((*nodes, Activation("after", "tanh"))).activations
    assert stats and stats[-1].activation.name == "after"
    return stats[-1].q


def test_sum_of_two_layer_branches_moment_matches_torch():
    d = 256

    def build(torch, d):
        nn = torch.nn
        a, b1, b2 = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        return lambda x: a(x) + b2(torch.relu(b1(x)))

    body = (linear("b1", d, d), Activation("r", "relu"), linear("b2", d, d))
    nodes = (Residual(body, skip_scale=0.0, branches=((linear("a", d, d),),)),)
    assert _predicted(nodes) == pytest.approx(_measured(build, d), rel=0.05)


def test_input_plus_two_branches_moment_matches_torch():
    d = 256

    def build(torch, d):
        nn = torch.nn
        a, b = nn.Linear(d, d), nn.Linear(d, d)
        return lambda x: x + a(x) + b(x)

    nodes = (Residual((linear("a", d, d),), branches=((linear("b", d, d),),)),)
    assert _predicted(nodes) == pytest.approx(_measured(build, d), rel=0.05)


def test_correlated_parts_leave_the_moment_unknown():
    # x + norm(x) + x-like parts: two parts not drawn from weights of their own are correlated
    # (E[x * norm(x)] is not 0), so no moment is claimed and no statistic recorded after the sum.
    nodes = (Residual((Norm("n", "layer"),), branches=((Norm("m", "batch"),),)), Activation("after", "tanh"))
    assert analyse_nodes(nodes).activations == ()
    # one such part beside layers drawn symmetric about zero is fine: MobileOne's BN branch
    d = 64
    ok = (Residual((linear("a", d, d),), skip_scale=0.0, branches=((Norm("bn", "batch"),),)), Activation("after", "tanh"))
    assert [s.activation.name for s in analyse_nodes(ok).activations] == ["after"]
    # a layer drawn with a non-zero mean is not odd in its weights: unknown again
    shifted = InitSpec("normal", (("mean", 1.0), ("std", 0.1)))
    bad = (Residual((linear("a", d, d, shifted),), branches=((linear("b", d, d),),)), Activation("after", "tanh"))
    assert analyse_nodes(bad).activations == ()


BLOCKS = '''
import torch.nn as nn
import torch.nn.functional as F


class Embeddings(nn.Module):
    """Two embeddings summed, then a norm: no residual, so no Post-LN block (it used to be read as
    x + f(x) followed by a norm)."""
    def __init__(self, vocab=100, d=64):
        super().__init__()
        self.words = nn.Embedding(vocab, d)
        self.types = nn.Embedding(2, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, ids):
        return self.norm(self.words(ids) + self.types(ids))


class ProjectedBlock(nn.Module):
    """MViT / Hiera where the width changes: the input reaches the sum through a projection."""
    def __init__(self, d=64, e=128):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * e)
        self.out = nn.Linear(e, e)
        self.project = nn.Linear(d, e)

    def forward(self, x):
        y = self.norm(x)
        q, k, v = self.qkv(y).chunk(3, dim=-1)
        return self.project(y) + self.out(F.scaled_dot_product_attention(q, k, v))
'''


def test_blocks_need_the_input_among_the_summed_parts():
    nets = lower(BLOCKS)
    (res, norm) = nets["Embeddings"].nodes
    assert isinstance(res, Residual) and res.skip_scale == 0.0 and isinstance(norm, Norm)
    assert block_count(nets["Embeddings"].paths) == 0
    assert block_count(nets["ProjectedBlock"].paths) == 1


COMPREHENSIONS = '''
import torch
import torch.nn as nn


class SPP(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 1)
        self.poolings = nn.ModuleList([nn.MaxPool2d(k, 1, k // 2) for k in (5, 9, 13)])
        self.conv2 = nn.Conv2d(4 * c, c, 1)

    def forward(self, x):
        x = self.conv1(x)
        x = torch.cat([x] + [pool(x) for pool in self.poolings], dim=1)
        return self.conv2(x)


class Split(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 5, padding=2)])

    def forward(self, x):
        parts = torch.split(x, 8, 1)
        return torch.cat([conv(p) for p, conv in zip(parts, self.convs)], 1)


class Summed(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.attns = nn.ModuleList([nn.Linear(c, c), nn.Linear(c, c)])

    def forward(self, x):
        return x + torch.stack([attn(x) for attn in self.attns]).sum(dim=0)


class Filtered(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.paths = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 5, padding=2)])

    def forward(self, x):
        return torch.cat([op(x) for op in self.paths if op.kernel_size[0] > 3], dim=1)
'''


def test_a_comprehension_over_known_modules_gives_one_branch_per_module():
    # cspnext's SPPBottleneck `torch.cat([x] + [pool(x) for pool in self.poolings])`, timm's
    # SelectiveKernel `[op(x) for op in self.paths]`, Res2Net-style splits
    nets = lower(COMPREHENSIONS)
    spp = nets["SPP"]
    assert [type(n).__name__ for n in spp.nodes] == ["Param", "Residual", "Param"]
    cat = spp.nodes[1]
    assert cat.join == "cat" and len(cat.branches) == 2 and not any(isinstance(n, Opaque) for n in walk(spp.nodes))
    split = [n for n in nets["Split"].nodes if isinstance(n, Residual) and n.join == "cat"]
    assert split and names(split[0].body) == ["convs.0"] and [names(b) for b in split[0].branches] == [["convs.1"]]


def test_a_stack_summed_over_its_dimension_is_the_sum_of_its_branches():
    nets = lower(COMPREHENSIONS)
    # the stacked branches used to read as unknown, so `x + unknown` was x and they were dropped;
    # then as a concatenation summed to a scale not known; a sum over the dimension the stack
    # added is `x + attns[0](x) + attns[1](x)`: the input, and both branches as parts of one sum
    summed = nets["Summed"]
    assert not any(isinstance(n, Opaque) or isinstance(n, Passthrough) and n.what == "scale:?" for n in walk(summed.nodes))
    (outer,) = summed.nodes
    assert isinstance(outer, Residual) and outer.join == "add" and outer.skip_scale is None
    (inner,) = outer.body
    assert inner.join == "add" and inner.skip_scale == 0.0
    assert sorted([names(inner.body)] + [names(b) for b in inner.branches]) == [["attns.0"], ["attns.1"]]
    assert not analyse(summed).chains


def test_a_comprehension_the_model_cannot_follow_stays_opaque_never_dropped():
    nets = lower(COMPREHENSIONS)
    # an `if` in the comprehension chooses items: not guessed
    assert not nets["Filtered"].forward_known
