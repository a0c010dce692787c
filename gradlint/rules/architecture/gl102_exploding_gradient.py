"""GL102 exploding-gradient: a chain whose predicted backward gain is above the threshold."""

from __future__ import annotations

from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.registry import Example, Option, Rule, RuleContext, positive_float
from gradlint.rules.architecture.common import gain_findings

TANH_STD1 = """\
import torch
import torch.nn as nn

class Chaotic(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(512, 512) for _ in range(8)])
        for layer in self.layers:
            nn.init.normal_(layer.weight, std=1.0)

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x
"""


class ExplodingGradient(Rule):
    """
    ## What it does
    Reports chains of layers (no normalisation, no residual between them) whose predicted backward
    gain ‖∂L/∂z_first‖ / ‖∂L/∂z_last‖ exceeds `exploding-threshold`, computed from the layers,
    activations and initialisation as ARCHITECTURE.md describes.

    ## Why is this bad?
    Gradients grow layer after layer: the first layers get updates thousands of times larger than
    the last, training diverges or needs a learning rate so small that the rest of the network
    does not learn. Eight `Linear(512) + Tanh` layers initialised with `normal_(std=1)` are chaotic:
    measured gain 6.3e3.

    ## Example
    ```python
    for layer in self.layers:
        nn.init.normal_(layer.weight, std=1.0)
    ```

    ## Use instead
    Scale the initialisation to the fan-in:
    ```python
    for layer in self.layers:
        nn.init.xavier_normal_(layer.weight, gain=nn.init.calculate_gain("tanh"))
    ```

    ## Options
    - `exploding-threshold` (default 1e3): report chains whose predicted gain is above this.

    ## References
    - Poole et al., *Exponential expressivity in deep neural networks through transient chaos* (2016).
    """

    code = "GL102"
    probe_measure = "exploding_gain"
    name = "exploding-gradient"
    severity = Severity.WARNING
    summary = "Predicted gradient gain across a chain of layers is explosively large"
    inputs = frozenset({"python", "onnx"})
    options = {"exploding-threshold": Option(1e3, positive_float, "report chains with predicted gain above this")}
    invalid = [Example(TANH_STD1)]
    valid = [
        Example(TANH_STD1.replace("nn.init.normal_(layer.weight, std=1.0)",
                                  "nn.init.xavier_normal_(layer.weight, gain=nn.init.calculate_gain('tanh'))")),
        Example(TANH_STD1.replace("x = torch.tanh(layer(x))", "x = x + torch.tanh(layer(x))"),
                note="residual connections break the chain"),
    ]

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        threshold = ctx.options["exploding-threshold"]
        yield from gain_findings(ctx, threshold, lambda chain: chain.gain > threshold and not chain.bound,
                                 lambda a, b: a.gain > b.gain, "gradients explode towards the input")
