"""Attention, gates and choices made in __init__ (issue 9, items 6 and 7): the IR the source
front-end lowers them to, what propagation makes of it, and what `gradlint model` shows."""

from __future__ import annotations

import pytest

from gradlint.describe import describe_network, render_text
from gradlint.model.blocks import has_attention, transformer_blocks
from gradlint.model.ir import Attention, Norm, Opaque, Param, Passthrough, Residual, walk
from gradlint.model.propagation import analyse
from gradlint.source import models, parse

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


def lower(body: str, path: str = "m.py"):
    networks, _ = models.extract(parse(path, HEAD + body))
    return {n.name: n for n in networks}


def kinds(nodes) -> list[str]:
    return [type(n).__name__ for n in nodes]


def opaque(net) -> list[str]:
    return [n.what for p in net.paths for n in walk(p) if isinstance(n, Opaque)]


# ---- attention ---------------------------------------------------------------------------------

ATTN = """
class A(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)

    def forward(self, x):
        w = (self.q(x) @ self.k(x).transpose(-2, -1)).softmax(-1)
        return self.o(w @ self.v(x))
"""


def test_written_out_attention_is_an_attention_node_with_its_projections():
    net = lower(ATTN)["A"]
    assert kinds(net.nodes) == ["Attention", "Param"]
    attn = net.nodes[0]
    assert attn.what == "matmul" and [p.name for p in attn.projections] == ["q", "k", "v"]
    assert opaque(net) == []


def test_attention_ends_the_chain_and_gives_no_gain():
    # Linear -> attention -> Linear -> Linear: only the two layers after attention form a chain.
    net = lower(ATTN.replace("return self.o(w @ self.v(x))", "return self.o(self.o(w @ self.v(x)))"))["A"]
    chains = analyse(net).chains
    assert [c.modules for c in chains] == [("o", "o")]


def test_sdpa_multihead_and_einsum_are_attention():
    nets = lower("""
class S(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return F.scaled_dot_product_attention(q, k, v)


class M(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.mha = nn.MultiheadAttention(d, 4)

    def forward(self, x):
        return x + self.mha(x, x, x)[0]


class E(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.q = nn.Linear(d, d)

    def forward(self, x):
        return torch.einsum("bnd,bmd->bnm", self.q(x), x)
""")
    s = nets["S"].nodes
    assert kinds(s) == ["Param", "Passthrough", "Attention"] and s[2].what == "sdpa" and s[2].projections == ()
    m = nets["M"]
    assert kinds(m.nodes) == ["Residual"] and m.nodes[0].body[0].what == "multihead" and m.nodes[0].body[0].name == "mha"
    assert has_attention(m.nodes) and len(transformer_blocks(m.nodes)) == 1
    e = nets["E"].nodes
    assert kinds(e) == ["Attention"] and [p.name for p in e[0].projections] == ["q"]


# ---- gates -------------------------------------------------------------------------------------

def test_squeeze_excitation_is_a_gate_whose_branch_is_analysed():
    net = lower("""
class SE(nn.Module):
    def __init__(self, c=64):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // 4, 1)
        self.fc2 = nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
""")["SE"]
    gate = net.nodes[0]
    assert isinstance(gate, Residual) and gate.join == "mul" and gate.skip_scale is None and not gate.branches
    assert [n.name for n in gate.body if isinstance(n, Param)] == ["fc1", "fc2"]
    assert [c.modules for c in analyse(net).chains] == [("fc1", "fc2")]
    # the gate's branch starts from an unknown scale: no activation statistic inside it
    assert analyse(net).activations == ()


def test_swiglu_has_two_branches_and_no_skip():
    net = lower("""
class G(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.w1 = nn.Linear(d, 4 * d)
        self.w2 = nn.Linear(d, 4 * d)
        self.w3 = nn.Linear(4 * d, d)

    def forward(self, x):
        return self.w3(F.silu(self.w1(x)) * self.w2(x))
""")["G"]
    gate, w3 = net.nodes
    assert gate.join == "mul" and gate.skip_scale == 0.0 and len(gate.branches) == 1
    assert isinstance(w3, Param) and w3.name == "w3"


