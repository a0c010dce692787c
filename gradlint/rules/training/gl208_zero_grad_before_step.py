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
    the micro-batches before, and the step applies the last one's gradients only.

    Not flagged: clearing another optimizer (a GAN's generator optimizer cleared while the
    discriminator's steps), a clear followed by a fresh `backward()` before the step, clears
    after the step, and a clear that skips the batch (`if not finite: opt.zero_grad(); continue`).

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
    ]
    valid = [
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
    ]

    def _in_an_inner_loop(self, ctx: RuleContext, c, step, mine: set[str]) -> Iterator[Finding]:
        """A clear at the top of a loop the step comes after, with a backward after it in that
        loop and no step in it (RAE's micro-batch loop): from its second iteration the clear
        wipes the micro-batches before, and the step applies the last one's gradients only."""
        for f in c.events:
            if f.event.kind != "clear" or not f.target or f.target not in mine or f.order > step.order \
                    or not steps.compatible(f, step):
                continue
            inner = [loop for loop in f.loops if loop not in step.loops]
            if not inner:
                continue
            loop = inner[0]  # the outermost loop around the clear that the step is outside of
            if any(loop in g.loops for g in f.guards):
                continue  # `if micro == 0: opt.zero_grad()`: not at every iteration
            if any(e.event.kind == "step" and loop in e.loops for e in c.events):
                continue
            if any(e.event.kind == "backward" and loop in e.loops and e.order > f.order and steps.compatible(e, f)
                   for e in c.events):
                yield ctx.finding(
                    f"`{f.event.target}.zero_grad()` runs at every iteration of the loop that `backward()` runs in, "
                    f"and `{steps.step_text_near(step, f)}` only after that loop: it clears the gradients of the "
                    "micro-batches before, and the step applies the last one's only; clear before the loop",
                    f.event.span, data={"step_line": step.event.span.line})
                return

    def _check(self, ctx: RuleContext, facts) -> Iterator[Finding]:
        for c in steps.contexts(facts, ctx.index):
            trained = set(steps.trained_models(facts, c))
            for step in c.of("step"):
                if step.event.via == "sam":
                    continue
                mine = {step.target} | trained
                marks = [f for f in c.events if f.event.kind in ("backward", "clear", "step")
                         and steps.compatible(f, step) and f.order < step.order]
                yield from self._in_an_inner_loop(ctx, c, step, mine)
                # walk back from the step: a clear of this optimizer before any backward is the bug
                for f in reversed(marks):
                    if f.event.kind in ("backward", "step"):
                        break
                    if f.event.kind == "clear" and f.target and f.target in mine:
                        if not any(m.event.kind == "backward" and m.order < f.order for m in marks):
                            break  # nothing was backpropagated before the clear in this iteration
                        yield ctx.finding(
                            f"`{f.event.target}.zero_grad()` runs after `backward()` and before "
                            f"`{steps.step_text_near(step, f)}`: the step applies zero gradients",
                            f.event.span, data={"step_line": step.event.span.line})
                        break
