"""Hostile and careless `.py` files: every one ends with a finding, a GL001 or a named skip, never
a hang, a crash or an internal error; the rest of the file (and of the run) is still checked."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from gradlint import api
from gradlint.api import check_paths
from gradlint.config import Config
from gradlint.findings import RunResult
from gradlint.report.text import render_text
from gradlint.source import budget, models, parse
from gradlint.source.budget import Exhausted, Meter, checked_range, fold

# A 12-layer sigmoid MLP: GL101 (vanishing gradient) in any file that holds it.
MLP = """\
import torch.nn as nn

class MLP(nn.Module):
    def __init__(self, depth=12, width=256):
        super().__init__()
        layers = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)
"""
LOG_SOFTMAX = "import torch\n\ndef f(y):\n    return torch.log(torch.softmax(y, 1))\n"  # GL302


def run(tmp_path: Path, files: dict[str, str | bytes], *, jobs: int = 1, use_cache: bool = False) -> RunResult:
    for name, content in files.items():
        target = tmp_path / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return check_paths([tmp_path], replace(Config(), root=str(tmp_path)), use_cache=use_cache, jobs=jobs)


def only(result: RunResult):
    (r,) = result.files
    assert r.internal_error is None, r.internal_error
    return r


def codes(result: RunResult) -> list[str]:
    return [f.code for f in result.findings]


# --- checked arithmetic ----------------------------------------------------------------------

@pytest.mark.parametrize("op,a,b,expected", [
    ("**", 9, 387420489, None),  # 9 ** 9 ** 9: never computed
    ("**", 2, 64, 2 ** 64),
    ("**", 2, 65, None),
    ("*", 2 ** 40, 2 ** 40, None),
    ("//", 64, 0, None),
    ("%", 64, 0, None),
    ("/", 1, 0, None),
    ("**", -8.0, 0.5, None),  # complex
    ("*", 1e308, 10.0, None),  # inf
    ("**", 10.0, 400.0, None),  # OverflowError
    ("+", True, 1, None),  # flags are not numbers
    ("//", 64, 8, 8),
    ("**", 2, -1, 0.5),
])
def test_fold_refuses_what_is_huge_infinite_or_an_error(op, a, b, expected):
    assert fold(op, a, b) == expected


def test_checked_range_refuses_long_loops():
    assert list(checked_range([3])) == [0, 1, 2]
    for args in ([10 ** 12], [0, 2 ** 64], [0, 10, 0], [budget.MAX_UNROLL + 1]):
        with pytest.raises(Exhausted):
            checked_range(args)


def test_meter_counts_depth_and_steps():
    m = Meter(limit=5)
    for _ in range(5):
        m.step()
    assert not m.exhausted
    with pytest.raises(Exhausted):
        m.step()
    assert m.exhausted
    deep = Meter()
    with pytest.raises(Exhausted):
        for _ in range(budget.MAX_EXPR_DEPTH + 1):
            deep.enter()
    assert not deep.exhausted  # too deep is one Unknown value, not the end of the file


# --- evaluation budgets: the file ends quickly, the rest of it is still checked ----------------

SAMPLER = """\
class Sampler(nn.Module):
    def __init__(self, steps: int = 100) -> None:
        super().__init__()
        self.steps = steps
        self.lin = nn.Linear(8, 4)

    def forward(self, obs, deterministic: bool = False):
        x = torch.zeros(4)
        for t in reversed(range(self.steps)):
            p = self.lin(torch.cat([x, obs], dim=-1))
            x = 0.5 * (x - 0.1 * p)
            if not deterministic:
                x = x + torch.where(t > 0, 0.1 * torch.randn_like(x), torch.zeros_like(x))
        return x
