"""Hand-written `autograd.Function.backward`s as the numerics extractor reads them: one that never
reads its gradient (a site), and ones that no gradcheck applies to (NumClass.custom_backward is
False): deliberately no derivative of their forward (straight-through, gradient-scaling and
surrogate estimators), refusals (a backward that only raises), or collectives, which need a
process group that one process's gradcheck does not have."""

from __future__ import annotations

import re

import libcst as cst

from gradlint.source.engine.walk import children, walk
from gradlint.source.names import bound_names, root_name

# Methods that give a tensor back unchanged in value (a copy, a view, its negation).
_SAME_VALUE = frozenset({"clone", "neg", "contiguous", "view_as", "reshape_as", "view", "reshape", "detach"})
# What `ctx` holds that is a tensor of the forward, not a setting: a factor read from there is
# a local derivative (`g * x` of a saved x), which is what gradcheck checks.
_SAVED = frozenset({"saved_tensors", "saved_variables", "needs_input_grad"})

# What reads a tensor only for its shape, dtype or device: a backward that reads its gradient
# only so (`grad_input = torch.ones_like(grad_output)`) returns the same gradient whatever the loss.
_LIKE = frozenset(f"torch.{f}_like" for f in ("ones", "zeros", "empty", "full", "rand", "randn", "randint"))
_SHAPE_ATTRS = frozenset({"shape", "dtype", "device", "ndim", "is_cuda", "layout"})
_SHAPE_METHODS = frozenset({"size", "dim", "numel", "new_ones", "new_zeros", "new_empty", "new_full", "get_device"})

# A linear pass-through's factor: its numeric coefficient and the `ctx` settings it multiplies
# (or divides: "/alpha") by.
Factor = tuple[float, tuple[str, ...]]


def _no_gradient(node: cst.BaseExpression, qualify, none_lists: frozenset[str] = frozenset()) -> bool:
    """`None`, zeros (`torch.zeros_like(g)`, `g.new_zeros(n)`, `torch.zeros(...)`), or a tuple of
    them: a backward that returns only these passes no gradient on, on purpose (a blocked input),
    as one returning None does. `none_lists`: the names of lists built only of None
    (_none_lists), returned as they are or through `tuple(...)`/`list(...)`."""
    if type(node) in (cst.Tuple, cst.List):
        return all(_no_gradient(e.value, qualify, none_lists) for e in node.elements)
    if type(node) is cst.Name and node.value in none_lists:
        return True
    if type(node) is cst.Call:
        func = node.func
        if type(func) is cst.Name and func.value in ("tuple", "list") and len(node.args) == 1 \
                and type(node.args[0].value) is cst.Name and node.args[0].value.value in none_lists:
            return True
        if type(func) is cst.Attribute and func.attr.value == "new_zeros":
            return True
        return not qualify(func).isdisjoint(("torch.zeros_like", "torch.zeros"))
    return _all_none(node)


def _all_none(node: cst.BaseExpression) -> bool:
    if type(node) is cst.Name:
        return node.value == "None"
    if isinstance(node, cst.Tuple | cst.List):
        return all(_all_none(e.value) for e in node.elements)
    return False


def _none_only(node: cst.BaseExpression) -> bool:
    """A value, or an iterable, of nothing but None: `None`, `[None, None]`, `[None] * 5`,
    `(None for _ in xs)`, `[None] + [None]`."""
    if _all_none(node):
        return True
    if type(node) is cst.BinaryOperation:
        if type(node.operator) is cst.Multiply:
            return any(type(side) in (cst.List, cst.Tuple) and _all_none(side) for side in (node.left, node.right))
        if type(node.operator) is cst.Add:
            return _none_only(node.left) and _none_only(node.right)
        return False
    if type(node) in (cst.GeneratorExp, cst.ListComp):
        return _all_none(node.elt)
    return False


def _inputs(fn: cst.FunctionDef) -> list[str]:
    """The parameters after ctx (a backward's gradients, a forward's inputs)."""
    params = fn.params
    names = [p.name.value for p in list(params.posonly_params) + list(params.params)]
    rest = names[1:]  # the first is ctx
    if type(params.star_arg) is cst.Param:
        rest.append(params.star_arg.name.value)
    return rest


def _ctx(fn: cst.FunctionDef) -> str:
    return fn.params.params[0].name.value if fn.params.params else "ctx"


def _setting(node: cst.BaseExpression, ctx: str, local: dict[str, Factor] | None = None) -> Factor | None:
    """A factor that is no tensor of the forward: a number, `ctx.alpha` (a setting the forward
    stored), a name the backward bound to one (`local`: _local_settings), a reshape of one
    (`scale.view(-1, 1)`), or a sign, product or quotient of them."""
    if isinstance(node, cst.Integer | cst.Float):
        return (float(node.evaluated_value), ())
    if type(node) is cst.Name:
        return local.get(node.value) if local else None
    if type(node) is cst.UnaryOperation and type(node.operator) is cst.Minus:
        inner = _setting(node.expression, ctx, local)
        return (-inner[0], inner[1]) if inner is not None else None
    if type(node) is cst.Attribute:
        if type(node.value) is cst.Name and node.value.value == ctx and node.attr.value not in _SAVED:
            key = f"{ctx}.{node.attr.value}"
            if local and key in local:
                return local[key]  # None: a tensor the forward computed from its input (_forward_tensors)
            return (1.0, (node.attr.value,))
        return None
    if type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value in _SAME_VALUE:
        inner = _setting(node.func.value, ctx, local)
        if inner is not None and node.func.attr.value == "neg":
            return (-inner[0], inner[1])
        return inner
    if type(node) is cst.BinaryOperation and isinstance(node.operator, cst.Multiply | cst.Divide):
        left, right = _setting(node.left, ctx, local), _setting(node.right, ctx, local)
        if left is None or right is None:
            return None
        return _times(left, right, type(node.operator) is cst.Divide)
    return None


