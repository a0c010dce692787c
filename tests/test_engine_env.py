"""The engine's environment with provenance (engine/env.py) and the loop facts built from it."""

from __future__ import annotations

import libcst as cst

from gradlint.facts.training import iter_events
from gradlint.source import extract_facts, parse
from gradlint.source.engine.env import ARGPARSE, CONSTANT, LITERAL, NOTHING, Env, Expr, Known, Ref, join
from gradlint.source.engine.values import UNKNOWN, Ctor, DictVal, ListVal, Sym
from gradlint.source.names import dotted

FUNC, INNER = object(), object()


def test_join_keeps_equal_numbers_only():
    assert join(1, 1.0) == 1
    assert join(1.0, 2.0) is UNKNOWN
    assert join(1.0, UNKNOWN) is UNKNOWN and join(UNKNOWN, 1.0) is UNKNOWN


def test_lookup_walks_out_through_scopes_and_stops_at_parameters():
    env = Env()
    env.bind(None, "CLIP", 1.0)
    env.bind(None, "TWICE", 1.0)
    env.bind(None, "TWICE", 2.0)
    env.bind(FUNC, "local", 0.5)
    env.open_scope(FUNC, None, {"clip"})
    env.open_scope(INNER, FUNC, set())
    env.bind(None, "clip", 3.0)
    assert env.lookup(INNER, "CLIP") == 1.0  # two scopes out
    assert env.lookup(INNER, "local") == 0.5
    assert env.lookup(None, "local") is UNKNOWN  # a function's name is not the module's
    assert env.lookup(INNER, "TWICE") is UNKNOWN  # bound to two numbers
    assert env.lookup(INNER, "clip") is UNKNOWN  # the parameter of FUNC hides the module's
    assert env.lookup(None, "clip") == 3.0
    assert env.lookup(FUNC, "nothing") is UNKNOWN


def test_numbers_carry_their_provenance():
    env = Env()
    env.bind(None, "CLIP", 0)
    env.option("max_norm", 5.0)
    env.option("twice", 1.0)
    env.option("twice", UNKNOWN)

    def known(text: str) -> Known:
        return env.number(cst.parse_expression(text), None)

    assert known("-1e-3") == Known(-1e-3, LITERAL)
    assert known('float("inf")').number == float("inf") and known('float("inf")').source == LITERAL
    assert known("CLIP") == Known(0, CONSTANT) and known("CLIP").number == 0.0
    assert known("args.max_norm") == Known(5.0, ARGPARSE)
    assert known("cfg.max_norm") == Known(5.0, ARGPARSE)  # whatever holds the parsed arguments
    assert known("args.twice") is NOTHING and known("other") is NOTHING
    # arithmetic folds with the environment; a command-line default entering it is its provenance
    assert known("2 * CLIP") == Known(0, CONSTANT)
    assert known("-(args.max_norm * 2) + CLIP") == Known(-10.0, ARGPARSE)
    assert known("float(CLIP)") == Known(0.0, CONSTANT)
    assert known("2 * args.twice") is NOTHING and known("CLIP * other") is NOTHING
    assert known("CLIP / 0") is NOTHING  # Python would raise: no number


def test_names_bound_to_names_and_arithmetic_fold_when_asked():
    env = Env()
    env.open_scope(FUNC, None, {"scale"})
    # bound before the names they read, as a module's functions see its later constants
    env.bind(None, "MAX_NORM", Expr(cst.parse_expression("SCALE * CLIP"), None))
    env.bind(None, "ALIAS", Ref("MAX_NORM", None))
    env.bind(FUNC, "local", Expr(cst.parse_expression("scale * CLIP"), FUNC))
    env.bind(None, "LOOP", Ref("LOOP", None))
    env.bind(None, "SCALE", 2)
    env.bind(None, "CLIP", 0.5)

    def known(text: str, scope=None) -> Known:
        return env.number(cst.parse_expression(text), scope)

    assert known("ALIAS", FUNC) == Known(1.0, CONSTANT)
    assert known("local", FUNC) is NOTHING  # `scale` is what the callers pass
    assert known("LOOP") is NOTHING  # a cycle


def _clips(text: str):
    t = extract_facts(parse("t.py", text)).training
    return [e for fn in t.functions for e in iter_events(fn.body) if e.kind == "clip"]


def test_loop_facts_read_the_environment():
    a, b, c, d = _clips("""\
import torch
CLIP = 0.0
SHADOWED = 1.0

def train(model, opt, SHADOWED, loss):
    local = 2.0
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    torch.nn.utils.clip_grad_norm_(model.parameters(), SHADOWED)
    torch.nn.utils.clip_grad_norm_(model.parameters(), local)
    def inner():
        torch.nn.utils.clip_grad_norm_(model.parameters(), local, norm_type=3)
    opt.step()
""")
    assert (a.value.text, a.value.number, a.value.source) == ("CLIP", 0.0, "constant")
    assert (b.value.number, b.value.source) == (None, "")  # a parameter: what the callers pass
    assert (c.value.number, c.value.source) == (2.0, "constant")
    assert (d.value.number, d.value.source) == (2.0, "constant")  # from the enclosing function
    assert (d.norm_type.number, d.norm_type.source) == (3.0, "literal")


