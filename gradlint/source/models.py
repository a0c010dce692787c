"""nn.Module classes (and nn.Sequential built in functions) -> model IR, by abstract interpretation.

`__init__` is interpreted statement by statement: constructor calls become `Ctor` values, lists and
containers are followed through locals, loops over `range(n)` are unrolled when `n` is known
(literals, default arguments, module constants), and every initialisation (`nn.init.*`, in-place
`weight.data.normal_()`, `self.apply(fn)` and loops over `self.modules()` with isinstance dispatch)
is attached to the layers it reaches, in program order. A condition __init__ cannot decide makes
the modules its branches build a choice (`Alt`). `forward` is then interpreted over paths
(source/forward.py), one per combination of undecided conditions and choices: each value is the
tuple of IR nodes applied to an input since that input, so `x + f(x)` is recognised as a residual
by its common prefix. Whatever cannot be followed becomes `Opaque`, which ends chains: the
front-end never guesses a structure into a finding.
"""

from __future__ import annotations

import ast
import itertools
import math
import sys
from dataclasses import dataclass, field
from typing import Any

import libcst as cst

from gradlint.model.blocks import block_count
from gradlint.model.ir import (
    Activation, ClassArg, Extern, InitSpec, Network, Node, Norm, Opaque, Param, Passthrough, Recurrent,
    SymArg, TransformerBlock,
)
from gradlint.source import catalog as C
from gradlint.source import library as L
from gradlint.source.budget import MAX_DEPTH, MAX_EXPR_DEPTH, MAX_ITEMS, MAX_SAME_CLASS, MAX_UNROLL, Exhausted, Meter, bounded, checked_range, fold
from gradlint.source.engine.calls import arg as _arg_value
from gradlint.source.engine.interp import StatementWalker, else_body
from gradlint.source.engine.values import int_literal as _literal_int
from gradlint.source.engine.values import is_number as _num
from gradlint.source.engine.values import str_literal as _literal_str
from gradlint.source.engine.values import UNKNOWN, truth
from gradlint.source.engine.walk import mentions
from gradlint.source.names import dotted

# Forward paths explored per network when `if` conditions cannot be decided (each undecided
# condition doubles them); past this, the branches are merged into an opaque node as before.
MAX_PATHS = 8
# Choices one value of __init__ may hold when conditions cannot be decided (see Alt).
MAX_OPTIONS = 4


class _Tensor:
    """A tensor built in __init__ (nn.Parameter, torch.zeros...): not None, value unknown."""

    _inst = None

    def __new__(cls):
        if cls._inst is None:
            cls._inst = super().__new__(cls)
        return cls._inst

    def __repr__(self) -> str:
        return "TENSOR"


TENSOR: Any = _Tensor()


@dataclass(frozen=True)
class ClassRef:
    """A module class as a value (`act_layer=nn.GELU`, `partial(nn.LayerNorm, eps=1e-6)`): calling
    it builds the module. kind: 'torch' (torch.nn short name), 'local' (class of the file, or of
    the library catalogue when `library` is set)."""

    kind: str
    cls: str
    args: tuple = ()
    kwargs: tuple = ()  # (name, value) pairs bound by functools.partial
    library: bool = False


@dataclass(eq=False)
class DictVal:
    items: dict


@dataclass(frozen=True)
class Sym:
    """A value known only by its source text (`d_model`, `config.hidden_size`); whitespace is
    dropped so that `4 * d` and `4*d` are one symbol."""

    text: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", "".join(self.text.split()))


@dataclass(eq=False)
class Ctor:
    """A module constructed in __init__: a torch.nn class, a class of this file, or unknown."""

    kind: str  # 'torch' (short name in `cls`), 'local' (class of this file), 'unknown'
    cls: str
    args: list
    kwargs: dict
    node: cst.CSTNode
    order: int
    items: list | None = None  # containers: their members in order
    keys: list | None = None  # ModuleDict keys
    instance: "Instance | None" = None  # local classes: their interpreted __init__
    # (order, tensor name, InitSpec): explicit initialisations that reached this module
    inits: list = field(default_factory=list)
    path: str | None = None
    # The user's call that built this module when it was built inside a library block: its
    # position stands for the layer's (the catalogue's own positions mean nothing to the user).
    site: Any = None
    # (order, types, tensor, InitSpec) from `this.apply(fn)`: they reach this module and its children.
    scoped_inits: list = field(default_factory=list)
    # Why a class of this file is 'unknown': a nesting limit, not a class gradlint cannot see.
    why: str | None = None
    # A class of another file (kind 'unknown'): (the class as written, its arguments as
    # ir.Extern.args or None), for the placeholder the project index may resolve (model/inline.py).
    extern: tuple | None = None
    # Set when __init__ reaches inside such a module (`self.block.fc.weight`, a method call on
    # it, an init of its tensors): what it did is not in the other file's IR, so it stays opaque.
    reached: bool = False


@dataclass(eq=False)
class ListVal:
    items: list


@dataclass(eq=False)
class Alt:
    """A module __init__ built one of several ways, chosen by a condition it cannot decide
    (`nn.Identity() if linear_out else act()`, `if expand_ratio != 1: layers.append(conv)`).
    key: that `if` or conditional expression. Forward is lowered once per choice (Lowerer.decide:
    one decision per key and run), so each choice is a path of its own and a finding about order
    must hold on every path. splice: the options are runs of list items (what each branch
    appended), spliced into the list or container that holds this value."""

    key: Any
    options: tuple
    splice: bool = False


NO_CHOICE: Any = object()  # Lowerer.pick when branches are merged


def _alt(key: Any, options: tuple, splice: bool = False) -> Any:
    """One of `options` (distinct by identity), or the one value when they are all the same;
    unknown past MAX_OPTIONS choices in all (a long if/elif dispatch on a name we do not know
    would multiply the forward paths for nothing: no finding holds on all of them)."""
    out: list = []
    for o in options:
        if not any(o is x for x in out):
            out.append(o)
    if len(out) == 1 and not splice:
        return out[0]
    if sum(_leaves(o) for o in out) > MAX_OPTIONS:
        return UNKNOWN
    return Alt(key, tuple(out), splice)


def _leaves(v: Any) -> int:
    return sum(_leaves(o) for o in v.options) if isinstance(v, Alt) and not v.splice else 1


def _module_like(v: Any) -> bool:
    """A value an undecided branch may choose between and still be lowered: a module, a module
    class, or None (no module)."""
    return v is None or isinstance(v, (Ctor, ClassRef, Alt))


@dataclass(frozen=True)
class AnyModule:
    """The loop variable of `for m in self.modules()` / the argument of an `apply` function;
    `types` is set inside an isinstance branch."""

    types: tuple[str, ...] = ()


@dataclass(frozen=True)
class TensorRef:
    """A parameter tensor of a module: `self.fc.weight`, `m.bias`."""

    owner: Any  # Ctor or AnyModule
    name: str


@dataclass(frozen=True)
class PathVal:
    """A value in forward: the nodes applied to input `root` so far."""

    root: str
    nodes: tuple


@dataclass(eq=False)
class Instance:
    """An interpreted class instance: attributes, type-dispatched inits, its class."""

    cls: "ClassInfo"
    attrs: dict
    type_inits: list  # (order, types tuple, tensor name, InitSpec)
    attention: bool = False
    fm: Any = None  # the FileModel whose class this is (the library catalogue's, for its blocks)


@dataclass
class ClassInfo:
    name: str
    node: cst.ClassDef
    bases: tuple[str, ...]
    methods: dict
    is_module: bool = False
    sequential: bool = False


