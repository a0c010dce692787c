"""Which of a forward's outputs the architecture rules and its callers read: the main one, the
parts of a tuple it returns, and the extra outputs that are networks of their own (a detector's
box head, a critic, a second trained model), not a frozen teacher's or a detached copy.

A forward that returns a tuple or dict has one main output (the first, or the longest path made
from it) and maybe others; forward.py interprets the forward and hands its merged return value
here. What an output trains is read from its path: a cut the gradient cannot pass (`.detach()`,
`.data`), the mark of a value computed under no_grad (NO_GRAD) with no layer of its own after it,
or a first module that the class freezes (freezes.frozen_paths).

A module of the file called inside another's forward hands its caller the main output too, with
the tuple's parts beside it (parts_of, bound_inputs, rebased), for a caller that takes it apart.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import libcst as cst

from gradlint.model.ir import NO_GRAD_WHAT, Activation, Opaque, Passthrough, unfolded_size, walk_once
from gradlint.source.engine.values import UNKNOWN, DictVal, ListVal, PathVal, Sym
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
                 and not any(isinstance(n, Opaque) and (n.what in _STOPS or n.what == ELSEWHERE.what) for n in v.nodes)
                 and _trains_after_mark(v.nodes)]
        if heads:
            # (the classes' code is read only when there is such an output: rare, and printing it costs)
            frozen = _frozen_attributes(fm, cls)
            heads = [(k, nodes) for k, nodes in heads if _own_module(nodes, value.nodes) not in frozen]
    if isinstance(value, PathVal) and value.root == main_input:
        return value.nodes, heads
    return None, heads


# The input a part of a returned tuple is rooted at (parts_of), until the caller puts it after its
# own tensor (rebased); no forward's parameter has this name.
_INPUT = ""
# Where a part of a returned tuple is a tensor of another input of the module that the caller's
# arguments do not name (a default, `*args`): the part is the module's output through this node,
# as the whole tuple was before its parts were read; never an output of the caller's own (choose).
ELSEWHERE = Opaque("", "a tensor of another input, returned by a module")


def parts_of(value: Any, main_input: str) -> tuple | None:
    """The items of a tuple or list a module's forward returns (`return x, h`, `return out,
    (H, W)`), for a caller of the module that takes it apart: a path of `main_input` (its nodes
    since that input, rooted at _INPUT), a path of another input (rooted at its parameter), a
    plain value (None, a number, a string), a list of such, UNKNOWN for anything else. None when
    the value is no tuple or list.

    This is what lets the caller follow what it does with each item: `x, h = blk(x)` continues
    with the first item's nodes and `x, size = embed(x)` with the embedding's, where the tuple
    was opaque before; a caller that uses the value whole follows the main output (choose)."""
    if not isinstance(value, ListVal) or not value.items:
        return None
    return tuple(_part(v, main_input) for v in value.items)


def _part(v: Any, main_input: str) -> Any:
    if isinstance(v, PathVal):
        return PathVal(_INPUT if v.root == main_input else v.root, v.nodes)
    if isinstance(v, ListVal):
        return ListVal([_part(item, main_input) for item in v.items], v.is_tuple)
    if v is None or isinstance(v, (bool, int, float, str, Sym)):
        return v
    return UNKNOWN


def bound_inputs(fwd: cst.FunctionDef | None, given: list) -> dict[str, Any]:
    """What a call passes to each parameter of a module's forward (`blk(x, thw)`: {'x': ..., 'thw':
    ...}), given the call's (argument, value) pairs; only the parameters an argument names, by
    position up to the first starred argument, or by keyword."""
    if fwd is None:
        return {}
    names = [p.name.value for p in fwd.params.params[1:]]
    kwonly = {p.name.value for p in fwd.params.kwonly_params}
    out: dict[str, Any] = {}
    position = 0
    for a, v in given:
        if a.star:
            if a.star == "*":
                position = len(names)  # what follows is not placed
            continue
        if a.keyword is None:
            if position < len(names):
                out[names[position]] = v
            position += 1
        elif a.keyword.value in names or a.keyword.value in kwonly:
            out[a.keyword.value] = v
    return out


def rebased(parts: tuple | list, base: PathVal, main: PathVal, inputs: dict[str, Any]) -> list:
    """The parts of a tuple a module returned, as the caller's values: a path of its input
    continues `base`, the caller's tensor the module was called on; a path of another input
    continues what the caller passed for it (`inputs`: `return x, thw` hands back the caller's
    `thw`), or is ELSEWHERE's when that was no tensor the caller follows."""
    out: list = []
    for v in parts:
        if isinstance(v, PathVal) and v.root == _INPUT:
            out.append(PathVal(base.root, base.nodes + v.nodes))
        elif isinstance(v, PathVal):
            given = inputs.get(v.root, UNKNOWN)
            if isinstance(given, PathVal):
                out.append(PathVal(given.root, given.nodes + v.nodes))
            elif not v.nodes and given is not UNKNOWN:
                out.append(given)  # passed through as it came (a size, a flag)
            else:
                out.append(PathVal(main.root, main.nodes + (ELSEWHERE,)))
        elif isinstance(v, ListVal):
            out.append(ListVal(rebased(v.items, base, main, inputs), v.is_tuple))
        else:
            out.append(v)
    return out
