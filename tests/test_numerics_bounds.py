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


@pytest.mark.parametrize("body", [
    # a comprehension's own x, a loop that leaves x alone, a loop target, an isinstance branch
    "    mask = x <= 18\n    offsets = [x * 2 for x in range(3)]\n"
    "    return x.masked_fill(~mask, 0).exp().log1p() + sum(offsets)\n",
    "    mask = x <= 18\n    out = 0\n    for _ in range(3):\n        out = out + x.masked_fill(~mask, 0).exp().log1p()\n"
    "    return out\n",
    "    out = []\n    for t in y:\n        out.append(t.masked_fill(~(t <= 18), 0).exp().log1p())\n    return out\n",
    "    mask = x <= 18\n    if not isinstance(x, torch.Tensor):\n        return x\n"
    "    else:\n        return x.masked_fill(~mask, 0).exp().log1p()\n",
    # halved, it stays at most 25
    "    return (x.clamp(max=50) / 2).exp().log1p()\n",
])
def test_a_bound_kept_through_scopes_and_shrinking_scales(body):
    assert codes(_HEAD + body) == []


@pytest.mark.parametrize("body", [
    # a mask of one bound on one branch, another on the other (x = 100 passes `x <= 1000`)
    "    if temperature:\n        mask = x <= 18\n    else:\n        mask = x <= 1000\n"
    "    return x.masked_fill(~mask, 0).exp().log1p()\n",
    # the mask itself changed, or read other than as made
    "    mask = x <= 18\n    mask.logical_or_(y)\n    return x.masked_fill(~mask, 0).exp().log1p()\n",
    "    mask = x <= 18\n    return x.masked_fill(~mask.flip(0), 0).exp().log1p()\n",
    # x changed through an alias, through .data, or after a lambda that reads it later
    "    mask = x <= 18\n    z = x\n    z.mul_(100)\n    return x.masked_fill(~mask, 0).exp().log1p()\n",
    "    mask = x <= 18\n    x.data.mul_(100)\n    return x.masked_fill(~mask, 0).exp().log1p()\n",
    "    mask = x <= 18\n    g = lambda: x.masked_fill(~mask, 0).exp().log1p()\n    x = x * 100\n    return g()\n",
    # a clamped or shifted exponent changed in place
    "    z = x.clamp(max=50)\n    z.mul_(10)\n    return z.exp().log1p()\n",
    "    z = x - x.max()\n    z.neg_()\n    return z.exp().sum().log()\n",
    # a shift divided by a negated temperature
    "    m = x.max(-1, keepdim=True).values\n    return ((x - m) / -temperature).exp().sum(-1).log()\n",
])
def test_a_bound_lost_on_the_way_is_flagged(body):
    assert codes(_HEAD + body) == ["GL305"]


@pytest.mark.parametrize("exponent", [
    "-2 * (torch.abs(x) * torch.abs(y)) / (3 * temperature) ** 2",  # normflows' two-mode priors
    "-4 * torch.abs(x) / 0.09",
    "-(x.abs() * y.abs())",
    "-x.abs() * y.abs()",
    "-2 * (x ** 2 * y.abs())",
])
def test_a_product_that_is_never_positive_keeps_the_softplus_quiet(exponent):
    # measured in torch (float32): x = ±500, y = 2: log(1 + exp(.)) is 0 with a finite gradient
    assert codes(_HEAD + f"    return torch.log(1 + torch.exp({exponent}))\n") == []


@pytest.mark.parametrize("exponent", [
    "-4 * x / 0.09",  # no abs: x = -500 overflows
    "4 * torch.abs(x) / 0.09",  # positive: overflows
    "-2 * (torch.abs(x) * y)",  # y may be negative
    "-(x.abs() * y)",
    "torch.abs(x) * torch.abs(y)",
])
def test_a_product_whose_sign_is_open_is_flagged(exponent):
    assert codes(_HEAD + f"    return torch.log(1 + torch.exp({exponent}))\n") == ["GL305"]


# -- numbers a tensor lies between (engine/bounds.py) ----------------------------------------------

def _logodds(eps: str, after: str = "    x = torch.mean(x, dim=dim)\n", before: str = "") -> str:
    return ("import torch\n\nEPS = 1e-6\n\n\ndef f(x, dim, eps" + eps + "):\n" + before +
            "    x = x.clamp(min=eps, max=1.0 - eps)\n    x = torch.log(x / (1 - x))\n" + after +
            "    return torch.exp(x) / (1 + torch.exp(x))\n")


@pytest.mark.parametrize("src", [
    _logodds("=1e-6"),  # pytorch-toolbelt's logodd_mean: |log-odds| <= 13.8
    _logodds("=EPS"),
    _logodds("=1e-7"),  # 1 - 1e-7 is still below 1 in float32: |log-odds| <= 16
    _logodds("=1e-6", after="    x = x.mean(dim) * 5\n"),  # 69
    _logodds("=1e-6", after="    x = -x.float().view(-1)\n"),
])
def test_a_bound_carried_through_the_log_odds_of_a_clamped_probability_keeps_the_exp_quiet(src):
    # measured in torch (float32): inputs at 0 and 1 give a finite value and gradient (eps 1e-6, 1e-7)
    assert codes(src) == []


