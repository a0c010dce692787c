"""How the numerics front-end reads the modules a program calls when they are not written as
`nn.Sequential(..., nn.Softmax())` called as `model(x)`: an explicit `model.forward(x)` /
`criterion.forward(out, y)`, a Sequential filled by `add_module`/`append`, a builder that returns
its module through a local, and a subclass of nn.Sequential that hands its modules to
`super().__init__`. Each shape is reduced from a recall case (bench/recall/cases:
minitutorials_softmax_ce, monai_perceptual_sqrt, merlin_binary_output_bcelogits), with the
look-alikes that must stay quiet."""

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


# -- nn.Sequential() filled by add_module / append --------------------------------------------------
_FILLED = """import torch
import torch.nn as nn


def main(x, y):
    model = nn.Sequential({made})
{fill}
    loss = nn.CrossEntropyLoss()
    out = loss(model(x), y)
    out.backward()
"""


@pytest.mark.parametrize("made, fill", [
    ("", '    model.add_module("linear", nn.Linear(4, 3))\n    model.add_module("softmax", nn.Softmax(dim=1))'),
    ("nn.Linear(4, 3)", "    model.append(nn.Softmax(dim=1))"),
    ("nn.Linear(4, 3)", '    model.add_module(name="softmax", module=nn.Softmax(dim=1))'),
])
def test_a_sequential_filled_after_it_is_made(made, fill):
    assert codes(_FILLED.format(made=made, fill=fill)) == ["GL303"]


@pytest.mark.parametrize("made, fill", [
    # its last module is no softmax
    ("nn.Linear(4, 3), nn.Softmax(dim=1)", '    model.add_module("out", nn.Linear(3, 3))'),
    ("nn.Linear(4, 3)", '    model.add_module("relu", nn.ReLU())'),
    # the softmax is taken off again, or replaced
    ("nn.Linear(4, 3), nn.Softmax(dim=1)", "    del model[-1]"),
    ("nn.Linear(4, 3), nn.Softmax(dim=1)", "    model[-1] = nn.Identity()"),
    ("nn.Linear(4, 3), nn.Softmax(dim=1)", "    model.pop(-1)"),
    ("nn.Linear(4, 3)", "    model.extend(extra_layers())"),
    # added on one path only: not every run ends in a softmax
    ("nn.Linear(4, 3)", '    if y is None:\n        model.add_module("softmax", nn.Softmax(dim=1))'),
])
def test_a_sequential_whose_last_module_is_not_known_softmax(made, fill):
    assert codes(_FILLED.format(made=made, fill=fill)) == []


def test_add_module_on_another_module_changes_no_forward():
    # a module of the file whose forward never calls the child it is given
    src = ("import torch\nimport torch.nn as nn\n\n\n"
           "class Net(nn.Module):\n"
           "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 3)\n\n"
           "    def forward(self, x):\n        return self.fc(x)\n\n\n"
           "def main(x, y):\n"
           "    model = Net()\n"
           '    model.add_module("softmax", nn.Softmax(dim=1))\n'
           "    out = nn.CrossEntropyLoss()(model(x), y)\n"
           "    out.backward()\n")
    assert codes(src) == []


def test_a_sequential_attribute_filled_in_init():
    src = ("import torch\nimport torch.nn as nn\n\n\n"
           "class Net(nn.Module):\n"
           "    def __init__(self):\n        super().__init__()\n"
           "        self.body = nn.Sequential()\n"
           '        self.body.add_module("fc", nn.Linear(4, 3))\n'
           '        self.body.add_module("softmax", nn.Softmax(dim=1))\n\n'
           "    def forward(self, x):\n        return self.body(x)\n\n\n"
           "def main(x, y):\n"
           "    out = nn.CrossEntropyLoss()(Net()(x), y)\n"
           "    out.backward()\n")
    assert codes(src) == ["GL303"]


# -- a builder that returns its module through a local ---------------------------------------------
_TUTORIAL = """import torch


def build_model(input_dim, output_dim):
{body}


def train(model, loss, optimizer, x, y):
    optimizer.zero_grad()
    fx = model.forward(x)
    output = loss.forward(fx, y)
    output.backward()
    optimizer.step()
    return output.item()


def main(x, y):
    model = build_model(4, 3)
    loss = torch.nn.CrossEntropyLoss(size_average=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for i in range(100):
        train(model, loss, optimizer, x, y)
"""
_BUILT = ('    model = torch.nn.Sequential()\n'
          '    model.add_module("linear", torch.nn.Linear(input_dim, output_dim, bias=False))\n'
          '    model.add_module("softmax", torch.nn.Softmax())\n'
          '    return model')


def test_the_tutorial_builder_into_cross_entropy():
    # PyTorch-Mini-Tutorials' logistic regression: the model and the loss are parameters of
    # train(), bound by main()'s call
    assert codes(_TUTORIAL.format(body=_BUILT)) == ["GL303"]
    # the fix: the linear layer alone
    fixed = _BUILT.replace('    model.add_module("softmax", torch.nn.Softmax())\n', "")
    assert codes(_TUTORIAL.format(body=fixed)) == []


