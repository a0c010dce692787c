"""GL201 missing-gradient-clipping: a step with no clipping for a model whose gradients can explode."""

from __future__ import annotations

from typing import Iterator

from gradlint.findings import Finding, Severity, SourceSpan
from gradlint.rules.training.examples import timm_scaler_loop
from gradlint.registry import Example, Rule, RuleContext
from gradlint.rules.training import model_risk, steps
from gradlint.facts.training import iter_events

_LSTM_LOOP = """\
import torch
from torch import nn

model = nn.LSTM(128, 256, num_layers=2)
optimizer = torch.optim.SGD(model.parameters(), lr=20.0)
for x, y in loader:
    optimizer.zero_grad()
    out, _ = model(x)
    loss = criterion(out, y)
    loss.backward()
    optimizer.step()
"""

_WORDLM = """\
from torch import nn


class WordLM(nn.Module):
    def __init__(self, vocab, hidden):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.rnn = nn.LSTM(hidden, hidden, num_layers=2)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x):
        h, _ = self.rnn(self.embed(x))
        return self.out(h)
"""

_TRAIN_WORDLM = """\
import torch
from model import WordLM

model = WordLM(10000, 650)
opt = torch.optim.SGD(model.parameters(), lr=20.0)


def train_step(x, y):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


for epoch in range(40):
    for x, y in batches:
        train_step(x, y)
"""

_FIT_PARAM = """\
import torch


def fit_language_model(model, opt, loader):
    for x, y in loader:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
"""

_FIT_CALLER = """\
import torch
from model import WordLM
from example import fit_language_model

lm = WordLM(10000, 650)
fit_language_model(lm, torch.optim.SGD(lm.parameters(), lr=20.0), batches)
"""

_DEEP_TRANSFORMER = """\
import torch
from torch import nn

layer = nn.TransformerEncoderLayer(512, 8)
model = nn.TransformerEncoder(layer, num_layers=12)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
for x in loader:
    optimizer.zero_grad()
    model(x).pow(2).mean().backward()
    optimizer.step()
"""

_SIGMOID_MLP = """\
from torch import nn


class Deep(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(256, 256), nn.Sigmoid())])

    def forward(self, x):
        return self.body(x)
"""

_TRAIN_DEEP = """\
import torch
from net import Deep

model = Deep()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()
"""

_DEEPSPEED = """\
import deepspeed
from torch import nn

ds_config = {{
    "train_batch_size": 32,
    "optimizer": {{"type": "Adam", "params": {{"lr": 1e-3}}}},
{clip}}}
model = nn.LSTM(32, 32)
engine, optimizer, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=ds_config)
for x in loader:
    engine.backward(engine(x)[0].sum())
    engine.step()
"""

_IGNITE = """\
import torch
from ignite.engine import create_supervised_trainer
from torch import nn


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = {layer}

    def forward(self, x):
        return self.body(x){out}


model = Tagger()
trainer = create_supervised_trainer(model, torch.optim.Adam(model.parameters()), nn.CrossEntropyLoss())
trainer.run(loader, max_epochs=5)
"""


