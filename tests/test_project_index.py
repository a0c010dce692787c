"""Whole-project symbols: a file's findings are the same whether it is checked alone, with its
folder or with the whole project, whatever other classes share its classes' names; imports
(absolute, relative, aliases, `__init__` re-exports, `*`, src layout) resolve to the defining
module; modules that are not checked are summarised only when a lookup reaches them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gradlint.api import check_paths, enabled_rules, project_index
from gradlint.config import Config
from gradlint.facts.files import FileFacts
from gradlint.facts.project import ProjectIndex, holds_word
from gradlint.source.index import by_project_root, find_project_root, module_name, module_symbols
from tests.conftest import FIXTURES, run_cli

PROJECTS = FIXTURES / "project"
TWOPKG = PROJECTS / "twopkg"
SRCLAYOUT = PROJECTS / "srclayout"
NOGRAD = PROJECTS / "nograd"
# main.py names no torch: its calls are read only when a search for callers reaches it
PLAINMAIN = PROJECTS / "plainmain"

# models whose depth comes from config classes of other files (source/configs.py)
CONFIGS = FIXTURES / "architecture" / "crossfile_config"
# guards that are module constants of other files (source/constants.py); GL306/GL307 are off by default
CONSTS = FIXTURES / "numerics" / "crossfile_consts"
EXTRA_RULES = {CONSTS: ("GL306", "GL307")}
EXPECT = re.compile(r"#\s*expect:\s*([A-Z0-9, ]+)")


def expected(path: Path) -> list[tuple[int, str]]:
    out = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = EXPECT.search(line)
        if m:
            out.extend((line_no, code.strip()) for code in m.group(1).split(",") if code.strip())
    return sorted(out)


def findings_for(root: Path, checked: list[str], file: str, monkeypatch) -> list[tuple[int, int, str, str]]:
    monkeypatch.chdir(root)
    # GL406 is off by default; these fixtures test that its gradchecks resolve across the project
    result = check_paths(checked, Config(root=str(root), extend_select=("GL406",) + EXTRA_RULES.get(root, ())), use_cache=False, jobs=1)
    assert not result.internal_errors, [r.internal_error for r in result.internal_errors]
    return sorted((f.span.line, f.span.column, f.code, f.message) for f in result.findings
                  if Path(f.path).as_posix() == file)


def project_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py"))


@pytest.mark.parametrize("root", [TWOPKG, SRCLAYOUT, NOGRAD, PLAINMAIN, CONFIGS, CONSTS], ids=lambda p: p.name)
def test_same_findings_alone_with_its_folder_and_with_the_project(root, monkeypatch):
    whole = {f: findings_for(root, ["."], f, monkeypatch) for f in project_files(root)}
    for file in project_files(root):
        folder = str(Path(file).parent)
        alone = findings_for(root, [file], file, monkeypatch)
        with_folder = findings_for(root, [folder], file, monkeypatch)
        assert alone == with_folder == whole[file], file
        # and the real findings are there, on the lines the fixture marks
        assert [(line, code) for line, _c, code, _m in whole[file]] == expected(root / file), file


def test_the_real_finding_survives_a_same_named_class_elsewhere(monkeypatch):
    """train.py's Discriminator is models.gan's (a sigmoid): other/critic.py's Discriminator
    (logits) and WordLM (not recurrent) change nothing, whether checked with it or not."""
    alone = findings_for(TWOPKG, ["train.py"], "train.py", monkeypatch)
    assert [code for _l, _c, code, _m in alone] == ["GL301", "GL201"]
    together = findings_for(TWOPKG, ["train.py", "other"], "train.py", monkeypatch)
    assert together == alone
    # the look-alike uses the other classes and is quiet
    assert findings_for(TWOPKG, ["other/train_critic.py", "train.py"], "other/train_critic.py", monkeypatch) == []


def test_a_gradcheck_in_a_file_that_is_not_checked_counts(monkeypatch):
    found = findings_for(TWOPKG, ["ops/fn.py"], "ops/fn.py", monkeypatch)
    assert [(code, m.split("`")[1]) for _l, _c, code, m in found] == [("GL406", "Unchecked")]


def test_precommit_on_one_staged_file_matches_check_of_the_project(tmp_path):
    """pre-commit passes the staged files' names; the hook must report, for them, exactly what
    `gradlint check .` reports in CI."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    shutil.copytree(TWOPKG, repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=repo, check=True)
    (repo / "train.py").write_text((repo / "train.py").read_text() + "\n# touched\n")
    subprocess.run([*git, "add", "train.py"], cwd=repo, check=True)
    staged = subprocess.run(["git", "diff", "--cached", "--name-only"], cwd=repo, check=True,
                            capture_output=True, text=True).stdout.split()
    assert staged == ["train.py"]
    hook = run_cli("check", "--format", "json", *staged, cwd=repo)
    ci = run_cli("check", "--format", "json", ".", cwd=repo)
    assert hook.returncode == ci.returncode == 1, (hook.stderr, ci.stderr)

    import json

    def lines(out: str) -> list[tuple]:
        return sorted((f["code"], f["location"]["row"], f["message"]) for f in json.loads(out)
                      if Path(f["filename"]) == (repo / "train.py").resolve())

    assert lines(hook.stdout) == lines(ci.stdout) and len(lines(ci.stdout)) == 2


