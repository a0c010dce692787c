"""Which submodules a forward only ever uses detached: an order-following read of its names.

A-GCN (queenie88/A-GCN#4) computed `adj = self.non_local(inp)`, then `adj = gen_adj(adj).detach()`
before the graph layers used it: the non-local block never got a gradient. The numerics values do
not carry which modules a value passed through every operation (softmax, cross-entropy, calls of
the class's own methods and dict displays drop it), so this reads the forward's statements in
order instead: the names that hold what `self.m(...)` computed, and where they are read. A read
inside the receiver of `.detach()` / `.detach_()`, or under `torch.no_grad()` (not inside an
`enable_grad()` there), is cut; a read that makes a name again carries the module on; any other
read (a return, an attribute or item stored, a call's argument, a condition) lets the module reach
something, and it is then not reported. Whatever is unsure reaches: after an `if`, a name holds
what either side left it; a loop's body is read twice (values carried to the next pass); a module
named other than in a direct call (`checkpoint(self.m, x)`, `for layer in (self.m, ...)`), or
inside a lambda, a nested function or a `match`, reaches.
"""

from __future__ import annotations

from typing import Callable

import libcst as cst

from gradlint.source.engine.walk import children, suite, walk
from gradlint.source.names import dotted, grad_state, is_off, set_grad_statement, with_items

_CUTS = frozenset({"detach", "detach_"})
# What a tensor tells of itself without carrying its values: a read of it reaches nothing.
_METADATA = frozenset({"shape", "dtype", "device", "ndim", "is_cuda", "layout", "requires_grad"})
_METADATA_CALLS = frozenset({"size", "dim", "numel", "nelement", "get_device", "is_contiguous", "ndimension"})
# The words without which a forward cuts nothing (a switch imported under another name is read
# through the file's imports: any `with` is read).
CUT_WORDS = _CUTS | frozenset({"no_grad", "inference_mode", "set_grad_enabled"})


def detached_modules(fn: cst.FunctionDef, qualify: Callable[[cst.BaseExpression], frozenset[str]],
                     methods: frozenset[str] = frozenset()) -> list[tuple[str, cst.CSTNode]]:
    """(`self.m`, the first cut of its output) for each submodule called in `fn` whose every
    use there is cut; in the order of their cuts (modules cut at one place: by name). `qualify`:
    what a name of the file stands for (its imports); `methods`: the names of the class's methods
    (`self.propagate(x)` is no submodule: a forward that calls one hands its work on, and nothing
    is reported)."""
    if not _cuts_anything(fn):
        return []
    if any(type(n) is cst.Name and n.value == "self" for n in _passed_names(fn)):
        return []  # `getattr(self, name)(x)`, `helper(self, x)`: forward hands itself on
    reader = _Reader(methods, qualify)
    reader.reached |= _named_otherwise(fn)
    reader.block(suite(fn.body))
    if reader.handed:
        return []
    first: dict[int, int] = {}  # each cut place, by the order of its first cut
    for node in reader.cuts.values():
        first.setdefault(id(node), len(first))
    return sorted(((m, node) for m, node in reader.cuts.items() if m not in reader.reached),
                  key=lambda item: (first[id(item[1])], item[0]))


def _cuts_anything(fn: cst.FunctionDef) -> bool:
    """Whether forward names `detach`, `detach_`, `no_grad`, `inference_mode` or `set_grad_enabled`
    at all, or has a with block (a switch imported under another name: `no_grad as ng`)."""
    return any((type(n) is cst.Name and n.value in CUT_WORDS) or type(n) is cst.With for n in walk(fn.body, ()))


def _passed_names(fn: cst.FunctionDef):
    """The names forward passes as a call's arguments."""
    stack: list[cst.CSTNode] = list(suite(fn.body))
    while stack:
        n = stack.pop()
        if type(n) is cst.Call:
            for a in n.args:
                if type(a.value) is cst.Name:
                    yield a.value
        stack.extend(children(n))


def _named_otherwise(fn: cst.FunctionDef) -> set[str]:
    """The modules `self.m` that forward names other than as the callee of a direct call, or
    inside a lambda, a nested function or a `match`: what becomes of their output is not read."""
    out: set[str] = set()
    stack: list[tuple[cst.CSTNode, bool]] = [(stmt, False) for stmt in suite(fn.body)]
    while stack:
        n, hidden = stack.pop()
        kind = type(n)
        if kind is cst.Call:
            name = dotted(n.func)
            if name and name.startswith("self.") and name.count(".") == 1:
                if hidden:
                    out.add(name)
                stack.extend((a, hidden) for a in n.args)
                continue
        elif kind is cst.Attribute:
            name = dotted(n)
            if name and name.startswith("self.") and name.count(".") == 1:
                out.add(name)
                continue
        inner = hidden or kind in (cst.Lambda, cst.FunctionDef, cst.ClassDef, cst.Match)
        stack.extend((c, inner) for c in children(n))
    return out


