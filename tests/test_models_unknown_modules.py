"""Modules __init__ builds with code the source front-end cannot follow: the opaque node says which
code built them (for people and bench/coverage.py), and code it can follow is modelled."""

from __future__ import annotations

from gradlint.model.ir import Opaque, Param, walk
from gradlint.source import models, parse


def lower(source: str, path: str = "m.py"):
    networks, _summaries = models.extract(parse(path, source))
    return {n.name: n for n in networks}


def opaque(net) -> list[Opaque]:
    return [n for p in net.paths for n in walk(p) if isinstance(n, Opaque)]


FACTORY_PARAMETER = """
import torch.nn as nn

class Stage(nn.Module):
    def __init__(self, dim, norm_layer, act_layer):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(dim, dim, 3), norm_layer(dim))
        self.act = act_layer()

    def forward(self, x):
        return self.act(self.down(x))

class Stem(nn.Sequential):
    def __init__(self, dim, act_layer):
        super().__init__()
        self.add_module("conv", nn.Conv2d(3, dim, 3))
        self.add_module("act", act_layer())
"""


def test_opaque_module_names_the_code_that_built_it():
    nets = lower(FACTORY_PARAMETER)
    found = {(n.what, n.detail) for n in opaque(nets["Stage"])}
    # a parameter with no default, called: what the caller passes is not known here
    assert ("unknown module", "norm_layer(dim), item 1 of down: a value gradlint cannot follow") in found
    assert ("self.act: built by code gradlint cannot follow", "act_layer()") in found
    stem = {(n.what, n.detail) for n in opaque(nets["Stem"])}
    assert stem == {("unknown module", "act_layer(), self.act: a value gradlint cannot follow")}


def test_detail_is_not_part_of_a_node_identity():
    # Two paths that differ only in what an opaque node says are one path (no more paths, the
    # same merging of branches as before the detail was kept).
    assert Opaque("a", "unknown module", detail="x()") == Opaque("a", "unknown module", detail="y()")
    assert hash(Opaque("a", "unknown module", detail="x()")) == hash(Opaque("a", "unknown module"))


def test_attribute_set_again_forgets_the_code_that_built_it_before():
    src = """
import torch.nn as nn

class Block(nn.Module):
    def __init__(self, dim, act_layer, gate_layer):
        super().__init__()
        self.act = act_layer()
        self.act = gate_layer(dim)

    def forward(self, x):
        return self.act(x)
"""
    (node,) = opaque(lower(src)["Block"])
    assert node.detail == "gate_layer(dim)"


FORWARDED_KEYWORDS = """
from dataclasses import dataclass
from typing import Callable, Optional
import torch.nn as nn

class ConvAct(nn.Module):
    def __init__(self, cin, cout, k=1, apply_act=True, act=nn.ReLU):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k)
        self.act = act() if apply_act else nn.Identity()

    def forward(self, x):
        return self.act(self.conv(x))

@dataclass
class LayerFn:
    conv_act: Callable = ConvAct
    attn: Optional[Callable] = None

class Down(nn.Module):
    def __init__(self, cin, cout, apply_act=False, layers: Optional[LayerFn] = None, act=nn.Tanh):
        super().__init__()
        layers = layers or LayerFn()
        self.conv = layers.conv_act(cin, cout, 1, apply_act=apply_act, act=act)

    def forward(self, x):
        return self.conv(x)

def make_shortcut(cin, cout, layers, **kwargs):
    return Down(cin, cout, **kwargs)

class Block(nn.Module):
    def __init__(self, cin=8, cout=16, layers: LayerFn = None, **kwargs):
        super().__init__()
        layers = layers or LayerFn()
        self.shortcut = make_shortcut(cin, cout, layers=layers, apply_act=True)
        self.other = make_shortcut(cin, cout, layers=layers, **kwargs)

    def forward(self, x):
        return self.shortcut(x) + self.other(x)
"""


def test_keywords_a_function_forwards_are_exactly_those_it_was_given():
    # `make_shortcut(..., apply_act=True)` binds its **kwargs to {apply_act: True}, as Python
    # does; `Down(cin, cout, **kwargs)` then leaves `layers` and `act` at their defaults, so the
    # LayerFn default factory builds the layer (timm byobnet's create_shortcut -> DownsampleAvg).
    nets = lower(FORWARDED_KEYWORDS)
    paths = nets["Block"].paths
    nodes = [n for p in paths for n in walk(p)]
    conv = [n for n in nodes if isinstance(n, Param) and n.name == "shortcut.conv.conv"]
    assert conv and conv[0].fan_in == 8 and conv[0].fan_out == 16
    acts = {n.name: n.fn for n in nodes if type(n).__name__ == "Activation"}
    assert acts.get("shortcut.conv.act") == "tanh"  # the default `act` of Down, apply_act=True given


