"""What forward's operators, reductions, torch's function forms of them and `isinstance` tests do
to the tensors of a path: the arithmetic half of the forward interpreter (source/forward.py, whose
ForwardInterpreter takes these methods from ForwardOps; they call back its `ev`, `attention` and
`weight_layer`)."""

from __future__ import annotations

from typing import Any

import libcst as cst

from gradlint.model.ir import Opaque, Passthrough
from gradlint.source import joins as J
from gradlint.source.budget import MAX_ITEMS, Exhausted
from gradlint.source.construct import _NOT_HANDLED
from gradlint.source.engine.values import UNKNOWN, HeldTensor, ListVal, PathVal, Sym, held_tensor
from gradlint.source.engine.calls import arg as _arg_value
from gradlint.source.engine.values import is_number as _num
from gradlint.source.joins import _add, _propagated


class ForwardOps:
    """Operators and tensor functions of forward (a mixin of ForwardInterpreter)."""

    def reduction(self, x: PathVal, method: str, dims: list | None = None) -> PathVal:
        """`x.mean(dim)`, `x.sum(dim)` and the like over a tensor of forward (dims: the arguments
        that say over which dimensions, evaluated). Average or max pooling written as a reduction
        is a pooling layer's passthrough; a sum is linear too, but its scale grows with how many
        parts it adds and how alike they are (from sqrt(n) to n), which the IR does not know: the
        scale after it is unknown (`scale:?`), the chain ends there, and the layers on either side
        stay layers of the network. A sum or mean over the dimension a `torch.stack` added is the
        sum of the stacked tensors (stacked_sum)."""
        if type(x.parts) is Stacked and method in ("sum", "mean") and dims is not None and len(dims) == 1 \
                and dims[0] == 0 and not isinstance(dims[0], bool):
            return self.stacked_sum(x.parts, method == "mean")
        if method in _SUMS:
            return PathVal(x.root, x.nodes + (Passthrough("", "scale:?"),))
        return PathVal(x.root, x.nodes + (Passthrough("", method),))

    def tensor_function(self, call: cst.Call, quals: frozenset[str]) -> Any:
        """torch's function forms of tensor methods and operators (`torch.sum(x, dim=1)`,
        `torch.mul(identity, x)`), read as their method and operator forms (`x.sum(1)`,
        `identity * x`) are. Anything else they may be given (`torch.add(a, b, alpha=2)`,
        `torch.div(a, b, rounding_mode="floor")`, `out=`) leaves the call opaque."""
        what = next(TENSOR_FUNCTIONS[q] for q in sorted(quals) if q in TENSOR_FUNCTIONS)
        pos = [a.value for a in call.args if a.keyword is None and not a.star]
        if any(a.star for a in call.args) or not pos:
            return _NOT_HANDLED
        if what in REDUCTIONS:
            if any(a.keyword is not None and a.keyword.value not in _REDUCTION_KEYWORDS for a in call.args):
                return _NOT_HANDLED
            x = self.ev(pos[0])
            dims = [self.ev(e) for e in pos[1:2]] + [self.ev(a.value) for a in call.args if a.keyword is not None
                                                     and a.keyword.value == "dim"]
            if not isinstance(x, PathVal) or any(isinstance(self.ev(e), PathVal) for e in pos[1:]):
                return _NOT_HANDLED
            return self.reduction(x, what, dims)
        if len(pos) != 2 or len(call.args) != 2:
            return _NOT_HANDLED
        got = self.arith(self.ev(pos[0]), self.ev(pos[1]), _OPERATORS[what](), pos[0], pos[1])
        return UNKNOWN if got is _NOT_HANDLED else got

    def stacked(self, call: cst.Call, joined: Any) -> Any:
        """`torch.stack([a, b, ...])` (its result `joined`, the concatenation join() reads): along
        dimension 0 (the default) it also carries the stacked tensors (Stacked), which a sum or a
        mean over that dimension (reduction), an index (`s[0]`) or an unpacking take back."""
        dim = _arg_value(call, 1, "dim")
        seq = self.ev(call.args[0].value) if call.args and call.args[0].keyword is None and not call.args[0].star else None
        if not isinstance(joined, PathVal) or not isinstance(seq, ListVal) or not seq.items or any(
                not isinstance(v, PathVal) for v in seq.items) or (dim is not None and self.ev(dim) != 0) \
                or len(call.args) > 2 or any(a.keyword is not None and a.keyword.value != "dim" for a in call.args):
            return joined
        return PathVal(joined.root, joined.nodes, parts=Stacked(seq.items))

    def stacked_sum(self, parts: tuple, mean: bool) -> PathVal:
        """`torch.stack([a, b]).sum(0)` is `a + b` (joins._add, a sum of branches); `.mean(0)`
        that sum over their number."""
        out = parts[0]
        for p in parts[1:]:
            out = _add(out, p) if out.root == p.root else PathVal(out.root, out.nodes + (Opaque("", "sum of different inputs"),))
        if mean and len(parts) > 1:
            out = PathVal(out.root, out.nodes + (Passthrough("", f"scale:{1 / len(parts)}"),))
        return out

    def addcmul(self, call: cst.Call) -> Any:
        """`torch.addcmul(input, t1, t2, value=v)`, `input.addcmul(t1, t2)`: input + v * t1 * t2,
        read as those operators are (`torch.addcmul(self.beta, self.alpha, x)`: ResMLP's affine,
        a scale by alpha and a bias). Anything else it is given (`out=`) leaves it unread."""
        func = call.func
        method = type(func) is cst.Attribute and not self.fm.qual(func)
        operands = ([func.value] if method else []) + [a.value for a in call.args if a.keyword is None and not a.star]
        value = next((a.value for a in call.args if a.keyword is not None and a.keyword.value == "value"), None)
        if len(operands) != 3 or len(call.args) != 3 - method + (value is not None) or any(a.star for a in call.args):
            return _NOT_HANDLED
        x, t1, t2 = (self.ev(e) for e in operands)
        prod = self.arith(t1, t2, cst.Multiply(), operands[1], operands[2])
        if value is not None and isinstance(prod, PathVal):
            prod = self.arith(prod, self.ev(value), cst.Multiply(), operands[1], value)
        if prod is _NOT_HANDLED:
            prod = UNKNOWN  # a product of constants: a bias beside the input
        got = self.arith(x, prod, cst.Add(), operands[0], operands[1])
        return UNKNOWN if got is _NOT_HANDLED else got

    def method_factor(self, x: PathVal, method: str, call: cst.Call) -> PathVal:
        """`x.mul(c)`, `x.mul_(self.gamma.reshape(1, -1, 1, 1))`, `x.div(c)`: the operator's
        factor (`x * c`, arith); a call with other arguments (`rounding_mode=`) or none (a tensor
        passed as a keyword) leaves the scale unknown."""
        args = [a for a in call.args if a.keyword is None and not a.star]
        if len(args) != 1 or len(call.args) != 1:
            return PathVal(x.root, x.nodes + (Passthrough("", "scale:?"),))
        op = cst.Multiply() if method.startswith("mul") else cst.Divide()
        got = self.arith(x, self.ev(args[0].value), op, call.func, args[0].value)
        return got if isinstance(got, PathVal) else PathVal(x.root, x.nodes + (Passthrough("", "scale:?"),))

    def product(self, a: PathVal, b: PathVal, op: Any) -> PathVal:
        """a * b or a / b of two tensors: a gate when both come from one input (see
        gradlint.source.joins); of two inputs, or another operator (`a ** b`, `a % b`), opaque."""
        if a.root == b.root and type(op) in (cst.Multiply, cst.Divide, cst.MultiplyAssign, cst.DivideAssign):
            return PathVal(a.root, J.product(a.nodes, b.nodes))
        return PathVal(a.root, J.common_prefix(a.nodes, b.nodes) + (Opaque("", "product of branches"),))

    def binop(self, e: cst.BinaryOperation) -> Any:
        a, b = self.ev(e.left), self.ev(e.right)
        got = self.arith(a, b, e.operator, e.left, e.right)
        return self.fm.eval(e, self._numeric_env()) if got is _NOT_HANDLED else got

    def arith(self, a: Any, b: Any, op: Any, left: cst.BaseExpression, right: cst.BaseExpression) -> Any:
        """`a <op> b` of the values a and b (written `left` and `right`), when either is a list or
        a tensor of forward; _NOT_HANDLED when neither is (a number: the caller folds it)."""
        if isinstance(a, ListVal) and isinstance(b, ListVal) and type(op) is cst.Add:
            # `[x] + [pool(x) for pool in self.poolings]`
            if len(a.items) + len(b.items) > MAX_ITEMS:
                raise Exhausted("items")
            return ListVal(a.items + b.items)
        if isinstance(a, PathVal) and isinstance(b, PathVal):
            if type(op) is cst.Add:
                return _add(a, b)
            if type(op) is cst.Subtract:
                return _add(a, b)
            if type(op) is cst.MatrixMultiply:
                propagated = _propagated(a, b)
                if propagated is not None:
                    return propagated
                # A product of the input with itself (q @ k^T, then weights @ v): attention.
                return self.attention([a, b], "matmul")
            return self.product(a, b, op)
        if isinstance(a, PathVal) or isinstance(b, PathVal):
            p = a if isinstance(a, PathVal) else b
            other = b if p is a else a
            if type(op) is cst.Power:
                # `relu(x) ** 2` (squared ReLU, StarReLU): the derivative scales with the input,
                # so the scale after it is not the scale before
                return PathVal(p.root, p.nodes + (Opaque("", "power of a tensor"),))
            if type(op) is cst.MatrixMultiply and held_tensor(other):
                # `h @ self.W` with W an nn.Parameter (a GCN's layer): a layer, not a passthrough
                return self.weight_layer(p, right if p is a else left, "linear", right=p is a)
            if type(op) is cst.Divide and p is b:
                # `c / x`: a reciprocal, whose derivative (-c / x^2) depends on the input: no scale
                return PathVal(p.root, p.nodes + (Opaque("", "division by a tensor"),))
            if type(op) in (cst.Multiply, cst.Divide) and held_tensor(other):
                # `x * self.gamma` (LayerScale: gamma = nn.Parameter(init_values * torch.ones(dim))):
                # at initialisation an elementwise factor, the forward's and the gradient's
                factor = self.held_factor(other)
                if factor is not None and type(op) is cst.Divide:
                    factor = 1 / factor if factor else None
                return PathVal(p.root, p.nodes + (Passthrough("", f"scale:{factor}" if factor is not None else "scale:?"),))
            if type(op) in (cst.Multiply, cst.Divide) and (_num(other) or isinstance(other, Sym)
                                                              or other is UNKNOWN):
                # Recorded so that a scaled skip path (DeepNorm's x * alpha + f(x)) is visible; a
                # factor we cannot read (`F.linear(x, W) / math.sqrt(self.d_in)`: NTK, muP) leaves
                # the scale unknown rather than dropped
                factor = (other if type(op) is cst.Multiply else 1 / other) if _num(other) and other else None
                return PathVal(p.root, p.nodes + (Passthrough("", f"scale:{factor}" if factor is not None else "scale:?"),))
            return p  # adding a bias or a positional table leaves the gradient's scale alone
        return _NOT_HANDLED

    def held_factor(self, held: Any) -> float | None:
        """The one value every element of a trained tensor made in __init__ holds when forward
        first runs (a LayerScale's gamma, filled with `init_values` by its factory or by
        `nn.init.constant_`), read from its init as forward's raw weights are (`_held_init`); None
        when it is not one value (a random fill, an init that may reach it later), not known, or
        the tensor is no parameter (a buffer may be filled later)."""
        if type(held) is not HeldTensor or not held.param:
            return None
        attr = next((k for k, v in self.inst.attrs.items() if v is held), None)
        if attr is None:
            return None
        spec = self._held_init(held, attr)
        if spec.scheme in ("ones", "zeros"):
            return 1.0 if spec.scheme == "ones" else 0.0
        value = spec.get("val") if spec.scheme == "constant" else None
        return float(value) if _num(value) else None

    def kind_test(self, test: cst.BaseExpression) -> bool | None:
        """`isinstance(x, torch.Tensor)`, `not isinstance(x, (list, tuple))` on a value forward
        follows (a block that takes a tensor or a list of its features: DenseNet's layers): a
        tensor of the path is a Tensor and no list; a list or tuple of them (ListVal, which does
        not say which of the two it is) is both a list and a tuple to this test only when the
        types name both. None for anything else (a type of the project, a value not followed)."""
        if type(test) is cst.UnaryOperation and type(test.operator) is cst.Not:
            inner = self.kind_test(test.expression)
            return None if inner is None else not inner
        if type(test) is cst.BooleanOperation:
            # `not isinstance(x, list) and not isinstance(x, tuple)`: decided when a side that
            # settles it is, or both are
            short = type(test.operator) is cst.Or
            left = self.kind_test(test.left)
            if left is short:
                return short
            right = self.kind_test(test.right)
            if right is short:
                return short
            return None if left is None or right is None else right
        if type(test) is not cst.Call or type(test.func) is not cst.Name or test.func.value != "isinstance" \
                or "isinstance" in self.env or len(test.args) != 2 or any(a.keyword or a.star for a in test.args):
            return None
        value = self.ev(test.args[0].value)
        if not isinstance(value, (PathVal, ListVal)):
            return None
        spec = test.args[1].value
        parts = [el.value for el in spec.elements] if type(spec) is cst.Tuple else [spec]
        kinds = set()
        for part in parts:
            if "torch.Tensor" in self.fm.qual(part):
                kinds.add("tensor")
            elif type(part) is cst.Name and part.value in _BUILTIN_KINDS and part.value not in self.env \
                    and not self.fm.qual(part):
                kinds.add(part.value)
            else:
                return None  # a type this test cannot place the value in or out of
        if isinstance(value, PathVal):
            return "tensor" in kinds
        if {"list", "tuple"} <= kinds:
            return True
        return False if not kinds & {"list", "tuple"} else None


