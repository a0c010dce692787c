"""Budgets of the source front-end: how much one file may cost to parse and to interpret.

Every evaluation step of the interpreters (models.py, numerics.py, loops.py) is bounded here, in
one place, so that a tiny hostile file (`9 ** 9 ** 9`, `d *= d` forty times, a module that builds
copies of itself, a 900-term `1 + 1 + ...`) costs milliseconds, not the rest of the CI job. What a
budget cuts becomes Unknown, and Unknown never becomes a finding: the file is analysed as far as
the budget goes. What the parser cannot afford (huge or absurdly nested files) is a named skip.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

from gradlint.model import ir

# ---- parse: checked before libcst sees the file (its cost grows with size and nesting) ----
# the largest real model file we know is ~280 kB; the same as max-file-size's default, so that a file
# discovery reads whole is parsed (a larger max-file-size still stops here, with a named skip)
MAX_SOURCE_BYTES = 2 << 20
MAX_SOURCE_LINES = 20_000  # ~5 500 in transformers' largest module
# libcst's parse time grows with the square of expression nesting (a 1 000-deep `a[0][0]...`
# takes seconds, 2 000-deep ones tens of seconds) and it crashes on deeper ones. Every AST node
# deeper than NESTING_FREE levels costs its depth beyond that; a file may spend NESTING_BUDGET,
# about one `a[0][0]...` or `1 + 1 + ...` 1 100 levels deep (~3 s of parse). Real code stays
# under 40 levels.
NESTING_FREE = 100
NESTING_BUDGET = 1_500_000
# Nodes of CPython's tree of one file: libcst's parse and the interpreters grow with them (a 1.7 MB
# `nn.ModuleList([...])` of 100 000 layers, 700 000 nodes: 55 s and 5 GB; a 20 000-line __init__,
# 240 000 nodes: 12 s). The largest real module of the corpus has 40 000.
MAX_NODES = 100_000
# libcst's parse time grows exponentially with the nesting of a match statement's patterns (a
# 40-deep `case [[[...a...]]]:` never ended; a mapping pattern 12 deep took 26 s, 14 deep 6
# minutes; `((a,),)` 10 deep 3 s). Each pattern costs 4 for every sequence or mapping pattern
# around it, times 2 for every other one (measured: 1-2 s per million); a file may spend
# PATTERN_BUDGET. Real code: under 100.
PATTERN_BUDGET = 500_000

# ---- interpretation ----
MAX_INT = 2 ** 64  # larger integers are not folded (no layer has 2**64 units)
MAX_UNROLL = 512  # iterations of one unrolled loop
MAX_ITEMS = 4096  # items of one list or container
MAX_TEXT = 4096  # characters of one string the interpreters build (module names: f"layer{i}")
MAX_DEPTH = 6  # nested calls and instantiations of the file's own functions and classes
MAX_SAME_CLASS = 4  # levels of a class instantiated inside its own __init__ (DLA trees: 3)
MAX_EXPR_DEPTH = 100  # nesting of one expression followed by a recursive evaluator
MAX_STEPS = 200_000  # expressions and statements interpreted per file (real files: <= 47 000)
MAX_PIECE_STEPS = 50_000  # of which one class or function may take (so one cannot starve the rest)
# Layers of one forward path, unfolded (the IR's own bound: gradlint.model.ir)
MAX_UNFOLDED = ir.MAX_UNFOLDED


class Exhausted(Exception):
    """A budget is spent: the value being computed is Unknown."""


class Meter:
    """Steps and expression depth of one file's interpreter.

    `enter()` / `leave()` bracket each recursive evaluation: past MAX_EXPR_DEPTH the expression is
    Unknown (the file goes on). `allow()` opens a piece of work (a class, a function) with its
    share of steps; past it every later step is refused too, so the rest of that piece is Unknown
    and `exhausted` tells the caller not to trust what it built half-way. The file's total is
    MAX_STEPS, whatever the pieces.
    """

    __slots__ = ("steps", "depth", "limit", "total")

    def __init__(self, limit: int = MAX_STEPS) -> None:
        self.steps = 0
        self.depth = 0
        self.total = limit
        self.limit = limit

    def allow(self, steps: int = MAX_PIECE_STEPS) -> None:
        """The next piece of work may take `steps` more steps (within the file's total)."""
        self.limit = min(self.steps + steps, self.total)

    @property
    def exhausted(self) -> bool:
        return self.steps > self.limit

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.limit:
            raise Exhausted("steps")

    def charge(self, names: int) -> None:
        """A copy of an environment of `names` names (the two sides of an undecided `if`): a step
        for every 64 (5 000 locals around an `if` in nested loops cost 13 s at one step a fork;
        real environments hold fewer than 64, and cost nothing more)."""
        self.steps += names >> 6
        if self.steps > self.limit:
            raise Exhausted("steps")

    def enter(self) -> None:
        self.depth += 1
        self.steps += 1
        if self.depth > MAX_EXPR_DEPTH or self.steps > self.limit:
            raise Exhausted("depth" if self.depth > MAX_EXPR_DEPTH else "steps")

    def leave(self) -> None:
        self.depth -= 1


def bounded(v: Any) -> Any:
    """`v` when it is a number within budget (|int| <= MAX_INT, finite float), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, int):
        return v if -MAX_INT <= v <= MAX_INT else None
    return v if math.isfinite(v) else None


def fold(op: str, a: Any, b: Any) -> Any:
    """`a op b` for numbers within budget ('+', '-', '*', '/', '//', '%', '**'), or None when the
    result would be too large, infinite, complex, or an error (division by zero): Unknown."""
    if bounded(a) is None or bounded(b) is None:
        return None
    if op == "**" and isinstance(a, int) and isinstance(b, int) and b > 64 and abs(a) > 1:
        return None  # |a| >= 2: the result is over 2**64; never compute it
    try:
        if op == "+":
            r = a + b
        elif op == "-":
            r = a - b
        elif op == "*":
            r = a * b
        elif op == "/":
            r = a / b
        elif op == "//":
            r = a // b
        elif op == "%":
            r = a % b
        elif op == "**":
            r = a ** b
        else:
            return None
    except (ArithmeticError, ValueError):  # ZeroDivisionError, OverflowError
        return None
    return bounded(r)


_CASE_LINE = re.compile(r"^[ \t]*case\b", re.MULTILINE)


def pattern_cost(tree: ast.Module, text: str) -> int:
    """What the match statements' patterns cost libcst to parse (see PATTERN_BUDGET); 0 for a
    file with none (its text is searched for a `case` line first: no walk of the tree then)."""
    if _CASE_LINE.search(text) is None:
        return 0
    cost = 0
    for node in ast.walk(tree):
        if type(node) is ast.match_case:
            stack = [(node.pattern, 1)]
            while stack:
                pattern, weight = stack.pop()
                cost += weight
                if cost > PATTERN_BUDGET:
                    return cost
                below = weight * (4 if type(pattern) in (ast.MatchMapping, ast.MatchSequence) else 2)
                stack.extend((child, below) for child in ast.iter_child_nodes(pattern)
                             if isinstance(child, ast.pattern))
    return cost


def grown(items: list) -> list:
    """`items`, a list just made longer; Exhausted past MAX_ITEMS. Checked wherever a list grows,
    not only by append: `l = l + l` or `l += l` forty times made 2**40 items (12 GB, then the
    OOM killer)."""
    if len(items) > MAX_ITEMS:
        raise Exhausted("items")
    return items


def checked_range(args: list) -> range:
    """range(*args) for a loop to unroll; Exhausted when it is longer than MAX_UNROLL."""
    if not args or len(args) > 3 or any(bounded(a) is None or not isinstance(a, int) for a in args):
        raise Exhausted("range")
    try:
        r = range(*args)
        n = len(r)
    except (ValueError, OverflowError):  # step 0; longer than a C ssize_t
        raise Exhausted("range") from None
    if n > MAX_UNROLL:
        raise Exhausted("range")
    return r


# Fields of CPython's AST classes that hold no node, by the grammar (Python.asdl: identifiers,
# strings, ints, constants, and the lists of identifiers of `global`, `nonlocal` and class
# patterns): nesting_cost does not read them. A name or a constant is most of a tree's nodes,
# and they hold nothing else but `ctx`.
_NO_NODES = {
    "FunctionDef": ("name", "type_comment"), "AsyncFunctionDef": ("name", "type_comment"), "ClassDef": ("name",),
    "Assign": ("type_comment",), "AnnAssign": ("simple",), "For": ("type_comment",), "AsyncFor": ("type_comment",),
    "With": ("type_comment",), "AsyncWith": ("type_comment",), "ImportFrom": ("module", "level"),
    "Global": ("names",), "Nonlocal": ("names",), "FormattedValue": ("conversion",), "Constant": ("value", "kind"),
    "Attribute": ("attr",), "Name": ("id",), "comprehension": ("is_async",), "ExceptHandler": ("name",),
    "arg": ("arg", "type_comment"), "keyword": ("arg",), "alias": ("name", "asname"), "MatchSingleton": ("value",),
    "MatchMapping": ("rest",), "MatchClass": ("kwd_attrs",), "MatchStar": ("name",), "MatchAs": ("name",),
    "TypeIgnore": ("lineno", "tag"),
}
_NODE_FIELDS: dict[type, tuple[str, ...]] = {}


def _node_fields(cls: type) -> tuple[str, ...]:
    """The fields of an AST class that may hold nodes (or lists of them)."""
    found = _NODE_FIELDS.get(cls)
    if found is None:
        skip = _NO_NODES.get(cls.__name__, ()) if cls.__module__ == "ast" else ()
        found = tuple(f for f in cls._fields if f not in skip)
        if cls in _CHAINS:
            found = _Chained(found)
        _NODE_FIELDS[cls] = found
    return found


def nesting_cost(tree: ast.AST) -> tuple[int, int]:
    """(deepest node depth, nesting cost) of a CPython AST as libcst will nest it, without
    recursion.

    Level by level: every node of one depth costs the same, so a level is counted at once and
    no (node, depth) pair is made per node (this pass runs on every file before the parse).
    Where CPython's tree is flat and libcst's a chain (`a and b and c`, a dotted import), the
    chain's depth is counted (_chain): libcst segfaulted on a 10 000-term `and` and on a
    50 000-part `import a.b.c...`, both of which CPython accepts."""
    deepest = cost = nodes = 0
    level: list = [tree]
    later: dict[int, list] = {}  # nodes placed deeper than the next level, by depth
    depth = 0
    free = NESTING_FREE
    node_type = ast.AST
    node_fields = _NODE_FIELDS
    while level:
        deepest = depth
        nodes += len(level)
        if depth > free:
            cost += (depth - free) * len(level)
        below: list = later.pop(depth + 1, [])
        add, more = below.append, below.extend
        for node in level:
            fields = node_fields.get(type(node))
            if fields is None:
                fields = _node_fields(type(node))
            if type(fields) is _Chained and _chain(node, depth, below, later):
                continue
            for name in fields:
                value = getattr(node, name, None)
                if isinstance(value, node_type):
                    add(value)
                elif type(value) is list:
                    more(v for v in value if isinstance(v, node_type))
        level = below
        depth += 1
    return deepest, cost, nodes


class _Link(ast.AST):
    """A node of libcst's chain that CPython's tree has no node for (nesting_cost counts it)."""

    _fields = ()


class _Chained(tuple):
    """The node fields of a class whose nodes libcst nests as a chain (_chain)."""


_CHAINS = (ast.BoolOp, ast.alias, ast.ImportFrom)


def _chain(node: ast.AST, depth: int, below: list, later: dict[int, list]) -> bool:
    """Place the parts of a node that libcst nests as a chain where libcst has them: a BoolOp of
    k values is k - 1 operations each holding the next (`(a and b) and c`: the first two values
    k - 1 levels down), a dotted name of p parts p - 1 attributes. True when the node's fields
    are placed (a BoolOp); False leaves them to the caller (an import's aliases)."""

    def put(item: ast.AST, down: int) -> None:
        (below if down == 1 else later.setdefault(depth + down, [])).append(item)

    if type(node) is ast.BoolOp:
        values = node.values
        k = len(values)
        if k <= 2:
            return False
        for down in range(1, k - 1):
            put(_Link(), down)
        put(values[0], k - 1)
        for i in range(1, k):
            put(values[i], k - i)
        return True
    name = node.name if type(node) is ast.alias else node.module
    for down in range(1, (name or "").count(".") + 1):
        put(_Link(), down)
    return False
