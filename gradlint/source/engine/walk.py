"""Walking libcst trees: a node's code children in source order, pre-order walks, suites and headers.

libcst's visitors rebuild every node they pass (visit-and-replace): on a 5 000-line trainer that
costs seconds. Reading the dataclass fields directly is an order of magnitude cheaper, so every
interpreter of the source front-end walks with these helpers instead.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import libcst as cst

# Fields of libcst nodes that hold code (not whitespace or punctuation), in source order: the
# dataclass order is source order except for these (the body or the name comes first there).
_SOURCE_ORDER = {
    cst.IfExp: ("body", "test", "orelse"),
    cst.FunctionDef: ("decorators", "name", "params", "returns", "body"),
    cst.ClassDef: ("decorators", "name", "bases", "keywords", "body"),
    cst.ExceptHandler: ("type", "name", "body"),
    cst.ExceptStarHandler: ("type", "name", "body"),
    cst.MatchCase: ("pattern", "guard", "body"),
}
# Field-name prefixes of whitespace, punctuation and keywords: no code below them.
_PUNCTUATION = ("whitespace", "lpar", "rpar", "leading_lines", "trailing", "semicolon", "comma", "lbr", "rbr",
                "lbrace", "rbrace", "lbracket", "rbracket", "colon", "equal", "star", "lines_after", "header",
                "footer", "dot", "operator", "indent", "newline", "first_line", "default_indent", "default_newline",
                "asynchronous", "prefix", "quote")
# Where Python runs a node's children in another order than they are written: a conditional
# expression evaluates its test first. Interpreters that record calls and names in the order they
# happen walk in this order; positions pair nodes in source order.
_EVALUATION_ORDER = {cst.IfExp: ("test", "body", "orelse")}
_FIELDS: dict[type, tuple[str, ...]] = {}
_EVALUATION_FIELDS: dict[type, tuple[str, ...]] = {}
_NODE_TYPES: dict[type, bool] = {}


def is_node(value: object) -> bool:
    """isinstance(value, cst.CSTNode) without the ABC machinery's cost (millions of calls)."""
    cls = type(value)
    known = _NODE_TYPES.get(cls)
    if known is None:
        known = _NODE_TYPES[cls] = isinstance(value, cst.CSTNode)
    return known


def source_fields(cls: type) -> tuple[str, ...]:
    """The names of the fields of a node class that hold code, in source order."""
    found = _FIELDS.get(cls)
    if found is None:
        found = _SOURCE_ORDER.get(cls) or tuple(
            f.name for f in dataclasses.fields(cls) if not f.name.startswith(_PUNCTUATION))
        _FIELDS[cls] = found
    return found


def evaluation_fields(cls: type) -> tuple[str, ...]:
    """The names of the fields of a node class that hold code, in the order Python evaluates them."""
    found = _EVALUATION_FIELDS.get(cls)
    if found is None:
        found = _EVALUATION_FIELDS[cls] = _EVALUATION_ORDER.get(cls) or source_fields(cls)
    return found


def _children_by(table: dict[type, tuple[str, ...]], fields):
    """A children function reading the fields `fields(cls)` names (cached in `table`): one call
    per node, since the interpreters scan every node they pass."""
    node_types = _NODE_TYPES

    def children_of(node: cst.CSTNode) -> list:
        names = table.get(type(node)) or fields(type(node))
        out = []
        add = out.append
        # is_node inlined (its table, then the isinstance test for a type not seen yet): a call
        # and a generator per field were half of this function's cost
        for name in names:
            value = getattr(node, name)
            kind = type(value)
            if kind is tuple or kind is list:
                for v in value:
                    known = node_types.get(type(v))
                    if known or (known is None and is_node(v)):
                        add(v)
            else:
                known = node_types.get(kind)
                if known or (known is None and is_node(value)):
                    add(value)
        return out
    return children_of


# The code children of a node (no whitespace, punctuation or keywords), in source order.
children = _children_by(_FIELDS, source_fields)
# The same in the order Python evaluates them (a conditional expression's test before its branches).
evaluated_children = _children_by(_EVALUATION_FIELDS, evaluation_fields)


def walk(node: cst.CSTNode, stop: tuple[type, ...] = (cst.Lambda,)) -> Iterator[cst.CSTNode]:
    """Pre-order, in evaluation order (`evaluated_children`); does not descend into `stop` nodes
    (lambdas run later, if ever)."""
    stack = [node]
    # node type -> whether it is one of `stop`: isinstance on libcst's ABCs ran a Python frame per
    # node (the most frequent test of the extraction)
    stops = _STOPS.get(stop)
    if stops is None:
        stops = _STOPS[stop] = {}
    while stack:
        n = stack.pop()
        yield n
        if n is not node:
            kind = type(n)
            hit = stops.get(kind)
            if hit is None:
                hit = stops[kind] = isinstance(n, stop)
            if hit:
                continue
        stack.extend(reversed(evaluated_children(n)))


_STOPS: dict[tuple[type, ...], dict[type, bool]] = {}