def test_keywords_of_a_class_modelled_alone_stay_unknown():
    # The class's own **kwargs may hold anything its callers pass (here `layers` or `act`): what
    # `make_shortcut(..., **kwargs)` builds with them stays opaque.
    nets = lower(FORWARDED_KEYWORDS)
    nodes = [n for p in nets["Block"].paths for n in walk(p)]
    assert not any(isinstance(n, Param) and n.name.startswith("other.") for n in nodes)
    assert any(isinstance(n, Opaque) for n in nodes)


def test_list_of_modules_bound_anew_on_a_branch_is_one_of_the_two_runs():
    # torchvision maxvit's MBConv: `proj = [conv]; if stride == 2: proj = [pool] + proj`
    src = """
import torch.nn as nn

class Down(nn.Module):
    def __init__(self, cin=8, cout=16, stride=1):
        super().__init__()
        proj = [nn.Conv2d(cin, cout, 1)]
        if stride == 2:
            proj = [nn.AvgPool2d(3, stride, 1)] + proj
        self.proj = nn.Sequential(*proj)

    def forward(self, x):
        return self.proj(x)
"""
    net = lower(src.replace("cin=8, cout=16, stride=1", "stride, cin=8, cout=16"))["Down"]  # both runs
    runs = sorted(tuple(type(n).__name__ for n in walk(p)) for p in net.paths)
    assert runs == [("Param",), ("Passthrough", "Param")]
    assert not opaque(net)
    net = lower(src)["Down"]  # the default decides it
    assert [tuple(type(n).__name__ for n in walk(p)) for p in net.paths] == [("Param",)]


def test_list_bound_anew_to_something_else_stays_unknown():
    src = """
import torch.nn as nn

class Down(nn.Module):
    def __init__(self, cin, cout, stride, extra):
        super().__init__()
        proj = [nn.Conv2d(cin, cout, 1)]
        if stride == 2:
            proj = extra + proj
        self.proj = nn.Sequential(*proj)

    def forward(self, x):
        return self.proj(x)
"""
    assert any(n.what == "unknown module" for n in opaque(lower(src)["Down"]))


def test_sequential_member_of_a_name_not_known_is_not_dropped():
    # timm byobnet's Stem: `self.add_module(f'conv{i + 1}', layer_fn(...))` in a loop whose length
    # is not known here: the members are not known, never just the ones named by constants
    src = """
import torch.nn as nn

class Stem(nn.Sequential):
    def __init__(self, chs):
        super().__init__()
        prev = 3
        for i, ch in enumerate(chs):
            self.add_module(f'conv{i + 1}', nn.Conv2d(prev, ch, 3))
            prev = ch
        self.add_module('pool', nn.MaxPool2d(2))
"""
    nodes = [n for p in lower(src)["Stem"].paths for n in walk(p)]
    assert any(isinstance(n, Opaque) and n.what == "unknown module" for n in nodes)
    known = lower(src.replace("def __init__(self, chs)", "def __init__(self, chs=(8, 16))"))["Stem"]
    assert [type(n).__name__ for p in known.paths for n in walk(p)] == ["Param", "Param", "Passthrough"]


def test_calls_in_a_tuple_statement_run_as_statements():
    # DenseNet's layers end each `self.add_module(...)` with a comma: a tuple of one call
    src = """
import torch.nn as nn

class Layer(nn.Module):
    def __init__(self, cin=8, growth=16):
        super().__init__()
        self.add_module('norm1', nn.BatchNorm2d(cin)),
        self.add_module('conv1', nn.Conv2d(cin, growth, 1)),
        self.add_module('act', nn.ReLU()), self.add_module('conv2', nn.Conv2d(growth, growth, 3))

    def forward(self, x):
        return self.conv2(self.act(self.conv1(self.norm1(x))))
"""
    net = lower(src)["Layer"]
    assert not opaque(net)
    assert [type(n).__name__ for p in net.paths for n in walk(p)] == ["Norm", "Param", "Activation", "Param"]
