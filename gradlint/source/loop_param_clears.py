"""Loops that clear every parameter's gradient by hand: `for p in model.parameters(): p.grad = None`
(the PyTorch performance guide's zero_grad), `p.grad.zero_()` or `p.grad = torch.zeros_like(p.grad)`
under `if p.grad is not None:`. The training-loop extractor (loops.py) reads such a loop as one clear
of the model, as `model.zero_grad()` is, not as a loop of clears (GL205 and GL208 compare clears
with steps and backward calls)."""

from __future__ import annotations

import dataclasses

import libcst as cst

from gradlint.facts.training import Block, Event
from gradlint.source.names import dotted


def whole_model_clear(stmt: cst.For | cst.While, body: Block) -> Block | None:
    """The body of `for p in model.parameters():`, read by the extractor, as one clear of `model`
    when clearing each parameter's gradient is all it does to them; None otherwise."""
    owner = _parameters_of(stmt)
    clears = _parameter_clears(body, stmt.target.value) if owner else None
    if not clears:
        return None
    return dataclasses.replace(body, kind="body", items=tuple(dataclasses.replace(e, target=owner, name=stmt.target.value)
                                                              for e in clears))


def _parameters_of(stmt: cst.CSTNode) -> str:
    """The module, as written, of `for p in model.parameters():` (a plain loop variable); '' else."""
    if type(stmt) is not cst.For or type(stmt.target) is not cst.Name:
        return ""
    it = stmt.iter
    if type(it) is cst.Call and not it.args and type(it.func) is cst.Attribute and it.func.attr.value == "parameters":
        return dotted(it.func.value) or ""
    return ""


_FRESH = ("zeros_like", "zeros", "empty_like", "new_zeros", "full_like", "new_full", "new_empty")


def fresh_tensor(value: cst.BaseExpression) -> bool:
    """A new tensor that takes only a shape from its arguments: `torch.zeros_like(p.grad)`,
    `p.grad.new_zeros(p.shape)`."""
    return type(value) is cst.Call and type(value.func) in (cst.Name, cst.Attribute) and (
        (value.func.value if type(value.func) is cst.Name else value.func.attr.value) in _FRESH)


def _tests_grad_present(test: str, var: str) -> bool:
    """`p.grad is not None`, in parentheses or after `p.requires_grad and`: a test that lets every
    parameter with a gradient through."""
    t = " ".join(test.split())
    while t.startswith("(") and t.endswith(")"):
        t = t[1:-1].strip()
    present = f"{var}.grad is not None"
    return t in (present, f"{var}.requires_grad and {present}", f"{present} and {var}.requires_grad")


def _parameter_clears(body: Block, var: str) -> list[Event] | None:
    """The clears of the body of `for var in model.parameters():` when that is all it does to
    each parameter's gradient: `var.grad = None`, `var.grad.zero_()`, `var.grad.data.zero_()`,
    either under `if var.grad is not None:` (nothing in an else); None otherwise."""
    mine = (var, f"{var}.grad", f"{var}.grad.data")
    found: list[Event] = []
    for it in body.items:
        if isinstance(it, Event):
            if it.kind != "clear" or it.target not in mine:
                return None
            found.append(it)
        elif it.kind == "if" and len(it.items) == 2 and _tests_grad_present(it.test, var) and not it.items[1].items:
            inner = _parameter_clears(it.items[0], var)
            if not inner:
                return None
            found.extend(inner)
        else:
            return None
    return found or None