def test_product_of_two_inputs_stays_opaque():
    net = lower("""
class P(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x, y):
        return self.fc(x) * y
""")["P"]
    assert opaque(net) == ["product of branches"]


# ---- choices made in __init__ --------------------------------------------------------------------

def test_undecided_if_in_init_gives_one_path_per_choice():
    net = lower("""
class B(nn.Module):
    def __init__(self, inp, oup, expand_ratio, conv_mlp):
        super().__init__()
        layers = []
        if expand_ratio != 1:
            layers.append(nn.Conv2d(inp, inp * expand_ratio, 1))
            layers.append(nn.ReLU())
        layers.extend([nn.Conv2d(inp * expand_ratio, oup, 1), nn.BatchNorm2d(oup)])
        self.conv = nn.Sequential(*layers)
        norm_layer = nn.BatchNorm2d if conv_mlp else nn.GroupNorm
        self.norm = norm_layer(oup)

    def forward(self, x):
        return self.norm(self.conv(x))
""")["B"]
    assert opaque(net) == []
    shapes = sorted(tuple(kinds(p)) for p in net.paths)
    assert shapes == sorted([("Param", "Activation", "Param", "Norm", "Norm")] * 2 + [("Param", "Norm", "Norm")] * 2)
    assert {p[-1].kind for p in net.paths} == {"batch", "group"}
    # both choices' layers are in the inventory (each exists on some configuration)
    assert [p.name for p in net.params] == ["conv.0", "conv.2"]


def test_a_branch_that_raises_is_not_a_choice():
    net = lower("""
class R(nn.Module):
    def __init__(self, kind):
        super().__init__()
        layers = [nn.Linear(8, 8)]
        if kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "tanh":
            layers.append(nn.Tanh())
        else:
            raise ValueError(kind)
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)
""")["R"]
    # two configurations, not three: the one that raises builds nothing
    assert sorted(p[-1].fn for p in net.paths) == ["relu", "tanh"]


def test_a_guard_in_forward_agrees_with_the_choice_it_tests():
    # `self.aa` is None or a module; forward calls it only when it is not None: no path calls None.
    net = lower("""
def make_aa(enable, channels):
    if not enable:
        return None
    return nn.AvgPool2d(2)


class C(nn.Module):
    def __init__(self, c, use_aa):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3)
        self.aa = make_aa(use_aa, c)

    def forward(self, x):
        x = self.conv(x)
        if self.aa is not None:
            x = self.aa(x)
        return x
""")["C"]
    assert opaque(net) == []
    assert sorted(len(p) for p in net.paths) == [1, 2]


def test_a_long_dispatch_on_an_unknown_name_stays_unknown():
    branches = "".join(f"    if name == 'a{i}':\n        return nn.ReLU\n" for i in range(6))
    net = lower(f"""
def get_act(name):
{branches}    return nn.Tanh


class D(nn.Module):
    def __init__(self, name):
        super().__init__()
        self.act = get_act(name)()

    def forward(self, x):
        return self.act(x)
""")["D"]
    assert len(net.paths) == 1 and opaque(net)


# ---- calls forward now follows -----------------------------------------------------------------

def test_file_functions_functional_layers_and_library_helpers():
    nets = lower("""
from timm.layers import create_classifier, SqueezeExcite
from timm.layers.fast_norm import fast_layer_norm


def window_partition(x, window_size: int = 7):
    B, H, W, C = x.shape
    x = x.view(B, H // window_size, window_size, W // window_size, window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, C)


class W(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        return self.fc(window_partition(x))


class Lin(nn.Linear):
    def forward(self, x):
        return F.linear(x, self.weight.to(x.dtype), self.bias)


class Head(nn.Module):
    def __init__(self, c=64, num_classes=10):
        super().__init__()
        self.se = SqueezeExcite(c)
        self.global_pool, self.fc = create_classifier(c, num_classes)

    def forward(self, x):
        x = fast_layer_norm(self.se(x), (64,))
        return self.fc(self.global_pool(x))
""")
    assert kinds(nets["W"].nodes) == ["Param"]
    lin = nets["Lin"].nodes
    assert kinds(lin) == ["Param"] and lin[0].op == "linear" and lin[0].init.scheme == "unknown" and lin[0].fan_in is None
    head = nets["Head"]
    assert opaque(head) == []
    assert kinds(head.nodes) == ["Residual", "Norm", "Passthrough", "Param"]
    assert head.nodes[0].join == "mul" and head.nodes[-1].name == "fc"


