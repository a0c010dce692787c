"""GL206 clip-inside-accumulation: clipping every micro-batch while stepping every k micro-batches."""

from __future__ import annotations

import re
from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.training import steps


class ClipInsideAccumulation(steps.StepRule):
    """
    ## What it does
    Flags a gradient clip in the micro-batch loop of gradient accumulation: the optimizer step
    is guarded by `if (i + 1) % accum == 0:` (directly, through a variable, or after
    `if i % accum != 0: continue`) but the clip runs on every micro-batch, outside that guard;
    or the backward and the clip sit in an inner micro-batch loop (`for micro_step in range(k):`)
    and the step runs once after it. A clip held to the loop's last pass, after its last
    backward (`if micro_step == k - 1:`), clips the whole sum and is not flagged. A function a
    framework calls once per batch (an Ignite process function, a Lightning `training_step` under
    manual optimisation) is a loop's body: a clip there with the step under
    `if engine.state.iteration % k == 0:` or `if (batch_idx + 1) % k == 0:` is flagged too.

    Inside Accelerate's `with accelerator.accumulate(model):` the step is read as guarded by
    `accelerator.sync_gradients` (the prepared optimizer steps only on the micro-batches that
    sync): a clip in that block, after the backward and before the step, is flagged unless it
    runs only when the flag is true (`if accelerator.sync_gradients:`, alone or in an `and`;
    the rest after `if not accelerator.sync_gradients: continue`; a name bound to the flag or to
    an `and` that holds it, `sync = accelerator.sync_gradients and step > 0`; the file's own
    `% k == 0` count). So too for a clip and step written after that block in the same loop body
    (entering the block sets the flag for the iteration and leaving it keeps it), when the block
    runs wherever the step does. Not flagged when the file builds that Accelerator with
    `gradient_accumulation_steps=1` written as a literal or constant (every micro-batch syncs),
    nor a clip and step after the loop, or in a loop that enters no `accumulate()`.

    ## Why is this bad?
    During accumulation `.grad` holds a partial sum. Clipping it every micro-batch clips each
    partial sum instead of the total: the update is no longer the clipped mean gradient, and
    the early micro-batches of each window are shrunk again and again (by up to the number of
    accumulation steps) while the last ones are not.

    ## Example
    ```python
    for i, (x, y) in enumerate(loader):
        (criterion(model(x), y) / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if (i + 1) % accum == 0:
            optimizer.step()
            optimizer.zero_grad()
    ```

    ## Use instead
    ```python
    for i, (x, y) in enumerate(loader):
        (criterion(model(x), y) / accum).backward()
        if (i + 1) % accum == 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
    ```

    ## References
    - Deci-AI/super-gradients#653: "Clipping was done each batch — moved to being done once
      before gradient step".
    - Hugging Face Trainer and accelerate clip only on synchronising steps (`sync_gradients`).
    - huggingface/diffusers#721: `accelerator.clip_grad_norm_` ran on every micro-batch inside
      `accelerator.accumulate(model)`; fixed with `if accelerator.sync_gradients:`.
    - accelerate 1.16.0 `AcceleratedOptimizer.step`/`zero_grad` act only when
      `gradient_state.sync_gradients`, which `accumulate()` sets on every k-th call. Measured
      (bench/measure_accumulate_clip.py, CPU, k = 4): the clip on every micro-batch gave an
      update at cosine 0.31 to the sum clipped once; the clip under `sync_gradients` matched it.
      `sync_gradients` is not reset when the block exits: a clip and step written after it gave
      the same numbers.
    """

    code = "GL206"
    probe_measure = "not_measurable"
    name = "clip-inside-accumulation"
    severity = Severity.WARNING
    summary = ("Gradient clipping on every micro-batch while the step runs once per k "
               "(a % accum guard, accelerate's accumulate())")

    invalid = [
        Example("""\
import torch
from ignite.engine import Engine


def update(engine, batch):
    x, y = batch
    (criterion(model(x), y) / 4).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    if engine.state.iteration % 4 == 0:
        optimizer.step()
        optimizer.zero_grad()


trainer = Engine(update)
""", note="Ignite calls `update` once per batch: the guard reads the engine's iteration"),
        Example("import torch\n\n\ndef train(args, model, loader, optimizer, state):\n    for batch in loader:\n"
                "        (model(batch) / args.acc_steps).backward()\n"
                "        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n"
                "        state.acc_step = (state.acc_step + 1) % args.acc_steps\n"
                "        if state.acc_step == 0:\n            optimizer.step()\n            optimizer.zero_grad()\n",
                note="a counter kept on an object, reduced modulo k before the test "
                     "(facebookresearch/lingua#59)"),
        Example("import torch\n\n\ndef train(args, model, loader, optimizer):\n    acc = 0\n    for batch in loader:\n"
                "        (model(batch) / args.acc_steps).backward()\n"
                "        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n"
                "        acc += 1\n        acc %= args.acc_steps\n"
                "        if acc == 0:\n            optimizer.step()\n            optimizer.zero_grad()\n",
                note="a counter reduced by `%=`"),
        Example("""\
for batch in loader:
    optimizer.zero_grad()
    for micro_step in range(accum_steps):
        loss = model(batch[micro_step]) / accum_steps
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
""", note="an inner micro-batch loop, the step after it"),
        Example("""\
import torch

for i, (x, y) in enumerate(loader):
    (criterion(model(x), y) / accum).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    if (i + 1) % accum == 0:
        optimizer.step()
        optimizer.zero_grad()
"""),
        Example("""\
import torch

for step, batch in enumerate(loader):
    loss = model(**batch).loss / args.gradient_accumulation_steps
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
    if step % args.gradient_accumulation_steps != 0:
        continue
    optimizer.step()
    optimizer.zero_grad()
""", note="the `continue` form"),
        Example("""\
import torch

for step, batch in enumerate(loader):
    sync = (step + 1) % accum == 0 or step == len(loader) - 1
    model(**batch).loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    if sync:
        optimizer.step()
        optimizer.zero_grad()
""", note="guard through a variable"),
        Example("""\
for batch in loader:
    with accelerator.accumulate(model):
        accelerator.backward(model(**batch).loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
""", note="accelerate's accumulation: the prepared optimizer steps only when `accelerator.sync_gradients` "
          "(huggingface/diffusers#721)"),
    ]
    valid = [
        Example("""\
from accelerate import Accelerator

accelerator = Accelerator(gradient_accumulation_steps=1)
for batch in loader:
    with accelerator.accumulate(model):
        accelerator.backward(model(**batch).loss)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
""", note="an Accelerator built to sync every micro-batch"),
        Example("""\
for batch in loader:
    optimizer.zero_grad()
    for micro_step in range(accum_steps):
        loss = model(batch[micro_step]) / accum_steps
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
""", note="clipped once, after the micro-batch loop"),
        Example("""\
for x, y in loader:
    optimizer.zero_grad()
    loss_fn(model(x), y).backward()
    for group in optimizer.param_groups:
        torch.nn.utils.clip_grad_norm_(group["params"], 1.0)
    optimizer.step()
""", note="a loop over parameter groups holds no backward"),
        Example("""\
import torch

for i, (x, y) in enumerate(loader):
    (criterion(model(x), y) / accum).backward()
    if (i + 1) % accum == 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
""", note="the clip inside the same guard as the step"),
        Example("""\
import torch

for i, (x, y) in enumerate(loader):
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    if i % 100 == 0:
        print(i)
""", note="a % guard around something else"),
        Example("""\
import torch

for i, real in enumerate(loader):
    opt_d.zero_grad()
    critic_loss(D, G, real).backward()
    torch.nn.utils.clip_grad_norm_(D.parameters(), 1.0)
    opt_d.step()
    if i % n_critic == 0:
        opt_g.zero_grad()
        generator_loss(D, G).backward()
        opt_g.step()
""", note="a clip for the step that runs every iteration (GAN with n_critic)"),
        Example("""\
for batch in loader:
    with accelerator.accumulate(model):
        accelerator.backward(model(**batch).loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
""", note="accelerate's accumulation, clipped only on the micro-batch that syncs"),
        Example("""\
import torch

for x, y in loader:
    summed = [torch.zeros_like(p) for p in params]
    for xi, yi in zip(x, y):
        optimizer.zero_grad()
        criterion(model(xi[None]), yi[None]).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        for s, p in zip(summed, params):
            s.add_(p.grad)
    for s, p in zip(summed, params):
        p.grad = s / len(x)
    optimizer.step()
""", note="per-sample clipping (DP-SGD): cleared at every pass, each clip sees one sample's gradient"),
    ]

    def _check(self, ctx: RuleContext, facts) -> Iterator[Finding]:
        for c in steps.contexts(facts, ctx.index):
            # a step function: read at the loops that call it; one no loop of the file calls
            # counts its micro-batches by itself when it enters `accumulate()` (it runs once per
            # micro-batch: the accumulation is Accelerate's)
            loose = c.loop is None and not c.driven
            if loose and c.repeated:
                continue
            backwards = c.of("backward")
            all_steps = c.of("step")
            for clip in c.of("clip"):
                if steps.is_measuring(clip.event) or not any(b.order < clip.order for b in backwards):
                    continue
                if clip.event.via == "hand":
                    continue  # (a clip by hand counts for GL201 only: its meaning varies too much)
                # the step this clip prepares: the next one that can run after it
                step = next((s for s in all_steps if s.order > clip.order and steps.compatible(s, clip)), None)
                if step is None:
                    continue
                if loose:
                    yield from _every_micro_batch(ctx, facts, c, clip, step)
                    continue
                inner = [lp for lp in clip.loops if lp not in step.loops]
                if inner and any(inner[-1] in b.loops and b.order < clip.order for b in backwards) \
                        and not _cleared_each_pass(c, inner[-1], clip, backwards) \
                        and not _at_the_last_pass(facts, inner[-1], clip, backwards):
                    # an inner micro-batch loop: backward and clip every pass, one step after it
                    yield ctx.finding(
                        f"`{clip.event.name}` clips every micro-batch's partial gradient sum inside the "
                        f"micro-batch loop, but `{step.event.target}` steps once after it: clip after the loop",
                        clip.event.span, data={"guard": "inner loop"})
                    continue
                guards = [g for g in step.guards if g.accum and steps.within(c, g.loops)]
                if not guards:
                    yield from _every_micro_batch(ctx, facts, c, clip, step)
                    continue
                if {g.key for g in guards} & {g.key for g in clip.guards}:
                    continue
                # (the step on the if's other branch, `if micro != 0: continue` then the step:
                # it runs when the test is false)
                when, inside = steps.guard_condition(guards[0])
                where = "inside that guard" if inside else "on that path, next to the step"
                yield ctx.finding(
                    f"`{clip.event.name}` clips every micro-batch's partial gradient sum, but "
                    f"`{step.event.target}` steps only when {when}: clip {where}",
                    clip.event.span, data={"guard": guards[0].test})


