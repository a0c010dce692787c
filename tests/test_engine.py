"""The shared core of the source interpreters (gradlint/source/engine): folding, values, arguments, walks, positions."""

from __future__ import annotations

import ast
import math

import libcst as cst
import pytest

from gradlint.source import parse
from gradlint.source.engine.calls import arg, arguments, bind, split
from gradlint.source.engine.fold import constant, number
from gradlint.source.engine.values import int_literal, is_number, str_literal, truth
from gradlint.source.engine.walk import children, comprehensions, evaluated_children, headers, suite, text, walk


def expr(code: str) -> cst.BaseExpression:
    return cst.parse_expression(code)


@pytest.mark.parametrize("code, value", [
    ("3", 3), ("0x10", 16), ("1_000", 1000), ("-2", -2), ("+2.5", 2.5), ("1 - 1e-7", 1 - 1e-7),
    ("7 // 2", 3), ("7 % 4", 3), ("2 ** 10", 1024), ("(1 + 2) * 3", 9), ("1 / 4", 0.25),
    ("float('inf')", math.inf), ("float(' Infinity ')", math.inf), ("-float('inf')", -math.inf),
    ("math.inf", math.inf), ("torch.inf", math.inf), ("np.inf", math.inf), ("math.pi", math.pi),
    ("'inf'", math.inf), ("float(3)", 3.0),
])
def test_constant_folds_literals_and_arithmetic(code, value):
    assert constant(expr(code)) == value
    assert type(constant(expr(code))) is type(value)


@pytest.mark.parametrize("code", [
    "9 ** 9 ** 9", "2 ** 65", "18446744073709551616 + 1", "1 / 0", "1 % 0", "1e400", "2 * math.inf",
    "x", "x + 1", "~1", "not 0", "True", "None", "'abc'", "float('nan')", "float('-inf')", "float(x)",
    "a.math.pi", "math.tau", "1 << 3", "(-8) ** 0.5", "float(*a)",
])
def test_constant_is_none_for_what_it_cannot_compute_within_budget(code):
    assert constant(expr(code)) is None
    assert number(expr(code)) is None


def test_constant_reads_names_from_an_environment():
    env = {"WIDTH": 256, "SCALE": 0.5, "FLAG": True, "NAME": "relu", "HUGE": 2 ** 70}
    assert constant(expr("WIDTH * 4"), env) == 1024
    assert constant(expr("-SCALE"), env) == -0.5
    assert constant(expr("FLAG"), env) is None  # a flag, not a number
    assert constant(expr("NAME"), env) is None
    assert constant(expr("HUGE"), env) is None  # over the budget
    assert constant(expr("OTHER + 1"), env) is None
    assert constant(expr("WIDTH")) is None  # no environment: a name is unknown


def test_number_is_the_float_of_the_constant():
    assert number(expr("3")) == 3.0 and isinstance(number(expr("3")), float)
    assert number(None) is None


def test_folding_deep_expressions_stops_at_the_depth_budget():
    deep = expr("1" + " + 1" * 300)
    assert constant(deep) is None  # past MAX_EXPR_DEPTH: unknown, no RecursionError
    assert constant(expr("1" + " + 1" * 50)) == 51


def test_values():
    assert is_number(1) and is_number(1.5) and not is_number(True) and not is_number("1")
    assert int_literal(cst.Integer("0o17")) == 15 and int_literal(cst.Integer("00")) == 0
    assert str_literal(cst.SimpleString("'''a'b'''")) == "a'b"
    assert str_literal(cst.SimpleString(r"'a\tb'")) == "a\tb"
    assert str_literal(cst.SimpleString("b'x'")) == b"x"
    assert [truth(v) for v in (None, False, 0, 0.0, "", 2, "x", True)] == [False] * 5 + [True] * 3
    assert truth(object()) is None and truth([1]) is None  # an interpreter's values are its own


def test_arguments_positional_keyword_and_stars():
    call = expr("f(a, b, *rest, c, key=d, **kw)")
    args = arguments(call)
    assert [text(a) for a in args.positional] == ["a", "b", "c"]
    assert {k: text(v) for k, v in args.keywords.items()} == {"key": "d"}
    assert args.star == 2 and args.double_star
    plain = arguments(expr("f(a, key=b)"))
    assert plain.star is None and not plain.double_star
    pos, kw = split(call)
    assert len(pos) == 3 and list(kw) == ["key"]


def test_arg_keyword_first_then_position():
    call = expr("clip(params, 1.0, norm_type=2)")
    assert text(arg(call, 1, "max_norm")) == "1.0"
    assert text(arg(call, 2, "norm_type")) == "2"
    assert text(arg(call, 2, ("p", "norm_type"))) == "2"
    assert arg(call, 5, "missing") is None
    assert arg(call, -1, "max_norm") is None  # keyword-only lookups
    assert arg(call, None, "max_norm") is None
    assert text(arg(expr("f(*xs, y)"), 0, "a")) == "y"  # *args are not counted (see Arguments.star)


def test_children_are_in_source_order():
    node = expr("a() if b() else c()")
    assert [text(c) for c in children(node)] == ["a()", "b()", "c()"]
    assert [text(c) for c in evaluated_children(node)] == ["b()", "a()", "c()"]  # the test runs first
    assert [text(n) for n in walk(node) if isinstance(n, cst.Call)] == ["b()", "a()", "c()"]
    module = cst.parse_module("@deco\nclass K(Base):\n    x = 1\n")
    cls = module.body[0]
    assert [type(c).__name__ for c in children(cls)] == ["Decorator", "Name", "Arg", "IndentedBlock"]


