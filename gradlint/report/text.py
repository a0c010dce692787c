"""Text reporter: `path:line:col: CODE message` per finding, then a summary line."""

from __future__ import annotations

from collections import Counter

from gradlint.findings import RunResult, Severity

_COLORS = {Severity.ERROR: "\x1b[31m", Severity.WARNING: "\x1b[33m", Severity.INFO: "\x1b[36m"}
_BOLD, _RESET = "\x1b[1m", "\x1b[0m"


def render_text(result: RunResult, *, quiet: bool = False, color: bool = False) -> str:
    lines = []
    findings = result.findings
    for f in findings:
        where = f"{f.path}:{f.span.line}:{f.span.column}:"
        if f.node is not None:
            where += f" [{f.node.op_type} {f.node.name!r} #{f.node.index}]"
        code = f.code
        if color:
            where = f"{_BOLD}{where}{_RESET}"
            code = f"{_COLORS[f.severity]}{code}{_RESET}"
        fixable = " [*]" if f.fix is not None and f.fix.safe else ""
        lines.append(f"{where} {code}{fixable} {f.message}")
    if not quiet:
        checked = sum(1 for r in result.files if r.skipped is None)
        if findings:
            by_sev = Counter(str(f.severity) for f in findings)
            detail = ", ".join(f"{by_sev[s]} {s}" for s in ("error", "warning", "info") if by_sev[s])
            n = len(findings)
            lines.append(f"Found {n} finding{'s' if n != 1 else ''} ({detail}) in {checked} file{'s' if checked != 1 else ''}.")
            fixable = sum(1 for f in findings if f.fix is not None and f.fix.safe)
            if fixable:
                lines.append(f"[*] {fixable} fixable with `gradlint check --fix`.")
        else:
            lines.append(f"All checks passed ({checked} file{'s' if checked != 1 else ''} checked).")
    return "\n".join(lines) + ("\n" if lines else "")
