"""Applying fixes: text edits from findings, re-parse check, rounds until stable, safe writes, diffs.

Fixes are plain text edits at (line, column) positions, so everything the edits do not touch —
formatting, comments, import aliases, line endings, encoding — stays byte for byte. A round
applies every non-overlapping fix; a fix whose result does not parse is dropped and reported.
When the caller gives a way to re-check text, rounds repeat until no fix is left (one fix can
reveal another: moving a clip before `scaler.step()` makes it need `unscale_()`), at most
MAX_ROUNDS times.
"""

from __future__ import annotations

import ast
import difflib
import io
import re
import tokenize
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from gradlint.files import Refused, check_writable, locked, text_digest
from gradlint.files import replace as replace_file
from gradlint.findings import Edit, FileResult, Finding, RunResult
from gradlint.text import line_starts, offset, split_lines

MAX_ROUNDS = 10
_FIRST_BREAK = re.compile(r"\r\n|\r|\n")

Recheck = Callable[[str], list[Finding]]


@dataclass
class FixOutcome:
    diff: str = ""
    problems: list[str] = field(default_factory=list)
    remaining: RunResult = field(default_factory=RunResult)
    fixed: int = 0
    # What was fixed, every round included (`--show-fixes` lists them). Only what was written.
    fixed_findings: list[Finding] = field(default_factory=list)
    files_fixed: int = 0
    # (path, code, message) of findings whose fix was dropped (the fixed file would not parse):
    # the report after --fix does not call them fixable
    dropped: set[tuple[str, str, str]] = field(default_factory=set)
    # (path, reason) of the files that had fixes and were left as they are
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # files that no longer held what the run analysed (edited, or fixed by another run): the
    # run's findings for them are stale
    changed: list[str] = field(default_factory=list)


