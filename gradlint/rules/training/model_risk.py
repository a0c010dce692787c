"""Whether the model a training step trains needs gradient clipping (what GL201 asks): recurrent,
a deep transformer stack, or a chain the architecture rules flag, read from the binding that makes
the model, its class in this file, or the class the project index resolves it to.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gradlint.facts.callgraph import passed_everywhere
from gradlint.facts.training import Assign, Function, TrainingFacts, init_param
from gradlint.findings import SourceSpan
from gradlint.rules.training.steps import _MAX_WRAPS, Context, methods_of, reaching, scoped_assigns, trained_models


# A torch transformer stack of this many blocks or more needs clipping (as GL106 counts them); a
# chain gain past these bounds is what GL101/GL102 flag.
TRANSFORMER_BLOCKS = 6
VANISHING, EXPLODING = 1e-3, 1e3


@dataclass(frozen=True)
class Risk:
    model: str  # the model as written (`model`, `self.net`)
    cls: str
    reason: str  # for the message: "recurrent: nn.LSTM", "a transformer of 12 blocks"...
    data: tuple[tuple[str, object], ...] = ()


def passed_model_risk(facts: TrainingFacts, context: Context, index) -> Risk | None:
    """What makes the model a step function trains need clipping when that model is one of its
    parameters (`def train(model, opt, loader)`: `model(x)` in the step, or the owner of an
    optimizer built there) and every call of the function in the project passes an instance of
    one project class for it (the numerics call graph's `inst:` shapes, facts.numerics); None
    when a call passes something else or nothing known, callers disagree, or none calls it."""
    fn = context.function
    module = getattr(index, "module", "")
    if not module or fn.parent != 0:
        return None
    params = list(fn.params)
    name = fn.name
    if fn.cls is not None:
        if not params:
            return None
        params, name = params[1:], f"{fn.cls}.{fn.name}"
    # the owners of the stepped optimizer's parameters, else the models the step runs with
    # gradients (a teacher under no_grad is not trained)
    texts = trained_models(facts, context) or [
        f.event.target for f in context.of("invoke") if f.depth == 0 and not f.event.nograd]
    for text in dict.fromkeys(texts):
        if text in params:
            shape = passed_everywhere(index.index, module, name, text, params.index(text))
        else:
            # a model the class's constructor is given (`Trainer(LM())` with `self.model = model`,
            # or `self.opt = Adam(model.parameters())` there): what every caller of __init__ passes
            held = init_param(facts, fn, text)
            if held is None:
                continue
            shape = passed_everywhere(index.index, module, f"{fn.cls}.__init__", *held)
        if shape is None or not shape.startswith("inst:"):
            continue
        qualified = shape[5:]
        home, _, cls = qualified.rpartition(".")
        risk = class_risk(cls, text, index.at(qualified), facts if home == module else None)
        if risk is not None:
            return dataclasses.replace(risk, reason=f"{risk.reason}: every caller passes one")
    return None


def model_risk(facts: TrainingFacts, text: str, cls_of_self: str | None, index, fn: Function | None = None,
               line: int | None = None, _wrapped: int = 0) -> Risk | None:
    """What makes the model `text` names need clipping; `line`: the step of `fn` that trains it,
    which only the bindings that reach it concern (`model = nn.LSTM(...)` trained above, then
    `model = MLP()` for a later loop). A wrapper (`model = DDP(net)`) is the model it wraps."""
    if text in ("self", "cls"):
        return class_risk(cls_of_self, text, index, facts) if cls_of_self else None
    if line is not None and fn is not None:
        # (any later binding hides an earlier model, whatever it makes)
        made = reaching(facts, [a for a in scoped_assigns(facts, text, None, fn) if a.kind != "append"], fn, line)
        made = [a for a in made if a.kind == "model" or a.wraps]
    else:
        made = [a for a in scoped_assigns(facts, text, None, fn) if a.kind == "model" or a.wraps]
    for a in made:
        if a.wraps:
            if _wrapped < _MAX_WRAPS:
                risk = model_risk(facts, a.wraps, cls_of_self, index, fn, a.line if fn is not None else None,
                                  _wrapped + 1)
                if risk is not None:
                    return risk
            continue
        if a.torch_recurrent:
            return Risk(text, a.cls, f"recurrent: nn.{a.torch_recurrent}", (("recurrent", a.torch_recurrent),))
        if a.torch_blocks >= TRANSFORMER_BLOCKS:
            return Risk(text, a.cls, f"a transformer of {a.torch_blocks} blocks", (("transformer_blocks", a.torch_blocks),))
        known, risk = _instance_risk(a, text, index)
        if known:
            if risk is not None:
                return risk
            continue  # the instance built here, with its arguments, needs no clip
        risk = class_risk(a.ref or a.cls, text, index, facts)
        if risk is not None:
            return risk
    return None


def _local_class_risk(facts: TrainingFacts | None, cls: str, text: str) -> Risk | None:
    """A class of this file that builds a torch recurrent layer or a deep transformer stack in
    one of its methods (`self.rnn = nn.LSTM(...)`), whatever its base class (LightningModule...)."""
    if facts is None:
        return None
    methods = methods_of(facts, cls)
    if not methods:
        return None
    built = [a for a in facts.assigns if a.func in methods and a.kind == "model" and a.target.startswith("self.")]
    for a in built:
        if a.torch_recurrent:
            return Risk(text, cls, f"{cls} holds nn.{a.torch_recurrent}", (("recurrent", a.torch_recurrent),))
    for a in built:
        if a.torch_blocks >= TRANSFORMER_BLOCKS:
            return Risk(text, cls, f"{cls} is a transformer of {a.torch_blocks} blocks", (("transformer_blocks", a.torch_blocks),))
    return None


def class_risk(cls: str | None, text: str, index, facts: TrainingFacts | None = None) -> Risk | None:
    """What makes the model of class `cls` (as written in this file) need clipping: read from this
    file's own methods, else from the class the project index resolves `cls` to."""
    if not cls:
        return None
    local = _local_class_risk(facts, cls, text)
    if local is not None:
        return local
    if index is None:
        return None
    summaries = list(index.lookup(cls))
    modules = [s for s in summaries if getattr(s, "is_module", False)] or summaries
    if modules and all(getattr(s, "recurrent", False) for s in modules):
        return _structure_risk(text, cls, True, 0)
    if modules:
        blocks = min(int(getattr(s, "transformer_blocks", 0) or 0) for s in modules)
        if blocks < TRANSFORMER_BLOCKS:  # its blocks may be classes of other files: as GL106 sees them
            blocks = max(blocks, _inlined_blocks(index, cls))
        if blocks >= TRANSFORMER_BLOCKS:
            return _structure_risk(text, cls, False, blocks)
    return _gain_risk(text, cls, _flagged_gain(index, cls), cls)


def _structure_risk(text: str, cls: str, recurrent: bool, blocks: int) -> Risk | None:
    """The risk of a model of class `cls` that is recurrent or a transformer of `blocks` blocks."""
    if recurrent:
        return Risk(text, cls, f"{cls} is recurrent", (("recurrent", cls),))
    if blocks >= TRANSFORMER_BLOCKS:
        return Risk(text, cls, f"{cls} is a transformer of {blocks} blocks", (("transformer_blocks", blocks),))
    return None


def _gain_risk(text: str, cls: str, flagged: tuple[float, bool] | None, who: str) -> Risk | None:
    """The risk of a model whose chain GL101 or GL102 flags (_flagged_gain), said of `who`."""
    if flagged is None:
        return None
    gain, bound = flagged
    code = "GL101" if gain < VANISHING else "GL102"
    return Risk(text, cls, f"{who} has a predicted gradient gain of {'at most ' if bound else ''}{gain:.1e} ({code})",
                (("gain", gain),))


def _instance_risk(a: Assign, text: str, index) -> tuple[bool, Risk | None]:
    """What makes the model this binding builds need clipping, read from the network the models
    front-end made of that very call (`model = GPT(GPTConfig(n_layer=2))`: two blocks, not the
    class's twelve by default): (whether there is one, the risk). (False, None) when the file
    has no network of the call: the class at its defaults (class_risk) decides."""
    module = getattr(index, "module", "") if index is not None else ""
    if not module or a.func != 0:
        return False, None
    nets = [n for n in index.index.networks(f"{module}.{a.target}")
            if n.forward_known and isinstance(n.origin, SourceSpan) and n.origin.line == a.line]
    if len(nets) != 1:
        return False, None
    from gradlint.model.blocks import block_count
    from gradlint.model.inline import finder, inline

    net = inline(nets[0], finder(index))
    return True, (_structure_risk(text, a.cls, bool(net.recurrents), block_count(net.paths))
                  or _gain_risk(text, a.cls, _flagged_gain_of([net]), f"{a.cls} as built here"))


def _inlined_blocks(index, cls: str) -> int:
    """Transformer blocks of the class `cls` names here, with the blocks of other project files
    inlined (gradlint.model.inline, as the architecture rules see it); the fewest over the classes
    and forward paths it may be."""
    from gradlint.model.blocks import block_count

    counts = [block_count(n.paths) if n.forward_known else 0 for n in _inlined_networks(index, cls)]
    return min(counts, default=0)


def _inlined_networks(index, cls: str) -> list:
    """The networks of the classes `cls` names here, with the blocks of other project files
    inlined (gradlint.model.inline), once per class and run: class_risk reads them twice."""
    from gradlint.model.inline import finder, inline

    memo = index.index.memos.setdefault("inlined_networks", {})
    key = (getattr(index, "module", ""), cls)
    if key not in memo:
        memo[key] = [inline(n, finder(index.at(q))) for q in index.resolve(cls) for n in index.index.networks(q)]
    return memo[key]


def _flagged_gain(index, cls: str) -> tuple[float, bool] | None:
    """The gain of a chain of the class's network that GL101 or GL102 flags, and whether it is a
    bound (an upper bound vanishes; it never explodes), with the blocks of other project files
    inlined as the architecture rules see them (a ModuleList of blocks.py's `Block`)."""
    return _flagged_gain_of(_inlined_networks(index, cls))


def _flagged_gain_of(networks: list) -> tuple[float, bool] | None:
    """_flagged_gain of these networks."""
    if not networks:
        return None
    try:
        from gradlint.model.propagation import analyse
    except ImportError:  # the propagation model lands separately; without it this path stays quiet
        return None
    for net in networks:
        try:
            chains = analyse(net).chains
        except Exception:
            continue
        for chain in chains:
            gain = getattr(chain, "gain", None)
            bound = bool(getattr(chain, "bound", False))
            if isinstance(gain, (int, float)) and gain > 0 and (gain < VANISHING or gain > EXPLODING and not bound):
                return float(gain), bound
    return None
