"""Callables that hold no parameters, read from a file's text: the top-level functions whose result
carries no gradient when their arguments carry none (and the closures some of them return), and
the attributes a class's `__init__` sets to such callables only (`self.log_snr = noise_schedule`
with `noise_schedule=logsnr_schedule_cosine`).

A function holds no parameters when everything it reads is its own (parameters, locals, nested
defs and lambdas), a module constant, a library function (torch, math, numpy...), or another such
function of the file; when it makes no `torch.nn` module (fresh parameters that require grad) and
asks no tensor to require grad; and when the callables it calls are its own parameters only
(`needs`: what a call must hand it there, a callable of the same kind) or callables made of these.
Anything else (a model held by a module-level name, `self`, an import of the project, `globals()`)
leaves it unknown. The numerics walk reads its calls as computed from their arguments alone
(source/numerics_free.py).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Callable

import libcst as cst

from gradlint.source.engine.walk import children, suite
from gradlint.source.names import bound_names, dotted, self_attribute

# Libraries whose functions compute from their arguments alone; a class of `torch.nn` (a module,
# `nn.Parameter`) is refused apart, since it makes parameters.
LIBRARIES = frozenset({"torch", "math", "cmath", "numpy", "einops", "functools", "operator", "itertools",
                        "typing", "collections", "builtins", "random", "warnings"})
# Decorators that leave what a function computes as written (grad mode off only makes less grad).
_TRANSPARENT = frozenset({"functools.wraps", "torch.jit.script", "torch.jit.ignore", "torch.jit.unused",
                          "torch.no_grad", "torch.inference_mode", "torch.autocast", "torch.cuda.amp.autocast",
                          "torch.amp.autocast", "torch.compile", "staticmethod", "beartype.beartype",
                          "typeguard.typechecked"})
# Builtins that reach values by name or run code: what they give is not read from the text.
_OPAQUE_BUILTINS = frozenset({"globals", "locals", "vars", "eval", "exec", "__import__", "getattr", "setattr",
                              "delattr", "compile", "open", "input", "super"})
_BUILTINS = frozenset(dir(builtins))
# A cycle of calls between functions of the file is bounded by this many functions in progress.
MAX_DEPTH = 16


@dataclass(frozen=True)
class Pure:
    """A top-level function that holds no parameters.

    `needs`: the parameters it calls (anywhere in it, its closures included): a call of it, or of
    what it returns, holds no parameters only where a callable of this kind is handed there.
    `closure`: every `return` gives a def or lambda made in it (a wrapper of the callables it is
    handed). `positional`, `kwonly`: its parameters, to find what a call hands each."""

    needs: frozenset[str]
    closure: bool
    positional: tuple[str, ...]
    kwonly: tuple[str, ...]

    def argument(self, call: cst.Call, param: str) -> cst.BaseExpression | None:
        """The expression a call hands parameter `param`, None when it hands none (or by a star)."""
        for a in call.args:
            if a.keyword is not None and a.keyword.value == param:
                return a.value
        if param in self.positional:
            at = self.positional.index(param)
            plain = [a for a in call.args if a.keyword is None]
            if any(a.star for a in plain[:at + 1]):
                return None
            return plain[at].value if at < len(plain) else None
        return None


class PureCallables:
    """The file's top-level functions that hold no parameters, found on demand and kept."""

    def __init__(self, module: cst.Module, qualify: Callable[[cst.BaseExpression], frozenset[str]],
                 constant: Callable[[str], bool], import_names: frozenset[str]) -> None:
        self.q = qualify
        self.constant = constant  # a module-level name bound to one plain value
        self.imported = import_names
        self.module = module
        self._bindings: tuple[dict[str, cst.FunctionDef], set[str]] | None = None
        self.memo: dict[str, Pure | None] = {}
        self.in_progress: list[str] = []
        self.assigned: dict[int, tuple[cst.FunctionDef, dict]] = {}
        # each function's _Scope, read once (a class's __init__ is asked about once per attribute)
        self.scopes: dict[int, tuple[cst.FunctionDef, _Scope]] = {}

    @property
    def defs(self) -> dict[str, cst.FunctionDef]:
        """The module's top-level defs by name (read once, when first asked)."""
        if self._bindings is None:
            self._bindings = _top_bindings(self.module)
        return self._bindings[0]

    @property
    def other(self) -> set[str]:
        """The names the module's top level binds otherwise (or defines twice)."""
        if self._bindings is None:
            self._bindings = _top_bindings(self.module)
        return self._bindings[1]

    # -- functions -----------------------------------------------------------------------------
    def function(self, name: str) -> Pure | None:
        """The top-level function `name` when it holds no parameters, else None."""
        if name in self.memo:
            return self.memo[name]
        fn = self.defs.get(name)
        if fn is None or name in self.other:
            return None
        if name in self.in_progress:
            # a recursion: what the other calls of the cycle need is counted where they are read
            return Pure(frozenset(), False, *_params(fn))
        if len(self.in_progress) >= MAX_DEPTH:
            return None
        self.in_progress.append(name)
        try:
            found = self._function(fn)
        finally:
            self.in_progress.pop()
        self.memo[name] = found
        return found

    def _function(self, fn: cst.FunctionDef) -> Pure | None:
        if not all(self._transparent(d.decorator) for d in fn.decorators):
            return None
        positional, kwonly = _params(fn)
        scope = self.scope(fn)
        if scope.opaque:
            return None
        needs: set[str] = set()
        # defaults run where the def is, at module level: they read the module's names
        for p in _all_params(fn.params):
            if p.default is not None and self._reads(p.default, _Scope(None), needs) is None:
                return None
        if self._reads(fn.body, scope, needs) is None:
            return None
        closure = _returns_closure(fn, scope)
        return Pure(frozenset(needs), closure, positional, kwonly)

    def _transparent(self, dec: cst.BaseExpression) -> bool:
        target = dec.func if type(dec) is cst.Call else dec
        names = self.q(target)
        return bool(names) and names <= _TRANSPARENT

    # -- reading a body ------------------------------------------------------------------------
    def _reads(self, node: cst.CSTNode, scope: _Scope, needs: set[str]) -> set[str] | None:
        """Every name `node` reads and every call it makes, checked; the function's parameters it
        calls added to `needs`; None when anything holds (or may hold) parameters."""
        stack: list = [node]
        while stack:
            n = stack.pop()
            kind = type(n)
            if kind is cst.Name:
                if not self._readable(n, scope):
                    return None
                continue
            if kind is cst.Attribute:
                if n.attr.value in ("requires_grad", "requires_grad_"):
                    return None  # `x.requires_grad = True`, `x.requires_grad_()`: a leaf made trainable
                stack.append(n.value)
                continue
            if kind is cst.Arg:
                if n.keyword is not None and n.keyword.value == "requires_grad" and not _false(n.value):
                    return None  # `torch.zeros(n, requires_grad=flag)`
                stack.append(n.value)
                continue
            if kind is cst.Call:
                got = self._callee(n, scope)
                if got is None:
                    return None
                needs |= got
                if type(n.func) is not cst.Name:
                    stack.append(n.func)
                stack.extend(a for a in n.args)
                continue
            if kind is cst.Param:
                if n.default is not None:
                    stack.append(n.default)
                continue
            if kind in (cst.Global, cst.ClassDef):
                return None  # rebinding module names, or a class made here (a module, maybe)
            if kind is cst.FunctionDef:
                if not all(self._transparent(d.decorator) for d in n.decorators):
                    return None
                stack.extend(d.decorator for d in n.decorators)
                stack.append(n.params)
                stack.append(n.body)
                continue
            if kind in (cst.Import, cst.ImportFrom):
                if not _library_import(n):
                    return None
                continue
            stack.extend(children(n))
        return needs

    def _readable(self, name: cst.Name, scope: _Scope) -> bool:
        """A name read in the function: one of its own, a library's, a constant, a builtin, or
        another function of the file that holds no parameters (read as a value: needing none)."""
        v = name.value
        if v in scope.bound:
            return True
        if v in self.imported:
            names = self.q(name)
            return bool(names) and all(n.partition(".")[0] in LIBRARIES for n in names)
        if v in self.defs:
            got = self.function(v)
            return got is not None and (not got.needs or v in self.in_progress)
        if self.constant(v):
            return True
        return v in _BUILTINS and v not in _OPAQUE_BUILTINS and v not in self.other and v not in self.defs

    def _callee(self, call: cst.Call, scope: _Scope) -> set[str] | None:
        """What calling `call.func` needs of the function's parameters (the callables it calls),
        or None when the callee may hold parameters."""
        func = call.func
        if type(func) is cst.Name:
            v = func.value
            if v in scope.params and v not in scope.rebound:
                return {v}  # its own callable parameter: a caller hands it
            if v in scope.bound:
                return self._local_callable(v, scope)
            if v in self.defs and v not in self.other and v not in self.imported:
                return self._call_of(v, call, scope)
            if v in self.imported:
                return set() if self._library_function(func) else None
            return set() if v in _BUILTINS and v not in _OPAQUE_BUILTINS else None
        if type(func) is cst.Attribute:
            root = func
            while type(root) is cst.Attribute:
                root = root.value
            if type(root) is cst.Name and root.value in self.imported and root.value not in scope.bound:
                return set() if self._library_function(func) else None
            # a method of a value computed here (`t.clamp(min=eps)`): a tensor's method adds no
            # parameter (`requires_grad_` is refused where the attribute is read)
            return set()
        if type(func) is cst.Call:
            return self._callable(func, scope)
        if type(func) is cst.Lambda:
            return set()  # (its body is read with the rest)
        return None

    def _library_function(self, func: cst.BaseExpression) -> bool:
        names = self.q(func)
        return bool(names) and all(n.partition(".")[0] in LIBRARIES and not _makes_parameters(n) for n in names)

    def _call_of(self, name: str, call: cst.Call, scope: _Scope) -> set[str] | None:
        """A call of another function of the file: the callables handed to what it calls must be
        of this kind too."""
        got = self.function(name)
        if got is None:
            return None
        out: set[str] = set()
        for param in got.needs:
            arg = got.argument(call, param)
            if arg is None:
                return None
            more = self._callable(arg, scope)
            if more is None:
                return None
            out |= more
        return out

    def _callable(self, expr: cst.BaseExpression, scope: _Scope) -> set[str] | None:
        """What `expr`, read as a callable that is then called, needs of the function's
        parameters; None when it may hold parameters."""
        kind = type(expr)
        if kind is cst.Name:
            v = expr.value
            if v in scope.params and v not in scope.rebound:
                return {v}
            if v in scope.bound:
                return self._local_callable(v, scope)
            if v in self.defs and v not in self.other and v not in self.imported:
                got = self.function(v)
                return set() if got is not None and not got.needs else None
            if v in self.imported:
                return set() if self._library_function(expr) else None
            return None
        if kind is cst.Attribute:
            return set() if self.q(expr) and self._library_function(expr) else None
        if kind is cst.Call and type(expr.func) is cst.Name:
            # a wrapper the file makes (`logsnr_schedule_shifted(fn, d, n)` returning `inner`)
            v = expr.func.value
            if v in self.defs and v not in self.other and v not in scope.bound:
                got = self.function(v)
                if got is not None and got.closure:
                    return self._call_of(v, expr, scope)
            return None
        if kind is cst.Lambda:
            return set()  # (read where it stands, with the rest of the function)
        return None

    def _local_callable(self, name: str, scope: _Scope) -> set[str] | None:
        """A local name called: a def or lambda of the function, or a name each of whose bindings
        is a callable of this kind (`low = shifted(fn, d, lo)`)."""
        if name in scope.local_defs:
            return set()  # (its body is read with the rest of the function)
        values = scope.assigned.get(name)
        if not values or name in scope.other_bound:
            return None
        out: set[str] = set()
        for value in values:
            got = self._callable(value, scope)
            if got is None:
                return None
            out |= got
        return out

    def scope(self, fn: cst.FunctionDef) -> _Scope:
        """The _Scope of a function, once per function."""
        got = self.scopes.get(id(fn))
        if got is None or got[0] is not fn:
            got = self.scopes[id(fn)] = (fn, _Scope(fn))
        return got[1]

    # -- attributes of a class -----------------------------------------------------------------
    def assignments(self, fn: cst.FunctionDef) -> dict[str, list[cst.BaseExpression | None]]:
        """self_assignments of a method, once per method."""
        got = self.assigned.get(id(fn))
        if got is None or got[0] is not fn:
            got = self.assigned[id(fn)] = (fn, self_assignments(fn))
        return got[1]

    def attribute(self, cls: cst.ClassDef, attr: str) -> tuple[tuple[str, int], ...] | None:
        """The `__init__` parameters an attribute is a callable of this kind under, when `__init__`
        alone sets it and only to such callables: a function of the file or a library's, the
        attribute itself wrapped by a function of the file, or a parameter of `__init__` whose
        default is one ((parameter, position after self or -1), which the project's calls must
        leave at its default); None for any other attribute."""
        methods = [s for s in suite(cls.body) if type(s) is cst.FunctionDef]
        init = next((m for m in methods if m.name.value == "__init__"), None)
        if init is None or any(m.name.value == attr for m in methods):
            return None
        found: list[cst.BaseExpression] = []
        for m in methods:
            made = self.assignments(m)
            for value in [*made.get(attr, ()), *made.get(ANY, ())]:
                if m is not init or value is None:
                    return None  # set by another method, or unpacked, augmented, deleted
                found.append(value)
        if not found:
            return None
        positional, kwonly = _params(init)
        params = {p.name.value: p for p in _all_params(init.params)}
        scope = self.scope(init)
        assumed: set[tuple[str, int]] = set()
        for value in found:
            got = self._init_callable(value, attr, params, scope, positional[1:], kwonly)
            if got is None:
                return None
            assumed |= got
        return tuple(sorted(assumed))

    def _init_callable(self, value: cst.BaseExpression, attr: str, params: dict[str, cst.Param], scope: _Scope,
                       positional: tuple[str, ...], kwonly: tuple[str, ...]) -> set[tuple[str, int]] | None:
        if type(value) is cst.Attribute and type(value.value) is cst.Name and value.value.value == "self" \
                and value.attr.value == attr:
            return set()  # the attribute itself, set earlier (wrapped: `shifted(self.log_snr, ...)`)
        if type(value) is cst.Name and value.value in params:
            p = params[value.value]
            if p.default is None or value.value in scope.rebound or value.value in scope.assigned:
                return None
            got = self._callable(p.default, _Scope(None))
            if got != set():
                return None
            at = positional.index(value.value) if value.value in positional else -1
            return {(value.value, at)} if at >= 0 or value.value in kwonly else None
        if type(value) is cst.Call and type(value.func) is cst.Name and value.func.value in self.defs \
                and value.func.value not in self.other:
            got = self.function(value.func.value)
            if got is None or not got.closure:
                return None
            out: set[tuple[str, int]] = set()
            for param in got.needs:
                arg = got.argument(value, param)
                more = self._init_callable(arg, attr, params, scope, positional, kwonly) if arg is not None else None
                if more is None:
                    return None
                out |= more
            return out
        got = self._callable(value, _Scope(None))
        return set() if got == set() and type(value) is not cst.Lambda else None


