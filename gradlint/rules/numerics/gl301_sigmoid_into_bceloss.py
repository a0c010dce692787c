"""GL301 sigmoid-into-bceloss: BCELoss / binary_cross_entropy fed by a sigmoid output."""

from __future__ import annotations

import math
import struct

from gradlint.findings import Edit, Fix, Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.numerics.base import F, SiteRule, output_of, passed_as, spelling
from gradlint.rules.numerics.examples import ATTR, WRAPPER
from gradlint.facts.numerics import NumericsFacts, Site


# A sigmoid of an argument within ±16 loses nothing in float32 BCE: its gradient agrees with the
# with-logits loss's within 1e-7 relative from -27 to 16.5, and parts at 17, where the sigmoid
# rounds to 1.0 (measured, bench/measure_sigmoid_bce.py).
LOGIT_SAFE = 16.0


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _sigmoid32(x: float) -> float:
    """1 / (1 + exp(-x)) as float32 computes it, a rounding a step (as the front-end's intervals are)."""
    return _f32(1.0 / _f32(1.0 + _f32(math.exp(-x))))


# The probabilities of such arguments: [1.1e-7, 1 - 1.2e-7].
SAFE_PROBS = (_sigmoid32(-LOGIT_SAFE), _sigmoid32(LOGIT_SAFE))