"""

def INIT(body: list[str]) -> str:
    """A module whose __init__ runs these lines."""
    return "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n" + "".join(
        f"        {line}\n" for line in body)


HANG_INPUTS = {
    "power_tower": "x = 9 ** 9 ** 9\n",
    "aug_square": ("class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        d = 2\n"
                   "        for _ in range(40):\n            d *= d\n        self.fc = nn.Linear(d, 4)\n"),
    "floordiv_zero": ("HEADS = 0\n\nclass M(nn.Module):\n    def __init__(self, d=64):\n        super().__init__()\n"
                      "        d //= HEADS\n        d %= HEADS\n        self.fc = nn.Linear(d, 4)\n"),
    "long_sum": "x = " + "+".join(["1"] * 900) + "\n",
    "long_sum_in_init": ("class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        d = "
                         + "+".join(["1"] * 900) + "\n        self.fc = nn.Linear(d, 4)\n"),
    "long_unary": "x = " + "-" * 900 + "1\n",
    "long_attribute": "x = a" + ".b" * 900 + "\n",
    "huge_range": ("class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.l = nn.ModuleList()\n"
                   "        for i in range(10 ** 12):\n            self.l.append(nn.Linear(4, 4))\n"),
    "range_overflow": ("class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                       "        for i in range(2 ** 64 - 1):\n            pass\n"),
    "nested_loops": ("class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        d = 1\n"
                     "        for i in range(500):\n            for j in range(500):\n                for k in range(500):\n"
                     "                    d += 1\n        self.fc = nn.Linear(d, 4)\n"),
    "self_recursive": ("class Block(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                       "        self.layers = nn.ModuleList([Block() for _ in range(6)])\n\n"
                       "    def forward(self, x):\n        for layer in self.layers:\n            x = layer(x)\n        return x\n"),
    "huge_transformer": "t = nn.Transformer(num_encoder_layers=10 ** 12)\n",
    "big_literal": "x = " + "9" * 4000 + " * 2\n",
    "huge_float": "x = 1e308 * 1e308\n",
    # an init under a 150-term `and` (and a 150-term `or` of isinstance): reading each side of
    # the chain twice once took 2**150 steps
    "long_and_in_init": ("class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                         "        self.fc = nn.Linear(4, 4)\n        for m in self.modules():\n            if "
                         + " or ".join(["isinstance(m, nn.Linear)"] * 150) + ":\n                if "
                         + " and ".join(["m.bias is not None"] * 150) + ":\n                    nn.init.zeros_(m.bias)\n"),
    # a 100-step sampler feeding its value to two joins each step (torchrl's DDPM actor): a graph
    # of ~400 nodes standing for a tree of 2**100, which every walk of the IR once paid in full
    "shared_joins_loop": SAMPLER,
    # such a path returned in a tuple by a child module: choosing the main output walked every node
    # unfolded, and the memo of children's runs hashed it (diffusers' CogVideoX decoder: 4 minutes)
    "shared_joins_in_a_tuple": SAMPLER.replace("        return x\n", "        return x, p\n") + (
        "\n\nclass Policy(nn.Module):\n    def __init__(self) -> None:\n        super().__init__()\n"
        "        self.sampler = Sampler()\n        self.head = nn.Linear(4, 2)\n\n"
        "    def forward(self, obs):\n        x, p = self.sampler(obs)\n        y, q = self.sampler(x)\n"
        "        return self.head(y), q\n"),
    # values that double at each step of a loop: 2**40 items or characters in a few lines (12 and
    # 19 GB, then the OOM killer), and a Sequential of itself twice, 2**40 layers unfolded
    "list_doubling": INIT(["l = [nn.Linear(4, 4)]", "for _ in range(40):", "    l = l + l", "self.s = nn.Sequential(*l)"]),
    "list_aug_doubling": INIT(["l = [nn.Linear(4, 4)]", "for _ in range(40):", "    l += l", "self.s = nn.Sequential(*l)"]),
    "list_extend_doubling": INIT(["l = [nn.Linear(4, 4)]", "for _ in range(40):", "    l.extend(l)",
                                  "self.s = nn.Sequential(*l)"]),
    "list_splice_doubling": INIT(["l = [nn.Linear(4, 4)]", "for _ in range(40):", "    l = [*l, *l]",
                                  "self.s = nn.ModuleList(l)"]),
    "sequential_splice_doubling": INIT(["s = nn.Sequential(nn.Linear(4, 4))", "for _ in range(40):",
                                        "    s = nn.Sequential(*s, *s)", "self.s = s"]),
    "fstring_doubling": INIT(["s = 'a'", "for _ in range(40):", "    s = f'{s}{s}'", "self.add_module(s, nn.Linear(4, 4))"]),
    "sequential_dag": INIT(["s = nn.Linear(4, 4)", "for _ in range(40):", "    s = nn.Sequential(s, s)", "self.s = s"])
    + "\n    def forward(self, x):\n        return self.s(x)\n",
    "forward_list_doubling": INIT(["self.fc = nn.Linear(4, 4)"]) + (
        "\n    def forward(self, x):\n        xs = [self.fc(x)]\n        for _ in range(40):\n            xs = xs + xs\n"
        "        ys = [x]\n        for _ in range(40):\n            ys.extend(ys)\n        return torch.cat(xs + ys, 1)\n"),
    # class hierarchies: every class's bases were walked again for each class below it (a lattice
    # of diamonds never ended; a chain of subclasses written base last took minutes)
    "diamond_lattice": "class A0(nn.Module):\n    pass\n\n\nclass B0(nn.Module):\n    pass\n\n\n" + "".join(
        f"class A{i}(A{i - 1}, B{i - 1}):\n    pass\n\n\nclass B{i}(A{i - 1}, B{i - 1}):\n    pass\n\n\n"
        for i in range(1, 80)) + "class Top(A79, B79):\n    def forward(self, x):\n        return x\n",
    "chain_written_base_last": "".join(f"class C{i}(C{i - 1}):\n    pass\n\n\n" for i in range(1500, 0, -1))
    + "class C0(nn.Module):\n    def forward(self, x):\n        return x\n",
    # an `if` the walk cannot decide copies the environment on each side: 5 000 locals around
    # one in nested loops took 13 s at one step a copy
    "many_locals_around_an_if": ("class M(nn.Module):\n    def __init__(self, c):\n        super().__init__()\n        "
                                 + " = ".join(f"v{i}" for i in range(5000)) + " = 0\n        for a in range(512):\n"
                                 "            for b in range(512):\n                if c:\n                    v1 = b\n"
                                 "        self.fc = nn.Linear(4, 4)\n"),
    "cyclic_bases": "class A(B):\n    pass\n\n\nclass B(A):\n    def forward(self, x):\n        return x\n\n\nm = A()\n",
}


@pytest.mark.parametrize("case", sorted(HANG_INPUTS))
def test_hostile_evaluation_ends_as_unknown_and_the_file_is_still_checked(tmp_path, case):
    # The hostile statement sits between two real findings: both must still be reported.
    source = "import torch\nimport torch.nn as nn\n" + HANG_INPUTS[case] + "\n" + MLP + "\n" + LOG_SOFTMAX
    result = run(tmp_path, {"x.py": source})
    r = only(result)
    assert r.skipped is None
    assert sorted(set(codes(result))) == ["GL101", "GL302"], result.findings


def test_exponential_fan_out_spends_the_step_budget_and_gives_no_half_built_network():
    # Six distinct classes, each building six of the next: 6**6 instances, far over MAX_STEPS.
    names = [f"L{i}" for i in range(7)]
    text = "import torch.nn as nn\n"
    for here, below in zip(names, names[1:]):
        text += (f"class {here}(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                 f"        self.m = nn.ModuleList([{below}() for _ in range(6)])\n"
                 f"        self.out = nn.Linear(4, 4)\n    def forward(self, x):\n        return self.out(x)\n")
    text += "class L6(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 4)\n"
    src = parse("x.py", text)
    fm_seen: list = []
    original = models.FileModel.__init__

    def spy(self, s, configs=None):
        original(self, s, configs)
        fm_seen.append(self)

    models.FileModel.__init__ = spy
    try:
        networks, summaries = models.extract(src)
    finally:
        models.FileModel.__init__ = original
    (fm,) = fm_seen
    assert budget.MAX_PIECE_STEPS < fm.meter.steps <= budget.MAX_STEPS
    # L0 was cut short: it is a module of unknown shape, not a network with some of its layers;
    # L5 (six L6) is within budget and still a network: one class does not starve the others.
    assert "L0" not in {n.name for n in networks}
    assert "L0" in {s.name for s in summaries if s.is_module}
    assert "L5" in {n.name for n in networks}


def test_a_forward_too_large_unfolded_is_not_modelled_and_says_why():
    from gradlint.model.ir import MAX_UNFOLDED, unfolded_size, walk

    src = parse("x.py", "import torch\nimport torch.nn as nn\n" + SAMPLER)
    (net,) = models.extract(src)[0]
    assert not net.forward_known and "too large to model" in net.note
    # 8 steps stay under the bound (2 039 nodes unfolded, doubling each step): modelled
    src = parse("x.py", "import torch\nimport torch.nn as nn\n" + SAMPLER.replace("steps: int = 100", "steps: int = 8"))
    (net,) = models.extract(src)[0]
    assert net.forward_known
    assert unfolded_size(net.nodes) == sum(1 for _ in walk(net.nodes)) < MAX_UNFOLDED


def test_walk_once_meets_each_node_of_walk_in_its_order_entering_a_shared_residual_once():
    from gradlint.model.ir import Activation, Residual, unfolded_size, walk, walk_once
    from gradlint.source.lowering import _keyable

    a, b, c = Activation("a", "relu"), Activation("b", "gelu"), Activation("c", "tanh")
    inner = Residual(body=(a, b), branches=((c,),))
    small = (c, inner, Residual(body=(inner, a)), b)
    firsts = list(dict.fromkeys(id(n) for n in walk(small)))
    assert list(dict.fromkeys(id(n) for n in walk_once(small))) == firsts
    # 2**60 nodes unfolded, 121 distinct: walk would never end
    node: tuple = (a,)
    for _ in range(60):
        node = (Residual(body=node + node), b)
    assert unfolded_size(node) > 2 ** 60
    assert {id(n) for n in walk_once(node)} == {id(a), id(b)} | {id(r) for r in _residuals(node)}
    # seeds this large never key the memo of children's runs (their hash unfolds them)
    assert not _keyable(((0, node),)) and _keyable(((0, small),))


def _residuals(nodes: tuple) -> list:
    from gradlint.model.ir import Residual

    out, todo = [], list(nodes)
    while todo:
        n = todo.pop()
        if isinstance(n, Residual) and all(n is not m for m in out):
            out.append(n)
            todo.extend(n.body)
    return out


def test_choosing_the_main_output_of_an_exponential_tuple_is_linear():
    """A forward returning (x, p) of paths 2**60 nodes unfolded: the main output is the longest
    of those that hold the first (unfolded_size), heads are the others it does not hold."""
    from gradlint.model.ir import Activation, Residual
    from gradlint.source import outputs
    from gradlint.source.engine.values import ListVal, PathVal

    a, b = Activation("a", "relu"), Activation("b", "gelu")
    node: tuple = (a,)
    for _ in range(60):
        node = (Residual(body=node + node), b)
    longer = node + (a,)
    main, heads = outputs.choose(ListVal([PathVal("x", node), PathVal("x", longer)]), "x", None, None)
    assert main is longer and heads == []


def test_inlining_stops_at_the_unfolded_bound(monkeypatch):
    from gradlint.model import inline as inl
    from gradlint.model.ir import Extern, Network, Param, Residual, InitSpec, unfolded_size

    # a block of 3 layers used at every place of a path that shares one join 14 levels deep:
    # 2**14 placeholders unfolded, each 3 layers inlined
    leaf = Param(name="l", op="linear", fan_in=4, fan_out=4, init=InitSpec("torch-linear"))
    block = Network(name="B", path="b.py", nodes=(leaf, leaf, leaf), forward_known=True)
    node: tuple = (Extern("m", "block B", cls="B", args=()),)
    for _ in range(14):
        node = (Residual(body=node + node),)
    parent = Network(name="P", path="p.py", nodes=node, forward_known=True)
    assert unfolded_size(parent.nodes) < 2 ** 16
    monkeypatch.setattr(inl, "_same_arguments", lambda ext, blk: True)
    found = inl.inline(parent, lambda cls: [(block, None)])
    # past the bound the placeholders stay as they were (opaque), in bounded time
    assert found.nodes == parent.nodes


def test_a_real_model_stays_within_the_step_budget():
    # The largest real files (timm's dla.py) take ~47 000 steps; this one must not be cut.
    src = parse("x.py", MLP)
    networks, _ = models.extract(src)
    (net,) = networks
    assert len(net.params) == 12 and net.forward_known


# --- the CPython pre-check ---------------------------------------------------------------------

def test_nesting_libcst_crashes_on_is_gl001_with_cpythons_message(tmp_path):
    result = run(tmp_path, {"deep.py": "import torch\nx = " + "(" * 2000 + "1" + ")" * 2000 + "\n"})
    only(result)
    (f,) = result.findings
    assert (f.code, f.span.line) == ("GL001", 2)
    assert f.message == "syntax error: too many nested parentheses"


def test_nesting_past_cpythons_compiler_is_gl001(tmp_path):
    result = run(tmp_path, {"deep.py": "import torch\nx = a" + "[0]" * 5000 + "\n"})
    only(result)
    (f,) = result.findings
    assert f.code == "GL001" and "too deeply nested for Python to compile" in f.message


def test_nul_in_a_string_is_gl001_at_its_position(tmp_path):
    result = run(tmp_path, {"nul.py": b"import torch\nx = 'a\x00b'\n"})
    only(result)
    (f,) = result.findings
    assert (f.code, f.span.line, f.span.column) == ("GL001", 2, 7)
    assert "null bytes" in f.message


def test_tab_space_mix_python_accepts_is_a_named_skip_not_gl001(tmp_path):
    source = "import torch\nimport torch.nn as nn\n\n\ndef f():\n\tif 1:\n        \treturn 1\n"
    compile(source, "x.py", "exec")  # Python accepts it
    r = only(run(tmp_path, {"x.py": source}))
    assert r.findings == ()
    assert r.skipped is not None and "mixes tabs and spaces" in r.skipped


def test_nesting_libcst_cannot_afford_is_a_named_skip(tmp_path):
    # CPython compiles two 1 000-deep subscript chains; libcst would take tens of seconds.
    chain = "a" + "[0]" * 1000
    r = only(run(tmp_path, {"x.py": f"import torch\nx = {chain}\ny = {chain}\n"}))
    assert r.findings == ()
    assert r.skipped is not None and "nested up to" in r.skipped


def test_chains_cpython_keeps_flat_but_libcst_nests_are_named_skips(tmp_path):
    """`a and b and ...` is one BoolOp for CPython but a chain of nested operations for libcst,
    which segfaulted (the whole run gone) on 10 000 terms; a 50 000-part dotted import likewise.
    Both are named skips now, and the good file beside them is reported."""
    files = {
        "and.py": "import torch\ndef f(a):\n    return " + " and ".join(["a"] * 10_000) + "\n",
        "dotted.py": "import " + ".".join(["a"] * 50_000) + "\nimport torch\n",
        "from.py": "from " + ".".join(["a"] * 50_000) + " import b\nimport torch\n",
        "ok.py": LOG_SOFTMAX,
    }
    result = run(tmp_path, files)
    by_name = {Path(r.path).name: r for r in result.files}
    assert set(by_name) == set(files)
    for name in ("and.py", "dotted.py", "from.py"):
        assert by_name[name].skipped is not None and "nested up to" in by_name[name].skipped, name
    assert [f.code for f in by_name["ok.py"].findings] == ["GL302"]


def test_nesting_cost_counts_libcsts_chains_and_nothing_for_real_code():
    import ast

    # CPython: Module > Return-in-FunctionDef > BoolOp > Name (4 below the module); libcst nests
    # the first two names of a 4-term `and` 3 operations down
    flat = ast.parse("def f(a):\n    return a and a\n")
    chain = ast.parse("def f(a):\n    return a and a and a and a\n")
    assert budget.nesting_cost(chain)[0] == budget.nesting_cost(flat)[0] + 2
    assert budget.nesting_cost(ast.parse("import a.b.c.d\n"))[0] == budget.nesting_cost(ast.parse("import a\n"))[0] + 3
    real = "def f(a, b):\n    return " + " or ".join(f"(a > {i} and b < {i})" for i in range(30)) + "\n"
    assert budget.nesting_cost(ast.parse(real))[1] == 0


def test_100k_lines_are_a_named_skip(tmp_path):
    text = "import torch\n" + "x = 1\n" * 100_000  # under the byte budget: the line budget decides
    r = only(run(tmp_path, {"x.py": text}))
    assert r.findings == ()
    # counted as `wc -l` and an editor count them (it said 100002: the empty text after the last
    # newline counted as a line)
    assert r.skipped == f"100001 lines, over gradlint's parse budget of {budget.MAX_SOURCE_LINES} lines"
    r = only(run(tmp_path, {"x.py": text + "y = 2"}))  # a last line with no newline counts
    assert r.skipped == f"100002 lines, over gradlint's parse budget of {budget.MAX_SOURCE_LINES} lines"


def test_the_line_budget_counts_lines_as_an_editor_does(tmp_path):
    at = "x = 1\n" * budget.MAX_SOURCE_LINES  # exactly the budget: checked
    assert only(run(tmp_path, {"x.py": at})).skipped is None
    assert only(run(tmp_path, {"x.py": at + "y = 2"})).skipped.startswith(f"{budget.MAX_SOURCE_LINES + 1} lines")


def test_10mb_one_line_list_is_never_read_whole(tmp_path):
    # over max-file-size (2 MiB by default): GL001 naming the limit, the file never read whole
    text = "import torch\nx = [" + ",".join(["123456"] * 1_450_000) + "]\n"
    r = only(run(tmp_path, {"x.py": text}))
    assert [f.code for f in r.findings] == ["GL001"]
    assert "max-file-size" in r.findings[0].message


def test_a_file_over_the_parse_budget_is_a_named_skip(tmp_path):
    # a user who raises max-file-size still meets the parse budget: a named skip, not a hang
    text = "import torch\nx = [" + ",".join(["123456"] * 400_000) + "]\n"
    (tmp_path / "x.py").write_text(text, encoding="utf-8")
    config = replace(Config(), root=str(tmp_path), max_file_size=8 << 20)
    r = only(check_paths([tmp_path], config, use_cache=False, jobs=1))
    assert r.findings == ()
    assert r.skipped is not None and "bytes, over gradlint's parse budget" in r.skipped


def test_syntax_warnings_of_the_checked_file_are_not_printed(tmp_path, capfd):
    run(tmp_path, {"x.py": "import torch\nx = '\\d'\nassert (x, 'msg')\n"})
    assert capfd.readouterr().err == ""


# --- isolation: a worker that dies costs only its file ------------------------------------------

@pytest.fixture
def quiet_crashes():
    """The deliberate worker crashes below would each print faulthandler's 'Fatal Python error'
    dump into the test log (workers inherit pytest's faulthandler): switch it off meanwhile."""
    import faulthandler

    was_enabled = faulthandler.is_enabled()
    faulthandler.disable()
    yield
    if was_enabled:
        faulthandler.enable()


def _dies_on_some(i: int) -> int:
    if i == 13:
        os.kill(os.getpid(), signal.SIGSEGV)
    if i == 77:
        os.kill(os.getpid(), signal.SIGKILL)
    return 2 * i


def test_pool_reports_each_dead_worker_on_its_own_item_and_finishes_the_rest(quiet_crashes):
    from gradlint.pool import map_isolated

    out = map_isolated(_dies_on_some, list(range(100)), 3, on_failure=lambda item, why: ("failed", item, why))
    assert out[13] == ("failed", 13, "the worker process died (SIGSEGV)")
    assert out[77] == ("failed", 77, "the worker process died (SIGKILL)")
    assert [out[i] for i in range(100) if i not in (13, 77)] == [2 * i for i in range(100) if i not in (13, 77)]


def _pid_of(i: int) -> tuple[int, int]:
    return i, os.getpid()


def test_a_kept_pool_serves_several_calls_and_replaces_a_dead_worker(quiet_crashes):
    """The runs of several projects share one pool (gradlint.pool.Kept): the same worker
    processes answer every call until it is closed; a worker that dies is replaced (the pool is
    kept), and costs only its item."""
    from gradlint.pool import Kept, map_isolated

    kept = Kept()
    try:
        first = map_isolated(_pid_of, list(range(20)), 2, on_failure=lambda item, why: None, kept=kept)
        second = map_isolated(_pid_of, list(range(20)), 2, on_failure=lambda item, why: None, kept=kept)
        assert [i for i, _ in first] == list(range(20)) and [i for i, _ in second] == list(range(20))
        assert {pid for _, pid in second} <= {pid for _, pid in first}
        assert os.getpid() not in {pid for _, pid in first}
        pool = kept.pool
        out = map_isolated(_dies_on_some, list(range(100)), 2, on_failure=lambda item, why: ("failed", item, why),
                           kept=kept)
        assert out[13] == ("failed", 13, "the worker process died (SIGSEGV)")
        assert out[77] == ("failed", 77, "the worker process died (SIGKILL)")
        assert [out[i] for i in range(100) if i not in (13, 77)] == [2 * i for i in range(100) if i not in (13, 77)]
        assert kept.pool is pool
        third = map_isolated(_pid_of, list(range(40)), 2, on_failure=lambda item, why: None, kept=kept)
        assert [i for i, _ in third] == list(range(40))
        assert {pid for _, pid in third} - {pid for _, pid in first}  # (a worker made again)
    finally:
        kept.close()
    assert kept.pool is None
    assert all(not p.is_alive() for p in multiprocessing.active_children() if p.pid in {pid for _, pid in third})


def _raises_on_some(i: int) -> int:
    if i % 10 == 3:
        raise ValueError(f"bad {i}")
    return 2 * i


def test_chunks_cost_a_dead_worker_only_its_own_item_and_a_raising_item_only_itself(quiet_crashes):
    """With `cost`, several items go to a worker in one job: a worker that dies on one of them
    makes the whole chunk suspect, and each suspect is run alone, so only the culprit fails; an
    item that raises fails alone while the rest of its chunk gets its results."""
    from gradlint.pool import map_isolated

    out = map_isolated(_dies_on_some, list(range(100)), 3, on_failure=lambda item, why: ("failed", item, why),
                       cost=lambda i: 1.0)
    assert out[13] == ("failed", 13, "the worker process died (SIGSEGV)")
    assert out[77] == ("failed", 77, "the worker process died (SIGKILL)")
    assert [out[i] for i in range(100) if i not in (13, 77)] == [2 * i for i in range(100) if i not in (13, 77)]
    out = map_isolated(_raises_on_some, list(range(40)), 2, on_failure=lambda item, why: ("failed", item, why),
                       cost=lambda i: 1.0)
    assert [o for o in out if type(o) is tuple] == [("failed", i, f"ValueError: bad {i}") for i in range(3, 40, 10)]
    assert [o for o in out if type(o) is int] == [2 * i for i in range(40) if i % 10 != 3]


class _Unpicklable:
    def __reduce__(self):
        raise TypeError("cannot pickle this result")


def _unpicklable_on_some(i: int):
    return _Unpicklable() if i == 5 else 2 * i


def test_a_result_that_cannot_be_sent_back_fails_only_its_own_item():
    """A chunk whose results do not pickle (one of them) fails as a whole in the worker: its
    items are sent again one by one, and only the one at fault fails."""
    from gradlint.pool import map_isolated

    out = map_isolated(_unpicklable_on_some, list(range(40)), 2, on_failure=lambda item, why: ("failed", item),
                       cost=lambda i: 1.0)
    assert out[5] == ("failed", 5)
    assert [out[i] for i in range(40) if i != 5] == [2 * i for i in range(40) if i != 5]


def test_chunks_hold_items_up_to_their_cost_and_spread_the_last_ones():
    """_take: items of cost 1 go 32 to a job, a costly item alone, and the last items of the
    run in small chunks (each worker gets some)."""
    from collections import deque

    from gradlint.pool import CHUNK_COST, _take

    todo = deque(range(1000))
    assert _take(todo, lambda i: 1.0, 4) == list(range(int(CHUNK_COST)))
    costs = {0: 100.0, 1: 5.0}
    todo = deque(range(200))
    assert _take(todo, lambda i: costs.get(i, 1.0), 4) == [0]
    assert len(_take(todo, lambda i: costs.get(i, 1.0), 4)) == int(CHUNK_COST) - 4
    todo = deque(range(12))
    assert _take(todo, lambda i: 1.0, 4) == [0, 1]  # 11 left: 2 at most
    assert _take(deque(range(5)), None, 4) == [0]


_LARGE = 3_000_000


def _large_on_7(i: int):
    return b"x" * _LARGE if i == 7 else 2 * i


def test_a_worker_killed_while_it_writes_its_result_costs_only_its_item(monkeypatch, quiet_crashes):
    """A worker SIGKILLed halfway through sending a large result (the OOM killer's moment): the
    parent reads the end of that worker's own connection as its death, not as a wait for the
    rest of the message (concurrent.futures' pool, whose workers share one pipe, hung there).
    The workers are forked from this process, so they send through the patched function."""
    import threading

    from gradlint import pool
    from gradlint.pool import map_isolated

    real = pool._send_result

    def send_half(conn, data: bytes) -> None:
        if len(data) > _LARGE // 2:
            os.write(conn.fileno(), len(data).to_bytes(8, "big") + data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        real(conn, data)

    monkeypatch.setattr(pool, "_send_result", send_half)
    out: dict[str, list] = {}
    run_it = threading.Thread(target=lambda: out.setdefault("r", map_isolated(
        _large_on_7, list(range(40)), 2, on_failure=lambda item, why: ("failed", item, why),
        mp_context=multiprocessing.get_context("fork"), cost=lambda i: 1.0)), daemon=True)
    run_it.start()
    run_it.join(60)
    stuck = run_it.is_alive()
    if stuck:
        for child in multiprocessing.active_children():
            child.kill()
    assert not stuck, "the pool waited for the rest of a dead worker's message"
    assert out["r"][7] == ("failed", 7, "the worker process died (SIGKILL)")
    assert [out["r"][i] for i in range(40) if i != 7] == [2 * i for i in range(40) if i != 7]


def _killed_soon_after(i: int) -> int:
    if i == 5:  # (its result is sent before the kill: the worker dies holding its next job)
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGKILL)).start()
    time.sleep(0.05)
    return 2 * i


