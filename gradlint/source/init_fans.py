"""Initialisations written as arithmetic on the layer's own shape, read as the fan-based scheme they compute.

Code of the pre-`nn.init` era (torchvision's first ResNets, DenseNet and WideResNet ports) draws

    n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
    m.weight.data.normal_(0, math.sqrt(2. / n))          # He et al., fan-out: kaiming_normal_(mode='fan_out')

    stdv = 1. / math.sqrt(m.weight.size(1))
    m.weight.data.uniform_(-stdv, stdv)                  # torch < 0.4's own Linear default

The spread is not a number here: it depends on the layer the loop meets. It is one when it is
written as a product of the layer's dimensions: then the variance of the draw is c / fan for one
of torch's fans (fan_in = weight.size(1) * kernel, fan_out = weight.size(0) * kernel), which is
kaiming's draw with gain sqrt(c). Anything else (a sum of dimensions, `in_channels` of a
convolution whose groups are not known, a name bound twice, a layer type with no rule here) is
not read: the caller keeps the initialisation unknown.
"""

from __future__ import annotations

import math
from typing import Any, Callable, TYPE_CHECKING

import libcst as cst

from gradlint.source.engine.calls import arg as _arg_value
from gradlint.source.engine.values import AnyModule, Ctor, TensorRef
from gradlint.source.engine.values import is_number as _num
from gradlint.source.names import dotted

if TYPE_CHECKING:
    from gradlint.source.models import FileModel

_SQRT = frozenset({"math.sqrt", "numpy.sqrt"})

# A monomial c * prod(dim ** power): the dimensions by the names the layer gives them ("o", "i",
# "k0"... once mapped by _DIMS), powers as floats (a square root halves them).
Mono = tuple[float, dict]

_MAX_DEPTH = 24


def _dims(cls: str) -> tuple[dict[str, str], dict, dict] | None:
    """For a layer class: (attribute text -> dimension, fan_in, fan_out) as torch computes the
    fans (nn.init._calculate_fan_in_and_fan_out), or None for a class with no rule here.
    `in_channels` of a convolution is its own dimension: it is weight.size(1) only when groups is 1."""
    if cls == "Linear":
        names = {"in_features": "i", "out_features": "o", "weight.size(1)": "i", "weight.size(0)": "o"}
        return names, {"i": 1.0}, {"o": 1.0}
    if cls in ("Conv1d", "Conv2d", "Conv3d"):
        d = int(cls[4])
        names = {"out_channels": "o", "in_channels": "c_in", "weight.size(0)": "o", "weight.size(1)": "i"}
        for j in range(d):
            names[f"kernel_size[{j}]"] = f"k{j}"
            names[f"weight.size({2 + j})"] = f"k{j}"
        kernel = {f"k{j}": 1.0 for j in range(d)}
        return names, {"i": 1.0, **kernel}, {"o": 1.0, **kernel}
    return None


def _shape_text(e: cst.BaseExpression, module: str) -> str | None:
    """`m.kernel_size[0]`, `m.weight.data.size(1)`, `m.weight.shape[1]`, `m.weight.size()[1]`
    as 'kernel_size[0]', 'weight.size(1)': an attribute (or weight dimension) of `module`, or None."""
    index = None
    if type(e) is cst.Subscript and len(e.slice) == 1 and type(e.slice[0].slice) is cst.Index \
            and type(e.slice[0].slice.value) is cst.Integer:
        index, e = int(e.slice[0].slice.value.value), e.value
        if type(e) is cst.Call and not e.args:  # `m.weight.size()[1]`
            e = e.func
    elif type(e) is cst.Call and len(e.args) == 1 and type(e.args[0].value) is cst.Integer and not e.args[0].keyword:
        index, e = int(e.args[0].value.value), e.func
        if not (type(e) is cst.Attribute and e.attr.value == "size"):
            return None
    text = dotted(e)
    if text is None or not text.startswith(module + "."):
        return None
    attr = text[len(module) + 1:].replace(".data.", ".").replace(".data", "")
    if attr in ("weight.size", "weight.shape"):
        return None if index is None else f"weight.size({index})"
    if attr == "kernel_size":
        return None if index is None else f"kernel_size[{index}]"
    return attr if index is None else None