def _made(cls: str) -> Ctor:
    """An instance of `cls` (as written) made by a call, as the loop environment binds it."""
    return Ctor("unknown", cls, [], {}, cst.parse_expression(f"{cls}()"), 0)


def test_instances_are_held_by_their_text_file_wide():
    env = Env()
    first = _made("GradScaler")
    env.hold("self.scaler", first)
    env.hold("self.scaler", _made("GradScaler"))  # another call, one class: one value to a step
    env.hold("x", _made("A"))
    env.hold("x", _made("B"))
    assert env.held("self.scaler") is first
    assert env.held("x") is UNKNOWN and env.held("never") is UNKNOWN
    assert join(_made("A"), 1.0) is UNKNOWN


def test_containers_join_item_by_item_and_lists_are_not_tuples():
    a, b = Ref("opt_g"), Ref("opt_d")
    pair = ListVal([a, b])
    assert join(pair, ListVal([Ref("opt_g"), Ref("opt_d")])) is pair
    assert join(pair, ListVal([a, b], is_tuple=True)) is UNKNOWN  # `[g, d]` here, `(g, d)` there
    assert join(pair, ListVal([a])) is UNKNOWN and join(pair, ListVal([b, a])) is UNKNOWN
    assert join(ListVal([_made("SGD")]), ListVal([_made("SGD")])) is not UNKNOWN
    assert join(ListVal([_made("SGD")]), ListVal([_made("Adam")])) is UNKNOWN
    d = DictVal({"g": a})
    assert join(d, DictVal({"g": Ref("opt_g")})) is d
    assert join(d, DictVal({"g": b})) is UNKNOWN
    assert join(d, pair) is UNKNOWN


def test_the_loop_environment_evaluates_to_the_engine_containers_and_instances():
    pre = _pre("""import torch
g = torch.optim.SGD(a.parameters()).to(dev)
pair = [g, torch.optim.Adam(b.parameters())]
both = (g, 1)
named = {"g": g, "d": d, "g": 2, k: 3, k: 4, 0: 5}
""")
    g = pre.value_of("g", None)
    assert type(g) is Ctor and g.cls == "torch.optim.SGD" and dotted(g.node.func) == "torch.optim.SGD"
    assert pre.instance_class("g") == "torch.optim.SGD"
    pair, both = pre.value_of("pair", None), pre.value_of("both", None)
    assert type(pair) is ListVal and not pair.is_tuple and pair.items[0] == Ref("g")
    assert pair.items[1].cls == "torch.optim.Adam"
    assert type(both) is ListVal and both.is_tuple and both.items[1] == 1
    named = pre.value_of("named", None)
    # a display's keys as Python keys them: a key written twice is one item, its last value
    assert type(named) is DictVal and named.items == {"g": 2, "d": Ref("d"), Sym("k"): 4, 0: 5}
    assert pre.kind(pair, lambda node: frozenset()) == "other"  # a container is no optimizer


def _pre(source: str):
    import libcst as cst

    from gradlint.source.loop_env import _PrePass

    pre = _PrePass()
    pre.run(cst.parse_module(source))
    return pre


def test_a_call_of_a_function_of_the_file_is_what_its_returns_give():
    pre = _pre("""\
import torch

def build(model):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return opt

def both(model, flag):
    if flag:
        return torch.optim.SGD(model.parameters())
    return torch.optim.Adam(model.parameters())

def agree(model, flag):
    if flag:
        return build(model)
    return torch.optim.SGD(model.parameters())

def gen(model):
    yield torch.optim.SGD(model.parameters())
    return torch.optim.SGD(model.parameters())

def bare(model):
    return

def loop(model):
    return loop(model)

def twice():
    return torch.optim.SGD([])

def twice():
    return torch.cuda.amp.GradScaler()

rebound = None
def rebound():
    return torch.optim.SGD([])

a = build(m)
b = both(m, True)
c = agree(m, True)
d = gen(m)
e = bare(m)
f = loop(m)
g = twice()
h = rebound()
i = later()

def later():
    return torch.cuda.amp.GradScaler()
""")
    def qualify(node):  # no imports to read: the class's last name decides (SGD)
        return frozenset()

    value = lambda name: pre.value_of(name, None)  # noqa: E731
    assert value("a").cls == "torch.optim.SGD"  # through the function's local name
    assert value("b") is UNKNOWN  # two classes: which one depends on the flag
    assert value("c").cls == "torch.optim.SGD"  # a return that is itself a call of the file
    assert value("d") is UNKNOWN  # a generator
    assert value("e") is UNKNOWN and value("f") is UNKNOWN  # nothing returned; itself, forever
    assert value("g") is UNKNOWN and value("h") is UNKNOWN  # not one function of the file
    assert value("i").cls == "torch.cuda.amp.GradScaler"  # defined after the call
    assert pre.kind(pre.value_of("a", None), qualify) == "optimizer"
    assert pre.kind(pre.value_of("i", None), qualify) == "scaler"
