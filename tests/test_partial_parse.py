"""A class of another file re-run with a caller's arguments parses only what it can reach
(skeleton.without_units): the other units' bodies are left out, every kept line keeps its number
and text, and the findings are those of a whole parse."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gradlint import source
from gradlint.api import check_paths
from gradlint.config import Config
from gradlint.source import skeleton
from gradlint.source.skeleton import without_units
from gradlint.text import split_lines

BLOCKS = '''"""Blocks."""
import torch
from torch import nn

__all__ = ["Block", "Unused", "helper", "unused_fn"]
WIDTH = 64


def helper(d):
    """Used by Block."""
    return nn.Linear(d, d)


def unused_fn(x):\r
    y = x * 2\r
    return y  # a comment\r


class Mixin:
    scale = 1.0


class Block(Mixin, nn.Module):
    def __init__(self, d=WIDTH):
        super().__init__()
        self.fc = helper(d)
        self.act = nn.Sigmoid()

    def forward(self, x):
        return self.act(self.fc(x))


class Unused(nn.Module):
    """Never reached from Block.\f

    Its body spans lines with a form feed and an old Mac line break.\r"""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(x)


def short(x): return x


class Named(nn.Module):
    pass


REGISTRY = {"named": "Named"}
'''


def _lines(text: str) -> list[str]:
    return split_lines(text, keepends=False)


def test_the_units_a_class_cannot_reach_are_left_out_and_lines_keep_their_numbers() -> None:
    tree = ast.parse(BLOCKS)
    text, kept = without_units(BLOCKS, tree, {"Block"})
    # Block, what it names (its bases, helper), what the module's statements name (a string of
    # a table counts: it may be looked up); `__all__` lists names for `import *` only
    assert kept == {"Block", "Mixin", "helper", "Named"}
    ast.parse(text)  # still Python
    before, after = _lines(BLOCKS), _lines(text)
    assert len(after) == len(before)
    short = ast.parse(text)
    for node in tree.body:
        name = getattr(node, "name", None)
        if name in kept or name is None or name == "short":
            # kept units, module statements and a body on its header's line: line for line
            assert after[node.lineno - 1:node.end_lineno] == before[node.lineno - 1:node.end_lineno], name
    elided = {n.name: n for n in short.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    for name in ("Unused", "unused_fn"):
        body = elided[name].body
        assert len(body) == 1 and isinstance(body[0].value, ast.Constant) and body[0].value.value is Ellipsis
    # the next unit starts on the line it started on
    assert elided["short"].lineno == next(n.lineno for n in tree.body if getattr(n, "name", "") == "short")


@pytest.mark.parametrize("text", [
    "import torch\n\n\ndef f():\n    return globals()['g']\n\n\nclass A:\n    x = 1\n\n\ndef g():\n    return 1\n",
    "import torch\nX = eval('1')\n\n\nclass A:\n    x = 1\n\n\ndef g():\n    return 1\n",
    "class A:\n    x = 1\n",  # nothing else to leave out
])
def test_a_file_that_builds_names_or_has_nothing_else_is_parsed_whole(text: str) -> None:
    assert without_units(text, ast.parse(text), {"A"}) is None


def test_a_file_with_a_global_statement_is_parsed_whole() -> None:
    # `bump` may change the constant A reads, and nothing names it
    text = "N = 1\n\n\ndef bump():\n    global N\n    N = 2\n\n\nclass A:\n    def f(self):\n        return N\n\n\ndef other():\n    return 3\n"
    assert without_units(text, ast.parse(text), {"A"}) is None
    # an identifier that merely holds the word is no global statement
    text = text.replace("    global N\n", "    global_pool = 1\n")
    assert without_units(text, ast.parse(text), {"A"})[1] == {"A"}


def _project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "blocks.py").write_bytes(BLOCKS.encode())
    (tmp_path / "model.py").write_text(
        "import torch\nfrom torch import nn\n\nfrom blocks import Block\n\n\n"
        "class Deep(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.body = nn.Sequential(*[Block(256) for _ in range(16)])\n\n"
        "    def forward(self, x):\n        return self.body(x)\n")
    return tmp_path


def test_findings_with_a_partial_parse_are_those_of_a_whole_one(tmp_path: Path, monkeypatch) -> None:
    root = _project(tmp_path)
    config = Config(select=("GL1",), root=str(root))
    wanted: list = []
    real = source.parsed

    def recording(path, display, known=None, **kw):
        got = real(path, display, known, **kw)
        wanted.append((Path(path).name, kw.get("wanted"), got.units if got is not None else None))
        return got

    monkeypatch.setattr(source, "parsed", recording)
    partial = check_paths([root / "model.py"], config, use_cache=False, jobs=1)
    assert ("blocks.py", {"Block"}, frozenset({"Block", "Mixin", "helper", "Named"})) in wanted
    assert partial.findings and {f.code for f in partial.findings} == {"GL101"}
    monkeypatch.setattr(skeleton, "without_units", lambda *a: None)
    whole = check_paths([root / "model.py"], config, use_cache=False, jobs=1)
    assert [(f.code, f.span, f.message) for f in partial.findings] == [(f.code, f.span, f.message) for f in whole.findings]


NESTED_SAME_NAME = '''import torch.nn as nn


class Block(nn.Module):
    def __init__(self, dim, act="relu"):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.act = nn.Sigmoid() if act == "sigmoid" else nn.ReLU()

    def forward(self, x):
        return self.act(self.fc(x))


class Legacy:
    class Block(nn.Module):
        def __init__(self, dim, act="relu"):
            super().__init__()
            self.fc = nn.Linear(dim, dim)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.fc(x))
'''


def test_a_nested_class_never_replaces_the_module_class_of_its_name(tmp_path: Path, monkeypatch) -> None:
    # `Legacy.Block` is no global of b.py: the caller's Block is the top-level one (Sigmoid), with
    # b.py parsed whole or in part (before, the nested class won on a whole parse: review 14)
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "b.py").write_text(NESTED_SAME_NAME)
    (tmp_path / "a.py").write_text(
        "import torch.nn as nn\nfrom b import Block\n\n\nclass Net(nn.Module):\n    def __init__(self, dim=64):\n"
        "        super().__init__()\n        self.blocks = nn.Sequential(*[Block(dim, act=\"sigmoid\") for _ in range(12)])\n\n"
        "    def forward(self, x):\n        return self.blocks(x)\n")
    config = Config(select=("GL101",), root=str(tmp_path))
    partial = check_paths([tmp_path / "a.py"], config, use_cache=False, jobs=1).findings
    monkeypatch.setattr(skeleton, "without_units", lambda *a: None)
    whole = check_paths([tmp_path / "a.py"], config, use_cache=False, jobs=1).findings
    assert [f.message for f in partial] == [f.message for f in whole]
    assert len(partial) == 1 and "Sigmoid" in partial[0].message