def test_a_product_with_a_parameter_the_module_holds_is_a_layer():
    # `x @ self.W` was a passthrough (the layer vanished: fc, tanh, tanh...), `torch.matmul` and
    # `.mm` opaque; each is a layer of unknown scale now, as F.linear is: it ends any chain
    nets = lower("""
import torch
import torch.nn as nn


class Raw(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.W1 = nn.Parameter(torch.randn(d, d))
        self.W2 = nn.Parameter(torch.randn(d, d))
        self.W3 = nn.Parameter(torch.randn(d, d))
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        x = torch.tanh(self.fc(x))
        x = torch.tanh(x @ self.W1)
        x = torch.tanh(torch.matmul(x, self.W2))
        return torch.tanh(x.mm(self.W3))


class Scaled(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x, adj):
        return torch.relu(adj @ self.fc(x)) * 2.0
""")
    raw = nets["Raw"].nodes
    assert kinds(raw) == ["Param", "Activation"] * 4
    held = [n for n in raw if isinstance(n, Param)][1:]
    assert [p.name for p in held] == ["W1", "W2", "W3"]
    # made by a factory we read: the shape gives the fans (x @ W: W is (in, out)), the factory the init
    assert all(p.op == "linear" and p.init.scheme == "normal" and p.init.get("std") == 1.0
               and (p.fan_in, p.fan_out) == (64, 64) for p in held)
    # a product with another input of forward that no layer touched (a graph's adjacency) is no
    # layer of the module: a propagation of data-dependent scale (`scale:?`) after the fc layer
    scaled = nets["Scaled"].nodes
    assert [type(n).__name__ for n in scaled][:3] == ["Param", "Passthrough", "Activation"]
    assert scaled[1].what == "scale:?"


# ---- gradlint model ----------------------------------------------------------------------------

def test_model_command_shows_attention_and_gates():
    net = lower(ATTN + """

class SE(nn.Module):
    def __init__(self, c=64):
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(x))
""")
    a = describe_network(net["A"], "m.py")
    assert a["opaque"] == 0 and a["nodes"][0]["kind"] == "attention"
    assert [p["name"] for p in a["nodes"][0]["projections"]] == ["q", "k", "v"]
    se = describe_network(net["SE"], "m.py")
    assert se["nodes"][0]["kind"] == "residual" and se["nodes"][0]["join"] == "mul"
    text = render_text([a, se])
    assert "attention" in text and "matmul, no gain (data-dependent); projections q, k, v" in text
    assert "product of branches (gate)" in text


def test_attention_and_gate_nodes_are_not_opaque_nor_passthrough():
    net = lower(ATTN)["A"]
    assert not any(isinstance(n, (Opaque, Passthrough, Norm)) for n in walk(net.nodes))
    assert isinstance(net.nodes[0], Attention)


