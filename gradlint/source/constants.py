"""Module-level plain constants of other project files: `from .consts import EPS`, `consts.EPS`,
`import pkg.consts as c; c.EPS`, and re-exports through a package's `__init__`.

The numerics walk knows a module-level name of its own file only when every binding of that
module gives one value and no function declares it `global` (`numerics_values.ModuleValues._module_value`);
a name imported from another file is held to the same rule in its own file. Its file is found by
the worker that extracts the importing file, with the machinery that reads config classes of other
files (`configs.ConfigReader`: the project index's module lookup over the folders around the
file, the files looked at bounded and recorded as the facts' `depends`), read with CPython's
`ast` (never imported, never run) and folded here as the numerics evaluator folds a plain value:
numbers (engine/fold.py's steps), strings, bools, None, tuples of them, `float()`/`int()`/
`bool()` of one, other constants of the module or constants it imports in turn.

Stricter than the file's own walk where it costs nothing: a name with any binding other than a
plain assignment (a loop target, an augmented assignment, a `def`, a walrus, a tuple target...),
a module that calls `globals()`, or a value that is not plain stays unknown; and unknown never
becomes a finding.
"""

from __future__ import annotations

import ast
import re
from typing import Any, Callable

import libcst as cst

from gradlint.source.budget import bounded
from gradlint.source.engine.fold import _MODULE_CONSTANTS, binary, unary
from gradlint.source.engine.tensors import UNKNOWN, same_value
from gradlint.source.numerics_ops import _converted

# Not a plain value (None is one: `EPS = None`).
NOT_KNOWN: Any = object()
# A binding that is no plain assignment (a def, a loop target, an augmented assignment...).
_OTHER = ("other",)
# The expression of a plain assignment, at most this many nodes (a constant, not a table).
_MAX_NODES = 64
# Steps (names followed, modules found) of one question, and how deep a chain of imports may go.
MAX_STEPS = 256
MAX_DEPTH = 16

# A `global` statement may be in the file: `\bglobal\s+[A-Za-z_]`, led by its literal (the `\b` a
# lookbehind after it, the same matches) so that CPython's re skips to each `global`.
_GLOBAL = re.compile(rb"global(?<!\wglobal)\s+[A-Za-z_]")
_OPERATORS = {ast.Add: cst.Add, ast.Sub: cst.Subtract, ast.Mult: cst.Multiply, ast.Div: cst.Divide,
              ast.FloorDiv: cst.FloorDivide, ast.Pow: cst.Power, ast.Mod: cst.Modulo}
_PLAIN_NODES = (ast.Constant, ast.UnaryOp, ast.BinOp, ast.Name, ast.Attribute, ast.Tuple, ast.Call,
                ast.Load, ast.USub, ast.UAdd, *_OPERATORS)


def _plain_looking(node: ast.expr) -> bool:
    """Whether an assigned expression can fold to a plain value: only literals, names, attributes,
    arithmetic, tuples and `float(...)`-style calls, small (anything else is no constant)."""
    count = 0
    for n in ast.walk(node):
        count += 1
        if count > _MAX_NODES or not isinstance(n, _PLAIN_NODES):
            return False
        if isinstance(n, ast.Call) and not (isinstance(n.func, ast.Name) and n.func.id in ("float", "int", "bool")
                                            and len(n.args) == 1 and not n.keywords
                                            and not isinstance(n.args[0], ast.Starred)):
            return False
    return True


def _names_in(target: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]


