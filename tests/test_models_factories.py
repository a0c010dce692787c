"""Models built by factory functions as torchvision writes them (issue 9, items 4 and 6): an entry
called with no arguments (`vgg16()`) through helpers (`_vgg(cfg, ...)`) with tables of rows, class
attributes (`block.expansion`) and `typing.cast`, each a network of its own."""

from __future__ import annotations

from gradlint.api import check_source
from gradlint.config import Config
from gradlint.model.ir import Opaque, Param, walk
from gradlint.source import models, parse


def lower(source: str, path: str = "m.py"):
    networks, _summaries = models.extract(parse(path, source))
    return {n.name: n for n in networks}


def params(network) -> list[Param]:
    return [n for n in walk(network.nodes) if isinstance(n, Param)]


def opaque(network) -> list[Opaque]:
    return [n for n in walk(network.nodes) if isinstance(n, Opaque)]


VGG = '''
from typing import Any, Optional, Union, cast

import torch
import torch.nn as nn

from .weights import WeightsEnum


class VGG(nn.Module):
    def __init__(self, features: nn.Module, num_classes: int = 1000, init_weights: bool = True) -> None:
        super().__init__()
        self.features = features
        self.classifier = nn.Sequential(nn.Linear(512, 512), nn.ReLU(True), nn.Linear(512, num_classes))
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                elif isinstance(m, nn.Linear):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def make_layers(cfg: list[Union[str, int]], batch_norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            v = cast(int, v)
            conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
            if batch_norm:
                layers += [conv2d, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            else:
                layers += [conv2d, nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


cfgs: dict[str, list[Union[str, int]]] = {
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class Weights16(WeightsEnum):
    pass


def _vgg(cfg: str, batch_norm: bool, weights: Optional[WeightsEnum], **kwargs: Any) -> VGG:
    if weights is not None:
        kwargs["init_weights"] = False
    model = VGG(make_layers(cfgs[cfg], batch_norm=batch_norm), **kwargs)
    if weights is not None:
        model.load_state_dict(weights.get_state_dict())
    return model


def vgg16(*, weights: Optional[Weights16] = None, **kwargs: Any) -> VGG:
    weights = Weights16.verify(weights)
    return _vgg("D", False, weights, **kwargs)


def vgg16_bn(*, weights: Optional[Weights16] = None, **kwargs: Any) -> VGG:
    weights = Weights16.verify(weights)
    return _vgg("D", True, weights, **kwargs)
'''


