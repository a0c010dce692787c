"""The model lowering places a layer in the function its constructor call was evaluated in, and a
class's name from the definitions paired alone: the same positions as libcst's regeneration of
the whole file, without the quick tables of every top-level statement above them."""

from __future__ import annotations

import libcst as cst

from gradlint.source import models, parse
from gradlint.source.engine.positions import LazyPositions

SOURCE = '''import torch
from torch import nn


def make_head(width, classes):
    """A factory: its layers are placed in it."""
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, classes))


def init_weights(m):
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)


class Base(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.norm = nn.LayerNorm(width)


@torch.jit.interface
class Block(Base):
    """é — a non-ASCII docstring above the layers."""

    def __init__(self, width, depth=2):
        super().__init__(width)
        self.proj = self._conv(width, 3)
        self.fc = (nn.Linear(width, width))  # a parenthesised call
        self.head = make_head(width, 10)
        self.apply(init_weights)
        nn.init.zeros_(self.fc.bias)

    def _conv(self, width, k):
        return nn.Conv2d(width, width, k, padding=k // 2)

    def forward(self, x):
        x = self.proj(x)
        return self.head(self.fc(self.norm(x)))


class   Spaced  (nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)

    async def forward(self, x):
        return self.a(x)


model = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
'''


def _regenerated(text: str):
    """The facts with every position from libcst's regeneration of the whole file."""
    src = parse("t.py", text)
    src.positions._resolve_all()  # `whole`: get() answers from the regenerated table alone
    saved = LazyPositions.span_in
    LazyPositions.span_in = lambda self, fdef, node: None  # type: ignore[method-assign]
    try:
        return models.extract(src)
    finally:
        LazyPositions.span_in = saved  # type: ignore[method-assign]


def test_layer_and_class_positions_are_the_regenerated_ones() -> None:
    src = parse("t.py", SOURCE)
    networks, summaries = models.extract(src)
    want_networks, want_summaries = _regenerated(SOURCE)
    assert networks == want_networks and summaries == want_summaries
    # the file has what the lowering places: layers of a factory, of a nested function, of a base
    # class's __init__, a parenthesised call, an init function; classes with decorators and spaces
    origins = {(p.name, p.origin.line) for n in networks for p in getattr(n, "params", ())}
    assert {("proj", 34), ("head.0", 7), ("fc", 28), ("0", 50)} <= origins
    assert [(n.origin.line, n.origin.column) for n in networks if n.name == "Spaced"] == [(41, 9)]


def test_layers_built_in_init_need_no_table_of_the_whole_class() -> None:
    src = parse("t.py", SOURCE.split("\n\nmodel = ")[0])  # a module-level layer is placed by the tables
    models.extract(src)
    # every layer of Block was placed in its __init__ (or the function that built it): the top-level
    # statement tables, each a walk of a whole class, were never built for the classes
    classes = [i for i, stmt in enumerate(src.module.body) if isinstance(stmt, cst.ClassDef)]
    assert src.positions.function_quick
    assert not any(i in src.positions.quick for i in classes)


def test_a_call_not_in_the_given_function_is_placed_without_it() -> None:
    src = parse("t.py", SOURCE)
    block = next(s for s in src.module.body if isinstance(s, cst.ClassDef) and s.name.value == "Block")
    init, _conv, forward = (s for s in block.body.body if isinstance(s, cst.FunctionDef))
    call = next(n for n in _calls(init) if cst.ensure_type(n.func, cst.Attribute).attr.value == "_conv")
    # a wrong `within` (forward) is refused at once by its table and the position comes from the file
    assert src.positions.span_in(forward, call) is None
    assert id(forward) not in src.positions.tables  # no regeneration of forward for it
    assert src.span(call, within=forward) == src.span(call) == src.span(call, within=init)


def _calls(node: cst.CSTNode) -> list[cst.Call]:
    from gradlint.source.engine.walk import walk

    return [n for n in walk(node, stop=()) if isinstance(n, cst.Call) and isinstance(n.func, cst.Attribute)]
