"""GL205 gradients-never-cleared: backward and step repeat, and nothing clears the gradients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.registry import Example, RuleContext
from gradlint.facts.training import iter_events
from gradlint.rules.training import clear_paths, steps


class GradientsNeverCleared(steps.StepRule):
    """
    ## What it does
    Flags a loop whose iterations run `backward()` and an optimizer step, when nothing
    reachable in the loop — its body, the step functions it calls, a closure — clears the
    gradients: `optimizer.zero_grad()`, `model.zero_grad()`, `zero_grad(set_to_none=True)`,
    `p.grad = None`, `p.grad.zero_()`, SAM's `second_step(zero_grad=True)`. Also a step on one
    branch of an `if` (or path of a `try`) when every clear of the loop is on another branch of
    it (cleared in the `if args.amp:` branch, stepped without clearing in the `else:` one); not
    under an accumulation test (`if i % k == 0: zero_grad() ... elif (i + 1) % k == 0: step()`),
    nor when the step's branch then leaves the loop (`break`, `return`) or touches `.grad`
    itself. Also a step under no `if` whose every clear is held to one pass by the loop's
    counter (`if i == 0:`, `if batch_idx == 0:`, `if engine.state.iteration == 1:`): cleared
    once, the gradients sum from then on. Also a step under no `if` whose every clear is under
    one accumulation test (`if (i + 1) % k == 0: optimizer.zero_grad()`) the step is not under:
    accumulation written wrong, each step applies the gradients summed since the last clear. With two
    optimizers in one loop (a GAN), flags the one that steps while only the other is cleared:
    `opt_d.zero_grad()` (or `D.zero_grad()`, D being what `opt_d` trains) does not clear the
    gradients `opt_g` applies. A loop over a list or dict of optimizers the file builds
    (`for opt in optimizers: opt.step()`) steps each of them. A loop a framework runs counts as
    one: the process function handed to an Ignite `Engine` (also one imported from another
    project file: `Engine(update)` with `from steps import update`), and `training_step` under
    Lightning's manual optimisation (`self.automatic_optimization = False`; also one such a
    class inherits from a mixin or base, of this file or another), which neither framework
    clears for. A clear in a handler of the file that drives it counts, except a lambda's clear
    of another optimizer built apart (`lambda e: opt_d.zero_grad()` while `opt_g` steps).

    ## Why is this bad?
    `backward()` adds into `.grad`. Without clearing, step *n* applies the sum of the gradients
    of all *n* batches so far: the effective learning rate grows with every step and training
    diverges, or crawls in a direction fixed by the first batches.

    ## Example
    ```python
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    ```

    ## Use instead
    ```python
    for x, y in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    ```
    Gradient accumulation that clears every k steps is fine. With two optimizers, clear both
    (or the model they share, or every parameter through `p.grad = None`), here or in a helper.

    ## References
    - `torch.optim.Optimizer.zero_grad`; pytorch/pytorch#47175 (zero_grad forgotten, or called
      once per epoch instead of per iteration).
    - Fixes of exactly this bug: wenet-e2e/wekws#73, meta-pytorch/torchforge#71.
    - GAN loops: the PyTorch DCGAN example clears each network before its own backward
      (`netD.zero_grad()`, then `netG.zero_grad()`).
    """

    code = "GL205"
    probe_measure = "not_measurable"
    name = "gradients-never-cleared"
    severity = Severity.ERROR
    summary = "Gradients accumulate across steps: no zero_grad() in the training loop"

    invalid = [
        Example("""\
for i, (x, y) in enumerate(loader):
    criterion(model(x), y).backward()
    optimizer.step()
    if (i + 1) % accum_steps == 0:
        optimizer.zero_grad()
""", note="accumulation written wrong: cleared every k batches, stepped at every batch"),
        Example("""\
import torch

for i, (x, y) in enumerate(loader):
    if i == 0:
        optimizer.zero_grad()
    criterion(model(x), y).backward()
    optimizer.step()
""", note="cleared on the first batch only"),
        Example("""\
import torch

optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
optimizer.zero_grad()
for epoch in range(10):
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
""", note="cleared once, before the loop"),
        Example("""\
