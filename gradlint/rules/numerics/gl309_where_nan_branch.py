"""GL309 where-nan-branch: torch.where with log/sqrt/division of an unclamped value in a branch."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.numerics.base import SiteRule
from gradlint.facts.numerics import Site, holds


class WhereNanBranch(SiteRule):
    """
    ## What it does
    Flags `torch.where(cond, a, b)` (and `x.where(cond, y)`) where a branch is `log`, `sqrt`,
    `rsqrt`, `reciprocal`, `acos`/`asin` or a division of an operand that is not clamped, shifted
    by an eps or guarded by an inner `where` before the operation. ONNX graphs are read too
    (the ONNX front-end matches the pattern). A branch written as a local name is read as the
    expression it is bound to (`k_pos = a / b` then `torch.where(c, k_pos, k_neg)`, reported at
    the binding) when the function binds it once, in a statement of its own body before the
    where (not in a branch or loop), and never changes it in place.

    Carries gradient: the operand of the unsafe op (or, for a division, the numerator or the
    divisor) must depend on parameters (a module's layers or `nn.Parameter`s, or a leaf made with
    `requires_grad=True`); a where over constants, plain inputs or config values is not flagged.
    In a helper, an operand made of its parameters carries gradient when every caller in the
    project passes, for one of them, a tensor that does (a model's output), also where the helper
    is passed as a value (`fit(model, loader, deviance)` with `loss_fn(model(x), counts)` in `fit`).
    A loss module's prediction carries gradient, though the training step that passes it is not
    seen: in the forward of a class named `...Loss` or deriving from a torch loss, the first
    parameter not named as ground truth or a mask (`forward(rate, counts)`) and any named as made
    by the model, also in a helper the forward hands it to.

    When the unsafe branch is itself a hand-written unstable function (`log(1 + exp(x))`),
    GL305 reports that line instead (one finding per line); when it is a sqrt of a sum of
    squares and GL306 is on, GL306 reports that operation instead (its eps makes the branch safe).

    Can run with grad: not under `torch.no_grad()`/`inference_mode()` (a with-block or a
    decorator), and not in a function that the project calls only from such code, through any
    chain of its functions (a helper of a `@torch.no_grad()` pipeline `__call__`, in the same file
    or another). A function with no caller in the project, one read as a value, an entry point
    (`forward`, `training_step`, `__call__`...), or one called through a receiver whose class is
    unknown can run with grad.

    ## Why is this bad?
    `where` selects values, but autograd differentiates both branches everywhere and multiplies
    the unselected one by 0: an infinite local gradient times 0 is NaN. Measured in torch:
    the gradient of `torch.where(x > 0, torch.log(x), 0.0).sum()` at x = 0 is NaN, although
    the forward value is 0. The fix is to make the operand safe before the op (the "double
    where" trick), not to mask the result.

    ## Example
    ```python
    y = torch.where(x > 0, torch.log(x), torch.zeros_like(x))
    ```

    ## Use instead
    ```python
    safe = torch.where(x > 0, x, torch.ones_like(x))
    y = torch.where(x > 0, torch.log(safe), torch.zeros_like(x))
    ```

    ## References
    - JAX FAQ, "Gradients contain NaN where using where" (the same autograd rule holds in PyTorch)
    """

    code = "GL309"
    probe_measure = "first_nonfinite"
    kinds = frozenset({"unsafe_where_branch"})
    needs_grad = True
    name = "where-nan-branch"
    severity = Severity.WARNING
    summary = "torch.where with an unsafe op in a branch (NaN gradient leaks through the mask)"
    inputs = frozenset({"python", "onnx"})

    invalid = [
        Example("import torch\nfrom torch import nn\n\n\nclass Lens(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        self.c = nn.Parameter(torch.tensor(5.0))\n\n"
                "    @staticmethod\n    def _f(x):\n"
                "        return torch.where(x > 1, (x ** 2 - 1).sqrt(), (1 - x ** 2).sqrt())\n\n"
                "    def forward(self, r):\n        return self._f(r / self.c)\n",
                note="in a static method the class calls with a value that carries gradient "
                     "(caustics' NFW lens, Ciela-Institute/caustics#83)"),
        Example("import torch\n\ndef f(x):\n    x = torch.nn.Parameter(x)\n    return torch.where(x > 0, torch.log(x), torch.zeros_like(x))\n"),
        Example("import torch\nfrom torch import nn\n\n\nclass Corr(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        self.f = nn.Linear(4, 4)\n\n    def forward(self, a, b):\n"
                "        c = (torch.tanh(self.f(a)) - torch.tanh(self.f(b))).clamp(-0.99, 0.99)\n"
                "        return torch.where(c != 0, torch.log(c ** 2), torch.zeros_like(c)).sum()\n",
                note="a margin from ±1 says nothing of the square's distance from 0"),
        Example("import torch\n\ndef f(x):\n    x = torch.nn.Parameter(x)\n    return torch.where(x > 0, x.sqrt(), 0.0)\n"),
        Example("import torch\n\ndef f(s, d):\n    s = torch.nn.Parameter(s)\n    n = d.sum(-1)\n    return torch.where(n > 0, s / n, torch.zeros_like(s))\n"),
        Example("import torch\n\ndef f(x):\n    x = torch.nn.Parameter(x)\n    return torch.where(x.abs() < 1, torch.zeros_like(x), torch.reciprocal(x))\n"),
        Example("import torch\n\ndef f(s, mask):\n    s = torch.nn.Parameter(s)\n    n = mask.sum(-1)\n    return torch.where(n > 0, s / n, 0.0)\n",
                note="a count without gradient still poisons the numerator's gradient (measured: NaN)"),
        Example("import torch\n\ndef deviance(rate, y):\n    rate = torch.nn.Parameter(rate)\n"
                "    return torch.where(y > 0, y * torch.log(y / rate), torch.zeros_like(y))\n",
                note="the op inside the branch's arithmetic (measured: NaN)"),
        Example("import torch\nfrom torch import nn\n\n\nclass PoissonLoss(nn.Module):\n"
                "    def forward(self, rate, counts):\n"
                "        return torch.where(rate > 0, counts * torch.log(rate) - rate, -rate).mean()\n",
                note="a loss's prediction (its first parameter)"),
    ]
    valid = [
        Example("import torch\n\ndef f(x):\n    safe = torch.where(x > 0, x, torch.ones_like(x))\n"
                "    return torch.where(x > 0, torch.log(safe), torch.zeros_like(x))\n", note="double where"),
        Example("import torch\n\ndef f(x):\n    return torch.where(x > 0, torch.log(x.clamp(min=1e-12)), 0.0)\n",
                note="clamped before the op"),
        Example("import torch\n\ndef f(x, eps=1e-8):\n    return torch.where(x > 0, torch.sqrt(x + eps), 0.0)\n",
                note="eps-shifted"),
        Example("import torch\n\ndef f(x, y):\n    x = torch.nn.Parameter(x)\n"
                "    return torch.where(x > 0, y * torch.log(x.clamp(min=1e-12)), 0.0)\n",
                note="clamped inside the branch's arithmetic"),
        Example("import torch\n\ndef f(x):\n    return torch.where(x > 0, x / 2.0, x)\n", note="division by a literal"),
        Example("import torch\n\ndef f(inv_freq, wavelen, low, factor):\n"
                "    return torch.where(wavelen > low, inv_freq / factor, inv_freq)\n",
                note="division by a plain name (a config number)"),
        Example("import torch\n\ndef f(s, mask):\n    n = mask.sum(-1).clamp(min=1)\n    return torch.where(n > 0, s / n, 0.0)\n",
                note="a clamped count"),
        Example("import torch\n\n@torch.no_grad()\ndef f(x):\n    return torch.where(x > 0, torch.log(x), 0.0)\n",
                note="no-grad"),
        Example("import math\nimport torch\n\ndef sinc(cutoff, n):\n    t = 2 * cutoff * torch.arange(n)\n"
                "    return torch.where(t == 0, torch.ones_like(t), torch.sin(math.pi * t) / t)\n",
                note="a constant filter: nothing upstream carries gradient"),
        Example("import torch\nfrom torch import nn\n\n\nclass PoissonLoss(nn.Module):\n"
                "    def forward(self, rate, counts):\n"
                "        return torch.where(counts > 0, counts * torch.log(counts), 0.0).mean() - rate.mean()\n",
                note="the log of a loss's target (its second parameter): no gradient"),
    ]

    def graph_message(self, hazard) -> str:
        op = hazard.data["branch"]
        return (f"Where selects between branches, one of which is {op} of an "
                "unclamped input: where it is masked out its NaN/inf still flows into "
                "the gradient (0 * inf = NaN); clamp the operand before the "
                f"{op}")

    def message(self, site: Site, ctx: RuleContext) -> str | None:
        if "GL305" in ctx.enabled and any(
                other.kind == "hand_written_unstable" and other.span.line == site.span.line
                for other in ctx.facts.numerics.sites):
            # One finding per line: the hand-written function (GL305, whose fix removes the
            # where's unsafe branch altogether) is the more specific report.
            return None
        if "GL306" in ctx.enabled and any(
                other.kind == "sqrt_near_zero" and other.span == site.span and holds(other, ctx.index)
                for other in ctx.facts.numerics.sites):
            # One finding per operation: a sqrt of a sum of squares in the branch is GL306's,
            # whose eps makes the branch safe too (and comes with a fix).
            return None
        op = "division by" if site.variant == "division" else f"{site.variant} of"
        return (f"torch.where branch computes {op} unclamped `{site.detail}`: the masked-out branch's "
                "infinite gradient times 0 is NaN; make the operand safe before the op")
