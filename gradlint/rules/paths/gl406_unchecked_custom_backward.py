"""GL406 unchecked-custom-backward: an autograd.Function with a hand-written backward and no gradcheck."""

from __future__ import annotations

from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.registry import Example, Rule, RuleContext


_BASE_OP = """\
import torch
from torch import nn


class _ScaledFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x * scale

    @staticmethod
    def backward(ctx, g):
        return g * ctx.scale, None


class DoubleFunction(_ScaledFunction):
    pass


def double(x):
    return DoubleFunction.apply(x, 2.0)


class Double(nn.Module):
    def forward(self, x):
        return double(x)
"""

_PARAMETRIZED_TEST = """\
import pytest
import torch
from torch.autograd import gradcheck

from example import Double

MODULES = [Double]


@pytest.mark.parametrize("Module", MODULES)
def test_module(Module):
    f = Module()
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(f, (x,))
"""


class UncheckedCustomBackward(Rule):
    """
    ## What it does
    Reports a `torch.autograd.Function` subclass with a hand-written `backward` when no
    `torch.autograd.gradcheck`/`gradgradcheck` of it appears anywhere in the project (every
    file under its root, checked or not) — called on `Fn.apply`, on a name bound to
    `Fn.apply`, on a module-level function that calls `Fn.apply`, or on an instance of a class
    whose methods do (`f = Sparsemax(dim=0); gradcheck(f, (x,))`, also with the class a
    parameter of a test that `pytest.mark.parametrize` gives classes); a gradcheck of a Function
    that derives from one checks the backward it inherits. `gradlint probe` checks such functions numerically (GL704).

    Not flagged: backwards that are deliberately no derivative of their forward, which a
    gradcheck fails by design: a straight-through estimator (a forward such as `round(x)` or
    `sign(x)` whose backward only returns the incoming gradient, or None, also under another
    name: `g = grad_output.clone(); return g`) and gradient reversal or scaling (a pass-through
    forward such as `x.view_as(x)` whose backward returns the gradient times another factor:
    `-ctx.alpha * g`, `g * ctx.scale`, `g.mul(ctx.scale)`, also through a local name:
    `output = grad_output.neg() * ctx.alpha; return output, None`) or clipping (`torch.clamp(g, -c, c)`), also behind an
    input check that only raises; the identity with its true derivative (a forward that returns
    its inputs, detached or copied, and a backward that returns the gradients: nothing to check);
    surrogate gradients (a backward that gives a gradient to an input on which the forward's
    outputs do not depend differentiably: one it never reads, PhiMoE's SparseMixer, or reads
    only for its shape, for an `argmin` or through values it marks with
    `ctx.mark_non_differentiable`: a VQ-VAE's straight-through to its inputs); a backward that
    only raises (the Function declares itself non-differentiable), or only returns None or zeros
    (it passes no gradient on, on purpose: an `argmax` forward); a backward that lets
    `torch.autograd.grad` compute the gradient (a Function that only routes it); a backward
    handed its derivative (a callable the forward was passed and kept on ctx,
    `ctx.gradient_function(x)`, or an op dispatched by a name made at run time,
    `torch._C._dispatch_call_boxed`: the gradcheck belongs to each derivative it is given); and
    collectives, whose forward or backward calls
    `torch.distributed` (an all-reduce, all-gather, all-to-all, the group's rank or size) or a
    collective by its name on another process-group object (`gang.all_reduce(x)`, or a halo
    exchange, `data.forward_exchange(...)`/`reverse_exchange`, as LAMMPS hands mace), directly
    or through a function of the same file: a gradcheck in one process has no group to run them.

    ## Why is this bad?
    A hand-written backward is the one place where autograd trusts the programmer. A wrong
    sign, a missing factor or a transposed shape trains silently towards the wrong objective;
    `gradcheck` compares it with finite differences in float64 in a few milliseconds.

    ## Example
    ```python
    class MyOp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x): ...
        @staticmethod
        def backward(ctx, g): ...
    ```

    ## Use instead
    ```python
    # tests/test_ops.py
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(MyOp.apply, (x,))
    ```
    """

    code = "GL406"
    probe_measure = "gradient_check"
    name = "unchecked-custom-backward"
    severity = Severity.INFO
    # Off by default (issue 10): on the 48-library corpus 64 of its 84 findings are right (76%,
    # under the 90% a default rule needs); the wrong ones are surrogate, natural-gradient and
    # approximate backwards, which only their docstrings tell apart. Opt in with --select GL406.
    default_enabled = False
    summary = "A custom autograd backward that no gradcheck in the project covers"

    invalid = [
        Example("import torch\n\nclass Gate(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x, w):\n        ctx.save_for_backward(w)\n        return x.clone()\n\n"
                "    @staticmethod\n    def backward(ctx, g):\n        (w,) = ctx.saved_tensors\n        return g * w.sigmoid(), None\n",
                note="an identity forward whose backward computes a gradient of its own"),
        Example("import torch\n\nclass MyOp(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x):\n        return x * 2\n\n"
                "    @staticmethod\n    def backward(ctx, g):\n        return g * 2\n"),
        Example(_BASE_OP, files=(("test_ops.py", _PARAMETRIZED_TEST.replace("MODULES = [Double]", "MODULES = []")),),
                note="the parametrized test runs no module of the Function"),
        Example("import torch\n\nclass Square(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return x * x\n\n"
                "    @staticmethod\n    def backward(ctx, g):\n        (x,) = ctx.saved_tensors\n        return 2 * x * g\n",
                note="a derivative computed from a saved tensor"),
        Example("import torch\n\nclass Linear(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x, w):\n        ctx.save_for_backward(x, w)\n"
                "        out = torch.empty(x.shape[0], w.shape[0])\n        _matmul_kernel(x, w, out)\n"
                "        return out\n\n"
                "    @staticmethod\n    def backward(ctx, g):\n        x, w = ctx.saved_tensors\n"
                "        grad_x = grad_w = None\n"
                "        if ctx.needs_input_grad[0]:\n            grad_x = g @ w\n"
                "        if ctx.needs_input_grad[1]:\n            grad_w = g.t() @ x\n"
                "        return grad_x, grad_w\n",
                note="a kernel filling its output from both inputs: each gradient is a derivative"),
    ]
    valid = [
        Example("import torch\nfrom torch.autograd import Function\n\n\nclass IdentitySTE(Function):\n"
                "    @staticmethod\n    def backward(ctx, grad_output):\n        return grad_output\n\n\n"
                "class RoundSTE(IdentitySTE):\n    @staticmethod\n    def forward(ctx, x):\n        return x.round()\n",
                note="a straight-through base with no forward of its own, whose subclasses round (botorch)"),
        Example("import torch\n\nclass DetachMultiple(torch.autograd.Function):\n"
                "    @classmethod\n    def forward(cls, ctx, *tensors):\n"
                "        detached = tuple(t.detach() for t in tensors)\n        for t in detached:\n"
                "            t.requires_grad_()\n        return detached\n\n"
                "    @classmethod\n    def backward(cls, ctx, *grads):\n        return grads\n",
                note="the identity with its true derivative: a gradcheck tests nothing (x-transformers)"),
        Example("import torch\n\nclass ClipGrad(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, acts, clamp):\n        if clamp < 0:\n"
                "            raise ValueError('clamp must be positive')\n        res = acts.new(acts)\n"
                "        ctx.clamp = clamp\n        return res\n\n"
                "    @staticmethod\n    def backward(ctx, grad_output):\n"
                "        grad_output = torch.clamp(grad_output, -ctx.clamp, ctx.clamp)\n        return grad_output, None\n",
                note="gradient clipping by design (espnet's LogSoftmaxGradModification)"),
        Example(_BASE_OP, files=(("test_ops.py", _PARAMETRIZED_TEST),),
                note="gradchecked through module instances of a parametrized test, whose Functions "
                     "inherit the backward (entmax's losses)"),
        Example("import torch\n\nclass MyOp(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x):\n        return x * 2\n\n"
                "    @staticmethod\n    def backward(ctx, g):\n        return g * 2\n",
                files=(("test_ops.py", "import torch\nfrom example import MyOp\n\n"
                        "def test_grad():\n    x = torch.randn(3, dtype=torch.float64, requires_grad=True)\n"
                        "    assert torch.autograd.gradcheck(MyOp.apply, (x,))\n"),),
                note="gradchecked in another file of the project"),
        Example("import torch\nfrom torch.autograd import gradcheck\n\nclass MyOp(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x):\n        return x * 2\n\n"
                "    @staticmethod\n    def backward(ctx, g):\n        return g * 2\n\n"
                "my_op = MyOp.apply\n\n"
                "def check():\n    x = torch.randn(3, dtype=torch.float64, requires_grad=True)\n"
                "    return gradcheck(my_op, (x,))\n", note="through an alias"),
        Example("import torch\n\nclass ArgMax(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x):\n        return x.argmax(-1)\n\n"
                "    @staticmethod\n    def backward(ctx, g):\n        return None\n",
                note="a backward that passes no gradient on: nothing to check"),
        Example("import torch\n\nclass Fwd(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x):\n        return x * 2\n",
                note="no hand-written backward"),
        Example("import torch\n\nclass RoundSTE(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x):\n        return torch.round(x)\n\n"
                "    @staticmethod\n    def backward(ctx, grad_output):\n        return grad_output\n",
                note="straight-through: the backward is no derivative of round, by design"),
        Example("import torch\n\nclass GradReverse(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x, alpha):\n        ctx.alpha = alpha\n        return x.view_as(x)\n\n"
                "    @staticmethod\n    def backward(ctx, g):\n        return g.neg() * ctx.alpha, None\n",
                note="gradient reversal (DANN)"),
        Example("import torch\n\nclass GradScale(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x, scale):\n"
                "        if not x.dtype.is_floating_point:\n            raise TypeError('x must be a float tensor')\n"
                "        ctx.scale = scale\n        return x.detach().clone()\n\n"
                "    @staticmethod\n    def backward(ctx, grad_output):\n        return grad_output * ctx.scale, None\n",
                note="gradient scaling behind an input check"),
        Example("import torch\n\nclass QuantSTE(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, w):\n        scale = 1.0 / w.abs().mean().clamp(min=1e-5)\n"
                "        return (w * scale).round().clamp(-1, 1) / scale\n\n"
                "    @staticmethod\n    def backward(ctx, grad_output):\n        grad_input = grad_output.clone()\n"
                "        return grad_input\n",
                note="straight-through, the gradient returned under another name"),
        Example("import torch\nimport torch.distributed as dist\n\n"
                "def _gather(x, group):\n    out = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]\n"
                "    dist.all_gather(out, x, group=group)\n    return torch.cat(out)\n\n"
                "class AllGather(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x, group):\n        ctx.group = group\n        return _gather(x, group)\n\n"
                "    @staticmethod\n    def backward(ctx, g):\n"
                "        dist.all_reduce(g, group=ctx.group)\n        return g, None\n",
                note="a collective: a gradcheck in one process has no process group"),
        Example("import torch\n\nclass ReduceOnBackward(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, x, gang):\n        ctx.gang = gang\n        return x\n\n"
                "    @staticmethod\n    def backward(ctx, g):\n        ctx.gang.all_reduce(g)\n        return g, None\n",
                note="a collective through the project's own process-group object"),
        Example("import torch\n\nclass SparseMixer(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, scores, multiplier, mask):\n"
                "        ctx.save_for_backward(multiplier)\n        return multiplier * mask\n\n"
                "    @staticmethod\n    def backward(ctx, g):\n        (multiplier,) = ctx.saved_tensors\n"
                "        return g * multiplier, None, None\n",
                note="a surrogate gradient for `scores`, which the forward never reads"),
        Example("import torch\n\nclass VQStraightThrough(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, inputs, codebook):\n"
                "        indices = torch.cdist(inputs, codebook).argmin(-1)\n"
                "        ctx.mark_non_differentiable(indices)\n        ctx.save_for_backward(indices, codebook)\n"
                "        return codebook[indices].view_as(inputs), indices\n\n"
                "    @staticmethod\n    def backward(ctx, grad_output, grad_indices):\n"
                "        grad_inputs = grad_codebook = None\n"
                "        if ctx.needs_input_grad[0]:\n            grad_inputs = grad_output.clone()\n"
                "        if ctx.needs_input_grad[1]:\n            indices, codebook = ctx.saved_tensors\n"
                "            grad_codebook = torch.zeros_like(codebook).index_add_(0, indices, grad_output)\n"
                "        return grad_inputs, grad_codebook\n",
                note="straight-through to `inputs`, on which the codes depend only through an argmin"),
        Example("import torch\n\nclass InputOnlyGrad(torch.autograd.Function):\n"
                "    @staticmethod\n    def forward(ctx, inputs, function):\n"
                "        with torch.enable_grad():\n            outputs = function(inputs)\n"
                "        ctx.save_for_backward(inputs, outputs)\n        return outputs.detach()\n\n"
                "    @staticmethod\n    def backward(ctx, grad_outputs):\n        inputs, outputs = ctx.saved_tensors\n"
                "        return torch.autograd.grad(outputs, inputs, grad_outputs)[0], None\n",
                note="autograd computes the gradient: the Function only routes it"),
    ]

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        facts = getattr(ctx.facts, "numerics", None)
        if facts is None:
            return
        for cls in facts.classes:
            if cls.autograd_function and cls.custom_backward and not (
                    ctx.index is not None and ctx.index.is_gradchecked(cls.name)):
                yield ctx.finding(
                    f"autograd.Function `{cls.name}` has a hand-written backward and no gradcheck of it in the "
                    "project; add a torch.autograd.gradcheck test (gradlint probe checks it too)", cls.span)
