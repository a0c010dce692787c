"""The libcst front-end: one parse per file, then model IR, training-loop facts and numerics facts."""

from __future__ import annotations

import ast
import io
import re
import tokenize
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from gradlint.findings import InputError, SourceSpan
from gradlint.source import budget
from gradlint.source.names import ImportTable, build_import_table
from gradlint.text import split_lines

# Files that mention none of these cannot hold anything our rules look for; skipping them before
# the parse is the cheapest speed-up a libcst linter has (TorchFix does the same).
_SNIFF = re.compile(rb"torch|\bnn\b|onnx|backward|accelerat|lightning|autograd")
# When a caller hands a path without its bytes: the default of `max-file-size`.
MAX_SOURCE_BYTES = 2 << 20


# Fields of libcst nodes that hold code (not whitespace or punctuation), in source order: the
# dataclass order is source order except for these (the fields whose body comes first).
_SOURCE_ORDER = {
    cst.IfExp: ("body", "test", "orelse"),
    cst.FunctionDef: ("decorators", "name", "params", "returns", "body"),
    cst.ClassDef: ("decorators", "name", "bases", "keywords", "body"),
    cst.ExceptHandler: ("type", "name", "body"),
    cst.ExceptStarHandler: ("type", "name", "body"),
    cst.MatchCase: ("pattern", "guard", "body"),
}
_PUNCTUATION = ("whitespace", "lpar", "rpar", "leading_lines", "trailing", "semicolon", "comma", "lbr", "rbr",
                "lbrace", "rbrace", "lbracket", "rbracket", "colon", "equal", "star", "lines_after", "header",
                "footer", "dot", "operator", "indent", "newline", "first_line", "default_indent", "default_newline")
_FIELDS: dict[type, tuple[str, ...]] = {}
_EXPRESSIONS: dict[type, type] = {}


def _expression_pairs() -> None:
    import ast

    _EXPRESSIONS.update({cst.Attribute: ast.Attribute, cst.BinaryOperation: ast.BinOp, cst.Subscript: ast.Subscript,
                         cst.UnaryOperation: ast.UnaryOp, cst.Comparison: ast.Compare, cst.IfExp: ast.IfExp,
                         cst.Lambda: ast.Lambda, cst.Await: ast.Await})


_expression_pairs()


def _source_fields(cls: type) -> tuple[str, ...]:
    found = _FIELDS.get(cls)
    if found is None:
        import dataclasses

        found = _SOURCE_ORDER.get(cls) or tuple(
            f.name for f in dataclasses.fields(cls) if not f.name.startswith(_PUNCTUATION))
        _FIELDS[cls] = found
    return found


