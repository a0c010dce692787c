"""What `--fix` guarantees against hostile text and a busy file system: edits land on their line
whatever line-break characters the file holds (and a bounded fuzz run of generated programs), and
the one writer (gradlint.files) replaces a file only if it still holds what was analysed, under a
lock, through symlinks, keeping owner, group and mode, refusing read-only and hard-linked files,
and never leaving half a file."""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from gradlint import files
from gradlint.api import check_paths
from gradlint.config import Config
from gradlint.fix import apply_edits, apply_fixes
from gradlint.findings import Edit, SourceSpan
from gradlint.suppress import suppressions
from gradlint.text import indentation, line_starts, offset, split_lines
from tests import fix_fuzz
from tests.conftest import FIXTURES, ROOT, run_cli

ODD = fix_fuzz.CHARS  # \v \f \x1c \x1d \x1e \x85 U+2028 U+2029
FIX_DIR = FIXTURES / "training" / "fix"
LOG_SOFTMAX = "import torch\n\ndef f(z):\n    return torch.log(torch.softmax(z, dim=-1))\n"
LOG_SOFTMAX_FIXED = "import torch\n\ndef f(z):\n    return torch.log_softmax(z, dim=-1)\n"


def _check_and_fix(names, *, write=True, select=("GL202", "GL203", "GL302"), config=True):
    cfg = Config(root=os.getcwd(), select=select)
    result = check_paths(list(names), cfg, use_cache=False, jobs=1)
    return result, apply_fixes(result, write=write, config=cfg if config else None)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".gradlint-tmp" in p.name)


# --- lines as the parser counts them -------------------------------------------------------

@pytest.mark.parametrize("ch", ODD, ids=repr)
def test_split_lines_breaks_only_where_the_parser_does(ch):
    text = f"a{ch}b\r\nc\rd\ne{ch}"
    assert split_lines(text) == [f"a{ch}b", "c", "d", f"e{ch}"]
    assert split_lines(text, keepends=True) == [f"a{ch}b\r\n", "c\r", "d\n", f"e{ch}"]
    assert "".join(split_lines(text, keepends=True)) == text
    assert line_starts(text) == [0, 5, 7, 9, 11]


def test_split_lines_agrees_with_splitlines_on_plain_text():
    for text in ("", "a", "a\n", "a\n\nb", "a\r\nb\r", "\n\n"):
        assert split_lines(text) == text.splitlines()
        assert split_lines(text, keepends=True) == text.splitlines(keepends=True)


def test_offsets_outside_the_text_are_refused():
    starts = line_starts("ab\n")
    assert offset(starts, 2, 1) == 3  # the end of the file: an edit may append
    for line, col in ((0, 1), (3, 1), (2, 2), (1, 0)):
        with pytest.raises(ValueError):
            offset(starts, line, col)


def test_indentation_after_a_form_feed():
    assert indentation("\f    x = 1") == "    "
    assert indentation("  \t x") == "  \t "
    assert indentation("x") == ""


@pytest.mark.parametrize("ch", ODD, ids=repr)
def test_an_edit_lands_on_its_line_below_an_odd_character(ch):
    source = f"# page{ch}break\nx = 1\ny = 1\n"
    new = apply_edits(source, [Edit(SourceSpan(2, 5, 2, 6), "2")])
    assert new == f"# page{ch}break\nx = 2\ny = 1\n"


@pytest.mark.parametrize("ch", ODD, ids=repr)
def test_gl202_fix_with_an_odd_character_above_the_loop(tmp_path, monkeypatch, ch):
    """The reproducer: a form feed above the loop moved backward() after the step."""
    monkeypatch.chdir(tmp_path)
    head = f"# {ch} page break\n"
    Path("train.py").write_text(head + (FIX_DIR / "clip_after_step.in.py").read_text())
    _, outcome = _check_and_fix(["train.py"])
    assert outcome.fixed == 1 and not outcome.skipped
    assert Path("train.py").read_text() == head + (FIX_DIR / "clip_after_step.out.py").read_text()


