"""Each path takes the nearest [tool.gradlint] above it, wherever gradlint runs from; a folder with
its own configuration is checked with its own (root, per-file-ignores, fail-on, cache); --config
applies one file to every path (gradlint.projects)."""

from __future__ import annotations

from pathlib import Path

from tests.cli_helpers import finding_lines, gradlint, write_tree
from tests.conftest import run_cli

# GL303 (error) at 11:16: cross_entropy of softmax probabilities.
SOFTMAX_CE = """import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x, y):
        return F.cross_entropy(F.softmax(self.fc(x), dim=-1), y)
"""
# GL302 (warning, safely fixable) at 6:12: log of softmax.
LOG_SOFTMAX = """import torch
import torch.nn.functional as F


def scores(logits):
    return torch.log(F.softmax(logits, dim=-1))
"""


def codes(proc) -> list[str]:
    return [f"{line.split(':')[0]} {line.split()[1]}" for line in finding_lines(proc.stdout)]


def test_a_project_named_from_outside_takes_its_own_settings(tmp_path):
    # `gradlint check backend/` from a monorepo's root, or an absolute path from anywhere: the
    # project's [tool.gradlint] applies (it was ignored: the current folder's was read).
    write_tree(tmp_path, {"backend/pyproject.toml": '[tool.gradlint]\nignore = ["GL303"]\n',
                          "backend/m.py": SOFTMAX_CE})
    outside = gradlint("check", "backend", cwd=tmp_path)
    assert outside.returncode == 0, outside.stdout + outside.stderr
    assert outside.stdout == "All checks passed (1 file checked).\n"
    absolute = gradlint("check", str(tmp_path / "backend" / "m.py"), cwd="/")
    assert absolute.returncode == 0, absolute.stdout + absolute.stderr
    inside = gradlint("check", ".", cwd=tmp_path / "backend")
    assert inside.returncode == 0 and inside.stdout == outside.stdout


def test_a_nested_project_is_checked_with_its_own_settings_and_agrees_with_its_files(tmp_path):
    write_tree(tmp_path, {"pyproject.toml": '[tool.gradlint]\nignore = ["GL302"]\n',
                          "top.py": SOFTMAX_CE + "\n\n" + LOG_SOFTMAX.replace("import torch\n", ""),
                          "sub/pyproject.toml": '[tool.gradlint]\nignore = ["GL303"]\n',
                          "sub/m.py": SOFTMAX_CE, "sub/n.py": LOG_SOFTMAX,
                          "plain/pyproject.toml": "[project]\nname = 'x'\n", "plain/m.py": SOFTMAX_CE})
    whole = gradlint("check", ".", cwd=tmp_path)
    # top.py and plain/ (a pyproject without our table is not a project of ours) by the root's
    # settings, sub/ by its own
    assert codes(whole) == ["plain/m.py GL303", "sub/n.py GL302", "top.py GL303"], whole.stdout
    assert "Found 3 findings (2 errors, 1 warning) in 3 of 4 files." in whole.stdout.splitlines()
    named = gradlint("check", "sub/m.py", "sub/n.py", "top.py", cwd=tmp_path)  # as pre-commit names them
    assert codes(named) == ["sub/n.py GL302", "top.py GL303"]
    # a file reached by two paths is reported once
    twice = gradlint("check", "sub/n.py", ".", cwd=tmp_path)
    assert codes(twice) == codes(whole)