# --- the pieces ---------------------------------------------------------------------------------

def test_project_root_is_found_from_the_checked_paths(tmp_path):
    assert find_project_root([TWOPKG / "models" / "gan.py"], tmp_path) == TWOPKG.resolve()
    assert find_project_root([SRCLAYOUT / "src" / "pkg"], tmp_path) == SRCLAYOUT.resolve()
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / ".git").mkdir()
    assert find_project_root([tmp_path / "a" / "b"], tmp_path / "a" / "b") == (tmp_path / "a").resolve()
    # no marker: the working folder (the configuration's root) when the path is below it, else the
    # path's own folder, never an unrelated working folder
    (tmp_path / "c" / "d").mkdir(parents=True)
    (tmp_path / "c" / "d" / "m.py").write_text("x = 1\n")
    assert find_project_root([tmp_path / "c" / "d" / "m.py"], tmp_path / "c") == (tmp_path / "c").resolve()
    assert find_project_root([tmp_path / "c" / "d"], tmp_path / "c" / "d") == (tmp_path / "c" / "d").resolve()
    assert find_project_root([tmp_path / "c" / "d" / "m.py"], tmp_path / "a") == (tmp_path / "c" / "d").resolve()


def test_findings_do_not_depend_on_an_unrelated_working_folder(tmp_path, monkeypatch):
    """A helper's parameter bound by its callers (GL302): the same finding whether the file is
    checked from its folder or from a folder elsewhere, whose files would otherwise be scanned
    for callers (one of them names `nll` and was never read, which leaves the callers unknown)."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    (work / "one.py").write_text("import torch\nimport torch.nn.functional as F\n\n\n"
                                 "def nll(probs, target):\n    return F.nll_loss(torch.log(probs), target)\n\n\n"
                                 "def step(z, y):\n    return nll(torch.softmax(z, -1), y)\n")
    (elsewhere / "notes.py").write_text("NAMES = ['nll']\n")
    codes = []
    for cwd in (work, elsewhere):
        monkeypatch.chdir(cwd)
        result = check_paths([str(work / "one.py")], Config(root=str(cwd)), use_cache=False, jobs=1)
        codes.append([(f.span.line, f.code) for f in result.findings])
    assert codes[0] == codes[1] == [(6, "GL302")]


def _two_projects(tmp_path: Path) -> tuple[Path, Path]:
    """a/ and b/, projects of their own; b/pkgb/model.py runs a parameter-free block of its own
    package under no_grad (quiet only when its import resolves: an unknown block may hold
    parameters, which GL403 reports cut)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "pkgb").mkdir(parents=True)
    for marker in ("a/pyproject.toml", "b/pyproject.toml", "b/pkgb/__init__.py"):
        (tmp_path / marker).write_text("")
    (tmp_path / "a" / "a.py").write_text("import torch\n")
    (tmp_path / "b" / "pkgb" / "layers.py").write_text(
        "import torch\n\n\nclass Feat(torch.nn.Module):\n    def forward(self, x):\n"
        "        return torch.fft.rfft(x).abs()\n")
    (tmp_path / "b" / "pkgb" / "model.py").write_text(
        "import torch\n\nfrom pkgb.layers import Feat\n\n\nclass Front(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.feat = Feat()\n\n"
        "    def forward(self, x):\n        with torch.no_grad():\n            y = self.feat(x)\n        return y\n")
    (tmp_path / "b" / "pkgb" / "net.py").write_text(
        "import torch\n\nfrom pkgb.blocks import Proj\n\n\nclass Net(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.proj = Proj()\n\n"
        "    def forward(self, x):\n        return self.proj(x)\n")
    (tmp_path / "b" / "pkgb" / "blocks.py").write_text(
        "import torch\n\n\nclass Proj(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.lin = torch.nn.Linear(4, 4)\n\n    def forward(self, x):\n        return self.lin(x)\n")
    return tmp_path / "a" / "a.py", tmp_path / "b" / "pkgb" / "model.py"


def test_findings_do_not_depend_on_the_order_of_files_of_two_projects(tmp_path, monkeypatch):
    """Files of two projects in one run: each file's imports resolve in its own project, whichever
    is named first (the first path's project was the root of every file: model.py's import of its
    own package resolved to nothing when a.py came first, and GL403 fired)."""
    one, two = _two_projects(tmp_path)
    monkeypatch.chdir(tmp_path)
    codes = []
    for order in ([one, two], [two, one], [two]):
        result = check_paths([str(p) for p in order], Config(root=str(tmp_path)), use_cache=False, jobs=1)
        codes.append(sorted((f.span.path, f.span.line, f.code) for f in result.findings))
        assert {r.path for r in result.files} == {str(p.relative_to(tmp_path)) for p in order}
    assert codes[0] == codes[1] == codes[2] == []
    # the same through the command line, with the cache, and `gradlint model`'s inlined blocks
    for order in ([one, two], [two, one]):
        res = run_cli("check", *map(str, order), "--exit-zero", cwd=tmp_path)
        assert "GL403" not in res.stdout and "2 files checked" in res.stdout, res.stdout + res.stderr
    net = two.parent / "net.py"
    described = [run_cli("model", *map(str, order), "--format", "json", cwd=tmp_path).stdout
                 for order in ([one, net], [net, one])]
    assert '"proj.lin"' in described[0] and described[0] == described[1], described