class _Scope:
    """The names a top-level function binds anywhere in it (its closures' included), read once."""

    def __init__(self, fn: cst.FunctionDef | None) -> None:
        self.params: set[str] = set()
        self.bound: set[str] = set()
        self.rebound: set[str] = set()  # its own parameters bound again in it
        self.local_defs: set[str] = set()
        self.assigned: dict[str, list[cst.BaseExpression]] = {}  # `name = value` bindings
        self.other_bound: set[str] = set()  # names bound any other way (loops, unpacking, with...)
        self.opaque = False
        if fn is None:
            return
        self.params = {p.name.value for p in _all_params(fn.params)}
        self.bound = set(self.params)
        stack: list = [fn.body]
        while stack:
            n = stack.pop()
            kind = type(n)
            if kind is cst.FunctionDef:
                self._bind(n.name.value, None)
                self.local_defs.add(n.name.value)
                self.bound.update(p.name.value for p in _all_params(n.params))
            elif kind is cst.Lambda:
                self.bound.update(p.name.value for p in _all_params(n.params))
            elif kind is cst.Assign:
                for t in n.targets:
                    self._target(t.target, n.value if len(n.targets) == 1 else None)
            elif kind in (cst.AnnAssign, cst.AugAssign):
                self._target(n.target, None)
            elif kind is cst.NamedExpr:
                self._target(n.target, None)
            elif kind in (cst.For, cst.CompFor):
                self._target(n.target, None)
            elif kind is cst.WithItem and n.asname is not None:
                self._target(n.asname.name, None)
            elif kind is cst.ExceptHandler and n.name is not None:
                self._target(n.name.name, None)
            elif kind is cst.ImportAlias:
                self._bind((n.asname.name.value if n.asname is not None and type(n.asname.name) is cst.Name
                            else dotted(n.name).partition(".")[0]), None)
            elif kind is cst.Nonlocal:
                pass  # (names of the enclosing function, bound there)
            elif kind is cst.Global:
                self.opaque = True
            stack.extend(children(n))

    def _target(self, target: cst.BaseExpression, value: cst.BaseExpression | None) -> None:
        if type(target) is cst.Name:
            self._bind(target.value, value)
        elif type(target) in (cst.Tuple, cst.List):
            for e in target.elements:
                self._target(e.value, None)
        elif type(target) is cst.StarredElement:
            self._target(target.value, None)

    def _bind(self, name: str, value: cst.BaseExpression | None) -> None:
        self.bound.add(name)
        if name in self.params:
            self.rebound.add(name)
        if value is None:
            self.other_bound.add(name)
        else:
            self.assigned.setdefault(name, []).append(value)


