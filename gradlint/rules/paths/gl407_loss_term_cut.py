"""GL407 loss-term-cut: one term of a backpropagated sum is cut from the graph; that term trains nothing."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.numerics.base import SiteRule
from gradlint.facts.numerics import Site


class LossTermCut(SiteRule):
    """
    ## What it does
    Flags a term of a loss that is backpropagated (`loss.backward()`, `scaler.scale(loss)`,
    `accelerator.backward(loss)`...) when the term was cut from the graph with `.item()`,
    `.detach()`, `.tolist()`, `float(...)` or `torch.tensor(...)` while the other terms still
    carry gradient. Followed through variables, `+=`, constant weights (`0.1 * aux.item()`),
    negation and the sums and means that reduce the sum (`-(log_pz + log_det.detach()).mean()`:
    a linear map keeps every term). Another term counts as carrying gradient unless it is known
    to be free of it: the loss is backpropagated, so something in it must carry one.
    A loss of a cut input against a target that carries no gradient is cut too:
    `F.mse_loss(sr.detach(), hr)` (the input and target losses of `torch.nn.functional`: mse, l1,
    smooth-l1, huber, nll, kl-div and the margin losses), as is a criterion module's.

    A loss a model's forward returns (alone or as an element of a tuple: `return frames, loss`)
    counts where a caller in the project backpropagates that element of the model's output
    (`next_frames, loss = self.network(x); loss.backward()`, in any file that names the class);
    the finding is at the cut in the forward. A weight may be a number or a setting read from an
    object nothing else is known of (`self.cfg.beta * aux.item()`), and a list filled by index
    (`deltas[0] = ...`) carries what it is given.

    Not flagged: a cut value used inside a computation (`(pred - target.detach()) ** 2`: a
    stop-gradient target), values summed for logging that are never backpropagated, and a loss
    whose every term is cut (GL402 reports that).

    ## Why is this bad?
    The cut term adds a number to the loss but no gradient: the regulariser, auxiliary loss or
    penalty it stands for never trains anything, and the logged loss still looks right.
    Measured in torch: with `loss = mse + 0.1 * l2.item()` the gradient of the weights is
    exactly that of `mse` alone.

    ## Example
    ```python
    loss = criterion(out, y) + 0.01 * model.l2_penalty().item()
    loss.backward()
    ```

    ## Use instead
    ```python
    loss = criterion(out, y) + 0.01 * model.l2_penalty()
    loss.backward()
    ```
    """

    code = "GL407"
    kinds = frozenset({"loss_term_cut"})
    name = "loss-term-cut"
    severity = Severity.WARNING
    summary = "A term of a backpropagated loss is cut from the graph and trains nothing"

    invalid = [
        Example("import torch.nn.functional as F\n\n"
                "def step(model, x, y, opt):\n    out = model(x)\n"
                "    loss = F.mse_loss(out, y) + 0.1 * out.abs().mean().item()\n"
                "    loss.backward()\n    opt.step()\n"),
        Example("import torch.nn.functional as F\n\n"
                "def step(model, x, y, opt):\n    out = model(x)\n    loss = F.cross_entropy(out, y)\n"
                "    reg = out.pow(2).mean()\n    loss += reg.detach()\n    loss.backward()\n    opt.step()\n",
                note="through `+=`"),
        Example("import torch.nn.functional as F\nfrom torch import nn\n\n"
                "G = nn.Conv2d(3, 3, 3, padding=1)\nfor lr_img, hr in loader:\n    sr = G(lr_img)\n"
                "    loss = F.l1_loss(sr, hr) + 0.006 * F.mse_loss(sr.detach(), hr)\n"
                "    loss.backward()\n",
                note="a loss of a detached input against data"),
        Example("import torch.nn.functional as F\n\n"
                "def step(model, x, y, opt):\n    out = model(x)\n"
                "    losses = {\"ce\": F.cross_entropy(out, y), \"l2\": out.pow(2).sum().detach()}\n"
                "    loss = losses[\"ce\"] + 1e-4 * losses[\"l2\"]\n    loss.backward()\n    opt.step()\n",
                note="a term kept in a dict of losses and read back by its key"),
    ]
    valid = [
        Example("import torch.nn.functional as F\n\n"
                "def step(model, target_net, x, y, opt):\n    q = model(x)\n"
                "    loss = ((q - target_net(x).detach()) ** 2).mean()\n    loss.backward()\n    opt.step()\n",
                note="a stop-gradient target inside the computation"),
        Example("import torch.nn.functional as F\n\n"
                "def step(student, teacher, x, y, opt):\n    out = student(x)\n"
                "    loss = F.cross_entropy(out, y) + F.mse_loss(teacher(x).detach(), out)\n"
                "    loss.backward()\n    opt.step()\n",
                note="written target-first: the second argument carries the gradient"),
        Example("import torch.nn.functional as F\n\n"
                "def step(model, x, y, opt):\n    loss = F.mse_loss(model(x), y)\n    loss.backward()\n"
                "    opt.step()\n    total = loss.item() + 0.5\n    return total\n",
                note="a logged value, never backpropagated"),
        Example("import torch.nn.functional as F\n\n"
                "def step(model, x, y, opt):\n    out = model(x)\n"
                "    losses = {\"ce\": F.cross_entropy(out, y), \"l2\": out.pow(2).sum().detach()}\n"
                "    loss = losses[\"ce\"]\n    loss.backward()\n    opt.step()\n    return losses\n",
                note="a detached entry of a dict of losses, returned for logging only"),
        Example("import torch\nimport torch.nn.functional as F\nfrom config import MARGIN\n\n"
                "def step(model, x, y):\n"
                "    loss = F.cross_entropy(model(x), y) + torch.tensor(MARGIN)\n"
                "    loss.backward()\n",
                files=(("config.py", "MARGIN = 0.1\n"),),
                note="an imported name in capitals is a constant (a class so named is not: see GL304)"),
    ]

    def message(self, site: Site, ctx: RuleContext) -> str:
        data = dict(site.data)
        if data.get("returned_by") and "." in data["returned_by"]:
            # a loss a method returns, backpropagated by a caller in another file
            return (f"a term of `{site.detail}`, which a caller of `{data['returned_by']}` backpropagates, is cut "
                    f"by `{site.variant}` here: it adds to the loss value but no gradient, so it trains nothing")
        if data.get("returned_by"):
            # a loss a forward returns, backpropagated by a caller (facts.numerics.backpropagated_elsewhere)
            which = f"element {data['element']} of" if int(data.get("element", -1)) >= 0 else "the whole"
            return (f"a term of `{site.detail}`, {which} `{data['returned_by']}`'s output that a caller "
                    f"backpropagates, is cut by `{site.variant}` here: it adds to the loss value but no "
                    "gradient, so it trains nothing")
        return (f"a term of the backpropagated `{site.detail}` is cut by `{site.variant}` here: it adds "
                "to the loss value but no gradient, so it trains nothing")
