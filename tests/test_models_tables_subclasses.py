"""Shapes of real model code the lowering used to leave opaque (issue 9, "models as real projects
write them"): a module-level dict of classes looked up by a string (diffusers' `get_activation`),
classes held by a config object (timm's `LayerFn`), lists and OrderedDicts filled by item
assignment, nn.MultiheadAttention's (output, weights) pair, and `super().forward(x)` / subclasses
of torch.nn layers. Each has a look-alike that must stay opaque (or unknown)."""

from __future__ import annotations

from pathlib import Path

from gradlint.api import check_paths, check_source
from gradlint.config import load_config
from gradlint.model.ir import Activation, Attention, Norm, Opaque, Param, Passthrough, Residual, walk
from gradlint.source import models, parse


def lower(source: str, path: str = "m.py"):
    networks, _summaries = models.extract(parse(path, source))
    return {n.name: n for n in networks}


def opaque(net) -> list[str]:
    return [n.what for p in net.paths for n in walk(p) if isinstance(n, Opaque)]


def acts(net) -> list[str]:
    return [n.fn for n in walk(net.nodes) if isinstance(n, Activation)]


TABLE = '''
import torch.nn as nn

ACT2CLS = {"swish": nn.SiLU, "silu": nn.SiLU, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
NORMS = {"layer": nn.LayerNorm, "layer_norm": nn.LayerNorm}


def get_activation(act_fn):
    act_fn = act_fn.lower()
    if act_fn in ACT2CLS:
        return ACT2CLS[act_fn]()
    raise ValueError(f"unknown activation {act_fn}")


class Known(nn.Module):
    def __init__(self, width=64, act="Sigmoid"):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = get_activation(act)

    def forward(self, x):
        return self.act(self.fc(x))


class Direct(nn.Module):
    def __init__(self, width=64, act="relu"):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = ACT2CLS[act]()

    def forward(self, x):
        return self.act(self.fc(x))


class AnyKeySameClass(nn.Module):
    def __init__(self, norm, width=64):
        super().__init__()
        self.norm = NORMS[norm](width)

    def forward(self, x):
        return self.norm(x)


class UnknownKey(nn.Module):
    def __init__(self, act, width=64):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = get_activation(act)

    def forward(self, x):
        return self.act(self.fc(x))


class MissingKey(nn.Module):
    def __init__(self, width=64):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = get_activation("tanh")

    def forward(self, x):
        return self.act(self.fc(x))
'''


def test_a_module_level_dict_of_classes_gives_the_class_of_a_known_key():
    nets = lower(TABLE)
    assert acts(nets["Known"]) == ["sigmoid"] and not opaque(nets["Known"])
    assert acts(nets["Direct"]) == ["relu"] and not opaque(nets["Direct"])
    # whichever key, every value is nn.LayerNorm: the norm is known without the key
    assert [n.kind for n in walk(nets["AnyKeySameClass"].nodes) if isinstance(n, Norm)] == ["layer"]


def test_an_unknown_or_missing_key_stays_opaque():
    nets = lower(TABLE)
    # an unknown key: a choice between different classes is not guessed
    assert acts(nets["UnknownKey"]) == [] and opaque(nets["UnknownKey"])
    # a key the dict does not hold: Python raises, nothing is built
    assert acts(nets["MissingKey"]) == [] and opaque(nets["MissingKey"])


def test_a_dict_the_file_changes_is_not_read_as_a_table():
    for change in ('ACT2CLS["sigmoid"] = nn.Tanh\n', "ACT2CLS.update(sigmoid=nn.Tanh)\n",
                   "ACT2CLS = {}\n", 'def patch():\n    ACT2CLS["sigmoid"] = nn.Tanh\n'):
        nets = lower(TABLE + "\n\n" + change)
        assert acts(nets["Known"]) == [], change
        assert opaque(nets["Known"]), change