def apply_edits(source: str, edits: list[Edit] | tuple[Edit, ...]) -> str:
    """Apply non-overlapping edits; raises ValueError if two overlap or one is outside the text."""
    # Lines as the parser counts them (a form feed above an edit must not move it up a line);
    # columns are 1-based character offsets, as libcst reports them (+1).
    starts = line_starts(source)
    spans = sorted(
        ((offset(starts, e.span.line, e.span.column), offset(starts, e.span.end_line, e.span.end_column), e.content)
         for e in edits),
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
    from gradlint.source import parse_module

    try:
        parse_module(text)
    except Exception:
        return False
    return True


def _newline(source: str) -> str:
    # the file's first line break, as libcst takes it (a file of lone \r keeps them)
    m = _FIRST_BREAK.search(source)
    return m.group() if m else "\n"


def _with_newline(edits: tuple[Edit, ...], newline: str) -> list[Edit]:
    if newline == "\n":
        return list(edits)
    # rules write "\n"; a CRLF (or CR) file keeps its line breaks
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
    new = _same_end(source, apply_edits(source, taken), newline)
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
    return (_same_end(source, apply_edits(source, text_edits), newline) if applied else source), applied, skipped


def _same_end(source: str, new: str, newline: str) -> str:
    """`new`, ending as `source` does: a file without a final line break keeps none (GL202 moving
    a file's last line above the step left the step's line break at the end)."""
    if source and not source.endswith(("\n", "\r")) and new.endswith(newline):
        return new[:-len(newline)]
    return new


def fix_text(source: str, findings: list[Finding], *, unsafe: bool = False,
             recheck: Recheck | None = None, applied_out: list[Finding] | None = None,
             dropped_out: set[tuple[str, str]] | None = None) -> tuple[str, int, list[str]]:
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
                if dropped_out is not None:
                    dropped_out.add((f.code, f.message))
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


def _rechecker(display: str, config, use_cache: bool = True) -> Recheck:
    """Re-run the enabled rules on fixed text, in memory, with names resolved across the project
    as `gradlint check` resolves them (other modules are summarised from disk, through the cache)."""
    from gradlint.api import add_to_index, project_index, relative_path, run_rules
    from gradlint.registry import load_rules
    from gradlint.source import extract_facts, parse

    rules = load_rules()
    relpath = relative_path(display, config)

    def run(text: str) -> list[Finding]:
        try:
            # with CPython's tree, as `check` extracts: the same parse (data tables skipped)
            tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            tree = None
        try:
            facts = extract_facts(parse(display, text, tree), tree)
        except Exception:
            return []
        index, root = project_index([Path(display)], config, use_cache=use_cache)
        add_to_index(index, root, Path(display), facts)
        return list(run_rules(facts, config, index, rules, relpath).findings)

    return run


def apply_fixes(result: RunResult, *, write: bool, unsafe: bool = False, config=None,
                use_cache: bool = True) -> FixOutcome:
    """Fix every file of a run. With write=False only the diff is produced. With a config, each
    file is re-checked after each round and fixed until stable.

    Each file is fixed under its lock (gradlint.files), from the text it holds then. When that
    is not the text the run analysed (`FileResult.analysed`: edited meanwhile, or fixed by
    another run), its findings are stale: with a config the file is checked again and the fresh
    findings are fixed; without one it is skipped. The file is replaced only if it still holds
    what the fixes were computed from. A result without `analysed` (built by hand) vouches that
    its findings are those of the file as it is.
    """
    outcome = FixOutcome()
    files: list[FileResult] = []
    for r in result.files:
        fixable = [f for f in r.findings if f.fix is not None and (f.fix.safe or unsafe)]
        if not fixable:
            files.append(r)
            continue
        try:
            if r.path.endswith(".ipynb") and config is not None:
                done = _fix_notebook_file(r, outcome, write=write, unsafe=unsafe, config=config,
                                          use_cache=use_cache)
            else:
                recheck = _rechecker(r.path, config, use_cache) if config is not None else None
                done = _fix_file(r, fixable, outcome, write=write, unsafe=unsafe, recheck=recheck)
        except Refused as exc:
            outcome.skipped.append((r.path, str(exc)))
            done = None
        except OSError as exc:
            outcome.skipped.append((r.path, f"cannot write it: {exc.strerror or exc}"))
            done = None
        files.append(done or r)
    outcome.remaining = RunResult(files=files)
    return outcome


def _fix_file(r: FileResult, fixable: list[Finding], outcome: FixOutcome, *, write: bool, unsafe: bool,
              recheck: Recheck | None) -> FileResult | None:
    """Fix one file under its lock; the new FileResult when it was written, else None."""
    from gradlint.source import decode

    with locked(r.path) as lk:
        if write:
            check_writable(lk.stat)
        raw = lk.read()
        try:
            source = decode(raw)
            encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        except (UnicodeDecodeError, SyntaxError, LookupError) as exc:
            raise Refused(f"cannot decode it: {exc}") from None
        if r.analysed is not None and text_digest(source) != r.analysed:
            outcome.changed.append(r.path)
            if recheck is None:
                raise Refused("it changed since it was checked")
            fixable = [f for f in recheck(source) if f.fix is not None and (f.fix.safe or unsafe)]
        applied_findings: list[Finding] = []
        dropped: set[tuple[str, str]] = set()
        new, applied, problems = fix_text(source, fixable, unsafe=unsafe, recheck=recheck, applied_out=applied_findings,
                                          dropped_out=dropped)
        outcome.problems.extend(problems)
        outcome.dropped.update((r.path, code, message) for code, message in dropped)
        if new == source:
            return None
        try:
            data = new.encode(encoding)
        except UnicodeEncodeError as exc:
            raise Refused(f"the fixed text cannot be written in its encoding {encoding}: {exc.reason}") from None
        diff = "".join(difflib.unified_diff(
            split_lines(source, keepends=True), split_lines(new, keepends=True),
            fromfile=f"a/{r.path}", tofile=f"b/{r.path}"))
        if not write:
            outcome.diff += diff
            return None
        replace_file(lk, data, expected=raw)
    outcome.diff += diff
    outcome.fixed += applied
    outcome.fixed_findings.extend(applied_findings)
    outcome.files_fixed += 1
    remaining = recheck(new) if recheck is not None else [f for f in r.findings if f.fix is None]
    return replace(r, findings=tuple(sorted(remaining, key=Finding.sort_key)), fixed=applied,
                   analysed=text_digest(new))


# Notebooks (gradlint/notebook.py): the fixer works on the virtual file of the code cells, and
# the result is split back into cells and written with the notebook's own JSON layout.

def fix_notebook_text(raw: bytes, display: str, config, *, unsafe: bool = False, use_cache: bool = True
                      ) -> tuple[str | None, list[Finding], list[str]]:
    """(the fixed notebook's text or None when nothing changed, fixed findings, problems)."""
    from gradlint.notebook import Notebook, NotebookError, virtual_source, write_back

    try:
        nb = Notebook.parse(raw)
    except NotebookError as exc:
        return None, [], [f"{display}: cannot fix: {exc}"]
    virtual, _cells = virtual_source(nb)
    recheck = _rechecker(display, config, use_cache)
    applied: list[Finding] = []
    new, _count, problems = fix_text(virtual, recheck(virtual), unsafe=unsafe, recheck=recheck, applied_out=applied)
    if new == virtual:
        return None, [], problems
    try:
        return write_back(nb, new), applied, problems
    except NotebookError as exc:
        return None, [], problems + [f"{display}: fixes not applied: {exc}"]


def _fix_notebook_file(r: FileResult, outcome: FixOutcome, *, write: bool, unsafe: bool, config,
                       use_cache: bool = True) -> FileResult | None:
    """As _fix_file, for a notebook: its fixes are always computed from what it holds under
    the lock (fix_notebook_text checks the cells again), and it is replaced only over that."""
    from gradlint.api import check_text

    with locked(r.path) as lk:
        if write:
            check_writable(lk.stat)
        raw = lk.read()
        new, applied, problems = fix_notebook_text(raw, r.path, config, unsafe=unsafe, use_cache=use_cache)
        outcome.problems.extend(problems)
        if new is None:
            return None
        old = raw.decode("utf-8-sig")
        diff = "".join(difflib.unified_diff(
            split_lines(old, keepends=True), split_lines(new, keepends=True), fromfile=f"a/{r.path}", tofile=f"b/{r.path}"))
        if not write:
            outcome.diff += diff
            return None
        replace_file(lk, new.encode("utf-8"), expected=raw)
    outcome.diff += diff
    outcome.fixed += len(applied)
    outcome.files_fixed += 1
    outcome.fixed_findings.extend(replace(f, path=r.path) for f in applied)
    (fresh,) = check_text(r.path, new.encode("utf-8"), config, use_cache=use_cache).files
    return replace(fresh, fixed=len(applied))


def fix_stdin(display: str, data: bytes, result: RunResult, config, *, unsafe: bool = False,
              use_cache: bool = True) -> tuple[bytes, FixOutcome]:
    """`--stdin-filename PATH --fix`: (the fixed content, in its own encoding; the outcome, with
    what remains from a fresh check of the fixed content)."""
    from gradlint.api import check_text
    from gradlint.source import decode

    outcome = FixOutcome(remaining=result)
    if display.endswith(".ipynb"):
        new_text, applied, problems = fix_notebook_text(data, display, config, unsafe=unsafe, use_cache=use_cache)
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
        new_text, _count, problems = fix_text(source, findings, unsafe=unsafe, recheck=_rechecker(display, config, use_cache),
                                              applied_out=applied)
        outcome.problems.extend(problems)
        if new_text == source:
            return data, outcome
        old_text = source
        # A BOM read is a BOM written back (decode dropped it).
        new_bytes = (b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b"") + new_text.encode(
            "utf-8" if encoding == "utf-8-sig" else encoding)
    outcome.diff = "".join(difflib.unified_diff(
        split_lines(old_text, keepends=True), split_lines(new_text, keepends=True),
        fromfile=f"a/{display}", tofile=f"b/{display}"))
    outcome.fixed, outcome.fixed_findings = len(applied), applied
    outcome.remaining = check_text(display, new_bytes, config, use_cache=use_cache)
    return new_bytes, outcome