def _params(fn: cst.FunctionDef) -> tuple[tuple[str, ...], tuple[str, ...]]:
    ps = fn.params
    return (tuple(p.name.value for p in (*ps.posonly_params, *ps.params)),
            tuple(p.name.value for p in ps.kwonly_params))


def _all_params(ps: cst.Parameters) -> list[cst.Param]:
    out = [*ps.posonly_params, *ps.params, *ps.kwonly_params]
    for star in (ps.star_arg, ps.star_kwarg):
        if type(star) is cst.Param:
            out.append(star)
    return out


def _false(node: cst.BaseExpression) -> bool:
    return type(node) is cst.Name and node.value == "False"


def _makes_parameters(name: str) -> bool:
    """A torch.nn class (a module or `nn.Parameter`): what it makes requires grad."""
    head, _, last = name.rpartition(".")
    return head.startswith("torch.nn") and last[:1].isupper()


def _library_import(node: cst.Import | cst.ImportFrom) -> bool:
    if type(node) is cst.ImportFrom:
        if node.relative or node.module is None:
            return False
        return (dotted(node.module) or "").partition(".")[0] in LIBRARIES
    return all((dotted(a.name) or "").partition(".")[0] in LIBRARIES for a in node.names)


def _returns_closure(fn: cst.FunctionDef, scope: _Scope) -> bool:
    """Whether every `return` of `fn` itself (not of its closures) gives a def or lambda of it."""
    found = False
    stack: list = list(suite(fn.body))
    while stack:
        n = stack.pop()
        kind = type(n)
        if kind in (cst.FunctionDef, cst.ClassDef, cst.Lambda):
            continue
        if kind is cst.Return:
            value = n.value
            if type(value) is cst.Lambda or (type(value) is cst.Name and value.value in scope.local_defs
                                              and value.value not in scope.assigned):
                found = True
                continue
            return False
        stack.extend(children(n))
    return found


