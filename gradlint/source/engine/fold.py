"""Number folding over libcst expressions: literals, arithmetic within budget, infinity, named constants.

One folder for every interpreter: what it cannot compute exactly and cheaply (an unknown name,
an integer past 2**64, a division by zero) is None, and None never becomes a finding.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import libcst as cst

from gradlint.source.budget import MAX_EXPR_DEPTH, bounded, fold
from gradlint.source.engine.values import float_literal, int_literal, is_number, str_literal

OPERATORS = {cst.Add: "+", cst.Subtract: "-", cst.Multiply: "*", cst.Divide: "/", cst.FloorDivide: "//",
             cst.Power: "**", cst.Modulo: "%"}
# Spellings of +infinity in a string: float("inf"), and norm_type="inf", which torch reads as one.
_INFINITY = ("inf", "+inf", "infinity", "+infinity")
# Attributes of numeric modules that are numbers, as written (`math.pi`, `np.inf`).
_MODULE_CONSTANTS = {
    "math": {"pi": math.pi, "e": math.e, "inf": math.inf},
    "torch": {"inf": math.inf}, "np": {"inf": math.inf}, "numpy": {"inf": math.inf},
}


def constant(node: cst.BaseExpression | None, env: Mapping[str, Any] | None = None, depth: int = 0) -> int | float | None:
    """The number an expression stands for, exactly as Python computes it (an int stays an int),
    or None: not a number, not known, or over the budget (source/budget.py). `env` gives the
    values of names (a module's constants); without it a name is unknown."""
    if node is None or depth > MAX_EXPR_DEPTH:
        return None
    if type(node) is cst.Integer:
        try:
            return bounded(int_literal(node))
        except ValueError:  # more digits than Python converts (int_max_str_digits)
            return None
    if type(node) is cst.Float:
        return bounded(float_literal(node))
    if type(node) is cst.UnaryOperation:
        if type(node.operator) not in (cst.Minus, cst.Plus):
            return None
        return unary(type(node.operator), constant(node.expression, env, depth + 1))
    if type(node) is cst.BinaryOperation:
        if type(node.operator) not in OPERATORS:
            return None
        left = constant(node.left, env, depth + 1)
        right = constant(node.right, env, depth + 1) if left is not None else None
        return binary(type(node.operator), left, right) if right is not None else None
    if type(node) is cst.Name:
        value = env.get(node.value) if env is not None else None
        return bounded(value) if is_number(value) else None
    if type(node) is cst.Attribute:
        if type(node.value) is cst.Name:
            return _MODULE_CONSTANTS.get(node.value.value, {}).get(node.attr.value)
        return None
    if type(node) is cst.Call and type(node.func) is cst.Name and node.func.value == "float" \
            and len(node.args) == 1 and node.args[0].keyword is None and not node.args[0].star:
        return as_float(constant(node.args[0].value, env, depth + 1))
    if type(node) is cst.SimpleString:
        try:
            value = str_literal(node)
        except Exception:  # libcst's literal_eval: an escape Python refuses
            return None
        if is_infinity(value):
            return math.inf
    return None


# One step of `constant` each, for an evaluator that holds its operands' values already (the
# numerics evaluator carries them on its tensors: engine/tensors.V.value).
def binary(operator: type, left: Any, right: Any) -> int | float | None:
    """`left op right` for a libcst operator class (`cst.Add`...) and two numbers, as `constant`
    folds it; None for another operator, an operand that is no number, or over the budget."""
    op = OPERATORS.get(operator)
    if op is None or not is_number(left) or not is_number(right):
        return None
    return fold(op, left, right)


def unary(operator: type, value: Any) -> int | float | None:
    """`-value` or `+value` for a number; None otherwise (`not`, `~`, anything unknown)."""
    if not is_number(value) or operator not in (cst.Minus, cst.Plus):
        return None
    return -value if operator is cst.Minus else value


def is_infinity(value: Any) -> bool:
    """A string torch and Python read as +infinity (`float("inf")`, `norm_type="inf"`)."""
    return isinstance(value, str) and value.strip().lower() in _INFINITY


def as_float(value: Any) -> float | None:
    """`float(value)` for a number or a spelling of infinity; None for anything else."""
    if is_number(value):
        return float(value)
    return math.inf if is_infinity(value) else None


def number(node: cst.BaseExpression | None, env: Mapping[str, Any] | None = None) -> float | None:
    """`constant(node, env)` as a float (what the numerics and training-loop facts compare)."""
    value = constant(node, env)
    return float(value) if value is not None else None