class FileModel:
    """Interprets the classes of one file."""

    def __init__(self, src) -> None:
        self.src = src
        self.imports = src.imports
        self.order = itertools.count()
        self.constants: dict[str, Any] = {}
        self.functions: dict[str, cst.FunctionDef] = {}
        self.classes: dict[str, ClassInfo] = {}
        self.depth = 0
        # Set while a library block is built for the user's call: the call its layers stand at.
        self.site: Any = None
        self._lib: FileModel | None = None
        self.meter = Meter()
        self.cuts = 0  # instances whose __init__ a budget cut short
        self.building: dict[str, int] = {}  # local classes being instantiated, with their nesting
        # Set while forward is lowered: the option of an Alt this forward run takes (None: merge).
        self.pick: Any = None
        self._collect()

    def library(self) -> "FileModel":
        """The catalogue of torchvision/timm blocks, interpreted like a file of its own."""
        if self._lib is None:
            self._lib = FileModel(L.LibrarySource())
            self._lib.order = self.order
            self._lib._lib = self._lib
        return self._lib

    # ---- file-level tables -------------------------------------------------------------
    def _collect(self) -> None:
        for stmt in self.src.module.body:
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name):
                        self.meter.allow()
                        value = self.eval(small.value, {})
                        if isinstance(value, (int, float, str, bool)) and not isinstance(value, Sym):
                            self.constants[small.targets[0].target.value] = value
            elif isinstance(stmt, cst.FunctionDef):
                self.functions[stmt.name.value] = stmt
        for node in _walk_classes(self.src.module):
            bases = tuple(dotted(b.value) or "" for b in node.bases)
            methods = {s.name.value: s for s in node.body.body if isinstance(s, cst.FunctionDef)}
            self.classes[node.name.value] = ClassInfo(node.name.value, node, bases, methods)
        changed = True
        while changed:  # a class deriving from a module class of this file is a module too
            changed = False
            for info in self.classes.values():
                if info.is_module:
                    continue
                for base in info.bases:
                    quals = self.imports.qualify_dotted(base)
                    local = self.classes.get(base)
                    if "torch.nn.Module" in quals or (local is not None and local.is_module) or any(
                        (C.short(q) or "")[:1].isupper() or _module_base(q) for q in quals
                    ) or (local is None and _looks_like_module(info)):
                        info.is_module = True
                        info.sequential = "torch.nn.Sequential" in quals or (local is not None and local.sequential)
                        changed = True
                        break

    def items_of(self, v: Any) -> list | None:
        """The items of a list or container, with the runs that undecided branches appended
        resolved by the forward run being lowered; None when they cannot be (in __init__, where
        their number is not known)."""
        items = v.items if isinstance(v, (ListVal, Ctor)) else None
        if items is None or not any(isinstance(i, Alt) and i.splice for i in items):
            return items
        out: list = []
        for i in items:
            if not (isinstance(i, Alt) and i.splice):
                out.append(i)
                continue
            chosen = self.pick(i) if self.pick is not None else NO_CHOICE
            inner = self.items_of(chosen) if chosen is not NO_CHOICE else None
            if inner is None:
                return None
            out.extend(inner)
        return out

    # ---- expressions ---------------------------------------------------------------------
    def lookup(self, name: str, env: dict) -> Any:
        if name in env:
            return env[name]
        if name in self.constants:
            return self.constants[name]
        ref = self.class_ref(name)
        return ref if ref is not None else Sym(name)

    def class_ref(self, text: str | None) -> ClassRef | None:
        """A module class named by `text` (a name or dotted path), as a value."""
        if not text:
            return None
        quals = self.imports.qualify_dotted(text)
        for q in quals:
            s = C.short(q)
            if s is not None and s[:1].isupper():
                return ClassRef("torch", s)
        if not quals:
            local = self.classes.get(text)
            if local is not None and local.is_module:
                return ClassRef("local", text, library=isinstance(self.src, L.LibrarySource))
            return None
        name = L.library_name(quals, self.src.path)
        if name is not None and name[:1].isupper():
            return ClassRef("local", name, library=True)
        last = text.rsplit(".", 1)[-1]
        if last[:1].isupper() and any(c.islower() for c in last) and not isinstance(self.src, L.LibrarySource):
            # an imported class of another file (`norm_layer=LayerNorm`, `mlp_layer=Mlp`): calling
            # it builds a placeholder the project index may resolve (ir.Extern)
            return ClassRef("extern", text)
        return None

    def qual(self, expr: cst.BaseExpression) -> frozenset[str]:
        return self.imports.qualify(expr)

    def torch_class(self, expr: cst.BaseExpression) -> str | None:
        for q in self.qual(expr):
            s = C.short(q)
            if s is not None:
                return s
        return None

    def eval(self, expr: cst.BaseExpression, env: dict) -> Any:
        try:
            return self._eval(expr, env)
        except (ZeroDivisionError, OverflowError, ValueError, TypeError, SyntaxError, Exhausted):
            return UNKNOWN

    def _eval(self, e: cst.BaseExpression, env: dict) -> Any:
        meter = self.meter
        # Meter.enter and Meter.leave, inlined: two calls per expression were 4% of the lowering.
        meter.depth += 1
        meter.steps += 1
        try:
            if meter.depth > MAX_EXPR_DEPTH or meter.steps > meter.limit:
                # too deep, or the file's steps spent: Exhausted, the value is Unknown
                raise Exhausted("depth" if meter.depth > MAX_EXPR_DEPTH else "steps")
            value = self._eval_node(e, env)
        finally:
            meter.depth -= 1
        if self.pick is not None:
            # In forward, a choice of __init__ is the one this run takes: `if self.se is not None`
            # agrees with the module `self.se(x)` calls.
            while isinstance(value, Alt) and not value.splice:
                chosen = self.pick(value)
                if chosen is NO_CHOICE:
                    break
                value = chosen
        return value

    def _eval_node(self, e: cst.BaseExpression, env: dict) -> Any:
        kind = type(e)  # libcst's node classes are ABCs: isinstance costs a cache lookup per miss
        if kind is cst.Integer:
            try:
                v = bounded(_literal_int(e))
            except ValueError:  # more digits than Python converts (int_max_str_digits)
                v = None
            return UNKNOWN if v is None else v
        if kind is cst.Float:
            v = bounded(float(e.value.replace("_", "")))
            return UNKNOWN if v is None else v
        if kind is cst.SimpleString:
            return _literal_str(e)
        if kind is cst.FormattedString:
            # f"layer{i}": module names built in loops (add_module) need the real text.
            parts = []
            for part in e.parts:
                if isinstance(part, cst.FormattedStringText):
                    parts.append(part.value)
                elif isinstance(part, cst.FormattedStringExpression) and part.format_spec is None and part.conversion is None:
                    v = self._eval(part.expression, env)
                    if not isinstance(v, (int, str)) or isinstance(v, bool):
                        return UNKNOWN
                    parts.append(str(v))
                else:
                    return UNKNOWN
            return "".join(parts)
        if kind is cst.Name:
            if e.value in ("True", "False"):
                return e.value == "True"
            if e.value == "None":
                return None
            return self.lookup(e.value, env)
        if kind is cst.Attribute:
            text = dotted(e)
            if text is not None and text in env:
                return env[text]
            if isinstance(e.value, cst.Name) and e.value.value == "math" and e.attr.value in ("pi", "e"):
                return getattr(math, e.attr.value)
            if text == "self.training":
                # Gradients are computed in training mode: forward is read as it runs there.
                return True
            ref = self.class_ref(text)
            if ref is not None:
                return ref
            base = self._eval(e.value, env)
            if isinstance(base, Ctor) and base.kind == "config" and base.instance is not None:
                return base.instance.attrs.get(e.attr.value, Sym(text) if text else UNKNOWN)
            if isinstance(base, (Ctor, AnyModule)):
                if isinstance(base, Ctor) and base.instance is not None and e.attr.value in base.instance.attrs:
                    return base.instance.attrs[e.attr.value]
                if isinstance(base, Ctor) and base.extern is not None and self.pick is None:
                    base.reached = True  # in __init__ (forward runs with a pick)
                return TensorRef(base, e.attr.value)
            if isinstance(base, TensorRef) and e.attr.value == "data":
                return base
            return Sym(text) if text else UNKNOWN
        if kind is cst.UnaryOperation:
            v = self._eval(e.expression, env)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if isinstance(e.operator, cst.Minus):
                    return -v
                if isinstance(e.operator, cst.Plus):
                    return v
            if isinstance(e.operator, cst.Not) and _truth(v) is not None:
                return not _truth(v)
            return Sym(self.src.code(e)) if isinstance(v, Sym) else UNKNOWN
        if kind is cst.BinaryOperation:
            a, b = self._eval(e.left, env), self._eval(e.right, env)
            op_text = _FOLDED.get(type(e.operator))
            if _num(a) and _num(b) and op_text is not None:
                folded = fold(op_text, a, b)  # None: too large, infinite, or a division by zero
                return UNKNOWN if folded is None else folded
            if isinstance(a, ListVal) and isinstance(b, ListVal) and isinstance(e.operator, cst.Add):
                return ListVal(a.items + b.items)
            if isinstance(a, ListVal) and isinstance(b, int) and isinstance(e.operator, cst.Multiply):
                # [nn.Linear(...)] * n repeats one module object n times.
                if len(a.items) * b > MAX_ITEMS:
                    raise Exhausted()
                return ListVal(a.items * b)
            if isinstance(a, (Sym, int, float)) and isinstance(b, (Sym, int, float)):
                return Sym(self.src.code(e))
            return UNKNOWN
        if kind in (cst.List, cst.Tuple):
            items: list = []
            for el in e.elements:
                if isinstance(el, cst.StarredElement):
                    v = self._eval(el.value, env)
                    if isinstance(v, ListVal):
                        items.extend(v.items)
                    elif isinstance(v, Ctor) and v.items is not None:
                        items.extend(v.items)
                    else:
                        items.append(UNKNOWN)
                else:
                    items.append(self._eval(el.value, env))
            return ListVal(items)
        if kind in (cst.ListComp, cst.GeneratorExp):
            return self._comprehension(e, env)
        if kind is cst.BooleanOperation:
            return self._boolop(e, env)
        if kind is cst.Dict:
            return self._dict(e, env)
        if kind is cst.Subscript and len(e.slice) == 1 and isinstance(e.slice[0].slice, cst.Slice):
            return self._slice(self._eval(e.value, env), e.slice[0].slice, env)
        if kind is cst.Subscript:
            base = self._eval(e.value, env)
            if len(e.slice) == 1 and isinstance(e.slice[0].slice, cst.Index):
                idx = self._eval(e.slice[0].slice.value, env)
                items = self.items_of(base)
                if items is not None and isinstance(idx, int) and -len(items) <= idx < len(items):
                    return items[idx]
                if isinstance(base, Ctor) and base.keys is not None and isinstance(idx, str) and idx in base.keys:
                    return base.items[base.keys.index(idx)]  # type: ignore[index]
            return UNKNOWN
        if kind is cst.Call:
            return self._call(e, env)
        if kind is cst.IfExp:
            test = _truth(self._eval(e.test, env))
            if test is not None:
                return self._eval(e.body if test else e.orelse, env)
            # `DropPath(p) if p > 0 else nn.Identity()`: when both choices leave the gradient's
            # scale alone, which one is built does not matter.
            a, b = self._eval(e.body, env), self._eval(e.orelse, env)
            if _neutral_module(a) and _neutral_module(b):
                return a
            # Two modules (or module classes, or None): each is a forward path of its own.
            return _alt(e, (a, b)) if _module_like(a) and _module_like(b) else UNKNOWN
        if kind is cst.Comparison and len(e.comparisons) == 1:
            left = self._eval(e.left, env)
            right = self._eval(e.comparisons[0].comparator, env)
            op = e.comparisons[0].operator
            if isinstance(op, (cst.Is, cst.IsNot)) and right is None and isinstance(left, Alt) and not left.splice:
                found = {o is None for o in left.options if o is not UNKNOWN and not isinstance(o, Sym) and not _maybe_none(o)}
                if len(found) != 1 or len(left.options) != sum(1 for o in left.options if o is not UNKNOWN and not isinstance(o, Sym)
                                                               and not _maybe_none(o)):
                    return UNKNOWN
                result = found.pop()
                return result if isinstance(op, cst.Is) else not result
            if isinstance(op, (cst.Is, cst.IsNot)) and right is None and left is not UNKNOWN and not isinstance(left, Sym) \
                    and not _maybe_none(left):
                result = left is None
                return result if isinstance(op, cst.Is) else not result
            if _num(left) and _num(right):
                ops = {cst.Equal: lambda x, y: x == y, cst.NotEqual: lambda x, y: x != y,
                       cst.LessThan: lambda x, y: x < y, cst.GreaterThan: lambda x, y: x > y,
                       cst.LessThanEqual: lambda x, y: x <= y, cst.GreaterThanEqual: lambda x, y: x >= y}
                for kind, fn in ops.items():
                    if isinstance(op, kind):
                        return fn(left, right)
            if isinstance(op, (cst.Equal, cst.NotEqual)) and any(
                    isinstance(a, str) and (isinstance(b, (ClassRef, Ctor, ListVal, bool)) and not _maybe_none(b)
                                            or b is None or _num(b))
                    for a, b in ((left, right), (right, left))):
                return isinstance(op, cst.NotEqual)  # a string never equals a class, a module, a number
            if isinstance(left, str) and isinstance(right, str) and isinstance(op, (cst.Equal, cst.NotEqual)):
                return (left == right) == isinstance(op, cst.Equal)
            if isinstance(op, (cst.In, cst.NotIn)) and (isinstance(left, str) or _num(left) or left is None):
                items = right.items if isinstance(right, ListVal) else list(right.items) if isinstance(right, DictVal) else None
                if isinstance(right, str) and isinstance(left, str):
                    return (left in right) == isinstance(op, cst.In)
                if items is not None and all(isinstance(i, (str, int, float)) or i is None for i in items):
                    return (left in items) == isinstance(op, cst.In)
            return UNKNOWN
        return UNKNOWN

    def _boolop(self, e: cst.BooleanOperation, env: dict) -> Any:
        """`a or b`, `a and b` with Python's short-circuit; undecided operands give UNKNOWN
        unless the other side settles the truth value."""
        left = self._eval(e.left, env)
        t = _truth(left)
        is_and = isinstance(e.operator, cst.And)
        if t is not None:
            if t != is_and:  # `False and ...`, `True or ...`
                return left
            return self._eval(e.right, env)
        right = _truth(self._eval(e.right, env))
        if is_and and right is False:
            return False
        if not is_and and right is True:
            return True
        return UNKNOWN

    def _dict(self, e: cst.Dict, env: dict) -> Any:
        items: dict = {}
        for el in e.elements:
            if isinstance(el, cst.DictElement):
                k = self._eval(el.key, env)
                if not isinstance(k, str):
                    return UNKNOWN
                items[k] = self._eval(el.value, env)
            else:
                v = self._eval(el.value, env)
                if not isinstance(v, DictVal):
                    return UNKNOWN
                items.update(v.items)
        return DictVal(items)

    def _slice(self, base: Any, sl: cst.Slice, env: dict) -> Any:
        items = self.items_of(base) if isinstance(base, ListVal) else None
        if items is None:
            return UNKNOWN
        bounds = []
        for part in (sl.lower, sl.upper, sl.step):
            v = None if part is None else self._eval(part, env)
            if v is not None and not (isinstance(v, int) and not isinstance(v, bool)):
                return UNKNOWN
            bounds.append(v)
        if bounds[2] == 0:
            return UNKNOWN
        return ListVal(items[slice(*bounds)])

    def _comprehension(self, e: cst.ListComp | cst.GeneratorExp, env: dict) -> Any:
        out: list = []

        def run(clause: cst.CompFor | None, scope: dict) -> None:
            if clause is None:
                out.append(self._eval(e.elt, scope))
                if len(out) > MAX_ITEMS:
                    raise Exhausted()
                return
            seq = self._iterable(clause.iter, scope)
            if seq is None:
                out.append(UNKNOWN)
                return
            for item in seq:
                inner = dict(scope)
                if not self._bind(clause.target, item, inner):
                    out.append(UNKNOWN)
                    return
                if any(not self._eval(cond.test, inner) is True for cond in clause.ifs):
                    if any(self._eval(cond.test, inner) is not False for cond in clause.ifs):
                        out.append(UNKNOWN)
                        return
                    continue
                run(clause.inner_for_in, inner)

        run(e.for_in, dict(env))
        return ListVal(out)

    def _iterable(self, expr: cst.BaseExpression, env: dict) -> list | None:
        """The items a `for` iterates over, when they are known."""
        if isinstance(expr, cst.Call):
            name = dotted(expr.func)
            if name == "range":
                args = [self._eval(a.value, env) for a in expr.args]
                if args and all(isinstance(a, int) and not isinstance(a, bool) for a in args):
                    return list(checked_range(args))  # Exhausted past MAX_UNROLL
                return None
            if name == "enumerate" and expr.args:
                inner = self._iterable(expr.args[0].value, env)
                return None if inner is None else [ListVal([i, v]) for i, v in enumerate(inner)]
            if name == "zip":
                seqs = [self._iterable(a.value, env) for a in expr.args]
                if any(s is None for s in seqs):
                    return None
                return [ListVal(list(t)) for t in zip(*seqs)]  # type: ignore[arg-type]
            if name in ("reversed",) and expr.args:
                inner = self._iterable(expr.args[0].value, env)
                return None if inner is None else list(reversed(inner))
        v = self._eval(expr, env)
        items = self.items_of(v)
        return None if items is None else list(items)

    def _bind(self, target: cst.BaseExpression, value: Any, env: dict) -> bool:
        if isinstance(target, cst.Name):
            env[target.value] = value
            return True
        if isinstance(target, (cst.Tuple, cst.List)):
            elements = [el.value for el in target.elements]
            if isinstance(value, ListVal) and len(value.items) == len(elements):
                return all(self._bind(t, v, env) for t, v in zip(elements, value.items))
            for t in elements:
                self._bind(t, UNKNOWN, env)
            return True
        return False

    def _call(self, call: cst.Call, env: dict) -> Any:
        func = call.func
        name = dotted(func)
        quals = self.qual(func)
        special = self._call_values(call, name, quals, env)
        if special is not _NOT_HANDLED:
            return special
        if isinstance(func, cst.Attribute) and func.attr.value in _STR_METHODS:
            base = self._eval(func.value, env)
            if isinstance(base, str):
                args = [self._eval(a.value, env) for a in call.args]
                if all(isinstance(a, (str, ListVal)) for a in args) and not any(a.keyword or a.star for a in call.args):
                    args = [tuple(a.items) if isinstance(a, ListVal) else a for a in args]
                    if all(isinstance(a, str) or all(isinstance(i, str) for i in a) for a in args):
                        return getattr(base, func.attr.value)(*args)
        if name == "str" and len(call.args) == 1:
            v = self._eval(call.args[0].value, env)
            return str(v) if isinstance(v, (int, str)) and not isinstance(v, bool) else UNKNOWN
        if name in ("int", "float") and call.args:
            v = self._eval(call.args[0].value, env)
            v = bounded(type(0 if name == "int" else 0.0)(v)) if _num(v) else None
            return UNKNOWN if v is None else v
        if name == "len" and call.args:
            items = self.items_of(self._eval(call.args[0].value, env))
            return UNKNOWN if items is None else len(items)
        if name in ("list", "tuple") and call.args:
            seq = self._iterable(call.args[0].value, env)
            return ListVal(seq) if seq is not None else UNKNOWN
        if quals & {"math.sqrt", "numpy.sqrt"} and call.args:
            v = self._eval(call.args[0].value, env)
            return math.sqrt(v) if _num(v) else (Sym(self.src.code(call)) if isinstance(v, Sym) else UNKNOWN)
        if "torch.nn.init.calculate_gain" in quals:
            nl = self._eval(call.args[0].value, env) if call.args else None
            param = self._eval(call.args[1].value, env) if len(call.args) > 1 else None
            try:
                from gradlint.model.init import gain

                return gain(nl, param if _num(param) else None) if isinstance(nl, str) else UNKNOWN
            except Exception:
                return UNKNOWN
        cls = self.torch_class(func)
        if cls is not None and (cls in C.PARAM_LAYERS or cls in C.ACTIVATION_MODULES or cls in C.NORM_MODULES
                                or cls in C.PASSTHROUGH_MODULES or cls in C.RECURRENT_MODULES
                                or cls in C.TRANSFORMER_LAYERS or cls in C.TRANSFORMER_STACKS
                                or cls in C.CONTAINERS or cls in C.ATTENTION_MODULES or cls == "Transformer"):
            return self._torch_ctor(cls, call, env)
        if cls is not None and cls[:1].isupper():
            return Ctor("unknown", cls, [], {}, call, next(self.order))
        local = self.classes.get(name or "")
        if local is not None and local.is_module and not quals:
            return self._local_ctor(local, call, env)
        if local is not None and not quals and self.depth < MAX_DEPTH:
            return self.config(local, self.bound_args(call, env))
        # A method of the class under construction that builds layers (`self._make_layer(...)`)
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
            method = env.get("__methods__", {}).get(func.attr.value)
            if method is not None:
                return self._call_function(method, call, env, bound_self=True)
        if isinstance(func, cst.Name) and func.value in self.functions and not quals:
            return self._call_function(self.functions[func.value], call, env, bound_self=False)
        if name and name[:1].isupper() and not quals:
            # A class from another file (or one we do not model): a module we know nothing about.
            return self._extern(Ctor("unknown", name, [], {}, call, next(self.order)), name, call, env)
        if quals and any(q.rsplit(".", 1)[-1][:1].isupper() for q in quals):
            return self._extern(Ctor("unknown", sorted(quals)[0], [], {}, call, next(self.order)), name, call, env)
        if name and quals and all(_foreign_function(q) for q in quals) and not isinstance(self.src, L.LibrarySource):
            # A function of another file (`create_conv2d(...)`, `make_block(cfg.width)`): what it
            # returns is not known here, maybe a module; the project index may run it in its file
            # with these arguments (a third entry in `extern`: not a class, it may give None).
            ctor = self._extern(Ctor("unknown", name, [], {}, call, next(self.order)), name, call, env)
            ctor.extern = (*ctor.extern, "function")
            return ctor
        return UNKNOWN

    def _extern(self, ctor: Ctor, name: str | None, call: cst.Call, env: dict) -> Ctor:
        """Mark a module of a class this file does not define, named as written, with the call's
        arguments when every one is a constant: the project index may splice the class in."""
        if name and not isinstance(self.src, L.LibrarySource):
            pos, kw, open_pos, open_kw = self.bound_args(call, env)
            args: tuple | None = tuple((k, _neutral(v)) for k, v in (*enumerate(pos), *kw.items()))
            ctor.extern = (name, None if open_pos or open_kw else args)
        return ctor

    def _call_values(self, call: cst.Call, name: str | None, quals: frozenset[str], env: dict) -> Any:
        """Calls of values rather than of names: class references held in variables, partials,
        tensors made in __init__, the library catalogue, switches known to be False."""
        held = env.get(name) if name is not None and name in env else None
        if isinstance(held, ClassRef):
            return self.construct(held, self.bound_args(call, env), call)
        if isinstance(held, Alt) and not held.splice:
            bound = self.bound_args(call, env)
            return _alt(held.key, tuple(self.construct(o, bound, call) if isinstance(o, ClassRef) else UNKNOWN
                                        for o in held.options))
        if quals & L.FALSE_FUNCTIONS:
            return False
        if "functools.partial" in quals and call.args:
            target = self.eval(call.args[0].value, env)
            if isinstance(target, ClassRef):
                pos, kw, open_pos, open_kw = self.bound_args(call, env)
                if open_pos or open_kw:
                    return UNKNOWN
                return ClassRef(target.kind, target.cls, target.args + tuple(pos[1:]),
                                tuple({**dict(target.kwargs), **kw}.items()), target.library)
            return UNKNOWN
        if quals & _TENSOR_FACTORIES:
            return TENSOR
        if name == "dict" and not quals:
            pos, kw, open_pos, open_kw = self.bound_args(call, env)
            return DictVal(kw) if not pos and not open_pos and not open_kw else UNKNOWN
        if name in ("max", "min") and not quals and call.args:
            vals = [self.eval(a.value, env) for a in call.args if a.keyword is None and not a.star]
            if vals and all(_num(v) for v in vals) and len(vals) == len(call.args):
                return max(vals) if name == "max" else min(vals)
            return _NOT_HANDLED
        if name == "isinstance" and len(call.args) == 2 and not quals:
            v = self.eval(call.args[0].value, env)
            kinds = {dotted(el.value) for el in call.args[1].value.elements} if isinstance(call.args[1].value, cst.Tuple) else {dotted(call.args[1].value)}
            if kinds <= {"list", "tuple"} and (isinstance(v, ListVal) or _num(v) or isinstance(v, (str, bool, ClassRef))):
                return isinstance(v, ListVal)
            return _NOT_HANDLED
        if quals:
            lib = L.library_name(quals, self.src.path)
            if lib is not None:
                return self._library_call(lib, call, env)
        elif name is not None and isinstance(self.src, L.LibrarySource) and name in L.PASS:
            return self._library_call(name, call, env)
        return _NOT_HANDLED

    def _library_call(self, lib: str, call: cst.Call, env: dict) -> Any:
        if lib in L.PASS:
            ctor = Ctor("pass", L.PASS[lib], [], {}, call, next(self.order))
            ctor.site = self.site
            return ctor
        if lib in ("to_2tuple", "to_ntuple"):
            v = self.eval(call.args[0].value, env) if call.args else UNKNOWN
            return v if isinstance(v, ListVal) else ListVal([v, v])
        if lib in ("make_divisible", "_make_divisible"):
            pos, kw, _, _ = self.bound_args(call, env)
            v = pos[0] if pos else kw.get("v", UNKNOWN)
            d = pos[1] if len(pos) > 1 else kw.get("divisor", 8)
            if _num(v) and isinstance(d, int) and d > 0:
                new = max(d, int(v + d / 2) // d * d)
                return new + d if new < 0.9 * v else new
            return UNKNOWN
        if lib == "use_fused_attn":
            return True  # the fused kernel and the written-out attention are the same function
        if lib in L.CHECKPOINT_FUNCTIONS or lib in L.PASS_FUNCTIONS or lib in L.NORM_FUNCTIONS:
            return UNKNOWN
        libfm = self.library()
        bound = self.bound_args(call, env)
        site = self.site if self.site is not None else call
        if lib in libfm.classes:
            return libfm.construct(ClassRef("local", lib, library=True), bound, call, site=site)
        fn = libfm.functions.get(lib)
        if fn is None:
            return UNKNOWN
        saved, libfm.site = libfm.site, site
        try:
            return libfm._call_function(fn, None, {}, bound_self=False, bound=bound)
        finally:
            libfm.site = saved

    def bound_args(self, call: cst.Call, env: dict) -> tuple[list, dict, bool, bool]:
        """The call's arguments evaluated here: positional values, keyword values, and whether a
        `*args` / `**kwargs` we could not expand leaves the rest open."""
        pos: list = []
        kw: dict = {}
        open_pos = open_kw = False
        for a in call.args:
            if a.star == "*":
                v = self.eval(a.value, env)
                if isinstance(v, ListVal) and not open_pos:
                    pos.extend(v.items)
                else:
                    open_pos = True
            elif a.star == "**":
                v = self.eval(a.value, env)
                if isinstance(v, DictVal):
                    kw.update(v.items)
                else:
                    open_kw = True
            elif a.keyword is not None:
                kw[a.keyword.value] = self.eval(a.value, env)
            elif not open_pos:
                pos.append(self.eval(a.value, env))
        return pos, kw, open_pos, open_kw

    def construct(self, ref: ClassRef, bound: tuple, call: cst.Call, site: Any = None) -> Any:
        """Build the module a class reference names, with already evaluated arguments."""
        pos, kw, open_pos, open_kw = bound
        pos = list(ref.args) + pos
        kw = {**dict(ref.kwargs), **kw}
        if ref.library and site is None:
            site = self.site if self.site is not None else call
        if ref.kind == "extern":
            ctor = Ctor("unknown", ref.cls, [], {}, call, next(self.order))
            args = tuple((k, _neutral(v)) for k, v in (*enumerate(pos), *kw.items()))
            ctor.extern = (ref.cls, None if open_pos or open_kw else args)
            return ctor
        if ref.kind == "torch":
            if ref.cls in C.CONTAINERS:
                return Ctor("unknown", ref.cls, [], {}, call, next(self.order))
            ctor = Ctor("torch", ref.cls, pos, kw, call, next(self.order))
            ctor.site = site if site is not None else self.site
            return ctor
        fm = self.library() if ref.library and not isinstance(self.src, L.LibrarySource) else self
        info = fm.classes.get(ref.cls)
        if info is None:
            return Ctor("unknown", ref.cls, [], {}, call, next(self.order))
        base = fm.torch_base(info)
        if base is not None:
            return self.construct(ClassRef("torch", base), (pos, kw, open_pos, open_kw), call, site=site)
        ctor = Ctor("local", ref.cls, [], {}, call, next(self.order))
        ctor.site = site if site is not None else self.site
        if fm.depth >= MAX_DEPTH:
            ctor.kind, ctor.why = "unknown", f"nested deeper than {MAX_DEPTH} modules"
            return ctor
        saved = fm.site
        if ref.library:
            fm.site = ctor.site
        fm.depth += 1
        try:
            ctor.instance = fm.instantiate(info, None, {}, bound=(pos, kw, open_pos, open_kw))
        finally:
            fm.depth -= 1
            fm.site = saved
        return ctor

    def _call_function(self, fn: cst.FunctionDef, call: cst.Call | None, env: dict, bound_self: bool,
                       bound: tuple | None = None) -> Any:
        if self.depth >= MAX_DEPTH:
            return UNKNOWN
        scope: dict = {k: v for k, v in env.items() if k.startswith("self") or k.startswith("__")}
        params = list(fn.params.params)
        if bound_self and params:
            params = params[1:]
        self._bind_params(params, fn.params, call, env, scope, bound=bound)
        self.depth += 1
        try:
            interp = _InitInterpreter(self, scope, inst=env.get("__instance__"))
            interp.block(fn.body)
            # `return None` is None (no anti-aliasing layer); no return seen at all is unknown.
            return interp.returned if interp.returned is not None or interp.has_returned else UNKNOWN
        finally:
            self.depth -= 1

    def _bind_params(self, params: list, all_params: cst.Parameters, call: cst.Call | None, env: dict, scope: dict,
                     bound: tuple | None = None) -> None:
        if bound is None:
            bound = self.bound_args(call, env) if call is not None else ([], {}, False, False)
        positional, keywords, open_pos, open_kw = bound
        kwonly = list(all_params.kwonly_params)
        for i, p in enumerate(params + kwonly):
            pname = p.name.value
            if p in params and i < len(positional):
                scope[pname] = positional[i]
            elif pname in keywords:
                scope[pname] = keywords[pname]
            elif open_pos or open_kw:
                scope[pname] = Sym(pname)
            elif p.default is not None:
                scope[pname] = self.eval(p.default, {})
            else:
                scope[pname] = self.config_default(p) or Sym(pname)

    def _torch_ctor(self, cls: str, call: cst.Call, env: dict) -> Ctor:
        args = [self.eval(a.value, env) if a.star == "" else UNKNOWN for a in call.args if a.keyword is None]
        kwargs = {a.keyword.value: self.eval(a.value, env) for a in call.args if a.keyword is not None}
        ctor = Ctor("torch", cls, args, kwargs, call, next(self.order))
        ctor.site = self.site
        if cls in ("Sequential", "ModuleList"):
            items: list = []
            for a in call.args:
                if a.keyword is not None:
                    continue
                v = self.eval(a.value, env)
                if a.star == "*" or cls == "ModuleList":
                    if isinstance(v, ListVal):
                        items.extend(v.items)
                    elif isinstance(v, Ctor) and v.items is not None:
                        items.extend(v.items)
                    else:
                        items.append(UNKNOWN)
                else:
                    if isinstance(v, Ctor) and v.cls == "OrderedDict":
                        items.append(UNKNOWN)
                    else:
                        items.append(v)
            if len(call.args) == 1 and call.args[0].star == "" and cls == "Sequential" and _is_ordered_dict(call.args[0].value, self):
                items, keys = self._ordered_dict(call.args[0].value, env)
                ctor.keys = keys
            ctor.items = items
        elif cls == "ModuleDict":
            ctor.items, ctor.keys = [], []
            if call.args and isinstance(call.args[0].value, cst.Dict):
                for el in call.args[0].value.elements:
                    if isinstance(el, cst.DictElement):
                        k = self.eval(el.key, env)
                        ctor.keys.append(str(k) if isinstance(k, (str, int)) else "?")
                        ctor.items.append(self.eval(el.value, env))
        return ctor

    def _ordered_dict(self, expr: cst.BaseExpression, env: dict) -> tuple[list, list]:
        items, keys = [], []
        assert isinstance(expr, cst.Call)
        if expr.args and isinstance(expr.args[0].value, (cst.List, cst.Tuple)):
            for el in expr.args[0].value.elements:
                pair = el.value
                if isinstance(pair, cst.Tuple) and len(pair.elements) == 2:
                    k = self.eval(pair.elements[0].value, env)
                    keys.append(str(k) if isinstance(k, (str, int)) else "?")
                    items.append(self.eval(pair.elements[1].value, env))
        return items, keys

    def config_default(self, param: cst.Param) -> Any:
        """A parameter annotated with a config class of this file (`cfg: GPTConfig`) and given no
        value: the config as its defaults make it, which is the model as its class describes it."""
        ann = param.annotation.annotation if param.annotation is not None else None
        info = self.classes.get(dotted(ann) or "") if ann is not None else None
        if info is None or info.is_module or self.depth >= MAX_DEPTH:
            return None
        return self.config(info, ([], {}, False, False))

    def config(self, info: ClassInfo, bound: tuple) -> Ctor:
        """An instance of a plain class of this file (a dataclass or a PretrainedConfig-style
        class whose __init__ sets self.x = x): its attributes, from class-level defaults and
        from __init__ run with the arguments."""
        ctor = Ctor("config", info.name, [], {}, info.node, next(self.order))
        self.depth += 1
        try:
            inst = Instance(info, {}, [], fm=self)
            pos, kw, open_pos, open_kw = bound
            fields: list[str] = []
            for stmt in info.node.body.body:
                if isinstance(stmt, cst.SimpleStatementLine):
                    for small in stmt.body:
                        if isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name):
                            fields.append(small.target.value)
                            if small.value is not None:
                                inst.attrs[small.target.value] = self.eval(small.value, {})
                        elif isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name):
                            inst.attrs[small.targets[0].target.value] = self.eval(small.value, {})
            if "__init__" in info.methods:
                inst.attrs.update(self.instantiate(info, None, {}, bound=bound).attrs)
            else:
                # A dataclass's generated __init__: fields in order, then keywords.
                for name, value in zip(fields, pos):
                    inst.attrs[name] = value
                for name, value in kw.items():
                    inst.attrs[name] = value
                if open_pos or open_kw:
                    inst.attrs = {k: Sym(k) for k in inst.attrs}
            ctor.instance = inst
        finally:
            self.depth -= 1
        return ctor

    def torch_base(self, info: ClassInfo) -> str | None:
        """The torch.nn layer a class only renames (`class LayerNorm2d(nn.LayerNorm): pass`: no
        __init__, no forward of its own), built with the same arguments."""
        methods = self._methods(info)
        if "__init__" in methods or "forward" in methods:
            return None
        for base in info.bases:
            for q in self.imports.qualify_dotted(base):
                s = C.short(q)
                if s is not None and (s in C.PARAM_LAYERS or s in C.NORM_MODULES or s in C.ACTIVATION_MODULES
                                      or s in C.PASSTHROUGH_MODULES):
                    return s
            local = self.classes.get(base)
            if local is not None and local is not info:
                found = self.torch_base(local)
                if found is not None:
                    return found
        return None

    def _local_ctor(self, info: ClassInfo, call: cst.Call, env: dict) -> Ctor:
        base = self.torch_base(info)
        if base is not None:
            return self._torch_ctor(base, call, env)
        ctor = Ctor("local", info.name, [], {}, call, next(self.order))
        ctor.site = self.site
        building = self.building.get(info.name, 0)
        # A class built inside its own __init__ (k copies of itself: k**depth instances) is
        # followed MAX_SAME_CLASS levels deep, then unknown.
        if self.depth >= MAX_DEPTH or building >= MAX_SAME_CLASS:
            ctor.kind = "unknown"
            ctor.why = (f"built inside its own __init__ more than {MAX_SAME_CLASS} levels deep"
                        if building >= MAX_SAME_CLASS else f"nested deeper than {MAX_DEPTH} modules")
            return ctor
        self.depth += 1
        self.building[info.name] = building + 1
        try:
            ctor.instance = self.instantiate(info, call, env)
        finally:
            self.depth -= 1
            self.building[info.name] = building
        return ctor

    def instantiate(self, info: ClassInfo, call: cst.Call | None, env: dict, bound: tuple | None = None) -> Instance:
        """Interpret __init__ (the class's or its nearest local base's) with the call's arguments."""
        inst = Instance(info, {}, [], fm=self)
        scope: dict = {"__methods__": self._methods(info), "__instance__": inst}
        init = self._find_method(info, "__init__")
        if init is not None:
            params = list(init.params.params)[1:]
            self._bind_params(params, init.params, call, env, scope, bound=bound)
            interp = _InitInterpreter(self, scope, inst)
            try:
                interp.block(init.body)
            except Exhausted:
                inst.attrs["__budget__"] = UNKNOWN
                self.cuts += 1
        if info.sequential and (call is not None or bound is not None):
            # A subclass of nn.Sequential passes its layers to super().__init__(*layers)
            seq = inst.attrs.get("__sequential__")
            if isinstance(seq, ListVal):
                inst.attrs.update({str(i): v for i, v in enumerate(seq.items)})
        return inst

    def _methods(self, info: ClassInfo) -> dict:
        methods: dict = {}
        for base in reversed(info.bases):
            local = self.classes.get(base)
            if local is not None and local is not info:
                methods.update(self._methods(local))
        methods.update(info.methods)
        return methods

    def _find_method(self, info: ClassInfo, name: str) -> cst.FunctionDef | None:
        return self._methods(info).get(name)


