"""Which of a forward's outputs the architecture rules read: the main one, and the extra outputs
that are networks of their own (a detector's box head, a critic, a second trained model), not a
frozen teacher's or a detached copy.

A forward that returns a tuple or dict has one main output (the first, or the longest path made
from it) and maybe others; forward.py interprets the forward and hands its merged return value
here. What an output trains is read from its path: a cut the gradient cannot pass (`.detach()`,
`.data`), the mark of a value computed under no_grad (NO_GRAD) with no layer of its own after it,
or a first module that the class freezes (freezes.frozen_paths).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gradlint.model.ir import NO_GRAD_WHAT, Activation, Opaque, Passthrough, unfolded_size, walk_once
from gradlint.source.engine.values import DictVal, ListVal, PathVal
from gradlint.source.engine.walk import text
from gradlint.source.freezes import frozen_paths


# What the gradient cannot pass (the reasons of the Opaque nodes forward makes of them).
_STOPS = frozenset({".detach()", ".data", ".detach_()"})


# The mark on a path computed without gradient (a teacher's output under `torch.no_grad()`): it
# changes no scale, so a first output made from it is modelled as before, but no chain runs
# across it (model/propagation: the layers before it get no gradient through this path).
NO_GRAD = Passthrough("", NO_GRAD_WHAT)


def no_grad_mark(v: Any) -> Any:
    """A path (or the paths of a tuple) computed without gradient, marked so (NO_GRAD)."""
    if isinstance(v, ListVal):
        return dataclasses.replace(v, items=[no_grad_mark(item) for item in v.items])
    if isinstance(v, DictVal):
        return dataclasses.replace(v, items={k: no_grad_mark(item) for k, item in v.items.items()})
    if isinstance(v, PathVal) and not _marked(v.nodes):
        return PathVal(v.root, v.nodes + (NO_GRAD,))
    return v


def _marked(nodes: tuple) -> bool:
    return any(n is NO_GRAD or n == NO_GRAD for n in nodes)


def _trains_after_mark(nodes: tuple) -> bool:
    """Whether a path has a layer of its own after the last point computed without gradient (a
    head on detached features trains its layers; a teacher's output, with nothing after its mark,
    trains nothing), or has no such point."""
    last = max((i for i, n in enumerate(nodes) if n is NO_GRAD or n == NO_GRAD), default=None)
    if last is None:
        return True
    return any(not isinstance(n, (Activation, Passthrough, Opaque)) for n in walk_once(nodes[last + 1:]))


def _own_module(nodes: tuple, main: tuple) -> str:
    """The attribute (`teacher`) of the first named node of an output's path that the first
    output's path does not hold: the module that output runs of its own."""
    inside = _Nodes(main)
    for n in walk_once(nodes):
        name = getattr(n, "name", "")
        if name and n not in inside:
            return name.split(".")[0]
    return ""


def _frozen_attributes(fm: Any, info: Any) -> set[str]:
    """The attributes `self.x` that a class, or a base of it in this file, freezes on a line of its
    own code (freezes.frozen_paths). Not `.eval()` nor `.train(False)`: a train() override that
    puts a module's BatchNorm in eval mode still trains it."""
    found: set[str] = set()
    todo, seen = [info], set()
    while todo and len(seen) < 16:
        c = todo.pop()
        if id(c) in seen:
            continue
        seen.add(id(c))
        found.update(path.split(".")[1] for path in frozen_paths(text(c.node)))
        todo.extend(b for b in (fm.classes.get(base) for base in c.bases) if b is not None)
    return found


class _Nodes:
    """The nodes of a path (its top level and inside residuals' bodies), each once, for `in`: the
    node itself, or one equal to it."""

    def __init__(self, nodes: tuple) -> None:
        self.nodes = list(walk_once(nodes))
        self.ids = {id(n) for n in self.nodes}

    def __contains__(self, node: object) -> bool:
        # (mostly the node itself, both paths built from the same values; equality is the rare
        # case, and compares whole residual bodies)
        return id(node) in self.ids or any(node == m for m in self.nodes)


def _holds(nodes: tuple, part: tuple) -> bool:
    """Whether a path holds every node of `part` (at its top level or inside a residual's body)."""
    inside = _Nodes(nodes)
    return all(n in inside for n in part)


def choose(value: Any, main_input: str, fm: Any, cls: Any) -> tuple[tuple | None, list[tuple[str, tuple]]]:
    """The main output's path (None when the forward's value is no path from `main_input`) and the
    extra outputs read as networks of their own, each with its label (`output 3`, or a dict's key).

    Of a tuple of outputs the main one is the first (a model's `hidden, attn` its hidden states, a
    multi-task model's main head), or the longest of those made from it (LAVT's layer returns
    `x_residual, x` with `x = x + gate(x_residual) * x_residual`: the gate is on the path). Never
    one that leaves it out: a longer auxiliary head would drop the main output's path. The others
    are read as networks of their own (models.extract): also behind an opaque op that passes the
    gradient (roi_align). Not one the gradient cannot pass (`f.detach()`, `.data`, a value computed
    under no_grad that the first output does not share), nor one whose own first module the class
    freezes (a teacher: `.requires_grad_(False)`, its parameters' `requires_grad = False`)."""
    keys = None
    heads: list[tuple[str, tuple]] = []
    if isinstance(value, DictVal):
        keys = [f'"{k}"' for k in value.items]
        value = ListVal(list(value.items.values()))  # a dict of outputs: as a tuple of its values
    if isinstance(value, ListVal):
        items = value.items
        firsts = [v for v in value.items if isinstance(v, PathVal) and v.root == main_input]
        value = max((v for v in firsts if _holds(v.nodes, firsts[0].nodes)),
                    key=lambda v: unfolded_size(v.nodes)) if firsts else None
        labels = list(keys) if keys is not None else [f"output {i + 1}" for i in range(len(items))]
        heads = [(labels[i], v.nodes) for i, v in enumerate(items)
                 if isinstance(v, PathVal) and v.root == main_input and value is not None
                 and v.nodes and value.nodes and not _holds(value.nodes, v.nodes) and v.nodes != value.nodes
                 and not any(isinstance(n, Opaque) and n.what in _STOPS for n in v.nodes)
                 and _trains_after_mark(v.nodes)]
        if heads:
            # (the classes' code is read only when there is such an output: rare, and printing it costs)
            frozen = _frozen_attributes(fm, cls)
            heads = [(k, nodes) for k, nodes in heads if _own_module(nodes, value.nodes) not in frozen]
    if isinstance(value, PathVal) and value.root == main_input:
        return value.nodes, heads
    return None, heads
