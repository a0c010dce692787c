"""Applying fixes: text edits from findings, re-parse check, rounds until stable, atomic writes, diffs.

Fixes are plain text edits at (line, column) positions, so everything the edits do not touch —
formatting, comments, import aliases, line endings, encoding — stays byte for byte. A round
applies every non-overlapping fix; a fix whose result does not parse is dropped and reported.
When the caller gives a way to re-check text, rounds repeat until no fix is left (one fix can
reveal another: moving a clip before `scaler.step()` makes it need `unscale_()`), at most
MAX_ROUNDS times.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from gradlint.findings import Edit, FileResult, Finding, RunResult

MAX_ROUNDS = 10

Recheck = Callable[[str], list[Finding]]


@dataclass
class FixOutcome:
    diff: str = ""
    problems: list[str] = field(default_factory=list)
    remaining: RunResult = field(default_factory=RunResult)
    fixed: int = 0
    # What was fixed, every round included (`--show-fixes` lists them).
    fixed_findings: list[Finding] = field(default_factory=list)


def _offsets(text: str) -> list[int]:
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _index(starts: list[int], line: int, column: int) -> int:
    # Columns are 1-based character offsets within the line, as libcst reports them (+1).
    if not 1 <= line <= len(starts):
        raise ValueError(f"edit position {line}:{column} is outside the file")
    return starts[line - 1] + column - 1


def apply_edits(source: str, edits: list[Edit] | tuple[Edit, ...]) -> str:
    """Apply non-overlapping edits; raises ValueError if two overlap or one is outside the text."""
    starts = _offsets(source)
    spans = sorted(
        ((_index(starts, e.span.line, e.span.column), _index(starts, e.span.end_line, e.span.end_column), e.content) for e in edits),
        key=lambda t: (t[0], t[1]),
    )
    out, pos = [], 0
    for start, end, content in spans:
        if start < pos or end < start:
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


def _newline(source: str) -> str:
    return "\r\n" if "\r\n" in source else "\n"


def _with_newline(edits: tuple[Edit, ...], newline: str) -> list[Edit]:
    if newline == "\n":
        return list(edits)
    # rules write "\n"; a CRLF file keeps CRLF
    return [replace(e, content=e.content.replace("\r\n", "\n").replace("\n", newline)) for e in edits]


def _where(f: Finding) -> str:
    return f"{f.path}:{f.span.line}:{f.span.column}: {f.code}"


def fix_source(source: str, findings: list[Finding], unsafe: bool = False) -> tuple[str, list[Finding], list[Finding]]:
    """One round: (new source, applied findings, skipped findings).

    Fixes whose edits overlap an earlier one are skipped (the next round gets them). If the
    combined result does not parse, fixes are tried one by one and only those that keep the
    file parseable stay; the others are skipped.
    """
    newline = _newline(source)
    candidates = [f for f in findings if f.fix is not None and (f.fix.safe or unsafe)]
    taken: list[Edit] = []
    chosen: list[Finding] = []
    skipped: list[Finding] = []
    for f in candidates:
        assert f.fix is not None
        trial = taken + _with_newline(f.fix.edits, newline)
        try:
            apply_edits(source, trial)
        except ValueError:
            skipped.append(f)
            continue
        taken = trial
        chosen.append(f)
    if not chosen:
        return source, [], skipped
    new = apply_edits(source, taken)
    if reparses(new):
        return new, chosen, skipped
    # Find the culprits: keep each fix only if the text still parses with it.
    text_edits: list[Edit] = []
    applied: list[Finding] = []
    for f in chosen:
        assert f.fix is not None
        trial = text_edits + _with_newline(f.fix.edits, newline)
        if reparses(apply_edits(source, trial)):
            text_edits = trial
            applied.append(f)
        else:
            skipped.append(f)
    return (apply_edits(source, text_edits) if applied else source), applied, skipped


def fix_text(source: str, findings: list[Finding], *, unsafe: bool = False,
             recheck: Recheck | None = None, applied_out: list[Finding] | None = None) -> tuple[str, int, list[str]]:
    """Fix until stable: (new text, number of fixes applied, problems). Without `recheck`
    only the given findings' fixes are applied (one round). `applied_out` receives the
    findings whose fixes were applied."""
    text = source
    applied_total = 0
    problems: list[str] = []
    broken: set[tuple[str, str]] = set()
    current = findings
    for round_number in range(MAX_ROUNDS + 1):
        if round_number == MAX_ROUNDS:
            left = [f for f in current if f.fix is not None and (f.fix.safe or unsafe)]
            if left:
                problems.append(f"{_where(left[0])}: fixes did not settle after {MAX_ROUNDS} rounds; stopped")
            break
        fixable = [f for f in current if f.fix is not None and (f.fix.safe or unsafe)
                   and (f.code, f.message) not in broken]
        if not fixable:
            break
        new, applied, skipped = fix_source(text, fixable, unsafe)
        for f in skipped:
            # overlapping fixes come back next round; a fix that breaks the parse is dropped
            assert f.fix is not None
            try:
                alone = apply_edits(text, _with_newline(f.fix.edits, _newline(text)))
            except ValueError:
                alone = None
            if alone is not None and not reparses(alone):
                problems.append(f"{_where(f)} fix dropped: the fixed file would not parse")
                broken.add((f.code, f.message))
        if new == text:
            break
        text = new
        applied_total += len(applied)
        if applied_out is not None:
            applied_out.extend(applied)
        if recheck is None:
            break
        current = recheck(text)
    return text, applied_total, problems


def write_atomic(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Temporary file in the same folder, then rename: a crash never leaves half a file. Mode kept."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".gradlint-tmp")
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _rechecker(display: str, config) -> Recheck:
    """Re-run the selected rules on fixed text, in memory (this file alone: enough for the
    fixes, which never depend on other files)."""
    from gradlint.api import RunIndex, run_rules
    from gradlint.registry import load_rules
    from gradlint.source import extract_facts, parse

    rules = load_rules()
    enabled = config.enabled_codes() | {c for c, r in rules.items() if r.always_on}
    root = Path(config.root).resolve()
    try:
        relpath = Path(display).resolve().relative_to(root).as_posix()
    except ValueError:
        relpath = Path(display).as_posix()

    def run(text: str) -> list[Finding]:
        try:
            facts = extract_facts(parse(display, text))
        except Exception:
            return []
        return list(run_rules(facts, config, RunIndex.build([facts]), rules, enabled, relpath).findings)

    return run


def apply_fixes(result: RunResult, *, write: bool, unsafe: bool = False, config=None) -> FixOutcome:
    """Fix every file of a run. With write=False only the diff is produced. With a config, each
    file is re-checked after each round and fixed until stable."""
    from gradlint.source import decode

    outcome = FixOutcome()
    files: list[FileResult] = []
    for r in result.files:
        fixable = [f for f in r.findings if f.fix is not None and (f.fix.safe or unsafe)]
        if not fixable:
            files.append(r)
            continue
        if r.path.endswith(".ipynb") and config is not None:
            files.append(_fix_notebook_file(r, outcome, write=write, unsafe=unsafe, config=config))
            continue
        path = Path(r.path)
        try:
            raw = path.read_bytes()
            source = decode(raw)
            import io
            import tokenize

            encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        except (OSError, UnicodeDecodeError, SyntaxError, LookupError) as exc:
            outcome.problems.append(f"{r.path}: cannot fix: {exc}")
            files.append(r)
            continue
        recheck = _rechecker(r.path, config) if config is not None else None
        applied_findings: list[Finding] = []
        new, applied, problems = fix_text(source, fixable, unsafe=unsafe, recheck=recheck, applied_out=applied_findings)
        outcome.problems.extend(problems)
        if new == source:
            files.append(r)
            continue
        outcome.diff += "".join(difflib.unified_diff(
            source.splitlines(keepends=True), new.splitlines(keepends=True),
            fromfile=f"a/{r.path}", tofile=f"b/{r.path}"))
        if not write:
            files.append(r)
            continue
        try:
            write_atomic(path, new, encoding)
        except OSError as exc:
            outcome.problems.append(f"{r.path}: cannot write fix: {exc}")
            files.append(r)
            continue
        outcome.fixed += applied
        outcome.fixed_findings.extend(applied_findings)
        remaining = recheck(new) if recheck is not None else [f for f in r.findings if f.fix is None]
        files.append(replace(r, findings=tuple(sorted(remaining, key=Finding.sort_key)), fixed=applied))
    outcome.remaining = RunResult(files=files)
    return outcome


# Notebooks (gradlint/notebook.py): the fixer works on the virtual file of the code cells, and
# the result is split back into cells and written with the notebook's own JSON layout.

def fix_notebook_text(raw: bytes, display: str, config, *, unsafe: bool = False
                      ) -> tuple[str | None, list[Finding], list[str]]:
    """(the fixed notebook's text or None when nothing changed, fixed findings, problems)."""
    from gradlint.notebook import Notebook, NotebookError, virtual_source, write_back

    try:
        nb = Notebook.parse(raw)
    except NotebookError as exc:
        return None, [], [f"{display}: cannot fix: {exc}"]
    virtual, _cells = virtual_source(nb)
    recheck = _rechecker(display, config)
    applied: list[Finding] = []
    new, _count, problems = fix_text(virtual, recheck(virtual), unsafe=unsafe, recheck=recheck, applied_out=applied)
    if new == virtual:
        return None, [], problems
    try:
        return write_back(nb, new), applied, problems
    except NotebookError as exc:
        return None, [], problems + [f"{display}: fixes not applied: {exc}"]


def _fix_notebook_file(r: FileResult, outcome: FixOutcome, *, write: bool, unsafe: bool, config) -> FileResult:
    from gradlint.api import check_text

    path = Path(r.path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        outcome.problems.append(f"{r.path}: cannot fix: {exc}")
        return r
    new, applied, problems = fix_notebook_text(raw, r.path, config, unsafe=unsafe)
    outcome.problems.extend(problems)
    if new is None:
        return r
    old = raw.decode("utf-8-sig")
    outcome.diff += "".join(difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=f"a/{r.path}", tofile=f"b/{r.path}"))
    if not write:
        return r
    try:
        write_atomic(path, new)
    except OSError as exc:
        outcome.problems.append(f"{r.path}: cannot write fix: {exc}")
        return r
    outcome.fixed += len(applied)
    outcome.fixed_findings.extend(replace(f, path=r.path) for f in applied)
    (fresh,) = check_text(r.path, new.encode("utf-8"), config).files
    return replace(fresh, fixed=len(applied))


def fix_stdin(display: str, data: bytes, result: RunResult, config, *, unsafe: bool = False) -> tuple[bytes, FixOutcome]:
    """`--stdin-filename PATH --fix`: (the fixed content, in its own encoding; the outcome, with
    what remains from a fresh check of the fixed content)."""
    import io
    import tokenize

    from gradlint.api import check_text
    from gradlint.source import decode

    outcome = FixOutcome(remaining=result)
    if display.endswith(".ipynb"):
        new_text, applied, problems = fix_notebook_text(data, display, config, unsafe=unsafe)
        outcome.problems.extend(problems)
        if new_text is None:
            return data, outcome
        old_text, new_bytes = data.decode("utf-8-sig"), new_text.encode("utf-8")
    else:
        try:
            source = decode(data)
            encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        except (UnicodeDecodeError, SyntaxError, LookupError) as exc:
            outcome.problems.append(f"{display}: cannot fix: {exc}")
            return data, outcome
        applied = []
        findings = [f for r in result.files for f in r.findings]
        new_text, _count, problems = fix_text(source, findings, unsafe=unsafe, recheck=_rechecker(display, config),
                                              applied_out=applied)
        outcome.problems.extend(problems)
        if new_text == source:
            return data, outcome
        old_text = source
        # A BOM read is a BOM written back (decode dropped it).
        new_bytes = (b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b"") + new_text.encode(
            "utf-8" if encoding == "utf-8-sig" else encoding)
    outcome.diff = "".join(difflib.unified_diff(
        old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
        fromfile=f"a/{display}", tofile=f"b/{display}"))
    outcome.fixed, outcome.fixed_findings = len(applied), applied
    outcome.remaining = check_text(display, new_bytes, config)
    return new_bytes, outcome
