"""GL203 clip-scaled-gradients: clipping AMP-scaled gradients without scaler.unscale_() first."""

from __future__ import annotations

import re
from typing import Iterator

from gradlint.findings import Edit, Finding, Fix, Severity, SourceSpan
from gradlint.rules.training.examples import timm_scaler_loop
from gradlint.registry import Example, RuleContext
from gradlint.rules.training import steps
from gradlint.text import indentation, split_lines

_BUGGY = """\
import torch
from torch.cuda.amp import GradScaler, autocast

scaler = GradScaler()
for x, y in loader:
    optimizer.zero_grad()
    with autocast():
        loss = criterion(model(x), y)
    scaler.scale(loss).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()
"""

_FIXED = _BUGGY.replace("    torch.nn.utils.clip_grad_norm_", "    scaler.unscale_(optimizer)\n    torch.nn.utils.clip_grad_norm_")

_EACH = """\
import torch


class Trainer:
    def step(self, loss):
        for opt in self.optimizers:
            opt.zero_grad()
        self.scaler.scale(loss).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        for opt in self.optimizers:
            self.scaler.step(opt)
        self.scaler.update()
"""


_ACCELERATE = """\
import torch
from accelerate import Accelerator

accelerator = Accelerator(mixed_precision="fp16")
model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
for x, y in loader:
    accelerator.backward(criterion(model(x), y))
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()
"""


_FABRIC = """\
import torch
from lightning.fabric import Fabric

fabric = Fabric(precision="16-mixed")
model, optimizer = fabric.setup(model, optimizer)
for x, y in loader:
    optimizer.zero_grad()
    fabric.backward(criterion(model(x), y))
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
"""


