"""Loops over a module's parameters in `__init__` (`for name, p in self.named_parameters(): if
"weight" in name: nn.init.xavier_uniform_(p)`): which initialisation reaches each tensor.

The loop body is read once, as a list of (guard, InitSpec) in program order, where a guard is a
test on the parameter's name and number of dimensions that the `if`s, `elif`s, `else`s and
`continue`s of the body put around each init call. The layers are not known yet when `__init__`
runs (their paths are assigned later, lowering.assign_paths), so the guards are kept as data and
judged per tensor when the lowering asks for a tensor's final initialisation (`ParamLoop.spec_for`,
with the tensor's name as `named_parameters()` spells it, relative to the module the loop is over).

A guard that cannot be read (`if name in self.special:`) is undecided: the init under it may or
may not happen, so the tensor's initialisation is unknown. A body this reader does not follow
(an assignment, a nested loop, a `try`) is not a ParamLoop at all: the caller keeps the old
answer, every tensor the loop reaches initialised unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import libcst as cst

from gradlint.model.ir import InitSpec
from gradlint.source import catalog as C
from gradlint.source.engine.values import TensorRef, UNKNOWN
from gradlint.source.engine.interp import else_body, statements
from gradlint.source.init_calls import LOOKS, calls
from gradlint.source.names import dotted

# Guards, as tuples: True; None (undecided); ("in", s) s is a substring of the name; ("eq", s);
# ("starts", s); ("ends", s); ("ndim", op, k) the tensor's dimensions compared with k; ("not",
# g); ("and", g, h); ("or", g, h).
Guard = Any

_CMP: dict[type, Callable[[int, int], bool]] = {
    cst.GreaterThan: lambda a, b: a > b, cst.GreaterThanEqual: lambda a, b: a >= b,
    cst.LessThan: lambda a, b: a < b, cst.LessThanEqual: lambda a, b: a <= b,
    cst.Equal: lambda a, b: a == b, cst.NotEqual: lambda a, b: a != b,
}
# `k < p.dim()` read as `p.dim() > k`
_FLIP = {cst.GreaterThan: cst.LessThan, cst.LessThan: cst.GreaterThan, cst.GreaterThanEqual: cst.LessThanEqual,
         cst.LessThanEqual: cst.GreaterThanEqual, cst.Equal: cst.Equal, cst.NotEqual: cst.NotEqual}


# In-place methods of a parameter that leave its values as they are (calls given one that only
# look at it: init_calls.LOOKS).
_TENSOR_LOOKS = frozenset({"requires_grad_", "share_memory_", "retain_grad_"})


class Unsupported(Exception):
    """A loop body this reader does not follow."""


def _and(g: Guard, h: Guard) -> Guard:
    if g is True:
        return h
    if h is True:
        return g
    return ("and", g, h)


def judge(g: Guard, name: str, ndim: int | None) -> bool | None:
    """The guard for a tensor `name` (as named_parameters() spells it) of `ndim` dimensions (None:
    not known): True, False, or None when it cannot be told."""
    if g is True or g is None:
        return g
    op = g[0]
    if op == "and":
        a, b = judge(g[1], name, ndim), judge(g[2], name, ndim)
        return False if a is False or b is False else (True if a and b else None)
    if op == "or":
        a, b = judge(g[1], name, ndim), judge(g[2], name, ndim)
        return True if a or b else (False if a is False and b is False else None)
    if op == "not":
        a = judge(g[1], name, ndim)
        return None if a is None else not a
    if op == "in":
        return g[1] in name
    if op == "eq":
        return name == g[1]
    if op == "starts":
        return name.startswith(g[1])
    if op == "ends":
        return name.endswith(g[1])
    if op == "ndim":
        return None if ndim is None else _CMP[g[1]](ndim, g[2])
    return None


def tensor_ndim(cls: str | None, tensor: str) -> int | None:
    """How many dimensions the tensor `tensor` of a torch.nn layer `cls` has (None: not known)."""
    if tensor.startswith("bias"):
        return 1
    if cls in C.RECURRENT_MODULES:
        return 2 if tensor.startswith("weight") else None
    layer = C.PARAM_LAYERS.get(cls or "")
    if layer is None or tensor != "weight":
        return None
    op, kdims = layer
    return 3 if op == "bilinear" else kdims + 2 if op.startswith("conv") else 2


@dataclass(frozen=True)
class ParamLoop:
    """What a loop over parameters does to each tensor it reaches: `steps` in program order, each
    (guard, InitSpec). `prefix`: the path of the module the loop is over, once it is known (the
    loop is recorded before the paths are assigned; `at` binds it, one copy per place the module
    is used); `origin`: the loop, where an undecided init is said to come from."""

    steps: tuple[tuple[Guard, InitSpec], ...]
    origin: Any = None
    prefix: str = ""
    # over the tensors of each layer it is judged for (`for p in m.parameters()` in a loop over
    # modules): names relative to that layer
    own: bool = False

    def at(self, prefix: str) -> ParamLoop:
        return self if self.own else replace(self, prefix=prefix)

    def each(self) -> ParamLoop:
        return replace(self, own=True)

    def spec_for(self, path: str | None, cls: str | None, tensor: str) -> InitSpec | None:
        """The initialisation the loop leaves on `tensor` of the layer at `path` (a torch.nn layer
        `cls`), None when it does not touch it."""
        path, prefix = ("", "") if self.own else (path or "", self.prefix)
        if tensor.startswith("bias") and C.PARAM_LAYERS.get(cls or "", ("",))[0] == "embedding":
            return None  # an embedding has no bias for the loop to reach
        if not prefix:
            rel = path
        elif path == prefix:
            rel = ""
        elif path.startswith(prefix + "."):
            rel = path[len(prefix) + 1:]
        else:  # not a layer below the module the loop is over (paths as written could differ)
            return InitSpec("unknown", origin=self.origin)
        name = f"{rel}.{tensor}" if rel else tensor
        ndim = tensor_ndim(cls, tensor)
        found: InitSpec | None = None
        for guard, spec in self.steps:
            holds = judge(guard, name, ndim)
            if holds:
                found = spec
            elif holds is None:
                found = InitSpec("unknown", origin=spec.origin)
        return found


def bound(entries: list, prefix: str) -> list:
    """Type-dispatched init entries (order, types, tensor, spec) of a module at `prefix`, each
    ParamLoop among them bound to that path."""
    if not any(isinstance(e[2], ParamLoop) for e in entries):
        return entries
    return [(o, t, n.at(prefix), s) if isinstance(n, ParamLoop) else (o, t, n, s) for o, t, n, s in entries]


_MISSING: Any = object()


def read_loop(stmt: cst.For, env: dict, ev: Callable, init: Callable[[cst.Call], None], origin: Any) -> ParamLoop | None:
    """A `for` over `X.parameters()` or `X.named_parameters()` read as guarded inits, None where the
    reader cannot. `env`: the walker's names, where the loop's variables are bound while the body
    is read (the parameter as a tensor whose inits the reader takes); `ev`, `init`: as Reader's."""
    it, target = stmt.iter, stmt.target
    named = it.func.attr.value == "named_parameters"
    if named and type(target) is cst.Tuple and len(target.elements) == 2 and \
            all(type(el.value) is cst.Name for el in target.elements):
        name, param = target.elements[0].value.value, target.elements[1].value.value
    elif not named and type(target) is cst.Name:
        name, param = None, target.value
    else:
        return None
    if it.args or name == param:
        return None  # (recurse=False, prefix=...): names and tensors not as read here
    reader = Reader(name, param, ev, init)
    saved = {k: env.get(k, _MISSING) for k in (name, param) if k is not None}
    env[param] = TensorRef(reader, "*")
    if name is not None:
        env[name] = UNKNOWN
    try:
        return ParamLoop(reader.read(stmt.body), origin=origin)
    except Unsupported:
        return None
    finally:
        for k, v in saved.items():
            if v is _MISSING:
                env.pop(k, None)
            else:
                env[k] = v


