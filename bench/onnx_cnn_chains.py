"""Conv chains exported to ONNX: gradlint's predicted gain beside the gain measured in torch, by
layer kind (plain 3x3 convs with padding, 1x1 convs, with max or average pooling between them).

    /work/venv/bin/python bench/onnx_cnn_chains.py

Each model is exported with the TorchScript exporter and read by gradlint (exact weight
statistics); the measurement uses the same weights: x ~ N(0, 1) of batch 16, z_l the output of
conv l, L = sum(r * z_last) with r ~ N(0, 1), gain = ||dL/dz_first|| / ||dL/dz_last||. Prints
predicted, measured and their ratio per chain; README's ONNX section quotes the table.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradlint.model.propagation import analyse  # noqa: E402
from gradlint.onnx import extract_onnx  # noqa: E402

BATCH = 16
SIZE = 32


def chain(kind: str, depth: int, act: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = 3
    for i in range(depth):
        k = 1 if kind == "conv1x1" else 3
        layers.append(nn.Conv2d(c, 32, k, padding=k // 2))
        c = 32
        layers.append(nn.ReLU() if act == "relu" else nn.Tanh())
        if kind in ("maxpool", "avgpool") and i in (1, 3):
            layers.append(nn.MaxPool2d(2) if kind == "maxpool" else nn.AvgPool2d(2))
    return nn.Sequential(*layers)


def measured(model: nn.Sequential) -> float:
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    outs: dict[int, torch.Tensor] = {}

    def keep(idx):
        def hook(_m, _i, out):
            out.retain_grad()
            outs[idx] = out
        return hook

    handles = [c.register_forward_hook(keep(i)) for i, c in enumerate(convs)]
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    model(x)
    last = outs[len(convs) - 1]
    (torch.randn_like(last) * last).sum().backward()
    for h in handles:
        h.remove()
    return float(outs[0].grad.norm() / last.grad.norm())


def predicted(model: nn.Sequential, folder: Path) -> float | None:
    path = folder / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(1, 3, SIZE, SIZE),), str(path), dynamo=False, opset_version=17)
    (net,) = extract_onnx(path, "m.onnx").networks
    chains = analyse(net).chains
    return max(chains, key=lambda c: c.depth).gain if chains else None


def main() -> int:
    print(f"{'chain':34} {'predicted':>10} {'measured':>10} {'pred/meas':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("conv3x3", "conv1x1", "maxpool", "avgpool"):
            for act in ("relu", "tanh"):
                torch.manual_seed(0)
                model = chain(kind, 8, act)
                p = predicted(model, Path(tmp))
                m = measured(model.train())
                label = f"8 x {kind} + {act}, default init"
                print(f"{label:34} {p if p is None else f'{p:10.3g}':>10} {m:10.3g} "
                      f"{'' if p is None else f'{p / m:9.2f}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
