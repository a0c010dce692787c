"""The libcst front-end: one parse per file, then model IR, training-loop facts and numerics facts."""

from __future__ import annotations

import ast
import io
import re
import tokenize
import warnings
from dataclasses import dataclass
from pathlib import Path

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from gradlint.findings import InputError, SourceSpan
from gradlint.source import budget
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

    def __init__(self, module: cst.Module, text: str, tree: ast.Module | None = None) -> None:
        self.module = module
        self.text = text
        self.tree = tree  # CPython's AST of the same text, when the caller already has it
        self.cache: dict[cst.CSTNode, CodeRange] = {}
        self.resolved: set[int] = set()
        self.lines: list[int] | None = None
        self.owner: dict[int, int] | None = None
        self.whole = False

    def _start_lines(self) -> list[int] | None:
        tree = self.tree
        if tree is None:
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


def parse(path: str, text: str, tree: ast.Module | None = None) -> SourceFile:
    module = cst.parse_module(text)
    return SourceFile(path=path, text=text, module=module, positions=LazyPositions(module, text, tree),
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
    """The facts of Python source already in memory (a file, stdin, a notebook's cells), a GL001
    (what Python itself refuses) or a named skip (what gradlint's parser cannot afford or cannot
    read). CPython judges first: libcst crashes (SIGSEGV) on nesting CPython refuses, and hangs on
    some it accepts, so it only sees what both budgets allow."""
    from gradlint.api import FileFacts

    data = text.encode("utf-8", "surrogatepass")
    too_big = _over_size_budget(data, text)
    if too_big:
        return FileFacts(path=display, kind="python", skipped=too_big)
    tree = _cpython_parse(text, display)
    if not isinstance(tree, ast.Module):
        line, col, message = tree
        return FileFacts(path=display, kind="python", source=text,
                         input_errors=(InputError("GL001", message, SourceSpan.point(line, col)),))
    if not _SNIFF.search(data):
        # Nothing for our rules here: CPython's verdict on the syntax was all there was to learn.
        return FileFacts(path=display, kind="python", source=text)
    deepest, cost = budget.nesting_cost(tree)
    if cost > budget.NESTING_BUDGET:
        return FileFacts(path=display, kind="python", source=text, skipped=(
            f"expressions nested up to {deepest} levels deep are over gradlint's parse budget "
            f"(libcst's parse time grows with the square of the nesting)"))
    try:
        src = parse(display, text, tree)
    except cst.ParserSyntaxError as exc:
        # Python accepts the file (it was compiled above), so this is not GL001: a limit of libcst.
        return FileFacts(path=display, kind="python", source=text, skipped=_libcst_limit(text, exc))
    except (RecursionError, MemoryError):
        return FileFacts(path=display, kind="python", source=text,
                         skipped="nested too deeply for libcst, gradlint's parser (Python accepts it)")
    return extract_facts(src)


def _over_size_budget(data: bytes, text: str) -> str | None:
    """Why the file is too large to parse within budget (libcst: ~1 s per 5 000 lines, ~1 GB per
    20 000), or None."""
    if len(data) > budget.MAX_SOURCE_BYTES:
        return f"{len(data)} bytes, over gradlint's parse budget of {budget.MAX_SOURCE_BYTES} bytes"
    lines = text.count("\n") + 1
    if lines > budget.MAX_SOURCE_LINES:
        return f"{lines} lines, over gradlint's parse budget of {budget.MAX_SOURCE_LINES} lines"
    return None


def _cpython_parse(text: str, display: str) -> ast.Module | tuple[int, int, str]:
    """CPython's AST of the file, or (line, column, message) of why CPython refuses it. Its
    position and wording ("expected ':'") are better than libcst's, which points at the token
    after the mistake. Compiling to an AST runs nothing."""
    nul = text.find("\0")
    if nul >= 0:  # Python 3.11 raises ValueError for it, 3.12 SyntaxError: one message for both
        line = text.count("\n", 0, nul) + 1
        return line, nul - (text.rfind("\n", 0, nul) + 1) + 1, "syntax error: source code cannot contain null bytes"
    try:
        with warnings.catch_warnings():  # invalid escapes and friends: not ours to print
            warnings.simplefilter("ignore")
            return compile(text, display, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as err:
        return err.lineno or 1, err.offset or 1, f"syntax error: {err.msg}"
    except (RecursionError, MemoryError) as err:
        # CPython's parser ran out of stack ("maximum recursion depth exceeded during
        # compilation", or a MemoryError for 20 000 nested unary operators): Python cannot run it.
        reason = str(err) or type(err).__name__
        return 1, 1, f"syntax error: too deeply nested for Python to compile ({reason})"
    except ValueError as err:
        return 1, 1, f"syntax error: {err}"


def _libcst_limit(text: str, exc: cst.ParserSyntaxError) -> str:
    reason = f"Python accepts this file but libcst, gradlint's parser, cannot parse it ({exc.message})"
    if re.search(r"^(?: +\t|\t+ )", text, re.MULTILINE):
        # libcst keeps each block's indentation as a string that must extend its parent's; CPython
        # compares widths, so `\t` then `        \t` is fine for Python and not for libcst
        reason += "; its indentation mixes tabs and spaces: indent with spaces only to check it"
    return reason


def extract_facts(src: SourceFile):
    """Run every extractor on one parsed file."""
    from gradlint.api import FileFacts
    from gradlint.source import loops, models, numerics

    with warnings.catch_warnings():
        # libcst evaluates string literals with ast.literal_eval: the checked file's invalid
        # escapes ('\d') would print Python's warnings about that file on our stderr
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        networks, classes = models.extract(src)
        facts = FileFacts(path=src.path, kind="python", source=src.text, networks=networks, classes=classes)
        facts.numerics = numerics.extract(src)
        facts.training = loops.extract(src)
    return facts
