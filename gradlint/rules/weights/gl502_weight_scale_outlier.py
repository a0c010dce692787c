"""GL502 weight-scale-outlier: a layer whose weight std is 10x away from its like neighbours."""

from __future__ import annotations

from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.registry import Example, Rule, RuleContext

RATIO = 10.0
# Up to this many layers of the same role and shape on each side are its neighbours.
REACH = 2


def _mlp(weights: list[str]) -> str:
    """ONNX text of a chain of MatMuls with 2x2 weights, one per given value list."""
    inits = ", ".join(f"float[2,2] W{i} = {{{w}}}" for i, w in enumerate(weights))
    body, prev = [], "x"
    for i in range(len(weights)):
        out = "y" if i == len(weights) - 1 else f"h{i}"
        body.append(f"  [\"/layers.{i}/MatMul\"] {out} = MatMul({prev}, W{i})")
        prev = out
    return ('<ir_version: 8, opset_import: ["" : 17]>\n'
            f"g (float[N, 2] x) => (float[N, 2] y) <{inits}> {{\n" + "\n".join(body) + "\n}\n")


_ONE = "1.0, -1.0, 1.0, -1.0"
_HUGE = "100.0, -100.0, 100.0, -100.0"


class WeightScaleOutlierRule(Rule):
    """
    ## What it does
    Compares each layer's weight standard deviation (measured from the ONNX initializers) with
    its neighbours of the same role and shape — the other blocks' projections, the other
    convolutions of the stage — and reports a layer that is at least 10× larger or smaller
    than every one of them.

    ## Why is this bad?
    Layers of the same role and shape are initialised alike and train alike; one that is ten
    times off is usually a mistake that survived export: a weight loaded into the wrong layer,
    a missing or doubled scaling during a conversion (e.g. folding a norm twice), a layer left
    at a custom init. Its activations and gradients are off by the same factor.

    Two layers alone cannot say which of them is off, so at least two neighbours must agree.
    Zero tensors (deliberately zero-initialised layers) are left to the init rules.

    ## Example
    Twelve blocks whose `fc1` weights have std 0.02, except block 7 with std 0.9.

    ## Use instead
    Check how that layer was loaded or converted; re-export after fixing its weights.
    """

    code = "GL502"
    probe_measure = "not_measurable"
    name = "weight-scale-outlier"
    severity = Severity.WARNING
    summary = "A layer's weight std is 10x away from its neighbours of the same role and shape"
    inputs = frozenset({"onnx"})
    invalid = [
        Example(_mlp([_ONE, _ONE, _HUGE, _ONE, _ONE]), kind="onnx-text"),
        Example(_mlp([_ONE, _ONE, _ONE, _HUGE]), kind="onnx-text", note="the last layer of the run"),
    ]
    valid = [
        Example(_mlp([_ONE, _ONE, _ONE, _ONE]), kind="onnx-text"),
        Example(_mlp([_ONE, _HUGE]), kind="onnx-text", note="two layers cannot say which is off"),
        Example(_mlp([_ONE, _HUGE, _ONE, _HUGE]), kind="onnx-text", note="neighbours disagree"),
        Example(_mlp([_ONE, _ONE, "0.0, 0.0, 0.0, 0.0", _ONE]), kind="onnx-text", note="zero init: GL105's"),
    ]

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        graph = getattr(ctx.facts, "graph", None)
        groups: dict[tuple, list] = {}
        for w in getattr(graph, "weights", ()) or ():
            if w.role in ("other", "bias") or not w.std or w.nonfinite:
                continue
            groups.setdefault((w.role, w.shape), []).append(w)
        for (role, shape), layers in sorted(groups.items(), key=lambda kv: kv[1][0].order):
            layers.sort(key=lambda w: w.order)
            for k, w in enumerate(layers):
                near = layers[max(0, k - REACH):k] + layers[k + 1:k + 1 + REACH]
                if len(near) < 2:
                    continue
                ratios = [w.std / n.std for n in near]
                if all(r >= RATIO for r in ratios) or all(r <= 1 / RATIO for r in ratios):
                    ref = sorted(n.std for n in near)[len(near) // 2]
                    factor = w.std / ref
                    how = f"{factor:.3g}× larger than" if factor > 1 else f"{1 / factor:.3g}× smaller than"
                    yield ctx.finding(
                        f"weight {w.name!r} of layer {w.layer or w.name!r} has std {w.std:.3g}, {how} its "
                        f"{len(near)} neighbours of the same role and shape ({role} {list(shape)}, std ≈ {ref:.3g})",
                        node=w.node,
                        data={"tensor": w.name, "layer": w.layer, "std": w.std, "neighbour_std": ref,
                              "ratio": factor, "role": role, "shape": list(shape)},
                    )
