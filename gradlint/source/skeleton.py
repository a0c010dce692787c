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
- neither its name nor a name made from it at the top level (`NORM = TABLE`, the names a loop
  over it binds) is read in a function, class or lambda of the file (a builder that looks a
  model's arguments up in it, as `model_cfgs[variant]`, keeps it), and the top-level statements
  that read them mention no code a rule reads (a training loop, a loss, a model): timm's
  `generate_default_cfgs(default_cfgs)` and its loop that copies entries qualify.
"""

from __future__ import annotations

import ast
import re
import unicodedata

from gradlint.text import line_starts

# Below this, a table costs less to parse than its checks (a torchvision `cfgs` of ten lines is
# a model's layer list and is never skipped anyway: it is read in a function).
MIN_LINES = 100

_DATA = frozenset((ast.Dict, ast.List, ast.Tuple, ast.Set, ast.Constant, ast.Name, ast.Attribute, ast.Load,
                   ast.Call, ast.keyword, ast.JoinedStr, ast.FormattedValue, ast.UnaryOp, ast.USub, ast.UAdd))
_BREAK = re.compile(r"\r\n|\r|\n")
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def nodes_under(root: ast.AST) -> list[ast.AST]:
    """`root` and every node under it, in no particular order: what `ast.walk` visits, at about
    half its cost (no generator, no `iter_child_nodes` per node), for checks that only collect or
    test every node (those below, configs._summary's)."""
    found = [root]
    append = found.append
    node_type = ast.AST
    for node in found:  # the list grows while it is read
        for name in node._fields:
            value = getattr(node, name, None)
            if type(value) is list:
                for item in value:
                    if isinstance(item, node_type):
                        append(item)
            elif isinstance(value, node_type):
                append(value)
    return found


def _is_data(value: ast.expr) -> bool:
    for node in nodes_under(value):
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


# What a top-level statement that reads a table (or a name made from it) must not name: code a
# rule reads (a training loop, a loss, an op with a hazard, a model, a norm or an eps). Matched on
# the statement's identifiers (names and attributes, any case), not on its comments or strings.
_RULE_WORDS = re.compile(r"torch|backward|grad|step|optim|loss|clip|^nn$|^F$|log|exp|sqrt|softmax|sigmoid|"
                         r"model|cuda|train|eps|norm|scale", re.IGNORECASE | re.MULTILINE)


_UNITS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _outside_units(node: ast.AST) -> tuple[set[str], set[str], set[str], list[ast.AST]]:
    """The names `node` loads and binds outside any function, lambda or class in it, the
    identifiers it names there (names and attributes), and those outermost definitions."""
    loads: set[str] = set()
    binds: set[str] = set()
    idents: set[str] = set()
    units: list[ast.AST] = []
    stack = [node]
    while stack:
        n = stack.pop()
        kind = type(n)
        if kind in _UNITS and n is not node:
            units.append(n)
            continue
        if kind is ast.Name:
            (loads if type(n.ctx) is ast.Load else binds).add(n.id)
            continue
        if kind is ast.Attribute:
            idents.add(n.attr)
        for field in n._fields:  # ast.iter_child_nodes(n), inline
            value = getattr(n, field, None)
            if type(value) is list:
                stack.extend(item for item in value if isinstance(item, ast.AST))
            elif isinstance(value, ast.AST):
                stack.append(value)
    idents |= loads | binds
    return loads, binds, idents, units


def _free_reads(unit: ast.AST) -> set[str]:
    """The names a function, lambda or class (with everything nested in it) may read from the
    module: those it loads and binds nowhere in it (parameters, assignments, imports, nested
    definitions); `global` names are read."""
    loads: set[str] = set()
    bound: set[str] = set()
    for n in nodes_under(unit):
        kind = type(n)
        if kind is ast.Name:
            (loads if type(n.ctx) is ast.Load else bound).add(n.id)
        elif kind is ast.arg:
            bound.add(n.arg)
        elif kind is ast.alias:
            bound.add((n.asname or n.name).partition(".")[0])
        elif kind is ast.Global:
            loads.update(n.names)
        elif n is not unit and kind in _UNITS and kind is not ast.Lambda:
            bound.add(n.name)
    return loads - bound


def _at_definition(unit: ast.AST) -> set[str]:
    """The names a definition reads when it runs at the top level: decorators, bases, defaults."""
    parts: list[ast.AST] = list(getattr(unit, "decorator_list", ()))
    parts += getattr(unit, "bases", ())
    parts += [k.value for k in getattr(unit, "keywords", ())]
    args = getattr(unit, "args", None)
    if args is not None:
        parts += args.defaults
        parts += [d for d in args.kw_defaults if d is not None]
    reads: set[str] = set()
    for part in parts:
        reads |= _outside_units(part)[0]
    return reads


def _kept(tree: ast.Module, text: str, starts: list[int], found: dict[str, list[int]]) -> set[str]:
    """The candidate tables (`found`) to parse after all: a name made from one (bound by a
    top-level statement that reads it: `NORM = TABLE`, a loop over it) is read by a function,
    a lambda or a class of the file, or a top-level statement that reads one of them names code
    a rule reads (`_RULE_WORDS`). Read on CPython's tree, whose names are normalised as Python
    reads them (`ＮＯＲＭ` is `NORM`); a definition is walked only when its text holds one of the
    names (every definition when the text is not in that normal form)."""
    tables = {i for indexes in found.values() for i in indexes}
    units: list[ast.AST] = []
    top: list[tuple[set[str], set[str], set[str]]] = []  # names a statement reads, binds, names
    for i, node in enumerate(tree.body):
        if i in tables:
            continue
        if type(node) in _UNITS:
            units.append(node)
            reads = _at_definition(node)
            top.append((reads, {node.name}, reads))
            continue
        reads, binds, idents, inner = _outside_units(node)
        for unit in inner:
            units.append(unit)
            reads |= _at_definition(unit)
        top.append((reads, binds, idents))
    kept: set[str] = set()
    tainted: dict[str, set[str]] = {}
    for name in found:
        made = tainted[name] = {name}
        for reads, binds, idents in top:
            if reads & made:
                if _RULE_WORDS.search("\n".join(idents)):
                    kept.add(name)
                    break
                made |= binds
    live = {name: made for name, made in tainted.items() if name not in kept}
    if not live:
        return kept
    every = set().union(*live.values())
    normal = unicodedata.is_normalized("NFKC", text)
    words = _words(every) if normal else None
    for unit in units:
        if words is not None:
            first = min([unit.lineno, *(d.lineno for d in getattr(unit, "decorator_list", ()))])
            if not words.search(text, starts[first - 1], starts[min(unit.end_lineno or first, len(starts) - 1)]):
                continue
        reads = _free_reads(unit)
        for name, made in live.items():
            if name not in kept and made & reads:
                kept.add(name)
    return kept


def _words(names: set[str]) -> re.Pattern:
    """What `\\b(?:NAME|...)\\b` finds, written `(?:NAME(?<!\\wNAME)|...)\\b`: a pattern that starts
    with `\\b` has no first characters CPython's `re` can skip to, and tries every position (3x
    slower over a model file)."""
    alternatives = "|".join(f"{n}(?<!\\w{n})" for n in map(re.escape, sorted(names)))
    return re.compile(f"(?:{alternatives})\\b")


def skeleton(text: str, tree: ast.Module) -> tuple[str, ast.Module] | None:
    """The text with the values of the data tables above replaced, and CPython's tree of it
    (a copy of `tree` whose tables' values are `...`); None when there is nothing to skip."""
    found = _candidates(tree)
    if not found:
        return None
    starts = line_starts(text)
    for name in _kept(tree, text, starts, found):
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


# -- a class or function of another file, re-run with a caller's arguments ---------------------
# What the run may look up by a name it builds (`globals()[name]`, `eval`): every unit is kept.
_DYNAMIC = re.compile(r"\b(?:globals|locals|vars|eval|exec|__import__)\s*\(|sys\.modules|^[ \t]*global[ \t]", re.MULTILINE)
_TAIL = re.compile(r"[ \t\f]*(?:#[^\r\n]*)?(?:\r\n|\r|\n)?")


def _read_names(node: ast.AST) -> set[str]:
    """Every identifier `node` names (read or bound) and every string constant in it that is one
    (`getattr(module, "Block")`): the units a re-run of it may reach."""
    out: set[str] = set()
    for n in nodes_under(node):
        kind = type(n)
        if kind is ast.Name:
            out.add(n.id)
        elif kind is ast.Constant and type(n.value) is str and n.value.isidentifier():
            out.add(n.value)
        elif kind is ast.Attribute:
            out.add(n.attr)
    return out


def _exports(node: ast.AST) -> bool:
    """`__all__ = [...]` (or `+=`): names listed for `import *`, none of them looked up here."""
    targets = node.targets if type(node) is ast.Assign else [node.target] if type(node) in (ast.AugAssign, ast.AnnAssign) else []
    return bool(targets) and all(type(t) is ast.Name and t.id == "__all__" for t in targets)


def without_units(text: str, tree: ast.Module, wanted: set[str]) -> tuple[str, frozenset[str]] | None:
    """The text with the bodies of the top-level classes and functions a re-run of `wanted` (names
    of top-level units) cannot reach replaced by `...` and as many line breaks (every kept line
    keeps its number and text), and the names of the units kept; None when nothing would be left
    out, or when the file may reach a unit by a name it builds. Reached: the units `wanted` names,
    transitively, and those that any other top-level statement (imports, constants, tables,
    code under an `if`) names. A file with a `global` statement is parsed whole (a function may
    change a module constant the re-run reads)."""
    if _DYNAMIC.search(text):
        return None
    units: dict[str, list[ast.AST]] = {}
    names_of_rest: set[str] = set()
    for node in tree.body:
        if isinstance(node, _DEFINITIONS):
            units.setdefault(node.name, []).append(node)
        elif not _exports(node):
            names_of_rest |= _read_names(node)
    if not wanted or not wanted <= units.keys():
        return None
    kept: set[str] = set()
    todo = [n for n in wanted] + [n for n in names_of_rest if n in units]
    while todo:
        name = todo.pop()
        if name in kept:
            continue
        kept.add(name)
        for node in units[name]:
            todo.extend(n for n in _read_names(node) if n in units and n not in kept)
    starts = line_starts(text)
    pieces: list[str] = []
    at = 0
    for node in tree.body:
        if not isinstance(node, _DEFINITIONS) or node.name in kept:
            continue
        first = node.body[0]
        if first.lineno <= node.lineno or node.end_lineno is None or not 0 < first.lineno < len(starts):
            continue  # `def f(): return 1`: a body on the header's line stays
        begin = starts[first.lineno - 1]
        start = _offset(text, starts, first.lineno, first.col_offset)
        end = _offset(text, starts, node.end_lineno, node.end_col_offset)
        if start is None or end is None or begin < at or text[begin:start].strip(" \t\f"):
            continue
        tail = _TAIL.match(text, end)
        if tail is None or (tail.end() < len(text) and not tail.group().endswith(("\n", "\r"))):
            continue  # something follows the body on its last line (`...; x = 1`)
        span = text[begin:tail.end()]
        breaks = len(_BREAK.findall(span))
        if breaks == 0:
            continue
        pieces.append(text[at:begin])
        pieces.append(text[begin:start] + "..." + "\n" * breaks)
        at = tail.end()
    if not pieces:
        return None
    pieces.append(text[at:])
    return "".join(pieces), frozenset(kept)
