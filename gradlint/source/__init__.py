"""The libcst front-end: one parse per file, then model IR, training-loop facts and numerics facts."""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from gradlint.findings import InputError, SourceSpan
from gradlint.source.names import ImportTable, build_import_table
from gradlint.text import split_lines

# Files that mention none of these cannot hold anything our rules look for; skipping them before
# the parse is the cheapest speed-up a libcst linter has (TorchFix does the same).
_SNIFF = re.compile(rb"torch|\bnn\b|onnx|backward|accelerat|lightning|autograd")


class LazyPositions:
    """Positions of nodes, computed one top-level statement at a time, on demand.

    libcst's PositionProvider regenerates the code of the whole file to find positions, which
    costs twice the parse; the rules need positions for a few nodes in a few classes and loops.
    Each top-level statement is resolved alone (as a module of its own) and shifted to its line
    in the file, which CPython's own parser gives for the price of a C call.
    """

    def __init__(self, module: cst.Module, text: str) -> None:
        self.module = module
        self.text = text
        self.cache: dict[cst.CSTNode, CodeRange] = {}
        self.resolved: set[int] = set()
        self.lines: list[int] | None = None
        self.owner: dict[int, int] | None = None
        self.whole = False

    def _start_lines(self) -> list[int] | None:
        import ast

        try:
            tree = ast.parse(self.text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
        body = tree.body
        lines: list[int] = []
        k = 0
        for stmt in self.module.body:
            if k >= len(body):
                return None
            lines.append(body[k].lineno)
            k += len(stmt.body) if isinstance(stmt, cst.SimpleStatementLine) else 1
        return lines if k == len(body) else None

    def _resolve_all(self) -> None:
        wrapper = MetadataWrapper(self.module, unsafe_skip_copy=True)
        self.cache.update(wrapper.resolve(PositionProvider))
        self.whole = True

    def _resolve(self, index: int) -> None:
        if index in self.resolved:
            return
        self.resolved.add(index)
        stmt = self.module.body[index]
        sub = cst.Module(body=[stmt])
        positions = MetadataWrapper(sub, unsafe_skip_copy=True).resolve(PositionProvider)
        assert self.lines is not None
        shift = self.lines[index] - positions[stmt].start.line
        for node, rng in positions.items():
            if node is sub:
                continue
            self.cache[node] = CodeRange((rng.start.line + shift, rng.start.column), (rng.end.line + shift, rng.end.column))

    def _owners(self) -> dict[int, int]:
        import dataclasses

        names: dict[type, tuple[str, ...]] = {}
        owner: dict[int, int] = {}
        for i, stmt in enumerate(self.module.body):
            stack: list = [stmt]
            while stack:
                node = stack.pop()
                owner[id(node)] = i
                cls = type(node)
                fields = names.get(cls)
                if fields is None:
                    fields = names[cls] = tuple(f.name for f in dataclasses.fields(node))
                for value in (getattr(node, n) for n in fields):
                    if isinstance(value, cst.CSTNode):
                        stack.append(value)
                    elif isinstance(value, (tuple, list)):
                        stack.extend(v for v in value if isinstance(v, cst.CSTNode))
        return owner

    def get(self, node: cst.CSTNode, default: CodeRange | None = None) -> CodeRange | None:
        found = self.cache.get(node)
        if found is not None or self.whole:
            return found if found is not None else default
        if self.lines is None:
            self.lines = self._start_lines() or []
            if not self.lines:
                self._resolve_all()
                return self.cache.get(node, default)
        if self.owner is None:
            self.owner = self._owners()
        index = self.owner.get(id(node))
        if index is None:
            return default
        self._resolve(index)
        return self.cache.get(node, default)


@dataclass
class SourceFile:
    """One parsed file, shared by every extractor: parse once, visit as few times as possible."""

    path: str
    text: str
    module: cst.Module
    positions: LazyPositions
    imports: ImportTable
    _shifts: dict[int, int] | None = field(default=None, repr=False, compare=False)

    def span(self, node: cst.CSTNode) -> SourceSpan:
        rng = self.positions.get(node)
        if rng is None:
            return SourceSpan.point(1, 1)
        # libcst columns are 0-based; ours are 1-based like ruff's.
        shifts = self._column_shifts()
        return SourceSpan(rng.start.line, rng.start.column + 1 + shifts.get(rng.start.line, 0),
                          rng.end.line, rng.end.column + 1 + shifts.get(rng.end.line, 0))

    def _column_shifts(self) -> dict[int, int]:
        """Line -> what to add to libcst's columns on it: the module was parsed without the
        form feeds of statements' indentation (parse_module); only leading whitespace differs."""
        shifts = self._shifts
        if shifts is None:
            shifts = {}
            if "\f" in self.text:
                for number, (mine, theirs) in enumerate(zip(split_lines(self.text), split_lines(self.module.code)), 1):
                    if mine != theirs:
                        shifts[number] = _lead(mine) - _lead(theirs)
            self._shifts = shifts
        return shifts

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)


