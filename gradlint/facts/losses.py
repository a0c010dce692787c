"""Which parameters of a loss class's forward hold the prediction: what a training step passes it
from the model, a tensor that carries gradient (and may be exactly zero) whoever the caller is.

A loss module is called through a name the training code was handed (`loss_fn(model(x), y)` with
`loss_fn` a parameter), so its forward's callers are never known and a hazard on its prediction
(`estimate / estimate.std()`, `sqrt(((a - b) ** 2).sum(-1))`) would never be bound
(facts.callgraph.passed_everywhere). What the caller passes there is known by convention instead:
PyTorch's losses take `forward(input, target)`, the prediction first.
"""

from __future__ import annotations

import re

from gradlint.facts.project import MAX_DEPTH, ProjectIndex

# What an unseen training step passes a loss's prediction: a tensor that carries gradient, not
# known to be a learned layer's dense output (a ReLU'd or masked output, a separated signal that is
# silent, an embedding equal to its pair): 'grad', as Call.args would record it.
PREDICTION = "grad"

# Words of a parameter's name that say it is what the prediction is compared with, or data
# beside it: not what the model made.
_TRUTH = frozenset("target targets tgt tgts label labels lbl lbls gt gts truth true mask masks".split())
# Words that say a parameter is what the model made, whatever else its name holds (`est_targets`,
# `pred_masks`, `masks_queries_logits`, `outputs_before_postnet`).
_MADE = frozenset("pred preds predict predicted prediction predictions est estimate estimates estimated output "
                  "outputs out logit logits hat fake recon reconstructed reconstruction".split())


def _words(name: str) -> set[str]:
    return {w.lower() for w in re.split(r"[_\d]+|(?<=[a-z])(?=[A-Z])", name) if w}


def predictions(params: tuple[str, ...]) -> frozenset[str]:
    """Of a loss forward's positional parameters after self, those that hold the prediction: the
    first that no word names as ground truth or a mask (`forward(input, target)`; ESPnet's
    `forward(target, estimate)` skips to `estimate`), and any other whose name says the model made
    it (FastSpeech2's `outputs_after_postnet, outputs_before_postnet, duration_outputs`). `y` alone
    is a target (`y` beside `y_hat`). A pair such as `forward(source_feats, target_feats)` keeps
    the first only: `target` may be a domain there, but it is read as ground truth (precision first)."""
    out = {p for p in params if _words(p) & _MADE}
    for p in params:
        if p != "y" and not _words(p) & _TRUTH:
            out.add(p)
            break
    return frozenset(out)


def is_loss_class(index: ProjectIndex, qualified: str, _depth: int = 0) -> bool:
    """Whether the project class `qualified` is a loss module: named `...Loss`, or deriving from one
    of torch's losses (`_Loss`, `nn.MSELoss`) or from a loss class of the project."""
    rec = index.numclass(qualified)
    if rec is None or _depth > MAX_DEPTH:
        return False
    if rec.name.lower().endswith("loss"):
        return True
    home = qualified.rpartition(".")[0]
    for base in rec.bases:
        if base.startswith("torch.nn.") and (base.startswith("torch.nn.modules.loss.") or base.endswith("Loss")):
            return True
        quals = (base,) if "." in base and index.numclass(base) is not None else index.resolve(home, base)
        if any(q != qualified and is_loss_class(index, q, _depth + 1) for q in quals):
            return True
    return False


def prediction_passed(index: ProjectIndex, module: str, function: str, param: str, at: int) -> str | None:
    """What an unseen caller passes for parameter `param` (position `at` after self) of `function`
    of `module`: PREDICTION when it is the prediction of a loss class's own forward; None else.
    (A keyword-only parameter, a nested class's forward, or a class whose file calls its
    instances, passing what its join there leaves open: None.)"""
    cls, _, method = function.partition(".")
    if method != "forward" or at < 0:
        return None
    qualified = f"{module}.{cls}"
    rec = index.numclass(qualified)
    if rec is None or not rec.has_forward or rec.forward_called or at >= len(rec.forward_params) \
            or rec.forward_params[at] != param:
        return None  # (the file's own calls of an instance, joined there, say what it is passed)
    if param not in predictions(rec.forward_params) or not is_loss_class(index, qualified):
        return None
    return PREDICTION