def _times(a: Factor, b: Factor, divide: bool = False) -> Factor | None:
    if divide:
        if b[0] == 0:
            return None
        return (a[0] / b[0], tuple(sorted(a[1] + tuple("/" + n for n in b[1]))))
    return (a[0] * b[0], tuple(sorted(a[1] + b[1])))


# Methods that multiply (or divide) a tensor by their one argument: `g.mul(ctx.scale)`.
_TIMES = frozenset({"mul", "multiply"})
_OVER = frozenset({"div", "divide", "true_divide"})


def _linear(node: cst.BaseExpression, names: set[str] | dict[str, Factor], ctx: str,
            local: dict[str, Factor] | None = None) -> Factor | None:
    """`node` as one of `names` times a setting (`g`, `-g`, `g.neg() * ctx.alpha`, `x.view_as(x)`,
    `2 * x`, `g.mul(ctx.scale)`); None for anything else. `names` as a dict: each name's own
    factor (a local bound to a gradient times a setting, `_aliases`)."""
    if type(node) is cst.Name:
        if isinstance(names, dict):
            return names.get(node.value)
        return (1.0, ()) if node.value in names else None
    if type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value in _TIMES | _OVER \
            and len(node.args) == 1 and node.args[0].keyword is None and not node.args[0].star:
        inner = _linear(node.func.value, names, ctx, local)
        factor = _setting(node.args[0].value, ctx, local) if inner is not None else None
        return _times(inner, factor, node.func.attr.value in _OVER) if factor is not None else None
    if type(node) is cst.UnaryOperation and type(node.operator) is cst.Minus:
        inner = _linear(node.expression, names, ctx, local)
        return (-inner[0], inner[1]) if inner is not None else None
    if type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value in _SAME_VALUE:
        inner = _linear(node.func.value, names, ctx, local)
        if inner is not None and node.func.attr.value == "neg":
            return (-inner[0], inner[1])
        return inner
    if type(node) is cst.BinaryOperation and isinstance(node.operator, cst.Multiply | cst.Divide):
        divide = type(node.operator) is cst.Divide
        left = _linear(node.left, names, ctx, local)
        if left is not None:
            right = _setting(node.right, ctx, local)
            return _times(left, right, divide) if right is not None else None
        right = _linear(node.right, names, ctx, local) if not divide else None
        scale = _setting(node.left, ctx, local) if right is not None else None
        return _times(scale, right) if scale is not None else None
    return None


# Conversions of a boolean mask to the gradient's type: `(x.abs() <= 1).float()`, `.to(g.dtype)`.
_CASTS = frozenset({"float", "double", "half", "bfloat16", "to", "type_as", "type", "bool", "int", "long"})
# Forwards whose value is piecewise constant in their input (their derivative is zero almost
# everywhere): a backward that passes a masked gradient is a straight-through estimator of them.
_STEP_OPS = frozenset({"sign", "round", "floor", "ceil", "trunc", "heaviside", "bernoulli"})


def _mask(node: cst.BaseExpression) -> bool:
    """A comparison, or one cast to a tensor type (`(x.abs() <= 1).float()`)."""
    if type(node) is cst.Comparison:
        return True
    return type(node) is cst.Call and type(node.func) is cst.Attribute and \
        node.func.attr.value in _CASTS and _mask(node.func.value)


def _masked(node: cst.BaseExpression, names: set[str], ctx: str,
            local: dict[str, Factor] | None = None) -> Factor | None:
    """`g * (x.abs() <= 1).float()` (either order): the gradient, times a setting, kept where a
    comparison holds (BinaryNet's straight-through sign); None for anything else."""
    if not (type(node) is cst.BinaryOperation and type(node.operator) is cst.Multiply):
        return None
    for grad, mask in ((node.left, node.right), (node.right, node.left)):
        if _mask(mask):
            got = _linear(grad, names, ctx, local)
            if got is not None:
                return got
    return None


def _constant_in(node: cst.BaseExpression, x: str, params: frozenset[str]) -> bool:
    """Whether `node` reads nothing of the input `x`: numbers, the forward's other inputs (a
    scale, a zero point) and `ctx` settings, through attributes and calls of them."""
    stack = [node]
    while stack:
        n = stack.pop()
        if type(n) is cst.Name:
            if n.value == x or n.value not in params:
                return False
            continue
        if type(n) is cst.Attribute:
            stack.append(n.value)  # (the attribute's own name is no variable)
            continue
        if type(n) is cst.Call:
            stack.extend(a.value for a in n.args)
            if type(n.func) is cst.Attribute:
                stack.append(n.func.value)
            continue
        stack.extend(children(n))
    return True