def test_an_item_whose_worker_was_killed_from_outside_is_run_again():
    """A worker killed by something else (the OOM killer choosing it) while it runs a job that
    is not at fault: that job's item runs again alone and gets its result; no item is lost."""
    from gradlint.pool import map_isolated

    out = map_isolated(_killed_soon_after, list(range(30)), 2, on_failure=lambda item, why: ("failed", item, why),
                       mp_context=multiprocessing.get_context("fork"))
    assert out == [2 * i for i in range(30)]


def _hangs_on_4(i: int) -> int:
    if i == 4:
        time.sleep(3600)  # (a native loop, as far as the parent can tell)
    return 2 * i


def test_a_job_past_its_time_limit_has_its_worker_killed_and_fails_alone(monkeypatch, quiet_crashes):
    """A file whose extraction never ends (no budget caught it) costs that file, after
    JOB_SECONDS, not the run: its worker is killed and replaced, the rest come back."""
    from gradlint import pool

    monkeypatch.setattr(pool, "JOB_SECONDS", 1.0)
    start = time.monotonic()
    out = pool.map_isolated(_hangs_on_4, list(range(12)), 2, on_failure=lambda item, why: ("failed", item, why))
    assert out[4] == ("failed", 4, "stopped after 1 s (its worker process was killed)")
    assert [out[i] for i in range(12) if i != 4] == [2 * i for i in range(12) if i != 4]
    assert time.monotonic() - start < 30  # (once: a lone item that overran is not run again)