# Library base classes that are nn.Modules (LightningModule, Hugging Face PreTrainedModel...).
_MODULE_BASES = ("LightningModule", "PreTrainedModel", "HyperparametersMixin")
_MODULE_PACKAGES = ("lightning", "pytorch_lightning", "transformers", "timm", "torchvision")


def _constant(v: Any) -> bool:
    return v is None or type(v) in (int, float, str, bool)


def _module_base(qualname: str) -> bool:
    head, _, last = qualname.rpartition(".")
    return last in _MODULE_BASES and head.split(".", 1)[0] in _MODULE_PACKAGES


def _looks_like_module(info: "ClassInfo") -> bool:
    """A class whose base comes from another file of the project (`class Net(BaseNet)`): a module
    when it has both __init__ and forward, the shape of every nn.Module."""
    return "forward" in info.methods and "__init__" in info.methods


_NOT_HANDLED: Any = object()
_STR_METHODS = frozenset({"lower", "upper", "strip", "startswith", "endswith", "replace"})
_TENSOR_FACTORIES = frozenset({
    "torch.nn.Parameter", "torch.nn.parameter.Parameter", "torch.zeros", "torch.ones", "torch.randn", "torch.rand",
    "torch.empty", "torch.tensor", "torch.full", "torch.arange", "torch.linspace", "torch.eye", "torch.Tensor",
    "torch.zeros_like", "torch.ones_like", "torch.randn_like",
})