def _every_micro_batch(ctx: RuleContext, facts, c, clip, step) -> Iterator[Finding]:
    """A clip and the step it prepares inside the same `with X.accumulate(...)` of the context's
    iteration, or the step after that block in the same iteration (the clip inside it or after
    it too), the clip not held to the micro-batches that sync (`if X.sync_gradients:`): the
    prepared optimizer steps only on those, so the clip sees every partial sum. Quiet when the
    file builds X with `gradient_accumulation_steps=1` written so (every micro-batch syncs)."""
    loose = c.loop is None and not c.driven
    mine = {a.key for a in clip.accumulating}
    held = next((a for a in reversed(step.accumulating) if a.key in mine and _in_context(c, a, loose)), None)
    if held is None:
        held = _entered_before(c, clip, step, loose)
    if held is None or any(_at_sync(facts, g, c.function) for g in clip.guards) \
            or _one_micro_batch(facts, held.receiver, c.function):
        return
    x = held.receiver
    where = f"inside `{x}.accumulate(...)`" if held.key in mine else f"after `{x}.accumulate(...)`"
    yield ctx.finding(
        f"`{clip.event.name}` clips every micro-batch's partial gradient sum {where}, "
        f"but `{steps.step_text_near(step, clip)}` steps only when `{x}.sync_gradients`: "
        f"clip under `if {x}.sync_gradients:`",
        clip.event.span, data={"guard": f"{x}.sync_gradients"})


