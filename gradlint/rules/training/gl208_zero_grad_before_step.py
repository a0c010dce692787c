"""GL208 zero-grad-before-step: `zero_grad()` between `backward()` and the step it feeds."""

from __future__ import annotations

from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.training import steps


class ZeroGradBeforeStep(steps.StepRule):
    """
    ## What it does
    Flags `optimizer.zero_grad()` (or `model.zero_grad()` of the model that optimizer trains)
    that runs after `backward()` and before the optimizer step, with no other `backward()` in
    between, in the same iteration of a training loop or in a step function; and a clear at the
    top of a micro-batch loop that the step comes after (`for micro in range(k):
    opt.zero_grad(); loss.backward()`, then `opt.step()`): from its second iteration it clears
    the micro-batches before, and the step applies the last one's gradients only; and a clear
    at every iteration of a loop whose step an accumulation guard holds back (`zero_grad()` at
    the top, `if (i + 1) % k == 0: optimizer.step()`), for the same reason; in a function a
    framework calls once per batch (an Ignite process function, a Lightning `training_step` under
    manual optimisation), a clear at every call with the step under `if (batch_idx + 1) % k == 0:`
    or `if engine.state.iteration % k == 0:`.

    Not flagged: clearing another optimizer (a GAN's generator optimizer cleared while the
    discriminator's steps), a clear followed by a fresh `backward()` before the step, clears
    after the step, and a clear that skips the batch (`if not finite: opt.zero_grad(); continue`,
    also nested in another `if` or in an `except` handler, or followed by `return`/`raise`).

    ## Why is this bad?
    `zero_grad()` sets every gradient of the optimizer's parameters to zero (or `None`): the
    step that follows applies nothing (SGD without momentum does not move; Adam keeps moving on
    its stale moments only), so the model silently stops learning. Measured in torch: with
    `loss.backward(); opt.zero_grad(); opt.step()` an SGD model's weights stay bit-identical
    over 10 steps.

    ## Example
    ```python
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.zero_grad()
        optimizer.step()
    ```

    ## Use instead
    ```python
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    ```
    """

    code = "GL208"
    probe_measure = "not_measurable"
    name = "zero-grad-before-step"
    severity = Severity.ERROR
    summary = "zero_grad() between backward() and the optimizer step: the step applies zero gradients"

    invalid = [
        Example("""\
import torch
import lightning.pytorch as pl


class Lit(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(self.net(batch).sum() / 4)
        if (batch_idx + 1) % 4 == 0:
            opt.step()
""", note="Lightning's manual optimisation calls `training_step` once per batch"),
        Example("""\
for x, y in loader:
    loss = criterion(D(x), y)
    loss.backward()
    opt_d.step()
    opt_g.zero_grad()
    opt_g.step()
""", note="another optimizer's step between the backward and the clear consumes nothing of this one's"),
        Example("""\
for step in range(num_steps):
    for micro_step in range(grad_accum_steps):
        optimizer.zero_grad(set_to_none=True)
        x, y = next(data_iter)
        loss = model(x, y) / grad_accum_steps
        loss.backward()
    optimizer.step()
""", note="cleared at every micro-batch, stepped after the loop (bytetriper/RAE#67)"),
        Example("""\
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
"""),
        Example("""\
import torch

optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    model.zero_grad()
    optimizer.step()
""", note="the model the optimizer trains"),
        Example("""\
def train_step(model, optimizer, scaler, x, y):
    scaler.scale(model(x, y)).backward()
    optimizer.zero_grad(set_to_none=True)
    scaler.step(optimizer)
    scaler.update()
""", note="a step function, through a scaler"),
        Example("""\
for i, (x, y) in enumerate(loader):
    optimizer.zero_grad()
    loss = criterion(model(x), y) / accum_steps
    loss.backward()
    if (i + 1) % accum_steps == 0:
        optimizer.step()
""", note="gradient accumulation that clears at every micro-batch: the step applies the last one's only"),
        Example("""\
it = iter(loader)
for step in range(num_steps):
    for i, (x, y) in enumerate(it):
        optimizer.zero_grad()
        loss = model(x, y) / k
        loss.backward()
        if i == k - 1:
            break
    optimizer.step()
""", note="a break that counts micro-batches is no retry"),
        Example("""\
for i, (x, y) in enumerate(loader):
    if optimizer is not None:
        optimizer.zero_grad()
    (criterion(model(x), y) / k).backward()
    if (i + 1) % k == 0:
        optimizer.step()
""", note="a guard that only tests that the optimizer exists holds at every iteration"),
        Example("""\
model = torch.nn.parallel.DistributedDataParallel(model)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    model.module.zero_grad()
    optimizer.step()
""", note="the wrapped model's `.module` holds the parameters the optimizer steps"),
        Example("""\
for step in range(num_steps):
    for micro in range(k):
        optimizer.zero_grad()
        (model(*next(data_iter)) / k).backward()
        if micro == k - 1:
            optimizer.step()
""", note="a step on the last pass of the micro-batch loop, a clear at each"),
        Example("""\
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    criterion(model(x), y).backward()
    for p in model.parameters():
        if p.grad is not None:
            p.grad.zero_()
    optimizer.step()
""", note="zeroing each parameter's gradient is a clear of the model, as `model.zero_grad()` is"),
        Example("""\
for step in range(num_steps):
    tokens = 0
    while tokens < tokens_per_step:
        x, y = next(data_iter)
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        tokens += x.numel()
    optimizer.step()
""", note="a token budget: the `while` tests a count the loop adds to, not what an attempt computed"),
        Example("""\
for step in range(num_steps):
    for micro in range(k):
        optimizer.zero_grad()
        loss = model(*next(data_iter)) / k
        loss.backward()
    norm = torch.norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    optimizer.step()
""", note="reading the gradients (a norm to log) does not make the clears meant"),
        Example("""\
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    for p in model.parameters():
        p.grad = None
    optimizer.step()
""", note="the performance guide's clear, `p.grad = None` over the model's parameters, is a clear of the model"),
        Example("""\
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for i, (x, y) in enumerate(loader):
    for p in model.parameters():
        p.grad = None
    (criterion(model(x), y) / 4).backward()
    if (i + 1) % 4 == 0:
        optimizer.step()
""", note="`p.grad = None` at every micro-batch of an accumulation (the clear sets .grad to nothing)"),
        Example("""\
for step in range(num_steps):
    for micro in range(k):
        try:
            optimizer.zero_grad()
            x, y = next(data_iter)
        except StopIteration:
            break
        loss = model(x, y) / k
        loss.backward()
    optimizer.step()
""", note="a clear inside `try:` runs at every iteration all the same (a break before any backward: "
          "the data ran out)"),
    ]
    valid = [
        Example("""\
import torch


def update(loader, model, optim, accumulate):
    micro = 0

    def optimizer_step():
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)

    for batch in loader:
        (model(batch).mean() / accumulate).backward()
        micro += 1
        if micro % accumulate == 0:
            optimizer_step()
    if micro % accumulate:
        optimizer_step()
""", note="a step helper (step, then clear) called by the accumulation guard and for the tail (torchrl's GRPO update)"),
        Example("""\
for step in range(num_steps):
    for micro in range(k):
        if micro == 0:
            optimizer.zero_grad()
        loss = model(*next(data_iter)) / k
        loss.backward()
    optimizer.step()
""", note="cleared only at the first micro-batch"),
        Example("""\
for step in range(num_steps):
    optimizer.zero_grad(set_to_none=True)
    for micro_step in range(grad_accum_steps):
        x, y = next(data_iter)
        loss = model(x, y) / grad_accum_steps
        loss.backward()
    optimizer.step()
""", note="cleared once before the micro-batch loop"),
        Example("""\
for epoch in range(epochs):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    scheduler.step()
""", note="a step inside the loop that clears"),
        Example("""\
for x, y in loader:
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
"""),
        Example("""\
for x, y in loader:
    d_loss = disc_loss(x)
    d_loss.backward()
    opt_g.zero_grad()
    opt_d.step()
    g_loss = gen_loss(x)
    g_loss.backward()
    opt_g.step()
""", note="another optimizer is cleared"),
        Example("""\
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
""", note="cleared after the step"),
        Example("""\
for i, (x, y) in enumerate(loader):
    loss = criterion(model(x), y)
    loss.backward()
    if (i + 1) % 4 == 0:
        optimizer.step()
        optimizer.zero_grad()
""", note="accumulation: cleared after the step"),
        Example("""\
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    if not torch.isfinite(loss):
        optimizer.zero_grad()
        continue
    optimizer.step()
    optimizer.zero_grad()
""", note="a skipped batch: the clear is followed by `continue`, not by the step"),
        Example("""\
for x, y in loader:
    criterion(model(x), y).backward()
    if grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if not torch.isfinite(norm):
            optimizer.zero_grad()
            continue
    optimizer.step()
    optimizer.zero_grad()
""", note="the skip nested in another `if` (funasr's trainer)"),
        Example("""\
for x, y in loader:
    try:
        criterion(model(x), y).backward()
    except RuntimeError as e:
        if "out of memory" in str(e):
            optimizer.zero_grad()
            continue
        raise
    optimizer.step()
    optimizer.zero_grad()
""", note="an out-of-memory handler that skips the batch (s3prl's runner)"),
        Example("""\
for x, y in loader:
    for attempt in range(3):
        optimizer.zero_grad()
        loss = model(x, y)
        loss.backward()
        if torch.isfinite(loss):
            break
    optimizer.step()
""", note="a retry loop that tests the loss"),
        Example("""\
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    for attempt in range(3):
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        if not has_nan_grads(model):
            break
    optimizer.step()
""", note="a retry loop that tests the gradients the backward left in the trained model"),
        Example("""\
for x, y in loader:
    while True:
        optimizer.zero_grad()
        try:
            model(x, y).backward()
            break
        except torch.cuda.OutOfMemoryError:
            x, y = x[: len(x) // 2], y[: len(y) // 2]
    optimizer.step()
""", note="a retry loop that halves the batch on an out-of-memory error"),
        Example("""\
for x, ys in loader:
    outs = model(x)
    task_grads = []
    for out, y, crit in zip(outs, ys, criterions):
        optimizer.zero_grad()
        crit(out, y).backward(retain_graph=True)
        task_grads.append([p.grad.clone() for p in params])
    for i, p in enumerate(params):
        p.grad = sum(g[i] for g in task_grads) / len(task_grads)
    optimizer.step()
""", note="per-task gradients kept and combined (PCGrad): the step applies what the code assembled"),
        Example("""\
for x, y in loader:
    for model, opt in zip(models, optimizers):
        opt.zero_grad()
        criterion(model(x), y).backward()
    for opt in optimizers:
        opt.step()
""", note="an ensemble: each iteration clears another optimizer"),
        Example("""\
for x, y in loader:
    for attempt in range(max_tries):
        optimizer.zero_grad()
        model(x, y).backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if torch.isfinite(norm):
            break
        x = x + 1e-3 * torch.randn_like(x)
    optimizer.step()
""", note="a retry loop: each attempt throws the last one away, and it ends at the first good one"),
        Example("""\
for x, y in loader:
    out = model(x)
    for c in range(num_classes):
        optimizer.zero_grad()
        out[:, c].sum().backward(retain_graph=True)
    optimizer.zero_grad()
    criterion(out, y).backward()
    optimizer.step()
""", note="cleared again after the loop, before the backward the step applies"),
        Example("""\
for i, (x, y) in enumerate(loader):
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    optimizer.step()
    if (i + 1) % k == 0:
        scheduler.step()
""", note="a scheduler stepped every k iterations"),
        Example("""\
for i, batch in enumerate(loader):
    with accelerator.accumulate(model):
        optimizer.zero_grad()
        accelerator.backward(model(batch))
        if (i + 1) % k == 0:
            optimizer.step()
""", note="inside Accelerate's accumulate(): its optimizer clears only when it syncs gradients"),
        Example("""\
for i, (real, _) in enumerate(loader):
    opt_g.zero_grad()
    opt_d.zero_grad()
    d_loss(real, gen(noise()).detach()).backward()
    opt_d.step()
    if i % n_critic == 0:
        g_loss(gen(noise())).backward()
        opt_g.step()
""", note="the generator's gradients come from its own backward under the guard"),
        Example("""\
for i, (x, y) in enumerate(loader):
    loss = criterion(model(x), y) / accum_steps
    loss.backward()
    if (i + 1) % accum_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
""", note="accumulation done right: cleared next to the step"),
        Example("""\
for i, (x, y) in enumerate(loader):
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    for a, p in zip(acc, params):
        a.add_(p.grad)
    if (i + 1) % k == 0:
        for a, p in zip(acc, params):
            p.grad = a / k
            a.zero_()
        optimizer.step()
""", note="a buffer of the micro-batches' gradients, written back to .grad before the step"),
        Example("""\
for i, (x, y) in enumerate(loader):
    opt_enc.zero_grad()
    opt_dec.zero_grad()
    criterion(model(x), y).backward()
    if i % 2 == 0:
        opt_enc.step()
    else:
        opt_dec.step()
""", note="alternating updates: nothing is accumulated"),
        Example("""\
for i, batch in enumerate(loader):
    loss = model(batch) / k
    loss.backward()
    if (i + 1) % k == 0:
        optimizer.step()
    else:
        continue
    optimizer.zero_grad()
""", note="the clear runs only when the step did (`else: continue`)"),
        Example("""\
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    for p in model.parameters():
        p.grad = None
    criterion(model(x), y).backward()
    optimizer.step()
""", note="`p.grad = None` over the parameters before the backward"),
        Example("""\
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    for p in model.parameters():
        p.grad = p.grad / accum_steps
    optimizer.step()
""", note="a gradient rescaled in place of itself is no clear"),
    ]

    def _in_an_inner_loop(self, ctx: RuleContext, facts, c, step, mine: set[str], clears: list) -> Iterator[Finding]:
        """A clear at the top of a loop the step comes after, with a backward after it in that
        loop and no step in it (RAE's micro-batch loop): from its second iteration the clear
        wipes the micro-batches before, and the step applies the last one's gradients only.
        `clears`: the context's clears of a named object, in order."""
        for f in clears:
            if f.order > step.order:
                break
            if f.target not in mine:
                continue
            inner = [loop for loop in f.loops if loop not in step.loops]
            if not inner or not steps.compatible(f, step):
                continue
            loop = inner[0]  # the outermost loop around the clear that the step is outside of
            if _held_back(f, lambda loops: loop in loops):
                continue  # `if micro == 0: opt.zero_grad()`: not at every iteration
            if any(e.event.kind == "step" and loop in e.loops for e in c.events):
                continue
            if any(e.event.kind == "clear" and e.target == f.target and loop not in e.loops
                   and f.order < e.order < step.order and steps.compatible(e, step) for e in c.events):
                continue  # cleared again after the loop: the loop's gradients never reach the step
            backwards = [e.event.span.line for e in c.events
                         if e.event.kind == "backward" and loop in e.loops and e.depth == 0]
            if f.depth == 0 and (_accumulating(facts, f) or step.depth == 0 and _meant(facts, f, step, backwards, mine)):
                continue
            if any(e.event.kind == "backward" and loop in e.loops and e.order > f.order and steps.compatible(e, f)
                   for e in c.events):
                yield ctx.finding(
                    f"{_cleared(f)} runs at every iteration of the loop that `backward()` runs in, "
                    f"and `{steps.step_text_near(step, f)}` only after that loop: it clears the gradients of the "
                    "micro-batches before, and the step applies the last one's only; clear before the loop",
                    f.event.span, data={"step_line": step.event.span.line})
                return

    def _in_an_accumulation(self, ctx: RuleContext, facts, c, step, mine: set[str]) -> Iterator[Finding]:
        """A clear at every iteration of the loop whose step an accumulation guard holds back
        (`optimizer.zero_grad()` at the top, `if (i + 1) % k == 0: optimizer.step()`), with a
        backward outside that guard: each iteration wipes the one before, and the step applies
        the last micro-batch's gradients only."""
        if c.loop is None and not c.driven or step.event.via == "sam":
            return  # (a framework's step function is the body of the loop it runs: `engine.state.iteration % k`)
        guards = [g for g in step.guards if (g.accum or steps.last_pass(facts, step, g)) and steps.within(c, g.loops)]
        if not guards:
            return
        held = {g.key for g in guards}
        if any(e.event.kind == "backward" and held & {g.key for g in e.guards} for e in c.events):
            # a backward of its own under the guard (a GAN's generator, stepped every n_critic
            # iterations): what the step applies is made there, after the clear
            return
        if any(e.event.kind == "step" and any(g.key in held and g.branch != guards[0].branch for g in e.guards)
               for e in c.events):
            return  # `if i % 2 == 0: opt_a.step() else: opt_b.step()`: alternating updates, no accumulation
        for f in c.events:
            if f.event.kind != "clear" or not f.target or f.target not in mine or not steps.directly(c, f.loops) \
                    or _held_back(f, lambda loops: steps.within(c, loops)):
                continue
            backwards = [e.event.span.line for e in c.events if e.event.kind == "backward" and e.depth == 0]
            if f.depth == 0 and (_accumulating(facts, f) or step.depth == 0 and _assembled_or_skipped(
                    facts, f, step, backwards)):
                continue
            if not any(e.event.kind == "backward" and steps.directly(c, e.loops)
                       and not held & {g.key for g in e.guards} and steps.compatible(e, f) for e in c.events):
                continue
            when = steps.guard_condition(guards[0])[0]
            yield ctx.finding(
                f"{_cleared(f)} runs at every iteration, but `{steps.step_text_near(step, f)}` "
                f"only when {when}: each iteration clears the gradients the ones before accumulated, and the "
                "step applies the last micro-batch's only; clear next to the step",
                f.event.span, data={"step_line": step.event.span.line})
            return

    def _check(self, ctx: RuleContext, facts) -> Iterator[Finding]:
        for c in steps.contexts(facts, ctx.index):
            trained = set(steps.trained_models(facts, c))
            # a DistributedDataParallel / DataParallel wrapper's `.module` holds the same parameters
            trained |= {t + ".module" for t in trained} | {t[:-len(".module")] for t in trained if t.endswith(".module")}
            clears = [f for f in c.events if f.event.kind == "clear" and f.target]
            for step in c.of("step"):
                if step.event.via == "sam":
                    continue
                mine = {step.target} | trained
                yield from self._in_an_inner_loop(ctx, facts, c, step, mine, clears)
                yield from self._in_an_accumulation(ctx, facts, c, step, mine)
                # walk back from the step: a clear of this optimizer before any backward is the
                # bug (the marks before it that can run with it, nearest first)
                marks = (m for m in c.before(step)
                         if m.event.kind in ("backward", "clear", "step") and steps.compatible(m, step))
                for f in marks:
                    if f.event.kind in ("backward", "step"):
                        break
                    if f.event.kind == "clear" and f.target and f.target in mine:
                        # (the nearest backward, or step of this optimizer, before the clear)
                        before = next((m for m in marks if m.event.kind == "backward"
                                       or m.event.kind == "step" and m.target in mine), None)
                        if before is None or before.event.kind != "backward":
                            # nothing was backpropagated before the clear in this iteration, or a
                            # step applied it first (`step(); zero_grad()` in a helper called by an
                            # accumulation guard and again for the tail of the micro-batches)
                            break
                        if _leaves_after(facts, f, step):
                            break  # `if not finite: opt.zero_grad(); continue` nested deeper, an except's skip
                        if f.event.func == step.event.func and _sets_grad(
                                facts, f.event.span.line, step.event.span.line, [f.event.span.line]):
                            # the code sets `.grad` to what it assembled after the clear (PCGrad's
                            # merged task gradients, GradVac, MGDA): the step applies that
                            break
                        yield ctx.finding(
                            f"{_cleared(f)} runs after `backward()` and before "
                            f"`{steps.step_text_near(step, f)}`: the step applies zero gradients",
                            f.event.span, data={"step_line": step.event.span.line})
                        break


