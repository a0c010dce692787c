"""A forward read under its constructor's defaults (source/numerics_defaults.py): the tests on
`self.<setting>` set from an `__init__` parameter with a literal default decide, and the
finding holds only while no call of the class in the project passes another value."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from gradlint.api import check_paths
from gradlint.config import Config
from gradlint.rules.numerics.gl303_softmax_into_cross_entropy import _WIDE_DEEP
from gradlint.source.numerics_defaults import decided, init_defaults

DEFAULTS = {"method": ("method", 2, "'multiclass'", "multiclass"), "use_act": ("use_act", 3, "True", True),
            "act": ("act", -1, "None", None)}


@pytest.mark.parametrize("test, expected", [
    ("self.method == 'multiclass'", (True, {"method"})),
    ("self.method != 'multiclass'", (False, {"method"})),
    ("self.method in ('binary', 'multiclass')", (True, {"method"})),
    ("self.method not in ('binary',)", (True, {"method"})),
    ("not self.use_act", (False, {"use_act"})),
    ("self.act is None", (True, {"act"})),
    ("self.act is not None and self.use_act", (False, {"act", "use_act"})),
    ("self.act is None or self.method == 'x'", (True, {"act", "method"})),
    ("self.other == 'multiclass'", None),  # not a setting with a default
    ("self.method == x", None),  # not a literal
    ("self.use_act and x > 0", None),  # one side undecided
    ("self.method == 1 < 2", None),  # a chained comparison
])
def test_tests_on_settings_are_decided_by_their_defaults(test, expected):
    got = decided(cst.parse_expression(test), DEFAULTS)
    assert (None if got is None else (got[0], set(got[1]))) == expected


def test_a_setting_assigned_again_in_the_class_has_no_default():
    cls = cst.parse_module(
        "class M:\n"
        "    def __init__(self, n, method='multiclass', scale=2.0, act=nn.ReLU()):\n"
        "        self.method = method\n        self.scale = scale\n        self.act = act\n"
        "    def set_scale(self, s):\n        self.scale = s\n").body[0]
    methods = [s for s in cls.body.body if isinstance(s, cst.FunctionDef)]
    found = init_defaults(methods[0], methods, {"method", "scale", "act"})
    # `scale` has a setter, `act` no literal default
    assert found == {"method": ("method", 1, "'multiclass'", "multiclass")}


def _found(tmp_path: Path, files: dict[str, str]) -> set[tuple[str, int, str]]:
    (tmp_path / "pyproject.toml").write_text("")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = check_paths([tmp_path], Config(select=("GL3",), root=str(tmp_path)), use_cache=False, jobs=1)
    assert not result.internal_errors
    return {(Path(f.path).name, f.span.line, f.code) for f in result.findings}


WIDE = _WIDE_DEEP.format(default="'multiclass'")


def test_the_default_holds_when_no_call_passes_another(tmp_path):
    found = _found(tmp_path, {"wide.py": WIDE, "main.py": "from wide import WideDeep\n\nm = WideDeep(8, 3)\n"})
    assert found == {("wide.py", 20, "GL303")}


@pytest.mark.parametrize("call", ["WideDeep(8, 3, 'binary')", "WideDeep(8, 3, method='binary')",
                                  "WideDeep(*args)", "WideDeep(**cfg)"])
def test_a_call_that_passes_the_setting_or_may_pass_it_silences_it(tmp_path, call):
    main = f"from wide import WideDeep\n\nargs, cfg = (), {{}}\nm = {call}\n"
    assert _found(tmp_path, {"wide.py": WIDE, "main.py": main}) == set()


def test_a_subclass_may_pass_another_setting(tmp_path):
    main = ("from wide import WideDeep\n\n\nclass Binary(WideDeep):\n"
            "    def __init__(self):\n        super().__init__(8, 1, method='binary')\n")
    assert _found(tmp_path, {"wide.py": WIDE, "main.py": main}) == set()


def test_the_tests_looked_at_are_those_of_every_block_of_forward_but_nested_defs():
    from gradlint.source.numerics_defaults import _if_tests

    fn = cst.parse_module(
        "def forward(self, x):\n    if self.a:\n        if self.b: pass\n    elif self.c:\n        pass\n"
        "    else:\n        if self.d: pass\n    try:\n        if self.e: pass\n    except Exception:\n"
        "        if self.f: pass\n    finally:\n        if self.g: pass\n    for i in x:\n        if self.h: pass\n"
        "    else:\n        if self.i: pass\n    match x:\n        case 1:\n            if self.j: pass\n"
        "    def inner():\n        if self.k: pass\n").body[0]
    assert sorted(cst.Module([]).code_for_node(t) for t in _if_tests(fn)) == [f"self.{c}" for c in "abcdefghij"]


EARLY = '''import torch.nn.functional as F
from torch import nn


class A(nn.Module):
    def __init__(self, method='multiclass'):
        super().__init__()
        self.method = method
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        out = self.fc(x)
        if self.method == 'multiclass':
            return F.softmax(out, dim=1)
        return out


class B(nn.Module):
    def __init__(self, logits=False):
        super().__init__()
        self.logits = logits
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        out = self.fc(x)
        return out if self.logits else F.softmax(out, dim=1)


class C(nn.Module):
    def __init__(self, method='multiclass'):
        super().__init__()
        self.method = method
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        out = self.fc(x)
        for _ in range(x.shape[0]):
            if self.method == 'multiclass':
                return F.softmax(out, dim=1)
        return out


def train(loader):
    a, b, c = A(), B(), C()
    for x, y in loader:
        (F.cross_entropy(a(x), y) + F.cross_entropy(b(x), y) + F.cross_entropy(c(x), y)).backward()
'''


def test_an_early_return_or_a_conditional_expression_under_a_default(tmp_path):
    # A returns early under the default, B picks with a conditional expression; C's return is in
    # a loop that may not run: what follows it may be returned too (quiet)
    found = _found(tmp_path, {"model.py": EARLY})
    assert found == {("model.py", 46, "GL303")}
    messages = check_paths([tmp_path], Config(select=("GL3",), root=str(tmp_path)), use_cache=False, jobs=1).findings
    assert sorted(m.span.column for m in messages) == [10, 37]
