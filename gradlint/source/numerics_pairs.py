"""Pairwise distances of a tensor with itself, as the numerics walk reads them: values that hold
exact zeros whatever the tensor holds (`V.pairs`).

`e.unsqueeze(0) - e.unsqueeze(1)` (or `e[:, None] - e[None]`) compares every row with every row,
itself included: its diagonal is exactly 0, a learned layer's output or not. So is the squared
distance written by expansion, `sq.unsqueeze(0) - 2 * e @ e.t() + sq.unsqueeze(1)` with `sq` the
rows' sums of squares (0 up to rounding, which a `clamp(min=0)` makes exactly 0). The root of
either has an infinite derivative there, and the gradient of the whole batch is NaN (measured in
torch 2.13: both forms, 5 random rows, every entry of the gradient NaN). Pure functions of the
syntax: the walk (numerics_eval, numerics_ops) decides what the operands are.
"""

from __future__ import annotations

import libcst as cst

# Methods that give a tensor back with a dimension of size 1 added or moved: `S.unsqueeze(1)`,
# `S.view(-1, 1)`, `S.t()` (a column of a row of sums: `sq + sq.t()`).
_BROADCASTS = frozenset({"unsqueeze", "view", "reshape", "t", "expand", "expand_as", "transpose", "permute"})
# A matrix product of a tensor with its own transpose: `e @ e.t()`, `torch.mm(e, e.T)`.
_PRODUCTS = frozenset({"mm", "matmul", "bmm"})
_TRANSPOSES = frozenset({"t", "transpose", "permute"})


def broadcast(node: cst.BaseExpression, code) -> tuple[cst.BaseExpression, str] | None:
    """(the tensor, how it is broadcast, as text) for `X.unsqueeze(k)`, `torch.unsqueeze(X, k)`
    and `X[:, None]`-style indexing with a None; None for anything else."""
    if type(node) is cst.Subscript:
        # (the structure first: most subscripts of a walk hold no None, and their text is not made)
        if not any(type(el.slice) is cst.Index and type(el.slice.value) is cst.Name and el.slice.value.value == "None"
                   for el in node.slice):
            return None
        return node.value, ",".join(code(el.slice.value) if type(el.slice) is cst.Index else ":" for el in node.slice)
    if type(node) is not cst.Call or any(a.star for a in node.args):
        return None
    func = node.func
    if type(func) is cst.Attribute and func.attr.value == "unsqueeze" and len(node.args) == 1:
        return func.value, code(node.args[0].value)
    if type(func) is cst.Attribute and func.attr.value == "unsqueeze" and type(func.value) is cst.Name \
            and func.value.value == "torch" and len(node.args) == 2:
        return node.args[0].value, code(node.args[1].value)
    return None


# How `X[:, None] - X` broadcasts one side only: a new second axis, so that the rows of X meet
# every row (with X's own number of axes unknown, a None further right may pair features).
_SECOND_AXIS = frozenset({"1", ":,None", ":,None,:"})


def self_difference(left: cst.BaseExpression, right: cst.BaseExpression, code) -> bool:
    """`X.unsqueeze(0) - X.unsqueeze(1)`, `X[:, None] - X[None]`: one tensor broadcast two ways;
    or one way against itself, `X[:, None] - X`. Not with negative dimensions
    (`s.unsqueeze(-1) - s.unsqueeze(-2)`): the pairs are then the last axes, and a sum over the
    last one (pair_reduction) runs over pairs, not features."""
    a, b = broadcast(left, code), broadcast(right, code)
    if (a is None) != (b is None):
        got, plain = (a, right) if a is not None else (b, left)
        return got[1] in _SECOND_AXIS and code(got[0]) == code(plain)
    return a is not None and b is not None and code(a[0]) == code(b[0]) and a[1] != b[1] and \
        not (a[1].startswith("-") or b[1].startswith("-"))


def _terms(node: cst.BaseExpression) -> list[tuple[int, cst.BaseExpression]] | None:
    """The signed terms of a chain of + and - with at most three terms; None for a longer chain
    (walked without recursion, and given up early: the walk asks this of every + and - of a
    900-term sum)."""
    out: list = []
    stack = [(node, 1)]
    seen = 0
    while stack:
        part, sign = stack.pop()
        seen += 1
        if seen > 8:
            return None
        kind = type(part)
        if kind is cst.BinaryOperation and type(part.operator) in (cst.Add, cst.Subtract):
            stack.append((part.right, sign if type(part.operator) is cst.Add else -sign))
            stack.append((part.left, sign))
        elif kind is cst.UnaryOperation and type(part.operator) is cst.Minus:
            stack.append((part.expression, -sign))
        else:
            out.append((-sign if _negated(part) else sign, part))
            if len(out) > 3:
                return None
    return out


