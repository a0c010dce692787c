"""GL306 on pairwise distances of a tensor with itself (source/numerics_pairs.py): zero on their
diagonal whatever the tensor holds, so the root of one is NaN in the backward even for a learned
layer's output; distances between two different tensors, sums over all pairs and roots with an
eps stay quiet."""

from __future__ import annotations

import pytest

from gradlint.api import check_source
from gradlint.config import Config

_HEAD = ("import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n"
         "        super().__init__()\n        self.f = nn.Linear(8, 8)\n        self.g = nn.Linear(8, 8)\n\n"
         "    def forward(self, a, b):\n        e = self.f(a)\n")


def _lines(body: str) -> list[int]:
    found = check_source(_HEAD + body, Config(select=("GL306",)))
    return [f.span.line for f in found if f.code == "GL306"]


@pytest.mark.parametrize("body", [
    "        sq = (e ** 2).sum(1)\n        return (sq.unsqueeze(0) - 2 * e @ e.t() + sq.unsqueeze(1)).clamp(min=0).sqrt()\n",
    "        sq = e.pow(2).sum(dim=1)\n        return torch.sqrt(torch.clamp(sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * torch.mm(e, e.t()), min=0.0))\n",
    "        sq = (e * e).sum(1)\n        return torch.sqrt(sq[:, None] + sq[None, :] - 2 * e.matmul(e.T))\n",
    "        sq = e.square().sum(-1, keepdim=True)\n        return (sq + sq.t() - e.mm(e.t()) * 2).sqrt()\n",
    "        sq = torch.sum(e ** 2, dim=1)\n        return (-2 * e @ e.T + sq.view(1, -1) + sq.view(-1, 1)) ** 0.5\n",
    "        return (e.unsqueeze(0) - e.unsqueeze(1)).pow(2).sum(-1).sqrt()\n",
    "        return torch.sqrt(((e[:, None, :] - e[None, :, :]) ** 2).sum(dim=2))\n",
    # the Gram matrix bound to a name first and its diagonal for the sums of squares (the
    # triplet-loss `_pairwise_distances` of many repositories), in each spelling
    "        dot = torch.matmul(e, e.t())\n        sq = torch.diag(dot)\n"
    "        d = sq.unsqueeze(0) - 2.0 * dot + sq.unsqueeze(1)\n        d[d < 0] = 0\n        return torch.sqrt(d)\n",
    "        dot = e.mm(e.t())\n        sq = dot.diagonal()\n        return (sq[:, None] - dot * 2 + sq[None, :]).clamp(min=0).sqrt()\n",
    "        dot = e @ e.T\n        sq = (e ** 2).sum(1)\n        return (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * dot).clamp(min=0) ** 0.5\n",
    # broadcast on one side only, and numpy's `axis` for the feature dimension
    "        return torch.sqrt(((e[:, None] - e) ** 2).sum(-1))\n",
    "        return ((e - e.unsqueeze(1)) ** 2).sum(axis=-1).sqrt()\n",
])
def test_distances_of_a_learned_output_with_itself_are_flagged(body: str) -> None:
    assert _lines(body) == [_HEAD.count("\n") + body.count("\n")]


@pytest.mark.parametrize("body", [
    # an eps inside the root
    "        sq = (e ** 2).sum(1)\n        return (sq.unsqueeze(0) - 2 * e @ e.t() + sq.unsqueeze(1) + 1e-12).sqrt()\n",
    "        sq = (e ** 2).sum(1)\n        return (sq.unsqueeze(0) - 2 * e @ e.t() + sq.unsqueeze(1)).clamp(min=1e-12).sqrt()\n",
    # two different tensors: a learned output is never exactly another one
    "        p, q = e, self.g(b)\n        sp, sq = (p ** 2).sum(1), (q ** 2).sum(1)\n"
    "        return (sp.unsqueeze(1) + sq.unsqueeze(0) - 2 * p @ q.t()).sqrt()\n",
    # what is added is no sum of squares: not a distance
    "        s = e.sum(1)\n        return (s.unsqueeze(0) - 2 * e @ e.t() + s.unsqueeze(1)).clamp(min=0).sqrt()\n",
    # the diagonal selected away, with a mask (the reshape keeps it: flagged above by view)
    "        sq = (e ** 2).sum(1)\n        d2 = (sq.unsqueeze(0) - 2 * e @ e.t() + sq.unsqueeze(1)).clamp(min=0)\n"
    "        return d2.masked_select(~torch.eye(d2.size(0), dtype=torch.bool)).sqrt()\n",
    # a norm function: its gradient at 0 is defined
    "        return torch.cdist(e, e), (e[:, None] - e[None]).norm(dim=-1)\n",
    # the triplet-loss fix: an eps where the distance is 0, then the root masked
    "        dot = torch.matmul(e, e.t())\n        sq = torch.diag(dot)\n"
    "        d = sq.unsqueeze(0) - 2.0 * dot + sq.unsqueeze(1)\n        d[d < 0] = 0\n"
    "        mask = d.eq(0).float()\n        d = d + mask * 1e-16\n        return (1.0 - mask) * torch.sqrt(d)\n",
    # the rows' norms from the Gram matrix's diagonal: a learned output's rows are never all 0
    "        dot = e @ e.t()\n        return torch.sqrt(torch.diag(dot))\n",
    # a product with another tensor's transpose is no Gram matrix of one
    "        f = self.g(b)\n        dot = e @ f.t()\n        sq = torch.diag(dot)\n"
    "        return (sq.unsqueeze(0) - 2 * dot + sq.unsqueeze(1)).clamp(min=0).sqrt()\n",
])
def test_other_roots_stay_quiet(body: str) -> None:
    assert _lines(body) == []


