"""The numbers the GL3xx/GL4xx docstrings quote, measured in torch on CPU."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.torch


def test_softmax_into_cross_entropy_floor_and_shrink():
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    z = torch.randn(256, 10, requires_grad=True)
    y = torch.randint(0, 10, (256,))
    (g_logits,) = torch.autograd.grad(F.cross_entropy(z, y), z)
    (g_probs,) = torch.autograd.grad(F.cross_entropy(F.softmax(z, -1), y), z)
    assert 8 < (g_logits.norm() / g_probs.norm()).item() < 11  # docstring and message: ~9x
    z100 = torch.randn(256, 100, requires_grad=True)
    y100 = torch.randint(0, 100, (256,))
    (g_logits,) = torch.autograd.grad(F.cross_entropy(z100, y100), z100)
    (g_probs,) = torch.autograd.grad(F.cross_entropy(F.softmax(z100, -1), y100), z100)
    assert 60 < (g_logits.norm() / g_probs.norm()).item() < 85  # ~70x for 100 classes
    # small logits (a fresh head): about C-fold
    small = (torch.randn(256, 100) * 0.1).requires_grad_()
    (g_logits,) = torch.autograd.grad(F.cross_entropy(small, y100), small)
    (g_probs,) = torch.autograd.grad(F.cross_entropy(F.softmax(small, -1), y100), small)
    assert 90 < (g_logits.norm() / g_probs.norm()).item() < 110
    perfect = torch.zeros(1, 10)
    perfect[0, 0] = 1e4
    floor = F.cross_entropy(F.softmax(perfect, -1), torch.tensor([0])).item()
    assert abs(floor - 1.46) < 0.01


def test_sigmoid_bceloss_zero_gradient_when_saturated():
    import torch
    import torch.nn.functional as F

    x = torch.tensor([20.0], requires_grad=True)
    t = torch.tensor([0.0])
    (g,) = torch.autograd.grad(F.binary_cross_entropy(torch.sigmoid(x), t), x)
    (g2,) = torch.autograd.grad(F.binary_cross_entropy_with_logits(x, t), x)
    assert g.item() == 0.0 and g2.item() == pytest.approx(1.0)


def test_nan_gradients_of_the_flagged_forms():
    import torch

    def grad(fn, value):
        x = torch.tensor(value, requires_grad=True)
        (g,) = torch.autograd.grad(fn(x).sum(), x)
        return g

    assert torch.isnan(grad(lambda x: 1 / (1 + torch.exp(-x)), [-100.0])).all()  # GL305
    assert torch.isnan(grad(lambda x: torch.log(1 + torch.exp(x)), [100.0])).all()  # GL305
    assert torch.isnan(grad(lambda x: torch.sqrt((x ** 2).sum()), [0.0, 0.0])).all()  # GL306
    assert (grad(lambda x: x.norm(), [0.0, 0.0]) == 0).all()  # GL306 must-not: norm is safe
    assert torch.isnan(grad(lambda x: x / x.norm(), [0.0, 0.0])).all()  # GL307
    assert torch.isinf(grad(lambda x: torch.acos(x.clamp(-1, 1)), [1.0])).all()  # GL308
    assert torch.isfinite(grad(lambda x: torch.acos(x.clamp(-1 + 1e-7, 1 - 1e-7)), [1.0])).all()
    # a cosine similarity of equal vectors is 1 or just above: acos of it is NaN; a margin written
    # as a product or a division keeps it inside (GL308 must not flag these)
    same = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    cos = lambda x: torch.nn.functional.cosine_similarity(x, same, dim=-1)  # noqa: E731
    assert not torch.isfinite(grad(lambda x: torch.acos(cos(x)), same.tolist())).all()
    assert torch.isfinite(grad(lambda x: torch.acos(cos(x) * (1 - 1e-6)), same.tolist())).all()
    assert torch.isfinite(grad(lambda x: torch.acos(cos(x) / (1 + 1e-6)), same.tolist())).all()
    assert torch.isnan(grad(lambda x: torch.where(x > 0, torch.log(x), 0.0), [0.0])).all()  # GL309
    assert torch.isnan(grad(lambda g: torch.where(g > 20, g, torch.log(1.0 + torch.exp(g))), [100.0])).all()
    assert torch.isnan(grad(lambda z: torch.log(torch.softmax(z, -1))[1], [0.0, -200.0])).all()  # GL302


def test_where_division_poisons_the_numerator_even_without_denominator_grad():
    import torch

    s = torch.ones(2, requires_grad=True)
    n = torch.tensor([0.0, 2.0])
    torch.where(n > 0, s / n, 0.0).sum().backward()
    assert torch.isnan(s.grad[0]) and s.grad[1] == 0.5


def test_broken_graph_and_module_requires_grad_are_silent():
    import torch

    w = torch.randn(3, requires_grad=True)
    loss = (w * 2).sum().detach()
    loss.requires_grad = True
    loss.backward()  # GL401: no error...
    assert w.grad is None  # ...and no gradient
    m = torch.nn.Linear(2, 2)
    m.requires_grad = False  # GL404
    assert m.weight.requires_grad