def test_formfeed_reproducer_through_the_cli(tmp_path):
    target = tmp_path / "train.py"
    target.write_text("# \f page break\n" + (ROOT / "examples" / "train.py").read_text())
    expected_dir = tmp_path / "plain"
    expected_dir.mkdir()
    (expected_dir / "train.py").write_text((ROOT / "examples" / "train.py").read_text())
    run_cli("check", "--no-cache", "--fix", "train.py", cwd=expected_dir)
    proc = run_cli("check", "--no-cache", "--fix", "train.py", cwd=tmp_path)
    # one fix: GL202 moves the clip before scaler.step with the unscale_ it then needs
    assert "(1 fixed, 0 remaining)" in proc.stdout, proc.stdout + proc.stderr
    assert target.read_text() == "# \f page break\n" + (expected_dir / "train.py").read_text()
    fixed = target.read_text()
    assert fixed.index("unscale_(optimizer)") < fixed.index("clip_grad_norm_") < fixed.index("scaler.step(optimizer)")
    assert fixed.index(".backward()") < fixed.index("scaler.step(optimizer)")


@pytest.mark.parametrize("ch", ["\f", "\x1c", "\u2028"], ids=repr)
def test_the_noqa_line_above_is_not_rewritten(tmp_path, monkeypatch, ch):
    monkeypatch.chdir(tmp_path)
    text = (f"import torch\n#{ch}\ndef f(z, w):\n"
            "    a = torch.log(torch.softmax(w, dim=-1))  # noqa: GL302 (kept on purpose)\n"
            "    b = torch.log(torch.softmax(z, dim=-1))\n    return a + b\n")
    Path("m.py").write_text(text)
    _, outcome = _check_and_fix(["m.py"])
    assert outcome.fixed == 1
    assert Path("m.py").read_text() == text.replace(
        "b = torch.log(torch.softmax(z, dim=-1))", "b = torch.log_softmax(z, dim=-1)")


@pytest.mark.parametrize("before", ["    a = 1\n", ""], ids=["second", "first"])
@pytest.mark.parametrize("lead", ["\f    ", "\f\f    ", "  \f    "], ids=repr)
def test_columns_on_a_line_indented_after_a_form_feed(tmp_path, monkeypatch, lead, before):
    # libcst loses this form feed (second in a block) or counts columns without it (first in a
    # block): its columns are short on that line
    monkeypatch.chdir(tmp_path)
    text = f"import torch\n\ndef f(z):\n{before}{lead}return torch.log(torch.softmax(z, dim=-1))\n"
    Path("m.py").write_text(text)
    result, outcome = _check_and_fix(["m.py"])
    (finding,) = result.findings
    assert finding.span.column == len(lead) + len("return ") + 1
    assert outcome.fixed == 1
    assert Path("m.py").read_text() == text.replace("torch.log(torch.softmax(z, dim=-1))", "torch.log_softmax(z, dim=-1)")


def test_a_block_whose_first_statement_is_indented_after_a_form_feed(tmp_path, monkeypatch):
    # libcst refuses `\f    x()` first in a block ("no matching outer block for dedent"), CPython
    # does not: the file is parsed with those form feeds left out, and mapped back
    import libcst

    monkeypatch.chdir(tmp_path)
    text = ("import torch\nfrom torch.cuda.amp import GradScaler, autocast\n\nscaler = GradScaler()\n"
            "for x, y in loader:\n\f    optimizer.zero_grad()\n    with autocast():\n        loss = criterion(model(x), y)\n"
            "    scaler.scale(loss).backward()\n    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n"
            "    scaler.step(optimizer)\n    scaler.update()\n")
    with pytest.raises(libcst.ParserSyntaxError):
        libcst.parse_module(text)
    Path("train.py").write_text(text)
    result, outcome = _check_and_fix(["train.py"])
    assert [f.code for f in result.findings] == ["GL203"]
    assert outcome.fixed == 1
    assert Path("train.py").read_text() == text.replace(
        "    torch.nn.utils.clip_grad_norm_", "    scaler.unscale_(optimizer)\n    torch.nn.utils.clip_grad_norm_")


