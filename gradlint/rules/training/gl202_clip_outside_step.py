"""GL202 clip-outside-step: gradients clipped after the optimizer step or before backward()."""

from __future__ import annotations

from typing import Iterator

from gradlint.findings import Edit, Finding, Fix, Severity, SourceSpan
from gradlint.registry import Example, RuleContext
from gradlint.rules.training import steps
from gradlint.text import indentation, lines_between, split_lines


class ClipOutsideStep(steps.StepRule):
    """
    ## What it does
    Flags a gradient clip (`clip_grad_norm_`, `clip_grad_value_`, `accelerator.clip_grad_norm_`,
    ...) that runs after the optimizer step or before `backward()`, when no clip sits between
    `backward()` and the step. The file's functions and methods the loop calls are followed,
    callback objects included (`GradientClipper().on_step_end(model)`, `for cb in callbacks:
    cb.on_step_end(model)` over instances of the file's classes). Steps inside step functions and
    closures (LBFGS) are followed;
    SAM's `first_step`/`second_step` count as steps. A torch clip inside `training_step` of a
    `LightningModule` under automatic optimisation is flagged too: Lightning runs backward and
    the step after `training_step` returns. With an optimizer per model (a GAN's D and G), a clip
    of one model's parameters counts as placed only before a step that trains that model: D's
    clip after `opt_d.step()` is late even when G's clip sits before `opt_g.step()`. A loop
    with a backward and a step of its own that runs between `backward()` and the clip (a warm-up
    a recovery routine re-runs when the loss is not finite) is an update of its own: the clip
    after it still guards the step that follows. A clip after a loop that makes every update
    itself (`for batch in loader: backward(); step()`), once an epoch or once at the end, with
    no step after it and no clip inside the loop, is flagged too: no step the loop makes is
    clipped. A step after it (a flush of left-over accumulated gradients) is guarded by it. So is
    a clip before such a loop (once an epoch, or once before training) when the loop clears the
    gradients on every pass: its first clear drops what was clipped, or the clip saw only the
    zeros or None the last pass's clear left.

    ## Why is this bad?
    The optimizer has already applied the unclipped gradients when the clip runs after
    `optimizer.step()`; before `backward()` it clips stale or zeroed gradients. Either way the
    clip does nothing and the run is as unprotected as if it had none, while `--max-grad-norm`
    suggests otherwise (graphstorm shipped five trainers like this).

    ## Example
    ```python
    loss.backward()
    optimizer.step()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    ```

    ## Use instead
    ```python
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    ```

    ## Fix safety
    The fix moves a clip that follows the step to just before it — the clip's line, or the
    `if`/`with` block that holds only the clip (`if max_grad_norm: clip_grad_norm_(...)`). It
    is offered only when that code and the step are statements of the same block, the moved
    code does nothing else to gradients, and nothing between the step and it binds a name it
    reads, so the moved code computes the same thing a few statements earlier. Moved before
    `scaler.step(opt)`, a torch clip would see gradients still multiplied by the loss scale
    (the step unscales them, so after it they were true ones): the fix also inserts
    `scaler.unscale_(opt)` before it, unless an `unscale_` already runs before the step; with
    an `unscale_` between the step and the clip no fix is offered (a second one raises).

    ## References
    - awslabs/graphstorm#1366 ("Clipping is currently applied after the optimizer step") and
      its fix awslabs/graphstorm#1383, which moved the clip in all five trainers.
    - VGraphRNN/VGRNN#4: `clip_grad_norm()` called after `opt.step()` "isn't doing anything".
    """

    code = "GL202"
    probe_measure = "not_measurable"
    name = "clip-outside-step"
    severity = Severity.ERROR
    summary = "Gradient clipping after the optimizer step or before backward()"
    fix_title = "Move the clip before the optimizer step"

    invalid = [
        Example("""\
import lightning as L
import torch


class Model(L.LightningModule):
    def training_step(self, batch, batch_idx):
        loss = self.net(batch).mean()
        torch.nn.utils.clip_grad_norm_(self.parameters(), 1.0)
        return loss
""", note="Lightning's automatic optimisation: backward runs after training_step"),
        Example("""\
import torch

for x, y in loader:
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # too late
""", fixed="""\
import torch

for x, y in loader:
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # too late
    optimizer.step()
"""),
        Example("""\
from torch.nn.utils import clip_grad_value_ as clip

for x, y in loader:
    optimizer.zero_grad()
    clip(model.parameters(), 0.5)
    criterion(model(x), y).backward()
    optimizer.step()
""", note="before backward"),
        Example("""\
import torch


def train_step(model, optimizer, batch):
    optimizer.zero_grad()
    model(batch).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_norm)
    return norm
""", fixed="""\
import torch


def train_step(model, optimizer, batch):
    optimizer.zero_grad()
    model(batch).loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_norm)
    optimizer.step()
    optimizer.zero_grad()
    return norm
""", note="step function; the clip comes after zero_grad too"),
        Example("""\
import torch

scaler = torch.amp.GradScaler("cuda")
for x, y in loader:
    optimizer.zero_grad()
    scaler.scale(criterion(model(x), y)).backward()
    scaler.step(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.update()
""", fixed="""\
import torch

scaler = torch.amp.GradScaler("cuda")
for x, y in loader:
    optimizer.zero_grad()
    scaler.scale(criterion(model(x), y)).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()
""", note="after scaler.step: moved before it with the unscale_ it then needs"),
        Example("""\
import torch

for epoch in range(epochs):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
""", note="once an epoch, after the batch loop has made every step"),
        Example("""\
import torch

for epoch in range(epochs):
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
""", note="once an epoch, before the batch loop: its zero_grad drops what was clipped (measured: the "
          "weights are bitwise those of no clip, bench/measure_clip_before_update_loop.py)"),
    ]
    valid = [
        Example("""\
import lightning as L
import torch


class Model(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        loss = self.net(batch).mean()
        opt.zero_grad()
        self.manual_backward(loss)
        torch.nn.utils.clip_grad_norm_(self.parameters(), 1.0)
        opt.step()
""", note="manual optimisation: the clip sits between backward and step"),
        Example("""\
import torch

for x, y in loader:
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
"""),
        Example("""\
import torch

optimizer = torch.optim.LBFGS(model.parameters())
for x, y in loader:
    def closure():
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        return loss
    optimizer.step(closure)
""", note="closure optimizer (LBFGS)"),
        Example("""\
import torch

for x, y in loader:
    criterion(model(x), y).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.first_step(zero_grad=True)
    criterion(model(x), y).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.second_step(zero_grad=True)
""", note="SAM first_step/second_step"),
        Example("""\
import torch

for x, y in loader:
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
""", note="a correct clip, and a measurement after the step"),
        Example("""\
import torch

for x, y in loader:
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    if use_amp:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
""", note="the unscaled branch clips in place"),
        Example("""\
import torch

for x, y in loader:
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    if args.no_clip:
        optimizer.step()
    else:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
""", note="a step in another branch does not come before the clip"),
        Example("""\
def train(model, loader, accelerator, optimizer):
    for batch in loader:
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
""", note="accelerate"),
    ]

    def _check(self, ctx: RuleContext, facts) -> Iterator[Finding]:
        yield from self._lightning_training_step(ctx, facts)
        yield from self._after_update_loop(ctx, facts)
        for c in steps.contexts(facts, ctx.index):
            clips = [f for f in c.of("clip") if not steps.is_measuring(f.event)]
            if not clips:
                continue
            all_marks = [f for f in c.events if f.event.kind in ("backward", "step")]

            def marks_for(clip) -> list:
                # only what can run in the same iteration as the clip (branches taken alike)
                return [m for m in all_marks if steps.compatible(m, clip)]

            def steps_it(step, clip) -> bool:
                # the step may update what the clip clipped (not known: it may)
                what = steps.clipped(c, clip)
                if what is None:
                    return True
                if what[0] == "optimizer":
                    return step.event.func == c.function.id and step.event.target == what[1]
                trained = steps.owners(facts, c, step)
                return not trained or steps.covers(what[1], trained)

            # Loops that hold a backward and a step of their own: a complete training loop, a
            # warm-up or a recovery routine a step calls (sbi's `resolve_state` re-runs a warm-up
            # when the loss is not finite). Its updates are its own; a clip after such a loop,
            # and not in it, is placed by what comes before the loop and after the clip.
            updating = {lp for m in all_marks if m.event.kind == "backward" for lp in m.loops} & \
                {lp for m in all_marks if m.event.kind == "step" for lp in m.loops}

            def inner_update(m, clip) -> bool:
                return any(lp in updating and lp not in clip.loops for lp in m.loops)

            def placed(clip) -> bool:
                # the nearest mark before the clip that can run with it is a backward, and a step
                # after it that can run with it steps what it clipped
                last = next((m for m in c.before(clip)
                             if m.event.kind in ("backward", "step") and steps.compatible(m, clip)
                             and not inner_update(m, clip)), None)
                return last is not None and last.event.kind == "backward" and \
                    any(m.event.kind == "step" and steps.compatible(m, clip) and steps_it(m, clip) for m in c.after(clip))

            well = [cl for cl in clips if placed(cl)]
            if well:
                # a clip of another model's parameters (D's, after D's step, while G's clip is
                # placed before G's step) is still late; any other clip: the placed one is it
                named = [steps.clipped(c, cl) for cl in well]
                placed_ids = {id(cl) for cl in well}
                clips = [cl for cl in clips if id(cl) not in placed_ids and None not in named
                         and (m := steps.clipped(c, cl)) is not None and not any(_same(m, w) for w in named)]
                if not clips:
                    continue
            for clip in clips:
                marks = marks_for(clip)
                steps_before = [m for m in marks if m.order < clip.order and m.event.kind == "step"]
                after = [m for m in marks if m.order > clip.order]
                if steps_before and not any(m.event.kind == "backward" for m in marks
                                            if steps_before[-1].order < m.order < clip.order):
                    step = steps_before[-1]
                    yield ctx.finding(
                        f"`{clip.event.name}` runs after `{steps.step_text_near(step, clip)}`: the update has already used the unclipped gradients",
                        clip.event.span, fix=self._fix(ctx, facts, c, clip, step))
                elif after and after[0].event.kind == "backward" and any(m.event.kind == "step" for m in after):
                    yield ctx.finding(
                        f"`{clip.event.name}` runs before `backward()`: it clips stale gradients, not the ones the step applies",
                        clip.event.span)

    def _after_update_loop(self, ctx: RuleContext, facts) -> Iterator[Finding]:
        """A clip after a loop that makes every update itself (`for batch in loader: backward;
        step`), in the epoch loop around it or after it, with no step of its own to guard: it
        runs once the loop's last step has applied unclipped gradients, and the next clear drops
        what it clipped. The step contexts are the innermost loops, so this clip is in none."""
        for fn in facts.functions:
            flat = steps.flatten(facts, fn, ctx.index)
            clips = [f for f in flat if f.event.kind == "clip" and not steps.is_measuring(f.event)]
            if not clips:
                continue
            backward = {lp for f in flat if f.event.kind == "backward" for lp in f.loops}
            updating = backward & {lp for f in flat if f.event.kind == "step" for lp in f.loops}
            # the step contexts' loops: update loops with no update loop inside them
            innermost = updating - {lp for f in flat for i, lp in enumerate(f.loops)
                                    if set(f.loops[i + 1:]) & updating}
            for clip in clips:
                if set(clip.loops) & innermost:
                    continue  # a clip inside an update loop: the step contexts place it
                def outside(m, clip=clip) -> bool:
                    # a mark of this clip's own iteration, not of an update loop nested in it
                    return steps.compatible(m, clip) and not any(
                        lp in updating and lp not in clip.loops for lp in m.loops)

                marks = [f for f in flat if f.event.kind in ("backward", "step")]
                if any(outside(m) for m in marks):
                    continue  # a backward or step of the clip's own: not this pattern
                n = len(clip.loops)

                def nested(m, clip=clip, n=n) -> bool:
                    # a step of an update loop nested in the clip's own loops
                    return m.event.kind == "step" and steps.compatible(m, clip) and m.loops[:n] == clip.loops \
                        and len(m.loops) > n and m.loops[n] in updating

                # the update loop ends before the clip
                loop = next((m for m in reversed(marks) if m.order < clip.order and nested(m)), None)
                if loop is not None:
                    if any(loop.loops[n] in f.loops for f in clips):
                        continue  # the loop clips its steps itself (well or not: the contexts say)
                    yield ctx.finding(
                        f"`{clip.event.name}` runs after the loop whose last `{steps.step_text_near(loop, clip)}` "
                        f"(line {loop.event.span.line}) has applied the unclipped gradients: no step it "
                        "makes is clipped; clip between `backward()` and the step inside the loop",
                        clip.event.span)
                    continue
                # ...or starts after it, and clears the gradients on every pass
                ahead = next((m for m in marks if m.order > clip.order and nested(m)), None)
                if ahead is None or any(ahead.loops[n] in f.loops for f in clips):
                    continue
                clear = _cleared_each_pass(flat, ahead.loops[n], clip)
                if clear is None:
                    continue
                yield ctx.finding(
                    f"`{clip.event.name}` runs before the loop whose `{steps.step_text_near(ahead, clip)}` "
                    f"(line {ahead.event.span.line}) makes every update: its clear of the gradients (line "
                    f"{clear.event.span.line}) and `backward()` replace what was clipped, so no step it makes is "
                    "clipped; clip between `backward()` and the step inside the loop",
                    clip.event.span)

    def _lightning_training_step(self, ctx: RuleContext, facts) -> Iterator[Finding]:
        """A clip in `training_step` of a LightningModule under automatic optimisation: Lightning
        calls backward and the optimizer step after training_step returns, so the clip sees the
        gradients cleared before this step (None or zeros) and changes nothing."""
        from gradlint.facts.training import lightning_modules

        automatic = lightning_modules(facts, ctx.index)
        if not automatic:
            return

        for fn in facts.functions:
            if fn.name != "training_step" or fn.cls not in automatic:
                continue
            # the calls it makes read in place (`self.clip_gradients_()`, a mixin's method): a
            # clip they run is reported at the call training_step makes
            call = None
            for f in steps.flatten(facts, fn, ctx.index):
                ev = f.event
                if f.depth == 0:
                    call = ev if ev.kind in ("call", "invoke") else None
                if ev.kind != "clip" or ev.via != "torch" or steps.is_measuring(ev):
                    continue
                if f.depth == 0:
                    what, span = f"`{ev.name}`", ev.span
                elif call is not None:
                    what, span = f"`{call.target}()`, which calls `{ev.name}`,", call.span
                else:
                    continue
                yield ctx.finding(
                    f"{what} in `{fn.cls}.training_step` runs before Lightning's backward "
                    "(automatic optimisation): it clips no gradient of this step; use "
                    "`Trainer(gradient_clip_val=...)` or `configure_gradient_clipping`",
                    span)

    def _fix(self, ctx: RuleContext, facts, context, clip, step) -> Fix | None:
        source = ctx.facts.source
        if source is None or clip.event.stmt < 0 or step.event.stmt < 0 or clip.event.func != step.event.func:
            return None
        s = facts.stmts[step.event.stmt]
        if not s.simple:
            return None
        # what moves: the clip's statement, or the `if`/`with` around it that sits in the step's
        # block (`if max_grad_norm is not None: clip(...)`)
        sid = clip.event.stmt
        while facts.stmts[sid].block != s.block:
            sid = facts.stmts[sid].parent
            if sid < 0 or facts.stmts[sid].kind not in ("if", "with"):
                return None
        c = facts.stmts[sid]
        if not (c.simple or c.kind in ("if", "with")) or not s.index < c.index:
            return None
        inside = [st for st in facts.stmts if c.line <= st.line and st.end_line <= c.end_line]
        # ...and nothing but the clip: an `if`/`with` around it that holds other code (an EMA
        # update, a weight snapshot, an `else:`) moved that code before the step too
        path = {clip.event.stmt}
        at = clip.event.stmt
        while at != sid:
            at = facts.stmts[at].parent
            path.add(at)
        if any(facts.stmts.index(st) not in path for st in inside) or not facts.stmts[clip.event.stmt].simple:
            return None
        # the moved code must do nothing else a step cares about
        from gradlint.facts.training import iter_events

        fn = facts.functions[clip.event.func]
        for ev in iter_events(fn.body):
            if ev is not clip.event and ev.kind in ("backward", "step", "clear", "unscale", "call", "clip") \
                    and c.line <= ev.span.line <= c.end_line:
                return None
        between = [st for st in facts.stmts if st.block == c.block and s.index <= st.index < c.index]
        bound = {n for st in between for n in st.assigned}
        # compound statements between the step and the clip may bind anything: give up
        if any(st.kind != "simple" for st in between) or bound & {n for st in inside for n in st.used}:
            return None
        if {n for st in inside for n in st.assigned} & {n for st in between for n in st.used}:
            return None  # a statement between reads what the clip binds (`gn = clip(...)`)
        text = lines_between(source, c.line, c.end_line)
        if not text.endswith(("\n", "\r")):
            text += "\n"
        unscale = _unscale_line(source, facts, context, clip, step)
        if unscale is None:
            return None
        return Fix(self.fix_title, (
            Edit(SourceSpan(s.line, 1, s.line, 1), unscale + text),
            Edit(SourceSpan(c.line, 1, c.end_line + 1, 1), ""),
        ), safe=True)