def touches_init(body: cst.CSTNode) -> bool:
    """Whether a loop body calls an init function or method (its loop, when not read, makes what it
    reaches unknown)."""
    for node in calls(body):
        last = (dotted(node.func) or "").rsplit(".", 1)[-1]
        if last in C.INIT_FUNCTIONS or last in C.INIT_METHODS or last in ("copy_",):
            return True
    return False


class Reader:
    """Reads one loop body. `name`, `param`: the loop's variables (`name` None for `parameters()`);
    `ev`: the walker's evaluator (a literal or a constant of the file); `init(call)`: runs an init
    call statement on the walker, whose InitSpec for `param` arrives through `take`."""

    def __init__(self, name: str | None, param: str, ev: Callable, init: Callable[[cst.Call], None]) -> None:
        self.name, self.param, self.ev, self.init = name, param, ev, init
        self.steps: list[tuple[Guard, InitSpec]] = []
        self.taken: list[InitSpec] = []

    def take(self, spec: InitSpec) -> None:
        self.taken.append(spec)

    def read(self, body: cst.BaseSuite) -> tuple:
        self.block(body, True)
        return tuple(self.steps)

    def block(self, body: cst.BaseSuite, guard: Guard) -> Guard:
        """Run `body` under `guard`; the guard under which the code after it runs (False: never,
        every path `continue`d)."""
        for stmt in statements(body):
            if guard is False:
                break
            guard = self.statement(stmt, guard)
        return guard

    def statement(self, stmt: cst.CSTNode, guard: Guard) -> Guard:
        kind = type(stmt)
        if kind is cst.If:
            test = self.test(stmt.test)
            inside = _and(guard, test)
            other = _and(guard, ("not", test) if test is not None else None)
            after_body = self.block(stmt.body, inside)
            after_else = other if stmt.orelse is None else self.block(else_body(stmt), other)
            if after_body is inside and after_else is other:
                return guard  # no branch `continue`s: the code after them runs where the `if` did
            if after_body is False or after_else is False:
                return after_else if after_body is False else after_body
            return ("or", after_body, after_else)
        if kind is cst.With:
            return self.block(stmt.body, guard)
        if kind is cst.SimpleStatementLine or kind is cst.SimpleStatementSuite:  # (`if x: f(p)`)
            for small in stmt.body:
                if type(small) is cst.Continue:
                    return False
                if type(small) is cst.Pass:
                    continue
                if type(small) is cst.Expr and type(small.value) is cst.Call:
                    self.call(small.value, guard)
                    continue
                raise Unsupported
            return guard
        raise Unsupported

    def call(self, call: cst.Call, guard: Guard) -> None:
        """An init call on the parameter, or a call that only looks (`print(name)`); any other call
        given the parameter may initialise it."""
        if not self._may_change(call):
            return
        self.taken.clear()
        self.init(call)
        if len(self.taken) == 1 and self._on_param(call):
            self.steps.append((guard, self.taken[0]))
        else:
            self.steps.append((guard, InitSpec("unknown", origin=self.taken[0].origin if self.taken else None)))

    def _may_change(self, call: cst.Call) -> bool:
        """The call may write the parameter: an in-place method of it (`p.data.fill_(0)`; not
        `p.requires_grad_(False)`), or a call given it (`nn.init.zeros_(p)`, `my_init(p)`; not
        `print(p)`, `isinstance(p, ...)`)."""
        func = call.func
        if type(func) is cst.Attribute and self._is_param(func.value):
            return func.attr.value.endswith("_") and func.attr.value not in _TENSOR_LOOKS
        if dotted(func) in LOOKS:
            return False
        return any(self._is_param(a.value) for a in call.args)

    def _is_param(self, e: cst.BaseExpression) -> bool:
        """`p` or `p.data`."""
        if type(e) is cst.Attribute and e.attr.value == "data":
            e = e.value
        return type(e) is cst.Name and e.value == self.param

    def _on_param(self, call: cst.Call) -> bool:
        """The call initialises the parameter itself: `nn.init.xavier_uniform_(p)`, `p.data.zero_()`."""
        if type(call.func) is cst.Attribute and call.func.attr.value in C.INIT_METHODS:
            return self._is_param(call.func.value)
        return bool(call.args) and call.args[0].keyword is None and not call.args[0].star and self._is_param(call.args[0].value)

    # -- tests -----------------------------------------------------------------------------------
    def test(self, e: cst.BaseExpression) -> Guard:
        """A test on the parameter's name or dimensions as a guard; None when it is anything else."""
        kind = type(e)
        if kind is cst.BooleanOperation:
            a, b = self.test(e.left), self.test(e.right)
            return ("and" if type(e.operator) is cst.And else "or", a, b)
        if kind is cst.UnaryOperation and type(e.operator) is cst.Not:
            a = self.test(e.expression)
            return None if a is None else ("not", a)
        if kind is cst.Attribute and self._is_param(e.value) and e.attr.value == "requires_grad":
            return True  # a parameter requires grad when it is made
        if kind is cst.Call and type(e.func) is cst.Attribute and self._is_name(e.func.value) and \
                e.func.attr.value in ("startswith", "endswith") and len(e.args) == 1:
            words = self._strings(e.args[0].value)
            if words is None:
                return None
            op = "starts" if e.func.attr.value == "startswith" else "ends"
            guard: Guard = (op, words[0])
            for w in words[1:]:
                guard = ("or", guard, (op, w))
            return guard
        if kind is cst.Comparison and len(e.comparisons) == 1:
            return self._comparison(e.left, e.comparisons[0].operator, e.comparisons[0].comparator)
        return None

    def _comparison(self, left: cst.BaseExpression, op: cst.BaseCompOp, right: cst.BaseExpression) -> Guard:
        op_type = type(op)
        if op_type in (cst.In, cst.NotIn) and self._is_name(right):
            word = self.ev(left)
            if not isinstance(word, str):
                return None
            return ("in", word) if op_type is cst.In else ("not", ("in", word))
        if op_type in (cst.Equal, cst.NotEqual) and (self._is_name(left) or self._is_name(right)):
            word = self.ev(right if self._is_name(left) else left)
            if not isinstance(word, str):
                return None
            return ("eq", word) if op_type is cst.Equal else ("not", ("eq", word))
        if op_type in _CMP:
            if self._is_ndim(left):
                k = self.ev(right)
            elif self._is_ndim(right):
                k, op_type = self.ev(left), _FLIP[op_type]
            else:
                return None
            if isinstance(k, int) and not isinstance(k, bool):
                return ("ndim", op_type, k)
        return None

    def _is_name(self, e: cst.BaseExpression) -> bool:
        return self.name is not None and type(e) is cst.Name and e.value == self.name

    def _is_ndim(self, e: cst.BaseExpression) -> bool:
        """`p.dim()`, `p.ndimension()`, `p.ndim`, `len(p.shape)`, `len(p.size())`."""
        if type(e) is cst.Call and not e.args and type(e.func) is cst.Attribute and \
                e.func.attr.value in ("dim", "ndimension"):
            return self._is_param(e.func.value)
        if type(e) is cst.Attribute and e.attr.value == "ndim":
            return self._is_param(e.value)
        if type(e) is cst.Call and dotted(e.func) == "len" and len(e.args) == 1:
            inner = e.args[0].value
            if type(inner) is cst.Attribute and inner.attr.value == "shape":
                return self._is_param(inner.value)
            if type(inner) is cst.Call and not inner.args and type(inner.func) is cst.Attribute and inner.func.attr.value == "size":
                return self._is_param(inner.func.value)
        return False

    def _strings(self, e: cst.BaseExpression) -> tuple[str, ...] | None:
        if type(e) is cst.Tuple:
            words = [self.ev(el.value) for el in e.elements]
        else:
            words = [self.ev(e)]
        return tuple(words) if words and all(isinstance(w, str) for w in words) else None
