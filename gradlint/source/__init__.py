"""The libcst front-end: one parse per file, then model IR, training-loop facts and numerics facts."""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from gradlint.findings import InputError, SourceSpan
from gradlint.source.names import ImportTable, build_import_table

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
        self.whole = True
        wrapper = MetadataWrapper(self.module, unsafe_skip_copy=True)
        try:
            self.cache.update(wrapper.resolve(PositionProvider))
        except (RecursionError, KeyError):  # see get(): a statement too deep for libcst
            pass

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
        try:
            self._resolve(index)
        except (RecursionError, KeyError):
            # libcst's code generator recurses once per level of nesting; out of stack, its position
            # recorder fails with a RecursionError or, while unwinding, a KeyError. In a statement
            # that deep, every node is placed at the start of its top-level statement.
            line = self.lines[index]
            return CodeRange((line, 0), (line, 0))
        return self.cache.get(node, default)


@dataclass
class SourceFile:
    """One parsed file, shared by every extractor: parse once, visit as few times as possible."""

    path: str
    text: str
    module: cst.Module
    positions: LazyPositions
    imports: ImportTable

    def span(self, node: cst.CSTNode) -> SourceSpan:
        rng = self.positions.get(node)
        if rng is None:
            return SourceSpan.point(1, 1)
        # libcst columns are 0-based; ours are 1-based like ruff's.
        return SourceSpan(rng.start.line, rng.start.column + 1, rng.end.line, rng.end.column + 1)

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)


def decode(data: bytes) -> str:
    """Decode as Python does: a PEP 263 cookie or a BOM, else UTF-8."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    return data.decode(encoding)


def parse(path: str, text: str) -> SourceFile:
    module = cst.parse_module(text)
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
    if not _SNIFF.search(data):
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
