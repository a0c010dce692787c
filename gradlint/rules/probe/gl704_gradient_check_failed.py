"""GL704 gradient-check-failed: a finite-difference check disagrees with autograd."""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping

from gradlint.facts.probe import Measured, ProbeFacts
from gradlint.findings import Severity
from gradlint.rules.probe.base import ProbeRule


class GradientCheckFailed(ProbeRule):
    """
    ## What it does
    Reported by `gradlint probe` when a float64 finite-difference check disagrees with the
    gradient autograd computes. The whole loss is checked along random directions (central
    differences, on one sample of the batch); then every custom `torch.autograd.Function` of
    the target's file is checked on the inputs it received in the forward pass, and — when the
    whole check fails — the model's own modules, from the top down. The finding names the
    `Function`, or the smallest module of the user's classes whose check fails; built-in torch
    modules are trusted and never named.

    What is compared is the function autograd differentiates: stop-gradients (`.detach()`,
    `.data`, `.item()`, code under `torch.no_grad()`) are held at their values, and gradient
    hooks registered in the forward are left out. A direction whose two evaluations take
    different branches at a kink (ReLU, max-pooling, clamp, abs, round, a comparison) proves
    nothing and is replaced; the parameters are first moved off exact kinks by a tiny random
    shift. A `Function` whose forward is locally constant (a straight-through estimator) or
    returns its input with a constantly scaled backward (gradient scaling or reversal) is
    deliberate: it is noted, held constant in the whole check, and never reported.

    ## Why is this bad?
    A wrong `backward` trains the model on gradients of a different function. Nothing crashes:
    the loss just falls more slowly, or not at all, and the bug can survive for months.

    ## Example
    ```python
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * x  # the derivative of x² is 2x
    ```

    ## Use instead
    ```python
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 2 * x
    ```

    ## References
    - PyTorch, `torch.autograd.gradcheck` and its fast mode (random projections).
    """

    code = "GL704"
    name = "gradient-check-failed"
    severity = Severity.ERROR
    summary = "Finite differences (float64) disagree with autograd: a wrong backward"
    fix_title = "Fix the backward of the named Function or module"

    def measured(self, facts: ProbeFacts, options: Mapping[str, Any]) -> Iterator[Measured]:
        for failure in facts.gradcheck_failures:
            what = (f"custom autograd.Function `{failure.name}`" if failure.kind == "function"
                    else f"module `{failure.name or '(model)'}` ({failure.type_name})")
            numbers = (f"autograd gives {failure.autograd:.6g}, finite differences {failure.numeric:.6g} "
                       "along a random direction") if math.isfinite(failure.autograd) else failure.detail
            data = {"kind": failure.kind, "target": failure.name, "autograd": failure.autograd,
                    "numeric": failure.numeric}
            yield Measured(f"gradient check failed for {what}: {numbers}",
                           failure.name if failure.kind == "module" else None, data, span=failure.span)