def _foreign_function(qualname: str) -> bool:
    """Whether an imported callee may be a function of the project or of an installed library that
    builds a module: not torch's, numpy's or the standard library's, named in lower case."""
    head, last = qualname.split(".", 1)[0], qualname.rsplit(".", 1)[-1]
    return (last[:1].islower() or last[:1] == "_") and head not in _NOT_PROJECT and head not in sys.stdlib_module_names


def _maybe_none(v: Any) -> bool:
    """A call of a function of another file: None, a module or any other value."""
    return isinstance(v, Ctor) and v.extern is not None and len(v.extern) > 2


_NOT_PROJECT = frozenset({"torch", "numpy", "np", "builtins", "torchvision.ops", "einops", "scipy", "math"})


def _neutral_nodes(nodes: tuple) -> bool:
    return all(isinstance(n, Passthrough) or isinstance(n, Activation) and n.fn == "identity" for n in nodes)


def _neutral_module(v: Any) -> bool:
    """A module that passes its input on at the same scale (identity, dropout, stochastic depth)."""
    if isinstance(v, Alt) and not v.splice:
        return all(_neutral_module(o) for o in v.options)
    if not isinstance(v, Ctor):
        return False
    return v.kind == "pass" or (v.kind == "torch" and (v.cls == "Identity" or v.cls.startswith("Dropout")))


def _truth(v: Any) -> bool | None:
    """Python's truth value of an abstract value; None when it cannot be known."""
    known = truth(v)  # the plain values: None, bools, numbers, strings
    if known is not None:
        return known
    if isinstance(v, ClassRef):
        return True
    if isinstance(v, Alt):
        truths = {_truth(o) if not v.splice else _truth(o) for o in v.options}
        return truths.pop() if len(truths) == 1 else None
    if isinstance(v, ListVal) and any(isinstance(i, Alt) and i.splice for i in v.items):
        return True if any(not (isinstance(i, Alt) and i.splice) for i in v.items) else None
    if isinstance(v, ListVal) and UNKNOWN not in v.items:
        return bool(v.items)
    if isinstance(v, DictVal):
        return bool(v.items)
    if isinstance(v, Ctor):
        # Containers are falsy when empty (they define __len__); other modules are always true.
        if v.items is not None:
            return _truth(ListVal(v.items)) if UNKNOWN not in v.items else None
        return True if v.kind != "unknown" else None
    return None


_FOLDED = {cst.Add: "+", cst.Subtract: "-", cst.Multiply: "*", cst.Divide: "/", cst.FloorDivide: "//",
           cst.Power: "**", cst.Modulo: "%"}
_AUG_FOLDED = {cst.AddAssign: "+", cst.SubtractAssign: "-", cst.MultiplyAssign: "*", cst.FloorDivideAssign: "//"}


def _is_ordered_dict(expr: cst.BaseExpression, fm: FileModel) -> bool:
    if not isinstance(expr, cst.Call):
        return False
    return "collections.OrderedDict" in fm.qual(expr.func) or dotted(expr.func) == "OrderedDict"


def _walk_classes(module: cst.Module):
    stack: list = list(module.body)
    while stack:
        node = stack.pop(0)
        if isinstance(node, cst.ClassDef):
            yield node
            stack.extend(s for s in node.body.body if isinstance(s, cst.ClassDef))
        elif isinstance(node, (cst.If, cst.Try)):
            stack.extend(node.body.body)


class _Walker(StatementWalker):
    """What the two interpreters of a module (__init__ and forward) walk alike: the file's
    budget, and the statements neither follows (a `with` runs its body only, a `try` its body
    only: the handlers are the failure case, `match` not at all)."""

    fm: FileModel

    @property
    def meter(self) -> Meter:
        return self.fm.meter

    def with_stmt(self, stmt: cst.With) -> None:
        self.block(stmt.body)

    def try_stmt(self, stmt: cst.Try | cst.TryStar) -> None:
        self.block(stmt.body)

    def match_stmt(self, stmt: cst.Match) -> None:
        pass

    def fork(self) -> dict:
        return dict(self.env)


