"""When a bound on an exponent holds: a mask or a clamp bounds the tensor it was made of, at the
version it was made of, and only until arithmetic scales it; an isinstance test narrows a name the
walk knew nothing of (or read as a module) without forgetting what it knew of a tensor. Each
flagged case was measured in torch (float32): inf and a NaN gradient at the values named."""

from __future__ import annotations

import pytest

from gradlint.api import check_source
from gradlint.config import Config


def codes(src: str, select: str = "GL305") -> list[str]:
    return [f.code for f in check_source(src, Config(select=(select,)))]


_HEAD = "import torch\n\n\ndef f(x, y, temperature):\n"


@pytest.mark.parametrize("body", [
    # the name changed between the mask and the fill: in place, by an item, in a loop's next round
    "    mask = x <= 18\n    x.mul_(100)\n    return x.masked_fill(~mask, 0).exp().log1p()\n",  # x = 10: inf
    "    mask = x <= 18\n    x[:] = x * 100\n    return torch.where(mask, x, 0.0).exp().log1p()\n",
    "    mask = x <= 18\n    out = 0\n    for _ in range(3):\n"
    "        out = out + x.masked_fill(~mask, 0).exp().log1p()\n        x = x * 10\n    return out\n",
    # a new trainable tensor under the name (one shared value for every such tensor)
    "    w = torch.tensor([1.0, 2.0], requires_grad=True)\n    mask = w <= 18\n"
    "    w = torch.tensor([100.0, 200.0], requires_grad=True)\n    return w.masked_fill(~mask, 0).exp().log1p()\n",
    # at most 18, then scaled: 10 * 18 = 180 overflows
    "    w = x.masked_fill(~(x <= 18), 0)\n    return (w * 10).exp().log1p()\n",
    "    return (torch.where(x <= 18, x, 0.0) / temperature).exp().log1p()\n",  # temperature 0.1
    "    return (x.clamp(max=18) * 10).exp().log1p()\n",
])
def test_a_bound_that_no_longer_holds_is_flagged(body):
    assert codes(_HEAD + body) == ["GL305"]


@pytest.mark.parametrize("body", [
    "    mask = x <= 18\n    return x.masked_fill(~mask, 0).exp().log1p()\n",
    "    mask = x <= 18\n    y.mul_(100)\n    return x.masked_fill(~mask, 0).exp().log1p()\n",  # another name changed
    "    out = 0\n    for _ in range(3):\n        mask = x <= 18\n"
    "        out = out + x.masked_fill(~mask, 0).exp().log1p()\n    return out\n",  # made in the same round
    "    return x.clamp(max=18).exp().log1p()\n",
    "    m = x.max(-1, keepdim=True).values\n    return ((x - m) / temperature).exp().sum(-1).log()\n",
])
def test_a_bound_that_holds_keeps_the_exp_quiet(body):
    assert codes(_HEAD + body) == []


@pytest.mark.parametrize("made", ["logits.clamp(max=80)", "logits - logits.max(-1, keepdim=True)[0]",
                                  "logits.detach()"])
def test_an_isinstance_test_keeps_what_was_known_of_a_tensor(made):
    src = ("import torch\n\n\ndef lse(logits):\n"
           f"    z = {made}\n    if isinstance(z, torch.Tensor):\n"
           "        return torch.log(torch.exp(z).sum())\n    return z\n")
    assert codes(src) == []


def test_an_isinstance_test_keeps_a_sum_of_squares_of_a_layer():
    src = ("import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n"
           "        super().__init__()\n        self.fc = nn.Linear(4, 4)\n\n"
           "    def forward(self, x, y):\n        s = ((self.fc(x) - y) ** 2).sum(-1)\n"
           "        if isinstance(s, torch.Tensor):\n            return torch.sqrt(s)\n        return s\n")
    assert codes(src, "GL306") == ["GL306"]
