"""GL308 acos-without-margin: acos/asin whose argument is not clamped strictly inside (-1, 1)."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.numerics.base import SiteRule
from gradlint.rules.numerics.examples import LEAF
from gradlint.facts.numerics import Site


_MODULE = 'import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.f = nn.Linear(8, 8)\n\n    def forward(self, a, b):\n        x = self.f(a) - b\n'


class AcosWithoutMargin(SiteRule):
    """
    ## What it does
    Flags `torch.acos`/`torch.asin` (and `arccos`/`arcsin`, `.acos()`) whose argument is not
    clamped strictly inside (-1, 1). `clamp(-1, 1)` is still flagged: it keeps the argument in
    the domain but not away from the ends. Not flagged: `clamp(-1 + eps, 1 - eps)` or any
    non-literal margin, a value known to lie in [-1, 1] (clamped to it, a
    `F.cosine_similarity`, or a cosine written out as a value over the product of two norms)
    times a number of size below 1 or divided by one above 1
    (`cos * (1 - 1e-6)`, `cos / (1 + 1e-6)`), constants, detached or no-grad operands. ONNX graphs are read too (the
    ONNX front-end matches the pattern).

    Carries gradient: the argument must depend on parameters (a module's layers or
    `nn.Parameter`s, or a leaf made with `requires_grad=True`, `W.requires_grad_()` or
    `W.requires_grad = True`; `x.matmul(W)` carries W's gradient whatever x is); angles of plain
    inputs are not flagged. A loss module's prediction carries gradient, though the training step
    that passes it is not seen: in the forward of a class named `...Loss` or deriving from a
    torch loss, the first parameter not named as ground truth or a mask (`forward(pred, target)`)
    and any named as made by the model, also in a helper the forward hands it to.

    Can run with grad: not under `torch.no_grad()`/`inference_mode()` (a with-block or a
    decorator), and not in a function that the project calls only from such code, through any
    chain of its functions (a helper of a `@torch.no_grad()` pipeline `__call__`, in the same file
    or another). A function with no caller in the project, one read as a value, an entry point
    (`forward`, `training_step`, `__call__`...), or one called through a receiver whose class is
    unknown can run with grad.

    ## Why is this bad?
    d acos(x)/dx = -1 / sqrt(1 - x²) is infinite at ±1, and a cosine similarity of two equal
    vectors is exactly 1 in floating point. Measured in torch: the gradient of
    `acos(x.clamp(-1, 1))` at x = 1 is -inf; with `clamp(-1 + 1e-7, 1 - 1e-7)` it is finite
    (-702 at x = 0.999999).

    ## Example
    ```python
    angle = torch.acos(torch.clamp(cos, -1.0, 1.0))
    ```

    ## Use instead
    ```python
    eps = 1e-7
    angle = torch.acos(torch.clamp(cos, -1.0 + eps, 1.0 - eps))
    ```
    """

    code = "GL308"
    probe_measure = "first_nonfinite"
    kinds = frozenset({"acos_near_one"})
    needs_grad = True
    name = "acos-without-margin"
    severity = Severity.WARNING
    summary = "acos/asin not clamped strictly inside (-1, 1) (infinite gradient at ±1)"
    inputs = frozenset({"python", "onnx"})

    invalid = [
        Example("import torch\nfrom torch import nn\n\n\nclass EdgeRotation(nn.Module):\n"
                "    def __init__(self):\n        super().__init__()\n        self.proj = nn.Linear(3, 3)\n\n"
                "    def forward(self, pos):\n"
                "        xyz = torch.nn.functional.normalize(self.proj(pos)).clamp(-1.0, 1.0)\n"
                "        x, y, z = torch.split(xyz, 1, dim=1)\n        return torch.acos(y)\n",
                note="a piece of a tensor clamped to [-1, 1], by torch.split"),
        Example("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\nclass M(nn.Module):\n"
                "    def __init__(self):\n        super().__init__()\n        self.f = nn.Linear(8, 8)\n\n"
                "    def forward(self, a, b):\n        return torch.acos(F.cosine_similarity(self.f(a), b))\n"),
        Example(_MODULE + "        c = self.f(a).sum(-1)\n        return torch.acos(torch.clamp(c, -1.0, 1.0))\n",
                note="clamp(-1, 1) is still flagged"),
        Example(_MODULE + "        y = self.f(a)\n"
                "        cos = (y * b).sum(-1) / (y.norm(dim=-1) * b.norm(dim=-1))\n"
                "        return torch.acos(cos)\n",
                note="a cosine written out, unclamped (rounding takes it past 1: NaN)"),
        Example(_MODULE + "        c = self.f(a).sum(-1).clamp(-1, 1)\n        return c.asin()\n"),
        Example(LEAF.format(make="torch.randn(3, 4, requires_grad=True)\n    x = torch.randn(5, 3)",
                            use="torch.acos(x.matmul(W))"),
                note="`x.matmul(W)` carries the gradient of its argument W, whatever x is"),
        Example(_MODULE + "        m = 1.0\n        c = self.f(a).sum(-1)\n        return torch.acos(c.clamp(-m, m))\n",
                note="bounds bound to a name: clamp(-1, 1) leaves no margin"),
        Example("import torch\n\n\ndef register(pose_net, images, R_true):\n"
                "    optimizer = torch.optim.Adam(pose_net.parameters())\n"
                "    R_pred, t_pred = pose_net(images)\n"
                "    cos = ((R_pred.transpose(-1, -2) @ R_true).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2\n"
                "    loss = torch.acos(cos).mean()\n    loss.backward()\n    optimizer.step()\n",
                note="an element of the output of a model the function trains (eigenvivek/nanodrr#31)"),
        Example("import torch\nfrom torch import nn\n\n\nclass AngularLoss(nn.Module):\n"
                "    def forward(self, pred, target):\n        cos = (pred * target).sum(-1)\n"
                "        return torch.acos(cos.clamp(-1, 1)).mean()\n",
                note="a loss's prediction: a unit prediction equal to its target gives exactly 1"),
    ]
    valid = [
        Example("import torch\n\ndef f(c, eps=1e-7):\n    return torch.acos(torch.clamp(c, -1 + eps, 1 - eps))\n"),
        Example("import torch\n\ndef f(c):\n    return torch.acos(c.clamp(-0.9999, 0.9999))\n"),
        Example("import torch\n\ndef f(c):\n    return torch.acos(c.detach())\n", note="detached"),
        Example("import torch\n\ndef f(c):\n    with torch.no_grad():\n        return torch.acos(c)\n", note="no-grad"),
        Example("import torch\n\nPI = torch.acos(torch.zeros(1)).item() * 2\n", note="a constant"),
        Example("import torch\n\ndef f(c):\n    return torch.acos(c)\n",
                note="a plain input: nothing upstream is known to carry gradient"),
        Example(LEAF.format(make="torch.randn(3, 4)\n    x = torch.randn(5, 3)", use="torch.acos(x.matmul(W))"),
                note="neither x nor W requires grad"),
        Example("import torch\n\n\ndef evaluate(pose_net, images, R_true):\n"
                "    R_pred, t_pred = pose_net(images)\n"
                "    cos = ((R_pred.transpose(-1, -2) @ R_true).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2\n"
                "    return torch.acos(cos).mean()\n",
                note="a model's output, but nothing here trains the model (no optimizer is given its parameters)"),
        Example(_MODULE + "        m = 1 - 1e-6\n        c = self.f(a).sum(-1)\n        return torch.acos(c.clamp(-m, m))\n",
                note="a margin through a name"),
        Example("import torch\nimport torch.nn.functional as F\n" + _MODULE.split("\n", 1)[1]
                + "        cos = F.cosine_similarity(self.f(a), self.f(b), dim=-1)\n"
                "        return torch.acos(cos * (1 - 1e-6))\n",
                note="a cosine similarity times a margin"),
        Example(_MODULE + "        x = self.f(a)\n"
                "        cos = (x * b).sum(-1) / (x.norm(dim=-1) * b.norm(dim=-1))\n"
                "        return torch.acos(0.95 * cos)\n",
                note="a cosine written out (a dot over the product of the norms) times a margin (torchani's angles)"),
        Example("import torch\nfrom torch import nn\n\n\nclass AngularLoss(nn.Module):\n"
                "    def forward(self, pred, target):\n        cos = (pred * target).sum(-1)\n"
                "        return torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7)).mean()\n",
                note="a loss's prediction, clamped with a margin"),
    ]

    def graph_message(self, hazard) -> str:
        lo, hi = hazard.data["lower"], hazard.data["upper"]
        if lo is not None and hi is not None:
            why = f"is clamped to [{lo:g}, {hi:g}], which reaches ±1"
        else:
            why = "is not clamped"
        return (f"{hazard.node.op_type} whose input {why}: the gradient 1/sqrt(1 - x²) is infinite "
                "at ±1; clamp to [-1 + eps, 1 - eps]")

    def message(self, site: Site, ctx: RuleContext) -> str:
        if site.variant == "loose-clamp":
            return (f"`{site.detail}` of a value clamped to [-1, 1]: its gradient is infinite at ±1; "
                    "clamp to (-1 + eps, 1 - eps)")
        return (f"`{site.detail}` of an unclamped value: its gradient is infinite at ±1 (equal vectors give "
                "exactly 1); clamp to (-1 + eps, 1 - eps)")