class _Reader:
    def __init__(self, module: str, names: dict[str, str], number: Callable[[cst.BaseExpression], float | None],
                 bound: Callable[[str], cst.BaseExpression | None], is_sqrt: Callable[[cst.BaseExpression], bool]):
        self.module, self.names, self.number, self.bound, self.is_sqrt = module, names, number, bound, is_sqrt
        self.depth = 0

    def read(self, e: cst.BaseExpression) -> Mono | None:
        self.depth += 1
        try:
            return None if self.depth > _MAX_DEPTH else self._read(e)
        finally:
            self.depth -= 1

    def _read(self, e: cst.BaseExpression) -> Mono | None:
        shape = _shape_text(e, self.module)
        if shape is not None:
            dim = self.names.get(shape)
            return None if dim is None else (1.0, {dim: 1.0})
        kind = type(e)
        if kind is cst.UnaryOperation and type(e.operator) in (cst.Minus, cst.Plus):
            inner = self.read(e.expression)
            if inner is None:
                return None
            return (-inner[0] if type(e.operator) is cst.Minus else inner[0], inner[1])
        if kind is cst.BinaryOperation:
            return self._binary(e)
        if kind is cst.Call and len(e.args) == 1 and not e.args[0].star and e.args[0].keyword is None:
            if self.is_sqrt(e.func):
                inner = self.read(e.args[0].value)
                if inner is None or inner[0] < 0:
                    return None
                return (math.sqrt(inner[0]), {k: p / 2 for k, p in inner[1].items()})
            if dotted(e.func) == "float":
                return self.read(e.args[0].value)
        value = self.number(e)
        if value is not None:
            return (float(value), {})
        if kind is cst.Name:
            # a local bound once in the function that runs (`n = m.kernel_size[0] * ...`)
            written = self.bound(e.value)
            return None if written is None else self.read(written)
        return None

    def _binary(self, e: cst.BinaryOperation) -> Mono | None:
        op = type(e.operator)
        left = self.read(e.left)
        if left is None:
            return None
        if op is cst.Power:
            exp = self.number(e.right)
            if exp is None or left[0] < 0 and exp != int(exp):
                return None
            return (left[0] ** exp, {k: p * exp for k, p in left[1].items()})
        right = self.read(e.right)
        if right is None:
            return None
        if op is cst.Multiply:
            return (left[0] * right[0], _combine(left[1], right[1], 1.0))
        if op is cst.Divide:
            if right[0] == 0:
                return None
            return (left[0] / right[0], _combine(left[1], right[1], -1.0))
        if op in (cst.Add, cst.Subtract) and not left[1] and not right[1]:
            return (left[0] + right[0] if op is cst.Add else left[0] - right[0], {})
        return None


def _combine(a: dict, b: dict, sign: float) -> dict:
    out = dict(a)
    for k, p in b.items():
        out[k] = out.get(k, 0.0) + sign * p
    return {k: p for k, p in out.items() if abs(p) > 1e-9}


def _gain_squared(variance: Mono, fan: dict) -> float | None:
    """c when variance * fan is the constant c (every dimension cancels)."""
    c, dims = variance
    return c if c > 0 and not _combine(dims, fan, 1.0) else None


def fan_scheme(method: str, args: dict[str, cst.BaseExpression], module: str, classes: tuple[str, ...],
               number: Callable[[cst.BaseExpression], float | None],
               bound: Callable[[str], cst.BaseExpression | None],
               is_sqrt: Callable[[cst.BaseExpression], bool]) -> tuple[str, tuple] | None:
    """(scheme, params) of `<module>.weight.data.normal_(mean, std)` / `.uniform_(a, b)` whose
    spread is arithmetic on the layer's shape, for a module that is one of `classes`: kaiming's
    normal or uniform draw with the mode whose fan the variance divides and the gain it implies
    (nonlinearity 'relu' for a gain of sqrt 2, else the gain itself). None when the arithmetic is
    not that, or reads differently for one of the classes.

    args: the call's arguments by parameter name ('mean'/'std', 'a'/'b'); number(e): e's value
    when the engine knows it as a number; bound(name): the one expression a local name is bound
    to in the running function, None when it is not bound exactly once there; is_sqrt(func):
    whether the callee is a square root (math.sqrt, numpy.sqrt)."""
    if not classes:
        return None
    found = None
    for cls in classes:
        table = _dims(cls)
        if table is None:
            return None
        names, fan_in, fan_out = table
        reader = _Reader(module, names, number, bound, is_sqrt)
        if method == "normal_":
            if "std" not in args or "mean" in args and number(args["mean"]) != 0.0:
                return None
            std = reader.read(args["std"])
            variance = None if std is None else (std[0] ** 2, {k: 2 * p for k, p in std[1].items()})
            scheme = "kaiming_normal"
        elif method == "uniform_":
            if "a" not in args or "b" not in args:
                return None
            a, b = reader.read(args["a"]), reader.read(args["b"])
            if a is None or b is None or a[1] != b[1] or not math.isclose(a[0], -b[0]) or b[0] <= 0:
                return None
            # U(-b, b): variance b^2 / 3
            variance = (b[0] ** 2 / 3.0, {k: 2 * p for k, p in b[1].items()})
            scheme = "kaiming_uniform"
        else:
            return None
        if variance is None:
            return None
        spec = None
        for mode, fan in (("fan_in", fan_in), ("fan_out", fan_out)):
            g2 = _gain_squared(variance, fan)
            if g2 is not None:
                gain = (("nonlinearity", "relu"),) if math.isclose(g2, 2.0, rel_tol=1e-6) else (("gain", math.sqrt(g2)),)
                spec = (scheme, tuple(sorted((("mode", mode),) + gain)))
                break
        if spec is None or found is not None and spec != found:
            return None
        found = spec
    return found