class ClipScaledGradients(steps.StepRule):
    """
    ## What it does
    Flags a `torch.nn.utils.clip_grad_norm_`/`clip_grad_value_` (any import alias) in a step
    that uses a `GradScaler` (`scaler.scale(loss).backward()` or `scaler.step(opt)`), with no
    `scaler.unscale_(opt)` before the clip on the same path. Steps run through project
    objects are read too: a timm-style `loss_scaler(loss, optimizer, clip_grad=...)` runs its
    class's `__call__` (in this file or, through the project index, another), with the
    arguments the call passes. A project's own copy of `clip_grad_norm_` that clips by hand
    (in this file or imported from another) is a clip like torch's. A loop over the optimizers
    (`for opt in self.optimizers: scaler.step(opt)`) is one step of each; a parameter is a
    scaler or an optimizer when every call in the file passes one (`def update(o, amp, loss)`).
    A clip after the scaler's step is not flagged here: `scaler.step(opt)` has unscaled the
    gradients in place by then (GL202 flags that clip for coming after the update). A model's
    own clip method under a GradScaler (FSDP's `model.clip_grad_norm_(1.0)`) knows nothing of
    the scaler and is flagged as torch's clip is; an `unscale_` counts for the clip unless it
    is of an optimizer built on other models' parameters (`scaler.unscale_(opt_d)` before a clip
    of `g.parameters()`).

    ## Why is this bad?
    Between `scaler.scale(loss).backward()` and `scaler.step()` the gradients are multiplied by
    the loss scale (65536 by default). The clip compares that inflated norm with the threshold,
    so it almost always fires and shrinks the true gradients by up to 65536×: training stalls
    while the loss looks merely slow. Fixed in Pytorch-UNet, Lightning, returnn and others.

    ## Example
    ```python
    scaler.scale(loss).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)
    ```

    ## Use instead
    ```python
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)
    ```
    apex's `amp.scale_loss`, `accelerator.clip_grad_norm_`, Fabric's and Lightning's clipping
    unscale by themselves and are not flagged; neither is `GradScaler(enabled=False)`.

    With accelerate, `accelerator.backward(loss)` scales the loss when the `Accelerator` was made
    with `mixed_precision="fp16"` (written so in the file; a precision from a config or from
    `accelerate launch` is not known, nor one with a DeepSpeed, Megatron-LM or FSDP plugin,
    `cpu=True` or kwargs handlers, under which it may hold no GradScaler), bound so in the
    function of the backward (or, for `self.accelerator`, every binding of it in the file), and
    a torch clip before the optimizer's step is flagged:
    use `accelerator.clip_grad_norm_` (or `clip_grad_value_`), which unscales first (no automatic
    fix: under gradient accumulation it must run only when `accelerator.sync_gradients`).

    With Lightning Fabric, `fabric.backward(loss)` scales the loss when the `Fabric` was made with
    `precision="16-mixed"` (or "16", 16) written so, on a GPU: its MixedPrecision plugin holds a
    `torch.amp.GradScaler`, and the wrapped optimizer's step unscales. With `accelerator="cpu"`
    Lightning runs bf16-mixed instead, with no scaler; a `plugins=`, a strategy with a precision
    of its own (DeepSpeed, FSDP, XLA) or `**kwargs` is not known to scale. Use
    `fabric.clip_gradients(model, optimizer, max_norm=...)`, which unscales first.

    ## Fix safety
    The fix inserts `scaler.unscale_(optimizer)` (with the step's own names) on its own line
    before the clip. It is offered only when the clip is written in the same function as
    `scaler.step(...)`, is not inside a loop of its own and runs at most as often as the step,
    so `unscale_` is called at most once per update (a second call raises).

    ## References
    - PyTorch AMP examples, "Working with unscaled gradients":
      https://pytorch.org/docs/stable/notes/amp_examples.html
    - milesial/Pytorch-UNet#468 and its fix #470; rwth-i6/returnn#1595;
      Lightning-AI/pytorch-lightning#19536 (manual optimization); pytorch/pytorch#40907 ("the loss
      does not decrease anymore").
    - Measured (torch 2.13, CPU): clipping gradients scaled by 65536 at max_norm=1, then
      unscaling, leaves a gradient norm of 1.5e-5 — the threshold divided by the scale.
    - Measured (lightning 2.6.6, CPU, the MixedPrecision("16-mixed") plugin a GPU gets, with a
      GradScaler of init_scale 1024): after `fabric.backward`, `clip_grad_norm_` saw a norm of
      2602 (1024 × the true 2.54); `fabric.clip_gradients` saw 2.54. `Fabric(accelerator="cpu",
      precision="16-mixed")` ran bf16-mixed with no scaler (2.53).
    """

    code = "GL203"
    probe_measure = "not_measurable"
    name = "clip-scaled-gradients"
    severity = Severity.ERROR
    summary = "Clipping AMP-scaled gradients without scaler.unscale_() first"
    fix_title = "Insert `scaler.unscale_(optimizer)` before the clip"

    invalid = [
        Example(_BUGGY, fixed=_FIXED),
        Example("""\
import torch
from torch.nn.utils import clip_grad_norm_ as clip


def train_step(self, batch):
    self.optimizer.zero_grad()
    with torch.autocast("cuda"):
        loss = self.model(batch)
    self.scaler.scale(loss).backward()
    if self.max_norm:
        clip(self.model.parameters(), self.max_norm)
    self.scaler.step(self.optimizer)
    self.scaler.update()
""", fixed="""\
import torch
from torch.nn.utils import clip_grad_norm_ as clip


def train_step(self, batch):
    self.optimizer.zero_grad()
    with torch.autocast("cuda"):
        loss = self.model(batch)
    self.scaler.scale(loss).backward()
    if self.max_norm:
        self.scaler.unscale_(self.optimizer)
        clip(self.model.parameters(), self.max_norm)
    self.scaler.step(self.optimizer)
    self.scaler.update()
""", note="attribute names, alias, clip under a guard"),
        Example("""\
import torch

scaler = torch.amp.GradScaler("cuda")
for x, y in loader:
    scaler.scale(criterion(model(x), y)).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.unscale_(optimizer)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad()
""", note="unscale_ after the clip"),
        Example(timm_scaler_loop(clip_before_unscale=True), note="a timm-style scaler wrapper that clips before unscale_"),
        Example(_EACH, note="a step per optimizer, in a loop over them"),
        Example(_ACCELERATE, note="accelerate with fp16: its backward scales the loss"),
        Example(_FABRIC, note="Fabric with 16-mixed on a GPU: its backward scales the loss"),
        Example("""\
import torch
import accelerate


class Trainer:
    def __init__(self, model):
        self.accelerator = accelerate.Accelerator(mixed_precision="fp16", gradient_accumulation_steps=1)
        self.model = model

    def step(self, loss, opt):
        self.accelerator.backward(loss)
        torch.nn.utils.clip_grad_value_(self.model.parameters(), 0.5)
        opt.step()
        opt.zero_grad()
""", note="an Accelerator made in __init__, a value clip in a method"),
        Example("""\
import torch
from accelerate import Accelerator


def evaluate(model, loader):
    acc = Accelerator(mixed_precision="bf16")
    return acc.prepare(model, loader)


def train(model, optimizer, loader, criterion):
    acc = Accelerator(mixed_precision="fp16")
    for x, y in acc.prepare(loader):
        acc.backward(criterion(model(x), y))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
""", note="an Accelerator under another name (another function's of bf16 is another object)"),
        Example("""\
import torch
from accelerate import Accelerator


class Trainer:
    def step(self, x, y):
        self.acc.backward(self.criterion(self.model(x), y))
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad()

    def __init__(self, model, optimizer, criterion):
        self.acc = Accelerator(mixed_precision="fp16")
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.criterion = criterion
""", note="an Accelerator attribute set in a method written after the one that uses it"),
        Example("""\
import torch
from accelerate import Accelerator

accelerator = Accelerator(mixed_precision="fp16")


def train(model, optimizer, loader, criterion):
    for x, y in loader:
        accelerator.backward(criterion(model(x), y))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
""", note="a module-level Accelerator read in a function"),
        Example("""\
import torch


def update(model, o, amp, loss):
    amp.scale(loss).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    amp.step(o)
    amp.update()


def train(model, loader):
    grad_scaler = torch.cuda.amp.GradScaler()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    for x in loader:
        sgd.zero_grad()
        update(model, sgd, grad_scaler, model(x).mean())
""", note="a scaler and an optimizer passed as arguments"),
    ]
    valid = [
        Example("""\
import torch

scaler = torch.amp.GradScaler("cuda")
for x, y in loader:
    optimizer.zero_grad()
    scaler.scale(criterion(model(x), y)).backward()
    scaler.step(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.update()
""", note="a clip after scaler.step, which has unscaled the gradients (GL202 flags it)"),
        Example(timm_scaler_loop(), note="timm's NativeScaler: unscale_, then clip, inside __call__"),
        Example(_EACH.replace("        torch.nn.utils", "        for opt in self.optimizers:\n"
                              "            self.scaler.unscale_(opt)\n        torch.nn.utils"),
                note="every optimizer unscaled in a loop over them"),
        Example(_FIXED),
        Example("""\
import torch
from apex import amp

for x, y in loader:
    with amp.scale_loss(criterion(model(x), y), optimizer) as scaled_loss:
        scaled_loss.backward()
    torch.nn.utils.clip_grad_norm_(amp.master_params(optimizer), 1.0)
    optimizer.step()
    optimizer.zero_grad()
""", note="apex amp.scale_loss"),
        Example("""\
import torch

scaler = torch.cuda.amp.GradScaler()
for batch in loader:
    accelerator.backward(model(**batch).loss)
    accelerator.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()
""", note="accelerate clips unscaled gradients"),
        Example(_ACCELERATE.replace("    torch.nn.utils.clip_grad_norm_", "    accelerator.unscale_gradients()\n"
                                    "    torch.nn.utils.clip_grad_norm_"), note="accelerate, unscaled first"),
        Example(_ACCELERATE.replace('mixed_precision="fp16"', 'mixed_precision="bf16"'),
                note="accelerate with bf16: no loss scale"),
        Example(_ACCELERATE.replace('mixed_precision="fp16"', 'mixed_precision="bf16"').replace(
                    "accelerator", "acc"), note="accelerate with bf16 under another name"),
        Example("""\
import torch
from accelerate import Accelerator

accelerator = Accelerator(mixed_precision="fp16")


def setup():
    global accelerator
    accelerator = Accelerator(mixed_precision="bf16")


def train(model, optimizer, loader, criterion):
    for x, y in loader:
        accelerator.backward(criterion(model(x), y))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
""", note="a module-level Accelerator another function may rebind to bf16 (global)"),
        Example("""\
import torch
from accelerate import Accelerator

accelerator = Accelerator(mixed_precision="fp16")


def train(accelerator, model, optimizer, loader, criterion):
    for x, y in loader:
        accelerator.backward(criterion(model(x), y))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
""", note="a parameter named as the module-level Accelerator: whatever the caller passes"),
        Example(_FABRIC.replace("torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)",
                                "fabric.clip_gradients(model, optimizer, max_norm=1.0)"),
                note="Fabric's own clip unscales first"),
        Example(_FABRIC.replace('precision="16-mixed"', 'precision="bf16-mixed"'), note="bf16-mixed: no scaler"),
        Example(_FABRIC.replace('precision="16-mixed"', 'accelerator="cpu", precision="16-mixed"'),
                note="16-mixed on the CPU: Lightning runs bf16-mixed, with no scaler"),
        Example(_ACCELERATE.replace('mixed_precision="fp16"', "mixed_precision=args.precision"),
                note="accelerate with a precision read from the arguments: not known to scale"),
        Example(_ACCELERATE.replace('Accelerator(mixed_precision="fp16")', "Accelerator()"),
                note="accelerate with the precision `accelerate launch` chooses: not known to scale"),
        Example(_ACCELERATE.replace('mixed_precision="fp16"', 'mixed_precision="fp16", deepspeed_plugin=plugin'),
                note="accelerate with DeepSpeed: its engine scales and clips, no GradScaler"),
        Example("""\
import torch
from accelerate import Accelerator


class Evaluator:
    def __init__(self):
        self.accelerator = Accelerator(mixed_precision="fp16")


class Trainer:
    def __init__(self, accelerator):
        self.accelerator = accelerator

    def step(self, loss, model, opt):
        self.accelerator.backward(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()


trainer = Trainer(Accelerator(mixed_precision="bf16"))
""", note="an fp16 Accelerator of another class under the same attribute name"),
        Example("""\
import torch

for batch in loader:
    fabric.backward(model(batch))
    fabric.clip_gradients(model, optimizer, max_norm=1.0)
    optimizer.step()
    optimizer.zero_grad()
""", note="Fabric"),
        Example("""\
import deepspeed
import torch
from deepspeed.runtime.utils import clip_grad_norm_

scaler = torch.cuda.amp.GradScaler()
model_engine, optimizer, _, _ = deepspeed.initialize(model=model, config=ds_config)
for batch in loader:
    loss = model_engine(batch)
    model_engine.backward(loss)
    clip_grad_norm_(model_engine.parameters(), 1.0)
    model_engine.step()
""", note="DeepSpeed scales and clips inside its engine"),
        Example("""\
import torch

scaler = torch.cuda.amp.GradScaler(enabled=False)
for x, y in loader:
    scaler.scale(criterion(model(x), y)).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad()
""", note="GradScaler(enabled=False) literal"),
        Example("""\
import torch

for x, y in loader:
    loss = criterion(model(x), y)
    if use_amp:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    optimizer.zero_grad()
""", note="the clip runs only on the unscaled path"),
        Example("""\
import torch

for x, y in loader:
    loss = criterion(model(x), y)
    if use_amp:
        scaler.scale(loss).backward()
    else:
        loss.backward()
    if use_amp:
        scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    if use_amp:
        scaler.step(optimizer)
    else:
        optimizer.step()
""", note="unscale_ under the same condition as the scaling"),
        Example("""\
class Model(LightningModule):
    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(self.loss(batch))
        self.clip_gradients(opt, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
        opt.step()
""", note="Lightning's clip_gradients"),
    ]

    def _check(self, ctx: RuleContext, facts) -> Iterator[Finding]:
        for c in steps.contexts(facts, ctx.index):
            scaled = [f for f in c.events if (f.event.kind == "backward" and f.event.via == "scaler")
                      or (f.event.kind == "step" and f.event.via == "scaler")]
            scaled = [f for f in scaled if not _disabled(facts, f.scaler)]
            # accelerate's backward scales the loss when its Accelerator was made with fp16, and
            # its optimizer's step unscales (accelerator.clip_grad_norm_ unscales first)
            scaled += [f for f in c.events if f.event.kind == "backward" and f.event.via in _WRAPPERS
                       and _fp16_accelerator(facts, f.event.scaler, f.event.func, _WRAPPERS[f.event.via])]
            if not scaled:
                continue
            for clip in c.of("clip"):
                if not (clip.event.via == "torch" or _model_clip(facts, c, clip, scaled)) or steps.is_measuring(clip.event):
                    continue
                if clip.event.value is not None and _scaled_threshold(clip.event.value.text):
                    continue  # `max_norm * scaler.get_scale()`: the threshold is scaled as the gradients are
                stepped = [f for f in scaled if f.event.kind == "step" and steps.compatible(f, clip)]
                # the order of the last step before the clip that runs whenever the clip does
                # (under no `if` the clip is not under): the scaler's, and any optimizer's (worked
                # out once per clip: asked per backward, a 1 600-line loop took 6.5 s)
                guards = set(clip.guards)
                unscaled_at = {via: max((s.order for s in among if s.order < clip.order and set(s.guards) <= guards),
                                        default=None)
                               for via, among in (("scaler", stepped), ("other", c.of("step")))}
                uses = [f for f in scaled if steps.compatible(f, clip) and (
                    # a scaled backward whose gradients no scaler step has unscaled yet: step()
                    # unscales them in place when unscale_ was not called (measured: 1.0x the
                    # true gradients after it), and a clip after it is GL202's; a step under an
                    # `if` the clip is not under (accumulation) leaves them scaled when skipped
                    (f.event.kind == "backward" and f.order < clip.order
                     and not _after(unscaled_at["scaler" if f.event.via == "scaler" else "other"], f.order))
                    or (f.event.kind == "step" and f.order > clip.order))]
                if not uses:
                    continue
                if any(u.order < clip.order and steps.compatible(u, clip) and _may_unscale(facts, c, u, clip)
                       for u in c.of("unscale")):
                    continue
                scaler = _as_read(uses[0], clip, "scaler")
                if uses[0].event.via == "accelerate":
                    leaf = clip.event.name.rsplit(".", 1)[-1]
                    method = leaf if leaf in ("clip_grad_norm_", "clip_grad_value_") else "clip_grad_norm_"
                    # (no fix: accelerate's clip unscales at every call, and one under gradient
                    # accumulation that runs before each micro-batch's step would raise)
                    yield ctx.finding(
                        f"`{clip.event.name}` clips gradients still multiplied by the loss scale of `{scaler}` "
                        f"(made with mixed_precision=\"fp16\": 65536 by default): use `{scaler}.{method}(...)`, "
                        "which unscales them first", clip.event.span, data={"scaler": scaler})
                    continue
                if uses[0].event.via == "fabric":
                    # (no fix: the model and optimizer Fabric's clip needs are a judgement call)
                    value = "clip_val" if clip.event.name.endswith("clip_grad_value_") else "max_norm"
                    yield ctx.finding(
                        f"`{clip.event.name}` clips gradients still multiplied by the loss scale of `{scaler}` "
                        f"(made with precision=\"16-mixed\": on a GPU its backward scales the loss by a GradScaler, "
                        f"65536 by default): use `{scaler}.clip_gradients(model, optimizer, {value}=...)`, "
                        "which unscales them first", clip.event.span, data={"scaler": scaler})
                    continue
                # the step that will use the clipped gradients, else any step of the scaler
                step = next((f for f in stepped if f.event.target and f.order > clip.order), None) \
                    or next((f for f in stepped if f.event.target), None)
                opt = _as_read(step, clip, "target") if step is not None else "optimizer"
                each = f" for each `{opt}` in `{step.event.each}`" if step is not None and step.event.each else ""
                yield ctx.finding(
                    f"`{clip.event.name}` clips gradients still multiplied by the loss scale of `{scaler}` "
                    f"(65536 by default): call `{scaler}.unscale_({opt})`{each} first",
                    clip.event.span, fix=self._fix(ctx, facts, c, clip),
                    data={"scaler": scaler})

    def _fix(self, ctx: RuleContext, facts, c, clip) -> Fix | None:
        source = ctx.facts.source
        if source is None or clip.event.stmt < 0:
            return None
        if any(steps.compatible(u, clip) for u in c.of("unscale")):
            return None  # an unscale_ after the clip: moving it is a judgement call, a second one would raise
        step = next((f for f in c.of("step") if f.event.via == "scaler" and f.order > clip.order
                     and steps.compatible(f, clip) and f.event.target), None)
        if step is None or step.event.func != clip.event.func or step.loops != clip.loops or step.event.each:
            return None  # (a step per optimizer of a loop: its variable is not defined at the clip)
        if not set(step.guards) <= set(clip.guards):
            return None  # the clip runs more often than the step: unscale_ would run twice per update
        if any(k is not clip and k.event.via == "torch" and not steps.is_measuring(k.event) and k.order < clip.order
               and steps.compatible(k, clip) and not any(k.order < f.order < clip.order for f in c.of("step"))
               for k in c.of("clip")):
            # an earlier clip of the same update gets the unscale_ (two fixes in one round inserted
            # two, and the second raises); this clip follows it once that fix is in
            return None
        st = facts.stmts[clip.event.stmt]
        target = re.match(r"\w+", step.event.target)
        end = facts.stmts[step.event.stmt].line if step.event.stmt >= 0 else None
        if target is None or end is None or any(
                target.group() in other.assigned for other in facts.stmts if st.line <= other.line < end):
            return None  # the optimizer is (re)bound between the clip and the step: not yet what it steps
        line = split_lines(source)[st.line - 1]
        lead = line[: st.column - 1]
        if lead.strip() or line[st.column - 1:].startswith(("elif ", "elif(")):
            return None  # the clip shares its line with other code, or is an `elif`'s test
        indent = indentation(lead)
        text = f"{indent}{step.event.scaler}.unscale_({step.event.target})\n"
        return Fix(self.fix_title, (Edit(SourceSpan(st.line, 1, st.line, 1), text),), safe=True)


