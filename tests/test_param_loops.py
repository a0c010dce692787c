"""Loops over parameters in __init__: the guards read off their tests, and the init each layer's
tensors get (source/param_loops.py, through the lowering)."""

from __future__ import annotations

import libcst as cst

from gradlint.model.ir import Param, Recurrent, walk
from gradlint.source import models, parse
from gradlint.source.param_loops import judge, tensor_ndim

HEAD = "import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self, d=64):\n        super().__init__()\n"
BODY = ("        self.body = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Conv1d(d, d, 3), nn.Embedding(10, d))\n"
        "        self.head = nn.Linear(d, 10)\n")
FORWARD = "\n    def forward(self, x):\n        return self.head(self.body(x))\n"


def layers(loop: str, body: str = BODY, forward: str = FORWARD, cls: str = "Net", extra: str = "") -> dict:
    """{path: (weight init, bias init)} of the network `cls` built by HEAD + body + loop."""
    source = HEAD + body + "".join("        " + line + "\n" for line in loop.strip("\n").splitlines()) + forward + extra
    networks, _ = models.extract(parse("m.py", source))
    net = {n.name: n for n in networks}[cls]
    out = {}
    for node in walk(net.nodes):
        if isinstance(node, Param):
            out[node.name] = (node.init.scheme, node.bias_init.scheme if node.bias_init is not None else None)
        elif isinstance(node, Recurrent):
            out[node.name] = (node.weight_hh_init.scheme if node.weight_hh_init is not None else None, None)
    return out


def test_guards_judge_names_and_shapes():
    assert judge(("in", "weight"), "body.0.weight", 2) is True
    assert judge(("in", "weight"), "body.0.bias", 1) is False
    assert judge(("not", ("ends", "bias")), "head.weight", 2) is True
    assert judge(("ndim", cst.GreaterThan, 1), "x.bias", 1) is False
    assert judge(("ndim", cst.GreaterThan, 1), "x.weight", None) is None  # shape not known
    assert judge(("and", ("in", "head"), None), "body.0.weight", 2) is False  # one side decides
    assert judge(("and", ("in", "head"), None), "head.weight", 2) is None
    assert judge(("or", ("eq", "head.weight"), None), "head.weight", 2) is True
    assert tensor_ndim("Conv2d", "weight") == 4 and tensor_ndim("Linear", "bias") == 1
    assert tensor_ndim("LSTM", "weight_hh_l0") == 2 and tensor_ndim("LayerNorm", "weight") is None


def test_a_name_test_inits_the_tensors_it_names():
    got = layers('for name, p in self.named_parameters():\n    if "weight" in name:\n'
                 '        nn.init.xavier_uniform_(p)\n    elif "bias" in name:\n        nn.init.zeros_(p)\n')
    assert got == {"body.0": ("xavier_uniform", "zeros"), "body.2": ("xavier_uniform", "zeros"),
                   "body.3": ("xavier_uniform", None), "head": ("xavier_uniform", "zeros")}


def test_a_shape_test_and_continue():
    got = layers("for p in self.parameters():\n    if p.dim() <= 1:\n        continue\n"
                 "    nn.init.orthogonal_(p.data)\n")
    assert {k: v[0] for k, v in got.items()} == {"body.0": "orthogonal", "body.2": "orthogonal",
                                                  "body.3": "orthogonal", "head": "orthogonal"}
    assert {v[1] for v in got.values()} == {None}  # the biases: skipped, torch's default
    got = layers("for p in self.parameters():\n    if len(p.shape) == 3:\n        nn.init.zeros_(p)\n")
    assert got["body.2"][0] == "zeros" and got["body.0"][0] == got["head"][0] == "torch-linear"


def test_paths_and_suffixes_are_those_of_named_parameters():
    got = layers('for n, p in self.named_parameters():\n    if n.startswith("head"):\n        p.data.zero_()\n'
                 '    elif n.endswith(("0.weight", "3.weight")):\n        p.data.normal_(0, 0.02)\n')
    assert got["head"] == ("zeros", "zeros")
    assert got["body.0"] == ("normal", None) and got["body.3"][0] == "normal"
    assert got["body.2"] == ("torch-linear", None)


def test_a_loop_over_a_submodule_names_from_there():
    got = layers('for name, p in self.body.named_parameters():\n    if name.startswith("0."):\n'
                 '        nn.init.zeros_(p)\n')
    assert got["body.0"] == ("zeros", "zeros") and got["head"] == ("torch-linear", None)
    assert got["body.2"][0] == "torch-linear"
    # a loop over a module that holds others reaches them all (it was the container alone)
    got = layers("for p in self.body.parameters():\n    nn.init.zeros_(p)\n")
    assert {got[k][0] for k in ("body.0", "body.2", "body.3")} == {"zeros"} and got["head"][0] == "torch-linear"


