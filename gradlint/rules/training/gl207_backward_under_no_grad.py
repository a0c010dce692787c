"""GL207 backward-under-no-grad: a loss computed entirely under torch.no_grad()/inference_mode."""

from __future__ import annotations

from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.registry import Example, Rule, RuleContext
from gradlint.facts.training import Assign, Stmt, iter_events

_MAX_CHAIN = 64


class BackwardUnderNoGrad(Rule):
    """
    ## What it does
    Flags `backward()` on a loss whose every model output was produced under `torch.no_grad()`
    or `torch.inference_mode()` (a `with` block, or a function decorated with them): the loss
    expression itself, or the assignments it comes from in the same function, lists filled with
    `append`/`extend` included (a REINFORCE rollout collecting log-probabilities under no-grad,
    then `torch.stack(log_probs)`). A `torch.enable_grad()` nested inside turns grad mode back on.

    ## Why is this bad?
    Nothing computed under no-grad is recorded for autograd, so the loss has no `grad_fn` and
    `backward()` raises "element 0 of tensors does not require grad and does not have a
    grad_fn" — or, when a stray `requires_grad_()` papers over that, trains nothing. (Calling
    `backward()` *inside* a no-grad block on a loss built outside it works: measured with torch
    2.13, gradients arrive. Only where the loss was built matters.)

    ## Example
    ```python
    with torch.no_grad():
        out = model(x)
    loss = criterion(out, y)
    loss.backward()
    ```

    ## Use instead
    ```python
    out = model(x)
    loss = criterion(out, y)
    loss.backward()
    ```
    Distillation (a teacher under no-grad, a student with grad) is fine.

    ## References
    - `torch.no_grad`, `torch.inference_mode`:
      https://pytorch.org/docs/stable/notes/autograd.html#locally-disabling-gradient-computation
    - Measured (torch 2.13, CPU): a loss from outputs computed under `no_grad` raises "element 0
      of tensors does not require grad and does not have a grad_fn"; `loss.backward()` inside
      `no_grad` on a loss built outside fills `.grad` normally.
    """

    code = "GL207"
    probe_measure = "not_measurable"
    name = "backward-under-no-grad"
    severity = Severity.ERROR
    summary = "backward() on a loss computed under torch.no_grad() or inference_mode()"

    invalid = [
        Example("""\
import torch

for episode in episodes:
    log_probs = []
    with torch.no_grad():
        for obs in episode:
            log_probs.append(policy(obs).log_softmax(-1)[0])
    loss = -torch.stack(log_probs).sum()
    loss.backward()
"""),
        Example("""\
import torch

with torch.no_grad():
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
"""),
        Example("""\
import torch

for x, y in loader:
    with torch.inference_mode():
        out = model(x)
    loss = criterion(out, y)
    loss.backward()
"""),
        Example("""\
import torch


@torch.no_grad()
def update(model, optimizer, x):
    optimizer.zero_grad()
    model(x).mean().backward()
    optimizer.step()
"""),
    ]
    valid = [
        Example("""\
import torch

for x, y in loader:
    with torch.no_grad():
        soft = teacher(x)
    out = student(x)
    loss = kd_loss(out, soft)
    loss.backward()
""", note="distillation: the student runs with grad"),
        Example("""\
import torch

with torch.no_grad():
    with torch.enable_grad():
        loss = criterion(model(x), y)
        loss.backward()
""", note="enable_grad nested inside"),
        Example("""\
import torch

loss = criterion(model(x), y)
with torch.no_grad():
    loss.backward()
""", note="built with grad; backward itself works under no_grad"),
        Example("""\
import torch

with torch.no_grad():
    feats = backbone(x)
logits = classifier(feats)
loss = torch.nn.functional.cross_entropy(logits, y)
loss.backward()
""", note="linear probe: the head trains"),
        Example("""\
import torch

W = torch.zeros(256, 10, requires_grad=True)
for x, y in loader:
    with torch.no_grad():
        feats = backbone(x)
    loss = torch.nn.functional.cross_entropy(feats @ W, y)
    loss.backward()
""", note="linear probe on a raw tensor made to require grad: W trains"),
        Example("""\
import torch

if training:
    loss = criterion(model(x), y)
else:
    with torch.no_grad():
        loss = criterion(model(x), y)
loss.backward()
""", note="one branch builds the loss with grad"),
        Example("""\
import torch


def step(out, x):
    with torch.no_grad():
        target = teacher(x)
    loss = criterion(out, target)
    loss.backward()
""", note="part of the loss comes from outside"),
    ]

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        facts = ctx.facts.training
        if facts is None:
            return
        by_func: dict[int, list[Assign]] = {}
        for a in facts.assigns:
            by_func.setdefault(a.func, []).append(a)
        at_line: dict[int, list[Stmt]] = {}
        for st in facts.stmts:
            at_line.setdefault(st.line, []).append(st)
        for fn in facts.functions:
            for ev in iter_events(fn.body):
                if ev.kind != "backward" or not ev.target:
                    continue
                verdict = _under_no_grad(ev, by_func.get(fn.id, []), set(fn.params), facts.stmts, at_line)
                if verdict is None:
                    continue
                yield ctx.finding(
                    f"`{ev.target}` is computed only from outputs produced under torch.no_grad()/inference_mode() "
                    f"(line {verdict}): it has no grad_fn, and backward() raises or trains nothing",
                    ev.span, data={"no_grad_line": verdict})


