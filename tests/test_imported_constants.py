"""Module constants of other project files in the numerics walk (source/constants.py): the value
is the one the walk gives the name in its own file, held to the same rule there (every binding
one value, nobody declares it `global`); anything else stays unknown, and the facts depend on the
files looked at. The flagged shapes and their look-alikes are rule examples (GL302, GL306) and the
project fixture fixtures/numerics/crossfile_consts (tests/test_project_index.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gradlint.api import check_paths
from gradlint.config import Config
from gradlint.source import parse
from gradlint.source.configs import ConfigReader
from gradlint.source.constants import NOT_KNOWN
from gradlint.source.engine.tensors import UNKNOWN, same_value
from gradlint.source.index import module_symbols
from gradlint.source.numerics import Extractor

ROOT = Path(__file__).resolve().parent.parent
CONSTS = ROOT / "fixtures" / "numerics" / "crossfile_consts"
IMPORTER = "import torch\nfrom consts import X\n"


def _imported(tmp_path: Path, files: dict[str, str], names=("consts.X",), importer: str = IMPORTER):
    """The value the importer's reader gives `names`, and the files it looked at."""
    (tmp_path / "pyproject.toml").write_text("")
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "train.py").write_text(importer)
    reader = ConfigReader(tmp_path / "train.py", module_symbols(importer))
    return reader.constant(frozenset(names)), reader.depends()


def _in_file(text: str):
    """The value the numerics walk gives module name X in functions of its own file."""
    x = Extractor(parse("consts.py", text))
    x.run()
    return x.globals["X"].value if "X" in x.globals else UNKNOWN


@pytest.mark.parametrize("expr", [
    "0.0", "1e-8", "-1", "+1.5", "-(-2)", "1 / 2", "2 ** -3", "7 // 2", "7 % 3", "1.0 - 1e-6", "-1.0 + 1.0",
    "float('inf')", "float(1)", "int(3.5)", "bool(0)", "'mean'", "True", "None", "(1, 2)", "()",
    "(0.5, 'x', None)", "math.pi", "2 ** 100", "1e308 * 10", "'a' + 'b'", "not 0", "1 / 0", "[1, 2]",
    "{'a': 1}", "math.exp(1)", "torch.finfo(torch.float32).eps", "Y * 2", "Z", "b'x'", "1j",
])
def test_a_constant_of_another_file_is_what_the_walk_makes_of_it_there(tmp_path, expr):
    text = f"import math\nimport torch\n\nY = 0.25\nX = {expr}\n"
    there = _in_file(text)
    got, _ = _imported(tmp_path, {"consts.py": text})
    if there is UNKNOWN:
        assert got is NOT_KNOWN, expr
    else:
        assert got is not NOT_KNOWN and same_value(got, there), (expr, got, there)


@pytest.mark.parametrize("consts", [
    "X = 0.0\n\n\ndef set_x(v):\n    global X\n    X = v\n",  # rebound by a function
    # ... from any block of any function, however nested (bindings walks the statements alone)
    "X = 0.0\n\n\nclass C:\n    def f(self):\n        try:\n            pass\n        except OSError:\n"
    "            while True:\n                pass\n            else:\n                global X\n",
    "X = 0.0\n\n\ndef f(v):\n    match v:\n        case 1:\n            with v:\n                global X\n",
    "X = 0.0\n\n\ndef f(v):\n    try:\n        pass\n    finally:\n        if v:\n            pass\n"
    "        else:\n            global X\n",
    "X = 0.0\nX = 1e-8\n",  # two values
    "import os\nX = 0.0\nif os.environ.get('A'):\n    X = 1e-8\n",
    "X = 0.0\nX += 1.0\n",
    "for X in (0.0, 1.0):\n    pass\n",
    "X, Y = 0.0, 1.0\n",
    "X = 0.0\nglobals()['X'] = 1.0\n",
    "X = 0.0\n\n\ndef X():\n    return 1\n",
    "X = 0.0\ndel X\n",
    "import contextlib\nX = 0.0\nwith contextlib.nullcontext(1.0) as X:\n    pass\n",
    "X = 0.0\ntry:\n    pass\nexcept ValueError as X:\n    pass\n",
    "X = 0.0\n[(X := 1.0)]\n",
    "try:\n    from fast import X\nexcept ImportError:\n    X = 0.0\n",
    "import torch\nX = torch.zeros(1)\n",
    "from torch import inf as X\n",
    "X = Y\nY = X\n",  # a cycle
    "class X:\n    pass\n",
    "from math import pi as X\n",
    "",  # not bound at all
])
def test_what_is_not_one_plain_value_there_stays_unknown(tmp_path, consts):
    assert _imported(tmp_path, {"consts.py": consts})[0] is NOT_KNOWN


