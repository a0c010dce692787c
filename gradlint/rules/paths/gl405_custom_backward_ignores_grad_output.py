"""GL405 custom-backward-ignores-grad-output: an autograd.Function.backward that never reads its gradients."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.numerics.base import SiteRule
from gradlint.facts.numerics import Site


class CustomBackwardIgnoresGradOutput(SiteRule):
    """
    ## What it does
    Flags the `backward` of a `torch.autograd.Function` subclass that returns a value but never
    reads the values of its gradient arguments (the parameters after `ctx`): not at all, or only
    for their shape, dtype or device (`torch.ones_like(grad_output)`, `grad_output.shape`,
    `grad_output.new_zeros(n)`: a straight-through estimator that forgot `grad_output *`).

    Not flagged: a backward that returns only `None` or zeros (`torch.zeros_like(grad_output)`:
    the inputs get no gradient, on purpose; also a list built only of `None`, returned as
    `tuple(grad_input)`) or raises, straight-through estimators that return the incoming
    gradient, and the backward of a Function whose forward returns only a placeholder: a value
    that depends on none of its inputs (`torch.tensor(1.0)`, `x.new_empty(0)`), or a parameter
    or attribute it does not compute named `dummy`, `phony` or `placeholder`. Such an output is
    an extra edge that makes autograd run the backward; its gradient carries nothing, and the
    backward takes the real one from `ctx` (a pipeline stage, an async collective's buffer).

    ## Why is this bad?
    The chain rule multiplies the local derivative by the gradient flowing in from above. A
    backward that ignores it returns the same gradient whatever the loss is: the upstream layers
    are trained towards a fixed direction, independent of the objective.

    ## Example
    ```python
    class Clip(torch.autograd.Function):
        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return (x.abs() < 1).float()
    ```

    ## Use instead
    ```python
    class Clip(torch.autograd.Function):
        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return grad_output * (x.abs() < 1).float()
    ```
    """

    code = "GL405"
    probe_measure = "gradient_check"
    kinds = frozenset({"backward_ignores_grad"})
    name = "custom-backward-ignores-grad-output"
    severity = Severity.ERROR
    summary = "A custom autograd backward that ignores the incoming gradient"

    invalid = [
        Example("import torch\n\nclass Clip(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return x.clamp(-1, 1)\n\n"
                "    @staticmethod\n    def backward(ctx, grad_output):\n"
                "        (x,) = ctx.saved_tensors\n        return (x.abs() < 1).float()\n"),
        Example("from torch.autograd import Function\n\nclass Scale(Function):\n"
                "    @staticmethod\n    def forward(ctx, x, s):\n        ctx.s = s\n        return x * s\n\n"
                "    @staticmethod\n    def backward(ctx, *grads):\n        return ctx.s, None\n"),
        Example("import torch\n\nclass ClippedRound(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return x.round().clamp(-8, 8)\n\n"
                "    @staticmethod\n    def backward(ctx, grad_output):\n        (x,) = ctx.saved_tensors\n"
                "        grad_input = torch.ones_like(grad_output)\n        grad_input[x.abs() > 8] = 0\n        return grad_input\n",
                note="reads the gradient only for its shape"),
    ]
    valid = [
        Example("import torch\n\nclass STE(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x):\n        return x.round()\n\n"
                "    @staticmethod\n    def backward(ctx, grad_output):\n        return grad_output\n",
                note="straight-through estimator"),
        Example("import torch\n\nclass Mark(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x):\n        return x\n\n"
                "    @staticmethod\n    def backward(ctx, g):\n        return None\n", note="returns only None"),
        Example("import torch\n\nclass Phony(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, *x):\n        return torch.tensor(1.0)\n\n"
                "    @staticmethod\n    def backward(ctx, grad):\n        return ctx.grad_from_pipeline\n",
                note="the forward returns a placeholder; the gradient comes through ctx"),
        Example("import torch\n\nclass Recompute(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, phony, x):\n        ctx.save_for_backward(x)\n        return phony\n\n"
                "    @staticmethod\n    def backward(ctx, *grad_output):\n"
                "        grad_input = [None, None]\n        grad_input.extend(None for _ in ctx.saved_tensors)\n"
                "        return tuple(grad_input)\n", note="a list of None"),
        Example("import torch\n\nclass Clip(torch.autograd.Function):\n"
                "    @staticmethod\n    def backward(ctx, grad_output):\n"
                "        (x,) = ctx.saved_tensors\n        return grad_output * (x.abs() < 1).float()\n"),
        Example("import torch\n\nclass ClippedRound(torch.autograd.Function):\n"
                "    @staticmethod\n    def backward(ctx, grad_output):\n        (x,) = ctx.saved_tensors\n"
                "        mask = torch.ones_like(grad_output)\n        mask[x.abs() > 8] = 0\n        return grad_output * mask\n",
                note="the shape for a mask, the value for the gradient"),
    ]

    def message(self, site: Site, ctx: RuleContext) -> str:
        data = dict(site.data)
        args = ", ".join(data.get("arguments", ()))
        if data.get("shape"):
            return (f"`{site.detail}` reads its gradient argument(s) ({args}) only for their shape "
                    f"(`{data['shape'][0]}`): the gradient it returns does not depend on the loss")
        return (f"`{site.detail}` never reads its gradient argument(s) ({args}): the gradient it returns does "
                "not depend on the loss")
