"""Which submodules a forward only ever uses detached: an order-following read of its names.

A-GCN (queenie88/A-GCN#4) computed `adj = self.non_local(inp)`, then `adj = gen_adj(adj).detach()`
before the graph layers used it: the non-local block never got a gradient. The numerics values do
not carry which modules a value passed through every operation (softmax, cross-entropy, calls of
the class's own methods and dict displays drop it), so this reads the forward's statements in
order instead: the names that hold what `self.m(...)` computed, and where they are read. A read
inside the receiver of `.detach()` / `.detach_()` / `.data`, or under `torch.no_grad()`, is cut; a
read that makes a name again carries the module on; any other read (a return, an attribute or
item stored, a call's argument, a condition) lets the module reach something, and it is then not
reported. Branches are read in source order, both sides alike (a module read on either side
reaches).
"""

from __future__ import annotations

import libcst as cst

from gradlint.source.engine.walk import suite
from gradlint.source.names import dotted

_CUTS = frozenset({"detach", "detach_"})
_NO_GRAD = frozenset({"no_grad", "inference_mode"})


def detached_modules(fn: cst.FunctionDef) -> list[tuple[str, cst.CSTNode]]:
    """(`self.m`, the first cut of its output) for each submodule called in `fn` whose every
    use there is cut; in the order of their cuts."""
    reader = _Reader()
    reader.block(suite(fn.body))
    return [(m, node) for m, node in reader.cuts.items() if m not in reader.reached]


class _Reader:
    def __init__(self) -> None:
        self.holds: dict[str, frozenset[str]] = {}  # name -> the modules whose output it holds
        self.cuts: dict[str, cst.CSTNode] = {}
        self.reached: set[str] = set()
        self.nograd = 0

    # -- statements --------------------------------------------------------------------------
    def block(self, stmts) -> None:
        for stmt in stmts:
            self.statement(stmt)

    def statement(self, stmt: cst.CSTNode) -> None:
        kind = type(stmt)
        if kind in (cst.SimpleStatementLine, cst.SimpleStatementSuite):
            for small in stmt.body:
                self.small(small)
        elif kind is cst.If:
            self.reach(self.modules(stmt.test))
            self.block(suite(stmt.body))
            if type(stmt.orelse) is cst.If:
                self.statement(stmt.orelse)
            elif stmt.orelse is not None:
                self.block(suite(stmt.orelse.body))
        elif kind in (cst.For, cst.While):
            head = stmt.iter if kind is cst.For else stmt.test
            got = self.modules(head)
            if kind is cst.For:
                self.bind(stmt.target, got)
            else:
                self.reach(got)
            self.block(suite(stmt.body))
            if stmt.orelse is not None:
                self.block(suite(stmt.orelse.body))
        elif kind is cst.With:
            cut = any(_no_grad(item.item) for item in stmt.items)
            for item in stmt.items:
                got = self.modules(item.item)
                if item.asname is not None:
                    self.bind(item.asname.name, got)
                else:
                    self.reach(got)
            self.nograd += cut
            self.block(suite(stmt.body))
            self.nograd -= cut
        elif kind in (cst.Try, cst.TryStar):
            self.block(suite(stmt.body))
            for handler in stmt.handlers:
                self.block(suite(handler.body))
            for extra in (stmt.orelse, stmt.finalbody):
                if extra is not None:
                    self.block(suite(extra.body))
        elif kind in (cst.FunctionDef, cst.ClassDef):
            pass  # a nested definition runs when called: its reads are not forward's
        else:
            # match and anything else: every module it reads reaches
            for child in stmt.children:
                if isinstance(child, cst.BaseExpression):
                    self.reach(self.modules(child))

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
            got = self.modules(small.value) | self.modules(small.target)
            self.bind(small.target, got)
        elif kind in (cst.Expr, cst.Return):
            if small.value is not None:
                self.reach(self.modules(small.value))
        else:
            for child in small.children:
                if isinstance(child, cst.BaseExpression):
                    self.reach(self.modules(child))

    def bind(self, target: cst.BaseExpression, got: frozenset[str]) -> None:
        """A name holds what its value carries (nothing: it forgets what it held); an attribute,
        an item or a starred target stores it where forward cannot follow: it reaches."""
        if type(target) is cst.Name:
            if got and not self.nograd:
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
        if not self.nograd:
            self.reached |= got

    # -- expressions ---------------------------------------------------------------------------
    def modules(self, e: cst.CSTNode) -> frozenset[str]:
        """The modules whose output `e` carries, outside cuts (a cut records the modules it cut)."""
        found: set[str] = set()
        stack = [e]
        while stack:
            n = stack.pop()
            kind = type(n)
            if kind is cst.Call and type(n.func) is cst.Attribute and n.func.attr.value in _CUTS:
                self.cut(n, self.modules(n.func.value))
                stack.extend(a.value for a in n.args)
                continue
            if kind is cst.Attribute and n.attr.value == "data":
                self.cut(n, self.modules(n.value))
                continue
            if kind is cst.Name:
                found |= self.holds.get(n.value, frozenset())
                continue
            if kind is cst.Call:
                name = dotted(n.func)
                if name and name.startswith("self.") and name.count(".") == 1:
                    found.add(name)
            if kind in (cst.Lambda, cst.FunctionDef):
                continue
            stack.extend(c for c in n.children if isinstance(c, cst.CSTNode))
        if self.nograd:
            for m in found:
                self.cuts.setdefault(m, e)
            return frozenset()
        return frozenset(found)

    def cut(self, node: cst.CSTNode, got: frozenset[str]) -> None:
        for m in got:
            self.cuts.setdefault(m, node)


def _no_grad(e: cst.BaseExpression) -> bool:
    call = e if type(e) is cst.Call else None
    name = dotted(call.func if call is not None else e) or ""
    return name.rsplit(".", 1)[-1] in _NO_GRAD