def _as_read(f, clip, name: str) -> str:
    """The event's scaler or optimizer as the clip's line reads it: a scaler used inside an inlined
    method (`self.scaler` of `trainer.backward(loss)`) is `trainer.scaler` beside a clip in the loop."""
    if clip.depth == 0 and f.depth > 0:
        return getattr(f, name) or getattr(f.event, name)
    return getattr(f.event, name)


# The frameworks whose backward may scale the loss by a GradScaler of their own (Event.via of the
# backward), and the kind of Assign that says so (not `disabled`): accelerate's Accelerator made
# with mixed_precision="fp16", Lightning's Fabric made with precision="16-mixed" for a GPU.
_WRAPPERS = {"accelerate": "accelerator", "fabric": "fabric"}


def _fp16_accelerator(facts, accelerator: str, func: int, kind: str = "accelerator") -> bool:
    """The accelerator (or Fabric: `kind`) a backward in function `func` runs on (as written) is
    made to scale the loss (Assign.disabled false): every binding of an attribute in the file is such a
    call; a plain name is bound so in that function, and only so there (another function's
    `accelerator` is another object, whatever it holds; a parameter of the same name is whatever
    the caller passes). A name the module's level binds is read by every function that takes no
    parameter of that name, and may be rebound by any (`global accelerator`): every binding in
    the file counts then."""
    made = steps.assigns_to(facts, accelerator)
    if "." not in accelerator:
        functions = {f.id: f for f in facts.functions}
        if any(functions[a.func].name == "<module>" for a in made if a.func in functions):
            reader = functions.get(func)
            if reader is None or accelerator in reader.params:
                return False
        else:
            made = [a for a in made if a.func == func]
    return bool(made) and all(a.kind == kind and not a.disabled for a in made)


