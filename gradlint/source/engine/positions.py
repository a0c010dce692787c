"""Positions of libcst nodes, resolved lazily: one top-level statement, or one function, at a time.

libcst's PositionProvider regenerates the code of the whole file to find positions, which costs
twice the parse; the rules need positions for a few nodes in a few classes and loops. Every
interpreter of the source front-end asks this one service (through `SourceFile.span`).
"""

from __future__ import annotations

import ast

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from gradlint.findings import SourceSpan
from gradlint.source.engine.walk import _NODE_TYPES, is_node, source_fields
from gradlint.text import split_lines

_EXPRESSIONS: dict[type, type] = {
    cst.Attribute: ast.Attribute, cst.BinaryOperation: ast.BinOp, cst.Subscript: ast.Subscript,
    cst.UnaryOperation: ast.UnaryOp, cst.Comparison: ast.Compare, cst.IfExp: ast.IfExp,
    cst.Lambda: ast.Lambda, cst.Await: ast.Await,
}
# Statements whose positions CPython's ast gives as libcst does (a definition is not one: with
# decorators, libcst's range starts at the first of them, CPython's at `def`/`class`).
_STATEMENTS: dict[type, tuple[type, ...]] = {
    cst.Assign: (ast.Assign,), cst.AnnAssign: (ast.AnnAssign,), cst.AugAssign: (ast.AugAssign,),
    cst.Expr: (ast.Expr,), cst.Return: (ast.Return,), cst.Pass: (ast.Pass,), cst.Break: (ast.Break,),
    cst.Continue: (ast.Continue,), cst.Raise: (ast.Raise,), cst.Assert: (ast.Assert,), cst.Del: (ast.Delete,),
    cst.Global: (ast.Global,), cst.Nonlocal: (ast.Nonlocal,), cst.Import: (ast.Import,),
    cst.ImportFrom: (ast.ImportFrom,), cst.If: (ast.If,), cst.For: (ast.For, ast.AsyncFor),
    cst.While: (ast.While,), cst.Try: (ast.Try,), cst.With: (ast.With, ast.AsyncWith),
}
_AST_STATEMENTS = frozenset(t for kinds in _STATEMENTS.values() for t in kinds)
_ALL: dict[type, tuple[str, ...]] = {}
_REVERSED: dict[type, tuple[str, ...]] = {}  # source_fields, last first


