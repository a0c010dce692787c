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


# -- the statement walker (engine/interp.py) ----------------------------------------------------

from gradlint.source.budget import Exhausted, Meter  # noqa: E402
from gradlint.source.engine.interp import StatementWalker  # noqa: E402
from gradlint.source.engine.values import UNKNOWN  # noqa: E402


class Toy(StatementWalker):
    """A client of the walker over plain values: numbers fold, lists unpack, names bind."""

    def __init__(self, env=None, meter=None):
        self.env = dict(env or {})
        self.meter = meter
        self.attrs: dict = {}
        self.items: dict = {}
        self.returns: list = []
        self.calls: list[str] = []

    def evaluate(self, e):
        if isinstance(e, (cst.Integer, cst.Float, cst.BinaryOperation, cst.UnaryOperation)):
            v = constant(e, self.env)
            return UNKNOWN if v is None else v
        if isinstance(e, cst.Name):
            return {"True": True, "False": False, "None": None}.get(e.value, self.env.get(e.value, UNKNOWN))
        if isinstance(e, (cst.List, cst.Tuple)):
            return [self.evaluate(el.value) for el in e.elements]
        if isinstance(e, cst.Comparison) and len(e.comparisons) == 1:
            a, b = self.evaluate(e.left), self.evaluate(e.comparisons[0].comparator)
            op = type(e.comparisons[0].operator)
            if is_number(a) and is_number(b) and op in (cst.GreaterThan, cst.Equal):
                return a > b if op is cst.GreaterThan else a == b
            return UNKNOWN
        if isinstance(e, cst.Call):
            self.calls.append(text(e.func))
        return UNKNOWN

    def bind_name(self, name, value):
        self.env[name] = value

    def bind_attribute(self, target, value):
        self.attrs[text(target)] = value

    def bind_subscript(self, target, value):
        self.items[text(target)] = value

    def unpack(self, value, count):
        return value if isinstance(value, list) and len(value) == count else None

    def augmented(self, small, current, value):
        return current + value if is_number(current) and is_number(value) else UNKNOWN

    def on_return(self, small, value):
        self.returns.append(value)

    def loop_items(self, stmt):
        value = self.evaluate(stmt.iter)
        return value if isinstance(value, list) else None

    def fork(self):
        return dict(self.env)

    def restore(self, state):
        self.env = dict(state)

    def settle(self, state):
        done, self.done = self.done, False
        return self.env, done

    def join_branches(self, stmt, before, first, second):
        (a, done_a), (b, done_b) = first, second
        self.done = done_a and done_b
        self.env = b if done_a else a if done_b else {
            k: a[k] if a.get(k, UNKNOWN) == b.get(k, UNKNOWN) else UNKNOWN for k in {*a, *b}}

    def join_loop(self, stmt, before):
        self.env = {k: v if before.get(k, UNKNOWN) == v else UNKNOWN for k, v in self.env.items()}


def run(code: str, **env) -> Toy:
    toy = Toy(env)
    toy.block(cst.parse_module(code).body)
    return toy


def test_walker_takes_targets_apart_as_python_does():
    toy = run("a, (b, c) = [1, [2, 3]]\nx.w, y[0] = 4, 5\nd, *e = [6, 7, 8]\nf: int = 9\ng = h = 10\nf += 1\n")
    assert {k: toy.env[k] for k in "abcfgh"} == {"a": 1, "b": 2, "c": 3, "f": 10, "g": 10, "h": 10}
    assert toy.attrs == {"x.w": 4} and toy.items == {"y[0]": 5}
    # a starred target takes a part of unknown length: every target of that tuple is unknown
    assert toy.env["d"] is UNKNOWN and toy.env["e"] is UNKNOWN
    # items that do not match the targets: unknown, never a guess
    assert run("a, b = [1, 2, 3]").env == {"a": UNKNOWN, "b": UNKNOWN}


def test_walker_decides_an_if_it_can_and_joins_both_branches_otherwise():
    assert run("if n > 1:\n    a = 1\nelse:\n    a = 2\n", n=2).env["a"] == 1
    assert run("if n > 1:\n    a = 1\nelif n > 0:\n    a = 2\nelse:\n    a = 3\n", n=1).env["a"] == 2
    joined = run("b = 1\nif flag:\n    a = 1\n    b = 1\nelse:\n    a = 2\n", flag=UNKNOWN).env
    assert joined["a"] is UNKNOWN and joined["b"] == 1
    # a branch that returns: the code after the `if` runs in the other branch's state
    toy = run("if flag:\n    return 0\na = 5\nreturn a\n", flag=UNKNOWN)
    assert toy.returns == [0, 5] and toy.env["a"] == 5


