"""The training-loop recorder's environment: what a file binds, built before the walk.

`_PrePass` reads a file's statements once (never its expressions) for the names of its functions,
methods and classes, what its calls pass (a parameter decided by every call of the file), and
every binding of every scope into the engine's environment (`engine/env.py`: numbers with their
provenance, instances held by their text, command-line option defaults). The recorder
(`loops.py`) runs after it, so a function sees every binding of its module wherever it stands.
`_fact` turns the environment's answer for an expression into the neutral `facts.training.Value`.
"""

from __future__ import annotations

import re

import libcst as cst

from gradlint.facts.training import Value, in_bases
from gradlint.source.engine.calls import arg as _arg
from gradlint.source.engine.env import LITERAL, Env, Known, Obj
from gradlint.source.engine.fold import constant as _constant
from gradlint.source.engine.values import UNKNOWN
from gradlint.source.engine.walk import evaluated_children as _children
from gradlint.source.engine.walk import suite as _suite
from gradlint.source.engine.walk import text as _text
from gradlint.source.names import dotted

_MOVE_METHODS = frozenset({"to", "cuda", "cpu", "float", "double", "half", "bfloat16", "train", "eval",
                           "requires_grad_", "to_empty", "share_memory"})


def _target_texts(target: cst.BaseExpression) -> list[str]:
    if isinstance(target, (cst.Tuple, cst.List)):
        out: list[str] = []
        for el in target.elements:
            out.extend(_target_texts(el.value))
        return out
    if isinstance(target, cst.StarredElement):
        return _target_texts(target.value)
    d = dotted(target) if isinstance(target, (cst.Name, cst.Attribute)) else None
    return [d] if d else []


# ---------------------------------------------------------------------------------------------
# Pre-pass: which names are functions of this file; what the file binds (the environment)

_STATEMENTISH = frozenset({
    "SimpleStatementLine", "SimpleStatementSuite", "IndentedBlock", "Assign", "AnnAssign", "AugAssign", "Expr",
    "If", "Else", "For", "While", "With", "Try", "TryStar", "ExceptHandler", "ExceptStarHandler", "Finally",
    "Match", "MatchCase", "FunctionDef", "ClassDef",
})