def _formfeed_indents_dropped(text: str) -> str:
    """The text with what precedes the last form feed of each statement's indentation removed
    (what CPython ignores). Lines inside brackets or strings keep their text: only the first
    line of each logical line changes."""
    if "\f" not in text:
        return text
    starts: set[int] = set()
    fresh = True
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text, newline=None).readline):
            if tok.type == tokenize.NEWLINE:
                fresh = True
            elif tok.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.COMMENT,
                                  tokenize.ENDMARKER) and fresh:
                starts.add(tok.start[0])
                fresh = False
    except (tokenize.TokenError, SyntaxError):
        return text
    lines = split_lines(text, keepends=True)
    for number in sorted(n for n in starts if n <= len(lines)):
        line = lines[number - 1]
        lead = line[:_lead(line)]
        if "\f" in lead:
            lines[number - 1] = lead.rsplit("\f", 1)[1] + line[len(lead):]
    return "".join(lines)


def _lead(line: str) -> int:
    return len(line) - len(line.lstrip(" \t\f"))


def decode(data: bytes) -> str:
    """Decode as Python does: a PEP 263 cookie or a BOM, else UTF-8."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    return data.decode(encoding)


def parse_module(text: str) -> cst.Module:
    """libcst's parse of the text without form feeds in statements' indentation.

    CPython counts a line's indentation again after a form feed. libcst does not: it refuses
    some such lines, drops or repeats the form feed in the code it regenerates, and counts
    columns on those lines one short. Without them its positions are right on every line but
    in the leading whitespace it lost, which SourceFile.span adds back.
    """
    return cst.parse_module(_formfeed_indents_dropped(text))


def parse(path: str, text: str) -> SourceFile:
    module = parse_module(text)
    return SourceFile(path=path, text=text, module=module, positions=LazyPositions(module, text),
                      imports=build_import_table(module))


def extract_python(path: Path, display: str):
    from gradlint.api import FileFacts

    try:
        data = path.read_bytes()
    except OSError as exc:
        return FileFacts(path=display, kind="python",
                         input_errors=(InputError("GL001", f"cannot read file: {exc.strerror or exc}"),))
    try:
        text = decode(data)
    except (UnicodeDecodeError, SyntaxError, LookupError) as exc:
        return FileFacts(path=display, kind="python", input_errors=(InputError("GL001", f"cannot decode file: {exc}"),))
    return extract_python_text(text, display)


def extract_python_text(text: str, display: str):
    """The facts of Python source already in memory: stdin, a notebook's cells."""
    from gradlint.api import FileFacts

    if not _SNIFF.search(text.encode("utf-8", "surrogatepass")):
        # Nothing for our rules here, but a broken file is still news (GL001): CPython's own
        # parser tells, at a fraction of libcst's cost, and executes nothing.
        error = _python_syntax_error(text, display)
        errors = (InputError("GL001", error[2], SourceSpan.point(error[0], error[1])),) if error else ()
        return FileFacts(path=display, kind="python", source=text, input_errors=errors)
    try:
        src = parse(display, text)
    except cst.ParserSyntaxError as exc:
        line, col, message = _python_syntax_error(text, display) or (
            exc.raw_line, exc.raw_column + 1, f"syntax error: {exc.message}")
        return FileFacts(path=display, kind="python", source=text,
                         input_errors=(InputError("GL001", message, SourceSpan.point(line, col)),))
    except (RecursionError, MemoryError):
        return FileFacts(path=display, kind="python", source=text,
                         input_errors=(InputError("GL001", "file is too deeply nested to parse"),))
    return extract_facts(src)


def _python_syntax_error(text: str, display: str) -> tuple[int, int, str] | None:
    """CPython's own position and wording ("expected ':'") are better than the libcst parser's,
    which points at the token after the mistake. Compiling to an AST runs nothing."""
    import ast

    try:
        ast.parse(text, filename=display)
    except SyntaxError as err:
        return err.lineno or 1, err.offset or 1, f"syntax error: {err.msg}"
    except (ValueError, RecursionError, MemoryError):
        return None
    return None  # CPython accepts it: a syntax libcst does not know; report libcst's words


def extract_facts(src: SourceFile):
    """Run every extractor on one parsed file."""
    from gradlint.api import FileFacts
    from gradlint.source import loops, models, numerics

    networks, classes = models.extract(src)
    facts = FileFacts(path=src.path, kind="python", source=src.text, networks=networks, classes=classes)
    facts.numerics = numerics.extract(src)
    facts.training = loops.extract(src)
    return facts