def test_paths_by_project_root(tmp_path):
    one, two = _two_projects(tmp_path)
    by = dict(by_project_root([two, one, tmp_path / "b", tmp_path / "missing.py"], tmp_path))
    # a path inside another given folder goes with that folder; a missing one with the fallback
    assert by == {(tmp_path / "b").resolve(): [two, tmp_path / "b"], (tmp_path / "a").resolve(): [one],
                  tmp_path.resolve(): [tmp_path / "missing.py"]}
    (tmp_path / "b" / "nested").mkdir()
    (tmp_path / "b" / "nested" / "pyproject.toml").write_text("")
    (tmp_path / "b" / "nested" / "n.py").write_text("")
    # a nested project's file named beside the outer folder is read with the outer walk's root
    assert by_project_root([tmp_path / "b", tmp_path / "b" / "nested" / "n.py"], tmp_path) == [
        ((tmp_path / "b").resolve(), [tmp_path / "b", tmp_path / "b" / "nested" / "n.py"])]


def test_module_names_from_paths(tmp_path):
    assert module_name(TWOPKG / "models" / "gan.py", TWOPKG) == ("models.gan", False)
    assert module_name(TWOPKG / "models" / "__init__.py", TWOPKG) == ("models", True)
    assert module_name(TWOPKG / "other" / "critic.py", TWOPKG) == ("other.critic", False)  # namespace package
    assert module_name(TWOPKG / "train.py", TWOPKG) == ("train", False)
    assert module_name(SRCLAYOUT / "src" / "pkg" / "sub" / "use.py", SRCLAYOUT) == ("pkg.sub.use", False)
    # a regular package below a folder that is no package is named from its top
    (tmp_path / "python" / "lib").mkdir(parents=True)
    (tmp_path / "python" / "lib" / "__init__.py").write_text("")
    (tmp_path / "python" / "lib" / "m.py").write_text("")
    assert module_name(tmp_path / "python" / "lib" / "m.py", tmp_path) == ("lib.m", False)


def test_symbols_of_a_module():
    sym = module_symbols(
        "import torch.nn as nn\nimport os.path\nfrom . import gan\nfrom ..a import B as C\nfrom .x import *\n"
        "try:\n    from fast import D\nexcept ImportError:\n    from slow import D\n"
        "class K(nn.Module):\n    pass\n\ndef f():\n    import inner\n\nLR = 0.1\nX, (Y, Z) = 1, (2, 3)\n")
    imports = dict(sym.imports)
    assert imports["nn"] == ("torch.nn",) and imports["os"] == ("os",)
    assert imports["gan"] == (".gan",) and imports["C"] == ("..a.B",)
    assert imports["D"] == ("fast.D", "slow.D")
    assert "inner" not in imports  # a function's own import binds nothing at the top
    assert sym.star == (".x",) and sym.classes == ("K",)
    assert set(sym.defined) == {"f", "LR", "X", "Y", "Z"}
    assert module_symbols("def (:\n") is None


def _module(path: str, source: str) -> FileFacts:
    return FileFacts(path=path, kind="python", symbols=module_symbols(source))