class _Bindings(cst.CSTVisitor):
    """The places a function binds `name`: assignments, loop and `with` targets, parameters,
    imports, walrus, nested definitions; `global`/`nonlocal` count as many."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.values: list[cst.BaseExpression | None] = []

    def _targets(self, target: cst.BaseExpression, value: cst.BaseExpression | None) -> None:
        if type(target) is cst.Name:
            if target.value == self.name:
                self.values.append(value)
        elif type(target) in (cst.Tuple, cst.List):
            for el in target.elements:
                self._targets(el.value, None)
        elif type(target) is cst.StarredElement:
            self._targets(target.value, None)

    def visit_Assign(self, node: cst.Assign) -> None:
        for t in node.targets:
            self._targets(t.target, node.value if len(node.targets) == 1 else None)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._targets(node.target, None)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._targets(node.target, None)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self._targets(node.target, None)

    def visit_For(self, node: cst.For) -> None:
        self._targets(node.target, None)

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if node.asname is not None:
            self._targets(node.asname.name, None)

    def visit_Param(self, node: cst.Param) -> None:
        self._targets(node.name, None)

    def visit_ImportAlias(self, node: cst.ImportAlias) -> None:
        bound = node.asname.name if node.asname is not None else node.name
        if type(bound) is cst.Name:
            self._targets(bound, None)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._targets(node.name, None)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._targets(node.name, None)

    def visit_Global(self, node: cst.Global) -> None:
        for n in node.names:
            self._targets(n.name, None)
            self._targets(n.name, None)

    def visit_Nonlocal(self, node: cst.Nonlocal) -> None:
        for n in node.names:
            self._targets(n.name, None)
            self._targets(n.name, None)


def bound_once(fn: cst.FunctionDef | None, name: str) -> cst.BaseExpression | None:
    """The value expression of the one plain assignment `name = value` of function `fn`, None when
    the name is bound there in any other way or more than once (a branch, a loop, a parameter)."""
    if fn is None:
        return None
    seen = _Bindings(name)
    fn.params.visit(seen)
    fn.body.visit(seen)
    return seen.values[0] if len(seen.values) == 1 else None


def shape_draw(fm: FileModel, ev: Callable[[cst.BaseExpression], Any], method: str, names: tuple,
               owner: TensorRef, owner_expr: cst.BaseExpression, call: cst.Call) -> tuple[str, tuple] | None:
    """(scheme, params) of `<module>.weight[.data].normal_(...)` / `.uniform_(...)` (the call,
    its parameter names `names`) whose spread is arithmetic on the layer's shape (fan_scheme), for
    the layer classes the module may be: those of an isinstance test around a loop's or an apply
    function's module, or a torch layer's own; None otherwise. ev: the walker's evaluation."""
    module = owner.owner
    classes = module.types if type(module) is AnyModule else (module.cls,) if (
        type(module) is Ctor and module.kind == "torch") else ()
    text = dotted(owner_expr) or ""
    if text.endswith(".data"):
        text = text[:-len(".data")]
    if owner.name != "weight" or not classes or not text.endswith(".weight"):
        return None

    def number(e: cst.BaseExpression) -> float | None:
        v = ev(e)
        return float(v) if _num(v) else None

    args = {pname: v for i, pname in enumerate(names) if (v := _arg_value(call, i, pname)) is not None}
    return fan_scheme(method, args, text[:-len(".weight")], classes, number,
                      lambda name: bound_once(fm.running, name), lambda func: bool(fm.qual(func) & _SQRT))
