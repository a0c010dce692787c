"""Text reporter: `path:line:col: CODE message` per finding, then a summary line."""

from __future__ import annotations

from collections import Counter

from gradlint.findings import Finding, RunResult, Severity

_COLORS = {Severity.ERROR: "\x1b[31m", Severity.WARNING: "\x1b[33m", Severity.INFO: "\x1b[36m"}
_BOLD, _RESET = "\x1b[1m", "\x1b[0m"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 or word == 'info' else 's'}"


def finding_line(f: Finding, *, color: bool = False) -> str:
    where = f"{f.path}:{f.span.line}:{f.span.column}:"
    code = f.code
    if color:
        where = f"{_BOLD}{where}{_RESET}"
        code = f"{_BOLD}{_COLORS[f.severity]}{code}{_RESET}"
    # `[*]` marks what `--fix` repairs, as ruff does; unsafe fixes need `--unsafe-fixes`.
    marker = " [*]" if f.fix is not None and f.fix.safe else ""
    message = f.message
    if f.node is not None:
        # Kept after the message so the line stays `path:line:col: CODE ...` for problem matchers.
        message += f" (node {f.node.name!r}, {f.node.op_type} #{f.node.index})"
    # A multi-line message keeps its later lines indented under the finding, so that every
    # line that starts at column 0 is a finding or the summary.
    message = message.replace("\r\n", "\n").replace("\n", "\n    ")
    return f"{where} {code}{marker} {message}"


def summary_lines(result: RunResult, findings: list[Finding]) -> list[str]:
    # A file gradlint failed on (exit 2) was not checked: never count it, never say "passed".
    failed = sum(1 for r in result.files if r.internal_error)
    checked = sum(1 for r in result.files if r.skipped is None and not r.internal_error)
    skipped = sum(1 for r in result.files if r.skipped is not None)
    files = _plural(checked, "file")
    tail = f" ({_plural(skipped, 'path')} skipped)" if skipped else ""
    not_checked = [f"{_plural(failed, 'file')} could not be checked (internal error)."] if failed else []
    if not findings:
        if failed:
            return [f"No findings ({files} checked){tail}.", *not_checked]
        return [f"All checks passed ({files} checked){tail}."]
    by_sev = Counter(str(f.severity) for f in findings)
    detail = ", ".join(_plural(by_sev[s], s) for s in ("error", "warning", "info") if by_sev[s])
    lines = [f"Found {_plural(len(findings), 'finding')} ({detail}) in {files}{tail}."]
    safe = sum(1 for f in findings if f.fix is not None and f.fix.safe)
    unsafe = sum(1 for f in findings if f.fix is not None and not f.fix.safe)
    if safe:
        lines.append(f"[*] {safe} fixable with `gradlint check --fix`.")
    if unsafe:
        lines.append(f"{unsafe} more fixable with `gradlint check --fix --unsafe-fixes`.")
    return lines + not_checked


def render_text(result: RunResult, *, quiet: bool = False, color: bool = False) -> str:
    findings = result.findings
    lines = [finding_line(f, color=color) for f in findings]
    if not quiet:
        lines.extend(summary_lines(result, findings))
    return "".join(line + "\n" for line in lines)
