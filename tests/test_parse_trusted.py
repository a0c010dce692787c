"""source.parse_trusted: libcst's parse without its validation of the parser's own nodes, with
plain slot-storing __init__s for its node classes while it parses (compiled for the most frequent,
made without a compile for the others). The trees must be
the ones libcst's own parse builds, and libcst must be left as it was, even after a failed parse."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import libcst as cst
import pytest

from gradlint import source
from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parent.parent
TEXTS = sorted([*FIXTURES.rglob("*.py"), *(ROOT / "gradlint" / "source").rglob("*.py")])


def _libcst_as_it_was() -> None:
    for cls, init, _plain in source._plain_inits():
        if init is not None:
            assert vars(cls)["__init__"] is init
    assert cst.CSTNode.__post_init__ is source._post_init()[0]
    with pytest.raises(cst.CSTValidationError):
        cst.Name("not a name")  # validation is back for everyone else


def test_frequent_classes_get_a_plain_init():
    made = {cls.__name__ for cls, _init, plain in source._plain_inits() if plain is not None}
    assert {"SimpleWhitespace", "Name", "Comma", "Arg", "Call"} <= made


@pytest.mark.parametrize("path", TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_tree_is_libcsts_own(path):
    text = source.decode(path.read_bytes())
    try:
        want = cst.parse_module(source._formfeed_indents_dropped(text))  # libcst's own parse
    except Exception as exc:  # noqa: BLE001 - a file libcst refuses is refused the same way
        with pytest.raises(type(exc)):
            source.parse_trusted(text)
    else:
        got = source.parse_trusted(text)
        assert got.deep_equals(want) and got.code == want.code
    _libcst_as_it_was()


def test_a_failed_parse_leaves_libcst_as_it_was():
    with pytest.raises(cst.ParserSyntaxError):
        source.parse_trusted("def f(:\n")
    _libcst_as_it_was()


def test_plain_inits_store_what_the_dataclass_init_stores():
    module = source.parse_module("def f(a: int = 1, *b, **c):\n    return g(a, k=[1, 'x'], *b)  # c\n\nx.y = f(2)\n")
    plain = {cls: init for cls, _orig, init in source._plain_inits() if init is not None}
    seen = set()
    stack: list = [module]
    while stack:
        node = stack.pop()
        fields = {f.name: getattr(node, f.name) for f in dataclasses.fields(node)}
        for value in fields.values():
            stack.extend(v for v in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(v, cst.CSTNode))
        init = plain.get(type(node))
        if init is None:
            continue
        seen.add(type(node))
        made = object.__new__(type(node))
        init(made, **fields)
        assert made.deep_equals(node)
        # the defaults too: only the fields without one given
        required = {f.name: fields[f.name] for f in dataclasses.fields(node)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        made = object.__new__(type(node))
        init(made, **required)
        assert made.deep_equals(type(node)(**required))
    assert {cst.SimpleWhitespace, cst.Name, cst.Arg, cst.Call, cst.Param, cst.Attribute} <= seen
    # the classes with a keyword __init__ (no compile) too
    assert {cst.FunctionDef, cst.Parameters, cst.Return, cst.IndentedBlock, cst.Comment} <= seen


def test_a_keyword_init_leaves_other_calls_to_the_class_own():
    inits = {cls: init for cls, _orig, init in source._plain_inits() if init is not None}
    init = inits[cst.Return]
    assert init.__code__.co_filename != "<string>"  # nothing compiled for it
    made = object.__new__(cst.Return)
    with pytest.raises(TypeError):
        init(made, value=None, not_a_field=1)
    init(made, cst.Name("x"))  # by position: the dataclass's own __init__
    assert made.deep_equals(cst.Return(cst.Name("x")))
    with pytest.raises(TypeError):
        inits[cst.Subscript](object.__new__(cst.Subscript), value=cst.Name("x"))  # `slice` missing


def test_the_native_parser_runs_without_an_import_per_node(monkeypatch):
    """libcst's parser looks `libcst` up once per node it builds through `__import__`; called from
    parse_module, the builtins of its frame answer that without an import (source/__init__.py)."""
    import builtins

    text = "x = f(a, b)\n" * 200
    source.parse_module(text)  # libcst and its parser imported
    real = builtins.__import__
    calls: list[str] = []

    def counting(name, *args, **kwargs):
        calls.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", counting)
    got = source.parse_module(text)
    assert calls.count("libcst") < 10
    calls.clear()
    want = cst.parse_module(text)  # libcst's own way: one import per node
    assert calls.count("libcst") > 1000
    monkeypatch.setattr(builtins, "__import__", real)
    assert got.deep_equals(want) and got.code == text
    # what the frame's builtins hold is seen by that frame only
    assert "__import__" in vars(builtins) and builtins.__import__ is real


def test_a_parser_that_needs_an_import_is_run_the_usual_way(monkeypatch):
    def needs_an_import(text, encoding):
        raise KeyError("libcst.not_imported_yet")  # what PyImport_Import raises with our builtins

    monkeypatch.setattr(source, "_native_parse", lambda: needs_an_import)
    module = source.parse_module("y = 1\n")
    assert isinstance(module, cst.Module) and module.code == "y = 1\n"
