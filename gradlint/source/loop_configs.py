"""Config objects in the training-loop environment: what `cfg.max_grad_norm` reads where `cfg`
holds the one instance of a plain class the file builds (`cfg = TrainConfig()`, a dataclass or a
plain class of this file or another project file, a `SimpleNamespace(...)`), and which objects
the file may change after building them (then nothing is read). `loops.extract` installs
`config_fields` as the environment's `Env.field`.
"""

from __future__ import annotations

from typing import Any

import libcst as cst

from gradlint.source.engine.fold import constant as _constant
from gradlint.source.engine.values import Ctor
from gradlint.source.engine.walk import children, main_block
from gradlint.source.names import dotted

# Objects whose attributes are the keywords they are built with.
_NAMESPACES = frozenset({"types.SimpleNamespace", "argparse.Namespace"})
# Calls that only read an object passed to them: a config handed to one of them is not changed.
_READERS = frozenset({"print", "len", "str", "repr", "format", "isinstance", "getattr", "hasattr", "asdict",
                      "astuple", "type", "id", "info", "debug", "warning", "dumps", "pprint"})
_READ_METHODS = frozenset({"to_dict", "get", "copy", "keys", "items", "values", "__repr__"})


def config_fields(src, pre, configs, own) -> Any:
    """Env.field for one file: `cfg.field` where `cfg` (a name, or an attribute such as
    `self.cfg`) holds the one instance of a plain class the file builds (`cfg = TrainConfig()`,
    `TrainConfig(max_grad_norm=0)`): the field's value as the class sets it (`own`: this file's
    classes, configs.FileConfigs; `configs`: another project file's). Nothing when the object
    may be changed after it is built: the file assigns or deletes one of its attributes, calls a
    method of it, or passes it to a function that is not a constructor (`update_from_args(cfg,
    args)`, `setattr`, `vars`)."""
    from gradlint.source.configs import UNKNOWN_ARG

    changed: dict[str, set] | None = None
    rebound: dict[str, list] = {}
    memo: dict[tuple[int, str], Any] = {}
    binder = pre.env.binder
    exported: list[frozenset[str]] = []

    def importable() -> frozenset[str]:
        if not exported:
            exported.append(_module_globals(src.module))
        return exported[0]

    def field(node: cst.Attribute, scope) -> tuple[Any, str, str] | None:
        nonlocal changed
        obj = node.value
        text = dotted(obj) if isinstance(obj, (cst.Name, cst.Attribute)) else None
        if not text:
            return None
        ctor = pre.value_of(text, scope)
        if type(ctor) is not Ctor or not isinstance(ctor.node, cst.Call):
            return None
        if changed is None:
            changed, bound = _changed_objects(src.module)
            rebound.update(bound)
        where = changed.get(text, ())
        # an attribute (`self.cfg`) is one object file-wide; a name, the one its scope binds
        if where and ("." in text or binder(scope, text) in {binder(s, text) for s in where}):
            return None
        # bound twice (`cfg = TrainConfig(); cfg = TrainConfig(max_grad_norm=1.0)`, on a branch,
        # rebuilt from itself): the environment's join keeps one constructor call of the class
        binds = rebound.get(text, [])
        if len(binds) > 1 if "." in text else len([s for s in binds if binder(s, text) == binder(scope, text)]) > 1:
            return None
        key = (id(ctor.node), ctor.cls)
        if key not in memo:
            call = ctor.node
            if any(a.star for a in call.args):
                memo[key] = None
            else:
                def plain(v: cst.BaseExpression) -> Any:
                    c = _constant(v)
                    return UNKNOWN_ARG if c is None else c

                args = (tuple(plain(a.value) for a in call.args if a.keyword is None),
                        tuple((a.keyword.value, plain(a.value)) for a in call.args if a.keyword is not None))
                values = None
                if src.imports.qualify_dotted(ctor.cls) & _NAMESPACES and not args[0]:
                    # `SimpleNamespace(lr=1e-3, max_grad_norm=0.0)`: its fields are its keywords
                    values = {k: v for k, v in args[1] if v is not UNKNOWN_ARG}
                if values is None and own is not None and "." not in ctor.cls:
                    values = own.values(ctor.cls, args)
                if values is None and configs is not None and pre.classes.get(ctor.cls) is None:
                    values = configs.values(ctor.cls, src.imports.qualify_dotted(ctor.cls), args=args)
                memo[key] = values
        values = memo[key]
        name = node.attr.value
        if values is None or name not in values:
            return None
        # a global of the module (`cfg = TrainConfig()` at the top): another module may import it
        # and change it (`train.cfg.max_grad_norm = 1.0`), which no scan of this file sees; not
        # one bound only under `if __name__ == "__main__":`, which no import runs
        shared = text if "." not in text and binder(scope, text) is None and text in importable() else ""
        return values[name], f"{ctor.cls.rsplit('.', 1)[-1]}.{name}", shared

    return field


