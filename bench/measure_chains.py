"""Measure backward gradient gains of plain chains in torch, beside gradlint's predictions.

    /work/venv/bin/python bench/measure_chains.py

For each chain: x ~ N(0, 1) of batch 256, z_l the pre-activation output of layer l, and the
loss L = sum(r * z_last) with r ~ N(0, 1), so dL/dz_last = r. The measured gain is
||dL/dz_first|| / ||dL/dz_last|| (Frobenius norms over the batch), the geometric mean over 5
seeds. tests/test_model_propagation.py keeps these numbers as constants.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradlint.model.ir import Activation, InitSpec, Param  # noqa: E402
from gradlint.model.propagation import analyse_nodes  # noqa: E402

BATCH = 256
SEEDS = 5

ACTS = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2), "silu": nn.SiLU,
}


def init_fn(scheme: str, params: dict):
    if scheme == "torch-linear":
        return lambda w: None
    if scheme == "normal":
        return lambda w: nn.init.normal_(w, std=params["std"])
    if scheme == "xavier_uniform":
        return lambda w: nn.init.xavier_uniform_(w)
    if scheme == "kaiming_normal":
        return lambda w: nn.init.kaiming_normal_(w, **params)
    if scheme == "orthogonal":
        return lambda w: nn.init.orthogonal_(w, **params)
    raise ValueError(scheme)


def measure(widths: list[int], act: str, scheme: str, params: dict) -> float:
    logs = []
    for seed in range(SEEDS):
        torch.manual_seed(seed)
        layers = [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
        for layer in layers:
            init_fn(scheme, params)(layer.weight)
        h = torch.randn(BATCH, widths[0])
        zs = []
        for layer in layers:
            z = layer(h)
            z.retain_grad()
            zs.append(z)
            h = ACTS[act]()(z)
        r = torch.randn_like(zs[-1])
        (zs[-1] * r).sum().backward()
        logs.append(math.log(zs[0].grad.norm().item() / zs[-1].grad.norm().item()))
    return math.exp(sum(logs) / len(logs))


def predict(widths: list[int], act: str, scheme: str, params: dict) -> float:
    param = 0.2 if act == "leaky_relu" else None
    nodes = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        nodes.append(
            Param(f"l{i}", "linear", a, b, InitSpec(scheme, tuple(sorted(params.items()))),
                  bias_init=InitSpec("torch-linear"))
        )
        nodes.append(Activation(f"a{i}", act, param))
    (chain,) = analyse_nodes(nodes).chains
    return chain.gain


def fan_out_rule(widths: list[int], gain: float) -> float:
    """What the prediction would be with an early design note's fan_out_l in place of fan_in_l."""
    ratio = 1.0
    for a, b in list(zip(widths[:-1], widths[1:]))[1:]:
        ratio *= b / a
    return gain * math.sqrt(ratio)


CASES = [
    ("12 x Linear(256) + Sigmoid, default init", [256] * 13, "sigmoid", "torch-linear", {}),
    ("8 x Linear(512) + Tanh, normal_(std=1)", [512] * 9, "tanh", "normal", {"std": 1.0}),
    ("16 x Linear(512) + ReLU, xavier_uniform_", [512] * 17, "relu", "xavier_uniform", {}),
    ("16 x Linear(512) + ReLU, default init", [512] * 17, "relu", "torch-linear", {}),
    ("16 x Linear(512) + ReLU, kaiming_normal_(relu)", [512] * 17, "relu", "kaiming_normal",
     {"nonlinearity": "relu"}),
    # Non-square: fan_in and fan_out differ by 4x at every layer, so a factor built on fan_out
    # would be off by 4^(+-1) per layer; normal_(std) makes fan * sigma^2 width-dependent.
    ("10 x Linear 128<->512 + ReLU, normal_(std=0.05)", [128, 512] * 5 + [128], "relu", "normal",
     {"std": 0.05}),
    ("10 x Linear 128<->512 + Tanh, normal_(std=0.1)", [128, 512] * 5 + [128], "tanh", "normal",
     {"std": 0.1}),
    ("12 x Linear(256) + LeakyReLU(0.2), default init", [256] * 13, "leaky_relu", "torch-linear", {}),
    ("12 x Linear(256) + GELU, default init", [256] * 13, "gelu", "torch-linear", {}),
    ("12 x Linear(256) + GELU, kaiming_normal_(relu)", [256] * 13, "gelu", "kaiming_normal",
     {"nonlinearity": "relu"}),
    ("12 x Linear(256) + SiLU, default init", [256] * 13, "silu", "torch-linear", {}),
    ("8 x Linear(256) + Tanh, orthogonal_(gain=5/3)", [256] * 9, "tanh", "orthogonal",
     {"gain": 5.0 / 3.0}),
]


