"""Large data tables at a module's top level, left out of libcst's parse: same lines, no table.

timm's model files end in a table of pretrained weights (`default_cfgs = {...}`: 1 286 of the
5 308 lines of vision_transformer.py) that no rule reads and no model is built from, yet libcst
parsed it and the interpreters evaluated its hundreds of calls: a quarter of a one-file
(pre-commit) run. libcst now parses a skeleton of the text in which the value of such a table is
`(` + as many line breaks as the table has + `...)`: every other line keeps its number and its text, so
positions, spans and fixes elsewhere are the file's. The table's name is then an unknown value,
which never becomes a finding. CPython's tree (the caller's, of the whole text) stays the one
that decides syntax errors, budgets and module symbols; the positions service gets a copy whose
skipped values are the same `...` (the two trees are paired statement by statement).

A table is skipped only when leaving it out can change nothing a rule reads:
- it is a top-level `NAME = value` (or annotated) of at least MIN_LINES lines, and no statement
  follows it on its last line;
- its value is data: literals, containers, names, attributes, and calls of lower-case names
  (`_cfg(...)`, `dict(...)`); no class is called in it (a config class `CspModelCfg(...)` or a
  layer `Linear(...)` is what a model may be built from), nothing is subscripted or computed
  beyond a sign;
- its name is read in no function, class or lambda of the file (a builder that looks a model's
  arguments up in it, as `model_cfgs[variant]`, keeps it): only statements at the module's top
  level read it (timm's `generate_default_cfgs(default_cfgs)`).
"""

from __future__ import annotations

import ast
import bisect
import re

from gradlint.text import line_starts

# Below this, a table costs less to parse than its checks (a torchvision `cfgs` of ten lines is
# a model's layer list and is never skipped anyway: it is read in a function).
MIN_LINES = 100

_DATA = frozenset((ast.Dict, ast.List, ast.Tuple, ast.Set, ast.Constant, ast.Name, ast.Attribute, ast.Load,
                   ast.Call, ast.keyword, ast.JoinedStr, ast.FormattedValue, ast.UnaryOp, ast.USub, ast.UAdd))
_BREAK = re.compile(r"\r\n|\r|\n")
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _is_data(value: ast.expr) -> bool:
    for node in ast.walk(value):
        kind = type(node)
        if kind not in _DATA:
            return False
        if kind is ast.Call:
            func = node.func
            if type(func) is not ast.Name or func.id[:1].isupper():
                return False
        elif kind is ast.UnaryOp and type(node.operand) is not ast.Constant:
            return False
    return True


def _candidates(tree: ast.Module) -> dict[str, list[int]]:
    """Name -> the indexes in tree.body of its skippable assignments (before the name check)."""
    found: dict[str, list[int]] = {}
    for i, node in enumerate(tree.body):
        kind = type(node)
        if kind is ast.Assign:
            if len(node.targets) != 1:
                continue
            target = node.targets[0]
        elif kind is ast.AnnAssign and node.value is not None:
            target = node.target
        else:
            continue
        end = node.end_lineno or node.lineno
        if type(target) is not ast.Name or end - node.lineno + 1 < MIN_LINES:
            continue
        if i + 1 < len(tree.body) and tree.body[i + 1].lineno <= end:
            # a statement after it on its last line (`}; x = f(y)`) would move left in the skeleton
            continue
        if _is_data(node.value):
            found.setdefault(target.id, []).append(i)
    return found


def _read_in_code(tree: ast.Module, text: str, starts: list[int], found: dict[str, list[int]]) -> set[str]:
    """The names of the candidate tables (`found`) that a function, class or lambda of the file
    may read: each line that holds the word inside a definition or a lambda (at any depth), or
    beside a `lambda`. Conservative: the word in a string or a comment there counts too."""
    tables = {i for indexes in found.values() for i in indexes}  # data: no definition in them
    ranges: list[tuple[int, int]] = []
    for i, node in enumerate(tree.body):
        if i in tables:
            continue
        if isinstance(node, _DEFINITIONS):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            ranges.append((first, node.end_lineno or node.lineno))
        elif not isinstance(node, (ast.Import, ast.ImportFrom)):
            # any other statement (an assignment, an `if`, a `for`...): the definitions and
            # lambdas inside it (only files with a candidate table get here)
            for inner in ast.walk(node):
                if isinstance(inner, (*_DEFINITIONS, ast.Lambda)):
                    ranges.append((inner.lineno, inner.end_lineno or inner.lineno))
    read: set[str] = set()
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(found)) + r")\b")
    for match in pattern.finditer(text):
        name = match.group(1)
        if name in read:
            continue
        line = bisect.bisect_right(starts, match.start())
        begin, end = starts[line - 1], starts[min(line, len(starts) - 1)]
        if any(a <= line <= b for a, b in ranges) or "lambda" in text[begin:end]:
            read.add(name)
    return read


def skeleton(text: str, tree: ast.Module) -> tuple[str, ast.Module] | None:
    """The text with the values of the data tables above replaced, and CPython's tree of it
    (a copy of `tree` whose tables' values are `...`); None when there is nothing to skip."""
    found = _candidates(tree)
    if not found:
        return None
    starts = line_starts(text)
    for name in _read_in_code(tree, text, starts, found):
        del found[name]
    skipped = sorted(i for indexes in found.values() for i in indexes)
    if not skipped:
        return None
    body = list(tree.body)
    pieces: list[str] = []
    at = 0
    for i in skipped:
        node = body[i]
        value = node.value
        start = _offset(text, starts, value.lineno, value.col_offset)
        end = _offset(text, starts, value.end_lineno, value.end_col_offset)
        if start is None or end is None or start < at:
            return None
        # one \n per line break (the table's own `\r` then `\n` would make one `\r\n`)
        breaks = "\n" * len(_BREAK.findall(text, start, end))
        pieces.append(text[at:start])
        pieces.append("(" + breaks + "...)")
        at = end
        # CPython's positions (UTF-8 byte columns) of the `...` and of the statement's new end
        if breaks:
            line, column = value.end_lineno, 0
        else:
            line, column = value.lineno, value.col_offset + 1
        stub = ast.Constant(value=Ellipsis, lineno=line, col_offset=column, end_lineno=line,
                            end_col_offset=column + 3)
        copy = type(node)(**{f: getattr(node, f) for f in node._fields})
        copy.value = stub
        # what follows the value on its last line (a closing bracket) moves by the length change
        copy.lineno, copy.col_offset, copy.end_lineno = node.lineno, node.col_offset, node.end_lineno
        copy.end_col_offset = node.end_col_offset
        if node.end_lineno == value.end_lineno:
            copy.end_col_offset = node.end_col_offset + (column + 4) - value.end_col_offset
        body[i] = copy
    pieces.append(text[at:])
    return "".join(pieces), ast.Module(body=body, type_ignores=tree.type_ignores)


def _offset(text: str, starts: list[int], line: int | None, byte_column: int | None) -> int | None:
    """The character offset in `text` of CPython's (line, UTF-8 byte column)."""
    if line is None or byte_column is None or not 0 < line < len(starts):
        return None
    begin, end = starts[line - 1], starts[line]
    raw = text[begin:end]
    column = byte_column if raw.isascii() else len(raw.encode("utf-8", "surrogatepass")[:byte_column].decode(
        "utf-8", "replace"))
    return begin + column
