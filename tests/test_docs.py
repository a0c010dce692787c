"""rules/*.md are generated from the rules' docstrings: a page per rule, current, no orphans."""

from __future__ import annotations

import subprocess
import sys


from gradlint import docs
from gradlint.registry import load_rules
from tests.cli_helpers import plugin_rule  # noqa: F401 (a fixture)
from tests.conftest import ROOT


def test_every_rule_has_a_current_page_and_there_are_no_orphans():
    problems = docs.stale_pages()
    assert not problems, "\n".join(problems) + "\nrun `python -m gradlint.docs` to regenerate rules/*.md"


def test_pages_on_disk_are_exactly_the_registered_rules():
    on_disk = sorted(p.name for p in docs.PAGES.glob("GL*.md"))
    assert on_disk == sorted(docs.page_name(r) for r in load_rules().values())


def test_page_content():
    page = docs.render_page(load_rules()["GL001"])
    assert page.startswith("# GL001 syntax-error\n\nFile cannot be read, decoded or parsed.\n")
    assert "| error | always on | no | python |" in page
    sections = [line for line in page.splitlines() if line.startswith("## ")]
    assert sections == ["## What it does", "## Why is this bad?", "## Example", "## Use instead"]


def test_options_table_lists_defaults(plugin_rule):
    page = docs.render_page(plugin_rule)
    assert "| `limit` | `100` | Report at most this many lines per file. |" in page
    assert "[tool.gradlint.GL990]\nlimit = 100" in page
    assert "| info | on | no | python |" in page


def test_check_detects_stale_missing_and_orphan_pages(tmp_path):
    assert docs.write_pages(tmp_path)  # a fresh folder: every page written
    assert docs.stale_pages(tmp_path) == []
    page = tmp_path / "GL001-syntax-error.md"
    page.write_text(page.read_text() + "edited by hand\n")
    (tmp_path / "GL002-unreadable-model.md").unlink()
    (tmp_path / "GL900-old-rule.md").write_text("gone")
    (tmp_path / "README.md").write_text("notes are not pages")
    assert docs.stale_pages(tmp_path) == [
        "GL001-syntax-error.md: out of date",
        "GL002-unreadable-model.md: missing",
        "GL900-old-rule.md: no such rule (orphan page)",
    ]
    changed = docs.write_pages(tmp_path)
    assert changed == ["wrote GL001-syntax-error.md", "wrote GL002-unreadable-model.md", "removed GL900-old-rule.md"]
    assert docs.stale_pages(tmp_path) == [] and (tmp_path / "README.md").exists()


def test_module_entry_point(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "gradlint.docs", *a], cwd=ROOT,
                                    capture_output=True, text=True, timeout=120)
    proc = run("--check", "--dir", str(tmp_path))
    assert proc.returncode == 1 and "missing" in proc.stderr
    assert run("--dir", str(tmp_path)).returncode == 0
    assert run("--check", "--dir", str(tmp_path)).returncode == 0


def test_each_option_is_listed_once_on_its_page():
    from gradlint.docs import render_page
    from gradlint.registry import load_rules

    for rule in load_rules().values():
        page = render_page(rule)
        for key in rule.options:
            assert page.count(f"| `{key}` |") == 1, (rule.code, key)
            assert f"- `{key}`" not in page, (rule.code, key)
