"""What an expression, as written, says of the numbers it holds: never negative (`x.abs()`,
`F.relu(x)`, `x.clamp(min=0)`, a norm), a literal's number, and a bound written as a setting
(`th.clip(d, -self.threshold, self.threshold)`)."""

from __future__ import annotations

import libcst as cst

from gradlint.source.engine.tensors import V, number_of
from gradlint.source.names import dotted


def is_abs(node: cst.BaseExpression) -> bool:
    """`abs(x)`, `torch.abs(x)` or `x.abs()`: a value that is never negative."""
    if type(node) is not cst.Call:
        return False
    func = node.func
    return ((type(func) is cst.Name and func.value == "abs")
            or (type(func) is cst.Attribute and func.attr.value == "abs"))


# torch functions (and tensor methods) whose value is never negative: their negation's exp cannot
# overflow (`exp(-F.softplus(x))`, a softmin of distances `exp(-torch.cdist(a, b))`); a root is
# never negative either (NaN below 0: a distance `sqrt((d ** 2).sum(-1))`).
_NEVER_NEGATIVE = frozenset({"softplus", "norm", "vector_norm", "matrix_norm", "cdist", "pdist", "sigmoid", "softmax",
                             "exp", "square", "sqrt"})


def never_negative(node: cst.BaseExpression) -> bool:
    """`abs(x)`, `relu(x)`, `x.clamp(min=0)`, `torch.clamp(x, 0)`, `x.clamp_min(0.5)`: written so
    that it is never negative (its negation, the stable sigmoid's `exp(-x.clamp(min=0))`, cannot
    overflow in exp)."""
    if is_abs(node):
        return True
    if type(node) is not cst.Call:
        return False
    func = node.func
    name = func.attr.value if type(func) is cst.Attribute else func.value if type(func) is cst.Name else ""
    if name in _NEVER_NEGATIVE:
        # `F.softplus(x)`, `torch.norm(d)`, `x.norm(dim=1)`, `torch.cdist(a, b)`, `x.exp()`; not
        # `self.norm(x)` (a LayerNorm module) nor any call of another attribute of self
        # `(a - b).norm(dim=-1)`: arithmetic makes a tensor, whose method it is
        if type(func) is cst.Attribute and type(func.value) in (cst.BinaryOperation, cst.UnaryOperation):
            return True
        owner = dotted(func.value) if type(func) is cst.Attribute else ""
        return owner is not None and owner != "self" and not owner.startswith("self.")
    if name == "relu":
        if type(func) is cst.Name:
            return True  # `relu(h)` imported from torch.nn.functional
        # `torch.relu(h)`, `F.relu(h)`, `torch.nn.functional.relu(h)`, `h.relu()`; not
        # `self.relu(h)`, which may be a LeakyReLU module
        owner = dotted(func.value) or ""
        return not node.args or owner in ("torch", "F", "fn") or owner.endswith("functional")
    # the tensor is the receiver of a method, the first argument of torch's function
    method = type(func) is cst.Attribute and not (type(func.value) is cst.Name and func.value.value == "torch")
    args = [a for a in node.args if a.keyword is None]
    bound = next((a.value for a in node.args if a.keyword is not None and a.keyword.value == "min"), None)
    if bound is None and name in ("clamp", "clip", "clamp_min"):
        at = 0 if method else 1
        bound = args[at].value if len(args) > at else None
    if name not in ("clamp", "clip", "clamp_min") or bound is None:
        return False
    lo = _literal(bound)
    return lo is not None and lo >= 0


def _literal(node: cst.BaseExpression) -> float | None:
    """The number a literal (or a negated one) is written as; None for anything else."""
    if type(node) is cst.UnaryOperation and type(node.operator) is cst.Minus:
        inner = _literal(node.expression)
        return -inner if inner is not None else None
    if type(node) in (cst.Integer, cst.Float):
        try:
            return float(node.evaluated_value)
        except (ValueError, OverflowError):
            return None
    return None


def setting_bound(node: cst.BaseExpression, v: V) -> bool:
    """A clamp's bound written as a setting, or its negation (`self.threshold`, `-max_logit`,
    `args.clip`): a name or attribute that holds no number known here and is no tensor, learned
    parameter, computed value or module (a config value, an attribute set from one, a function's
    parameter)."""
    while type(node) is cst.UnaryOperation and type(node.operator) is cst.Minus:
        node = node.expression
    if type(node) not in (cst.Name, cst.Attribute):
        return False
    return number_of(v) is None and not (v.tensor or v.params or v.computed or v.module)
