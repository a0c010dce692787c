"""Data tables left out of libcst's parse (gradlint.source.skeleton): which are, and that nothing
after them moves: findings, spans and fixes land where they did with the table parsed."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from gradlint.api import check_paths
from gradlint.config import Config
from gradlint.fix import apply_fixes
from gradlint.source import extract_python_text, parse
from gradlint.source.skeleton import MIN_LINES, skeleton
from gradlint.text import split_lines

# A table as timm writes one (`_cfg` calls, names, tuples, signs), with line breaks of every kind
# libcst and CPython count, a form feed, a comment and non-ASCII text inside.
ROWS = [f"    'model_{i}.tag': _cfg(url='https://x/{i}.pth', input_size=(3, 224, 224), mean=MEAN, crop=-0.5)," for i in range(MIN_LINES)]
TABLE = "default_cfgs = generate_default_cfgs({\n" + "\n".join(ROWS[:40]) + "\r\n" + "\n".join(ROWS[40:80]) + "\r" \
    + "    # naïve comment \f\n" + "\n".join(ROWS[80:]) + "\n    'ünïcode': _cfg(url='é'),\n})\n"
HEAD = "import torch\nimport torch.nn as nn\n\nMEAN = (0.5, 0.5, 0.5)\n\n\ndef _cfg(url='', **kwargs):\n    return dict(url=url, **kwargs)\n\n\n"
# After the table: a numerics finding with a fix, and a deep sigmoid stack (an architecture finding).
TAIL = """

def f(z):
    return torch.log(torch.softmax(z, dim=-1))


class Deep(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.Sigmoid()) for _ in range(40)])

    def forward(self, x):
        return self.body(x)