# Transposed convolutions: (name, channels, kernel, stride, input side, scheme, params). An output
# of ConvTranspose2d(cin, cout, k, s) sums cin * k**2 / s**2 terms, while torch's fan_in (which
# sets the default and kaiming variances) is cout * k**2: a decoder that doubles the side at every
# layer keeps a quarter of the squared norm per layer more than fan_in * sigma^2 says. Padding 1
# with k = 3 (or k = 4, s = 2) keeps the sides as written. Batch 4, sides 4 to 64.
CONV_CASES = [
    ("5 x ConvTranspose2d(64, 64, 4, 2, 1) + ReLU, default", [64] * 6, 4, 2, 4, "torch-linear", {}),
    ("5 x ConvTranspose2d(64, 64, 4, 2, 1) + ReLU, kaiming_normal_(relu)", [64] * 6, 4, 2, 4, "kaiming_normal",
     {"nonlinearity": "relu"}),
    ("5 x ConvTranspose2d 512->16, 4, 2, 1 + ReLU, kaiming_normal_(relu)", [512, 256, 128, 64, 32, 16], 4, 2, 4,
     "kaiming_normal", {"nonlinearity": "relu"}),
    ("3 x ConvTranspose2d 256->32, 3, 1, 1 + ReLU, default", [256, 128, 64, 32], 3, 1, 16, "torch-linear", {}),
    ("8 x Conv2d(64, 64, 3, 1, 1) + ReLU, default", [64] * 9, 3, 1, 16, "torch-linear", {}),
]


def measure_conv(chans: list[int], k: int, stride: int, side: int, scheme: str, params: dict, transposed: bool) -> float:
    make = nn.ConvTranspose2d if transposed else nn.Conv2d
    logs = []
    for seed in range(SEEDS):
        torch.manual_seed(seed)
        layers = [make(a, b, k, stride, 1) for a, b in zip(chans[:-1], chans[1:])]
        for layer in layers:
            init_fn(scheme, params)(layer.weight)
        h = torch.randn(4, chans[0], side, side)
        zs = []
        for layer in layers:
            z = layer(h)
            z.retain_grad()
            zs.append(z)
            h = torch.relu(z)
        r = torch.randn_like(zs[-1])
        (zs[-1] * r).sum().backward()
        logs.append(math.log(zs[0].grad.norm().item() / zs[-1].grad.norm().item()))
    return math.exp(sum(logs) / len(logs))


def predict_conv(chans: list[int], k: int, stride: int, scheme: str, params: dict, transposed: bool) -> float:
    """Through the source front-end: a model written with these layers, lowered and analysed."""
    from gradlint.model.propagation import analyse
    from gradlint.source import models, parse

    init = {"torch-linear": "", "kaiming_normal": "nn.init.kaiming_normal_(m.weight, nonlinearity='relu')"}[scheme]
    cls = "ConvTranspose2d" if transposed else "Conv2d"
    layers = ", ".join(f"nn.{cls}({a}, {b}, {k}, {stride}, 1), nn.ReLU()" for a, b in zip(chans[:-1], chans[1:]))
    text = (f"import torch.nn as nn\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            f"        self.net = nn.Sequential({layers})\n"
            + (f"        for m in self.net:\n            if isinstance(m, nn.{cls}):\n                {init}\n" if init else "")
            + "    def forward(self, x):\n        return self.net(x)\n")
    (net,), _ = models.extract(parse("m.py", text))
    (chain,) = analyse(net).chains
    return chain.gain


def main() -> None:
    torch.set_num_threads(1)
    print(f"{'chain':52} {'predicted':>10} {'measured':>10} {'ratio':>6} {'fan_out rule':>12}")
    for name, widths, act, scheme, params in CASES:
        m = measure(widths, act, scheme, params)
        p = predict(widths, act, scheme, params)
        alt = fan_out_rule(widths, p)
        print(f"{name:52} {p:10.3g} {m:10.3g} {p / m:6.2f} {alt:12.3g}")
    print(f"\n{'convolution chain (through the source front-end)':72} {'predicted':>10} {'measured':>10} {'ratio':>6}")
    for name, chans, k, stride, side, scheme, params in CONV_CASES:
        transposed = "Transpose" in name
        m = measure_conv(chans, k, stride, side, scheme, params, transposed)
        p = predict_conv(chans, k, stride, scheme, params, transposed)
        print(f"{name:72} {p:10.3g} {m:10.3g} {p / m:6.2f}")


if __name__ == "__main__":
    main()