def _stopped_on_5(item: tuple[int, str]) -> int:
    i, flag = item
    if i == 5 and not os.path.exists(flag):
        Path(flag).touch()  # (only the first try: a worker stopped from outside, not the item's fault)
        os.kill(os.getpid(), signal.SIGSTOP)
    return 2 * i


def test_a_worker_stopped_from_outside_is_killed_and_its_chunk_runs_again(tmp_path, monkeypatch, quiet_crashes):
    """A worker stopped by SIGSTOP (a debugger, a job-control mistake) held its job, and the run
    waited forever: past JOB_SECONDS it is killed, and the items of its chunk run again alone."""
    from gradlint import pool

    monkeypatch.setattr(pool, "JOB_SECONDS", 1.0)
    flag = str(tmp_path / "stopped")
    out = pool.map_isolated(_stopped_on_5, [(i, flag) for i in range(40)], 2,
                            on_failure=lambda item, why: ("failed", item, why), cost=lambda i: 1.0)
    assert os.path.exists(flag)
    assert out == [2 * i for i in range(40)]


def _large(item: tuple[int, str]) -> bytes:
    return bytes([item[0]]) * 3_000_000


def test_a_worker_stopped_while_it_writes_a_large_result_is_killed_and_its_job_runs_again(
        tmp_path, monkeypatch, quiet_crashes):
    """A worker stopped (SIGSTOP) once it had written part of a result larger than the socket's
    buffer: the parent waited inside its read of the rest, where the time limit never applied,
    and the run waited forever. The parent reads what has come without waiting for the rest, so
    the job runs past its limit, the worker is killed and the items of its chunk run again."""
    from gradlint import pool

    monkeypatch.setattr(pool, "JOB_SECONDS", 1.0)
    flag = tmp_path / "stopped"
    send = pool._send_result

    def stopped_midway(conn, data: bytes) -> None:
        # (in the forked worker: the first large result stops after a third of its bytes)
        if len(data) > 1_000_000 and not flag.exists():
            flag.touch()
            head = len(data).to_bytes(8, "big")
            os.write(conn.fileno(), head + data[:200_000])
            os.kill(os.getpid(), signal.SIGSTOP)
        send(conn, data)

    monkeypatch.setattr(pool, "_send_result", stopped_midway)
    out: list = []
    run = threading.Thread(target=lambda: out.append(pool.map_isolated(
        _large, [(i, str(flag)) for i in range(12)], 2, on_failure=lambda item, why: ("failed", item, why),
        mp_context=multiprocessing.get_context("fork"), cost=lambda i: 1.0)), daemon=True)
    run.start()
    run.join(60)
    assert not run.is_alive(), "the run waited for the rest of a stopped worker's result"
    assert flag.exists()
    assert out[0] == [bytes([i]) * 3_000_000 for i in range(12)]


