"""GL204 degenerate-clip-threshold: a clip threshold of 0, an enormous one, or an odd norm type."""

from __future__ import annotations

import math
import re
from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.registry import Example, Rule, RuleContext
from gradlint.facts.training import config_threshold, iter_events

LARGE = 1e3
NORM_TYPES = (1.0, 2.0, math.inf)


class DegenerateClipThreshold(Rule):
    """
    ## What it does
    Checks the threshold of every gradient clip: `max_norm`/`clip_value` of 0 (a literal, a
    name bound to 0, the default of a command-line option, a field of a config object the file
    builds and never changes afterwards (`cfg = TrainConfig()` with `max_grad_norm: float = 0.0`,
    in this file or another of the project; or a config the function is given, as every caller
    in the project builds it: `train(model, TrainConfig())`), or arithmetic on them such as `2 * CLIP`, when no
    `if` around the call tests it or a name it is computed from) is an error; a finite literal
    of 1e3 or more, and a `norm_type` other than 1, 2 or inf, are reported as information.

    ## Why is this bad?
    `clip_grad_norm_(params, 0)` scales every gradient by 0/‖g‖ = 0 and `clip_grad_value_(params,
    0)` clamps every gradient to 0: the model never changes, silently. A threshold of 1e3 or
    more almost never clips, which is usually a leftover from measuring the norm, and a
    norm type such as 0 or 3 is rarely what was meant.

    ## Example
    ```python
    parser.add_argument("--clip", type=float, default=0)
    ...
    torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
    ```

    ## Use instead
    ```python
    if args.clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
    ```
    To measure the norm without clipping, pass `float("inf")`.

    ## References
    - `torch.nn.utils.clip_grad_norm_`: clip_coef = max_norm / (total_norm + 1e-6). Measured
      (torch 2.13, CPU): max_norm=0 multiplies every gradient by 0, max_norm=-1 by −0.04 (the
      sign flips), `clip_grad_value_(params, 0)` leaves max |g| = 0.
    - pytorch/pytorch#31367 (negative max_norm reverses the gradients); adjidieng/ETM#49 and
      OpenNMT/OpenNMT-py#1140 show the `if clip > 0:` guard that makes a default of 0 safe.
    """

    code = "GL204"
    probe_measure = "not_measurable"
    name = "degenerate-clip-threshold"
    severity = Severity.ERROR
    summary = "Clip threshold of 0 (zeroes every gradient), >= 1e3, or an unusual norm type"

    invalid = [
        Example("""\
import torch

loss.backward()
torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0)
optimizer.step()
"""),
        Example("""\
import argparse
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--grad-clip", type=float, default=0.0)
args = parser.parse_args()
for x in loader:
    model(x).sum().backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), args.grad_clip)
    optimizer.step()
    optimizer.zero_grad()
""", note="argparse default 0, unguarded"),
        Example("""\
from torch.nn.utils import clip_grad_norm_

MAX_NORM = 0
clip_grad_norm_(model.parameters(), MAX_NORM)
""", note="a constant bound to 0"),
        Example("""\
import torch

CLIP = 0.0
loss.backward()
torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=2 * CLIP)
""", note="computed from a constant bound to 0"),
        Example("""\
from dataclasses import dataclass

import torch


@dataclass
class TrainConfig:
    lr: float = 3e-4
    max_grad_norm: float = 0.0


cfg = TrainConfig()
for x in loader:
    model(x).sum().backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad()
""", note="a config's default, built with no value for it"),
        Example("""\
import torch

torch.nn.utils.clip_grad_norm_(model.parameters(), 1e4)
""", note="info: never clips"),
        Example("""\
import torch

torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, norm_type=3)
""", note="info: odd norm type"),
    ]
    valid = [
        Example("""\
from dataclasses import dataclass

import torch


@dataclass
class TrainConfig:
    max_grad_norm: float = 0.0


cfg = TrainConfig()
apply_overrides(cfg, args)
torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
""", note="the config may be changed after it is built"),
        Example("""\
import torch

torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
torch.nn.utils.clip_grad_norm_(model.parameters(), 5, norm_type="inf")
torch.nn.utils.clip_grad_value_(model.parameters(), clip_value=0.5)
"""),
        Example("""\
import argparse
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--clip", type=float, default=0)
args = parser.parse_args()
if args.clip > 0:
    torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
""", note="guarded by if clip > 0"),
        Example("""\
import torch

max_norm = float("inf")
total = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
""", note="inf assigned to a variable to measure the norm"),
        Example("""\
import torch


def clip(model, max_norm=0.0):
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
""", note="a parameter's default is the caller's business"),
    ]

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        facts = ctx.facts.training
        if facts is None:
            return
        seen = set()
        for fn in facts.functions:
            for ev in iter_events(fn.body):
                if ev.kind != "clip" or ev.span in seen:
                    continue
                seen.add(ev.span)
                yield from self._clip(ctx, ev, fn)

    def _clip(self, ctx: RuleContext, ev, fn) -> Iterator[Finding]:
        if ev.via == "hand":
            return  # (`p.grad.clamp_(-1, 1)`: no threshold of a clip function)
        v = ev.value
        if ev.via == "helper" and _project_function(ctx, ev.name):
            # `clip_gradients(model, 0.0)` with the helper in the project: what it does with 0
            # (`if clip > 0:`) is its body's to say; judged only when the body hands the parameter
            # to torch's clip, unguarded
            v = _helper_threshold(ctx, ev)
            if v is None:
                return
        if v is not None and v.param:
            # `cfg.grad_clip` with `cfg` the function's parameter: the config every caller passes,
            # unless some file changes that field of an object on its way
            v = config_threshold(v, fn, ctx.index, ctx.facts.training)
            parts = v.param.split(".")
            # (`self.cfg.optim.grad_clip`: assigning `optim` changes the field as well)
            if v.number is not None and parts[0] == "self" and any(
                    _assigned_in_project(ctx, parts[1], ".".join(parts[2:i])) for i in range(3, len(parts) + 1)):
                return
        what = "clip_value" if "value" in ev.name else "max_norm"
        if v is not None and v.number is not None and not v.guarded and not _changed_elsewhere(ctx, v):
            where = {"literal": f"{what}={v.text}",
                     "constant": f"{what} `{v.text}` = {_fmt(v.number)}",
                     "argparse": f"{what} `{v.text}` (command-line default {_fmt(v.number)})"
                     if re.fullmatch(r"[\w.]+", v.text) else
                     f"{what} `{v.text}` = {_fmt(v.number)} (with the command-line defaults)",
                     "config": f"{what} `{v.text}` = {_fmt(v.number)} (`{v.origin}` of the config "
                               f"{'every caller passes' if v.param else 'as built'})"}[v.source]
            if v.number == 0:
                effect = "zeroes every gradient" if what == "max_norm" else "clamps every gradient to 0"
                yield ctx.finding(f"`{ev.name}` with {where} {effect}: the model never learns",
                                  ev.span, severity=Severity.ERROR, data={"threshold": v.number})
            elif v.number < 0:
                yield ctx.finding(f"`{ev.name}` with {where}: a negative threshold flips the sign of every gradient",
                                  ev.span, severity=Severity.ERROR, data={"threshold": v.number})
            elif math.isfinite(v.number) and v.number >= LARGE and v.source in ("literal", "constant"):
                yield ctx.finding(f"`{ev.name}` with {where} (>= {LARGE:g}) almost never clips; "
                                  f"pass float('inf') to measure the norm, or a real threshold to clip",
                                  ev.span, severity=Severity.INFO, data={"threshold": v.number})
        n = ev.norm_type
        if n is not None and n.number is not None and n.source == "literal" and n.number not in NORM_TYPES:
            yield ctx.finding(f"`{ev.name}` with norm_type={n.text}: expected 1, 2 or inf", ev.span,
                              severity=Severity.INFO, data={"norm_type": n.number})


