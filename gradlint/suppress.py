"""Suppression comments: `# noqa`, `# noqa: GL101`, `# gradlint: ignore[GL101]` or
`# gradlint: ignore[vanishing-gradient]` on a finding's line; and `--add-noqa`, which writes them.

Rule names belong in gradlint's own comment: ruff reads every `# noqa:` and warns about a name
it cannot parse as a code. `# noqa: vanishing-gradient` still suppresses that rule (it did
before), but it is deprecated: write `# gradlint: ignore[vanishing-gradient]`.
"""

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
_CODE = r"(?:[A-Za-z]+[0-9]+|[a-z][a-z0-9]*(?:-[a-z0-9]+)+)"
_NOQA = re.compile(r"#\s*noqa(?![\w-])(?::\s*(?P<codes>" + _CODE + r"(?:[,\s]+" + _CODE + r")*))?", re.IGNORECASE)
_IGNORE = re.compile(r"#\s*gradlint:\s*ignore(?:\[(?P<codes>[A-Za-z0-9,\s-]*)\]|(?![\w-]))", re.IGNORECASE)


def _code(word: str) -> str:
    """A code as written (GL101), or the code of a rule named in kebab-case."""
    if "-" in word:
        from gradlint.registry import get_rule

        rule = get_rule(word)
        if rule is not None:
            return rule.code
    return word.upper()


def _codes(text: str | None) -> frozenset[str]:
    if text is None:
        return ALL
    codes = frozenset(_code(c.strip()) for c in re.split(r"[,\s]+", text) if c.strip())
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


def _uncommentable_lines(source: str) -> tuple[set[int], dict[int, int]]:
    """Lines whose end lies inside a string or a backslash continuation (no comment can go
    there), and the column where each line's comment starts, for lines that have one."""
    blocked: set[int] = set()
    comments: dict[int, int] = {}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source, newline=None).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return set(range(1, len(split_lines(source)) + 2)), comments
    for tok in tokens:
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.start[1]
        elif tok.start[0] != tok.end[0] and tok.type not in (tokenize.NL, tokenize.NEWLINE):
            blocked.update(range(tok.start[0], tok.end[0]))
    for number, line in enumerate(split_lines(source), start=1):
        if line.rstrip().endswith("\\"):
            blocked.add(number)
    return blocked, comments


def add_noqa(source: str, findings: Iterable[Finding]) -> tuple[str, int, list[Finding]]:
    """`--add-noqa`: a `# noqa: CODE` on each finding's line, merged into a `# noqa:` already
    there. Returns (new source, directives added or extended, findings left without one because
    their line cannot hold a comment)."""
    lines = split_lines(source, keepends=True)
    table = suppressions(source)
    blocked, comments = _uncommentable_lines(source)
    wanted: dict[int, list[str]] = {}
    left: list[Finding] = []
    for f in findings:
        if is_suppressed(f, table) or not 1 <= f.span.line <= len(lines):
            continue
        if f.span.line in blocked:
            left.append(f)
            continue
        codes = wanted.setdefault(f.span.line, [])
        if f.code not in codes:
            codes.append(f.code)
    for number, codes in wanted.items():
        line = lines[number - 1]
        body = line.rstrip("\r\n")
        ending = line[len(body):]
        # (in the line's comment only: a "# noqa: E501" inside a string on that line was extended,
        # which changed the string and suppressed nothing)
        existing = _NOQA.search(body, comments[number]) if number in comments else None
        if existing is not None and existing.group("codes"):
            merged = existing.group("codes") + ", " + ", ".join(sorted(codes))
            body = body[: existing.start("codes")] + merged + body[existing.end("codes"):]
        else:
            body = body.rstrip() + f"  # noqa: {', '.join(sorted(codes))}"
        lines[number - 1] = body + ending
    return "".join(lines), len(wanted), left