def test_a_slow_job_within_its_time_limit_is_left_alone(monkeypatch):
    """The limit is per job, from when the worker began it: jobs that each take a good share of it
    are never killed, however many a worker runs."""
    from gradlint import pool

    monkeypatch.setattr(pool, "JOB_SECONDS", 1.5)
    out = pool.map_isolated(_slow_half_second, list(range(8)), 2, on_failure=lambda item, why: ("failed", item, why))
    assert out == [2 * i for i in range(8)]


def _slow_half_second(i: int) -> int:
    time.sleep(0.5)
    return 2 * i


def _quick(i: int) -> int:
    time.sleep(0.1)
    return 2 * i


def test_a_job_done_in_time_is_not_killed_when_the_parent_reads_it_late(monkeypatch):
    """The parent busy past the limit (here a slow callback): the jobs that ended meanwhile have
    their results waiting, and are read, not killed as overdue."""
    from gradlint import pool

    monkeypatch.setattr(pool, "JOB_SECONDS", 1.0)

    def on_result(i, result):
        if i == 0:
            time.sleep(2)

    out = pool.map_isolated(_quick, list(range(6)), 2, on_failure=lambda item, why: ("failed", item, why),
                            on_result=on_result, mp_context=multiprocessing.get_context("fork"))
    assert out == [2 * i for i in range(6)]


def _hangs_on_0(i: int) -> int:
    if i == 0:
        time.sleep(3600)
    return i


def test_a_parent_slow_at_every_round_does_not_put_off_a_hung_job_forever(monkeypatch):
    """Each round of the parent's loop longer than the wait it asked for is time not counted
    against the jobs; up to the limit again per job: the hung job is killed while the others
    still come in (it was killed only once the rounds were quick again, after all of them)."""
    from gradlint import pool

    monkeypatch.setattr(pool, "JOB_SECONDS", 1.0)
    monkeypatch.setattr(pool, "_TICK", 0.2)
    monkeypatch.setattr(pool, "_STALL", 0.3)
    settled: list[int] = []

    def on_result(i, result):
        settled.append(i)
        time.sleep(0.6)  # (a slow parent: every round stalls)

    out = pool.map_isolated(_hangs_on_0, list(range(12)), 2, on_failure=lambda item, why: ("failed", item, why),
                            on_result=on_result, mp_context=multiprocessing.get_context("fork"))
    assert out[0] == ("failed", 0, "stopped after 1 s (its worker process was killed)")
    assert out[1:] == list(range(1, 12))
    assert settled.index(0) < len(settled) - 3, settled


CTRL_Z_CHILD = """
import sys, time
from gradlint import pool
from tests.test_hostile_sources import _steps
pool.JOB_SECONDS, pool._TICK, pool._STALL = 2.0, 0.2, 0.5
print(pool.map_isolated(_steps, list(range(6)), 2, on_failure=lambda item, why: ("failed", item, why),
                       started=lambda: print("started", flush=True)), flush=True)
"""


def _steps(i: int) -> int:
    for _ in range(60):  # 0.6 s of work a stopped process does not do
        time.sleep(0.01)
    return 2 * i


def test_ctrl_z_longer_than_the_limit_kills_no_job():
    """Ctrl-Z then fg: the terminal stops gradlint and its workers alike; the time stopped is not
    counted against the jobs in flight (every one was killed on resume)."""
    from tests.conftest import ROOT

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", CTRL_Z_CHILD], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert child.stdout.readline() == "started\n"
    time.sleep(0.3)  # (jobs in flight)
    os.killpg(child.pid, signal.SIGSTOP)
    time.sleep(3)
    os.killpg(child.pid, signal.SIGCONT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.strip() == str([2 * i for i in range(6)]), out + err


def _kills_on_3(i: int) -> int:
    if i == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.02)
    return 2 * i