class Stacked(tuple):
    """The tensors `torch.stack` stacked along dimension 0, as the parts of its result
    (engine.values.PathVal.parts): `s[i]` is the i-th, a sum over that dimension their sum."""


# Built-in types `isinstance` may test a value of forward against (kind_test).
_BUILTIN_KINDS = frozenset({"list", "tuple", "dict", "int", "float", "bool", "str"})
# Reductions of a tensor method (`x.mean(1)`) or function (`torch.mean(x, 1)`) read as such (reduction).
_SUMS = frozenset({"sum", "nansum"})
REDUCTIONS = frozenset({"mean", "nanmean", "amax", "logsumexp"}) | _SUMS
_REDUCTION_KEYWORDS = frozenset({"dim", "keepdim", "dtype"})
# Operators with a torch function form: the operator node `arith` reads for it.
_OPERATORS = {"add": cst.Add, "sub": cst.Subtract, "mul": cst.Multiply, "div": cst.Divide}
# torch's function forms of tensor methods and operators (tensor_function): what each reads as.
TENSOR_FUNCTIONS = {**{"torch." + r: r for r in REDUCTIONS},
                     "torch.add": "add", "torch.sub": "sub", "torch.subtract": "sub", "torch.mul": "mul",
                     "torch.multiply": "mul", "torch.div": "div", "torch.divide": "div", "torch.true_divide": "div"}
