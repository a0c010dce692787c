"""GL307 divide-by-norm-without-eps: x / x.norm(), x / x.std(), x / sqrt(var) with no eps."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.numerics.base import SiteRule
from gradlint.rules.numerics.examples import LEAF
from gradlint.facts.numerics import Site


# a loss class: its forward's parameters and body
_LOSS = "import torch\nfrom torch import nn\n\n\nclass SpecLoss(nn.Module):\n    def forward(self, {params}):\n        {body}\n"
_MODULE = 'import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.f = nn.Linear(8, 8)\n\n    def forward(self, a, b):\n        x = self.f(a) - b\n'


class DivideByNormWithoutEps(SiteRule):
    """
    ## What it does
    Flags divisions (`/`, `/=`, `torch.div`, `.div`) by `x.norm(...)`, `torch.linalg.norm`,
    `x.std(...)` or `torch.sqrt(x.var(...))` with no eps added and no `clamp(min=...)`,
    through local variables. ONNX graphs are read too (the ONNX front-end matches the pattern, and
    reads a learned projection's output there as here: a MatMul, Gemm or Conv with a weight
    initializer, an embedding Gather, a norm with its scale, a softmax or sigmoid, two of them
    added; through reshapes and bias adds).

    Not flagged: `F.normalize`, `layer_norm`, norm layers (they add eps), detached or no-grad
    operands, data pipelines (datasets, transforms).

    Carries gradient: the divided value or the divisor must depend on parameters (a module's
    layers or `nn.Parameter`s, or a leaf made with `requires_grad=True`, `W.requires_grad_()` or
    `W.requires_grad = True`; `x.matmul(W)` carries W's gradient whatever x is). Dividing the
    output of a learned projection by its own norm (CLIP-style embeddings) is not flagged: that
    vector is never exactly zero, nor is it plus the output of another known module of the class
    (`t + self.prompts(t, img)`). A difference, a ReLU output, a masked value, or a learned
    output plus its own input (a zero-initialised adapter gives the input back) can be, and is
    flagged. A loss module's prediction carries gradient and may be all zero (a silent separated
    signal, a ReLU'd or masked output), though the training step that passes it is not seen: in
    the forward of a class named `...Loss` or deriving from a torch loss, the first parameter
    not named as ground truth or a mask (`forward(input, target)`, ESPnet's `forward(target,
    estimate)`) and any named as made by the model (`pred_masks`, `duration_outputs`); the target
    is not flagged.

    Can run with grad: not under `torch.no_grad()`/`inference_mode()` (a with-block or a
    decorator), and not in a function that the project calls only from such code, through any
    chain of its functions (a helper of a `@torch.no_grad()` pipeline `__call__`, in the same file
    or another). A function with no caller in the project, one read as a value, an entry point
    (`forward`, `training_step`, `__call__`...), or one called through a receiver whose class is
    unknown can run with grad.

    ## Why is this bad?
    An all-zero vector (padding, a dead feature, a constant channel) gives 0/0: the output and
    the gradient are NaN. Measured in torch: the gradient of `(a / a.norm()).sum()` at a = 0 is
    `[nan, nan, nan]`. `F.normalize` divides by `max(norm, eps)`.

    ## Example
    ```python
    emb = emb / emb.norm(dim=-1, keepdim=True)
    ```

    ## Use instead
    ```python
    emb = F.normalize(emb, dim=-1)
    ```
    """

    code = "GL307"
    probe_measure = "first_nonfinite"
    kinds = frozenset({"divide_by_norm"})
    needs_grad = True
    name = "divide-by-norm-without-eps"
    severity = Severity.WARNING
    # Off by default (issue 10's rule: a rule below the precision goal on the corpus is opt-in):
    # on the bench/corpus.sh corpus with the carries-gradient and dense-output checks it gave
    # 0 of 1 right: x_clip's text embeddings after a learned prompt of a class of another file
    # (bench/judged.tsv). Opt in with --select GL307.
    default_enabled = False
    summary = "Division by a norm or std with no eps (0/0 = NaN)"
    inputs = frozenset({"python", "onnx"})

    invalid = [
        Example("import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        self.adapter = nn.Linear(16, 16, bias=False)\n"
                "        nn.init.zeros_(self.adapter.weight)\n\n    def forward(self, x):\n"
                "        h = x + self.adapter(x)\n        return h / h.norm(dim=-1, keepdim=True)\n",
                note="a zero-initialised adapter added to its input: a zero row of the input stays zero"),
        Example(_MODULE + "        return x / x.norm(dim=-1, keepdim=True)\n"),
        Example(_MODULE + "        return (x - x.mean(0)) / x.std(0)\n"),
        Example(_MODULE + "        var = x.var(-1, keepdim=True)\n        return x / torch.sqrt(var)\n"),
        Example(_MODULE + "        n = torch.linalg.norm(x, dim=1, keepdim=True)\n        x /= n\n        return x\n"),
        Example(_MODULE + "        return torch.div(x, x.norm(p=2, dim=1, keepdim=True))\n"),
        Example(LEAF.format(make="torch.randn(3, 4)\n    W.requires_grad = True", use="(x @ W) / (x @ W).norm()"),
                note="a leaf made to require grad by `W.requires_grad = True`"),
        Example(_MODULE + "        eps = 0\n        return x / (x.norm(dim=-1, keepdim=True) + eps)\n",
                note="an eps bound to 0 is no eps"),
        Example(_LOSS.format(params="target, estimate", body="estimate = estimate / torch.std(estimate, dim=1, keepdim=True)\n"
                             "        return (estimate - target).abs().mean()"),
                note="a loss's prediction, after its target: 0/0 for a silent estimate (espnet/espnet#6309)"),
        Example(_LOSS.format(params="y, y_hat", body="y_hat = y_hat / y_hat.norm(dim=-1, keepdim=True)\n"
                             "        return (y_hat - y).abs().mean()"),
                note="`y` is the target, `y_hat` the prediction"),
    ]
    valid = [
        Example("import torch\nfrom torch import nn\n\n\nclass Pool(nn.Module):\n"
                "    def __init__(self):\n        super().__init__()\n        self.mlp = nn.Linear(8, 4)\n\n"
                "    def forward(self, x):\n        s = torch.softmax(self.mlp(x), dim=-1)\n"
                "        ss = torch.matmul(s.transpose(1, 2), s)\n"
                "        return ss / torch.norm(ss, dim=(-1, -2), keepdim=True)\n",
                note="a product of softmax assignments has positive entries (torch_geometric's DMoN)"),
        Example("import torch.nn.functional as F\n\ndef f(x):\n    return F.normalize(x, dim=-1)\n"),
        Example("import torch.nn.functional as F\n\ndef f(x):\n    return F.layer_norm(x, x.shape[-1:])\n"),
        Example("import torch\nfrom torch import nn\n\nclass M(nn.Module):\n"
                "    def __init__(self):\n        super().__init__()\n        self.norm = nn.LayerNorm(8)\n\n"
                "    def forward(self, x):\n        return self.norm(x)\n"),
        Example("import torch\n\ndef f(x, eps=1e-6):\n    return x / (x.norm(dim=-1, keepdim=True) + eps)\n"),
        Example("import torch\n\ndef f(x):\n    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-6)\n"),
        Example("import torch\n\ndef f(adv):\n    return (adv - adv.mean()) / (adv.std() + 1e-8)\n"),
        Example("import torch\n\ndef f(x):\n    v = torch.randn(8)\n    return v / v.norm()\n",
                note="a random direction: no gradient"),
        Example("import torch\n\n@torch.no_grad()\ndef f(w):\n    return w / w.norm()\n", note="no-grad"),
        Example(LEAF.format(make="torch.randn(3, 4)", use="(x @ W) / (x @ W).norm()"),
                note="a random matrix: no gradient"),
        Example(_MODULE + "        eps = 1e-8\n        return x / (x.norm(dim=-1, keepdim=True) + eps)\n",
                note="an eps bound to a name"),
        Example("import torch\nfrom torch import nn\n\n\nclass Prompt(nn.Module):\n    def __init__(self, d):\n"
                "        super().__init__()\n        self.fc = nn.Linear(d, d)\n\n"
                "    def forward(self, t, img):\n        return self.fc(t) * img.mean()\n\n\nclass M(nn.Module):\n"
                "    def __init__(self, d):\n        super().__init__()\n        self.proj = nn.Linear(d, d)\n"
                "        self.prompts = Prompt(d)\n\n"
                "    def forward(self, x, img):\n        t = self.proj(x)\n        t = t + self.prompts(t, img)\n"
                "        return t / t.norm(dim=-1, keepdim=True)\n",
                note="a learned projection plus the output of another module of the class"),
        Example(_LOSS.format(params="input, target", body="target = target / torch.std(target, dim=1, keepdim=True)\n"
                             "        return (input - target).abs().mean()"),
                note="a loss's target carries no gradient"),
        Example("import torch\nfrom torch import nn\n\n\nclass Whiten(nn.Module):\n    def forward(self, x):\n"
                "        return x / x.std(dim=1, keepdim=True)\n",
                note="a module's input, no loss's prediction: what its callers pass is not known"),
    ]

    def graph_selects(self, hazard) -> bool:
        # the norm of a learned layer's output (the front-end names the layer), as in source
        return not hazard.data.get("learned")

    def graph_message(self, hazard) -> str:
        return (f"{hazard.node.op_type} by {hazard.data['divisor']} with no eps: a zero vector gives 0/0 "
                "(NaN) forward and backward; add an eps to the divisor")

    def message(self, site: Site, ctx: RuleContext) -> str:
        return (f"division by `{site.detail}` with no eps: 0/0 gives a NaN output and gradient for an "
                "all-zero input; add an eps, clamp(min=eps), or use F.normalize")