def test_a_pool_that_cannot_start_workers_again_fails_what_is_left_with_why(monkeypatch, quiet_crashes):
    """No process can be started after a death (no memory left for one, the fork server killed as
    it forks): the pool goes on with the workers it has, and when none is left, every item not
    done fails with the reason; the run ends."""
    from gradlint import pool

    made = []

    class Worker(pool._Worker):
        def __init__(self, context):
            if len(made) >= 2:
                raise OSError(12, "Cannot allocate memory")
            made.append(self)
            super().__init__(context)

    monkeypatch.setattr(pool, "_Worker", Worker)
    monkeypatch.setattr(pool.time, "sleep", lambda s: None)
    out = pool.map_isolated(_kills_on_3, list(range(12)), 2, on_failure=lambda item, why: ("failed", item, why),
                            mp_context=multiprocessing.get_context("fork"))
    assert len(made) == 2
    assert out[3] == ("failed", 3, "the worker process died (SIGKILL)")
    lost = [o for o in out if type(o) is tuple and o[0] == "failed" and o[1] != 3]
    assert all(o[2] == "no worker process could be started (OSError: [Errno 12] Cannot allocate memory)" for o in lost)
    assert [o for o in out if type(o) is int] == [2 * i for i in range(12) if type(out[i]) is int]


def _kills_its_fork_server(item: tuple[int, int, str]) -> int:
    i, test, flag = item
    if i == 0:
        os.kill(os.getpid(), signal.SIGKILL)  # (every time: the workers after it come from the fork server)
    if os.getppid() != test and not os.path.exists(flag):
        Path(flag).touch()
        os.kill(os.getppid(), signal.SIGKILL)  # this worker's parent: the fork server
    time.sleep(0.05)
    return 2 * i


def test_workers_of_a_fork_server_that_died_go_on(tmp_path, monkeypatch, quiet_crashes):
    """The fork server that started the workers made after a death is killed (as an OOM killer
    may): those workers still run, and the pool does not take them for dead (their process
    sentinel reports exit status 255 once the server is gone; their connection does not end)."""
    from gradlint import pool

    made = []

    class Worker(pool._Worker):
        def __init__(self, context):
            made.append(context)
            super().__init__(context)

    monkeypatch.setattr(pool, "_Worker", Worker)
    flag = str(tmp_path / "server-killed")
    out = pool.map_isolated(_kills_its_fork_server, [(i, os.getpid(), flag) for i in range(30)], 2,
                            on_failure=lambda item, why: ("failed", item[0], why))
    assert os.path.exists(flag)
    assert out[0] == ("failed", 0, "the worker process died (SIGKILL)")
    assert out[1:] == [2 * i for i in range(1, 30)]
    # the two first workers, and one each time item 0 killed its worker (twice)
    assert len(made) == 4


def _slow_pid(i: int) -> tuple[int, int]:
    time.sleep(0.3 if i < 2 else 0.01)
    return i, os.getpid()


def test_the_first_jobs_go_to_different_workers():
    """Jobs are handed out one to each worker in turn: the two largest files (given first) ran one
    after the other on one worker while the other sat idle."""
    from gradlint.pool import map_isolated

    out = map_isolated(_slow_pid, list(range(8)), 2, on_failure=lambda item, why: None)
    assert out[0][1] != out[1][1]


def _fails_to_load() -> None:
    raise ValueError("cannot be read here")


class _Unloadable:
    def __reduce__(self):
        return _fails_to_load, ()


def _unloadable_on_5(i: int):
    return _Unloadable() if i == 5 else 2 * i


def test_a_result_the_parent_cannot_read_fails_only_its_own_item():
    from gradlint.pool import map_isolated

    out = map_isolated(_unloadable_on_5, list(range(40)), 2, on_failure=lambda item, why: ("failed", item, why),
                       cost=lambda i: 1.0)
    assert out[5] == ("failed", 5, "the result could not be read: ValueError: cannot be read here")
    assert [out[i] for i in range(40) if i != 5] == [2 * i for i in range(40) if i != 5]


def test_a_check_whose_workers_cannot_start_extracts_in_its_own_process(tmp_path, monkeypatch):
    """No process can be forked (a pids limit, EAGAIN): the files are extracted in gradlint's own
    process, with a warning, rather than each reported as an internal error."""
    from gradlint import pool

    class Worker:
        def __init__(self, context):
            raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(pool, "_Worker", Worker)
    result = run(tmp_path, {f"m{i}.py": LOG_SOFTMAX for i in range(3)}, jobs=2)
    assert not result.internal_errors
    assert codes(result) == ["GL302"] * 3
    assert result.warnings == ["worker processes could not be started (BlockingIOError: [Errno 11] Resource temporarily "
                               "unavailable): the files are checked in this process"]


def _check_in_a_daemon(folder: str) -> list[str]:
    return codes(check_paths([folder], replace(Config(), root=folder), use_cache=False, jobs=2))


def test_a_check_inside_a_daemonic_process_extracts_in_that_process(tmp_path):
    """gradlint called from a multiprocessing.Pool's task (a daemonic process may not have
    children): no pool is tried."""
    for i in range(3):
        (tmp_path / f"m{i}.py").write_text(LOG_SOFTMAX)
    with multiprocessing.get_context("fork").Pool(1) as outer:
        assert outer.apply(_check_in_a_daemon, (str(tmp_path),)) == ["GL302"] * 3


def test_the_death_named_is_read_from_the_exit_status():
    from gradlint.pool import _death

    assert _death(-signal.SIGKILL) == "the worker process died (SIGKILL)"
    assert _death(-signal.SIGSEGV) == "the worker process died (SIGSEGV)"
    assert _death(255) == "the worker process died (exit status 255)"
    assert _death(None) == "the worker process died"


def test_workers_end_when_their_parent_is_killed(tmp_path):
    """A parent SIGKILLed mid-run (no atexit, no shutdown): each worker sees its connection end
    and exits, rather than waiting forever for a job."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from gradlint.pool import map_isolated

        def slow(i):
            time.sleep(2)

        if __name__ == "__main__":
            import multiprocessing
            multiprocessing.set_start_method("fork")
            def started():
                print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
            map_isolated(slow, list(range(8)), 3, on_failure=lambda item, why: None, started=started)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 3
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 20
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _running(p)]
    for p in alive:
        os.kill(p, signal.SIGKILL)
    assert not alive, "workers outlived their parent"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _imports_after_a_death(item: tuple[int, str, str]) -> int:
    i, folder, module = item
    if i == 0:
        time.sleep(0.3)  # the first pool's processes exist by now: the module's lock is held
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.6)  # still in flight when the first job's worker dies: re-run in new pools
    sys.path.insert(0, folder)
    importlib.import_module(module)
    return i


def test_a_pool_made_again_while_another_thread_imports_does_not_hang(tmp_path, quiet_crashes):
    """check_paths runs the rules while the pool extracts: when a worker dies, the pool is made
    again while that thread may be importing a module. A process forked then inherits the
    module's import lock held by a thread it does not have, and hangs at its first import of
    that module. Here a thread holds the lock of a module every job imports from the moment the
    first pool's processes exist; a job kills its worker, and every job still ends."""
    import importlib._bootstrap as bootstrap
    import threading

    from gradlint.pool import map_isolated

    module = f"gl_locked_{os.getpid()}"
    (tmp_path / f"{module}.py").write_text("X = 1\n")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        lock = bootstrap._get_module_lock(module)
        lock.acquire()
        held.set()
        release.wait()
        lock.release()

    def started() -> None:
        threading.Thread(target=hold, daemon=True).start()
        held.wait()

    out: dict[str, list] = {}
    items = [(i, str(tmp_path), module) for i in range(4)]
    run_it = threading.Thread(target=lambda: out.setdefault("r", map_isolated(
        _imports_after_a_death, items, 2, on_failure=lambda item, why: ("failed", item[0], why), started=started)),
        daemon=True)
    run_it.start()
    run_it.join(60)
    stuck = run_it.is_alive()
    if stuck:  # kill the hung processes so that the test session can end
        for child in multiprocessing.active_children():
            child.kill()
    release.set()
    run_it.join(10)
    assert not stuck, "a process of the pool made again hung on an import lock"
    assert out["r"] == [("failed", 0, "the worker process died (SIGKILL)"), 1, 2, 3]


