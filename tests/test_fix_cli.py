"""`gradlint check --fix` / `--diff`, end to end in a subprocess, and the guarantees of gradlint.fix:
fixtures `*.in.py` -> `*.out.py`, formatting and aliases kept, mode kept, atomic writes, unparseable
fixes dropped and reported, a second --fix changes nothing."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from gradlint import files
from gradlint import fix as fixmod
from gradlint.findings import Edit, FileResult, Finding, Fix, RunResult, Severity, SourceSpan
from tests.conftest import FIXTURES, run_cli

FIX_DIR = FIXTURES / "training" / "fix"
PAIRS = sorted(FIX_DIR.glob("*.in.py"))
SELECT = "GL202,GL203"


def _copy(tmp_path: Path, src: Path, name: str = "train.py") -> Path:
    target = tmp_path / name
    shutil.copyfile(src, target)
    return target


@pytest.mark.parametrize("case", PAIRS, ids=lambda p: p.name.split(".")[0])
def test_fix_fixture(tmp_path, case):
    target = _copy(tmp_path, case)
    expected = case.with_name(case.name.replace(".in.py", ".out.py")).read_text()
    proc = run_cli("check", "--fix", "--no-cache", "--select", SELECT, str(target.name), cwd=tmp_path)
    assert target.read_text() == expected, proc.stdout + proc.stderr
    changed = expected != case.read_text()
    if changed:
        assert " fixed, " in proc.stdout  # the fix summary: "Found N findings (N fixed, M remaining...)"
    # what is left is reported at its new position, from a fresh run
    second = run_cli("check", "--diff", "--no-cache", "--select", SELECT, str(target.name), cwd=tmp_path)
    assert second.returncode == 0 and second.stdout == "", second.stdout + second.stderr


def test_fixture_pairs_exist():
    assert len(PAIRS) >= 3
    for case in PAIRS:
        assert case.with_name(case.name.replace(".in.py", ".out.py")).exists()


def test_fix_twice_changes_nothing_the_second_time(tmp_path):
    target = _copy(tmp_path, FIX_DIR / "move_then_unscale.in.py")
    first = run_cli("check", "--fix", "--no-cache", "--select", SELECT, "train.py", cwd=tmp_path)
    after_first = target.read_bytes()
    mtime = target.stat().st_mtime_ns
    second = run_cli("check", "--fix", "--no-cache", "--select", SELECT, "train.py", cwd=tmp_path)
    assert target.read_bytes() == after_first
    assert target.stat().st_mtime_ns == mtime  # not even rewritten
    assert " fixed, " in first.stdout and "fixed" not in second.stdout
    assert second.returncode == 0, second.stdout


def test_fix_with_no_cache_writes_no_cache(tmp_path):
    # The re-checks between fix rounds (a .py file's and a notebook's) once opened the cache
    # whatever --no-cache said, and left a .gradlint_cache folder in the project.
    target = _copy(tmp_path, FIX_DIR / "clip_after_step.in.py")
    notebook = _copy(tmp_path, FIXTURES / "notebooks" / "model.ipynb", "model.ipynb")
    before = target.read_bytes(), notebook.read_bytes()
    proc = run_cli("check", "--fix", "--unsafe-fixes", "--no-cache", ".", cwd=tmp_path)
    assert (target.read_bytes(), notebook.read_bytes()) != before, proc.stdout + proc.stderr
    assert target.read_bytes() != before[0] and notebook.read_bytes() != before[1], proc.stdout
    assert not (tmp_path / ".gradlint_cache").exists(), proc.stdout + proc.stderr


def test_diff_writes_nothing_and_exits_1(tmp_path):
    target = _copy(tmp_path, FIX_DIR / "amp_clip.in.py")
    before = target.read_bytes()
    proc = run_cli("check", "--diff", "--no-cache", "--select", SELECT, "train.py", cwd=tmp_path)
    assert proc.returncode == 1
    assert target.read_bytes() == before
    assert "+            grad_scaler.unscale_(self.opt)" in proc.stdout
    assert proc.stdout.startswith("--- a/train.py\n+++ b/train.py\n")
    assert not [p for p in tmp_path.iterdir() if p.name != "train.py"]


def test_diff_goes_to_the_output_file_when_one_is_named(tmp_path):
    # `-o` used to be ignored by --diff: the diff went to stdout and no file was made
    target = _copy(tmp_path, FIX_DIR / "amp_clip.in.py")
    before = target.read_bytes()
    proc = run_cli("check", "--diff", "--no-cache", "--select", SELECT, "-o", "fixes.diff", "train.py", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout
    assert (tmp_path / "fixes.diff").read_text().startswith("--- a/train.py\n+++ b/train.py\n")
    assert target.read_bytes() == before


def test_add_noqa_with_fix_or_diff_is_refused_and_writes_nothing(tmp_path):
    # `--add-noqa --diff` wrote the noqa comments, though --diff promises to write nothing
    target = _copy(tmp_path, FIX_DIR / "amp_clip.in.py")
    before = target.read_bytes()
    for flag in ("--diff", "--fix"):
        proc = run_cli("check", "--add-noqa", flag, "--no-cache", "train.py", cwd=tmp_path)
        assert proc.returncode == 2 and "cannot be used with --fix or --diff" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert target.read_bytes() == before


def test_diff_exits_0_without_fixes(tmp_path):
    target = _copy(tmp_path, FIX_DIR / "amp_clip.out.py")
    proc = run_cli("check", "--diff", "--no-cache", "--select", SELECT, "train.py", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == ""
    assert target.read_text() == (FIX_DIR / "amp_clip.out.py").read_text()


def test_fix_keeps_mode_and_replaces_atomically(tmp_path):
    target = _copy(tmp_path, FIX_DIR / "clip_after_step.in.py")
    os.chmod(target, 0o754)
    inode = target.stat().st_ino
    proc = run_cli("check", "--fix", "--no-cache", "--select", SELECT, "train.py", cwd=tmp_path)
    assert "(1 fixed, " in proc.stdout
    st = target.stat()
    assert stat.S_IMODE(st.st_mode) == 0o754
    assert st.st_ino != inode  # a new file renamed over the old one, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.py"]  # no temporary left behind


def test_fix_keeps_crlf_and_bom(tmp_path):
    text = (FIX_DIR / "amp_clip.in.py").read_text().replace("\n", "\r\n")
    target = tmp_path / "train.py"
    target.write_bytes(b"\xef\xbb\xbf" + text.encode())
    run_cli("check", "--fix", "--no-cache", "--select", SELECT, "train.py", cwd=tmp_path)
    data = target.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    assert b"grad_scaler.unscale_(self.opt)\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")
    expected = (FIX_DIR / "amp_clip.out.py").read_text().replace("\n", "\r\n")
    assert data[3:].decode() == expected


def test_write_atomic_leaves_original_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "a.py"
    target.write_text("x = 1\n")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError):
        with files.locked(target) as lk:
            files.replace(lk, b"x = 2\n", expected=lk.read())
    assert target.read_text() == "x = 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.py"]


def _finding(path: str, span: SourceSpan, content: str, code: str = "GL999") -> Finding:
    return Finding(code=code, name="test", message=f"{code} here", severity=Severity.ERROR, path=path, span=span,
                   fix=Fix("test", (Edit(span, content),)))


def test_unparseable_fix_is_dropped_and_reported(tmp_path, monkeypatch):
    target = tmp_path / "m.py"
    target.write_text("a = 1\nb = 2\n")
    monkeypatch.chdir(tmp_path)
    good = _finding("m.py", SourceSpan(1, 5, 1, 6), "10", "GL998")
    bad = _finding("m.py", SourceSpan(2, 1, 2, 1), "def (:\n", "GL999")
    outcome = fixmod.apply_fixes(RunResult([FileResult("m.py", (good, bad))]), write=True)
    assert target.read_text() == "a = 10\nb = 2\n"
    assert any("GL999" in p and "would not parse" in p for p in outcome.problems), outcome.problems
    assert outcome.fixed == 1


def test_overlapping_fixes_wait_for_the_next_round():
    src = "a = 1\n"
    one = _finding("m.py", SourceSpan(1, 5, 1, 6), "2", "GL001")
    two = _finding("m.py", SourceSpan(1, 5, 1, 6), "3", "GL002")
    new, applied, skipped = fixmod.fix_source(src, [one, two])
    assert new == "a = 2\n" and applied == [one] and skipped == [two]


def test_unsafe_fixes_need_the_flag():
    src = "a = 1\n"
    f = _finding("m.py", SourceSpan(1, 5, 1, 6), "2")
    unsafe = Finding(**{**f.__dict__, "fix": Fix("t", f.fix.edits, safe=False)})
    assert fixmod.fix_text(src, [unsafe])[0] == src
    assert fixmod.fix_text(src, [unsafe], unsafe=True)[0] == "a = 2\n"


def test_fixes_that_never_settle_stop_and_say_so():
    # a rule whose fix always produces another fix: the rounds must end
    counter = {"n": 0}

    def recheck(text):
        counter["n"] += 1
        return [_finding("m.py", SourceSpan(1, 1, 1, 1), "#\n")]

    new, applied, problems = fixmod.fix_text("a = 1\n", recheck("a = 1\n"), recheck=recheck)
    assert applied == fixmod.MAX_ROUNDS
    assert any("did not settle" in p for p in problems)


def test_a_fix_dropped_because_it_would_not_parse_is_not_called_fixable_after_fix(tmp_path, monkeypatch):
    """`--fix` said "fix dropped: the fixed file would not parse" and then "[*] 1 fixable with
    `gradlint check --fix`" for the same finding."""
    from gradlint.findings import Edit, Fix, SourceSpan
    from gradlint.rules.numerics import gl302_log_of_probability as gl302

    real = gl302.LogOfProbability.fix

    def broken(self, site, facts):
        got = real(self, site, facts)
        return None if got is None else Fix(got.title, (Edit(site.span, "torch.log_softmax(("),), safe=True)

    monkeypatch.setattr(gl302.LogOfProbability, "fix", broken)
    (tmp_path / "m.py").write_text("import torch\n\n\ndef f(z):\n    return torch.log(torch.softmax(z, -1))\n")
    monkeypatch.chdir(tmp_path)
    from click.testing import CliRunner

    from gradlint.cli import main

    out = CliRunner().invoke(main, ["check", "--no-cache", "-j", "1", "--fix", "m.py"])
    assert "fix dropped: the fixed file would not parse" in out.output
    assert "fixable" not in out.output and "GL302" in out.output


def test_stdin_fix_writes_the_report_to_the_output_file(tmp_path, monkeypatch):
    """`--stdin-filename X --fix -o out.txt`: the fixed source on stdout, the report of what is
    left in out.txt (-o was ignored: no file was written)."""
    from click.testing import CliRunner

    from gradlint.cli import main

    monkeypatch.chdir(tmp_path)
    source = "import torch\n\n\ndef f(z, buf):\n    z = torch.nn.Parameter(z)\n    return torch.log(torch.softmax(z, -1), out=buf)\n"
    out = CliRunner().invoke(main, ["check", "--no-cache", "--stdin-filename", "m.py", "--fix", "-o", "out.txt", "-"],
                             input=source)
    assert out.stdout == source
    assert "GL302" in (tmp_path / "out.txt").read_text()