def _step_valued(node: cst.BaseExpression, x: str, params: frozenset[str] = frozenset()) -> bool:
    """A forward's value that is piecewise constant in its input `x`: `torch.sign(x)`, `x.round()`,
    `(x > 0).float()`, a quantizer's `torch.round(x / s) * s` or `.clamp(lo, hi)` of one,
    `torch.where(x >= 0, 1., -1.)`, `F.one_hot(x.argmax(-1))`."""
    if _mask(node):
        return True
    if type(node) is cst.BinaryOperation and isinstance(node.operator, cst.Multiply | cst.Divide | cst.Add
                                                             | cst.Subtract):
        # a step scaled or shifted by what does not read the input (a scale, a zero point)
        for step, other in ((node.left, node.right), (node.right, node.left)):
            if _step_valued(step, x, params) and _constant_in(other, x, params):
                return True
        return False
    if type(node) is cst.Call:
        func = node.func
        name = func.attr.value if type(func) is cst.Attribute else func.value if type(func) is cst.Name else ""
        if name in _STEP_OPS:
            return True
        args = [a.value for a in node.args]
        if name in _CASTS | {"clamp", "clip", "one_hot"}:
            # of the receiver (`q.clamp(-8, 7)`), or of torch's first argument (`F.one_hot(i)`)
            inner = func.value if type(func) is cst.Attribute and not (
                type(func.value) is cst.Name and func.value.value in ("torch", "F")) else (args[0] if args else None)
            return inner is not None and _step_valued(inner, x, params)
        if name in ("argmax", "argmin"):
            return True
        if name == "where" and len(args) == 3:
            return all(isinstance(a, cst.Integer | cst.Float) or (
                type(a) is cst.UnaryOperation and isinstance(a.expression, cst.Integer | cst.Float)) for a in args[1:])
    return False


def _saved_reads(fn: cst.FunctionDef, ctx: str) -> set[int]:
    """The ids of a backward's top-level statements that only read what the forward saved
    (`(x,) = ctx.saved_tensors`, `x = ctx.saved_tensors[0]`)."""
    out: set[int] = set()
    for stmt in fn.body.body if type(fn.body) is cst.IndentedBlock else ():
        small = stmt.body[0] if type(stmt) is cst.SimpleStatementLine and len(stmt.body) == 1 else None
        if type(small) is not cst.Assign:
            continue
        value = small.value.value if type(small.value) is cst.Subscript else small.value
        if type(value) is cst.Attribute and type(value.value) is cst.Name and value.value.value == ctx \
                and value.attr.value in ("saved_tensors", "saved_variables"):
            out.add(id(stmt))
    return out


def _aliases(fn: cst.FunctionDef, grads: list[str], ctx: str,
             local: dict[str, Factor] | None = None) -> tuple[dict[str, Factor], set[int]]:
    """Names a backward binds, at its top level, to one of its gradients times a setting, with
    that factor (`grad_input = grad_output.clone()`: 1; `output = grad_output.neg() * ctx.alpha`,
    DANN's gradient reversal: -alpha), and the ids of those statements."""
    names: dict[str, Factor] = {g: (1.0, ()) for g in grads}
    found: dict[str, Factor] = {}
    lines: set[int] = set()
    for stmt in fn.body.body if type(fn.body) is cst.IndentedBlock else ():
        small = stmt.body[0] if type(stmt) is cst.SimpleStatementLine and len(stmt.body) == 1 else None
        if not (type(small) is cst.Assign and len(small.targets) == 1
                and type(small.targets[0].target) is cst.Name):
            continue
        target = small.targets[0].target.value
        got = _linear(small.value, names, ctx, local)
        if got is not None:
            names[target] = found[target] = got
            lines.add(id(stmt))
        else:
            names.pop(target, None)
            found.pop(target, None)
    return found, lines


def _forward_tensors(forward: cst.FunctionDef, ctx: str) -> dict[str, None]:
    """The `ctx` attributes the forward sets to what it computed from its first input
    (`ctx.out = torch.exp(x)`, `ctx.mask = (x > 0).float()`), keyed as a backward with context
    `ctx` reads them: a factor read there is the local derivative's, which gradcheck checks, not
    a setting (`ctx.scale = scale` of another input is one)."""
    inputs = _inputs(forward)
    if not inputs:
        return {}
    fctx = _ctx(forward)
    tainted = {inputs[0]}
    out: set[str] = set()
    assigns = [n for n in walk(forward.body) if type(n) is cst.Assign]
    for _ in range(4):  # (in any order the walk gives them: `out = f(x)` then `ctx.out = out`)
        before = len(tainted) + len(out)
        for node in assigns:
            if not any(type(n) is cst.Name and n.value in tainted for n in walk(node.value)):
                continue
            for t in node.targets:
                for tgt in (e.value for e in t.target.elements) if type(t.target) in (cst.Tuple, cst.List) else (t.target,):
                    if type(tgt) is cst.Name:
                        tainted.add(tgt.value)
                    elif type(tgt) is cst.Attribute and type(tgt.value) is cst.Name and tgt.value.value == fctx:
                        out.add(tgt.attr.value)
        if len(tainted) + len(out) == before:
            break
    return {f"{ctx}.{attr}": None for attr in out}


def _local_settings(fn: cst.FunctionDef, ctx: str, grads: list[str],
                    initial: dict | None = None) -> tuple[dict[str, Factor], set[int]]:
    """The names a backward binds first, before anything else, only to settings the forward
    stored or reshapes of them (`scale = ctx.scale`, then `scale = scale.view(-1, 1)` in branches
    on the gradient's shape: ibert's quantizers), with their factors; and the ids of those
    statements."""
    local: dict = dict(initial or {})
    lines: set[int] = set()
    for stmt in fn.body.body if type(fn.body) is cst.IndentedBlock else ():
        got = _binds_settings(stmt, ctx, local, grads)
        if got is None:
            break
        local = got
        lines.add(id(stmt))
    return local, lines


