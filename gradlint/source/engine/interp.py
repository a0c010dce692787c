"""The statement walker every interpreter of the source front-end stands on: dispatch, destructuring, budget.

One walker owns the order in which statements run and what each kind of statement does to the
flow (a block stops at a `return`, an undecided `if` runs both branches from one state and joins
them, a loop of unknown length runs its body once and joins with the state before it, a target
`a, (b, *c)` is taken apart). What a value is, and what evaluating, binding or joining does to
it, belongs to the client: models' `__init__` interpreter, forward's path interpreter, the
numerics walk. They override the hooks below, never the dispatch.

The dispatch passes `*context` through to the handlers unchanged, so a recorder that keeps its
own position in a tree of blocks (the training-loop facts) can use it too.
"""

from __future__ import annotations

from typing import Any

import libcst as cst

from gradlint.source.engine.values import UNKNOWN, truth

# statement kind -> the handler's name; a kind missing here goes to `other_statement`
_STATEMENTS: dict[type, str] = {
    cst.SimpleStatementLine: "simple_line",
    cst.SimpleStatementSuite: "simple_line",
    cst.If: "if_stmt",
    cst.For: "for_stmt",
    cst.While: "while_stmt",
    cst.With: "with_stmt",
    cst.Try: "try_stmt",
    cst.TryStar: "try_stmt",
    cst.Match: "match_stmt",
    cst.FunctionDef: "function_def",
    cst.ClassDef: "class_def",
    cst.IndentedBlock: "indented_block",
}
# small statement kind -> the handler's name; a kind missing here goes to `other_small`
_SMALL: dict[type, str] = {
    cst.Assign: "assign_stmt",
    cst.AnnAssign: "ann_assign_stmt",
    cst.AugAssign: "aug_assign_stmt",
    cst.Expr: "expr_stmt",
    cst.Return: "return_stmt",
    cst.Raise: "raise_stmt",
    cst.Assert: "assert_stmt",
    cst.Del: "del_stmt",
}


def statements(body: Any) -> Any:
    """The statements of a block: an indented block's, a one-line suite itself (`if x: f(x)`),
    or a list or tuple of statements as given."""
    if type(body) is cst.IndentedBlock:
        return body.body
    if type(body) is cst.SimpleStatementSuite:
        return (body,)
    return body


def else_body(stmt: cst.If) -> Any:
    """What runs when an `if`'s test is false: the `else` block, the `elif` (as a block of one
    statement), or None."""
    if stmt.orelse is None:
        return None
    return stmt.orelse.body if type(stmt.orelse) is cst.Else else [stmt.orelse]


