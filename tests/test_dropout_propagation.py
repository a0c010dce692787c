"""Dropout in train mode: the signal-propagation model against gains measured in torch.

Torch's inverted dropout y = x * m / (1 - p) multiplies the second moment of the signal and of
the gradient by 1 / (1 - p) (model/propagation.py's docstring has the maths). MEASURED_TRAIN
holds ||dL/dz_first|| / ||dL/dz_last|| of each net below, z the outputs of the chain's first and
last layer, measured in train mode (torch 2.x CPU, batch 256 (64 for the convs), loss
sum(y * r) with r ~ N(0, 1), geometric mean over 5 seeds); the eval-mode gain, which the model
predicted before dropout was modelled, is beside it in the comment.
"""

from __future__ import annotations

import pytest

from gradlint.api import check_source
from gradlint.config import Config
from gradlint.model.ir import Activation, InitSpec, Param, Passthrough
from gradlint.model.propagation import analyse, analyse_nodes

HEAD = "import torch.nn as nn\nimport torch.nn.functional as F\n\n\n"


def stack(body: str, width=512, depth=8, init: str = "") -> str:
    """A class M of `depth` x [body] over Linear(width) layers, `layers += [...]` in a loop."""
    return HEAD + f"""class M(nn.Module):
    def __init__(self, width={width}, depth={depth}):
        super().__init__()
        layers = []
        for _ in range(depth):
            layers += [{body}]
        self.body = nn.Sequential(*layers)
{init}
    def forward(self, x):
        return self.body(x)
"""


NORMAL_1 = """        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=1.0)
"""
LECUN = """        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
"""
P104 = HEAD + """class M(nn.Module):
    def __init__(self, d_in=784, width=1024, depth=8, p=0.5, n_cls=10):
        super().__init__()
        layers = []
        for i in range(depth):
            layers += [nn.Linear(d_in if i == 0 else width, width), nn.ReLU(), nn.Dropout(p)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, n_cls)

    def forward(self, x):
        return self.fc(self.features(x))
"""
FUNCTIONAL = HEAD + """class M(nn.Module):
    def __init__(self, width=1024, depth=9, p=0.5):
        super().__init__()
        self.p = p
        self.layers = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])

    def forward(self, x):
        for layer in self.layers:
            x = F.dropout(F.relu(layer(x)), p=self.p, training=self.training)
        return x
"""
CONVS = HEAD + """class M(nn.Module):
    def __init__(self, ch=32, depth=10):
        super().__init__()
        layers = []
        for _ in range(depth):
            layers += [nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.3)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)
"""
# A 12-block pre-LN transformer with dropout 0.1 everywhere (embedding, attention weights, both
# sub-layers' outputs, inside the MLP).
PRE_LN = HEAD + """class Attention(nn.Module):
    def __init__(self, d, heads, p):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.attn_drop = nn.Dropout(p)
        self.proj_drop = nn.Dropout(p)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) * (C // self.heads) ** -0.5
        att = self.attn_drop(att.softmax(dim=-1))
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.proj_drop(self.proj(y))


class Block(nn.Module):
    def __init__(self, d, heads, p):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads, p)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        x = x + self.drop(self.fc2(self.drop(F.gelu(self.fc1(self.ln2(x))))))
        return x


class M(nn.Module):
    def __init__(self, vocab=1000, d=256, heads=8, depth=12, p=0.1):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.drop = nn.Dropout(p)
        self.blocks = nn.ModuleList([Block(d, heads, p) for _ in range(depth)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx):
        x = self.drop(self.tok(idx))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))
"""
RESNET = HEAD + """class BasicBlock(nn.Module):
    def __init__(self, ch, p):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.drop = nn.Dropout2d(p)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)

    def forward(self, x):
        out = self.drop(F.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return F.relu(out + x)


class M(nn.Module):
    def __init__(self, ch=32, blocks=8, p=0.1, n_cls=10):
        super().__init__()
        self.stem = nn.Conv2d(3, ch, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(ch)
        self.layers = nn.Sequential(*[BasicBlock(ch, p) for _ in range(blocks)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(ch, n_cls)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.layers(x)
        x = self.dropout(self.pool(x).flatten(1))
        return self.fc(x)
"""