class SigmoidIntoBCELoss(SiteRule):
    """
    ## What it does
    Flags `nn.BCELoss` / `F.binary_cross_entropy` whose input is a sigmoid output: an inline
    `torch.sigmoid(x)`, a local variable holding one, an `nn.Sigmoid` module, what a method of
    the class returns of what it is passed (`mat = self.decode(z)` with `def decode(self, z):
    return torch.sigmoid(z @ z.t())`), or the output of a model whose `forward` returns a
    sigmoid (looked up across the files of the run), whole or as one element of a tuple. The
    criterion may be a module, a function, a function-valued attribute (`self.loss_func =
    F.binary_cross_entropy`), what a short method returns (`crit = self.get_loss()`), or a class
    picked by a literal key from a module-level dict that is only read (`LOSSES["bce"]()`,
    `LOSSES.get("bce")()`) or by `getattr(nn, "BCELoss")()`. Only the input is checked: soft
    labels and sigmoid-shaped targets are fine. Not a sigmoid of an argument known to lie within
    ±16, where BCE's gradient agrees with the with-logits loss's (a cosine of normalised
    vectors, `torch.sigmoid(z @ z.t())` with `z = F.normalize(h)`, also as `self.forward(x)`
    returns it or through a method of the class: its probabilities lie in [0.27, 0.73]; a value
    clamped to ±10); a Linear's output is unbounded.

    Can run with grad: not under `torch.no_grad()`/`inference_mode()` (a with-block or a
    decorator), and not in a function that the project calls only from such code, through any
    chain of its functions (a helper of a `@torch.no_grad()` pipeline `__call__`, in the same file
    or another). A function with no caller in the project, one read as a value, an entry point
    (`forward`, `training_step`, `__call__`...), or one called through a receiver whose class is
    unknown can run with grad.

    ## Why is this bad?
    Once the sigmoid saturates (|x| ≳ 17 in float32) its output is exactly 0 or 1, and a
    confidently wrong prediction gets exactly zero gradient: measured in torch, the gradient of
    `binary_cross_entropy(sigmoid(x), t)` at x = 20, t = 0 is 0.0, where
    `binary_cross_entropy_with_logits(x, t)` gives 1.0. `torch.autocast` refuses `BCELoss` for
    the same reason. The with-logits loss fuses both with the log-sum-exp trick. From x = -27 to
    16.5 the two gradients agree within 1e-7 (measured, `bench/measure_sigmoid_bce.py`): a
    bounded argument within ±16 loses nothing.

    ## Example
    ```python
    loss = F.binary_cross_entropy(torch.sigmoid(logits), target)
    ```

    ## Use instead
    ```python
    loss = F.binary_cross_entropy_with_logits(logits, target)
    ```

    ## Fix safety
    The fix (drop the sigmoid, switch to the with-logits loss) is unsafe: it is offered only when
    the sigmoid is inline in the loss call, and the criterion is functional, built inline, or
    built in the same function and used once; other code may still rely on the probabilities.
    Apply with `--unsafe-fixes`.

    ## References
    - PyTorch AMP docs ("Prefer binary_cross_entropy_with_logits over binary_cross_entropy"):
      `binary_cross_entropy` and `BCELoss` raise an error in autocast-enabled regions
    - GRIST (ICSE 2021) numerical-bug benchmark: hand-written sigmoid + BCE cases
    """

    code = "GL301"
    probe_measure = "first_nonfinite"
    kinds = frozenset({"probability_into_loss"})
    needs_grad = True
    name = "sigmoid-into-bceloss"
    severity = Severity.WARNING
    summary = "BCELoss fed by a sigmoid output (zero gradient when saturated)"
    fix_title = "Drop the sigmoid and use BCEWithLogitsLoss"

    invalid = [
        Example(
            "import torch\nimport torch.nn.functional as F\n\n"
            "def step(logits, target):\n"
            "    return F.binary_cross_entropy(torch.sigmoid(logits), target)\n",
            fixed="import torch\nimport torch.nn.functional as F\n\n"
            "def step(logits, target):\n"
            "    return F.binary_cross_entropy_with_logits(logits, target)\n",
        ),
        Example(
            "import torch\nfrom torch import nn\n\n"
            "def step(logits, target):\n"
            "    crit = nn.BCELoss()\n"
            "    loss = crit(logits.sigmoid(), target)\n"
            "    return loss\n",
            fixed="import torch\nfrom torch import nn\n\n"
            "def step(logits, target):\n"
            "    crit = nn.BCEWithLogitsLoss()\n"
            "    loss = crit(logits, target)\n"
            "    return loss\n",
            note="criterion built in the same function",
        ),
        Example(
            "import torch\nimport torch.nn as nn\n\n"
            "class Trainer:\n"
            "    def __init__(self):\n"
            "        self.criterion = nn.BCELoss()\n"
            "        self.act = nn.Sigmoid()\n\n"
            "    def step(self, logits, target):\n"
            "        probs = self.act(logits)\n"
            "        return self.criterion(probs, target)\n",
            note="through attributes and a variable",
        ),
        Example(
            "import torch\nfrom torch import nn\nfrom model import Detector\n\n"
            "model = Detector()\ncrit = nn.BCELoss()\n\n"
            "def train(x, y):\n"
            "    out = model(x)\n"
            "    loss = crit(out, y)\n"
            "    loss.backward()\n",
            files=(("model.py", "import torch\nfrom torch import nn\n\n"
                    "class Detector(nn.Module):\n"
                    "    def __init__(self):\n"
                    "        super().__init__()\n"
                    "        self.fc = nn.Linear(8, 1)\n\n"
                    "    def forward(self, x):\n"
                    "        x = self.fc(x)\n"
                    "        return torch.sigmoid(x)\n"),),
            note="a model in another file whose forward returns a sigmoid",
        ),
        Example(ATTR.format(loss="binary_cross_entropy", input="torch.sigmoid(self.fc(x))"),
                note="a criterion held as a function-valued attribute (no fix: the call names the attribute)"),
        Example(WRAPPER.format(loss="BCELoss"), note="a criterion returned by a wrapper method"),
        Example("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\n"
                "class GAE(nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.enc = nn.Linear(16, 8)\n\n"
                "    def decode(self, z):\n"
                "        return torch.sigmoid(torch.matmul(z, z.t()))\n\n"
                "    def make_loss(self, x, adj):\n"
                "        mat = self.decode(self.enc(x))\n"
                "        return F.binary_cross_entropy(mat, adj, reduction=\"sum\")\n",
                note="a method of the class returning a sigmoid of what it is passed (a Linear's output)"),
    ]
    valid = [
        Example("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\n"
                "class GAE(nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.enc = nn.Linear(16, 8)\n\n"
                "    def forward(self, x):\n"
                "        return F.normalize(self.enc(x), p=2, dim=1)\n\n"
                "    def recon_loss(self, x, adj):\n"
                "        z = self.forward(x)\n"
                "        return F.binary_cross_entropy(torch.sigmoid(z @ z.t()), adj)\n",
                note="a sigmoid of cosines of normalised rows: within [0.27, 0.73], BCE loses nothing"),
        Example(ATTR.format(loss="binary_cross_entropy_with_logits", input="torch.sigmoid(self.fc(x))"),
                note="a function-valued criterion with logits (GL304's case)"),
        Example(WRAPPER.format(loss="BCEWithLogitsLoss"), note="a wrapper method returning BCEWithLogitsLoss (GL304's case)"),
        Example("import torch.nn.functional as F\n\ndef step(logits, target):\n"
                "    return F.binary_cross_entropy_with_logits(logits, target)\n"),
        Example("import torch\nimport torch.nn.functional as F\n\n"
                "def step(probs, teacher_logits):\n"
                "    soft = torch.sigmoid(teacher_logits / 2.0)\n"
                "    return F.binary_cross_entropy(probs, soft)\n",
                note="soft labels: a sigmoid target is not the input"),
        Example("import torch\nimport torch.nn as nn\n\n"
                "def step(probs, target):\n"
                "    return nn.BCELoss()(probs, target)\n",
                note="probabilities that are not sigmoid outputs"),
        Example("import torch\nimport torch.nn.functional as F\n\n"
                "@torch.no_grad()\ndef evaluate(logits, target):\n"
                "    return F.binary_cross_entropy(torch.sigmoid(logits), target)\n",
                note="no-grad evaluation code"),
        Example("import torch\nfrom torch import nn\nfrom model import Detector\n\n"
                "model = Detector()\ncrit = nn.BCELoss()\n\n"
                "def train(x, y):\n"
                "    loss = crit(model(x), y)\n",
                files=(("model.py", "import torch\nfrom torch import nn\n\n"
                        "class Detector(nn.Module):\n"
                        "    def forward(self, x):\n"
                        "        if self.training:\n"
                        "            return x\n"
                        "        return torch.sigmoid(x)\n"),),
                note="a forward that returns the sigmoid only at inference"),
    ]

    def selects(self, site: Site) -> bool:
        data = dict(site.data)
        return site.kind in self.kinds and data.get("loss") == "binary_cross_entropy" \
            and not _never_saturates(data.get("input_bounds"))

    def message(self, site: Site, ctx: RuleContext) -> str:
        where = passed_as(site, "a sigmoid output" if not site.classes else output_of(site, "sigmoid"))
        known = dict(site.data).get("input_bounds")
        if known is not None:
            # (bounded, but wider than the logits BCE keeps up with: `x.clamp(-20, 20)`)
            where += (f" that reaches [{known[0]:.3g}, {known[1]:.8g}], beyond the [{SAFE_PROBS[0]:.2g}, "
                      f"{SAFE_PROBS[1]:.8g}] of logits within ±{LOGIT_SAFE:g} (from 17 the sigmoid rounds to 1.0)")
        return (f"`{site.detail}` is fed {where}: a saturated wrong prediction gets exactly zero gradient; "
                "use the with-logits loss on the logits")

    def fix(self, site: Site, facts: NumericsFacts) -> Fix | None:
        """Drop the sigmoid and use the with-logits loss: only when both are in this function."""
        pieces = site.pieces
        if pieces is None or pieces.producer is None or pieces.call is None:
            return None
        p = pieces.producer
        if not p.resolved and p.receiver is not None and not p.nargs:
            inner = p.receiver.text
        elif p.only is not None:
            inner = p.only.text
        else:
            return None
        edits = [Edit(p.span, inner)]
        crit = pieces.criterion
        if crit is None:
            call = pieces.call
            if call.name_span is not None:
                edits.append(Edit(call.name_span, "binary_cross_entropy_with_logits"))
            else:
                name = spelling(facts, F + "binary_cross_entropy_with_logits")
                if name is None:
                    return None
                edits.append(Edit(call.callee.span, name))
        else:
            if not pieces.criterion_local:
                return None
            if crit.name_span is not None:
                edits.append(Edit(crit.name_span, "BCEWithLogitsLoss"))
            else:
                name = spelling(facts, "torch.nn.BCEWithLogitsLoss")
                if name is None:
                    return None
                edits.append(Edit(crit.callee.span, name))
        return Fix("Drop the sigmoid and use BCEWithLogitsLoss", tuple(edits), safe=False)


def _never_saturates(known: tuple[float, float] | None) -> bool:
    """Whether probabilities known to lie in `known` (a sigmoid of a bounded argument) stay within
    those of arguments within ±LOGIT_SAFE, where BCE loses nothing against the with-logits loss."""
    return known is not None and SAFE_PROBS[0] <= known[0] and known[1] <= SAFE_PROBS[1]
