"""Text reporters for people: concise (`path:line:col: CODE message`), full (plus the source line
and a caret), the summary, and `--statistics`. Everything printed is one line per finding and
free of control characters, whatever the file names and messages hold."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Callable

from gradlint.findings import Finding, RunResult, Severity

_COLORS = {Severity.ERROR: "\x1b[31m", Severity.WARNING: "\x1b[33m", Severity.INFO: "\x1b[36m"}
_BOLD, _RESET = "\x1b[1m", "\x1b[0m"
# A message longer than this is cut in text output (JSON and SARIF keep it whole): a finding is
# read on one terminal line or two, not scrolled through.
MAX_MESSAGE = 300
# C0/C1 controls, line separators, and lone surrogates (undecodable bytes in a file name).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}
MISSING = "no such file or directory"

# (Finding) -> the lines of the file or notebook cell the finding points into, or None.
SourceLines = Callable[[Finding], "list[str] | None"]


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 or word == 'info' else 's'}"


def escape(text: str) -> str:
    """Control characters as escapes: a file named `a\\nb.py` or `\\x1b[2J.py` must neither break
    the one-line-per-finding shape nor drive the terminal."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"
                                              if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}"), text)


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """A message on one line: a multi-line expression quoted from the source is joined with
    single spaces, then escaped and cut to `limit` characters."""
    text = re.sub(r"([(\[{])[ \t]*(?:\r\n|\r|\n)\s*", r"\1", message)
    text = re.sub(r",?[ \t]*(?:\r\n|\r|\n)\s*([)\]}])", r"\1", text)
    text = escape(re.sub(r"[ \t]*(?:\r\n|\r|\n)\s*", " ", text))
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def location(f: Finding) -> str:
    """`path:line:col`, or `path:cell N:line:col` in a notebook."""
    cell = f"cell {f.cell}:" if f.cell is not None else ""
    return f"{escape(f.path)}:{cell}{f.span.line}:{f.span.column}"


def finding_line(f: Finding, *, color: bool = False) -> str:
    where = location(f) + ":"
    code = f.code
    if color:
        where = f"{_BOLD}{where}{_RESET}"
        code = f"{_BOLD}{_COLORS[f.severity]}{code}{_RESET}"
    # `[*]` marks what `--fix` repairs, as ruff does; unsafe fixes need `--unsafe-fixes`.
    marker = " [*]" if f.fix is not None and f.fix.safe else ""
    message = one_line(f.message)
    if f.node is not None:
        # Kept after the message so the line stays `path:line:col: CODE ...` for problem matchers.
        source = f", from {escape(f.node.source)}" if f.node.source else ""
        message += f" (node {escape(repr(f.node.name))}, {escape(f.node.op_type)} #{f.node.index}{source})"
    return f"{where} {code}{marker} {message}"


def fix_help(f: Finding) -> str | None:
    title = f.fix.title if f.fix is not None else f.fix_title
    if not title:
        return None
    unsafe = " (unsafe fix: needs --unsafe-fixes)" if f.fix is not None and not f.fix.safe else ""
    return one_line(title) + unsafe


def excerpt(f: Finding, lines: list[str] | None) -> list[str]:
    """The finding's source line with a caret under its columns, as ruff's full format shows it."""
    if f.node is not None or not lines or not 1 <= f.span.line <= len(lines):
        return []
    raw = lines[f.span.line - 1].rstrip("\r\n")
    col = max(1, min(f.span.column, len(raw) + 1))
    end = f.span.end_column if f.span.end_line == f.span.line else len(raw) + 1
    end = max(col + 1, min(end, len(raw) + 1))
    # Tabs and control characters change width when shown: measure the caret on the shown text.
    before = escape(raw[: col - 1].expandtabs(4))
    marked = escape(raw[col - 1 : end - 1].expandtabs(4)) or " "
    shown = escape(raw.expandtabs(4))
    number = str(f.span.line)
    pad = " " * len(number)
    return [f"{pad} |", f"{number} | {shown}", f"{pad} | {' ' * _width(before)}{'^' * _width(marked)} {f.code}", f"{pad} |"]


