"""Logs a `torch.where` condition keeps finite: `torch.where(p > 0, p * p.log(), 0)` selects the
log only where its argument is positive, so its value never reaches -inf (its gradient still
does: numerics_sites.check_where reports that hazard on its own)."""

from __future__ import annotations

from typing import Callable

import libcst as cst

_LOGS = frozenset({"log", "log2", "log10"})


def positive_under(cond: cst.BaseExpression, code: Callable[[cst.CSTNode], str]) -> frozenset[str]:
    """The expressions (as written) that `cond` keeps above 0 where it holds: `x > 0`, `x > eps`,
    `x >= 1e-8`, `x != 0` (of a probability: never negative), `0 < x`, and either side of an
    `&`/`and` of such comparisons."""
    if type(cond) is cst.BinaryOperation and type(cond.operator) is cst.BitAnd:
        return positive_under(cond.left, code) | positive_under(cond.right, code)
    if type(cond) is cst.BooleanOperation and type(cond.operator) is cst.And:
        return positive_under(cond.left, code) | positive_under(cond.right, code)
    if type(cond) is not cst.Comparison or len(cond.comparisons) != 1:
        return frozenset()
    target = cond.comparisons[0]
    left, op, right = cond.left, type(target.operator), target.comparator
    if op in (cst.LessThan, cst.LessThanEqual):  # `0 < x` is `x > 0`
        left, right = right, left
        op = cst.GreaterThan if op is cst.LessThan else cst.GreaterThanEqual
    bound = _number(right)
    if bound is None and type(right) is cst.Name and "eps" in right.value.lower():
        bound = 1e-300  # (an eps setting: positive)
    if bound is None:
        return frozenset()
    if (op is cst.GreaterThan and bound >= 0) or (op is cst.GreaterThanEqual and bound > 0) or \
            (op is cst.NotEqual and bound == 0):
        return frozenset({code(left)})
    return frozenset()


def logs_of(branch: cst.BaseExpression, guarded: frozenset[str],
            code: Callable[[cst.CSTNode], str]) -> list[cst.Call]:
    """The log calls in a branch's arithmetic (`p * p.log()`, `-torch.log(p)`) whose argument is
    one of the guarded expressions."""
    out: list[cst.Call] = []
    stack = [branch]
    while stack:
        node = stack.pop()
        if type(node) is cst.BinaryOperation:
            stack.extend((node.left, node.right))
        elif type(node) is cst.UnaryOperation:
            stack.append(node.expression)
        elif type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value in _LOGS:
            if not node.args and code(node.func.value) in guarded:  # p.log()
                out.append(node)
            elif len(node.args) == 1 and code(node.args[0].value) in guarded:  # torch.log(p)
                out.append(node)
    return out


def _number(node: cst.BaseExpression) -> float | None:
    if type(node) in (cst.Integer, cst.Float):
        return float(node.evaluated_value)
    return None