def _meant(facts, f, step, backwards: list[int], mine: set[str]) -> bool:
    """Whether the loop around a clear (the outermost one the step is outside of, as written in
    one function) clears on purpose: it draws the cleared optimizer as its target (`for model,
    opt in zip(models, optimizers)`: a different one each time), it is a retry loop (_retry),
    or the code sets `.grad` after a backward and before the step (PCGrad's per-task
    gradients, DP-SGD's per-sample clipping: the step applies what the code assembled). The
    loop's backwards are on lines `backwards`; `mine`: the optimizer and the models it trains."""
    line, step_line = f.event.span.line, step.event.span.line
    around = [st for st in facts.stmts if st.kind in ("for", "while") and st.line <= line <= st.end_line
              and not st.line <= step_line <= st.end_line]
    if not around:
        return False
    loop = min(around, key=lambda st: (st.line, -st.end_line))
    if f.event.target in loop.assigned:
        return True
    return _retry(facts, loop, backwards, mine) or _sets_grad(facts, loop.line, step_line, backwards)


def _sets_grad(facts, start: int, end: int, backwards: list[int]) -> bool:
    """Whether a statement after a backward (from line `start`, before line `end`) sets `.grad`
    to a value (`p.grad = acc / k`), not to None (a clear: the clear's own loop, a teacher's)."""
    first = min((b for b in backwards if b >= start), default=None)
    if first is None:
        return False
    for st in facts.stmts:
        if not (first < st.line < end and st.kind == "simple"):
            continue
        written = {n for n in st.used if _grad_attribute(n) and n.split(".")[0] in st.assigned}
        if not written:
            continue
        # what the value reads besides the gradients written and their owners (`None`: a clear)
        rest = set(st.used) - written - {n.split(".")[0] for n in written} - {"None"}
        if rest:
            return True
    return False