def test_gl203_fix_indents_without_the_form_feed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (FIX_DIR / "amp_clip.in.py").read_text()
    clip = next(line for line in text.split("\n") if "clip_grad_norm_" in line)
    Path("train.py").write_text(text.replace(clip, "\f" + clip))
    _, outcome = _check_and_fix(["train.py"])
    assert outcome.fixed == 1
    expected = (FIX_DIR / "amp_clip.out.py").read_text().replace(clip, "\f" + clip)
    assert Path("train.py").read_text() == expected


@pytest.mark.parametrize("ch", ODD, ids=repr)
def test_suppression_fallback_counts_lines_as_the_parser(ch):
    # an unclosed bracket: tokenize fails and the line scan is used
    table = suppressions(f"# a{ch}b\nx = (  # noqa: GL001\n")
    assert table == {2: frozenset({"GL001"})}


# --- fuzz: generated fixable programs, one odd character inserted ---------------------------

@pytest.mark.parametrize("ch", ODD, ids=repr)
def test_fuzz_every_fix_lands_on_its_own_line(ch):
    """Bounded: three generated programs per character (bench/fuzz.sh runs thousands)."""
    rng = random.Random(f"gradlint-fix-fuzz-{ord(ch)}")
    for _ in range(3):
        verdict = fix_fuzz.trial(rng, char=ch)
        assert verdict.ok, (verdict.why, verdict.sample.kinds, verdict.sample.odd, verdict.expected, verdict.got)
        assert verdict.applied >= 1


def test_fuzz_oracle_catches_a_shifted_edit(monkeypatch):
    # the oracle must fail when edits count lines with str.splitlines(), as gradlint 0.1 did
    import gradlint.fix as fixmod

    def old_line_starts(text):
        starts = [0]
        for line in text.splitlines(keepends=True):
            starts.append(starts[-1] + len(line))
        return starts

    monkeypatch.setattr(fixmod, "line_starts", old_line_starts)
    rng = random.Random(7)
    verdicts = [fix_fuzz.trial(rng, char="\f") for _ in range(6)]
    assert any(not v.ok for v in verdicts)


# --- compare and replace ---------------------------------------------------------------------

def test_a_file_changed_after_the_check_is_checked_again(tmp_path, monkeypatch):
    """The stale-findings reproducer: the user renames z to q while the check runs."""
    monkeypatch.chdir(tmp_path)
    v1 = LOG_SOFTMAX.replace("return", "x = 0\n    return")
    Path("m.py").write_text(v1)
    cfg = Config(root=os.getcwd(), select=("GL302",))
    result = check_paths(["m.py"], cfg, use_cache=False, jobs=1)
    v2 = "# a new first line\n" + v1.replace("z", "q")
    Path("m.py").write_text(v2)
    outcome = apply_fixes(result, write=True, config=cfg)
    assert Path("m.py").read_text() == v2.replace("torch.log(torch.softmax(q, dim=-1))", "torch.log_softmax(q, dim=-1)")
    assert outcome.fixed == 1 and not outcome.skipped


def test_without_a_way_to_check_again_a_changed_file_is_skipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("m.py").write_text(LOG_SOFTMAX)
    cfg = Config(root=os.getcwd(), select=("GL302",))
    result = check_paths(["m.py"], cfg, use_cache=False, jobs=1)
    changed = "# edited\n" + LOG_SOFTMAX
    Path("m.py").write_text(changed)
    outcome = apply_fixes(result, write=True)
    assert Path("m.py").read_text() == changed
    assert outcome.fixed == 0 and outcome.skipped == [("m.py", "it changed since it was checked")]