class StatementWalker:
    """Runs statements in order over a client's value domain.

    `done`: a `return` (or a refused configuration) ended the current block; `meter`: the budget
    (source/budget.Meter) stepped once per statement, None for a walk without one. Hooks a client
    overrides: `evaluate`, `bind_name` / `bind_attribute` / `bind_subscript`, `unpack` /
    `unpacked`, `augmented`, `on_return`, `condition`, `fork` / `restore` / `settle` /
    `join_branches` (an undecided `if`), `loop_items` / `fork_loop` / `join_loop` (a `for`
    unrolled or summarised), and any statement handler whose meaning differs in its domain
    (`return_stmt`, `aug_assign_stmt`...). A recorder that only needs the dispatch calls
    `statement(stmt, *context)` / `small(small, *context)` and defines every handler it meets."""

    done: bool = False
    meter: Any = None

    # -- dispatch ------------------------------------------------------------------------------
    def block(self, body: Any) -> None:
        """Run a block's statements until one ends it (`done`)."""
        meter = self.meter
        for stmt in statements(body):
            if self.done:
                return
            if meter is not None:
                meter.step()
            self.statement(stmt)

    def statement(self, stmt: cst.CSTNode, *context: Any) -> Any:
        return getattr(self, _STATEMENTS.get(type(stmt), "other_statement"))(stmt, *context)

    def small(self, small: cst.BaseSmallStatement, *context: Any) -> Any:
        return getattr(self, _SMALL.get(type(small), "other_small"))(small, *context)

    def simple_line(self, stmt: cst.SimpleStatementLine | cst.SimpleStatementSuite) -> None:
        for small in stmt.body:
            self.small(small)

    def indented_block(self, stmt: cst.IndentedBlock) -> None:
        self.block(stmt)

    def other_statement(self, stmt: cst.CSTNode, *context: Any) -> Any:
        pass

    def other_small(self, small: cst.BaseSmallStatement, *context: Any) -> Any:
        """`pass`, `global`, `import`, `break`, `continue`...: nothing a value flows through."""

    # -- the value domain (hooks) --------------------------------------------------------------
    def evaluate(self, expr: cst.BaseExpression) -> Any:
        raise NotImplementedError

    def unknown(self) -> Any:
        """The value nothing is known about (a client whose domain has its own says which)."""
        return UNKNOWN

    # -- assignments ---------------------------------------------------------------------------
    def assign_stmt(self, small: cst.Assign) -> None:
        value = self.evaluate(small.value)
        for t in small.targets:
            self.assign(t.target, value, small.value)

    def ann_assign_stmt(self, small: cst.AnnAssign) -> None:
        if small.value is not None:
            self.assign(small.target, self.evaluate(small.value), small.value)

    def aug_assign_stmt(self, small: cst.AugAssign) -> None:
        current = self.evaluate(small.target)
        self.assign(small.target, self.augmented(small, current, self.evaluate(small.value)), None)

    def augmented(self, small: cst.AugAssign, current: Any, value: Any) -> Any:
        """The value of `target op= value`."""
        return self.unknown()

    def assign(self, target: cst.BaseExpression, value: Any, node: cst.BaseExpression | None = None) -> None:
        """An assignment statement's target gets `value` (`node`: the expression it came from,
        None when there is none, e.g. an augmented assignment's result)."""
        self.assign_target(target, value)

    def assign_target(self, target: cst.BaseExpression, value: Any) -> None:
        """Bind `value` to a target as Python does: a name, an attribute, a subscript, or a tuple
        or list of targets taken apart item by item (`unpack`); when the items are not known, or
        a starred target takes a part of unknown length, each target gets `unpacked(value)`."""
        if type(target) is cst.Name:
            self.bind_name(target.value, value)
        elif type(target) is cst.Attribute:
            self.bind_attribute(target, value)
        elif type(target) is cst.Subscript:
            self.bind_subscript(target, value)
        elif type(target) in (cst.Tuple, cst.List):
            elements = [el.value for el in target.elements]
            starred = any(type(el) is cst.StarredElement for el in target.elements)
            items = None if starred else self.unpack(value, len(elements))
            if items is not None:
                for t, v in zip(elements, items):
                    self.assign_target(t, v)
            else:
                part = self.unpacked(value)
                for t in elements:
                    self.assign_target(t, part)
        elif type(target) is cst.StarredElement:
            self.assign_target(target.value, self.unpacked(value))

    def bind_name(self, name: str, value: Any) -> None:
        raise NotImplementedError

    def bind_attribute(self, target: cst.Attribute, value: Any) -> None:
        """`x.a = value`: nothing by default."""

    def bind_subscript(self, target: cst.Subscript, value: Any) -> None:
        """`x[i] = value`: nothing by default."""

    def unpack(self, value: Any, count: int) -> list | None:
        """The `count` items of a value a tuple target takes apart, or None when not known."""
        return None

    def unpacked(self, value: Any) -> Any:
        """What each target gets when `value` cannot be taken apart."""
        return self.unknown()

    # -- other small statements ----------------------------------------------------------------
    def expr_stmt(self, small: cst.Expr) -> None:
        self.evaluate(small.value)

    def return_stmt(self, small: cst.Return) -> None:
        self.on_return(small, self.evaluate(small.value) if small.value is not None else None)
        self.done = True

    def on_return(self, small: cst.Return, value: Any) -> None:
        """A `return` (value None for a bare one)."""

    def raise_stmt(self, small: cst.Raise) -> None:
        if small.exc is not None:
            self.evaluate(small.exc)

    def assert_stmt(self, small: cst.Assert) -> None:
        self.evaluate(small.test)
        if small.msg is not None:
            self.evaluate(small.msg)

    def del_stmt(self, small: cst.Del) -> None:
        pass

    # -- if ------------------------------------------------------------------------------------
    def if_stmt(self, stmt: cst.If) -> None:
        """A decided test runs one branch; an undecided one runs both (`branches`)."""
        cond = self.condition(stmt)
        if cond is not None:
            if cond:
                self.block(stmt.body)
            elif stmt.orelse is not None:
                self.block(else_body(stmt))
            return
        self.branches(stmt)

    def condition(self, stmt: cst.If) -> bool | None:
        """The truth of an `if`'s test, None when it cannot be decided."""
        return truth(self.evaluate(stmt.test))

    def branches(self, stmt: cst.If) -> None:
        """Both branches of an undecided `if`, each from the state before it, then joined."""
        state = self.fork()
        self.block(stmt.body)
        first = self.settle(state)
        self.restore(state)
        if stmt.orelse is not None:
            self.block(else_body(stmt))
        second = self.settle(state)
        self.join_branches(stmt, state, first, second)

    def fork(self) -> Any:
        """A copy of the state a branch starts from."""
        raise NotImplementedError

    def restore(self, state: Any) -> None:
        """Start the next branch from `state` (what `fork` returned)."""
        raise NotImplementedError

    def settle(self, state: Any) -> Any:
        """The state at the end of a branch (and whether it returned); `done` no longer holds."""
        raise NotImplementedError

    def join_branches(self, stmt: cst.CSTNode, before: Any, first: Any, second: Any) -> None:
        """Make the state after the `if` from what each branch ended with."""
        raise NotImplementedError

    # -- loops ---------------------------------------------------------------------------------
    def for_stmt(self, stmt: cst.For) -> None:
        """Unrolled over known items (`loop_items`); else the body runs once with an unknown
        target and joins with the state before it (`loop_body`)."""
        items = self.loop_items(stmt)
        if items is None:
            state = self.fork_loop()
            self.assign_target(stmt.target, self.unknown())
            self.block(stmt.body)
            self.join_loop(stmt, state)
        else:
            for item in items:
                self.assign_target(stmt.target, item)
                self.block(stmt.body)
                if self.done:
                    return
        self.loop_else(stmt)

    def loop_items(self, stmt: cst.For) -> list | None:
        """The items a `for` iterates over, when known (and few enough to unroll)."""
        self.evaluate(stmt.iter)
        return None

    def while_stmt(self, stmt: cst.While) -> None:
        self.evaluate(stmt.test)
        self.loop_body(stmt)
        self.loop_else(stmt)

    def loop_body(self, stmt: cst.For | cst.While) -> None:
        """A body that runs an unknown number of times: once, joined with the state before it."""
        state = self.fork_loop()
        self.block(stmt.body)
        self.join_loop(stmt, state)

    def fork_loop(self) -> Any:
        """The state before a loop of unknown length (`fork` unless the client keeps another)."""
        return self.fork()

    def join_loop(self, stmt: cst.For | cst.While, before: Any) -> None:
        raise NotImplementedError

    def loop_else(self, stmt: cst.For | cst.While) -> None:
        if stmt.orelse is not None and not self.done:
            self.block(stmt.orelse.body)

    # -- other compound statements -------------------------------------------------------------
    def with_stmt(self, stmt: cst.With) -> None:
        for item in stmt.items:
            value = self.evaluate(item.item)
            if item.asname is not None:
                self.assign(item.asname.name, value, item.item)
        self.block(stmt.body)

    def try_stmt(self, stmt: cst.Try | cst.TryStar) -> None:
        """The body, each handler, `else` and `finally` in turn."""
        self.block(stmt.body)
        for handler in stmt.handlers:
            self.block(handler.body)
        if stmt.orelse is not None:
            self.block(stmt.orelse.body)
        if stmt.finalbody is not None:
            self.block(stmt.finalbody.body)

    def match_stmt(self, stmt: cst.Match) -> None:
        self.evaluate(stmt.subject)
        for case in stmt.cases:
            self.block(case.body)

    def function_def(self, stmt: cst.FunctionDef) -> None:
        """A nested `def`: its body runs when it is called, not here."""

    def class_def(self, stmt: cst.ClassDef) -> None:
        """A nested `class`: nothing by default."""