class _InitInterpreter(_Walker):
    """Statement interpreter for __init__ and the helper methods it calls."""

    def __init__(self, fm: FileModel, env: dict, inst: Instance | None) -> None:
        self.fm = fm
        self.env = env
        self.inst = inst
        self.returned: Any = None
        self.done = False
        # (if statement, value) of returns inside branches of undecided conditions, which the
        # return after them is the other choice of.
        self.early: list = []
        self.raised = False
        self.has_returned = False

    def ev(self, e: cst.BaseExpression) -> Any:
        return self.fm.eval(e, self.env)

    evaluate = ev

    def while_stmt(self, stmt: cst.While) -> None:
        """Not followed in __init__: what it builds stays out of the model."""

    def set_attr(self, name: str, value: Any) -> None:
        self.env["self." + name] = value
        if self.inst is not None:
            self.inst.attrs[name] = value

    def bind_name(self, name: str, value: Any) -> None:
        self.env[name] = value

    def bind_attribute(self, target: cst.Attribute, value: Any) -> None:
        if isinstance(target.value, cst.Name) and target.value.value == "self":
            self.set_attr(target.attr.value, value)
            return
        # `m.weight = nn.Parameter(...)` replaces a tensor: its init is no longer the default.
        owner = self.ev(target.value)
        if isinstance(owner, (Ctor, AnyModule)) and target.attr.value in ("weight", "bias"):
            self.record_init(TensorRef(owner, target.attr.value), InitSpec("unknown", origin=None))

    def unpack(self, value: Any, count: int) -> list | None:
        return value.items if isinstance(value, ListVal) and len(value.items) == count else None

    def aug_assign_stmt(self, small: cst.AugAssign) -> None:
        cur = self.ev(small.target)
        val = self.ev(small.value)
        if isinstance(cur, ListVal) and isinstance(small.operator, cst.AddAssign):
            cur.items.extend(val.items if isinstance(val, ListVal) else [UNKNOWN])
        elif isinstance(cur, Ctor) and cur.items is not None and isinstance(small.operator, cst.AddAssign):
            cur.items.extend(val.items if isinstance(val, ListVal) else [UNKNOWN])
        elif _num(cur) and _num(val):
            op_text = _AUG_FOLDED.get(type(small.operator))
            folded = fold(op_text, cur, val) if op_text is not None else None
            self.assign(small.target, UNKNOWN if folded is None else folded)
        else:
            self.assign(small.target, UNKNOWN)

    def expr_stmt(self, small: cst.Expr) -> None:
        if isinstance(small.value, cst.Call):
            self.call_stmt(small.value)

    def raise_stmt(self, small: cst.Raise) -> None:
        # A configuration that is refused: a branch that reaches this builds nothing.
        self.raised = self.done = True

    def assert_stmt(self, small: cst.Assert) -> None:
        if _truth(self.ev(small.test)) is False:
            self.raised = self.done = True

    def return_stmt(self, small: cst.Return) -> None:
        value = self.ev(small.value) if small.value is not None else None
        for key, earlier in reversed(self.early):
            value = _alt(key, (earlier, value)) if _module_like(earlier) and _module_like(value) else UNKNOWN
        self.returned = value
        self.done = self.has_returned = True

    def call_stmt(self, call: cst.Call) -> None:
        func = call.func
        fm = self.fm
        quals = fm.qual(func)
        # nn.init.xxx_(tensor, ...)
        for q in quals:
            if q.startswith("torch.nn.init.") or q.endswith(".trunc_normal_") or q == "trunc_normal_":
                self.init_call(q.rsplit(".", 1)[-1], call)
                return
        if isinstance(func, cst.Name) and func.value in ("trunc_normal_", "normal_init", "xavier_init", "kaiming_init"):
            self.init_call(func.value if func.value == "trunc_normal_" else "unknown", call)
            return
        if isinstance(func, cst.Attribute):
            method = func.attr.value
            owner_expr = func.value
            if method in ("append", "extend", "insert", "add_module", "register_module") or method in C.INIT_METHODS or method in ("copy_", "apply"):
                owner = self.ev(owner_expr)
            else:
                owner = None
                if dotted(owner_expr) is not None:
                    seen = self.ev(owner_expr)  # a dotted name: nothing runs, a block of another file is marked
                    if isinstance(seen, Ctor) and seen.extern is not None:
                        seen.reached = True  # `self.block.init_weights()`: not in the other file's IR
            if method == "append" and call.args:
                target = owner.items if isinstance(owner, ListVal) else owner.items if isinstance(owner, Ctor) and owner.items is not None else None
                if target is not None:
                    target.append(self.ev(call.args[0].value))
                    if len(target) > MAX_ITEMS:
                        raise Exhausted()
                return
            if method == "extend" and call.args:
                target = owner.items if isinstance(owner, ListVal) else owner.items if isinstance(owner, Ctor) and owner.items is not None else None
                if target is not None:
                    v = self.ev(call.args[0].value)
                    target.extend(v.items if isinstance(v, ListVal) else [UNKNOWN])
                return
            if method in ("add_module", "register_module") and len(call.args) >= 2:
                key = self.ev(call.args[0].value)
                value = self.ev(call.args[1].value)
                if isinstance(owner_expr, cst.Name) and owner_expr.value == "self" and isinstance(key, str):
                    self.set_attr(key, value)
                elif isinstance(owner, Ctor) and owner.items is not None:
                    owner.items.append(value)
                    if owner.keys is not None:
                        owner.keys.append(str(key))
                return
            if method == "apply" and call.args and isinstance(owner_expr, cst.Name) and owner_expr.value == "self":
                self.apply_fn(call.args[0].value)
                return
            if method == "apply" and call.args and isinstance(owner, Ctor):
                self.apply_fn(call.args[0].value, scope_ctor=owner)
                return
            if method in C.INIT_METHODS and isinstance(owner, TensorRef):
                scheme, names = C.INIT_METHODS[method]
                params = {}
                for i, pname in enumerate(names):
                    v = _arg_value(call, i, pname)
                    if v is not None:
                        params[pname] = self.ev(v)
                if scheme == "normal":
                    params.setdefault("mean", 0.0)
                    params.setdefault("std", 1.0)
                if scheme == "uniform":
                    params.setdefault("a", 0.0)
                    params.setdefault("b", 1.0)
                if scheme == "constant" and params.get("val") == 0:
                    scheme = "zeros"
                self.record_init(owner, self.spec(scheme, params, call))
                return
            if method == "copy_" and isinstance(owner, TensorRef):
                self.record_init(owner, InitSpec("unknown", origin=self.fm.src.span(call)))
                return
            if isinstance(func.value, cst.Call) and dotted(func.value.func) == "super" and method == "__init__":
                if self.inst is not None and self.inst.cls.sequential:
                    items: list = []
                    for a in call.args:
                        v = self.ev(a.value)
                        if a.star == "*" and isinstance(v, ListVal):
                            items.extend(v.items)
                        else:
                            items.append(v)
                    self.inst.attrs["__sequential__"] = ListVal(items)
                    return
                self.super_init(call)
                return
            if isinstance(func.value, cst.Name) and func.value.value == "self":
                method_def = self.env.get("__methods__", {}).get(method)
                if method_def is not None and method not in ("forward", "__init__"):
                    fm._call_function(method_def, call, self.env, bound_self=True)
                return

    def super_init(self, call: cst.Call) -> None:
        """`super().__init__(...)` of a class whose base is a class of this file: the base's
        __init__ runs on the same instance, with the call's arguments."""
        fm = self.fm
        if self.inst is None or self.inst.cls is None or fm.depth >= MAX_DEPTH:
            return
        for base in self.inst.cls.bases:
            local = fm.classes.get(base)
            if local is None or local is self.inst.cls:
                continue
            init = fm._find_method(local, "__init__")
            if init is None:
                return
            scope: dict = {"__methods__": self.env.get("__methods__", {}), "__instance__": self.inst}
            fm._bind_params(list(init.params.params)[1:], init.params, call, self.env, scope)
            fm.depth += 1
            try:
                _InitInterpreter(fm, scope, self.inst).block(init.body)
            finally:
                fm.depth -= 1
            for k, v in self.inst.attrs.items():
                self.env["self." + k] = v
            return

    def spec(self, scheme: str, params: dict, call: cst.Call) -> InitSpec:
        clean = []
        for k, v in params.items():
            if isinstance(v, (int, float, str)) and not isinstance(v, Sym):
                clean.append((k, float(v) if _num(v) else v))
            else:
                # A parameter we cannot evaluate makes the whole initialisation unknown.
                return InitSpec("unknown", origin=self.fm.src.span(call))
        return InitSpec(scheme, tuple(sorted(clean)), origin=self.fm.src.span(call))

    def init_call(self, fname: str, call: cst.Call) -> None:
        scheme = C.INIT_FUNCTIONS.get(fname, "unknown")
        if not call.args:
            return
        target = self.ev(call.args[0].value)
        if not isinstance(target, TensorRef):
            return
        params = dict(C.INIT_DEFAULTS.get(scheme, {}))
        for i, pname in enumerate(C.INIT_POSITIONAL.get(scheme, ())):
            v = _arg_value(call, i + 1, pname)
            if v is not None:
                params[pname] = self.ev(v)
        if scheme == "constant" and params.get("val") == 0:
            scheme = "zeros"
        self.record_init(target, self.spec(scheme, params, call) if scheme != "unknown" else InitSpec("unknown", origin=self.fm.src.span(call)))

    def record_init(self, ref: TensorRef, spec: InitSpec) -> None:
        order = next(self.fm.order)
        if isinstance(ref.owner, Ctor) and ref.owner.extern is not None:
            ref.owner.reached = True
        if isinstance(ref.owner, Ctor):
            ref.owner.inits.append((order, ref.name, spec))
        elif isinstance(ref.owner, AnyModule) and self.inst is not None:
            self.inst.type_inits.append((order, ref.owner.types, ref.name, spec))

    def apply_fn(self, fn_expr: cst.BaseExpression, scope_ctor: Ctor | None = None) -> None:
        fn = None
        if isinstance(fn_expr, cst.Attribute) and isinstance(fn_expr.value, cst.Name) and fn_expr.value.value == "self":
            fn = self.env.get("__methods__", {}).get(fn_expr.attr.value)
            params = list(fn.params.params)[1:] if fn is not None else []
        elif isinstance(fn_expr, cst.Name):
            fn = self.fm.functions.get(fn_expr.value)
            params = list(fn.params.params) if fn is not None else []
        # `self.head.apply(fn)` reaches the head's layers only: its type-dispatched inits are
        # kept on the head and handed down to its children when paths are assigned.
        target = scope_ctor.scoped_inits if scope_ctor is not None else self.inst.type_inits if self.inst is not None else None
        if fn is None or not params:
            # An init function we cannot read: the initialisation of every layer it reaches becomes unknown.
            if target is not None:
                target.append((next(self.fm.order), (), "*", InitSpec("unknown", origin=self.fm.src.span(fn_expr))))
            return
        scope = dict(self.env)
        scope[params[0].name.value] = AnyModule()
        inst = self.inst
        if scope_ctor is not None:
            inst = Instance(self.inst.cls if self.inst is not None else None, self.inst.attrs if self.inst is not None else {},
                            scope_ctor.scoped_inits, fm=self.fm)  # type: ignore[arg-type]
        sub = _InitInterpreter(self.fm, scope, inst)
        sub.block(fn.body)

    def for_stmt(self, stmt: cst.For) -> None:
        it = stmt.iter
        # for m in self.modules(): isinstance dispatch
        if isinstance(it, cst.Call) and isinstance(it.func, cst.Attribute) and it.func.attr.value in ("modules", "children", "named_modules", "named_children"):
            named = it.func.attr.value.startswith("named_")
            if named and isinstance(stmt.target, cst.Tuple) and len(stmt.target.elements) == 2:
                self.assign_target(stmt.target.elements[0].value, UNKNOWN)
                self.assign_target(stmt.target.elements[1].value, AnyModule())
            elif not named:
                self.assign_target(stmt.target, AnyModule())
            else:
                return
            self.block(stmt.body)
            return
        if isinstance(it, cst.Call) and isinstance(it.func, cst.Attribute) and it.func.attr.value in ("parameters", "named_parameters"):
            # Loops over parameters initialise by name patterns we do not model: unknown init.
            owner = self.ev(it.func.value) if not (isinstance(it.func.value, cst.Name) and it.func.value.value == "self") else None
            if _touches_init(stmt.body):
                order = next(self.fm.order)
                if isinstance(owner, Ctor):
                    owner.inits.append((order, "*", InitSpec("unknown", origin=self.fm.src.span(stmt))))
                elif self.inst is not None:
                    self.inst.type_inits.append((order, (), "*", InitSpec("unknown", origin=self.fm.src.span(stmt))))
            return
        super().for_stmt(stmt)

    def loop_items(self, stmt: cst.For) -> list | None:
        try:
            return self.fm._iterable(stmt.iter, self.env)
        except Exhausted:  # too long to unroll: as if its length were unknown
            return None

    def fork_loop(self) -> dict:
        return _snapshot(self.env)

    def join_loop(self, stmt: cst.For | cst.While, before: dict) -> None:
        # Unknown trip count: effects on lists become unknown, conservatively.
        _poison_changed(self.env, before)

    def if_stmt(self, stmt: cst.If) -> None:
        test = self._isinstance_test(stmt.test)
        if test is not None:
            var, types = test
            saved = self.env.get(var)
            self.env[var] = AnyModule(types)
            self.block(stmt.body)
            self.env[var] = saved
            if stmt.orelse is not None:
                self.env[var] = saved
                self.block(else_body(stmt))
                self.env[var] = saved
            return
        super().if_stmt(stmt)

    def condition(self, stmt: cst.If) -> bool | None:
        return _truth(self.ev(stmt.test))

    # An `if` whose condition is not known at construction: each branch runs from the same state.
    # Where they built different modules, or appended different layers to a list, the value is an
    # Alt (one forward path per choice); any other value they disagree on becomes unknown. A module
    # attribute only one branch sets is kept (it exists on some configuration).
    def fork(self) -> tuple:
        env0 = dict(self.env)
        lists = {id(v): (v, list(v.items)) for v in env0.values()
                 if isinstance(v, ListVal) or isinstance(v, Ctor) and v.items is not None}
        return env0, dict(self.inst.attrs) if self.inst is not None else {}, lists, self.returned

    def restore(self, state: tuple) -> None:
        env0, attrs0, lists, returned0 = state
        self.env.clear()
        self.env.update(env0)
        if self.inst is not None:
            self.inst.attrs.clear()
            self.inst.attrs.update(attrs0)
        for obj, items in lists.values():
            obj.items[:] = items
        self.returned, self.done, self.raised = returned0, False, False

    def settle(self, state: tuple) -> tuple:
        return (dict(self.env), dict(self.inst.attrs) if self.inst is not None else {},
                {k: list(obj.items) for k, (obj, _) in state[2].items()}, self.returned, self.done, self.raised)

    def join_branches(self, stmt: cst.CSTNode, state: tuple, first: tuple, second: tuple) -> None:
        env0, attrs0, lists, returned0 = state
        outcomes = [first, second]
        if outcomes[0][5] != outcomes[1][5]:
            # One branch refuses the configuration (raise, assert False): the other one is taken.
            env_a, attrs_a, lists_a, ret_a, done_a, _ = outcomes[1] if outcomes[0][5] else outcomes[0]
            self.env.clear()
            self.env.update(env_a)
            if self.inst is not None:
                self.inst.attrs.clear()
                self.inst.attrs.update(attrs_a)
            for k, (obj, _) in lists.items():
                obj.items[:] = lists_a[k]
            self.returned, self.done, self.raised = ret_a, done_a, False
            return
        self.raised = outcomes[0][5]
        (env_a, attrs_a, lists_a, ret_a, done_a, _), (env_b, attrs_b, lists_b, ret_b, done_b, _) = outcomes
        for k, (obj, items) in lists.items():
            obj.items[:] = _merge_items(stmt, items, lists_a[k], lists_b[k])
        self.env.clear()
        self.env.update(_merge_values(stmt, env0, env_a, env_b, keep_one=lambda key: key.startswith("self.")))
        if self.inst is not None:
            merged = _merge_values(stmt, attrs0, attrs_a, attrs_b, keep_one=lambda key: True)
            self.inst.attrs.clear()
            self.inst.attrs.update(merged)
            for name, value in merged.items():
                self.env["self." + name] = value
        self.done = done_a and done_b
        if self.done:
            self.returned = _alt(stmt, (ret_a, ret_b)) if _module_like(ret_a) and _module_like(ret_b) else (
                ret_a if ret_a is ret_b else UNKNOWN)
        elif done_a or done_b:
            # One branch returned: the code after the `if` is the other choice of the return value.
            self.early.append((stmt, ret_a if done_a else ret_b))
            self.returned = returned0
        else:
            self.returned = returned0

    def _isinstance_test(self, test: cst.BaseExpression) -> tuple[str, tuple[str, ...]] | None:
        if type(test) is cst.Call and dotted(test.func) == "isinstance" and len(test.args) == 2:
            var = test.args[0].value
            if type(var) is cst.Name and isinstance(self.env.get(var.value), AnyModule):
                types_expr = test.args[1].value
                exprs = [el.value for el in types_expr.elements] if type(types_expr) is cst.Tuple else [types_expr]
                types = []
                for t in exprs:
                    cls = self.fm.torch_class(t)
                    types.append(cls if cls is not None else (dotted(t) or "?"))
                return var.value, tuple(types)
        return None


