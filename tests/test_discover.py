"""File discovery: recursion, suffixes, .gitignore (nested, negation, anchoring), excludes."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from gradlint.config import Config
from gradlint.discover import discover
from tests.cli_helpers import write_tree


def found(root: Path, config: Config | None = None, paths=(".",)) -> list[str]:
    config = config or Config(root=str(root))
    old = os.getcwd()
    os.chdir(root)
    try:
        result = discover([Path(p) for p in paths], config)
    finally:
        os.chdir(old)
    return sorted(display for _path, display in result.files)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()
    return tmp_path


def test_folders_are_walked_recursively_for_py_and_onnx(repo):
    write_tree(repo, {"a.py": "", "pkg/b.py": "", "pkg/deep/er/c.py": "", "m.onnx": b"", "notes.txt": "",
                      "pkg/d.pyi": "", "setup.cfg": ""})
    assert found(repo) == ["a.py", "m.onnx", "pkg/b.py", "pkg/deep/er/c.py"]


def test_default_excludes(repo):
    write_tree(repo, {f"{d}/x.py": "" for d in (".venv", "venv", "node_modules", "__pycache__", ".tox",
                                                 "build", "dist", ".git", "lib/site-packages", ".gradlint_cache")})
    write_tree(repo, {"src/ok.py": ""})
    assert found(repo) == ["src/ok.py"]


def test_gitignore_patterns(repo):
    write_tree(repo, {
        ".gitignore": "# generated code\n*.gen.py\n!keep.gen.py\nout/\n/top_only.py\ndata/**/raw_*.py\n",
        "a.gen.py": "", "keep.gen.py": "", "sub/b.gen.py": "", "sub/keep.gen.py": "",
        "out/x.py": "", "sub/out/y.py": "", "top_only.py": "", "sub/top_only.py": "",
        "data/raw_1.py": "", "data/v1/raw_2.py": "", "data/v1/clean.py": "", "plain.py": "",
    })
    assert found(repo) == ["data/v1/clean.py", "keep.gen.py", "plain.py", "sub/keep.gen.py", "sub/top_only.py"]


def test_nested_gitignore_applies_below_its_folder_only(repo):
    write_tree(repo, {
        ".gitignore": "scratch_*.py\n",
        "pkg/.gitignore": "local.py\n!scratch_keep.py\n/anchored.py\n",
        "local.py": "", "pkg/local.py": "", "pkg/sub/local.py": "",
        "scratch_a.py": "", "pkg/scratch_b.py": "", "pkg/scratch_keep.py": "", "scratch_keep.py": "",
        "anchored.py": "", "pkg/anchored.py": "", "pkg/sub/anchored.py": "",
    })
    assert found(repo) == ["anchored.py", "local.py", "pkg/scratch_keep.py", "pkg/sub/anchored.py"]


def test_gitignore_above_the_walked_folder_applies(repo):
    write_tree(repo, {".gitignore": "/src/gen/\nskip_me.py\n", "src/gen/a.py": "", "src/skip_me.py": "", "src/ok.py": ""})
    old = os.getcwd()
    os.chdir(repo)
    try:
        result = discover([Path("src")], Config(root=str(repo)))
    finally:
        os.chdir(old)
    assert sorted(d for _p, d in result.files) == ["src/ok.py"]


def test_respect_gitignore_false(repo):
    write_tree(repo, {".gitignore": "ignored.py\n", "ignored.py": "", "ok.py": ""})
    assert found(repo, Config(root=str(repo), respect_gitignore=False)) == ["ignored.py", "ok.py"]


def test_exclude_replaces_and_extend_exclude_adds(repo):
    write_tree(repo, {".venv/a.py": "", "gen/b.py": "", "src/c.py": "", "src/gen_d.py": "", "src/sub/e.py": ""})
    cfg = Config(root=str(repo))
    assert found(repo, replace(cfg, extend_exclude=("gen", "src/sub"))) == ["src/c.py", "src/gen_d.py"]
    assert found(repo, replace(cfg, extend_exclude=("gen_*.py",))) == ["gen/b.py", "src/c.py", "src/sub/e.py"]
    # `exclude` replaces the defaults: .venv is walked again.
    assert found(repo, replace(cfg, exclude=("gen",))) == [".venv/a.py", "src/c.py", "src/gen_d.py", "src/sub/e.py"]


def test_explicit_files_are_checked_even_where_a_walk_would_skip_them(repo):
    write_tree(repo, {".gitignore": "ignored.py\n", "ignored.py": "", ".venv/lib/x.py": "", "script": "",
                      "build/y.py": ""})
    assert found(repo, paths=("ignored.py", ".venv/lib/x.py", "script", "build/y.py")) == [
        ".venv/lib/x.py", "build/y.py", "ignored.py", "script"]


def test_the_users_own_excludes_apply_to_explicit_files(repo):
    # As ruff's pre-commit hook does with --force-exclude: pre-commit passes every staged file,
    # and a file the user excluded must stay excluded.
    write_tree(repo, {"gen/a.py": "", "b.py": ""})
    cfg = Config(root=str(repo), extend_exclude=("gen",))
    assert found(repo, cfg, paths=("gen/a.py", "b.py")) == ["b.py"]


def test_missing_paths_are_reported_and_the_rest_is_found(repo):
    write_tree(repo, {"a.py": ""})
    old = os.getcwd()
    os.chdir(repo)
    try:
        result = discover([Path("nope.py"), Path("a.py"), Path("nodir")], Config(root=str(repo)))
    finally:
        os.chdir(old)
    assert result.missing == ["nope.py", "nodir"]
    assert [d for _p, d in result.files] == ["a.py"]


def test_a_file_is_found_once(repo):
    write_tree(repo, {"pkg/a.py": ""})
    assert found(repo, paths=("pkg", "pkg/a.py", ".", "pkg/../pkg/a.py")) == ["pkg/a.py"]


def test_symlinked_folder_loops_do_not_hang(repo):
    write_tree(repo, {"pkg/a.py": ""})
    (repo / "pkg" / "loop").symlink_to(repo / "pkg", target_is_directory=True)
    assert found(repo) == ["pkg/a.py"]


def test_excludes_as_one_regex_agree_with_fnmatch_per_pattern():
    """_excluded compiles the patterns into one regex: it must give fnmatch's verdict, pattern by
    pattern (the name, the path, or anything below the path)."""
    import fnmatch
    import random

    from gradlint.discover import _excluded

    rng = random.Random(7)
    parts = ["a", "b", "build", ".venv", "x.py", "node_modules", "data[1]", "*", "?", "[ab]", "[!a]*", "**", "c/d"]

    def old(rel, name, patterns):
        for pattern in patterns:
            p = pattern.rstrip("/")
            if fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, p + "/*"):
                return True
        return False

    for _ in range(3000):
        patterns = tuple("".join(rng.choice(parts) for _ in range(rng.randint(1, 3))) + rng.choice(["", "/"])
                         for _ in range(rng.randint(0, 4)))
        rel = "/".join(rng.choice(["a", "b", "build", ".venv", "x.py", "data1", "c", "d"]) for _ in range(rng.randint(1, 4)))
        name = rel.rsplit("/", 1)[-1]
        assert _excluded(rel, name, patterns) == old(rel, name, patterns), (rel, patterns)


@pytest.mark.parametrize("where", [".", "pkg", "pkg/sub", "other", ".."])
def test_a_walk_names_each_file_as_display_path_does(repo, monkeypatch, where):
    """A walk names a folder's files from the folder's relpath (one per folder): the same names as
    display_path gives each file, from inside, below, beside and above the walked folder."""
    from gradlint.discover import display_path

    for rel in ("pkg/sub/deep.py", "pkg/a.py", "other/b.py", "..x.py", "pkg/..y.py"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("import torch\n")
    monkeypatch.chdir(repo / where)
    for target in (repo, repo / "pkg", Path(os.path.relpath(repo / "pkg", repo / where))):
        result = discover([target], Config(root=str(repo)))
        assert len(result.files) >= 3
        assert [display for _p, display in result.files] == [display_path(p) for p, _d in result.files]


def test_excludes_and_gitignore_match_real_paths_when_the_walk_starts_through_a_link(repo):
    """Folders are matched by their real path from the root (resolved once at the top of the walk
    and carried down): a walk started through a link to the project excludes what a walk of the
    project itself excludes."""
    real = repo / "real"
    write_tree(real, {"pkg/sub/a.py": "x = 1\n", "pkg/sub/deeper/c.py": "x = 1\n", "pkg/b.py": "x = 1\n",
                      "pkg/skip/d.py": "x = 1\n", ".gitignore": "skip/\n"})
    (repo / "link").symlink_to(real, target_is_directory=True)
    (real / "pkg" / "alias").symlink_to(real / "pkg" / "sub", target_is_directory=True)  # not walked into
    config = replace(Config(root=str(real)), extend_exclude=("pkg/sub/deeper",))
    direct = [p.name for p, _ in discover([real], config).files]
    linked = [p.name for p, _ in discover([repo / "link"], config).files]
    assert direct == linked == ["b.py", "a.py"]