"""
SOURCE = HEAD + TABLE + TAIL


def _blank(table: str) -> str:
    """The table replaced by an empty dict on as many lines (line breaks kept): what the skeleton
    must be equivalent to."""
    breaks = [c for c in table.replace("\r\n", "\n").replace("\r", "\n") if c == "\n"]
    return "default_cfgs = {}" + "\n" * len(breaks)


def test_a_table_is_skipped_and_every_line_keeps_its_number():
    tree = ast.parse(SOURCE)
    done = skeleton(SOURCE, tree)
    assert done is not None
    text, stub_tree = done
    assert len(text) < len(SOURCE) / 3
    # the same line breaks in the same places outside the table
    assert len(split_lines(text)) == len(split_lines(SOURCE))
    assert text.endswith(TAIL) and text.startswith(HEAD)
    # the tree given to the positions service is CPython's own tree of the skeleton
    assert ast.dump(stub_tree, include_attributes=True) == ast.dump(ast.parse(text), include_attributes=True)


def test_findings_and_fixes_after_a_table_are_those_of_the_file_without_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("with_table.py").write_bytes(SOURCE.encode("utf-8"))
    Path("blank.py").write_bytes((HEAD + _blank(TABLE) + TAIL).encode("utf-8"))
    cfg = Config(root=os.getcwd())
    result = check_paths(["with_table.py", "blank.py"], cfg, use_cache=False, jobs=1)
    by_file = {r.path: [(f.code, f.span, f.message) for f in r.findings] for r in result.files}
    assert by_file["with_table.py"] == by_file["blank.py"]
    codes = {c for c, _s, _m in by_file["with_table.py"]}
    assert {"GL302", "GL101"} <= codes
    log_line = SOURCE.replace("\r\n", "\n").replace("\r", "\n").split("\n").index(
        "    return torch.log(torch.softmax(z, dim=-1))") + 1
    assert [s.line for c, s, _m in by_file["with_table.py"] if c == "GL302"] == [log_line]
    # the fix rewrites that line and nothing else: the table is there, byte for byte
    apply_fixes(check_paths(["with_table.py"], Config(root=os.getcwd(), select=("GL302",)), use_cache=False, jobs=1),
                write=True, config=Config(root=os.getcwd(), select=("GL302",)))
    fixed = Path("with_table.py").read_bytes().decode("utf-8")
    assert fixed == SOURCE.replace("torch.log(torch.softmax(z, dim=-1))", "torch.log_softmax(z, dim=-1)")


def test_the_model_after_a_table_is_the_same_network():
    with_table = extract_python_text(SOURCE, "m.py")
    blank = extract_python_text(HEAD + _blank(TABLE) + TAIL, "m.py")
    assert [n.name for n in with_table.networks] == ["Deep"]
    assert with_table.networks == blank.networks


def _lines(n: int, row: str) -> str:
    return "\n".join(row.format(i=i) for i in range(n))


@pytest.mark.parametrize("source", [
    # read by a builder: a model's arguments may come from it
    "TABLE = {\n" + _lines(MIN_LINES, "    'm{i}': dict(depth={i}),") + "\n}\n\n\ndef make(v):\n    return Net(**TABLE[v])\n",
    # read by a method, in a class under an `if`
    "TABLE = {\n" + _lines(MIN_LINES, "    'm{i}': {i},") + "\n}\nif True:\n    class A:\n        def f(self):\n            return TABLE\n",
    # read by a lambda at the top level
    "TABLE = [\n" + _lines(MIN_LINES, "    {i},") + "\n]\nget = lambda i: TABLE[i]\n",
    # read by a lambda over several lines
    "TABLE = [\n" + _lines(MIN_LINES, "    {i},") + "\n]\nget = (lambda i:\n       TABLE[i])\n",
    # read through a name made from it at the top level
    "TABLE = {\n" + _lines(MIN_LINES, "    'm{i}': {i},") + "\n}\nNORM = TABLE\n\n\ndef f():\n    return NORM\n",
    "TABLE = {\n" + _lines(MIN_LINES, "    'm{i}': {i},") + "\n}\nfor k in TABLE:\n    v = k\n\n\ndef f():\n    return v\n",
    # read by a function under a spelling Python normalises to its name (NFKC)
    "TABLE = {\n" + _lines(MIN_LINES, "    'm{i}': {i},") + "\n}\n\n\ndef f():\n    return \uff34\uff21\uff22\uff2c\uff25\n",
    # read by a top-level training loop
    "TABLE = {\n" + _lines(MIN_LINES, "    'm{i}': {i},") + "\n}\nfor x, y in loader:\n    loss = crit(net(x), y)\n"
    "    loss.backward()\n    clip_grad_norm_(net.parameters(), TABLE['m0'])\n",
    # read by the decorator of a definition nested in an `if`
    "TABLE = {\n" + _lines(MIN_LINES, "    'm{i}': {i},") + "\n}\nif True:\n    @register(TABLE)\n    def f():\n        pass\n",
    # a class is called in it: config classes, layers
    "cfgs = dict(\n" + _lines(MIN_LINES, "    m{i}=ModelCfg(depth={i}),") + "\n)\n",
    "layers = [\n" + _lines(MIN_LINES, "    nn.Linear({i}, {i}),") + "\n]\n",
    # computed: a subscript, a comprehension, arithmetic
    "TABLE = {\n" + _lines(MIN_LINES, "    'm{i}': OTHER[{i}],") + "\n}\n",
    "TABLE = {\n" + _lines(MIN_LINES, "    'm{i}': [k for k in range({i})],") + "\n}\n",
    "TABLE = {\n" + _lines(MIN_LINES, "    'm{i}': {i} * 2,") + "\n}\n",
    # too short to be worth it
    "TABLE = {\n" + _lines(MIN_LINES - 3, "    'm{i}': {i},") + "\n}\n",
    # a statement after it on its last line: its columns would move in the skeleton
    "TABLE = {\n" + _lines(MIN_LINES, "    'm{i}': {i},") + "\n}; y = torch.log(torch.softmax(z, -1))\n",
    # two targets, a tuple target
    "A = B = {\n" + _lines(MIN_LINES, "    'm{i}': {i},") + "\n}\n",
    "A, B = (\n" + _lines(MIN_LINES, "    {i},") + "\n)\n",
], ids=["builder", "method-in-if", "lambda", "lambda-lines", "alias", "loop-variable", "nfkc-spelling",
        "top-level-training", "nested-decorator", "config-class", "layer", "subscript", "comprehension", "arithmetic",
        "short", "same-line-statement", "two-targets", "tuple-target"])
def test_look_alike_tables_are_parsed(source):
    assert skeleton(source, ast.parse(source)) is None


def test_a_table_copied_at_the_top_level_as_timm_does_is_skipped():
    # vision_transformer.py: a comprehension and a loop over the table (a comment naming a model),
    # then generate_default_cfgs; functions bind `n` and `c` of their own
    source = ("import copy\nTABLE = {\n" + _lines(MIN_LINES, "    'm{i}': _cfg(notes=('quickgelu',)),") + "\n}\n"
              "names = [n for n, c in TABLE.items() if c.get('notes')]\nfor n in names:\n"
              "    # use the non-quickgelu model name\n    c = copy.deepcopy(TABLE[n])\n    TABLE[n + '_q'] = c\n"
              "TABLE = generate(TABLE)\n\n\ndef f(n, c):\n    return n + c\n\n\ndef g(x):\n"
              "    return [c for c in x]\n")
    assert skeleton(source, ast.parse(source)) is not None


def test_a_table_read_only_at_the_top_level_is_skipped_and_its_name_is_unknown():
    source = ("TABLE = {\n" + _lines(MIN_LINES, "    'm{i}': {i},") + "\n}\n"
              "names = [n for n in TABLE]\nTABLE = finish(TABLE)\n")
    done = skeleton(source, ast.parse(source))
    assert done is not None and "'m5'" not in done[0]
    src = parse("t.py", source, ast.parse(source))
    assert src.text == source  # what rules, suppressions and fixes read is the file's own text


def test_a_fix_on_the_last_line_of_a_table_lands_on_its_column(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = ("import torch\nTABLE = {\n" + _lines(MIN_LINES, "    'm{i}': {i},")
              + "\n}; f = lambda z: torch.log(torch.softmax(z, -1))\n")
    assert skeleton(source, ast.parse(source)) is None
    Path("t.py").write_text(source)
    cfg = Config(root=os.getcwd(), select=("GL302",))
    apply_fixes(check_paths(["t.py"], cfg, use_cache=False, jobs=1), write=True, config=cfg)
    assert Path("t.py").read_text() == source.replace("torch.log(torch.softmax(z, -1))", "torch.log_softmax(z, -1)")


@pytest.mark.parametrize("table", [
    "TABLE = (\n{\n" + _lines(MIN_LINES, "    'm{i}': _cfg({i}),") + "\n}\n)  # done\n",
    "TABLE = ({\n" + _lines(MIN_LINES, "    'm{i}': _cfg({i}),") + "\n})\n",
    "TABLE: dict = dict(\n" + _lines(MIN_LINES, "    m{i}=-{i},") + "\n    é='ü')\n",
], ids=["parenthesized", "parenthesized-same-line", "annotated"])
def test_the_positions_tree_is_cpythons_tree_of_the_skeleton(table):
    source = "import torch\n" + table + "x = torch.log(torch.softmax(torch.ones(2), 0))\n"
    done = skeleton(source, ast.parse(source))
    assert done is not None
    assert ast.dump(done[1], include_attributes=True) == ast.dump(ast.parse(done[0]), include_attributes=True)


def _fuzzed_program(rng) -> tuple[str, str]:
    """A program with a data table of odd text (line breaks of every kind, the characters
    `str.splitlines` breaks at, non-ASCII) between fixable statements; and its fixed text."""
    from tests.fix_fuzz import CHARS

    ends = ["\n", "\r\n", "\r"]
    rows = []
    for i in range(MIN_LINES + rng.randrange(40)):
        odd = rng.choice(CHARS + ("é", "\t", ""))
        row = f"    'k{i}{odd}': _cfg(url='u{i}{odd}', size=({i}, -{i}), mean=MEAN),"
        if rng.random() < 0.2:
            row += f"  # note {odd}"
        rows.append(row + rng.choice(ends))
    table = "TABLE = generate({" + rng.choice(ends) + "".join(rows) + "})"
    bad = "torch.log(torch.softmax(z, dim=-1))"
    good = "torch.log_softmax(z, dim=-1)"

    def snippet(k: int) -> str:
        end = rng.choice(ends)
        if rng.random() < 0.3:
            return f"x{k} = 1; g{k} = lambda z: {bad}{end}"
        return f"{rng.choice(['', chr(12)])}def f{k}(z):{end}    return {bad}{end}"

    parts = ["import torch" + rng.choice(ends), snippet(0), table + rng.choice(["\n", "\r\n", "  # end\n"]), snippet(1)]
    if rng.random() < 0.5:
        parts.append("names = list(TABLE)\n")
    text = "".join(parts)
    return text, text.replace(bad, good)


def test_fuzz_fixes_around_tables_land_on_their_lines(tmp_path, monkeypatch):
    import random

    monkeypatch.chdir(tmp_path)
    rng = random.Random(20261203)
    cfg = Config(root=os.getcwd(), select=("GL302",))
    for n in range(12):
        text, fixed = _fuzzed_program(rng)
        done = skeleton(text, ast.parse(text))
        assert done is not None, n
        assert ast.dump(done[1], include_attributes=True) == ast.dump(ast.parse(done[0]), include_attributes=True), n
        path = Path(f"p{n}.py")
        path.write_bytes(text.encode("utf-8"))
        result = check_paths([str(path)], cfg, use_cache=False, jobs=1)
        assert sum(len(r.findings) for r in result.files) == 2, n
        apply_fixes(result, write=True, config=cfg)
        assert path.read_bytes().decode("utf-8") == fixed, n