def bindings(tree: ast.Module, data: bytes) -> dict[str, tuple]:
    """Every binding of each top-level name of a module: `("expr", node)` for a plain assignment,
    `("import", target)` for `from a import X` (the target as written, relative kept),
    `("module", target)` for `import a.b as X`, `_OTHER` for anything else. Empty when the module may set names by code (`globals()`)."""
    if b"globals(" in data:
        return {}
    out: dict[str, list] = {}

    def other(names) -> None:
        for name in names:
            out.setdefault(name, []).append(_OTHER)

    stack: list[ast.stmt] = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is ast.Assign:
            for target in node.targets:
                if type(target) is ast.Name:
                    entry = ("expr", node.value) if _plain_looking(node.value) else _OTHER
                    out.setdefault(target.id, []).append(entry)
                elif type(target) in (ast.Tuple, ast.List, ast.Starred):
                    other(_names_in(target))
        elif kind is ast.AnnAssign:
            if type(node.target) is ast.Name and node.value is not None:
                entry = ("expr", node.value) if _plain_looking(node.value) else _OTHER
                out.setdefault(node.target.id, []).append(entry)
        elif kind is ast.AugAssign:
            if type(node.target) is ast.Name:
                other([node.target.id])
        elif kind is ast.ImportFrom:
            base = "." * node.level + (node.module or "")
            for alias in node.names:
                if alias.name != "*":
                    full = f"{base}{alias.name}" if base.endswith(".") or not base else f"{base}.{alias.name}"
                    out.setdefault(alias.asname or alias.name, []).append(("import", full))
        elif kind is ast.Import:
            for alias in node.names:
                # `import a.b as c` binds c to a.b; `import a.b` binds a
                local = alias.asname or alias.name.split(".", 1)[0]
                out.setdefault(local, []).append(("module", alias.name if alias.asname else local))
        elif kind is ast.FunctionDef:
            value = _returned_plain(node)
            out.setdefault(node.name, []).append(("function", value) if value is not None else _OTHER)
        elif kind in (ast.AsyncFunctionDef, ast.ClassDef):
            other([node.name])
        elif kind is ast.Delete:
            other(n for t in node.targets for n in _names_in(t))
        elif kind in (ast.For, ast.AsyncFor):
            other(_names_in(node.target))
            stack.extend(reversed(node.body + node.orelse))
        elif kind is ast.While or kind is ast.If:
            stack.extend(reversed(node.body + node.orelse))
        elif kind in (ast.With, ast.AsyncWith):
            other(n for item in node.items if item.optional_vars is not None for n in _names_in(item.optional_vars))
            stack.extend(reversed(node.body))
        elif kind is ast.Try or kind.__name__ == "TryStar":
            inner = list(node.body)
            for handler in node.handlers:
                if handler.name:
                    other([handler.name])
                inner.extend(handler.body)
            stack.extend(reversed(inner + node.orelse + node.finalbody))
        elif kind.__name__ == "Match":
            for case in node.cases:
                other(n for p in ast.walk(case.pattern) for n in (getattr(p, "name", None), getattr(p, "rest", None))
                      if isinstance(n, str))
                stack.extend(reversed(case.body))
    if b":=" in data:
        # a walrus anywhere at module level (not in a function) binds a module name
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                other(n.target.id for n in ast.walk(node) if isinstance(n, ast.NamedExpr))
    if _GLOBAL.search(data):
        other(name for n in _statements(tree.body) if type(n) is ast.Global for name in n.names)
    return {k: tuple(v) for k, v in out.items()}


def _statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """Every statement in `body` and in the blocks of its statements, in no particular order: a
    `global` is a statement, and walking the statements alone instead of every node
    (`ast.walk(tree)`) leaves out the expressions, most of a module's nodes."""
    found = list(body)
    for node in found:  # the list grows while it is read
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if type(block) is list:
                found.extend(block)
        for part in getattr(node, "handlers", ()) or getattr(node, "cases", ()):  # except / case
            found.extend(part.body)
    return found


def _returned_plain(fn: ast.FunctionDef) -> ast.expr | None:
    """The expression of `def f(): return <expr>` (a docstring allowed before it): no parameters,
    no decorators, nothing else, the expression plain-looking; None for any other function
    (numerics_values._returned_plain, in the importing file's own walk)."""
    a = fn.args
    if fn.decorator_list or a.args or a.posonlyargs or a.kwonlyargs or a.vararg or a.kwarg:
        return None
    body = fn.body
    if len(body) == 2 and type(body[0]) is ast.Expr and type(body[0].value) is ast.Constant \
            and type(body[0].value.value) is str:
        body = body[1:]
    if len(body) != 1 or type(body[0]) is not ast.Return or body[0].value is None:
        return None
    return body[0].value if _plain_looking(body[0].value) else None


