"""Name resolution for the source front-end: a per-file import-alias table, sets of candidates.

libcst's QualifiedNameProvider costs most of a lint run on large trees (STYLE.md); a table of
what each imported name stands for gives the same answers for the names we care about at almost
no cost. A name imported two ways (a conditional import) keeps both candidates: callers test
membership, never take one.
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Iterable

import libcst as cst

# PyTorch re-exports module classes from torch.nn; the defining modules are aliases of them.
_REEXPORTS = (
    ("torch.nn.modules.", "torch.nn."),
    ("torch.nn.functional.", "torch.nn.functional."),
    ("torch.autograd.function.", "torch.autograd."),
    ("torch.cuda.amp.grad_scaler.", "torch.cuda.amp."),
    ("torch.amp.grad_scaler.", "torch.amp."),
)

# The context managers and decorators under which autograd records nothing.
NO_GRAD = frozenset({"torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad", "torch.autograd.inference_mode",
                     "torch.autograd.grad_mode.no_grad", "torch.autograd.grad_mode.inference_mode"})
# torch.set_grad_enabled(mode), as a statement or a context manager: every spelling, for every reader.
SET_GRAD_ENABLED = frozenset({"torch.set_grad_enabled", "torch.autograd.set_grad_enabled",
                              "torch.autograd.grad_mode.set_grad_enabled"})
# The context managers and decorators that turn gradient recording back on.
ENABLE_GRAD = frozenset({"torch.enable_grad", "torch.autograd.enable_grad", "torch.autograd.grad_mode.enable_grad"})
_INFERENCE_MODE = frozenset({"torch.inference_mode", "torch.autograd.inference_mode",
                             "torch.autograd.grad_mode.inference_mode"})
# The last names of the switches: a callee the file's imports do not name (`from torch import *`,
# `torch` itself star-imported from a module of the project) is read by its last name.
_SWITCHES = frozenset({"no_grad", "inference_mode", "enable_grad", "set_grad_enabled"})


def grad_mode(expr: cst.BaseExpression, qualify: Callable[[cst.BaseExpression], frozenset[str]]) -> str | None:
    """What entering `expr`, a with-item or a decorator, does to autograd's grad mode, its callee
    named through `qualify` (the file's imports; a callee they do not name is read by its last
    name, `from torch import *`): "off" (`torch.no_grad()`, `set_grad_enabled(False)`; called or,
    as a decorator, not), "inference" (`inference_mode()` or `(True)`: off, and no `enable_grad()`
    inside turns recording back on), "resume" (`inference_mode(False)`: recording on, inside
    no_grad or inference_mode too), "on" (`enable_grad()`, `set_grad_enabled(True)`), "unknown"
    (`set_grad_enabled(flag)` or `inference_mode(flag)` with the flag computed at run time), None
    for anything else. Each measured in torch 2.13; grad_state folds them. One answer for every
    reader: the training-loop, numerics and forward front-ends each tested these spellings once,
    differently."""
    call = expr if type(expr) is cst.Call else None
    callee = call.func if call is not None else expr
    names = qualify(callee)
    if not names:
        last = (dotted(callee) or "").rsplit(".", 1)[-1]
        if last not in _SWITCHES:
            return None
        names = frozenset({"torch." + last})
    flag = ""
    if call is not None and call.args:
        first = call.args[0].value
        flag = first.value if type(first) is cst.Name and first.value in ("True", "False") else "?"
    if not names.isdisjoint(_INFERENCE_MODE):
        return {"False": "resume", "?": "unknown"}.get(flag, "inference")
    if not names.isdisjoint(NO_GRAD):
        return "off"
    if not names.isdisjoint(ENABLE_GRAD):
        return "on"
    if not names.isdisjoint(SET_GRAD_ENABLED) and flag:
        return {"True": "on", "False": "off"}.get(flag, "unknown")
    return None


def is_off(state: str | None) -> bool:
    """Whether a grad state (or a grad_mode answer) has recording off."""
    return state == "off" or state == "inference"


def grad_state(state: str | None, switches: Iterable[cst.BaseExpression],
               qualify: Callable[[cst.BaseExpression], frozenset[str]], *, unsure_records: bool = False) -> str | None:
    """The grad state inside `switches` (a with statement's items, or a function's decorators from
    the top one down: torch enters them in that order, so the last decides, measured), entered
    from `state`: None (recording), "off", or "inference" (off, and only `inference_mode(False)`
    turns it back on). A mode computed at run time leaves the state as it was, or, with
    `unsure_records` (a reader for which a run with gradient is the safe guess), records."""
    for expr in switches:
        mode = grad_mode(expr, qualify)
        if mode is None:
            continue
        if mode == "resume":
            state = None
        elif mode == "inference":
            state = "inference"
        elif state == "inference":
            continue  # (enable_grad() inside inference_mode records nothing)
        elif mode == "off":
            state = "off"
        elif mode == "on" or (mode == "unknown" and unsure_records):
            state = None
    return state


def set_grad_statement(stmt: cst.CSTNode, qualify: Callable[[cst.BaseExpression], frozenset[str]]) -> bool | None:
    """The literal mode of a statement `torch.set_grad_enabled(True/False)` (or `mode=...`), which
    switches recording for what follows; None for any other statement."""
    if type(stmt) is not cst.SimpleStatementLine or len(stmt.body) != 1 or type(stmt.body[0]) is not cst.Expr:
        return None
    call = stmt.body[0].value
    if type(call) is not cst.Call or len(call.args) != 1 or (
            call.args[0].keyword is not None and call.args[0].keyword.value != "mode"):
        return None
    arg = call.args[0].value
    if not (type(arg) is cst.Name and arg.value in ("True", "False")):
        return None
    names = qualify(call.func) or frozenset({"torch." + (dotted(call.func) or "").rsplit(".", 1)[-1]})
    return None if names.isdisjoint(SET_GRAD_ENABLED) else arg.value == "True"


def with_items(node: cst.With) -> list[cst.BaseExpression]:
    return [item.item for item in node.items]


def decorators(fn: cst.FunctionDef) -> list[cst.BaseExpression]:
    return [d.decorator for d in fn.decorators]


# Calls that wrap a module and run its forward when called (the first argument), for every reader.
# `nn.Parameter` as its imports qualify it
PARAMETER_CLASSES = frozenset({"torch.nn.Parameter", "torch.nn.parameter.Parameter"})
MODEL_WRAPPERS = frozenset({"torch.nn.DataParallel", "torch.nn.parallel.DataParallel",
                            "torch.nn.parallel.DistributedDataParallel", "torch.nn.parallel.data_parallel.DataParallel",
                            "torch.nn.parallel.distributed.DistributedDataParallel", "torch.compile",
                            "torch.jit.script", "torch.jit.trace"})
_WRAPPER_CLASSES = frozenset(n.rsplit(".", 1)[-1] for n in MODEL_WRAPPERS if n.rsplit(".", 1)[-1][:1].isupper())


def canonical(name: str) -> str:
    """torch.nn.modules.activation.Sigmoid -> torch.nn.Sigmoid; other names unchanged."""
    if name.startswith("torch.nn.modules."):
        return "torch.nn." + name.rsplit(".", 1)[-1]
    if name.startswith("torch.nn.utils.clip_grad."):
        return "torch.nn.utils." + name.rsplit(".", 1)[-1]
    return name


def dotted(expr: cst.BaseExpression) -> str | None:
    """'a.b.c' for a Name/Attribute chain, None for anything else (calls, subscripts...)."""
    # Exact type tests: libcst's node classes are ABCs, where isinstance costs a lookup per miss.
    kind = type(expr)
    if kind is cst.Name:
        return expr.value
    parts: list[str] = []
    while kind is cst.Attribute:
        parts.append(expr.attr.value)
        expr = expr.value
        kind = type(expr)
    if kind is cst.Name:
        parts.append(expr.value)
        return ".".join(reversed(parts))
    return None


def implied_true(expr: cst.BaseExpression) -> tuple[str, ...]:
    """The names and attributes, as written, that are true whenever `expr` is: `expr` itself
    when it is one, and each such term of an `and`, however nested (`a.flag and (b and c > 0)`:
    `a.flag`, `b`). An `or`, a `not`, a comparison or a call implies nothing."""
    if type(expr) is cst.BooleanOperation:
        if type(expr.operator) is not cst.And:
            return ()
        return implied_true(expr.left) + implied_true(expr.right)
    name = dotted(expr)
    return (name,) if name else ()


def _module_name(node: cst.BaseExpression | None) -> str:
    if node is None:
        return ""
    return dotted(node) or ""


class ImportTable:
    """Local name -> set of fully qualified names it may stand for."""

    def __init__(self) -> None:
        self.names: dict[str, set[str]] = {}
        # text -> its answer: the interpreters ask for the same few names again and again
        self._qualified: dict[str, frozenset[str]] = {}
        # id(expression) -> (the expression, its answer): the interpreters qualify the same call's
        # callee each time they pass it (loops, each instance of a class, each forward path); the
        # node is kept so that its id cannot name another node later
        self._by_node: dict[int, tuple[cst.BaseExpression, frozenset[str]]] = {}

    def bind(self, local: str, qualified: str) -> None:
        self.names.setdefault(local, set()).add(qualified)
        self._qualified.clear()
        self._by_node.clear()

    def qualify_dotted(self, text: str | None) -> frozenset[str]:
        if not text:
            return frozenset()
        found = self._qualified.get(text)
        if found is not None:
            return found
        head, _, rest = text.partition(".")
        targets = self.names.get(head)
        if not targets:
            found = frozenset()
        else:
            found = frozenset(canonical(t + ("." + rest if rest else "")) for t in targets)
        self._qualified[text] = found
        return found

    def qualify(self, expr: cst.BaseExpression) -> frozenset[str]:
        """Every qualified name `expr` may denote; empty when its head is not an import."""
        known = self._by_node.get(id(expr))
        if known is not None and known[0] is expr:
            return known[1]
        found = self.qualify_dotted(dotted(expr))
        self._by_node[id(expr)] = (expr, found)
        return found

    def is_any(self, expr: cst.BaseExpression, names: Iterable[str]) -> bool:
        wanted = names if isinstance(names, (set, frozenset)) else set(names)
        return not self.qualify(expr).isdisjoint(wanted)

    def mentions(self, prefix: str) -> bool:
        return any(q == prefix or q.startswith(prefix + ".") for qs in self.names.values() for q in qs)


class _ImportCollector(cst.CSTVisitor):
    def __init__(self, table: ImportTable) -> None:
        self.table = table

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            full = _module_name(alias.name)
            if alias.asname is not None and type(alias.asname.name) is cst.Name:
                self.table.bind(alias.asname.name.value, full)
            else:
                # `import torch.nn` binds `torch`
                head = full.split(".", 1)[0]
                self.table.bind(head, head)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if type(node.names) is cst.ImportStar:
            return
        module = "." * len(node.relative) + _module_name(node.module)
        for alias in node.names:
            name = _module_name(alias.name)
            local = alias.asname.name.value if alias.asname is not None and type(alias.asname.name) is cst.Name else name
            full = f"{module}.{name}" if module and not module.endswith(".") else f"{module}{name}"
            self.table.bind(local, full)


def build_import_table(module: cst.Module) -> ImportTable:
    """Imports anywhere in the file (function-level imports too: they are common in training code).

    Imports are statements, so only statement bodies are walked, never expressions: a full
    visitor pass costs as much as the parse on large files.
    """
    table = ImportTable()
    collector = _ImportCollector(table)
    stack: list = list(module.body)
    while stack:
        stmt = stack.pop()
        if type(stmt) is cst.SimpleStatementLine:
            for small in stmt.body:
                if type(small) is cst.Import:
                    collector.visit_Import(small)
                elif type(small) is cst.ImportFrom:
                    collector.visit_ImportFrom(small)
            continue
        for attr in ("body", "orelse", "finalbody", "handlers"):
            value = getattr(stmt, attr, None)
            if value is None:
                continue
            if isinstance(value, (list, tuple)):
                stack.extend(value)
            elif type(value) is cst.IndentedBlock or type(value) is cst.SimpleStatementSuite:  # the suites (BaseSuite)
                stack.extend(value.body if isinstance(value.body, (list, tuple)) else [])
            elif isinstance(value, cst.CSTNode):
                stack.append(value)
    return table


def wraps_module(call: cst.Call) -> bool:
    """`nn.DataParallel(m)`, `DistributedDataParallel(m, ...)`, `torch.compile(m)` as written (no
    import table: a readers' pre-pass has none): a MODEL_WRAPPERS call given the module first."""
    text = dotted(call.func)
    if not text or not (text.rsplit(".", 1)[-1] in _WRAPPER_CLASSES or text in MODEL_WRAPPERS):
        return False
    return bool(call.args) and call.args[0].keyword is None and not call.args[0].star


def bound_names(target: cst.CSTNode) -> list[str]:
    """The plain names an assignment target binds (`a`, `a, b`, `[a, *b]`); attributes and
    subscripts bind none."""
    if type(target) is cst.Name:
        return [target.value]
    if type(target) in (cst.Tuple, cst.List):
        return [n for el in target.elements for n in bound_names(el.value)]
    if type(target) is cst.StarredElement:
        return bound_names(target.value)
    return []


def self_attribute(node: cst.BaseExpression) -> str | None:
    """The attribute name of `self.<name>`, else None."""
    if type(node) is cst.Attribute and type(node.value) is cst.Name and node.value.value == "self":
        return node.attr.value
    return None


def changes_in_place(method: str) -> bool:
    """A tensor method that changes its tensor (`mul_`, `masked_fill_`), by torch's naming."""
    return method.endswith("_") and not method.startswith("_")


def root_name(node: cst.BaseExpression, through_calls: bool = True) -> str | None:
    """The local name an item or attribute of it is read from (`x` of `x[0]`, `buf` of
    `buf[0].data`), also through methods of it (`x` of `x.view(-1)`) unless `through_calls` is
    False; None for anything else."""
    while True:
        kind = type(node)
        if kind is cst.Name:
            return node.value
        if kind is cst.Subscript or kind is cst.Attribute:
            node = node.value
        elif through_calls and kind is cst.Call and type(node.func) is cst.Attribute:
            node = node.func.value
        else:
            return None


def top_level_imports(tree) -> dict[str, int]:
    """Name -> how many import statements at the module's top level bind it (`import torch.nn`
    binds `torch`)."""
    out: dict[str, int] = {}
    for stmt in (tree.body if tree is not None else ()):
        if type(stmt).__name__ in ("Import", "ImportFrom"):
            for alias in stmt.names:
                name = alias.asname or alias.name.split(".")[0]
                out[name] = out.get(name, 0) + 1
    return out


def bound_otherwise(text: str, name: str) -> bool:
    """Whether a statement of the text binds `name` other than by an import: an assignment or
    unpacking at the start of a line (`F = ...`, `B, F = x.shape`, `F: T = ...`), a loop target, a
    def or class. Read from the text, to the safe side (a docstring's counts too): an AST walk of
    a large file cost 40 ms."""
    pattern = _binding_pattern(name)
    # No part of the pattern crosses a line end, so only the lines holding the name can match:
    # searching them alone gives the same answer (over the whole text the leading `(\w+ ,)*`
    # was tried at every line start, 4 ms a call on a large file).
    at = text.find(name)
    while at >= 0:
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        end = len(text) if end < 0 else end
        if pattern.search(text, start, end) is not None:
            return True
        at = text.find(name, end)
    return False


@functools.lru_cache(maxsize=256)
def _binding_pattern(name: str) -> re.Pattern:
    n = re.escape(name)
    return re.compile(rf"^[ \t]*(?:\w+[ \t]*,[ \t]*)*{n}[ \t]*(?:,[ \t]*\w+[ \t]*)*(?::[^\n=]*)?=(?!=)|"
                      rf"\bfor[ \t]+(?:[^\n:]*,[ \t]*)?{n}\b[^\n:]*\bin\b|\b(?:def|class)[ \t]+{n}\b", re.MULTILINE)