class DictLoader:
    """A ModuleLoader over in-memory sources; records what it was asked to load."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.sources = sources
        self.loaded: list[str] = []

    def load(self, module: str):
        self.loaded.append(module)
        for name in (module, module + ".__init__"):
            if name in self.sources:
                return _module(name.replace(".", "/") + ".py", self.sources[name]), name.endswith("__init__")
        return None

    def modules_mentioning(self, word: str, whole: bool = False):
        return [m.removesuffix(".__init__") for m, s in self.sources.items() if holds_word(s.encode(), word.encode(), whole)]


def test_resolution_through_aliases_reexports_and_relative_imports():
    loader = DictLoader({
        "app.__init__": "from .models import Net as PublicNet\nfrom .layers import *\n",
        "app.models": "from .blocks import Block\nclass Net:\n    pass\n",
        "app.blocks": "class Block:\n    pass\n",
        "app.layers.__init__": "from .conv import Conv\n",
        "app.layers.conv": "class Conv:\n    pass\n",
        "cyc.a": "from cyc.b import X\n",
        "cyc.b": "from cyc.a import X\n",
    })
    index = ProjectIndex(loader)
    index.add("user", _module("user.py", "import app\nimport app.models as am\nfrom app import PublicNet as P, Conv\n"
                              "from app.models import Block\nfrom torch import nn\nfrom cyc.a import X\n"))
    assert index.resolve("user", "P") == ("app.models.Net",)
    assert index.resolve("user", "app.PublicNet") == ("app.models.Net",)
    assert index.resolve("user", "am.Net") == ("app.models.Net",)
    assert index.resolve("user", "Block") == ("app.blocks.Block",)  # a name another module imported
    assert index.resolve("user", "Conv") == ("app.layers.conv.Conv",)  # through `*` and a package
    assert index.resolve("user", "nn.Linear") == ()  # a library: not the project's
    assert index.resolve("user", "X") == ()  # a cycle of re-exports ends, unresolved
    assert index.resolve("user", "Missing") == ()
    assert "torch" in loader.loaded and "cyc.b" in loader.loaded



def test_star_imports_that_branch_at_every_level_are_resolved_once_per_name_and_depth(monkeypatch):
    """timm's packages re-export through `*` imports that fan out and meet again: tried path by
    path, one name cost ~200 000 lookups (36 s of a warm run). Each (name, depth) is resolved once."""
    levels = 12
    calls = _missing_through(_fan_out(levels, skip=False), monkeypatch)
    # without the memo: 2 ** 12 paths; with it, at most one per module and depth
    assert len(calls) <= (2 * levels + 2) * 17


def _fan_out(levels: int, skip: bool) -> dict[str, str]:
    """p.l0 re-exports p.l1a and p.l1b with `*`, each of them the next level's two, ...; with
    `skip`, every module also re-exports the level after next (reached at several depths)."""
    sources = {f"p.l{i}": f"from p.l{i + 1}a import *\nfrom p.l{i + 1}b import *\n" for i in range(levels)}
    for i in range(1, levels + 1):
        for side in "ab":
            sources[f"p.l{i}{side}"] = (f"from p.l{i + 1}a import *\nfrom p.l{i + 1}b import *\n"
                                         if i < levels else "")
            if skip and i + 2 <= levels:
                sources[f"p.l{i}{side}"] += f"from p.l{i + 2}a import *\n"
    return sources


def _missing_through(sources: dict[str, str], monkeypatch) -> list[str]:
    """The states _global computes to find `Missing` through p.l0 (found nowhere)."""
    index = ProjectIndex(DictLoader(sources))
    index.add("user", _module("user.py", "from p.l0 import Missing\n"))
    calls: list[str] = []
    real = ProjectIndex._global_uncached
    monkeypatch.setattr(ProjectIndex, "_global_uncached", lambda self, q, d: calls.append(q) or real(self, q, d))
    assert index.resolve("user", "Missing") == ()
    return calls

def test_a_name_found_nowhere_is_searched_once_whatever_the_depth(monkeypatch):
    """A fan-out whose modules are reached at several depths (each also re-exports the level
    after next): an answer no depth limit or cycle cut short is kept for the name alone (it was
    computed again for each depth it was reached at)."""
    levels = 12
    calls = _missing_through(_fan_out(levels, skip=True), monkeypatch)
    assert len(calls) == len(set(calls)) <= 2 * levels + 2


def test_an_import_of_the_modules_own_top_package_is_never_a_sibling():
    # `import pkg.layers` in pkg/models/beit.py is pkg.layers, not pkg.models.pkg.layers
    loader = DictLoader({
        "pkg.__init__": "", "pkg.layers.__init__": "class Conv:\n    pass\n",
        "pkg.models.__init__": "from .beit import *\n",
        "pkg.models.beit": "from pkg.layers import Conv, Missing\n",
    })
    index = ProjectIndex(loader)
    index.add("user", _module("user.py", "from pkg.models.beit import Conv, Missing\n"))
    assert index.resolve("user", "Conv") == ("pkg.layers.Conv",)
    assert index.resolve("user", "Missing") == ()
    assert not any(m.startswith("pkg.models.pkg") for m in loader.loaded)


def test_resolution_stays_bounded_when_modules_cannot_be_loaded_any_more(monkeypatch):
    """Past MAX_LOADED a package's submodules are unknown, and each submodule name was searched
    through every `*` import, growing new names without end (timm.models.beit.beit.beit...: 12
    million states, 6 GB, on a run of 163 timm and torchvision files)."""
    import gradlint.facts.project as project

    width = 8
    sources = {"pkg.models.__init__": "".join(f"from .m{i} import *\n" for i in range(width))}
    for i in range(width):
        sources[f"pkg.models.m{i}"] = f"from pkg.models.m{(i + 1) % width}.inner import Block\n"
    monkeypatch.setattr(project, "MAX_LOADED", 2)
    index = ProjectIndex(DictLoader(sources))
    index.add("user", _module("user.py", "from pkg.models.m0.inner import Block\n"))
    calls = []
    real = ProjectIndex._global_uncached
    monkeypatch.setattr(ProjectIndex, "_global_uncached", lambda self, q, d: calls.append(q) or real(self, q, d))
    assert index.resolve("user", "Block") == ()
    assert len(calls) <= project.MAX_GLOBAL_STEPS


def test_only_referenced_modules_are_summarised(monkeypatch):
    monkeypatch.chdir(TWOPKG)
    config = Config(root=str(TWOPKG))
    index, root = project_index([Path("train.py")], config, use_cache=False)
    assert root == TWOPKG.resolve()
    from gradlint.api import add_to_index, collect_facts

    (facts,) = collect_facts([(Path("train.py"), "train.py")], config, use_cache=False, jobs=1)
    add_to_index(index, root, Path("train.py"), facts)
    scope = index.scope(facts)
    assert [c.name for c in scope.lookup("Discriminator")] == ["Discriminator"]
    assert scope.resolve("Discriminator") == ("models.gan.Discriminator",)
    assert scope.lookup("WordLM")[0].recurrent
    assert set(index.modules) == {"train", "models.gan", "models.rnn"}  # not other.critic


def test_enabled_rules_are_decided_in_one_place():
    config = Config(select=("GL3",), ignore=("GL303",), per_file_ignores=(("tests/*", ("GL30",)),))
    on = enabled_rules(config, "train.py")
    assert "GL301" in on and "GL303" not in on and "GL201" not in on
    assert "GL001" in on  # always on
    in_tests = enabled_rules(config, "tests/t.py")
    assert "GL301" not in in_tests and "GL001" in in_tests and "GL310" not in in_tests
    assert "GL001" not in enabled_rules(Config(per_file_ignores=(("gen/*", ("GL001",)),)), "gen/x.py")


def test_the_probe_obeys_per_file_ignores(tmp_path):
    """The probe's verdicts go through the same function (it ignored per-file-ignores before)."""
    from types import SimpleNamespace

    from gradlint.findings import Finding, Severity, SourceSpan
    from gradlint.probe.run import _selected

    target = tmp_path / "gen" / "model.py"
    target.parent.mkdir()
    target.write_text("import torch\n")
    finding = Finding(code="GL701", name="measured-vanishing-gradient", message="m", severity=Severity.WARNING,
                      path=str(target), span=SourceSpan.point(1, 1))
    verdicts = [SimpleNamespace(finding=finding)]
    assert _selected(verdicts, Config(root=str(tmp_path)), target) == verdicts
    ignored = Config(root=str(tmp_path), per_file_ignores=(("gen/*", ("GL70",)),))
    assert _selected(verdicts, ignored, target) == []