@pytest.mark.parametrize("consts", ["X = (", "\xff\xfe\x00 not utf-8", "X = " + "(" * 400 + "0" + ")" * 400 + "\n",
                                    "X = " + " + ".join(["1"] * 5000) + "\n"])
def test_a_file_that_cannot_be_read_gives_nothing(tmp_path, consts):
    (tmp_path / "consts.py").write_bytes(consts.encode("latin-1"))
    assert _imported(tmp_path, {})[0] is NOT_KNOWN


def test_chains_through_packages_star_imports_and_aliases(tmp_path):
    files = {"pkg/__init__.py": "from .consts import *\nfrom .more import HALF as H\n",
             "pkg/consts.py": "from .base import EPS\nZERO = EPS * 0\nEPS2 = EPS + EPS\n",
             "pkg/base.py": "EPS = 1e-8\n",
             "pkg/more.py": "HALF = 0.5\n",
             "loop/__init__.py": "from .a import *\n", "loop/a.py": "from . import *\nfrom loop import X\n"}
    assert _imported(tmp_path, files, ("pkg.ZERO",))[0] == 0.0
    assert _imported(tmp_path, files, ("pkg.EPS2",))[0] == 2e-8
    assert _imported(tmp_path, files, ("pkg.consts.EPS",))[0] == 1e-8
    assert _imported(tmp_path, files, ("pkg.H",))[0] == 0.5
    # a cycle of re-exports resolves to nothing
    assert _imported(tmp_path, files, ("loop.X",))[0] is NOT_KNOWN
    # several targets (conditional imports of the importer) must agree
    assert _imported(tmp_path, files, ("pkg.H", "pkg.more.HALF"))[0] == 0.5
    assert _imported(tmp_path, files, ("pkg.H", "pkg.EPS2"))[0] is NOT_KNOWN


def test_the_files_looked_at_are_dependencies_and_torch_is_never_looked_for(tmp_path):
    got, depends = _imported(tmp_path, {"consts.py": "X = 0.0\n"}, ("consts.X", "torch.X"))
    assert got is NOT_KNOWN and depends == ()  # one target is torch's: nothing looked up
    got, depends = _imported(tmp_path, {"consts.py": "X = 0.0\n"})
    # (and the __init__.py files that decide where imports start: making a package changes them)
    assert got == 0.0 and depends == ("consts.py", "__init__.py", "src/__init__.py")
    # a missing module is looked for too (creating it changes the facts)
    got, depends = _imported(tmp_path, {}, ("nowhere.X",))
    assert got is NOT_KNOWN and depends == ("nowhere.py", "nowhere/__init__.py", "__init__.py", "src/__init__.py")


def test_text_without_a_file_reads_no_other_file():
    from gradlint.source import extract_python_text

    text = (CONSTS / "train.py").read_text()
    facts = extract_python_text(text, "train.py")
    assert facts.depends == () and facts.numerics.sites == ()


def _findings(paths, root: Path, cache: bool) -> list[tuple[str, int, str]]:
    old = os.getcwd()
    os.chdir(root)
    try:
        result = check_paths(paths, Config(root=str(root), extend_select=("GL306", "GL307")), use_cache=cache, jobs=1)
    finally:
        os.chdir(old)
    assert not result.internal_errors, [r.internal_error for r in result.internal_errors]
    return sorted((Path(f.path).as_posix(), f.span.line, f.code) for f in result.findings)