def _slow_run_in_a_thread():
    """A map_isolated of 40 half-second items in a thread of its own (as check's facts thread runs
    its pool), once its workers exist: the thread, and where its results land (`out["r"]`)."""
    import threading

    from gradlint.pool import map_isolated

    going, out = threading.Event(), {}
    run_it = threading.Thread(target=lambda: out.setdefault("r", map_isolated(
        _slow_half_second, list(range(40)), 2, on_failure=lambda item, why: ("failed", item, why),
        started=going.set)), daemon=True)
    run_it.start()
    assert going.wait(30)
    return run_it, out


def test_the_process_exit_ends_a_pool_another_thread_runs_and_lets_it_start_no_worker(monkeypatch, quiet_crashes):
    """Ctrl-C reaches the main thread while check's facts thread runs (or is starting) a pool:
    at the exit, multiprocessing joins every child, and a worker that thread forked after the
    others were ended waited for a job forever (gradlint hung after 'interrupted'). The exit
    function ends the pools in use and no worker starts after it; the thread's run gives up."""
    from gradlint import pool as pools

    monkeypatch.setattr(pools, "_exiting", False)  # (restored after: this process goes on)
    run_it, out = _slow_run_in_a_thread()
    time.sleep(0.6)  # (a few results in)
    workers = [w.process for p in list(pools._live) for w in p.workers]
    assert workers
    pools._end_all()
    run_it.join(20)
    assert not run_it.is_alive(), "the pool's run did not end once its workers were killed"
    assert all(not w.is_alive() for w in workers)
    got = out["r"]
    assert any(r == 2 * i for i, r in enumerate(got))  # what came before the exit is kept
    assert all(r is None or r == 2 * i or r[0] == "failed" for i, r in enumerate(got))
    with pytest.raises(pools.Exiting):
        pools._Pool(2, None).start()


def test_ctrl_c_in_the_rules_ends_the_facts_thread_and_its_workers_before_it_goes_on(tmp_path, monkeypatch):
    """A Ctrl-C reaches the main thread (running the rules) while the facts thread runs the pool:
    that thread and its workers are ended before the KeyboardInterrupt goes on, so that Python
    never shuts down with a thread of gradlint still running (it crashed: exit -11)."""
    import threading

    from gradlint import api

    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "run_rules", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, {f"m{i}.py": LOG_SOFTMAX for i in range(200)}, jobs=2)
    assert calls == [1]
    assert not [t for t in threading.enumerate() if t.name == "gradlint-facts"]
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]
    # a check after it (a library caller that caught the interrupt) pools again
    monkeypatch.undo()
    (tmp_path / "again").mkdir()
    assert codes(run(tmp_path / "again", {f"m{i}.py": LOG_SOFTMAX for i in range(40)}, jobs=2)) == ["GL302"] * 40


def test_ending_a_threads_runs_leaves_other_threads_pools_alone(quiet_crashes):
    from gradlint import pool as pools

    run_it, out = _slow_run_in_a_thread()
    pools.end_runs_of(run_it)
    run_it.join(20)
    assert not run_it.is_alive()
    assert not any(r == 2 * i for i, r in enumerate(out["r"][20:], 20))  # (the rest never ran)
    assert pools.map_isolated(_pid_of, list(range(4)), 2, on_failure=lambda item, why: None)[0][0] == 0


def test_a_check_whose_worker_is_killed_goes_on_in_a_fork_server_pool(tmp_path, monkeypatch):
    """The real jobs (the cache's store and all) in the pools made again after a death: those
    start from a fork server, whose processes import gradlint afresh. A worker killed from
    outside costs at most its own file; every other file keeps its finding."""
    import threading

    import gradlint.pool

    contexts = []
    real_again = gradlint.pool._again
    monkeypatch.setattr(gradlint.pool, "_again", lambda ctx: contexts.append(real_again(ctx)) or contexts[-1])
    body = LOG_SOFTMAX + "".join(f"\ndef g{k}(x):\n    y = x * {k}\n    return torch.tanh(y) + torch.sigmoid(y)\n"
                                 for k in range(100))
    for i in range(50):
        (tmp_path / f"m{i:02}.py").write_text(body)

    def kill_one() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            children = multiprocessing.active_children()
            if children:
                time.sleep(0.2)
                os.kill(children[0].pid, signal.SIGKILL)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    result = check_paths([tmp_path], replace(Config(), root=str(tmp_path)), use_cache=True, jobs=2)
    killer.join()

    assert any(c is not None and c.get_start_method() == "forkserver" for c in contexts), "no pool was made again"
    assert len(result.files) == 50
    failed = [r for r in result.files if r.internal_error is not None]
    assert len(failed) <= 1 and all("the worker process died (SIGKILL)" in r.internal_error for r in failed)
    assert all([f.code for f in r.findings] == ["GL302"] for r in result.files if r.internal_error is None)