PAIRS = '''
import torch.nn as nn

NORM_MAP = {"layer": (nn.GroupNorm, nn.LayerNorm), "batch": (nn.BatchNorm2d, nn.BatchNorm1d)}
LISTS = {"layer": [nn.GroupNorm, nn.LayerNorm]}


def get_norm_layers(name, channels_first):
    name = name or "layer"
    if name in NORM_MAP:
        return NORM_MAP[name][0] if channels_first else NORM_MAP[name][1]
    return None


class Known(nn.Module):
    def __init__(self, width=64, norm=None):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.norm = get_norm_layers(norm, False)(width)

    def forward(self, x):
        return self.norm(self.fc(x))


class UnknownKey(nn.Module):
    def __init__(self, norm, width=64):
        super().__init__()
        self.norm = NORM_MAP[norm][1](width)

    def forward(self, x):
        return self.norm(x)


class ListRow(nn.Module):
    def __init__(self, width=64):
        super().__init__()
        row = LISTS["layer"]
        self.norm = row[1](width)

    def forward(self, x):
        return self.norm(x)
'''


def test_a_table_of_tuples_of_classes_gives_the_class_of_a_known_key():
    # timm convnext's `_NORM_MAP = {'layernorm': (LayerNorm2d, LayerNorm)}`, read by
    # `_get_norm_layers(norm_layer or 'layernorm', ...)`: a tuple cannot change in place
    nets = lower(PAIRS)
    assert [n.kind for n in walk(nets["Known"].nodes) if isinstance(n, Norm)] == ["layer"]
    assert not opaque(nets["Known"])


def test_a_tuple_row_of_an_unknown_key_or_a_list_row_stays_opaque():
    nets = lower(PAIRS)
    # the rows differ: which one is not guessed
    assert opaque(nets["UnknownKey"]) and not any(isinstance(n, Norm) for n in walk(nets["UnknownKey"].nodes))
    # a list row may be changed in place by code that reaches it (`row = LISTS["layer"]`)
    assert opaque(nets["ListRow"]) and not any(isinstance(n, Norm) for n in walk(nets["ListRow"].nodes))


def test_a_deep_stack_of_activations_from_a_table_of_another_file_is_flagged(tmp_path, monkeypatch):
    """diffusers' shape: `get_activation(act_fn)` in activations.py, `ACT2CLS[act_fn]()` there;
    the blocks of another file call it with a string."""
    model = '''import torch.nn as nn

from .activations import get_activation


class Deep(nn.Module):
    def __init__(self, width=64, depth=12, act_fn="sigmoid"):
        super().__init__()
        self.fcs = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        self.acts = nn.ModuleList([get_activation(act_fn) for _ in range(depth)])

    def forward(self, x):
        for fc, act in zip(self.fcs, self.acts):
            x = act(fc(x))
        return x
'''
    root = tmp_path / "proj"
    for name, text in {"pyproject.toml": "[tool.gradlint]\n", "pkg/__init__.py": "",
                       "pkg/activations.py": TABLE, "pkg/model.py": model,
                       "pkg/other.py": model.replace('width=64, depth=12, act_fn="sigmoid"', "act_fn, width=64, depth=12")}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    monkeypatch.chdir(root)
    result = check_paths(["."], load_config(None, root), use_cache=False, jobs=1)
    assert not result.internal_errors
    found = sorted((Path(f.path).as_posix(), f.span.line, f.code) for f in result.findings)
    # flagged where the stack is built; the same stack with an unknown activation is not
    assert found == [("pkg/model.py", 9, "GL101")]


LAYER_FN = '''
from dataclasses import dataclass
from typing import Type
import torch.nn as nn


@dataclass
class LayerFn:
    conv: Type[nn.Module] = nn.Conv2d
    act: Type[nn.Module] = nn.Sigmoid
    attn: Type[nn.Module] = None
    name: str = "relu"


class Block(nn.Module):
    def __init__(self, chs=64, layers: LayerFn = None):
        super().__init__()
        layers = layers or LayerFn()
        self.conv = layers.conv(chs, chs, 3)
        self.attn = nn.Identity() if layers.attn is None else layers.attn(chs)
        self.act = layers.act()

    def forward(self, x):
        return self.act(self.attn(self.conv(x)))


class NotAClass(nn.Module):
    def __init__(self, chs=64, layers: LayerFn = None):
        super().__init__()
        layers = layers or LayerFn()
        self.conv = nn.Conv2d(chs, chs, 3)
        self.act = layers.name()

    def forward(self, x):
        return self.act(self.conv(x))


class Given(nn.Module):
    def __init__(self, layers, chs=64):
        super().__init__()
        self.conv = nn.Conv2d(chs, chs, 3)
        self.act = layers.act()

    def forward(self, x):
        return self.act(self.conv(x))
'''