def _width(text: str) -> int:
    """Columns a terminal gives the text: two for a wide character (CJK, fullwidth forms), none
    for a combining mark."""
    import unicodedata

    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def summary_lines(result: RunResult, findings: list[Finding], *, fixed: int = 0) -> list[str]:
    # A file gradlint failed on (exit 2) was not checked: never count it, never say "passed".
    failed = sum(1 for r in result.files if r.internal_error)
    checked = sum(1 for r in result.files if r.skipped is None and not r.internal_error)
    skipped = sum(1 for r in result.files if r.skipped is not None)
    # a path named that does not exist or cannot be read (exit 2, said on stderr)
    errors = any(r.skipped == MISSING or getattr(r, "error", False) for r in result.files)
    missing = sum(1 for r in result.files if r.skipped == MISSING)
    # (a path that does not exist was not "skipped": it is an error, said so on stderr)
    tail = "".join(f" ({plural(n, 'path')} {what})" for n, what in ((missing, "missing"), (skipped - missing, "skipped"))
                   if n)
    not_checked = [f"{plural(failed, 'file')} could not be checked (internal error)."] if failed else []
    if not findings:
        if fixed:
            return [f"Found {plural(fixed, 'finding')} ({fixed} fixed, 0 remaining).", *not_checked]
        if failed or (errors and checked):
            return [f"No findings ({plural(checked, 'file')} checked){tail}.", *not_checked]
        if errors:
            return []  # an error (exit 2, said on stderr) and nothing else: never "passed"
        if not checked and skipped:
            # every file skipped (over the size budget...): nothing was checked, nothing passed
            return [f"Nothing checked ({plural(skipped, 'path')} skipped)."]
        return [f"All checks passed ({plural(checked, 'file')} checked){tail}."]
    with_findings = len({f.path for f in findings})
    files = plural(checked, "file") if with_findings == checked else f"{with_findings} of {plural(checked, 'file')}"
    by_sev = Counter(str(f.severity) for f in findings)
    detail = ", ".join(plural(by_sev[s], s) for s in ("error", "warning", "info") if by_sev[s])
    if fixed:
        head = f"Found {plural(fixed + len(findings), 'finding')} ({fixed} fixed, {len(findings)} remaining: {detail})"
    else:
        head = f"Found {plural(len(findings), 'finding')} ({detail})"
    lines = [f"{head} in {files}{tail}."]
    safe = sum(1 for f in findings if f.fix is not None and f.fix.safe)
    unsafe = sum(1 for f in findings if f.fix is not None and not f.fix.safe)
    if safe:
        lines.append(f"[*] {safe} fixable with `gradlint check --fix`.")
    if unsafe:
        lines.append(f"{unsafe} more fixable with `gradlint check --fix --unsafe-fixes`.")
    return lines + not_checked


def render_text(result: RunResult, *, quiet: bool = False, color: bool = False, full: bool = False,
                show_fixes: bool = False, fixed: int = 0, source_lines: SourceLines | None = None) -> str:
    """concise (full=False) or full; `show_fixes` adds each fix's title under its finding."""
    findings = result.findings
    lines: list[str] = []
    for f in findings:
        lines.append(finding_line(f, color=color))
        if full:
            lines.extend(excerpt(f, source_lines(f) if source_lines else None))
        help_text = fix_help(f) if (full or show_fixes) else None
        if help_text:
            lines.append(f"  = help: {help_text}")
        if full:
            lines.append("")
    if not quiet:
        lines.extend(summary_lines(result, findings, fixed=fixed))
    return "".join(line + "\n" for line in lines)


def statistics(result: RunResult, fmt: str = "text") -> str:
    """`--statistics`: findings counted per rule, most frequent first (ruff's layout and JSON keys)."""
    findings = result.findings
    counts = Counter(f.code for f in findings)
    first = {f.code: f for f in reversed(findings)}
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    entries = [{"code": code, "name": first[code].name, "count": n,
                "fixable": any(f.fix is not None and f.fix.safe for f in findings if f.code == code)}
               for code, n in rows]
    if fmt == "json":
        return json.dumps(entries, indent=2) + "\n"
    width = max((len(str(e["count"])) for e in entries), default=1)
    return "".join(f"{e['count']:>{width}}\t{e['code']}\t{'[*]' if e['fixable'] else '   '} {e['name']}\n"
                   for e in entries)