def _helper_threshold(ctx: RuleContext, ev):
    """What the call `ev` of a project's clip helper passes for the threshold, when the helper's
    one clip is torch's, reads that parameter as it is, and no test of it guards the clip
    (`def clip_gradients(model, clip): clip_grad_norm_(model.parameters(), clip)`); None else
    (a guard, a clip by hand, a default: the helper's own business)."""
    from gradlint.facts.training import TrainingFacts

    for q in ctx.index.resolve(ev.name):
        module, _, local = q.rpartition(".")
        mod = ctx.index.index.module(module) if module else None
        facts = mod.facts.training if mod is not None else None
        if not isinstance(facts, TrainingFacts):
            continue
        fn = next((f for f in facts.functions if f.name == local and f.cls is None and f.parent == 0), None)
        if fn is None:
            continue
        clips = [e for e in iter_events(fn.body) if e.kind == "clip"]
        if len(clips) != 1 or clips[0].via != "torch" or clips[0].value is None or clips[0].value.guarded:
            return None
        param = clips[0].value.text
        if param not in fn.params:
            return None
        args = dict(ev.args)
        if "*" in args:
            return None
        return args.get(param) or args.get(str(fn.params.index(param)))
    return None


def _project_function(ctx: RuleContext, name: str) -> bool:
    """`name` (as the file writes it: `clip_gradients`, `utils.clip_gradients`) is a function a
    module of the project defines (not an installed library's)."""
    scope = ctx.index
    if scope is None:
        return False
    for q in scope.resolve(name):
        module = q.rpartition(".")[0]
        mod = scope.index.module(module) if module else None
        if mod is not None and not mod.library:
            return True
    return False