def _binds_settings(stmt: cst.CSTNode, ctx: str, local: dict[str, Factor], grads: list[str]) -> dict[str, Factor] | None:
    """The local settings after `stmt` when it only binds names to settings (assignments, or an
    if/elif/else of them), else None. A name bound on every branch keeps its factor where the
    branches agree, else is a setting of its own name; one bound on only some is none."""
    if type(stmt) is cst.SimpleStatementLine:
        out = dict(local)
        if len(stmt.body) == 1 and type(stmt.body[0]) is cst.Expr and type(stmt.body[0].value) is cst.SimpleString:
            return out  # a docstring
        for small in stmt.body:
            if not (type(small) is cst.Assign and len(small.targets) == 1
                    and type(small.targets[0].target) is cst.Name) or small.targets[0].target.value in grads:
                return None
            got = _setting(small.value, ctx, out)
            if got is None:
                return None
            out[small.targets[0].target.value] = got
        return out
    if type(stmt) is not cst.If:
        return None
    branches: list[dict[str, Factor]] = []
    node: cst.If | cst.Else | None = stmt
    while node is not None:
        after: dict[str, Factor] | None = local
        for inner in node.body.body if type(node.body) is cst.IndentedBlock else ():
            after = _binds_settings(inner, ctx, after, grads)
            if after is None:
                return None
        branches.append(after)
        if type(node) is cst.Else:
            break
        node = node.orelse
        if node is None:
            branches.append(local)  # no else: the test may fail
    out = {}
    for name in set().union(*branches):
        if all(name in b for b in branches):
            factors = {b[name] for b in branches}
            out[name] = factors.pop() if len(factors) == 1 else (1.0, (name,))
    return out


def _guard(stmt: cst.BaseStatement) -> bool:
    """An input check: an `if` whose every branch only raises (`if not x.dtype.is_floating_point:
    raise TypeError(...)`). Where the function goes on past it, it has changed nothing, so what
    it returns is read as if the check were not there."""
    if type(stmt) is not cst.If:
        return False
    node: cst.If | cst.Else | None = stmt
    while node is not None:
        if type(node.body) is cst.IndentedBlock:
            smalls = [small for s in node.body.body if type(s) is cst.SimpleStatementLine for small in s.body]
            if len(smalls) < len(node.body.body) or not smalls:
                return False  # a compound statement in the branch
        else:
            smalls = list(node.body.body)  # `if bad: raise ValueError(...)` on one line
        if not all(type(small) is cst.Raise for small in smalls):
            return False
        node = node.orelse if type(node) is cst.If else None
    return True


def _returns(fn: cst.FunctionDef, only: bool = False, skip: set[int] = frozenset()) -> list[cst.BaseExpression] | None:
    """The values a function returns, when its body is plain statements ending in returns (no
    branch or loop to read, input checks aside: _guard); with `only`, when it holds nothing but
    a docstring, input checks, the statements `skip` names and returns of a value. None
    otherwise."""
    body = fn.body.body if type(fn.body) is cst.IndentedBlock else ()
    out = []
    for stmt in body:
        if only and id(stmt) in skip or _guard(stmt):
            continue
        if type(stmt) is not cst.SimpleStatementLine:
            return None
        if only:
            small = stmt.body[0] if len(stmt.body) == 1 else None
            if type(small) is cst.Expr and type(small.value) is cst.SimpleString:
                continue  # a docstring
            if not (type(small) is cst.Return and small.value is not None):
                return None
        out.extend(s.value for s in stmt.body if type(s) is cst.Return and s.value is not None)
    return out or None


def not_a_derivative(forward: cst.FunctionDef | None, backward: cst.FunctionDef, ctx_less: bool = False) -> bool:
    """A backward that is deliberately no derivative of its forward, so a finite-difference check
    of it fails by design: it only returns, for each input, None or its incoming gradient times a
    setting, while the forward is an operation that is no such pass-through (a straight-through
    estimator: `round(x)` forward, `return grad_output` backward), or a pass-through by another
    factor (gradient reversal: `x.view_as(x)` forward, `-ctx.alpha * g` backward). A backward
    that computes anything first, or an identity forward with its true derivative, is not.
    `ctx_less`: the forward takes no ctx (a `setup_context` fills it: what it stores is taken for
    tensors of the forward, not settings)."""
    grads = _inputs(backward)
    if forward is None or not grads or type(backward.params.star_arg) is cst.Param:
        return False
    ctx, factors = _ctx(backward), set()
    if ctx_less:
        known = {f"{ctx}.{n.attr.value}": None for n in walk(backward.body)
                 if type(n) is cst.Attribute and type(n.value) is cst.Name and n.value.value == ctx}
    else:
        known = _forward_tensors(forward, ctx)
    # `scale = ctx.scale`, reshaped for the gradient's shape: a setting under a local name
    local, settings = _local_settings(backward, ctx, grads, known)
    # `grad_input = grad_output.clone(); return grad_input`: the gradient under another name
    aliases, plain = _aliases(backward, grads, ctx, local)
    plain |= settings
    given = _returns(backward, only=True, skip=plain)
    # reading what the forward saved: for a mask of it, or before a plain pass-through of a
    # piecewise-constant forward; of a smooth one (`x ** 2`), a plain gradient more likely forgot
    # the factor it unpacked them for
    reads_saved = given is None
    if reads_saved:
        given = _returns(backward, only=True, skip=plain | _saved_reads(backward, ctx))
    if given is None:
        return False
    masked = False
    for value in given:
        items = [e.value for e in value.elements] if type(value) is cst.Tuple else [value]
        for item in items:
            if _all_none(item):
                continue
            got = _linear(item, {**{g: (1.0, ()) for g in grads}, **aliases}, ctx, local)
            if got is None:
                # (a mask of the gradient itself, or of a copy of it: `gi = g.clone(); gi[m] = 0`)
                same = set(grads) | {n for n, f in aliases.items() if f == (1.0, ())}
                got = _masked(item, same, ctx, local)
                masked = True
            if got is None:
                return False
            factors.add(got)
    if len(factors) != 1:
        return False
    returned = _returns(forward)
    inputs = _inputs_all(forward) if ctx_less else _inputs(forward)
    fctx = "" if ctx_less else _ctx(forward)  # ("" names no variable)
    if returned is None or not inputs:
        return False
    if masked or reads_saved:
        # a masked gradient is the true derivative of a clamp (hardtanh): a straight-through
        # estimator only of a forward whose value is piecewise constant (sign, round, `x > 0`)
        # (the forward's other inputs and its ctx are settings: `round(x / scale) * scale`)
        params = frozenset(inputs[1:]) | {fctx}
        return all(_step_valued(r, inputs[0], params) for r in returned)
    # (the forward's other inputs are settings too: `x * scale` against `grad * ctx.scale`)
    others = {name: (1.0, (name,)) for name in inputs[1:]}
    passed = {_linear(r, {inputs[0]}, fctx, others) for r in returned}
    if None in passed:
        return True  # an operation whose gradient the backward replaces with its own
    return passed != factors


