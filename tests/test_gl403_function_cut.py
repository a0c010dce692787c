"""GL403 through a top-level function of the file that cuts what forward hands it
(numerics_returns.function_cut): deep_cage's `deform_with_MVC` returned `weights.detach()`
(yifita/deep_cage#16). Measured in torch (2.13, CPU): the weights such a helper returns have
requires_grad False while the deformed shape it returns beside them keeps its gradient."""

from __future__ import annotations

import pytest

from tests.conftest import codes_for

HELPER = """\
import torch
from torch import nn


def deform(cage, query, verbose=False):
    weights = torch.softmax(query @ cage.transpose(1, 2), -1)
{cut}
    deformed = weights @ cage
    if verbose:
        return deformed, weights
    return deformed


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.dec = nn.Linear(3, 3)

    def forward(self, query, cage):
        cage = self.dec(cage)
{body}
"""

CUT = "    weights = weights.detach()"
UNPACKED = "        deformed, weights = deform(cage, query, verbose=True)\n        return weights"


def helper(cut: str = CUT, body: str = UNPACKED) -> str:
    return HELPER.format(cut=cut, body=body)


NORMALISE = """\
import torch
from torch import nn


def {name}(x):
    return (x / x.norm(dim=-1, keepdim=True)).detach()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(3, 3)

    def forward(self, x):
        return {ret}
"""


def normalise(name: str = "normalise", ret: str = "normalise(self.enc(x))", below: bool = False) -> str:
    src = NORMALISE.format(name=name, ret=ret)
    if below:  # the function after the class that calls it (walked before its caller's arguments are known)
        head, _, rest = src.partition("def ")
        fn, _, cls = rest.partition("class ")
        src = head + "class " + cls + "\n\ndef " + fn.rstrip() + "\n"
    return src


@pytest.mark.parametrize("source", [
    helper(),
    helper(body="        _, weights = deform(cage, query, verbose=True)\n        return weights * 2"),
    normalise(),
    normalise(below=True),
    helper(cut="    with torch.no_grad():\n        weights = weights * 1.0"),
], ids=["unpacked element", "computed from it", "whole value", "function below the class", "no_grad"])
def test_a_cut_in_a_helper_forward_calls_is_flagged(source: str) -> None:
    assert codes_for(source, select="GL403") == ["GL403"]


@pytest.mark.parametrize("source", [
    helper(cut="    pass"),
    helper(cut="    if verbose:\n        weights = weights.detach()"),
    helper(body="        deformed, weights = deform(cage, query, verbose=True)\n        return deformed"),
    helper(body="        return deform(cage, query)"),
    normalise(ret="self.enc(normalise(x))"),
    normalise(name="stop_gradient", ret="stop_gradient(self.enc(x))"),
    normalise(ret="self.enc(x) + normalise(self.enc(x))"),
], ids=["no cut", "cut on one path", "the live element", "the live return", "data only", "stop-gradient by name",
        "beside a live term"])
def test_a_helper_whose_cut_forward_does_not_return_is_quiet(source: str) -> None:
    assert codes_for(source, select="GL403") == []