def _model_clip(facts, c, clip, scaled) -> bool:
    """Whether a framework clip is a model's own method (FSDP's `model.clip_grad_norm_(1.0)`)
    under a torch GradScaler: it knows nothing of the scaler, and clips what it holds as torch's
    clip does (accelerate's and Fabric's clips unscale first, and scale with no GradScaler of
    the user's)."""
    if clip.event.via != "framework" or clip.depth != 0 or "." not in clip.event.name:
        return False
    if not any(f.event.via == "scaler" for f in scaled):
        return False
    receiver = clip.event.name.rsplit(".", 1)[0]
    return bool(steps.scoped_assigns(facts, receiver, ("model",), c.function))


def _may_unscale(facts, c, unscale, clip) -> bool:
    """Whether `scaler.unscale_(opt)` may unscale the gradients `clip` clips: not when both are
    known apart (the clip of `g.parameters()`, the unscale of an optimizer built here on `d`'s:
    a GAN's generator clipped after its discriminator's optimizer was unscaled)."""
    what = steps.clipped(c, clip)
    if what is None or what[0] != "model" or not unscale.target:
        return True
    owners = steps.owners(facts, c, unscale)
    return not owners or any(steps.covers(m, owners) for m in steps.same_models(facts, what[1], c.function))


def _disabled(facts, scaler: str) -> bool:
    made = steps.assigns_to(facts, scaler, ("scaler",))
    return bool(made) and all(a.disabled for a in made)


# `max_norm * scaler.get_scale()` (either order): a threshold times the loss scale, a plain name,
# attribute, string-keyed subscript or number times it and nothing else (a quotient or a root is
# no such threshold). A norm clip and a value clip of gradients scaled by S at a threshold times S
# clip as the unscaled gradients at the threshold would.
_FACTOR = r"(?:[A-Za-z_][\w.]*(?:\[\s*(?:\"[^\"]*\"|'[^']*'|\d+)\s*\])*|\d+(?:\.\d*)?(?:e-?\d+)?)"
_SCALED = re.compile(rf"^\s*(?:{_FACTOR}\s*\*\s*[A-Za-z_][\w.]*\.get_scale\(\)|[A-Za-z_][\w.]*\.get_scale\(\)\s*\*\s*{_FACTOR})\s*$")


def _scaled_threshold(text: str) -> bool:
    """Whether a clip threshold is a plain threshold times the loss scale: clipping the still-scaled
    gradients at it clips as unscale_ then the plain threshold would."""
    return bool(_SCALED.match(text))


def _after(last: int | None, order: int) -> bool:
    """Whether the last of some events (its order; None: there is none) comes after `order`."""
    return last is not None and last > order