def _touches_init(body: cst.CSTNode) -> bool:
    found = []

    class V(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            name = dotted(node.func) or ""
            last = name.rsplit(".", 1)[-1]
            if last in C.INIT_FUNCTIONS or last in C.INIT_METHODS or last in ("copy_",):
                found.append(node)

    body.visit(V())
    return bool(found)


_MISSING: Any = object()


def _merge_items(key: Any, before: list, a: list, b: list) -> list:
    """A list after an undecided `if`: unchanged, or with what each branch appended spliced in as
    an Alt; any other change (an item replaced or removed) makes it unknown."""
    if len(a) == len(b) and all(x is y for x, y in zip(a, b)):
        return a
    n = len(before)
    if all(len(side) >= n and all(x is y for x, y in zip(side, before)) for side in (a, b)):
        return before + [Alt(key, (ListVal(a[n:]), ListVal(b[n:])), splice=True)]
    return [UNKNOWN]


def _merge_values(key: Any, before: dict, a: dict, b: dict, keep_one) -> dict:
    """Names (or attributes) after an undecided `if` whose branches left them as `a` and `b`."""
    out: dict = {}
    for k in list(dict.fromkeys([*a, *b])):
        va, vb = a.get(k, _MISSING), b.get(k, _MISSING)
        if va is vb:
            out[k] = va
        elif k.startswith("__"):
            out[k] = va if va is not _MISSING else vb
        elif va is _MISSING or vb is _MISSING:
            one = vb if va is _MISSING else va
            if k in before:  # deleted on one side: unknown
                out[k] = UNKNOWN
            elif keep_one(k) or _module_like(one) and not (one is None):
                out[k] = one
            else:
                out[k] = UNKNOWN
        elif _module_like(va) and _module_like(vb):
            out[k] = _alt(key, (va, vb))
        elif type(va) is type(vb) and isinstance(va, (int, float, str, bool)) and va == vb:
            out[k] = va
        else:
            out[k] = UNKNOWN
    return out


def _snapshot(env: dict) -> dict:
    return {k: (v, len(v.items) if isinstance(v, ListVal) else len(v.items) if isinstance(v, Ctor) and v.items is not None else None)
            for k, v in env.items()}


def _poison_changed(env: dict, before: dict, keep_new_attrs: bool = False, inst: Instance | None = None) -> None:
    """After code that may or may not have run: values it changed become unknown. A module
    attribute only one branch creates is kept (it exists on some configuration), but lists that
    grew by an unknown amount become unknown."""
    for key, value in list(env.items()):
        old = before.get(key)
        if old is None:
            if keep_new_attrs and key.startswith("self."):
                continue
            if not key.startswith("__"):
                env[key] = UNKNOWN
            continue
        old_value, old_len = old
        now_len = len(value.items) if isinstance(value, ListVal) else len(value.items) if isinstance(value, Ctor) and value.items is not None else None
        if value is not old_value or now_len != old_len:
            env[key] = UNKNOWN
            if key.startswith("self.") and inst is not None:
                inst.attrs[key[5:]] = UNKNOWN
            if isinstance(value, ListVal):
                value.items[:] = [UNKNOWN]
            elif isinstance(value, Ctor) and value.items is not None:
                value.items[:] = [UNKNOWN]


# ---- from interpreted instances to IR ---------------------------------------------------

class Lowerer:
    """Assigns module paths and lowers forward to IR nodes for one root instance."""

    def __init__(self, fm: FileModel) -> None:
        self.fm = fm
        self.params: list[Param] = []
        self.recurrents: list[Recurrent] = []
        self.seen: set[int] = set()
        self.depth = 0
        self.plan: list[bool] | None = None
        self.order: list[bool] = []
        self.choices: dict[int, bool] = {}
        self.note = ""  # why forward could not be followed, for people (`gradlint model`)

    # paths and parameter inventory
    def assign_paths(self, attrs: dict, prefix: str, type_inits: list) -> None:
        for name, value in attrs.items():
            if name.startswith("__"):
                continue
            if isinstance(value, Alt) and value.splice and name.isdigit():  # nn.Sequential subclass
                for option in value.options:
                    for k, inner in enumerate(option.items):
                        self._assign(inner, f"{prefix}{int(name) + k}", type_inits)
                continue
            self._assign(value, f"{prefix}{name}", type_inits)

    def _assign(self, value: Any, path: str, type_inits: list) -> None:
        if isinstance(value, Alt) and not value.splice:
            for option in value.options:  # every choice is a layer of some configuration
                self._assign(option, path, type_inits)
            return
        if not isinstance(value, Ctor) or id(value) in self.seen:
            return
        self.seen.add(id(value))
        value.path = path
        if value.scoped_inits:
            type_inits = value.scoped_inits + type_inits
        value.__dict__["type_inits"] = type_inits
        if value.items is not None:
            keys = value.keys if value.keys is not None and len(value.keys) == len(value.items) else None
            i = 0
            for j, item in enumerate(value.items):
                if isinstance(item, Alt) and item.splice:
                    # Items after a splice are numbered as if its first option was taken.
                    for option in item.options:
                        for k, inner in enumerate(option.items):
                            self._assign(inner, f"{path}.{i + k}", type_inits)
                    i += len(item.options[0].items)
                    continue
                self._assign(item, f"{path}.{keys[j] if keys else i}", type_inits)
                i += 1
        if value.instance is not None:
            inner = value.instance.type_inits + type_inits  # the parent's apply() reaches children
            self.assign_paths(value.instance.attrs, path + ".", inner)
        if value.kind == "torch" and value.cls in C.PARAM_LAYERS:
            self.params.append(self.param(value))
        if value.kind == "torch" and value.cls in C.RECURRENT_MODULES:
            self.recurrents.append(self.recurrent(value))

    def final_init(self, ctor: Ctor, tensor: str) -> InitSpec | None:
        """The last initialisation that reached `tensor` of `ctor` after it was built, or None."""
        best: tuple[int, InitSpec] | None = None
        for order, name, spec in ctor.inits:
            if (name == tensor or name == "*") and order > ctor.order and (best is None or order > best[0]):
                best = (order, spec)
        for order, types, name, spec in ctor.__dict__.get("type_inits", []):
            if (name == tensor or name == "*") and order > ctor.order and (not types or ctor.cls in types or "Module" in types):
                if best is None or order > best[0]:
                    best = (order, spec)
        return best[1] if best else None

    def param(self, ctor: Ctor) -> Param:
        op, kdims = C.PARAM_LAYERS[ctor.cls]
        arg = _ArgReader(ctor)
        span = self.span(ctor)
        if op == "linear":
            if ctor.cls == "LazyLinear":
                fan_in, fan_out = None, _fan(arg.get(0, "out_features"))
            else:
                fan_in, fan_out = _fan(arg.get(0, "in_features")), _fan(arg.get(1, "out_features"))
            default = InitSpec("torch-linear")
        elif op == "bilinear":
            fan_in, fan_out = _fan(arg.get(0, "in1_features")), _fan(arg.get(2, "out_features"))
            default = InitSpec("torch-linear")
        elif op == "embedding":
            fan_in, fan_out = _fan(arg.get(1, "embedding_dim")), _fan(arg.get(0, "num_embeddings"))
            default = InitSpec("torch-embedding")
        else:
            lazy = ctor.cls.startswith("Lazy")
            cin = None if lazy else arg.get(0, "in_channels")
            cout = arg.get(0 if lazy else 1, "out_channels")
            k = arg.get(1 if lazy else 2, "kernel_size")
            groups = arg.kw("groups", 1)
            receptive = _receptive(k, kdims)
            if op.startswith("convtranspose"):
                fan_in = _mul(_div(cout, groups), receptive)
                fan_out = _mul(cin, receptive)
            else:
                fan_in = _mul(_div(cin, groups), receptive)
                fan_out = _mul(cout, receptive)
            default = InitSpec("torch-linear")
        init = self.final_init(ctor, "weight") or default
        bias_flag = arg.kw("bias", True)
        bias_init = self.final_init(ctor, "bias")
        if bias_init is None and bias_flag is False:
            bias_init = InitSpec("none")
        attr = (ctor.path or "").rsplit(".", 1)[-1]
        return Param(name=ctor.path or "", op=op, fan_in=fan_in, fan_out=fan_out, init=init, origin=span,
                     attr=attr, bias_init=bias_init)

    def recurrent(self, ctor: Ctor) -> Recurrent:
        arg = _ArgReader(ctor)
        cell = C.RECURRENT_MODULES[ctor.cls]
        nl = arg.kw("nonlinearity", "tanh")
        if cell in ("rnn", "rnn_cell"):
            pos = 3 if cell == "rnn" else 3
            v = arg.get(pos, "nonlinearity")
            nl = v if isinstance(v, str) else (nl if isinstance(nl, str) else "tanh")
        layers = arg.get(2, "num_layers") if cell in ("rnn", "lstm", "gru") else 1
        hh = self.final_init(ctor, "weight_hh_l0") or self.final_init(ctor, "weight_hh")
        return Recurrent(name=ctor.path or "", cell=cell, nonlinearity=nl if isinstance(nl, str) else "unknown",
                         hidden=_fan(arg.get(1, "hidden_size")), num_layers=layers if isinstance(layers, int) else 1,
                         origin=self.span(ctor), weight_hh_init=hh)

    def span(self, ctor: Ctor):
        """Where a layer is, for the user: its constructor call, or the user's call of the library
        block that built it."""
        return self.fm.src.span(ctor.site if ctor.site is not None else ctor.node)

    # forward paths: undecided conditions are decided by a plan, one run per combination
    def decide(self, node: cst.CSTNode) -> bool | None:
        """The branch this run takes at an `if` whose condition is unknown (None: merge both).
        One decision per `if` statement and run: every instance of a class takes the same side,
        which is what a condition on a setting or on the input's shape does."""
        if self.plan is None:
            return None
        key = id(node)
        if key in self.choices:
            return self.choices[key]
        i = len(self.order)
        choice = self.plan[i] if i < len(self.plan) else True
        self.order.append(choice)
        self.choices[key] = choice
        return choice

    def pick(self, alt: Alt) -> Any:
        """The option of `alt` this forward run takes; NO_CHOICE when branches are merged."""
        choice = self.decide(alt.key)
        if choice is None:
            return NO_CHOICE
        return alt.options[0] if choice or len(alt.options) < 2 else alt.options[1]

    def alt_nodes(self, alt: Alt, nodes_of) -> tuple:
        """The nodes of the option this run takes; when merging, the nodes all options share,
        else an opaque node."""
        chosen = self.pick(alt)
        if chosen is not NO_CHOICE:
            return nodes_of(chosen)
        found = [nodes_of(o) for o in alt.options]
        if all(f == found[0] for f in found) or all(_neutral_nodes(f) for f in found):
            return found[0]  # the same layers, or layers that all leave the gradient's scale alone
        return (Opaque("", "branches differ"),)

    def forward_paths(self, inst: "Instance", prefix: str) -> tuple[list[tuple], bool, str]:
        """Every path through forward (at most MAX_PATHS), as distinct node tuples; whether each
        was followed; and why not when one was not. Past the bound, one merged run."""
        plans: list[list[bool]] = [[]]
        results: list[tuple] = []
        runs = 0
        while plans and runs < MAX_PATHS:
            self.plan, self.order, self.choices = plans.pop(), [], {}
            self.note = ""
            nodes, known = self.forward(inst, prefix)
            runs += 1
            if not known:
                self.plan = None
                return [], False, self.note or "forward not followed"
            if nodes not in results:
                results.append(nodes)
            for i in range(len(self.plan), len(self.order)):
                plans.append(self.order[:i] + [not self.order[i]])
        self.plan = None
        if plans:
            nodes, known = self.forward(inst, prefix)
            return ([nodes] if known else []), known, (self.note or "forward not followed") if not known else ""
        return results, True, ""

    # forward
    def module_nodes(self, value: Any) -> tuple:
        """The IR nodes of calling a module value on a tensor."""
        if isinstance(value, Alt) and not value.splice:
            return self.alt_nodes(value, self.module_nodes)
        if value is None:
            return (Opaque("", "None called as a module"),)
        if not isinstance(value, Ctor):
            return (Opaque("", "unknown module"),)
        span = self.span(value)
        path = value.path or ""
        if value.kind == "pass":
            return (Passthrough(path, value.cls, span),)
        if value.kind == "torch":
            cls = value.cls
            if cls in C.PARAM_LAYERS:
                return (self.param(value),)
            if cls in C.ACTIVATION_MODULES:
                fn, pname = C.ACTIVATION_MODULES[cls]
                param = None
                if pname:
                    v = _ArgReader(value).get(0, pname)
                    param = float(v) if _num(v) else C.ACTIVATION_DEFAULT_PARAM.get(fn)
                elif fn in C.ACTIVATION_DEFAULT_PARAM:
                    param = C.ACTIVATION_DEFAULT_PARAM[fn]
                return (Activation(path, fn, param, span),)
            if cls in C.NORM_MODULES:
                return (Norm(path, C.NORM_MODULES[cls], span),)
            if cls in C.PASSTHROUGH_MODULES:
                return (Passthrough(path, cls, span),)
            if cls in C.RECURRENT_MODULES:
                return (self.recurrent(value),)
            if cls in C.TRANSFORMER_LAYERS:
                nf = _ArgReader(value).kw("norm_first", False)
                return (TransformerBlock(path, C.TRANSFORMER_LAYERS[cls], nf if isinstance(nf, bool) else None, span),)
            if cls in C.TRANSFORMER_STACKS:
                arg = _ArgReader(value)
                layer = arg.get(0, "encoder_layer" if cls == "TransformerEncoder" else "decoder_layer")
                n = arg.get(1, "num_layers")
                nf = _ArgReader(layer).kw("norm_first", False) if isinstance(layer, Ctor) else None
                kind = C.TRANSFORMER_STACKS[cls]
                if isinstance(n, int) and n <= MAX_UNROLL:
                    return tuple(TransformerBlock(f"{path}.layers.{i}", kind, nf if isinstance(nf, bool) else None, span) for i in range(n))
                return (Opaque(path, f"{cls} of unknown depth", span),)
            if cls == "Transformer":
                arg = _ArgReader(value)
                ne, nd = arg.kw("num_encoder_layers", 6), arg.kw("num_decoder_layers", 6)
                nf = arg.kw("norm_first", False)
                if isinstance(ne, int) and isinstance(nd, int) and 0 <= ne + nd <= MAX_UNROLL:
                    nodes = [TransformerBlock(f"{path}.encoder.layers.{i}", "encoder", nf if isinstance(nf, bool) else None, span) for i in range(ne)]
                    nodes += [TransformerBlock(f"{path}.decoder.layers.{i}", "decoder", nf if isinstance(nf, bool) else None, span) for i in range(nd)]
                    return tuple(nodes)
                return (Opaque(path, "Transformer of unknown depth", span),)
            if cls == "Sequential" and value.items is not None:
                return self.sequence_nodes(value.items)
            return (Opaque(path, f"nn.{cls} called as a layer: not modelled", span),)
        if value.kind == "local" and value.instance is not None:
            if self.depth >= MAX_DEPTH:
                return (Opaque(path, f"{value.cls}: nested deeper than {MAX_DEPTH} modules", span),)
            self.depth += 1
            note = self.note  # a child's failure is said by its opaque node, not as the parent's note
            try:
                nodes, known = self.forward(value.instance, path + ".")
            finally:
                self.depth -= 1
                self.note = note
            return nodes if known else (Opaque(path, f"{value.cls}: forward not followed", span),)
        why = getattr(value, "why", None)
        what = f"{value.cls}: {why or 'a class gradlint does not see (another file or library)'}"
        if _maybe_none(value) and why is None:
            what = f"{value.cls}(): what a function of another file (or library) returns"
        if value.reached:
            return (Opaque(path, f"{value.cls}: a class of another file whose layers __init__ changes", span),)
        if value.kind == "unknown" and value.extern is not None and why is None:
            return (Extern(path, what, span, cls=value.extern[0], args=value.extern[1], inits=self.extern_inits(value)),)
        return (Opaque(path, what, span),)

    def extern_inits(self, ctor: Ctor) -> tuple:
        """The initialisations of this file that reach the layers of a block of another file after
        it was built (`self.apply(fn)`, loops over `self.modules()`), by parametric op."""
        out: list = []
        for order, types, tensor, spec in sorted(ctor.__dict__.get("type_inits", []), key=lambda t: t[0]):
            if order <= ctor.order:
                continue
            if not types or "Module" in types:
                ops: tuple = ()
            else:
                ops = tuple(sorted({C.PARAM_LAYERS[t][0] for t in types if t in C.PARAM_LAYERS}))
                if not ops:
                    continue  # norms, activations: no parametric layer of the block
            out.append((ops, tensor, spec))
        return tuple(out)

    def sequence_nodes(self, items: list) -> tuple:
        out: list = []
        for item in items:
            if isinstance(item, Alt) and item.splice:
                out.extend(self.alt_nodes(item, lambda o: self.sequence_nodes(o.items)))
            else:
                out.extend(self.module_nodes(item))
        return tuple(out)

    def forward(self, inst: Instance, prefix: str) -> tuple[tuple, bool]:
        fm = inst.fm or self.fm
        saved, fm.pick = fm.pick, self.pick
        try:
            return self._forward(inst, prefix, fm)
        finally:
            fm.pick = saved

    def _forward(self, inst: Instance, prefix: str, fm: "FileModel") -> tuple[tuple, bool]:
        fwd = fm._find_method(inst.cls, "forward")
        if fwd is None:
            if inst.cls.sequential:
                seq = [v for k, v in inst.attrs.items() if k.isdigit()]
                return self.sequence_nodes(seq), True
            self.note = self.note or f"{inst.cls.name} has no forward"
            return (), False
        from gradlint.source.forward import ForwardInterpreter  # it builds on this module's values

        interp = ForwardInterpreter(self, inst)
        interp.prefix = prefix
        params = [p.name.value for p in fwd.params.params][1:]
        if not params:
            self.note = self.note or f"{inst.cls.name}.forward takes no input"
            return (), False
        for i, p in enumerate(fwd.params.params[1:]):
            # The first input is the signal followed; the others are other inputs, unless they
            # default to None (an optional mask, a flag), which is what they are when omitted.
            default = fwd.params.params[i + 1].default
            interp.env[p.name.value] = PathVal(p.name.value, ()) if i == 0 or default is None else fm.eval(default, {})
        for p in fwd.params.kwonly_params:
            interp.env[p.name.value] = fm.eval(p.default, {}) if p.default is not None else UNKNOWN
        try:
            interp.block(fwd.body)
        except Exhausted:
            self.note = self.note or f"{inst.cls.name}.forward exceeds the interpretation budget"
            return (), False
        result = interp.result(params[0])
        if result is None:
            self.note = self.note or f"{inst.cls.name}.forward does not return a value computed from {params[0]}"
            return (), False
        return result, True


class _ArgReader:
    def __init__(self, ctor: Any) -> None:
        self.ctor = ctor

    def get(self, index: int, name: str) -> Any:
        if not isinstance(self.ctor, Ctor):
            return UNKNOWN
        if name in self.ctor.kwargs:
            return self.ctor.kwargs[name]
        if index < len(self.ctor.args):
            return self.ctor.args[index]
        return UNKNOWN

    def kw(self, name: str, default: Any) -> Any:
        if not isinstance(self.ctor, Ctor):
            return default
        return self.ctor.kwargs.get(name, default)


def _fan(v: Any):
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, Sym):
        return v.text
    return None