def test_raw_weights_take_their_shape_and_init_from_how_init_makes_them():
    nets = lower("""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Made(nn.Module):
    def __init__(self, d=32):
        super().__init__()
        self.A = nn.Parameter(torch.randn(d, 2 * d) * 0.02)
        self.B = nn.Parameter(torch.empty(d, 2 * d))
        nn.init.xavier_uniform_(self.B)
        self.C = nn.Parameter(torch.rand(2 * d, d) / 10)
        self.D = nn.Parameter(torch.randn(d, d))
        self.D *= 0.5
        self.E = nn.Parameter(torch.zeros(d, d))
        self.E[0, 0] = 1.0

    def forward(self, x):
        x = torch.tanh(x @ self.A)
        x = torch.tanh(F.linear(x, self.B))
        x = torch.tanh(torch.matmul(x, self.C))
        x = torch.tanh(x @ self.D)
        return x @ self.E


class Leaf(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(d, d))

    def forward(self, x):
        return x @ self.W


class Parent(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = Leaf()
        self.b = Leaf()
        for name, p in self.named_parameters():
            nn.init.normal_(p, std=0.02)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))
""")
    made = {p.name: p for p in nets["Made"].nodes if isinstance(p, Param)}
    assert (made["A"].fan_in, made["A"].fan_out) == (32, 64)
    assert made["A"].init.scheme == "normal" and made["A"].init.get("std") == pytest.approx(0.02)
    # F.linear's weight is laid out (out, in), as torch's layers
    assert (made["B"].fan_in, made["B"].fan_out) == (64, 32) and made["B"].init.scheme == "xavier_uniform"
    assert made["C"].init.scheme == "uniform" and made["C"].init.get("b") == pytest.approx(0.1)
    assert made["D"].init.get("std") == pytest.approx(0.5)  # `self.D *= 0.5`
    assert made["E"].init.scheme == "unknown"  # part of it rewritten
    # the parent's loop over its parameters reaches the leaves' raw weights: not zeros any more
    parent = [p for p in nets["Parent"].nodes if isinstance(p, Param)]
    assert [p.name for p in parent] == ["a.W", "b.W"] and all(p.init.scheme == "unknown" for p in parent)
    assert all(p.init.scheme == "zeros" for p in nets["Leaf"].nodes if isinstance(p, Param))


def test_model_command_shows_an_embedding_as_its_table():
    net = lower("""
import torch.nn as nn


class Tok(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(1000, 16)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(self.emb(x))
""")
    text = render_text([describe_network(net["Tok"], "m.py")])
    # torch's fans of the (num_embeddings, dim) table read 16 -> 1000: shown as the table it is
    assert "embedding table 1000 x 16" in text and "linear 16 -> 4" in text


# ---- re-layouts written as torch functions; powers -------------------------------------------

RELAYOUTS = """
class Shuffle(nn.Module):
    def __init__(self, c=64):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c, 1)
        self.fc2 = nn.Conv2d(c, c, 1)
    def forward(self, x):
        x = self.fc1(x)
        x = torch.transpose(x, 1, 2)
        x = torch.roll(x, shifts=(3, 3), dims=(1, 2))
        x = torch.swapaxes(torch.permute(x, (0, 2, 1, 3)), 2, 3).movedim(1, 3)
        return self.fc2(x)

class Squared(nn.Module):
    def __init__(self, c=64):
        super().__init__()
        self.fc1 = nn.Linear(c, c)
        self.fc2 = nn.Linear(c, c)
        self.relu = nn.ReLU()
    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)) ** 2)

class SquaredInPlace(nn.Module):
    def __init__(self, c=64):
        super().__init__()
        self.fc1 = nn.Linear(c, c)
        self.fc2 = nn.Linear(c, c)
    def forward(self, x):
        x = torch.relu(self.fc1(x))
        x **= 2
        return self.fc2(x)
"""


def test_torch_function_re_layouts_keep_the_chain():
    # torchvision's channel_shuffle, Permute, SwapAxes, Swin's cyclic shift
    net = lower(RELAYOUTS)["Shuffle"]
    assert kinds(net.nodes) == ["Param", "Param"] and not opaque(net)
    assert len(analyse(net).chains) == 1


def test_a_power_of_a_tensor_is_no_passthrough():
    # StarReLU's `s * relu(x) ** 2 + b`: the derivative 2 relu(x) scales with the input
    for name in ("Squared", "SquaredInPlace"):
        net = lower(RELAYOUTS)[name]
        assert opaque(net) == ["power of a tensor"], name
        assert not analyse(net).chains, name
