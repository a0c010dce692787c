"""GL402 loss-graph-break: the backpropagated loss is built through .item(), torch.tensor(...), numpy..."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.numerics.base import SiteRule
from gradlint.facts.numerics import Site


class LossGraphBreak(SiteRule):
    """
    ## What it does
    Follows the value passed to `backward()` back through the function and flags it when every
    path from it to the model goes through an operation autograd cannot see: `torch.tensor(...)`
    of a computed value, `Variable(..., requires_grad=True)`, `.item()`, `.numpy()`,
    `.tolist()`, `float()`, numpy functions, `argmax`/`round`, or a comparison. Also a loss
    computed from the model, detached, then made to require grad again (`loss = loss.detach();
    loss.requires_grad = True`, or `.requires_grad_()`): a detached loss alone fails loudly in
    `backward()`, and setting requires_grad again silences that failure.

    A value with at least one healthy path (`loss = ce + 0.1 * torch.tensor(penalty)`) is fine.
    Branches merge: a loss cut only in a metric-only branch is not flagged, nor is a name
    rebound after `backward()`. A leaf made with `requires_grad=True` of numbers drawn at
    random (`torch.tensor(rng.randn(n, 3), requires_grad=True)`) is a trainable leaf, as a
    parameter is, not a cut.

    ## Why is this bad?
    The loss becomes a new leaf: `backward()` either fails or, once `requires_grad=True` is
    added, runs and leaves every parameter's `.grad` None (or unchanged), so the optimizer steps
    on nothing. Measured in torch: `torch.tensor(loss.item(), requires_grad=True).backward()`
    runs without error and the model's parameters get no gradient.

    ## Example
    ```python
    loss = torch.tensor(criterion(out, y).item(), requires_grad=True)
    loss.backward()
    ```

    ## Use instead
    ```python
    loss = criterion(out, y)
    loss.backward()
    ```
    """

    code = "GL402"
    probe_measure = "loss_parameters_cut"
    kinds = frozenset({"loss_graph_break"})
    name = "loss-graph-break"
    severity = Severity.ERROR
    summary = "The backpropagated loss is cut from the graph (.item(), torch.tensor, numpy...)"

    invalid = [
        Example("import torch\n\ndef step(crit, out, y):\n"
                "    loss = torch.tensor(crit(out, y).item(), requires_grad=True)\n"
                "    loss.backward()\n"),
        Example("import torch\nfrom torch.autograd import Variable\nimport numpy as np\n\n"
                "def step(out, y):\n"
                "    l = np.mean((out.detach().numpy() - y) ** 2)\n"
                "    loss = Variable(torch.from_numpy(np.array(l)), requires_grad=True)\n"
                "    loss.backward()\n"),
        Example("import torch\n\ndef step(losses):\n"
                "    total = torch.tensor(sum(l.item() for l in losses), requires_grad=True)\n"
                "    total.backward()\n"),
        Example("import torch\n\ndef step(logits, y):\n"
                "    loss = (logits.argmax(1) != y).float().mean()\n"
                "    loss.requires_grad_(True)\n"
                "    loss.backward()\n", note="argmax/comparison"),
        Example("import torch\nfrom torch import nn\n\nmodel = nn.Linear(4, 1)\n\n\ndef step(x):\n"
                "    loss = model(x).pow(2).mean().detach()\n"
                "    loss.requires_grad = True\n"
                "    loss.backward()\n", note="detached, then made to require grad again"),
        Example("import torch\nfrom torch import nn\n\nmodel = nn.Linear(4, 1)\n\n\ndef step(x):\n"
                "    loss = model(x).pow(2).mean().detach().requires_grad_()\n"
                "    loss.backward()\n", note="the same with requires_grad_()"),
        Example("import torch\nfrom torch import nn\n\nmodel = nn.Linear(4, 1)\n\n\ndef step(x):\n"
                "    loss = torch.as_tensor(model(x).pow(2).mean().item())\n"
                "    loss.requires_grad_(True)\n"
                "    loss.backward()\n", note="as_tensor of a number: a new leaf"),
    ]
    valid = [
        Example("import numpy as np\nimport torch\n\n\ndef solve(n, rng):\n"
                "    X = torch.tensor(rng.randn(n, 3).astype(np.float32), requires_grad=True)\n"
                "    opt = torch.optim.Adam([X])\n    for _ in range(10):\n        opt.zero_grad()\n"
                "        U = (1.0 / torch.cdist(X, X).clamp(min=1e-3)).sum()\n        U.backward()\n        opt.step()\n",
                note="a leaf made with requires_grad=True of numbers drawn at random is what is optimised "
                     "(escnn's Thomson solver)"),
        Example("import torch\n\ndef step(crit, out, y):\n    loss = crit(out, y)\n    loss.backward()\n"
                "    loss = loss.item()\n    return loss\n", note="rebinding after backward"),
        Example("import torch\n\ndef step(crit, out, y, penalty):\n"
                "    loss = crit(out, y) + 0.1 * torch.tensor(penalty)\n    loss.backward()\n",
                note="one healthy path"),
        Example("import torch\n\ndef step(crit, out, y, log_metric):\n"
                "    if log_metric:\n        loss = torch.tensor(0.0)\n"
                "        loss = torch.tensor(crit(out, y).item())\n"
                "    else:\n        loss = crit(out, y)\n"
                "    loss.backward()\n", note="metric-only branch"),
        Example("import torch\nimport torch.nn.functional as F\n\ndef step(logits, soft):\n"
                "    loss = F.cross_entropy(logits, soft.argmax(-1))\n    loss.backward()\n",
                note="argmax on the target"),
        Example("import torch\nfrom torch import nn\n\nmodel = nn.Linear(4, 1)\n\n\ndef step(x):\n"
                "    loss = torch.as_tensor(model(x).pow(2).mean(), dtype=torch.float32)\n"
                "    loss.backward()\n",
                note="as_tensor of a tensor gives it back, graph and all (measured: `as_tensor(loss) is loss`)"),
        Example("import torch\nfrom torch import nn\n\nmodel = nn.Linear(4, 1)\n\n\ndef saliency(x):\n"
                "    feat = model(x).detach().requires_grad_()\n"
                "    (feat ** 2).sum().backward()\n"
                "    return feat.grad\n", note="a value computed from a detached leaf: its .grad is wanted"),
    ]

    def message(self, site: Site, ctx: RuleContext) -> str:
        data = dict(site.data)
        line = data.get("line")
        at = f" (line {line})" if line else ""
        return (f"the backpropagated `{site.detail}` is built through {data.get('through', site.variant)}{at}, which "
                "cuts it from the graph: no parameter gets a gradient")