def _receptive(k: Any, dims: int):
    if isinstance(k, int):
        return k ** dims
    if isinstance(k, ListVal) and all(isinstance(i, int) for i in k.items):
        return math.prod(k.items)
    if isinstance(k, Sym):
        return f"({k.text})**{dims}" if dims > 1 else k.text
    return None


def _mul(a: Any, b: Any):
    a, b = _fan(a) if not isinstance(a, str) else a, _fan(b) if not isinstance(b, str) else b
    if a is None or b is None:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if b == 1:
        return a
    return f"{a}*{b}"


def _div(a: Any, b: Any):
    a = _fan(a) if not isinstance(a, str) else a
    if b == 1 or b is None:
        return a
    b = _fan(b)
    if isinstance(a, int) and isinstance(b, int) and b:
        return a // b
    if a is None or b is None:
        return None
    return f"{a}/{b}"


# ---- entry point ---------------------------------------------------------------------------

def extract(src):
    """(networks, class summaries) of one parsed file."""
    from gradlint.facts.files import ClassSummary

    fm = FileModel(src)
    networks: list[Network] = []
    summaries: list = []
    for info in fm.classes.values():
        if not info.is_module:
            summaries.append(ClassSummary(name=info.name, path=src.path, bases=info.bases))
            continue
        cuts = fm.cuts
        fm.meter.allow()
        try:
            inst = fm.instantiate(info, None, {})
            low = Lowerer(fm)
            low.assign_paths(inst.attrs, "", inst.type_inits)
            paths, known, note = low.forward_paths(inst, "")
            if fm.cuts != cuts or fm.meter.exhausted:
                # __init__ was cut short: a half-built model could hold wrong layers or inits
                raise Exhausted()
        except (Exhausted, RecursionError):
            summaries.append(ClassSummary(name=info.name, path=src.path, bases=info.bases, is_module=True))
            continue
        recurrent = bool(low.recurrents)
        # One definition of a transformer block for every rule (gradlint.model.blocks); a forward
        # that could not be followed falls back to counting the blocks the class holds.
        blocks = block_count(paths) if known and paths else _count_blocks(inst, ())
        summaries.append(ClassSummary(name=info.name, path=src.path, bases=info.bases, recurrent=recurrent,
                                      transformer_blocks=blocks, is_module=True))
        networks.append(Network(name=info.name, path=src.path, nodes=tuple(paths[0]) if known and paths else (),
                                origin=src.span(info.node.name), params=tuple(low.params),
                                recurrents=tuple(low.recurrents), forward_known=known,
                                variants=tuple(tuple(p) for p in paths[1:]) if known else (), note=note,
                                signature=_signature(fm, info)))
    try:
        networks.extend(_sequential_factories(fm))
    except (Exhausted, RecursionError):  # too deep for libcst's own code generator, or over budget
        pass
    # Constructors and instances hold each other (Ctor.instance) and their FileModel (Instance.fm),
    # and the FileModel holds the file: left as they are, those cycles keep the whole syntax tree
    # alive until the cyclic collector runs, which then walks every node of it again (4% of the
    # extraction). Emptied (but for the step meter, which tells what the file cost), the tree
    # goes when the file's last reference does.
    for done in (fm._lib, fm):
        if done is not None:
            meter = done.meter
            done.__dict__.clear()
            done.meter = meter
    return tuple(networks), tuple(summaries)