# Methods that give their tensor back as it is (a copy, a view, a detached one): a forward of
# only these is the identity.
_SAME = frozenset({"detach", "clone", "view_as", "contiguous", "new", "requires_grad_", "detach_"})


def _same_of(node: cst.BaseExpression, inputs: set[str]) -> bool:
    """`x`, `x.detach()`, `x.clone()`, `x.view_as(x)`, `x.new(x)` of an input `x`; a tuple of such;
    `tuple(t.detach() for t in tensors)` of a `*tensors` input."""
    if type(node) is cst.Name:
        return node.value in inputs
    if type(node) is cst.Tuple:
        return bool(node.elements) and all(_same_of(e.value, inputs) for e in node.elements)
    if type(node) is not cst.Call:
        return False
    func = node.func
    if type(func) is cst.Attribute and func.attr.value in _SAME:
        return _same_of(func.value, inputs)
    if type(func) is cst.Name and func.value == "tuple" and len(node.args) == 1 and \
            type(gen := node.args[0].value) is cst.GeneratorExp and gen.for_in.inner_for_in is None and \
            not gen.for_in.ifs and type(gen.for_in.target) is cst.Name and type(gen.for_in.iter) is cst.Name:
        return gen.for_in.iter.value in inputs and _same_of(gen.elt, {gen.for_in.target.value})
    return False


def _clamped_grad(node: cst.BaseExpression, grads: set[str], qualify) -> bool:
    """`g.clamp(-c, c)` or `torch.clamp(g, ...)` of a gradient: gradient clipping."""
    if type(node) is not cst.Call or not node.args:
        return False
    func = node.func
    if qualify(func) & {"torch.clamp", "torch.clip"}:
        return type(node.args[0].value) is cst.Name and node.args[0].value.value in grads
    return type(func) is cst.Attribute and func.attr.value in ("clamp", "clamp_", "clip", "clip_") and \
        type(func.value) is cst.Name and func.value.value in grads


def _marks_each(stmt: cst.CSTNode, local: set[str]) -> bool:
    """`for t in detached: t.requires_grad_()` over a local copy: nothing but that call."""
    if type(stmt) is not cst.For or type(stmt.target) is not cst.Name or type(stmt.iter) is not cst.Name or \
            stmt.iter.value not in local or stmt.orelse is not None or type(stmt.body) is not cst.IndentedBlock:
        return False
    body = stmt.body.body
    if len(body) != 1 or type(body[0]) is not cst.SimpleStatementLine or len(body[0].body) != 1:
        return False
    small = body[0].body[0]
    call = small.value if type(small) is cst.Expr else None
    return type(call) is cst.Call and type(call.func) is cst.Attribute and call.func.attr.value == "requires_grad_" \
        and type(call.func.value) is cst.Name and call.func.value.value == stmt.target.value and \
        all(type(a.value) is cst.Name and a.value.value == "True" for a in call.args)