def _in_context(c, a, loose: bool) -> bool:
    """Whether the `accumulate()` block `a` is entered in context `c`'s iteration: outside every
    loop for a context of no loop nor driver (`loose`), else within the context's loop."""
    return not a.loops if loose else steps.within(c, a.loops)


def _entered_before(c, clip, step, loose: bool):
    """The `with X.accumulate(...)` block the step comes after, in the same iteration: the last
    such block before the step that the step is not inside, run wherever the step runs (its
    loops around the step, its `if`s the step's), with the clip inside it or after it. Entering
    the block sets `X.sync_gradients` for the iteration, and nothing resets it on leaving
    (accelerate 1.16.0 `Accelerator.accumulate`, `_do_sync`): the prepared optimizer's step
    after it still runs only on the micro-batches that sync (measured: bench/
    measure_accumulate_clip.py, the clip and step after the block gave the same update as inside)."""
    inside = set(step.accumulating)
    for e in c.before(step):
        outer = [a for a in e.accumulating if a not in inside]
        if not outer:
            continue
        a = outer[0]
        n = len(a.loops)
        if _in_context(c, a, loose) and step.loops[:n] == a.loops \
                and clip.loops[:n] == a.loops and set(a.guards) <= set(step.guards) \
                and (a in clip.accumulating or (not clip.accumulating and clip.order > e.order)):
            return a
        return None
    return None