def test_classes_held_by_a_config_object_are_built():
    nets = lower(LAYER_FN)
    block = nets["Block"]
    assert [type(n).__name__ for n in block.nodes] == ["Param", "Activation", "Activation"]
    assert acts(block) == ["identity", "sigmoid"] and not opaque(block)


def test_a_config_field_that_is_no_class_or_a_config_not_known_stays_opaque():
    nets = lower(LAYER_FN)
    assert opaque(nets["NotAClass"]) and acts(nets["NotAClass"]) == []
    assert opaque(nets["Given"]) and acts(nets["Given"]) == []


ITEMS = '''
from collections import OrderedDict
import torch.nn as nn


def val2tuple(x, min_len=1, idx_repeat=-1):
    x = list(x) if isinstance(x, (list, tuple)) else [x]
    x[idx_repeat:idx_repeat] = [x[idx_repeat] for _ in range(min_len - len(x))]
    return tuple(x)


class Repeated(nn.Module):
    def __init__(self, chs=64, norm_layer=nn.BatchNorm2d):
        super().__init__()
        norm_layer = val2tuple(norm_layer, 2)
        self.conv1 = nn.Conv2d(chs, chs, 3)
        self.norm1 = norm_layer[0](chs)
        self.conv2 = nn.Conv2d(chs, chs, 3)
        self.norm2 = norm_layer[1](chs)

    def forward(self, x):
        return self.norm2(self.conv2(self.norm1(self.conv1(x))))


class Replaced(nn.Module):
    def __init__(self, width=64):
        super().__init__()
        layers = [nn.Linear(width, width), nn.ReLU()]
        layers[1] = nn.Sigmoid()
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class ReplacedSomewhere(nn.Module):
    def __init__(self, i, width=64):
        super().__init__()
        layers = [nn.Linear(width, width), nn.ReLU()]
        layers[i] = nn.Sigmoid()
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class Named(nn.Module):
    def __init__(self, width=64, depth=3):
        super().__init__()
        layers = OrderedDict()
        for i in range(depth):
            layers[f"fc{i}"] = nn.Linear(width, width)
            layers[f"act{i}"] = nn.Tanh()
        self.body = nn.Sequential(layers)

    def forward(self, x):
        return self.body(x)


class NamedUnknownDepth(nn.Module):
    def __init__(self, depth, width=64):
        super().__init__()
        layers = OrderedDict()
        for i in range(depth):
            layers[f"fc{i}"] = nn.Linear(width, width)
        self.body = nn.Sequential(layers)

    def forward(self, x):
        return self.body(x)


class NamedIf(nn.Module):
    def __init__(self, flag, width=64):
        super().__init__()
        layers = OrderedDict()
        layers["fc"] = nn.Linear(width, width)
        if flag:
            layers["act"] = nn.Tanh()
        self.body = nn.Sequential(layers)

    def forward(self, x):
        return self.body(x)
'''


def test_item_assignments_change_the_list_or_dict_being_built():
    nets = lower(ITEMS)
    rep = nets["Repeated"]
    assert [n.name for n in rep.nodes] == ["conv1", "norm1", "conv2", "norm2"] and not opaque(rep)
    # layers[1] = nn.Sigmoid() replaces the ReLU (it was left in place before)
    assert acts(nets["Replaced"]) == ["sigmoid"]
    named = nets["Named"]
    assert [n.name for n in named.nodes] == ["body.fc0", "body.act0", "body.fc1", "body.act1", "body.fc2", "body.act2"]


def test_an_item_assignment_not_known_makes_the_value_unknown():
    nets = lower(ITEMS)
    assert acts(nets["ReplacedSomewhere"]) == [] and opaque(nets["ReplacedSomewhere"])
    # an OrderedDict filled in a loop of unknown length: not an empty Sequential
    net = nets["NamedUnknownDepth"]
    assert not any(isinstance(n, (Param, Activation)) for n in walk(net.nodes)) and opaque(net)
    # an entry set on one branch of an undecided `if` only: unknown, not that branch's Tanh
    assert [type(n).__name__ for n in nets["NamedIf"].nodes] == ["Param", "Opaque"]


