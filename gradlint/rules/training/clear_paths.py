"""Where a loop's clears of the gradients run beside its steps, for GL205: held to one pass of the
loop, every k passes while the step runs at every one, or on another branch of an `if` than the
step. Each answers (step, the guard that keeps the clear from it, a clear), or None."""

from __future__ import annotations

import re
from typing import Iterator

from gradlint.rules.training import steps


# `i == 0`, `(batch_idx) == 0`, `engine.state.iteration == 1`, `0 == step`, `not i`: a test true on
# one pass of a loop when its name counts the passes.
_ONE_PASS = re.compile(r"\(?(?P<a>[\w.]+)\)?\s*==\s*[01]|[01]\s*==\s*\(?(?P<b>[\w.]+)\)?|not\s+(?P<c>[\w.]+)")


def _counters(facts, c, clear) -> set[str]:
    """The names that count the iterations around `clear`: the counter of the `for` loop around
    it (`for i, batch in enumerate(loader)`); in a framework's step function the batch index
    Lightning gives `training_step(self, batch, batch_idx)` and the module's global step, or the
    iteration of the engine Ignite gives its process function (`engine.state.iteration`)."""
    if c.loop is not None:
        loop = steps.innermost_for(facts, clear.event.span.line)
        if loop is not None and loop.assigned and (len(loop.assigned) == 1 or "enumerate" in loop.used):
            return {loop.assigned[0]}
        return set()
    params = [p for p in c.function.params if p != "self"]
    if c.driven == "lightning-manual":
        return {"self.global_step", "self.trainer.global_step"} | ({params[1]} if len(params) > 1 else set())
    if c.driven == "ignite" and len(params) == 2:
        return {f"{params[0]}.state.iteration"}
    return set()


def cleared_on_the_first_pass(facts, c, clears):
    """A step under no `if` of the iteration whose every clear is held to one pass by the loop's
    counter (`if batch_idx == 0: opt.zero_grad()`, `if i == 0:`, `if engine.state.iteration ==
    1:`): the gradients are cleared once, and every later step applies the sum of every batch
    since. (step, the guard, a clear), else None. Only clears written in the function (an
    inlined helper's guard is its own) and a step of it."""
    if any(cl.depth for cl in clears):
        return None
    guard = None
    for cl in clears:
        held = [g for g in cl.guards if g.branch == 0 and not g.skip and steps.within(c, g.loops)]
        one = next((g for g in held if (m := _ONE_PASS.fullmatch(g.test.strip())) is not None
                    and (m["a"] or m["b"] or m["c"]) in _counters(facts, c, cl)), None)
        if one is None:
            return None
        guard = guard or one
    for step in c.of("step"):
        if step.depth or step.event.via == "sam":
            continue
        if any(steps.within(c, g.loops) and not (g.test == "try" and g.branch == 0) for g in step.guards):
            continue  # a step under a test of its own (accumulation, alternating updates)
        if any(g.key == guard.key for g in step.guards):
            continue
        clear = next(cl for cl in clears if any(g.key == guard.key for g in cl.guards))
        return step, guard, clear
    return None


def cleared_every_k(facts, c, clears, rebuilt):
    """A step under no `if` of the iteration while every clear is under one accumulation test
    (`if (i + 1) % k == 0: opt.zero_grad()`, `if engine.state.iteration % k == 0:`) the step is
    not under: accumulation written wrong, the optimizer steps every batch and each step applies
    the gradients summed since the last clear (measured, torch 2.13 and Ignite 0.5.5, k = 4, lr 0:
    the stepped gradient's norm went 2.53, 3.19, 4.82, 4.89, then 0.73 after the clear, 3.67...).
    (step, the test's guard, a clear), else None. Only clears and steps written in the function
    (an inlined helper's tests are its own). `rebuilt(step)`: its optimizer is built anew each
    iteration (it starts from no gradient)."""
    if any(cl.depth for cl in clears):
        return None
    guards = set()
    for cl in clears:
        held = [g for g in cl.guards if steps.within(c, g.loops) and not (g.test == "try" and g.branch == 0)]
        if len(held) != 1 or held[0].branch != 0 or held[0].skip or not (held[0].accum or "%" in held[0].test):
            return None
        guards.add(held[0])
    if len(guards) != 1:
        return None
    guard = guards.pop()
    backward = c.of("backward")
    for step in c.of("step"):
        if step.depth or step.event.via == "sam" or any(
                steps.within(c, g.loops) and not (g.test == "try" and g.branch == 0) for g in step.guards):
            continue
        if not any(b.order < step.order and steps.compatible(b, step) for b in backward):
            continue
        if rebuilt(step):
            continue
        return step, guard, clears[0]
    return None