def test_modules_read_on_demand_come_from_the_cache(tmp_path, monkeypatch):
    import gradlint.api as api

    project = tmp_path / "twopkg"
    shutil.copytree(TWOPKG, project)
    monkeypatch.chdir(project)
    config = Config(root=str(project))
    first = check_paths(["."], config, use_cache=True, jobs=1)
    extracted: list[str] = []
    real = api._extract

    def counting(path, display, data=None):
        extracted.append(display)
        return real(path, display, data)

    monkeypatch.setattr(api, "_extract", counting)
    again = check_paths(["train.py"], config, use_cache=True, jobs=1)
    # The models it reads come from the cache. Its own result read modules that were checked
    # files of the first run (a lookup's answer may differ then), so it is made again, from
    # train.py's facts, which the first run did not store: no other file's lookup reaches it.
    assert extracted == ["train.py"]
    assert again.findings == [f for f in first.findings if f.path == "train.py"]
    (project / "models" / "gan.py").write_text((project / "models" / "gan.py").read_text().replace(
        "return torch.sigmoid(self.body(x))", "return self.body(x)"))
    extracted.clear()
    changed = check_paths(["train.py"], config, use_cache=True, jobs=1)
    assert extracted == ["models/gan.py"]  # the edited module only, read because train.py names it
    assert [f.code for f in changed.findings] == ["GL201"]  # Discriminator returns logits now


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no FIFOs here")
def test_a_fifo_or_a_broken_module_in_the_project_does_not_hang_or_crash_the_lookup(tmp_path, monkeypatch):
    import os

    (tmp_path / "pyproject.toml").write_text("")
    os.mkfifo(tmp_path / "fifo.py")
    # libcst's native parser overflows its stack on this (SIGSEGV): CPython refuses it first
    (tmp_path / "deep.py").write_text("import torch\nclass Deep(torch.nn.Module):\n    pass\n"
                                      "x = " + "(" * 2000 + "1" + ")" * 2000 + "\n")
    (tmp_path / "broken.py").write_text("import torch\nclass Net(torch.nn.Module)\n")
    (tmp_path / "user.py").write_text(
        "import torch\nfrom fifo import Net\nfrom deep import Deep\nfrom broken import Net as B\n\n"
        "class Op(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x):\n        return x * 2\n\n"
        "    @staticmethod\n    def backward(ctx, g):\n        return g * 2\n\n"
        "def loss(x, y):\n    bce = torch.nn.BCELoss()\n    return bce(Net()(x), y) + bce(B()(x), y) + bce(Deep()(x), y)\n")
    found = findings_for(tmp_path, ["user.py"], "user.py", monkeypatch)
    assert [code for _l, _c, code, _m in found] == ["GL406"]