def train_step(model, optimizer, x, y):
    loss = model(x, y)
    loss.backward()
    optimizer.step()
    return loss


for x, y in loader:
    train_step(model, optimizer, x, y)
""", note="step function called from a loop"),
        Example("""\
for epoch in range(10):
    optimizer.zero_grad()
    for x, y in loader:
        scaler.scale(model(x, y)).backward()
        scaler.step(optimizer)
        scaler.update()
""", note="cleared once per epoch, stepped every batch"),
        Example("""\
import torch

opt_d = torch.optim.Adam(D.parameters())
opt_g = torch.optim.Adam(G.parameters())
for real, z in loader:
    opt_d.zero_grad()
    criterion(D(real), ones).backward()
    opt_d.step()
    criterion(D(G(z)), ones).backward()
    opt_g.step()
""", note="a GAN loop clearing only the discriminator's optimizer"),
        Example("""\
import torch

optimizers = [torch.optim.SGD(backbone.parameters(), lr=0.1),
              torch.optim.SGD(head.parameters(), lr=0.1)]
for x, y in loader:
    head.zero_grad()
    criterion(head(backbone(x)), y).backward()
    for opt in optimizers:
        opt.step()
""", note="optimizers stepped in a loop over a list of them, only the head cleared"),
        Example("""\
import torch


class Stepper:
    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer

    def step(self, loss):
        loss.backward()
        self.optimizer.step()


stepper = Stepper(model, torch.optim.SGD(model.parameters(), lr=0.1))
for x, y in loader:
    stepper.step(criterion(model(x), y))
""", note="a trainer object's method holds the step"),
        Example("""\
import torch


def build(model):
    return torch.optim.SGD(model.parameters(), lr=0.1)


def train(model, loader):
    g = build(model)
    for x, y in loader:
        model(x).sum().backward()
        g.step()
""", note="an optimizer a function of the file returns, whatever the name it is bound to"),
        Example("""\
for x, y in loader:
    loss = criterion(model(x), y)
    if args.amp:
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
""", note="cleared on the AMP branch only (IDEA-Research/DINO#20)"),
        Example("""\
from ignite.engine import Engine


def update(engine, batch):
    x, y = batch
    criterion(model(x), y).backward()
    optimizer.step()


trainer = Engine(update)
""", note="Ignite calls the process function once per batch and clears nothing"),
    ]
    valid = [
        Example("""\
import lightning.pytorch as pl