# (source, the chain's first and last module, measured train-mode gain)
MEASURED_TRAIN = {
    # the tester's p104: 8 x [Linear(1024), ReLU, Dropout(0.5)] + Linear; eval 7.6e-4
    "relu + Dropout(0.5), default init": (P104, "features.0", "fc", 1.23e-2),
    # eval 4.3e-10: still vanishing in train mode
    "12 x sigmoid + Dropout(0.1)": (stack("nn.Linear(width, width), nn.Sigmoid(), nn.Dropout(0.1)", 256, 12),
                                    "body.0", "body.33", 7.46e-10),
    # eval 4.9e-5
    "12 x relu + Dropout(0.1)": (stack("nn.Linear(width, width), nn.ReLU(), nn.Dropout(0.1)", 512, 12),
                                 "body.0", "body.33", 8.83e-5),
    # dropout raises q too (the tanh saturates less slowly): eval 6.4e3
    "8 x tanh + Dropout(0.3), normal_(std=1)": (stack("nn.Linear(width, width), nn.Tanh(), nn.Dropout(0.3)", 512, 8,
                                                      NORMAL_1), "body.0", "body.21", 1.29e4),
    # the mask commutes with ReLU: Linear, Dropout, ReLU is Linear, ReLU, Dropout; eval 7.9e-4
    "9 x Dropout(0.5) before relu": (stack("nn.Linear(width, width), nn.Dropout(0.5), nn.ReLU()", 1024, 9),
                                     "body.0", "body.24", 1.25e-2),
    # F.dropout(..., training=self.training) with p from __init__; eval 7.9e-4
    "F.dropout(p=0.5)": (FUNCTIONAL, "layers.0", "layers.8", 1.25e-2),
    # a channel mask has the same second moment; eval 2.5e-4 (padding's borders: 0.78x)
    "10 x conv + Dropout2d(0.3)": (CONVS, "body.0", "body.27", 1.25e-3),
    # AlphaDropout: gradient^2 x 1 / (1 + p alpha'^2); its output's scale is not followed, so
    # the chain is two layers long; eval 1.04
    "SELU + AlphaDropout(0.2), lecun": (stack("nn.Linear(width, width), nn.SELU(), nn.AlphaDropout(0.2)", 512, 8,
                                              LECUN), "body.0", "body.3", 0.815),
    # the MLP of one pre-LN block, dropout 0.1 between fc1's GELU and fc2; eval 0.355
    "pre-LN MLP, Dropout(0.1)": (PRE_LN, "blocks.5.fc1", "blocks.5.fc2", 0.373),
}


def _chain(source: str, first: str, last: str):
    from gradlint.source import extract_facts, parse

    facts = extract_facts(parse("m.py", source))
    (network,) = [n for n in facts.networks if n.name == "M"]
    (chain,) = [c for c in analyse(network).chains if c.modules[0] == first]
    assert chain.modules[-1] == last
    return chain


@pytest.mark.parametrize("name", MEASURED_TRAIN)
def test_train_mode_gains_within_factor_2_of_measured(name):
    source, first, last, measured = MEASURED_TRAIN[name]
    gain = _chain(source, first, last).gain
    assert measured / 2 <= gain <= measured * 2, gain
    # and closer than that: every net above is within 25%
    assert measured / 1.3 <= gain <= measured * 1.3, gain


def check(source: str, *codes: str):
    return [f for f in check_source(source, Config(select=codes or ("GL101", "GL102")))]


def test_the_dropout_mlp_that_was_flagged_is_not_vanishing_in_train_mode():
    """p104: predicted 7.7e-4 without dropout (GL101), 1.2e-2 with it; measured 1.2e-2."""
    assert check(P104) == []


def test_nets_that_vanish_or_explode_with_dropout_are_still_flagged_and_say_why():
    (sig,) = check(MEASURED_TRAIN["12 x sigmoid + Dropout(0.1)"][0])
    assert sig.code == "GL101" and "7.5e-10 across 12 layers" in sig.message
    assert "Sigmoid+Dropout(0.1)" in sig.message and "train mode" in sig.message
    (relu,) = check(MEASURED_TRAIN["12 x relu + Dropout(0.1)"][0])
    assert relu.code == "GL101" and "χ ≈ 0.19 per layer in train mode" in relu.message
    (tanh,) = check(MEASURED_TRAIN["8 x tanh + Dropout(0.3), normal_(std=1)"][0])
    assert tanh.code == "GL102" and "1.3e4 across 8 layers" in tanh.message


def test_a_message_without_dropout_is_unchanged():
    (f,) = check(stack("nn.Linear(width, width), nn.ReLU()", 512, 12))
    assert "(ReLU, PyTorch default init: χ ≈ 0.17 per layer) in M" in f.message


@pytest.mark.parametrize("source", [PRE_LN, RESNET], ids=["pre-LN transformer", "resnet"])
def test_ordinary_nets_with_dropout_are_not_flagged(source):
    """Measured in train mode: the 12-block transformer's gradient at blocks.0.fc1 over that at
    blocks.11.fc2 is 0.46; the ResNet's at layers.0.conv1 over layers.7.conv2 is 5.2."""
    assert check(source) == []


def test_a_dropout_whose_p_is_not_known_ends_the_chain():
    """`nn.Dropout(p)` with p a parameter without default: its factor lies anywhere in
    [1, 1 / (1 - p)], so no gain is invented (12 x ReLU is GL101 without dropout)."""
    source = stack("nn.Linear(width, width), nn.ReLU(), nn.Dropout(p)", 512, 12).replace(
        "def __init__(self, width", "def __init__(self, p, width")
    assert check(source) == []