def _module_globals(module: cst.Module) -> frozenset[str]:
    """The names the module's top-level code binds where an import runs it: at the top level and
    under its `if`/`try`/`with`/`for` blocks, but not under `if __name__ == "__main__":`."""
    names: set[str] = set()
    stack: list = list(module.body)
    while stack:
        node = stack.pop()
        if main_block(node):
            if node.orelse is not None:
                stack.append(node.orelse)
            continue
        if isinstance(node, (cst.If, cst.Else, cst.Try, cst.Finally, cst.ExceptHandler, cst.With, cst.For, cst.While)):
            stack.extend(children(node))
            continue
        if isinstance(node, cst.IndentedBlock):
            stack.extend(node.body)
            continue
        if isinstance(node, cst.SimpleStatementLine):
            for small in node.body:
                if isinstance(small, (cst.Assign, cst.AnnAssign, cst.AugAssign)):
                    names.update(el.value for el in _bound(small) if isinstance(el, cst.Name))
    return frozenset(names)


def _bound(stmt: cst.Assign | cst.AugAssign | cst.AnnAssign | cst.Del) -> list[cst.BaseExpression]:
    """What an assignment (plain, augmented, annotated) binds or a `del` deletes, tuples and lists
    unpacked one level."""
    out: list[cst.BaseExpression] = []
    for t in ([t.target for t in stmt.targets] if isinstance(stmt, cst.Assign) else [stmt.target]):
        for el in (t.elements if isinstance(t, (cst.Tuple, cst.List)) else [t]):
            out.append(el.value if isinstance(el, (cst.Element, cst.StarredElement)) else el)
    return out


def _changed_objects(module: cst.Module) -> tuple[dict[str, set], dict[str, list]]:
    """The objects (as written: `cfg`, `self.cfg`) the file may change after building them, with
    the scopes (FunctionDefs; None: the module) that may: an attribute of theirs assigned,
    augmented or deleted, a method of theirs or of an attribute of theirs called (but for
    `_READ_METHODS`: `cfg.__dict__.update(...)` changes `cfg`), bound to another name (an alias),
    or passed to a call of a lower-case
    name (a function, not a constructor) that is not one of `_READERS`; and the scope of every
    assignment of each name or attribute (one bound twice is not one object)."""
    out: dict[str, set] = {}
    binds: dict[str, list] = {}

    def owners(text: str):
        parts = text.split(".")
        return (".".join(parts[:i]) for i in range(1, len(parts) + 1))

    stack: list[tuple[cst.CSTNode, cst.FunctionDef | None]] = [(module, None)]
    while stack:
        n, scope = stack.pop()
        if isinstance(n, cst.FunctionDef):
            # (its decorators and defaults are evaluated in the scope around it: close enough)
            stack.extend((c, n) for c in children(n))
            continue
        if isinstance(n, (cst.Assign, cst.AugAssign, cst.AnnAssign, cst.Del)):
            value = getattr(n, "value", None)
            aliased = dotted(value) if isinstance(value, (cst.Name, cst.Attribute)) else None
            if aliased and isinstance(n, (cst.Assign, cst.AnnAssign)):
                out.setdefault(aliased, set()).add(scope)  # `c = cfg`: changed through `c`, maybe
            for el in _bound(n):
                whole = dotted(el) if isinstance(el, (cst.Name, cst.Attribute)) else None
                if whole and not isinstance(n, cst.Del):
                    binds.setdefault(whole, []).append(scope)
                if isinstance(el, (cst.Attribute, cst.Subscript)):
                    owner = dotted(el.value) if isinstance(el.value, (cst.Name, cst.Attribute)) else None
                    for o in owners(owner) if owner else ():
                        out.setdefault(o, set()).add(scope)
        elif isinstance(n, cst.Call):
            func = n.func
            if isinstance(func, cst.Attribute) and func.attr.value not in _READ_METHODS:
                owner = dotted(func.value) if isinstance(func.value, (cst.Name, cst.Attribute)) else None
                for o in owners(owner) if owner else ():
                    out.setdefault(o, set()).add(scope)
            last = func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else ""
            if not last[:1].isupper() and last not in _READERS:
                for a in n.args:
                    passed = dotted(a.value) if isinstance(a.value, (cst.Name, cst.Attribute)) else None
                    if passed:
                        out.setdefault(passed, set()).add(scope)
        stack.extend((c, scope) for c in children(n))
    return out, binds
