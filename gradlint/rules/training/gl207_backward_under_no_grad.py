"""GL207 backward-under-no-grad: a loss computed entirely under torch.no_grad()/inference_mode."""

from __future__ import annotations

import re
from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.registry import Example, Rule, RuleContext
from gradlint.facts.training import Assign, Function, Stmt, TrainingFacts, Value, iter_events

_MAX_CHAIN = 64
# What a call passes that is data, not an output: a name, an attribute or an item, moved or cast.
_DATA = re.compile(r"[\w.]+(\[[^()\[\]]*\])*(\.(to|cuda|cpu|long|int|float|squeeze|unsqueeze|view|reshape|flatten)"
                   r"\([^()]*\))*")


class BackwardUnderNoGrad(Rule):
    """
    ## What it does
    Flags `backward()` on a loss whose every model output was produced under `torch.no_grad()`
    or `torch.inference_mode()` (a `with` block, or a function decorated with them): the loss
    expression itself, or the assignments it comes from in the same function, lists filled with
    `append`/`extend` included (a REINFORCE rollout collecting log-probabilities under no-grad,
    then `torch.stack(log_probs)`), and through the returns of the file's functions it calls
    (`log_probs, rewards = rollout(env, policy)` with the no-grad block inside `rollout`, a
    method `self.act(obs)`, a helper that calls another, and `forward` of a model of the file's
    class called by name, or passed for a parameter by every call of the function in the file:
    a MoCo whose forward runs both encoders under no-grad). A `torch.enable_grad()` nested inside
    turns grad mode back on.

    A helper counts only when every `return` of it is made under no-grad or from no model at all
    (`discount(rewards)`): one that returns a model output made with grad on, or a value computed
    from a parameter it was passed, keeps the rule quiet; so does a helper of another file or of
    unknown name. A parameter may carry a gradient into the loss too, and keeps it quiet, except
    one read only as the labels of `F.cross_entropy` or `F.nll_loss` (`F.cross_entropy(
    self.predict(x), y)` in `def train_step(self, x, y)`): class indices carry none, unless a call
    of the function in the file passes something computed for it (a model's soft targets).

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
        Example("""\
import torch


def rollout(policy, obs):
    with torch.no_grad():
        logp = policy(obs).log_softmax(-1)[:, 0]
    return logp


for obs in batches:
    logp = rollout(policy, obs)
    loss = -logp.sum()
    loss.backward()