@pytest.mark.parametrize("body", [
    # rebound on one branch: what it returns is a join, not followed
    ('    model = torch.nn.Sequential(torch.nn.Linear(input_dim, output_dim), torch.nn.Softmax(dim=1))\n'
     '    if output_dim == 1:\n        model = torch.nn.Linear(input_dim, 1)\n    return model'),
    # the softmax added on one branch
    ('    model = torch.nn.Sequential(torch.nn.Linear(input_dim, output_dim))\n'
     '    if output_dim > 1:\n        model.add_module("softmax", torch.nn.Softmax(dim=1))\n    return model'),
    # rebound to a module that is no softmax
    ('    model = torch.nn.Sequential(torch.nn.Linear(input_dim, output_dim), torch.nn.Softmax(dim=1))\n'
     '    model = torch.nn.Sequential(model[0])\n    return model'),
])
def test_a_builder_whose_local_is_not_one_softmax_module(body):
    assert codes(_TUTORIAL.format(body=body)) == []


def test_a_builder_through_a_local_in_another_file():
    models = "import torch\n\n\ndef build_model(input_dim, output_dim):\n" + _BUILT + "\n"
    main = ("import torch\nfrom models import build_model\n\n\n"
            "def main(x, y):\n"
            "    model = build_model(4, 3)\n"
            "    loss = torch.nn.CrossEntropyLoss()(model(x), y)\n"
            "    loss.backward()\n")
    assert codes(main, **{"models.py": models}) == ["GL303"]


# -- subclasses of nn.Sequential ----------------------------------------------------------------------
_HEAD = """import torch
from torch import nn
{classes}

def step(x, y):
    head = {make}
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    loss = nn.BCEWithLogitsLoss()(head(x), y)
    loss.backward()
    opt.step()
"""
_DIRECT = """

class BinaryOutput(nn.Sequential):
    def __init__(self, dim):
        super().__init__(nn.Linear(dim, 1), {last}){more}
"""
# Merlin's ModelOutput: a base that hands its `*module` to nn.Sequential as they are
_MERLIN = """

class ModelOutput(nn.Sequential):
    def __init__(self, *module, loss=None):
        super().__init__(*module)
        self.loss = loss


class BinaryOutput(ModelOutput):
    def __init__(self, loss=None):
        super().__init__(nn.LazyLinear(1), nn.Sigmoid(), loss=loss)
"""


def test_a_sequential_subclass_returns_its_last_module():
    assert codes(_HEAD.format(classes=_DIRECT.format(last="nn.Sigmoid()", more=""), make="BinaryOutput(4)")) == \
        ["GL304"]


def test_a_sequential_subclass_through_a_base_that_hands_its_modules_on():
    assert codes(_HEAD.format(classes=_MERLIN, make="BinaryOutput()")) == ["GL304"]
    # the base defined after its subclass reads alike
    classes = _MERLIN.split("\n\nclass BinaryOutput")
    later = "\n\nclass BinaryOutput" + classes[1] + classes[0]
    assert codes(_HEAD.format(classes=later, make="BinaryOutput()")) == ["GL304"]


def test_a_sequential_subclass_of_another_file():
    classes = "import torch\nfrom torch import nn\n" + _MERLIN
    main = ("import torch\nfrom torch import nn\nfrom heads import BinaryOutput\n\n\n"
            "def step(x, y):\n"
            "    head = BinaryOutput()\n"
            "    loss = nn.BCEWithLogitsLoss()(head(x), y)\n"
            "    loss.backward()\n")
    assert codes(main, **{"heads.py": classes}) == ["GL304"]


@pytest.mark.parametrize("classes", [
    # its last module is no sigmoid
    _DIRECT.format(last="nn.Tanh()", more=""),
    # a module added after the sigmoid
    _DIRECT.format(last="nn.Sigmoid()", more="\n        self.append(nn.Linear(1, 1))"),
    _DIRECT.format(last="nn.Sigmoid()", more="\n\n    def drop_head(self):\n        del self[-1]"),
    # its own forward
    _DIRECT.format(last="nn.Sigmoid()", more="\n\n    def forward(self, x):\n        return self[0](x)"),
    # a base that reorders what it is handed
    _MERLIN.replace("super().__init__(*module)", "super().__init__(*reversed(module))"),
    # a base with a forward of its own
    _MERLIN.replace("        self.loss = loss\n",
                    "        self.loss = loss\n\n    def forward(self, x):\n        return self[0](x)\n"),
])
def test_a_sequential_subclass_that_does_not_end_in_its_sigmoid(classes):
    make = "BinaryOutput()" if "ModelOutput" in classes else "BinaryOutput(4)"
    assert codes(_HEAD.format(classes=classes, make=make)) == []