class MissingGradientClipping(Rule):
    """
    ## What it does
    Flags a training step (from `backward()` to the optimizer step, in a loop or in a step
    function called from one) that clips nothing, when the model it trains is recurrent
    (`nn.RNN`/`LSTM`/`GRU` or their cells), a transformer of 6 blocks or more, or a network
    gradlint predicts to vanish or explode (GL101/GL102). The model is found through the
    optimizer's parameters (`Adam(model.parameters())`) and its class is looked up across every
    file of the run, so `model = WordLM(...)` in `train.py` is known when `WordLM` lives in
    `model.py`. A Lightning `Trainer` without `gradient_clip_val`, a Hugging Face
    `TrainingArguments(max_grad_norm=0)` and a `deepspeed.initialize(model=..., config=...)`
    whose config, a dict written in the file that nothing changes, has no `gradient_clipping`
    (DeepSpeed's default, 0, clips nothing) that train such a model are flagged too; a config
    read from a JSON file or built elsewhere is not known and not flagged. So is such a model
    given to Ignite's `create_supervised_trainer` or `create_supervised_tbptt_trainer`, whose
    update never clips (an event handler runs after the step: the update must be written out,
    as `Engine(update)`, to clip); a process function handed to an Ignite `Engine`, and
    `training_step` under Lightning's manual optimisation, are steps repeated per batch. A model
    that a step function takes as a parameter (`def fit(model, opt, loader)`) is the project
    class every call of the function (or method) in the project passes for it, when they all
    pass an instance of one class. A step run
    through a project object counts with what the call passes: a timm-style
    `loss_scaler(loss, optimizer)` without `clip_grad=` never reaches the wrapper's clip; a
    project's own copy of `clip_grad_norm_` is a clip, and so is a clip by hand, inline or in a
    helper of any name: a clamp with both bounds, or a rescale by a factor made from a norm or a
    clip coefficient, of the `.grad` of each parameter a loop runs over
    (`p.grad.data.clamp_(-1, 1)`, `p.grad = p.grad.clamp(-1, 1)`, `p.grad.detach().mul_(coef)`,
    the factor read through the names it is bound to), or a copy into the `.grad` of a gradient
    bounded by a norm (timm's adaptive clipping: `p.grad.copy_(torch.where(g_norm < max_norm, g,
    g * max_norm / g_norm))`; a projection such as PCGrad's bounds nothing).
    The same of parameters' gradients gathered into a list first (`for g in grads:
    g.mul_(clip_coef)`, `torch._foreach_mul_(grads, clip_coef)`) is a clip too. Averaging
    (`p.grad.div_(world_size)`), an input's gradient, one weight's, or a one-sided clamp is no
    clip. A step
    that clips one model's
    parameters while another optimizer of the same step trains another model
    (`clip_grad_norm_(encoder.parameters(), 1.0)`, then `enc_opt.step()` and `dec_opt.step()`)
    is flagged for the model no clip covers; a wrapper and the model it wraps are one model
    (`model = DDP(net)`, `torch.compile(net)`, `nn.DataParallel(net)`: the optimizer built on
    either, the clip given either); a clip of a parent module covers its submodules,
    and a clip of anything but a model's `.parameters()` counts as covering everything.

    ## Why is this bad?
    Backpropagation through time multiplies the recurrent Jacobian once per time step: one bad
    batch produces a gradient thousands of times larger than usual, and an unclipped step
    throws the weights far away (loss becomes NaN, or jumps and never recovers). Clipping the
    global norm is the standard cure for recurrent networks (Pascanu et al., 2013) and is used
    by every large transformer recipe.

    ## Example
    ```python
    model = nn.LSTM(128, 256, num_layers=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=20.0)
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x)[0], y).backward()
        optimizer.step()
    ```

    ## Use instead
    ```python
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x)[0], y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.25)
        optimizer.step()
    ```
    `clip_grad_norm_(params, float("inf"))` only measures the norm: it does not count.

    ## References
    - Pascanu, Mikolov, Bengio, "On the difficulty of training recurrent neural networks" (2013).
    - pytorch/examples `word_language_model/main.py` clips at `--clip 0.25` by default.
    - pytorch/pytorch#309: models "would totally fail to converge without gradient clipping"
      (NLP, RL).
    """

    code = "GL201"
    probe_measure = "not_measurable"
    name = "missing-gradient-clipping"
    severity = Severity.WARNING
    summary = "Training step without gradient clipping for a recurrent, deep transformer or unstable model"

    invalid = [
        Example(_LSTM_LOOP, note="LSTM trained in a loop with no clipping"),
        Example(_FIT_PARAM, files=(("model.py", _WORDLM), ("main.py", _FIT_CALLER)),
                note="the model is a parameter: every caller, in another file, passes a WordLM"),
        Example(_DEEP_TRANSFORMER, note="a 12-block transformer"),
        Example(_TRAIN_WORDLM, files=(("model.py", _WORDLM),),
                note="class from another file of the run, step function called from a loop"),
        Example(_TRAIN_DEEP, files=(("net.py", _SIGMOID_MLP),), note="a model GL101 flags (needs the propagation model)"),
        Example("""\
import torch
from torch import nn

model = nn.GRU(64, 64)
opt = torch.optim.Adam(model.parameters())
for x in loader:
    opt.zero_grad()
    model(x)[0].sum().backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))  # measures, does not clip
    opt.step()
""", note="a clip at inf only measures"),
        Example("""\
import lightning as L
from torch import nn


class LM(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(32, 32)


model = nn.LSTM(32, 32)
trainer = L.Trainer(max_epochs=3)
trainer.fit(model, loader)
""", note="Lightning Trainer without gradient_clip_val"),
        Example(timm_scaler_loop(passes_clip=False), note="a timm-style scaler called without clip_grad: its clip never runs"),
        Example(_DEEPSPEED.format(clip=""), note="DeepSpeed config without gradient_clipping"),
        Example(_IGNITE.format(layer="nn.GRU(8, 16)", out="[0]"), note="Ignite's ready-made trainer never clips"),
    ]
    valid = [
        Example(_FIT_PARAM, files=(("model.py", _WORDLM), ("main.py", _FIT_CALLER), ("probe.py", _FIT_CALLER.replace(
            "from model import WordLM", "from torch import nn").replace("WordLM(10000, 650)", "nn.Linear(8, 8)"))),
                note="the model is a parameter and callers pass different models"),
        Example(timm_scaler_loop(), note="a timm-style scaler that clips when clip_grad is passed"),
        Example(_DEEPSPEED.format(clip='    "gradient_clipping": 1.0,\n'), note="DeepSpeed clipping configuration"),
        Example(_IGNITE.format(layer="nn.Linear(8, 16)", out=""), note="Ignite's ready-made trainer on a model with no such risk"),
        Example("""\
import torch
from torch import nn

model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    optimizer.step()
""", note="CNN/MLP training without such risk"),
        Example(_LSTM_LOOP.replace("    optimizer.step()", "    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)\n    optimizer.step()"),
                note="clipped"),
        Example("""\
import torch
from torch import nn

model = nn.LSTM(128, 256)
model.eval()
with torch.no_grad():
    for x in loader:
        print(model(x))
""", note="inference script"),
        Example("""\
import torch
from torch import nn
from torch.nn.utils import clip_grad_norm_ as clip

model = nn.LSTM(128, 256)
optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
for i, (x, y) in enumerate(loader):
    criterion(model(x)[0], y).backward()
    if (i + 1) % 4 == 0:
        if args.clip > 0:
            clip(model.parameters(), args.clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
""", note="clipping behind an alias and a guard"),
        Example("""\
import lightning as L
from torch import nn

model = nn.LSTM(32, 32)
trainer = L.Trainer(max_epochs=3, gradient_clip_val=0.5)
trainer.fit(model, loader)
""", note="Lightning clipping configuration"),
        Example("""\
from torch import nn
from transformers import Trainer, TrainingArguments

model = nn.LSTM(32, 32)
args = TrainingArguments("out", max_grad_norm=1.0)
Trainer(model=model, args=args).train()
""", note="Hugging Face clipping configuration"),
        Example("""\
import torch
from torch import nn

model = nn.LSTM(32, 32)
for p in model.parameters():
    p.register_hook(lambda grad: torch.clamp(grad, -1.0, 1.0))
optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
for x in loader:
    optimizer.zero_grad()
    model(x)[0].sum().backward()
    optimizer.step()
""", note="clipping by gradient hooks"),
        Example("""\
import lightning as L
from torch import nn

model = nn.LSTM(32, 32)
trainer = L.Trainer(**config)
trainer.fit(model, loader)
""", note="Trainer(**config): the configuration is not visible"),
        Example("""\
import torch
from accelerate import Accelerator
from torch import nn

accelerator = Accelerator()
model = nn.LSTM(32, 32)
optimizer = torch.optim.AdamW(model.parameters())
for x in loader:
    with accelerator.accumulate(model):
        accelerator.backward(model(x)[0].sum())
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
""", note="accelerate's clipping"),
    ]

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        facts = ctx.facts.training
        if facts is None:
            return
        if facts.hook_clipping:
            return
        yield from steps.dedupe(self._steps(ctx, facts))
        if not _clips(facts, facts.functions):
            # a clip anywhere in the file (a Lightning hook, say) may be the configured clipping
            yield from steps.dedupe(self._frameworks(ctx, facts))
        # (not so for Ignite's ready-made trainers: their update runs backward and step at once,
        # and a clip in an event handler runs after the step or before the backward)
        yield from steps.dedupe(self._ignite_trainers(ctx, facts))

    def _steps(self, ctx: RuleContext, facts) -> Iterator[Finding]:
        found = list(self._step_findings(ctx, facts))
        # a step function of this file is also read inlined at its call (`fit(lm, ...)`): the
        # model named there says it; the same step from the callers' classes says nothing more
        direct = {f.span for f, by_callers in found if not by_callers}
        for f, by_callers in found:
            if not (by_callers and f.span in direct):
                yield f

    def _step_findings(self, ctx: RuleContext, facts) -> Iterator[tuple[Finding, bool]]:
        for c in steps.contexts(facts, ctx.index):
            lightning = any(f.event.via == "lightning" for f in c.of("backward"))
            if not (c.loop is not None or c.repeated or lightning):
                continue
            clips = [f for f in c.of("clip") if not steps.is_measuring(f.event)]
            unclipped = _unclipped(facts, c, clips) if clips else None
            if clips and not unclipped:
                continue
            if any(a.cls == "Adafactor" for f in c.of("step") for a in steps.assigns_to(facts, f.target, ("optimizer",))):
                continue  # Adafactor clips its updates itself (clip_threshold)
            risk = None
            where = steps.home(facts, c)
            first = next((f for f in c.of("step") if f.depth == 0), None)
            line = first.event.span.line if first is not None else None
            for text in unclipped or steps.trained_models(facts, c):
                risk = model_risk.model_risk(facts, text, where.cls, ctx.index, where, line)
                if risk is not None:
                    break
            by_callers = risk is None
            if risk is None and not unclipped:
                # a model the step function takes as a parameter: what its callers pass
                risk = model_risk.passed_model_risk(facts, c, ctx.index)
            if risk is None:
                continue
            step = c.of("step")[0]
            partial = ""
            if unclipped:
                # the step of the optimizer that trains the model no clip covers
                step = next((f for f in c.of("step") if risk.model in steps.owners(facts, c, f)), step)
                named = ", ".join(f"`{steps.clipped(c, f)[1]}`" for f in clips)
                partial = f"; the clip at line {clips[0].event.span.line} covers only {named}"
            yield ctx.finding(
                f"optimizer step without gradient clipping while training `{risk.model}` ({risk.reason}){partial}",
                step.event.span, data={"model": risk.model, "class": risk.cls, **dict(risk.data)}), by_callers

    def _frameworks(self, ctx: RuleContext, facts) -> Iterator[Finding]:
        for fn in facts.functions:
            for ev in iter_events(fn.body):
                if ev.kind != "fit":
                    continue
                trainers = steps.assigns_to(facts, ev.target)
                model, how = "", ""
                pl = [a for a in trainers if a.kind == "pl_trainer"]
                hf = [a for a in trainers if a.kind == "hf_trainer"]
                if pl and all(a.clip_config is False for a in pl):
                    model, how = ev.name, "Lightning Trainer without gradient_clip_val"
                elif hf:
                    args = [a for h in hf for a in steps.assigns_to(facts, h.args_arg, ("hf_args",))]
                    if args and all(a.clip_config is False for a in args):
                        model, how = hf[0].model_arg, "TrainingArguments with max_grad_norm disabled"
                if not model:
                    continue
                if ev.via == "ctor" and how.startswith("Lightning"):
                    risk = model_risk.class_risk(model, f"{model}(...)", ctx.index, facts)
                else:
                    # (the binding of the fitted name in this function that reaches the fit)
                    risk = model_risk.model_risk(facts, model, fn.cls, ctx.index, fn, ev.span.line)
                if risk is not None and not _clips_itself(ctx.index, risk.cls):
                    yield ctx.finding(f"{how} trains `{risk.model}` ({risk.reason})", ev.span,
                                      data={"model": risk.model, "class": risk.cls, **dict(risk.data)})
        # (an engine the file trains: one made for inference, `model, *_ = initialize(...)` then
        # `model.eval()`, steps nothing)
        trains = any(ev.kind == "backward" and ev.via == "deepspeed" for fn in facts.functions for ev in iter_events(fn.body))
        for a in facts.assigns if trains else ():
            # DeepSpeed's engine steps the optimizer itself, clipping only when its config sets
            # `gradient_clipping` (0 by default)
            if a.kind != "ds_engine" or a.clip_config is not False or not a.model_arg:
                continue
            fn = facts.functions[a.func]
            risk = model_risk.model_risk(facts, a.model_arg, fn.cls, ctx.index, fn, a.line)
            if risk is not None:
                yield ctx.finding(f"DeepSpeed config without gradient_clipping trains `{risk.model}` ({risk.reason})",
                                  SourceSpan.point(a.line),
                                  data={"model": risk.model, "class": risk.cls, **dict(risk.data)})

    def _ignite_trainers(self, ctx: RuleContext, facts) -> Iterator[Finding]:
        for a in facts.assigns:
            # Ignite's ready-made trainers run backward and step with no clip, and a handler runs
            # after the step: the update must be written out to clip
            if a.kind != "ignite_trainer" or not a.model_arg:
                continue
            fn = facts.functions[a.func]
            risk = model_risk.model_risk(facts, a.model_arg, fn.cls, ctx.index, fn, a.line)
            if risk is not None:
                yield ctx.finding(f"Ignite's `{a.cls}`, which never clips, trains `{risk.model}` ({risk.reason})",
                                  SourceSpan.point(a.line), data={"model": risk.model, "class": risk.cls, **dict(risk.data)})


