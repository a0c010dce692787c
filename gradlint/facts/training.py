"""Training-loop facts: what the loop extractor (gradlint/source/loops.py) records per function,
as pure data the GL2xx rules read: blocks (loops, `if` alternatives, `with` contexts) holding the
events the training-loop rules care about, in source order, plus statements and assignments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Union

from gradlint.facts.project import ProjectIndex, Scope
from gradlint.findings import SourceSpan

@dataclass(frozen=True)
class Value:
    """A clip threshold or norm type as written, with the number it stands for when known.

    source: 'literal', 'constant' (a name bound once to a literal in scope), 'argparse' (the
    default of a command-line option) or 'config' (a field of a config object the file builds:
    `origin` names it, `TrainConfig.max_grad_norm`); '' when the number is unknown.
    guarded: the call sits under an `if` whose test mentions the value (`if clip > 0:`).
    shared: for 'config', the name of the object when it is a global of its module, which another
    module may import and change (`train.cfg.max_grad_norm = 1.0`); '' else.
    """

    text: str
    number: float | None = None
    source: str = ""
    guarded: bool = False
    origin: str = ""
    shared: str = ""
    # what an argument is to a training step: 'optimizer', 'scaler' (the caller's file binds
    # it to one or names it so), '' else; a step of another file reads it (bind_callers)
    kind: str = ""
    # an argument that is a config object the caller builds and does not change: its numeric
    # fields as built, and its class's last name in `origin` (`train(model, Cfg())`)
    fields: tuple[tuple[str, float], ...] = ()
    # a threshold read from an attribute of the function's parameter, which the function does
    # not change (`cfg.grad_clip` in `def train(model, cfg)`, maybe through `max_norm =
    # cfg.grad_clip`), or of `self.cfg`: that attribute, as written (config_threshold)
    param: str = ""


@dataclass(frozen=True)
class Event:
    """One call (or `.grad` assignment) the training-loop rules care about.

    kind:
      backward  `loss.backward()`, `scaler.scale(loss).backward()`, `accelerator.backward(loss)`...
                via: tensor, scaler, accelerate, fabric, lightning, deepspeed, autograd (scaler:
                the scaler's text; for accelerate, the accelerator's)
      step      `opt.step()` (via optimizer), `scaler.step(opt)` (via scaler), SAM
                `first_step`/`second_step` (via sam)
      clip      via: torch (torch.nn.utils / timm, GL203 applies), framework (accelerate, Fabric,
                Lightning, FSDP: they unscale themselves), helper (a name we cannot see into)
      unscale   `scaler.unscale_(opt)`, `accelerator.unscale_gradients()`
      clear     `zero_grad()`, `p.grad = None`, `p.grad.zero_()`, `step(zero_grad=True)`; a loop
                `for p in model.parameters(): p.grad = None` is one clear of `model` (target),
                with the loop variable in `name`
      call      a call of a function of this file (callees: its Function ids), for inlining
      invoke    any other call of a local name or attribute (callee text in `target`); via
                handed: a call nothing here sees into that is handed the optimizer or `self`
                (`cb.on_step_end(self)`), which may clear the gradients
    args: a call's or invoke's arguments as written, keyed by keyword or by position ('0', '1'...;
      '*' when a `*args`/`**kw` makes the rest unknown), so that an inlined body reads what the
      call site passes. ref: the class (as written) of the instance whose method a call or invoke
      runs (`loss_scaler = NativeScaler()`; `loss_scaler(loss, opt)` runs `NativeScaler.__call__`,
      whose name is in `name`), resolved in this file or through the project index.
      fit       Lightning `trainer.fit(model)` / Hugging Face `trainer.train()`
      open_step `o.step()` / `s.step(o)` on the parameter `param` of a top-level function (or of
                a plain method of a top-level class) that no call of its file decides: an
                optimizer's (a scaler's) step when every call in the project passes one for it
                (`bind_callers`), else nothing
    each: the optimizers a step, clear or unscale is drawn from, as written (`self.optimizers`),
      when its target is the variable of a loop over them (`for opt in self.optimizers:
      scaler.step(opt)`): that loop is one update of each, so its block is no loop of its own.
    each_items: the optimizers `each` holds, when the file binds it to a display of them that
      it never changes (`optimizers = [opt_b, SGD(head.parameters())]`): each as (its name, or
      for one built in the display the container subscripted, `optimizers[1]`, and the modules
      whose `.parameters()` it is given); () when what it holds is not known.
    """

    kind: str
    span: SourceSpan
    func: int
    stmt: int = -1
    nograd: bool = False
    via: str = ""
    target: str = ""
    scaler: str = ""
    value: Value | None = None
    norm_type: Value | None = None
    name: str = ""
    callees: tuple[int, ...] = ()
    clears: bool = False
    # backward: names the loss expression reads, and whether it calls a module itself
    uses: tuple[str, ...] = ()
    module_call: bool = False
    args: tuple[tuple[str, Value], ...] = ()
    ref: str = ""
    each: str = ""
    param: str = ""
    each_items: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Block:
    """kind: body, loop, if (items are its alternatives, each a 'branch' block), branch, with.

    test: the `if` test as written; accum: the test is a gradient-accumulation guard
    (`(i + 1) % k == 0`, directly or through a variable); mode: 'nograd' / 'enablegrad' for
    `with torch.no_grad()` / `with torch.enable_grad()`; skip: the guard that `if test: continue`
    puts over the rest of its loop's body (its test reads `not (test)`; the body runs when `test`
    is false); accumulates: for a `with` entering `X.accumulate(...)` (Accelerate's
    `with accelerator.accumulate(model):`, whatever X is bound to), X as written.
    """

    kind: str
    id: int
    items: tuple[Union["Block", Event], ...] = ()
    test: str = ""
    accum: bool = False
    mode: str = ""
    skip: bool = False
    accumulates: str = ""


@dataclass(frozen=True)
class Stmt:
    """A statement of some block: where it is, and what it binds and reads (for safe fixes)."""

    block: int
    index: int
    line: int
    end_line: int
    column: int  # 1-based column of its first character
    simple: bool  # a line holding exactly this one simple statement
    assigned: tuple[str, ...] = ()
    used: tuple[str, ...] = ()  # simple statements: every name; compound ones: their header's
    # or the compound statement's type: if, for, while, with, try...; "break" / "continue": a line
    # with one; "return": a line with a return or raise
    kind: str = "simple"
    parent: int = -1  # the compound statement whose body holds this one
    # an assignment that updates what it assigns from its own value (a counter, a budget: `n += 1`,
    # `tokens = tokens + x.numel()`), where `used` cannot tell `n = f(x)` from `n = n + f(x)`
    updates: bool = False


@dataclass(frozen=True)
class Function:
    id: int
    name: str
    cls: str | None
    parent: int | None
    span: SourceSpan
    body: Block
    nograd: bool = False
    params: tuple[str, ...] = ()
    # parameters with a default, as written (`clip_grad=None` -> ('clip_grad', 'None'))
    defaults: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Assign:
    """`target = value` for a Name or attribute target.

    kind: optimizer (owners: the texts whose `.parameters()` it optimises), model (cls: the class's
    last name; ref: the class as written, `gan.Discriminator`, for the project index; torch_recurrent / torch_blocks for torch.nn classes built directly), scaler
    (disabled: `enabled=False` literal), accelerator (accelerate's `Accelerator`; disabled unless
    made with `mixed_precision="fp16"` written so: its backward scales the loss only then;
    accum_steps: its `gradient_accumulation_steps=` argument as a Value, None when not passed or
    when `**kwargs` may pass it), fabric
    (Lightning's `Fabric`; disabled unless made with precision="16-mixed" for a GPU, written so),
    pl_trainer / hf_args / hf_trainer (clip_config: clipping
    configured), ds_engine (the engine `deepspeed.initialize` returns; clip_config: its config's
    `gradient_clipping`, None when the config is not written in the file; model_arg: its
    `model=`), ignite_trainer (Ignite's `create_supervised_trainer` or
    `create_supervised_tbptt_trainer`, which never clip; model_arg: its model), const, other;
    append: `xs.append(v)` / `xs.extend(vs)`, which adds v to what the container xs holds (xs
    keeps its other bindings: the one before still holds).
    calls: (callee text, 'module' | 'op' | 'leaf') for each call in the value — 'op' for torch
    functions, criteria and tensor methods, 'module' for anything that may hold parameters,
    'leaf' for a tensor made to require grad (`requires_grad=True`, `.requires_grad_()`).
    passed: for each 'module' call of a bare name or of `self.name` (a function or method this
    file may define), (callee text, the names the value reads only in that call's arguments):
    what the value takes from them comes through what the callee returns.
    labels: the names the value reads only as the class-index target of `F.cross_entropy` or
    `F.nll_loss` (`F.cross_entropy(out, y)`): labels, not outputs.
    implies: the names and attributes, as written, that are true whenever the value is: the
    value itself when it is one, each such term of an `and` (`sync = acc.sync_gradients and
    step > 0`: `acc.sync_gradients`).
    A `return value` statement is the same record with kind 'return' and no target
    (TrainingFacts.returns).
    """

    target: str
    func: int
    line: int
    kind: str = "other"
    cls: str = ""
    ref: str = ""
    owners: tuple[str, ...] = ()
    disabled: bool = False
    torch_recurrent: str = ""
    torch_blocks: int = 0
    clip_config: bool | None = None
    model_arg: str = ""
    args_arg: str = ""
    uses: tuple[str, ...] = ()
    calls: tuple[tuple[str, str], ...] = ()
    nograd: bool = False
    passed: tuple[tuple[str, tuple[str, ...]], ...] = ()
    labels: tuple[str, ...] = ()
    implies: tuple[str, ...] = ()
    # the model a wrapper holding the same parameters is given (`model = DDP(net)`,
    # `compiled = torch.compile(net)`, `nn.DataParallel(net)`): `net`
    wraps: str = ""
    # (kind accelerator: above)
    accum_steps: Value | None = None


@dataclass(frozen=True)
class TrainingFacts:
    functions: tuple[Function, ...] = ()
    # the file names none of the words a training loop needs (a backward, a clip...): nothing
    # was read. A search for a function's callers reads its calls on demand (ProjectIndex.calling)
    skipped: bool = False
    stmts: tuple[Stmt, ...] = ()
    assigns: tuple[Assign, ...] = ()
    # the `return value` statements of every function (Assign of kind 'return'): what a call of
    # it gives its caller
    returns: tuple[Assign, ...] = ()
    # `p.register_hook(lambda g: g.clamp(-c, c))`: clipping by hook, per element
    hook_clipping: bool = False
    # LightningModule subclasses of this file under automatic optimisation (no
    # `self.automatic_optimization = False`): Lightning runs backward and step after their
    # `training_step`
    lightning_automatic: tuple[str, ...] = ()
    # classes of this file that set `self.automatic_optimization = False` (lightning_modules)
    manual_classes: tuple[str, ...] = ()
    # classes of this file and their bases as written: a method called on `self` or on an
    # instance may live in a base class
    classes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # (function id, what calls it) for the functions a framework calls once per batch, the body
    # of a loop the file does not write: 'ignite' (the process function given to an Ignite
    # `Engine`), 'lightning-manual' (`training_step` under Lightning's manual optimisation)
    driven: tuple[tuple[int, str], ...] = ()
    # (name as written, what calls it) for the functions of other modules a framework of this
    # file calls once per batch (`Engine(update)` with `from steps import update`): 'ignite'
    drives: tuple[tuple[str, str], ...] = ()
    # (function id, 0 for the module; what it clears as written, "" when not a name) for each
    # lambda whose call clears gradients (`trainer.add_event_handler(Events.ITERATION_COMPLETED,
    # lambda e: optimizer.zero_grad())`): code a framework may run between its calls of a driven
    # function
    lambda_clears: tuple[tuple[int, str], ...] = ()


def iter_events(block: Block):
    """Every event of a block and of the blocks inside it, in source order."""
    for it in block.items:
        if isinstance(it, Block):
            yield from iter_events(it)
        else:
            yield it


# A chain of base classes longer than this is given up on (a cycle, or generated code).
MAX_BASES = 32


def in_bases(cls: str, bases: dict[str, tuple[str, ...]], found):
    """`found(c)` for class `cls` (its last name) and then its bases of the same file, nearest
    first: the first answer that is not None; None when none has one (bounded, cycle-safe)."""
    todo, seen = [cls.rsplit(".", 1)[-1]], set()
    while todo and len(seen) < MAX_BASES:
        c = todo.pop(0)
        if c in seen:
            continue
        seen.add(c)
        answer = found(c)
        if answer is not None:
            return answer
        todo.extend(b.rsplit(".", 1)[-1] for b in bases.get(c, ()))
    return None


def method_id(facts: TrainingFacts, cls: str, name: str) -> int | None:
    """Function id of method `name` of class `cls` of this file, or of its nearest base of this file."""
    return in_bases(cls, dict(facts.classes),
                    lambda c: next((f.id for f in facts.functions if f.cls == c and f.name == name), None))


# ---------------------------------------------------------------------------------------------
# Steps on parameters, decided by the project's callers

# Files that name a step function read to find its callers, at most (as facts.numerics does).
MAX_CALLER_MODULES = 64


def lightning_modules(facts: TrainingFacts, scope: Scope | None) -> frozenset[str]:
    """The classes of this file that Lightning trains under automatic optimisation: those the
    front-end found (a Lightning base, directly or through a base of the file), and those whose
    base is such a class of another project file (`class LitRNN(BaseModule)` with BaseModule in
    base.py), unless they set manual optimisation themselves."""
    found = set(facts.lightning_automatic)
    if scope is None or not scope.module:
        return frozenset(found)
    for cls, bases in facts.classes:
        if cls in found or cls in facts.manual_classes:
            continue
        for base in bases:
            for q in scope.resolve(base):
                module, _, name = q.rpartition(".")
                mod = scope.index.module(module) if module and module != scope.module else None
                other = mod.facts.training if mod is not None else None
                if isinstance(other, TrainingFacts) and name in other.lightning_automatic:
                    found.add(cls)
    return frozenset(found)


def manual_elsewhere(facts: TrainingFacts, scope: Scope | None) -> tuple[tuple[int, str], ...]:
    """(function id, 'lightning-manual') for each `training_step` of this file that Lightning
    runs under manual optimisation set by a base class of another project file (`class
    Regressor(ManualBase)` with `self.automatic_optimization = False` in base.py's ManualBase, or
    in a base of ManualBase there), as TrainingFacts.driven lists the ones set in this file."""
    if scope is None or not scope.module or not facts.classes:
        return ()
    known = {fid for fid, _ in facts.driven}
    methods = [f for f in facts.functions if f.cls and f.name == "training_step" and f.id not in known]
    if not methods:
        return ()
    classes = dict(facts.classes)

    def manual_base(cls: str):
        for base in classes.get(cls, ()):
            for q in scope.resolve(base):
                module, _, name = q.rpartition(".")
                mod = scope.index.module(module) if module and module != scope.module else None
                other = mod.facts.training if mod is not None else None
                if isinstance(other, TrainingFacts) and other.manual_classes and in_bases(
                        name, dict(other.classes), lambda c: True if c in other.manual_classes else None):
                    return True
        return None

    return tuple((f.id, "lightning-manual") for f in methods if in_bases(f.cls, classes, manual_base))


def inherited_manual(facts: TrainingFacts, scope: Scope | None,
                     among: frozenset[int] | None = None) -> tuple[tuple[int, str, str], ...]:
    """(function id, 'lightning-manual', the module of the subclass) for each `training_step` of
    a class of this file (a mixin, a base) that a subclass under Lightning's manual optimisation
    inherits without defining its own: `class Lit(StepMixin, pl.LightningModule)` setting
    `self.automatic_optimization = False`, in this file or another project file that names the
    class (measured, Lightning 2.6.6: the mixin's training_step ran under manual optimisation and,
    with no clear, the stepped gradient's norm grew 2.23, 3.48, 5.82, 5.33, 6.13). `among`: the
    functions (ids) to ask about, else all."""
    known = {fid for fid, _ in facts.driven}
    methods = [f for f in facts.functions if f.cls and "." not in f.cls and f.name == "training_step"
               and f.parent == 0 and f.id not in known and (among is None or f.id in among)]
    if not methods:
        return ()
    out: list[tuple[int, str, str]] = []
    module = scope.module if scope is not None else ""
    for f in methods:
        if _manual_subclass_here(facts, f):
            out.append((f.id, "lightning-manual", module))
            continue
        if scope is None or not module:
            continue
        memo = scope.index.memos.setdefault("training_manual_subclasses", {})
        key = (module, f.cls)
        if key not in memo:
            memo[key] = _manual_subclasses(scope.index, module, f.cls)
        out.extend((f.id, "lightning-manual", home) for home in memo[key])
    return tuple(out)


def _manual_subclass_here(facts: TrainingFacts, f: Function) -> bool:
    """A class of this file other than `f`'s inherits `f` (a `training_step`: no class on the way
    defines its own) and sets manual optimisation, itself or through a base of the file."""
    bases = dict(facts.classes)
    manual = set(facts.manual_classes)
    return any(sub != f.cls and method_id(facts, sub, f.name) == f.id
               and in_bases(sub, bases, lambda c: True if c in manual else None) for sub in bases)


def _others(index: ProjectIndex, module: str, name: str, word: str) -> list[tuple[str, TrainingFacts]]:
    """(module, its training facts) for each project module other than `module` whose text names
    `name` (a whole word) and `word`, and whose facts the index can give; none when more than
    MAX_CALLER_MODULES modules name both (the text scan is once per run)."""
    mentions = sorted(set(index.mentioning(name, whole=True)) & set(index.mentioning(word)))
    if len(mentions) > MAX_CALLER_MODULES:
        return []
    out = []
    for home in mentions:
        if home == module:
            continue
        mod = index.calling(home, loops=True)
        other = mod.facts.training if mod is not None else None
        if isinstance(other, TrainingFacts):
            out.append((home, other))
    return out


def _manual_subclasses(index: ProjectIndex, module: str, cls: str) -> tuple[str, ...]:
    """The other project modules holding a class that derives from class `cls` of `module`,
    sets manual optimisation (itself or through a base of its file) and defines no
    `training_step` of its own there."""
    target = f"{module}.{cls}"
    out = []
    # (a module that sets manual optimisation names it)
    for home, other in _others(index, module, cls, "automatic_optimization"):
        if not other.manual_classes:
            continue
        bases = dict(other.classes)
        manual = set(other.manual_classes)
        for name, written in other.classes:
            if not any(target in index.resolve(home, b) for b in written):
                continue
            if method_id(other, name, "training_step") is None and \
                    in_bases(name, bases, lambda c: True if c in manual else None):
                out.append(home)
                break
    return tuple(out)


def driven_elsewhere(facts: TrainingFacts, scope: Scope | None,
                     among: frozenset[int] | None = None) -> tuple[tuple[int, str, str], ...]:
    """(function id, what drives it, the driving module) for each top-level function of this
    file that a framework of another project file calls once per batch (`Engine(update)` in
    train.py with `from steps import update`: TrainingFacts.drives there), as
    TrainingFacts.driven lists the ones driven in this file. Read in the files whose text names
    the function (at most MAX_CALLER_MODULES of them). `among`: the functions (ids) to ask about,
    else all. Memoised per run."""
    if scope is None or not scope.module:
        return ()
    index = scope.index
    out: list[tuple[int, str, str]] = []
    known = {fid for fid, _ in facts.driven}
    memo = index.memos.setdefault("training_driven_elsewhere", {})
    for f in facts.functions:
        if f.cls is not None or f.parent != 0 or f.id in known or not f.params or (among is not None and f.id not in among):
            continue
        key = (scope.module, f.name)
        if key not in memo:
            memo[key] = _drivers_of(index, scope.module, f.name)
        out.extend((f.id, what, home) for what, home in memo[key])
    return tuple(out)


def _drivers_of(index: ProjectIndex, module: str, name: str) -> tuple[tuple[str, str], ...]:
    """(what drives it, the module) for each other project module whose framework calls the
    function `name` of `module` per batch."""
    target = f"{module}.{name}"
    out = []
    # (a module that hands a function to an Engine names Ignite)
    for home, other in _others(index, module, name, "ignite"):
        for text, what in other.drives:
            if text.rpartition(".")[2] == name and target in index.resolve(home, text):
                out.append((what, home))
    return tuple(dict.fromkeys(out))


def has_open_steps(facts: TrainingFacts) -> bool:
    return any(e.kind == "open_step" for fn in facts.functions for e in iter_events(fn.body))


def bind_callers(facts: TrainingFacts | None, scope: Scope | None) -> TrainingFacts | None:
    """The facts with every `open_step` decided: `o.step()` in `def train_step(model, o, loss)`
    is an optimizer's step when every call of `train_step` in the project passes an optimizer
    for `o` (`Value.kind`), `s.step(o)` a scaler's step when every call passes a scaler for `s`
    (for a method, `trainer.train_step(opt, loss)`, the calls the project's call graph finds);
    otherwise (no caller, callers that disagree, a caller we cannot read, the function read as
    a value) it is no step at all, as in a file checked without its callers."""
    if facts is None or not has_open_steps(facts):
        return facts
    functions = tuple(dataclasses.replace(fn, body=_bind_block(fn.body, fn, scope)) for fn in facts.functions)
    return dataclasses.replace(facts, functions=functions)


def _bind_block(block: Block, fn: Function, scope: Scope | None) -> Block:
    items: list[Block | Event] = []
    changed = False
    for it in block.items:
        if isinstance(it, Block):
            new = _bind_block(it, fn, scope)
            changed |= new is not it
            items.append(new)
        elif it.kind == "open_step":
            changed = True
            items.extend(_decided(it, fn, scope))
        else:
            items.append(it)
    return dataclasses.replace(block, items=tuple(items)) if changed else block


def _decided(ev: Event, fn: Function, scope: Scope | None) -> tuple[Event, ...]:
    kind = _passed_kind(scope, fn, ev.param) if scope is not None and scope.module else None
    args = dict(ev.args)
    base = dataclasses.replace(ev, kind="step", param="", args=())
    if kind == "scaler":
        opt = args.get("optimizer") or args.get("0")
        if ev.name != "step" or opt is None:
            return ()  # a scaler steps the optimizer it is given
        return (dataclasses.replace(base, via="scaler", target=opt.text, scaler=ev.target, name=""),)
    if kind == "optimizer":
        closure = args.get("closure") or (args.get("0") if ev.name == "step" else None)
        clears = "zero_grad" in args and args["zero_grad"].text == "True"
        step = dataclasses.replace(base, via="sam" if ev.name != "step" else "optimizer",
                                   name=closure.text if closure is not None else "", clears=clears)
        if clears:
            return step, dataclasses.replace(base, kind="clear", via="zero_grad", name="")
        return (step,)
    return ()


def config_threshold(value: Value, fn: Function, scope: Scope | None, facts: TrainingFacts | None = None) -> Value:
    """A threshold read from an attribute of `fn`'s parameter (`cfg.grad_clip`, Value.param) as
    every call of `fn` in the project passes it: the number of that field of the config object
    each call builds (`train(model, Cfg())`), when they all agree; `value` as it is else (no
    caller, a caller passing something else, callers that disagree). An attribute of `self.cfg`,
    which the class's `__init__` (in `facts`) sets from its parameter and nothing else binds, is
    read as every construction of the class in the project passes it (`Trainer(model, Cfg())`)."""
    if not value.param or value.number is not None or scope is None or not scope.module:
        return value
    # the object the parameter or `self` holds, and the field's path in it (`optim.grad_clip`
    # of `cfg.optim.grad_clip`: a config the caller's config holds)
    parts = value.param.split(".")
    cut = 2 if parts[0] == "self" else 1
    held, attr = ".".join(parts[:cut]), ".".join(parts[cut:])
    if held.startswith("self."):
        calls = _constructed_with(scope, fn, held, facts) if facts is not None else None
    else:
        calls = _passed(scope, fn, held)
    if not calls or not attr or not held:
        return value
    found: set[tuple[float, str]] = set()
    for passed in calls:
        fields = dict(passed.fields) if passed is not None else {}
        if attr not in fields:
            return value
        found.add((fields[attr], passed.origin))
    if len({n for n, _ in found}) != 1:
        return value
    number, cls = min(found)
    return dataclasses.replace(value, number=number, source="config", origin=f"{cls}.{attr}")


def init_param(facts: TrainingFacts, fn: Function, text: str) -> tuple[str, int] | None:
    """(parameter, position after self) of the `__init__` of `fn`'s class that `text` is in a
    method of it: that parameter itself (an optimizer built there from `model.parameters()`), or
    `self.X` when __init__ binds it to the parameter, and nothing else binds it."""
    if fn.cls is None:
        return None
    init = next((f for f in facts.functions if f.cls == fn.cls and f.name == "__init__" and f.parent == 0), None)
    if init is None or len(init.params) < 2:
        return None
    params = list(init.params)[1:]
    if text.startswith("self.") and text.count(".") == 1:
        binds = [a for a in facts.assigns if a.target == text and a.kind != "append"]
        if len(binds) != 1 or binds[0].func != init.id or binds[0].calls or len(binds[0].uses) != 1:
            return None
        text = binds[0].uses[0]
    return (text, params.index(text)) if text in params else None


def _constructed_with(scope: Scope, fn: Function, held: str, facts: TrainingFacts) -> list[Value | None] | None:
    """What each construction of `fn`'s class in the project passes for the `__init__` parameter
    that `held` (`self.cfg`) is bound to (init_param); None when that is not one parameter or not
    every construction can be known."""
    got = init_param(facts, fn, held) if held.startswith("self.") else None
    if got is None:
        return None
    param, position = got
    calls = _constructions(scope.index, scope.module, fn.cls)
    if calls is None or any("*" in args for args in calls):
        return None
    return [args.get(param) or args.get(str(position)) for args in calls]


def _constructions(index: ProjectIndex, module: str, cls: str) -> list[dict[str, Value]] | None:
    """What each call of the class `cls` of `module` passes, over the project (the numerics call
    graph counts them in each calling file; the loop facts of that file give what they pass);
    None when not every one can be read. Memoised per run."""
    memo = index.memos.setdefault("training_constructions", {})
    key = (module, cls)
    if key not in memo:
        memo[key] = _find_constructions(index, module, cls)
    return memo[key]


def _find_constructions(index: ProjectIndex, module: str, cls: str) -> list[dict[str, Value]] | None:
    from gradlint.facts.callgraph import project_calls

    graph = project_calls(index, module, f"{cls}.__init__")
    if graph is None:
        return None
    counted: dict[str, int] = {}
    for home, _args in graph:
        counted[home] = counted.get(home, 0) + 1
    target = f"{module}.{cls}"
    out: list[dict[str, Value]] = []
    for home in sorted(counted):
        mod = index.calling(home, loops=True)
        facts = mod.facts.training if mod is not None else None
        if not isinstance(facts, TrainingFacts) or not facts.functions:
            return None
        found = 0
        for caller in facts.functions:
            for ev in iter_events(caller.body):
                if ev.kind == "invoke" and not ev.ref and ev.target and (
                        (home == module and ev.target == cls) or target in index.resolve(home, ev.target)):
                    out.append(dict(ev.args))
                    found += 1
        if found != counted[home]:
            return None  # a construction the loop facts did not record, or one they count twice
    return out


def _passed(scope: Scope, fn: Function, param: str) -> list[Value | None] | None:
    """What each call of `fn` in the project passes for `param` (None where a call passes
    nothing for it); None when not every call can be known, or a call passes `*args`."""
    if param not in fn.params:
        return None
    position = fn.params.index(param)
    if fn.cls is not None:
        position -= 1  # a call passes what follows `self` (the receiver is not an argument)
        calls = _method_calls_of(scope.index, scope.module, fn)
    else:
        calls = _calls_of(scope.index, scope.module, fn)
    if calls is None or any("*" in args for args in calls):
        return None
    return [args.get(param) or args.get(str(position)) for args in calls]


def _passed_kind(scope: Scope, fn: Function, param: str) -> str | None:
    """'optimizer' or 'scaler' when every call of `fn` (a top-level function of the scope's
    module, or a method of one of its top-level classes) in the project passes one for `param`;
    None else."""
    calls = _passed(scope, fn, param)
    if not calls:
        return None
    kinds = {value.kind if value is not None else "" for value in calls}
    kind = kinds.pop() if len(kinds) == 1 else ""
    return kind or None


def _calls_of(index: ProjectIndex, module: str, fn: Function) -> list[dict[str, Value]] | None:
    """What each call of the top-level function `fn` of `module` passes, over the project (the
    files whose text names it, as facts.numerics finds callers); None when not every call can
    be known. Memoised per run (ProjectIndex.memos: the result cache records what it read)."""
    memo = index.memos.setdefault("training_calls_of", {})
    key = (module, fn.name, fn.id)
    if key not in memo:
        memo[key] = _find_calls(index, module, fn)
    return memo[key]


def _find_calls(index: ProjectIndex, module: str, fn: Function) -> list[dict[str, Value]] | None:
    name = fn.name
    target = f"{module}.{name}"
    mentions = index.mentioning(name)
    if len(mentions) > MAX_CALLER_MODULES:
        return None
    out: list[dict[str, Value]] = []
    for home in sorted({module, *mentions}, key=lambda n: (not index.known(n), n)):
        mod = index.calling(home, loops=True)
        facts = mod.facts.training if mod is not None else None
        numerics = mod.facts.numerics if mod is not None else None
        if not isinstance(facts, TrainingFacts) or not facts.functions or numerics is None \
                or name in numerics.references:
            return None  # a file that names it and was not read, or reads it as a value
        found = 0
        for caller in facts.functions:
            for ev in iter_events(caller.body):
                if ev.kind == "call" and home == module and not ev.ref and ev.callees == (fn.id,):
                    out.append(dict(ev.args))
                    found += 1
                elif ev.kind == "invoke" and not ev.ref and ev.target.rpartition(".")[2] == name \
                        and (home != module or "." in ev.target) and target in index.resolve(home, ev.target):
                    out.append(dict(ev.args))
                    found += 1
        if not found and home != module and any(
                call.callee.rpartition(".")[2] == name and target in index.resolve(home, call.callee)
                for f in numerics.functions for call in f.calls):
            return None  # a call the loop facts did not record (in a class body, an assert...)
    return out


def _method_calls_of(index: ProjectIndex, module: str, fn: Function) -> list[dict[str, Value]] | None:
    """What each call of method `fn` (of the top-level class `fn.cls` of `module`) passes, over
    the project; None when not every call can be known. Memoised per run, as _calls_of."""
    memo = index.memos.setdefault("training_method_calls_of", {})
    key = (module, fn.cls, fn.name, fn.id)
    if key not in memo:
        memo[key] = _find_method_calls(index, module, fn)
    return memo[key]


def _find_method_calls(index: ProjectIndex, module: str, fn: Function) -> list[dict[str, Value]] | None:
    """Which calls in the project run `C.m` is the numerics call graph's answer
    (facts.numerics: every call whose receiver's class the caller knows, `trainer.m(...)`,
    `self.trainer.m(...)`, `self.m(...)` in the class; unknown when a call's receiver is of
    unknown class, when the method is read as a value, overridden in a subclass, may be called by
    a library base class, or more than 64 files name it). What those calls pass is read from the
    loop facts of each calling file: its `invoke`s and `call`s of the method, on an instance of
    the class (`ref`) or on `self` in the class itself. A calling file where the loop facts hold
    fewer such calls than the call graph counts (a call in a class body, an `assert`, a
    `Trainer(cfg).m(...)`, no loop facts at all) is a caller we cannot read."""
    from gradlint.facts.callgraph import project_calls

    owner = f"{module}.{fn.cls}"
    if index.mentioning("]." + fn.name) or index.mentioning(")." + fn.name):
        # `self.trainers[0].m(...)`, `(a or b).m(...)`: receivers the call graph records no
        # edge for, which may be instances of the class
        return None
    graph = project_calls(index, module, f"{fn.cls}.{fn.name}")
    if graph is None:
        return None
    counted: dict[str, int] = {}
    for home, _args in graph:
        counted[home] = counted.get(home, 0) + 1
    out: list[dict[str, Value]] = []
    for home in sorted(counted):
        mod = index.calling(home, loops=True)
        facts = mod.facts.training if mod is not None else None
        if not isinstance(facts, TrainingFacts) or not facts.functions:
            return None
        found = 0
        for caller in facts.functions:
            for ev in iter_events(caller.body):
                if ev.kind not in ("invoke", "call") or ev.name != fn.name:
                    continue
                if ev.ref:
                    if owner not in index.resolve(home, ev.ref):
                        continue
                elif not (home == module and ev.kind == "call" and ev.callees == (fn.id,)):
                    continue
                out.append(dict(ev.args))
                found += 1
        if found < counted[home]:
            return None  # a call the loop facts did not record
    return out