def test_word_scans_read_each_project_file_once_and_answer_each_word(tmp_path, monkeypatch):
    """The project's word scans (callers of a function, gradcheck) read every listed file once per
    run, not once per word; a file past the kept-bytes budget is read again and still answers."""
    from gradlint.source import index as source_index
    from gradlint.source.index import ProjectFiles

    files = []
    for i, text in enumerate(["def train():\n    pass\n", "from a import train\ntrain()\n", "x = 1\n", ""]):
        f = tmp_path / f"m{i}.py"
        f.write_text(text)
        files.append(f)
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)  # a FIFO named x.py: refused by the first scan, not opened again
    files.append(fifo)
    opened: list[str] = []
    real = source_index._scan

    def scan(path):
        opened.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(source_index, "_scan", scan)
    told: list[str] = []
    loader = ProjectFiles(tmp_path, lambda p: FileFacts(path=str(p), kind="python"), lambda: list(files))
    loader.scanned = lambda path, data: told.append(path.name)
    assert sorted(loader.modules_mentioning("train")) == ["m0", "m1"]
    assert loader.modules_mentioning("x = 1") == ["m2"]
    assert loader.modules_mentioning("nothing") == []
    assert sorted(opened) == sorted(f.name for f in files)  # each once, the FIFO refused once
    assert sorted(told) == ["m0.py", "m1.py", "m2.py", "m3.py"]
    # over the budget: each later scan reads the files again, with the same answers
    opened.clear()
    monkeypatch.setattr(source_index, "MAX_KEPT_BYTES", 0)
    loader = ProjectFiles(tmp_path, lambda p: FileFacts(path=str(p), kind="python"), lambda: list(files))
    assert sorted(loader.modules_mentioning("train")) == ["m0", "m1"]
    assert sorted(loader.modules_mentioning("train")) == ["m0", "m1"]
    assert opened.count("m0.py") == 2 and opened.count("m3.py") == 1  # the empty file fits in 0 bytes


# Two experiments of one repository, each with its own `models` package (a build/lib copy beside
# the sources is the same shape): both packages name their modules `models.*`.
_SIGMOID_BLOCK = """import torch.nn as nn
from models.layers import act


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 64)
        self.act = act()

    def forward(self, x):
        return self.act(self.fc(x))
"""
_RESIDUAL_BLOCK = """import torch.nn as nn
from models.layers import act


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 64)
        self.act = act()
        self.norm = nn.LayerNorm(64)

    def forward(self, x):
        return x + self.norm(self.act(self.fc(x)))
"""
_NET = """import torch.nn as nn
from models.blocks import Block


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(*[Block() for _ in range(40)])

    def forward(self, x):
        return self.body(x)
"""


def _experiments(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.gradlint]\n", encoding="utf-8")
    for name, block, act in (("mnist", _SIGMOID_BLOCK, "Sigmoid"), ("cifar", _RESIDUAL_BLOCK, "ReLU")):
        models = tmp_path / "ex" / name / "models"
        models.mkdir(parents=True)
        (models / "__init__.py").write_text("", encoding="utf-8")
        (models / "blocks.py").write_text(block, encoding="utf-8")
        # an absolute import of the package's own module: only this experiment's folder has it
        (models / "layers.py").write_text(f"import torch.nn as nn\n\n\ndef act():\n    return nn.{act}()\n",
                                          encoding="utf-8")
        (tmp_path / "ex" / name / "model.py").write_text(_NET, encoding="utf-8")
    return tmp_path


_RUNS = [["."], ["ex"], ["ex/cifar", "ex/mnist"], ["ex/mnist"], ["ex/mnist/model.py"],
         ["ex/cifar/model.py", "ex/mnist/model.py"], ["ex/mnist/model.py", "ex/mnist/models/blocks.py"],
         ["ex/mnist/model.py", "ex/cifar/models/blocks.py"],
         ["ex/cifar/models/blocks.py", "ex/mnist/model.py", "ex/mnist/models/blocks.py"]]


def _root_shadows(root: Path) -> None:
    """A `models` package and a `utils` module at the root too, of residual ReLU blocks: Python
    running ex/mnist/model.py finds its own folder's first."""
    (root / "models").mkdir()
    (root / "models" / "__init__.py").write_text("", encoding="utf-8")
    (root / "models" / "blocks.py").write_text(_RESIDUAL_BLOCK, encoding="utf-8")
    (root / "models" / "layers.py").write_text("import torch.nn as nn\n\n\ndef act():\n    return nn.ReLU()\n",
                                              encoding="utf-8")


def _star(root: Path) -> None:
    """Each experiment's script imports Block from its package, which re-exports it with an
    absolute `*` import."""
    for name in ("mnist", "cifar"):
        (root / "ex" / name / "models" / "__init__.py").write_text("from models.blocks import *\n", encoding="utf-8")
        (root / "ex" / name / "model.py").write_text(_NET.replace("from models.blocks import", "from models import"),
                                                     encoding="utf-8")