def mentions(node: cst.CSTNode, name: str) -> bool:
    """Whether `name` is written as a name or an attribute anywhere under `node`. Searching the
    node's generated code instead cost a code generation per function, a quarter of the
    extraction of a large file."""
    stack: list = [node]
    while stack:
        n = stack.pop()
        if type(n) is cst.Name:  # an exact test: isinstance on libcst's ABCs costs a lookup per miss
            if n.value == name:
                return True
            continue
        stack.extend(children(n))
    return False


def mentions_any(node: cst.CSTNode, names: frozenset[str]) -> bool:
    """Whether any of `names` is written as a name or an attribute under `node` (one walk)."""
    stack: list = [node]
    while stack:
        n = stack.pop()
        if type(n) is cst.Name:
            if n.value in names:
                return True
            continue
        stack.extend(children(n))
    return False


# The fields of compound statements (and of their else, except and case parts) that hold blocks.
_BLOCK_FIELDS = ("body", "orelse", "handlers", "finalbody", "cases")


def statements_in(node: cst.CSTNode, into_defs: bool = False) -> Iterator[cst.CSTNode]:
    """The statements in the blocks of `node` (a function's body, an `if` with its `elif`s and
    `else`, a `try` with its handlers, a `match` with its cases...), compound ones and the small
    statements of each line, at any depth, in no particular order, never descending into
    expressions; into the bodies of the functions and classes defined there only with `into_defs`
    (a closure may assign `self.x`; a nested def's `return` is none of `node`'s). Blocks and their
    else/except/case parts are yielded too: callers select the types they look for."""
    todo: list = [node]
    while todo:
        n = todo.pop()
        if type(n) is cst.SimpleStatementLine or type(n) is cst.SimpleStatementSuite:
            yield from n.body
            continue
        if n is not node:
            yield n
            if not into_defs and type(n) in (cst.FunctionDef, cst.ClassDef):
                continue
        for field in _BLOCK_FIELDS:
            part = getattr(n, field, None)
            if type(part) is list or type(part) is tuple:
                todo.extend(part)
            elif part is not None and is_node(part):
                todo.append(part)


def suite(body) -> list:
    """The statements of an indented block, or the one-line suite itself (`for x in y: f(x)`)."""
    if type(body) is cst.IndentedBlock:
        return list(body.body)
    return [body]


def after_docstring(fn: cst.FunctionDef) -> list:
    """A function's statements after its docstring."""
    body = suite(fn.body)
    if body and type(body[0]) is cst.SimpleStatementLine and len(body[0].body) == 1 and \
            type(body[0].body[0]) is cst.Expr and isinstance(body[0].body[0].value, cst.SimpleString | cst.ConcatenatedString):
        return body[1:]
    return body


def headers(stmt: cst.CSTNode) -> list:
    """The expressions a compound statement evaluates itself (not its body's)."""
    if type(stmt) is cst.If or type(stmt) is cst.While:
        return [stmt.test]
    if type(stmt) is cst.For:
        return [stmt.target, stmt.iter]
    if type(stmt) is cst.With:
        return [i.item for i in stmt.items]
    return []


def comprehensions(comp: cst.CompFor | None) -> Iterator[cst.CompFor]:
    """The `for` clauses of a comprehension, outermost first."""
    while comp is not None:
        yield comp
        comp = comp.inner_for_in


_EMPTY = cst.Module(body=())


def text(node: cst.CSTNode) -> str:
    """The source text of a node, without surrounding whitespace (lines joined with `\\n`)."""
    return _EMPTY.code_for_node(node).strip()


def main_block(stmt: cst.CSTNode) -> bool:
    """`if __name__ == "__main__":` (either way round)."""
    if type(stmt) is not cst.If or type(stmt.test) is not cst.Comparison or len(stmt.test.comparisons) != 1:
        return False
    comparison = stmt.test.comparisons[0]
    sides = (stmt.test.left, comparison.comparator)
    names = [s.value for s in sides if type(s) is cst.Name]
    strings = [s.evaluated_value for s in sides if type(s) is cst.SimpleString]
    return type(comparison.operator) is cst.Equal and names == ["__name__"] and strings == ["__main__"]


def bound_once_at_top(module: cst.Module) -> set[str]:
    """The names the module's top-level statements bind exactly once (by a plain assignment)."""
    counts: dict[str, int] = {}
    for stmt in module.body:
        if type(stmt) is cst.SimpleStatementLine:
            for small in stmt.body:
                if type(small) in (cst.Assign, cst.AnnAssign, cst.AugAssign):
                    targets = [t.target for t in small.targets] if type(small) is cst.Assign else [small.target]
                    for t in targets:
                        if type(t) is cst.Name:
                            counts[t.value] = counts.get(t.value, 0) + (1 if type(small) is not cst.AugAssign else 2)
        elif type(stmt) in (cst.If, cst.For, cst.While, cst.Try, cst.With):
            for node in walk(stmt):
                if type(node) in (cst.AssignTarget, cst.AnnAssign) and type(node.target) is cst.Name:
                    counts[node.target.value] = counts.get(node.target.value, 0) + 2  # bound on some path
    return {name for name, n in counts.items() if n == 1}
