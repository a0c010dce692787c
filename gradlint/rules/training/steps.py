"""Training steps found in loop facts: what the GL2xx rules share (not a rule itself).

A *step* is the code from `backward()` to the optimizer step. Steps live in loops (a loop body
whose events, after following calls into functions of the same file, hold a backward and a step)
and in step functions (a function holding both outside any loop of its own; `repeated` when a loop
of the file calls it). Events are flattened in source order, each with the `if` branches
(guards) and loops around it, so that rules can ask "is this clip between backward and step?" or
"is this clip under the same accumulation guard as the step?".
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Iterator

from gradlint.facts.training import (Assign, Block, Event, Function, TrainingFacts, Value, bind_callers,
                                     driven_elsewhere, inherited_manual, iter_events, manual_elsewhere,
                                     method_id)
from gradlint.findings import Finding
from gradlint.registry import Rule, RuleContext
from gradlint.text import lines_between

INLINE_DEPTH = 2


@dataclass(frozen=True)
class Guard:
    key: tuple[int, int]  # (inlining instance, if-block id)
    branch: int
    test: str
    accum: bool
    loops: tuple  # loops around the `if` itself
    skip: bool = False  # the guard `if test: continue` makes (Block.skip; test reads `not (test)`)


@dataclass(frozen=True)
class Accumulating:
    """A `with X.accumulate(...)` block (Accelerate's gradient accumulation) around an event:
    inside it the prepared optimizer steps and clears only when `X.sync_gradients` is true."""

    key: tuple[int, int]  # (inlining instance, with-block id)
    receiver: str  # X as the flattened function reads it
    loops: tuple  # loops around the `with` itself
    guards: tuple = ()  # the `if` branches around the `with` itself (Guard)


@dataclass(frozen=True)
class Flat:
    event: Event
    order: int
    guards: tuple[Guard, ...]
    loops: tuple  # (inlining instance, loop block id), outermost first
    depth: int  # 0: written in the function being flattened; >0: inlined from a call
    # the event's optimizer (or cleared object) and scaler as the flattened function reads them:
    # `optimizer` inside `NativeScaler.__call__` is the `opt` the loop passes. `event` keeps the
    # names as written (messages, fixes), except for a body read from another file.
    target: str = ""
    scaler: str = ""
    # the `with X.accumulate(...)` blocks around the event, outermost first
    accumulating: tuple[Accumulating, ...] = ()


@dataclass
class Context:
    function: Function
    loop: tuple | None  # None: a step function
    events: list[Flat]
    repeated: bool
    # a step function a framework calls once per batch (TrainingFacts.driven): what calls it
    driven: str = ""
    # the project modules whose framework drives it, when not this file (`Engine(update)` in
    # train.py): their hooks may clear between its calls
    drivers: tuple[str, ...] = ()
    _at: dict[int, int] | None = dataclasses.field(default=None, repr=False, compare=False)  # id(event) -> position

    def of(self, *kinds: str) -> list[Flat]:
        return [f for f in self.events if f.event.kind in kinds]

    def before(self, f: Flat) -> Iterator[Flat]:
        """The events before `f` (one of this context's), nearest first: a rule that looks for
        the nearest mark of some kind walks out from `f` and stops there (filtering every event
        of a long loop for each of its steps was quadratic)."""
        events, i = self.events, self._position(f)
        return (events[k] for k in range(i - 1, -1, -1))

    def after(self, f: Flat) -> Iterator[Flat]:
        """The events after `f`, in order."""
        events, i = self.events, self._position(f)
        return (events[k] for k in range(i + 1, len(events)))

    def _position(self, f: Flat) -> int:
        if self._at is None:
            self._at = {id(e): i for i, e in enumerate(self.events)}
        return self._at[id(f)]


def within(c: Context, loops: tuple) -> bool:
    """Whether something inside `loops` (a guard's, an event's) runs within the context's
    iteration: inside its loop, or anywhere in a function a framework calls once per batch (the
    loop the framework runs is around all of it)."""
    return c.loop in loops if c.loop is not None else bool(c.driven)


def directly(c: Context, loops: tuple) -> bool:
    """Whether something inside `loops` runs once per iteration of the context, in no loop of its
    own: directly in the context's loop, or outside any loop of a driven function."""
    if c.loop is not None:
        return bool(loops) and loops[-1] == c.loop
    return bool(c.driven) and not loops


def home(facts: TrainingFacts, context: Context) -> Function:
    """The function whose names the context's steps read: the one every step event is in (a step
    function called from the context's loop, `if __name__ == "__main__": train_mlp(2)`), else the
    context's own. Its locals are its own, not another function's of the same name."""
    funcs = {f.event.func for f in context.of("step")}
    if len(funcs) == 1:
        fid = funcs.pop()
        if 0 <= fid < len(facts.functions) and facts.functions[fid].id == fid:
            return facts.functions[fid]
    return context.function


def compatible(a: Flat, b: Flat) -> bool:
    """Whether two events can run in the same iteration: no `if` sends them down different
    branches (two `if`s with the same test text are taken to go the same way)."""
    mine = {g.key: g for g in a.guards}
    by_test = {g.test: g.branch for g in a.guards if g.test and g.test != "try"}
    for g in b.guards:
        other = mine.get(g.key)
        if other is not None and other.branch != g.branch:
            return False
        if other is None and g.test in by_test and g.test != "try" and by_test[g.test] != g.branch:
            return False
    return True


# Events that make a clip helper more than a hand-written copy of torch's clip.
_NOT_A_COPY = frozenset({"clip", "unscale", "call", "invoke", "step", "backward"})


@dataclass(frozen=True)
class _Frame:
    """Where the flattener reads: the file's facts (function ids are per file), the project
    index as that file sees it, what the parameters of the function being inlined stand for at
    its call site, and the call site itself when the body comes from another file (its events
    then take the call's place: a finding or fix cannot point into a file the run is not on)."""

    facts: TrainingFacts
    scope: object = None
    bind: tuple[tuple[str, Value], ...] = ()
    site: Event | None = None
    inst: int = 0
    depth: int = 0


class _Flattener:
    def __init__(self, facts: TrainingFacts, index=None) -> None:
        self.facts = facts
        self.index = index
        self.instances = 0
        self.called_from_loop: set[int] = set()
        self._foreign: dict[tuple, tuple | None] = {}
        self._written: dict[tuple, frozenset[str]] = {}

    def flatten(self, fn: Function) -> list[Flat]:
        out: list[Flat] = []
        self._block(fn.body, _Frame(self.facts, self.index), (), (), ((id(self.facts), fn.id),), out)
        return out

    def _block(self, block: Block, fr: _Frame, guards: tuple, loops: tuple, stack: tuple, out: list,
               held: tuple = ()) -> None:
        for item in block.items:
            if isinstance(item, Block):
                if item.kind == "loop":
                    self._block(item, fr, guards, loops + ((fr.inst, item.id),), stack, out, held)
                elif item.kind == "if":
                    taken = _decide(item, fr.bind) if fr.bind else None
                    if taken is not None:
                        # the call site fixes the test (`clip_grad=None` not passed): one way only
                        self._block(item.items[taken], fr, guards, loops, stack, out, held)
                        continue
                    test = _substitute(item.test, fr.bind)
                    for i, alt in enumerate(item.items):
                        g = Guard((fr.inst, item.id), i, test, item.accum, loops, item.skip)
                        self._block(alt, fr, guards + (g,), loops, stack, out, held)
                elif item.accumulates:
                    a = Accumulating((fr.inst, item.id), _substitute(item.accumulates, fr.bind), loops, guards)
                    self._block(item, fr, guards, loops, stack, out, held + (a,))
                else:
                    self._block(item, fr, guards, loops, stack, out, held)
                continue
            if item.kind == "clip" and item.via == "helper" and fr.scope is not None:
                if self._copied_clip(fr.scope, item.name):
                    item = dataclasses.replace(item, via="torch")
                elif self._clips(self._foreign_function(fr.scope, item.name), fr, stack):
                    # `clip_gradients(model, 1.0)` of another file that calls torch's clip (and
                    # maybe unscales first): read as what it runs, which a rule of scaled
                    # gradients (GL203) needs, not as a clip of unknown kind
                    item = dataclasses.replace(item, kind="invoke", via="", target=item.name)
                elif (base := self._inherited(fr, item, stack)) is not None:
                    # `self.clip_gradients_()` defined by a base class of another file (a mixin)
                    item = dataclasses.replace(item, kind="invoke", via="", target=item.name, ref=base,
                                               name=item.name[5:])
            ev, bound = _rebind(item, fr)
            inline = self._targets(item, fr, stack)
            if ev.kind == "step" and inline and fr.depth < INLINE_DEPTH:
                # a closure runs inside the step, before the update
                self._inline(inline, item, fr, guards, loops, stack, out, held)
            out.append(Flat(ev, len(out), guards, loops, fr.depth, bound.target, bound.scaler, held))
            if ev.kind in ("call", "invoke") and inline and fr.depth < INLINE_DEPTH:
                self._inline(inline, item, fr, guards, loops, stack, out, held)

    def _targets(self, ev: Event, fr: _Frame, stack: tuple) -> tuple | None:
        """(facts, function id, scope) of what a call runs, when it can be read; None else."""
        local = [c for c in ev.callees if 0 <= c < len(fr.facts.functions) and (id(fr.facts), c) not in stack]
        if local:
            return fr.facts, local[0], fr.scope
        if ev.kind not in ("call", "invoke") or ev.callees or fr.scope is None:
            return None
        if not ev.ref:
            # `do_clip(model.parameters(), 1.0)`, a function another file of the project defines
            found = self._foreign_function(fr.scope, ev.target) if ev.kind == "invoke" and ev.target else None
        else:
            found = self._foreign_method(fr.scope, ev.ref, ev.name)
        if found is None or (id(found[0]), found[1]) in stack:
            return None
        return found

    def _foreign_method(self, scope, ref: str, name: str) -> tuple | None:
        """Method `name` of the project class `ref` (as written in the file `scope` sees) when
        another file of the project defines it: timm's `NativeScaler.__call__`."""
        key = (getattr(scope, "module", ""), ref, name)
        if key in self._foreign:
            return self._foreign[key]
        self._foreign[key] = None
        for q in scope.resolve(ref):
            module, _, cls = q.rpartition(".")
            mod = scope.index.module(module) if module else None
            facts = getattr(getattr(mod, "facts", None), "training", None)
            if not isinstance(facts, TrainingFacts):
                continue
            fid = method_id(facts, cls, name)
            if fid is not None:
                self._foreign[key] = (facts, fid, scope.at(q))
                break
        return self._foreign[key]

    def _foreign_function(self, scope, name: str) -> tuple | None:
        """The top-level function `name` (as written in the file `scope` sees: `do_clip`,
        `hooks.do_clip`) when another file of the project defines it."""
        key = (getattr(scope, "module", ""), name, "function")
        if key in self._foreign:
            return self._foreign[key]
        self._foreign[key] = None
        for q in scope.resolve(name):
            module, _, local = q.rpartition(".")
            if module == getattr(scope, "module", None):
                continue  # this file's own: its calls are `call` events
            # (`calling`: a helper file that never names torch is read for its calls too)
            mod = scope.index.calling(module) if module else None
            facts = getattr(getattr(mod, "facts", None), "training", None)
            if not isinstance(facts, TrainingFacts):
                continue
            fn = next((f for f in facts.functions if f.name == local and f.cls is None and f.parent == 0), None)
            if fn is not None:
                self._foreign[key] = (facts, fn.id, scope.at(q))
                break
        return self._foreign[key]

    @staticmethod
    def _clips(target: tuple | None, fr: _Frame, stack: tuple) -> bool:
        """Whether the function `target` (facts, id, scope) will be read in place of a clip helper
        and brings a clip of its own: it is inlined here (within the depth, not on the stack) and
        its body calls a clip, itself or through the functions of its file it calls, as deep as
        they will be inlined. A helper that clips by hand, or one read no deeper, stays a clip."""
        if target is None or fr.depth >= INLINE_DEPTH or (id(target[0]), target[1]) in stack:
            return False
        facts = target[0]
        level, seen = [target[1]], {target[1]}
        for _ in range(INLINE_DEPTH - fr.depth):
            below = []
            for fid in level:
                for e in iter_events(facts.functions[fid].body):
                    if e.kind == "clip":
                        return True
                    if e.kind == "call" and not e.ref:
                        below.extend(c for c in e.callees if 0 <= c < len(facts.functions) and c not in seen)
            seen.update(below)
            level = below
        return False

    def _inherited(self, fr: _Frame, ev: Event, stack: tuple) -> str | None:
        """The base class (as written) of another file that defines the method `self.m` an event
        of a method calls, when the method's own class does not: a mixin's helper."""
        if not ev.name.startswith("self.") or ev.name.count(".") != 1 or not 0 <= ev.func < len(fr.facts.functions):
            return None
        cls = fr.facts.functions[ev.func].cls
        if cls is None:
            return None
        bases = dict(fr.facts.classes).get(cls, ())
        for base in bases:
            if base not in dict(fr.facts.classes) and self._clips(
                    self._foreign_method(fr.scope, base, ev.name[5:]), fr, stack):
                return base
        return None

    def _copied_clip(self, scope, name: str) -> bool:
        """`clip_grad_norm_` imported from a module of the project that clips by hand (no torch
        clip, unscale or other call inside): a clip like torch's, so GL203 applies to it."""
        key = (getattr(scope, "module", ""), name, "copied-clip")
        if key not in self._foreign:
            self._foreign[key] = None
            for q in scope.resolve(name):
                module, _, local = q.rpartition(".")
                mod = scope.index.module(module) if module else None
                facts = getattr(getattr(mod, "facts", None), "training", None)
                if not isinstance(facts, TrainingFacts):
                    continue
                fn = next((f for f in facts.functions if f.name == local and f.cls is None and f.parent == 0), None)
                if fn is not None:
                    # (a clip by hand, `p.grad.mul_(coef)`, is what a copy of torch's clip holds)
                    kinds = {e.kind for e in iter_events(fn.body) if not (e.kind == "clip" and e.via == "hand")}
                    self._foreign[key] = () if kinds.isdisjoint(_NOT_A_COPY) else None
                    break
        return self._foreign[key] is not None

    def _assigned(self, facts: TrainingFacts, fid: int) -> frozenset[str]:
        key = (id(facts), fid)
        found = self._written.get(key)
        if found is None:
            # (an append changes the container a parameter holds, not what the parameter names)
            found = self._written[key] = frozenset(a.target for a in facts.assigns if a.func == fid and a.kind != "append")
        return found

    def _inline(self, target: tuple, ev: Event, fr: _Frame, guards: tuple, loops: tuple, stack: tuple, out: list,
                held: tuple = ()) -> None:
        facts, fid, scope = target
        if loops and facts is self.facts:
            self.called_from_loop.add(fid)
        self.instances += 1
        fn = facts.functions[fid]
        site = fr.site if fr.site is not None else (ev if facts is not self.facts else None)
        inner = _Frame(facts, scope, _binding(fn, ev, fr.bind, self._assigned(facts, fid)), site, self.instances,
                       fr.depth + 1)
        self._block(fn.body, inner, guards, loops, stack + ((id(facts), fid),), out, held)


def _binding(fn: Function, ev: Event, outer: tuple, assigned: frozenset[str]) -> tuple[tuple[str, Value], ...]:
    """What each parameter of `fn` stands for at call `ev`: the argument passed (read through the
    caller's own binding when it is inlined itself), else the default when nothing hides it. A
    parameter the body assigns (`clip = clip or default`) stands for nothing known."""
    params = list(fn.params)
    out: dict[str, Value] = {}
    if fn.cls is not None and params and params[0] in ("self", "cls"):
        receiver = ev.target[: -len(ev.name) - 1] if ev.target.endswith("." + ev.name) else ev.target
        if ev.name == "__call__" or receiver != ev.target:
            out[params[0]] = Value(_substitute(receiver, outer))
        params = params[1:]
    args = dict(ev.args)
    star = "*" in args
    defaults = dict(fn.defaults)
    for i, p in enumerate(params):
        if p in assigned:
            continue
        value = args.get(p, args.get(str(i)))
        if value is not None:
            out[p] = _rebind_value(value, outer)
        elif not star and p in defaults:
            out[p] = Value(defaults[p], source="default")
    return tuple(out.items())


_TEST = re.compile(r"(not\s+)?([A-Za-z_]\w*)(\s+is(\s+not)?\s+None)?")


def _decide(block: Block, bind: tuple) -> int | None:
    """The branch an `if` on a parameter takes when the call site fixes it (`if clip_grad is not
    None:` with nothing passed for `clip_grad=None`); None when it depends on the run."""
    m = _TEST.fullmatch(block.test.strip())
    if m is None or len(block.items) != 2:
        return None
    value = dict(bind).get(m.group(2))
    if value is None:
        return None
    text = value.text.strip()
    if text == "None":
        none, truth = True, False
    elif text in ("True", "False"):
        none, truth = False, text == "True"
    elif value.source == "literal" and value.number is not None:
        none, truth = False, value.number != 0
    else:
        return None
    if m.group(3):
        result = none if not m.group(4) else not none
        if m.group(1):
            result = not result
    else:
        result = truth != bool(m.group(1))
    return 0 if result else 1


def _substitute(text: str, bind: tuple) -> str:
    """`text` with each parameter name replaced by what the call site passes."""
    if not bind or not text:
        return text
    table = {k: v.text for k, v in bind if v.text}
    if not table:
        return text
    pattern = re.compile(r"(?<![\w.])(" + "|".join(re.escape(k) for k in table) + r")(?!\w)")
    return pattern.sub(lambda m: table[m.group(1)], text)


def _rebind_value(value: Value | None, bind: tuple) -> Value | None:
    if value is None or not bind:
        return value
    bound = dict(bind).get(value.text)
    if bound is not None and bound.text:
        return dataclasses.replace(bound, guarded=bound.guarded or value.guarded)
    text = _substitute(value.text, bind)
    return value if text == value.text else dataclasses.replace(value, text=text)


def _rebind(ev: Event, fr: _Frame) -> tuple[Event, Event]:
    """An inlined event: as shown (its own names, a threshold as passed; from another file, all
    as the call site reads it, at the call) and as the call site reads it."""
    if not fr.bind and fr.site is None:
        return ev, ev
    values: dict = {}
    names: dict = {}
    if fr.bind:
        for name in ("target", "scaler"):
            text = _substitute(getattr(ev, name), fr.bind)
            if text != getattr(ev, name):
                names[name] = text
        for name in ("value", "norm_type"):
            value = _rebind_value(getattr(ev, name), fr.bind)
            if value is not getattr(ev, name):
                values[name] = value
    bound = dataclasses.replace(ev, **values, **names) if values or names else ev
    if fr.site is not None:
        shown = dataclasses.replace(bound, span=fr.site.span, stmt=-1, func=fr.site.func,
                                    nograd=ev.nograd or fr.site.nograd)
        return shown, shown
    return (dataclasses.replace(ev, **values) if values else ev), bound


def contexts(facts: TrainingFacts | None, index=None) -> list[Context]:
    """Every training step of a file: innermost loops holding a backward and a step, then step
    functions. A step function called from a loop appears in both (rules dedupe by location).
    With the project index (`ctx.index`), methods of project classes defined in other files are
    read too (a timm `NativeScaler` instance called in the loop), and a step on a parameter is
    one when every caller in the project passes an optimizer or a scaler for it (bind_callers)."""
    facts = bind_callers(facts, index)
    if facts is None:
        return []
    flattener = _Flattener(facts, index)
    flats = {fn.id: flattener.flatten(fn) for fn in facts.functions}
    out: list[Context] = []
    for fn in facts.functions:
        flat = flats[fn.id]
        if not any(f.event.kind == "backward" for f in flat) or not any(f.event.kind == "step" for f in flat):
            continue
        loop_ids: list[tuple] = []
        for f in flat:
            for lp in f.loops:
                if lp not in loop_ids:
                    loop_ids.append(lp)
        candidates = []
        for lp in loop_ids:
            inside = [f for f in flat if lp in f.loops]
            if any(f.event.kind == "backward" for f in inside) and any(f.event.kind == "step" for f in inside):
                candidates.append((lp, inside))
        for lp, inside in candidates:
            # innermost only: a loop that holds another candidate loop is not the step's loop
            encloses_another = any(
                other != lp and any(lp in f.loops[:f.loops.index(other)] for f in other_inside)
                for other, other_inside in candidates)
            if not encloses_another:
                out.append(Context(fn, lp, inside, True))
        if any(f.event.kind == "step" and not f.loops for f in flat):
            out.append(Context(fn, None, flat, False))
    driven = dict(facts.driven + manual_elsewhere(facts, index))
    drivers: dict[int, tuple[str, ...]] = {}
    open_ids = frozenset(c.function.id for c in out if c.loop is None and c.function.id not in driven)
    if open_ids:
        for fid, what, home in driven_elsewhere(facts, index, open_ids) + inherited_manual(facts, index, open_ids):
            driven.setdefault(fid, what)
            if home and (index is None or home != index.module):
                drivers[fid] = drivers.get(fid, ()) + (home,)
    for c in out:
        if c.loop is None:
            c.driven = driven.get(c.function.id, "")
            c.drivers = drivers.get(c.function.id, ())
            c.repeated = bool(c.driven) or c.function.id in flattener.called_from_loop
    return out


def flatten(facts: TrainingFacts, fn: Function, index=None) -> list[Flat]:
    """The events of `fn` with the calls it makes read in place (this file's functions and
    methods, and with the project index those of other files), as `contexts` reads them."""
    return _Flattener(facts, index).flatten(fn)


def step_text(ev: Event) -> str:
    """A step as the user wrote it, for messages: `opt.step()`, `scaler.step(opt)`, SAM's second step."""
    if ev.via == "scaler":
        return f"{ev.scaler}.step({ev.target})"
    return f"{ev.target}.{'second_step' if ev.via == 'sam' else 'step'}()"


def guard_condition(g: Guard) -> tuple[str, bool]:
    """When the code under a guard runs, for a message, and whether that code is the `if`'s own
    body. `if (i + 1) % k != 0: continue` before a step reads as a guard `not (...)` over the
    rest of the loop (source.loops), and code on another branch runs when the test is false:
    both are worded "`test` is false"."""
    test = g.test
    negated = g.skip and test.startswith("not (") and test.endswith(")")
    if g.branch == 0 and not negated:
        return f"`{test}`", True
    return f"`{test[5:-1] if negated and g.branch == 0 else test}` is false", False


def last_pass(facts: TrainingFacts, step: Flat, g: Guard, last: bool = False) -> bool:
    """Whether guard `g` of a step picks one pass of the `for` loop around the step by its
    variable (`micro == k - 1`, `micro + 1 == k`, `i == len(batches) - 1`): the step then runs
    once per pass of the loop outside, as under an accumulation guard. `last`: the loop's last
    pass only (`micro == k - 1`, `micro + 1 == k`; not `micro == 0`)."""
    loop = innermost_for(facts, step.event.span.line)
    if g.branch != 0 or loop is None or not (len(loop.assigned) == 1 or "enumerate" in loop.used and loop.assigned):
        return False
    var = re.escape(loop.assigned[0])  # (of `for i, batch in enumerate(...)`, the count)
    if last:
        return re.fullmatch(rf"\(?{var}\s*\+\s*1\)?\s*==\s*[^=]+|{var}\s*==\s*[^=]+-\s*1", g.test) is not None
    return re.fullmatch(rf"\(?{var}(\s*\+\s*1)?\)?\s*==\s*[^=]+", g.test) is not None


def innermost_for(facts: TrainingFacts, line: int):
    """The innermost `for` statement (a Stmt) around a line, or None."""
    loops = [st for st in facts.stmts if st.kind == "for" and st.line < line <= st.end_line]
    return max(loops, key=lambda st: st.line) if loops else None


def step_text_near(step: Flat, near: Flat) -> str:
    """step_text with the names as `near`'s line reads them: an inlined method's
    `self.optimizer.step()` is `trainer.optimizer.step()` beside a clip in the loop."""
    ev = step.event
    if near.depth == 0 and step.depth > 0 and (step.target or step.scaler):
        ev = dataclasses.replace(ev, target=step.target or ev.target, scaler=step.scaler or ev.scaler)
    return step_text(ev)


def is_measuring(ev: Event) -> bool:
    """`clip_grad_norm_(params, inf)` measures the norm; it clips nothing."""
    return ev.kind == "clip" and ev.value is not None and ev.value.number is not None and math.isinf(ev.value.number) \
        and ev.value.number > 0


def assigns_to(facts: TrainingFacts, target: str, kinds: tuple[str, ...] | None = None) -> list[Assign]:
    return [a for a in facts.assigns if a.target == target and (kinds is None or a.kind in kinds)]


def stmt_text(source: str, facts: TrainingFacts, sid: int) -> str:
    st = facts.stmts[sid]
    return lines_between(source, st.line, st.end_line)


def dedupe(findings: Iterator) -> Iterator:
    seen = set()
    for f in findings:
        key = (f.span, f.message)
        if key not in seen:
            seen.add(key)
            yield f


# ---------------------------------------------------------------------------------------------
# Which model a step trains (whether it needs clipping: model_risk.py)


def methods_of(facts: TrainingFacts, cls: str) -> set[int]:
    """The ids of the functions of the file that are methods of class `cls`."""
    return {f.id for f in facts.functions if f.cls == cls}


def scoped_assigns(facts: TrainingFacts, target: str, kinds: tuple[str, ...] | None, fn: Function | None) -> list[Assign]:
    """`assigns_to`, where a parameter of `fn` is that function's own name: only what `fn`
    binds to it counts (`def train_head(head, opt)` is not the module's `opt = Adam(model...)`;
    what its callers pass is `passed_model_risk`'s). So too for a plain name `fn` binds itself:
    it is local to `fn` (`model = MLP()` in one function is not another's `model = LM()`)."""
    made = assigns_to(facts, target, kinds)
    if fn is not None and target in fn.params:
        made = [a for a in made if a.func == fn.id]
    elif fn is not None and fn.parent is not None and "." not in target:
        own = [a for a in assigns_to(facts, target, None) if a.func == fn.id]
        if own:
            made = [a for a in made if a.func == fn.id]
    elif fn is not None and fn.cls is not None and target.startswith("self."):
        # `self.opt` in a method is its own class's attribute, not another class's of the file
        methods = methods_of(facts, fn.cls)
        if any(a.func in methods for a in assigns_to(facts, target, None)):
            made = [a for a in made if a.func in methods]
    return made


# The last file's (facts, lines of its top-level simple statements, (line, end) of its loops):
# `reaching` is asked once per step and binding, and scanned every statement each time.
_SHAPE: list = [None, frozenset(), ()]


def _shape(facts: TrainingFacts) -> tuple[frozenset[int], tuple[tuple[int, int], ...]]:
    if _SHAPE[0] is not facts:
        _SHAPE[:] = [facts, frozenset(st.line for st in facts.stmts if st.parent == -1 and st.kind == "simple"),
                     tuple((st.line, st.end_line) for st in facts.stmts if st.kind in ("for", "while"))]
    return _SHAPE[1], _SHAPE[2]


def reaching(facts: TrainingFacts, made: list[Assign], fn: Function, line: int) -> list[Assign]:
    """The bindings in `made` that can reach line `line` of `fn`: an unconditional binding in
    fn's own body before that line hides every earlier one (a script that reuses `opt` for a
    second model), later ones may reach it through a loop that holds both (not a binding after
    the loop: a script's next experiment)."""
    tops, all_loops = _shape(facts)
    last = max((a.line for a in made if a.func == fn.id and a.line < line and a.line in tops), default=None)
    if last is None:
        return made
    loops = [(lo, hi) for lo, hi in all_loops if lo <= line <= hi]
    return [a for a in made if a.func == fn.id and a.line >= last
            and (a.line <= line or any(lo <= a.line <= hi for lo, hi in loops))]


def trained_models(facts: TrainingFacts, context: Context) -> list[str]:
    """The models a step updates: the owners of the optimizer's parameters, else the models
    the step calls (names of `home`)."""
    fn = home(facts, context)
    texts: list[str] = []
    for f in context.of("step"):
        for a in optimizer_bindings(facts, f.target, fn, f.event.span.line if f.depth == 0 else None):
            texts.extend(a.owners)
    if not texts:
        invoked = {f.target for f in context.of("invoke")}
        texts = [a.target for a in facts.assigns if (a.kind == "model" or a.wraps) and a.target in invoked
                 and (a.target not in fn.params or a.func == fn.id)]
    return list(dict.fromkeys(texts))


def optimizer_bindings(facts: TrainingFacts, text: str, fn: Function, line: int | None) -> list[Assign]:
    """The optimizers `text` is bound to in `fn` (those that reach `line`, when given), or, when
    it holds none, the ones a wrapper handed back under that name was given (`model, optimizer =
    fabric.setup(net, opt)`: `opt`'s)."""
    made = scoped_assigns(facts, text, ("optimizer",), fn)
    if line is not None:
        made = reaching(facts, made, fn, line)
    if not made:
        handed = {a for a in scoped_assigns(facts, text, None, fn) if a.wraps and a.func == fn.id}
        if len(handed) == 1:
            wrap = handed.pop()
            made = reaching(facts, scoped_assigns(facts, wrap.wraps, ("optimizer",), fn), fn, wrap.line)
    return made


# Wrappers of wrappers followed (`torch.compile(DDP(net))` written in two steps).
_MAX_WRAPS = 4


class StepRule(Rule):
    """A rule over the training steps of one file: subclasses write `_check(ctx, facts)`, this
    reads the loop facts and drops duplicate findings (a step reached from two loops)."""

    abstract = True

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        # steps on parameters decided by the project's callers, for every reading of the facts
        facts = bind_callers(ctx.facts.training, ctx.index)
        if facts is None:
            return
        yield from dedupe(self._check(ctx, facts))

    def _check(self, ctx: RuleContext, facts) -> Iterator[Finding]:
        return iter(())


def clipped_model(target: str) -> str | None:
    """The model whose parameters a clip is given (`encoder.parameters()`), or None when the
    clip is given anything else (a list of parameters, an optimizer's groups...)."""
    if target.endswith(".parameters()"):
        model = target[: -len(".parameters()")]
        if model and all(part.isidentifier() for part in model.split(".")):
            return model
    return None


def clipped(c, clip) -> tuple[str, str] | None:
    """What a clip of context `c` clips, as the context's own function names it: ("model", text)
    for a model's `.parameters()`, ("optimizer", text) for Lightning's
    `self.clip_gradients(opt, ...)`, which clips that optimizer's parameters; None for anything
    else, and for a clip of a step function read at its call (its names are that function's)."""
    if clip.event.func != c.function.id:
        return None
    model = clipped_model(clip.event.target)
    if model is not None:
        return "model", model
    if clip.event.name.endswith("clip_gradients") and clip.event.target.isidentifier():
        return "optimizer", clip.event.target
    return None


def owners(facts, c, f) -> list[str]:
    """The models whose parameters the optimizer stepped at `f` trains, as the step's function
    names them: only an optimizer built in that function (one a caller built names the
    caller's models: `Adam(m.parameters())` for the `model` of `train(model, opt)`)."""
    if f.event.func != c.function.id:
        return []  # a step of a function read at its call: its names are that function's
    made = optimizer_bindings(facts, f.target, c.function, f.event.span.line if f.depth == 0 else None)
    if any(a.func != c.function.id for a in made):
        return []
    return [o for a in made for o in a.owners]


def same_models(facts: TrainingFacts, text: str, fn: Function) -> set[str]:
    """`text` and the models whose parameters it holds or that hold its, through wrappers `fn`
    sees bound (`model = DDP(net)`, `compiled = torch.compile(net)`: `model`, `net` and `compiled`
    clip and train the same parameters)."""
    out, frontier = {text}, [text]
    for _ in range(_MAX_WRAPS):
        found = {a.wraps for t in frontier for a in scoped_assigns(facts, t, None, fn) if a.wraps}
        found |= {a.target for a in facts.assigns if a.wraps in frontier and a.func == fn.id}
        frontier = [t for t in found if t not in out]
        if not frontier:
            break
        out.update(frontier)
    return out


def covers(clipped: str, models: list[str]) -> bool:
    """Whether a clip of `clipped`'s parameters reaches a model of `models` (itself, a submodule
    of it, or a parent module of it: a parent's parameters hold the clipped ones)."""
    return any(m == clipped or m.startswith(clipped + ".") or clipped.startswith(m + ".") for m in models)

