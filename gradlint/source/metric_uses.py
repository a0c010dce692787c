"""Whether a name is read only where its value leaves autograd: a metric that is logged, printed or
turned into a number, never backpropagated.

`ent = -(p * p.log()).sum(-1).mean()` then `print(ent.item())` is the metric RULES.md keeps out of
the numerics rules, written on two lines: `.item()` on the same expression already keeps it quiet
(FunctionWalk.leaving). A read that could reach a backward pass (`loss + ent`, `return ent`,
`losses.append(ent)`, `ent.backward()`) or that this cannot place keeps the name a value.
"""

from __future__ import annotations

import libcst as cst

from gradlint.source.engine.walk import children, walk

# `x.item()`: the end of a chain of method calls on the name that takes the value out of autograd
# (`ll.mean().item()`, `entropy.detach()`, `x.cpu().numpy()`)
LEAVING_METHODS = frozenset({"item", "tolist", "detach", "numpy"})
# builtins that make a number or a text of it, or print it
_LEAVING_BUILTINS = frozenset({"float", "int", "bool", "str", "repr", "format", "print"})
# logging calls whose value is taken as a number (Lightning's `self.log` detaches what it is given,
# TensorBoard's `add_scalar` and the `logging` methods format it): the last part of the callee,
# on a receiver that is a logger by its name (never `torch.log(x)`, `np.log(x)`)
_LOGGING_METHODS = frozenset({"log", "log_dict", "log_metrics", "add_scalar", "add_scalars", "info", "debug",
                              "warning", "set_postfix", "set_description"})
_LOGGERS = frozenset({"self", "logger", "logging", "log", "writer", "wandb", "mlflow", "tb", "experiment", "pbar",
                      "progress", "bar", "run", "accelerator", "fabric", "tracker"})


# Methods of tensors that make a new value of their receiver and arguments and keep neither (no
# in-place `add_`, no list or module that stores what it is given): a metric's value made with
# these (and torch's functions) holds its hazards alone.
PURE_METHODS = frozenset({
    "log", "log2", "log10", "log1p", "exp", "expm1", "sum", "nansum", "mean", "nanmean", "std", "var", "prod",
    "softmax", "log_softmax", "sigmoid", "tanh", "relu", "sqrt", "rsqrt", "pow", "abs", "neg", "reciprocal",
    "clamp", "clamp_min", "clamp_max", "clip", "max", "min", "amax", "amin", "argmax", "argmin", "logsumexp",
    "cumsum", "norm", "reshape", "view", "flatten", "squeeze", "unsqueeze", "transpose", "permute", "t",
    "contiguous", "expand", "expand_as", "view_as", "reshape_as", "type_as", "gather", "index_select", "narrow",
    "masked_fill", "where", "float", "double", "half", "long", "int", "bool", "to", "cpu", "cuda", "detach",
    "add", "sub", "mul", "div", "matmul", "bmm", "eq", "ne", "lt", "gt", "le", "ge", "isnan", "isinf", "any",
    "all", "item", "tolist", "numpy", "topk", "sort"})
_PURE_BUILTINS = frozenset({"sum", "min", "max", "abs", "float", "int", "len"})


def made_alone(value: cst.BaseExpression, torch_call) -> bool:
    """Whether `value` keeps what it computes to itself: no walrus (`logp := torch.log(p)` binds
    another name), and only calls of torch's functions (`torch_call(func)`), PURE_METHODS and a
    few builtins (`self.add_aux(t)` may store `t` where a loss reads it)."""
    for node in walk(value, stop=()):
        kind = type(node)
        if kind is cst.NamedExpr or kind is cst.Lambda:
            return False
        if kind is cst.Call:
            func = node.func
            if not (torch_call(func) or (type(func) is cst.Attribute and func.attr.value in PURE_METHODS)
                    or (type(func) is cst.Name and func.value in _PURE_BUILTINS)):
                return False
    return True


def read_only_as_metric(root: cst.CSTNode, name: str, self_logs: bool = False) -> bool:
    """Whether every read of `name` under `root` (a function, or a module with its functions) is a
    leaving use, at least one exists, and `name` is bound under it only by plain `name = value`
    statements. Anything else it is bound by (a parameter, a loop, `+=`, a tuple target, `global`)
    makes the answer False. `self_logs`: `self.log(...)` is Lightning's (leaving_call)."""
    reads = 0
    stack: list[tuple[cst.CSTNode, tuple]] = [(root, ())]
    while stack:
        node, parents = stack.pop()
        if type(node) is cst.Name and node.value == name:
            role = _role(node, parents)
            if role in ("bound", "name"):
                continue
            if role != "read" or not _leaves(node, parents, self_logs):
                return False
            reads += 1
            continue
        here = (*parents, node) if len(parents) < 64 else (*parents[1:], node)
        stack.extend((c, here) for c in children(node))
    return reads > 0


