"""The command line end to end, in subprocesses: exit codes, flags, errors, the info commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import BROKEN, GOOD, assert_one_line_error, finding_lines, gradlint, write_tree
from tests.conftest import ROOT


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_tree(tmp_path, {"bad.py": BROKEN, "good.py": GOOD})


# --- exit codes -------------------------------------------------------------------------------

def test_clean_folder_exits_0(tmp_path):
    write_tree(tmp_path, {"good.py": GOOD, "pkg/other.py": GOOD})
    proc = gradlint("check", ".", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "All checks passed (2 files checked).\n"
    assert proc.stderr == ""


def test_module_entry_reports_syntax_error_and_checks_the_other_file(project):
    # `python -m gradlint.cli check` exactly as the issue states it.
    proc = gradlint("check", ".", cwd=project)
    assert proc.returncode == 1, proc.stderr
    assert finding_lines(proc.stdout) == ["bad.py:3:21: GL001 syntax error: expected ':'"]
    assert proc.stdout.splitlines()[-1] == "Found 1 finding (1 error) in 1 of 2 files."


def test_python_dash_m_gradlint_runs_the_command(project):
    # `python -m gradlint` as ruff and pytest allow, named `gradlint` in usage lines.
    proc = subprocess.run([sys.executable, "-m", "gradlint", "check", "."], cwd=project, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "bad.py:3:21: GL001" in proc.stdout
    usage = subprocess.run([sys.executable, "-m", "gradlint", "check", "--help"], capture_output=True, text=True,
                           timeout=120)
    assert usage.stdout.startswith("Usage: gradlint check"), usage.stdout[:80]


def test_default_path_is_the_current_folder(project):
    proc = gradlint("check", cwd=project)
    assert proc.returncode == 1
    assert "bad.py:3:21: GL001" in proc.stdout


def test_exit_zero_keeps_findings_but_exits_0(project):
    proc = gradlint("check", "--exit-zero", ".", cwd=project)
    assert proc.returncode == 0
    assert "GL001" in proc.stdout


def test_exit_zero_does_not_hide_errors(project):
    proc = gradlint("check", "--exit-zero", ".", "missing.py", cwd=project)
    assert proc.returncode == 2


@pytest.mark.parametrize("fail_on,marks,expected", [
    ("info", ["info"], 1),
    ("warning", ["info"], 0),
    ("warning", ["warning"], 1),
    ("error", ["info", "warning"], 0),
    ("error", ["error"], 1),
    (None, ["info"], 1),  # the default is info: any finding fails the run, like ruff
])
def test_fail_on_sets_the_lowest_failing_severity(tmp_path, fail_on, marks, expected):
    write_tree(tmp_path, {"m.py": "".join(f"x{i} = 1  # mark: {m}\n" for i, m in enumerate(marks))})
    args = ["check", "."] + (["--fail-on", fail_on] if fail_on else [])
    proc = gradlint(*args, cwd=tmp_path, plugin=True)
    assert proc.returncode == expected, (proc.stdout, proc.stderr)
    # Findings below the threshold are still reported; only the exit code changes.
    assert len(finding_lines(proc.stdout)) == len(marks)


def test_fail_on_from_pyproject(tmp_path):
    write_tree(tmp_path, {"m.py": "x = 1  # mark: warning\n", "pyproject.toml": '[tool.gradlint]\nfail-on = "error"\n'})
    assert gradlint("check", ".", cwd=tmp_path, plugin=True).returncode == 0
    assert gradlint("check", ".", "--fail-on", "warning", cwd=tmp_path, plugin=True).returncode == 1


def test_crash_of_a_rule_is_exit_2_and_other_files_are_still_checked(tmp_path):
    write_tree(tmp_path, {"a.py": "x = 1  # mark: crash\n", "b.py": BROKEN})
    proc = gradlint("check", ".", cwd=tmp_path, plugin=True)
    assert proc.returncode == 2
    assert "b.py:3:21: GL001" in proc.stdout
    assert "internal error while checking a.py" in proc.stderr
    assert "test-marker was asked to crash" in proc.stderr


def test_fail_on_rejects_unknown_severity(project):
    proc = gradlint("check", "--fail-on", "fatal", ".", cwd=project)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "fatal" in proc.stderr


# --- output formats and --output-file ---------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "sarif", "github"])
def test_machine_formats_print_only_their_payload(project, fmt):
    proc = gradlint("check", "--format", fmt, ".", cwd=project)
    assert proc.returncode == 1
    assert proc.stderr == ""
    assert "Found" not in proc.stdout and "All checks passed" not in proc.stdout
    if fmt == "github":
        lines = proc.stdout.splitlines()
        assert lines == ["::error file=bad.py,line=3,col=21,endLine=3,endColumn=21,title=GL001 (syntax-error)::syntax error: expected ':'"]
    else:
        data = json.loads(proc.stdout)  # the whole of stdout is one JSON document
        assert data


@pytest.mark.parametrize("fmt,empty", [("json", []), ("github", None), ("sarif", None)])
def test_machine_formats_with_no_findings(tmp_path, fmt, empty):
    write_tree(tmp_path, {"good.py": GOOD})
    proc = gradlint("check", "--format", fmt, ".", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    if fmt == "json":
        assert json.loads(proc.stdout) == []
    elif fmt == "github":
        assert proc.stdout == ""
    else:
        assert json.loads(proc.stdout)["runs"][0]["results"] == []


def test_machine_format_keeps_stdout_parseable_when_a_path_is_missing(project):
    proc = gradlint("check", "--format", "json", ".", "nope.py", cwd=project)
    assert proc.returncode == 2
    assert [f["code"] for f in json.loads(proc.stdout)] == ["GL001"]
    assert "nope.py: no such file or directory" in proc.stderr


def test_text_output_has_no_colour_when_not_a_tty(project):
    proc = gradlint("check", ".", cwd=project)
    assert "\x1b[" not in proc.stdout


def test_quiet_prints_findings_only(project):
    proc = gradlint("check", "--quiet", ".", cwd=project)
    assert proc.stdout == "bad.py:3:21: GL001 syntax error: expected ':'\n"


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github"])
def test_output_file_receives_the_report_and_stdout_stays_empty(project, fmt):
    direct = gradlint("check", "--format", fmt, ".", cwd=project)
    (project / "out").mkdir()
    proc = gradlint("check", "--format", fmt, "-o", "out/report.txt", ".", cwd=project)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert (project / "out" / "report.txt").read_text(encoding="utf-8") == direct.stdout
    # Written through a temporary file and a rename: nothing else is left in the folder.
    assert sorted(p.name for p in (project / "out").iterdir()) == ["report.txt"]


def test_output_file_that_cannot_be_written_is_exit_2_without_traceback(project):
    proc = gradlint("check", "-o", "no/such/dir/report.json", ".", cwd=project)
    line = assert_one_line_error(proc, "no/such/dir/report.json", "cannot write the report there: no folder")
    assert line.startswith("gradlint: error:")
    assert proc.stdout == ""


def test_output_file_is_refused_before_the_run(project, monkeypatch):
    # The report was computed, then lost; and `-o bad.py` replaced a checked file with its report.
    calls = []
    import gradlint.projects as runs
    from gradlint.cli import main

    monkeypatch.chdir(project)
    monkeypatch.setattr(runs, "check", lambda *a, **k: calls.append(a))
    before = (project / "bad.py").read_bytes()
    for target, why in (("no/such/dir/r.json", "no folder"), ("bad.py", "which the run checks"),
                        (".", "is a folder")):
        with pytest.raises(SystemExit) as exc:
            main(["check", "-o", target, "."])
        assert exc.value.code == 2
    assert calls == [] and (project / "bad.py").read_bytes() == before
    proc = gradlint("check", "-o", "", ".", cwd=project)
    assert_one_line_error(proc, "--output-file", "an empty path")


def test_output_file_may_be_a_device_or_this_process_s_stdout(project):
    # ruff accepts both; `-o /dev/stdout` with stdout redirected to a file renamed a new file over
    # the shell's redirect target (what the shell wrote after it was lost)
    assert gradlint("check", "-o", os.devnull, ".", cwd=project).returncode == 1
    out = project / "out.txt"
    with open(out, "wb") as sink:
        proc = subprocess.run([sys.executable, "-m", "gradlint.cli", "check", "-o", "/dev/stdout", "bad.py"],
                              cwd=project, stdout=sink, stderr=subprocess.PIPE, timeout=120)
        sink.write(b"after\n")
    assert proc.returncode == 1, proc.stderr
    assert out.read_text().startswith("bad.py:3:21: GL001") and out.read_text().endswith("after\n")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_output_file_a_named_pipe_nobody_reads_is_refused_before_the_run(project, monkeypatch):
    # the whole run was done, then "cannot write report: a named pipe nobody reads"
    calls = []
    import gradlint.projects as runs
    from gradlint.cli import main

    os.mkfifo(project / "report.fifo")
    monkeypatch.chdir(project)
    monkeypatch.setattr(runs, "check", lambda *a, **k: calls.append(a))
    with pytest.raises(SystemExit) as exc:
        main(["check", "-o", "report.fifo", "."])
    assert exc.value.code == 2 and calls == []
    proc = gradlint("check", "-o", "report.fifo", ".", cwd=project)
    assert_one_line_error(proc, "report.fifo: cannot write the report there: a named pipe nobody reads")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_output_file_a_named_pipe_is_held_open_from_the_check_to_the_report(project):
    # its reader must not see an end of file while the run works (`cat` would leave, and the
    # report find nobody), and gets the whole report
    from gradlint.report import destination

    fifo = project / "report.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        destination.check(fifo)
        with pytest.raises(BlockingIOError):
            os.read(reader, 10)  # a writer is there, nothing written yet (b"" would be an end of file)
        destination.write(fifo, b"the report\n")
        assert os.read(reader, 100) == b"the report\n" and os.read(reader, 100) == b""
        proc = gradlint("check", "-o", str(fifo), "bad.py", cwd=project)
        assert proc.returncode == 1, proc.stderr
        assert os.read(reader, 4096).decode().startswith("bad.py:3:21: GL001")
    finally:
        os.close(reader)


@pytest.mark.skipif(not hasattr(os, "fork") or not hasattr(os, "mkfifo"), reason="no fork or named pipes here")
def test_output_file_a_named_pipe_is_not_held_by_a_forked_process(project):
    # the probe's child and the pool's workers are forked after the check: holding the pipe too,
    # one that outlived the report kept its reader waiting for an end of file
    import signal

    from gradlint.report import destination

    fifo = project / "report.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    destination.check(fifo)
    ready, started = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child says it runs, then waits to be killed
        import time

        os.write(started, b"x")
        time.sleep(60)
        os._exit(0)
    os.close(started)
    try:
        assert os.read(ready, 1) == b"x"
        destination.write(fifo, b"the report\n")
        assert os.read(reader, 100) == b"the report\n"
        assert os.read(reader, 100) == b""  # the end of file, with the forked process still there
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(reader)
        os.close(ready)


def test_a_named_file_click_thinks_unreadable_is_checked_by_gradlint(project, monkeypatch, capsys):
    # click refused the whole run ("Path 'a.py' is not readable") and b.py was never checked;
    # gradlint reads each file itself and says what it cannot read, the others still checked
    from gradlint.cli import main

    monkeypatch.chdir(project)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p).endswith("good.py") else real(p, mode, **k))
    with pytest.raises(SystemExit) as exc:
        main(["check", "good.py", "bad.py"])
    assert exc.value.code == 1
    assert "bad.py:3:21: GL001" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["json", "sarif", "text"])
def test_a_file_name_that_is_not_utf8_goes_into_a_report_file(tmp_path, fmt):
    # JSON and SARIF with -o were an internal error (surrogates not allowed) where stdout worked
    with open(os.fsencode(tmp_path) + b"/m\xff.py", "wb") as out:
        out.write(b"def f(:\n    pass\n")
    proc = gradlint("check", "--no-cache", "--format", fmt, "-o", "report", ".", cwd=tmp_path)
    assert proc.returncode == 1 and "internal error" not in proc.stderr, proc.stderr
    text = (tmp_path / "report").read_text(encoding="utf-8")
    if fmt == "json":
        assert json.loads(text)[0]["filename"].endswith("m\udcff.py")
    elif fmt == "sarif":
        assert "m%FF.py" in text
    else:
        assert "GL001" in text


def test_output_file_replaces_an_existing_report(project):
    target = project / "report.json"
    target.write_text("old")
    proc = gradlint("check", "--format", "json", "-o", str(target), ".", cwd=project)
    assert proc.returncode == 1
    assert json.loads(target.read_text())[0]["code"] == "GL001"


# --- selection --------------------------------------------------------------------------------

MARKED = {"m.py": "a = 1  # mark: warning\n", "bad.py": BROKEN}


def test_select_limits_rules_but_gl0xx_stay_on(tmp_path):
    write_tree(tmp_path, MARKED)
    proc = gradlint("check", "--select", "GL990", ".", cwd=tmp_path, plugin=True)
    assert sorted(line.split()[1] for line in finding_lines(proc.stdout)) == ["GL001", "GL990"]
    proc = gradlint("check", "--select", "GL001", ".", cwd=tmp_path, plugin=True)
    assert [line.split()[1] for line in finding_lines(proc.stdout)] == ["GL001"]


def test_ignore_and_extend_select(tmp_path):
    write_tree(tmp_path, {**MARKED, "pyproject.toml": '[tool.gradlint]\nselect = ["GL001"]\n'})
    proc = gradlint("check", ".", cwd=tmp_path, plugin=True)
    assert "GL990" not in proc.stdout
    proc = gradlint("check", "--extend-select", "GL990", ".", cwd=tmp_path, plugin=True)
    assert "m.py:1:1: GL990 marked warning" in proc.stdout
    proc = gradlint("check", "--extend-select", "GL990", "--ignore", "GL990", ".", cwd=tmp_path, plugin=True)
    assert "GL990" not in proc.stdout
    # As in ruff, the more specific selector wins: GL990 beats an ignored GL9.
    proc = gradlint("check", "--extend-select", "GL990", "--ignore", "GL9", ".", cwd=tmp_path, plugin=True)
    assert "GL990" in proc.stdout


def test_selectors_accept_commas_and_lowercase(tmp_path):
    write_tree(tmp_path, MARKED)
    proc = gradlint("check", "--select", "gl001,gl990", ".", cwd=tmp_path, plugin=True)
    assert "GL990" in proc.stdout


@pytest.mark.parametrize("flag", ["--select", "--ignore", "--extend-select"])
@pytest.mark.parametrize("value", ["GL999", "E501", "GL1234"])
def test_unknown_code_on_the_command_line_is_a_one_line_error(project, flag, value):
    proc = gradlint("check", flag, value, ".", cwd=project)
    assert_one_line_error(proc, flag, value)


# --- configuration errors ---------------------------------------------------------------------

def test_missing_config_file_is_exit_2(project):
    proc = gradlint("check", "--config", "nope.toml", ".", cwd=project)
    assert_one_line_error(proc, "nope.toml", "not found")


@pytest.mark.parametrize("table,needle", [
    ('[tool.gradlint]\nfrobnicate = 1\n', "'frobnicate'"),
    ('[tool.gradlint]\nselect = "GL1"\n', "'select'"),
    ('[tool.gradlint]\nselect = ["GL1234"]\n', "'select'"),
    ('[tool.gradlint]\nignore = [1]\n', "'ignore'"),
    ('[tool.gradlint]\nfail-on = "fatal"\n', "'fail-on'"),
    ('[tool.gradlint]\nrespect-gitignore = "yes"\n', "'respect-gitignore'"),
    ('[tool.gradlint]\nper-file-ignores = ["a"]\n', "'per-file-ignores'"),
    ('[tool.gradlint.per-file-ignores]\n"tests/*" = ["NOPE"]\n', "per-file-ignores.tests/*"),
    ('[tool.gradlint.GL001]\nfoo = 1\n', "'GL001.foo'"),
    ('[tool.gradlint.syntax-error]\nfoo = 1\n', "'syntax-error.foo'"),
    ('[tool.gradlint\nselect = [\n', "invalid TOML"),
])
def test_bad_pyproject_is_a_one_line_error_naming_file_and_key(project, table, needle):
    (project / "pyproject.toml").write_text(table)
    proc = gradlint("check", ".", cwd=project)
    assert_one_line_error(proc, "pyproject.toml", needle)
    assert proc.stdout == ""


@pytest.mark.parametrize("table,needle", [
    ('[tool.gradlint.GL990]\nlimit = "x"\n', "'GL990.limit'"),
    ('[tool.gradlint.GL990]\nlimit = 0\n', "'GL990.limit'"),
    ('[tool.gradlint.GL990]\nlimits = 3\n', "'GL990.limits'"),
])
def test_bad_rule_option_is_a_one_line_error(tmp_path, table, needle):
    write_tree(tmp_path, {"m.py": "a = 1  # mark: info\n", "pyproject.toml": table})
    proc = gradlint("check", ".", cwd=tmp_path, plugin=True)
    assert_one_line_error(proc, "pyproject.toml", needle)


def test_rule_option_reaches_the_rule(tmp_path):
    write_tree(tmp_path, {"m.py": "a = 1  # mark: info\nb = 2  # mark: info\nc = 3  # mark: info\n",
                          "pyproject.toml": "[tool.gradlint.test-marker]\nlimit = 2\n"})
    proc = gradlint("check", ".", cwd=tmp_path, plugin=True)
    assert len(finding_lines(proc.stdout)) == 2


def test_explicit_config_file_is_used(tmp_path):
    write_tree(tmp_path, {"bad.py": BROKEN, "conf/gradlint.toml": 'per-file-ignores = { "bad.py" = ["GL001"] }\n'})
    assert gradlint("check", ".", cwd=tmp_path).returncode == 1
    proc = gradlint("check", "--config", "conf/gradlint.toml", ".", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- paths ------------------------------------------------------------------------------------

def test_missing_path_is_exit_2_and_the_other_files_are_still_checked(project):
    proc = gradlint("check", "bad.py", "does-not-exist.py", "good.py", cwd=project)
    assert proc.returncode == 2
    assert "bad.py:3:21: GL001" in proc.stdout
    assert "gradlint: error: does-not-exist.py: no such file or directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_onnx_file_does_not_crash_the_run(tmp_path):
    # Garbage bytes: until the ONNX front-end lands the file is reported as skipped; after, as
    # GL002. Either way it is named, it never crashes the run, and the .py file is checked.
    write_tree(tmp_path, {"model.onnx": b"\x89PNG\r\n\x1a\n not a model", "bad.py": BROKEN})
    proc = gradlint("check", ".", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "bad.py:3:21: GL001" in proc.stdout
    assert "model.onnx" in proc.stdout + proc.stderr


def test_file_with_coding_cookie_decodes(tmp_path):
    source = "# -*- coding: latin-1 -*-\nimport torch\nname = 'caf\xe9'\n"
    write_tree(tmp_path, {"latin.py": source.encode("latin-1")})
    proc = gradlint("check", "latin.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_syntax_error_position_in_a_latin1_file(tmp_path):
    source = "# -*- coding: latin-1 -*-\nimport torch\nname = 'caf\xe9'\ndef f(x)\n    return x\n"
    write_tree(tmp_path, {"latin.py": source.encode("latin-1")})
    proc = gradlint("check", "latin.py", cwd=tmp_path)
    assert finding_lines(proc.stdout) == ["latin.py:4:9: GL001 syntax error: expected ':'"]


def test_undecodable_bytes_are_gl001(tmp_path):
    write_tree(tmp_path, {"bin.py": b"import torch\nx = '\xff\xfe'\n", "good.py": GOOD})
    proc = gradlint("check", ".", cwd=tmp_path)
    assert proc.returncode == 1
    lines = finding_lines(proc.stdout)
    # at the first byte that does not decode (it was 1:1 with a byte offset in the message)
    assert lines == ["bin.py:2:6: GL001 cannot decode file: byte 0xff is not valid utf-8 (invalid start byte); "
                     "save the file as UTF-8 or declare its encoding (`# -*- coding: latin-1 -*-`)"]


def test_an_undecodable_byte_is_reported_at_its_line_and_column(tmp_path):
    from gradlint.api import check_text
    from gradlint.config import Config

    late = "import torch\n\n\n\nx = \"caf\u00e9 caf".encode() + b"\xe9\"\n"
    write_tree(tmp_path, {"late.py": late, "cookie.py": b"# -*- coding: klingon -*-\nimport torch\n"})
    lines = finding_lines(gradlint("check", ".", cwd=tmp_path).stdout)
    assert lines[0] == "cookie.py:1:1: GL001 cannot decode file: unknown encoding: klingon"
    # the column counts characters: the UTF-8 e-acute before the bad byte is one
    assert lines[1].startswith("late.py:5:14: GL001 cannot decode file: byte 0xe9 is not valid utf-8")
    # read from stdin (an editor's buffer), the same place
    (finding,) = check_text("late.py", late, Config(root=str(tmp_path)), use_cache=False).findings
    assert (finding.code, finding.span.line, finding.span.column) == ("GL001", 5, 14)


# --- suppression and per-file ignores ---------------------------------------------------------

@pytest.mark.parametrize("comment,suppressed", [
    ("# noqa", True),
    ("# noqa: GL001", True),
    ("# NOQA:GL001,GL990", True),
    ("# gradlint: ignore[GL001]", True),
    ("# gradlint: ignore", True),
    ("# noqa: E501", False),
    ("# noqa: GL002", False),
    ("# gradlint: ignore[GL101]", False),
    ("# a comment that mentions noqa-ish things", False),
])
def test_suppression_comment_on_the_finding_line(tmp_path, comment, suppressed):
    write_tree(tmp_path, {"bad.py": f"import torch\n\ndef forward(self, x)  {comment}\n    return x\n"})
    proc = gradlint("check", ".", cwd=tmp_path)
    assert proc.returncode == (0 if suppressed else 1), proc.stdout
    assert ("GL001" in proc.stdout) is not suppressed


def test_noqa_in_a_string_does_not_suppress(tmp_path):
    write_tree(tmp_path, {"m.py": 'a = "# noqa"  # mark: info\n'})
    proc = gradlint("check", ".", cwd=tmp_path, plugin=True)
    assert "GL990" in proc.stdout


def test_per_file_ignores(tmp_path):
    write_tree(tmp_path, {
        "legacy/old.py": BROKEN, "legacy/sub/older.py": BROKEN, "src/new.py": BROKEN, "gen_x.py": BROKEN,
        "pyproject.toml": '[tool.gradlint.per-file-ignores]\n"legacy/*" = ["GL001"]\n"gen_*.py" = ["GL0"]\n',
    })
    proc = gradlint("check", ".", cwd=tmp_path)
    assert [line.split(":")[0] for line in finding_lines(proc.stdout)] == ["src/new.py"]


# --- discovery through the CLI ----------------------------------------------------------------

def test_gitignore_and_excludes_through_the_cli(tmp_path):
    write_tree(tmp_path, {
        ".gitignore": "ignored/\n", "ignored/a.py": BROKEN, ".venv/lib/b.py": BROKEN,
        "gen/c.py": BROKEN, "src/d.py": BROKEN,
        "pyproject.toml": '[tool.gradlint]\nextend-exclude = ["gen"]\n',
    })
    (tmp_path / ".git").mkdir()
    proc = gradlint("check", ".", cwd=tmp_path)
    assert [line.split(":")[0] for line in finding_lines(proc.stdout)] == ["src/d.py"]
    # A file named on the command line is checked even in a default-excluded or ignored folder.
    proc = gradlint("check", ".venv/lib/b.py", "ignored/a.py", cwd=tmp_path)
    assert sorted(line.split(":")[0] for line in finding_lines(proc.stdout)) == [".venv/lib/b.py", "ignored/a.py"]


# --- rule, rules, config, help ----------------------------------------------------------------

@pytest.mark.parametrize("ref", ["GL001", "gl001", "syntax-error"])
def test_rule_prints_the_rule_page(tmp_path, ref):
    proc = gradlint("rule", ref, cwd=tmp_path)
    assert proc.returncode == 0
    from gradlint.docs import render_page
    from gradlint.registry import get_rule

    assert proc.stdout == render_page(get_rule("GL001"))
    assert proc.stdout.startswith("# GL001 syntax-error\n")
    assert "## What it does" in proc.stdout and "always on" in proc.stdout


def test_rule_shows_options_with_defaults(tmp_path):
    proc = gradlint("rule", "GL990", cwd=tmp_path, plugin=True)
    assert "| `limit` | `100` |" in proc.stdout


def test_unknown_rule_is_exit_2(tmp_path):
    assert_one_line_error(gradlint("rule", "GL999", cwd=tmp_path), "GL999")
    assert_one_line_error(gradlint("rule", "no-such-rule", cwd=tmp_path), "no-such-rule")


def test_rules_table(tmp_path):
    proc = gradlint("rules", cwd=tmp_path)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:5] == ["code", "name", "severity", "default", "fix"]
    row = next(line for line in lines if line.startswith("GL001"))
    # (it said "on", where the README's table and `gradlint rule GL001` say always)
    assert row.split()[:4] == ["GL001", "syntax-error", "error", "always"]
    assert next(line for line in lines if line.startswith("GL101")).split()[3] == "on"
    assert next(line for line in lines if line.startswith("GL306")).split()[3] == "off"


def test_rules_json(tmp_path):
    proc = gradlint("rules", "--format", "json", cwd=tmp_path)
    data = json.loads(proc.stdout)
    gl001 = next(r for r in data if r["code"] == "GL001")
    assert gl001 == {"code": "GL001", "name": "syntax-error", "severity": "error", "default": True,
                     "fixable": False, "probe_only": False, "summary": gl001["summary"],
                     "url": "https://gradlint.dev/rules/syntax-error"}
    assert [r["code"] for r in data] == sorted(r["code"] for r in data)


def test_config_shows_where_each_value_came_from(tmp_path):
    write_tree(tmp_path, {"pyproject.toml": '[tool.gradlint]\nignore = ["GL990"]\nfail-on = "warning"\n\n'
                                            '[tool.gradlint.GL990]\nlimit = 7\n'})
    proc = gradlint("config", "--select", "GL0,GL9", cwd=tmp_path, plugin=True)
    assert proc.returncode == 0, proc.stderr
    pyproject = str((tmp_path / "pyproject.toml").resolve())
    lines = proc.stdout.splitlines()
    assert lines[0] == f"# configuration file: {pyproject}"
    assert 'select = ["GL0", "GL9"]  # --select' in lines
    assert f'ignore = ["GL990"]  # {pyproject}' in lines
    assert f'fail-on = "warning"  # {pyproject}' in lines
    assert 'respect-gitignore = true  # default' in lines
    assert f"limit = 7  # {pyproject}" in lines


def test_config_without_pyproject_is_all_defaults(tmp_path):
    proc = gradlint("config", cwd=tmp_path)
    assert proc.stdout.splitlines()[0] == "# configuration file: none found (defaults)"
    assert all(line.endswith("# default") for line in proc.stdout.splitlines()[1:] if "=" in line)


def test_config_command_reports_bad_config(tmp_path):
    write_tree(tmp_path, {"pyproject.toml": '[tool.gradlint]\nselectt = ["GL1"]\n'})
    assert_one_line_error(gradlint("config", cwd=tmp_path), "'selectt'")


@pytest.mark.parametrize("command,options", [
    ([], ["check", "rule", "rules", "config", "Exit codes"]),
    (["check"], ["--select", "--extend-select", "--ignore", "--format", "--output-file", "--exit-zero",
                 "--fail-on", "--config", "--quiet", "--no-cache", "text|concise|full|json|sarif|github", "--statistics", "--stdin-filename", "--add-noqa", "--show-fixes", "--exclude", "--output-format"]),
    (["rule"], ["CODE", "vanishing-gradient"]),
    (["rules"], ["--format", "json"]),
    (["config"], ["--config", "--select", "where each value came from"]),
])
def test_help_explains_every_option(tmp_path, command, options):
    proc = gradlint(*command, "--help", cwd=tmp_path)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for opt in options:
        assert opt in text, (opt, proc.stdout)
    # Every option line carries an explanation, not just its name.
    import re

    for m in re.finditer(r"^\s+(-[-\w]+(?:, --[\w-]+)?)(.*)$", proc.stdout, re.M):
        name, rest = m.group(1), m.group(2)
        following = proc.stdout[m.end():].split("\n", 1)[1] if "\n" in proc.stdout[m.end():] else ""
        assert rest.strip() or following.startswith(" " * 20), f"{name} has no help"


def test_usage_error_is_exit_2(tmp_path):
    proc = gradlint("check", "--format", "xml", ".", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = gradlint("frobnicate", cwd=tmp_path)
    assert proc.returncode == 2


def test_extend_select_on_the_command_line_adds_to_the_files(tmp_path):
    write_tree(tmp_path, {"m.py": "a = 1  # mark: info\n",
                          "pyproject.toml": '[tool.gradlint]\nselect = ["GL001"]\nextend-select = ["GL990"]\n'})
    proc = gradlint("config", "--extend-select", "GL001", cwd=tmp_path, plugin=True)
    assert 'extend-select = ["GL990", "GL001"]  # --extend-select' in proc.stdout.splitlines()
    proc = gradlint("check", "--extend-select", "GL001", ".", cwd=tmp_path, plugin=True)
    assert "GL990" in proc.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize("no_color", [False, True])
def test_colour_on_a_terminal_unless_no_color(project, no_color):
    import pty

    main, child = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NO_COLOR", None)
    if no_color:
        env["NO_COLOR"] = "1"
    import subprocess

    proc = subprocess.Popen([sys.executable, "-m", "gradlint.cli", "check", "--no-cache", "."], cwd=project,
                            env=env, stdout=child, stderr=subprocess.PIPE)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(main)
    out = b"".join(chunks).decode()
    assert proc.returncode == 1
    assert ("\x1b[31m" in out) is not no_color
    assert "GL001" in out


def test_a_crash_of_gradlint_itself_is_exit_2_not_1(project):
    # Python exits 1 on an uncaught exception, which CI would read as "findings".
    import subprocess

    boot = ("import gradlint.report as r\n"
            "def boom(*a, **k): raise RuntimeError('reporter exploded')\n"
            "r.render = boom\n"
            "from gradlint.cli import main; main(prog_name='gradlint')")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", boot, "check", "--no-cache", "."], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "gradlint: internal error (please report it)" in proc.stderr
    assert "reporter exploded" in proc.stderr