def lower_class(src, name: str, args: tuple) -> Network | None:
    """The IR of module class `name` of `src` built with the arguments a call in another file
    passes (ir.Extern.args, model/inline.py): the class re-run with the caller's values, as a class
    of this file would be for a call here; an argument not known is unknown, and so are `*args` /
    `**kwargs` whatever the call gives them (their uses are open). None for a call Python would
    refuse (an argument no parameter takes, a parameter given twice) and when the class's forward
    is not followed."""
    fm = FileModel(src)
    info = fm.classes.get(name)
    init = fm._find_method(info, "__init__") if info is not None and info.is_module else None
    if init is None or args is None:
        return None
    bound = _bind_neutral(init.params, args, 1)
    if bound is None:
        return None
    pos, kw = bound
    cuts = fm.cuts
    fm.meter.allow()
    try:
        inst = fm.instantiate(info, None, {}, bound=(pos, kw, False, False))
        low = Lowerer(fm)
        low.assign_paths(inst.attrs, "", inst.type_inits)
        paths, known, note = low.forward_paths(inst, "")
        if fm.cuts != cuts or fm.meter.exhausted:
            return None
    except (Exhausted, RecursionError):
        return None
    if not known or not paths:
        return None
    return Network(name=info.name, path=src.path, nodes=tuple(paths[0]), origin=src.span(info.node.name),
                   params=tuple(low.params), recurrents=tuple(low.recurrents),
                   variants=tuple(tuple(p) for p in paths[1:]), note=note)


def _bind_neutral(ps: cst.Parameters, args: tuple, skip: int) -> tuple[list, dict] | None:
    """A call's arguments (ir.Extern.args) as the positional and keyword values of parameters `ps`
    (less the first `skip`: `self`); None for a call Python would refuse or we cannot bind."""
    if ps.posonly_params:
        return None
    positional = [p.name.value for p in list(ps.params)[skip:]]
    names = {*positional, *(p.name.value for p in ps.kwonly_params)}
    pos: list = []
    kw: dict = {}
    star, stars = isinstance(ps.star_arg, cst.Param), ps.star_kwarg is not None
    given = 0  # positional arguments, those *args takes included
    for key, value in args:
        v = _from_neutral(value[0]) if value else UNKNOWN
        if isinstance(key, int) and key == given and not kw and (key < len(positional) or star):
            given += 1
            if key < len(positional):
                pos.append(v)
        elif isinstance(key, str) and key not in kw and key not in positional[:len(pos)] and (key in names or stars):
            if key in names:
                kw[key] = v
        else:
            return None
    return pos, kw


def lower_function(src, name: str, args: tuple) -> Network | None:
    """The IR of the module that top-level function `name` of `src` returns for the arguments a
    call in another file passes (ir.Extern.args): the function run in its file with the caller's
    values, as a call of this file would be; None when it returns no module we model (None, a
    number, an unknown value, a choice left open, a module whose forward is not followed), when
    Python would refuse the call, or past the budgets."""
    fm = FileModel(src)
    fn = fm.functions.get(name)
    if fn is None or args is None:
        return None
    bound = _bind_neutral(fn.params, args, 0)
    if bound is None:
        return None
    pos, kw = bound
    cuts = fm.cuts
    fm.meter.allow()
    try:
        value = fm._call_function(fn, None, {}, bound_self=False, bound=(pos, kw, False, False))
        if not isinstance(value, Ctor) or value.kind not in ("torch", "local", "pass", "unknown") or (
                value.kind == "unknown" and value.extern is None):
            return None
        low = Lowerer(fm)
        if value.kind == "local":
            inst = value.instance
            if inst is None:
                return None
            # the block's layers under the caller's attribute, as lower_class names a class's
            low.assign_paths(inst.attrs, "", inst.type_inits)
            paths, known, note = low.forward_paths(inst, "")
        elif value.items is None:
            low._assign(value, "", [])  # one layer: the caller's attribute is its path
            nodes = low.module_nodes(value)
            paths, known, note = [nodes], True, ""
        else:
            # a container: its members under the caller's attribute (`block.0`, `block.1`)
            keys = value.keys if value.keys is not None and len(value.keys) == len(value.items) else None
            if any(isinstance(i, Alt) for i in value.items):
                return None
            value.path = ""
            low.seen.add(id(value))
            for i, item in enumerate(value.items):
                low._assign(item, keys[i] if keys else str(i), [])
            nodes = low.module_nodes(value)
            paths, known, note = [nodes], True, ""
        if fm.cuts != cuts or fm.meter.exhausted:
            return None
    except (Exhausted, RecursionError):
        return None
    if not known or not paths or all(isinstance(n, Opaque) and not isinstance(n, Extern) for n in paths[0]):
        return None
    return Network(name=name, path=src.path, nodes=tuple(paths[0]), origin=src.span(fn.name),
                   params=tuple(low.params), recurrents=tuple(low.recurrents),
                   variants=tuple(tuple(p) for p in paths[1:]), note=note)


def _neutral(v: Any) -> tuple:
    """An argument as an ir.Extern carries it: (value,) for a constant, a symbol (ir.SymArg) or a
    torch / catalogue class (ir.ClassArg) whose partial arguments are such values; () otherwise."""
    if _constant(v):
        return (v,)
    if isinstance(v, Sym):
        return (SymArg(v.text),)
    if isinstance(v, ClassRef) and (v.kind in ("torch", "extern") or v.library):
        args = [_neutral(a) for a in v.args]
        kwargs = [(k, _neutral(a)) for k, a in v.kwargs]
        if all(args) and all(a for _k, a in kwargs):
            return (ClassArg("library" if v.library else v.kind, v.cls, tuple(a[0] for a in args),
                             tuple((k, a[0]) for k, a in kwargs)),)
    return ()


def _from_neutral(v: Any) -> Any:
    """The interpreter's value for an argument an ir.Extern carries (the inverse of _neutral)."""
    if isinstance(v, SymArg):
        return Sym(v.text)
    if isinstance(v, ClassArg):
        return ClassRef("local" if v.kind == "library" else v.kind, v.cls, tuple(_from_neutral(a) for a in v.args),
                        tuple((k, _from_neutral(a)) for k, a in v.kwargs), v.kind == "library")
    return v


def _signature(fm: FileModel, info: ClassInfo) -> tuple | None:
    """__init__'s parameters as the class's IR was built with them (ir.Network.signature); None
    when a call could pass more than we can compare (`*args`, `**kwargs`, an __init__ not of this
    file)."""
    init = fm._find_method(info, "__init__")
    if init is None:
        own = all("torch.nn.Module" in fm.imports.qualify_dotted(b) for b in info.bases)
        return () if own else None
    ps = init.params
    if isinstance(ps.star_arg, cst.Param) or ps.star_kwarg is not None or ps.posonly_params:
        return None
    out: list = []
    positional = list(ps.params)[1:]
    for i, p in enumerate(positional + list(ps.kwonly_params)):
        if p.default is None:
            # bound to its own name (Sym) unless annotated with a config class of the file
            how, value = ("symbol", None) if fm.config_default(p) is None else ("fixed", None)
        else:
            fm.meter.allow()
            v = fm.eval(p.default, {})
            known = _neutral(v) if _constant(v) or isinstance(v, ClassRef) else ()
            how, value = ("default", known[0]) if known else ("fixed", None)
        out.append((p.name.value, i >= len(positional), how, value))
    return tuple(out)


def _sequential_factories(fm: FileModel) -> list[Network]:
    """`def make_model(): return nn.Sequential(...)` and `model = nn.Sequential(...)` at module
    level are networks too, named after the function or the variable."""
    out: list[Network] = []
    candidates: list[tuple[str, Any, cst.CSTNode]] = []
    text = fm.src.text
    if "Sequential" not in text:
        return out  # no name or attribute `Sequential` anywhere (walking every function cost 7% of the lowering)
    # The text of each top-level function, decorators included (CPython's lines; the last
    # definition of a name, as fm.functions keeps): one without the word cannot mention it.
    written: dict[str, str] = {}
    tree = getattr(getattr(fm.src, "positions", None), "tree", None)
    if tree is not None:
        from gradlint.text import split_lines

        lines = split_lines(text, keepends=True)
        for node in tree.body:
            if type(node) is ast.FunctionDef or type(node) is ast.AsyncFunctionDef:
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                written[node.name] = "".join(lines[first - 1:node.end_lineno or len(lines)])
    for name, fn in fm.functions.items():
        if "Sequential" not in written.get(name, "Sequential"):
            continue
        cuts = fm.cuts
        fm.meter.allow()
        try:  # RecursionError: a statement too deep for libcst's code generator
            if not mentions(fn, "Sequential"):
                continue
            scope: dict = {}
            fm._bind_params(list(fn.params.params), fn.params, None, {}, scope)
            interp = _InitInterpreter(fm, scope, None)
            interp.block(fn.body)
        except (Exhausted, RecursionError):
            continue
        if fm.cuts == cuts:
            candidates.append((name, interp.returned, fn.name))
    for stmt in fm.src.module.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                cuts = fm.cuts
                fm.meter.allow()
                try:
                    if (isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name)
                            and isinstance(small.value, cst.Call) and mentions(small.value, "Sequential")):
                        value = fm.eval(small.value, {})
                        if fm.cuts == cuts:
                            candidates.append((small.targets[0].target.value, value, small))
                except (Exhausted, RecursionError):
                    continue
    fm.meter.allow()
    for name, value, where in candidates:
        if not (isinstance(value, Ctor) and value.kind == "torch" and value.cls == "Sequential" and value.items):
            continue
        low = Lowerer(fm)
        value.path = ""
        low.seen.add(id(value))
        for i, item in enumerate(value.items):
            low._assign(item, str(i), [])
        nodes = low.module_nodes(value)
        out.append(Network(name=name, path=fm.src.path, nodes=tuple(nodes), origin=fm.src.span(where),
                           params=tuple(low.params), recurrents=tuple(low.recurrents)))
    return out


def _count_blocks(inst: Instance, nodes: tuple) -> int:
    """Transformer blocks a model holds: library layers, plus instances of this file's classes
    that do attention, found in its containers."""
    count = sum(1 for n in nodes if isinstance(n, TransformerBlock))

    def visit(value: Any, seen: set) -> int:
        if not isinstance(value, Ctor) or id(value) in seen:
            return 0
        seen.add(id(value))
        total = 0
        if value.kind == "torch" and value.cls in C.TRANSFORMER_LAYERS and not nodes:
            total += 1
        if value.items is not None:
            for item in value.items:
                if isinstance(item, Ctor) and item.instance is not None and _has_attention(item.instance):
                    total += 1
                else:
                    total += visit(item, seen)
        if value.instance is not None:
            for v in value.instance.attrs.values():
                total += visit(v, seen)
        return total

    seen: set = set()
    return count + sum(visit(v, seen) for v in inst.attrs.values())


def _has_attention(inst: Instance) -> bool:
    for v in inst.attrs.values():
        if isinstance(v, Ctor) and v.kind == "torch" and v.cls in C.ATTENTION_MODULES:
            return True
        if isinstance(v, Ctor) and v.instance is not None and _has_attention(v.instance):
            return True
        if isinstance(v, Ctor) and not _maybe_none(v) and (v.kind in ("local", "unknown") and "attn" in v.cls.lower()
                                                           or "attention" in v.cls.lower()):
            return True
    return False