def _cleared_each_pass(flat, loop, clip):
    """A clear of gradients in `loop` that runs on every pass (under no `if` of the loop's own)
    and can run with the clip: the first one, or None. A clip before such a loop clips what its
    first clear drops, or what the last pass's clear left (zeros or None: measured,
    bench/measure_clip_before_update_loop.py, the weights bitwise those of no clip). Without a
    clear the clipped sum would carry into the loop's first step."""
    return next((f for f in flat if f.event.kind == "clear" and loop in f.loops and steps.compatible(f, clip)
                 and not any(loop in g.loops for g in f.guards)), None)


def _same(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Whether two clips may clip the same parameters (a model and an optimizer: not known, may)."""
    if a[0] != b[0]:
        return True
    return a[1] == b[1] if a[0] == "optimizer" else steps.covers(a[1], [b[1]])


def _unscale_line(source: str, facts, context, clip, step) -> str | None:
    """What goes before the moved clip: `scaler.unscale_(opt)` when the step is a scaler's and the
    clip is torch's (before `scaler.step` the gradients are still multiplied by the loss scale:
    GL203), '' when nothing is needed, None when no fix is safe (an unscale_ between the step and
    the clip: moved before it the clip would see scaled gradients, and a second unscale_ raises)."""
    ev = step.event
    if ev.via != "scaler" or clip.event.via != "torch" or steps.is_measuring(clip.event):
        return ""
    if any(k is not clip and k.event.via == "torch" and not steps.is_measuring(k.event)
           and step.order < k.order < clip.order and steps.compatible(k, clip) for k in context.of("clip")):
        return None  # an earlier clip after the same step moves with the unscale_ (one per update)
    unscales = [u for u in context.of("unscale") if steps.compatible(u, clip) and u.order < clip.order]
    if any(u.order > step.order for u in unscales):
        return None
    if unscales:
        return ""  # unscale_ already runs before the step: the moved clip follows it
    made = steps.assigns_to(facts, ev.scaler, ("scaler",))
    if made and all(a.disabled for a in made):
        return ""  # GradScaler(enabled=False) scales nothing
    if not ev.target or ev.each or step.depth:
        return None
    st = facts.stmts[ev.stmt]
    indent = indentation(split_lines(source)[st.line - 1][: st.column - 1])
    return f"{indent}{ev.scaler}.unscale_({ev.target})\n"
