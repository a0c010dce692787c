"""Measure the grouped softmax and log-sum-exp that GL305's message advises for a softmax per group.

    /tmp/accvenv/bin/python bench/measure_grouped_softmax.py   # any Python with torch

A softmax per group written `exp(z) / scatter_add(exp(z), index)[index]` (PyG's utils.softmax
before pyg-team/pytorch_geometric#53) against the same with each group's max subtracted inside
the exp, the max taken by `scatter_reduce(..., "amax")` (plain torch; what PyG's softmax does with
`scatter_max`), and against `torch.softmax` run on each group alone. The same for the grouped
log-sum-exp, the max added back after the log. Groups chosen so that one holds an exponent that
overflows float32 (100) and one holds only exponents that underflow (-200, -300). Not a test:
gradlint never imports torch outside its probe.

Measured (torch 2.13.0 CPU, float32): the written-out softmax is NaN in the group that overflows
and in the one that underflows, value and gradient; the max-subtracted one is finite and matches
torch.softmax per group (value to 0, gradient to 2.4e-7). The written-out log-sum-exp is inf
(group 0) and -inf (group 2) with NaN gradients; the max-subtracted one matches torch.logsumexp
per group the same way.
"""

from __future__ import annotations

import torch

Z = [100.0, 1.0, 0.5, 2.0, -200.0, -300.0]
INDEX = torch.tensor([0, 0, 1, 1, 2, 2])
N = 3


def written_out(z: torch.Tensor) -> torch.Tensor:
    e = z.exp()
    return e / torch.zeros(N).scatter_add(0, INDEX, e)[INDEX]


def group_max(z: torch.Tensor) -> torch.Tensor:
    return torch.full((N,), float("-inf")).scatter_reduce(0, INDEX, z, "amax")[INDEX]


def shifted(z: torch.Tensor) -> torch.Tensor:
    e = (z - group_max(z)).exp()
    return e / torch.zeros(N).scatter_add(0, INDEX, e)[INDEX]


def per_group(z: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(z)
    for g in range(N):
        at = INDEX == g
        out = out.masked_scatter(at, torch.softmax(z[at], 0))
    return out


def lse_written_out(z: torch.Tensor) -> torch.Tensor:
    return torch.zeros(N).scatter_add(0, INDEX, z.exp()).log()


def lse_shifted(z: torch.Tensor) -> torch.Tensor:
    m = torch.full((N,), float("-inf")).scatter_reduce(0, INDEX, z, "amax")
    return torch.zeros(N).scatter_add(0, INDEX, (z - m[INDEX]).exp()).log() + m


def lse_per_group(z: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.logsumexp(z[INDEX == g], 0) for g in range(N)])


def run(f):
    z = torch.tensor(Z, requires_grad=True)
    out = f(z)
    # a weighted sum, so that the gradient is not the softmax's constant 0
    (out * torch.arange(1.0, len(out) + 1)).sum().backward()
    return out.detach(), z.grad


def main() -> None:
    print(f"torch {torch.__version__}; z = {Z}, groups {INDEX.tolist()}")
    ref, ref_grad = run(per_group)
    for name, f in (("written out", written_out), ("max-subtracted", shifted)):
        out, grad = run(f)
        print(f"softmax {name:15s}: {out.tolist()}\n    grad {grad.tolist()}\n"
              f"    max |value - per group| {(out - ref).abs().max():.2e}, max |grad - per group| {(grad - ref_grad).abs().max():.2e}")
    ref, ref_grad = run(lse_per_group)
    for name, f in (("written out", lse_written_out), ("max-subtracted", lse_shifted)):
        out, grad = run(f)
        print(f"logsumexp {name:15s}: {out.tolist()}\n    grad {grad.tolist()}\n"
              f"    max |value - per group| {(out - ref).abs().max():.2e}, max |grad - per group| {(grad - ref_grad).abs().max():.2e}")


if __name__ == "__main__":
    main()