# what `self_assignments` gives for `setattr(self, name, value)`: any attribute may be set
ANY = "*"


def self_assignments(fn: cst.FunctionDef) -> dict[str, list[cst.BaseExpression | None]]:
    """The values `fn` assigns to each `self.<attr>` (None for an unpacking, an augmented
    assignment or a `del`); under ANY, a `setattr` (which attribute is not read). One walk of the
    body for all the attributes."""
    out: dict[str, list[cst.BaseExpression | None]] = {}
    stack: list = [fn.body]
    while stack:
        n = stack.pop()
        kind = type(n)
        if kind is cst.Assign:
            for t in n.targets:
                if (attr := self_attribute(t.target)) is not None:
                    out.setdefault(attr, []).append(n.value)
                elif type(t.target) in (cst.Tuple, cst.List):
                    for e in t.target.elements:
                        if (attr := self_attribute(e.value)) is not None:
                            out.setdefault(attr, []).append(None)
        elif kind in (cst.AugAssign, cst.AnnAssign):
            if (attr := self_attribute(n.target)) is not None:
                out.setdefault(attr, []).append(n.value if kind is cst.AnnAssign else None)
        elif kind is cst.Del and (attr := self_attribute(n.target)) is not None:
            out.setdefault(attr, []).append(None)
        elif kind is cst.Call and type(n.func) is cst.Name and n.func.value == "setattr":
            out.setdefault(ANY, []).append(None)
        stack.extend(children(n))
    return out


