"""Readings of syntax the numerics walk (numerics_walk.py) makes of the statements it walks: what a
loop iterates and may change between rounds, whether a block exits, what a returned dict holds.
"""

from __future__ import annotations

import libcst as cst

from gradlint.source.engine.tensors import V, UNKNOWN
from gradlint.source.engine.walk import statements_in, walk
from gradlint.source.names import changes_in_place, dotted, root_name


def module_iteration(node: cst.BaseExpression) -> tuple[cst.BaseExpression, bool, bool]:
    """What `node` iterates once `list(...)`, `tuple(...)` and slices are taken off it
    (`list(model.children())[:3]`: some of the same modules), whether that is a model's modules
    (`.modules()`, `.children()`, their named forms) and whether named ones."""
    while type(node) is cst.Subscript or (
            type(node) is cst.Call and type(node.func) is cst.Name
            and node.func.value in ("list", "tuple") and len(node.args) == 1):
        node = node.value if type(node) is cst.Subscript else node.args[0].value
    if type(node) is cst.Call and type(node.func) is cst.Attribute:
        meth = node.func.attr.value
        return node, meth in ("modules", "children", "named_modules", "named_children"), meth.startswith("named_")
    return node, False, False


def list_key(node: cst.BaseExpression) -> str | None:
    """The key a list of modules is kept under (FunctionWalk._module_lists): a name, or an
    attribute's dotted text (`self.blocks`); None for anything else."""
    return node.value if type(node) is cst.Name else dotted(node) if type(node) is cst.Attribute else None


def ends_in_return(body: cst.BaseSuite) -> bool:
    """A block whose last statement returns or raises: nothing after the `if` runs from it."""
    last = body.body[-1] if type(body) is cst.IndentedBlock and body.body else \
        (body if type(body) is cst.SimpleStatementSuite else None)
    return last is not None and hasattr(last, "body") and isinstance(last.body, (list, tuple)) and bool(last.body) \
        and type(last.body[-1]) in (cst.Return, cst.Raise)


def exits(node: cst.CSTNode) -> bool:
    """Whether a block (an `if` with its `else`s, a `match` case) holds a `return`, outside the
    functions and classes defined in it: what follows is then one of two results. A `raise` is no
    such choice (a shape check before the loss guards the one path there is)."""
    return any(type(n) is cst.Return for n in statements_in(node))


def keyed_returns(value: cst.Dict, memo: dict) -> dict[str, V] | None:
    """What each string key of a returned dict display holds (`{"loss": rec + kld, "kld": kld}`),
    or None when a key is not a plain string or an entry is a `**` splat."""
    out: dict[str, V] = {}
    for el in value.elements:
        if type(el) is not cst.DictElement or type(el.key) is not cst.SimpleString:
            return None
        key = el.key.evaluated_value
        if not isinstance(key, str):
            return None
        out[key] = memo.get(id(el.value), UNKNOWN)
    return out


def changed_in(loop: cst.CSTNode) -> set[str]:
    """The names a loop binds or changes in place anywhere in it (its target, assignments,
    `x += 1`, `with ... as x`, `x := ...`, `x.mul_(2)`, `x[i] = v`): what may differ in its next
    round from what one reading of its body saw."""
    out: set[str] = set()

    def targets(t: cst.BaseExpression) -> None:
        if type(t) in (cst.Tuple, cst.List):
            for e in t.elements:
                targets(e.value)
        elif type(t) is cst.StarredElement:
            targets(t.value)
        elif (root := root_name(t)) is not None:
            out.add(root)

    for n in walk(loop, stop=()):
        kind = type(n)
        if kind is cst.Assign:
            for t in n.targets:
                targets(t.target)
        elif kind in (cst.AugAssign, cst.AnnAssign, cst.NamedExpr):
            targets(n.target)
        elif kind is cst.For:
            targets(n.target)
        elif kind is cst.WithItem and n.asname is not None:
            targets(n.asname.name)
        elif kind is cst.Call and type(n.func) is cst.Attribute and changes_in_place(n.func.attr.value) and \
                (root := root_name(n.func.value)) is not None:
            out.add(root)
    return out
