"""Calls in __init__ that initialise: timm's named_apply followed as an apply, in-place rewrites of
a tensor after its init (source/init_calls.py, source/init_walk.py)."""

from __future__ import annotations

from gradlint.model.ir import Param, walk
from gradlint.source import models, parse

HEAD = ("from functools import partial\nimport torch.nn as nn\nfrom timm.models._manipulate import named_apply\n\n\n"
        "def _init(module, name='', std=0.02):\n    if isinstance(module, nn.Linear):\n"
        "        nn.init.normal_(module.weight, std=std)\n\n\n"
        "class Net(nn.Module):\n    def __init__(self, d=64):\n        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))\n"
        "        self.head = nn.Linear(d, 10)\n")
FORWARD = "\n    def forward(self, x):\n        return self.head(self.body(x))\n"


def inits(lines: str) -> dict:
    source = HEAD + "".join("        " + line + "\n" for line in lines.strip("\n").splitlines()) + FORWARD
    networks, _ = models.extract(parse("m.py", source))
    net = {n.name: n for n in networks}["Net"]
    return {n.name: (n.init.scheme, n.init.get("std")) for n in walk(net.nodes) if isinstance(n, Param)}


def test_named_apply_runs_the_function_on_every_module_with_the_partials_keywords():
    assert inits("named_apply(partial(_init, std=0.5), self)") == {
        "body.0": ("normal", 0.5), "body.2": ("normal", 0.5), "head": ("normal", 0.5)}
    # without a partial, the function's own default; `module=` given by keyword
    assert set(inits("named_apply(_init, module=self)").values()) == {("normal", 0.02)}
    # scoped to the module it is given, as `self.head.apply(fn)`
    got = inits("named_apply(partial(_init, std=0.5), self.head)")
    assert got["head"] == ("normal", 0.5) and got["body.0"][0] == got["body.2"][0] == "torch-linear"


def test_named_apply_that_is_not_read_leaves_what_it_reaches_unknown():
    # a function made by a call (timm's get_init_weights_vit(mode)), an argument not read here
    for call in ("named_apply(get_init(mode='jax'), self)", "named_apply(_init, self, depth_first=False)",
                 "named_apply(partial(*fns), self)"):
        assert {v[0] for v in inits(call).values()} == {"unknown"}, call


def test_a_test_of_the_modules_name_is_undecided():
    source = HEAD.replace("        nn.init.normal_(module.weight, std=std)\n",
                          "        nn.init.normal_(module.weight, std=std)\n        if 'head' in name:\n"
                          "            nn.init.zeros_(module.weight)\n")
    networks, _ = models.extract(parse("m.py", source + "        named_apply(_init, self)\n" + FORWARD))
    got = {n.name: n.init.scheme for n in walk(networks[0].nodes) if isinstance(n, Param)}
    assert set(got.values()) == {"unknown"}


def test_an_in_place_rewrite_after_the_init_makes_it_unknown():
    got = inits("nn.init.normal_(self.head.weight, std=0.5)\nself.head.weight.data.mul_(0.1)\n"
                "nn.init.normal_(self.body[0].weight, std=0.5)\nself.body[0].weight.data.clamp_(-1, 1)\n"
                "nn.init.normal_(self.body[2].weight, std=0.5)\n")
    assert got == {"head": ("unknown", None), "body.0": ("unknown", None), "body.2": ("normal", 0.5)}


def test_apply_of_a_partial_binds_its_keywords_and_the_other_defaults():
    assert set(inits("self.apply(partial(_init, std=0.5))").values()) == {("normal", 0.5)}
    # an apply's function gets the module alone: its other parameters are their defaults, not a
    # name of __init__ that happens to share theirs
    assert set(inits("std = 7.0\nself.apply(_init)").values()) == {("normal", 0.02)}


def test_a_modules_own_method_in_an_apply_function_may_initialise_it():
    """`m.reset_parameters()` (torch's default again), timm's `m.zero_init_last()`: what the apply
    function initialised before is no longer known; `m.float()`, `m.requires_grad_()` only move or
    flag the module."""
    source = HEAD.replace("        nn.init.normal_(module.weight, std=std)\n",
                          "        nn.init.normal_(module.weight, std=std)\n        module.reset_parameters()\n")
    networks, _ = models.extract(parse("m.py", source + "        self.apply(_init)\n" + FORWARD))
    assert {n.init.scheme for n in walk(networks[0].nodes) if isinstance(n, Param)} == {"unknown"}
    source = HEAD.replace("        nn.init.normal_(module.weight, std=std)\n",
                          "        nn.init.normal_(module.weight, std=std)\n        module.float()\n"
                          "        module.requires_grad_(True)\n")
    networks, _ = models.extract(parse("m.py", source + "        self.apply(_init)\n" + FORWARD))
    assert {n.init.scheme for n in walk(networks[0].nodes) if isinstance(n, Param)} == {"normal"}


def test_hugging_face_post_init_applies_init_weights():
    source = '''
import torch
import torch.nn as nn
from transformers import PreTrainedModel


class Experts(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.up = nn.Parameter(torch.zeros(d, 4 * d))
        self.down = nn.Parameter(torch.zeros(4 * d, d))

    def forward(self, x):
        return torch.relu(x @ self.up) @ self.down


class Base(PreTrainedModel):
    def _init_weights(self, module):
        if isinstance(module, Experts):
            module.up.data.normal_(mean=0.0, std=0.02)
            module.down.data.normal_(mean=0.0, std=0.02)


class Model(Base):
    def __init__(self, config):
        super().__init__(config)
        self.experts = Experts()
        self.post_init()

    def forward(self, x):
        return self.experts(x)


class Unread(PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.experts = Experts()
        self.post_init()

    def forward(self, x):
        return self.experts(x)
'''
    networks, _ = models.extract(parse("m.py", source))
    by_name = {n.name: n for n in networks}
    # post_init() is apply(self._init_weights): the placeholders are drawn N(0, 0.02) after all
    def raw(name):
        return [n.init.scheme for n in by_name[name].nodes if type(n).__name__ == "Param"]

    assert raw("Model") == ["normal", "normal"]
    # with no _init_weights in the file, what post_init does is not known
    assert raw("Unread") == ["unknown", "unknown"]
    assert raw("Experts") == ["zeros", "zeros"]