def test_walker_stops_a_block_at_return_and_runs_one_line_suites():
    toy = run("a = 1\nreturn a\na = 2\n")
    assert toy.env["a"] == 1 and toy.returns == [1] and toy.done
    assert run("if n: a = 1; b = 2\n", n=1).env == {"n": 1, "a": 1, "b": 2}


def test_walker_unrolls_known_loops_and_summarises_the_others():
    assert run("s = 0\nfor i in [1, 2, 3]:\n    s += i\n").env["s"] == 6
    assert run("s = 0\nfor i, j in [[1, 2], [3, 4]]:\n    s += i * j\n").env["s"] == 14
    toy = run("s = 0\nt = 1\nfor i in xs:\n    s += i\nelse:\n    u = 1\n")
    assert toy.env["s"] is UNKNOWN and toy.env["t"] == 1 and toy.env["i"] is UNKNOWN and toy.env["u"] == 1
    assert run("s = 0\nwhile go():\n    s = 1\n").env["s"] is UNKNOWN
    # a return inside an unrolled loop ends it
    assert run("for i in [1, 2, 3]:\n    if i == 2:\n        return i\n").returns == [2]


def test_walker_dispatches_every_statement_kind():
    code = (
        "with ctx() as c:\n    a = 1\n"
        "try:\n    b = 1\nexcept E:\n    b2 = 2\nelse:\n    b3 = 3\nfinally:\n    b4 = 4\n"
        "match m():\n    case 1:\n        c1 = 1\n"
        "def f():\n    z = 1\n"
        "class K:\n    z = 2\n"
        "assert check()\nraise err()\ndel a\npass\nglobal g\n"
    )
    toy = run(code)
    assert {k: toy.env[k] for k in ("a", "b", "b2", "b3", "b4", "c1")} == dict(a=1, b=1, b2=2, b3=3, b4=4, c1=1)
    assert "z" not in toy.env  # a nested def or class body runs when called, not here
    assert toy.calls == ["ctx", "m", "check", "err"]


def test_walker_steps_the_budget_once_per_statement():
    meter = Meter(limit=3)
    toy = Toy(meter=meter)
    with pytest.raises(Exhausted):
        toy.block(cst.parse_module("a = 1\nb = 2\nc = 3\nd = 4\n").body)
    assert toy.env == {"a": 1, "b": 2, "c": 3}


def test_one_bottom_for_every_interpreter():
    """numerics' tensors know nothing through the engine's one UNKNOWN, never a V of their own."""
    from gradlint.source.engine import tensors, values

    assert tensors.UNKNOWN is values.UNKNOWN
    # a value made with no property (or only "not known" ones) is the bottom itself
    assert tensors.V() is values.UNKNOWN
    assert tensors.V(prob=None, inst=frozenset(), params=False) is values.UNKNOWN
    known = tensors.V(prob="softmax", tensor=True)
    assert type(known) is tensors.V and known.prob == "softmax"
    assert tensors.V(out_elem=0).out_elem == 0  # 0 is an index, not "not known"
    # the bottom reads as a value with no property, so rules and joins need no special case
    assert values.UNKNOWN.prob is None and values.UNKNOWN.inst == frozenset()
    assert values.UNKNOWN.nograd is False and values.UNKNOWN.params is False
    # replace builds from it; taking every property away gives it back
    assert tensors.replace(values.UNKNOWN, const=True).const is True
    assert tensors.replace(values.UNKNOWN, sq=False) is values.UNKNOWN
    assert tensors.replace(tensors.V(module=True), module=False) is values.UNKNOWN
    # a join keeps only what holds on both paths; nothing in common is the bottom
    assert tensors.merge(tensors.V(crit="ce", module=True), tensors.V(crit="bce")) is values.UNKNOWN
    assert tensors.merge(values.UNKNOWN, tensors.V(const=True)).const  # `or` properties survive
    assert tensors._combine([values.UNKNOWN]).computed


def test_open_parameter_keeps_its_identity_through_joins_with_unknown():
    from gradlint.source.engine import tensors, values

    p = tensors.open_value()
    assert p is not values.UNKNOWN and tensors.knows_nothing(p) and tensors.knows_nothing(values.UNKNOWN)
    assert not tensors.knows_nothing(tensors.V(const=True))
    assert tensors.open_value() is not p  # one per parameter
    assert tensors.merge(p, values.UNKNOWN) is p  # unknown on the other path: still the parameter
    assert tensors.merge_env({"m": p}, {})["m"] is p
    assert tensors.replace(p, cut=None) is values.UNKNOWN  # a value computed from it is not it


def test_unknown_declares_properties_once():
    from gradlint.source.engine import values

    with pytest.raises(ValueError):
        values.Unknown.reads({"prob": "softmax"})
