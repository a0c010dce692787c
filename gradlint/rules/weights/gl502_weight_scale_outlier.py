"""GL502 weight-scale-outlier: a layer whose weight std is 10x away from its like neighbours."""

from __future__ import annotations

import math
import statistics
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
    Neither can three when two of them are off alike: a healthy layer between two corrupted
    ones has two neighbours that agree against it. When the layer matches the model's other
    layers of its role (std × √fan-in, within 10× of their median, all shapes, at least five
    layers) and its neighbours do not, the neighbours are the ones reported.
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
        reference = _role_scales(groups)
        reported: set[str] = set()
        for (role, shape), layers in sorted(groups.items(), key=lambda kv: kv[1][0].order):
            layers.sort(key=lambda w: w.order)
            for k, w in enumerate(layers):
                near = layers[max(0, k - REACH):k] + layers[k + 1:k + 1 + REACH]
                if len(near) < 2:
                    continue
                ratios = [w.std / n.std for n in near]
                if not (all(r >= RATIO for r in ratios) or all(r <= 1 / RATIO for r in ratios)):
                    continue
                ref = reference.get(role)
                if ref is not None and _off(w, ref) < 1 and all(_off(n, ref) >= 1 for n in near):
                    # The neighbours agree against a layer that matches the model's other layers of
                    # its role: they are the ones off (a healthy layer between two corrupted ones).
                    for n in near:
                        if n.name not in reported:
                            reported.add(n.name)
                            yield self._finding(ctx, n, [w], role, shape, "its neighbour", matches=True)
                elif w.name not in reported:
                    reported.add(w.name)
                    yield self._finding(ctx, w, near, role, shape, f"its {len(near)} neighbours")

    def _finding(self, ctx: RuleContext, w, near: list, role: str, shape: tuple, whom: str,
                 matches: bool = False) -> Finding:
        ref = sorted(n.std for n in near)[len(near) // 2]
        factor = w.std / ref
        how = f"{factor:.3g}× larger than" if factor > 1 else f"{1 / factor:.3g}× smaller than"
        which = f" {near[0].layer or near[0].name!r}" if matches else ""
        also = (f", whose scale (std × √fan-in) the model's other {role} layers share" if matches else "")
        return ctx.finding(
            f"weight {w.name!r} of layer {w.layer or w.name!r} has std {w.std:.3g}, {how} {whom}{which} of the "
            f"same role and shape ({role} {list(shape)}, std ≈ {ref:.3g}){also}",
            node=w.node,
            data={"tensor": w.name, "layer": w.layer, "std": w.std, "neighbour_std": ref,
                  "ratio": factor, "role": role, "shape": list(shape)},
        )


# A role's reference scale needs this many layers, so that a few corrupted ones stay a minority.
MIN_REFERENCE = 5


def _scale(w) -> float:
    """log10 of std × √fan-in: what an initialisation keeps alike across the shapes of one role
    (a convolution's fan-in is its input channels times its kernel; a matrix, whose orientation
    the graph does not say, takes the geometric mean of its two sides)."""
    shape = w.shape
    if len(shape) > 2:
        fan = math.prod(shape[1:])
    elif len(shape) == 2:
        fan = math.sqrt(shape[0] * shape[1])
    else:
        fan = max(1, math.prod(shape))
    return math.log10(w.std * math.sqrt(fan))


def _role_scales(groups: dict[tuple, list]) -> dict[str, float]:
    """Per role, the median scale of every layer of that role in the model, all shapes."""
    by_role: dict[str, list[float]] = {}
    for (role, _), layers in groups.items():
        by_role.setdefault(role, []).extend(_scale(w) for w in layers)
    return {role: statistics.median(v) for role, v in by_role.items() if len(v) >= MIN_REFERENCE}


def _off(w, reference: float) -> float:
    """How many decades the layer's scale is from its role's reference."""
    return abs(_scale(w) - reference)