def test_a_file_changed_while_being_fixed_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("m.py").write_text(LOG_SOFTMAX)
    result, _ = _check_and_fix(["m.py"], write=False)
    real_write = files._write_via_temp

    def edit_meanwhile(real, data, st, before_rename=None):
        # an editor writes in place after the fix was computed, before the rename
        with open("m.py", "a") as fh:
            fh.write("# saved by the editor\n")
        return real_write(real, data, st, before_rename)

    monkeypatch.setattr(files, "_write_via_temp", edit_meanwhile)
    outcome = apply_fixes(result, write=True, config=Config(root=os.getcwd(), select=("GL302",)))
    assert Path("m.py").read_text() == LOG_SOFTMAX + "# saved by the editor\n"
    assert outcome.fixed == 0 and outcome.skipped == [("m.py", "it changed while being fixed")]
    assert _leftovers(tmp_path) == []


def test_a_run_waits_for_another_runs_lock_then_fixes_what_it_finds(tmp_path, monkeypatch):
    """Another run holds the lock and fixes the file: this one then finds nothing left to do."""
    monkeypatch.chdir(tmp_path)
    Path("m.py").write_text(LOG_SOFTMAX)
    cfg = Config(root=os.getcwd(), select=("GL302",))
    result = check_paths(["m.py"], cfg, use_cache=False, jobs=1)
    done = {}
    with files.locked("m.py") as lk:
        worker = threading.Thread(target=lambda: done.setdefault("outcome", apply_fixes(result, write=True, config=cfg)))
        worker.start()
        time.sleep(0.2)  # not a timing assertion: the outcome is the same if the thread is not waiting yet
        files.replace(lk, LOG_SOFTMAX_FIXED.encode(), expected=LOG_SOFTMAX.encode())
    worker.join(timeout=60)
    assert Path("m.py").read_text() == LOG_SOFTMAX_FIXED
    assert done["outcome"].fixed == 0 and not done["outcome"].skipped
    assert done["outcome"].changed == ["m.py"]  # its findings are stale: the CLI reports a fresh run


def test_a_lock_held_too_long_skips_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("m.py").write_text(LOG_SOFTMAX)
    monkeypatch.setattr(files, "LOCK_WAIT_S", 0.2)
    with files.locked("m.py"):
        _, outcome = _check_and_fix(["m.py"], select=("GL302",))
    assert Path("m.py").read_text() == LOG_SOFTMAX
    assert outcome.fixed == 0 and len(outcome.skipped) == 1 and "lock" in outcome.skipped[0][1]


def test_two_concurrent_fix_runs_agree_with_one(tmp_path):
    src = ROOT / "examples" / "train.py"
    (tmp_path / "one").mkdir()
    shutil.copy(src, tmp_path / "one" / "t.py")
    single = run_cli("check", "--no-cache", "--fix", "-q", "t.py", cwd=tmp_path / "one")
    expected = (tmp_path / "one" / "t.py").read_bytes()
    assert expected != src.read_bytes()
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(16):
        shutil.copy(src, tree / f"t{i}.py")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "gradlint.cli", "check", "--no-cache", "--fix", "-q", "-j1", "tree"]
    runs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    wrong = [p.name for p in sorted(tree.iterdir()) if p.read_bytes() != expected]
    assert wrong == []
    # each run reports the tree as it left it, not findings the other run fixed meanwhile
    left = single.stdout.count("t.py:")
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == single.returncode, err
        assert out.count(".py:") == 16 * left, out


# --- what is written, and where --------------------------------------------------------------