def _retry(facts, loop, backwards: list[int], mine: set[str]) -> bool:
    """Whether a loop is a retry loop, which throws an attempt's gradients away on purpose: it
    breaks once a backward has run (a `break` right after it, `try: ...; loss.backward(); break`,
    or under an `if` that tests what the loop computes, `if torch.isfinite(loss): break`, or the
    gradients the backward left: `.grad`, or a trained model of `mine`, `if not has_nan(model):`), or it
    is a `while` whose test reads such a value (`while not ok:`). Not a count of micro-batches
    (`if i == k - 1: break`, `n += 1`), nor a data iterator running out (a break before any
    backward)."""
    inside = [st for st in facts.stmts if loop.line < st.line <= loop.end_line]
    # names the loop's body computes: not its own targets, not what only updates from its own
    # value change (counters and budgets: `n += 1`, `tokens = tokens + x.numel()`: Stmt.updates)
    computed = {n for st in inside if set(st.used) - set(st.assigned) for n in st.assigned}
    computed -= {n for n in computed if all(s2.updates for s2 in inside if n in s2.assigned)}
    computed -= set(loop.assigned)
    first = min((b for b in backwards if loop.line <= b <= loop.end_line), default=None)
    if first is None:
        return False
    if loop.kind == "while" and computed & set(loop.used):
        return True
    index = {id(st): i for i, st in enumerate(facts.stmts)}
    here = index[id(loop)]
    for st in inside:
        if st.kind != "break" or st.line < first or _nearest_loop(facts, st) != here:
            continue
        parent = facts.stmts[st.parent] if st.parent != -1 else None
        if parent is None or parent.kind != "if" or computed & set(parent.used) \
                or any(_grad_attribute(n) or any(n == m or n.startswith(m + ".") for m in mine if m) for n in parent.used):
            return True
    return False