def passes_through(forward: cst.FunctionDef | None, backward: cst.FunctionDef, qualify) -> bool:
    """An identity forward (its inputs returned as they are: detached, cloned, viewed, also
    through one local name) whose backward returns the incoming gradients as they are (its true
    derivative: a gradcheck tests nothing; x-transformers' DetachMultiple) or clamped (gradient
    clipping by design, which a gradcheck fails wherever the clamp bites: espnet's
    LogSoftmaxGradModification)."""
    if forward is None:
        return False
    inputs = set(_inputs(forward))
    body = forward.body.body if type(forward.body) is cst.IndentedBlock else ()
    local: set[str] = set()
    returned: list[cst.BaseExpression] = []
    for stmt in body:
        if _marks_each(stmt, local):
            continue  # `for t in detached: t.requires_grad_()`
        if type(stmt) is not cst.SimpleStatementLine:
            if _guard(stmt):
                continue
            return False
        for small in stmt.body:
            if type(small) is cst.Return and small.value is not None:
                returned.append(small.value)
            elif type(small) is cst.Assign and len(small.targets) == 1 and type(small.targets[0].target) is cst.Name \
                    and _same_of(small.value, inputs):
                local.add(small.targets[0].target.value)
            elif type(small) is cst.Assign and len(small.targets) == 1 and \
                    type(t := small.targets[0].target) is cst.Attribute and type(t.value) is cst.Name and \
                    t.value.value == _ctx(forward):
                continue  # `ctx.clamp = clamp`: a setting kept (not `x.data = x.data * 2`)
            elif not (type(small) is cst.Expr and type(small.value) is cst.SimpleString):
                return False
    if not returned or not all(_same_of(r, inputs | local) for r in returned):
        return False
    grads = set(_inputs(backward))
    # `grad_output = torch.clamp(grad_output, -ctx.clamp, ctx.clamp)`: the gradient, clipped
    clipped = {small.targets[0].target.value for stmt in backward.body.body if type(stmt) is cst.SimpleStatementLine
               for small in stmt.body if type(small) is cst.Assign and len(small.targets) == 1
               and type(small.targets[0].target) is cst.Name and _clamped_grad(small.value, grads, qualify)}
    skip = {id(stmt) for stmt in backward.body.body if type(stmt) is cst.SimpleStatementLine and all(
        type(small) is cst.Assign and len(small.targets) == 1 and type(small.targets[0].target) is cst.Name
        and small.targets[0].target.value in clipped for small in stmt.body)}
    given = _returns(backward, only=True, skip=skip)
    if not grads or given is None:
        return False
    for value in given:
        items = [e.value for e in value.elements] if type(value) is cst.Tuple else [value]
        for item in items:
            if not (_all_none(item) or type(item) is cst.Name and item.value in grads | clipped or
                    _clamped_grad(item, grads, qualify)):
                return False
    return True


def straight_through_base(module: cst.Module, name: str, backward: cst.FunctionDef) -> bool:
    """A Function with no forward whose backward is a straight-through one for every subclass of
    the file that gives it a forward (botorch's IdentitySTEFunction: `return grad_output`, and
    RoundSTE's `round(X)`): no pair of its own to gradcheck, and each subclass's is no derivative."""
    subclasses = [c for c in module.body if type(c) is cst.ClassDef and any(
        type(b.value) is cst.Name and b.value.value == name for b in c.bases)]
    forwards = [m for c in subclasses if type(c.body) is cst.IndentedBlock
                for m in c.body.body if type(m) is cst.FunctionDef and m.name.value == "forward"]
    return bool(forwards) and all(not_a_derivative(f, backward) for f in forwards)


def surrogate(forward: cst.FunctionDef | None, backward: cst.FunctionDef, ctx_less: bool = False,
              qualify=None) -> bool:
    """A backward that returns a gradient for an input on which its forward's outputs do not
    depend differentiably (_reaches): the forward never reads it (PhiMoE's SparseMixer: the
    forward is `multiplier * mask_for_one`, the backward gives `scores` a gradient), or reads it
    only for its shape, for the index of an extremum, or through values it declares
    non-differentiable (a VQ-VAE's straight-through: the codes are the codebook's rows at the
    `argmin` indices another Function computes from `inputs`, marked with
    `ctx.mark_non_differentiable`, shaped `view_as(inputs)`; the backward passes the codes'
    gradient on to `inputs`). The true derivative there is zero, so the backward is a surrogate
    by design. `ctx_less`: the forward takes no ctx (the Function has a `setup_context`);
    `qualify`: a callee's qualified names through the file's imports."""
    if forward is None:
        return False
    inputs = _inputs(forward) if not ctx_less else _inputs_all(forward)
    if not inputs or type(forward.params.star_arg) is cst.Param:
        return False
    candidates = [i for i in sorted(_given(backward)) if i < len(inputs)]
    if not candidates:
        return False
    ctx = None if ctx_less else _ctx(forward)
    return any(not _reaches(forward, inputs[i], ctx, qualify) for i in candidates)


# What a placeholder output is called (fairscale's `phony`, torchrec's `myreq.dummy_tensor`):
# a word of the returned name's last part.
def _inputs_all(fn: cst.FunctionDef) -> list[str]:
    """Every positional parameter (a forward that takes no ctx)."""
    params = fn.params
    return [p.name.value for p in list(params.posonly_params) + list(params.params)]


def _given(backward: cst.FunctionDef) -> set[int]:
    """The positions of the inputs to which a backward returns a gradient: an item of one of its
    returns that is no None, nor a name the backward binds only to None (`grad_inputs = None`,
    then `grad_inputs = grad_output.clone()` under `if ctx.needs_input_grad[0]:` gives one).
    The returns of functions defined inside it are theirs."""
    nodes = list(walk(backward.body, stop=(cst.Lambda, cst.FunctionDef)))
    gives: dict[str, bool] = {}  # a name -> whether the backward binds it to anything but None
    for node in nodes:
        if type(node) is cst.Assign:
            for t in node.targets:
                for name in bound_names(t.target):
                    gives[name] = gives.get(name, False) or not _all_none(node.value)
        elif type(node) in (cst.AugAssign, cst.AnnAssign, cst.For, cst.NamedExpr):
            for name in bound_names(node.target):
                gives[name] = True
    out: set[int] = set()
    for node in nodes:
        if type(node) is not cst.Return or node.value is None:
            continue
        items = node.value.elements if type(node.value) in (cst.Tuple, cst.List) else [cst.Element(node.value)]
        for i, element in enumerate(items):
            if type(element) is cst.StarredElement:
                break  # (the positions after it are unknown)
            item = element.value
            if _all_none(item) or type(item) is cst.Name and gives.get(item.value, True) is False:
                continue
            out.add(i)
    return out