def _number(node: cst.BaseExpression) -> bool:
    return type(node) in (cst.Integer, cst.Float) or (
        type(node) is cst.UnaryOperation and type(node.operator) is cst.Minus and type(node.expression) in (cst.Integer, cst.Float))


def _negated(node: cst.BaseExpression) -> bool:
    """A product whose first factor is a negative number: `-2 * e @ e.t()`."""
    for _ in range(4):  # (a product of a few factors: `-2 * e @ e.t()` is two deep)
        if not (type(node) is cst.BinaryOperation and type(node.operator) in (cst.Multiply, cst.MatrixMultiply)):
            break
        node = node.left
    return type(node) is cst.UnaryOperation and type(node.operator) is cst.Minus and _number(node.expression)


def _reshaped_base(node: cst.BaseExpression, code) -> cst.BaseExpression | None:
    """The tensor S of `S`, `S.t()`, `S.T`, `S.unsqueeze(0)`, `S.view(1, -1)`, `S[:, None]`: a
    tensor and its broadcast forms; None for anything else."""
    got = broadcast(node, code)
    if got is not None:
        return got[0]
    if type(node) is cst.Attribute and node.attr.value in ("T", "mT"):
        return node.value
    if type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value in _BROADCASTS:
        if type(node.func.value) is cst.Name and node.func.value.value == "torch":
            return None  # `torch.t(S)`, `torch.transpose(S, 0, 1)`: not read here
        return node.func.value
    return node if type(node) is cst.Name else None


def _transposed(node: cst.BaseExpression, code) -> str | None:
    """The text of X for `X.t()`, `X.T`, `X.mT`, `X.transpose(a, b)`, `X.permute(...)`."""
    if type(node) is cst.Attribute and node.attr.value in ("T", "mT"):
        return code(node.value)
    if type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value in _TRANSPOSES:
        return code(node.func.value)
    return None


def _unscaled(node: cst.BaseExpression) -> cst.BaseExpression:
    """`X` of `2 * X` or `X * 2.0`; the node itself otherwise."""
    if type(node) is cst.BinaryOperation and type(node.operator) is cst.Multiply:
        if _number(node.left):
            return node.right
        if _number(node.right):
            return node.left
    return node


def self_gram(node: cst.BaseExpression, code, depth: int = 0) -> bool:
    """`X @ X.t()`, `torch.mm(X, X.T)`, `X.matmul(X.transpose(0, 1))`, times a number."""
    if type(node) is cst.BinaryOperation and type(node.operator) is cst.Multiply:
        return depth < 2 and (self_gram(node.left, code, depth + 1) or self_gram(node.right, code, depth + 1))
    if type(node) is cst.BinaryOperation and type(node.operator) is cst.MatrixMultiply:
        # (`2 * e @ e.t()` is `(2 * e) @ e.t()`: * and @ bind alike, from the left)
        return _transposed(node.right, code) == code(_unscaled(node.left))
    if type(node) is not cst.Call or any(a.star or a.keyword for a in node.args):
        return False
    func = node.func
    if type(func) is not cst.Attribute or func.attr.value not in _PRODUCTS:
        return False
    if type(func.value) is cst.Name and func.value.value == "torch" and len(node.args) == 2:
        return _transposed(node.args[1].value, code) == code(node.args[0].value)
    return len(node.args) == 1 and _transposed(node.args[0].value, code) == code(func.value)


def gram_expansion(node: cst.BaseExpression, code, gram=lambda node: False) -> cst.BaseExpression | None:
    """For `S.unsqueeze(0) - 2 * X @ X.t() + S.unsqueeze(1)` (any order, `S + S.t()`,
    `S[:, None] + S[None, :]`): an expression of S, whose evaluation tells whether it is the rows'
    sums of squares; None when the chain is no such expansion. `gram(term)`: whether the
    negative term's value is such a product when its text does not say so (`2.0 * dot` after
    `dot = e @ e.t()`)."""
    terms = _terms(node)
    if terms is None or len(terms) != 3 or sum(1 for sign, _ in terms if sign < 0) != 1:
        return None
    negative = next(t for sign, t in terms if sign < 0)
    if not (self_gram(negative, code) or gram(negative)):
        return None
    (a, whole_a), (b, whole_b) = [(_reshaped_base(t, code), t) for sign, t in terms if sign > 0]
    if a is None or b is None or code(a) != code(b) or code(whole_a) == code(whole_b):
        return None
    return a


def pair_reduction(dims: list[cst.BaseExpression | None], number) -> bool:
    """A sum or mean over the feature dimension of pairwise differences (`.sum(-1)`, `.sum(dim=2)`)
    keeps their zeros; over all of them, or over the pairs (`.sum()`, `.sum(0)`), it need not."""
    if len(dims) != 1 or dims[0] is None:
        return False
    n = number(dims[0])
    return n is not None and n == int(n) and (n == -1 or n >= 2)