def _leaves_after(facts, f, step) -> bool:
    """Whether the statements of the clear's own block leave after it, before the step: a
    `continue` or `break` of a loop the step is in, or a `return`/`raise` (funasr's `if not
    isfinite(grad_norm): optim.zero_grad(); continue` inside `if grad_clip > 0:`, s3prl's
    `except RuntimeError:` out-of-memory handler): on that path the step does not run in this
    iteration. (A skip at the top of the loop's body splits the paths already: loops.py.)"""
    if f.event.func != step.event.func:
        return False  # (a helper's return leaves the helper only)
    line = f.event.span.line
    at = next((st for st in facts.stmts if st.kind == "simple" and st.line <= line <= st.end_line), None)
    if at is None:
        return False
    jump = next((st for st in facts.stmts if st.block == at.block and st.index > at.index
                 and st.kind in ("continue", "break", "return")), None)
    if jump is None:
        return False
    if jump.kind == "return":
        return True
    loop = _nearest_loop(facts, jump)
    return loop != -1 and facts.stmts[loop].line <= step.event.span.line <= facts.stmts[loop].end_line


def _nearest_loop(facts, st) -> int:
    """The index of the innermost for/while statement around a statement (-1: none)."""
    at = st.parent
    while at != -1:
        if facts.stmts[at].kind in ("for", "while"):
            return at
        at = facts.stmts[at].parent
    return -1


