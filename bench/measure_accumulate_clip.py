"""Measure what a clip on every micro-batch inside Accelerate's `accumulate()` does to the update (GL206).

    python -m venv /tmp/accvenv && /tmp/accvenv/bin/pip install accelerate   # any venv with torch
    /tmp/accvenv/bin/python bench/measure_accumulate_clip.py

Runs accelerate's own loop on the CPU, `Accelerator(gradient_accumulation_steps=4)`, the same
model, data and SGD (lr 1, no momentum) three ways for one accumulation window of 4
micro-batches: `accelerator.clip_grad_norm_` on every micro-batch (diffusers#721's bug), only
`if accelerator.sync_gradients:` (its fix), and no clip. It prints, for each micro-batch,
whether it synced, whether `optimizer.step()` moved the weights, and the gradient norm the clip
saw; then the update each way applied, beside the update by hand: the summed gradient clipped
once. Not a test: gradlint never imports accelerate.

Measured (accelerate 1.16.0, torch 2.13.0 CPU): each way, only the 4th micro-batch synced and
only its step moved the weights. Clipping every micro-batch clipped the partial sums (norms
4.92, 7.40, 3.08, 3.00 seen, against 4.92, 7.81, 8.90, 9.06 unclipped): the update's norm is
0.5 but its cosine to the sum clipped once is 0.31 (max difference 0.39); clipping under
`sync_gradients` matches it to 1.5e-08. With the clip, step and zero_grad written after the
`with accelerator.accumulate(model):` block (same loop body), every number is the same: the
flag the block sets on entry is not reset on exit, so the step after it still runs only on the
4th micro-batch.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState

K = 4
MAX_NORM = 0.5
LR = 1.0


def run(mode: str, after: bool = False) -> tuple[torch.Tensor, list[tuple[bool, float]]]:
    """One window of K micro-batches; mode 'every', 'sync' or 'none'; `after`: the clip, step and
    zero_grad written after the `with accelerator.accumulate(model):` block (in the same loop
    body) rather than inside it. Returns the weight update and, per micro-batch,
    (sync_gradients, gradient norm before the clip, whether step() moved the weights)."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    data = [(torch.randn(16, 8), torch.randn(16, 1)) for _ in range(K)]
    accelerator = Accelerator(gradient_accumulation_steps=K, cpu=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    model, optimizer = accelerator.prepare(model, optimizer)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    seen = []
    def clip_and_step() -> None:
        norm = torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
        seen.append((accelerator.sync_gradients, norm))
        if mode == "every" or mode == "sync" and accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), MAX_NORM)
        was = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        optimizer.step()
        moved = not torch.equal(was, torch.cat([p.detach().flatten() for p in model.parameters()]))
        seen[-1] += (moved,)
        optimizer.zero_grad()

    for x, y in data:
        with accelerator.accumulate(model):
            loss = torch.nn.functional.mse_loss(model(x), y) * 10  # large enough that the clip bites
            accelerator.backward(loss)
            if not after:
                clip_and_step()
        if after:
            clip_and_step()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return after - before, seen


def by_hand() -> torch.Tensor:
    """The update gradient accumulation means: the mean of the K micro-batch gradients, clipped once."""
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    data = [(torch.randn(16, 8), torch.randn(16, 1)) for _ in range(K)]
    for x, y in data:
        (torch.nn.functional.mse_loss(model(x), y) * 10 / K).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
    return torch.cat([-LR * p.grad.flatten() for p in model.parameters()])


def main() -> None:
    import accelerate
    print(f"accelerate {accelerate.__version__}, torch {torch.__version__}, K={K}, max_norm={MAX_NORM}, SGD lr={LR}")
    expected = by_hand()
    for after, mode in [(after, mode) for after in (False, True) for mode in ("every", "sync", "none")]:
        update, seen = run(mode, after)
        synced = "".join("S" if s else "." for s, _, _ in seen)
        moved = "".join("M" if m else "." for _, _, m in seen)
        norms = ", ".join(f"{n:.3f}" for _, n, _ in seen)
        where = "after the block" if after else "inside"
        print(f"clip {mode:5s} {where}: synced {synced}, step() moved the weights {moved}, |grad| before clip: {norms}")
        print(f"    update norm {update.norm():.4f}; max |update - by hand| {(update - expected).abs().max():.2e}"
              f"; cosine to by hand {torch.nn.functional.cosine_similarity(update, expected, dim=0):.4f}")
    print(f"by hand (sum clipped once): update norm {expected.norm():.4f}")


if __name__ == "__main__":
    main()
