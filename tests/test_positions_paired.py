"""Positions placed from CPython's ast (span_in's paired table) are the ones libcst's own code
regeneration gives: every statement, call and expression of every function of a file that mixes
the shapes the pairing must get right."""

from __future__ import annotations

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from gradlint.findings import SourceSpan
from gradlint.source import parse
from gradlint.source.engine.walk import walk
from gradlint.text import split_lines

SOURCE = '''import torch


@torch.no_grad()
def evaluate(model, loader, *, device="cpu"):
    a = 1; b: int = 2  # two statements on a line
    total = 0.0
    for x, y in loader:
        if x is None:
            continue
        elif y is None:
            break
        else:
            out = model(x.to(device),
                        y)  # a call over two lines
        try:
            total += (out.sum()
                      .item())
        except (ValueError, TypeError) as exc:
            raise RuntimeError("bad") from exc
        finally:
            pass
    with torch.autocast("cpu"), open("f") as fh:
        print("é", fh.read(), "ü")  # non-ASCII before a call
    while total > 1:
        total /= 2
    assert total >= 0, "negative"
    del a, b
    return [torch.relu(t) for t in (1, 2)], lambda z: z + 1


class Trainer:
    def step(self, opt, loss):
        global STEP
        opt.zero_grad(); loss.backward()
        (opt.step())

        async def inner():
            async with self.lock:
                async for item in self.items():
                    await item
        return inner
'''


def _by_codegen(src, fdef: cst.FunctionDef, lines: tuple[int, int]) -> dict[int, SourceSpan]:
    """What span_in gave for every node before the pairing: the function regenerated alone."""
    positions = src.positions
    sub = cst.Module(body=[fdef], default_indent=src.module.default_indent, default_newline=src.module.default_newline)
    found = MetadataWrapper(sub, unsafe_skip_copy=True).resolve(PositionProvider)
    shift = lines[0] - found[fdef.name].start.line
    sub_lines = split_lines(sub.code)
    return {id(node): SourceSpan(rng.start.line + shift, positions._column(rng.start.line, rng.start.column, shift, sub_lines) + 1,
                                 rng.end.line + shift, positions._column(rng.end.line, rng.end.column, shift, sub_lines) + 1)
            for node, rng in found.items() if node is not sub}


def test_paired_positions_are_the_regenerated_ones() -> None:
    src = parse("t.py", SOURCE)
    fdefs = [n for n in walk(src.module, stop=()) if isinstance(n, cst.FunctionDef)]
    assert len(fdefs) == 3 and src.positions.functions_paired()
    kinds: set[str] = set()
    for fdef in fdefs:
        want = _by_codegen(src, fdef, src.positions.function_lines(fdef))
        paired = src.positions._paired(fdef, [src.positions.def_nodes[id(fdef)]], statements=True)
        assert paired  # the two trees agree on this file
        for node in walk(fdef, stop=()):
            if id(node) in paired:
                kinds.add(type(node).__name__)
                assert src.positions.span_in(fdef, node) == want[id(node)], (type(node).__name__, src.code(node))
    # the shapes above were placed by the pairing, not by the regeneration
    assert {"SimpleStatementLine", "Assign", "AnnAssign", "AugAssign", "If", "For", "Try", "With", "While",
            "Raise", "Assert", "Del", "Return", "Call", "Attribute", "Global", "Expr", "Continue", "Break"} <= kinds


def test_a_statement_of_a_file_with_form_feeds_is_placed_by_the_regeneration() -> None:
    text = SOURCE.replace("    total = 0.0\n", "\f    total = 0.0\n", 1)
    src = parse("t.py", text)
    fdef = next(n for n in walk(src.module, stop=()) if isinstance(n, cst.FunctionDef))
    stmt = fdef.body.body[2]
    assert src.positions.span_in(fdef, stmt) == _by_codegen(src, fdef, src.positions.function_lines(fdef))[id(stmt)]
    assert id(fdef) not in src.positions.function_quick
