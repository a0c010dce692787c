"""Goldens for whole-run outputs: text, JSON, SARIF and GitHub of fixtures/cli/example, and of
the hand-built findings. `GRADLINT_BLESS=1 pytest tests/test_report_golden.py` rewrites them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gradlint.report import json as json_report
from gradlint.report import render
from gradlint.report.sarif import render_sarif
from tests.cli_helpers import gradlint
from tests.conftest import FIXTURES
from tests.report_samples import CWD, sample_rules, sample_result

EXAMPLE = FIXTURES / "cli" / "example"
GOLDENS = FIXTURES / "cli" / "goldens"
EXTENSIONS = {"text": "txt", "full": "txt", "json": "json", "sarif": "sarif", "github": "txt"}


def normalise(text: str, fmt: str, root: Path | str) -> str:
    """Keep machine-specific paths and gradlint's version out of the goldens."""
    root = Path(root)
    text = text.replace(root.as_uri(), "file:///<ROOT>").replace(str(root), "<ROOT>")
    if fmt == "sarif":
        doc = json.loads(text)
        driver = doc["runs"][0]["tool"]["driver"]
        driver["version"] = driver["semanticVersion"] = "<VERSION>"
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    return text


def assert_golden(name: str, actual: str) -> None:
    path = GOLDENS / name
    if os.environ.get("GRADLINT_BLESS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.is_file(), f"{path} is missing: run GRADLINT_BLESS=1 pytest {__file__}"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{name} differs from its golden (re-bless with GRADLINT_BLESS=1 if intended)"


@pytest.mark.parametrize("fmt", ["text", "full", "json", "sarif", "github"])
def test_example_run(fmt):
    proc = gradlint("check", "--format", fmt, cwd=EXAMPLE)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""
    assert_golden(f"example.{fmt}.{EXTENSIONS[fmt]}", normalise(proc.stdout, fmt, EXAMPLE))


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github"])
def test_hand_built_findings(fmt):
    if fmt == "json":
        out = json_report.render_json(sample_result(), cwd=CWD, rules=sample_rules())
    elif fmt == "sarif":
        out = render_sarif(sample_result(), cwd=CWD, rules=sample_rules())
    else:
        out = render(fmt, sample_result(), rules=sample_rules())
    assert_golden(f"handbuilt.{fmt}.{EXTENSIONS[fmt]}", normalise(out, fmt, CWD))


def test_example_expectations_match_the_text_golden():
    # The `# expect: GL001` comments and the golden must agree on which lines are reported
    # (the excluded and per-file-ignored files expect GL001 only when checked without the
    # example's pyproject.toml).
    reported = set()
    for line in (GOLDENS / "example.text.txt").read_text().splitlines():
        if ": GL" in line:
            path, row = line.split(":")[:2]
            reported.add((path, int(row)))
    expected = set()
    for path in EXAMPLE.rglob("*.py"):
        rel = path.relative_to(EXAMPLE).as_posix()
        if rel.startswith(("generated/", "legacy/")):
            continue
        for number, text in enumerate(path.read_bytes().decode("latin-1").splitlines(), start=1):
            if "# expect: GL001" in text:
                expected.add((rel, number))
    assert reported == expected
