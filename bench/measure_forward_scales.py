"""Measure backward gradient gains of chains in small models whose forward takes a module's tuple
apart, scales a residual branch by a LayerScale, or sums a stack of branches, beside the gain the
source front-end predicts for the same code.

    /work/venv-probe/bin/python bench/measure_forward_scales.py   (torch, timm and libcst)

Each model is the source text MODELS below, read by gradlint (models.extract, never imported)
and imported by torch (timm's own LayerScale included). As in bench/measure_chains.py: x ~ N(0, 1)
of batch 256, z the output of a chain's first and last layer, L = sum(r * out) with r ~ N(0, 1);
the measured gain is ||dL/dz_first|| / ||dL/dz_last||, the geometric mean over 5 seeds.
tests/test_models_tuple_parts.py and tests/test_models_layer_scale.py keep the measured numbers.

What each one checks: TupleChain's blocks return `(h, aux)` and the chain follows `h` across all
eight (it ended at each block's tuple before); ScaledResidualThenChain and GammaResidualThenChain
add a branch of second moment ~240 scaled by 1e-5 (timm's LayerScale; `x * self.gamma`), so the
tanh chain after it sees E[x^2] ~ 1, not ~240 as the identity LayerScale was read; StackSumThenChain
reads `torch.stack([...]).sum(0)` as the sum of its four branches (E[x^2] = 1 + 4 * 256 * 0.0625^2 = 5).
"""

from __future__ import annotations

import importlib.util
import math
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradlint.model.propagation import analyse  # noqa: E402
from gradlint.source import models, parse  # noqa: E402

BATCH = 256
SEEDS = 5

MODELS = '''
import torch
import torch.nn as nn
from timm.layers import LayerScale


class TupleBlock(nn.Module):
    def __init__(self, d=256):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.aux = nn.Linear(d, 8)

    def forward(self, x):
        h = torch.tanh(self.fc(x))
        return h, self.aux(x)


class TupleChain(nn.Module):
    def __init__(self, d=256):
        super().__init__()
        self.blocks = nn.ModuleList([TupleBlock(d) for _ in range(8)])

    def forward(self, x):
        for blk in self.blocks:
            x, _aux = blk(x)
        return x


class ScaledResidualThenChain(nn.Module):
    def __init__(self, d=256, init_values=1e-5):
        super().__init__()
        self.fc1 = nn.Linear(d, d)
        self.fc2 = nn.Linear(d, d)
        nn.init.normal_(self.fc1.weight, std=1.0)
        nn.init.normal_(self.fc2.weight, std=1.0)
        self.ls = LayerScale(d, init_values=init_values)
        self.chain = nn.ModuleList([nn.Linear(d, d) for _ in range(6)])
        for layer in self.chain:
            nn.init.normal_(layer.weight, std=0.09)

    def forward(self, x):
        x = x + self.ls(self.fc2(torch.tanh(self.fc1(x))))
        for layer in self.chain:
            x = torch.tanh(layer(x))
        return x


class GammaResidualThenChain(nn.Module):
    def __init__(self, d=256, init_values=1e-5):
        super().__init__()
        self.fc1 = nn.Linear(d, d)
        self.fc2 = nn.Linear(d, d)
        nn.init.normal_(self.fc1.weight, std=1.0)
        nn.init.normal_(self.fc2.weight, std=1.0)
        self.gamma = nn.Parameter(init_values * torch.ones(d))
        self.chain = nn.ModuleList([nn.Linear(d, d) for _ in range(6)])
        for layer in self.chain:
            nn.init.normal_(layer.weight, std=0.09)

    def forward(self, x):
        x = x + self.fc2(torch.tanh(self.fc1(x))) * self.gamma
        for layer in self.chain:
            x = torch.tanh(layer(x))
        return x


class StackSumThenChain(nn.Module):
    def __init__(self, d=256):
        super().__init__()
        self.branches = nn.ModuleList([nn.Linear(d, d) for _ in range(4)])
        for b in self.branches:
            nn.init.normal_(b.weight, std=0.0625)
        self.chain = nn.ModuleList([nn.Linear(d, d) for _ in range(6)])
        for layer in self.chain:
            nn.init.normal_(layer.weight, std=0.09)

    def forward(self, x):
        x = x + torch.stack([b(x) for b in self.branches]).sum(0)
        for layer in self.chain:
            x = torch.tanh(layer(x))
        return x
'''

# model -> the chain measured (its first and last layer)
CHAINS = {
    "TupleChain": ("blocks.0.fc", "blocks.7.fc"),
    "ScaledResidualThenChain": ("chain.0", "chain.5"),
    "GammaResidualThenChain": ("chain.0", "chain.5"),
    "StackSumThenChain": ("chain.0", "chain.5"),
}


def predicted(name: str, first: str, last: str) -> float | None:
    networks, _ = models.extract(parse("models.py", MODELS))
    net = {n.name: n for n in networks}[name]
    return next((c.gain for c in analyse(net).chains if c.modules[0] == first and c.modules[-1] == last), None)


def measured(make, first: str, last: str, d: int = 256) -> float:
    logs = []
    for seed in range(SEEDS):
        torch.manual_seed(seed)
        model = make()
        found = dict(model.named_modules())
        outputs: dict = {}

        def keep(name):
            def hook(_module, _inputs, out):
                out.retain_grad()
                outputs[name] = out
            return hook

        for name in (first, last):
            found[name].register_forward_hook(keep(name))
        out = model(torch.randn(BATCH, d))
        (out * torch.randn_like(out)).sum().backward()
        logs.append(math.log(outputs[first].grad.norm().item() / outputs[last].grad.norm().item()))
    return math.exp(sum(logs) / len(logs))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "models.py"
        path.write_text(MODELS)
        spec = importlib.util.spec_from_file_location("measured_models", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        for name, (first, last) in CHAINS.items():
            got = measured(getattr(module, name), first, last)
            pred = predicted(name, first, last)
            print(f"{name:26s} predicted {pred if pred is None else f'{pred:.4g}':>8}   measured {got:.4g}")


if __name__ == "__main__":
    main()