def _clips_itself(index, cls: str | None) -> bool:
    """Whether the fitted model's class, in another project file, clips in one of its methods
    (`configure_gradient_clipping`, `on_before_optimizer_step`, a manual step's
    `self.clip_gradients`): the Trainer's own clipping is then not the only one (as a clip
    anywhere in this file is taken to be, check)."""
    if not cls or index is None:
        return False
    for q in index.resolve(cls):
        home, _, name = q.rpartition(".")
        mod = index.index.module(home) if home else None
        facts = mod.facts.training if mod is not None else None
        if facts is None:
            continue
        if facts.hook_clipping or _clips(facts, [fn for fn in facts.functions if fn.cls == name]):
            return True
    return False


def _clips(facts, functions) -> bool:
    """Whether one of `functions` clips gradients (a clip that only measures the norm is none)."""
    return any(ev.kind == "clip" and not steps.is_measuring(ev) for fn in functions for ev in iter_events(fn.body))


def _unclipped(facts, c, clips) -> list[str]:
    """The models a step of the loop trains that none of its clips covers (`decoder`, when only
    `encoder.parameters()` is clipped and each has its own optimizer); empty when every clip is of
    a model's parameters and every step's optimizer trains known models, all of them covered, or
    when either is not known."""
    what = [steps.clipped(c, f) for f in clips]
    if any(w is None or w[0] != "model" for w in what):
        return []
    # (a wrapper and the model it wraps hold the same parameters: `model = DDP(net)`, the
    # optimizer built on `net.parameters()` and the clip given `model.parameters()`)
    covered = [m for w in what for m in steps.same_models(facts, w[1], c.function)]
    trained: list[str] = []
    for f in c.of("step"):
        owners = steps.owners(facts, c, f)
        if not owners:
            return []
        trained.extend(owners)
    return [m for m in dict.fromkeys(trained)
            if not any(steps.covers(x, covered) for x in steps.same_models(facts, m, c.function))]