def _all_fields(cls: type) -> tuple[str, ...]:
    found = _ALL.get(cls)
    if found is None:
        import dataclasses

        found = _ALL[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return found


def _reversed_fields(cls: type) -> tuple[str, ...]:
    """source_fields, last first, less those that only ever hold text (a Name's value): a leaf
    then costs no field reads at all in the walks below."""
    import dataclasses

    text = {f.name for f in dataclasses.fields(cls) if f.type is str}
    found = _REVERSED[cls] = tuple(n for n in source_fields(cls)[::-1] if n not in text)
    return found


# Fields of CPython's AST that never lead to a call, a definition or an expression: contexts and
# operators (leaf nodes, one per name or operation) and plain text or numbers.
_AST_SKIP = frozenset(("ctx", "op", "ops", "id", "attr", "arg", "name", "module", "level", "kind",
                       "type_comment", "conversion", "is_async", "lineno", "col_offset", "end_lineno",
                       "end_col_offset"))
_AST_FIELDS: dict[type, tuple[str, ...]] = {}


def _ast_walk(node: ast.AST) -> list:
    """ast.walk's nodes in its order (breadth first), as a list, without the leaves no caller
    looks for (contexts, operators): without its deque, generator and iter_child_nodes per node,
    which cost a third of the positions service."""
    out = [node]
    add, more = out.append, out.extend
    node_type = ast.AST
    table = _AST_FIELDS
    i = 0
    while i < len(out):
        n = out[i]
        i += 1
        kind = type(n)
        fields = table.get(kind)
        if fields is None:
            fields = table[kind] = tuple(f for f in kind._fields if f not in _AST_SKIP)
        for name in fields:
            value = getattr(n, name, None)
            if type(value) is list:
                more(v for v in value if isinstance(v, node_type))
            elif isinstance(value, node_type):
                add(value)
    return out


# Where definitions can be: statements and the blocks that hold statements (never expressions).
# Exact types: isinstance on libcst's ABC-based classes costs a lookup per miss.
_BLOCKS = frozenset((cst.FunctionDef, cst.ClassDef, cst.If, cst.For, cst.While, cst.Try, cst.TryStar, cst.With,
                     cst.Match, cst.IndentedBlock, cst.Else, cst.Finally, cst.ExceptHandler, cst.ExceptStarHandler,
                     cst.MatchCase))
_AST_BLOCK_FIELDS = frozenset(("body", "orelse", "handlers", "finalbody", "cases"))


def _definitions(module: cst.Module) -> list:
    """The module's classes and functions, nested ones too, in source order (pre-order), reached
    through statements and blocks only: a walk of every node cost as much as pairing them all."""
    out: list = []
    blocks = _BLOCKS
    stack: list = [s for s in reversed(module.body) if type(s) in blocks]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is cst.FunctionDef or kind is cst.ClassDef:
            out.append(node)
        below: list = []
        for name in source_fields(kind):
            value = getattr(node, name)
            if type(value) is tuple or type(value) is list:
                below.extend([v for v in value if type(v) in blocks])
            elif type(value) in blocks:
                below.append(value)
        stack.extend(reversed(below))
    return out


def _ast_definitions(tree: ast.Module) -> list:
    """CPython's classes and functions of the same file, in the same order."""
    out: list = []
    stack: list = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is ast.FunctionDef or kind is ast.AsyncFunctionDef or kind is ast.ClassDef:
            out.append(node)
        below: list = []
        for name in kind._fields:
            if name in _AST_BLOCK_FIELDS:
                below.extend(getattr(node, name, None) or ())
        stack.extend(reversed(below))
    return out


def _char_column(raw: str, byte: int) -> int:
    """The character column of CPython's byte offset `byte` in the line `raw` (libcst counts
    characters)."""
    return byte if raw.isascii() else len(raw.encode("utf-8")[:byte].decode("utf-8", "replace"))


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
        self.quick: dict[int, dict[int, tuple[int, int, int, int]]] = {}
        self.quick_all: dict[int, CodeRange | tuple[int, int, int, int]] = {}
        self.quick_owner: dict[int, int] = {}  # id(node) -> its top-level statement, as the tables are built
        self.next_quick = 0
        # one function at a time: id(FunctionDef) -> (def line, last line); None until paired
        self.defs: dict[int, tuple[int, int]] | None = None
        self.defs_paired = False
        self.tables: dict[int, tuple[dict, int, list[str]]] = {}
        # one function's quick table (as _quick_table's, for the function alone): id -> position
        self.function_quick: dict[int, dict[int, tuple[int, int, int, int]]] = {}
        self.def_nodes: dict[int, ast.AST] = {}  # id(FunctionDef) -> CPython's node of it
        self.def_names: dict[int, ast.AST] = {}  # id(name of a class or function) -> CPython's node
        self.file_lines: list[str] | None = None

    def _cpython_tree(self) -> ast.Module | None:
        """CPython's AST of the text (parsed once: the caller's, or here on first need)."""
        if self.tree is None:
            try:
                self.tree = ast.parse(self.text)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                return None
        return self.tree

    def _start_lines(self) -> list[int] | None:
        tree = self._cpython_tree()
        if tree is None:
            return None
        body = tree.body
        lines: list[int] = []
        groups: list[list] = []
        k = 0
        for stmt in self.module.body:
            if k >= len(body):
                return None
            lines.append(body[k].lineno)
            n = len(stmt.body) if type(stmt) is cst.SimpleStatementLine else 1
            groups.append(body[k:k + n])
            k += n
        if k != len(body):
            return None
        self.groups = groups
        return lines

    def _quick_lookup(self, node: cst.CSTNode) -> CodeRange | None:
        """A call's or a definition's name's position from the ast tables, building the tables
        of the statements in order until the node is found (no walk of the whole file first)."""
        key = id(node)
        found = self.quick_all.get(key)
        while found is None and self.next_quick < len(self.module.body):
            table = self._quick_table(self.next_quick)
            self.next_quick += 1
            self.quick_all.update(table)
            found = table.get(key)
        if type(found) is tuple:  # made a CodeRange when first asked for: most never are
            found = self.quick_all[key] = CodeRange((found[0], found[1]), (found[2], found[3]))
        return found

    def _quick_table(self, index: int) -> dict[int, tuple[int, int, int, int]]:
        """Positions of the calls and of class/function names of one top-level statement, read
        from CPython's ast (which the parse for line numbers built anyway) instead of libcst's
        code regeneration, which costs ~0.1 s per class. A position is (line, column, end line,
        end column) until _quick_lookup makes it a CodeRange. The two trees' calls are paired in
        source order and checked (argument counts, callee names); any disagreement gives up
        on the table and the statement is resolved the slow way."""
        table: dict[int, tuple[int, int, int, int]] = {}
        self.quick[index] = table
        if index >= len(self.groups):
            return table
        table.update(self._paired(self.module.body[index], self.groups[index], index))
        return table

    def _paired(self, root: cst.CSTNode, theirs: list, index: int | None = None,
                statements: bool = False) -> dict[int, tuple[int, int, int, int]]:
        """id(node) -> (line, column, end line, end column), 0-based columns in characters, of the
        calls, expressions (_EXPRESSIONS) and class/function names under libcst's `root`, paired
        in source order with those under CPython's statements `theirs` (the same code); empty when
        the two disagree (counts, callee names, definition names). `index`: the top-level
        statement `root` is, recorded as each node's owner. `statements`: the statements too
        (_STATEMENTS, and each line of simple statements), when the two agree on all of them."""
        calls: list[cst.Call] = []
        defs: list = []
        exprs: dict[type, list] = {t: [] for t in _EXPRESSIONS}
        stmts: list = []
        lines_of: list = []  # SimpleStatementLine nodes
        statement_kinds = _STATEMENTS if statements else {}
        stack: list = [root]
        push = stack.append
        node_types = _NODE_TYPES
        owner = self.quick_owner if index is not None else None
        pop = stack.pop
        reversed_fields = _REVERSED
        while stack:
            node = pop()
            if owner is not None:
                owner[id(node)] = index
            kind = type(node)  # exact tests: isinstance on libcst's ABCs costs a lookup per miss
            if kind is cst.Call:
                calls.append(node)
            elif kind is cst.ClassDef or kind is cst.FunctionDef:
                defs.append(node)
            elif kind in statement_kinds:
                stmts.append(node)
            elif kind is cst.SimpleStatementLine and statements:
                lines_of.append(node)
            else:
                bucket = exprs.get(kind)
                if bucket is not None:
                    bucket.append(node)
            # children pushed last field first, so that they pop in source order
            fields = reversed_fields.get(kind)
            if fields is None:
                fields = _reversed_fields(kind)
            for n in fields:
                value = getattr(node, n)
                vk = type(value)
                if vk is tuple or vk is list:
                    for v in reversed(value):
                        known = node_types.get(type(v))
                        if known or (known is None and is_node(v)):
                            push(v)
                else:
                    known = node_types.get(vk)
                    if known or (known is None and is_node(value)):
                        push(value)
        a_calls, a_defs, a_stmts = [], [], []
        a_exprs: dict[type, list] = {t: [] for t in _EXPRESSIONS.values()}
        statement_types = _AST_STATEMENTS if statements else frozenset()
        for top in theirs:
            for n in _ast_walk(top):
                kind = type(n)
                if kind is ast.Call:
                    a_calls.append(n)
                elif kind is ast.ClassDef or kind is ast.FunctionDef or kind is ast.AsyncFunctionDef:
                    a_defs.append(n)
                elif kind in a_exprs:
                    a_exprs[kind].append(n)
                elif kind in statement_types:
                    a_stmts.append(n)
        a_calls.sort(key=lambda n: (n.lineno, n.col_offset, -(n.end_lineno or 0), -(n.end_col_offset or 0)))
        a_defs.sort(key=lambda n: (n.lineno, n.col_offset))
        if len(calls) != len(a_calls) or len(defs) != len(a_defs):
            return {}
        # line breaks as CPython and libcst count them (\f, \x1c, U+2028... are not breaks)
        if self.file_lines is None:  # once per file: it was once per top-level statement
            self.file_lines = split_lines(self.text)
        text_lines = self.file_lines

        def col(line: int, byte: int) -> int:
            return _char_column(text_lines[line - 1] if 0 < line <= len(text_lines) else "", byte)

        out: dict[int, tuple[int, int, int, int]] = {}
        for c, a in zip(calls, a_calls):
            if len(c.args) != len(a.args) + len(a.keywords) or (type(c.func) is cst.Name and not (
                    isinstance(a.func, ast.Name) and a.func.id == c.func.value)):
                return {}
            if c.lpar or a.end_lineno is None or a.end_col_offset is None:
                continue  # a parenthesised call's range includes its parentheses in libcst
            out[id(c)] = (a.lineno, col(a.lineno, a.col_offset), a.end_lineno, col(a.end_lineno, a.end_col_offset))
        for kind, nodes in exprs.items():
            others = sorted(a_exprs[_EXPRESSIONS[kind]],
                            key=lambda n: (n.lineno, n.col_offset, -(n.end_lineno or 0), -(n.end_col_offset or 0)))
            if len(nodes) != len(others) or (kind is cst.Attribute and any(
                    c.attr.value != a.attr for c, a in zip(nodes, others))):
                continue  # e.g. dotted names in imports are Attributes for libcst only
            for c, a in zip(nodes, others):
                if getattr(c, "lpar", None) or a.end_lineno is None or a.end_col_offset is None:
                    continue
                out[id(c)] = (a.lineno, col(a.lineno, a.col_offset), a.end_lineno, col(a.end_lineno, a.end_col_offset))
        for d, a in zip(defs, a_defs):
            if d.name.value != a.name:
                return {}
            raw = text_lines[a.lineno - 1] if 0 < a.lineno <= len(text_lines) else ""
            start = raw.find(a.name, col(a.lineno, a.col_offset))
            if start >= 0 and raw[start + len(a.name):start + len(a.name) + 1] in ("(", ":", " ", "["):
                out[id(d.name)] = (a.lineno, start, a.lineno, start + len(a.name))
        if statements and len(stmts) == len(a_stmts):
            a_stmts.sort(key=lambda n: (n.lineno, n.col_offset))
            placed: dict[int, tuple[int, int, int, int]] = {}
            for c, a in zip(stmts, a_stmts):
                if type(a) not in _STATEMENTS[type(c)] or a.end_lineno is None or a.end_col_offset is None:
                    break
                placed[id(c)] = (a.lineno, col(a.lineno, a.col_offset), a.end_lineno, col(a.end_lineno, a.end_col_offset))
            else:
                # a line of simple statements: from its first one's start to its last one's end
                for line in lines_of:
                    first, last = placed.get(id(line.body[0])), placed.get(id(line.body[-1]))
                    if first is not None and last is not None:
                        placed[id(line)] = (first[0], first[1], last[2], last[3])
                out.update(placed)
        return out

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
        # (with the file's own indentation: libcst's default of four spaces shifted every column
        # of a file indented with tabs or two spaces, and --fix edited the wrong characters)
        sub = cst.Module(body=[stmt], default_indent=self.module.default_indent,
                         default_newline=self.module.default_newline)
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
                    if is_node(value):
                        stack.append(value)
                    elif isinstance(value, (tuple, list)):
                        stack.extend(v for v in value if is_node(v))
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
        if (type(node) in (cst.Call, cst.Name) or type(node) in _EXPRESSIONS) and "\f" not in self.text:
            # CPython's columns are the file's; libcst's are those of the text parsed without
            # indentation form feeds (parse_module), which SourceFile.span shifts back: a file
            # with form feeds takes libcst's positions only, so that every column is shifted once.
            if type(node) is cst.Name:
                # a class's or function's name (a network's origin): from the definitions paired
                # alone, not from the quick tables of every statement above it
                found = self._def_name(node)
                if found is not None:
                    return found
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


    # -- one function at a time ----------------------------------------------------------------
    # A top-level statement is the unit of `get`: one clip inside a 4 000-line Trainer class would
    # cost the position pass of the entire class. `span_in` resolves one function alone, as a
    # module of its own, and maps it back: lines shift by the distance between its `def` lines
    # (CPython's parser gives the real one), columns by the difference in leading whitespace of
    # each line — the only text that differs, since a block's indentation is relative in libcst
    # while continuation lines keep their own whitespace.

    def _pair_functions(self) -> dict[int, tuple[int, int]]:
        """id(FunctionDef) -> (its `def` line, its last line), from CPython's AST paired in source
        order; empty (and `defs_paired` false) when the two trees disagree."""
        if self.defs is not None:
            return self.defs
        self.defs = {}
        tree = self._cpython_tree()
        if tree is None:
            return self.defs
        ours, theirs = _definitions(self.module), _ast_definitions(tree)
        classes = [n for n in ours if type(n) is cst.ClassDef], [n for n in theirs if type(n) is ast.ClassDef]
        if len(classes[0]) == len(classes[1]) and all(a.name.value == b.name for a, b in zip(*classes)):
            self.def_names = {id(a.name): b for a, b in zip(*classes)}
        ours = [n for n in ours if type(n) is cst.FunctionDef]
        theirs = [n for n in theirs if type(n) is not ast.ClassDef]
        if len(ours) != len(theirs) or any(a.name.value != b.name for a, b in zip(ours, theirs)):
            return self.defs  # cannot pair them: every position comes from get()
        self.defs.update((id(a), (b.lineno, b.end_lineno or b.lineno)) for a, b in zip(ours, theirs))
        self.def_nodes = {id(a): b for a, b in zip(ours, theirs)}
        self.def_names.update((id(a.name), b) for a, b in zip(ours, theirs))
        self.defs_paired = True
        return self.defs

    def _def_name(self, node: cst.Name) -> CodeRange | None:
        """The position of a definition's name, placed as _paired places it; None for any other
        name, or when the definitions cannot be paired."""
        self._pair_functions()
        a = self.def_names.get(id(node))
        if a is None:
            return None
        if self.file_lines is None:
            self.file_lines = split_lines(self.text)
        raw = self.file_lines[a.lineno - 1] if 0 < a.lineno <= len(self.file_lines) else ""
        start = raw.find(a.name, _char_column(raw, a.col_offset))
        if start < 0 or raw[start + len(a.name):start + len(a.name) + 1] not in ("(", ":", " ", "["):
            return None
        found = self.cache[node] = CodeRange((a.lineno, start), (a.lineno, start + len(a.name)))
        return found

    def functions_paired(self) -> bool:
        """Whether `span_in` can place nodes function by function in this file."""
        self._pair_functions()
        return self.defs_paired

    def function_lines(self, fdef: cst.FunctionDef) -> tuple[int, int] | None:
        """(the `def` line, the last line) of a function, or None when it is not paired."""
        return self._pair_functions().get(id(fdef))

    def def_line(self, fdef: cst.FunctionDef) -> int:
        return self._pair_functions().get(id(fdef), (0, 0))[0]

    def statement_lines(self) -> list[tuple[cst.CSTNode, int, int]]:
        """(statement, first line, last line) of each top-level statement; [] when CPython's
        statements and libcst's cannot be paired."""
        lines = self.lines if self.lines is not None else self._start_lines()
        if not lines:
            return []
        self.lines = lines
        return [(stmt, group[0].lineno, group[-1].end_lineno or group[-1].lineno)
                for stmt, group in zip(self.module.body, self.groups)]

    def span_in(self, fdef: cst.FunctionDef, node: cst.CSTNode) -> SourceSpan | None:
        """Where `node` (inside `fdef`) is, in the file's columns (1-based), resolving `fdef`
        alone; None when the function is not paired or the node is not in it."""
        lines = self._pair_functions().get(id(fdef))
        if lines is None:
            return None
        if "\f" not in self.text:
            # Calls, names of definitions and the expressions of _EXPRESSIONS: CPython's positions,
            # paired in the function alone (as _quick_table pairs a top-level statement); the
            # code regeneration below cost a fifth of extracting a small training script.
            quick = self.function_quick.get(id(fdef))
            if quick is None:
                quick = self.function_quick[id(fdef)] = self._paired(fdef, [self.def_nodes[id(fdef)]], statements=True)
            found = quick.get(id(node))
            if found is not None:
                return SourceSpan(found[0], found[1] + 1, found[2], found[3] + 1)
            if quick and type(node) is cst.Call and not node.lpar:
                return None  # the table places every such call of the function: not one of them
        table = self.tables.get(id(fdef))
        if table is None:
            sub = cst.Module(body=[fdef], default_indent=self.module.default_indent,
                             default_newline=self.module.default_newline)
            positions = MetadataWrapper(sub, unsafe_skip_copy=True).resolve(PositionProvider)
            shift = lines[0] - positions[fdef.name].start.line
            table = self.tables[id(fdef)] = (positions, shift, split_lines(sub.code))
        positions, shift, sub_lines = table
        rng = positions.get(node)
        if rng is None:
            return None
        return SourceSpan(rng.start.line + shift, self._column(rng.start.line, rng.start.column, shift, sub_lines) + 1,
                          rng.end.line + shift, self._column(rng.end.line, rng.end.column, shift, sub_lines) + 1)

    def _column(self, line: int, column: int, shift: int, sub_lines: list[str]) -> int:
        if self.file_lines is None:
            self.file_lines = split_lines(self.text)
        mine = sub_lines[line - 1] if 0 < line <= len(sub_lines) else ""
        k = line + shift - 1
        theirs = self.file_lines[k] if 0 <= k < len(self.file_lines) else ""
        return column + (len(theirs) - len(theirs.lstrip())) - (len(mine) - len(mine.lstrip()))