MHA = '''
import torch.nn as nn


class EncoderBlock(nn.Module):
    def __init__(self, d=64, heads=4):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)

    def forward(self, x):
        y = self.ln(x)
        y, _ = self.attn(y, y, y, need_weights=False)
        return x + y


class UnknownPair(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.pair = SomethingElse(d)

    def forward(self, x):
        y, _ = self.pair(self.ln(x))
        return x + y
'''


def test_multihead_attention_returns_output_and_weights():
    nets = lower(MHA)
    block = nets["EncoderBlock"]
    assert not opaque(block)
    res = [n for n in block.nodes if isinstance(n, Residual)]
    assert len(res) == 1 and [type(n) for n in res[0].body] == [Norm, Attention]
    # a pair from a module of unknown class stays an unfollowed tuple
    assert "tuple" in opaque(nets["UnknownPair"])


SUPER = '''
import torch.nn as nn
import torch.nn.functional as F

from .elsewhere import Remote


class CausalConv(nn.Conv1d):
    def __init__(self, cin, cout, k=3):
        super().__init__(cin, cout, k)
        self.pad = k - 1

    def forward(self, x):
        return super().forward(F.pad(x, (self.pad, 0)))


class ZeroConv(nn.Conv2d):
    def __init__(self, cin, cout):
        super().__init__(cin, cout, 1)
        nn.init.zeros_(self.weight)


class NewWeight(nn.Linear):
    def __init__(self, cin, cout):
        super().__init__(cin, cout)
        self.weight = nn.Parameter(torch.zeros(cout, cin))


class OwnReset(nn.Linear):
    def reset_parameters(self):
        nn.init.zeros_(self.weight)

    def forward(self, x):
        return super().forward(x)


class Base(nn.Module):
    def __init__(self, w=8):
        super().__init__()
        self.fc = nn.Linear(w, w)

    def forward(self, x):
        return self.fc(x)


class Child(Base):
    def forward(self, x):
        return torch.sigmoid(super().forward(x))


class GrandChild(Child):
    def __init__(self):
        super().__init__(w=16)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        return self.out(super().forward(x))


class FromElsewhere(Remote):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return self.fc(super().forward(x))


class User(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = CausalConv(4, 8)
        self.z = ZeroConv(8, 8)
        self.r = OwnReset(8, 8)
        self.w = NewWeight(8, 8)

    def forward(self, x):
        return self.w(self.r(self.z(self.c(x))))
'''


def test_super_forward_runs_the_parent_forward_with_the_same_instance():
    nets = lower("import torch\n" + SUPER)
    grand = nets["GrandChild"]
    assert [(type(n).__name__, n.name) for n in grand.nodes] == [
        ("Param", "fc"), ("Activation", ""), ("Param", "out")]
    assert grand.nodes[0].fan_in == 16 and not opaque(grand)  # the base's __init__ with w=16


def test_a_subclass_of_a_torch_layer_is_that_layer():
    nets = lower("import torch\n" + SUPER)
    user = nets["User"]
    params = {p.name: p for p in user.params}
    assert (params["c"].op, params["c"].fan_in, params["c"].fan_out) == ("conv1d", 12, 24)
    assert params["z"].init.scheme == "zeros"  # nn.init.zeros_(self.weight) after super().__init__
    # reset_parameters overridden: it runs inside nn.Linear.__init__, so the init is not the default
    assert params["r"].init.scheme == "unknown"
    assert params["w"].init.scheme == "unknown"  # self.weight = nn.Parameter(...): not the layer's init
    assert [n.name for n in user.nodes if isinstance(n, Param)] == ["c", "z", "r", "w"] and not opaque(user)


def test_super_forward_of_a_class_not_seen_stays_opaque():
    nets = lower("import torch\n" + SUPER)
    # a placeholder of the other file's class (the project index may resolve it: see
    # tests/test_models_cross_file_shapes.py), opaque in the file alone
    assert "Remote.forward: a class of another file, run on this instance" in opaque(nets["FromElsewhere"])