# Calls that read their first argument only for its shape, dtype or device: `y.view_as(x)`,
# `torch.zeros_like(x)`.
_SHAPE_ARGUMENT = frozenset({"view_as", "reshape_as", "expand_as", "type_as", "len"}) | {f.split(".")[1] for f in _LIKE}
# The `ctx` methods that only record: they write nothing the forward returns.
_CTX_RECORDS = frozenset({"save_for_backward", "mark_non_differentiable", "mark_dirty", "set_materialize_grads",
                          "save_for_forward"})


def _reads(node: cst.CSTNode, tainted: set[str]) -> bool:
    """Whether `node` reads the value of one of `tainted` differentiably: not only for its shape,
    dtype or device (`x.shape`, `x.size(0)`, `y.view_as(x)`, `torch.zeros_like(x)`) nor for the
    index of an extremum (`x.argmin(-1)`)."""
    stack = [node]
    while stack:
        n = stack.pop()
        kind = type(n)
        if kind is cst.Name:
            if n.value in tainted:
                return True
            continue
        if kind is cst.Attribute:
            if n.attr.value not in _SHAPE_ATTRS:
                stack.append(n.value)  # (the attribute's own name is no variable)
            continue
        if kind is cst.Call:
            func = n.func
            name = func.attr.value if type(func) is cst.Attribute else func.value if type(func) is cst.Name else ""
            args = [a.value for a in n.args]
            if name in ("argmax", "argmin"):
                continue  # an index: integer-valued, no derivative flows through it
            if name in _SHAPE_METHODS and type(func) is cst.Attribute:
                stack.extend(args)  # the receiver only for its shape: `x.size(0)`, `x.new_zeros(n)`
                continue
            if name in _SHAPE_ARGUMENT and args and n.args[0].keyword is None and not n.args[0].star:
                stack.extend(args[1:])
                if type(func) is cst.Attribute:
                    stack.append(func.value)
                continue
        stack.extend(children(n))
    return False


def _reaches(forward: cst.FunctionDef, x: str, ctx: str | None, qualify=None) -> bool:
    """Whether what `forward` returns may depend differentiably on its input `x`: the values
    computed from it (_reads), through assignments, loops, functions defined there and calls
    that may write into their arguments (`launch(x, out)` fills `out`; an autograd Function's
    `.apply` and torch's functions but its in-place ones and `out=` do not), except the names
    passed to `ctx.mark_non_differentiable`. When in doubt, yes."""
    nodes = list(walk(forward.body, stop=()))
    blocked: set[str] = set()  # declared non-differentiable
    calls: set[int] = set()  # (ids) the calls that may write into their arguments
    for node in nodes:
        if type(node) is not cst.Call:
            continue
        func = node.func
        on_ctx = type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == ctx
        if ctx is not None and on_ctx and func.attr.value in _CTX_RECORDS:
            if func.attr.value == "mark_non_differentiable":
                blocked.update(a.value.value for a in node.args if type(a.value) is cst.Name)
            continue
        if type(func) is cst.Attribute and func.attr.value == "apply" or \
                qualify is not None and _pure_torch(node, qualify):
            continue
        calls.add(id(node))
    tainted = {x}
    for _ in range(50):
        before = len(tainted)
        for node in nodes:
            kind = type(node)
            written: list[str | None] = []
            if kind is cst.Assign:
                if _reads(node.value, tainted):
                    for t in node.targets:
                        written.extend(_written(t.target))
            elif kind in (cst.AugAssign, cst.AnnAssign, cst.NamedExpr):
                if node.value is not None and _reads(node.value, tainted):
                    written.extend(_written(node.target))
            elif kind in (cst.For, cst.CompFor):
                if _reads(node.iter, tainted):
                    written.extend(_written(node.target))
            elif kind is cst.WithItem:
                if node.asname is not None and _reads(node.item, tainted):
                    written.extend(_written(node.asname.name))
            elif kind is cst.FunctionDef:
                if _reads(node.body, tainted):
                    written.append(node.name.value)
            elif kind is cst.Call and id(node) in calls and _reads(node, tainted):
                # it may write into what it was given (and its receiver: `buf.copy_(x)`)
                if type(node.func) is cst.Attribute:
                    written.append(root_name(node.func.value, through_calls=False))
                for a in node.args:
                    packed = type(a.value) in (cst.Tuple, cst.List)  # `launch([out, state], x)`
                    values = [e.value for e in a.value.elements] if packed else [a.value]
                    written.extend(root_name(v, through_calls=False) for v in values)
            tainted.update(w for w in written if w is not None and w not in blocked)
        if len(tainted) == before:
            break
    else:
        return True
    return any(type(n) in (cst.Return, cst.Yield) and n.value is not None and _reads(n.value, tainted) for n in nodes)


def _pure_torch(call: cst.Call, qualify) -> bool:
    """A call of a torch function that writes into none of its arguments (`torch.cdist(x, c)`;
    not `torch.add(a, b, out=c)` nor an in-place `torch.nn.init.normal_(w)`)."""
    names = qualify(call.func)
    return bool(names) and all(q.startswith("torch.") and not q.endswith("_") for q in names) and not any(
        a.keyword is not None and a.keyword.value == "out" for a in call.args)


def _written(target: cst.BaseExpression) -> list[str | None]:
    """The variables an assignment target writes: names, and the roots of attributes and
    subscripts (`out[i] = x` writes `out`)."""
    if type(target) in (cst.Tuple, cst.List):
        return [n for e in target.elements for n in _written(e.value)]
    if type(target) is cst.StarredElement:
        return _written(target.value)
    return [root_name(target, through_calls=False)]