class _PrePass:
    """Declarations before the walk: the file's functions, methods and classes, what its calls
    pass, and every binding of every scope into the engine's environment (`env`: names, by the
    FunctionDef that binds them or None for the module, and command-line option defaults)."""

    def __init__(self) -> None:
        self.functions: set[str] = set()
        self.methods: set[str] = set()
        self.env = Env()
        # class -> (bases as written, methods); `x = Cls(...)` / `self.x = Cls(...)`: env.hold
        self.classes: dict[str, tuple[tuple[str, ...], set[str]]] = {}
        # what the calls of a statement pass, by callee: `f` for `f(...)`, `.m` for `self.m(...)`
        # (positional texts, keyword texts, a `*`/`**` seen)
        self.calls: dict[str, list[tuple[tuple[str, ...], dict[str, str], bool]]] = {}

    def run(self, module: cst.Module) -> None:
        self._walk(module, None, False)

    def _walk(self, node: cst.CSTNode, scope: cst.CSTNode | None, in_class: bool) -> None:
        # statements only: constants, argparse options and defs are all statements; expressions
        # are never entered (most of a file's nodes, and none of what this pass looks for)
        stack = [(c, in_class) for c in reversed(_children(node)) if type(c).__name__ in _STATEMENTISH]
        while stack:
            n, cls = stack.pop()
            if isinstance(n, cst.FunctionDef):
                (self.methods if cls else self.functions).add(n.name.value)
                for d in n.decorators:
                    self._walk(d, scope, False)
                self._walk(n.body, n, False)
                continue
            if isinstance(n, cst.ClassDef):
                bases = tuple(d for d in (dotted(b.value) for b in n.bases if b.keyword is None) if d)
                methods = {m.name.value for m in _suite(n.body) if isinstance(m, cst.FunctionDef)}
                self.classes.setdefault(n.name.value, (bases, methods))
                self._walk(n.body, scope, True)
                continue
            if isinstance(n, (cst.IndentedBlock, cst.SimpleStatementLine, cst.SimpleStatementSuite)):
                stack.extend((c, cls) for c in reversed(_children(n)) if type(c).__name__ in _STATEMENTISH)
                continue
            # below: statements and expressions of this scope; nested blocks keep the class flag off
            env = self.env
            if isinstance(n, cst.Assign):
                self._instance(n.targets[-1].target, n.value)
                value = _known(n.value)
                for t in n.targets:
                    for name in _target_texts(t.target):
                        if "." not in name:
                            single = len(n.targets) == 1 and isinstance(t.target, cst.Name)
                            env.bind(scope, name, value if single else UNKNOWN)
            elif isinstance(n, cst.AnnAssign) and isinstance(n.target, cst.Name):
                env.bind(scope, n.target.value, _known(n.value) if n.value is not None else UNKNOWN)
            elif isinstance(n, cst.AugAssign) and isinstance(n.target, cst.Name):
                env.bind(scope, n.target.value, UNKNOWN)
            elif isinstance(n, cst.For):
                for name in _target_texts(n.target):
                    if "." not in name:
                        env.bind(scope, name, UNKNOWN)
            elif isinstance(n, cst.Expr) and isinstance(n.value, cst.Call):
                self._add_argument(n.value)
            if isinstance(n, (cst.Expr, cst.Assign, cst.Return)) and isinstance(n.value, cst.Call):
                self._call(n.value)
            stack.extend((c, False) for c in reversed(_children(n)) if type(c).__name__ in _STATEMENTISH)

    def _call(self, call: cst.Call) -> None:
        func = call.func
        if isinstance(func, cst.Name):
            key = func.value
        elif isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
            key = "." + func.attr.value
        else:
            return
        pos = tuple(_text(a.value) for a in call.args if a.keyword is None and not a.star)
        kw = {a.keyword.value: _text(a.value) for a in call.args if a.keyword is not None}
        self.calls.setdefault(key, []).append((pos, kw, any(a.star for a in call.args)))

    def passed(self, fdef: cst.FunctionDef, method: bool, param: str) -> list[str] | None:
        """What every call of this file passes for `param` of `fdef` (a module-level function,
        or a method called on `self`); None when a call passes nothing we can read, or none calls."""
        calls = self.calls.get(("." if method else "") + fdef.name.value)
        if not calls:
            return None
        p = fdef.params
        positional = [x.name.value for x in (*p.posonly_params, *p.params)][1 if method else 0:]
        index = positional.index(param) if param in positional else -1
        out = []
        for pos, kw, star in calls:
            if param in kw:
                out.append(kw[param])
            elif 0 <= index < len(pos) and not (star and index >= len(pos)):
                out.append(pos[index])
            else:
                return None
        return out

    def _instance(self, target: cst.BaseExpression, value: cst.BaseExpression) -> None:
        """`x = Cls(...)` (also `Cls(...).to(device)`): x holds an instance of Cls."""
        while (isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute)
               and value.func.attr.value in _MOVE_METHODS and isinstance(value.func.value, cst.Call)):
            value = value.func.value
        cls = dotted(value.func) if isinstance(value, cst.Call) else None
        name = dotted(target) if isinstance(target, (cst.Name, cst.Attribute)) else None
        if cls and name and cls.rsplit(".", 1)[-1][:1].isupper():
            self.env.hold(name, Obj(cls))

    def method_of(self, cls: str, method: str) -> bool:
        """Whether class `cls` of this file (as written) defines `method`, itself or through a
        base class of this file (bounded, cycle-safe)."""
        bases = {name: b for name, (b, _) in self.classes.items()}
        return in_bases(cls, bases, lambda c: True if method in self.classes.get(c, ((), ()))[1] else None) is True

    def instance_class(self, text: str) -> str:
        """The one class `text` is assigned an instance of in this file, as written; '' else
        (other assignments to it do not count: a constructor call names what it holds)."""
        found = self.env.held(text)
        return found.cls if type(found) is Obj else ""

    def _add_argument(self, node: cst.Call) -> None:
        if not (isinstance(node.func, cst.Attribute) and node.func.attr.value == "add_argument"):
            return
        options = [a.value.evaluated_value for a in node.args if a.keyword is None
                   and isinstance(a.value, cst.SimpleString) and isinstance(a.value.evaluated_value, str)]
        dest_node = _arg(node, -1, "dest")
        dest = None
        if isinstance(dest_node, cst.SimpleString):
            dest = dest_node.evaluated_value
        else:
            longs = [o for o in options if o.startswith("--")]
            pick = longs[0] if longs else (options[0] if options else None)
            if pick:
                dest = pick.lstrip("-").replace("-", "_")
        if not dest:
            return
        self.env.option(dest, _known(_arg(node, -1, "default")))


def _known(node: cst.BaseExpression | None):
    """What the pre-pass binds a name to: the number a literal expression stands for, else UNKNOWN
    (the loop facts compare numbers only)."""
    value = _constant(node) if node is not None else None
    return UNKNOWN if value is None else value


def _fact(node: cst.BaseExpression, known: Known, tests: tuple[str, ...]) -> Value:
    """facts.training.Value of an expression from the engine's value of it. guarded: a test of
    an enclosing `if` mentions it (`if clip > 0:`), or its option's name for `args.clip`; no
    test makes a literal 0 safe."""
    text = _text(node)
    if known.source == LITERAL:
        return Value(text=text, number=known.number, source=LITERAL)
    key = node.attr.value if isinstance(node, cst.Attribute) else text
    guarded = any(re.search(r"(?<![\w.])" + re.escape(text) + r"(?!\w)", t) or
                  (isinstance(node, cst.Attribute) and re.search(r"\b" + re.escape(key) + r"\b", t)) for t in tests)
    return Value(text=text, number=known.number, source=known.source, guarded=bool(guarded))
