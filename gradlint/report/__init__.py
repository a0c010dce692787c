"""Reporters: one pure renderer per output format, each RunResult -> str."""

from __future__ import annotations

from gradlint.findings import RunResult


def render(fmt: str, result: RunResult, *, quiet: bool = False, color: bool = False) -> str:
    if fmt == "text":
        from gradlint.report.text import render_text

        return render_text(result, quiet=quiet, color=color)
    if fmt == "json":
        from gradlint.report.json import render_json

        return render_json(result)
    if fmt == "sarif":
        from gradlint.report.sarif import render_sarif

        return render_sarif(result)
    if fmt == "github":
        from gradlint.report.github import render_github

        return render_github(result)
    raise ValueError(f"unknown format {fmt!r}")
