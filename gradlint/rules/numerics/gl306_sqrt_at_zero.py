"""GL306 sqrt-at-zero: sqrt/rsqrt/pow(0.5) of a sum of squares with no eps."""

from __future__ import annotations

import re

from gradlint.findings import Edit, Fix, Severity, SourceSpan
from gradlint.registry import Example, RuleContext
from gradlint.rules.numerics.base import SiteRule
from gradlint.rules.numerics.examples import LEAF
from gradlint.facts.numerics import NumericsFacts, Site


_MODULE = 'import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.f = nn.Linear(8, 8)\n\n    def forward(self, a, b):\n        x = self.f(a) - b\n'

# a loss over the one-third-octave bands of its prediction's spectrogram (pytorch_stoi's NegSTOILoss)
_STOI = ("import torch\nfrom torch import nn\n\n\nclass NegSTOILoss(nn.Module):\n"
         "    def __init__(self, obm, win):\n        super().__init__()\n        self.register_buffer('obm', obm)\n"
         "        self.register_buffer('win', win)\n        self.nfft = 512\n\n"
         "    def forward(self, est_targets, targets):\n"
         "        spec = torch.stft(est_targets, self.nfft, window=self.win, return_complex=False)\n"
         "        ref = torch.stft(targets, self.nfft, window=self.win, return_complex=False)\n"
         "        est = {root}\n        return -(est * ref.sum(-1)).mean()\n")

_PIPELINE = ('import torch\nfrom torch import nn\n\n\nclass Pipeline:\n    def __init__(self):\n'
             '        self.f = nn.Linear(8, 8)\n\n    def distance(self, a, b):\n'
             '        return torch.sqrt(((self.f(a) - b) ** 2).sum(-1))\n\n'
             '    @torch.no_grad()\n    def __call__(self, a, b):\n        return self.distance(a, b)\n')