def _top_bindings(module: cst.Module) -> tuple[dict[str, cst.FunctionDef], set[str]]:
    """The module's top-level defs by name, and every name its top level binds otherwise (or
    defines twice): such a name may not be the def where a function reads it."""
    defs: dict[str, cst.FunctionDef] = {}
    other: set[str] = set()
    stack: list = list(module.body)
    while stack:
        n = stack.pop()
        kind = type(n)
        if kind is cst.FunctionDef:
            if n.name.value in defs:
                other.add(n.name.value)
            defs[n.name.value] = n
            continue
        if kind is cst.ClassDef:
            other.add(n.name.value)
            continue
        if kind is cst.Assign:
            for t in n.targets:
                other.update(bound_names(t.target))
        elif kind in (cst.AnnAssign, cst.AugAssign, cst.For):
            other.update(bound_names(n.target))
        elif kind is cst.ImportAlias:
            other.add(n.asname.name.value if n.asname is not None and type(n.asname.name) is cst.Name
                      else (dotted(n.name) or "").partition(".")[0])
        elif kind is cst.WithItem and n.asname is not None:
            other.update(bound_names(n.asname.name))
        elif kind is cst.NamedExpr:
            other.update(bound_names(n.target))
        if kind in (cst.Lambda,):
            continue
        stack.extend(children(n))
    return defs, other
