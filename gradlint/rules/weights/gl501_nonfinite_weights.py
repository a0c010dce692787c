"""GL501 nonfinite-weights: NaN or Inf in an ONNX initializer."""

from __future__ import annotations

from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.registry import Example, Rule, RuleContext

_HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'
# Ops through which -inf is a mask, not a broken value: Add(scores, mask), Where(..., -inf), Max/Min.
MASK_OPS = frozenset({"Add", "Where", "Max", "Min", "Clip"})


class NonfiniteWeightsRule(Rule):
    """
    ## What it does
    Reports an ONNX initializer (or `Constant` tensor) that holds NaN or ±Inf values, with the
    tensor's name and how many of its values are not finite. NaN is reported wherever it is;
    ±Inf in a tensor that is not a layer's weight or bias and is only added, selected or
    clamped (an attention mask of -inf) is left alone.

    ## Why is this bad?
    One NaN weight turns every output it touches into NaN, and every gradient with it: the
    model cannot train or fine-tune from this checkpoint. It usually means the model was
    exported after training had already diverged, or a conversion overflowed float16.

    ## Example
    ```
    <float[2,2] W = {nan, 1.0, inf, 0.5}>
    y = MatMul(x, W)
    ```

    ## Use instead
    Export from the last checkpoint whose weights are finite (`torch.isfinite(p).all()` for
    every parameter), or convert to float16 with clamping (`keep_io_types`, range checks).
    """

    code = "GL501"
    probe_measure = "not_measurable"
    name = "nonfinite-weights"
    severity = Severity.ERROR
    summary = "NaN or Inf in an ONNX initializer"
    inputs = frozenset({"onnx"})
    invalid = [
        Example(_HEADER + "g (float[N, 2] x) => (float[N, 2] y) <float[2,2] W = {nan, 1.0, inf, 0.5}> {\n"
                "  y = MatMul(x, W)\n}\n", kind="onnx-text"),
        Example(_HEADER + "g (float[N, 2] x) => (float[N, 2] y) <float[2,2] W = {1.0, 0.0, 0.0, 1.0}, "
                "float[2] b = {1.0, -inf}> {\n  y = Gemm <transB = 1> (x, W, b)\n}\n", kind="onnx-text",
                note="a layer's bias counts too"),
        Example(_HEADER + "g (float[N, 2] x) => (float[N, 2] y) <float[2] m = {0.0, nan}> {\n"
                "  y = Add(x, m)\n}\n", kind="onnx-text", note="NaN is never a mask"),
    ]
    valid = [
        Example(_HEADER + "g (float[N, 2] x) => (float[N, 2] y) <float[2,2] W = {0.5, 1.0, -1.0, 0.5}> {\n"
                "  y = MatMul(x, W)\n}\n", kind="onnx-text"),
        Example(_HEADER + "g (float[2, 2] x) => (float[2, 2] y) <float[2,2] mask = {0.0, -inf, 0.0, 0.0}> {\n"
                "  s = Add(x, mask)\n  y = Softmax <axis = -1> (s)\n}\n", kind="onnx-text",
                note="a causal attention mask"),
    ]

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        graph = getattr(ctx.facts, "graph", None)
        for w in getattr(graph, "weights", ()) or ():
            if not w.nonfinite:
                continue
            if not w.nan and w.role == "other" and w.consumers and set(w.consumers) <= MASK_OPS:
                continue
            parts = [f"{n} {label}" for n, label in ((w.nan, "NaN"), (w.posinf, "+Inf"), (w.neginf, "-Inf")) if n]
            yield ctx.finding(
                f"initializer {w.name!r} holds {' and '.join(parts)} among its {w.count} values",
                node=w.node,
                data={"tensor": w.name, "nan": w.nan, "posinf": w.posinf, "neginf": w.neginf,
                      "count": w.count, "shape": list(w.shape)},
            )