def _dominating(name: str, before: int, made: list[Assign], stmts, at_line: dict[int, list[Stmt]]) -> list[Assign]:
    """The binding of `name` that every run reaching the statement at line `before` passes last:
    a plain statement earlier in the same block (the same loop or with body), with no binding of
    the name on the lines between. Earlier bindings elsewhere (a training loop that reuses `out`
    before a validation loop) do not reach past it. `made` itself when there is none."""
    readers = at_line.get(before, [])
    if len(readers) != 1:
        return made
    reader = readers[0]
    same = [st for st in stmts if st.block == reader.block and st.index < reader.index and name in st.assigned]
    if not same:
        return made
    last = max(same, key=lambda st: st.index)
    if not last.simple or any(last.line < a.line for a in made):
        return made
    picked = [a for a in made if a.line == last.line]
    return picked or made


def _under_no_grad(ev, assigns: list[Assign], params: set[str], stmts=(),
                   at_line: dict[int, list[Stmt]] | None = None) -> int | None:
    """The line of a no-grad model call the loss comes from, when every model call it comes
    from ran under no-grad and nothing else in it may carry a gradient; else None."""
    no_grad_lines: list[int] = []
    if ev.module_call:
        if not ev.nograd:
            return None
        no_grad_lines.append(ev.span.line)
    seen: set[str] = set()
    todo = [(n, ev.span.line, ev.nograd) for n in ev.uses]
    steps = 0
    while todo:
        name, before, nograd_reader = todo.pop()
        steps += 1
        if steps > _MAX_CHAIN:
            return None
        if name in seen:
            continue
        seen.add(name)
        made = [a for a in assigns if a.target == name and a.line < before]
        if at_line is not None and len(made) > 1:
            made = _dominating(name, before, made, stmts, at_line)
        if not made:
            # a parameter read with grad on may carry a gradient into the loss
            if name in params and name not in ("self", "cls") and not nograd_reader:
                return None
            continue
        # every earlier binding counts (branches, loops): one made with grad is enough to stay quiet
        for a in made:
            if any(kind == "leaf" for _, kind in a.calls):
                return None  # a tensor made to require grad (a linear probe's raw weights) trains
            if any(kind == "module" for _, kind in a.calls):
                if not a.nograd:
                    return None
                no_grad_lines.append(a.line)
            if not a.nograd:
                todo.extend((n, a.line, a.nograd) for n in a.uses)
            else:
                # a binding under no-grad is followed too (`out = model(x)` then `loss = crit(out, y)`,
                # both in the with-block): an output made with grad upstream stays quiet. The
                # callables it calls (the model itself, built with grad on) are not outputs.
                called = {c for c, _ in a.calls}
                todo.extend((n, a.line, True) for n in a.uses if n not in called)
    # the binding nearest the backward: in the second of two loops that reuse a name, its own line
    return max(no_grad_lines) if no_grad_lines else None