class Lit(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(self.loss(batch))
        opt.step()
""", note="manual optimisation that clears each batch"),
        Example("""\
for _ in range(steps):
    img = torch.zeros(1, 3, 8, 8, requires_grad=True)
    opt = torch.optim.Adam([img], lr=0.1)
    net(img).sum().backward()
    opt.step()
""", note="a fresh leaf and optimizer every iteration"),
        Example("""\
import torch.distributed.autograd as dist_autograd

for x, y in loader:
    with dist_autograd.context() as ctx:
        loss = model(x).sum()
        dist_autograd.backward(ctx, [loss])
        opt.step(ctx)
""", note="distributed autograd: each context holds its own gradients"),
        Example("""\
for x, y in loader:
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    optimizer.step()
"""),
        Example("""\
for i, (x, y) in enumerate(loader):
    (criterion(model(x), y) / accum).backward()
    if (i + 1) % accum == 0:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
""", note="accumulation that clears every k steps"),
        Example("""\
for step in range(num_steps):
    optimizer.zero_grad()
    for micro in range(k):
        (model(*next(data_iter)) / k).backward()
        if micro == k - 1:
            optimizer.step()
""", note="a step on the last micro-batch, a clear once per outer pass"),
        Example("""\
def train_step(model, optimizer, x, y):
    model.zero_grad()
    model(x, y).backward()
    optimizer.step()


for x, y in loader:
    train_step(model, optimizer, x, y)
""", note="clearing inside a called step function"),
        Example("""\
for x, y in loader:
    criterion(model(x), y).backward()
    optimizer.step()
    for p in model.parameters():
        p.grad = None
""", note="p.grad = None"),
        Example("""\
for x, y in loader:
    criterion(model(x), y).backward()
    optimizer.first_step(zero_grad=True)
    criterion(model(x), y).backward()
    optimizer.second_step(zero_grad=True)
""", note="SAM"),
        Example("""\
for x, y in loader:
    def closure():
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        return loss
    optimizer.step(closure)
""", note="LBFGS closure"),
        Example("""\
def train_step(model, optimizer, x, y):
    model(x, y).backward()
    optimizer.step()
""", note="a step function no loop of this file calls"),
        Example("""\
import torch

opt_d = torch.optim.Adam(netD.parameters())
opt_g = torch.optim.Adam(netG.parameters())
for real, z in loader:
    netD.zero_grad()
    criterion(netD(real), ones).backward()
    opt_d.step()
    netG.zero_grad()
    criterion(netD(netG(z)), ones).backward()
    opt_g.step()
""", note="GAN: each network cleared (DCGAN)"),
        Example("""\
def reset(*optimizers):
    for o in optimizers:
        o.zero_grad()


for real, z in loader:
    reset(opt_d, opt_g)
    criterion(D(real), ones).backward()
    opt_d.step()
    criterion(D(G(z)), ones).backward()
    opt_g.step()
""", note="both cleared in a helper"),
        Example("""\
import torch

opt_enc = torch.optim.Adam(model.encoder.parameters())
opt_head = torch.optim.SGD(model.head.parameters(), lr=0.1)
for x, y in loader:
    model.zero_grad()
    criterion(model(x), y).backward()
    opt_enc.step()
    opt_head.step()
""", note="one model.zero_grad() clears both optimizers' parameters"),
        Example("""\
for x, y in loader:
    for opt in optimizers:
        opt.zero_grad()
    criterion(model(x), y).backward()
    for opt in optimizers:
        opt.step()
""", note="every optimizer cleared in a loop over them"),
        Example("""\
import torch


def build(optimizer):
    return torch.optim.lr_scheduler.StepLR(optimizer, 10)


def train(model, loader, base):
    opt = build(base)
    for x, y in loader:
        model(x).sum().backward()
        opt.step()
""", note="a learning-rate scheduler a function of the file returns, named like an optimizer"),
        Example("""\
import torch


def build(model):
    return torch.optim.SGD(model.parameters(), lr=0.1)


def train(model, loader):
    for x, y in loader:
        g = build(model)
        model(x).sum().backward()
        g.step()
""", note="a fresh optimizer from a function of the file every iteration"),
        Example("""\
for x, y in loader:
    loss = criterion(model(x), y)
    if args.amp:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    optimizer.zero_grad()
""", note="one clear after either branch"),
        Example("""\
for i, (x, y) in enumerate(loader):
    if i % accum == 0:
        optimizer.zero_grad()
    criterion(model(x), y).backward()
    if (i + 1) % accum == 0:
        optimizer.step()
""", note="a clear and a step under two different `if`s"),
        Example("""\
for i, (real, z) in enumerate(loader):
    if i % 2 == 0:
        opt_d.zero_grad()
        criterion(D(real), ones).backward()
        opt_d.step()
    else:
        opt_g.zero_grad()
        criterion(D(G(z)), ones).backward()
        opt_g.step()
""", note="each branch clears what it steps"),
        Example("""\
for i, (x, y) in enumerate(loader):
    loss = criterion(model(x), y) / accum
    if i % accum == 0:
        optimizer.zero_grad()
        loss.backward()
    elif (i + 1) % accum == 0:
        loss.backward()
        optimizer.step()
    else:
        loss.backward()
""", note="accumulation written as one if/elif: cleared at the start of each window"),
        Example("""\
for x, y in loader:
    loss = criterion(model(x), y)
    if args.amp:
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        for p in model.parameters():
            p.grad.mul_(0)
        loss.backward()
        optimizer.step()
""", note="the other branch clears its own way"),
    ]

    def _check(self, ctx: RuleContext, facts) -> Iterator[Finding]:
        for c in steps.contexts(facts, ctx.index):
            if c.loop is None and not c.driven:
                continue  # a step function: read at the loops that call it
            if any(f.event.via == "dist_autograd" for f in c.of("backward")):
                continue  # torch.distributed.autograd: each context holds its own gradients
            if any(f.event.kind == "call" and (not f.event.callees or f.depth >= steps.INLINE_DEPTH)
                   and _may_clear(facts, f.event) for f in c.events):
                continue  # a call we could not follow may clear
            if any(f.event.kind == "invoke" and f.event.via == "handed" for f in c.events):
                continue  # so may a callback handed the optimizer or its owner (`cb.on_step_end(self)`, `hook(opt)`)
            if c.loop is None and _cleared_elsewhere(facts, c, ctx.index):
                continue  # a framework's hook may clear between its calls (`@trainer.on(...)`, `on_train_batch_start`)
            clears = c.of("clear")
            backward = c.of("backward")[0]
            stepping = [u for f in c.of("step") for u in _units(facts, c, f)]
            if not clears:
                if _rebuilt_each_iteration(facts, c, stepping):
                    continue  # a fresh optimizer (and leaf) per iteration starts from no gradient
                if c.loop is not None and _cleared_per_outer_pass(facts, c):
                    continue  # `if micro == k - 1: opt.step()` with the clear in the loop outside
                step = c.of("step")[0]
                others = sorted({t for _, t in facts.lambda_clears if t}) if c.loop is None else []
                besides = f" (an event handler's lambda clears only `{'`, `'.join(others)}`)" if others else ""
                yield ctx.finding(
                    f"`backward()` and `{steps.step_text(step.event)}` {_repeat(c, 'repeat')} but nothing clears the gradients"
                    f"{besides}: each step applies the sum of every earlier batch's gradients",
                    step.event.span, data={"backward_line": backward.event.span.line})
                continue
            def rebuilt(step, c=c) -> bool:
                return _rebuilt_each_iteration(facts, c, _units(facts, c, step))

            once = clear_paths.cleared_on_the_first_pass(facts, c, clears)
            if once is not None:
                step, guard, clear = once
                yield ctx.finding(
                    f"`{steps.step_text(step.event)}` {_repeat(c, 'repeats')} but {_whose(c)} only clear of the "
                    f"gradients (line {clear.event.span.line}) runs only when `{guard.test}`: every later step "
                    f"applies the sum of the gradients of every batch since",
                    step.event.span, data={"backward_line": backward.event.span.line})
                continue
            every = clear_paths.cleared_every_k(facts, c, clears, rebuilt)
            if every is not None:
                step, guard, clear = every
                yield ctx.finding(
                    f"`{steps.step_text(step.event)}` {_repeat(c, 'repeats')} but {_whose(c)} only clear of the "
                    f"gradients (line {clear.event.span.line}) runs only when `{guard.test}`: each step between "
                    f"two clears applies the sum of the gradients of every batch since the last clear (to "
                    f"accumulate, step under the same test as the clear)",
                    step.event.span, data={"backward_line": backward.event.span.line})
                continue
            apart = clear_paths.branch_without_clear(facts, c, clears, getattr(ctx.facts, "source", None), rebuilt)
            if apart is not None:
                step, guard, clear = apart
                where = "paths of a `try` statement" if guard.test == "try" else f"branches of `{guard.test}`"
                yield ctx.finding(
                    f"`{steps.step_text(step.event)}` and {_whose(c)} only clear of the gradients (line "
                    f"{clear.event.span.line}) are on different {where}: where the step runs, each step applies the "
                    f"sum of every earlier batch's gradients",
                    step.event.span, data={"backward_line": backward.event.span.line})
                continue
            for step, units, cleared in _uncleared_steps(facts, c, clears):
                units = [u for u in units if not _rebuilt_each_iteration(facts, c, [u])]
                if not units:
                    continue
                if units[0].drawn:
                    # `for opt in optimizers: opt.step()` over a container of known optimizers
                    where = f" for each `{step.event.target}` in `{step.event.each}`"
                    whose = " and ".join(f"`{u.name}`" + (f" (training `{'`, `'.join(u.owned)}`)" if u.owned else "")
                                         for u in units)
                else:
                    where, whose = "", f"`{step.event.target or step.target}`"
                yield ctx.finding(
                    f"`{steps.step_text(step.event)}` {_repeat(c, 'repeats')}{where} but only {cleared} is cleared: "
                    f"the gradients of {whose} add up across steps",
                    step.event.span, data={"backward_line": backward.event.span.line,
                                           "optimizer": ", ".join(u.name for u in units)})


# What calls a framework's step function once per batch (TrainingFacts.driven), for messages.
_DRIVERS = {
    "ignite": "Ignite's `Engine`{where} calls `{name}` once per iteration",
    "lightning-manual": "under manual optimisation{where} Lightning calls `{name}` once per batch and clears nothing itself",
}
_WHERE = {"ignite": " in `{modules}`", "lightning-manual": ", set by a subclass in `{modules}`,"}


def _cleared_elsewhere(facts, c, index=None) -> bool:
    """A function of the file that the step function does not call clears gradients (a lambda
    too: Ignite's `add_event_handler(Events.ITERATION_COMPLETED, lambda e: opt.zero_grad())`,
    when it may clear what the function steps): for a function a framework calls per batch, a
    hook the framework calls between batches may be it. For a function driven from another
    file (`Engine(update)` in train.py), so may any clear of that file."""
    reached = {f.event.func for f in c.events} | {c.function.id}
    if any(e.kind == "clear" for fn in facts.functions if fn.id not in reached for e in iter_events(fn.body)):
        return True
    if _lambda_clears_stepped(facts, c, [t for fid, t in facts.lambda_clears if fid not in reached]):
        return True
    for home in c.drivers:
        mod = index.index.calling(home, loops=True) if index is not None else None
        other = mod.facts.training if mod is not None else None
        if other is None or other.lambda_clears or any(
                e.kind == "clear" for fn in other.functions for e in iter_events(fn.body)):
            return True  # (names of another file: not compared with this file's)
    return False


def _lambda_clears_stepped(facts, c, targets: list[str]) -> bool:
    """Whether lambdas clearing `targets` (as written; "" for one not known) may clear every
    optimizer the context steps: a lambda's clear counts for a stepped optimizer unless it names
    another one built apart from it (`lambda e: opt_d.zero_grad()` beside a process function
    stepping `opt_g` of another model: measured, Ignite 0.5.5, `opt_g`'s gradients add up)."""
    if not targets:
        return False
    units = [u for f in c.of("step") if f.event.via != "sam" for u in _units(facts, c, f)]
    names = {u.name for u in units}
    if not units or "" in names:
        return True
    return all(any(not t or t == u.name or (t not in names and not _apart(facts, t, u.name, c.function.id, u.owned))
                   for t in targets) for u in units)


def _repeat(c, verb: str) -> str:
    """How a step repeats, for messages: in the context's loop, or per batch as a framework calls it."""
    if c.loop is not None:
        return f"{verb} in this loop"
    where = _WHERE[c.driven].format(modules="`, `".join(c.drivers)) if c.drivers else ""
    by = _DRIVERS[c.driven].format(name=c.function.name, where=where)
    return f"{'runs' if verb == 'repeats' else 'run'} on every batch ({by})"


def _whose(c) -> str:
    return "the loop's" if c.loop is not None else f"`{c.function.name}`'s"


def _cleared_per_outer_pass(facts, c) -> bool:
    """Whether every step of the loop runs on its last pass only (steps.last_pass) and the loop
    around it clears, outside this loop: one clear and one step per outer pass, an accumulation."""
    stepping = c.of("step")
    if not stepping or not all(any(steps.last_pass(facts, s, g) for g in s.guards) for s in stepping):
        return False
    inner = steps.innermost_for(facts, stepping[0].event.span.line)
    outer = [st for st in facts.stmts if st.kind in ("for", "while") and inner is not None
             and st.line < inner.line and inner.end_line <= st.end_line]
    if not outer:
        return False
    around = max(outer, key=lambda st: st.line)
    return any(e.kind == "clear" and around.line < e.span.line <= around.end_line
               and not inner.line <= e.span.line <= inner.end_line for e in iter_events(c.function.body))


# Functions _may_clear reads through before it assumes a clear it cannot see.
_MAX_CALLEES = 32


@dataclass(frozen=True)
class _Unit:
    """One optimizer an event steps or clears: its own target (`opt_b.step()`), or one of the
    optimizers a loop over a container of known optimizers draws (`for opt in optimizers:
    opt.step()` with `optimizers = [opt_b, SGD(head.parameters())]`: Event.each_items)."""

    flat: object
    name: str  # as the loop's function reads it (`opt_b`, `optimizers[1]`)
    owned: tuple[str, ...] = ()  # the modules one built in the display trains, else ()
    drawn: bool = False
    made: str = ""  # the text whose binding builds it: its name, or its container's


def _units(facts, c, f) -> list[_Unit]:
    """The optimizers step or clear `f` updates: each of a known container it is drawn from when
    the loop over it is in the context's own function (the names are that function's), else the
    event's own target. A clear drawn from a container not known gives one unit of no name (it
    may clear any optimizer)."""
    ev = f.event
    if ev.each:
        container = ev.each[: -len(".values()")] if ev.each.endswith(".values()") else ev.each
        # a name bound more than once may hold another display than the one read (the
        # front-end keeps one of two displays alike); a display in the loop's header is itself
        once = not container.isidentifier() or len(_bindings(facts, container, c.function.id)) == 1
        if ev.each_items and ev.func == c.function.id and once:
            return [_Unit(f, name, owned, True, container if owned or "[" in name else name)
                    for name, owned in ev.each_items]
        if ev.kind == "clear":
            return [_Unit(f, "")]
    return [_Unit(f, f.target, made=f.target)]


def _uncleared_steps(facts, c, clears) -> list:
    """Steps whose optimizers no clear of the loop reaches, while something else is cleared (a
    GAN loop clearing `opt_d` and stepping `opt_g` too; a DQN loop clearing the target network
    and stepping the local one's optimizer; a loop over a list of optimizers clearing only one
    of their modules): (step, its uncleared units, the clears as named). A clear counts against
    a step only when it names another optimizer that steps here, a model only such an optimizer
    trains, or an optimizer or model built apart from the ones the step's optimizer trains
    (`_apart`); any other clear (`p.grad = None`, an alias, a helper, an optimizer of unknown
    parameters, a loop over optimizers not known) may clear anything."""
    units = [u for f in c.of("step") if f.event.via != "sam" for u in _units(facts, c, f) if u.name]
    stepped = {u.name for u in units}
    if not stepped:
        return []
    owners: dict[str, set] = {}
    for u in units:
        got = set(u.owned) if u.owned else {m for a in steps.assigns_to(facts, u.name, ("optimizer",)) for m in a.owners}
        owners[u.name] = owners.get(u.name, set()) | got
    cleared = [u for f in clears for u in _units(facts, c, f)]

    def may_clear(clear: _Unit, unit: _Unit) -> bool:
        target, opt = clear.name, unit.name
        if not target or target == opt:
            return True
        if target in stepped:
            return False  # another stepping optimizer
        elsewhere = [o for o in stepped if o != opt and target in owners[o]]
        if elsewhere and owners[opt] and target not in owners[opt]:
            return False
        step, ev = unit.flat, clear.flat.event
        if not clear.drawn and not unit.drawn and ev.func == step.event.func and ev.target and step.event.target:
            # both in one function (a method inlined into the loop): the bindings are its texts
            return not _apart(facts, ev.target, step.event.target, step.event.func)
        return not _apart(facts, target, opt, c.function.id, unit.owned)

    out, seen = [], set()
    for step in c.of("step"):
        open_units = []
        for unit in _units(facts, c, step):
            if not unit.name or unit.name not in stepped or unit.name in seen:
                continue
            seen.add(unit.name)
            if not any(may_clear(f, unit) for f in cleared):
                open_units.append(unit)
        if not open_units:
            continue
        # named as the step's line writes them where the clears are in its function
        names = sorted({f.event.target if f.event.func == step.event.func and f.event.target else f.target
                        for f in clears})
        out.append((step, open_units, " and ".join(f"`{n}`" for n in names)))
    return out


def _may_clear(facts, ev) -> bool:
    """Whether a call the flattening did not follow (past its depth) may clear gradients: unless it
    is a call of this file's functions none of which, through the calls they make, clears or calls
    what cannot be seen (a `self.log_stats()` or `self.soft_update()` after the step)."""
    fid = ev.func
    if not ev.callees or ev.ref or not 0 <= fid < len(facts.functions) or not any(
            e is ev for e in iter_events(facts.functions[fid].body)):
        return True  # no callee known, or an event of another file's facts
    seen: set[int] = set()
    todo = list(ev.callees)
    while todo:
        callee = todo.pop()
        if not 0 <= callee < len(facts.functions):
            return True
        if callee in seen:
            continue
        seen.add(callee)
        if len(seen) > _MAX_CALLEES:
            return True
        for e in iter_events(facts.functions[callee].body):
            if e.kind in ("clear", "open_step"):
                return True
            if e.kind == "call":
                if not e.callees or e.ref:
                    return True
                todo.extend(e.callees)
            elif e.kind == "invoke":
                return True
    return False


def _bindings(facts, text: str, fid: int) -> list:
    """The bindings of `text` that function `fid` reads: its own when it binds it (a local name of
    that function), else every one of the file (an attribute set in `__init__`, a global)."""
    made = steps.assigns_to(facts, text)
    return [a for a in made if a.func == fid] or made


def _apart(facts, target: str, opt: str, fid: int, owned: tuple[str, ...] = ()) -> bool:
    """Clearing `target` cannot clear the gradients optimizer `opt` steps (both as function `fid`
    reads them): every binding of `opt` is an optimizer naming the modules it trains (`owned`,
    or those given for one built in a container display), and `target` is an optimizer whose
    every binding names other modules, or a module built by its own constructor call; neither
    contains the other (no owned text is `target` or below or above it), and no binding of one
    is made from the other (`target = Wrapper(local)`, `local = target.encoder`)."""
    if not owned:
        bound = _bindings(facts, opt, fid)
        if not bound or any(a.kind != "optimizer" or not a.owners for a in bound):
            return False
        owned = tuple(m for a in bound for m in a.owners)
    owned = set(owned)
    made = _bindings(facts, target, fid)
    if not made:
        return False
    if all(a.kind == "optimizer" for a in made):
        others = {m for a in made for m in a.owners}
        if not others or any(not a.owners for a in made):
            return False
        modules = others
    elif all(a.kind == "model" for a in made):
        modules = {target}
    else:
        return False

    def related(a: str, b: str) -> bool:
        return a == b or a.startswith(b + ".") or b.startswith(a + ".")

    if any(related(m, o) for m in modules for o in owned):
        return False
    roots = {t.split(".")[0] if not t.startswith("self.") else t for t in (*modules, *owned)}
    for text in (*modules, *owned):
        for a in _bindings(facts, text, fid):
            if any(u in roots and u != (text.split(".")[0] if not text.startswith("self.") else text) for u in a.uses):
                return False
    return True


def _rebuilt_each_iteration(facts, c, stepping: list[_Unit]) -> bool:
    """A stepping optimizer is constructed inside the loop itself (or the container display
    that builds it is); for a function a framework calls per batch, inside the function (not
    Lightning's `self.optimizers()`, which hands the same ones every time)."""
    if c.loop is None:
        return any(a.func == c.function.id and a.cls != "optimizers"
                   for unit in stepping for a in steps.assigns_to(facts, unit.made, ("optimizer",)))
    loop_block = c.loop[1]
    body = [st for st in facts.stmts if st.block == loop_block]
    if not body:
        return False
    first, last = min(st.line for st in body), max(st.end_line for st in body)
    for unit in stepping:
        kinds = ("optimizer",) if unit.made == unit.name else None
        for a in steps.assigns_to(facts, unit.made, kinds):
            if a.func == c.function.id and first <= a.line <= last:
                return True
    return False
