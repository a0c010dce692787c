"""Check gradlint's activation formulas (value and derivative) against torch's autograd.

    /work/venv/bin/python bench/check_activations.py

Prints the largest absolute difference per activation over z in [-20, 20]; the moments in
gradlint/model/activations.py are integrals of exactly these functions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradlint.model.activations import KNOWN, _pieces, resolve_param  # noqa: E402

TORCH = {
    "relu": F.relu, "leaky_relu": lambda z: F.leaky_relu(z, 0.01), "elu": F.elu, "selu": F.selu,
    "celu": F.celu, "gelu": F.gelu, "silu": F.silu, "mish": F.mish, "tanh": torch.tanh,
    "sigmoid": torch.sigmoid, "hardtanh": F.hardtanh, "softsign": F.softsign,
    "softplus": F.softplus, "hardsigmoid": F.hardsigmoid, "hardswish": F.hardswish,
    "relu6": F.relu6, "identity": lambda z: z,
    "prelu": lambda z: F.prelu(z, torch.tensor([0.25], dtype=z.dtype)),
    "logsigmoid": F.logsigmoid, "tanhshrink": F.tanhshrink,
}


def main() -> None:
    # Avoid the kinks themselves, where the one-sided derivative is a convention.
    z = np.linspace(-20.0, 20.0, 40_001) + 1e-4
    worst = 0.0
    for fn in sorted(KNOWN):
        f, df, _ = _pieces(fn, resolve_param(fn, None))
        t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
        y = TORCH[fn](t)
        (g,) = torch.autograd.grad(y.sum(), t)
        dv = np.max(np.abs(f(z) - y.detach().numpy()))
        dd = np.max(np.abs(df(z) - g.numpy()))
        worst = max(worst, dv, dd)
        print(f"{fn:12} value {dv:.1e}  derivative {dd:.1e}")
    print(f"worst {worst:.1e}")


if __name__ == "__main__":
    main()
