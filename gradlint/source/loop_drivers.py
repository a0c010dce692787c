"""Functions a framework calls once per batch: the body of a training loop the file does not write.

Ignite's `Engine(update)` calls `update(engine, batch)` for every batch, and Lightning calls a
LightningModule's `training_step` for every batch; under manual optimisation
(`self.automatic_optimization = False`) neither framework clears the gradients (Lightning's
manual loop runs only `training_step`; Ignite runs only the process function). Such a function
is an iteration of a loop, which the GL2xx rules read as they read a written loop's body.
"""

from __future__ import annotations

import libcst as cst

from gradlint.facts.training import Function, in_bases
from gradlint.source.engine.calls import arg as _arg
from gradlint.source.engine.walk import walk

IGNITE_ENGINES = frozenset({"ignite.engine.Engine", "ignite.engine.engine.Engine",
                            "ignite.engine.DeterministicEngine", "ignite.engine.deterministic.DeterministicEngine"})
# Ignite's ready-made trainers: their update function runs backward and step with no clipping
# and no way to add one before the step (a handler runs after it).
IGNITE_TRAINERS = frozenset({"ignite.engine.create_supervised_trainer",
                             "ignite.contrib.engines.create_supervised_tbptt_trainer",
                             "ignite.contrib.engines.tbptt.create_supervised_tbptt_trainer"})
# What the facts say drives a function: the words a message uses.
IGNITE = "ignite"
LIGHTNING_MANUAL = "lightning-manual"

_SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)


def driven(src, functions: tuple[Function, ...], scope_nodes: dict, qualify, manual_classes: tuple[str, ...],
           classes: dict[str, tuple[str, ...]]) -> tuple[tuple[int, str], ...]:
    """(function id, what drives it) for each function of the file a framework calls per batch.
    `scope_nodes`: function id -> its FunctionDef (None for the module)."""
    out: list[tuple[int, str]] = []
    if manual_classes:
        manual = set(manual_classes)
        for f in functions:
            # a subclass of the file's manual module inherits its setting
            if f.cls and f.name == "training_step" and in_bases(f.cls, classes, lambda c: True if c in manual else None):
                out.append((f.id, LIGHTNING_MANUAL))
    if "ignite" in src.text and "Engine" in src.text:
        seen = {fid for fid, _ in out}
        for fid in _ignite_functions(src, functions, scope_nodes, qualify):
            if fid not in seen:
                seen.add(fid)
                out.append((fid, IGNITE))
    return tuple(out)


def _ignite_functions(src, functions: tuple[Function, ...], scope_nodes: dict, qualify):
    """The functions of the file handed to an Ignite Engine as its process function: a name of a
    function defined in the calling scope or one around it (`def _update(engine, batch)` inside
    `create_trainer()`), or `self.method` of the calling method's class."""
    by_id = {f.id: f for f in functions}
    for fid, node in scope_nodes.items():
        f = by_id.get(fid)
        if f is None:
            continue
        body = src.module if node is None else node.body
        for n in walk(body, stop=_SCOPES):
            if type(n) is not cst.Call or qualify(n.func).isdisjoint(IGNITE_ENGINES):
                continue
            given = _arg(n, 0, "process_function")
            target = _resolve(given, f, by_id, functions) if given is not None else None
            if target is not None:
                yield target


def _resolve(given: cst.BaseExpression, caller: Function, by_id: dict[int, Function],
             functions: tuple[Function, ...]) -> int | None:
    if type(given) is cst.Name:
        scope: int | None = caller.id
        while scope is not None:
            hit = next((g.id for g in functions if g.name == given.value and g.cls is None and g.parent == scope), None)
            if hit is not None:
                return hit
            parent = by_id.get(scope)
            scope = parent.parent if parent is not None else None
        return None
    if (type(given) is cst.Attribute and type(given.value) is cst.Name and given.value.value == "self"
            and caller.cls):
        return next((g.id for g in functions if g.cls == caller.cls and g.name == given.attr.value), None)
    return None
