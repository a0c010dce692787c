"""Suppression comments: `# noqa`, `# noqa: GL101`, `# gradlint: ignore[GL101]` on a finding's line."""

from __future__ import annotations

import io
import re
import tokenize
from typing import Iterable

from gradlint.findings import Finding
from gradlint.text import split_lines

ALL = frozenset({"*"})
# `noqa` must end there (`# noqa-ish`, `# noqanything` are prose, not directives); the codes are
# code-shaped words, so `# noqa: GL101 because ...` reads GL101 only.
_NOQA = re.compile(r"#\s*noqa(?![\w-])(?::\s*(?P<codes>[A-Za-z]+[0-9]+(?:[,\s]+[A-Za-z]+[0-9]+)*))?", re.IGNORECASE)
_IGNORE = re.compile(r"#\s*gradlint:\s*ignore(?:\[(?P<codes>[A-Za-z0-9,\s]*)\]|(?![\w-]))", re.IGNORECASE)


def _codes(text: str | None) -> frozenset[str]:
    if text is None:
        return ALL
    codes = frozenset(c.strip().upper() for c in re.split(r"[,\s]+", text) if c.strip())
    return codes or ALL


def parse_comment(comment: str) -> frozenset[str] | None:
    """The codes a comment suppresses ({'*'} for all), or None when it suppresses nothing."""
    found: set[str] = set()
    hit = False
    for pattern in (_NOQA, _IGNORE):
        for m in pattern.finditer(comment):
            hit = True
            codes = _codes(m.group("codes"))
            # `# noqa: E501` names another tool's codes only: it must not silence ours. A bare
            # `# noqa` silences everything, as in flake8 and ruff.
            found |= codes
    if not hit:
        return None
    return frozenset(found)


def suppressions(source: str) -> dict[int, frozenset[str]]:
    """Line number -> suppressed codes, read from real comments (not from strings)."""
    out: dict[int, frozenset[str]] = {}
    try:
        # universal newlines: a lone \r ends a line for the parser, so it must here too
        tokens = list(tokenize.generate_tokens(io.StringIO(source, newline=None).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        # Fall back to a line scan: a file that does not tokenize still gets its GL001, and a
        # noqa on that line should still work.
        for number, line in enumerate(split_lines(source), start=1):
            if "#" in line:
                codes = parse_comment(line[line.index("#"):])
                if codes is not None:
                    out[number] = codes
        return out
    for tok in tokens:
        if tok.type == tokenize.COMMENT:
            codes = parse_comment(tok.string)
            if codes is not None:
                line = tok.start[0]
                out[line] = out.get(line, frozenset()) | codes
    return out


def is_suppressed(finding: Finding, table: dict[int, frozenset[str]]) -> bool:
    codes = table.get(finding.span.line)
    if not codes:
        return False
    return "*" in codes or finding.code in codes


def apply(findings: Iterable[Finding], source: str | None) -> list[Finding]:
    findings = list(findings)
    if source is None or not findings:
        return findings
    table = suppressions(source)
    return [f for f in findings if not is_suppressed(f, table)]