def test_a_factory_called_as_a_user_calls_it_is_the_network_it_builds():
    nets = lower(VGG)
    # The class alone: its features are a parameter, so forward stops there.
    assert opaque(nets["VGG"])
    vgg16 = nets["vgg16"]
    assert not opaque(vgg16), opaque(vgg16)
    convs = [p for p in params(vgg16) if p.name.startswith("features.")]
    # 13 convolutions of the table's row "D" (the "M"s are pools), widths through `cast(int, v)`
    assert len(convs) == 13
    assert [c.fan_out // 9 for c in convs][:3] == [64, 64, 128]
    # `Weights16.verify(None)` is None (torchvision's WeightsEnum): `if weights is not None` is
    # decided, `init_weights` keeps its default and the init applies (an init under an undecided
    # test would be unknown)
    assert all(p.init.scheme == "kaiming_normal" for p in params(vgg16)), [p.init for p in params(vgg16)]
    # `**kwargs` of an entry called bare is empty: num_classes is the default
    assert params(vgg16)[-1].fan_out == 1000


def test_a_deep_factory_network_is_judged_by_its_init():
    assert [f.code for f in check_source(VGG)] == []
    default_init = VGG.replace("        if init_weights:\n", "        if init_weights and False:\n")
    found = [f for f in check_source(default_init)]
    # 16 ReLU layers with PyTorch's default init: the gradient vanishes (measured 1.6e-6 for
    # 16 x Linear(512) + ReLU, ARCHITECTURE.md); vgg16_bn has its BatchNorms and is not flagged
    assert [f.code for f in found] == ["GL101"], [(f.code, f.message) for f in found]
    assert "vgg16" in found[0].message and "vgg16_bn" not in found[0].message


def test_factory_with_required_parameters_is_not_an_entry():
    src = VGG.replace("def vgg16(*, weights", "def vgg16(depth, *, weights").replace("def vgg16_bn(", "def _unused(")
    assert "vgg16" not in lower(src)


RESNET = '''
import torch.nn as nn


class Bottleneck(nn.Module):
    expansion: int = 4

    def __init__(self, inplanes, planes):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1)
        self.conv2 = nn.Conv2d(planes, planes * self.expansion, 1)

    def forward(self, x):
        return self.conv2(self.conv1(x))


class Wide(Bottleneck):
    pass


class Odd(Bottleneck):
    expansion = 2
    if True:
        expansion = 8


class Net(nn.Module):
    def __init__(self, block, width=16):
        super().__init__()
        self.body = block(width, width)
        self.head = nn.Linear(width * block.expansion, 10)

    def forward(self, x):
        return self.head(self.body(x))


def net():
    return Net(Bottleneck)


def wide():
    return Net(Wide)


def odd():
    return Net(Odd)
'''


def test_class_attributes_are_read_from_the_class_and_its_bases():
    nets = lower(RESNET)
    assert [p.fan_out for p in params(nets["net"])] == [16, 64, 10]
    assert params(nets["net"])[-1].fan_in == 64  # `width * block.expansion`
    assert [p.fan_out for p in params(nets["wide"])] == [16, 64, 10]  # inherited from Bottleneck
    # bound under an `if` in the class body: not a constant
    odd = params(nets["odd"])
    assert odd[1].fan_out is None or not isinstance(odd[1].fan_out, int)


def test_a_table_changed_by_the_file_is_not_a_constant():
    src = VGG.replace("def vgg16(*,", 'cfgs["D"].append(1024)\n\n\ndef vgg16(*,')
    vgg16 = lower(src)["vgg16"]
    assert opaque(vgg16)


STACK = '''
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.f = nn.Linear(w, w)
        self.a = nn.Sigmoid()

    def forward(self, x):
        return self.a(self.f(x))


class Net(nn.Module):
    def __init__(self, depth, w=64):
        super().__init__()
        self.blocks = nn.ModuleList([Block(w) for _ in range(depth)])

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x
'''


def _factories(n: int, first_depth: int = 20) -> str:
    return STACK + "".join(f"\n\ndef net{i}(**kwargs):\n    return Net({first_depth + i}, **kwargs)\n" for i in range(n))


def test_networks_built_the_same_way_share_one_finding():
    found = check_source(_factories(3))
    assert [f.code for f in found] == ["GL101"]
    # the worst (deepest) speaks, the others are named
    assert "across 22 layers" in found[0].message and "in net2 (and in 2 more networks: net0, net1)" in found[0].message


TWINS = '''
import torch.nn as nn


def make_layers(depth, width=256):
    layers = []
    for _ in range(depth):
        lin = nn.Linear(width, width)
        nn.init.xavier_uniform_(lin.weight)
        layers += [lin, nn.ReLU()]
    return nn.Sequential(*layers)
'''

TWIN = '''

class {name}(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = make_layers(60)

    def forward(self, x):
        return self.features(x)
'''


def test_identical_networks_of_one_factory_name_each_other_in_either_order():
    # the same chain in two classes is one finding that names both, whichever class comes first
    messages = []
    for order in (("Alpha", "Beta"), ("Beta", "Alpha")):
        found = [f for f in check_source(TWINS + "".join(TWIN.format(name=n) for n in order)) if f.code == "GL101"]
        assert len(found) == 1
        messages.append(found[0].message)
    assert messages[0] == messages[1]
    assert "in Alpha (and in 1 more network: Beta)" in messages[0], messages[0]


def test_saturation_names_every_network_it_counts_layers_of():
    src = _factories(2, 8).replace("        self.a = nn.Sigmoid()", "        nn.init.normal_(self.f.weight, std=1.0)\n"
                                   "        self.a = nn.Tanh()").replace("w=64", "w=512")
    msgs = {f.code: f.message for f in check_source(src)}
    assert "of net0 and net1" in msgs["GL104"], msgs


def test_hundreds_of_factories_stay_within_the_budget_and_keep_the_first():
    # each factory is evaluated and lowered in its own piece of the file's budget: the total runs
    # out before the 300th, and the networks lowered by then are still reported
    found = check_source(_factories(300, 50))
    assert [f.code for f in found] == ["GL101"]
    assert "net0" in found[0].message


MLP = '''
import torch.nn as nn
from .utils import override_param, load_state_dict_from_url


class MLP(nn.Module):
    def __init__(self, depth=2, act="sigmoid"):
        super().__init__()
        layers = []
        for _ in range(depth):
            layers += [nn.Linear(64, 64), nn.Sigmoid() if act == "sigmoid" else nn.ReLU()]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


def init_weights(m):
    if isinstance(m, nn.Linear):
        nn.init.orthogonal_(m.weight)
'''


def test_an_entry_that_changes_its_model_after_building_it_is_not_modelled():
    """(`model.apply(init)` and `for m in model.modules()` are followed:
    test_a_model_initialised_again_with_apply_is_modelled_with_that_init)"""
    shapes = {
        "passed": "    model = MLP(30)\n    init_weights(model)\n    return model\n",
        "pretrained": "    model = MLP(30)\n    if pretrained:\n        model.load_state_dict(load_state_dict_from_url(URL))\n"
                      "    return model\n",
        "updated": "    kwargs.update(act='relu')\n    return MLP(30, **kwargs)\n",
        "helper": "    override_param(kwargs, 'act', 'relu')\n    return MLP(30, **kwargs)\n",
    }
    for name, body in shapes.items():
        src = MLP + f"\n\ndef build(pretrained='imagenet', **kwargs):\n{body}"
        assert "build" not in lower(src), name
        assert check_source(src) == [], name
    # as built, or changed only in a branch the run cannot decide: modelled (and flagged)
    src = MLP + "\n\ndef build(weights=None, **kwargs):\n    model = MLP(30, **kwargs)\n    if weights:\n" \
                "        model.load_state_dict(weights.get_state_dict())\n    return model\n"
    assert "build" in lower(src)
    assert [f.code for f in check_source(src)] == ["GL101"]



def test_a_model_initialised_again_with_apply_is_modelled_with_that_init():
    """`model = MLP(30); model.apply(init_weights); return model` in an entry, and DCGAN's
    module-level `netG = Generator(ngpu).to(device)` then `netG.apply(weights_init)`: the model is
    the class built, then initialised again by the function (program order: the apply comes last).
    Measured in torch (30 Linear(64, 64) + Sigmoid, orthogonal_): first/last layer gradient norm
    5.8e-20, predicted 5.9e-19."""
    entry = "\n\ndef build(pretrained='imagenet', **kwargs):\n    model = MLP(30)\n    model.apply(init_weights)\n    return model\n"
    src = MLP + entry
    assert params(lower(src)["build"])[0].init.scheme == "orthogonal"
    assert [(f.code, "across 30 layers" in f.message and "orthogonal_" in f.message) for f in check_source(src)] == [
        ("GL101", True)]
    zeroing = MLP.replace("nn.init.orthogonal_(m.weight)", "nn.init.zeros_(m.weight)")
    found = check_source(zeroing + entry)
    assert [(f.code, f.span.line) for f in found] == [("GL105", 20)]
    # at module level, after `.to(device)`; the factory zeroing the same layers shares the finding
    module = zeroing + "\n\nnet = MLP(3).to('cpu')\nnet.apply(init_weights)\n"
    assert [(f.code, f.message) for f in check_source(module)] == [
        ("GL105", "every Linear/Conv weight of net (3 layers) is zero-initialised: the gradient reaching hidden "
                  "layers is exactly zero and they never train")]
    found = check_source(module + entry)
    assert [f.code for f in found] == ["GL105"] and "(3 layers; the same in build)" in found[0].message
    main = zeroing + "\n\nif __name__ == '__main__':\n    net = MLP(3).cuda()\n    net.apply(init_weights)\n"
    assert [(f.code, "of net (3 layers)" in f.message) for f in check_source(main)] == [("GL105", True)]
    # a loop over the model's modules, in an entry or at module level, is an apply written out
    loop = "{1}for m in {0}.modules():\n{1}    if isinstance(m, nn.Linear):\n{1}        nn.init.zeros_(m.weight)\n"
    looped_entry = MLP + "\n\ndef build():\n    model = MLP(30)\n" + loop.format("model", "    ") + "    return model\n"
    assert [(f.code, "of build (30 layers)" in f.message) for f in check_source(looped_entry)] == [("GL105", True)]
    looped_module = MLP + "\n\nnet = MLP(3)\n" + loop.format("net", "")
    assert [(f.code, "of net (3 layers)" in f.message) for f in check_source(looped_module)] == [("GL105", True)]
    # over another model's modules: this one keeps its init
    assert check_source(MLP + "\n\nnet = MLP(3)\nother = MLP(3)\n" + loop.format("other", "")) != []
    assert "net" not in lower(MLP + "\n\nnet = MLP(3)\nother = nn.Linear(3, 3)\n" + loop.format("other", ""))
    # a loop that hands each module to a function of the file runs it (an apply written out)
    src = MLP + "\n\ndef build():\n    model = MLP(30)\n    for m in model.modules():\n        init_weights(m)\n" \
                "    return model\n"
    assert {p.init.scheme for p in params(lower(src)["build"])} == {"orthogonal"}
    # one that hands it to a call the walk does not follow: the init is unknown, quiet
    for body in ("        m.reset_parameters()\n", "        nn.init.zeros_(m.weight)\n        custom(m)\n",
                 "        init_weights(m, 0.1)\n"):
        src = zeroing + "\n\ndef build():\n    model = MLP(30)\n    for m in model.modules():\n" + body + "    return model\n"
        assert {p.init.scheme for p in params(lower(src)["build"])} == {"unknown"}, body
        assert [f.code for f in check_source(src)] == [], body
    # look-alikes: an init function the file does not define, or one that keeps the class's init,
    # or an apply on something else: the class's own network, nothing new
    quiet = {
        "imported": MLP + "from .inits import kaiming\n\nnet = MLP(3)\nnet.apply(kaiming)\n",
        "same": MLP + "\n\ndef keep(m):\n    pass\n\n\nnet = MLP(3)\nnet.apply(keep)\n",
        "other": zeroing + "\n\nnet = MLP(3)\nother = MLP(3)\nother.float()\n",
    }
    for name, text in quiet.items():
        assert check_source(text) == [], name
    # (the unknown function's model is shown with an unknown init: a user sees it was initialised again)
    assert {p.init.scheme for p in params(lower(quiet["imported"])["net"])} == {"unknown"}
    assert "net" not in lower(quiet["same"]) and "net" not in lower(quiet["other"])


def test_an_entry_refused_whatever_its_branches_is_not_run(monkeypatch):
    """A use of `kwargs` outside every `if` refuses the entry before it is run (a full construction
    each, for torchvision's vit_b_16 ...); one inside an `if` waits for the run to decide it."""
    from gradlint.source import factories

    ran: list[str] = []
    real = factories._InitInterpreter.block

    def block(self, body):
        if self.fm.running is not None:
            ran.append(self.fm.running.name.value)
        return real(self, body)

    monkeypatch.setattr(factories._InitInterpreter, "block", block)
    src = MLP + ("\n\ndef popped(**kwargs):\n    size = kwargs.pop('size', 30)\n    return MLP(size, **kwargs)\n"
                 "\n\ndef decided(weights=None, **kwargs):\n    if weights is not None:\n        kwargs.pop('size')\n"
                 "    return MLP(30, **kwargs)\n")
    built = lower(src)
    assert "popped" not in built and "popped" not in ran
    assert "decided" in built and "decided" in ran


CLASS_ATTRS = '''
import torch.nn as nn

base = 15


class Deep(nn.Module):
    base = 1
    depth = base * 2

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(*[nn.Sequential(nn.Linear(16, 16), nn.Sigmoid()) for _ in range(self.depth)])

    def forward(self, x):
        return self.layers(x)
'''


def test_a_class_attribute_is_read_as_python_reads_it_or_not_at_all():
    nets = lower(CLASS_ATTRS)
    assert len(params(nets["Deep"])) == 2  # the class body's own `base`, not the module's
    helper = CLASS_ATTRS.replace("        super().__init__()\n", "        super().__init__()\n        self._setup()\n") + \
        "\n    def _setup(self):\n        self.depth = 30\n"
    assert len(params(lower(helper)["Deep"])) != 2  # set on the instance by a helper: not the class's
    patched = CLASS_ATTRS + "\n\nDeep.depth = 30\n"
    assert len(params(lower(patched)["Deep"])) != 2  # changed from outside the class
    two_bases = CLASS_ATTRS.replace("    base = 1\n    depth = base * 2\n", "    pass\n").replace(
        "class Deep(nn.Module):", "class A(nn.Module):\n    depth = 30\n\n\nclass B(nn.Module):\n    depth = 2\n\n\n"
        "class Deep(A, B):")
    assert len(params(lower(two_bases)["Deep"])) != 30  # several bases: the order is not followed


def test_a_table_whose_rows_are_reached_otherwise_is_not_read():
    aliased = VGG.replace("def vgg16(*,", 'row = cfgs["D"]\nrow.clear()\n\n\ndef vgg16(*,')
    assert opaque(lower(aliased)["vgg16"])
    sliced = VGG.replace("def vgg16(*,", 'cfgs["D"][1:] = []\n\n\ndef vgg16(*,')
    assert opaque(lower(sliced)["vgg16"])


_SCRIPT_LAYERS = ("import torch\nimport torch.nn as nn\n\ndepth = 20\nlayers = []\n"
                  "for i in range(depth):\n    layers += [nn.Linear(128, 128), {act}]\n"
                  "layers.append(nn.Linear(128, 10))\nmodel = nn.Sequential(*layers)\n")


def test_a_module_level_loop_that_builds_the_layers_of_a_sequential():
    # a script's `for i in range(depth): layers += [...]`, then `nn.Sequential(*layers)`; measured
    # in torch: the first/last weight-gradient ratio of this sigmoid stack is 1.7e-17
    nets = lower(_SCRIPT_LAYERS.format(act="nn.Sigmoid()"))
    assert len(params(nets["model"])) == 21
    found = check_source(_SCRIPT_LAYERS.format(act="nn.Sigmoid()"), Config(select=("GL101",)))
    assert [f.code for f in found] == ["GL101"]


def test_a_module_level_loop_that_trains_or_a_normalised_stack_is_not_run_into_a_network():
    healthy = _SCRIPT_LAYERS.format(act="nn.LayerNorm(128), nn.GELU()")
    assert check_source(healthy, Config(select=("GL1",))) == []
    # a loop that does more than build the list (here it also trains) is not run: the list is unknown
    trains = _SCRIPT_LAYERS.format(act="nn.Sigmoid()").replace(
        "layers.append(", "    opt.step()\nlayers.append(")
    assert "model" not in lower(trains) or not params(lower(trains)["model"])[:20]
    assert check_source(trains, Config(select=("GL101",))) == []


def _gl106(source: str) -> list:
    return [f for f in check_source(source, Config(select=("GL106",))) if f.code == "GL106"]


def test_module_level_transformer_stacks_are_networks():
    layer = "import torch.nn as nn\n\nlayer = nn.TransformerEncoderLayer(d_model=512, nhead=8)\n"
    found = _gl106(layer + "encoder = nn.TransformerEncoder(layer, num_layers=24)\n")
    assert [f.span.line for f in found] == [4] and "24 Post-LN transformer blocks" in found[0].message
    assert "encoder" in lower(layer + "encoder = nn.TransformerEncoder(layer, num_layers=24)\n")
    both = _gl106("from torch import nn\n\nmodel = nn.Transformer(d_model=256, nhead=4, num_encoder_layers=6, "
                  "num_decoder_layers=6)\n")
    assert len(both) == 1 and "12 Post-LN" in both[0].message
    assert not _gl106(layer + "encoder = nn.TransformerEncoder(layer, num_layers=6)\n")


def test_a_module_level_layer_bound_twice_is_not_known():
    source = ("import torch.nn as nn\n\nlayer = nn.TransformerEncoderLayer(d_model=512, nhead=8)\nlayer = make()\n"
              "encoder = nn.TransformerEncoder(layer, num_layers=24)\n")
    assert not _gl106(source)