def _grad_attribute(name: str) -> bool:
    """`p.grad`, `p.grad.clone` as a statement reads them (not `torch.autograd.grad`)."""
    parts = name.split(".")
    return "grad" in parts[1:] and parts[0] != "torch" and "autograd" not in parts


def _accumulating(facts, f) -> bool:
    """Whether a clear runs inside `with accelerator.accumulate(model):` (any `with x.accumulate(...)`):
    Accelerate's prepared optimizer clears only on the iterations it syncs gradients, so a
    clear at every micro-batch there is how its accumulation is written. (Even an Accelerator()
    without gradient_accumulation_steps may accumulate: `accelerate launch` sets it through the
    environment, and a setter can change it later.)"""
    line = f.event.span.line
    return any(st.kind == "with" and st.line <= line <= st.end_line and any(n.endswith(".accumulate") for n in st.used)
               for st in facts.stmts)


def _assembled_or_skipped(facts, f, step, backwards: list[int]) -> bool:
    """For a clear in the loop whose step a guard holds back: whether the loop sets `.grad` after
    a backward (a buffer of the micro-batches' gradients written back before the step), or the
    clear comes after the `if` of the step and that `if` sends the other way on with `continue`
    (`else: continue`: the clear runs only when the step did)."""
    line, step_line = f.event.span.line, step.event.span.line
    loops = [st for st in facts.stmts if st.kind in ("for", "while") and st.line <= min(line, step_line)
             and max(line, step_line) <= st.end_line]
    if not loops:
        # a function a framework calls per batch (the loop is the framework's): its body is the
        # loop's, from its first line
        fn = facts.functions[step.event.func] if 0 <= step.event.func < len(facts.functions) else None
        return fn is not None and f.event.func == step.event.func and \
            _sets_grad(facts, fn.span.line, step_line, backwards)
    loop = max(loops, key=lambda st: st.line)  # the innermost around both
    if _sets_grad(facts, loop.line, step_line, backwards):
        return True
    inside = [st for st in facts.stmts if loop.line < st.line <= loop.end_line]
    ifs = [st for st in inside if st.kind == "if" and st.line <= step_line <= st.end_line]
    if not ifs or line <= max(ifs, key=lambda st: st.line).end_line:
        return False
    guard = max(ifs, key=lambda st: st.line)
    stepping = [st for st in inside if st.line == step_line]
    here = {id(st): i for i, st in enumerate(facts.stmts)}[id(loop)]
    # a continue of this loop, in another branch of the if than the step's statement
    return any(st.kind == "continue" and guard.line < st.line <= guard.end_line and _nearest_loop(facts, st) == here
               and all(st.block != s2.block for s2 in stepping) for st in inside)