def test_a_deep_sigmoid_stack_of_layer_subclasses_is_flagged_and_its_he_init_relu_twin_is_not():
    stack = '''
import torch.nn as nn


class Dense(nn.Linear):
    def __init__(self, cin, cout):
        super().__init__(cin, cout)
        {init}

    def forward(self, x):
        return super().forward(x).{act}()


class Deep(nn.Module):
    def __init__(self, width=256, depth=12):
        super().__init__()
        self.layers = nn.Sequential(*[Dense(width, width) for _ in range(depth)])

    def forward(self, x):
        return self.layers(x)
'''
    flagged = stack.format(act="sigmoid", init="pass")
    assert [(f.code, f.span.line) for f in check_source(flagged)] == [("GL101", 7)]  # its layer: super().__init__(cin, cout)
    he = stack.format(act="relu", init='nn.init.kaiming_normal_(self.weight, nonlinearity="relu")')
    assert [f.code for f in check_source(he)] == []
    deep = lower(he)["Deep"]
    assert [p.init.scheme for p in deep.params] == ["kaiming_normal"] * 12 and not opaque(deep)


CHOOSERS = '''import torch.nn as nn


def make_drop(p):
    if p > 0:
        return nn.Dropout(p)
    return nn.Identity()


def make_act(smooth):
    if smooth:
        return nn.Sigmoid()
    return nn.ReLU()


def make_gate(kind):
    if kind == "none":
        return None
    return nn.Sigmoid()
'''

CHOOSING = '''import torch.nn as nn

from .choosers import make_act, make_drop, make_gate


class Scaled(nn.Module):
    """Which module make_drop returns depends on p, not known here: both keep the scale."""

    def __init__(self, p, width=256, depth=12):
        super().__init__()
        self.fcs = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        self.drops = nn.ModuleList([make_drop(p) for _ in range(depth)])

    def forward(self, x):
        for fc, drop in zip(self.fcs, self.drops):
            x = drop(fc(x).sigmoid())
        return x


class Either(nn.Module):
    """make_act gives a Sigmoid or a ReLU by a flag not known here: not guessed."""

    def __init__(self, smooth, width=256, depth=12):
        super().__init__()
        self.fcs = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        self.acts = nn.ModuleList([make_act(smooth) for _ in range(depth)])

    def forward(self, x):
        for fc, act in zip(self.fcs, self.acts):
            x = act(fc(x))
        return x


class Gated(nn.Module):
    """make_gate gives None or a Sigmoid: where the caller calls it, it is the Sigmoid."""

    def __init__(self, kind, width=256, depth=12):
        super().__init__()
        self.fcs = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        self.gates = nn.ModuleList([make_gate(kind) for _ in range(depth)])

    def forward(self, x):
        for fc, gate in zip(self.fcs, self.gates):
            x = gate(fc(x))
        return x
'''


def test_a_function_returning_one_of_several_modules_by_a_condition_not_known_here(tmp_path, monkeypatch):
    import json

    from tests.conftest import run_cli

    root = tmp_path / "proj"
    for name, text in {"pyproject.toml": "[tool.gradlint]\n", "pkg/__init__.py": "",
                       "pkg/choosers.py": CHOOSERS, "pkg/choosing.py": CHOOSING}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    monkeypatch.chdir(root)
    models_ = {m["name"]: m for m in json.loads(run_cli("model", "pkg/choosing.py", "--format", "json").stdout)}
    # both choices leave the scale alone at p = 0: the stack is modelled; in train mode the
    # dropout scales by 1 / (1 - p), and p is not known here, so its chains end (not flagged)
    scaled = models_["Scaled"]["nodes"]
    assert not any(n["kind"] == "opaque" for n in scaled) and len(scaled) == 12 * 3
    assert scaled[2]["dropout"] == "inverted" and scaled[2]["p"] is None
    # a Sigmoid or a ReLU: opaque, saying why
    either = [n for n in models_["Either"]["nodes"] if n["kind"] == "opaque"]
    assert len(either) == 12
    assert either[0]["reason"] == "make_act: returns one of 2 different modules by a condition on values not known here"
    # None or a Sigmoid: the caller calls it, so it is the Sigmoid
    gated = models_["Gated"]["nodes"]
    assert [n["kind"] for n in gated[:3]] == ["param", "activation", "param"] and gated[1]["name"] == "gates.0"
    result = check_paths(["."], load_config(None, root), use_cache=False, jobs=1)
    assert sorted((Path(f.path).as_posix(), f.span.line, f.code) for f in result.findings) == [
        ("pkg/choosing.py", 39, "GL101")]


