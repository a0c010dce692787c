"""The README stays true: its rules table matches the registry, and CI runs its test command."""

from __future__ import annotations

import re

from gradlint.docs import readme_rules_table
from tests.conftest import ROOT


def test_readme_rules_table_is_current():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- rules-table -->\n(.*?)<!-- /rules-table -->", text, re.S)
    assert m, "README.md lost its rules-table markers"
    assert m.group(1) == readme_rules_table(), "regenerate with gradlint.docs.readme_rules_table()"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    assert len(blocks) >= 2, "the README starts with its two set-up commands"
    assert blocks[1].strip() in ci