def refuses(backward: cst.FunctionDef) -> bool:
    """A backward that only raises (`raise RuntimeError("VectorQuantization is not
    differentiable")`): the Function declares itself non-differentiable; there is no gradient to
    check."""
    body = backward.body.body if type(backward.body) is cst.IndentedBlock else ()
    smalls = [small for stmt in body if type(stmt) is cst.SimpleStatementLine for small in stmt.body]
    if not body or len(smalls) < len(body):
        return False
    smalls = [s for s in smalls if not (type(s) is cst.Expr and type(s.value) is cst.SimpleString)]  # a docstring
    return bool(smalls) and all(type(s) is cst.Raise for s in smalls)


def blocks(backward: cst.FunctionDef, qualify) -> bool:
    """A backward that only returns None or zeros (`return None` after an `argmax` forward): the
    Function passes no gradient on, on purpose, as GL405 takes it; there is no derivative to
    check (a gradcheck of an integer output refuses to run)."""
    given = _returns(backward, only=True)
    return given is not None and all(_no_gradient(value, qualify) for value in given)


def autograd_computed(backward: cst.FunctionDef, qualify) -> bool:
    """A backward whose gradient autograd itself computes (`return torch.autograd.grad(outputs,
    inputs, grad_outputs)[0], None`: a Function that only routes the gradient): no derivative
    written by hand. `qualify`: a callee's qualified names through the file's imports."""
    return any(type(node) is cst.Call and qualify(node.func) & _AUTOGRAD_CALLS for node in walk(backward.body))


_AUTOGRAD_CALLS = frozenset({"torch.autograd.grad", "torch.autograd.backward"})


def handed_in(forward: cst.FunctionDef | None, backward: cst.FunctionDef, qualify) -> bool:
    """A backward whose derivative the Function does not write: it calls a callable its forward
    was handed and kept on ctx (`ctx.gradient_function = gradient_function`, then
    `ctx.gradient_function(x)`: sbi's score-based potential), or an op the dispatcher finds by a
    name made at run time (`torch._C._dispatch_call_boxed`: pytorch-pfn-extras' registered ops).
    The Function is a wrapper; a gradcheck belongs to each derivative it is given, not to it."""
    if any(type(node) is cst.Call and qualify(node.func) & _DISPATCH_CALLS for node in walk(backward.body)):
        return True
    if forward is None or type(forward.body) is not cst.IndentedBlock:
        return False
    ctx = _ctx(forward)
    params = set(_inputs(forward))
    kept = set()  # the ctx attributes the forward sets to one of its arguments
    for node in walk(forward.body):
        if type(node) is cst.Assign and type(node.value) is cst.Name and node.value.value in params:
            for t in node.targets:
                tgt = t.target
                if type(tgt) is cst.Attribute and type(tgt.value) is cst.Name and tgt.value.value == ctx:
                    kept.add(tgt.attr.value)
    if not kept:
        return False
    bctx = _ctx(backward)
    return any(type(node) is cst.Call and type(node.func) is cst.Attribute and type(node.func.value) is cst.Name
               and node.func.value.value == bctx and node.func.attr.value in kept for node in walk(backward.body))


_DISPATCH_CALLS = frozenset({"torch._C._dispatch_call_boxed"})


# The names of a collective called on a process-group object of a project's own (fairseq2's
# `gang.all_reduce(x, ReduceOperation.SUM)`, `gang.all_gather_to_list(...)`), on Horovod's
# (`hvd.allreduce`) or imported from another module: names no single-process tensor operation
# takes. (`broadcast` is not one: tensors and NumPy broadcast too.)
# ... and a halo (ghost-atom) exchange between the processes that hold a domain's parts, as
# LAMMPS's ML-IAP hands mace (`data.forward_exchange(feats, out, n)`, reverse_exchange in backward)
_COLLECTIVE = re.compile(r"(all_?reduce|all_?gather|reduce_?scatter|all_?to_?all)(_.*)?"
                         r"|(forward|reverse|halo|ghost)_exchange(_.*)?")


def communicates(methods: list[cst.FunctionDef], qualify, functions: dict[str, cst.FunctionDef]) -> bool:
    """Whether an autograd Function's forward or backward calls `torch.distributed` (an
    all-reduce, all-gather, all-to-all, send or receive, or the group's rank and size) or a
    collective by its name on another object (`ctx.gang.all_reduce(g)`: _COLLECTIVE): the Function
    is a collective across processes. Directly or through a top-level function of its file
    (`_all_to_all_dim_exchange(x, ..., group)`, two calls deep at most). `qualify`: a callee's
    qualified names through the file's imports; `functions`: the file's top-level functions."""
    todo = [(m, 0) for m in methods if m.name.value in ("forward", "backward")]
    seen: set[int] = set()
    while todo:
        fn, depth = todo.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        for node in walk(fn.body):
            if type(node) is not cst.Call:
                continue
            if any(q == "torch.distributed" or q.startswith("torch.distributed.") for q in qualify(node.func)):
                return True
            callee = node.func.attr if type(node.func) is cst.Attribute else node.func
            if type(callee) is cst.Name and _COLLECTIVE.fullmatch(callee.value):
                return True
            if depth < 2 and type(node.func) is cst.Name and (helper := functions.get(node.func.value)) is not None:
                todo.append((helper, depth + 1))
    return False