def test_a_block_loop_names_from_the_block_wherever_it_is_used():
    block = ("\n\nclass Block(nn.Module):\n    def __init__(self, d):\n        super().__init__()\n"
             "        self.fc1 = nn.Linear(d, d)\n        self.fc2 = nn.Linear(d, d)\n"
             "        for name, p in self.named_parameters():\n            if name == 'fc1.weight':\n"
             "                nn.init.zeros_(p)\n\n    def forward(self, x):\n        return self.fc2(self.fc1(x))\n")
    got = layers("", body="        self.blocks = nn.Sequential(Block(d), Block(d))\n",
                 forward="\n    def forward(self, x):\n        return self.blocks(x)\n", extra=block)
    assert got == {"blocks.0.fc1": ("zeros", None), "blocks.0.fc2": ("torch-linear", None),
                   "blocks.1.fc1": ("zeros", None), "blocks.1.fc2": ("torch-linear", None)}


def test_what_the_reader_cannot_tell_is_unknown():
    # a test it does not read: the init may or may not happen
    got = layers("for name, p in self.named_parameters():\n    if name in self.frozen:\n        nn.init.zeros_(p)\n",
                 body=BODY + "        self.frozen = set()\n")
    assert {v[0] for v in got.values()} == {"unknown"}
    # a body it does not follow (an assignment): every tensor unknown, as before
    got = layers("for name, p in self.named_parameters():\n    std = 0.02\n    nn.init.normal_(p, std=std)\n")
    assert {v[0] for v in got.values()} == {"unknown"}
    # a call given the parameter that is no init call: may initialise it
    got = layers("for name, p in self.named_parameters():\n    if 'weight' in name:\n        my_init(p)\n")
    assert {v[0] for v in got.values()} == {"unknown"} and got["head"][1] is None
    # an argument it cannot evaluate (the tensor's own size): the init's numbers are unknown
    got = layers("for p in self.parameters():\n    nn.init.normal_(p, std=p.size(0) ** -0.5)\n")
    assert {v[0] for v in got.values()} == {"unknown"}
    # a call that does not touch the parameter is only read past
    got = layers("for name, p in self.named_parameters():\n    print(len(self.body))\n"
                 "    if 'bias' in name:\n        nn.init.zeros_(p)\n")
    assert set(got.values()) == {("torch-linear", "zeros"), ("torch-embedding", None)}
    # nor is a call that only looks at it, or sets it trainable
    got = layers("for name, p in self.named_parameters():\n    print(name, p.shape)\n    p.requires_grad_(True)\n")
    assert set(got.values()) == {("torch-linear", None), ("torch-embedding", None)}


def test_a_recurrent_layers_tensors_by_name():
    body = "        self.rnn = nn.RNN(8, 16, nonlinearity='relu')\n        self.head = nn.Linear(16, 2)\n"
    forward = "\n    def forward(self, x):\n        return self.head(self.rnn(x)[0])\n"
    got = layers("for name, p in self.rnn.named_parameters():\n    if 'weight_hh' in name:\n        nn.init.eye_(p)\n",
                 body=body, forward=forward)
    assert got == {"rnn": ("eye", None), "head": ("torch-linear", None)}
    got = layers("for name, p in self.named_parameters():\n    if 'weight_ih' in name:\n        nn.init.eye_(p)\n",
                 body=body, forward=forward)
    assert got["rnn"] == (None, None)  # weight_hh untouched: torch's default (no init recorded)


def test_a_loop_over_a_dispatched_layers_parameters_names_from_the_layer():
    """`if isinstance(m, nn.Linear): for p in m.parameters()` reaches each Linear's own tensors,
    named from it; over a module of another kind (torchvision's mvit: a PositionalEncoding) it
    reaches that module's tensors only, and over any module the loop's effect is unknown."""
    got = layers("for m in self.modules():\n    if isinstance(m, nn.Linear):\n"
                 "        for name, p in m.named_parameters():\n            if name == 'weight':\n"
                 "                nn.init.zeros_(p)\n")
    assert got["body.0"] == ("zeros", None) and got["head"] == ("zeros", None)
    assert got["body.2"] == ("torch-linear", None)
    got = layers("for m in self.modules():\n    if isinstance(m, Pos):\n        for p in m.parameters():\n"
                 "            nn.init.trunc_normal_(p, std=0.02)\n", extra="\n\nclass Pos(nn.Module):\n    pass\n")
    assert {v[0] for v in got.values()} == {"unknown"}
    got = layers("for m in self.modules():\n    for p in m.parameters():\n        nn.init.zeros_(p)\n")
    assert {v[0] for v in got.values()} == {"unknown"}


def test_zero_convs_beside_a_block_not_seen_are_not_every_weight():
    """ControlNet's zero convs (a helper's loop over each conv's parameters) beside a block of
    another library: the zeroed convs are not every weight of the model, so GL105's 'every weight
    zero' names only the model whose convs are all it has (fixtures/architecture/param_loops.py)."""
    from gradlint.api import check_source
    from tests.conftest import ROOT

    found = [f for f in check_source((ROOT / "fixtures" / "architecture" / "param_loops.py").read_text())
             if f.code == "GL105"]
    assert len(found) == 1 and "AllConvsZeroed (2 layers)" in found[0].message
    assert "ZeroConvsBesideUnseenBlock" not in found[0].message
