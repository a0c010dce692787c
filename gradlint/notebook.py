"""Jupyter notebooks: code cells <-> one virtual Python file, so the source front-end and the rules
read ordinary Python, and findings, fixes and suppressions find their way back to cells.

The virtual file is every Python code cell in order, each behind a marker line
(`# gradlint-notebook-cell: N`, N the 1-based index among all the notebook's cells, markdown
included, as ruff counts them). IPython syntax that is not Python is kept out of the parser
without moving a line: a line magic (`%matplotlib inline`), a shell escape (`!pip install x`,
`files = !ls`), a help query (`?obj`, `obj??`) or an autocall escape (`;f a b`, `,f a b`, `/f a`)
that starts a logical line becomes `pass` at its indentation (at its block's where a statement
cannot stand at its own), and a cell that starts with a cell magic (`%%bash`, `%%time`) is left
out whole. A cell whose first line that is not blank is indented is dedented first, as IPython
does (`_dedented`); its findings get their columns back, and its fixes its indentation. After fixes, the virtual file is split again
at the markers and the magics put back, so only the fixed cells change, and the notebook is
written with its own JSON layout (indent, key order, escaping, final newline, CRLF line ends, a
UTF-8 byte order mark). The JSON is written again, not spliced: numbers are written as Python
writes them (`2.50` as `2.5`, `1E-5` as `1e-05`) and of a key given twice the last stays.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gradlint.findings import Edit, FileResult, Finding, SourceSpan
from gradlint.text import split_lines

MARKER = "# gradlint-notebook-cell: {}"
_MARKER = re.compile(r"^# gradlint-notebook-cell: (\d+)$")
_MAGIC_STAND_IN = "pass  # gradlint-notebook-magic {}"
_STAND_IN = re.compile(r"^(\s*)pass  # gradlint-notebook-magic (\d+)$")
# IPython's escapes (IPython.core.inputtransformer2): a logical line that starts with one of
# `% ! ? , ; /` (EscapedCommand: `%%`, `!!` and `??` included), that assigns a magic or a shell
# command (`files = !ls`, `t = %timeit -o f()`), or that ends in `name?` / `name??` (HelpEnd, no
# comment after it). None of them is Python where a logical line starts: `!=`, `%=`, `/=` and `//`
# are other tokens, which IPython does not take for escapes either.
_ESCAPE = re.compile(r"(?!!=|%=|/=|//)[%!?,;/]")
_ASSIGN = re.compile(r"[A-Za-z_][\w.,\s]*=\s*[%!]")
_HELP_END = re.compile(r"%{0,2}(?!\d)[\w*]+(?:\.(?!\d)[\w*]+)*\?\??$")
# What the scan of a line stops at outside a string: a comment, a quote, a bracket, a backslash.
_SIGNIFICANT = re.compile(r"""[#'"()\[\]{}\\]""")
# What ends a string (or escapes the character after it) in the scan of a string's text.
_STRING_END = {q: re.compile(r"\\|" + q) for q in ("'", '"', "'''", '"""')}


class NotebookError(ValueError):
    """The file is not a notebook gradlint can read (invalid JSON, no cells)."""


@dataclass(frozen=True)
class CellSpan:
    """Where one code cell sits in the virtual file: its marker's line and its own line count;
    for a cell IPython dedents (every line indented alike: `_dedented`), the indentation taken
    off, and the lines (1-based) that kept theirs (blank, or not starting with it)."""

    cell: int  # 1-based index among all cells
    marker_line: int
    lines: int
    indent: str = ""
    kept: tuple[int, ...] = ()

    def shift(self, line: int) -> int:
        """Columns the cell's line `line` has before its virtual line's."""
        return len(self.indent) if self.indent and line not in self.kept else 0


@dataclass(frozen=True)
class CellMap:
    cells: tuple[CellSpan, ...]

    def locate(self, line: int) -> tuple[int, int] | None:
        """Virtual line -> (cell, line within the cell), or None on a marker line."""
        for span in self.cells:
            if span.marker_line < line <= span.marker_line + span.lines:
                return span.cell, line - span.marker_line
        return None

    def virtual_line(self, cell: int, line: int) -> int:
        return self.span_of(cell).marker_line + line

    def span_of(self, cell: int) -> CellSpan:
        for span in self.cells:
            if span.cell == cell:
                return span
        raise KeyError(cell)


@dataclass(frozen=True)
class Notebook:
    raw: str
    data: dict[str, Any]
    bom: bool = False  # the file began with a UTF-8 byte order mark (write_back keeps it)

    @classmethod
    def parse(cls, raw: bytes | str) -> "Notebook":
        try:
            text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise NotebookError(f"not a readable notebook: {exc}") from None
        except RecursionError:
            raise NotebookError("not a readable notebook: JSON nested too deeply") from None
        except ValueError as exc:  # (an integer of more digits than Python converts)
            raise NotebookError(f"not a readable notebook: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
            raise NotebookError("not a notebook: no list of cells")
        # what gradlint reads of it has nbformat's types (else an AttributeError or TypeError)
        meta = data.get("metadata") or {}
        if not isinstance(meta, dict) or any(not isinstance(meta.get(k) or {}, dict) for k in ("language_info", "kernelspec")):
            raise NotebookError("not a notebook: its metadata is not nbformat's (objects expected)")
        for index, cell in enumerate(data["cells"], start=1):
            source = cell.get("source", "") if isinstance(cell, dict) else ""
            if not isinstance(source, str) and not (isinstance(source, list) and all(isinstance(x, str) for x in source)):
                raise NotebookError(f"not a notebook: the source of cell {index} is not text or a list of lines")
        return cls(text, data, isinstance(raw, bytes) and raw.startswith(b"\xef\xbb\xbf"))

    @property
    def language(self) -> str:
        meta = self.data.get("metadata") or {}
        info = meta.get("language_info") or {}
        kernel = meta.get("kernelspec") or {}
        name = info.get("name") or kernel.get("language") or "python"
        return str(name).lower()

    def code_cells(self) -> list[tuple[int, str]]:
        """(1-based cell index, source) of the cells that hold Python."""
        out = []
        for index, cell in enumerate(self.data["cells"], start=1):
            if not isinstance(cell, dict) or cell.get("cell_type") != "code":
                continue
            source = _joined(cell.get("source", ""))
            if source.lstrip().startswith("%%"):
                continue  # a cell magic: the cell is another language (bash, html) or IPython's
            out.append((index, source))
        return out


def _joined(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


class _Scan:
    """Where a cell's lines stand as Python reads them: in a string, in brackets, after a
    backslash. Only a line that starts a logical line can be an IPython escape (IPython finds
    them in tokens grouped by logical line): a continuation line that starts with `/` or `%` is
    a division or a formatting, a line of a multi-line string is text."""

    def __init__(self) -> None:
        self.string = ""  # the quote of the string the line ends in (triple, or one a backslash continues)
        self.depth = 0  # brackets open
        self.continued = False  # the line ends in a backslash
        self.comment = False  # the line ends in a comment
        self.broken = False  # the line leaves a one-line string open (a syntax error)
        self.last = ""  # the last character of code (not a string's, not a comment's)

    @property
    def at_start(self) -> bool:
        """The next line starts a logical line."""
        return not (self.string or self.depth or self.continued)

    def line(self, text: str) -> None:
        code = text.rstrip("\r\n")
        self.continued = self.comment = self.broken = False
        at = 0
        while at < len(code):
            if self.string:
                end = _STRING_END[self.string].search(code, at)
                if end is None:
                    break
                at = end.end()
                if end.group() != "\\":
                    self.string, self.last = "", end.group()[-1]
                else:
                    at += 1  # (the escaped character: a quote, or the line break)
                continue
            found = _SIGNIFICANT.search(code, at)
            stop = len(code) if found is None else found.start()
            if code[at:stop].strip():
                self.last = code[at:stop].rstrip()[-1]
            if found is None:
                break
            c, at = found.group(), found.end()
            if c == "#":
                self.comment = True
                break
            if c in "'\"":
                self.string = c * 3 if code.startswith(c * 3, found.start()) else c
                at = found.start() + len(self.string)
            elif c == "\\":
                self.continued = at == len(code)
            elif c in "([{":
                self.depth += 1
            else:
                self.depth = max(0, self.depth - 1)  # (one too many: counted as IPython counts it)
            self.last = c
        if len(self.string) == 1 and at <= len(code):
            self.string, self.broken = "", True  # (not continued by a backslash: the string ends here)


def _deeper(indent: str, than: str) -> bool:
    return indent != than and indent.startswith(than)


def _escaped_command(stripped: str) -> bool:
    return _ESCAPE.match(stripped) is not None or _ASSIGN.match(stripped) is not None


def _escapes(lines: list[str]) -> dict[int, str]:
    """The lines of a cell (with their line breaks) that are IPython syntax -> the indentation of
    their stand-in.

    A stand-in keeps its line's indentation where a statement can stand there; else it takes the
    indentation of the deepest open block that the line's indentation begins with: IPython takes
    the first line's indentation off every line (`  %matplotlib inline` at a cell's top runs), and
    the Python lines around, which keep theirs, allow no other. An escaped command that ends in a
    backslash goes on to the next line, as in IPython: a stand-in for each line."""
    out: dict[int, str] = {}
    scan = _Scan()
    levels = [""]  # the indentations of the open blocks, as the tokenizer stacks them
    opener = False  # the last logical line ended in `:`: a deeper block starts
    carried: str | None = None  # the indentation of an escaped command a backslash continues
    for index, text in enumerate(lines):
        code = text.rstrip("\r\n")
        if carried is not None:
            out[index] = carried
            carried = carried if code.endswith("\\") else None
            continue
        if not scan.at_start:
            scan.line(text)
            if scan.at_start:
                opener = scan.last == ":"
            continue
        stripped = code.lstrip(" \t\f")
        if not stripped or stripped.startswith("#"):
            continue  # (a blank or comment line has no indentation to the tokenizer)
        indent = code[:len(code) - len(stripped)]
        command = _escaped_command(stripped)
        help_end = False
        if not command:
            scan.line(text)
            # `obj?`: the logical line ends in the `?`, on this line, without a comment after it
            help_end = (scan.at_start and not (scan.comment or scan.broken)
                        and _HELP_END.search(stripped) is not None)
        if command or help_end:
            if not opener and indent not in levels:
                indent = next(x for x in reversed(levels) if indent.startswith(x))
            out[index] = indent
            if command and code.endswith("\\"):
                carried = indent
        if opener and _deeper(indent, levels[-1]):
            levels.append(indent)
        elif indent in levels:
            del levels[levels.index(indent) + 1:]
        opener = not (command or help_end) and scan.at_start and scan.last == ":"
    return out


def _python_lines(source: str) -> str:
    """A cell's text with each line of IPython syntax replaced by a numbered stand-in (write_back
    checks that no fix moved one: put back by order alone, two magics a fix reordered were
    swapped)."""
    lines = split_lines(source, keepends=True)
    for number, (index, indent) in enumerate(sorted(_escapes(lines).items())):
        ending = lines[index][len(lines[index].rstrip("\r\n")):]
        lines[index] = f"{indent}{_MAGIC_STAND_IN.format(number)}{ending}"
    return "".join(lines)


def _dedented(source: str) -> tuple[str, str, tuple[int, ...]]:
    """A cell as IPython runs it when its first line that is not blank is indented (code pasted
    from inside a function): that indentation taken off every line that starts with it
    (IPython's leading_empty_lines and leading_indent); the indentation, and the lines (1-based)
    left as they were: blank ones (Python ignores them; a fix then writes them back unchanged)
    and any that does not start with it. Read as written, the cell was a syntax error that hid
    every finding of the notebook."""
    lines = split_lines(source, keepends=True)
    first = next((x for x in lines if x.strip()), "")
    indent = first[:len(first) - len(first.lstrip(" \t"))]
    if not indent:
        return source, "", ()
    out, kept = [], []
    for number, x in enumerate(lines, start=1):
        if x.strip() and x.startswith(indent):
            out.append(x[len(indent):])
        else:
            out.append(x)
            kept.append(number)
    return "".join(out), indent, tuple(kept)


def _reindented(lines: list[str], before: list[str], indent: str, kept: tuple[int, ...]) -> list[str]:
    """A dedented cell's (fixed) lines with the cell's indentation put back: a line the fix left
    gets it as its original did (lines outside it, a string's at column 0, stay so); a line of the
    fix's, as the lines it replaced, else as the line before it (the one after it at the top)."""
    out: list[str] = []
    matcher = difflib.SequenceMatcher(a=before, b=lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out += [x if n in kept else indent + x for n, x in zip(range(i1 + 1, i2 + 1), lines[j1:j2])]
        elif tag != "delete":
            near = range(i1 + 1, i2 + 1) if tag == "replace" else [i1 if i1 > 0 else 1]
            inside = any(n not in kept for n in near if 1 <= n <= len(before))
            out += [indent + x if inside and x.strip() else x for x in lines[j1:j2]]
    return out


def virtual_source(nb: Notebook) -> tuple[str, CellMap]:
    """The code cells as one Python file, and where each cell lies in it."""
    parts: list[str] = []
    spans: list[CellSpan] = []
    line = 0
    for index, source in nb.code_cells():
        text, indent, kept = _dedented(source)
        body = _python_lines(text)
        if body and not body.endswith("\n"):
            body += "\n"
        parts.append(MARKER.format(index) + "\n" + body)
        spans.append(CellSpan(index, line + 1, body.count("\n"), indent, kept))
        line += 1 + body.count("\n")
    return "".join(parts), CellMap(tuple(spans))


def _cell_span(span: SourceSpan, cells: CellMap) -> tuple[int, SourceSpan] | None:
    start = cells.locate(span.line)
    if start is None:
        return None
    own = cells.span_of(start[0])
    end = cells.locate(span.end_line)
    if end is None or end[0] != start[0]:
        # A span cannot leave its cell: keep its start only.
        return start[0], SourceSpan.point(start[1], span.column + own.shift(start[1]))
    return start[0], SourceSpan(start[1], span.column + own.shift(start[1]), end[1],
                                span.end_column + own.shift(end[1]))


def locate(result: FileResult, cells: CellMap) -> FileResult:
    """Findings of the virtual file -> findings of cells (span and fix edits relative to the cell)."""
    out = []
    for f in result.findings:
        placed = _cell_span(f.span, cells)
        if placed is None:
            # A whole-file finding (the notebook cannot be parsed at all): first cell, line 1.
            first = cells.cells[0].cell if cells.cells else None
            out.append(replace(f, cell=first, span=SourceSpan.point(1, 1)) if first else f)
            continue
        cell, span = placed
        fix = f.fix
        if fix is not None:
            edits = []
            for e in fix.edits:
                moved = _cell_span(e.span, cells)
                if moved is None or moved[0] != cell:
                    fix = None  # an edit outside the cell cannot be shown in cell terms
                    break
                edits.append(Edit(moved[1], e.content))
            else:
                fix = replace(fix, edits=tuple(edits))
        out.append(replace(f, cell=cell, span=span, fix=fix))
    return replace(result, findings=tuple(sorted(out, key=Finding.sort_key)))


def extract_notebook_bytes(data: bytes, display: str):
    """FileFacts of a notebook: its code cells' facts, with the cell map to put findings back."""
    from gradlint.facts.files import FileFacts
    from gradlint.findings import InputError
    from gradlint.source import extract_python_text

    try:
        nb = Notebook.parse(data)
    except NotebookError as exc:
        return FileFacts(path=display, kind="python", input_errors=(InputError("unreadable_source", str(exc)),))
    if nb.language != "python":
        return FileFacts(path=display, kind="python", skipped=f"a notebook in {nb.language!r}, not Python")
    text, cells = virtual_source(nb)
    facts = extract_python_text(text, display)
    facts.cells = cells
    return facts


def extract_notebook(path: Path, display: str):
    from gradlint.facts.files import FileFacts
    from gradlint.findings import InputError

    try:
        data = path.read_bytes()
    except OSError as exc:
        return FileFacts(path=display, kind="python",
                         input_errors=(InputError("unreadable_source", f"cannot read file: {exc.strerror or exc}"),))
    return extract_notebook_bytes(data, display)


def cell_lines(path: Path, cell: int) -> list[str] | None:
    """The lines of one cell, for `--output-format full`."""
    nb = Notebook.parse(path.read_bytes())
    cells = nb.data["cells"]
    if not 1 <= cell <= len(cells):
        return None
    return split_lines(_joined(cells[cell - 1].get("source", "")))


def _layout(raw: str) -> dict[str, Any]:
    """json.dumps arguments that write this notebook's text back as it was."""
    m = re.search(r"\n([ \t]+)\S", raw)
    indent: int | str | None = None
    if m is not None:
        indent = len(m.group(1)) if set(m.group(1)) == {" "} else m.group(1)
    compact = re.search(r'"\s*:\s', raw) is None and indent is None
    return {
        "indent": indent,
        "ensure_ascii": not any(ord(c) > 127 for c in raw) and "\\u" in raw,
        "separators": (",", ":") if compact else ((",", ": ") if indent is not None else (", ", ": ")),
    }


def _cell_source(original: Any, text: str) -> Any:
    """New text in the shape the notebook used: a list of lines (nbformat's) or one string."""
    if isinstance(original, list):
        return split_lines(text, keepends=True)
    return text


def write_back(nb: Notebook, virtual: str) -> str:
    """The notebook's text with its code cells replaced by the (fixed) virtual file's cells.
    Raises NotebookError when a fix moved a marker or a magic, which cannot be mapped back."""
    segments: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in split_lines(virtual, keepends=True):
        m = _MARKER.match(line.rstrip("\r\n"))
        if m is not None:
            current = segments.setdefault(int(m.group(1)), [])
        elif current is None:
            raise NotebookError("fixed text starts before the first cell")
        else:
            current.append(line)
    data = json.loads(nb.raw)
    originals = dict(nb.code_cells())
    if set(segments) != set(originals):
        raise NotebookError("a fix moved a cell boundary")
    for index, lines in segments.items():
        old = originals[index]
        unindented, indent, kept = _dedented(old)
        old_lines = split_lines(unindented, keepends=True)
        magics = [(old_lines[i], indent) for i, indent in sorted(_escapes(old_lines).items())]
        restored = []
        seen = 0  # magics put back, in order: each where its own stand-in is, at its indentation
        for x in lines:
            stand_in = _STAND_IN.match(x.rstrip("\r\n"))
            if stand_in is None:
                restored.append(x)
                continue
            number = int(stand_in.group(2))
            if number != seen or number >= len(magics) or stand_in.group(1) != magics[number][1]:
                raise NotebookError(f"cell {index}: a fix moved an IPython magic")
            restored.append(magics[number][0])
            seen += 1
        if seen != len(magics):
            raise NotebookError(f"cell {index}: a fix removed an IPython magic")
        if indent:
            restored = _reindented(restored, old_lines, indent, kept)
        text = "".join(restored)
        if not old.endswith("\n") and text.endswith("\n"):
            text = text[:-1]
        if text != old:
            cell = data["cells"][index - 1]
            cell["source"] = _cell_source(cell.get("source", ""), text)
    out = json.dumps(data, **_layout(nb.raw))
    out += "\n" if nb.raw.endswith("\n") else ""
    if "\r\n" in nb.raw:
        # (json.dumps ends lines with \n; a string's own line breaks are escapes: only the
        # layout's lines are ended so)
        out = out.replace("\n", "\r\n")
    return ("\ufeff" if nb.bom else "") + out


def to_virtual(findings: list[Finding], cells: CellMap) -> list[Finding]:
    """Cell findings back in virtual-file lines (what the fixer edits)."""
    out = []
    for f in findings:
        if f.cell is None:
            out.append(f)
            continue
        own = cells.span_of(f.cell)

        def move(span: SourceSpan) -> SourceSpan:
            return SourceSpan(cells.virtual_line(f.cell, span.line), span.column - own.shift(span.line),
                              cells.virtual_line(f.cell, span.end_line), span.end_column - own.shift(span.end_line))
        fix = f.fix
        if fix is not None:
            fix = replace(fix, edits=tuple(Edit(move(e.span), e.content) for e in fix.edits))
        out.append(replace(f, cell=None, span=move(f.span), fix=fix))
    return out