def _cleared(f) -> str:
    """The clear as the code writes it, for a message."""
    e = f.event
    if e.via == "grad-none":
        return f"`for {e.name} in {e.target}.parameters(): {e.name}.grad = None`" if e.name else f"`{e.target}.grad = None`"
    if e.via == "grad-zero":
        grad = e.target if e.target.endswith((".grad", ".grad.data")) else f"{e.target}.grad"
        return f"zeroing each `{e.name}.grad` of `{e.target}.parameters()`" if e.name else f"zeroing `{grad}`"
    return f"`{e.target}.zero_grad()`"


def _held_back(f, inside) -> bool:
    """Whether a guard inside the loop (`inside(guard.loops)`) keeps event `f` from some of its
    passes: not a `try:` body (_try_body), not a test that the cleared object exists (_present)."""
    return any(inside(g.loops) for g in f.guards if not _try_body(g) and not _present(g, f))


def _try_body(g) -> bool:
    """A guard that is a `try:` body (branch 0), which runs at every iteration as plain code does;
    its handlers (`except OutOfMemoryError: opt.zero_grad()`) run only on an error."""
    return g.test == "try" and g.branch == 0


def _present(g, f) -> bool:
    """A guard that only tests that the cleared object exists (`if optimizer is not None:`,
    `if optimizer:`): the same at every iteration once it holds, so the clear runs at each."""
    target = f.event.target
    test = " ".join(g.test.split())
    return g.branch == 0 and bool(target) and test in (target, f"{target} is not None", f"not {target} is None")