class SqrtAtZero(SiteRule):
    """
    ## What it does
    Flags `torch.sqrt`, `torch.rsqrt`, `.sqrt()`, `.pow(0.5)` and `** 0.5` of a sum (or mean)
    of squares or of a squared difference — `((a - b) ** 2).sum(-1)`, `x.pow(2).mean()`,
    `x ** 2 + y ** 2` — with no eps added and no `clamp(min > 0)`, through local variables; also
    weighted sums of squares written as a matrix product (`bands @ spec ** 2`, one-third-octave
    bands or a mel filterbank over a power spectrum: 0 wherever the squares are, whatever the
    weights), and squares of a spectrogram (`torch.stft`, `torch.fft.*` of a signal that carries
    gradient; their other arguments, a window buffer or sizes, do not).
    ONNX graphs are read too: the ONNX front-end matches the same pattern in the graph, and reads
    a learned layer's output there as here (a MatMul, Gemm or Conv with a weight initializer, an
    embedding Gather, a norm with its scale, a softmax or sigmoid, two of them added; through
    reshapes and bias adds).

    Not flagged: `x.norm()`, `torch.linalg.vector_norm`, `torch.cdist`, `F.pairwise_distance`
    (their gradients are defined at 0), detached or no-grad operands, and helpers that clamp
    before the sqrt.

    Carries gradient: the root's operand must depend on parameters (a module's layers or
    `nn.Parameter`s, or a leaf made with `requires_grad=True`, `W.requires_grad_()` or
    `W.requires_grad = True`; `x.matmul(W)` carries W's gradient whatever x is); a root of plain
    inputs, config values or data is not flagged, and neither is the RMS of a learned layer's
    output (never exactly zero) nor a sum with a positive constant inside the root (that
    constant is the eps). The pairwise distances of one tensor with itself are zero on their
    diagonal whatever it holds (`(e[:, None] - e[None]).pow(2).sum(-1)`, or by expansion
    `sq.unsqueeze(0) - 2 * e @ e.t() + sq.unsqueeze(1)`, also with the Gram matrix bound to a
    name and its diagonal for `sq`: `dot = e @ e.t(); sq = torch.diag(dot)`): reported for a
    learned output too, and in a helper whose callers pass one. A loss module's prediction
    carries gradient and may be zero (a ReLU'd or masked output, silent audio, a feature equal to
    its pair), though the training step that passes it is not seen: in the forward of a class
    named `...Loss` or deriving from a torch loss, the first parameter not named as ground truth
    or a mask (`forward(input, target)`) and any named as made by the model (`pred_masks`,
    `est_targets`), also in a helper the forward hands it to; a root of the target alone is not
    flagged (`forward(source_feats, target_feats)` reads `target_feats` as one).

    Can run with grad: not under `torch.no_grad()`/`inference_mode()` (a with-block or a
    decorator), and not in a function that the project calls only from such code, through any
    chain of its functions (a helper of a `@torch.no_grad()` pipeline `__call__`, in the same file
    or another). A function with no caller in the project, one read as a value, an entry point
    (`forward`, `training_step`, `__call__`...), or one called through a receiver whose class is
    unknown can run with grad.

    ## Why is this bad?
    d sqrt(s)/ds = 1 / (2 sqrt(s)) is infinite at s = 0, and the chain rule multiplies it by
    ds/dx = 0: the gradient is NaN. Measured in torch: the gradient of
    `torch.sqrt((a ** 2).sum())` at a = 0 is `[nan, nan, nan]`, where `a.norm()` gives 0.
    A single zero distance (a point paired with itself, a padded row) poisons the whole step.

    ## Example
    ```python
    dist = torch.sqrt(((a - b) ** 2).sum(-1))
    ```

    ## Use instead
    ```python
    dist = torch.linalg.vector_norm(a - b, dim=-1)
    # or
    dist = torch.sqrt(((a - b) ** 2).sum(-1) + 1e-12)
    ```

    ## Fix safety
    The fix adds `1e-12` inside the root; for `1 - cos²` not clamped yet it clamps it instead
    (`(1 - cos ** 2).clamp(min=1e-12)`: a computed cosine may exceed 1 by a rounding error, where
    an added eps leaves the operand negative). It is unsafe: it changes values (by up to 1e-6 in
    the result), and in float16/bfloat16 the eps underflows or is absorbed, so a larger eps or a
    norm function may be what the code needs. Apply with `--unsafe-fixes`.
    """

    code = "GL306"
    probe_measure = "first_nonfinite"
    kinds = frozenset({"sqrt_near_zero"})
    needs_grad = True
    name = "sqrt-at-zero"
    severity = Severity.WARNING
    # Off by default (issue 10's rule: a rule below the precision goal on the corpus is opt-in):
    # on the bench/corpus.sh corpus with the carries-gradient and dense-output checks it gave
    # 0 of 2 right: the RMS of gemma3n's input embeddings (bench/judged.tsv). Opt in with --select GL306.
    default_enabled = False
    summary = "sqrt of a sum of squares with no eps (NaN gradient at 0)"
    fix_title = "Add an eps inside the root"
    inputs = frozenset({"python", "onnx"})

    invalid = [
        Example("import math\n\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\n"
                "class ArcMarginProduct(nn.Module):\n    def __init__(self, d, n):\n        super().__init__()\n"
                "        self.weight = nn.Parameter(torch.randn(n, d))\n\n    def forward(self, x):\n"
                "        cosine = F.linear(F.normalize(x), F.normalize(self.weight))\n"
                "        sine = torch.sqrt((1.0 - torch.pow(cosine, 2)).clamp(0, 1))\n"
                "        return cosine * math.cos(0.5) - sine * math.sin(0.5)\n",
                note="ArcFace's sine of a cosine: NaN gradients for an input parallel to a class's weight "
                     "(ronghuaiyang/arcface-pytorch#91)"),
        Example("import torch\nimport torch.nn.functional as F\n" + _MODULE.split("\n", 1)[1]
                + "        cos = F.cosine_similarity(self.f(a), b, dim=-1)\n        return torch.sqrt(1 - cos * cos)\n",
                fixed="import torch\nimport torch.nn.functional as F\n" + _MODULE.split("\n", 1)[1]
                + "        cos = F.cosine_similarity(self.f(a), b, dim=-1)\n"
                "        return torch.sqrt((1 - cos * cos).clamp(min=1e-12))\n",
                note="1 - cos² of a cosine similarity (clamped by the fix: a cosine may round above 1)"),
        Example("import torch\nimport torch.nn.functional as F\n" + _MODULE.split("\n", 1)[1]
                + "        cos = F.cosine_similarity(self.f(a), b, dim=-1)\n        return torch.sqrt(1 - cos ** 2 + 1e-12)\n",
                fixed="import torch\nimport torch.nn.functional as F\n" + _MODULE.split("\n", 1)[1]
                + "        cos = F.cosine_similarity(self.f(a), b, dim=-1)\n"
                "        return torch.sqrt((1 - cos ** 2 + 1e-12).clamp(min=1e-12))\n",
                note="an eps below the 4.8e-7 by which 1 - cos² of a float32 cosine can fall below 0: still NaN"),
        Example("import torch\nimport torch.nn.functional as F\n" + _MODULE.split("\n", 1)[1]
                + "        s = 1 - F.cosine_similarity(self.f(a), b, dim=-1) ** 2\n        if self.training:\n"
                "            s = s.clamp(0, 1)\n        return torch.sqrt(s)\n",
                fixed="import torch\nimport torch.nn.functional as F\n" + _MODULE.split("\n", 1)[1]
                + "        s = 1 - F.cosine_similarity(self.f(a), b, dim=-1) ** 2\n        if self.training:\n"
                "            s = s.clamp(0, 1)\n        return torch.sqrt(s.clamp(min=1e-12))\n",
                note="clamped at 0 on one path only: the fix clamps (an eps would leave the other path NaN)"),
        Example("import torch\nimport torch.nn.functional as F\n" + _MODULE.split("\n", 1)[1]
                + "        s = 1 - F.cosine_similarity(self.f(a), b, dim=-1) ** 2\n        if self.training:\n"
                "            s = s.clamp(min=1e-6)\n        return torch.sqrt(s + 1e-12)\n",
                note="clamped above 0 on one path only: the other path's small eps leaves NaN"),
        Example(_MODULE + "        return torch.sqrt((x ** 2).sum(-1))\n",
                fixed=_MODULE + "        return torch.sqrt((x ** 2).sum(-1) + 1e-12)\n"),
        Example(_MODULE + "        return x.pow(2).sum(dim=1).sqrt()\n",
                fixed=_MODULE + "        return (x.pow(2).sum(dim=1) + 1e-12).sqrt()\n"),
        Example(_MODULE + "        return torch.rsqrt(x.pow(2).mean(-1, keepdim=True))\n"),
        Example(_MODULE + "        y = self.f(b) - a\n        return torch.sqrt(x ** 2 + y ** 2)\n"),
        Example(_MODULE + "        return (x * x).sum(1) ** 0.5\n"),
        Example(_MODULE + "        sq = x.square().sum(-1)\n        return sq.pow(0.5)\n", note="through a variable"),
        Example(_MODULE + "        s = torch.clamp((x ** 2).sum(-1), min=0)\n        return torch.sqrt(s)\n",
                note="clamp(min=0) does not move it away from 0"),
        Example("import torch\n\ndef radius(n):\n    w = torch.zeros(n, requires_grad=True)\n    return torch.sqrt((w ** 2).sum())\n",
                note="a leaf that requires grad (zero at init: the gradient is NaN at once)"),
        Example(_PIPELINE + "\n\ndef fit(pipe, a, b):\n    pipe.distance(a, b).mean().backward()\n",
                note="a pipeline's helper that training code also calls (through an unknown receiver)"),
        Example(LEAF.format(make="torch.zeros(3, 4)\n    W.requires_grad_()",
                            use="torch.sqrt((x.matmul(W) ** 2).sum())"),
                note="a leaf made to require grad by `requires_grad_()`, reached through `x.matmul(W)`"),
        Example(_MODULE + "        p = 0.5\n        return (x * x).sum(1) ** p\n",
                note="an exponent bound to a name: `** p` with p = 0.5 is a root"),
        Example(_MODULE + "        p = 2\n        return torch.sqrt((x ** p).sum(-1))\n",
                note="`x ** p` with p = 2 bound to a name is a square"),
        Example(_MODULE + "        eps = 0.0\n        return torch.sqrt((x ** 2).sum(-1) + eps)\n",
                note="an eps that is 0 is no eps"),
        Example("import torch\nfrom torch import nn\n\nEPS = 0.0\n\n\nclass M(nn.Module):\n"
                "    def __init__(self):\n        super().__init__()\n        self.f = nn.Linear(8, 8)\n\n"
                "    def forward(self, a, b):\n        x = self.f(a) - b\n"
                "        return torch.sqrt((x ** 2).sum(-1) + EPS)\n",
                note="a module constant that is 0"),
        Example("import torch\nfrom torch import nn\n\nfrom consts import EPS\n\n\nclass M(nn.Module):\n"
                "    def __init__(self):\n        super().__init__()\n        self.f = nn.Linear(8, 8)\n\n"
                "    def forward(self, a, b):\n        x = self.f(a) - b\n"
                "        return torch.sqrt((x ** 2).sum(-1) + EPS)\n",
                files=(("consts.py", "EPS = 0.0\n"),),
                note="a module constant of another file (consts.py) that is 0"),
        Example(_MODULE + "        lo = 0.0\n        return torch.sqrt(torch.clamp((x ** 2).sum(-1), min=lo))\n",
                note="a lower bound bound to a name: clamp(min=0) does not move it away from 0"),
        Example(_MODULE + "        e = self.f(a)\n        sq = (e ** 2).sum(1)\n"
                "        d2 = sq.unsqueeze(0) - 2 * e @ e.t() + sq.unsqueeze(1)\n        return d2.clamp(min=0).sqrt()\n",
                note="squared distances by expansion: 0 on the diagonal, whatever the layer learned"),
        Example("import torch\nfrom torch import nn\n\n\ndef pairwise(e):\n"
                "    return (e[:, None] - e[None]).pow(2).sum(-1).sqrt()\n\n\n"
                "def fit(model: nn.Module, x):\n    pairwise(model(x)).mean().backward()\n",
                note="the differences of a tensor with itself: every caller passing a learned output is enough"),
        Example("import torch\n\ndef radius(n):\n    trainable = True\n"
                "    w = torch.zeros(n, requires_grad=trainable)\n    return torch.sqrt((w ** 2).sum())\n",
                note="`requires_grad=` a name bound to True: a leaf that requires grad"),
        Example("import torch\nfrom torch import nn\n\n\ndef _pairwise(x, y):\n    diff = x.unsqueeze(1) - y.unsqueeze(0)\n"
                "    return torch.sqrt(torch.sum(diff ** 2, dim=-1))\n\n\nclass ConsistencyLoss(nn.Module):\n"
                "    def forward(self, source_feats, target_feats):\n"
                "        return _pairwise(source_feats, target_feats).min(dim=1).values.mean()\n\n\n"
                "def train_step(encoder, loss_fn, xs, xt):\n    loss_fn(encoder(xs), encoder(xt)).backward()\n",
                note="a loss's prediction handed to a helper: NaN for a feature equal to its pair "
                     "(tilman151/rul-adapt#22)"),
        Example(_STOI.format(root="torch.matmul(self.obm, torch.norm(spec, 2, -1) ** 2).pow(0.5)"),
                note="one-third-octave band energies of the prediction's spectrogram, a weighted sum of squares: "
                     "NaN for a silent band (mpariente/pytorch_stoi#7)"),
        Example(_STOI.format(root="torch.sqrt((spec ** 2).sum(-1))"),
                note="the magnitude of a spectrogram written out: 0 in a silent frame"),
        Example(_MODULE + "        return (self.f.weight.abs() @ x.pow(2).t()).sqrt()\n",
                note="a matrix product with squares by `@`, whatever the weights"),
        Example("import torch\nfrom torch.nn.modules.loss import _Loss\n\n\nclass Distance(_Loss):\n"
                "    def forward(self, input, target):\n        return torch.sqrt(((input - target) ** 2).sum(-1)).mean()\n",
                note="a subclass of torch's `_Loss`: its input less its target is 0 where they agree"),
    ]
    valid = [
        Example("import math\n\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\n"
                "class ArcMarginProduct(nn.Module):\n    def __init__(self, d, n):\n        super().__init__()\n"
                "        self.weight = nn.Parameter(torch.randn(n, d))\n\n    def forward(self, x):\n"
                "        cosine = F.linear(F.normalize(x), F.normalize(self.weight))\n"
                "        sine = torch.sqrt((1.0 - torch.pow(cosine, 2)).clamp(1e-6, 1))\n"
                "        return cosine * math.cos(0.5) - sine * math.sin(0.5)\n",
                note="the fix of arcface-pytorch: clamped away from 0"),
        Example("import torch\nimport torch.nn.functional as F\n" + _MODULE.split("\n", 1)[1]
                + "        cos = F.cosine_similarity(self.f(a), b, dim=-1).clamp(-1 + 1e-6, 1 - 1e-6)\n"
                "        return torch.sqrt(1 - cos ** 2)\n",
                note="a cosine clamped strictly inside (-1, 1)"),
        Example("import torch\nimport torch.nn.functional as F\n" + _MODULE.split("\n", 1)[1]
                + "        cos = F.cosine_similarity(self.f(a), b, dim=-1)\n"
                "        return torch.sqrt(1 - cos ** 2 + 1e-6), torch.sqrt((1 - cos ** 2).clamp(0, 1) + 1e-12)\n",
                note="an eps of 1e-6, or a small one after a clamp at 0"),
        Example("import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self, n):\n"
                "        super().__init__()\n        self.layers = nn.ModuleList([nn.Linear(8, 8) for _ in range(n)])\n\n"
                "    def forward(self, h):\n        for layer in self.layers:\n            h = layer(h)\n"
                "        return torch.mean(h ** 2, dim=-1) ** 0.5\n",
                note="the RMS of the layers' output (never all zero), or of the input when no layer runs (no gradient)"),
        Example(_MODULE + "        c = self.f(a)\n        return torch.sqrt(1 - c ** 2)\n",
                note="1 - c² of a learned output, exactly ±1 with probability 0 (a tanh's may round to 1)"),
        Example("import torch\n\ndef d(a, b):\n    return (a - b).norm(dim=-1), torch.linalg.vector_norm(a - b, dim=-1)\n"),
        Example("import torch\nimport torch.nn.functional as F\n\ndef d(a, b):\n"
                "    return torch.cdist(a, b), F.pairwise_distance(a, b)\n"),
        Example("import torch\n\ndef d(a, b):\n    return torch.sqrt(((a - b) ** 2).sum(-1) + 1e-12)\n", note="eps"),
        Example("import torch\n\ndef d(a, b, eps=1e-8):\n    return torch.sqrt(torch.clamp(((a - b) ** 2).sum(-1), min=eps))\n",
                note="clamp(min=eps)"),
        Example("import torch\n\ndef d(x):\n    return x.pow(2).sum(1).clamp_min(1e-12).sqrt()\n", note="clamp_min"),
        Example("import torch\n\ndef d(x):\n    return torch.sqrt((x.detach() ** 2).sum())\n", note="detached"),
        Example("import torch\n\n@torch.no_grad()\ndef d(x):\n    return torch.sqrt((x ** 2).sum())\n", note="no-grad"),
        Example(_PIPELINE, note="a method only a @torch.no_grad() __call__ calls: it never runs with grad"),
        Example("import math\n\ndef d(h, w):\n    return (h ** 2 + w ** 2) ** 0.5, math.sqrt(h ** 2 + w ** 2)\n",
                note="python numbers"),
        Example("import torch\n\ndef safe_sqrt(x):\n    return torch.sqrt(torch.clamp(x, min=1e-12))\n\n"
                "def d(a, b):\n    return safe_sqrt(((a - b) ** 2).sum(-1))\n", note="a helper that clamps"),
        Example("import torch\n\ndef rms(x, eps=1e-6):\n    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)\n",
                note="RMSNorm with eps"),
        Example("import torch\n\ndef d(a, b):\n    return torch.sqrt(((a - b) ** 2).sum(-1))\n",
                note="plain inputs: nothing upstream is known to carry gradient"),
        Example(_MODULE + "        return torch.sqrt(x ** 2 + 1.0 ** 2)\n", note="a positive constant inside the root"),
        Example(_MODULE + "        e = self.f(a)\n        sq = (e ** 2).sum(1)\n"
                "        d2 = sq.unsqueeze(0) - 2 * e @ e.t() + sq.unsqueeze(1)\n"
                "        return (d2.clamp(min=0) + 1e-12).sqrt()\n", note="squared distances by expansion, with an eps"),
        Example(_MODULE + "        p, q = self.f(a), self.f(b)\n        sp, sq = (p ** 2).sum(1), (q ** 2).sum(1)\n"
                "        return (sp.unsqueeze(1) + sq.unsqueeze(0) - 2 * p @ q.t()).sqrt()\n",
                note="distances between two sets of learned outputs: not 0 by construction"),
        Example("import torch\nfrom torch import nn\n\n\ndef spread(e):\n"
                "    return (e[:, None] - e[None]).pow(2).sum().sqrt()\n\n\n"
                "def fit(model: nn.Module, x):\n    spread(model(x)).backward()\n",
                note="summed over all pairs: 0 only if every row of a learned output is the same"),
        Example(_MODULE + "        h = self.f(a)\n        return torch.mean(h ** 2, dim=-1) ** 0.5\n",
                note="the RMS of a learned layer's output is never exactly 0"),
        Example(LEAF.format(make="torch.zeros(3, 4)\n    W.requires_grad_(False)",
                            use="torch.sqrt((x.matmul(W) ** 2).sum())"),
                note="`requires_grad_(False)`: a constant"),
        Example(_MODULE + "        p = 1.5\n        return (x * x).sum(1) ** p\n",
                note="`** p` with p = 1.5: its gradient at 0 is 0 (measured)"),
        Example(_MODULE + "        p = 2\n        eps = 1e-12\n        return torch.sqrt((x ** p).sum(-1) + eps)\n",
                note="a square and an eps, both through names"),
        Example("import torch\nfrom torch import nn\n\nEPS = 0.0\n\n\nclass M(nn.Module):\n"
                "    def __init__(self):\n        super().__init__()\n        self.f = nn.Linear(8, 8)\n\n"
                "    def forward(self, a, b):\n        x = self.f(a) - b\n"
                "        return torch.sqrt((x ** 2).sum(-1) + EPS)\n\n\nEPS = 1e-12\n",
                note="a module constant bound twice to different values: not known"),
        Example("import torch\nfrom torch import nn\n\nfrom consts import EPS\n\n\nclass M(nn.Module):\n"
                "    def __init__(self):\n        super().__init__()\n        self.f = nn.Linear(8, 8)\n\n"
                "    def forward(self, a, b):\n        x = self.f(a) - b\n"
                "        return torch.sqrt((x ** 2).sum(-1) + EPS)\n",
                files=(("consts.py", "EPS = 0.0\n\n\ndef configure(eps):\n    global EPS\n    EPS = eps\n"),),
                note="a constant of another file that a function there rebinds (`global`): not known"),
        Example(_MODULE + "        eps = 0.0 if b is None else 1e-12\n        return torch.sqrt((x ** 2).sum(-1) + eps)\n",
                note="an eps that differs between branches: not known"),
        Example(_MODULE + "        lo = 1e-12\n        return torch.sqrt(torch.clamp((x ** 2).sum(-1), min=lo))\n",
                note="a positive lower bound through a name"),
        Example("import torch\n\ndef radius(n):\n    trainable = False\n"
                "    w = torch.zeros(n, requires_grad=trainable)\n    return torch.sqrt((w ** 2).sum())\n",
                note="`requires_grad=` a name bound to False: a constant"),
        Example(LEAF.format(make="torch.zeros(3, 4)\n    frozen = False\n    W.requires_grad_(frozen)",
                            use="torch.sqrt((x.matmul(W) ** 2).sum())"),
                note="`requires_grad_(flag)` with flag False: a constant"),
        Example("import torch\nfrom torch import nn\n\n\nclass AlignLoss(nn.Module):\n"
                "    def forward(self, source_feats, target_feats):\n"
                "        return torch.sqrt((target_feats ** 2).sum(-1)).mean()\n",
                note="a loss's target (named so) is not its prediction"),
        Example(_STOI.format(root="torch.matmul(self.obm, torch.norm(spec, 2, -1) ** 2 + 1e-8).pow(0.5)"),
                note="the fix of pytorch_stoi: an eps added to the band energies"),
        Example(_STOI.format(root="torch.matmul(self.obm, torch.norm(spec, 2, -1) ** 2).clamp(min=1e-8).sqrt()"),
                note="the weighted sum clamped away from 0"),
        Example(_STOI.format(root="torch.matmul(self.obm, torch.norm(ref, 2, -1) ** 2).pow(0.5)"),
                note="the band energies of the target's spectrogram: no gradient reaches them"),
        Example("import torch\n\n\ndef bands(obm, x):\n    return (obm @ x ** 2).sqrt()\n",
                note="plain inputs: nothing upstream is known to carry gradient"),
        Example(_MODULE + "        return (self.f.weight @ torch.ones(8, 8) ** 2).sqrt()\n",
                note="squares of constants (a fixed table) times learned weights: not 0 where data is"),
        Example("import torch\nfrom torch import nn\n\n\nclass Consistency(nn.Module):\n"
                "    def forward(self, pred, target):\n        return torch.sqrt(((pred - target) ** 2).sum(-1)).mean()\n",
                note="no loss class (neither named one nor deriving from one): its callers decide"),
    ]

    def graph_selects(self, hazard) -> bool:
        # the RMS of a learned layer's output (the front-end names the layer), as in source
        return not hazard.data.get("learned")

    def graph_message(self, hazard) -> str:
        return (f"{hazard.node.op_type} of {hazard.data['operand']} with no eps Add, Max or Clip(min > 0): "
                "the gradient of sqrt at 0 is infinite and becomes NaN")

    def message(self, site: Site, ctx: RuleContext) -> str:
        where = "there" if site.detail.endswith(")") else "where the sum is 0"
        what = site.detail if site.detail.startswith("1 - ") else f"a {site.detail}"
        if "an eps" in site.detail:
            return (f"`{site.variant}` of {what}: its gradient is NaN {where}; clamp the operand (min > 0) "
                    "or add an eps of 1e-6 or more")
        return (f"`{site.variant}` of {what} with no eps: its gradient is NaN {where}; "
                "add an eps, clamp(min > 0), or use a norm function")

    def fix(self, site: Site, facts: NumericsFacts) -> Fix | None:
        """Add 1e-12 to the operand: inside a torch function's argument list, or around the
        operand of `** 0.5` and the methods."""
        arg = site.pieces.operand if site.pieces else None
        if arg is None:
            return None
        s, text, how = arg.span, arg.text, site.variant
        if site.detail.startswith("1 - ") and not site.pieces.floored:
            # 1 - cos² of a computed cosine can be a little below 0 (cos = 1.0000001), where an
            # eps added inside the root still gives NaN: clamp it (the form arcface-pytorch's fix took)
            return Fix("Clamp away from 0", (Edit(s, f"{_grouped(text)}.clamp(min=1e-12)"),), safe=False)
        if how.startswith("torch.") and not how.startswith("torch.pow"):
            if not arg.sum_safe:
                return Fix("Add an eps", (Edit(s, f"({text}) + 1e-12"),), safe=False)
            return Fix("Add an eps", (Edit(SourceSpan(s.end_line, s.end_column, s.end_line, s.end_column), " + 1e-12"),),
                       safe=False)
        return Fix("Add an eps", (Edit(s, f"({text} + 1e-12)" if arg.sum_safe else f"(({text}) + 1e-12)"),),
                   safe=False)


def _grouped(text: str) -> str:
    """`text` as one operand of a method call: as it is when it is a name (`s2`, `self.s`) or one
    pair of parentheses holds all of it, else in parentheses."""
    if re.fullmatch(r"[A-Za-z_][\w.]*", text):
        return text
    if text.startswith("("):
        depth = 0
        for i, ch in enumerate(text):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                return text if i == len(text) - 1 else f"({text})"
    return f"({text})"
