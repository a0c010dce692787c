"""Applying fixes: text edits from findings, re-parse check, atomic writes, unified diffs."""

from __future__ import annotations

import difflib
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from gradlint.findings import Edit, FileResult, Finding, RunResult


@dataclass
class FixOutcome:
    diff: str = ""
    problems: list[str] = field(default_factory=list)
    remaining: RunResult = field(default_factory=RunResult)
    fixed: int = 0


def _offsets(text: str) -> list[int]:
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _index(starts: list[int], line: int, column: int) -> int:
    # Columns are 1-based character offsets within the line, as libcst reports them (+1).
    return starts[line - 1] + column - 1


def apply_edits(source: str, edits: list[Edit] | tuple[Edit, ...]) -> str:
    """Apply non-overlapping edits; raises ValueError if two overlap."""
    starts = _offsets(source)
    spans = sorted(
        ((_index(starts, e.span.line, e.span.column), _index(starts, e.span.end_line, e.span.end_column), e.content) for e in edits),
        key=lambda t: (t[0], t[1]),
    )
    out, pos = [], 0
    for start, end, content in spans:
        if start < pos:
            raise ValueError("overlapping edits")
        out.append(source[pos:start])
        out.append(content)
        pos = end
    out.append(source[pos:])
    return "".join(out)


def reparses(text: str) -> bool:
    import libcst as cst

    try:
        cst.parse_module(text)
    except Exception:
        return False
    return True


def fix_source(source: str, findings: list[Finding], unsafe: bool = False) -> tuple[str, list[Finding], list[Finding]]:
    """(new source, applied findings, skipped findings). Fixes whose edits overlap an earlier one
    wait for the next round; each round's result must re-parse or the round's fixes are dropped."""
    applied: list[Finding] = []
    skipped: list[Finding] = []
    text = source
    candidates = [f for f in findings if f.fix is not None and (f.fix.safe or unsafe)]
    taken: list[Edit] = []
    chosen: list[Finding] = []
    for f in candidates:
        assert f.fix is not None
        trial = taken + list(f.fix.edits)
        try:
            apply_edits(source, trial)
        except ValueError:
            skipped.append(f)
            continue
        taken = trial
        chosen.append(f)
    if chosen:
        new = apply_edits(source, taken)
        if reparses(new):
            text = new
            applied = chosen
        else:
            skipped.extend(chosen)
    return text, applied, skipped


def write_atomic(path: Path, text: str) -> None:
    """Temporary file in the same folder, then rename: a crash never leaves half a file. Mode kept."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".gradlint-tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def apply_fixes(result: RunResult, *, write: bool, unsafe: bool = False) -> FixOutcome:
    """Fix every file of a run. With write=False only the diff is produced."""
    outcome = FixOutcome()
    files: list[FileResult] = []
    for r in result.files:
        fixable = [f for f in r.findings if f.fix is not None and (f.fix.safe or unsafe)]
        if not fixable:
            files.append(r)
            continue
        path = Path(r.path)
        try:
            raw = path.read_bytes()
            source = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            outcome.problems.append(f"{r.path}: cannot fix: {exc}")
            files.append(r)
            continue
        new, applied, skipped = fix_source(source, fixable, unsafe)
        if skipped and not applied:
            outcome.problems.append(f"{r.path}: {len(skipped)} fix(es) not applied (they overlap or the result does not parse)")
        if new != source:
            outcome.diff += "".join(difflib.unified_diff(
                source.splitlines(keepends=True), new.splitlines(keepends=True),
                fromfile=f"a/{r.path}", tofile=f"b/{r.path}"))
            if write:
                try:
                    write_atomic(path, new)
                except OSError as exc:
                    outcome.problems.append(f"{r.path}: cannot write fix: {exc}")
                    files.append(r)
                    continue
        done = set(map(id, applied)) if write else set()
        outcome.fixed += len(applied) if write else 0
        files.append(replace(r, findings=tuple(f for f in r.findings if id(f) not in done), fixed=len(done)))
    outcome.remaining = RunResult(files=files)
    return outcome
