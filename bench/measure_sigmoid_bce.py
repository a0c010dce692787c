"""Measure where BCE of a sigmoid departs from the with-logits loss in float32 (GL301's bound).

    /work/venv/bin/python bench/measure_sigmoid_bce.py   # any Python with torch

The gradient of `F.binary_cross_entropy(torch.sigmoid(x), t)` against that of
`F.binary_cross_entropy_with_logits(x, t)` (and float64's sigmoid(x) - t), for targets 0, 1 and
0.3, at logits from -40 to 40. Not a test: gradlint never imports torch outside its probe.

Measured (torch CPU, float32, the venv's torch): the two gradients agree within 1e-7 relative (an
ulp) for every target from x = -27 to x = 16.5 (the with-logits loss's own rounding near 1 included: at
x = 12, t = 1 both are 8.9e-3 off float64). They part at x = 17, where sigmoid rounds to 1.0 and
BCE's gradient is exactly 0 (the loss clamped at 100), and at x = -28, where p * (1 - p) falls
under BCELoss's 1e-12 floor (0.69 for -1.0). gradlint takes a sigmoid of an argument within ±16,
a probability within [sigmoid(-16), sigmoid(16)] = [1.1e-7, 1 - 1.2e-7], as losing nothing: a
cosine's sigmoid, [0.269, 0.731], is far inside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOGITS = (-40.0, -30.0, -28.0, -27.0, -20.0, -16.0, -12.0, -4.0, -1.0, 0.0, 1.0, 4.0, 12.0, 16.0, 16.5, 17.0, 20.0,
          40.0)


def gradients(x: float, t: float) -> tuple[float, float, float]:
    a = torch.tensor([x], requires_grad=True)
    F.binary_cross_entropy(torch.sigmoid(a), torch.tensor([t])).backward()
    b = torch.tensor([x], requires_grad=True)
    F.binary_cross_entropy_with_logits(b, torch.tensor([t])).backward()
    exact = (torch.sigmoid(torch.tensor([x], dtype=torch.float64)) - t).item()
    return a.grad.item(), b.grad.item(), exact


def main() -> None:
    for t in (0.0, 1.0, 0.3):
        for x in LOGITS:
            bce, logits, exact = gradients(x, t)
            rel = abs(bce - logits) / max(abs(logits), 1e-45)
            # (a few float32 ulps apart is the same number rounded twice)
            same = "agree" if rel < 1e-5 else "DEPART"
            print(f"t={t} x={x:+6}: bce(sigmoid) {bce:+.6g}  with-logits {logits:+.6g}  float64 {exact:+.6g}  "
                  f"relative difference {rel:.1e} {same}")


if __name__ == "__main__":
    main()