def test_a_dict_of_arguments_changed_on_one_branch_keeps_what_both_agree_on():
    nets = lower('''
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, chs, kind, act_layer=nn.GELU):
        super().__init__()
        kwargs = dict(act_layer=act_layer)
        if kind == "se":
            kwargs["gate"] = nn.Sigmoid
        self.conv = Conv(chs, **kwargs)

    def forward(self, x):
        return self.conv(x)


class Conv(nn.Module):
    def __init__(self, chs, act_layer=nn.ReLU, gate=nn.Tanh):
        super().__init__()
        self.fc = nn.Conv2d(chs, chs, 1)
        self.act = act_layer()
        self.gate = gate()

    def forward(self, x):
        return self.gate(self.act(self.fc(x)))
''')
    block = nets["Block"]
    # act_layer is GELU on both branches; the gate is a Sigmoid on one and Conv's Tanh on the other
    assert [n.fn for n in walk(block.nodes) if isinstance(n, Activation)] == ["gelu"]
    assert [n.name for n in walk(block.nodes) if isinstance(n, Opaque)] == ["conv.gate"]


SEQUENTIAL_BY_NAME = '''
import torch.nn as nn


class ConvNorm(nn.Sequential):
    def __init__(self, cin, cout, act_layer=nn.ReLU):
        super().__init__()
        self.out_channels = cout
        self.add_module("c", nn.Conv2d(cin, cout, 3, padding=1, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))
        self.act = act_layer()


class Numbered(nn.Sequential):
    def __init__(self, c=8):
        super().__init__(nn.Linear(c, c), nn.ReLU())
        self.add_module("out", nn.Linear(c, c))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = Numbered(8)

    def forward(self, x):
        return self.body(x)


class ActNotKnown(nn.Sequential):
    def __init__(self, cin, cout, act_layer):
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, 1))
        self.add_module("act", act_layer())
'''


def test_a_sequential_subclass_runs_its_modules_registered_by_name():
    # timm's ConvNorm(nn.Sequential) registers its layers with add_module: they used to be
    # dropped (the class read as the identity, with no opaque node)
    nets = lower(SEQUENTIAL_BY_NAME)
    assert [(type(n).__name__, n.name) for n in nets["ConvNorm"].nodes] == [
        ("Param", "c"), ("Norm", "bn"), ("Activation", "act")]
    # the numbered ones, which super().__init__ registers first, then the named
    assert [n.name for n in nets["Net"].nodes] == ["body.0", "body.1", "body.out"]


def test_a_module_of_a_sequential_subclass_not_known_is_opaque_never_dropped():
    net = lower(SEQUENTIAL_BY_NAME)["ActNotKnown"]
    assert [type(n).__name__ for n in net.nodes] == ["Param", "Opaque"]


DIAMOND = """\
import torch
import torch.nn as nn


class A(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def act(self, x):
        return x


class B(A):
    pass


class C(A):
    def act(self, x):
        return torch.tanh(x)


class D(B, C):
    def forward(self, x):
        return self.act(self.fc(x))
"""


def test_methods_are_looked_up_in_pythons_order_through_a_diamond():
    """D(B, C) with B(A), C(A): Python finds C.act before A.act (D, B, C, A). Each class's bases
    are linearised once (C3), not walked again for each class below it."""
    fm = models.FileModel(parse("m.py", DIAMOND))
    assert [c.name for c in fm.lineage(fm.classes["D"])] == ["D", "B", "C", "A"]
    assert fm.defining(fm.classes["D"], "act").name == "C"
    assert fm._find_method(fm.classes["D"], "__init__") is fm.classes["A"].methods["__init__"]
    net = lower(DIAMOND)["D"]
    assert acts(net) == ["tanh"]


def test_bases_that_python_cannot_order_or_that_derive_from_each_other_still_end():
    fm = models.FileModel(parse("m.py", "class A(B):\n    pass\n\n\nclass B(A):\n    pass\n\n\n"
                                        "class X(object):\n    pass\n\n\nclass Y(X):\n    pass\n\n\n"
                                        "class Z(X, Y):\n    pass\n"))
    assert [c.name for c in fm.lineage(fm.classes["A"])] == ["A", "B"]
    assert [c.name for c in fm.lineage(fm.classes["B"])] == ["B", "A"]
    # (Python refuses Z: X before Y, but Y derives from X; the first candidate is taken)
    assert [c.name for c in fm.lineage(fm.classes["Z"])][0] == "Z"
    assert sorted(c.name for c in fm.lineage(fm.classes["Z"])) == ["X", "Y", "Z"]
