"""How the numerics front-end reads the modules a program calls when they are not called as
`model(x)`: an explicit `model.forward(x)` / `criterion.forward(out, y)`. Each shape is reduced
from a recall case (bench/recall/cases: minitutorials_softmax_ce, monai_perceptual_sqrt), with
the look-alikes that must stay quiet."""

from __future__ import annotations

import pytest

from gradlint.api import check_source
from gradlint.config import Config


def codes(src: str, select: str = "GL3", **files: str) -> list[str]:
    return sorted(f.code for f in check_source(src, Config(select=(select,)), extra_files=files or None))


# -- model.forward(x), criterion.forward(out, y) ---------------------------------------------------
_LOCAL = """import torch
import torch.nn as nn


def main(x, y):
    model = {model}
    loss = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fx = {call}
    out = {loss}
    out.backward()
    opt.step()
"""
_SOFTMAX_SEQ = "nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))"


@pytest.mark.parametrize("call, loss", [("model(x)", "loss(fx, y)"), ("model.forward(x)", "loss(fx, y)"),
                                        ("model(x)", "loss.forward(fx, y)"),
                                        ("model.forward(x)", "loss.forward(fx, y)")])
def test_an_explicit_forward_is_the_module_call(call, loss):
    assert codes(_LOCAL.format(model=_SOFTMAX_SEQ, call=call, loss=loss)) == ["GL303"]


def test_an_explicit_forward_of_a_module_that_returns_logits_is_quiet():
    src = _LOCAL.format(model="nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3))",
                        call="model.forward(x)", loss="loss.forward(fx, y)")
    assert codes(src) == []


def test_forward_of_an_unknown_object_is_unknown():
    # a parameter no call passes anything for, and a value no import or constructor explains
    src = ("import torch\nimport torch.nn.functional as F\n\n\n"
           "def step(thing, x, y):\n"
           "    other = thing.build()\n"
           "    loss = F.cross_entropy(thing.forward(x), y) + F.cross_entropy(other.forward(x), y)\n"
           "    loss.backward()\n")
    assert codes(src) == []


def test_forward_of_a_class_named_is_no_call_of_an_instance():
    # `Probs.forward(self, x)` in a subclass: the base's method on this instance, not `Probs(...)`
    src = ("import torch\nfrom torch import nn\nimport torch.nn.functional as F\n\n\n"
           "class Probs(nn.Module):\n"
           "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 3)\n\n"
           "    def forward(self, x):\n        return torch.softmax(self.fc(x), dim=1)\n\n\n"
           "class Logits(Probs):\n"
           "    def forward(self, x):\n        return self.fc(x)\n\n"
           "    def loss(self, x, y):\n        return F.cross_entropy(Logits.forward(self, x), y)\n")
    assert codes(src) == []


def test_an_explicit_forward_of_a_submodule():
    # MONAI's perceptual loss: `self.model.forward(x)` of a network whose output may be all zero
    # (a ReLU's), normalised by the root of its sum of squares with the eps outside the root
    src = ("import torch\nimport torch.nn as nn\n\n\n"
           "def normalize_tensor(x, eps=1e-10):\n"
           "    norm_factor = torch.sqrt(torch.sum(x**2, dim=1, keepdim=True))\n"
           "    return x / (norm_factor + eps)\n\n\n"
           "class Similarity(nn.Module):\n"
           "    def __init__(self):\n        super().__init__()\n"
           "        self.model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())\n\n"
           "    def forward(self, input, target):\n"
           "        feats_input = normalize_tensor(self.model{call}(input))\n"
           "        feats_target = normalize_tensor(self.model{call}(target))\n"
           "        return ((feats_input - feats_target) ** 2).sum(dim=1).mean()\n")
    assert codes(src.format(call=""), "GL306") == ["GL306"]
    assert codes(src.format(call=".forward"), "GL306") == ["GL306"]
