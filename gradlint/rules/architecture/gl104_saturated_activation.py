"""GL104 saturated-activation: pre-activation std >= 3 at a squashing activation."""

from __future__ import annotations

import math
import re
from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.registry import Example, Rule, RuleContext
from gradlint.rules.architecture.common import (
    ACTIVATION_NAMES, FOLDED_NOTE, SQUASHING, analyses, describe_init, layer_maybe_folded, location,
    networks_text,
)

SATURATION_STD = 3.0
# Tables whose raw scale is the point (embeddings, positions, codebooks), low-rank adapters and
# attention projections: a large std there is a design choice, not a saturation accident.
_EXEMPT = re.compile(r"(emb|pos|codebook|lora|attn|attention|query|key|q_proj|k_proj|v_proj)", re.I)

WIDE_TANH = """\
import torch
import torch.nn as nn

class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1024, 256)
        nn.init.normal_(self.fc.weight, std=1.0)

    def forward(self, x):
        return torch.tanh(self.fc(x))
"""


class SaturatedActivation(Rule):
    """
    ## What it does
    Predicts the standard deviation of the pre-activations feeding a tanh, sigmoid, hardtanh or
    softsign from the layer's fan-in and initialisation, and reports it when it is 3 or more: most
    units then sit on the flat tails of the activation.

    ## Why is this bad?
    A saturated unit has a derivative near zero (tanh'(3) ≈ 0.01): its weights stop receiving
    gradient, and the units stay stuck. `normal_(std=1)` on a layer with fan-in 1024 gives
    pre-activations with std 32.

    ## Example
    ```python
    self.fc = nn.Linear(1024, 256)
    nn.init.normal_(self.fc.weight, std=1.0)
    ...
    return torch.tanh(self.fc(x))
    ```

    ## Use instead
    ```python
    nn.init.xavier_normal_(self.fc.weight, gain=nn.init.calculate_gain("tanh"))
    ```
    or put a normalisation layer directly before the activation.

    ## References
    - LeCun et al., *Efficient BackProp* (1998), section 4.6.
    """

    code = "GL104"
    probe_measure = "activation_std"
    name = "saturated-activation"
    severity = Severity.WARNING
    summary = "Pre-activations are so large that most tanh/sigmoid units are saturated"
    inputs = frozenset({"python", "onnx"})
    invalid = [Example(WIDE_TANH)]
    valid = [
        Example(WIDE_TANH.replace("nn.init.normal_(self.fc.weight, std=1.0)", "nn.init.normal_(self.fc.weight, std=0.02)")),
        Example(WIDE_TANH.replace("return torch.tanh(self.fc(x))", "return torch.tanh(self.norm(self.fc(x)))")
                .replace("        nn.init.normal_", "        self.norm = nn.LayerNorm(256)\n        nn.init.normal_"),
                note="a norm directly before the activation"),
        Example(WIDE_TANH.replace("return torch.tanh(self.fc(x))", "return torch.tanh(0.05 * self.fc(x))"),
                note="a fixed scale before the activation (measured: pre-activation std 0.32, none saturated)"),
        Example("""\
import torch
import torch.nn as nn

class Tok(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(1000, 64)

    def forward(self, idx):
        return torch.tanh(self.embedding(idx))
""", note="embeddings: their N(0, 1) scale is by design"),
    ]

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        from gradlint.findings import GraphNode

        groups: dict = {}
        for network, analysis in analyses(ctx):
            for stat in analysis.activations:
                layer = stat.layer
                if stat.activation.fn not in SQUASHING or layer is None:
                    continue
                if layer.op == "embedding" or _EXEMPT.search(layer.attr or layer.name or ""):
                    continue
                std = math.sqrt(stat.q)
                if std < SATURATION_STD:
                    continue
                where = layer.init.origin or layer.origin
                # Source: one finding per line that causes it (a loop's init line covers every layer
                # it initialises). ONNX: every layer is its own node, so one finding per graph,
                # at the first saturated layer, with the count.
                key = (network.name, "graph") if isinstance(where, GraphNode) else (where, stat.activation.fn)
                entry = groups.get(key)
                if entry is None:
                    groups[key] = [network, stat, layer, std, where, {layer.name}, [network.name]]
                else:
                    entry[5].add(layer.name)
                    if network.name not in entry[6]:
                        entry[6].append(network.name)  # factories of one class: vgg11(), vgg16()...
        for network, stat, layer, std, where, names, networks in groups.values():
            span, node = location(where)
            # A BatchNorm folded into the conv at export would sit before the activation in training.
            folded = layer_maybe_folded(ctx, layer)
            act = ACTIVATION_NAMES.get(stat.activation.fn, stat.activation.fn)
            more = f" (and {len(names) - 1} more layer{'s' if len(names) > 2 else ''} of {networks_text(networks)})" \
                if len(names) > 1 else ""
            yield ctx.finding(
                f"predicted pre-activation std {std:.3g} at {act} after {layer.name or layer.op}{more} "
                f"({describe_init(layer)}, fan-in {layer.fan_in}): most units are saturated and get almost no gradient"
                + (FOLDED_NOTE if folded else ""),
                span, node=node, severity=Severity.INFO if folded else None,
                data={"network": network.name, "module": layer.name, "predicted_std": std,
                      "modules": tuple(sorted(names))},
            )
