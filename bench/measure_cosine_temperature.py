"""Measure the hand-written InfoNCE over cosines of normalised vectors at several temperatures.

    /work/venv/bin/python bench/measure_cosine_temperature.py   # any Python with torch

`-log(exp(pos / tau) / exp(all / tau).sum(1))` (recbole's NCL and SGL, KGIN's mutual information)
where pos and all are cosines of F.normalize'd rows, so in [-1, 1]. The worst case for the
ratio: the positive pair's cosine -1 while every other candidate's is +1 (100 000 candidates).
Also CLIP's scale: cosines times exp(logit_scale), learned up to 100 (clamped there by CLIP).
Not a test: gradlint never imports torch outside its probe.

Measured (torch CPU, float32, the venv's torch): random cosines (8 rows against 100 000
normalised Gaussian vectors) give a finite loss and gradient at every temperature down to 0.01.
At the worst case the loss is finite down to tau = 0.03 (78.2) and inf with NaN gradients from
0.02 on: pos / ttl = e^(-2/tau) / N underflows float32 (below 1.4e-45) once 2/tau + log N > 103.
exp(cos / tau) itself overflows only below tau = 1/88.7 = 0.0113. Times a scale: finite at 20,
inf from 50 (so CLIP's learned scale, clamped at 100, can). gradlint takes a temperature setting
as at least 0.05 (the exponent within ±20; the worst-case loss 51.5 there).
"""

from __future__ import annotations

import torch

N = 100_000


def infonce(pos_cos: torch.Tensor, all_cos: torch.Tensor, tau: float):
    pos_cos = pos_cos.clone().requires_grad_()
    all_cos = all_cos.clone().requires_grad_()
    pos = torch.exp(pos_cos / tau)
    ttl = torch.exp(all_cos / tau).sum(dim=1)
    loss = -torch.log(pos / ttl).sum()
    loss.backward()
    finite = bool(torch.isfinite(pos_cos.grad).all() and torch.isfinite(all_cos.grad).all())
    return loss.item(), finite


def main() -> None:
    torch.manual_seed(0)
    worst_pos = torch.full((1,), -1.0)
    worst_all = torch.ones(1, N)
    a = torch.nn.functional.normalize(torch.randn(8, 64))
    b = torch.nn.functional.normalize(torch.randn(N, 64))
    rand_all = a @ b.T
    rand_pos = rand_all[:, 0]
    for tau in (1.0, 0.5, 0.2, 0.1, 0.05, 0.03, 0.02, 0.012, 0.011, 0.01):
        w = infonce(worst_pos, worst_all, tau)
        r = infonce(rand_pos, rand_all, tau)
        print(f"tau={tau:<6} worst: loss={w[0]:.4g} grad finite={w[1]}   random: loss={r[0]:.4g} grad finite={r[1]}")
    for scale in (20.0, 50.0, 88.0, 100.0):
        w = infonce(worst_pos, worst_all, 1 / scale)
        print(f"cos * {scale:<5} worst: loss={w[0]:.4g} grad finite={w[1]}")


if __name__ == "__main__":
    main()
