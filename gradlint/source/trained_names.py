"""Names a function trains: those whose `.parameters()` it hands to a torch optimizer.

`def train(net, loader): opt = torch.optim.Adam(net.parameters()); ... net(x)` never says what
`net` is, yet the optimizer it builds says that `net` holds the parameters this function
updates: calling it gives a value that carries their gradient, whatever class the caller passes.
The numerics evaluator reads an otherwise unknown callable through this (numerics_calls.py).
"""

from __future__ import annotations

from typing import Callable

import libcst as cst

# The methods that hand a module's trainable tensors to an optimizer.
_PARAMETER_METHODS = frozenset({"parameters", "named_parameters"})
# `torch.optim.lr_scheduler.X(opt)` and `torch.optim.swa_utils` take an optimizer or a model,
# not parameters: a name there is not shown to be trained.
_NOT_OPTIMIZERS = ("torch.optim.lr_scheduler.", "torch.optim.swa_utils.")


class _Finder(cst.CSTVisitor):
    def __init__(self, qualify: Callable[[cst.BaseExpression], frozenset[str]]):
        self.qualify = qualify
        self.names: set[str] = set()
        self.depth = 0  # inside the arguments of an optimizer's constructor

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False  # a nested function's optimizer trains its own names

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False

    def visit_Call(self, node: cst.Call) -> None:
        if self.depth:
            func = node.func
            if (type(func) is cst.Attribute and func.attr.value in _PARAMETER_METHODS
                    and type(func.value) is cst.Name):
                self.names.add(func.value.value)
        if _is_optimizer(self.qualify(node.func)):
            self.depth += 1

    def leave_Call(self, node: cst.Call) -> None:
        if _is_optimizer(self.qualify(node.func)):
            self.depth -= 1


def _is_optimizer(names: frozenset[str]) -> bool:
    return any(n.startswith("torch.optim.") and not n.startswith(_NOT_OPTIMIZERS) for n in names)


def trained_names(fn: cst.FunctionDef, qualify: Callable[[cst.BaseExpression], frozenset[str]]) -> frozenset[str]:
    """The plain names whose `.parameters()` (or `.named_parameters()`) reach the arguments of a
    `torch.optim` constructor in `fn`'s own body, however wrapped (`list(a.parameters()) +
    list(b.parameters())`, `filter(..., net.parameters())`, `[{"params": net.parameters()}]`)."""
    finder = _Finder(qualify)
    for stmt in fn.body.body if isinstance(fn.body, cst.IndentedBlock) else ():
        stmt.visit(finder)
    return frozenset(finder.names)
