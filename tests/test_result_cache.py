"""The result cache (gradlint.results.ResultCache): a warm run reuses each file's stored FileResult without
reading any facts, and a result is reused only while everything its analysis read is as it was:
the file, the configuration, and every other file its lookups reached (project modules, a module
that did not exist yet, installed libraries, blocks re-run with a caller's arguments, the
project's text that a word scan read). Each case compares the warm run with --no-cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gradlint import api, cache
from gradlint.api import check_paths
from gradlint.config import Config, load_config
from tests.cli_helpers import write_tree
from tests.conftest import FIXTURES, ROOT
from tests.test_cache import DEEP_SIGMOID, LOG_SOFTMAX, all_entries, packs, result_entries

CROSS = FIXTURES / "architecture" / "crossfile"


class Counter:
    """What a run decoded and extracted: facts entries loaded, files whose facts were made."""

    def __init__(self, monkeypatch) -> None:
        self.loaded: list[str] = []
        self.extracted: list[str] = []
        real_load, real_extract = cache.load, api._extract

        def load(store, where, folder, expect):
            got = real_load(store, where, folder, expect)
            self.loaded.append(expect.__name__)
            return got

        def extract(path, display, data=None):
            self.extracted.append(display)
            return real_extract(path, display, data)

        monkeypatch.setattr(cache, "load", load)
        monkeypatch.setattr(api, "_extract", extract)

    def clear(self) -> None:
        self.loaded.clear()
        self.extracted.clear()


def run(root: Path, targets=(".",), *, use_cache: bool = True, config: Config | None = None) -> list[tuple]:
    old = os.getcwd()
    os.chdir(root)
    try:
        result = check_paths(list(targets), config or load_config(start=root), use_cache=use_cache, jobs=1)
    finally:
        os.chdir(old)
    assert not result.internal_errors, [r.internal_error for r in result.internal_errors]
    return [(f.path, f.code, f.span.line, f.message) for f in result.findings]


def same_as_no_cache(root: Path, targets=(".",)) -> list[tuple]:
    warm = run(root, targets)
    assert warm == run(root, targets, use_cache=False)
    return warm


@pytest.fixture
def cross(tmp_path: Path) -> Path:
    shutil.copytree(CROSS, tmp_path / "p")
    return tmp_path / "p"


def test_a_warm_run_reuses_every_result_and_reads_no_facts(cross, monkeypatch):
    cold = run(cross)
    assert "GL101" in {c for _p, c, _l, _m in cold}
    assert len(result_entries(cross)) == len(list(cross.glob("*.py")))
    seen = Counter(monkeypatch)
    assert run(cross) == cold == run(cross, use_cache=False)
    seen.clear()
    assert run(cross) == cold
    # one result entry a file, nothing else decoded, nothing extracted, nothing written
    assert seen.extracted == [] and set(seen.loaded) == {"tuple"}
    assert len(seen.loaded) == len(list(cross.glob("*.py")))


def test_a_changed_block_in_another_file_changes_the_callers_findings(cross, monkeypatch):
    cold = run(cross)
    assert any(p == "model.py" for p, *_ in cold)
    blocks = cross / "blocks.py"
    # SigmoidBlock gets a norm: model.py's deep stacks of it are no longer flagged
    blocks.write_text(blocks.read_text().replace(
        "        self.act = nn.Sigmoid()\n\n    def forward(self, x):\n        return self.act(self.fc(x))",
        "        self.norm = nn.LayerNorm(width)\n        self.act = nn.Sigmoid()\n\n"
        "    def forward(self, x):\n        return self.act(self.norm(self.fc(x)))", 1))
    seen = Counter(monkeypatch)
    warm = same_as_no_cache(cross)
    assert [f for f in warm if f[0] == "model.py"] != [f for f in cold if f[0] == "model.py"]
    seen.clear()
    assert run(cross) == warm and seen.extracted == []


def test_only_the_files_whose_inputs_changed_are_run_again(cross, monkeypatch):
    run(cross)
    quiet = cross / "model_quiet.py"
    quiet.write_text(quiet.read_text() + "\n# edited\n")
    seen = Counter(monkeypatch)
    warm = run(cross)
    # model_quiet.py alone: no other file's lookups reached it
    assert seen.extracted == ["model_quiet.py"]
    assert warm == run(cross, use_cache=False)


def test_a_module_created_later_that_a_lookup_missed_invalidates(tmp_path, monkeypatch):
    model = DEEP_SIGMOID.replace("import torch.nn as nn\n", "import torch.nn as nn\nfrom blocks import Block\n").replace(
        "(nn.Linear(256, 256), nn.Sigmoid())", "(Block(),)")
    write_tree(tmp_path, {"pyproject.toml": "[tool.gradlint]\n", "model.py": model})
    assert run(tmp_path, ["model.py"]) == []  # Block is unknown: never a finding
    (tmp_path / "blocks.py").write_text(
        "import torch.nn as nn\n\nclass Block(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(256, 256)\n        self.act = nn.Sigmoid()\n\n"
        "    def forward(self, x):\n        return self.act(self.fc(x))\n")
    warm = same_as_no_cache(tmp_path, ["model.py"])
    assert [c for _p, c, _l, _m in warm] == ["GL101"]
    # and a package of that name coming first takes its place
    (tmp_path / "blocks.py").unlink()
    assert same_as_no_cache(tmp_path, ["model.py"]) == []


def test_a_changed_library_file_changes_the_findings(tmp_path, monkeypatch):
    from tests.test_library_sources import fakelib, project

    site = fakelib(tmp_path / "site")
    proj = project(tmp_path)
    cold = run(proj, ["model.py"])
    assert [c for _p, c, _l, _m in cold] == ["GL101"]
    seen = Counter(monkeypatch)
    assert run(proj, ["model.py"]) == cold and seen.extracted == []
    sig = site / "fakelib" / "blocks" / "sig.py"
    sig.write_text(sig.read_text().replace("self.act(self.fc(x))", "self.act(self.norm(self.fc(x)))")
                   .replace("self.act = nn.Sigmoid()", "self.norm = nn.LayerNorm(width)\n        self.act = nn.Sigmoid()"))
    assert same_as_no_cache(proj, ["model.py"]) == []


def test_a_caller_added_anywhere_in_the_project_is_seen_through_the_word_scan(tmp_path):
    pipe = ("import torch\n\n\ndef inner(z):\n    return torch.log(torch.softmax(z, -1))\n\n\n"
            "@torch.no_grad()\ndef run(z):\n    return inner(z)\n")
    write_tree(tmp_path, {"pyproject.toml": "[tool.gradlint]\n", "pipe.py": pipe})
    assert run(tmp_path, ["pipe.py"]) == []  # only a no-grad caller: not flagged
    # a file outside the run calls it with grad: pipe.py's finding depends on it
    (tmp_path / "train.py").write_text("import torch\nfrom pipe import inner\n\n\ndef fit(z):\n"
                                       "    inner(z).sum().backward()\n")
    warm = same_as_no_cache(tmp_path, ["pipe.py"])
    assert [c for _p, c, _l, _m in warm] == ["GL302"]
    (tmp_path / "train.py").write_text("# nothing here\n")
    assert same_as_no_cache(tmp_path, ["pipe.py"]) == []


GRADCHECKED_FUNCTION = ("import torch\n\n\nclass Square(torch.autograd.Function):\n    @staticmethod\n"
                        "    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return x * x\n\n"
                        "    @staticmethod\n    def backward(ctx, g):\n        (x,) = ctx.saved_tensors\n"
                        "        return 2 * x * g\n")


def test_a_gradcheck_added_in_another_file_is_seen(tmp_path):
    function = GRADCHECKED_FUNCTION
    write_tree(tmp_path, {"pyproject.toml": "[tool.gradlint]\nextend-select = [\"GL406\"]\n", "fn.py": function})
    cold = same_as_no_cache(tmp_path, ["fn.py"])
    (tmp_path / "test_fn.py").write_text("import torch\nfrom fn import Square\n\n\ndef test_grad():\n"
                                         "    x = torch.randn(3, dtype=torch.float64, requires_grad=True)\n"
                                         "    assert torch.autograd.gradcheck(Square.apply, (x,))\n")
    warm = same_as_no_cache(tmp_path, ["fn.py"])
    assert "GL406" in {c for _p, c, _l, _m in cold} and "GL406" not in {c for _p, c, _l, _m in warm}


def test_a_gradcheck_in_a_checked_file_outside_the_project_listing_still_counts(tmp_path):
    """build/ is excluded from folder walks (the word scan's listing), yet a file named on the
    command line there is checked and holds the gradcheck; re-running fn.py alone on a warm run
    must still find it."""
    write_tree(tmp_path, {"pyproject.toml": "[tool.gradlint]\nextend-select = [\"GL406\"]\n",
                          "fn.py": GRADCHECKED_FUNCTION,
                          "build/test_fn.py": "import torch\nfrom fn import Square\n\n\ndef test_grad():\n"
                                              "    x = torch.randn(3, dtype=torch.float64, requires_grad=True)\n"
                                              "    assert torch.autograd.gradcheck(Square.apply, (x,))\n"})
    targets = ["fn.py", "build/test_fn.py"]
    assert same_as_no_cache(tmp_path, targets) == []
    (tmp_path / "fn.py").write_text(GRADCHECKED_FUNCTION + "\n# edited\n")
    assert same_as_no_cache(tmp_path, targets) == []


@pytest.mark.parametrize("setting", ['[tool.gradlint]\nignore = ["GL101"]',
                                     '[tool.gradlint.per-file-ignores]\n"model.py" = ["GL1"]',
                                     '[tool.gradlint]\nselect = ["GL3"]',
                                     '[tool.gradlint.GL101]\nvanishing-threshold = 1e-30'])
def test_a_configuration_change_invalidates(cross, setting, monkeypatch):
    before = run(cross)
    (cross / "pyproject.toml").write_text((cross / "pyproject.toml").read_text() + "\n" + setting + "\n")
    after = same_as_no_cache(cross)
    assert after != before


def test_a_damaged_result_entry_is_skipped_and_rewritten(cross, monkeypatch):
    honest = run(cross, use_cache=False)
    run(cross)
    # the facts stored: of the modules another file's lookups reached (api._later_read)
    stored = {cache.decode(d["facts"]).path for d in all_entries(cross) if isinstance(d["facts"], dict)}
    assert stored and len(stored) < len(list(cross.glob("*.py")))
    for pack in packs(cross):
        lines = pack.read_bytes().splitlines()
        lines = [line[:-30] if isinstance(json.loads(line)["facts"], list) else line for line in lines]
        pack.write_bytes(b"\n".join(lines) + b"\n")
    seen = Counter(monkeypatch)
    assert run(cross) == honest
    # facts entries still served, the other files extracted again; the rules ran again
    assert sorted(seen.extracted) == sorted(p.name for p in cross.glob("*.py") if p.name not in stored)
    assert len(result_entries(cross)) == len(list(cross.glob("*.py")))
    seen.clear()
    assert run(cross) == honest and seen.loaded == ["tuple"] * len(list(cross.glob("*.py")))


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "gradlint.cli", "check", "-j", "1", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_warm_output_is_byte_identical_with_suppressions_and_per_file_ignores(cross):
    model = cross / "model.py"
    model.write_text(model.read_text().replace("# expect: GL101", "# gradlint: ignore[GL101]", 1))
    (cross / "pyproject.toml").write_text((cross / "pyproject.toml").read_text()
                                         + '\n[tool.gradlint.per-file-ignores]\n"blocks.py" = ["GL101"]\n')
    (cross / "m.py").write_text("import torch\n\ndef f(y):\n    return torch.log(torch.softmax(y, 1))  # noqa: GL302\n")
    for fmt in ("text", "json", "full"):
        honest = _cli(cross, "--no-cache", "--format", fmt, ".")
        cold, warm = _cli(cross, "--format", fmt, "."), _cli(cross, "--format", fmt, ".")
        assert (cold.returncode, cold.stdout) == (warm.returncode, warm.stdout) == (honest.returncode, honest.stdout)
        assert honest.returncode == 1


def test_fix_on_a_warm_run_writes_what_a_cold_run_writes(tmp_path):
    write_tree(tmp_path, {"a/pyproject.toml": "[tool.gradlint]\n", "a/util.py": LOG_SOFTMAX,
                          "a/model.py": DEEP_SIGMOID})
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    _cli(tmp_path / "a", ".")  # fills a's cache
    warm = _cli(tmp_path / "a", "--fix", ".")
    honest = _cli(tmp_path / "b", "--fix", "--no-cache", ".")
    assert (warm.returncode, warm.stdout) == (honest.returncode, honest.stdout)
    assert (tmp_path / "a" / "util.py").read_text() == (tmp_path / "b" / "util.py").read_text() != LOG_SOFTMAX


def test_onnx_models_keep_a_result_entry_and_no_facts_entry(tmp_path, monkeypatch):
    from tests.test_cache import _gen

    gen = _gen()
    gen.save(gen.mlp(depth=30, width=64, act="Sigmoid", std=1.0), tmp_path / "m.onnx")
    honest = run(tmp_path, use_cache=False)
    assert honest and run(tmp_path) == honest
    stored = all_entries(tmp_path)
    assert len(stored) == 1 and stored == result_entries(tmp_path)
    seen = Counter(monkeypatch)
    assert run(tmp_path) == honest and seen.extracted == []
    # a changed setting: the model is read again, and its result stored again
    (tmp_path / "pyproject.toml").write_text('[tool.gradlint]\nignore = ["GL104"]\n')
    assert same_as_no_cache(tmp_path) != honest and seen.extracted == ["m.onnx", "m.onnx"]


# --- what a file's lookups read (ProjectIndex.log) ------------------------------------------------


def test_a_memo_answer_counts_as_reading_what_computing_it_read():
    """Memos are shared by the files of a run: the second file that resolves a name reads no
    module itself, yet depends on every module the first file's resolution went through."""
    from gradlint.facts.callgraph import only_nograd_reachable
    from gradlint.facts.project import ProjectIndex, Scope
    from tests.test_nograd_reach import PIPELINE, _Loader, facts

    train = "import torch\nfrom pipe import inner\n\n\ndef fit(z):\n    inner(z).sum().backward()\n"
    modules = {"pipe": PIPELINE, "train": train,
               "a": "from pkg.models import Net\n", "b": "from pkg.models import Net\n",
               "pkg.models": "from pkg.blocks.net import Net\n", "pkg.blocks.net": "class Net:\n    pass\n"}
    index = ProjectIndex(_Loader(modules))
    for name in ("a", "b", "pipe"):
        index.add(name, facts(modules[name], name + ".py"))
    start = index.start_file()
    assert index.resolve("a", "Net") == ("pkg.blocks.net.Net",)
    first, _ = index.read_since(start)
    assert {"pkg.models", "pkg.blocks.net"} <= first
    start = index.start_file()
    # b's own resolution: a new key, then the memoised answer for 'pkg.models.Net'
    assert index.resolve("b", "Net") == ("pkg.blocks.net.Net",)
    second, _ = index.read_since(start)
    assert {"pkg.models", "pkg.blocks.net"} <= second
    # facts/numerics.py's memos (index.memos) and the word scan, the same way
    start = index.start_file()
    assert only_nograd_reachable(Scope(index, "pipe"), "inner") is False
    mods, words = index.read_since(start)
    assert "train" in mods and "inner" in words
    start = index.start_file()
    assert only_nograd_reachable(Scope(index, "pipe"), "inner") is False
    again, words_again = index.read_since(start)
    assert "train" in again and "inner" in words_again
    # a file that asked nothing read nothing
    assert index.read_since(index.start_file()) == (frozenset(), frozenset())


def test_a_name_two_checked_files_share_belongs_to_the_first_as_without_the_cache(tmp_path):
    """src/pkg/blocks.py and pkg/blocks.py are both module pkg.blocks; the first one discovered
    holds the name. Editing either gives --no-cache's findings on a warm run."""
    deep = DEEP_SIGMOID.replace("class M(", "class Block(")
    model = ("import torch.nn as nn\nfrom pkg.blocks import Block\n\n\nclass Net(nn.Module):\n"
             "    def __init__(self):\n        super().__init__()\n        self.body = nn.Sequential(*[Block() for _ in range(3)])\n\n"
             "    def forward(self, x):\n        return self.body(x)\n")
    write_tree(tmp_path, {"pyproject.toml": "[tool.gradlint]\n", "pkg/blocks.py": "X = 1\n",
                          "src/pkg/blocks.py": deep, "model.py": model})
    seen = [same_as_no_cache(tmp_path)]
    for path, text in (("pkg/blocks.py", "X = 2\n"), ("src/pkg/blocks.py", deep.replace("range(12)", "range(2)")),
                       ("pkg/blocks.py", deep)):
        (tmp_path / path).write_text(text)
        seen.append(same_as_no_cache(tmp_path))
    assert len({tuple(s) for s in seen}) > 1  # the edits changed what is reported


def test_a_memo_set_without_a_lookup_first_depends_on_all_its_file_read():
    """A query whose answer is stored with setdefault (no miss noted first) still carries what
    its file read before storing it: the safe side."""
    from gradlint.facts.project import ProjectIndex
    from tests.test_nograd_reach import _Loader, facts

    modules = {"a": "import torch\n", "m1": "X = 1\n", "m2": "Y = 2\n"}
    index = ProjectIndex(_Loader(modules))
    index.add("a", facts(modules["a"], "a.py"))
    index.start_file()
    index.module("m1")
    memo = index.memos.setdefault("q", {})
    memo.setdefault("k", index.module("m2") is not None)
    memo.update({"j": 1})
    start = index.start_file()
    assert "k" in memo and memo["j"] == 1
    assert index.read_since(start)[0] == {"m1", "m2"}