def test_a_helper_whose_callers_pass_a_learned_output_is_flagged_only_for_self_distances() -> None:
    # (the RMS of a learned output and sums over all pairs, or over the pairs' axis, are not
    # zero unless every row is the same: quiet in a helper, as the RMS is in a module; so is the
    # sum over the last axis of `s.unsqueeze(-1) - s.unsqueeze(-2)`, whose last axes are pairs)
    source = ("import torch\nfrom torch import nn\n\n\ndef pairwise(e):\n"
              "    sq = (e ** 2).sum(1)\n"
              "    return (sq.unsqueeze(0) - 2 * e @ e.t() + sq.unsqueeze(1)).clamp(min=0).sqrt()\n\n\n"
              "def rms(e):\n    return torch.sqrt((e ** 2).mean(-1))\n\n\n"
              "def spread(e):\n    return (e[:, None] - e[None]).pow(2).sum().sqrt()\n\n\n"
              "def spread_rows(e):\n    return (e[:, None] - e[None]).pow(2).sum(0).sqrt()\n\n\n"
              "def spread_last(s):\n    return (s.unsqueeze(-1) - s.unsqueeze(-2)).pow(2).sum(-1).sqrt()\n\n\n"
              "def fit(model: nn.Module, x, opt):\n    out = model(x)\n"
              "    loss = pairwise(out).mean() + rms(out).mean() + spread(out) + spread_rows(out).mean()\n"
              "    loss = loss + spread_last(out).mean()\n"
              "    loss.backward()\n    opt.step()\n")
    found = check_source(source, Config(select=("GL306",)))
    assert [f.span.line for f in found] == [7]


def test_odd_calls_in_a_three_term_sum_are_no_crash() -> None:
    # `torch.t()` has no argument: no tensor's broadcast (was an IndexError, an internal error)
    source = "import torch\n\n\ndef f(e):\n    return torch.t() + torch.t(e) - 2 * e @ e.t()\n"
    assert [f.code for f in check_source(source)] == []
    assert [f.code for f in check_source(source, Config(select=("GL306",)))] == []


def test_a_one_sided_broadcast_that_may_pair_features_is_no_pairwise_distance() -> None:
    # `e[..., None] - e` pairs the features of each row: the root of its sum over them is no
    # distance of a row to itself (what GL306 says of it, if anything, is not about a diagonal)
    found = check_source(_HEAD + "        return torch.sqrt(((e[..., None] - e) ** 2).sum(-1))\n", Config(select=("GL306",)))
    assert all("diagonal" not in f.message for f in found)


def test_the_message_says_the_zeros_are_on_the_diagonal() -> None:
    body = "        dot = e @ e.t()\n        sq = dot.diag()\n        return (sq[:, None] + sq[None] - 2 * dot).clamp(min=0).sqrt()\n"
    (found,) = check_source(_HEAD + body, Config(select=("GL306",)))
    assert "pairwise distance of a tensor with itself (0 on the diagonal)" in found.message
    assert "NaN there" in found.message
    # a plain sum of squares keeps its wording
    plain = check_source("import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n"
                         "        super().__init__()\n        self.w = nn.Parameter(torch.zeros(3))\n\n"
                         "    def forward(self, x):\n        return torch.sqrt((self.w ** 2).sum())\n", Config(select=("GL306",)))
    assert [f.message.split(" with no eps")[0] for f in plain] == ["`torch.sqrt` of a sum of squares"]