def branch_without_clear(facts, c, clears, source: str | None, rebuilt):
    """A step that backward() can precede in an iteration while every clear of the loop is on
    another branch of an `if` around it (DINO cleared in its `if args.amp:` branch only, and its
    fp32 branch stepped every batch's gradients summed): (step, the `if`'s guard, a clear), else
    None. Not when a clear may run with the step (under no `if`, or under an `if` the step is not
    on another branch of), nor under an accumulation test (`if i % k == 0: clear ... elif (i + 1)
    % k == 0: step` clears at the start of each window), nor when the step's branch leaves the
    loop (`break`, `return`: one step) or touches `.grad` in a way the front-end may not read as a
    clear (`p.grad.mul_(0)`, `model.apply(...)`). Only for a loop written in this function (no
    inlined step or clear: their branches are another function's). `rebuilt` as for cleared_every_k."""
    if source is None:
        return None
    lines = source.splitlines()
    backward = c.of("backward")
    for step in c.of("step"):
        if step.event.via == "sam" or step.depth or any(steps.compatible(cl, step) for cl in clears):
            continue
        if not any(steps.compatible(b, step) for b in backward):
            continue
        if rebuilt(step):
            continue
        mine = {g.key: g for g in step.guards}
        for clear in clears:
            if clear.depth:
                return None
            for g in clear.guards:
                other = mine.get(g.key)
                if other is None or other.branch == g.branch:
                    continue
                if g.accum or other.accum or "%" in g.test:
                    return None
                text = _branch_text(c.function.body, g.key[1], other.branch, facts, lines)
                if text is None or _LEAVES_OR_TOUCHES.search(text):
                    return None
                return step, other, clear
    return None


# A branch that leaves the loop after its step, or touches gradients otherwise than the front-end reads.
_LEAVES_OR_TOUCHES = re.compile(r"^\s*(break|return)\b|\.grad\b|\.apply\(|zero_grad", re.M)


def _branch_text(body, if_id: int, branch: int, facts, lines: list[str]) -> str | None:
    """The source of branch `branch` of the `if` block `if_id` in a function's body: its
    statements' lines; None when the block is not found."""
    found = _find_block(body, if_id)
    if found is None or branch >= len(found.items) or not hasattr(found.items[branch], "id"):
        return None
    ids = set(_block_ids(found.items[branch]))
    spans = [(st.line, st.end_line) for st in facts.stmts if st.block in ids]
    if not spans:
        return ""
    first, last = min(a for a, _ in spans), max(b for _, b in spans)
    return "\n".join(lines[first - 1:last])


def _find_block(block, wanted: int):
    stack = [block]
    while stack:
        b = stack.pop()
        if getattr(b, "id", None) == wanted and getattr(b, "kind", "") == "if":
            return b
        stack.extend(item for item in getattr(b, "items", ()) if hasattr(item, "items") and hasattr(item, "kind"))
    return None


def _block_ids(block) -> Iterator[int]:
    stack = [block]
    while stack:
        b = stack.pop()
        yield b.id
        stack.extend(item for item in b.items if hasattr(item, "items") and hasattr(item, "kind"))