def test_a_symlinked_file_is_fixed_through_the_link(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").mkdir()
    Path("real/target.py").write_text(LOG_SOFTMAX)
    os.symlink("../real/target.py", "link/l.py")
    _, outcome = _check_and_fix(["link/l.py"], select=("GL302",))
    assert outcome.fixed == 1
    assert os.path.islink("link/l.py") and os.readlink("link/l.py") == "../real/target.py"
    assert Path("real/target.py").read_text() == LOG_SOFTMAX_FIXED
    assert _leftovers(tmp_path / "real") == [] and _leftovers(tmp_path / "link") == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="changing a file's owner needs root")
def test_owner_group_and_mode_are_kept_when_root_fixes_a_users_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("owned.py").write_text(LOG_SOFTMAX)
    os.chown("owned.py", 65534, 65534)
    os.chmod("owned.py", 0o604)
    _, outcome = _check_and_fix(["owned.py"], select=("GL302",))
    assert outcome.fixed == 1
    st = os.stat("owned.py")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o604)
    assert Path("owned.py").read_text() == LOG_SOFTMAX_FIXED


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_file_whose_owner_cannot_be_kept_is_skipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("owned.py").write_text(LOG_SOFTMAX)
    os.chown("owned.py", 65534, 65534)

    def refuse(fd, uid, gid):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(files.os, "fchown", refuse)
    _, outcome = _check_and_fix(["owned.py"], select=("GL302",))
    assert outcome.fixed == 0 and outcome.skipped == [("owned.py", "a rewrite could not keep its owner and group")]
    assert Path("owned.py").read_text() == LOG_SOFTMAX and _leftovers(tmp_path) == []


def test_mode_bits_decide_read_only_even_for_root(tmp_path):
    target = tmp_path / "ro.py"
    target.write_text("x = 1\n")
    os.chmod(target, 0o444)
    assert not files.writable_by_mode(os.stat(target))
    os.chmod(target, 0o644)
    assert files.writable_by_mode(os.stat(target))


def test_read_only_files_are_skipped_and_named(tmp_path):
    (tmp_path / "ro.py").write_text(LOG_SOFTMAX)
    os.chmod(tmp_path / "ro.py", 0o444)
    (tmp_path / "rw.py").write_text(LOG_SOFTMAX)
    proc = run_cli("check", "--no-cache", "--fix", "--select", "GL302", "ro.py", "rw.py", cwd=tmp_path)
    assert (tmp_path / "ro.py").read_text() == LOG_SOFTMAX
    assert (tmp_path / "rw.py").read_text() == LOG_SOFTMAX_FIXED
    assert "gradlint: warning: ro.py: not fixed: read-only file" in proc.stderr
    assert "(1 fixed, 1 remaining" in proc.stdout  # only what was written counts as fixed
    assert proc.returncode == 1  # the read-only file's finding is still there
    assert "ro.py:4:" in proc.stdout and "rw.py" not in proc.stdout
    # --fix would refuse it again: not "[*] 1 fixable with `gradlint check --fix`"
    assert "fixable" not in proc.stdout and "[*]" not in proc.stdout


def test_diff_still_shows_the_fix_of_a_read_only_file(tmp_path):
    (tmp_path / "ro.py").write_text(LOG_SOFTMAX)
    os.chmod(tmp_path / "ro.py", 0o444)
    proc = run_cli("check", "--no-cache", "--diff", "--select", "GL302", "ro.py", cwd=tmp_path)
    assert proc.returncode == 1 and "+    return torch.log_softmax(z, dim=-1)" in proc.stdout


def test_hard_linked_files_are_skipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("a.py").write_text(LOG_SOFTMAX)
    os.link("a.py", "b.py")
    _, outcome = _check_and_fix(["a.py"], select=("GL302",))
    assert outcome.fixed == 0 and outcome.skipped == [("a.py", "it has 2 hard links (a fix would split them)")]
    assert Path("a.py").read_text() == Path("b.py").read_text() == LOG_SOFTMAX
    assert os.stat("a.py").st_ino == os.stat("b.py").st_ino


