"""nn.PReLU's slope is its second argument (`init`): the first is num_parameters, the number of
slopes. Read as the slope, `nn.PReLU(28)` made facenet-pytorch's MTCNN RNet and ONet "explode"
(GL102: predicted 3.1e5 and 4.9e7; measured in torch at PyTorch's default init, the gradient norm
shrinks from the head to the first conv: 0.048 and 0.022)."""

from __future__ import annotations

import pytest

from gradlint.api import check_source
from gradlint.model.ir import Activation, walk
from gradlint.source import models, parse


def prelu_params(source: str) -> list[float | None]:
    networks, _ = models.extract(parse("m.py", source))
    (net,) = networks
    return [n.param for n in walk(net.nodes) if isinstance(n, Activation) and n.fn == "prelu"]


def module(act: str) -> str:
    return f"""
import torch.nn as nn
class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.act = {act}
        self.out = nn.Linear(8, 8)
    def forward(self, x):
        return self.out(self.act(self.fc(x)))
"""


@pytest.mark.parametrize("act, slope", [
    ("nn.PReLU()", 0.25),
    ("nn.PReLU(28)", 0.25),
    ("nn.PReLU(num_parameters=28)", 0.25),
    ("nn.PReLU(28, 0.1)", 0.1),
    ("nn.PReLU(1, init=0.1)", 0.1),
    ("nn.PReLU(init=0.1)", 0.1),
    ("nn.LeakyReLU(0.2)", None),  # (not a prelu: the other activations keep their first argument)
])
def test_the_slope_is_init_not_num_parameters(act, slope):
    assert prelu_params(module(act)) == ([] if slope is None else [slope])


def test_leaky_relu_and_elu_still_read_their_first_argument():
    networks, _ = models.extract(parse("m.py", module("nn.LeakyReLU(0.2)")))
    (act,) = [n for n in walk(networks[0].nodes) if isinstance(n, Activation)]
    assert (act.fn, act.param) == ("leaky_relu", 0.2)
    networks, _ = models.extract(parse("m.py", module("nn.ELU(0.5)")))
    (act,) = [n for n in walk(networks[0].nodes) if isinstance(n, Activation)]
    assert (act.fn, act.param) == ("elu", 0.5)


MTCNN_RNET = """
import torch.nn as nn
class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_2 = nn.Linear(128, 4)
    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return self.dense5_2(x)
"""


def test_mtcnn_rnet_does_not_explode():
    assert [f.code for f in check_source(MTCNN_RNET)] == []


def chain(act: str) -> str:
    return f"""
import torch.nn as nn
class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(*(m for _ in range(8) for m in [nn.Linear(256, 256), {act}]))
    def forward(self, x):
        return self.f(x)
"""


def test_a_steep_slope_still_explodes():
    # slope 8: E[phi'^2] = (1 + 64) / 2 per layer, x 1/3 of PyTorch's default init: chi = 10.8,
    # gain 10.8 ** 3.5 = 4e3 over 8 layers; the default slope's chain (chi = 0.18) is quiet
    assert [f.code for f in check_source(chain("nn.PReLU(256)"))] == []
    assert [f.code for f in check_source(chain("nn.PReLU(256, 8.0)"))] == ["GL102"]
    assert [f.code for f in check_source(chain("nn.PReLU(num_parameters=256, init=8.0)"))] == ["GL102"]
