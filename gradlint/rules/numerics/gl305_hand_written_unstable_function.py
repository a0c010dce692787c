"""GL305 hand-written-unstable-function: sigmoid, softplus and logsumexp written out with exp."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.numerics.base import SiteRule
from gradlint.facts.numerics import Site

_USE = {"softmax": "torch.softmax(z, dim)", "sigmoid": "torch.sigmoid(x)", "scaled_sigmoid": "y * torch.sigmoid(x) (F.silu(x) when y is x)", "softplus": "F.softplus(x)", "logsumexp": "torch.logsumexp(x, dim)",
        "logsumexp_weighted": "torch.logsumexp(x + torch.log(w), dim)", "sigmoid_ratio": "torch.sigmoid(z) (times the numerator's other factors)",
        "softmax_weighted": "torch.softmax(z.masked_fill(mask == 0, float('-inf')), dim) for a 0/1 mask, "
                            "torch.softmax(z + torch.log(w), dim) for positive weights",
        "sigmoid_derivative": "torch.sigmoid(z) * torch.sigmoid(-z) (times the numerator's other factors)"}
# per group (a grouped sum for denominator, or under the log): torch's softmax and logsumexp
# reduce a dimension, not groups; the stable forms subtract each group's max inside the exp
# (measured: bench/measure_grouped_softmax.py)


def _group_max(x: str) -> str:
    return (f"subtract each group's max inside the exp (`torch_scatter.scatter_max({x}, index)[0][index]`, "
            f"or `{x}.new_full((n,), float('-inf')).scatter_reduce(0, index, {x}, 'amax')[index]`)")


_USE_GROUPED = {
    "softmax": f"a max-subtracted grouped softmax: `torch_geometric.utils.softmax(z, index)`, "
               f"`torch_scatter.scatter_softmax(z, index)`, or {_group_max('z')}",
    "softmax_weighted": f"a max-subtracted grouped softmax of `z + torch.log(w)` (-inf where a 0/1 mask is 0): "
                        f"`torch_geometric.utils.softmax`, or {_group_max('z')}",
    "logsumexp": f"`torch_scatter.scatter_logsumexp(x, index)`, or {_group_max('x')} and add it back after the log",
    "logsumexp_weighted": f"the grouped log-sum-exp of `x + torch.log(w)`: `torch_scatter.scatter_logsumexp`, or "
                          f"{_group_max('x')} and add it back after the log",
}


class HandWrittenUnstableFunction(SiteRule):
    """
    ## What it does
    Flags `1 / (1 + exp(-x))` (and swish, `x / (1 + exp(-x))`, `exp(z) / (1 + exp(z))` and the
    sigmoid's derivative `exp(z) / (1 + exp(z)) ** 2`), `log(1 + exp(x))` (and `log1p(exp(x))`, `x.exp().add(1).log()`)
    and `log(sum(exp(x)))` (its terms weighted by probabilities or positive numbers too:
    `log(sum(exp(log_gauss) * mixing))`) written with torch operations, and a softmax written as
    `exp(z) / exp(z).sum(...)` with no max-shift (also masked or weighted: `exp(z) * mask`; also
    per group, over a grouped sum of the exps: `exp(z) / scatter_add(exp(z), index)[index]`,
    `scatter(..., reduce="sum")`, `index_add`, `segment_csr`), through local variables. Not flagged:
    constant operands, detached or no-grad operands, the stable max-shifted log-sum-exp
    (`x - x.max()` inside the exp, `x - scatter_max(x, index)[0][index]` per group, also divided by a temperature or times a positive number), an
    exponent clamped at 80 or below or kept only where
    it is at most such a number (`x.masked_fill(~(x <= 18), 0)`, `torch.where(x <= 18, x, 0)`), `-|x|` also as `x.abs().neg()`, and exp of a value that cannot be positive (`-x ** 2`,
    `-|x|`: the stable softplus `clamp(x, min=0) + log1p(exp(-|x|))`).

    An exponent that lies within ±80 by arithmetic on the numbers a clamp put a tensor between is
    bounded too: the log-odds of a probability clamped to `[eps, 1 - eps]`, `log(p / (1 - p))`, and
    their mean lie within ±log((1 - eps) / eps), 13.8 for eps = 1e-6. A value never below 0 (a norm, a
    distance, `torch.cdist`, a root, a square or a sum of squares) lies in [0, inf]: the D2 damping
    `-20 * (r / r0 - 1)` of a distance r over a positive number r0 is at most 20. The numbers are read as float32
    holds them (`1 - 1e-8` is 1.0 there: `1 - p` reaches 0), from literals, module constants and
    parameter defaults; an eps the walk does not know leaves the exponent unbounded. A cosine of
    normalised vectors (`F.normalize(a) @ F.normalize(b).T`, `(F.normalize(a) * F.normalize(b)).sum(1)`
    summed over the dimension both were normalised along, `F.cosine_similarity`) lies in [-1, 1]:
    over a number (`cos / 0.1`) or over a temperature setting no number is known for (a name holding
    `temp` or `tau`, or `t`: a config value, an attribute, a parameter; not a tensor or a learned
    parameter), taken as at least 0.05, the InfoNCE written out is bounded (measured,
    bench/measure_cosine_temperature.py: finite at its worst, a positive cosine of -1 against
    100 000 of +1, down to a temperature of 0.03). A learned scale (CLIP's `logit_scale.exp()`,
    up to 100) or any other factor unknown leaves it unbounded.

    An operand carries no gradient when it is built only from fresh tensors (`torch.zeros`,
    `rand`, `linspace`... and what is done to them: `torch.zeros(n).uniform_(0, 1)`), literals and
    parameters that every call in the project hands such a value (at least one call; a
    constructor's literal default counts), through torch operations, functions of the project that
    hold no parameters (they read only their arguments, constants and library functions, and make
    no module), attributes `__init__` sets only to such functions (`self.log_snr = noise_schedule`
    while every call of the class leaves `noise_schedule` at such a default, and no file sets the
    attribute) and what the class's own methods return, also called on an instance of a class of the
    file (`sched.q_sample(x, t)`, with `sched` an item taken by an index from an `nn.ModuleList` that
    holds only instances of the file's classes). A parameter of a function no call in the
    project reaches, a module's output (`self.net(x)`), an `nn.Parameter`, a tensor made with
    `requires_grad=True` or `requires_grad_()`, or changed in place by what may carry gradient,
    may carry gradient.

    In the `backward` of a `torch.autograd.Function`, which autograd does not trace but whose
    values are the gradient, the forms whose value is NaN or inf are flagged (the softmax,
    log-sum-exp, softplus, `exp(z) / (1 + exp(z))` and the derivative), not `1 / (1 + exp(-x))`.

    Can run with grad: not under `torch.no_grad()`/`inference_mode()` (a with-block or a
    decorator), and not in a function that the project calls only from such code, through any
    chain of its functions (a helper of a `@torch.no_grad()` pipeline `__call__`, in the same file
    or another). A function with no caller in the project, one read as a value, an entry point
    (`forward`, `training_step`, `__call__`...), or one called through a receiver whose class is
    unknown can run with grad.

    ## Why is this bad?
    `exp` overflows to inf in float32 above 88 (above 11 in float16), and the gradient of the
    hand-written form becomes inf/inf = NaN. Measured in torch: the gradient of
    `1 / (1 + exp(-x))` at x = -100 is NaN; `log(1 + exp(x))` at x = 100 is inf with a NaN
    gradient; `log(exp(x).sum())` at [100, 0] is inf with a NaN gradient. The library
    functions are exact there.

    ## Example
    ```python
    p = 1 / (1 + torch.exp(-z))
    sp = torch.log(1 + torch.exp(z))
    lse = torch.log(torch.exp(z).sum(-1))
    ```

    ## Use instead
    ```python
    p = torch.sigmoid(z)
    sp = F.softplus(z)
    lse = torch.logsumexp(z, dim=-1)
    ```

    A softmax per group (a grouped sum of the exps for denominator) or a log-sum-exp per group
    has no torch function: the message advises the max-subtracted grouped forms instead,
    `torch_geometric.utils.softmax(z, index)`, `torch_scatter.scatter_softmax` and
    `scatter_logsumexp`, or each group's max (`scatter_max`, `scatter_reduce(..., "amax")`)
    subtracted inside the exp (measured, bench/measure_grouped_softmax.py: the written-out form is
    NaN in a group holding z = 100 and in one holding only z <= -200, value and gradient; the
    max-subtracted one matches `torch.softmax` run on each group alone).
    """

    code = "GL305"
    probe_measure = "first_nonfinite"
    kinds = frozenset({"hand_written_unstable"})
    needs_grad = True
    name = "hand-written-unstable-function"
    severity = Severity.WARNING
    summary = "Sigmoid/softplus/logsumexp/softmax written with exp (overflow, NaN gradients)"

    invalid = [
        Example("""\
import torch


class SigmoidSurrogate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, slope):
        ctx.save_for_backward(u)
        ctx.slope = slope
        return (u > 0).float()

    @staticmethod
    def backward(ctx, grad_output):
        (u,) = ctx.saved_tensors
        grad = grad_output * ctx.slope * torch.exp(-ctx.slope * u) / ((torch.exp(-ctx.slope * u) + 1) ** 2)
        return grad, None
""", note="the sigmoid's derivative written out in a custom backward: the gradient itself is NaN (jeshraghian/snntorch#433)"),
        Example("""\
import torch


class SoftplusGate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).float()

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * torch.log(1 + torch.exp(x))
""", note="softplus written out in a custom backward: the gradient is inf past x = 88"),
        Example("""\
import torch
from torch import nn


class MaskedAttention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.q = nn.Linear(dim, dim)

    def forward(self, x, mask):
        e = torch.exp(self.q(x) @ x.transpose(-1, -2)) * mask
        return e / e.sum(-1, keepdim=True)
""", note="a masked softmax written out"),
        Example("import torch\n\n\ndef gate(z):\n    return torch.exp(z) / (1 + torch.exp(z))\n",
                note="exp(z) / (1 + exp(z)): inf / inf"),
        Example("import torch\nfrom torch import nn\n\n\nclass Pool(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        self.a = nn.Linear(8, 4)\n"
                "        self.b = nn.Linear(8, 4)\n\n    def forward(self, x):\n        sa = self.a(x)\n"
                "        sb = self.b(x)\n"
                "        z = torch.cat([sa - sa.max(-1, keepdim=True).values, sb], -1)\n"
                "        e = torch.exp(z)\n        return e / e.sum(-1, keepdim=True)\n",
                note="one part shifted by its max, the other not: the concatenation is not (measured: NaN output and gradient at a bias of 100)"),
        Example("from itertools import combinations\n\nimport torch\nfrom torch import nn\n\n\n"
                "def vote_weights(fields, subsets, temp=0.01):\n    n = fields.shape[0]\n"
                "    dists = torch.zeros((n, n))\n    for i in range(n):\n        for j in range(i):\n"
                "            dists[i, j] = dists[j, i] = (fields[i] - fields[j]).norm()\n    avg = []\n"
                "    for s in subsets:\n"
                "        avg.append(torch.stack([dists[i, j] for i, j in combinations(s, 2)]).mean(dim=0))\n"
                "    mavg = torch.stack(avg)\n    num = torch.exp(-mavg / temp)\n"
                "    return num / num.sum(dim=0, keepdim=True)\n\n\n"
                "class FieldNet(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                "        self.conv = nn.Conv2d(2, 10, 3, padding=1)\n\n"
                "    def forward(self, x):\n        fields = self.conv(x).view(5, 2, *x.shape[-2:])\n"
                "        return vote_weights(fields, list(combinations(range(5), 3)))\n",
                note="a softmin of subset distances a loop fills: with a small temperature every exp "
                     "underflows to 0 and the weights are 0 / 0 (measured: NaN weights and gradient; "
                     "seung-lab/torchfields#18)"),
        Example("import torch\nfrom torch import nn\n\n\ndef weights(h, n, temp):\n    avg = []\n    for i in range(n):\n"
                "        avg.append(h * i)\n    m = torch.stack(avg)\n    e = torch.exp(m / temp)\n"
                "    return e / e.sum(0)\n\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                "        self.fc = nn.Linear(4, 4)\n\n    def forward(self, x):\n        return weights(self.fc(x), 3, 0.1)\n",
                note="the items a loop appends to a list, stacked"),
        Example("import torch\n\n\ndef attend(scores, pad_mask):\n"
                "    scores = scores.masked_fill(pad_mask, -1e9)\n    e = torch.exp(scores)\n"
                "    return e / e.sum(-1, keepdim=True)\n",
                note="a padding mask bounds nothing: exp(100) is still inf (measured: NaN output and gradient)"),
        Example("import torch\n\n\ndef softplus(x):\n    return (lambda z: z.exp().log1p())(x)\n",
                note="a lambda applied at once to an unbounded operand"),
        Example("import torch\n\n\ndef log_sum_exp(tensor, other):\n    m = torch.max(tensor, other)\n"
                "    return torch.log(torch.sum(torch.exp(tensor - m), 1))\n",
                note="an elementwise maximum with another tensor: no shift by the largest value"),
        Example("import torch\n\n\ndef softplus(x, y):\n    mask = y <= 18\n"
                "    return x.masked_fill(~mask, 0).exp().log1p()\n",
                note="the mask bounds another tensor: x itself is not bounded"),
        Example("import torch\n\n\ndef softplus(x):\n    mask = x <= 18\n"
                "    return x.masked_fill(mask, 0).exp().log1p()\n",
                note="the values at most 18 are filled: the large ones are kept"),
        Example("import torch\n\n\ndef softplus(x):\n    return torch.where(x <= 200, x, 0.0).exp().log1p()\n",
                note="kept up to 200: exp(200) is inf in float32"),
        Example("import torch\n\n\ndef sigmoid(tensor, temp=1.0):\n"
                "    exponent = torch.clamp(-tensor / temp, min=-500, max=500)\n"
                "    return 1.0 / (1.0 + torch.exp(exponent))\n",
                note="clamped, but above 88: exp(500) is still inf in float32"),
        Example("import torch\n\n\ndef weights(scores):\n"
                "    m = scores.max(dim=1, keepdim=True).values\n"
                "    e = (-2.0 * (scores - m)).exp()\n"
                "    return e / e.sum(dim=1, keepdim=True)\n",
                note="max-shifted, then multiplied by a negative number: the exponent is at least 0 again"),
        Example("import torch\nimport torch.nn.functional as F\n\n\ndef log_prob(log_gauss, mixing_logits):\n"
                "    mixing = F.softmax(mixing_logits, dim=-1)\n"
                "    return torch.log(torch.sum(torch.exp(log_gauss) * mixing, dim=-1))\n",
                note="a mixture's log-likelihood: exps weighted by probabilities (scae-pytorch's GMM, mlberkeley/scae-pytorch#4)"),
        Example("import torch\nfrom torch import nn\n\n\ndef loss_weight(log_snr):\n    snr = log_snr.exp()\n"
                "    return snr.clamp(max=5) / (snr + 1)\n\n\nclass Diffusion(nn.Module):\n"
                "    def __init__(self, net):\n        super().__init__()\n        self.net = net\n"
                "        self.schedule = nn.Linear(1, 1)\n\n"
                "    def forward(self, img):\n        times = torch.zeros(img.shape[0], 1).uniform_(0, 1)\n"
                "        log_snr = self.schedule(times).squeeze(-1)\n"
                "        return (self.net(img, log_snr) - img).pow(2).mean() * loss_weight(log_snr).mean()\n",
                note="a learned noise schedule: the weight's operand carries the schedule's gradient"),
        Example("import torch\nfrom torch import nn\nfrom torch_scatter import scatter_add\n\n\n"
                "class EdgeAttention(nn.Module):\n    def __init__(self, dim):\n        super().__init__()\n"
                "        self.score = nn.Linear(dim, 1)\n\n    def forward(self, x, index, n):\n"
                "        e = self.score(x).squeeze(-1).exp()\n"
                "        return e / scatter_add(e, index, dim=0, dim_size=n)[index]\n",
                note="a softmax per node over its edges, written out (PyG's utils.softmax before "
                     "pyg-team/pytorch_geometric#53): NaN in a group once one exponent overflows"),
        Example("import torch\n\ndef f(x):\n    return 1 / (1 + torch.exp(-x))\n"),
        Example("import torch\n\ndef f(x):\n    return torch.log(1 + torch.exp(x))\n"),
        Example("import torch\n\ndef f(x):\n    return x.exp().add(1).log()\n"),
        Example("import torch\n\ndef f(x):\n    return torch.log(torch.sum(torch.exp(x), dim=1))\n"),
        Example("import torch\n\ndef f(x):\n    e = torch.exp(x)\n    s = e.sum(-1)\n    return s.log()\n",
                note="through variables"),
        Example("import torch\n\ndef f(x):\n    return torch.log1p(torch.exp(x))\n"),
        Example("import torch\n\ndef f(z):\n    e = torch.exp(z)\n    return e / e.sum(dim=-1, keepdim=True)\n",
                note="a softmax with no max-shift: exp(100) is inf, inf / inf is NaN"),
        Example("import torch\nimport torch.nn.functional as F\n\n\n"
                "def info_nce(a, b, tau):\n"
                "    e = torch.exp(a @ b.T / tau)\n"
                "    return -torch.log(e.diag() / e.sum(dim=1)).mean()\n",
                note="a dot product of vectors not normalised: unbounded over any temperature"),
    ]
    valid = [
        Example("""\
import torch
from torch import nn


class MaskedAttention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.q = nn.Linear(dim, dim)

    def forward(self, x, mask):
        s = self.q(x) @ x.transpose(-1, -2)
        e = torch.exp(s - s.max(-1, keepdim=True).values) * mask
        return e / e.sum(-1, keepdim=True).clamp(min=1e-9)
""", note="a masked softmax shifted by its max"),
        Example("""\
import torch


class Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clone()

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        e = torch.exp(x - x.max(-1, keepdim=True).values)
        return grad_output * e / e.sum(-1, keepdim=True)
""", note="a max-shifted softmax in a custom backward"),
        Example("""\
import torch


class Gate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).float()

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output / (1 + torch.exp(-x))
""", note="in a custom backward, a form whose value stays finite (g / inf is 0): autograd does not trace it"),
        Example("import torch\n\n\ndef vote_weights(fields, temp=0.01):\n    n = fields.shape[0]\n"
                "    dists = torch.zeros((n, n))\n    for i in range(n):\n        for j in range(i):\n"
                "            dists[i, j] = dists[j, i] = (fields[i] - fields[j]).norm()\n"
                "    return (-dists / temp).softmax(dim=0)\n",
                note="the fix upstream: softmax shifts by the max"),
        Example("import torch\nfrom torch import nn\n\n\nclass Pool(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        self.score = nn.Linear(8, 1)\n\n    def forward(self, xs):\n"
                "        s = self.score(xs).squeeze(-1)\n        zs = []\n        for i in range(s.shape[0]):\n"
                "            zs.append(s[i] - s.max())\n        e = torch.exp(torch.stack(zs))\n        return e / e.sum()\n",
                note="max-shifted items a loop appends: still shifted once stacked"),
        Example("import torch\nfrom torch import nn\n\n\nclass Pool(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        self.score = nn.Linear(8, 1)\n\n    def forward(self, xs):\n"
                "        z = torch.zeros(len(xs))\n        for i, x in enumerate(xs):\n"
                "            z[i] = self.score(x).squeeze().clamp(max=20.0)\n        e = torch.exp(z)\n"
                "        return e / e.sum()\n",
                note="a table a loop fills with scores clamped at 20"),
        Example("import torch\n\n\ndef weights(xs, n):\n    table = torch.zeros(n)\n    for i in range(n):\n"
                "        table[i] = i / n\n    e = torch.exp(table)\n    return e / e.sum()\n",
                note="a table the loop fills with numbers: no gradient"),
        Example("import torch\n\n\ndef log_sum_exp(tensor, dim):\n    m, _ = torch.max(tensor, dim)\n"
                "    m_expanded = m.unsqueeze(dim).expand_as(tensor)\n"
                "    return m + torch.log(torch.sum(torch.exp(tensor - m_expanded), dim))\n",
                note="max-shifted through `torch.max(x, dim)` taken apart: a reduction over a dimension, "
                     "not an elementwise maximum (flair's Viterbi loss)"),
        Example("import torch\n\n\ndef window(x, sigma):\n"
                "    coords = torch.arange(1, 9, dtype=x.dtype, device=x.device)\n"
                "    w = (coords - 0.5) ** 2\n    w = (-(w.unsqueeze(0) + w.unsqueeze(1)) / (2 * sigma ** 2)).exp()\n"
                "    return w / torch.sum(w)\n",
                note="a Gaussian window: minus a sum of squares over a positive scale is at most 0 (piq's DSS)"),
        Example("import torch\n\n\ndef log1pexp(x):\n    mask = x <= 18\n    return torch.where(\n        mask,\n"
                "        (lambda z: z.exp().log1p())(x.masked_fill(~mask, 0)),\n"
                "        (lambda z: z + (-z).exp())(x.masked_fill(mask, 0)),\n    )\n",
                note="the exp sees x only where x <= 18, 0 elsewhere (botorch's log1pexp; measured: finite "
                     "value and gradient at x = 500)"),
        Example("import torch\n\n\ndef softplus(x):\n    return torch.where(18 < x, 0.0, x).exp().log1p()\n",
                note="a where that keeps x only where it is at most 18"),
        Example("import torch\n\n\ndef log_prob(logits, n, k):\n"
                "    normalize = n * (logits.clamp(min=0) + logits.abs().neg().exp().log1p())\n"
                "    return k * logits - normalize\n",
                note="the stable softplus: exp of -|x| written as methods (pyro's Binomial)"),
        Example("import torch\n\n\ndef sigmoid(tensor, temp=1.0):\n"
                "    exponent = torch.clamp(-tensor / temp, min=-50, max=50)\n"
                "    return 1.0 / (1.0 + torch.exp(exponent))\n",
                note="the exponent clamped well below 88 (pytorch-metric-learning's PNP loss)"),
        Example("import torch\n\n\nclass Parzen(torch.nn.Module):\n"
                "    def __init__(self, sigma=0.1):\n        super().__init__()\n"
                "        self.preterm = 1 / (2 * sigma ** 2)\n\n"
                "    def forward(self, img, centers):\n"
                "        w = torch.exp(-self.preterm * (img - centers) ** 2)\n"
                "        return w / torch.sum(w, dim=-1, keepdim=True)\n",
                note="a Gaussian window: a negated scale times a square is at most 0 (monai's Parzen windowing)"),
        Example("import torch\n\n\ndef soft_argmax(scores, grid, temperature):\n"
                "    m = scores.max(dim=1).values.detach()[:, None]\n"
                "    e = ((scores - m) / temperature).exp()\n"
                "    return (e / e.sum(dim=1, keepdim=True)) @ grid\n",
                note="max-shifted, then divided by a temperature (kornia's ALIKED): still at most 0"),
        Example("import torch\nimport torch.nn.functional as F\n\n\ndef log_prob(log_gauss, mixing_logits):\n"
                "    return torch.logsumexp(log_gauss + F.log_softmax(mixing_logits, dim=-1), dim=-1)\n",
                note="the weighted log-sum-exp with the weights' logs"),
        Example("import torch\n\n\ndef f(x, w):\n    return torch.log(torch.sum(torch.exp(x - x.max()) * w.softmax(-1), -1))\n",
                note="max-shifted exps, weighted"),
        Example("import torch\nfrom torch import nn\nfrom torch_scatter import scatter_add, scatter_max\n\n\n"
                "class EdgeAttention(nn.Module):\n    def __init__(self, dim):\n        super().__init__()\n"
                "        self.score = nn.Linear(dim, 1)\n\n    def forward(self, x, index, n):\n"
                "        s = self.score(x).squeeze(-1)\n"
                "        e = (s - scatter_max(s, index, dim=0, dim_size=n)[0][index]).exp()\n"
                "        return e / scatter_add(e, index, dim=0, dim_size=n)[index]\n",
                note="each group's max subtracted before exp (torch_geometric.utils.softmax)"),
        Example("import torch\nimport torch.nn.functional as F\n\ndef f(x):\n"
                "    return torch.sigmoid(x), F.softplus(x), torch.logsumexp(x, 1)\n"),
        Example("import torch\n\ndef f():\n    return 1 / (1 + torch.exp(-torch.tensor(2.0)))\n",
                note="constant operand"),
        Example("import torch\n\n\ndef logodd_mean(x, dim, eps=1e-6):\n    x = x.clamp(min=eps, max=1.0 - eps)\n"
                "    x = torch.log(x / (1 - x))\n    x = torch.mean(x, dim=dim)\n"
                "    return torch.exp(x) / (1 + torch.exp(x))\n",
                note="the mean log-odds of probabilities clamped to [1e-6, 1 - 1e-6]: at most 13.8 (pytorch-toolbelt's "
                     "test-time augmentation; measured: finite value and gradient at 0 and 1)"),
        Example("import torch\nfrom torch import nn\n\n\ndef loss_weight(log_snr):\n    snr = log_snr.exp()\n"
                "    return snr.clamp(max=5) / (snr + 1)\n\n\nclass Diffusion(nn.Module):\n"
                "    def __init__(self, net):\n        super().__init__()\n        self.net = net\n\n"
                "    def forward(self, img):\n        times = torch.zeros(img.shape[0]).uniform_(0, 1)\n"
                "        log_snr = -2 * torch.log(torch.tan(0.1 + times))\n"
                "        return (self.net(img, log_snr) - img).pow(2).mean() * loss_weight(log_snr).mean()\n",
                note="a min-SNR loss weight of sampled times: every call hands the helper a value without gradient "
                     "(denoising-diffusion-pytorch)"),
        Example("import torch\n\n\ndef damping(pos, r0=0.3):\n    r = torch.cdist(pos, pos)\n"
                "    return 1 / (1 + torch.exp(-20 * (r / r0 - 1)))\n",
                note="Grimme's D2 damping of a distance over a positive radius: the exponent is at most 20 (measured: "
                     "finite value and gradient for r from 0 to 1e6)"),
        Example("import math\n\ndef f(x):\n    return 1 / (1 + math.exp(-x))\n", note="python floats"),
        Example("import torch\n\ndef f(x):\n    return torch.log(1 + torch.exp(x.detach()))\n",
                note="detached operand"),
        Example("import torch\n\ndef f(x):\n    with torch.no_grad():\n        return 1 / (1 + torch.exp(-x))\n",
                note="no-grad"),
        Example("import torch\n\ndef f(x):\n    m = x.max(dim=1, keepdim=True).values\n"
                "    return m + torch.log(torch.exp(x - m).sum(1, keepdim=True))\n",
                note="max-shifted log-sum-exp"),
        Example("import torch\n\ndef softplus(x):\n    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-torch.abs(x)))\n",
                note="exp(-|x|) <= 1: the stable softplus"),
        Example("import torch\n\ndef f(z):\n    e = torch.exp(z - z.max(dim=-1, keepdim=True).values)\n"
                "    return e / e.sum(dim=-1, keepdim=True)\n", note="max-shifted softmax"),
        Example("import torch\nimport torch.nn.functional as F\n\n\n"
                "def info_nce(a, b, all_b, tau=0.1):\n"
                "    a, b, all_b = F.normalize(a, dim=1), F.normalize(b, dim=1), F.normalize(all_b, dim=1)\n"
                "    pos = torch.exp((a * b).sum(dim=1) / tau)\n"
                "    ttl = torch.exp(a @ all_b.T / tau).sum(dim=1)\n"
                "    return -torch.log(pos / ttl).mean()\n",
                note="cosines of normalised vectors over a temperature: within ±10, no overflow"),
    ]

    def message(self, site: Site, ctx: RuleContext) -> str:
        use = _USE_GROUPED.get(site.variant) if dict(site.data).get("grouped") else None
        if use is not None:
            if site.variant.startswith("softmax"):
                return (f"hand-written `{site.detail}` is NaN in a group once exp overflows there (float32: "
                        f"z > 88) or every term of the group underflows to 0 (all z < -103), and so is its "
                        f"gradient; use {use}")
            return (f"hand-written `{site.detail}` overflows in exp (float32: |x| > 88) and gives a NaN "
                    f"gradient; use {use}")
        if site.variant in ("softmax", "softmax_weighted"):
            # (a softmin of distances, `exp(-d / T)`, never overflows: all its terms underflow to 0
            # for large distances or a small temperature, and 0 / 0 is NaN: torchfields#18)
            return (f"hand-written `{site.detail}` is NaN once exp overflows (float32: z > 88) or every term "
                    f"underflows to 0 (all z < -103), and so is its gradient; use {_USE[site.variant]}")
        if site.variant in ("sigmoid_ratio", "sigmoid_derivative"):
            return (f"hand-written `{site.detail}` is inf / inf = NaN once exp overflows (float32: z > 88), and so "
                    f"is its gradient; use {_USE[site.variant]}")
        return (f"hand-written `{site.detail}` overflows in exp (float32: |x| > 88) and gives a NaN gradient; "
                f"use {_USE[site.variant]}")