# A test of Accelerate's sync flag: `accelerator.sync_gradients`, `acc.gradient_state.sync_gradients`.
_SYNC = re.compile(r"\(?\s*[\w.]+\.sync_gradients\s*\)?")
_NOT_SYNC = re.compile(r"not\s+\(?\s*[\w.]+\.sync_gradients\s*\)?")


def _at_sync(facts, g, fn) -> bool:
    """Whether guard `g` lets its code run only on a micro-batch that syncs: `if X.sync_gradients:`
    (alone or as one term of an `and`), the rest after `if not X.sync_gradients: continue`, a
    name bound to the flag or to an `and` of it (`sync = X.sync_gradients; if sync:`), or the file's own
    count of micro-batches (`if (step + 1) % k == 0:`)."""
    if g.accum:
        return True
    test = " ".join(g.test.split())
    if g.branch == 0 and " or " not in test:
        return any(_SYNC.fullmatch(t) or _flag(facts, t.strip("() "), fn) for t in re.split(r"\s+and\s+", test))
    if g.branch == 1 and " and " not in test:
        return any(_NOT_SYNC.fullmatch(t) for t in re.split(r"\s+or\s+", test))
    return False


def _flag(facts, name: str, fn, depth: int = 3) -> bool:
    """Whether `name` is bound, by every binding `fn` sees, to a value that is true only when
    Accelerate's sync flag is: the flag itself, an `and` with it as one term (`sync =
    X.sync_gradients and step > 0`), or such a name again (three bindings deep)."""
    made = steps.scoped_assigns(facts, name, None, fn) if name.isidentifier() else []
    return bool(made) and all(any(_SYNC.fullmatch(t) or (depth > 0 and _flag(facts, t, fn, depth - 1))
                                  for t in a.implies) for a in made)


def _one_micro_batch(facts, receiver: str, fn) -> bool:
    """Whether every Accelerator `receiver` is bound to is built with `gradient_accumulation_steps=1`
    written in the file (a literal, or a constant), and nothing sets it later: each micro-batch
    syncs. (`accelerate launch --gradient_accumulation_steps` still overrides a 1 through the
    environment; a file that writes 1 is taken at its word.)"""
    made = steps.scoped_assigns(facts, receiver, ("accelerator",), fn)
    if not made or steps.assigns_to(facts, receiver + ".gradient_accumulation_steps"):
        return False
    return all(a.accum_steps is not None and a.accum_steps.number == 1
               and a.accum_steps.source in ("literal", "constant") for a in made)


def _at_the_last_pass(facts, loop, clip, backwards) -> bool:
    """Whether the clip runs only at the last pass of the micro-batch loop (`if micro == k - 1:`),
    after every backward of that loop: it then clips the whole sum, as a clip after the loop
    does (measured: the same norm, the same gradients)."""
    return not any(loop in b.loops and b.order > clip.order for b in backwards) and \
        any(loop in g.loops and steps.last_pass(facts, clip, g, last=True) for g in clip.guards)


def _cleared_each_pass(c, loop, clip, backwards) -> bool:
    """Whether the gradients are cleared at every pass of the micro-batch loop, before its first
    backward that precedes the clip: the clip then sees that pass's own gradient, no partial sum
    (DP-SGD's per-sample clipping adds the clipped gradients up itself; where nothing adds them,
    the clear is GL208's finding)."""
    first = min((b.order for b in backwards if loop in b.loops and b.order < clip.order), default=None)
    return first is not None and any(
        e.event.kind == "clear" and loop in e.loops and e.order < first and steps.compatible(e, clip)
        and not any(loop in g.loops for g in e.guards) for e in c.events)
