"""Measure what a clip placed before a loop that makes every update itself does (GL202).

    /tmp/accvenv/bin/python bench/measure_clip_before_update_loop.py   # any Python with torch

The same model, data and SGD (lr 0.1, momentum 0.9) trained for 3 epochs of 4 batches, the
clip (`clip_grad_norm_(..., 0.05)`, small enough to bite on every batch) placed four ways: once
per epoch before the batch loop, once before the epoch loop, between backward and step in the
batch loop, and nowhere; each with the loop clearing before its backward (`zero_grad();
backward(); step()`) and after its step (`backward(); step(); zero_grad()`). Prints how far each
run's final weights are from the run with no clip. Not a test: gradlint never imports torch
outside its probe.

Measured (torch 2.13.0 CPU): the clip before the batch loop, per epoch or once, leaves the
weights bitwise equal to no clip (difference 0) with either clear placement: the first
`zero_grad()` drops what it clipped, or it clipped the zeros / None the last clear left. The
clip between backward and step moves them (difference 3.03 either way).
"""

from __future__ import annotations

import torch

EPOCHS, BATCHES, MAX_NORM = 3, 4, 0.05


def run(where: str, clear_first: bool) -> torch.Tensor:
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    data = [(torch.randn(16, 8), torch.randn(16, 1) * 10) for _ in range(BATCHES)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def clip() -> None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)

    if where == "before-all":
        clip()
    for _ in range(EPOCHS):
        if where == "before-loop":
            clip()
        for x, y in data:
            if clear_first:
                optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            if where == "in-step":
                clip()
            optimizer.step()
            if not clear_first:
                optimizer.zero_grad()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def main() -> None:
    print(f"torch {torch.__version__}; {EPOCHS} epochs x {BATCHES} batches, max_norm {MAX_NORM}")
    for clear_first in (True, False):
        base = run("none", clear_first)
        how = "zero_grad(); backward(); step()" if clear_first else "backward(); step(); zero_grad()"
        for where in ("before-loop", "before-all", "in-step"):
            diff = (run(where, clear_first) - base).abs().max().item()
            print(f"{how:34s} clip {where:12s}: max |weights - no clip| = {diff:.3g}")


if __name__ == "__main__":
    main()