def _assigned_in_project(ctx: RuleContext, held: str, field: str) -> bool:
    """Some file of the project assigns `field` of a config held as attribute `held` of another
    object (`trainer.<held>.<field> = 1.0` for the `self.<held>` a trainer keeps, or a `setattr`
    of it): the object may be changed through its holder, which no scan of the class's own file
    sees. The project's text is searched, whichever files the run checks."""
    if ctx.index is None:
        return True
    assigned = re.compile(rf"\.\s*{re.escape(held)}\s*\.\s*{re.escape(field)}\s*(?:[-+*/|&^%@]|//|\*\*)?=(?!=)|"
                          rf"setattr\([^)]*{re.escape(held)}[^)]*['\"]{re.escape(field)}['\"]")
    index = ctx.index.index
    for name in index.mentioning(field):
        mod = index.module(name)
        text = mod.facts.source if mod is not None else None
        if text is None or assigned.search(text):
            return True
    return False


def _changed_elsewhere(ctx: RuleContext, v) -> bool:
    """A field of a config object that is a global of its module (`cfg = TrainConfig()` at the
    top) which another project module that imports this one names as an attribute or a string
    (`train.cfg.max_grad_norm = 1.0`, `setattr(cfg, "max_grad_norm", 1.0)`): that module may
    change it before the loop runs. The project's text is searched, so the answer does not depend
    on the files of the run."""
    if v.source != "config" or not v.shared or ctx.index is None:
        return False
    # every name on the field's way (`Cfg.optim.grad_clip`: a module may set `optim` too)
    names = v.origin.split(".")[1:]
    here, index = ctx.index.module, ctx.index.index
    if not here:
        return False
    words = "|".join(re.escape(n) for n in names)
    named = re.compile(rf"\.\s*(?:{words})(?!\w)|['\"](?:{words})['\"]")
    wanted = f"{here}.{v.shared}"
    for name in sorted({m for n in names for m in index.mentioning(n)}):
        if name == here:
            continue
        mod = index.module(name)
        text = mod.facts.source if mod is not None else None
        if text is None or not named.search(text):
            continue
        # it imports this module (`import train`, `from train import cfg`), as the index resolves it
        if any(wanted in index.resolve(name, alias) or wanted in index.resolve(name, f"{alias}.{v.shared}")
               for alias in mod.imports):
            return True
    return False


def _fmt(x: float) -> str:
    return f"{x:g}"