def test_a_libcst_segfault_and_a_killed_worker_cost_only_their_files(tmp_path, monkeypatch, quiet_crashes):
    """The real crash: libcst overflows its stack on 2 000 nested brackets once the CPython
    pre-check is out of the way; and a worker killed as the OOM killer would. The workers are
    forked from this process, so they run the patched functions."""
    import ast
    import functools

    import gradlint.pool
    import gradlint.source

    real_parse = gradlint.source._cpython_parse
    monkeypatch.setattr(gradlint.source, "_cpython_parse",
                        lambda text, display: ast.parse("pass") if "((((((((" in text else real_parse(text, display))
    real_extract = api._extract

    def extract(path, display, *rest):
        if display.endswith("oom.py"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_extract(path, display, *rest)

    monkeypatch.setattr(api, "_extract", extract)
    monkeypatch.setattr(gradlint.pool, "map_isolated", functools.partial(
        gradlint.pool.map_isolated, mp_context=multiprocessing.get_context("fork")))

    files: dict[str, str | bytes] = {f"ok{i:02}.py": LOG_SOFTMAX for i in range(40)}
    files["deep.py"] = "import torch\nx = " + "(" * 2000 + "1" + ")" * 2000 + "\n"
    files["oom.py"] = LOG_SOFTMAX
    result = run(tmp_path, files, jobs=2)

    assert len(result.files) == 42
    failed = {Path(r.path).name: r.internal_error for r in result.internal_errors}
    assert set(failed) == {"deep.py", "oom.py"}
    assert failed["deep.py"].startswith("the worker process died (SIGSEGV) while checking")
    assert failed["deep.py"].endswith("deep.py")
    assert failed["oom.py"].startswith("the worker process died (SIGKILL) while checking")
    good = [r for r in result.files if Path(r.path).name.startswith("ok")]
    assert len(good) == 40 and all([f.code for f in r.findings] == ["GL302"] for r in good)
    assert api.exit_code(result, fail_on=min(f.severity for f in result.findings)) == 2
    text = render_text(result)
    assert "All checks passed" not in text
    assert text.splitlines()[-1] == "2 files could not be checked (internal error)."


def test_a_file_whose_extraction_never_ends_costs_only_that_file(tmp_path, monkeypatch, quiet_crashes):
    """A file no budget stops (here a patched extractor that sleeps: no known input does it) is an
    internal error naming it after JOB_SECONDS; every other file is reported."""
    import functools

    import gradlint.pool

    real_extract = api._extract

    def extract(path, display, *rest):
        if display.endswith("stuck.py"):
            time.sleep(3600)
        return real_extract(path, display, *rest)

    monkeypatch.setattr(api, "_extract", extract)
    monkeypatch.setattr(gradlint.pool, "JOB_SECONDS", 2.0)
    monkeypatch.setattr(gradlint.pool, "map_isolated", functools.partial(
        gradlint.pool.map_isolated, mp_context=multiprocessing.get_context("fork")))
    files: dict[str, str | bytes] = {f"ok{i:02}.py": LOG_SOFTMAX for i in range(10)}
    files["stuck.py"] = LOG_SOFTMAX
    result = run(tmp_path, files, jobs=2)

    failed = {Path(r.path).name: r.internal_error for r in result.internal_errors}
    assert set(failed) == {"stuck.py"}
    assert failed["stuck.py"].startswith("stopped after 2 s (its worker process was killed) while checking")
    assert failed["stuck.py"].endswith("stuck.py")
    good = [r for r in result.files if Path(r.path).name.startswith("ok")]
    assert len(good) == 10 and all([f.code for f in r.findings] == ["GL302"] for r in good)


def test_a_crash_in_a_small_run_with_a_warm_cache_costs_only_its_file(tmp_path, monkeypatch, quiet_crashes):
    """A run with two files to extract and the others' results in the cache (a pre-commit run):
    they are extracted in workers, so a native crash in one (libcst's stack overflow, the CPython
    pre-check out of the way) costs that file, not the run, the other and the cached results."""
    import ast
    import functools

    import gradlint.pool
    import gradlint.source

    files: dict[str, str | bytes] = {f"ok{i}.py": LOG_SOFTMAX for i in range(3)}
    first = run(tmp_path, files, jobs=2, use_cache=True)
    assert len(first.findings) == 3
    real_parse = gradlint.source._cpython_parse
    monkeypatch.setattr(gradlint.source, "_cpython_parse",
                        lambda text, display: ast.parse("pass") if "((((((((" in text else real_parse(text, display))
    monkeypatch.setattr(gradlint.pool, "map_isolated", functools.partial(
        gradlint.pool.map_isolated, mp_context=multiprocessing.get_context("fork")))
    (tmp_path / "deep.py").write_text("import torch\nx = " + "(" * 2000 + "1" + ")" * 2000 + "\n")
    (tmp_path / "ok0.py").write_text(LOG_SOFTMAX + "# edited\n")
    result = run(tmp_path, {}, jobs=2, use_cache=True)
    failed = {Path(r.path).name: r.internal_error for r in result.internal_errors}
    assert set(failed) == {"deep.py"} and failed["deep.py"].startswith("the worker process died (SIGSEGV)")
    assert sorted(Path(f.path).name for f in result.findings) == ["ok0.py", "ok1.py", "ok2.py"]


def test_text_summary_never_says_passed_when_a_file_failed():
    from gradlint.findings import FileResult

    result = RunResult(files=[FileResult(path="a.py"), FileResult(path="b.py", internal_error="boom")])
    assert render_text(result) == "No findings (1 file checked).\n1 file could not be checked (internal error).\n"


def test_the_fork_server_is_silent_when_gradlints_process_is_gone_mid_start():
    """A Ctrl-C while a worker starts from the fork server: its read of what to run ends early,
    and the EOFError's traceback followed gradlint's 'interrupted'. gradlint.quiet_server ends such
    a start silently; any other error still prints."""
    code = "import pickle, gradlint.quiet_server\nraise {}\n"
    for gone in ("EOFError('Ran out of input')", "pickle.UnpicklingError('pickle data was truncated')"):
        ended = subprocess.run([sys.executable, "-c", code.format(gone)], capture_output=True, text=True)
        assert ended.returncode == 1 and ended.stderr == ""
    for other in ("ValueError('bad')", "pickle.UnpicklingError('invalid load key')"):
        ended = subprocess.run([sys.executable, "-c", code.format(other)], capture_output=True, text=True)
        assert ended.returncode == 1 and other.split("(")[1].strip("')") in ended.stderr


@pytest.mark.parametrize("pattern", ["(" * 14 + "a" + ",)" * 14, "[" * 40 + "a" + "]" * 40,
                                     "{'k': " * 12 + "a" + "}" * 12], ids=["tuples", "lists", "mappings"])
def test_match_patterns_libcst_cannot_afford_are_a_named_skip(tmp_path, pattern):
    """libcst's parse time grows exponentially with the nesting of match patterns (these took
    minutes to forever); the other files are still checked."""
    text = f"import torch\n\nmatch torch:\n    case {pattern}:\n        pass\n"
    result = run(tmp_path, {"deep.py": text, "m.py": "import torch\n" + LOG_SOFTMAX})
    skipped = [r for r in result.files if r.skipped]
    assert [Path(r.path).name for r in skipped] == ["deep.py"] and "match patterns nested" in skipped[0].skipped
    assert [f.code for f in result.findings] == ["GL302"]


def test_match_patterns_of_real_code_are_parsed():
    import ast

    text = ("match event:\n    case {'type': 'click', 'pos': (x, y)} | {'type': 'tap', 'at': [x, y]}:\n        pass\n"
            "    case Point(x=0, y=[a, (b, c), *rest]):\n        pass\n")
    assert 0 < budget.pattern_cost(ast.parse(text), text) < 1_000


@pytest.mark.parametrize("head", [b"# coding: undefined\n", b"# coding: punycode\n",
                                  b"# coding: unicode_escape\nx = '\\xzz'\n"], ids=["undefined", "punycode", "escape"])
def test_a_codec_that_cannot_read_the_file_is_gl001(tmp_path, head):
    """Codecs that are no text encoding of source raised UnicodeError or LookupError out of the
    decoder: an internal error (through --stdin-filename too)."""
    result = run(tmp_path, {"x.py": head + b"import torch\n"})
    (f,) = only(result).findings
    assert f.code == "GL001" and "cannot decode file" in f.message


def test_a_file_of_more_syntax_nodes_than_the_budget_is_a_named_skip(tmp_path):
    """Within the size and line budgets, a 1.7 MB `nn.ModuleList([...])` literal of 100 000 layers
    took 55 s and 5 GB (libcst's parse alone 41 s); the file beside it is still checked."""
    layers = ", ".join(["nn.Linear(4, 4)"] * (budget.MAX_NODES // 6))
    result = run(tmp_path, {"wide.py": f"import torch.nn as nn\nlayers = nn.ModuleList([{layers}])\n",
                            "m.py": "import torch\n" + LOG_SOFTMAX})
    (wide,) = [r for r in result.files if r.skipped]
    assert Path(wide.path).name == "wide.py" and "syntax nodes are over gradlint's parse budget" in wide.skipped
    assert [f.code for f in result.findings] == ["GL302"]


def test_extractors_that_fail_to_import_end_the_run_with_errors_not_a_hang(tmp_path):
    # the pool's thread imported the extractors outside its error handling: a failure there (a
    # broken install) left the rules waiting for facts that never came, for ever
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text("import torch\nx = torch.zeros(3)\n")
    script = ("import sys\n"
              "sys.modules['gradlint.source.numerics'] = None\n"
              "from gradlint.cli import main\nsys.argv = ['gradlint', 'check', '--no-cache', '-j', '2', 'a.py', 'b.py']\n"
              "main()\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "internal error while checking a.py" in proc.stderr and "internal error while checking b.py" in proc.stderr
