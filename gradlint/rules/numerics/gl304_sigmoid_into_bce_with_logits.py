"""GL304 sigmoid-into-bce-with-logits: BCEWithLogitsLoss on a sigmoid output (sigmoid applied twice)."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.numerics.base import SiteRule, output_of, passed_as
from gradlint.facts.numerics import Site
from gradlint.rules.numerics.examples import ATTR, GAN, MLP, RUN_MLP, TRAINER, TRAINER_MAIN, WRAPPER

_EDGE_LOSS = ("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n"
              "class EdgeLoss(nn.Module):\n"
              "    def forward(self, pred, target):\n"
              "{body}"
              "def step(net, x, y):\n"
              "    crit = EdgeLoss()\n"
              "    return crit(torch.sigmoid(net(x)), y)\n")

_PASSED = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 1)

    def forward(self, x):
        return torch.sigmoid(self.fc(x))


def train_epoch(model, criterion, loader):
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()


def main(loader):
    train_epoch(Net(), nn.BCEWithLogitsLoss(), loader)
"""


class SigmoidIntoBCEWithLogits(SiteRule):
    """
    ## What it does
    Flags `nn.BCEWithLogitsLoss` / `F.binary_cross_entropy_with_logits` whose input is already
    a sigmoid output (inline, through a variable, an `nn.Sigmoid` module, or a model whose
    `forward` returns a sigmoid, whole or as one element of a tuple — `validity, label = D(x)` —
    across the files of the run). The criterion may be a module, a function, a function-valued
    attribute (`self.loss_func = F.binary_cross_entropy_with_logits`) or what a short method
    returns (`crit = self.get_loss()`). A model or criterion that is a
    function's parameter is what its callers pass when they all agree (callers in the same file,
    and for a module-level function, callers anywhere in the project), else the parameter's
    constructor default (`criterion=nn.BCEWithLogitsLoss()`); with no caller it is unknown.

    Can run with grad: not under `torch.no_grad()`/`inference_mode()` (a with-block or a
    decorator), and not in a function that the project calls only from such code, through any
    chain of its functions (a helper of a `@torch.no_grad()` pipeline `__call__`, in the same file
    or another). A function with no caller in the project, one read as a value, an entry point
    (`forward`, `training_step`, `__call__`...), or one called through a receiver whose class is
    unknown can run with grad.

    ## Why is this bad?
    The loss applies the sigmoid itself: the model's output is squashed twice, so every
    prediction lies in (0.5, 0.73) after the second sigmoid, the loss cannot reach 0, and the
    gradient is scaled by σ'(σ(x)) ≤ 0.25 on top of σ'(x).

    ## Example
    ```python
    loss = F.binary_cross_entropy_with_logits(torch.sigmoid(logits), target)
    ```

    ## Use instead
    ```python
    loss = F.binary_cross_entropy_with_logits(logits, target)
    ```
    """

    code = "GL304"
    probe_measure = "first_nonfinite"
    kinds = frozenset({"probability_into_loss"})
    needs_grad = True
    name = "sigmoid-into-bce-with-logits"
    severity = Severity.ERROR
    summary = "BCEWithLogitsLoss applied to a sigmoid output (sigmoid applied twice)"

    invalid = [
        Example('import torch\nimport torch.nn.functional as F\nfrom torch import nn\nimport pytorch_lightning as pl\n\n\nclass Model(pl.LightningModule):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(64, 1)\n        self.loss_func = F.binary_cross_entropy_with_logits\n\n    def forward(self, x):\n        return torch.sigmoid(self.fc(x))\n\n    def loss(self, logits, labels):\n        return self.loss_func(input=logits, target=labels)\n\n    def training_step(self, batch, batch_idx):\n        x, y = batch\n        return self.loss(self.forward(x), y.float())\n',
                note="a LightningModule's own loss method, which only the project calls "
                     "(Lightning-AI/pytorch-lightning#7096)"),
        Example("import torch\nimport torch.nn.functional as F\n\n"
                "def step(z, t):\n    return F.binary_cross_entropy_with_logits(torch.sigmoid(z), t)\n"),
        Example("import torch\nfrom torch import nn\n\n"
                "class M(nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.head = nn.Sequential(nn.Linear(4, 1), nn.Sigmoid())\n"
                "        self.loss = nn.BCEWithLogitsLoss()\n\n"
                "    def training_step(self, x, t):\n"
                "        return self.loss(self.head(x), t)\n",
                note="an nn.Sequential ending in nn.Sigmoid"),
        Example("import torch\nfrom torch import nn\nfrom net import Net\n\n"
                "net = Net()\ncrit = nn.BCEWithLogitsLoss()\n\n"
                "def step(x, t):\n    out = net(x)\n    return crit(out, t)\n",
                files=(("net.py", "import torch\nfrom torch import nn\n\n"
                        "class Net(nn.Module):\n    def forward(self, x):\n        return x.sigmoid()\n"),),
                note="across files"),
        Example(_PASSED, note="a model and a criterion passed by the caller"),
        Example("import torch\nfrom torch import nn\n\n"
                "class Trainer:\n"
                "    def __init__(self, model, criterion=nn.BCEWithLogitsLoss()):\n"
                "        self.model = model\n"
                "        self.criterion = criterion\n\n"
                "    def loss(self, x, y):\n"
                "        return self.criterion(torch.sigmoid(self.model(x)), y)\n",
                note="a criterion from a constructor default"),
        Example(GAN + "    validity, label = D(x)\n    return adversarial_loss(validity, y)\n",
                note="the sigmoid element of a tuple the forward returns, unpacked"),
        Example(GAN + "    out = D(x)\n    return adversarial_loss(out[0], y)\n",
                note="the sigmoid element of a tuple the forward returns, indexed"),
        Example(ATTR.format(loss="binary_cross_entropy_with_logits", input="torch.sigmoid(self.fc(x))"),
                note="a criterion held as a function-valued attribute"),
        Example(WRAPPER.format(loss="BCEWithLogitsLoss"), note="a criterion returned by a wrapper method"),
        Example(RUN_MLP, files=(("nets.py", MLP.format(act="Sigmoid")),),
                note="an imported class whose name is all capitals"),
        Example("import torch\nimport torch.nn.functional as F\n\n\n"
                "def bce(pred, t):\n    return F.binary_cross_entropy_with_logits(pred, t)\n\n\n"
                "def step(z, t):\n    return bce(torch.sigmoid(z), t)\n",
                note="a parameter every caller passes a sigmoid output for"),
        Example("import torch.nn.functional as F\n\n\n"
                "def bce(pred, t):\n    return F.binary_cross_entropy_with_logits(pred, t)\n",
                files=(("train.py", "import torch\nfrom torch import nn\nfrom example import bce\n\n\n"
                        "class Scorer(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                        "        self.fc = nn.Linear(8, 1)\n\n    def forward(self, x):\n"
                        "        return torch.sigmoid(self.fc(x))\n\n\n"
                        "scorer = Scorer()\n\n\n"
                        "def step(x, t):\n    return bce(scorer(x), t)\n"),),
                note="a parameter callers in another file pass a model's sigmoid output for"),
        Example(TRAINER, files=(("main.py", TRAINER_MAIN.format(act=", nn.Sigmoid()")),),
                note="a trainer whose callers give it a discriminator ending in a sigmoid (tuple assignment)"),
        Example(_EDGE_LOSS.format(body="        return F.binary_cross_entropy_with_logits(pred, target)\n\n"),
                note="at the call: a loss module whose forward feeds that parameter to BCE-with-logits")
    ]
    valid = [
        Example('import torch\nimport torch.nn.functional as F\nfrom torch import nn\nimport pytorch_lightning as pl\n\n\nclass Model(pl.LightningModule):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(64, 1)\n        self.loss_func = F.binary_cross_entropy_with_logits\n\n    def forward(self, x):\n        return torch.sigmoid(self.fc(x))\n\n    def on_before_backward(self, logits, labels):\n        return self.loss_func(input=logits, target=labels)\n\n    def training_step(self, batch, batch_idx):\n        x, y = batch\n        return self.on_before_backward(self.forward(x), y.float())\n',
                note="a method Lightning calls too (a hook): what it passes there is not known"),
        Example(_PASSED + "    train_epoch(Logits(), nn.BCEWithLogitsLoss(), loader)\n\n\n"
                "class Logits(nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.fc = nn.Linear(10, 1)\n\n"
                "    def forward(self, x):\n"
                "        return self.fc(x)\n",
                note="callers pass models that differ: unknown"),
        Example(_PASSED.split("\n\ndef main")[0] + "\n", note="no caller: unknown"),
        Example(GAN + "    validity, label = D(x)\n    return adversarial_loss(label, y)\n",
                note="the logits element of the same tuple"),
        Example(ATTR.format(loss="binary_cross_entropy_with_logits", input="self.fc(x)"),
                note="a function-valued criterion fed logits"),
        Example(ATTR.format(loss="binary_cross_entropy", input="torch.sigmoid(self.fc(x))"),
                note="a function-valued criterion without logits (GL301's case)"),
        Example(WRAPPER.format(loss="BCELoss"), note="a wrapper method returning BCELoss (GL301's case)"),
        Example(RUN_MLP, files=(("nets.py", MLP.format(act="Identity")),),
                note="an all-capitals class whose forward returns logits"),
        Example("import torch.nn.functional as F\n\ndef step(z, t):\n"
                "    return F.binary_cross_entropy_with_logits(z, t)\n"),
        Example("import torch\nimport torch.nn.functional as F\n\ndef step(z, teacher):\n"
                "    return F.binary_cross_entropy_with_logits(z, torch.sigmoid(teacher))\n",
                note="sigmoid on the target"),
        Example("import torch\nimport torch.nn.functional as F\n\n\n"
                "def bce(pred, t):\n    return F.binary_cross_entropy_with_logits(pred, t)\n\n\n"
                "def step(z, t):\n    return bce(z, t)\n",
                note="a parameter every caller passes logits for"),
        Example("import torch\nimport torch.nn.functional as F\n\n\n"
                "def bce(pred, t):\n    return F.binary_cross_entropy_with_logits(pred, t)\n\n\n"
                "def step(z, t):\n    return bce(torch.sigmoid(z), t) + bce(z, t)\n",
                note="callers that disagree (a sigmoid output and logits)"),
        Example(TRAINER, files=(("main.py", TRAINER_MAIN.format(act="")),),
                note="the same trainer given a discriminator that returns logits"),
        Example(_EDGE_LOSS.format(body="        if self.from_logits:\n"
                                       "            return F.binary_cross_entropy_with_logits(pred, target)\n"
                                       "        return F.binary_cross_entropy(pred, target)\n\n"),
                note="a forward that takes logits or probabilities by a setting")
    ]

    def selects(self, site: Site) -> bool:
        return site.kind in self.kinds and dict(site.data).get("loss") == "binary_cross_entropy_with_logits"

    def message(self, site: Site, ctx: RuleContext) -> str:
        what = passed_as(site, "a sigmoid output" if not site.classes else output_of(site, "sigmoid"))
        return f"`{site.detail}` applies a sigmoid itself but is fed {what}: the sigmoid is applied twice"
