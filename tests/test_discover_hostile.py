"""Hostile and careless trees: FIFOs, devices, link loops, unreadable folders, bad .gitignore
lines, oversized files. Each finishes quickly with a finding, a named skip or a clear error, and
every good file of the run is still reported."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gradlint import inputs
from gradlint.config import Config
from gradlint.discover import compile_pattern, discover
from tests.cli_helpers import write_tree
from tests.conftest import ROOT

GOOD = "import torch\n\ndef f(y):\n    return torch.log(torch.softmax(y, 1))\n"  # one GL302
# A hang guard, not a speed test: each hostile input must end, with a report, well within it.
HANG_GUARD_S = 10


def gradlint(*args: str, cwd: Path, unprivileged: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NO_COLOR", None)
    cmd = [sys.executable, "-m", "gradlint.cli", *args]
    if unprivileged:
        cmd = _drop_file_privileges() + cmd
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)


def _drop_file_privileges() -> list[str]:
    """Root reads everything: run without the capabilities that bypass file permissions."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, "--bounding-set", caps, "--inh-caps", caps]


def reported(proc) -> list[str]:
    return sorted({line.split(":", 1)[0] for line in proc.stdout.splitlines() if ": GL" in line})


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write_tree(tmp_path, {"ok.py": GOOD, "pkg/also_ok.py": GOOD})
    return tmp_path


# --- special files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x.py", "m.onnx"])
def test_a_fifo_in_a_walk_is_a_named_skip(tree, name):
    os.mkfifo(tree / name)
    proc = gradlint("check", "--no-cache", ".", cwd=tree)
    assert proc.returncode == 1, proc.stderr
    assert reported(proc) == ["ok.py", "pkg/also_ok.py"]
    assert f"{name}: skipped: not a regular file (a FIFO)" in proc.stderr


def test_a_fifo_named_on_the_command_line_is_an_error(tree):
    os.mkfifo(tree / "m.onnx")
    proc = gradlint("check", "--no-cache", "m.onnx", "ok.py", cwd=tree)
    assert proc.returncode == 2
    assert "gradlint: error: m.onnx: not a regular file (a FIFO)" in proc.stderr
    assert reported(proc) == ["ok.py"]


def test_a_link_to_dev_zero_is_never_opened(tree):
    (tree / "zero.py").symlink_to("/dev/zero")
    (tree / "zero.onnx").symlink_to("/dev/zero")
    proc = gradlint("check", ".", cwd=tree)
    assert proc.returncode == 1 and reported(proc) == ["ok.py", "pkg/also_ok.py"]
    assert "zero.py: skipped: not a regular file (a character device)" in proc.stderr
    assert "zero.onnx: skipped" in proc.stderr
    named = gradlint("check", "zero.py", "ok.py", cwd=tree)
    assert named.returncode == 2 and "error: zero.py: not a regular file" in named.stderr
    assert reported(named) == ["ok.py"]


def test_discovery_refuses_special_files_without_opening_them(tree, monkeypatch):
    os.mkfifo(tree / "x.py")
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: opened.append(str(p)) or real_open(p, *a, **k))
    monkeypatch.chdir(tree)
    found = discover([Path("."), Path("x.py")], Config(root=str(tree)))
    assert [d for _p, d in found.files] == ["ok.py", "pkg/also_ok.py"]
    assert ("x.py", "not a regular file (a FIFO); it was not opened", False) in found.refused
    assert ("x.py", "not a regular file (a FIFO); it was not opened", True) in found.refused
    assert not any(p.endswith("x.py") for p in opened)


# --- links ----------------------------------------------------------------------------------------


def test_a_symlink_loop_is_a_named_skip(tree):
    (tree / "a.py").symlink_to("b.py")
    (tree / "b.py").symlink_to("a.py")
    (tree / "dangling.py").symlink_to("nowhere.py")
    proc = gradlint("check", "--no-cache", ".", cwd=tree)
    assert proc.returncode == 1 and reported(proc) == ["ok.py", "pkg/also_ok.py"]
    assert "a.py: skipped: symbolic link loop" in proc.stderr
    assert "dangling.py: skipped: broken symbolic link" in proc.stderr
    named = gradlint("check", "--no-cache", "a.py", "dangling.py", "ok.py", cwd=tree)
    assert named.returncode == 2 and reported(named) == ["ok.py"]
    assert "error: a.py: symbolic link loop" in named.stderr
    assert "error: dangling.py: broken symbolic link" in named.stderr