def test_per_file_ignores_and_fail_on_are_the_nested_projects_own(tmp_path):
    write_tree(tmp_path, {"top.py": "import torch\n",
                          "lib/pyproject.toml": '[tool.gradlint]\nfail-on = "error"\n'
                                                '[tool.gradlint.per-file-ignores]\n"m.py" = ["GL303"]\n',
                          "lib/m.py": SOFTMAX_CE, "lib/n.py": LOG_SOFTMAX})
    proc = gradlint("check", ".", cwd=tmp_path)
    # "m.py" is relative to lib/, its project's root; GL302 is a warning, under lib's fail-on
    assert codes(proc) == ["lib/n.py GL302"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    write_tree(tmp_path, {"top.py": LOG_SOFTMAX})  # a warning in the outer project fails it
    assert gradlint("check", ".", cwd=tmp_path).returncode == 1


def test_config_flag_applies_one_file_to_every_path(tmp_path):
    write_tree(tmp_path, {"ci.toml": 'ignore = ["GL302"]\n', "top.py": LOG_SOFTMAX,
                          "sub/pyproject.toml": '[tool.gradlint]\nignore = ["GL303"]\n', "sub/m.py": SOFTMAX_CE})
    proc = gradlint("check", "--config", "ci.toml", ".", cwd=tmp_path)
    assert codes(proc) == ["sub/m.py GL303"], proc.stdout


def test_a_broken_nested_configuration_is_an_error_naming_it_and_the_rest_is_checked(tmp_path):
    write_tree(tmp_path, {"top.py": SOFTMAX_CE, "bad/pyproject.toml": "[tool.gradlint\n", "bad/m.py": SOFTMAX_CE,
                          "good/pyproject.toml": '[tool.gradlint]\nselect = ["GL3"]\n', "good/m.py": SOFTMAX_CE})
    proc = gradlint("check", ".", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert codes(proc) == ["good/m.py GL303", "top.py GL303"]
    assert "gradlint: error: bad: not checked: bad/pyproject.toml: invalid TOML" in proc.stderr, proc.stderr


def test_each_project_keeps_its_cache_under_its_own_root(tmp_path):
    write_tree(tmp_path, {"pyproject.toml": "[tool.gradlint]\n", "top.py": "import torch\n",
                          "sub/pyproject.toml": "[tool.gradlint]\n", "sub/m.py": SOFTMAX_CE})
    for _ in range(2):  # the second run reads both caches back
        proc = run_cli("check", ".", cwd=tmp_path)
        assert codes(proc) == ["sub/m.py GL303"], proc.stdout + proc.stderr
    assert list((tmp_path / ".gradlint_cache").glob("p-*.jsonl"))
    assert list((tmp_path / "sub" / ".gradlint_cache").glob("p-*.jsonl"))


def test_fix_and_diff_work_across_projects(tmp_path):
    write_tree(tmp_path, {"top.py": LOG_SOFTMAX, "sub/pyproject.toml": '[tool.gradlint]\nselect = ["GL302"]\n',
                          "sub/n.py": LOG_SOFTMAX})
    diff = gradlint("check", "--diff", ".", cwd=tmp_path)
    assert diff.returncode == 1
    assert "+++ b/sub/n.py" in diff.stdout and "+++ b/top.py" in diff.stdout, diff.stdout
    fixed = gradlint("check", "--fix", ".", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    for name in ("top.py", "sub/n.py"):
        assert "log_softmax" in (tmp_path / name).read_text()
    assert Path(tmp_path / "sub" / "n.py").read_text() == (tmp_path / "top.py").read_text()


def test_a_linked_folder_is_never_walked_even_when_it_holds_a_project(tmp_path):
    # (a link back to the parent made 41 runs of one project; a link out of the tree checked, and
    # cached into, a project elsewhere)
    write_tree(tmp_path, {"repo/pyproject.toml": "[tool.gradlint]\n", "repo/r.py": LOG_SOFTMAX,
                          "other/pyproject.toml": "[tool.gradlint]\n", "other/o.py": LOG_SOFTMAX})
    (tmp_path / "repo" / "docs").mkdir()
    (tmp_path / "repo" / "docs" / "src").symlink_to("..")
    (tmp_path / "repo" / "elsewhere").symlink_to("../other")
    proc = run_cli("check", ".", cwd=tmp_path / "repo")
    assert codes(proc) == ["r.py GL302"], proc.stdout
    assert not (tmp_path / "other" / ".gradlint_cache").exists()


def test_each_project_runs_once_whatever_the_order_of_the_paths(tmp_path, monkeypatch):
    from gradlint import api, projects

    write_tree(tmp_path, {f"{d}pyproject.toml": "[tool.gradlint]\n" for d in ("", "a/", "a/b/", "a/b/c/")})
    write_tree(tmp_path, {f"{d}f.py": LOG_SOFTMAX for d in ("", "a/", "a/b/", "a/b/c/")})
    runs = []
    real = api.check_paths
    monkeypatch.setattr(api, "check_paths", lambda paths, config, **kw: runs.append(config.root) or real(paths, config, **kw))
    monkeypatch.chdir(tmp_path)

    def load(file):
        from gradlint.config import load_config
        return load_config(file) if file is not None else load_config(None, tmp_path)

    planned = projects.plan(["a/b/c", "a/b", "a", "."], load, explicit=False)
    result = projects.check(planned, load, explicit=False, use_cache=False, jobs=1)
    assert sorted(r.path for r in result.files) == ["a/b/c/f.py", "a/b/f.py", "a/f.py", "f.py"]
    assert len(runs) == 4 and len(set(runs)) == 4, runs
    # named before the folder that holds it: one diff, one report
    for order in (("a/f.py", "."), (".", "a/f.py")):
        diff = gradlint("check", "--diff", *order, cwd=tmp_path)
        assert diff.stdout.count("+++ b/a/f.py") == 1 and diff.stdout.count("+++ b/") == 4, diff.stdout


def test_exclude_flags_are_read_from_the_current_folders_project_in_every_project(tmp_path):
    write_tree(tmp_path, {"pyproject.toml": "[tool.gradlint]\n", "sub/pyproject.toml": "[tool.gradlint]\n",
                          "sub/gen/g.py": LOG_SOFTMAX, "sub/a.py": LOG_SOFTMAX})
    for target in (".", "sub"):
        proc = gradlint("check", target, "--extend-exclude", "sub/gen", cwd=tmp_path)
        assert codes(proc) == ["sub/a.py GL302"], (target, proc.stdout)
    assert codes(gradlint("check", ".", "--extend-exclude", "gen", cwd=tmp_path)) == ["sub/a.py GL302"]


def test_a_named_file_of_a_nested_project_the_outer_one_excludes_is_left_out(tmp_path):
    # as `check .` leaves it out (the walk never enters the folder): pre-commit agrees
    write_tree(tmp_path, {"pyproject.toml": '[tool.gradlint]\nextend-exclude = ["legacy"]\n', "r.py": LOG_SOFTMAX,
                          "legacy/pyproject.toml": "[tool.gradlint]\n", "legacy/x.py": LOG_SOFTMAX})
    assert codes(gradlint("check", ".", cwd=tmp_path)) == ["r.py GL302"]
    assert codes(gradlint("check", "r.py", "legacy/x.py", cwd=tmp_path)) == ["r.py GL302"]


def test_a_broken_pyproject_that_never_names_gradlint_is_not_a_project(tmp_path):
    write_tree(tmp_path, {"pyproject.toml": "[tool.gradlint]\n", "fixture/pyproject.toml": '[tool.poetry\nname = "x"',
                          "fixture/a.py": LOG_SOFTMAX, "latin/pyproject.toml": b"[tool.x]\nname = '\xe9'\n",
                          "latin/a.py": LOG_SOFTMAX})
    for args in ((".",), ("fixture/a.py", "latin/a.py")):
        proc = gradlint("check", *args, cwd=tmp_path)
        assert proc.returncode == 1 and codes(proc) == ["fixture/a.py GL302", "latin/a.py GL302"], proc.stderr


def test_a_nested_project_that_selects_nothing_is_warned_about(tmp_path):
    write_tree(tmp_path, {"pyproject.toml": "[tool.gradlint]\n", "r.py": "import torch\n",
                          "sub/pyproject.toml": '[tool.gradlint]\nselect = ["GL7"]\n', "sub/x.py": LOG_SOFTMAX})
    proc = gradlint("check", ".", cwd=tmp_path)
    assert "the selection enables no rule" in proc.stderr, proc.stderr


def test_stdin_and_config_take_the_configuration_check_takes(tmp_path):
    # a file with no configuration above it takes the current folder's, in all three commands
    write_tree(tmp_path, {"here/pyproject.toml": '[tool.gradlint]\nignore = ["GL302"]\n',
                          "noconf/x.py": LOG_SOFTMAX})
    here = tmp_path / "here"
    assert codes(gradlint("check", "../noconf/x.py", cwd=here)) == []
    stdin = run_cli("check", "--stdin-filename", "../noconf/x.py", "-", cwd=here, input=LOG_SOFTMAX)
    assert stdin.returncode == 0, stdin.stdout
    shown = run_cli("config", "../noconf/x.py", cwd=here)
    assert 'ignore = ["GL302"]' in shown.stdout, shown.stdout


def test_a_tool_key_that_is_not_a_table_is_named(tmp_path):
    from tests.cli_helpers import assert_one_line_error

    write_tree(tmp_path, {"pyproject.toml": "tool = 3  # gradlint settings below\n", "m.py": "import torch\n"})
    assert_one_line_error(gradlint("check", ".", cwd=tmp_path), "'tool' must be a table")


def test_model_takes_each_paths_project_settings(tmp_path):
    write_tree(tmp_path, {"proj/pyproject.toml": '[tool.gradlint]\nextend-exclude = ["gen"]\n',
                          "proj/m.py": SOFTMAX_CE, "proj/gen/g.py": SOFTMAX_CE.replace("class Net", "class Gen")})
    proc = run_cli("model", "proj", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "proj/m.py" in proc.stdout and "Gen" not in proc.stdout, proc.stdout


def test_model_describes_a_nested_project_with_its_own_settings_as_check_does(tmp_path):
    # `gradlint model .` from an outer project walked into a nested one with the outer settings:
    # it showed a class the nested project excludes (check left it out)
    write_tree(tmp_path, {"pyproject.toml": "[tool.gradlint]\n",
                          "inner/pyproject.toml": '[tool.gradlint]\nextend-exclude = ["gen"]\n',
                          "top.py": SOFTMAX_CE.replace("class Net", "class Top"),
                          "inner/m.py": SOFTMAX_CE, "inner/gen/g.py": SOFTMAX_CE.replace("class Net", "class Gen")})
    proc = run_cli("model", ".", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "top.py" in proc.stdout and "inner/m.py" in proc.stdout and "Gen" not in proc.stdout, proc.stdout
    assert [line.split(":")[0] for line in finding_lines(gradlint("check", ".", cwd=tmp_path).stdout)] == \
        ["inner/m.py", "top.py"]
    # --config applies one file to every path: the nested settings are not read
    explicit = run_cli("model", ".", "--config", "pyproject.toml", cwd=tmp_path)
    assert explicit.returncode == 0 and "Gen" in explicit.stdout, explicit.stderr


def test_model_names_a_broken_nested_configuration_and_describes_the_rest(tmp_path):
    write_tree(tmp_path, {"pyproject.toml": "[tool.gradlint]\n", "inner/pyproject.toml": "[tool.gradlint]\nexclude = [1\n",
                          "inner/m.py": SOFTMAX_CE, "top.py": SOFTMAX_CE.replace("class Net", "class Top")})
    proc = run_cli("model", ".", cwd=tmp_path)
    assert proc.returncode == 2
    assert "top.py" in proc.stdout and "inner/m.py" not in proc.stdout, proc.stdout
    assert "gradlint: error: inner/pyproject.toml: invalid TOML" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_model_warns_of_nothing_found_only_when_no_project_found_anything(tmp_path):
    # a nested project with nothing to read made `model .` say that nothing was found under the
    # given paths, beside the outer project's model (check said nothing)
    write_tree(tmp_path, {"pyproject.toml": "[tool.gradlint]\n", "net.py": SOFTMAX_CE,
                          "sub/pyproject.toml": "[tool.gradlint]\n"})
    proc = run_cli("model", ".", cwd=tmp_path)
    assert proc.returncode == 0 and "net.py" in proc.stdout
    assert "no Python, notebook or ONNX files found" not in proc.stderr, proc.stderr
    (tmp_path / "net.py").unlink()
    empty = run_cli("model", ".", cwd=tmp_path)
    assert empty.stderr.count("no Python, notebook or ONNX files found") == 1, empty.stderr


def test_model_says_an_error_once_when_a_walk_reaches_a_project_already_described(tmp_path):
    # ext has no configuration above it (read with the current folder's settings); its walk meets
    # ext/n after ext/n's own run, which runs again: its syntax error was said twice
    write_tree(tmp_path, {"here/a/b/pyproject.toml": "[tool.gradlint]\n", "ext/n/pyproject.toml": "[tool.gradlint]\n",
                          "ext/n/bad.py": "import torch\ndef f(:\n", "ext/n/net.py": SOFTMAX_CE})
    proc = run_cli("model", str(tmp_path / "ext" / "n"), str(tmp_path / "ext"), cwd=tmp_path / "here" / "a" / "b")
    assert proc.returncode == 2
    assert proc.stderr.count("bad.py:2:") == 1, proc.stderr
    assert proc.stdout.count(": Net (") == 1, proc.stdout


def test_ctrl_c_in_a_run_of_several_projects_exits_130_without_a_traceback(tmp_path):
    # (the shared pool was shut down under the facts thread: a traceback and exit 2 in 8 of 20
    # tries; click's 'Aborted!' exited 1, the findings code)
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    model = (ROOT / "examples" / "model.py").read_text()
    for p in range(4):
        write_tree(tmp_path, {f"p{p}/pyproject.toml": "[tool.gradlint]\n",
                              **{f"p{p}/m{i}.py": model for i in range(300)}})
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # Started as a terminal starts a command, with SIGINT's default action: a test run from a
    # shell's background job (`pytest &`) passes SIGINT on ignored, and Python then leaves it
    # ignored, as a user's `gradlint check &` should (the run went on to exit 1 and an empty stderr).
    in_a_terminal = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                     "os.execv(sys.executable, [sys.executable, '-m', 'gradlint.cli'] + sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", in_a_terminal, "check", "--no-cache", "-j", "2", "."], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
    out, err = proc.communicate(timeout=120)
    # 130, or ended by SIGINT itself (a shell reports both as 130): Python ends that way about once
    # in 150 Ctrl-C here after gradlint's own 'interrupted', in its shutdown (with no other thread
    # left), for a reason not found.
    assert proc.returncode in (130, -signal.SIGINT), (proc.returncode, err[-2000:])
    assert "gradlint: interrupted" in err and "Traceback" not in err and "internal error" not in err, err[-2000:]


def test_ctrl_c_while_gradlint_loads_exits_130_without_a_traceback(monkeypatch, capsys):
    """A Ctrl-C in the first tenth of a second (gradlint's modules loading: click, the command)
    printed Python's KeyboardInterrupt traceback; the entry point says one line and exits 130."""
    import sys

    import pytest

    from gradlint import entry

    class _CtrlC:
        def find_spec(self, name, path=None, target=None):
            if name == "gradlint.cli":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "gradlint.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_CtrlC(), *sys.meta_path])
    with pytest.raises(SystemExit) as ended:
        entry.main(["--version"])
    assert ended.value.code == 130
    assert capsys.readouterr().err == "gradlint: interrupted\n"


def test_the_entry_point_runs_the_command():
    from tests.conftest import ROOT
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "gradlint", "check", str(ROOT / "examples" / "model.py"), "--no-cache"],
                          capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1 and "GL101" in proc.stdout, proc.stdout + proc.stderr