@pytest.mark.parametrize("fail_at", ["write", "replace"])
def test_an_interrupted_fix_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, fail_at):
    monkeypatch.chdir(tmp_path)
    Path("m.py").write_text(LOG_SOFTMAX)
    result, _ = _check_and_fix(["m.py"], write=False, select=("GL302",))

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, fail_at, interrupt)
    with pytest.raises(KeyboardInterrupt):
        apply_fixes(result, write=True)
    assert Path("m.py").read_text() == LOG_SOFTMAX
    assert _leftovers(tmp_path) == []


def test_encoding_cookie_and_bytes_outside_the_fix_are_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = "# -*- coding: latin-1 -*-\n# caf\xe9\n" + LOG_SOFTMAX
    Path("m.py").write_bytes(text.encode("latin-1"))
    _, outcome = _check_and_fix(["m.py"], select=("GL302",))
    assert outcome.fixed == 1
    assert Path("m.py").read_bytes() == ("# -*- coding: latin-1 -*-\n# caf\xe9\n" + LOG_SOFTMAX_FIXED).encode("latin-1")


@pytest.mark.parametrize("newline", ["\r", "\r\n"], ids=repr)
def test_a_file_of_cr_or_crlf_keeps_its_line_breaks(tmp_path, monkeypatch, newline):
    monkeypatch.chdir(tmp_path)
    for name in ("amp_clip", "clip_after_step"):
        text = (FIX_DIR / f"{name}.in.py").read_text()
        Path("t.py").write_bytes(text.replace("\n", newline).encode())
        _, outcome = _check_and_fix(["t.py"])
        assert outcome.fixed >= 1
        expected = (FIX_DIR / f"{name}.out.py").read_text().replace("\n", newline)
        assert Path("t.py").read_bytes().decode() == expected


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=repr)
def test_a_file_without_a_final_line_break_keeps_none(tmp_path, monkeypatch, newline):
    # GL202's fix moved the file's last line (the clip, no line break after it) above the step,
    # and the file then ended with the step's line break
    monkeypatch.chdir(tmp_path)
    text = ("import torch\n\n\ndef train(model, opt, loader):\n    for x, y in loader:\n        opt.zero_grad()\n"
            "        model(x).sum().backward()\n        opt.step()\n"
            "        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)").replace("\n", newline)
    Path("t.py").write_bytes(text.encode())
    _, outcome = _check_and_fix(["t.py"])
    assert outcome.fixed == 1
    assert Path("t.py").read_bytes().decode() == (
        "import torch\n\n\ndef train(model, opt, loader):\n    for x, y in loader:\n        opt.zero_grad()\n"
        "        model(x).sum().backward()\n        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n"
        "        opt.step()").replace("\n", newline)


def test_a_special_file_is_refused_before_it_is_opened_for_reading(tmp_path):
    fifo = tmp_path / "f.py"
    os.mkfifo(fifo)
    with pytest.raises(files.Refused, match="not a regular file"):
        with files.locked(fifo):
            pass


def test_reports_are_written_through_symlinks_with_the_usual_mode(tmp_path):
    (tmp_path / "m.py").write_text(LOG_SOFTMAX)
    (tmp_path / "out").mkdir()
    os.symlink("out/report.json", tmp_path / "report.json")
    run_cli("check", "--no-cache", "--format", "json", "-o", "report.json", "m.py", cwd=tmp_path)
    assert os.path.islink(tmp_path / "report.json")
    assert '"GL302"' in (tmp_path / "out" / "report.json").read_text()
    mask = os.umask(0)
    os.umask(mask)
    run_cli("check", "--no-cache", "-o", "new.txt", "m.py", cwd=tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / "new.txt").st_mode) == 0o666 & ~mask
    os.chmod(tmp_path / "new.txt", 0o640)
    run_cli("check", "--no-cache", "-o", "new.txt", "m.py", cwd=tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / "new.txt").st_mode) == 0o640