def test_training_false_and_p_zero_do_nothing():
    off = FUNCTIONAL.replace("training=self.training", "training=False")
    (f,) = check(off)
    assert "5.3e-5 across 9 layers" not in f.message and "(ReLU, PyTorch default init" in f.message
    zero = stack("nn.Linear(width, width), nn.ReLU(), nn.Dropout(0.0)", 512, 12)
    (g,) = check(zero)
    assert "(ReLU, PyTorch default init: χ ≈ 0.17 per layer) in M" in g.message


def test_a_dropout_before_a_saturating_activation_ends_the_chain():
    """Dropout between a layer and its sigmoid: the sigmoid sees a mixture with an atom at 0,
    not a Gaussian; not modelled."""
    assert check(stack("nn.Linear(width, width), nn.Dropout(0.2), nn.Sigmoid()", 256, 12)) == []


LIN = InitSpec("torch-linear")


def _nodes(drop: Passthrough | None, act="relu", n=5):
    nodes = []
    for i in range(n):
        nodes.append(Param(f"l{i}", "linear", 512, 512, LIN))  # no bias: q is the weights alone
        nodes.append(Activation(f"a{i}", act))
        if drop is not None:
            nodes.append(drop)
    return nodes


def test_each_inverted_dropout_multiplies_the_factor_and_q_by_one_over_keep():
    plain = analyse_nodes(_nodes(None, "tanh")).chains[0]
    half = analyse_nodes(_nodes(Passthrough("d", "Dropout", dropout="inverted", p=0.5), "tanh")).chains[0]
    for a, b in zip(plain.steps[1:], half.steps[1:]):
        # same q feeding the tanh only for the first layer: later ones see 2x the moment
        assert b.factor > 1.5 * a.factor
    relu_plain = analyse_nodes(_nodes(None)).chains[0]
    relu_half = analyse_nodes(_nodes(Passthrough("d", "Dropout", dropout="inverted", p=0.5))).chains[0]
    assert relu_half.gain == pytest.approx(relu_plain.gain * 2 ** 2)  # 4 steps, sqrt(2) each
    assert relu_half.steps[1].q == pytest.approx(2 * relu_plain.steps[1].q)
    assert relu_half.steps[0].dropouts == (("inverted", 0.5),)


def test_alpha_dropout_scales_the_gradient_and_leaves_the_moment_unknown():
    alpha = analyse_nodes(_nodes(Passthrough("d", "AlphaDropout", dropout="alpha", p=0.2), n=2)).chains[0]
    plain = analyse_nodes(_nodes(None, n=2)).chains[0]
    assert alpha.steps[1].factor == pytest.approx(plain.steps[1].factor / (1 + 0.2 * 1.7580993408473766 ** 2))
    assert alpha.steps[1].q is None


def test_stochastic_depth_carries_its_p_and_scales_the_branch():
    """timm's DropPath / drop_path and torchvision's StochasticDepth rescale the branches they
    keep by 1 / (1 - p): measured E[(x + drop_path(f))^2] = 2.95 for E[x^2] = 1, E[f^2] = 1.0,
    p = 0.5 (predicted 2.99; 2.0 without the scaling)."""
    from gradlint.model.ir import Residual, walk
    from gradlint.source import extract_facts, parse

    source = HEAD + """from timm.layers import DropPath, drop_path
from torchvision.ops import StochasticDepth, stochastic_depth


class M(nn.Module):
    def __init__(self, d=64, p=0.5):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.p = p
        self.dp = DropPath(0.2)
        self.sd = StochasticDepth(0.3, "row")

    def forward(self, x):
        x = x + drop_path(self.fc(x), self.p, self.training)
        x = x + self.dp(self.fc(x))
        x = x + self.sd(self.fc(x))
        x = x + stochastic_depth(self.fc(x), 0.1, "row")
        x = x + drop_path(self.fc(x), 0.4)  # training=False by default: nothing
        x = x + drop_path(self.fc(x), 0.3, True, scale_by_keep=False)  # unscaled: not modelled
        return x
"""
    (network,) = [n for n in extract_facts(parse("m.py", source)).networks if n.name == "M"]
    drops = [(n.what, n.p) for n in walk(network.nodes) if isinstance(n, Passthrough) and n.dropout]
    assert drops == [("drop_path", 0.5), ("DropPath", 0.2), ("StochasticDepth", 0.3), ("stochastic_depth", 0.1),
                     ("drop_path", None)]
    body = [n for n in network.nodes if isinstance(n, Residual)][0].body
    from gradlint.model.propagation import _Walk

    out = _Walk([], [], 1.0).run(body)
    plain = _Walk([], [], 1.0).run(tuple(n for n in body if not isinstance(n, Passthrough)))
    assert out == pytest.approx(2 * plain)
