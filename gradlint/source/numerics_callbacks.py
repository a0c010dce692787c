"""Callables the numerics walk runs where their caller hands them on: forward hooks and applied lambdas.

A mixin of the numerics FunctionWalk, for two shapes whose cut is written in a callable that runs
later, elsewhere:

- a forward hook a class registers on one of its submodules (`getattr(self.vit, name).
  register_forward_hook(self._hook)`) runs after each call of that submodule; the attributes the
  hook stores from its `output` (`self.latents = output.clone().detach()`) then hold what it made
  of that output, for the rest of the method that called the submodule (vit_pytorch's Extractor,
  whose forward returned those latents cut from the ViT: lucidrains/CoCa-pytorch#6);
- a helper of the file that applies a callable parameter to another of its parameters
  (`def apply_tuple_or_single(fn, val): ...; return fn(val)`) called with a lambda: the call is
  the lambda run on that argument, as `(lambda t: t.clone().detach())(x)` written in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import libcst as cst

from gradlint.source.engine.calls import arg as _arg
from gradlint.source.engine.tensors import UNKNOWN, V, _combine
from gradlint.source.engine.walk import suite, walk
from gradlint.source.names import dotted

if TYPE_CHECKING:
    from gradlint.source.numerics_walk import FunctionWalk

# Wrappers that give back what applying the callable to each item makes (`tuple(map(fn, val))`).
_COLLECTING = frozenset({"tuple", "list"})


@dataclass
class CallbackFacts:
    """What the file's walk learnt once of its callables (kept on the numerics Extractor)."""

    # a top-level function's name -> (the callable parameter's index and name, the value
    # parameter's index and name) when every return applies the one to the other; None otherwise
    appliers: dict[str, tuple[int, str, int, str] | None] = field(default_factory=dict)
    # a class's name -> submodule attribute -> [(hook method, whether hooked on the attribute
    # itself rather than on a layer of it)]
    hooks: dict[str, dict[str, list[tuple[str, bool]]]] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)  # hooks being walked (a hook that calls its module)


class Callbacks:
    """The FunctionWalk's reading of forward hooks and of lambdas handed to an applying helper."""

    # -- lambdas handed to a helper that applies them --------------------------------------------
    def applied_callable(self: FunctionWalk, node: cst.Call, fname: str) -> V | None:
        """`apply_tuple_or_single(lambda t: t.clone().detach(), x)` with a top-level function of
        the file that applies its callable parameter to its value parameter on every return: the
        lambda's body with its parameter bound to `x`. None for any other call."""
        x = self.x
        if not x.one_function(fname) or fname in self.enclosing or fname in self.env:
            return None
        facts: CallbackFacts = x.callbacks
        if fname not in facts.appliers:
            fn = self._top_function(fname)
            facts.appliers[fname] = applier_slots(fn) if fn is not None and not fn.decorators else None
        slots = facts.appliers[fname]
        if slots is None:
            return None
        fn_index, fn_name, val_index, val_name = slots
        fn_arg, val_arg = _argument(node, fn_index, fn_name), _argument(node, val_index, val_name)
        if type(fn_arg) is not cst.Lambda or val_arg is None:
            return None
        params = fn_arg.params
        if len(params.params) != 1 or params.posonly_params or params.kwonly_params or params.params[0].default \
                or params.star_kwarg is not None or type(params.star_arg) is cst.Param:
            return None
        value = self.ev(val_arg)
        for n in walk(fn_arg.body, ()):
            self.memo.pop(id(n), None)  # (read before as a lambda's body, its parameter unknown)
        scope = self.enter_own_scope()
        name = params.params[0].name.value
        self.env[name] = value
        self.changed(name)
        try:
            made = self.ev(fn_arg.body)
        finally:
            self.leave_own_scope(scope)
        for arg in node.args:  # (the others, for what they read and call)
            if arg.value is not fn_arg:
                self.ev(arg.value)
        return made

    # -- forward hooks on submodules -------------------------------------------------------------
    def hooked_call(self: FunctionWalk, attr: str, node: cst.Call, out: V) -> None:
        """After `self.<attr>(...)`: the attributes each forward hook the class registers on that
        submodule (or on a layer of it) stores, as the hook makes them of the output (and input)."""
        cls = self.cls
        if cls is None or "register_forward_hook" not in self.x.src.text:
            return
        facts: CallbackFacts = self.x.callbacks
        hooks = facts.hooks.get(cls.name)
        if hooks is None:
            hooks = facts.hooks[cls.name] = registered_hooks(self._methods_with_bases(), set(cls.method_nodes))
        for method, whole in hooks.get(attr, ()):
            fn = cls.method_nodes.get(method)
            key = f"{cls.name}.{method}"
            if fn is None or key in facts.running:
                continue
            layer = V(computed=True, tensor=True, params=True, dense=True)
            given = _combine([self.memo.get(id(a.value), UNKNOWN) for a in node.args]) if whole else layer
            stored = self._run_hook(fn, key, (UNKNOWN, given, out if whole else layer))
            for name, val in stored.items():
                self.env[name] = val
                self.changed(name)

    def _run_hook(self: FunctionWalk, fn: cst.FunctionDef, key: str, args: tuple[V, V, V]) -> dict[str, V]:
        """The `self.X` a hook method binds when run with (module, input, output) = `args`."""
        ps = fn.params
        names = [p.name.value for p in (*ps.posonly_params, *ps.params)]
        if len(names) != 4 or ps.kwonly_params:
            return {}
        hook = type(self)(self.x, fn.name.value, self.cls, quiet=True)
        before = dict(hook.env)
        for name, val in zip(names[1:], args):
            hook.env[name] = val
        facts: CallbackFacts = self.x.callbacks
        facts.running.add(key)
        self.x.muted += 1
        try:
            hook.walk(suite(fn.body))
        finally:
            self.x.muted -= 1
            facts.running.discard(key)
        return {k: v for k, v in hook.env.items()
                if k.startswith("self.") and k.count(".") == 1 and before.get(k) is not v}


