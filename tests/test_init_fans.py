"""Initialisations written as arithmetic on the layer's shape (source/init_fans.py): the pre-`nn.init`
He fan-out draw and torch < 0.4's uniform(-1/sqrt(fan_in), ...), read as kaiming's; unreadable
arithmetic stays unknown."""

from __future__ import annotations

import math

from gradlint.api import check_source
from gradlint.config import Config
from gradlint.model.init import assumed_nonlinearity, fan_times_variance, weight_variance
from gradlint.model.ir import Param, walk
from gradlint.source import models, parse

CONV = """\
import math
import numpy as np
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, depth=20, width=64):
        super().__init__()
        layers = []
        for _ in range(depth):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(width, 10)
        for m in self.modules():
{loop}

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))
"""

HE = """\
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2. / n))
"""

UNIFORM = """\
            if isinstance(m, nn.Linear):
                stdv = 1. / math.sqrt(m.weight.size(1))
                m.weight.data.uniform_(-stdv, stdv)
"""


def _inits(loop: str) -> dict:
    networks, _ = models.extract(parse("m.py", CONV.format(loop=loop.rstrip("\n"))))
    net = {n.name: n for n in networks}["Net"]
    return {n.name: n.init for n in walk(net.nodes) if isinstance(n, Param)}


def _schemes(loop: str) -> dict:
    got = _inits(loop)
    return {"conv": got["body.0"].scheme, "fc": got["fc"].scheme}


def test_the_he_fan_out_draw_of_old_resnets_is_kaiming_normal_fan_out():
    got = _inits(HE)
    conv = got["body.0"]
    assert (conv.scheme, conv.get("mode"), conv.get("nonlinearity")) == ("kaiming_normal", "fan_out", "relu")
    # the variance it draws is 2 / (k*k*out), He et al.'s fan-out
    assert math.isclose(weight_variance(conv, 64 * 9, 64 * 9), 2 / 576)
    assert got["fc"].scheme == "torch-linear"  # not a Conv2d: untouched


def test_written_inline_with_a_weight_size_or_through_numpy_it_is_the_same_draw():
    for loop in (HE.replace("n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels\n", "")
                 .replace("math.sqrt(2. / n)", "math.sqrt(2. / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels))"),
                 HE.replace("m.out_channels", "m.weight.size(0)"),
                 HE.replace("m.out_channels", "m.weight.data.shape[0]"),
                 HE.replace("math.sqrt(2. / n)", "np.sqrt(2.0 / float(n))"),
                 HE.replace("math.sqrt(2. / n)", "(2. / n) ** 0.5")):
        conv = _inits(loop)["body.0"]
        assert (conv.scheme, conv.get("mode"), conv.get("nonlinearity")) == ("kaiming_normal", "fan_out", "relu"), loop


def test_the_fan_in_draw_and_other_gains():
    fan_in = HE.replace("m.out_channels", "m.weight.size(1)")
    conv = _inits(fan_in)["body.0"]
    assert (conv.scheme, conv.get("mode"), conv.get("nonlinearity")) == ("kaiming_normal", "fan_in", "relu")
    # sqrt(1 / n): gain 1, read back as a linear unit's
    conv = _inits(HE.replace("2. / n", "1. / n"))["body.0"]
    assert conv.get("gain") == 1.0 and assumed_nonlinearity(conv) == "linear"
    assert math.isclose(fan_times_variance(conv, 576, 576), 1.0)


def test_torch_0_3_linear_default_written_out_is_its_variance():
    fc = _inits(UNIFORM)["fc"]
    assert (fc.scheme, fc.get("mode")) == ("kaiming_uniform", "fan_in")
    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)): variance 1 / (3 fan_in), what torch's default draws today
    assert math.isclose(fan_times_variance(fc, 64, 10), 1 / 3)
    assert math.isclose(weight_variance(fc, 64, 10), 1 / (3 * 64))
    assert assumed_nonlinearity(fc) is None  # no nonlinearity's gain: no init/activation mismatch
    # `m.in_features` is the Linear's weight.size(1)
    assert _inits(UNIFORM.replace("m.weight.size(1)", "m.in_features"))["fc"].scheme == "kaiming_uniform"


def test_unreadable_arithmetic_stays_unknown():
    unknown = [
        # a convolution's in_channels is its fan only when groups is 1
        HE.replace("m.out_channels", "m.in_channels"),
        # a kernel dimension missing: no fan of a Conv2d
        HE.replace("m.kernel_size[0] * m.kernel_size[1] * ", "m.kernel_size[0] * "),
        # a sum of dimensions
        HE.replace("m.kernel_size[0] * m.kernel_size[1] * m.out_channels", "m.kernel_size[0] + m.out_channels"),
        # the name bound on two paths
        HE.replace("                m.weight.data", "                if m.groups > 1:\n                    n = m.out_channels\n"
                   "                m.weight.data"),
        # a value of another module's shape
        HE.replace("m.out_channels", "self.fc.out_features"),
        # an attribute the class has not (a Linear has no kernel)
        HE.replace("nn.Conv2d):", "(nn.Conv2d, nn.Linear)):"),
        # a non-zero mean
        HE.replace("normal_(0,", "normal_(0.1,"),
        # an asymmetric uniform
        UNIFORM.replace("uniform_(-stdv, stdv)", "uniform_(0, stdv)"),
    ]
    for loop in unknown:
        got = _inits(loop)
        assert "unknown" in {got["body.0"].scheme, got["fc"].scheme}, loop


def test_the_loop_variable_with_no_type_test_stays_unknown():
    loop = "            n = m.weight.size(0)\n            if hasattr(m, 'weight'):\n" \
           "                m.weight.data.normal_(0, math.sqrt(2. / n))\n"
    assert "unknown" in set(_schemes(loop).values())


def test_a_deep_relu_stack_with_the_old_he_init_is_not_vanishing():
    # 20 Conv2d + ReLU: under torch's default (1/6 of He) GL101 reports vanishing; under He
    # fan-out (square layers: the same as fan-in) the gain per layer is about 1
    source = CONV.format(loop=HE.rstrip("\n"))
    assert [f for f in check_source(source, Config(select=("GL101",)))] == []
    default = CONV.format(loop="            pass")
    assert [f.code for f in check_source(default, Config(select=("GL101",)))] == ["GL101"]


def test_a_named_layer_of_the_module_is_read_by_its_own_class():
    source = CONV.format(loop="            pass").replace(
        "        for m in self.modules():\n",
        "        n = self.fc.weight.size(1)\n        self.fc.weight.data.uniform_(-1. / math.sqrt(n), 1. / math.sqrt(n))\n"
        "        for m in self.modules():\n")
    networks, _ = models.extract(parse("m.py", source))
    fc = {n.name: n for n in walk(networks[0].nodes) if isinstance(n, Param)}["fc"]
    assert (fc.init.scheme, fc.init.get("mode")) == ("kaiming_uniform", "fan_in")