def _all_fields(cls: type) -> tuple[str, ...]:
    found = _ALL.get(cls)
    if found is None:
        import dataclasses

        found = _ALL[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return found


_ALL: dict[type, tuple[str, ...]] = {}
_NODE_TYPES: dict[type, bool] = {}


def _is_node(value: object) -> bool:
    """isinstance(value, cst.CSTNode) without the ABC machinery's cost (millions of calls)."""
    cls = type(value)
    known = _NODE_TYPES.get(cls)
    if known is None:
        known = _NODE_TYPES[cls] = isinstance(value, cst.CSTNode)
    return known


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
        self.groups: list[list] = []  # the CPython ast statements of each top-level statement
        self.quick: dict[int, dict[int, CodeRange]] = {}
        self.quick_all: dict[int, CodeRange] = {}
        self.quick_owner: dict[int, int] = {}  # id(node) -> its top-level statement, as the tables are built
        self.next_quick = 0

    def _start_lines(self) -> list[int] | None:
        tree = self.tree
        if tree is None:
            try:
                tree = ast.parse(self.text)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                return None
        body = tree.body
        lines: list[int] = []
        groups: list[list] = []
        k = 0
        for stmt in self.module.body:
            if k >= len(body):
                return None
            lines.append(body[k].lineno)
            n = len(stmt.body) if isinstance(stmt, cst.SimpleStatementLine) else 1
            groups.append(body[k:k + n])
            k += n
        if k != len(body):
            return None
        self.groups = groups
        return lines

    def _quick_lookup(self, node: cst.CSTNode) -> CodeRange | None:
        """A call's or a definition's name's position from the ast tables, building the tables
        of the statements in order until the node is found (no walk of the whole file first)."""
        found = self.quick_all.get(id(node))
        while found is None and self.next_quick < len(self.module.body):
            table = self._quick_table(self.next_quick)
            self.next_quick += 1
            self.quick_all.update(table)
            found = table.get(id(node))
        return found

    def _quick_table(self, index: int) -> dict[int, CodeRange]:
        """Positions of the calls and of class/function names of one top-level statement, read
        from CPython's ast (which the parse for line numbers built anyway) instead of libcst's
        code regeneration, which costs ~0.1 s per class. The two trees' calls are paired in
        source order and checked (argument counts, callee names); any disagreement gives up
        on the table and the statement is resolved the slow way."""
        import ast

        table: dict[int, CodeRange] = {}
        self.quick[index] = table
        if index >= len(self.groups):
            return table
        calls: list[cst.Call] = []
        defs: list = []
        exprs: dict[type, list] = {t: [] for t in _EXPRESSIONS}
        stack: list = [self.module.body[index]]
        owner = self.quick_owner
        while stack:
            node = stack.pop()
            owner[id(node)] = index
            if isinstance(node, cst.Call):
                calls.append(node)
            elif isinstance(node, (cst.ClassDef, cst.FunctionDef)):
                defs.append(node)
            elif type(node) in exprs:
                exprs[type(node)].append(node)
            kids: list = []
            for value in (getattr(node, n) for n in _source_fields(type(node))):
                if _is_node(value):
                    kids.append(value)
                elif isinstance(value, (tuple, list)):
                    kids.extend(v for v in value if _is_node(v))
            stack.extend(reversed(kids))
        a_calls, a_defs = [], []
        a_exprs: dict[type, list] = {t: [] for t in _EXPRESSIONS.values()}
        for top in self.groups[index]:
            for n in ast.walk(top):
                if isinstance(n, ast.Call):
                    a_calls.append(n)
                elif isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    a_defs.append(n)
                elif type(n) in a_exprs:
                    a_exprs[type(n)].append(n)
        a_calls.sort(key=lambda n: (n.lineno, n.col_offset, -(n.end_lineno or 0), -(n.end_col_offset or 0)))
        a_defs.sort(key=lambda n: (n.lineno, n.col_offset))
        if len(calls) != len(a_calls) or len(defs) != len(a_defs):
            return table
        # line breaks as CPython and libcst count them (\f, \x1c, U+2028... are not breaks)
        text_lines = split_lines(self.text)

        def col(line: int, byte: int) -> int:
            raw = text_lines[line - 1] if 0 < line <= len(text_lines) else ""
            return len(raw.encode("utf-8")[:byte].decode("utf-8", "replace")) if not raw.isascii() else byte

        out: dict[int, CodeRange] = {}
        for c, a in zip(calls, a_calls):
            if len(c.args) != len(a.args) + len(a.keywords) or (isinstance(c.func, cst.Name) and not (
                    isinstance(a.func, ast.Name) and a.func.id == c.func.value)):
                return table
            if c.lpar or a.end_lineno is None or a.end_col_offset is None:
                continue  # a parenthesised call's range includes its parentheses in libcst
            out[id(c)] = CodeRange((a.lineno, col(a.lineno, a.col_offset)), (a.end_lineno, col(a.end_lineno, a.end_col_offset)))
        for kind, nodes in exprs.items():
            others = sorted(a_exprs[_EXPRESSIONS[kind]],
                            key=lambda n: (n.lineno, n.col_offset, -(n.end_lineno or 0), -(n.end_col_offset or 0)))
            if len(nodes) != len(others) or (kind is cst.Attribute and any(
                    c.attr.value != a.attr for c, a in zip(nodes, others))):
                continue  # e.g. dotted names in imports are Attributes for libcst only
            for c, a in zip(nodes, others):
                if getattr(c, "lpar", None) or a.end_lineno is None or a.end_col_offset is None:
                    continue
                out[id(c)] = CodeRange((a.lineno, col(a.lineno, a.col_offset)), (a.end_lineno, col(a.end_lineno, a.end_col_offset)))
        for d, a in zip(defs, a_defs):
            if d.name.value != a.name:
                return table
            raw = text_lines[a.lineno - 1] if 0 < a.lineno <= len(text_lines) else ""
            start = raw.find(a.name, col(a.lineno, a.col_offset))
            if start >= 0 and raw[start + len(a.name):start + len(a.name) + 1] in ("(", ":", " ", "["):
                out[id(d.name)] = CodeRange((a.lineno, start), (a.lineno, start + len(a.name)))
        table.update(out)
        return table

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

    def _owner_of(self, node: cst.CSTNode) -> int | None:
        """The index of the top-level statement holding `node`: from the walks that build the
        quick tables, in order until found (the whole-file map of every field, which costs as
        much as those walks together, only for nodes they skip, e.g. operators)."""
        found = self.quick_owner.get(id(node))
        while found is None and self.next_quick < len(self.module.body):
            self.quick_all.update(self._quick_table(self.next_quick))
            self.next_quick += 1
            found = self.quick_owner.get(id(node))
        if found is None:
            if self.owner is None:
                self.owner = self._owners()
            found = self.owner.get(id(node))
        return found

    def _owners(self) -> dict[int, int]:
        owner: dict[int, int] = {}
        for i, stmt in enumerate(self.module.body):
            stack: list = [stmt]
            while stack:
                node = stack.pop()
                owner[id(node)] = i
                for value in (getattr(node, n) for n in _all_fields(type(node))):
                    if _is_node(value):
                        stack.append(value)
                    elif isinstance(value, (tuple, list)):
                        stack.extend(v for v in value if _is_node(v))
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
        if (isinstance(node, (cst.Call, cst.Name)) or type(node) in _EXPRESSIONS) and "\f" not in self.text:
            # CPython's columns are the file's; libcst's are those of the text parsed without
            # indentation form feeds (parse_module), which SourceFile.span shifts back: a file
            # with form feeds takes libcst's positions only, so that every column is shifted once.
            found = self._quick_lookup(node)
            if found is not None:
                return found
        index = self._owner_of(node)
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


def parse(path: str, text: str, tree: ast.Module | None = None) -> SourceFile:
    module = parse_module(text)
    return SourceFile(path=path, text=text, module=module, positions=LazyPositions(module, text, tree),
                      imports=build_import_table(module))


def extract_python(path: Path, display: str, data: bytes | None = None):
    """Facts of one source file; `data` is its bytes when the caller has read them (bounded)."""
    from gradlint.facts.files import FileFacts
    from gradlint.inputs import Refused, read_bounded

    if data is None:
        try:
            data = read_bounded(path, MAX_SOURCE_BYTES)
        except Refused as exc:
            return FileFacts(path=display, kind="python", input_errors=(InputError("unreadable_source", f"cannot read file: {exc}"),))
    try:
        text = decode(data)
    except (UnicodeDecodeError, SyntaxError, LookupError) as exc:
        return FileFacts(path=display, kind="python", input_errors=(InputError("unreadable_source", f"cannot decode file: {exc}"),))
    return extract_python_text(text, display)


def extract_python_text(text: str, display: str):
    """The facts of Python source already in memory (a file, stdin, a notebook's cells), an
    'unreadable_source' input error (what Python itself refuses) or a named skip (what gradlint's parser cannot afford or cannot
    read). CPython judges first: libcst crashes (SIGSEGV) on nesting CPython refuses, and hangs on
    some it accepts, so it only sees what both budgets allow."""
    from gradlint.facts.files import FileFacts
    from gradlint.source.index import module_symbols

    data = text.encode("utf-8", "surrogatepass")
    too_big = _over_size_budget(data, text)
    if too_big:
        return FileFacts(path=display, kind="python", skipped=too_big)
    tree = _cpython_parse(text, display)
    if not isinstance(tree, ast.Module):
        line, col, message = tree
        return FileFacts(path=display, kind="python", source=text,
                         input_errors=(InputError("unreadable_source", message, SourceSpan.point(line, col)),))
    if not _SNIFF.search(data):
        # Nothing for our rules here, but its names still matter to other files: a package
        # `__init__` that re-exports a model.
        return FileFacts(path=display, kind="python", source=text, symbols=module_symbols(tree))
    deepest, cost = budget.nesting_cost(tree)
    if cost > budget.NESTING_BUDGET:
        return FileFacts(path=display, kind="python", source=text, symbols=module_symbols(tree), skipped=(
            f"expressions nested up to {deepest} levels deep are over gradlint's parse budget "
            f"(libcst's parse time grows with the square of the nesting)"))
    try:
        src = parse(display, text, tree)
    except cst.ParserSyntaxError as exc:
        # Python accepts the file (it was compiled above), so this is no syntax error: a limit of libcst.
        return FileFacts(path=display, kind="python", source=text, symbols=module_symbols(tree),
                         skipped=_libcst_limit(text, exc))
    except (RecursionError, MemoryError):
        return FileFacts(path=display, kind="python", source=text, symbols=module_symbols(tree),
                         skipped="nested too deeply for libcst, gradlint's parser (Python accepts it)")
    return extract_facts(src, tree)


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


def extract_facts(src: SourceFile, tree=None):
    """Run every extractor on one parsed file (`tree`: CPython's AST of it, when already made)."""
    from gradlint.facts.files import FileFacts
    from gradlint.source import loops, models, numerics
    from gradlint.source.index import module_symbols

    with warnings.catch_warnings():
        # libcst evaluates string literals with ast.literal_eval: the checked file's invalid
        # escapes ('\d') would print Python's warnings about that file on our stderr
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        networks, classes = models.extract(src)
        facts = FileFacts(path=src.path, kind="python", source=src.text, networks=networks, classes=classes,
                          symbols=module_symbols(tree if tree is not None else src.text))
        facts.numerics = numerics.extract(src)
        facts.training = loops.extract(src)
    return facts