""", note="the no-grad block is in a helper of the file"),
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
        flow = _Flow(facts)
        for fn in facts.functions:
            for ev in iter_events(fn.body):
                if ev.kind != "backward" or not ev.target:
                    continue
                verdict = flow.loss(ev, fn)
                if verdict is None:
                    continue
                line, helper = verdict
                where = f"line {line}" + (f", in `{helper}()`" if helper else "")
                yield ctx.finding(
                    f"`{ev.target}` is computed only from outputs produced under torch.no_grad()/inference_mode() "
                    f"({where}): it has no grad_fn, and backward() raises or trains nothing",
                    ev.span, data={"no_grad_line": line})


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


# A helper that returns no-grad outputs may call another: this many levels are followed.
_MAX_HELPERS = 4


class _Flow:
    """Where a loss comes from, through the assignments of its function and the returns of the
    file's functions it calls (`logp = rollout(policy, obs)`, with the no-grad block in rollout)."""

    def __init__(self, facts: TrainingFacts) -> None:
        self.facts = facts
        self.by_func: dict[int, list[Assign]] = {}
        for a in facts.assigns:
            self.by_func.setdefault(a.func, []).append(a)
        self.returns: dict[int, list[Assign]] = {}
        for r in facts.returns:
            self.returns.setdefault(r.func, []).append(r)
        self.at_line: dict[int, list[Stmt]] = {}
        for st in facts.stmts:
            self.at_line.setdefault(st.line, []).append(st)
        self.named: dict[tuple[str | None, str], list[Function]] = {}
        for f in facts.functions:
            self.named.setdefault((f.cls, f.name), []).append(f)
        # function id -> the no-grad model calls its returns come from (None: may carry a gradient)
        self.made: dict[int, tuple[tuple[int, str], ...] | None] = {}

    def loss(self, ev, fn: Function) -> tuple[int, str] | None:
        """(line, helper function or '') of a no-grad model call the loss comes from, when every
        model call it comes from ran under no-grad and nothing else in it may carry a gradient."""
        found: list[tuple[int, str]] = []
        if ev.module_call:
            if not ev.nograd:
                return None
            found.append((ev.span.line, ""))
        if not self._follow([(n, ev.span.line, ev.nograd) for n in ev.uses], found, fn, 0):
            return None
        # the binding nearest the backward: in the second of two loops that reuse a name, its own
        # line; one in this function before any in a helper (whose line is where the helper is
        # written, above or below), the first helper followed
        own = [f for f in found if not f[1]]
        return max(own) if own else found[0] if found else None

    def _follow(self, todo, found: list[tuple[int, str]], fn: Function, depth: int) -> bool:
        """Follow the names in `todo` through fn's assignments, adding the no-grad model calls
        they come from to `found`; False when one may carry a gradient."""
        assigns = self.by_func.get(fn.id, [])
        params = set(fn.params)
        seen: set[str] = set()
        steps = 0
        while todo:
            name, before, nograd_reader = todo.pop()
            steps += 1
            if steps > _MAX_CHAIN:
                return False
            if name in seen:
                continue
            seen.add(name)
            # a function with nothing a finding points into has its records on its `def` line:
            # every binding there counts (more bindings only keep the rule quieter)
            made = [a for a in assigns if a.target == name and (a.line < before or a.line == before == fn.span.line)]
            if len(made) > 1:
                made = _dominating(name, before, made, self.facts.stmts, self.at_line)
            if not made:
                # a parameter read with grad on may carry a gradient into the loss; read as the
                # labels of a classification loss, only when a call passes something computed
                if name in params and name not in ("self", "cls") and (
                        not nograd_reader or nograd_reader == "label" and self._passed_computed(fn, name)):
                    return False
                continue
            # every earlier binding counts (branches, loops): one made with grad is enough to stay quiet
            for a in made:
                if not self._binding(a, todo, found, fn, depth, nograd_reader):
                    return False
        return True

    def _binding(self, a: Assign, todo, found: list[tuple[int, str]], fn: Function, depth: int,
                 nograd_reader: bool = False) -> bool:
        """Add what binding `a` comes from to `todo` and `found`; False when it may carry a gradient.
        `nograd_reader`: `a` is reached from a read under no-grad (`obs` of `policy(obs)` in the
        with-block): what it is made from by operations alone is read under no-grad too."""
        if any(kind == "leaf" for _, kind in a.calls):
            return False  # a tensor made to require grad (a linear probe's raw weights) trains
        modules = [c for c, kind in a.calls if kind == "module"]
        if modules and not a.nograd:
            # made with grad on: quiet, unless every such call is of a helper of this file whose
            # returns are made under no-grad or from no model at all (`discount(rewards)`); what
            # the call passes stays in there
            passed = dict(a.passed)
            for c in modules:
                made = self._helper(c, fn, depth) if c in passed else None
                if made is None:
                    return False
                found.extend(made)
            inside = {n for c in modules for n in passed[c]} | set(modules)
            # (the labels of a classification loss are read as a no-grad reader reads: a
            # parameter passed for them carries no gradient, a value made with grad still does)
            todo.extend((n, a.line, "label" if n in a.labels else False) for n in a.uses if n not in inside)
            return True
        if modules:
            found.append((a.line, ""))
        if not a.nograd:
            # an output made with grad upstream stays quiet (`modules` above); a parameter an
            # operation reads for a no-grad reader (`obs, _ = env.reset()`) gives it no gradient.
            # What an operation calls is no output (`criterion(output, target)` with the
            # criterion a parameter)
            ops = {c for c, kind in a.calls if kind == "op"}
            todo.extend((n, a.line, "label" if n in a.labels else nograd_reader and not modules)
                        for n in a.uses if n not in ops)
        else:
            # a binding under no-grad is followed too (`out = model(x)` then `loss = crit(out, y)`,
            # both in the with-block): an output made with grad upstream stays quiet. The
            # callables it calls (the model itself, built with grad on) are not outputs.
            called = {c for c, _ in a.calls}
            todo.extend((n, a.line, True) for n in a.uses if n not in called)
        return True

    def _forward_of(self, name: str, fn: Function) -> list[Function]:
        """The `forward` of the file's class a name holds (`model = MoCo()`, in fn or at module
        level): calling the module runs it."""
        if "." in name:
            return []
        if name in fn.params:
            classes = self._passed_classes(fn, name)
        else:
            made = [a for a in self.facts.assigns if a.target == name and a.kind == "model" and a.func == fn.id]
            if not made:
                made = [a for a in self.facts.assigns if a.target == name and a.kind == "model" and a.func == 0]
            classes = {a.cls for a in made}
        if len(classes) != 1 or "" in classes:
            return []
        return self.named.get((classes.pop(), "forward"), [])

    def _passed_classes(self, fn: Function, param: str) -> set[str]:
        """The classes every call of fn in this file passes for `param` (`train_one_epoch(model,
        ...)` with `model = MoCo()` in the caller); empty when a call passes something else,
        or there is no call."""
        classes: set[str] = set()
        calls = 0
        for g, value, _star in self._passed(fn, param):
            calls += 1
            made = [a for a in self.facts.assigns if value is not None and a.target == value.text
                    and a.kind == "model" and a.func == g.id]
            if len(made) != 1 or not made[0].cls:
                return set()
            classes.add(made[0].cls)
        return classes if calls else set()

    def _passed_computed(self, fn: Function, param: str) -> bool:
        """Whether a call of fn in this file passes for `param` something computed by a call (a
        model's soft targets may require grad), or something it does not show; a name, an
        attribute or an item, moved or cast (`y.to(device)`, `batch["y"].long()`), is data."""
        return any(value is None or star or not _DATA.fullmatch(value.text) for _g, value, star in self._passed(fn, param))

    def _passed(self, fn: Function, param: str) -> Iterator[tuple[Function, Value | None, bool]]:
        """For each call of fn in this file: (the function it is made in, what it passes for
        `param` or None, whether it passes a starred argument)."""
        # (a method's calls pass its arguments after `self`)
        at = fn.params.index(param) - (1 if fn.cls is not None and fn.params[0] in ("self", "cls") else 0)
        for g in self.facts.functions:
            for ev in iter_events(g.body):
                if ev.kind != "call" or fn.id not in ev.callees:
                    continue
                args = dict(ev.args)
                yield g, args.get(param) or args.get(str(at)), "*" in args

    def _helper(self, callee: str, fn: Function, depth: int) -> tuple[tuple[int, str], ...] | None:
        """The no-grad model calls (line, function) the returns of the file's function `callee`
        (`rollout`, `self.rollout` of fn's class) come from: empty when they come from no model
        at all; None when one may carry a gradient (a parameter it was passed, a model call with
        grad on), it has no return, or the callee is not one function of this file."""
        if depth >= _MAX_HELPERS:
            return None
        if callee.startswith("self."):
            if fn.cls is None:
                return None
            key = (fn.cls, callee[5:])
        else:
            key = (None, callee)
        candidates = self.named.get(key, []) or self._forward_of(callee, fn)
        if len(candidates) != 1:
            return None
        g = candidates[0]
        if g.id in self.made:
            return self.made[g.id]  # None while it is being worked out: a recursive helper
        self.made[g.id] = None
        rets = self.returns.get(g.id, [])
        found: list[tuple[int, str]] = []
        for r in rets:
            todo: list = []
            if not (self._binding(r, todo, found, g, depth + 1) and self._follow(todo, found, g, depth + 1)):
                rets = []
                break
        name = f"{g.cls}.{g.name}" if g.cls else g.name
        verdict = tuple((line, where or name) for line, where in found) if rets else None
        self.made[g.id] = verdict
        return verdict
