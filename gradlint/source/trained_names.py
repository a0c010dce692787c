"""Names a function trains: those whose `.parameters()` it hands to a torch optimizer.

`def train(net, loader): opt = torch.optim.Adam(net.parameters()); ... net(x)` never says what
`net` is, yet the optimizer it builds says that `net` holds the parameters this function
updates: calling it gives a value that carries their gradient, whatever class the caller passes.
The numerics evaluator reads an otherwise unknown callable through this (numerics_calls.py).
"""

from __future__ import annotations

import re

from typing import Callable

import libcst as cst

from gradlint.source.engine.walk import children
from gradlint.source.names import dotted

# The methods that hand a module's trainable tensors to an optimizer.
_PARAMETER_METHODS = frozenset({"parameters", "named_parameters"})
# `torch.optim.lr_scheduler.X(opt)` and `torch.optim.swa_utils` take an optimizer or a model,
# not parameters: a name there is not shown to be trained.
_NOT_OPTIMIZERS = ("torch.optim.lr_scheduler.", "torch.optim.swa_utils.")


def _is_optimizer(names: frozenset[str]) -> bool:
    return any(n.startswith("torch.optim.") and not n.startswith(_NOT_OPTIMIZERS) for n in names)


# A function that builds an optimizer, by its name (`make_optimizer`, `build_optim`, `get_opt`)
_OPTIMIZER_WORD = re.compile(r"optim|(^|_)opt($|_)", re.IGNORECASE)


def trained_names(fn: cst.FunctionDef | cst.Module, qualify: Callable[[cst.BaseExpression], frozenset[str]]) -> frozenset[str]:
    """The plain names whose `.parameters()` (or `.named_parameters()`) reach the arguments of a
    `torch.optim` constructor in `fn`'s own body, however wrapped (`list(a.parameters()) +
    list(b.parameters())`, `filter(..., net.parameters())`, `[{"params": net.parameters()}]`).

    A plain walk, not libcst's visitor: the visitor rebuilt every node it passed, and this ran for
    each function that calls an unknown callable (29% of timm's extraction when it did)."""
    names: set[str] = set()
    # (a module: its own statements, `model = build(); opt = SGD(model.parameters())` in a script)
    body = list(fn.body) if type(fn) is cst.Module else list(fn.body.body) if isinstance(
        fn.body, cst.IndentedBlock) else []
    stack: list = list(body)
    optimizers: list[cst.Call] = []
    stepped: set[str] = set()  # names whose `.step()` is called
    bound: dict[str, list[cst.BaseExpression]] = {}  # `params = [p for p in model.parameters() if ...]`
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is cst.FunctionDef or kind is cst.ClassDef:
            continue  # a nested function's optimizer trains its own names
        if kind is cst.Assign and len(node.targets) == 1 and type(node.targets[0].target) is cst.Name:
            bound.setdefault(node.targets[0].target.value, []).append(node.value)
        if kind is cst.Call and _is_optimizer(qualify(node.func)):
            optimizers.append(node)
            continue
        if kind is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value == "step" and \
                type(node.func.value) is cst.Name:
            stepped.add(node.func.value.value)
        stack.extend(children(node))
    for name in stepped:
        # `opt = make_optimizer(model)`, then `opt.step()`: what a builder of the optimizer is
        # given is what it trains (named as one: `env = Simulator(reward_model); env.step(a)` is
        # no optimizer)
        for value in bound.get(name, ()):
            callee = dotted(value.func) if type(value) is cst.Call else None
            if callee and not _is_optimizer(qualify(value.func)) and _OPTIMIZER_WORD.search(callee.rpartition(".")[2]):
                names.update(a.value.value for a in value.args if type(a.value) is cst.Name)
    for node in optimizers:
        inner = [a.value for a in node.args]
        seen: set[str] = set()
        while inner:
            sub = inner.pop()
            if type(sub) is cst.Name and sub.value in bound and sub.value not in seen:
                seen.add(sub.value)  # a name the function binds to a list of some parameters
                inner.extend(bound[sub.value])
                continue
            func = sub.func if type(sub) is cst.Call else None
            if type(func) is cst.Attribute and func.attr.value in _PARAMETER_METHODS and type(func.value) is cst.Name:
                names.add(func.value.value)
            inner.extend(children(sub))
    return frozenset(names)