def _namespace_cifar(root: Path) -> None:
    """cifar's `models` is a namespace package (no `__init__.py`): its modules' absolute imports
    reach ex/cifar/models/ from the folder above, where the script that runs them lies."""
    (root / "ex" / "cifar" / "models" / "__init__.py").unlink()


def _namespaces(root: Path) -> None:
    _namespace_cifar(root)
    (root / "ex" / "mnist" / "models" / "__init__.py").unlink()


@pytest.mark.parametrize("paths", _RUNS, ids=lambda p: "+".join(p))
@pytest.mark.parametrize("shape", [None, _root_shadows, _star, _namespace_cifar, _namespaces],
                         ids=["plain", "root-shadows", "star", "namespace", "namespaces"])
def test_packages_of_one_name_in_two_folders_resolve_each_from_its_own(tmp_path, monkeypatch, paths, shape):
    # `check ex` named both folders' modules `models.blocks`: the first file of the name answered
    # the other's import, and mnist's 40 sigmoid blocks were not reported (cifar's were read);
    # a script's import reached the root's module of its name before its own folder's, and a
    # module of a package the run did not check named its own package's modules from the root.
    root = _experiments(tmp_path)
    if shape is not None:
        shape(root)
    monkeypatch.chdir(root)
    result = check_paths(paths, Config(root=str(root)), use_cache=False, jobs=1)
    assert not result.internal_errors
    found = sorted((Path(f.path).as_posix(), f.span.line, f.code) for f in result.findings)
    assert found == [("ex/mnist/model.py", 8, "GL101")]


@pytest.mark.parametrize("paths", [["."], ["A"], ["A/model.py"], ["A/model.py", "A/models/blocks.py"]])
@pytest.mark.parametrize("names", [("my-exp", "other-exp"), ("v1.2", "v1/2"), ("v1%2e2", "v1.2")], ids=repr)
def test_experiment_folders_whose_names_are_no_identifiers(tmp_path, monkeypatch, paths, names):
    # (ex/v1.2 and ex/v1/2 took one home name, ex.v1.2)
    root = _experiments(tmp_path)
    (root / names[0]).parent.mkdir(parents=True, exist_ok=True)
    (root / "ex" / "mnist").rename(root / names[0])
    (root / names[1]).parent.mkdir(parents=True, exist_ok=True)
    (root / "ex" / "cifar").rename(root / names[1])
    monkeypatch.chdir(root)
    paths = [p.replace("A", names[0]) for p in paths]
    result = check_paths(paths, Config(root=str(root)), use_cache=False, jobs=1)
    assert sorted((Path(f.path).as_posix(), f.code) for f in result.findings) == [(f"{names[0]}/model.py", "GL101")]