def test_walk_is_pre_order_and_stops_at_lambdas():
    node = expr("f(g(x), lambda: h(y))")
    calls = [text(n) for n in walk(node) if isinstance(n, cst.Call)]
    assert calls == ["f(g(x), lambda: h(y))", "g(x)"]
    assert len([n for n in walk(node, stop=()) if isinstance(n, cst.Call)]) == 3


def test_suite_headers_and_comprehensions():
    module = cst.parse_module("for i in range(3): f(i)\nwith a() as b, c():\n    pass\nwhile t:\n    pass\n")
    loop, with_, while_ = module.body
    assert [type(s).__name__ for s in suite(loop.body)] == ["SimpleStatementSuite"]
    assert [type(s).__name__ for s in suite(with_.body)] == ["SimpleStatementLine"]
    assert [text(h) for h in headers(loop)] == ["i", "range(3)"]
    assert [text(h) for h in headers(with_)] == ["a()", "c()"]
    assert [text(h) for h in headers(while_)] == ["t"]
    assert headers(module.body[0].body) == []
    comp = expr("[x for a in b if a for x in a]")
    assert [text(c.target) for c in comprehensions(comp.for_in)] == ["a", "x"]


_FUNCTIONS = (
    "import torch\n"
    "x = 1\n"
    "class T:\n"
    "    def fit(self, loader):\n"
    "        for x in loader:\n"
    "            loss = self.model(\n"
    "                x)\n"
    "            torch.nn.utils.clip_grad_norm_(self.model.parameters(),\n"
    "                                           1.0); loss.backward()\n"
    "\n"
    "def step(opt):\n"
    "    opt.step()\n"
)


@pytest.mark.parametrize("source", [_FUNCTIONS, _FUNCTIONS.replace("        for x", "\f        for x")],
                         ids=["plain", "form-feed"])
def test_positions_within_a_function_match_the_whole_statement_ones(source):
    src = parse("t.py", source)
    functions = [n for n in walk(src.module, stop=()) if isinstance(n, cst.FunctionDef)]
    assert src.positions.functions_paired()
    assert [src.positions.def_line(f) for f in functions] == [4, 11]
    assert src.positions.function_lines(functions[0]) == (4, 9)
    for fdef in functions:
        nodes = [n for n in walk(fdef, stop=()) if isinstance(n, (cst.Call, cst.Name, cst.For))]
        assert nodes
        if "\f" in source and fdef.name.value == "fit":
            loop = next(n for n in nodes if isinstance(n, cst.For))
            assert src.span(loop, within=fdef).column == 10  # the form feed is a column of the file
        for node in nodes:
            assert src.positions.span_in(fdef, node) is not None  # resolved with the function alone
            fresh, same = _same(node, fdef, source)
            assert src.span(node, within=fdef) == fresh.span(same)


def _same(node, fdef, source):
    """The node at the same place in a fresh parse (positions resolved the whole-statement way)."""
    fresh = parse("t.py", source)
    ours = list(walk(fdef, stop=()))
    theirs_def = [n for n in walk(fresh.module, stop=()) if isinstance(n, cst.FunctionDef)
                  and n.name.value == fdef.name.value][0]
    return fresh, list(walk(theirs_def, stop=()))[ours.index(node)]


def test_positions_give_up_function_pairing_when_the_trees_disagree():
    src = parse("t.py", _FUNCTIONS)
    src.positions.tree = ast.parse("def other():\n    pass\n")  # not this text's tree: cannot pair
    fdef = next(n for n in walk(src.module, stop=()) if isinstance(n, cst.FunctionDef))
    assert not src.positions.functions_paired()
    assert src.positions.function_lines(fdef) is None and src.positions.def_line(fdef) == 0
    call = next(n for n in walk(fdef) if isinstance(n, cst.Call))
    assert src.span(call, within=fdef) == src.span(call)  # falls back to the whole statement


def test_statement_lines_of_top_level_statements():
    src = parse("t.py", _FUNCTIONS)
    lines = [(type(s).__name__, first, last) for s, first, last in src.positions.statement_lines()]
    assert lines == [("SimpleStatementLine", 1, 1), ("SimpleStatementLine", 2, 2), ("ClassDef", 3, 9),
                     ("FunctionDef", 11, 12)]


def _params(code: str) -> cst.Parameters:
    return cst.parse_statement(code + ": pass").params


def test_bind_positional_keyword_defaults_and_rest():
    params = _params("def f(self, a, /, b, c=1, *args, d, e=2, **kw)")
    b = bind(params, ["A", "B", "C", "X"], {"d": "D", "z": "Z"}, skip=1)
    assert b.values == {"a": "A", "b": "B", "c": "C", "d": "D"}
    assert set(b.defaults) == {"e"} and text(b.defaults["e"]) == "2"
    assert b.rest == ("X",) and b.rest_keywords == {"z": "Z"}
    assert not b.open and not b.missing


def test_bind_keyword_cannot_fill_a_positional_only_parameter():
    b = bind(_params("def f(a, /, b)"), [], {"a": 1, "b": 2})
    assert b.values == {"b": 2} and b.missing == {"a"} and b.rest_keywords == {"a": 1}


def test_bind_leaves_open_what_an_unexpanded_star_may_give():
    params = _params("def f(a, b=1, *, c=2)")
    b = bind(params, ["A"], {}, open_positional=True)
    assert b.values == {"a": "A"} and b.open == {"b"} and set(b.defaults) == {"c"} and b.rest is None
    b = bind(params, [], {}, open_keywords=True)
    assert b.open == {"a", "b", "c"} and b.rest_keywords is None and b.rest == ()