def test_a_linked_file_is_checked_once(tree):
    (tree / "link.py").symlink_to("ok.py")
    proc = gradlint("check", "--no-cache", ".", cwd=tree)
    assert proc.stdout.count("GL302") == 2
    # at the file itself, not at the link that sorts first (--fix then named the link)
    assert "ok.py:" in proc.stdout and "link.py" not in proc.stdout


# --- permissions ----------------------------------------------------------------------------------


def test_an_unreadable_folder_is_an_error_naming_it(tree):
    write_tree(tree, {"sub/bad.py": GOOD})
    (tree / "sub").chmod(0o000)
    try:
        walk = gradlint("check", "--no-cache", ".", cwd=tree, unprivileged=True)
        named = gradlint("check", "--no-cache", "sub/bad.py", "ok.py", cwd=tree, unprivileged=True)
    finally:
        (tree / "sub").chmod(0o755)
    assert walk.returncode == 2 and reported(walk) == ["ok.py", "pkg/also_ok.py"]
    assert "gradlint: error: sub: cannot read folder: Permission denied" in walk.stderr
    assert named.returncode == 2 and reported(named) == ["ok.py"]
    assert "gradlint: error: sub/bad.py: Permission denied" in named.stderr


def test_an_unreadable_file_is_gl001(tree):
    (tree / "secret.py").write_text(GOOD)
    (tree / "secret.py").chmod(0o000)
    try:
        proc = gradlint("check", "--no-cache", ".", cwd=tree, unprivileged=True)
    finally:
        (tree / "secret.py").chmod(0o644)
    assert proc.returncode == 1
    assert "secret.py:1:1: GL001" in proc.stdout and "Permission denied" in proc.stdout
    assert reported(proc) == ["ok.py", "pkg/also_ok.py", "secret.py"]


# --- .gitignore ---------------------------------------------------------------------------------


def test_a_bad_gitignore_line_is_ignored_with_a_warning_naming_it(tree):
    (tree / ".git").mkdir()
    (tree / ".gitignore").write_text("# comment\n[z-a]\nignored_*.py\n[a-\\]\n")
    write_tree(tree, {"ignored_1.py": GOOD})
    proc = gradlint("check", "--no-cache", ".", cwd=tree)
    assert proc.returncode == 1 and reported(proc) == ["ok.py", "pkg/also_ok.py"]
    # (no "at position 10": a place in pathspec's regular expression, not in the 5-character line)
    assert "warning: .gitignore:2: ignoring invalid pattern '[z-a]' (bad character range z-a)\n" in proc.stderr
    assert ".gitignore:4: ignoring invalid pattern" in proc.stderr


def test_a_gitignore_line_of_many_wildcards_is_ignored_with_a_warning(tree):
    """`*a*a*...*b` against a name of forty a's backtracked in pathspec's regular expression for
    ever (git's matcher takes over a minute): discovery never reported a file."""
    (tree / ".git").mkdir()
    (tree / ".gitignore").write_text("*a*a*a*a*a*a*a*a*a*a*a*a*b\nignored_*.py\n**/x/**/y/**\n")
    write_tree(tree, {"a" * 40 + ".py": GOOD, "ignored_1.py": GOOD})
    proc = gradlint("check", "--no-cache", ".", cwd=tree)
    assert reported(proc) == ["a" * 40 + ".py", "ok.py", "pkg/also_ok.py"]
    assert ".gitignore:1: ignoring invalid pattern" in proc.stderr and "wildcards in one path segment" in proc.stderr
    assert ".gitignore:3" not in proc.stderr


