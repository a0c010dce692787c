"""Blocks of installed libraries, read from their source files (never imported) and inlined into a
user's network with their module paths, exactly as a block of another project file is: where the
libraries are looked for and in which order, what is read (only referenced modules, never torch,
within budgets), what stays opaque, and how to turn it off."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from gradlint.api import check_paths, project_index
from gradlint.config import Config, ConfigError, load_config
from gradlint.facts.files import FileFacts
from gradlint.facts.project import ProjectIndex
from gradlint.source import index as source_index
from gradlint.source.index import library_roots, module_symbols
from tests.conftest import run_cli

SIGMOID_BLOCK = '''import torch.nn as nn


class SigmoidBlock(nn.Module):
    def __init__(self, width=256):
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = nn.Sigmoid()

    def forward(self, x):
        return self.act(self.fc(x))
'''

# A library class gradlint cannot model: its layers come from a registry it cannot read.
UNMODELLED_BLOCK = '''import torch.nn as nn

REGISTRY = {}


class Mystery(nn.Module):
    def __init__(self, width=256):
        super().__init__()
        self.body = REGISTRY["sigmoid"](width)

    def forward(self, x):
        return self.body(x)
'''

DEEP_MODEL = '''import torch.nn as nn

from fakelib import {cls}


class Deep(nn.Module):
    def __init__(self, depth=20):
        super().__init__()
        self.blocks = nn.ModuleList([{cls}() for _ in range(depth)])
        self.head = nn.Linear(256, 10)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)
'''


def write(base: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def fakelib(site: Path, block: str = SIGMOID_BLOCK, extra: dict[str, str] | None = None) -> Path:
    """An installed package `fakelib`: its blocks in a submodule, re-exported through two
    `__init__` files (one by name, one by `*`), plus a module nobody imports."""
    write(site, {
        "fakelib/__init__.py": "from .blocks import SigmoidBlock, Mystery\n",
        "fakelib/blocks/__init__.py": "from .sig import *\n",
        "fakelib/blocks/sig.py": block + ("\n" + UNMODELLED_BLOCK.split("\n", 2)[2] if block is SIGMOID_BLOCK else ""),
        "fakelib/unused.py": "import torch.nn as nn\n\nclass Unused(nn.Module):\n    pass\n",
        **(extra or {}),
    })
    return site


def project(tmp_path: Path, cls: str = "SigmoidBlock", settings: str | None = None) -> Path:
    proj = tmp_path / "proj"
    lib = '["../site"]'
    write(proj, {"pyproject.toml": "[tool.gradlint]\n" + (settings if settings is not None else f"library-paths = {lib}\n"),
                 "model.py": DEEP_MODEL.format(cls=cls)})
    return proj


def findings(proj: Path, monkeypatch, use_cache: bool = False) -> list[tuple[int, str]]:
    monkeypatch.chdir(proj)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    result = check_paths(["model.py"], load_config(None, proj), use_cache=use_cache, jobs=1)
    assert not result.internal_errors, [r.internal_error for r in result.internal_errors]
    return [(f.span.line, f.code) for f in result.findings]


def test_a_block_of_an_installed_library_is_inlined_and_the_deep_stack_flagged(tmp_path, monkeypatch):
    fakelib(tmp_path / "site")
    proj = project(tmp_path)
    # flagged at the user's line, as if the block were a file of the project
    assert findings(proj, monkeypatch) == [(9, "GL101")]
    # the library's own files are never reported on, and never were part of the run
    monkeypatch.chdir(proj)
    result = check_paths(["."], load_config(None, proj), use_cache=False, jobs=1)
    assert {Path(r.path).name for r in result.files} == {"model.py"}


def test_without_the_library_block_the_same_model_is_quiet(tmp_path, monkeypatch):
    fakelib(tmp_path / "site")
    # turned off: the block is unknown again, and unknown is never a finding
    assert findings(project(tmp_path, settings="read-libraries = false\n"), monkeypatch) == []
    # not installed anywhere gradlint looks
    other = tmp_path / "other"
    other.mkdir()
    write(other, {"pyproject.toml": "[tool.gradlint]\n", "model.py": DEEP_MODEL.format(cls="SigmoidBlock")})
    assert findings(other, monkeypatch) == []


def test_a_library_class_that_cannot_be_modelled_stays_opaque_and_quiet(tmp_path, monkeypatch):
    fakelib(tmp_path / "site")
    proj = project(tmp_path, cls="Mystery")
    assert findings(proj, monkeypatch) == []
    res = run_cli("model", "model.py", "--format", "json", cwd=proj, env={"VIRTUAL_ENV": ""})
    nodes = json.loads(res.stdout)[0]["nodes"]
    # the block's layer built by code gradlint cannot follow is opaque, under its module path
    assert nodes[0]["kind"] == "opaque" and nodes[0]["name"] == "blocks.0.body"
    assert [n["kind"] for n in nodes[:-1]] == ["opaque"] * 20


def test_a_library_block_with_a_norm_is_inlined_and_stays_quiet(tmp_path, monkeypatch):
    normed = SIGMOID_BLOCK.replace("self.act = nn.Sigmoid()", "self.norm = nn.LayerNorm(width)\n        self.act = nn.Sigmoid()") \
        .replace("self.act(self.fc(x))", "self.act(self.norm(self.fc(x)))")
    fakelib(tmp_path / "site", block=normed)
    proj = project(tmp_path)
    assert findings(proj, monkeypatch) == []
    res = run_cli("model", "model.py", "--format", "json", cwd=proj, env={"VIRTUAL_ENV": ""})
    names = [(n["kind"], n["name"]) for n in json.loads(res.stdout)[0]["nodes"]]
    assert names[:3] == [("param", "blocks.0.fc"), ("norm", "blocks.0.norm"), ("activation", "blocks.0.act")]


def test_model_command_shows_the_library_layers_with_their_module_paths(tmp_path):
    fakelib(tmp_path / "site")
    proj = project(tmp_path)
    res = run_cli("model", "model.py", "--format", "json", cwd=proj, env={"VIRTUAL_ENV": ""})
    assert res.returncode == 0, res.stderr
    model = json.loads(res.stdout)[0]
    names = [n["name"] for n in model["nodes"]]
    assert names[:4] == ["blocks.0.fc", "blocks.0.act", "blocks.1.fc", "blocks.1.act"] and names[-1] == "head"
    assert not any(n["kind"] == "opaque" for n in model["nodes"])
    text = run_cli("model", "model.py", cwd=proj, env={"VIRTUAL_ENV": ""}).stdout
    assert "20 × the 2 nodes below (blocks.0.fc .. blocks.19.act)" in text and "0 opaque nodes" in text


def test_only_the_modules_a_lookup_reaches_are_read_and_torch_never(tmp_path, monkeypatch):
    # a `torch` package in a library folder: never read, whatever it holds
    site = fakelib(tmp_path / "site", extra={"torch/__init__.py": "from .nn import *\n",
                                             "torch/nn/__init__.py": SIGMOID_BLOCK})
    proj = project(tmp_path)
    monkeypatch.chdir(proj)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    config = load_config(None, proj)
    index, root = project_index([proj / "model.py"], config, use_cache=False)
    from gradlint.api import _extract, add_to_index

    facts = _extract(proj / "model.py", "model.py")
    add_to_index(index, root, proj / "model.py", facts)
    scope = index.scope(facts)
    assert scope.resolve("SigmoidBlock") == ("fakelib.blocks.sig.SigmoidBlock",)
    assert scope.resolve("nn.Sequential") == ()  # torch: modelled from gradlint's own tables
    read = index.loader.library_paths
    assert sorted(read) == ["fakelib", "fakelib.blocks", "fakelib.blocks.sig"]
    assert all(Path(p).is_relative_to(site.resolve()) for p in read.values())
    # names first: the models of a library module are read only when a class of it is asked for
    assert not index.modules["fakelib.blocks.sig"].facts.networks
    assert [n.name for n in scope.networks("SigmoidBlock")] == ["SigmoidBlock"]
    mod = index.modules["fakelib.blocks.sig"]
    assert mod.library and mod.facts.training is None and mod.facts.numerics is None
    assert index.numclass("fakelib.blocks.sig.SigmoidBlock") is None  # the numerics rules see no library class


def test_a_project_module_shadows_a_library_of_the_same_name(tmp_path, monkeypatch):
    fakelib(tmp_path / "site")
    proj = project(tmp_path)
    write(proj, {"fakelib/__init__.py": "class SigmoidBlock:\n    pass\n"})
    assert findings(proj, monkeypatch) == []


def test_a_script_sibling_comes_before_a_library(tmp_path, monkeypatch):
    fakelib(tmp_path / "site", extra={"helpers/__init__.py": "from fakelib import SigmoidBlock as Block\n"})
    proj = tmp_path / "proj"
    write(proj, {"pyproject.toml": '[tool.gradlint]\nlibrary-paths = ["../site"]\n',
                 "scripts/helpers.py": "import torch.nn as nn\n\nclass Block(nn.Module):\n    pass\n",
                 "scripts/model.py": DEEP_MODEL.replace("from fakelib import {cls}", "from helpers import Block")
                 .format(cls="Block")})
    monkeypatch.chdir(proj)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    config = load_config(None, proj)
    index, root = project_index([proj / "scripts" / "model.py"], config, use_cache=False)
    index.add("scripts.model", FileFacts(path="scripts/model.py", kind="python",
                                         symbols=module_symbols("from helpers import Block\n")))
    assert index.resolve("scripts.model", "Block") == ("scripts.helpers.Block",)


def test_special_files_in_a_library_are_refused_and_nothing_hangs(tmp_path, monkeypatch):
    site = fakelib(tmp_path / "site")
    sig = site / "fakelib" / "blocks" / "sig.py"
    sig.unlink()
    os.mkfifo(sig)  # opening it would block forever
    assert findings(project(tmp_path), monkeypatch) == []
    sig.unlink()
    sig.symlink_to("/dev/zero")  # reading it would never end
    assert findings(project(tmp_path), monkeypatch) == []


def test_budgets_bound_what_one_run_reads(tmp_path, monkeypatch):
    fakelib(tmp_path / "site")
    proj = project(tmp_path)
    monkeypatch.setattr(source_index, "MAX_LIBRARY_MODULES", 2)  # the block lies 3 modules deep
    assert findings(proj, monkeypatch) == []
    monkeypatch.setattr(source_index, "MAX_LIBRARY_MODULES", 512)
    monkeypatch.setattr(source_index, "MAX_LIBRARY_BYTES", 10)
    assert findings(proj, monkeypatch) == []
    monkeypatch.setattr(source_index, "MAX_LIBRARY_BYTES", 64 << 20)
    assert findings(proj, monkeypatch) == [(9, "GL101")]


def test_each_file_has_a_library_budget_of_its_own(tmp_path, monkeypatch):
    # The budget was the run's: the first file's lookups spent it, and the second file's block
    # was found when it was checked alone (or checked again by a cached run), not in the full run.
    fakelib(tmp_path / "site", extra={"otherlib/__init__.py": "from .blocks import SigmoidBlock\n",
                                      "otherlib/blocks.py": SIGMOID_BLOCK})
    proj = project(tmp_path)
    write(proj, {"model2.py": DEEP_MODEL.format(cls="SigmoidBlock").replace("from fakelib", "from otherlib")})
    monkeypatch.setattr(source_index, "MAX_LIBRARY_MODULES", 3)  # one file's: fakelib's block lies 3 deep
    monkeypatch.chdir(proj)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    for paths in (["model.py", "model2.py"], ["model2.py", "model.py"], ["model2.py"], ["."]):
        result = check_paths(paths, load_config(None, proj), use_cache=False, jobs=1)
        assert sorted((f.path, f.code) for f in result.findings) == sorted(
            (p, "GL101") for p in (["model2.py"] if paths == ["model2.py"] else ["model.py", "model2.py"])), paths
    # a file whose own lookups are past the budget is cut short, and the next file is not
    monkeypatch.setattr(source_index, "MAX_LIBRARY_MODULES", 2)
    result = check_paths(["model.py", "model2.py"], load_config(None, proj), use_cache=False, jobs=1)
    assert [(f.path, f.code) for f in result.findings] == [("model2.py", "GL101")]


def test_library_models_are_cached_and_a_changed_library_is_read_again(tmp_path, monkeypatch):
    site = fakelib(tmp_path / "site")
    proj = project(tmp_path)
    assert findings(proj, monkeypatch, use_cache=True) == [(9, "GL101")]
    calls: list[str] = []
    import gradlint.source as source

    real = source.extract_python_text

    def counting(text, display, **kw):
        calls.append(display)
        return real(text, display, **kw)

    monkeypatch.setattr(source, "extract_python_text", counting)
    parsed: list[int] = []
    real_names = source_index.module_symbols
    monkeypatch.setattr(source_index, "module_symbols", lambda text: parsed.append(1) or real_names(text))
    assert findings(proj, monkeypatch, use_cache=True) == [(9, "GL101")]
    assert not any(c.endswith("sig.py") for c in calls)  # the library's models came from the cache
    assert parsed == []  # and so did the names of its three modules
    # nothing was written near the library
    assert not any(p.name.startswith(".gradlint") for p in site.rglob("*"))
    sig = site / "fakelib" / "blocks" / "sig.py"
    sig.write_text(sig.read_text().replace("self.act(self.fc(x))", "self.act(self.norm(self.fc(x)))")
                   .replace("self.act = nn.Sigmoid()", "self.norm = nn.LayerNorm(width)\n        self.act = nn.Sigmoid()"))
    assert findings(proj, monkeypatch, use_cache=True) == []
    assert any(c.endswith("sig.py") for c in calls)


def test_where_libraries_are_looked_for_and_in_which_order(tmp_path):
    root = tmp_path / "proj"
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    dot_venv = root / ".venv" / "lib" / version / "site-packages"
    old = root / ".venv" / "lib" / "python3.1" / "site-packages"
    venv = root / "venv" / "lib" / version / "site-packages"
    active = tmp_path / "hook-env" / "lib" / version / "site-packages"
    configured = tmp_path / "vendored"
    for folder in (dot_venv, old, venv, active, configured):
        folder.mkdir(parents=True)
    found = library_roots(root, [str(configured), str(tmp_path / "missing"), str(root)],
                          {"VIRTUAL_ENV": str(tmp_path / "hook-env")}, interpreter=False)
    # configured first, then the project's venvs (the running Python's version first), then the
    # active environment; a missing folder and the project itself are left out
    assert found == tuple(p.resolve() for p in (configured, dot_venv, old, venv, active))
    # the same folder named twice is searched once
    assert library_roots(root, [str(dot_venv)], {"VIRTUAL_ENV": str(root / ".venv")}, interpreter=False) == (
        dot_venv.resolve(), old.resolve(), venv.resolve())
    # and the interpreter's own site-packages last
    mine = library_roots(root, [], {})
    assert mine[-1] in {Path(p).resolve() for p in (__import__("sysconfig").get_paths()["purelib"],
                                                     __import__("sysconfig").get_paths()["platlib"])}


def test_the_projects_venv_is_found_without_any_setting(tmp_path, monkeypatch):
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    proj = project(tmp_path, settings="")
    fakelib(proj / ".venv" / "lib" / version / "site-packages")
    assert findings(proj, monkeypatch) == [(9, "GL101")]
    # a library-paths folder comes first: its fakelib (whose block is normalised) wins
    normed = SIGMOID_BLOCK.replace("self.act = nn.Sigmoid()", "self.norm = nn.LayerNorm(width)\n        self.act = nn.Sigmoid()") \
        .replace("self.act(self.fc(x))", "self.act(self.norm(self.fc(x)))")
    fakelib(tmp_path / "site", block=normed)
    (proj / "pyproject.toml").write_text('[tool.gradlint]\nlibrary-paths = ["../site"]\n')
    assert findings(proj, monkeypatch) == []


def test_library_settings_are_validated(tmp_path):
    def parse(text: str) -> Config:
        (tmp_path / "pyproject.toml").write_text("[tool.gradlint]\n" + text)
        return load_config(tmp_path / "pyproject.toml")

    cfg = parse('library-paths = ["vendor", "/opt/site"]\n')
    assert cfg.library_paths == (str(tmp_path.resolve() / "vendor"), "/opt/site") and cfg.read_libraries
    assert not parse("read-libraries = false\n").read_libraries
    for bad, message in [('library-paths = "vendor"\n', "'library-paths' must be a list of strings"),
                         ('library-paths = [""]\n', "'library-paths' entries must be folder paths"),
                         ('read-libraries = "no"\n', "'read-libraries' must be true or false"),
                         ('read-libraries = false\nlibrary-paths = ["v"]\n', "'read-libraries' is false")]:
        with pytest.raises(ConfigError, match=message):
            parse(bad)


def test_a_loader_without_libraries_resolves_as_before():
    class Loader:
        def load(self, module):
            return None

        def modules_mentioning(self, word, whole=False):
            return []

    index = ProjectIndex(Loader())
    index.add("user", FileFacts(path="user.py", kind="python", symbols=module_symbols("from fakelib import B\n")))
    assert index.resolve("user", "B") == ()


def test_a_library_block_called_with_other_arguments_is_re_run_with_them(tmp_path, monkeypatch):
    """`NormedBlock(norm=False)` is not the library's default (a LayerNorm in every block, which
    keeps the stack quiet): the block is re-run from the library's source with the caller's
    argument, as a block of another project file is, and the bare sigmoid stack is flagged."""
    normed = SIGMOID_BLOCK.replace("SigmoidBlock", "NormedBlock").replace("width=256):", "width=256, norm=True):") \
        .replace("self.act = nn.Sigmoid()",
                 "self.norm = nn.LayerNorm(width) if norm else nn.Identity()\n        self.act = nn.Sigmoid()") \
        .replace("self.act(self.fc(x))", "self.act(self.norm(self.fc(x)))")
    fakelib(tmp_path / "site", extra={"fakelib/normed.py": normed})
    proj = tmp_path / "proj"
    model = DEEP_MODEL.format(cls="NormedBlock").replace("from fakelib import", "from fakelib.normed import")
    write(proj, {"pyproject.toml": '[tool.gradlint]\nlibrary-paths = ["../site"]\n', "model.py": model})
    assert findings(proj, monkeypatch) == []  # the default: normalised
    write(proj, {"model.py": model.replace("NormedBlock()", "NormedBlock(norm=False)")})
    assert findings(proj, monkeypatch) == [(9, "GL101")]
    res = run_cli("model", "model.py", "--format", "json", cwd=proj, env={"VIRTUAL_ENV": ""})
    nodes = json.loads(res.stdout)[0]["nodes"]
    assert not any(n["kind"] == "opaque" for n in nodes)
    assert [n["name"] for n in nodes[:3]] == ["blocks.0.fc", "blocks.0.norm", "blocks.0.act"]



def test_a_network_restating_a_library_class_is_kept_for_the_users_file():
    """The architecture rules leave out a script's network that only restates a project class of
    another file (that file reports it). A library's class is not left out: no run reports the
    library's files, so the user's line is the only place its finding can go."""
    from types import SimpleNamespace

    from gradlint.model.inline import restated_class
    from gradlint.model.ir import Extern, InitSpec, Network, Param

    layer = Param(name="fc", op="linear", fan_in=4, fan_out=4, init=InitSpec("torch-linear"))
    block = Network(name="Deep", path="deep.py", nodes=(layer,), signature=(("depth", False, "default", 20),))
    script = Network(name="make", path="model.py", nodes=(Extern(name="", what="Deep()", cls="Deep", args=()),))
    for library in (False, True):
        module = SimpleNamespace(library=library)
        index = SimpleNamespace(networks=lambda q: [block] if q == "pkg.deep.Deep" else [],
                                module=lambda name: module if name == "pkg.deep" else None)
        scope = SimpleNamespace(index=index, resolve=lambda text: ("pkg.deep.Deep",) if text == "Deep" else ())
        assert restated_class(script, scope) == (None if library else "pkg.deep.Deep")
