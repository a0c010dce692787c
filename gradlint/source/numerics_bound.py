"""A local name bound once, on the function's straight path: the expression it holds wherever it
is read after that statement (a `torch.where` branch written as a name: `k_pos = a / b` then
`where(c, k_pos, k_neg)`, numerics_sites.check_where)."""

from __future__ import annotations

import libcst as cst


class _Uses(cst.CSTVisitor):
    """How often a function binds `name` (assignments of any kind, loop, `with` and `except`
    targets, parameters, imports, walrus, nested definitions, `global`/`nonlocal`, `del`), and
    whether it changes the tensor in place (`name.clamp_(...)`, `name[i] = v`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.bindings = 0
        self.in_place = False

    def _target(self, target: cst.CSTNode | None) -> None:
        if type(target) is cst.Name:
            self.bindings += target.value == self.name
        elif type(target) in (cst.Tuple, cst.List):
            for el in target.elements:
                self._target(el.value)
        elif type(target) is cst.StarredElement:
            self._target(target.value)
        elif type(target) is cst.Subscript and type(target.value) is cst.Name and target.value.value == self.name:
            self.in_place = True  # `k[mask] = 0`

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self._target(node.target)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._target(node.target)
        if node.value is None:
            self.bindings += 1  # (a bare annotation makes the name local: read as rebound)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._target(node.target)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self._target(node.target)

    def visit_For(self, node: cst.For) -> None:
        self._target(node.target)

    def visit_CompFor(self, node: cst.CompFor) -> None:
        self._target(node.target)

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if node.asname is not None:
            self._target(node.asname.name)

    def visit_ExceptHandler(self, node: cst.ExceptHandler) -> None:
        if node.name is not None:
            self._target(node.name.name)

    def visit_Param(self, node: cst.Param) -> None:
        self._target(node.name)

    def visit_Del(self, node: cst.Del) -> None:
        self._target(node.target)

    def visit_ImportAlias(self, node: cst.ImportAlias) -> None:
        bound = node.asname.name if node.asname is not None else node.name
        self._target(bound)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._target(node.name)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._target(node.name)

    def visit_Global(self, node: cst.Global) -> None:
        for n in node.names:
            self.bindings += 2 * (n.name.value == self.name)

    def visit_Nonlocal(self, node: cst.Nonlocal) -> None:
        for n in node.names:
            self.bindings += 2 * (n.name.value == self.name)

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == self.name:
            meth = func.attr.value
            if meth.endswith("_") and not meth.endswith("__"):
                self.in_place = True  # `k.clamp_(max=1)`, `k.nan_to_num_()`


def bound_once_on_path(fn: cst.FunctionDef | None, name: str) -> cst.BaseExpression | None:
    """The value of `name = value` (or `name: T = value`) when that statement is one of the
    function body's own statements (not in a branch, loop, `with` or `try` that may not run it)
    and nothing else in the function binds the name or changes its tensor in place; else None.
    (The caller checks that the read comes after it.)"""
    if fn is None or type(fn.body) is not cst.IndentedBlock:
        return None
    uses = _Uses(name)
    fn.params.visit(uses)
    fn.body.visit(uses)
    if uses.bindings != 1 or uses.in_place:
        return None
    for stmt in fn.body.body:
        if type(stmt) is not cst.SimpleStatementLine:
            continue
        for small in stmt.body:
            if type(small) is cst.Assign and len(small.targets) == 1 and type(small.targets[0].target) is cst.Name \
                    and small.targets[0].target.value == name:
                return small.value
            if type(small) is cst.AnnAssign and small.value is not None and type(small.target) is cst.Name \
                    and small.target.value == name:
                return small.value
    return None