def applier_slots(fn: cst.FunctionDef) -> tuple[int, str, int, str] | None:
    """(index and name of the callable parameter, of the value parameter) when every `return` of
    `fn` applies the one to the other (`fn(val)`, `tuple(map(fn, val))`, `[fn(v) for v in val]`)
    and nothing in its body binds either name again."""
    ps = fn.params
    if ps.kwonly_params or ps.posonly_params:
        return None
    params = [p.name.value for p in ps.params]
    pairs = set()
    for n in walk(fn.body, (cst.Lambda, cst.FunctionDef, cst.ClassDef)):
        if type(n) is cst.Return:
            pair = _application(n.value, set(params))
            if pair is None:
                return None
            pairs.add(pair)
        elif type(n) in (cst.AssignTarget, cst.AugAssign, cst.AnnAssign, cst.For, cst.CompFor, cst.Global):
            target = getattr(n, "target", None)
            if type(target) is cst.Name and target.value in params or type(n) is cst.Global:
                return None
    if len(pairs) != 1:
        return None
    f, v = next(iter(pairs))
    return params.index(f), f, params.index(v), v


def _application(e: cst.BaseExpression | None, params: set[str]) -> tuple[str, str] | None:
    """(callable, value) when `e` applies one parameter to another: `f(v)`, `map(f, v)` (in
    `tuple(...)`/`list(...)`), `[f(t) for t in v]`."""
    if type(e) is cst.Call and type(e.func) is cst.Name and len(e.args) == 1 and not e.args[0].keyword \
            and not e.args[0].star:
        inner = e.args[0].value
        if e.func.value in params and type(inner) is cst.Name and inner.value in params and inner.value != e.func.value:
            return e.func.value, inner.value  # `fn(val)`
        if e.func.value in _COLLECTING:
            return _application(inner, params)
    if type(e) is cst.Call and dotted(e.func) == "map" and len(e.args) == 2 and not any(a.keyword or a.star for a in e.args):
        f, v = e.args[0].value, e.args[1].value
        if type(f) is cst.Name and type(v) is cst.Name and f.value in params and v.value in params and f.value != v.value:
            return f.value, v.value
    if type(e) in (cst.ListComp, cst.GeneratorExp) and type(e.for_in.target) is cst.Name and e.for_in.inner_for_in is None \
            and not e.for_in.ifs and type(e.for_in.iter) is cst.Name and e.for_in.iter.value in params:
        elt = e.elt
        if type(elt) is cst.Call and type(elt.func) is cst.Name and elt.func.value in params and len(elt.args) == 1 \
                and type(elt.args[0].value) is cst.Name and elt.args[0].value.value == e.for_in.target.value:
            return elt.func.value, e.for_in.iter.value
    return None


def _argument(node: cst.Call, index: int, name: str) -> cst.BaseExpression | None:
    """The argument a call passes for the parameter at `index` named `name` (positional or keyword);
    None with `*args` or `**kwargs` in the call (which parameter each lands in is unknown)."""
    return None if any(a.star for a in node.args) else _arg(node, index, name)


def registered_hooks(methods: list[tuple[str, cst.FunctionDef]], own: set[str]) -> dict[str, list[tuple[str, bool]]]:
    """The forward hooks a class's methods register on its submodules: `self.X.register_forward_hook(
    self.m)` (the attribute itself), `getattr(self.X, name)`, `self.X.layer`, `self.X[i]` or a local
    name bound once to one of them (a layer of it), by X; only methods `m` of the class (`own`)."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for _name, fn in methods:
        bound: dict[str, list[cst.BaseExpression]] = {}
        calls = []
        for n in walk(fn.body, ()):
            if type(n) is cst.Assign and len(n.targets) == 1 and type(n.targets[0].target) is cst.Name:
                bound.setdefault(n.targets[0].target.value, []).append(n.value)
            elif type(n) is cst.Call and type(n.func) is cst.Attribute and n.func.attr.value == "register_forward_hook":
                calls.append(n)
        for call in calls:
            if not call.args or call.args[0].keyword is not None or any(
                    a.keyword is not None and a.keyword.value == "with_kwargs" for a in call.args):
                continue
            hook = call.args[0].value
            if not (_self_attr(hook) and hook.attr.value in own):
                continue
            receiver = call.func.value
            if type(receiver) is cst.Name and len(bound.get(receiver.value, ())) == 1:
                receiver = bound[receiver.value][0]
            root = _submodule(receiver)
            if root is not None and root[0] not in own:
                entry = (hook.attr.value, root[1])
                if entry not in found.setdefault(root[0], []):
                    found[root[0]].append(entry)
    return found


def _submodule(e: cst.BaseExpression) -> tuple[str, bool] | None:
    """(X, whether `e` is `self.X` itself) for `self.X`, `self.X.a.b`, `self.X[i]`,
    `getattr(self.X, ...)`; None otherwise."""
    if _self_attr(e):
        return e.attr.value, True
    if type(e) is cst.Call and dotted(e.func) == "getattr" and e.args:
        inner = _submodule(e.args[0].value)
        return (inner[0], False) if inner else None
    if type(e) in (cst.Attribute, cst.Subscript):
        inner = _submodule(e.value)
        return (inner[0], False) if inner else None
    return None


def _self_attr(n: cst.CSTNode) -> bool:
    return type(n) is cst.Attribute and type(n.value) is cst.Name and n.value.value == "self"
