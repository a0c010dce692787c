"""Under which names a gradcheck covers an autograd Function of a file: the classes whose
methods run it (a module gradchecked as an instance: `gradcheck(Sparsemax(dim=0), (x,))`), the
Function subclasses that run its forward and backward, and what a test hands gradcheck under a
local name (`f = Map(dim=0)`, `Map` given by `pytest.mark.parametrize`). The project index joins
these with the files' gradcheck calls (facts/project.py `gradchecked`)."""

from __future__ import annotations

from typing import Iterable

import libcst as cst

from gradlint.source.engine.walk import walk
from gradlint.source.names import dotted


def made_as(name: str, fn: cst.FunctionDef, module: cst.Module) -> set[str]:
    """What a function gives gradcheck under a local name (`f = Map(dim=0); gradcheck(f, (x,))`):
    the callees it was bound to (`Map`) and, for a callee that is a parameter of a test
    parametrized over classes (`@pytest.mark.parametrize("Map", (Sparsemax, Entmax15))`, or over a
    module-level list of them), those classes (entmax's tests): a module that runs the Function."""
    out: set[str] = set()
    for n in walk(fn.body, ()):
        if type(n) is cst.Assign and type(n.value) is cst.Call and any(
                type(t.target) is cst.Name and t.target.value == name for t in n.targets):
            callee = dotted(n.value.func)
            if callee:
                out.add(callee)
    params = {p.name.value for p in fn.params.params}
    for callee in [c for c in out if c in params]:
        for d in fn.decorators:
            call = d.decorator
            if type(call) is not cst.Call or not (dotted(call.func) or "").endswith("mark.parametrize") or \
                    len(call.args) < 2 or type(call.args[0].value) is not cst.SimpleString:
                continue
            names = [w.strip() for w in str(call.args[0].value.evaluated_value).split(",")]
            if names != [callee]:
                continue  # (several names: rows of tuples, not followed)
            values = call.args[1].value
            if type(values) is cst.Name:
                values = next((s.value for s in _top_assigns(module) if s.targets[0].target.value == values.value), None)
            if type(values) in (cst.List, cst.Tuple):
                out.update(t for e in values.elements if (t := dotted(e.value)))
    return out


def _top_assigns(module: cst.Module):
    """The module's `name = value` statements with one plain target."""
    for stmt in module.body:
        if type(stmt) is cst.SimpleStatementLine:
            for small in stmt.body:
                if type(small) is cst.Assign and len(small.targets) == 1 and type(small.targets[0].target) is cst.Name:
                    yield small


def class_aliases(module: cst.Module, functions: Iterable[str], aliases: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(class, Function) for each class of the file that runs an autograd Function of the file:
    a module whose methods call `Fn.apply` or a function of the file that does (`class
    Sparsemax(nn.Module)` whose forward returns `sparsemax(X)`), and a Function that inherits
    another's backward with no forward of its own or one that calls the base's (`class
    SparsemaxLossFunction(_GenericLossFunction)`, forward `super().forward(...)`): gradchecking
    it checks that backward. Through a module, the Functions its Functions inherit from too."""
    functions = set(functions)
    if not functions:
        return []
    by_alias: dict[str, set[str]] = {}
    for alias, fn in aliases:
        by_alias.setdefault(alias, set()).add(fn)
    classes = [c for c in module.body if type(c) is cst.ClassDef]
    inherits: dict[str, set[str]] = {}
    for cls in classes:
        if cls.name.value in functions:
            bases = {b.value.value for b in cls.bases if type(b.value) is cst.Name and b.value.value in functions}
            if bases and _inherits_backward(cls, bases):
                inherits[cls.name.value] = bases
    out: list[tuple[str, str]] = [(sub, base) for sub, bases in inherits.items() for base in sorted(bases)]
    for cls in classes:
        if cls.name.value in functions:
            continue
        found: set[str] = set()
        for n in walk(cls.body, ()):
            if type(n) is cst.Attribute and n.attr.value == "apply" and type(n.value) is cst.Name and \
                    n.value.value in functions:
                found.add(n.value.value)
            elif type(n) is cst.Name and n.value in by_alias:
                found |= by_alias[n.value]
        more = list(found)
        while more:  # (the bases of the Functions it runs, and theirs)
            for base in inherits.get(more.pop(), ()):
                if base not in found:
                    found.add(base)
                    more.append(base)
        out.extend((cls.name.value, fn) for fn in sorted(found))  # (facts must not depend on the hash seed)
    return out


def _inherits_backward(cls: cst.ClassDef, bases: set[str]) -> bool:
    """A Function subclass with no backward of its own whose forward, if any, calls a base's
    (`super().forward(ctx, X, alpha=2)`): its gradcheck runs the base's pair."""
    methods = {m.name.value: m for m in cls.body.body if type(m) is cst.FunctionDef} \
        if type(cls.body) is cst.IndentedBlock else {}
    if "backward" in methods:
        return False
    forward = methods.get("forward")
    if forward is None:
        return True
    # the whole body (a docstring aside) one `return super().forward(...)`: no value of its own
    body = [stmt for stmt in forward.body.body if not (
        type(stmt) is cst.SimpleStatementLine and type(stmt.body[0]) is cst.Expr and
        type(stmt.body[0].value) is cst.SimpleString)] if type(forward.body) is cst.IndentedBlock else []
    if len(body) != 1 or type(body[0]) is not cst.SimpleStatementLine or len(body[0].body) != 1:
        return False
    ret = body[0].body[0]
    call = ret.value if type(ret) is cst.Return else None
    return type(call) is cst.Call and type(call.func) is cst.Attribute and call.func.attr.value == "forward" and (
        type(call.func.value) is cst.Call and dotted(call.func.value.func) == "super" or
        type(call.func.value) is cst.Name and call.func.value.value in bases)
