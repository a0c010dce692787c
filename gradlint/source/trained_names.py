"""Names a function trains: those whose `.parameters()` it hands to a torch optimizer.

`def train(net, loader): opt = torch.optim.Adam(net.parameters()); ... net(x)` never says what
`net` is, yet the optimizer it builds says that `net` holds the parameters this function
updates: calling it gives a value that carries their gradient, whatever class the caller passes.
The numerics evaluator reads an otherwise unknown callable through this (numerics_calls.py).
"""

from __future__ import annotations

from typing import Callable

import libcst as cst

from gradlint.source.engine.walk import children

# The methods that hand a module's trainable tensors to an optimizer.
_PARAMETER_METHODS = frozenset({"parameters", "named_parameters"})
# `torch.optim.lr_scheduler.X(opt)` and `torch.optim.swa_utils` take an optimizer or a model,
# not parameters: a name there is not shown to be trained.
_NOT_OPTIMIZERS = ("torch.optim.lr_scheduler.", "torch.optim.swa_utils.")


def _is_optimizer(names: frozenset[str]) -> bool:
    return any(n.startswith("torch.optim.") and not n.startswith(_NOT_OPTIMIZERS) for n in names)


def trained_names(fn: cst.FunctionDef | cst.Module, qualify: Callable[[cst.BaseExpression], frozenset[str]]) -> frozenset[str]:
    """The plain names whose `.parameters()` (or `.named_parameters()`) reach the arguments of a
    `torch.optim` constructor in `fn`'s own body, however wrapped (`list(a.parameters()) +
    list(b.parameters())`, `filter(..., net.parameters())`, `[{"params": net.parameters()}]`).

    A plain walk, not libcst's visitor: the visitor rebuilt every node it passed, and this ran for
    each function that calls an unknown callable (29% of timm's extraction when it did)."""
    names: set[str] = set()
    # (a module: its own statements, `model = build(); opt = SGD(model.parameters())` in a script)
    stack: list = list(fn.body) if type(fn) is cst.Module else list(fn.body.body) if isinstance(
        fn.body, cst.IndentedBlock) else []
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is cst.FunctionDef or kind is cst.ClassDef:
            continue  # a nested function's optimizer trains its own names
        if kind is cst.Call and _is_optimizer(qualify(node.func)):
            inner = [a.value for a in node.args]
            while inner:
                sub = inner.pop()
                func = sub.func if type(sub) is cst.Call else None
                if type(func) is cst.Attribute and func.attr.value in _PARAMETER_METHODS and type(func.value) is cst.Name:
                    names.add(func.value.value)
                inner.extend(children(sub))
            continue
        stack.extend(children(node))
    return frozenset(names)
