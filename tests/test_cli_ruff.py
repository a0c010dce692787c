"""What a ruff user expects of `gradlint check`: the install name, always-on rules refused by
--ignore, output safe on any console and for any file name, --statistics, --output-format
concise/full, --show-fixes, the fix summary, --exclude, stdin for editors, --add-noqa, rule
names as selectors and in gradlint's own suppression comment, and a pasteable `gradlint config`."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from gradlint.config import parse_table
from tests.cli_helpers import BROKEN, GOOD, assert_one_line_error, finding_lines, gradlint, write_tree
from tests.conftest import ROOT, run_cli

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

LOG_SOFTMAX = "import torch\n\n\ndef f(z):\n    return torch.log(torch.softmax(z, dim=-1))\n"
FIXED = LOG_SOFTMAX.replace("torch.log(torch.softmax(z, dim=-1))", "torch.log_softmax(z, dim=-1)")
DEEP = ("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.body = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(256, 256), nn.Sigmoid())])\n\n"
        "    def forward(self, x):\n        return self.body(x)\n")


# -- the distribution name ------------------------------------------------------------------

def distribution() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]


def test_distribution_is_not_the_taken_name_and_the_package_knows_it():
    import gradlint

    # `gradlint` on the package registry is an unrelated diffusion-MRI tool.
    assert distribution() != "gradlint"
    assert gradlint.DISTRIBUTION == distribution()


def test_probe_install_hint_names_the_real_distribution(tmp_path):
    # torch made unimportable in the child: the hint is what a user without the extra sees.
    write_tree(tmp_path, {"m.py": "def make():\n    return None\n"})
    boot = ("import sys; sys.modules['torch'] = None; from gradlint.cli import main; "
            "main(prog_name='gradlint')")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    import subprocess

    proc = subprocess.run([sys.executable, "-c", boot, "probe", "m.py:make"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert f"pip install '{distribution()}[probe]'" in proc.stderr, proc.stderr


def test_readme_and_hook_name_the_real_distribution():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install 'gradlint[" not in readme and "pip install gradlint\n" not in readme
    assert f"pip install '{distribution()}[probe]'" in readme
    assert distribution() in (ROOT / ".pre-commit-hooks.yaml").read_text()


# -- --ignore of always-on rules, --unsafe-fixes alone ----------------------------------------

@pytest.mark.parametrize("value", ["GL001", "GL0", "syntax-error"])
def test_ignore_of_an_always_on_rule_is_refused(tmp_path, value):
    write_tree(tmp_path, {"a.py": GOOD})
    assert_one_line_error(gradlint("check", "--ignore", value, ".", cwd=tmp_path), "always on", "per-file-ignores")


def test_ignore_of_always_on_rule_in_pyproject_is_refused(tmp_path):
    write_tree(tmp_path, {"a.py": GOOD, "pyproject.toml": '[tool.gradlint]\nignore = ["GL002"]\n'})
    assert_one_line_error(gradlint("check", ".", cwd=tmp_path), "pyproject.toml", "GL002", "always on")


def test_per_file_ignores_still_silence_always_on_rules(tmp_path):
    write_tree(tmp_path, {"bad.py": BROKEN, "pyproject.toml": '[tool.gradlint.per-file-ignores]\n"bad.py" = ["GL001"]\n'})
    assert gradlint("check", ".", cwd=tmp_path).returncode == 0


def test_unsafe_fixes_alone_says_it_needs_fix(tmp_path):
    write_tree(tmp_path, {"a.py": GOOD})
    proc = gradlint("check", "--unsafe-fixes", ".", cwd=tmp_path)
    assert proc.returncode == 0 and "--unsafe-fixes only acts with --fix or --diff" in proc.stderr


# -- paths ------------------------------------------------------------------------------------

def test_missing_path_prints_no_all_checks_passed(tmp_path):
    proc = gradlint("check", "nope.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert "All checks passed" not in proc.stdout and proc.stdout == ""
    assert "nope.py: no such file or directory" in proc.stderr


def test_folder_without_python_warns_and_exits_0(tmp_path):
    write_tree(tmp_path, {"docs/readme.md": "# hi\n"})
    proc = gradlint("check", "docs", cwd=tmp_path)
    assert proc.returncode == 0
    assert "no Python, notebook or ONNX files found" in proc.stderr


# -- the report file --------------------------------------------------------------------------

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_report_file_honours_the_umask(tmp_path, umask, mode):
    write_tree(tmp_path, {"a.py": GOOD})
    old = os.umask(umask)
    try:
        proc = gradlint("check", "-o", "report.txt", ".", cwd=tmp_path)
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((tmp_path / "report.txt").stat().st_mode) == mode


def test_report_file_keeps_an_existing_files_mode(tmp_path):
    write_tree(tmp_path, {"a.py": GOOD, "report.txt": "old"})
    os.chmod(tmp_path / "report.txt", 0o640)
    gradlint("check", "-o", "report.txt", ".", cwd=tmp_path)
    assert stat.S_IMODE((tmp_path / "report.txt").stat().st_mode) == 0o640
    assert "All checks passed" in (tmp_path / "report.txt").read_text()


# -- what the text output may contain ----------------------------------------------------------

def test_multi_line_expression_in_a_message_is_one_line(tmp_path):
    write_tree(tmp_path, {"a.py": "import torch\n\n\ndef n(x):\n    x = torch.nn.Parameter(x)\n    return x / (\n        x.norm(dim=-1)\n    )\n"})
    proc = gradlint("check", "--select", "GL307", "a.py", cwd=tmp_path)
    (line,) = finding_lines(proc.stdout)
    assert "GL307 division by `(x.norm(dim=-1))`" in line
    assert proc.stdout.splitlines()[1].startswith("Found ")


@pytest.mark.parametrize("name,shown", [("a\nb.py", "a\\nb.py"), ("\x1b[2Jx.py", "\\x1b[2Jx.py"), ("t\tab.py", "t\\tab.py"),
                                        (os.fsdecode(b"bad\xff.py"), "bad\\udcff.py")])
def test_file_names_are_escaped(tmp_path, name, shown):
    write_tree(tmp_path, {name: BROKEN})
    proc = gradlint("check", ".", cwd=tmp_path)
    assert "\x1b" not in proc.stdout and "\t" not in proc.stdout
    assert proc.stdout.splitlines()[0].startswith(f"{shown}:3:21: GL001 "), proc.stdout
    for fmt in ("json", "sarif"):
        js = gradlint("check", "--format", fmt, ".", cwd=tmp_path)
        assert js.returncode == 1 and "Traceback" not in js.stderr, js.stderr
        json.loads(js.stdout)


def test_onnx_message_summarises_the_layers(tmp_path):
    spec = importlib.util.spec_from_file_location("onnx_gen", ROOT / "fixtures" / "onnx" / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)  # type: ignore[union-attr]
    (tmp_path / "deep.onnx").write_bytes(gen.mlp(depth=30, width=16, std=1.0).SerializeToString())
    proc = gradlint("check", "--select", "GL101", "deep.onnx", cwd=tmp_path)
    (line,) = finding_lines(proc.stdout)
    assert "across 30 layers" in line and line.count("std") == 1 and len(line) < 300, line
    assert "weights with std " in line and " to " in line


def test_summary_counts_files_with_findings_among_files_checked(tmp_path):
    write_tree(tmp_path, {"bad.py": BROKEN, "a.py": GOOD, "b.py": GOOD})
    proc = gradlint("check", ".", cwd=tmp_path)
    assert proc.stdout.splitlines()[-1] == "Found 1 finding (1 error) in 1 of 3 files."


def _cp1252(*args: str, cwd: Path):
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONIOENCODING="cp1252")
    env.pop("PYTHONUTF8", None)
    proc = subprocess.run([sys.executable, "-m", "gradlint.cli", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=300)
    return proc.returncode, proc.stdout.decode("cp1252"), proc.stderr.decode("cp1252")


def test_cp1252_console_gets_a_report_not_a_traceback(tmp_path):
    write_tree(tmp_path, {"m.py": DEEP})
    rc, out, err = _cp1252("check", "--no-cache", "m.py", cwd=tmp_path)
    assert rc == 1, err
    assert "Traceback" not in err and "internal error" not in err
    assert "chi ~ 0.02 per layer" in out
    # the rule page too (χ, ‖, ∂ in its text)
    rc, out, err = _cp1252("rule", "GL101", cwd=tmp_path)
    assert rc == 0 and "Traceback" not in err and "chi" in out


def test_machine_formats_stay_utf8_on_a_cp1252_console(tmp_path):
    import subprocess

    write_tree(tmp_path, {"m.py": DEEP})
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONIOENCODING="cp1252")
    proc = subprocess.run([sys.executable, "-m", "gradlint.cli", "check", "--no-cache", "--format", "json", "m.py"],
                          cwd=tmp_path, env=env, capture_output=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    (item,) = json.loads(proc.stdout.decode("utf-8"))
    assert "χ" in item["message"]


# -- ruff's flags -------------------------------------------------------------------------------

def test_statistics(tmp_path):
    write_tree(tmp_path, {"a.py": LOG_SOFTMAX, "b.py": LOG_SOFTMAX, "c.py": BROKEN})
    proc = gradlint("check", "--statistics", ".", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == ["2\tGL302\t[*] log-of-probability", "1\tGL001\t    syntax-error"]
    js = json.loads(gradlint("check", "--statistics", "--format", "json", ".", cwd=tmp_path).stdout)
    assert js[0] == {"code": "GL302", "name": "log-of-probability", "count": 2, "fixable": True}
    # a table is no SARIF log and no annotation: refused, not printed as a table a CI uploads
    for fmt in ("sarif", "github"):
        proc = gradlint("check", "--statistics", "--format", fmt, ".", cwd=tmp_path)
        assert proc.returncode == 2 and proc.stdout == "" and f"cannot be given as {fmt}" in proc.stderr


def test_a_selection_that_runs_no_rule_is_warned_about(tmp_path):
    # `--select GL7` (rules only `probe` measures), an empty selection and an ignore of all that
    # is selected checked nothing but unreadable input, and said "All checks passed" in silence
    write_tree(tmp_path, {"a.py": LOG_SOFTMAX})
    for args in (["--select", "GL7"], ["--select="], ["--select", "GL3", "--ignore", "GL3"]):
        proc = gradlint("check", *args, "a.py", cwd=tmp_path)
        assert proc.returncode == 0 and "the selection enables no rule that `check` runs" in proc.stderr, args
    proc = gradlint("check", "--select", "GL302", "a.py", cwd=tmp_path)
    assert proc.returncode == 1 and "warning" not in proc.stderr


def test_output_format_full_shows_the_line_and_a_caret(tmp_path):
    write_tree(tmp_path, {"a.py": LOG_SOFTMAX})
    proc = gradlint("check", "--output-format", "full", "a.py", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("a.py:5:12: GL302 [*] ")
    assert lines[2] == "5 |     return torch.log(torch.softmax(z, dim=-1))"
    assert lines[3] == "  |            " + "^" * len("torch.log(torch.softmax(z, dim=-1))") + " GL302"
    assert "  = help: " in proc.stdout
    concise = gradlint("check", "--output-format", "concise", "a.py", cwd=tmp_path)
    assert concise.stdout == gradlint("check", "a.py", cwd=tmp_path).stdout


def test_output_format_full_puts_the_caret_under_the_code_after_wide_characters(tmp_path):
    # each CJK character takes two columns of a terminal: the caret sat two columns too far left
    write_tree(tmp_path, {"a.py": 'import torch\n\n\ndef f(z):\n    x = "\u4e2d\u6587"; return torch.log(torch.softmax(z, dim=-1))\n'})
    lines = gradlint("check", "--output-format", "full", "a.py", cwd=tmp_path).stdout.splitlines()
    assert lines[2] == '5 |     x = "\u4e2d\u6587"; return torch.log(torch.softmax(z, dim=-1))'
    assert lines[3] == "  | " + " " * len('    x = "xxxx"; return ') + "^" * len("torch.log(torch.softmax(z, dim=-1))") + " GL302"


def test_show_fixes_without_fix_prints_each_fix(tmp_path):
    write_tree(tmp_path, {"a.py": LOG_SOFTMAX})
    proc = gradlint("check", "--show-fixes", "a.py", cwd=tmp_path)
    assert proc.stdout.splitlines()[1].startswith("  = help: ")


def test_fix_prints_a_summary_on_stdout_and_show_fixes_lists_them(tmp_path):
    write_tree(tmp_path, {"a.py": LOG_SOFTMAX, "b.py": BROKEN})
    proc = gradlint("check", "--fix", "--show-fixes", ".", cwd=tmp_path)
    assert (tmp_path / "a.py").read_text() == FIXED
    assert "Found 2 findings (1 fixed, 1 remaining: 1 error) in 1 of 2 files." in proc.stdout.splitlines()
    assert "Fixed 1 finding:" in proc.stdout and "    1 x GL302 (log-of-probability)" in proc.stdout
    write_tree(tmp_path, {"b.py": GOOD, "c.py": LOG_SOFTMAX})
    proc = gradlint("check", "--fix", ".", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "Found 1 finding (1 fixed, 0 remaining)."


def test_exclude_and_extend_exclude_on_the_command_line(tmp_path):
    write_tree(tmp_path, {"gen/x.py": BROKEN, "vendor/y.py": BROKEN, "a.py": GOOD})
    assert gradlint("check", "--extend-exclude", "gen,vendor", ".", cwd=tmp_path).returncode == 0
    assert gradlint("check", "--extend-exclude", "gen", ".", cwd=tmp_path).returncode == 1
    # --exclude replaces the list: the default `build`-style folders are checked again
    write_tree(tmp_path, {"build/z.py": BROKEN})
    assert gradlint("check", "--extend-exclude", "gen,vendor", ".", cwd=tmp_path).returncode == 0
    proc = gradlint("check", "--exclude", "gen,vendor", ".", cwd=tmp_path)
    assert [line.split(":")[0] for line in finding_lines(proc.stdout)] == ["build/z.py"]


def test_select_by_rule_name(tmp_path):
    write_tree(tmp_path, {"a.py": LOG_SOFTMAX, "m.py": DEEP})
    proc = gradlint("check", "--select", "log-of-probability", ".", cwd=tmp_path)
    assert sorted(line.split()[1] for line in finding_lines(proc.stdout)) == ["GL302"]
    assert "GL101" in gradlint("check", ".", cwd=tmp_path).stdout
    proc = gradlint("check", "--ignore", "vanishing-gradient", ".", cwd=tmp_path)
    assert "GL101" not in proc.stdout and "GL302" in proc.stdout
    assert_one_line_error(gradlint("check", "--select", "no-such-rule", ".", cwd=tmp_path), "no-such-rule")


# -- stdin ----------------------------------------------------------------------------------------

def test_stdin_reports_as_the_given_path(tmp_path):
    proc = run_cli("check", "--no-cache", "--stdin-filename", "pkg/a.py", "-", cwd=tmp_path, input=LOG_SOFTMAX)
    assert proc.returncode == 1
    assert finding_lines(proc.stdout)[0].startswith("pkg/a.py:5:12: GL302")
    js = run_cli("check", "--no-cache", "--stdin-filename", "pkg/a.py", "--format", "json", "-", cwd=tmp_path,
                 input=LOG_SOFTMAX)
    assert [i["code"] for i in json.loads(js.stdout)] == ["GL302"]


def test_stdin_takes_the_configuration_of_the_paths_project(tmp_path):
    write_tree(tmp_path, {"proj/pyproject.toml": '[tool.gradlint]\nignore = ["GL302"]\n', "proj/src/.keep": ""})
    proc = run_cli("check", "--no-cache", "--stdin-filename", str(tmp_path / "proj" / "src" / "a.py"), "-",
                   cwd=tmp_path, input=LOG_SOFTMAX)
    assert proc.returncode == 0, proc.stdout


def test_stdin_fix_prints_the_fixed_source(tmp_path):
    proc = run_cli("check", "--no-cache", "--stdin-filename", "a.py", "--fix", "-", cwd=tmp_path, input=LOG_SOFTMAX)
    assert proc.stdout == FIXED and proc.returncode == 0, proc.stderr
    assert not (tmp_path / "a.py").exists()


def test_stdin_with_no_cache_writes_no_cache(tmp_path):
    # The stdin path (check and --fix) summarised the project's other modules through the cache
    # whatever --no-cache said.
    # (helper.py calls f: the search for f's callers reads it)
    write_tree(tmp_path, {"pyproject.toml": "[tool.gradlint]\n",
                          "helper.py": "import torch\nfrom a import f\n\n\ndef g(z):\n    return f(z)\n"})
    source = "from helper import g\n" + LOG_SOFTMAX
    for extra in ((), ("--fix",)):
        proc = run_cli("check", "--no-cache", "--stdin-filename", "a.py", *extra, "-", cwd=tmp_path, input=source)
        assert ("log_softmax" if extra else "GL302") in proc.stdout, proc.stdout + proc.stderr
        assert not (tmp_path / ".gradlint_cache").exists(), (extra, proc.stderr)
    # without the flag the same run does use it (the test reaches the cache at all)
    run_cli("check", "--stdin-filename", "a.py", "-", cwd=tmp_path, input=source)
    assert (tmp_path / ".gradlint_cache").is_dir()


def test_stdin_needs_a_filename(tmp_path):
    assert_one_line_error(run_cli("check", "-", cwd=tmp_path, input=LOG_SOFTMAX), "--stdin-filename")


# -- noqa ------------------------------------------------------------------------------------------

def test_add_noqa_makes_the_next_run_clean(tmp_path):
    src = LOG_SOFTMAX + "\n\ndef g(z):\n    return torch.log(torch.softmax(z, 0))  # noqa: E501\n"
    write_tree(tmp_path, {"a.py": src})
    proc = gradlint("check", "--add-noqa", "a.py", cwd=tmp_path)
    assert proc.returncode == 0 and "Added 2 noqa directives." in proc.stderr
    text = (tmp_path / "a.py").read_text()
    assert "    return torch.log(torch.softmax(z, dim=-1))  # noqa: GL302\n" in text
    assert "    return torch.log(torch.softmax(z, 0))  # noqa: E501, GL302\n" in text
    assert gradlint("check", "a.py", cwd=tmp_path).returncode == 0
    again = gradlint("check", "--add-noqa", "a.py", cwd=tmp_path)
    assert "Added 0 noqa directives." in again.stderr and (tmp_path / "a.py").read_text() == text


def test_add_noqa_never_writes_into_an_onnx_file(tmp_path):
    # a Git LFS pointer (text, GL002) got `# noqa: GL002` on its first line: git-lfs no longer
    # saw a pointer, and the comment silenced nothing
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 12\n"
    (tmp_path / "model.onnx").write_bytes(pointer)
    (tmp_path / "bad.py").write_text("def f(:\n    pass\n")
    proc = gradlint("check", "--add-noqa", "model.onnx", "bad.py", cwd=tmp_path)
    assert (tmp_path / "model.onnx").read_bytes() == pointer
    assert (tmp_path / "bad.py").read_text() == "def f(:\n    pass\n"
    assert "model.onnx: an ONNX model's findings take no comment" in proc.stderr
    assert "bad.py:1:7: GL001 syntax error" in proc.stderr and "--add-noqa does not comment a file" in proc.stderr
    assert "Added 0 noqa directives." in proc.stderr and proc.returncode == 1


def test_add_noqa_names_what_it_could_not_annotate_and_exits_1(tmp_path):
    # it exited 0 with a syntax error left (GL001 takes no comment), as if the code base were now
    # clean, and said only "bad.py: ... (GL0xx)": the next `check` failed on it
    write_tree(tmp_path, {"a.py": LOG_SOFTMAX, "bad.py": BROKEN})
    proc = gradlint("check", "--add-noqa", ".", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "gradlint: warning: bad.py:3:21: GL001 syntax error: expected ':' (no `# noqa` added" in proc.stderr
    assert "Added 1 noqa directive." in proc.stderr
    assert "1 finding left without a `# noqa` (see above): `gradlint check` still reports it." in proc.stderr
    assert proc.stdout == "" and "# noqa: GL302" in (tmp_path / "a.py").read_text()
    assert gradlint("check", ".", cwd=tmp_path).returncode == 1  # (what the exit code foretold)
    assert gradlint("check", "--add-noqa", "--exit-zero", ".", cwd=tmp_path).returncode == 0
    (tmp_path / "bad.py").write_text(GOOD)
    again = gradlint("check", "--add-noqa", ".", cwd=tmp_path)
    assert again.returncode == 0 and "left without" not in again.stderr, again.stderr


def test_add_noqa_judges_what_it_left_by_fail_on(tmp_path):
    # a read-only file keeps its GL302 (a warning): it fails `check`, not `check --fail-on error`
    write_tree(tmp_path, {"ro.py": LOG_SOFTMAX})
    os.chmod(tmp_path / "ro.py", 0o444)
    proc = gradlint("check", "--add-noqa", "ro.py", cwd=tmp_path)
    assert proc.returncode == 1 and "ro.py: no noqa added: read-only file" in proc.stderr, proc.stderr
    assert gradlint("check", "--add-noqa", "--fail-on", "error", "ro.py", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("mode", ["--diff", "--add-noqa"])
def test_diff_and_add_noqa_say_errors_and_exit_2(tmp_path, mode):
    # --diff exited 0 on a missing path; --add-noqa exited 2 without a word; a nested project's
    # broken configuration was never said
    write_tree(tmp_path, {"a.py": LOG_SOFTMAX, "inner/pyproject.toml": "[tool.gradlint\n", "inner/b.py": "x = 1\n"})
    proc = gradlint("check", mode, "missing.py", "a.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert "gradlint: error: missing.py: no such file or directory" in proc.stderr
    nested = gradlint("check", mode, ".", cwd=tmp_path)
    assert nested.returncode == 2 and "inner: not checked" in nested.stderr, nested.stderr


def test_stdin_honours_statistics_and_show_fixes(tmp_path):
    stats = run_cli("check", "--stdin-filename", "a.py", "--statistics", "-", cwd=tmp_path, input=LOG_SOFTMAX)
    assert stats.stdout.split() == ["1", "GL302", "[*]", "log-of-probability"], stats.stdout
    shown = run_cli("check", "--stdin-filename", "a.py", "--show-fixes", "-", cwd=tmp_path, input=LOG_SOFTMAX)
    assert "= help: Use log_softmax" in shown.stdout
    plain = run_cli("check", "--stdin-filename", "a.py", "-", cwd=tmp_path, input=LOG_SOFTMAX)
    assert "= help" not in plain.stdout and "GL302" in plain.stdout


def test_add_noqa_says_what_to_do_for_a_notebook(tmp_path):
    # it said a notebook finding "cannot take a `# noqa`", though a noqa written in a cell works
    from tests.conftest import FIXTURES

    nb = (FIXTURES / "notebooks" / "model.ipynb").read_bytes()
    write_tree(tmp_path, {"m.ipynb": nb})
    proc = gradlint("check", "--add-noqa", "m.ipynb", cwd=tmp_path)
    assert "m.ipynb: --add-noqa does not edit notebooks; write `# noqa: CODE` on the line in the cell" in proc.stderr
    assert (tmp_path / "m.ipynb").read_bytes() == nb


def test_add_noqa_skips_a_line_that_ends_inside_a_string(tmp_path):
    from gradlint.findings import Finding, Severity, SourceSpan
    from gradlint.suppress import add_noqa

    src = 'x = f("""a\nb""")\ny = 1\n'
    found = [Finding("GL302", "log-of-probability", "m", Severity.WARNING, "a.py", SourceSpan.point(1, 1)),
             Finding("GL302", "log-of-probability", "m", Severity.WARNING, "a.py", SourceSpan.point(3, 1))]
    new, added, left = add_noqa(src, found)
    assert added == 1 and [f.span.line for f in left] == [1]
    assert new == 'x = f("""a\nb""")\ny = 1  # noqa: GL302\n'


@pytest.mark.parametrize("comment,suppressed", [
    ("# gradlint: ignore[log-of-probability]", True),
    ("# gradlint: ignore[vanishing-gradient]", False),
    ("# noqa: log-of-probability", True),  # deprecated spelling, still honoured
    ("# noqa: vanishing-gradient", False),  # names one rule, not every rule
])
def test_rule_names_in_suppression_comments(tmp_path, comment, suppressed):
    write_tree(tmp_path, {"a.py": LOG_SOFTMAX.replace("dim=-1))\n", f"dim=-1))  {comment}\n")})
    assert (gradlint("check", "a.py", cwd=tmp_path).returncode == 0) == suppressed


# -- gradlint config ------------------------------------------------------------------------------

def test_config_output_pastes_into_pyproject(tmp_path):
    write_tree(tmp_path, {"pyproject.toml": '[tool.gradlint]\nignore = ["GL10"]\nfail-on = "warning"\n'
                                            '[tool.gradlint.per-file-ignores]\n"tests/*" = ["GL001"]\n'
                                            '[tool.gradlint.GL101]\nvanishing-threshold = 1e-4\n'})
    proc = gradlint("config", "--select", "GL1,GL3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = tomllib.loads(proc.stdout)["tool"]["gradlint"]
    cfg = parse_table(table, tmp_path / "pasted" / "pyproject.toml")
    assert cfg.select == ("GL1", "GL3") and cfg.ignore == ("GL10",) and str(cfg.fail_on) == "warning"
    assert cfg.per_file_ignores == (("tests/*", ("GL001",)),)
    assert cfg.options_for("GL101")["vanishing-threshold"] == 1e-4
    assert "[tool.gradlint]" in proc.stdout.splitlines()[:2]
    flags = gradlint("config", "--extend-exclude", "gen,vendor", cwd=tmp_path)
    assert 'extend-exclude = ["gen", "vendor"]  # --extend-exclude' in flags.stdout.splitlines()