class Lookup:
    """The plain values of names of other project modules, for one extraction.

    `module(name)`: the project module of that qualified name (the config reader's index: files
    looked for are bounded and recorded), as (its bindings, its `*` imports, its absolute form of a
    relative target) or None; `own`: the module being extracted (its names are its own walk's)."""

    def __init__(self, module: Callable[[str], Any], own: str) -> None:
        self.module = module
        self.own = own
        self.memo: dict[tuple[str, str, bool], Any] = {}
        self.steps = 0

    def qualified(self, text: str, depth: int = 0, call: bool = False) -> Any:
        """The value of `pkg.consts.EPS` (absolute): the longest prefix that is a project module,
        then the one name left in it; `call`: what calling it with no arguments gives (`def eps():
        return 0.0`); NOT_KNOWN otherwise."""
        parts = text.split(".")
        for i in range(len(parts) - 1, 0, -1):
            self.steps += 1
            if self.steps > MAX_STEPS:
                return NOT_KNOWN
            name = ".".join(parts[:i])
            if self.module(name) is None:
                continue
            return self.value(name, parts[i], depth, call) if i == len(parts) - 1 else NOT_KNOWN
        return NOT_KNOWN

    def value(self, module: str, name: str, depth: int = 0, call: bool = False) -> Any:
        key = (module, name, call)
        if key in self.memo:
            return self.memo[key]
        self.memo[key] = NOT_KNOWN  # a cycle of names resolves to nothing
        got = self.memo[key] = self._value(module, name, depth, call)
        return got

    def _value(self, module: str, name: str, depth: int, call: bool) -> Any:
        self.steps += 1
        found = self.module(module) if module != self.own else None
        if found is None or depth > MAX_DEPTH or self.steps > MAX_STEPS:
            return NOT_KNOWN
        table, stars, absolute = found
        entries = table.get(name)
        if not entries:
            # reached by a `*` import: only when exactly one of them binds it
            values = [v for v in (self.qualified(f"{absolute(s)}.{name}", depth + 1, call) for s in stars)
                      if v is not NOT_KNOWN]
            return values[0] if len(stars) == 1 and values else NOT_KNOWN
        if entries[0][0] == "import":
            if len(entries) != 1:
                return NOT_KNOWN
            target = absolute(entries[0][1])
            return self.qualified(target, depth + 1, call) if target else NOT_KNOWN
        if call:
            # a function bound once, read as its module's names are when it runs
            if len(entries) != 1 or entries[0][0] != "function":
                return NOT_KNOWN
            return self.fold(entries[0][1], module, table, absolute, depth)
        if any(e[0] != "expr" for e in entries):
            return NOT_KNOWN
        values = [self.fold(e[1], module, table, absolute, depth) for e in entries]
        first = values[0]
        if first is NOT_KNOWN or any(not same_value(first, v) for v in values[1:]):
            return NOT_KNOWN
        return first

    def fold(self, node: ast.expr, module: str, table: dict, absolute, depth: int) -> Any:
        """A plain assignment's value, in its module (`table`: its bindings)."""
        kind = type(node)
        if kind is ast.Constant:
            v = node.value
            if v is None or type(v) is bool or type(v) is str:
                return v
            if type(v) in (int, float):
                b = bounded(v)
                return NOT_KNOWN if b is None else b
            return NOT_KNOWN
        if kind is ast.Name:
            if node.id in table:
                return self.value(module, node.id, depth + 1)
            return NOT_KNOWN
        if kind is ast.UnaryOp:
            op = cst.Minus if type(node.op) is ast.USub else cst.Plus if type(node.op) is ast.UAdd else None
            got = unary(op, self.fold(node.operand, module, table, absolute, depth)) if op else None
            return NOT_KNOWN if got is None else got
        if kind is ast.BinOp:
            op = _OPERATORS.get(type(node.op))
            left = self.fold(node.left, module, table, absolute, depth)
            right = self.fold(node.right, module, table, absolute, depth) if left is not NOT_KNOWN else NOT_KNOWN
            got = binary(op, left, right) if op is not None and right is not NOT_KNOWN else None
            return NOT_KNOWN if got is None else got
        if kind is ast.Tuple:
            items = [self.fold(e, module, table, absolute, depth) for e in node.elts]
            return NOT_KNOWN if any(i is NOT_KNOWN for i in items) else tuple(items)
        if kind is ast.Attribute:
            return self._attribute(node, table, absolute, depth)
        if kind is ast.Call and node.func.id not in table:
            got = _converted(node.func.id, self.fold(node.args[0], module, table, absolute, depth))
            return NOT_KNOWN if got is UNKNOWN else got
        return NOT_KNOWN

    def _attribute(self, node: ast.Attribute, table: dict, absolute, depth: int) -> Any:
        """`consts.EPS`, `pkg.consts.EPS` through the module's imports; `math.pi` as the walk reads it."""
        parts: list[str] = []
        head: ast.expr = node
        while type(head) is ast.Attribute:
            parts.append(head.attr)
            head = head.value
        if type(head) is not ast.Name:
            return NOT_KNOWN
        entries = table.get(head.id)
        if entries is None or len(entries) != 1 or entries[0][0] not in ("import", "module"):
            return NOT_KNOWN
        if len(parts) == 1 and head.id in _MODULE_CONSTANTS:
            known = _MODULE_CONSTANTS[head.id].get(parts[0])
            return NOT_KNOWN if known is None else known
        target = absolute(entries[0][1])
        return self.qualified(".".join([target, *reversed(parts)]), depth + 1) if target else NOT_KNOWN