def test_suppression_comments_of_a_file_of_lone_cr_are_on_their_line():
    assert suppressions("x = 1\ry = 2  # noqa: GL302\r") == {2: frozenset({"GL302"})}


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into any folder")
def test_a_file_in_a_folder_without_write_permission_is_skipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "locked").mkdir()
    Path("locked/m.py").write_text(LOG_SOFTMAX)
    os.chmod("locked", 0o555)
    try:
        _, outcome = _check_and_fix(["locked/m.py"], select=("GL302",))
    finally:
        os.chmod("locked", 0o755)
    assert outcome.fixed == 0 and outcome.skipped == [("locked/m.py", "cannot write it: Permission denied")]
    assert Path("locked/m.py").read_text() == LOG_SOFTMAX


def test_a_failing_write_is_a_named_skip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("m.py").write_text(LOG_SOFTMAX)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)  # what files._write_via_temp calls
    _, outcome = _check_and_fix(["m.py"], select=("GL302",))
    assert outcome.fixed == 0 and outcome.skipped == [("m.py", "cannot write it: No space left on device")]
    assert Path("m.py").read_text() == LOG_SOFTMAX


def test_add_noqa_has_the_same_guarantees(tmp_path):
    (tmp_path / "ro.py").write_text(LOG_SOFTMAX)
    os.chmod(tmp_path / "ro.py", 0o444)
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "t.py").write_text(LOG_SOFTMAX)
    os.symlink("real/t.py", tmp_path / "l.py")
    proc = run_cli("check", "--no-cache", "--add-noqa", "--select", "GL302", "ro.py", "l.py", cwd=tmp_path)
    assert "gradlint: warning: ro.py: no noqa added: read-only file" in proc.stderr, proc.stderr
    assert (tmp_path / "ro.py").read_text() == LOG_SOFTMAX
    assert os.path.islink(tmp_path / "l.py")
    assert "# noqa: GL302" in (tmp_path / "real" / "t.py").read_text()


@pytest.mark.parametrize("page", ["", "#\f\n"], ids=["plain", "form feed"])
@pytest.mark.parametrize("indent", ["\t", "  ", "        "], ids=["tab", "two", "eight"])
def test_fixes_land_on_their_columns_whatever_the_indentation(tmp_path, monkeypatch, indent, page):
    """Positions of a statement were resolved with libcst's default indentation (four spaces):
    in a file indented otherwise every column was off by the difference times the nesting, and
    the fix replaced the wrong characters (`foo(tortorch.log_softmax(z, -1), 1)`,
    `nn.BCEBCEWithLogitsLoss`)."""
    monkeypatch.chdir(tmp_path)
    i1, i2 = indent, indent * 2
    text = (f"import torch\nimport torch.nn as nn\n{page}\n\ndef f(z, ss, foo):\n{i1}if z is not None:\n"
            f"{i2}return foo(torch.log(torch.softmax(z, -1)), 0, 1), torch.sqrt(ss), 12345\n\n\n"
            f"def train(model, x, y):\n{i1}crit = nn.BCELoss()  # loss\n{i1}for _ in range(3):\n"
            f"{i2}loss = crit(torch.sigmoid(model(x)), y)\n{i2}loss.backward()\n")
    Path("m.py").write_text(text)
    cfg = Config(root=os.getcwd(), select=("GL301", "GL302"))
    result = check_paths(["m.py"], cfg, use_cache=False, jobs=1)
    outcome = apply_fixes(result, write=True, unsafe=True, config=cfg)
    gl302 = next(f for f in result.findings if f.code == "GL302")
    assert gl302.span.column == len(i2) + len("return foo(") + 1
    assert outcome.fixed == 2
    assert Path("m.py").read_text() == text.replace(
        "torch.log(torch.softmax(z, -1))", "torch.log_softmax(z, -1)").replace(
        "nn.BCELoss()", "nn.BCEWithLogitsLoss()").replace("crit(torch.sigmoid(model(x)), y)", "crit(model(x), y)")