def test_gitignore_character_classes(tmp_path):
    (tmp_path / ".git").mkdir()
    write_tree(tmp_path, {
        ".gitignore": "[[:digit:]]*.py\nx[![:alpha:]].py\n[[:upper:][:punct:]]?.py\n",
        "1a.py": "", "a1.py": "", "x1.py": "", "xa.py": "", "Ab.py": "", "_b.py": "", "ab.py": "",
    })
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        found = discover([Path(".")], Config(root=str(tmp_path)))
    finally:
        os.chdir(old)
    assert sorted(d for _p, d in found.files) == ["a1.py", "ab.py", "xa.py"]
    assert found.warnings == []


@pytest.mark.parametrize("line", ["[[:alpha:]]x.py", "[![:digit:]]*", "[[:space:][:xdigit:]]", "[]a]", "[!]a]*",
                                  "\\[literal", "foo/**/bar", "!keep.py", "a[bc]d", "[[:punct:]]x"])
def test_gitignore_patterns_agree_with_git(tmp_path, line):
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    names = ["ax.py", "1x.py", "_x", "x", " ", "f", "]a", "ab", "[literal", "foo/a/b/bar", "foo/bar", "keep.py",
             "abd", "acd", "a]d", "!x", ".x", "Zx.py"]
    subprocess.run([git, "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text(line.lstrip("!") + "\n")
    proc = subprocess.run([git, "check-ignore", "--no-index", "--stdin", "-z"], cwd=tmp_path,
                          input="\0".join(names), capture_output=True, text=True)
    git_says = set(filter(None, proc.stdout.split("\0")))
    pattern = compile_pattern(line.lstrip("!"))
    ours = {n for n in names if pattern.match_file(n) is not None}
    assert ours == git_says, (line, ours ^ git_says)


def test_a_gitignore_that_is_a_fifo_is_never_opened(tree):
    (tree / ".git").mkdir()
    os.mkfifo(tree / ".gitignore")
    proc = gradlint("check", "--no-cache", ".", cwd=tree)
    assert proc.returncode == 1 and reported(proc) == ["ok.py", "pkg/also_ok.py"]
    assert ".gitignore: not read: not a regular file (a FIFO)" in proc.stderr


# --- size -----------------------------------------------------------------------------------------


def test_a_file_over_max_file_size_is_gl001_and_never_read_whole(tree):
    (tree / "pyproject.toml").write_text('[tool.gradlint]\nmax-file-size = "1KB"\n')
    (tree / "big.py").write_text("import torch\n" + "x = 1\n" * 1000)
    with open(tree / "huge.py", "wb") as fh:
        fh.truncate(20 << 30)  # sparse: 20 GiB that would take minutes (and the memory) to read
    proc = gradlint("check", ".", cwd=tree)
    assert proc.returncode == 1
    assert reported(proc) == ["big.py", "huge.py", "ok.py", "pkg/also_ok.py"]
    assert "big.py:1:1: GL001 cannot read file: file is 5.9 KiB, over the limit of 1 KiB (max-file-size)" in proc.stdout
    assert "huge.py:1:1: GL001 cannot read file: file is 20 GiB" in proc.stdout


def test_reading_is_bounded_even_when_the_size_lies(tmp_path, monkeypatch):
    path = tmp_path / "grows.py"
    path.write_bytes(b"x" * 5000)
    real_fstat = os.fstat

    class Small:
        def __init__(self, st):
            self._st = st

        def __getattr__(self, name):
            return 10 if name == "st_size" else getattr(self._st, name)

    monkeypatch.setattr(inputs.os, "fstat", lambda fd: Small(real_fstat(fd)))
    read = []
    real_read = os.read
    monkeypatch.setattr(inputs.os, "read", lambda fd, n: read.append(n) or real_read(fd, n))
    with pytest.raises(inputs.Refused, match="or more, over the limit"):
        inputs.read_bounded(path, 100)
    assert sum(read) <= 101
    assert inputs.read_bounded(path, 5000) == b"x" * 5000


def test_special_inputs_are_refused_by_the_reader_too(tmp_path):
    os.mkfifo(tmp_path / "p.py")
    with pytest.raises(inputs.Refused, match="FIFO"):
        inputs.read_bounded(tmp_path / "p.py", 100)
    with pytest.raises(inputs.Refused, match="character device"):
        inputs.read_bounded("/dev/zero", 100)
    with pytest.raises(inputs.Refused, match="directory"):
        inputs.read_bounded(tmp_path, 100)
