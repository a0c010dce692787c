"""The text reporter: `path:line:col: CODE message`, a summary line, colour only when asked."""

from __future__ import annotations

import re

from gradlint.report.text import render_text
from tests.report_samples import empty_result, sample_result

LINE = re.compile(r"^[^:]+:\d+:\d+: GL\d{3}( \[\*\])? .+$")


def test_finding_lines_have_the_path_line_col_code_shape():
    lines = render_text(sample_result()).splitlines()
    assert all(LINE.match(line) for line in lines[:4]), lines
    assert lines[2] == "pkg/model.py:3:21: GL001 syntax error: expected ':'"
    assert lines[3] == "pkg/model.py:10:1: GL001 [*] fixable"
    assert lines[1] == ("models/net.onnx:1:1: GL002 predicted gradient gain 3e-9 across 10 nodes "
                        "(node '/body/Sigmoid_3', Sigmoid #14)")


def test_multi_line_message_is_joined_into_one_line():
    lines = render_text(sample_result()).splitlines()
    assert lines[0] == "models/my net é.py:7:5: GL001 50% of layers: saturated, at depth 12 second line"


def test_summary():
    lines = render_text(sample_result()).splitlines()
    assert lines[4:] == [
        "Found 4 findings (1 error, 2 warnings, 1 info) in 3 of 4 files (1 path skipped).",
        "[*] 1 fixable with `gradlint check --fix`.",
        "1 more fixable with `gradlint check --fix --unsafe-fixes`.",
    ]


def test_clean_summary():
    assert render_text(empty_result()) == "All checks passed (1 file checked).\n"


def test_quiet_has_no_summary():
    out = render_text(sample_result(), quiet=True)
    assert len(out.splitlines()) == 4 and "Found" not in out
    assert render_text(empty_result(), quiet=True) == ""


def test_colour_only_when_asked():
    plain = render_text(sample_result(), color=False)
    coloured = render_text(sample_result(), color=True)
    assert "\x1b[" not in plain
    assert "\x1b[31m" in coloured and "\x1b[33m" in coloured and "\x1b[36m" in coloured
    # Stripping the escapes gives the plain report back: colour adds nothing else.
    assert re.sub(r"\x1b\[\d+m", "", coloured) == plain


def test_no_passed_summary_when_a_named_path_failed_or_nothing_was_checked(tmp_path):
    # "All checks passed (0 files checked) (1 path skipped)." was printed for a FIFO named on
    # the command line (exit 2) and for a run whose only file was over the size budget
    from tests.cli_helpers import gradlint, write_tree

    os = __import__("os")
    write_tree(tmp_path, {"ok.py": "import torch\n", "big.py": "x = 1\n" * 20_001})
    os.mkfifo(tmp_path / "fifo.py")
    alone = gradlint("check", "fifo.py", cwd=tmp_path)
    assert alone.returncode == 2 and alone.stdout == "" and "fifo.py: not a regular file" in alone.stderr
    beside = gradlint("check", "fifo.py", "ok.py", cwd=tmp_path)
    assert beside.returncode == 2 and beside.stdout == "No findings (1 file checked) (1 path skipped).\n"
    big = gradlint("check", "big.py", cwd=tmp_path)
    assert big.returncode == 0 and big.stdout == "Nothing checked (1 path skipped).\n", big.stdout
    assert "big.py: skipped: 20001 lines" in big.stderr
    assert gradlint("check", "ok.py", cwd=tmp_path).stdout == "All checks passed (1 file checked).\n"
