"""Reporters: one pure renderer per output format, each RunResult -> str."""

from __future__ import annotations

from typing import Any, Mapping

from gradlint.findings import RuleInfo, RunResult

# `text` is `concise` (one line per finding); `full` adds the source line, a caret and the fix.
FORMATS = ("text", "concise", "full", "json", "sarif", "github")


def render(fmt: str, result: RunResult, *, quiet: bool = False, color: bool = False,
           rules: Mapping[str, RuleInfo] | None = None, **text_options: Any) -> str:
    """rules: what to say of each rule code (registry.describe), for the JSON url and SARIF's
    rule descriptors; a code not in it is described from its findings. text_options (text formats
    only): show_fixes, fixed, source_lines; see report.text."""
    if fmt in ("text", "concise", "full"):
        from gradlint.report.text import render_text

        return render_text(result, quiet=quiet, color=color, full=fmt == "full", **text_options)
    if fmt == "json":
        from gradlint.report.json import render_json

        return render_json(result, rules=rules)
    if fmt == "sarif":
        from gradlint.report.sarif import render_sarif

        return render_sarif(result, rules=rules)
    if fmt == "github":
        from gradlint.report.github import render_github

        return render_github(result)
    raise ValueError(f"unknown format {fmt!r}")
