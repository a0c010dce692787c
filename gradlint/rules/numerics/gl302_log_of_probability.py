"""GL302 log-of-probability: log(softmax(x)), log(sigmoid(x)), log(1 - sigmoid(x)) and their look-alikes."""

from __future__ import annotations

from gradlint.findings import Edit, Fix, Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.numerics.base import F, SiteRule, functional, output_of, passed_as, spelling
from gradlint.rules.numerics.examples import HETERO
from gradlint.facts.numerics import NumericsFacts, Site, returned_kind

_WHAT = {"softmax": "softmax(x)", "sigmoid": "sigmoid(x)", "one_minus_sigmoid": "1 - sigmoid(x)"}
_INSTEAD = {"softmax": "log_softmax(x)", "sigmoid": "logsigmoid(x)", "one_minus_sigmoid": "logsigmoid(-x)"}

_PIPELINE = ("import torch\nfrom example import log_probs\n\n\nclass Pipeline:\n"
             "    @torch.no_grad()\n    def __call__(self, z):\n        return log_probs(z)\n")


class LogOfProbability(SiteRule):
    """
    ## What it does
    Flags the log of a probability computed in two steps: `torch.log(torch.softmax(x, d))`,
    `x.softmax(d).log()`, `torch.log(torch.sigmoid(x))`, `torch.log(1 - torch.sigmoid(x))`,
    hand-written cross-entropy/BCE built from them, through local variables, dict entries the
    function stores (`outputs["hm"] = torch.sigmoid(...)`) and through a model whose `forward`
    returns probabilities (across the files of the run), whole or as one element of a tuple
    (`probs, var = net(x)`, `net(x)[0]`); a probability passed to a loss module whose forward
    logs it, itself or through a method or a function of its file; and the log of a quotient with such
    a probability for an operand (`(p / q).log()`, a KL divergence written by hand, or
    `torch.log(p / p.sum())`); when the probability is the divisor, also with an eps or a clamp
    after the division (`torch.log(p / q + eps)`). In ONNX: a `Log` fed by `Softmax` or `Sigmoid`,
    or by a `Div` with one of them for an operand (a divisor also through an `Add`, `Clip` or
    `Max` after it).

    Not flagged: `log_softmax`, `logsigmoid` (also where the dynamo ONNX exporter writes one as
    `Log(Sigmoid)`: its node metadata names the one torch op); arguments shifted by an eps or clamped (the eps
    bounds the gradient at 1/eps: a deliberate choice), in place too (`r.clamp_(min=eps)`), and
    quotients whose divisor is shifted so (`(p + eps) / (q + eps)`); a softmax written out of
    exps bounded as GL305 reads them (cosines of normalised vectors over a temperature: an InfoNCE); logs of targets or
    constants, and quotients by a probability of constants (a fixed prior); code under
    `torch.no_grad()`/`inference_mode` or after a `torch.set_grad_enabled(False)` statement,
    evaluation or metric functions, and values taken out of autograd at once (`.item()`, or a
    `.detach()` that ends a value stored aside: `self.last_entropy = -(a * a.log()).sum().detach()`);
    a log in the branch of a `torch.where` whose condition keeps its argument positive
    (`torch.where(p > 0, p * p.log(), 0)`: its value is never -inf; the NaN gradient of the
    masked branch is GL309's finding).

    Can run with grad: not under `torch.no_grad()`/`inference_mode()` (a with-block or a
    decorator), and not in a function that the project calls only from such code, through any
    chain of its functions (a helper of a `@torch.no_grad()` pipeline `__call__`, in the same file
    or another). A function with no caller in the project, one read as a value, an entry point
    (`forward`, `training_step`, `__call__`...), or one called through a receiver whose class is
    unknown can run with grad.

    ## Why is this bad?
    A probability underflows to exactly 0 long before its logit is extreme, and the log turns it
    into -inf with a NaN gradient. Measured in torch: `log(softmax([0, -200]))` is
    `[0, -inf]` with NaN gradients, where `log_softmax` gives `[0, -200]`; `log(sigmoid(-120))`
    is -inf where `logsigmoid(-120)` is -120.
    A quotient is 0 where its numerator underflows and inf where its denominator does: measured
    in torch 2.13, `(p * (p / q).log()).sum()` over softmax outputs of logits of scale 10 and 1 000
    classes had NaN gradients in 20 of 20 seeds (at scale 5, none). Where the divisor underflows,
    an eps added to the quotient or a clamp of it changes nothing: the division's own backward is
    NaN (`log(p / q + eps)` and `(p / q).clamp(min=eps).log()`: 20 of 20 seeds at scale 10).

    ## Example
    ```python
    logp = torch.log(F.softmax(logits, dim=-1))
    ```

    ## Use instead
    ```python
    logp = F.log_softmax(logits, dim=-1)
    ```

    ## Fix safety
    Safe: `log(softmax(x, d))` and `log_softmax(x, d)` are equal wherever the first is finite,
    and the fix keeps the spelling in use (`F.softmax` → `F.log_softmax`, `x.softmax(d).log()` →
    `x.log_softmax(d)`). `log(sigmoid(x))` becomes `logsigmoid(x)` (and `log(1 - sigmoid(x))`
    becomes `logsigmoid(-x)`) only when `torch.nn.functional` is reachable through the file's
    imports; otherwise no fix is offered.

    ## References
    - PyTorch docs, `torch.nn.functional.log_softmax`: "mathematically equivalent to
      log(softmax(x)), but doing these two operations separately is slower and numerically
      unstable"
    - GRIST (ICSE 2021): log of a probability is the most common numerical bug in its benchmark
    """

    code = "GL302"
    probe_measure = "first_nonfinite"
    kinds = frozenset({"log_of_probability"})
    needs_grad = True
    name = "log-of-probability"
    severity = Severity.WARNING
    summary = "Log of a softmax/sigmoid output (underflows to -inf, NaN gradient)"
    fix_title = "Use log_softmax / logsigmoid"
    inputs = frozenset({"python", "onnx"})

    invalid = [
        Example("import torch\nimport torch.nn.functional as F\n\n"
                "def f(logits):\n    return torch.log(F.softmax(logits, dim=-1))\n",
                fixed="import torch\nimport torch.nn.functional as F\n\n"
                "def f(logits):\n    return F.log_softmax(logits, dim=-1)\n"),
        Example("import torch\n\ndef f(logits):\n    return logits.softmax(-1).log()\n",
                fixed="import torch\n\ndef f(logits):\n    return logits.log_softmax(-1)\n"),
        Example("import torch\n\ndef f(logits):\n    return torch.log(torch.softmax(logits, 1))\n",
                fixed="import torch\n\ndef f(logits):\n    return torch.log_softmax(logits, 1)\n"),
        Example("import torch\nimport torch.nn.functional as F\n\n"
                "def f(x):\n    return torch.log(torch.sigmoid(x))\n",
                fixed="import torch\nimport torch.nn.functional as F\n\n"
                "def f(x):\n    return F.logsigmoid(x)\n"),
        Example("import torch\n\ndef f(x):\n    return torch.log(1 - torch.sigmoid(x))\n",
                fixed="import torch\n\ndef f(x):\n    return torch.nn.functional.logsigmoid(-x)\n"),
        Example("import torch\n\ndef loss(logits, y):\n"
                "    p = torch.softmax(logits, dim=1)\n"
                "    return -(y * torch.log(p)).sum(1).mean()\n",
                note="hand-written cross-entropy through a variable"),
        Example("import torch\n\ndef bce(z, y):\n"
                "    p = torch.sigmoid(z)\n"
                "    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()\n",
                note="hand-written BCE"),
        Example("import torch\nfrom policy import Policy\n\npolicy = Policy()\n\n"
                "def reinforce(state, action, ret):\n"
                "    probs = policy(state)\n"
                "    return -(torch.log(probs[action]) * ret)\n",
                files=(("policy.py", "import torch\nfrom torch import nn\n\n"
                        "class Policy(nn.Module):\n"
                        "    def forward(self, x):\n"
                        "        return torch.softmax(self.fc(x), dim=-1)\n"),),
                note="log of a model's softmax output"),
        Example("import torch\n\n\ndef log_probs(z):\n    return torch.log(torch.softmax(z, -1))\n\n\n"
                "@torch.no_grad()\ndef sample(z):\n    return log_probs(z)\n\n\n"
                "def nll(z, y):\n    return -(log_probs(z) * y).sum()\n",
                note="a helper that no-grad code and a loss both call"),
        Example(HETERO + "    probs, var = net(x)\n    return -(y * torch.log(probs)).sum(1).mean()\n",
                note="the softmax element of a tuple the forward returns"),
        Example("import torch\nimport torch.nn.functional as F\n\n\ndef kl(x, y):\n"
                "    p = F.softmax(x, dim=-1)\n    q = F.softmax(y, dim=-1)\n"
                "    return (p * (p / q).log()).sum(-1).mean()\n",
                note="a KL divergence written by hand: the log of a quotient of softmax outputs"),
        Example("import torch\n\n\ndef kl(x, y):\n    p = x.softmax(-1)\n    q = y.softmax(-1)\n"
                "    return (q * torch.log(q.div(p))).sum(-1)\n",
                note="the probability in the denominator (inf where it underflows), by torch.div"),
        Example("import torch\nimport torch.nn.functional as F\n\n\ndef kl(x, y, eps=1e-8):\n"
                "    p = F.softmax(x, dim=-1)\n    q = F.softmax(y, dim=-1)\n"
                "    return (p * (p / q).clamp(min=eps).log()).sum(-1) + (p * torch.log(p / q + eps)).sum(-1)\n",
                note="an eps or a clamp after dividing by a probability: the division's backward is NaN already"),
        Example("import torch\nfrom torch import nn\n\n\ndef _neg_loss(pred, gt):\n"
                "    return -(torch.log(pred) * gt).sum()\n\n\nclass FocalLoss(nn.Module):\n"
                "    def forward(self, out, target):\n        return _neg_loss(out, target)\n\n\n"
                "class ComputeLoss(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                "        self.focal = FocalLoss()\n\n    def forward(self, outputs, target):\n"
                "        outputs[\"hm\"] = torch.sigmoid(outputs[\"hm\"])\n"
                "        return self.focal(outputs[\"hm\"], target)\n",
                note="a sigmoid stored in a dict entry, passed to a loss module whose forward hands it to a "
                     "function of its file (RTM3D's focal loss, maudzung/RTM3D#13)"),
        Example("import torch\n\n\ndef f(z):\n    p = torch.softmax(z, -1)\n    p.clamp_(max=1.0)\n"
                "    return torch.log(p).sum() + torch.log(torch.sigmoid(z).clamp(max=1.0)).sum()\n",
                note="an upper bound alone (in place too) leaves the 0 an underflow gives"),
        Example("import torch\n\ndef f(z):\n    eps = 0.0\n    return torch.log(torch.softmax(z, -1) + eps)\n",
                note="an eps bound to 0 shifts nothing"),
        Example("import torch\n\ndef f(z):\n    lo = 0.0\n    return torch.log(torch.softmax(z, -1).clamp(min=lo))\n",
                note="clamp(min=0) (here through a name) leaves the 0 an underflow gives"),
        Example("import torch\nfrom consts import ZERO\n\n\ndef bce(z, y):\n"
                "    p = torch.sigmoid(z)\n    return -(y * torch.log(p + ZERO)).mean()\n",
                files=(("consts.py", "ZERO = 0.0\n"),),
                note="an eps imported from another file (consts.py) that is 0"),
        Example("import torch\nimport consts\n\n\ndef nll(z, y):\n"
                "    p = torch.softmax(z, -1)\n    return -(y * torch.log(p.clamp(min=consts.LO))).sum(-1).mean()\n",
                files=(("consts/__init__.py", "from .bounds import LO\n"), ("consts/bounds.py", "LO = -1.0 + 1.0\n")),
                note="a lower bound of another file, re-exported by its package, that folds to 0"),
        Example("import torch\nfrom consts import eps\n\n\ndef bce(z, y):\n"
                "    p = torch.sigmoid(z)\n    return -(y * torch.log(p + eps())).mean()\n",
                files=(("consts.py", "def eps():\n    return 0.0\n"),),
                note="a function of another file that returns 0 as the eps"),
        Example("import torch\nimport torch.nn.functional as F\n\n\n"
                "def nll(probs, target):\n    return F.nll_loss(torch.log(probs), target)\n",
                files=(("train.py", "import torch\nfrom example import nll\n\n\n"
                        "def step(z, y):\n    return nll(torch.softmax(z, -1), y)\n"),),
                note="a helper whose callers in another file pass softmax probabilities"),
        Example("import torch\nimport torch.nn.functional as F\n\n\n"
                "def nll(probs, target):\n    return F.nll_loss(torch.log(probs), target)\n\n\n"
                "def step(z, y):\n    return nll(torch.softmax(z, -1), y)\n",
                note="a parameter every caller passes softmax probabilities for"),
    ]
    valid = [
        Example("import torch\n\n\nclass KLScore:\n    def predict_logits(self, logits):\n"
                "        return self._score(logits.softmax(dim=1))\n\n    def _score(self, p):\n"
                "        return torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum(1)\n",
                note="the where keeps the log finite (pytorch-ood's KL matching); a NaN gradient through "
                     "the masked branch is GL309's finding"),
        Example("import torch\nfrom torch import nn\n\n\nclass Ensemble(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.heads = nn.ModuleList([nn.Linear(8, 5) for _ in range(4)])\n\n"
                "    def forward(self, x, y):\n        p = 0\n        for h in self.heads:\n"
                "            p = p + torch.softmax(h(x), -1)\n        p = p / len(self.heads)\n"
                "        return -torch.log(p.gather(1, y[:, None])).mean()\n",
                note="the log of an ensemble's mean probability, summed in a loop: never 0 unless every head gives 0 (measured: no NaN)"),
        Example("import torch\nimport torch.nn.functional as F\n\n\ndef kl(x, y, t, eps=1e-8):\n"
                "    p = F.softmax(x, dim=-1)\n    q = F.softmax(y, dim=-1)\n"
                "    a = (p * ((p + eps) / (q + eps)).log()).sum(-1)\n"
                "    r = p / (q + eps)\n    r.clamp_(min=eps)\n"
                "    return a + (p * torch.log(r)).sum(-1) + torch.log(p / t + eps).sum(-1)\n",
                note="a divisor shifted by an eps, and a numerator's quotient shifted or clamped after"),
        Example("import torch\n\n\ndef f(outputs, y):\n    outputs[\"p\"] = torch.sigmoid(outputs[\"p\"])\n"
                "    outputs = {\"p\": y}\n    return torch.log(outputs[\"p\"]).sum()\n",
                note="a dict entry read after the name was bound to another dict"),
        Example("import torch\n\n\ndef f(outputs, k):\n    outputs[\"p\"] = torch.sigmoid(outputs[\"p\"])\n"
                "    outputs[k] = outputs[\"p\"].clamp(1e-6, 1 - 1e-6)\n    return torch.log(outputs[\"p\"]).sum()\n",
                note="a dict entry after a store under a key not known (it may be that entry)"),
        Example("import torch\n\n\ndef f(x):\n    p = x.softmax(-1)\n    p.clamp_(min=1e-8)\n"
                "    return torch.log(p).sum()\n", note="a probability clamped in place"),
        Example("import torch\n\n\ndef f(x):\n    prior = torch.softmax(torch.tensor([1.0, 2.0, 3.0]), 0)\n"
                "    return torch.log(torch.nn.functional.softplus(x) / prior).sum()\n",
                note="a probability of constants (a fixed prior) for the divisor"),
        Example("import torch\n\n\ndef entropy(counts):\n    p = counts / counts.sum()\n"
                "    return -(p * torch.log(p)).sum()\n",
                note="a quotient of counts, no softmax output in it"),
        Example("import torch\nimport torch.nn.functional as F\n\n\n@torch.no_grad()\ndef kl(x, y):\n"
                "    p = F.softmax(x, dim=-1)\n    q = F.softmax(y, dim=-1)\n"
                "    return (p * (p / q).log()).sum(-1)\n",
                note="a quotient of probabilities in no-grad code"),
        Example("import torch.nn.functional as F\n\ndef f(z):\n    return F.log_softmax(z, -1), F.logsigmoid(z)\n"),
        Example("import torch\n\ndef f(z):\n    p = torch.softmax(z, -1)\n    return torch.log(p + 1e-8)\n",
                note="eps-shifted"),
        Example("import torch\n\ndef f(z):\n    p = torch.sigmoid(z).clamp(1e-6, 1 - 1e-6)\n    return torch.log(p)\n",
                note="clamped"),
        Example("import torch\n\ndef f(z, y):\n    p = torch.sigmoid(z).clamp(1e-6, 1 - 1e-6)\n"
                "    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()\n",
                note="1 - p of a probability clamped below 1 is at least the eps"),
        Example("import torch\n\ndef nll(model, x, y):\n    p = torch.softmax(model(x), -1)\n"
                "    return -torch.log(p[torch.arange(len(y)), y]).mean().item()\n",
                note="a metric: `.item()` takes the value out of autograd at once"),
        Example("import torch\n\ntorch.set_grad_enabled(False)\np = torch.softmax(model(x), -1)\n"
                "entropy = -(p * p.log()).sum(-1)\n", note="an inference script with grad mode off"),
        Example("import torch\n\ndef f(target, counts):\n    return torch.log(target) + torch.log(torch.tensor(2.0))\n",
                note="logs of targets and constants"),
        Example("import torch\n\n@torch.no_grad()\ndef f(z):\n    return torch.log(torch.softmax(z, -1))\n",
                note="no-grad code"),
        Example("import torch\n\ndef evaluate(z):\n    return torch.log(torch.softmax(z, -1))\n",
                note="evaluation function"),
        Example("import torch\n\ndef f(z):\n    with torch.inference_mode():\n"
                "        return torch.log(torch.softmax(z, -1))\n", note="inference mode"),
        Example("import torch\n\n\ndef log_probs(z):\n    return torch.log(torch.softmax(z, -1))\n",
                files=(("pipeline.py", _PIPELINE),),
                note="a helper only a @torch.no_grad() __call__ (pipeline.py) calls: it never runs with grad"),
        Example(HETERO + "    probs, var = net(x)\n    return torch.log(var).mean()\n",
                note="the other element of the same tuple (a variance head)"),
        Example("import torch\n\ndef f(z):\n    eps = 1e-8\n    return torch.log(torch.softmax(z, -1) + eps)\n",
                note="an eps bound to a name"),
        Example("import torch\n\ndef f(z):\n    lo = 1e-8\n    return torch.log(torch.softmax(z, -1).clamp(min=lo))\n",
                note="a positive lower bound through a name"),
        Example("import torch\nfrom consts import EPS\n\n\ndef bce(z, y):\n"
                "    p = torch.sigmoid(z)\n    return -(y * torch.log(p + EPS)).mean()\n",
                files=(("consts.py", "EPS = 1e-8\n"),),
                note="an eps imported from another file"),
        Example("import torch\nfrom consts import ZERO\n\n\ndef bce(z, y):\n"
                "    p = torch.sigmoid(z)\n    return -(y * torch.log(p + ZERO)).mean()\n",
                files=(("consts.py", "import os\n\nZERO = 0.0\nif os.environ.get('SAFE'):\n    ZERO = 1e-8\n"),),
                note="a constant of another file bound to two values there: not known"),
        Example("import torch\nfrom consts import eps\n\n\ndef bce(z, y):\n"
                "    p = torch.sigmoid(z)\n    return -(y * torch.log(p + eps())).mean()\n",
                files=(("consts.py", "def eps(scale=1.0):\n    return 0.0 * scale + 1e-8 * scale\n"),),
                note="a function with a parameter: what it returns is not followed"),
        Example("import torch\nimport torch.nn.functional as F\n\n\n"
                "def nll(probs, target):\n    return F.nll_loss(torch.log(probs), target)\n\n\n"
                "def step(z, counts, y):\n"
                "    return nll(torch.softmax(z, -1), y) + nll(counts / counts.sum(), y)\n",
                note="a parameter callers pass different things for (one not a softmax output)"),
        Example("import torch\nimport torch.nn.functional as F\n\n\n"
                "def nll(probs, target):\n    return F.nll_loss(torch.log(probs), target)\n\n\n"
                "def step(z, y):\n    return nll(torch.softmax(z, -1) + 1e-8, y)\n",
                note="callers that pass an eps-shifted probability"),
        Example("import torch\nimport torch.nn.functional as F\n\n\n"
                "def nll(probs, target):\n    return F.nll_loss(torch.log(probs), target)\n",
                note="a parameter no caller in the project binds"),
        Example("import torch\nimport torch.nn.functional as F\n\n\n"
                "def info_nce(a, all_b, temperature):\n"
                "    s = F.normalize(a, dim=1) @ F.normalize(all_b, dim=1).T\n"
                "    e = torch.exp(s / temperature)\n"
                "    return -torch.log(e.diag() / e.sum(dim=1)).mean()\n",
                note="a softmax of cosines over a temperature setting (taken as at least 0.05): "
                     "no probability below e^-40 / N, far from underflow (GL305's bounded exponents)"),
    ]

    def graph_message(self, hazard) -> str:
        op = hazard.data["producer"]
        if op == "1-Sigmoid":
            return ("Log of 1 - Sigmoid: it rounds to exactly 0 for large inputs and Log "
                    "gives -inf with NaN gradients; compute -Softplus(x) instead")
        fix = "LogSoftmax" if op == "Softmax" else "-Softplus(-x) (logsigmoid)"
        if hazard.data.get("quotient"):
            return (f"Log of a quotient of a {op} output: {op} rounds to exactly 0 for confident inputs "
                    f"and the quotient is then 0 or inf, with NaN gradients; subtract logs computed with {fix} instead")
        return (f"Log of a {op} output: {op} rounds to exactly 0 for confident inputs "
                f"and Log gives -inf with NaN gradients; compute {fix} instead")

    def message(self, site: Site, ctx: RuleContext) -> str | None:
        if dict(site.data).get("where_guarded"):
            # `where(p > 0, p * p.log(), 0)`: the value is never -inf; the masked branch's NaN
            # gradient is GL309's finding, where the argument carries gradient
            return None
        if site.classes:
            kind = returned_kind(site, ctx.index) or "probability"
            return (f"log of {passed_as(site, output_of(site, kind))}: it underflows to "
                    f"-inf with a NaN gradient; return logits and use {_INSTEAD.get(kind, 'log_softmax(x)')}")
        if site.variant == "ratio":
            what = _WHAT.get(site.detail, "a probability")
            instead = _INSTEAD.get(site.detail, "log_softmax(x)")
            if dict(site.data).get("divisor"):
                return (f"log of a quotient divided by {what}: it is inf once that probability underflows to 0, "
                        f"and the division's gradient is NaN whatever eps or clamp follows; subtract logs made "
                        f"with {instead} instead")
            return (f"log of a quotient of {what}: it is -inf with a NaN gradient once the probability underflows "
                    f"to 0; subtract logs made with {instead} instead")
        what = _WHAT[site.variant]
        return (f"log of {passed_as(site, what)} underflows to -inf with a NaN gradient once a probability is 0; "
                f"use {_INSTEAD[site.variant]}")

    def fix(self, site: Site, facts: NumericsFacts) -> Fix | None:
        """log(softmax(...)) -> log_softmax(...); log(sigmoid(x)) -> logsigmoid(x), and
        log(1 - sigmoid(x)) -> logsigmoid(-x): only when the probability is made inside the log."""
        p = site.pieces.producer if site.pieces else None
        if p is None:
            return None
        method = not p.resolved and p.receiver is not None
        if site.variant == "softmax":
            if p.receiver is not None:
                new = f"{p.receiver.text}.log_softmax({p.args})"
            else:
                name = spelling(facts, F + "log_softmax") or spelling(facts, "torch.log_softmax")
                if name is None:
                    return None
                new = f"{name}({p.args})"
            title = "Use log_softmax"
        else:
            name = functional(facts, "logsigmoid")
            if name is None:
                return None
            if method:
                if p.nargs:
                    return None
                inner = p.receiver
            else:
                if p.only is None:
                    return None
                inner = p.only
            text = inner.text
            if site.variant == "one_minus_sigmoid":
                text = "-" + (text if inner.atom else f"({text})")
            new = f"{name}({text})"
            title = "Use logsigmoid"
        return Fix(title, (Edit(site.span, new),), safe=True)