def test_cache_entries_follow_the_constant(tmp_path):
    """Check, change the constant in its file, check again with the cache on: the finding follows
    (the facts entry and the result entry depend on consts.py and on the re-exporting __init__)."""
    root = tmp_path / "p"
    shutil.copytree(CONSTS, root)
    lines = (root / "train.py").read_text().splitlines()
    zero, floor, no_eps = (1 + next(i for i, t in enumerate(lines) if key in t)
                           for key in ("p + ZERO", "consts.FLOOR", "consts.no_eps()"))
    first = _findings(["."], root, cache=True)
    assert {("train.py", n, "GL302") for n in (zero, floor, no_eps)} <= set(first)
    consts = root / "lossy" / "consts.py"
    consts.write_text(consts.read_text().replace("ZERO = 0.0", "ZERO = 1e-6"))
    for paths in (["train.py"], ["."]):
        again = _findings(paths, root, cache=True)
        assert not {("train.py", n, "GL302") for n in (zero, floor, no_eps)} & set(again)
        assert again == [f for f in _findings(paths, root, cache=False)]
    # the re-export changes: `from lossy import ZERO` is another module's constant now
    (root / "lossy" / "zeros.py").write_text("ZERO = 0\n")
    init = root / "lossy" / "__init__.py"
    init.write_text(init.read_text().replace("from .consts import EPS, ZERO", "from .consts import EPS\nfrom .zeros import ZERO"))
    again = _findings(["train.py"], root, cache=True)
    assert ("train.py", zero, "GL302") in again and ("train.py", floor, "GL302") not in again
    assert again == _findings(["train.py"], root, cache=False)


# -- a plain value a function without parameters returns (`def eps(): return 0.0`) ----------------
_BCE = "\n\ndef bce(z, y):\n    p = torch.sigmoid(z)\n    return -(y * torch.log(p + {call})).mean()\n"


def _gl302(src: str, **files: str) -> list[str]:
    from gradlint.api import check_source

    found = check_source(src, Config(select=("GL302",)), path="train.py", extra_files=files or None)
    return [f.code for f in found]


@pytest.mark.parametrize("head, flagged", [
    ("def eps():\n    \"\"\"The guard.\"\"\"\n    return 0.0\n", True),
    ("ZERO = 0.0\n\n\ndef eps():\n    return ZERO * 2\n", True),  # a module constant, read when it runs
    ("def eps():\n    return 1e-8\n", False),
    ("def eps(x=0.0):\n    return x\n", False),  # a parameter
    ("import functools\n\n\n@functools.lru_cache\ndef eps():\n    return 0.0\n", False),  # a decorator
    ("def eps():\n    print('x')\n    return 0.0\n", False),  # more than a return
    ("def eps():\n    return 0.0\n\n\neps = lambda: 1.0\n", False),  # rebound
    ("E = 0.0\n\n\ndef eps():\n    return E\n\n\ndef relax(v):\n    global E\n    E = v\n", False),
])
def test_a_function_that_returns_a_plain_value(head, flagged):
    """In its own file and imported from another (`from consts import eps`, `consts.eps()`): the
    same rule, the same answer."""
    expected = ["GL302"] if flagged else []
    assert _gl302("import torch\n\n\n" + head + _BCE.format(call="eps()")) == expected
    assert _gl302("import torch\nfrom consts import eps\n" + _BCE.format(call="eps()"), **{"consts.py": head}) == expected
    assert _gl302("import torch\nimport consts\n" + _BCE.format(call="consts.eps()"), **{"consts.py": head}) == expected


def test_another_def_of_the_name_in_the_file_makes_it_unknown_there():
    # in its own file a `def eps` anywhere (a method, a nested def the walk does not bind) may be
    # the one a call reads; from another file, `consts.eps` is the module's function
    head = "def eps():\n    return 0.0\n\n\nclass K:\n    def eps(self):\n        return 1.0\n"
    assert _gl302("import torch\n\n\n" + head + _BCE.format(call="eps()")) == []
    assert _gl302("import torch\nfrom consts import eps\n" + _BCE.format(call="eps()"), **{"consts.py": head}) == ["GL302"]
    inner = "import torch\n\n\ndef eps():\n    return 0.0\n" + _BCE.format(call="eps()").replace(
        "    p = torch.sigmoid(z)\n", "    def eps():\n        return 1.0\n\n    p = torch.sigmoid(z)\n")
    assert _gl302(inner) == []


def test_a_call_with_arguments_or_of_a_closure_is_not_the_functions_value():
    assert _gl302("import torch\nfrom consts import eps\n" + _BCE.format(call="eps(1)"),
                  **{"consts.py": "def eps(*a):\n    return 0.0\n"}) == []
    # the enclosing function's `eps` shadows the module's for the nested one
    nested = ("import torch\n\n\ndef eps():\n    return 0.0\n\n\ndef outer():\n    eps = lambda: 1.0\n\n"
              "    def bce(z, y):\n        p = torch.sigmoid(z)\n        return -(y * torch.log(p + eps())).mean()\n\n"
              "    return bce\n")
    assert _gl302(nested) == []
    assert _gl302(nested.replace("    eps = lambda: 1.0\n", "")) == ["GL302"]