class _Reader:
    def __init__(self, methods: frozenset[str], qualify: Callable[[cst.BaseExpression], frozenset[str]]) -> None:
        self.methods, self.qualify = methods, qualify
        self.holds: dict[str, frozenset[str]] = {}  # name -> the modules whose output it holds
        self.cuts: dict[str, cst.CSTNode] = {}
        self.reached: set[str] = set()
        # the grad state of the statement read (names.grad_state): None (recording), "off", or
        # "inference" (off, and no enable_grad() inside records again)
        self.grad: str | None = None
        self.loops = 0  # loops around the statement read
        self.handed = False  # forward calls a method of its class

    # -- statements --------------------------------------------------------------------------
    def block(self, stmts) -> None:
        saved = self.grad
        for stmt in stmts:
            self.statement(stmt)
            switched = set_grad_statement(stmt, self.qualify)
            if switched is not None and self.grad != "inference":
                # `torch.set_grad_enabled(False)` as a statement: what follows in the block runs so
                self.grad = None if switched else "off"
        self.grad = saved

    def statement(self, stmt: cst.CSTNode) -> None:
        kind = type(stmt)
        if kind in (cst.SimpleStatementLine, cst.SimpleStatementSuite):
            for small in stmt.body:
                self.small(small)
        elif kind is cst.If:
            self.reach(self.modules(stmt.test))
            before = dict(self.holds)
            self.block(suite(stmt.body))
            after_body, self.holds = self.holds, dict(before)
            if type(stmt.orelse) is cst.If:
                self.statement(stmt.orelse)
            elif stmt.orelse is not None:
                self.block(suite(stmt.orelse.body))
            # what either side left a name holding (`if flag: feat = feat.detach()` may not run)
            for name in set(after_body) | set(self.holds):
                self.holds[name] = after_body.get(name, frozenset()) | self.holds.get(name, frozenset())
        elif kind in (cst.For, cst.While):
            head = stmt.iter if kind is cst.For else stmt.test
            got = self.modules(head)
            if kind is cst.For:
                self.bind(stmt.target, got)
            else:
                self.reach(got)
            # the outermost loop's body twice (a value the body carries to its next pass: truncated
            # BPTT's `h`); a loop inside it once per pass of that one (twice per level would be
            # 2 ** depth readings)
            self.loops += 1
            for _ in range(2 if self.loops == 1 else 1):
                before = dict(self.holds)
                self.block(suite(stmt.body))
                for name, held in before.items():
                    self.holds[name] = self.holds.get(name, frozenset()) | held
            self.loops -= 1
            if stmt.orelse is not None:
                self.block(suite(stmt.orelse.body))
        elif kind is cst.With:
            # (the last switch decides; a mode computed at run time, `set_grad_enabled(self.training)`,
            # may record: unsure reads reach)
            for item in stmt.items:
                got = self.modules(item.item)
                if item.asname is not None:
                    self.bind(item.asname.name, got)
                else:
                    self.reach(got)
            saved = self.grad
            self.grad = grad_state(saved, with_items(stmt), self.qualify, unsure_records=True)
            self.block(suite(stmt.body))
            self.grad = saved
        elif kind in (cst.Try, cst.TryStar):
            self.block(suite(stmt.body))
            for handler in stmt.handlers:
                self.block(suite(handler.body))
            for extra in (stmt.orelse, stmt.finalbody):
                if extra is not None:
                    self.block(suite(extra.body))
        else:
            # a nested function or class (it runs when called), a match, anything else: what the
            # names it reads hold reaches (the modules it names: _named_otherwise)
            self.reach_names(stmt)

    def small(self, small: cst.BaseSmallStatement) -> None:
        kind = type(small)
        if kind is cst.Assign:
            got = self.modules(small.value)
            for t in small.targets:
                self.bind(t.target, got)
        elif kind is cst.AnnAssign:
            if small.value is not None:
                self.bind(small.target, self.modules(small.value))
        elif kind is cst.AugAssign:
            # in place: the target may be another name's tensor or list (`res = out; res += ...`,
            # `aux = self.aux; aux += [...]`), whose uses are not followed: it reaches
            got = self.modules(small.value) | self.modules(small.target)
            self.bind(small.target, got)
            self.reach(got)
        elif kind in (cst.Expr, cst.Return):
            if small.value is not None:
                got = self.modules(small.value)
                if kind is cst.Return and _alias(small.value):
                    self.reached |= self._held(small.value)  # (under no_grad too: no new tensor)
                self.reach(got)
        else:
            for child in small.children:
                if isinstance(child, cst.BaseExpression):
                    self.reach(self.modules(child))

    def _held(self, e: cst.BaseExpression) -> frozenset[str]:
        names = [e] if type(e) is cst.Name else [el.value for el in e.elements]
        return frozenset().union(*(self.holds.get(n.value, frozenset()) for n in names))

    def bind(self, target: cst.BaseExpression, got: frozenset[str]) -> None:
        """A name holds what its value carries (nothing: it forgets what it held); an attribute,
        an item or a starred target stores it where forward cannot follow: it reaches."""
        if type(target) is cst.Name:
            # (under no_grad `modules` gives only what a plain alias carries: `keep = adj`)
            if got:
                self.holds[target.value] = got
            else:
                self.holds.pop(target.value, None)
        elif type(target) in (cst.Tuple, cst.List):
            for el in target.elements:
                self.bind(el.value, got)
        else:
            self.reach(got)
            self.reach(self.modules(target))

    def reach(self, got: frozenset[str]) -> None:
        if not is_off(self.grad):
            self.reached |= got

    def reach_names(self, node: cst.CSTNode) -> None:
        """What every name read anywhere inside `node` holds reaches."""
        stack = [node]
        while stack:
            n = stack.pop()
            if type(n) is cst.Name:
                self.reached |= self.holds.get(n.value, frozenset())
            stack.extend(children(n))

    # -- expressions ---------------------------------------------------------------------------
    def modules(self, e: cst.CSTNode) -> frozenset[str]:
        """The modules whose output `e` carries, outside cuts (a cut records the modules it cut).
        Under no_grad a plain name or a tuple of names is the same tensor, not a new one: it
        carries what it holds."""
        if is_off(self.grad) and _alias(e):
            return self._held(e)
        found: set[str] = set()
        stack = [e]
        while stack:
            n = stack.pop()
            kind = type(n)
            if kind is cst.Call and type(n.func) is cst.Attribute and n.func.attr.value in _CUTS:
                self.cut(n, self.modules(n.func.value))
                if n.func.attr.value == "detach_" and type(n.func.value) is cst.Name:
                    self.holds.pop(n.func.value.value, None)  # `adj.detach_()`: adj holds a cut tensor now
                stack.extend(a.value for a in n.args)
                continue
            if kind is cst.Attribute and n.attr.value in _METADATA and type(n.value) is cst.Name:
                continue  # `adj.shape[0]`: a size, no tensor
            if kind is cst.Call and type(n.func) is cst.Attribute and n.func.attr.value in _METADATA_CALLS \
                    and type(n.func.value) is cst.Name:
                stack.extend(a.value for a in n.args)
                continue
            if kind is cst.NamedExpr:
                got = self.modules(n.value)
                self.bind(n.target, got)
                found |= got
                continue
            if kind is cst.Name:
                found |= self.holds.get(n.value, frozenset())
                continue
            if kind is cst.Call:
                name = dotted(n.func)
                if name and name.startswith("self.") and name.count(".") == 1:
                    if name[5:] in self.methods:
                        self.handed = True  # `self.propagate(x)`: the method may use any module
                    else:
                        found.add(name)
            if kind in (cst.Lambda, cst.FunctionDef):
                self.reach_names(n)  # (a closure reads the names when it runs)
                continue
            stack.extend(children(n))
        if is_off(self.grad):
            self.cut(e, frozenset(found))
            return frozenset()
        return frozenset(found)

    def cut(self, node: cst.CSTNode, got: frozenset[str]) -> None:
        for m in sorted(got):
            self.cuts.setdefault(m, node)


def _alias(e: cst.BaseExpression) -> bool:
    """A plain name, or a tuple or list of plain names."""
    return type(e) is cst.Name or (type(e) in (cst.Tuple, cst.List) and bool(e.elements)
                                    and all(type(el.value) is cst.Name for el in e.elements))