def test_a_gradcheck_of_one_experiment_is_not_another_s(tmp_path, monkeypatch):
    # GL406 (opt-in): both experiments define models.fn.Triple; only cifar's test gradchecks its own
    triple = ("import torch\nfrom torch.autograd import Function\n\n\nclass Triple(Function):\n"
              "    @staticmethod\n    def forward(ctx, x):\n        return x * 3\n\n"
              "    @staticmethod\n    def backward(ctx, g):\n        return g * 3\n")
    for name in ("mnist", "cifar"):
        (tmp_path / "ex" / name / "models").mkdir(parents=True)
        (tmp_path / "ex" / name / "models" / "__init__.py").write_text("", encoding="utf-8")
        (tmp_path / "ex" / name / "models" / "fn.py").write_text(triple, encoding="utf-8")
    (tmp_path / "ex" / "cifar" / "test_fn.py").write_text(
        "import torch\nfrom torch.autograd import gradcheck\nfrom models.fn import Triple\n\n\ndef test_triple():\n"
        "    x = torch.randn(3, dtype=torch.double, requires_grad=True)\n    assert gradcheck(Triple.apply, (x,))\n",
        encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text("[tool.gradlint]\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for paths in (["ex"], ["ex/mnist"], ["ex/mnist/models/fn.py"], ["ex/mnist/models/fn.py", "ex/cifar/models/fn.py"]):
        result = check_paths(paths, Config(root=str(tmp_path), extend_select=("GL406",)), use_cache=False, jobs=1)
        assert sorted((Path(f.path).as_posix(), f.code) for f in result.findings) == [
            ("ex/mnist/models/fn.py", "GL406")], paths


def test_shared_package_names_with_the_cache_and_the_pool(tmp_path, monkeypatch):
    root = _experiments(tmp_path)
    _root_shadows(root)
    monkeypatch.chdir(root)
    # the file alone first: its entry must hold for the run of the whole tree (where the names
    # of the packages differ), as a cold run of it would answer
    alone = check_paths(["ex/mnist/model.py"], Config(root=str(root)), use_cache=True, jobs=1)
    assert [f.code for f in alone.findings] == ["GL101"]
    for _run in range(2):  # cold, then every result from the cache
        result = check_paths(["ex"], Config(root=str(root)), use_cache=True, jobs=2)
        assert sorted((Path(f.path).as_posix(), f.code) for f in result.findings) == [("ex/mnist/model.py", "GL101")]
    # the cifar experiment changed to sigmoid blocks: its result is made again, from its own package
    (root / "ex" / "cifar" / "models" / "layers.py").write_text(
        "import torch.nn as nn\n\n\ndef act():\n    return nn.Sigmoid()\n", encoding="utf-8")
    (root / "ex" / "cifar" / "models" / "blocks.py").write_text(_SIGMOID_BLOCK, encoding="utf-8")
    result = check_paths(["ex"], Config(root=str(root)), use_cache=True, jobs=2)
    assert sorted((Path(f.path).as_posix(), f.code) for f in result.findings) == [
        ("ex/cifar/model.py", "GL101"), ("ex/mnist/model.py", "GL101")]


def test_package_homes_only_for_names_files_share(tmp_path):
    from gradlint.source.index import module_place, module_places

    root = _experiments(tmp_path)
    (root / "models").mkdir()
    (root / "models" / "__init__.py").write_text("", encoding="utf-8")
    (root / "models" / "blocks.py").write_text("", encoding="utf-8")
    (root / "tools" / "util").mkdir(parents=True)
    (root / "tools" / "util" / "__init__.py").write_text("", encoding="utf-8")
    files = sorted(root.rglob("*.py"))
    places, homes = module_places(files, root)
    # the root's own `models` is what Python's path finds from the root: it keeps its name
    assert homes == {(root / "ex" / "cifar").resolve(): "ex.cifar", (root / "ex" / "mnist").resolve(): "ex.mnist"}
    named = dict(zip((f.relative_to(root).as_posix() for f in files), places))
    assert named["ex/mnist/models/blocks.py"] == ("ex.mnist.models.blocks", False, "ex.mnist")
    assert named["ex/mnist/models/__init__.py"] == ("ex.mnist.models", True, "ex.mnist")
    assert named["ex/mnist/model.py"] == ("ex.mnist.model", False, "ex.mnist")  # a script: its folder
    assert named["models/blocks.py"] == ("models.blocks", False, "")
    assert named["tools/util/__init__.py"] == ("util", True, "tools")
    two = [root / "ex" / "mnist" / "models" / "blocks.py", root / "tools" / "util" / "__init__.py"]
    # a module of the name under the import root, not checked: the root's `models.blocks`
    alone, shared = module_places(two, root)
    assert shared == {(root / "ex" / "mnist").resolve(): "ex.mnist"}
    assert alone[0] == ("ex.mnist.models.blocks", False, "ex.mnist")
    shutil.rmtree(root / "models")
    alone, none = module_places(two, root)
    # no name shared: the names of module_name, each home still the folder above the package
    assert none == {} and alone == [("models.blocks", False, "ex.mnist"), ("util", True, "tools")]
    assert module_place(root / "ex" / "mnist" / "models" / "blocks.py", root) == alone[0]
    assert module_name(root / "ex" / "mnist" / "models" / "blocks.py", root, homes) == ("ex.mnist.models.blocks", False)


@pytest.mark.parametrize("paths", [["."], ["train.py"], ["train.py", "ex/mnist/models/blocks.py"],
                                   ["ex/mnist/models/blocks.py", "train.py", "ex/mnist/models/layers.py"]])
def test_a_root_package_is_not_answered_by_a_checked_package_of_its_name_elsewhere(tmp_path, monkeypatch, paths):
    # the pre-commit run of `train.py ex/mnist/models/blocks.py` named mnist's file `models.blocks`
    # (no other checked file shared the name), and the root script's import reached it: a GL101
    # of mnist's sigmoid blocks reported on the root's residual model
    root = _experiments(tmp_path)
    _root_shadows(root)
    (root / "train.py").write_text(_NET, encoding="utf-8")
    monkeypatch.chdir(root)
    result = check_paths(paths, Config(root=str(root)), use_cache=False, jobs=1)
    assert [f for f in result.findings if Path(f.path).as_posix() == "train.py"] == []


@pytest.mark.parametrize("paths", [["ex"], ["ex/cifar/models/net.py"],
                                   ["ex/cifar/models/net.py", "ex/mnist/models/blocks.py", "ex/mnist/models/layers.py"]])
def test_packages_of_one_name_are_apart_though_their_checked_modules_differ(tmp_path, monkeypatch, paths):
    # cifar's models/net.py and mnist's models/blocks.py share no module name: cifar's import of
    # `models.blocks` reached mnist's checked sigmoid blocks (a wrong GL101 on cifar's residual net)
    root = _experiments(tmp_path)
    for name in ("mnist", "cifar"):
        (root / "ex" / name / "model.py").rename(root / "ex" / name / "models" / "net.py")
    monkeypatch.chdir(root)
    result = check_paths(paths, Config(root=str(root)), use_cache=False, jobs=1)
    assert [f for f in result.findings if "cifar" in Path(f.path).as_posix()] == []
