"""GL403 on a parameter cut in one term of forward and trained through another (V.live): libauc's
MIDAM losses hold `self.a` fixed in a surrogate term, `(logs_p - self.a.detach()) * w`, and fit it
in another, `((logs_p - self.a) ** 2).mean()`, both summed into the returned loss. Measured in
torch (2.13, CPU): `a.grad` is nonzero for every quiet case below, None (zero for `sign`) for every
flagged one."""

from __future__ import annotations

import pytest

from tests.conftest import codes_for

LOSS = """\
import torch
from torch import nn
import torch.nn.functional as F


class TwoTimeScaleLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(1))
        self.b = nn.Parameter(torch.zeros(1))
        self.crit = nn.MSELoss()
{methods}
    def forward(self, pred, target):
{body}
"""

# the reproducer (held-out set 4, libauc/losses/mil.py:101)
REPRO = ("        surrogate = torch.mean((target - self.a.detach()) * pred)\n"
         "        fit = torch.mean((target - self.a) ** 2)\n"
         "        return surrogate + fit")


def loss(body: str = REPRO, methods: str = "") -> str:
    return LOSS.format(body=body, methods=methods)


HELD = "\n    def held(self):\n        return self.a.detach()\n"
FIT = "\n    def fit(self, target):\n        return torch.mean((target - self.a) ** 2)\n"
LONG_FIT = ("\n    def fit(self, target):\n        d = target - self.a\n        d = d * 2\n        e = d ** 2\n"
            "        if e.numel() > 3:\n            e = e[:3]\n        m = e.mean()\n        return m\n")
NO_GRAD_FIT = ("\n    def fit(self, target):\n        d = target * 2\n        with torch.no_grad():\n"
               "            d = d - self.a\n        d = d ** 2\n        if d.numel() > 3:\n            d = d[:3]\n"
               "        m = d.mean()\n        return m\n")


@pytest.mark.parametrize("source", [
    loss(),
    loss(body="        surrogate = torch.mean((target - self.held()) * pred)\n"
              "        return surrogate + torch.mean((target - self.a) ** 2)", methods=HELD),
    loss(body="        surrogate = torch.mean((target - self.a.detach()) * pred)\n"
              "        return surrogate + self.fit(target)", methods=FIT),
    loss(body="        surrogate = torch.mean((target - self.a.detach()) * pred)\n"
              "        return surrogate + self.fit(target)", methods=LONG_FIT),
    loss(body="        out = torch.mean((target - self.a.detach()) * pred)\n        if self.training:\n"
              "            out = out + torch.mean((target - self.a) ** 2)\n        return out"),
    loss(body="        surrogate = torch.mean((target - self.a.data) * pred)\n"
              "        return surrogate + F.mse_loss(self.a.expand_as(target), target)"),
    loss(body="        surrogate = torch.mean((target - self.a.detach()) * pred)\n"
              "        return surrogate + self.crit(self.a.expand_as(target), target)"),
    loss(body="        return {'surrogate': torch.mean((target - self.a.detach()) * pred),\n"
              "                'fit': torch.mean((target - self.a) ** 2)}"),
    loss(body="        return torch.mean((target - self.a.detach()) * pred), torch.mean((target - self.a) ** 2)"),
], ids=["reproducer", "detached in a helper method", "trained in a method forward calls",
        "trained in a long method", "trained on one branch", ".data beside F.mse_loss", "trained through a criterion",
        "a dict's other entry", "a tuple's other element"])
def test_a_parameter_trained_through_another_term_is_quiet(source: str) -> None:
    assert codes_for(source, select="GL403") == []


@pytest.mark.parametrize("source", [
    loss(body="        surrogate = torch.mean((target - self.a.detach()) * pred)\n"
              "        fit = torch.mean((target - self.b) ** 2)\n        return surrogate + fit"),
    loss(body="        self.norm = self.a.norm()\n        return torch.mean((target - self.a.detach()) * pred)"),
    loss(body="        with torch.no_grad():\n            w = self.a * 2\n"
              "        return torch.mean((target - self.a.detach()) * pred) + w"),
    loss(body="        surrogate = torch.mean((target - self.a.detach()) * pred)\n"
              "        return surrogate + self.fit(target)", methods=NO_GRAD_FIT),
    loss(body="        return torch.mean((target - self.a.detach()) * pred) / self.a.numel()"),
    loss(body="        return torch.mean((target - self.a.detach()) * pred) + self.a.new_ones(3).sum()"),
    loss(body="        return torch.mean((target - self.a.detach()) * pred) * self.a.sign().sum()"),
], ids=["only another parameter trained", "a statistic that reaches no output", "the other use under no_grad",
        "the method's use under no_grad", "its size", "a tensor made like it", "its sign"])
def test_a_parameter_only_used_cut_is_flagged(source: str) -> None:
    assert codes_for(source, select="GL403") == ["GL403"]