def _role(node: cst.Name, parents: tuple) -> str:
    """'read', 'bound' (the target of a plain one-target assignment), 'other' (any other binding),
    or 'name' (not a variable: an attribute's or a keyword's name)."""
    parent = parents[-1] if parents else None
    kind = type(parent)
    if kind is cst.Attribute and parent.attr is node:
        return "name"
    if kind is cst.Arg and parent.keyword is node:
        return "name"
    if kind is cst.AssignTarget and parent.target is node:
        owner = parents[-2] if len(parents) > 1 else None
        return "bound" if type(owner) is cst.Assign and len(owner.targets) == 1 else "other"
    if kind in (cst.Param, cst.AugAssign, cst.AnnAssign, cst.For, cst.CompFor, cst.AsName, cst.NameItem,
                cst.NamedExpr, cst.FunctionDef, cst.ClassDef, cst.ImportAlias, cst.Del, cst.ExceptHandler,
                cst.MatchAs, cst.MatchStar, cst.Element, cst.StarredElement):
        if kind in (cst.Element, cst.StarredElement) and not _in_target(parents):
            return "read"
        if kind is cst.AugAssign and parent.target is not node:
            return "read"
        if kind is cst.AnnAssign and parent.target is not node:
            return "read"
        if kind in (cst.For, cst.CompFor) and parent.target is not node:
            return "read"
        if kind is cst.NamedExpr and parent.target is not node:
            return "read"
        if kind is cst.Param and parent.name is not node:
            return "read"
        return "other"
    return "read"


def _in_target(parents: tuple) -> bool:
    """Whether an element of a tuple or list display is part of an assignment's (or a loop's) target."""
    for p in reversed(parents):
        kind = type(p)
        if kind in (cst.Element, cst.StarredElement, cst.Tuple, cst.List):
            continue
        return kind in (cst.AssignTarget, cst.For, cst.CompFor, cst.AugAssign, cst.AnnAssign, cst.WithItem)
    return False


def _leaves(node: cst.CSTNode, parents: tuple, self_logs: bool) -> bool:
    """Whether the read `node` is in a leaving use: a chain of method calls and subscripts on it
    that ends in `.item()`/`.tolist()`/`.detach()`/`.numpy()`; an argument of `float()`,
    `print()` and the like, or of a logging call (also inside a dict or tuple display given to
    it); a value formatted into an f-string."""
    cur = node
    i = len(parents) - 1
    while i >= 0:
        parent = parents[i]
        kind = type(parent)
        if kind is cst.Attribute and parent.value is cur:
            call = parents[i - 1] if i > 0 else None
            if type(call) is not cst.Call or call.func is not parent:
                return False  # `x.grad`, `x.shape`, a method read as a value
            if parent.attr.value in LEAVING_METHODS and not call.args:
                return True
            cur, i = call, i - 2
            continue
        if kind is cst.Subscript and parent.value is cur:
            cur, i = parent, i - 1
            continue
        if kind is cst.FormattedStringExpression:
            return True
        if kind in (cst.DictElement, cst.Element) and parent.value is cur:
            display = parents[i - 1] if i > 0 else None
            if type(display) not in (cst.Dict, cst.Tuple, cst.List):
                return False
            cur, i = display, i - 2
            continue
        if kind is cst.Arg and parent.value is cur:
            call = parents[i - 1] if i > 0 else None
            return type(call) is cst.Call and leaving_call(call, self_logs)
        return False
    return False


def leaving_call(call: cst.Call, self_logs: bool = False) -> bool:
    """Whether `call` takes its arguments out of autograd: `float()`, `print()` and the like, or a
    logging method of a logger (`logger.info("%s", x)`, `writer.add_scalar("tag", x)`,
    `wandb.log({...})`, and `self.log("loss", x)` where `self_logs`: a LightningModule's, not a
    method of one's own), told by its receiver's name and a first argument that is a name or a
    record (a string or a dict display). A walrus among the arguments binds a value that lives on."""
    func = call.func
    if type(func) is cst.Name:
        leaves = func.value in _LEAVING_BUILTINS
    elif type(func) is not cst.Attribute or func.attr.value not in _LOGGING_METHODS:
        return False
    else:
        recv = func.value
        if type(recv) is cst.Name and recv.value == "self" and not self_logs:
            return False
        if type(recv) is cst.Attribute:  # `self.logger.info`, `self.writer.add_scalar`
            recv = recv.attr
        if type(recv) is not cst.Name:
            return False
        last = recv.value.lower()
        if not (last in _LOGGERS or last.endswith(("logger", "writer"))):
            return False
        first = call.args[0] if call.args else None
        leaves = first is None or first.keyword is not None or type(first.value) in (
            cst.SimpleString, cst.FormattedString, cst.ConcatenatedString, cst.Dict)
    return leaves and not any(type(n) is cst.NamedExpr for a in call.args for n in walk(a.value, stop=()))


# Calls after a `.detach()` that keep the value cut (`.detach().cpu()`, `.detach().clone()`).
_AFTER_DETACH = frozenset({"cpu", "clone", "float", "double", "half", "to", "numpy", "item", "tolist"})


def detached(node: cst.BaseExpression) -> bool:
    """Whether an expression ends in `.detach()`, possibly followed by copies and moves (and
    negated: `-(p * p.log()).sum().detach()`)."""
    if type(node) is cst.UnaryOperation:
        node = node.expression
    while type(node) is cst.Call and type(node.func) is cst.Attribute:
        name = node.func.attr.value
        if name in ("detach", "detach_"):
            return not node.args
        if name not in _AFTER_DETACH:
            return False
        node = node.func.value
    return False
