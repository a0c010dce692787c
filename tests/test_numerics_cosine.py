"""A cosine of normalised vectors lies in [-1, 1]: its exp over a temperature is bounded.

The hand-written InfoNCE `-log(exp(pos / tau) / exp(all / tau).sum(1))` over cosines (recbole's
NCL and SGL, KGIN's mutual information) neither overflows nor underflows for a literal temperature
of 1/80 or more, nor for a temperature setting, taken as at least 0.05 (bench/
measure_cosine_temperature.py: finite at the worst case, positive cosine -1 and 100 000 others at
+1, down to tau = 0.03). Flagged still: an unnormalised dot product, a sum over a dimension other
than the normalised one, a tiny literal temperature, a scale or divisor that is no temperature
(`* scale`, `/ eps`) and a learned scale (`self.logit_scale.exp()`, CLIP's, reaching 100)."""

from __future__ import annotations

import pytest

from gradlint.api import check_source
from gradlint.config import Config


def codes(src: str) -> list[str]:
    return sorted(f.code for f in check_source(src, Config(select=("GL302", "GL305"))))


_HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\n"
_NCE = "    e = torch.exp({s})\n    return -torch.log(e.diag() / e.sum(1)).mean()\n"


def _fn(sig: str, pre: str, s: str) -> str:
    return _HEAD + f"def loss({sig}):\n" + pre + _NCE.format(s=s)


_NCL = _HEAD + """class NCL(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ssl_temp = config["ssl_temp"]

    def ssl_layer_loss(self, cur, prev, prev_all):
        n1 = F.normalize(cur)
        n2 = F.normalize(prev)
        n_all = F.normalize(prev_all)
        pos = torch.mul(n1, n2).sum(dim=1)
        ttl = torch.matmul(n1, n_all.transpose(0, 1))
        pos = torch.exp(pos / self.ssl_temp)
        ttl = torch.exp(ttl / self.ssl_temp).sum(dim=1)
        return -torch.log(pos / ttl).sum()
"""

_SGL = _HEAD + """def ssl(user_sub1, user_sub2, users, ssl_tau=0.5):
    u1 = F.normalize(user_sub1[users], dim=1)
    u2 = F.normalize(user_sub2[users], dim=1)
    all2 = F.normalize(user_sub2, dim=1)
    v1 = torch.sum(u1 * u2, dim=1)
    v2 = u1.matmul(all2.T)
    v1 = torch.exp(v1 / ssl_tau)
    v2 = torch.sum(torch.exp(v2 / ssl_tau), dim=1)
    return -torch.sum(torch.log(v1 / v2))
"""

_KGIN = _HEAD + """class KGIN(nn.Module):
    def __init__(self, temperature):
        super().__init__()
        self.temperature = temperature

    def forward(self, tensors):
        normalized = F.normalize(tensors, dim=1)
        scores = torch.mm(normalized, normalized.t())
        scores = torch.exp(scores / self.temperature)
        return -torch.sum(torch.log(scores.diag() / scores.sum(1)))
"""


@pytest.mark.parametrize("src", [
    _NCL, _SGL, _KGIN,
    _fn("a, b", "", "F.cosine_similarity(a[:, None], b[None], dim=-1) / 0.07"),
    _fn("a, b", "", "F.normalize(a) @ F.normalize(b).T / 0.1"),
    _fn("a, b", "", "torch.mm(F.normalize(a), F.normalize(b).t()) * 30"),
    _fn("a, b, tau=0.2", "", "F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / tau"),
    _fn("a, b, args", "", "(F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1) / args.temperature"),
])
def test_a_cosine_over_a_temperature_is_bounded(src):
    assert codes(src) == []


_CLIP = _HEAD + """class CLIP(nn.Module):
    def __init__(self):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, a, b):
        s = F.normalize(a) @ F.normalize(b).T * self.logit_scale.exp()
        e = torch.exp(s)
        return -torch.log(e.diag() / e.sum(1)).mean()
"""

_LEARNED_TEMP = _HEAD + """class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.temp = nn.Parameter(torch.tensor(0.07))

    def forward(self, a, b):
        e = torch.exp(F.normalize(a) @ F.normalize(b).T / self.temp)
        return -torch.log(e.diag() / e.sum(1)).mean()
"""


@pytest.mark.parametrize("src", [
    _CLIP, _LEARNED_TEMP,
    _fn("a, b, tau", "", "a @ b.T / tau"),  # no normalisation: a dot product is unbounded
    # summed over the batch, not the normalised dimension: up to the batch size
    _fn("a, b, tau", "", "(F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(dim=0) / tau"),
    _fn("a, b", "", "(F.normalize(a, dim=-1) * F.normalize(b, dim=1)).sum(dim=1) / 0.1"),  # dims differ
    _fn("a, b", "", "F.normalize(a) @ F.normalize(b).T / 0.005"),  # within ±200
    _fn("a, b, scale", "", "F.normalize(a) @ F.normalize(b).T * scale"),
    _fn("a, b, eps", "", "F.normalize(a) @ F.normalize(b).T / eps"),  # no temperature by its name
])
def test_an_unbounded_exponent_is_flagged(src):
    assert codes(src) == ["GL302", "GL305"]