@pytest.mark.parametrize("src", [
    _logodds(""),  # eps unknown: the bound may be anything
    _logodds("=1e-8"),  # 1 - 1e-8 is 1.0 in float32: 1 - x reaches 0 (measured: NaN at x = 1)
    _logodds("=1e-40"),  # log((1 - eps) / eps) = 92 > 88
    _logodds("=1e-6", after="    x = torch.sum(x, dim=dim)\n"),  # a sum of ten is 138
    _logodds("=1e-6", after="    x = 10 * x\n"),  # measured: NaN at x = 1
    _logodds("=1e-6", after="    x = x.add_(y)\n"),
    _logodds("=1e-6", before="    eps = eps * y\n"),
])
def test_a_bound_that_does_not_hold_in_float32_is_flagged(src):
    assert codes(src.replace("def f(x, dim", "def f(x, y, dim")) == ["GL305"]


def test_clamp_bounds_of_unknown_numbers():
    from gradlint.source.engine import bounds

    assert bounds.clamped(None, 0.0, 1.0) == (0.0, 1.0)
    assert bounds.clamped((0.0, 5.0), None, None, lo_given=True) == (0.0, float("inf"))  # max(x, ?) >= x
    assert bounds.clamped((0.0, 5.0), 1.0, None, hi_given=True) == (float("-inf"), 5.0)  # min(., ?) may be anything below
    assert bounds.clamped(None, 2.0, 1.0) == (1.0, 1.0)  # torch: a max below the min wins
    assert bounds.clamped(None, 1e-8, 1 - 1e-8)[1] == 1.0  # as float32 holds it


# -- distances: never below 0 (engine/bounds.of) ----------------------------------------------------

_DAMP = "import torch\n\n\ndef damp(pos, a, b, v, r0: float = 0.3):\n    r = {r}\n    return 1 / (1 + torch.exp({e}))\n"


@pytest.mark.parametrize("r, e", [
    ("pos.norm(dim=-1)", "-20 * (r / 0.3 - 1)"),  # Grimme's D2 damping of a distance
    ("pos.norm(dim=-1)", "-20 * (r / r0 - 1)"),  # the radius a parameter's default
    ("(pos[:, None] - pos[None]).norm(dim=-1)", "-20 * (r / 0.3 - 1)"),
    ("torch.linalg.norm(pos, dim=-1)", "-20.0 * (r / 0.3 - 1.0)"),
    ("torch.cdist(a, b)", "-(r / 0.3 - 1) * 20"),
    ("torch.sqrt((v ** 2).sum(-1))", "-20 * (r / 0.3 - 1)"),
    ("((a - b) ** 2).sum(-1)", "-5 * (r * 2 - 3)"),  # a squared distance: at most 15
])
def test_a_distance_over_a_positive_radius_keeps_the_sigmoid_quiet(r, e):
    # measured in torch (float32): for r from 0 to 1e6, 1 / (1 + exp(-20 (r / 0.3 - 1))) and its
    # gradient are finite (the exponent is at most 20)
    assert codes(_DAMP.format(r=r, e=e)) == []


@pytest.mark.parametrize("r, e", [
    ("pos.sum(-1)", "-20 * (r / 0.3 - 1)"),  # signed: r = -10 gives exp(686) (measured: NaN gradient)
    ("pos.norm(dim=-1)", "-20 * (r / -0.3 - 1)"),  # a negative radius: r = 10 is NaN (measured)
    ("pos.norm(dim=-1)", "-20 * (r / v - 1)"),  # a radius of unknown sign
    ("pos.norm(dim=-1)", "20 * (r / 0.3 - 1)"),  # grows with the distance
    ("pos.norm(dim=-1)", "-20 * (r * a - 1)"),  # a factor of unknown sign
])
def test_a_distance_whose_exponent_is_open_is_flagged(r, e):
    assert codes(_DAMP.format(r=r, e=e)) == ["GL305"]


def test_a_norm_module_is_not_a_distance():
    # `self.norm(h)` is a LayerNorm's output, signed
    src = ("import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n"
           "        super().__init__()\n        self.norm = nn.LayerNorm(4)\n        self.layers = nn.ModuleList([nn.LayerNorm(4)])\n\n"
           "    def forward(self, h):\n        a = self.norm(h)\n        b = self.layers[0].norm(h)\n"
           "        return 1 / (1 + torch.exp(-20 * (a / 0.3 - 1))) + 1 / (1 + torch.exp(-20 * (b / 0.3 - 1)))\n")
    assert codes(src) == ["GL305", "GL305"]


_PREF = ("import torch\nfrom torch import nn\n\n\nclass Pref(nn.Module):\n"
         "    def __init__(self, threshold=50.0):\n        super().__init__()\n        self.lin = nn.Linear(4, 1)\n"
         "        self.threshold = threshold\n\n    def forward(self, a, b, limit):\n"
         "        d = (self.lin(a) - self.lin(b)).sum(0)\n{clip}        return 1 / (1 + d.exp())\n")


@pytest.mark.parametrize("clip, flagged", [
    # imitation's preference model: "clip to avoid overflows", by a setting (50 by default)
    ("        d = torch.clip(d, -self.threshold, self.threshold)\n", False),
    ("        d = d.clamp(max=limit)\n", False),
    ("        d = d.clamp(-limit, limit)\n", False),
    # no clip, a bound of the model's own output, a lower bound alone, a clip scaled after
    ("", True),
    ("        d = d.clamp(max=self.lin(b).sum())\n", True),
    ("        d = d.clamp(min=-self.threshold)\n", True),
    ("        d = d.clamp(-limit, limit) * 10\n", True),
])
def test_a_clip_by_a_setting_guards_the_exp(clip, flagged):
    """A clip of an exponent by settings no number is known for is taken as the overflow guard it
    is written as; by a tensor (the model's output) it bounds nothing known."""
    assert codes(_PREF.format(clip=clip)) == (["GL305"] if flagged else [])
