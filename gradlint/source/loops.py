"""Training-loop facts: backward, optimizer steps, clips, unscales and clears, in order, per function.

The extractor turns one parsed file into pure data (the GL2xx rules read nothing else): every
function becomes a tree of blocks (loops, `if` alternatives, `with` contexts) holding the events
the training-loop rules care about, in source order. Calls to functions of the same file are
recorded with their resolved targets so that rules can follow a loop into its step function;
assignments are recorded so that rules can tell which model an optimizer trains, which scaler is
disabled, and which values a clip threshold or a loss comes from. What a call means to a training
step (a backward, a step, a clip...) is `loop_calls.py`; what the file binds, read before the
walk, is `loop_env.py`.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Any
from dataclasses import dataclass

import libcst as cst

from gradlint.facts.training import Assign, Block, Event, Function, Stmt, TrainingFacts, Value, iter_events, method_id
from gradlint.findings import SourceSpan
from gradlint.source.engine.calls import arg as _arg
from gradlint.source.engine.env import Env, Returns
from gradlint.source.engine.fold import number as _number
from gradlint.source.engine.interp import StatementWalker
from gradlint.source.engine.values import UNKNOWN, Ctor
from gradlint.source.engine.walk import headers as _headers
from gradlint.source.engine.walk import suite as _suite
from gradlint.source.engine.walk import text as _text
from gradlint.source.engine.walk import walk
from gradlint.source.loop_calls import ACCELERATORS, CLIP_NAMES, OPTIMIZER_CLASSES, _name_reads, _names_in, CallEvents
from gradlint.source.loop_configs import config_fields, deepspeed_clipping
from gradlint.source.loop_drivers import (FABRICS, IGNITE_TRAINERS, accumulates, driven, drives_elsewhere, fabric_fp16,
                                          handed_back, lambda_clears, lightning_automatic, manual_classes)
from gradlint.source.loop_param_clears import fresh_tensor, whole_model_clear
from gradlint.source.loop_optimizers import OptimizerLoops, _drawn_from, _parameter_owners
from gradlint.source.loop_env import GRAD_SCALERS, _MOVE_METHODS, _PrePass, _fact, _target_texts
from gradlint.source.names import (decorators, dotted, grad_mode, grad_state, is_off, set_grad_statement, with_items,
                                   implied_true, wraps_module, MODEL_WRAPPERS)
from gradlint.text import split_lines

# ---------------------------------------------------------------------------------------------
# Names

# Accelerator arguments under which its fp16 backward may not scale the loss with a GradScaler.
_NO_SCALER_ARGS = frozenset({"deepspeed_plugin", "deepspeed_plugins", "megatron_lm_plugin", "cpu",
                             "kwargs_handlers", "fsdp_plugin"})
PL_TRAINERS = frozenset({"pytorch_lightning.Trainer", "lightning.Trainer", "lightning.pytorch.Trainer",
                         "lightning.pytorch.trainer.Trainer", "pytorch_lightning.trainer.Trainer"})
HF_ARGS = frozenset({"transformers.TrainingArguments", "transformers.Seq2SeqTrainingArguments"})
HF_TRAINERS = frozenset({"transformers.Trainer", "transformers.Seq2SeqTrainer"})
TORCH_RECURRENT = {"torch.nn.RNN": "RNN", "torch.nn.LSTM": "LSTM", "torch.nn.GRU": "GRU",
                   "torch.nn.RNNCell": "RNNCell", "torch.nn.LSTMCell": "LSTMCell", "torch.nn.GRUCell": "GRUCell"}
OPTIMIZER_FACTORIES = frozenset({"create_optimizer", "build_optimizer", "get_optimizer", "make_optimizer",
                                 "create_optimizer_v2", "configure_optimizer"})

# ---------------------------------------------------------------------------------------------
# The extractor


def _is_accum_expr(node: cst.CSTNode) -> bool:
    """A `%` of something that is not a string (string formatting), anywhere in the expression."""
    return any(type(n) is cst.BinaryOperation and type(n.operator) is cst.Modulo
               and type(n.left) not in (cst.SimpleString, cst.FormattedString, cst.ConcatenatedString)
               for n in walk(node))


def _updates(small: cst.BaseSmallStatement) -> bool:
    """An assignment that updates its target from its own value: `n += 1`, `tokens = tokens + x.numel()`."""
    if type(small) is cst.AugAssign:
        return True
    if type(small) is not cst.Assign or len(small.targets) != 1 or type(small.value) is not cst.BinaryOperation:
        return False
    target = small.targets[0].target
    return type(target) in (cst.Name, cst.Attribute) and _text(small.value.left) == _text(target)


def _is_not_equal_zero(test: cst.BaseExpression) -> bool:
    """`x % k != 0` or `x % k` (truthy): the micro-batch branch of an accumulation guard."""
    if type(test) is cst.Comparison and len(test.comparisons) == 1:
        comp = test.comparisons[0]
        return type(comp.operator) is cst.NotEqual and _number(comp.comparator) == 0 and _is_accum_expr(test.left)
    return type(test) is cst.BinaryOperation and type(test.operator) is cst.Modulo


# Words without which a function cannot hold anything a GL2xx finding or fix points at. Other
# functions are still read (assignments, calls to follow) but their nodes get no positions.
_RELEVANT = re.compile(r"backward|step\(|clip|zero_grad|\.grad\b|no_grad|inference_mode|enable_grad|"
                       r"set_grad_enabled|unscale|foreach_zero|\.fit\(|[Tt]rainer\w*\.train\(|Trainer\(|"
                       r"TrainingArguments|register_hook|[Ss]caler\(")


class _Extractor(CallEvents, OptimizerLoops, StatementWalker):
    """The training-loop facts of one file: a recorder over statements that uses the engine's
    dispatch (engine/interp.py) and keeps its own blocks (`block`, `if_block`) and events."""

    def __init__(self, src) -> None:
        self.src = src
        self.pre = _PrePass()
        self.pre.run(src.module)
        self.env = self.pre.env
        self.functions: list[Function | None] = []
        self.stmts: list[Stmt] = []
        self.assigns: list[Assign] = []
        self.returns: list[Assign] = []
        self._assign_kinds: dict[str, set[str]] = {}  # CallEvents._assigned
        self._next_block = 0
        # id(an `if` whose body ends in a jump, or a `try` whose every handler does) -> the
        # statements after it in its block, with that block's id and their first index: they run
        # only when the test is false / the try body completed, so they are that branch's tail
        # (`if_block`, `try_stmt`); their Stmt records keep their place in the enclosing block
        self._rest_after: dict[int, tuple[list, int, int]] = {}
        # (function id) -> name -> is an accumulation expression; function node -> id
        self._accum_names: dict[int, dict[str, bool]] = {}
        self._scope_nodes: dict[int, cst.CSTNode | None] = {}
        self._hand_indexes: dict[int, object] = {}  # function id -> loop_calls._ScopeIndex
        self._func_parent: dict[int, int | None] = {}
        self._params: dict[int, set[str]] = {}
        self.lines = split_lines(src.text)
        self.hook_clipping = False
        self.positions = src.positions
        self.idle_top = self._idle_top()
        # classes defined at the module's top level: their methods are what the project index
        # names `C.m` (a step on a method's parameter is decided by the callers of `C.m`)
        self.top_classes = frozenset(s.name.value for s in src.module.body if type(s) is cst.ClassDef)
        # where positions come from now: None (the shared provider: module level), a FunctionDef
        # (resolved alone), or an int (a line: code no finding will point into)
        self._where: cst.FunctionDef | int | None = None

    # -- helpers -------------------------------------------------------------------------------
    def block_id(self) -> int:
        self._next_block += 1
        return self._next_block

    def qualify(self, expr: cst.BaseExpression) -> frozenset[str]:
        return self.src.imports.qualify(expr)

    def span(self, node: cst.CSTNode) -> SourceSpan:
        where = self._where
        if where is None:
            return self.src.span(node)
        if isinstance(where, int):
            return SourceSpan.point(where, 1)
        return self.src.span(node, within=where)

    def _relevant(self, fdef: cst.FunctionDef) -> bool:
        """Whether a function may hold what a finding points at (its own positions are worth it)."""
        lines = self.positions.function_lines(fdef)
        return lines is None or bool(_RELEVANT.search("\n".join(self.lines[lines[0] - 1: lines[1]])))

    def _idle_top(self) -> dict[int, int]:
        """id(top-level statement) -> its first line, where nothing in it can be pointed at (a
        file's imports and constants need no positions)."""
        if not self.positions.functions_paired():
            return {}
        return {id(stmt): first for stmt, first, last in self.positions.statement_lines()
                if type(stmt) not in (cst.FunctionDef, cst.ClassDef)
                and not _RELEVANT.search("\n".join(self.lines[first - 1: last]))}

    def value(self, node: cst.BaseExpression | None, fid: int, tests: tuple[str, ...]) -> Value | None:
        """The neutral fact of a clip threshold, norm type or argument: its text, and the number
        the environment knows it by with its provenance (engine/env.py)."""
        if node is None:
            return None
        return _fact(node, self.env.number(node, self._scope_nodes.get(fid)), tests)

    # -- functions -----------------------------------------------------------------------------
    def run(self) -> TrainingFacts:
        self.function(self.src.module, "<module>", None, None)
        functions = tuple(f for f in self.functions if f is not None)
        manual = manual_classes(self.src)
        classes = tuple((name, bases) for name, (bases, _) in self.pre.classes.items())
        return TrainingFacts(functions=functions, stmts=tuple(self.stmts), assigns=tuple(self.assigns),
                             returns=tuple(self.returns),
                             hook_clipping=self.hook_clipping, lightning_automatic=lightning_automatic(self.src, self.qualify),
                             manual_classes=manual, classes=classes,
                             driven=driven(self.src, functions, self._scope_nodes, self.qualify, manual, dict(classes)),
                             drives=drives_elsewhere(self.src, functions, self._scope_nodes, self.qualify),
                             lambda_clears=lambda_clears(self.src, self._scope_nodes))

    def function(self, node, name: str, cls: str | None, parent: int | None) -> int:
        fid = len(self.functions)
        self.functions.append(None)
        self._scope_nodes[fid] = node if type(node) is cst.FunctionDef else None
        self._func_parent[fid] = parent
        nograd = inference = False
        params: tuple[str, ...] = ()
        defaults: tuple[tuple[str, str], ...] = ()
        if type(node) is cst.FunctionDef:
            state = grad_state(None, decorators(node), self.qualify)
            nograd, inference = is_off(state), state == "inference"
            p = node.params
            params = tuple(x.name.value for x in (*p.posonly_params, *p.params, *p.kwonly_params))
            defaults = tuple((x.name.value, _text(x.default)) for x in (*p.posonly_params, *p.params, *p.kwonly_params)
                             if x.default is not None)
            if type(p.star_arg) is cst.Param:
                params += (p.star_arg.name.value,)
            if p.star_kwarg is not None:
                params += (p.star_kwarg.name.value,)
        self._params[fid] = set(params)
        if parent is not None:
            self.env.open_scope(self._scope_nodes[fid], self._scope_nodes.get(parent), params)
        self._accum_names[fid] = {}
        ctx = _Ctx(fid=fid, cls=cls, nograd=nograd, tests=(), inference=inference)
        saved = self._where
        try:
            if type(node) is cst.Module:
                self._where = None
                body = self.block(node.body, ctx, "body")
                line = 1
            else:
                line = self.positions.def_line(node)
                if not self.positions.functions_paired():
                    self._where = None
                elif self._relevant(node):
                    self._where = node
                else:
                    self._where = line
                body = self.block(_suite(node.body), ctx, "body")
        finally:
            self._where = saved
        self.functions[fid] = Function(id=fid, name=name, cls=cls, parent=parent, span=SourceSpan.point(line, 1),
                                       body=body, nograd=nograd, params=params, defaults=defaults)
        return fid

    # -- statements ----------------------------------------------------------------------------
    def block(self, stmts, ctx: "_Ctx", kind: str, stmt_block: int | None = None, first_index: int = 0,
              **extra) -> Block:
        bid = self.block_id()
        # the block and index the statements are recorded in (a jump's tail keeps its own)
        rec = bid if stmt_block is None else stmt_block
        items: list[Block | Event] = []
        stmts = list(stmts)
        i = 0
        while i < len(stmts):
            stmt = stmts[i]
            # `if step % accum != 0: continue` guards everything after it in this block
            if (type(stmt) is cst.If and stmt.orelse is None and _is_body_continue(stmt.body)
                    and _is_not_equal_zero(stmt.test)):
                self.record_stmt(stmt, rec, first_index + i, ctx)
                rest = self.block(stmts[i + 1:], ctx.with_test(_text(stmt.test)), "branch")
                items.append(Block("if", self.block_id(), (rest, Block("branch", self.block_id())),
                                   test=f"not ({_text(stmt.test)})", accum=True, skip=True))
                break
            idle = self.idle_top.get(id(stmt)) if self._where is None else None
            # `if not finite: opt.zero_grad(); continue` (or an except handler that skips the
            # batch) leaves the rest of this block
            if idle is None and i + 1 < len(stmts) and _jumps_over_rest(stmt):
                self._rest_after[id(stmt)] = (stmts[i + 1:], rec, first_index + i + 1)
                items.extend(self.statement(stmt, rec, first_index + i, ctx))
                break
            if idle is None:
                items.extend(self.statement(stmt, rec, first_index + i, ctx))
            else:
                self._where = idle
                try:
                    items.extend(self.statement(stmt, rec, first_index + i, ctx))
                finally:
                    self._where = None
            switched = set_grad_statement(stmt, self.qualify)
            if switched is not None and not ctx.inference:
                # `torch.set_grad_enabled(False)` as a statement: what follows in the block runs so
                ctx = ctx.replace(nograd=not switched)
            i += 1
        return Block(kind, bid, tuple(items), **extra)

    def record_stmt(self, stmt: cst.CSTNode, bid: int, index: int, ctx: "_Ctx", assigned=(), used=None) -> int:
        if type(stmt) is cst.FunctionDef:
            # their own pass places their contents; asking for this node's position would resolve all of it
            rng = SourceSpan.point(self.positions.def_line(stmt), 1)
        elif type(stmt) is cst.ClassDef:
            rng = SourceSpan.point(0, 1)
        else:
            rng = self.span(stmt)
        simple = type(stmt) is cst.SimpleStatementLine and len(stmt.body) == 1
        if simple:
            # the line holds nothing else (no `a; b` and no code before it)
            line = self.lines[rng.line - 1] if rng.line - 1 < len(self.lines) else ""
            simple = line[: rng.column - 1].strip() == ""
        kind = "simple" if type(stmt) in (cst.SimpleStatementLine, cst.SimpleStatementSuite) else type(stmt).__name__.lower()
        if kind == "simple" and any(type(small) is cst.Break for small in stmt.body):
            kind = "break"  # (a loop that may end early: GL208's retry loops)
        elif kind == "simple" and any(type(small) is cst.Continue for small in stmt.body):
            kind = "continue"  # (what follows an `if` that holds one runs on some paths only)
        elif kind == "simple" and any(type(small) in (cst.Return, cst.Raise) for small in stmt.body):
            kind = "return"  # (nothing after it in the function runs on its path: GL208's skipped batches)
        if used is None:
            used = tuple(n for h in _headers(stmt) for n in _names_in(h))
        if type(stmt) is cst.For and not assigned:
            assigned = _names_in(stmt.target)  # what the loop binds (`for model, opt in zip(...)`)
        sid = len(self.stmts)
        self.stmts.append(Stmt(block=bid, index=index, line=rng.line, end_line=rng.end_line, column=rng.column,
                               simple=simple, assigned=tuple(assigned), used=tuple(used), kind=kind,
                               parent=ctx.parent_stmt,
                               updates=kind == "simple" and all(_updates(small) for small in stmt.body)))
        return sid

    # The engine's statement dispatch (engine/interp.py) with the recorder's context: a simple
    # line's handler gets (block id, index, ctx), a compound statement's (its Stmt id, ctx, block
    # id, index) once it is recorded. Each handler returns the items it adds to the block.
    def statement(self, stmt: cst.CSTNode, bid: int, index: int, ctx: "_Ctx") -> list:
        if type(stmt) in (cst.SimpleStatementLine, cst.SimpleStatementSuite):
            return super().statement(stmt, bid, index, ctx)
        sid = self.record_stmt(stmt, bid, index, ctx)
        return super().statement(stmt, sid, ctx, bid, index)

    def simple_line(self, stmt: cst.SimpleStatementLine | cst.SimpleStatementSuite, bid: int, index: int,
                    ctx: "_Ctx") -> list:
        out: list[Block | Event] = []
        assigned: list[str] = []
        for small in stmt.body:
            if type(small) in (cst.Assign, cst.AnnAssign, cst.AugAssign):
                targets = [t.target for t in small.targets] if type(small) is cst.Assign else [small.target]
                for t in targets:
                    assigned.extend(n.split(".")[0] for n in _target_texts(t))
        sid = self.record_stmt(stmt, bid, index, ctx, assigned, _names_in(stmt))
        for small in stmt.body:
            out.extend(self.small(small, sid, ctx))
        return out

    def other_statement(self, stmt: cst.CSTNode, *context) -> list:
        return []

    def if_stmt(self, stmt: cst.If, sid: int, ctx: "_Ctx", *_) -> list:
        return [self.if_block(stmt, sid, ctx)]

    def for_stmt(self, stmt: cst.For | cst.While, sid: int, ctx: "_Ctx", *_) -> list:
        out: list[Block | Event] = []
        ctx = ctx.replace(parent_stmt=sid)
        head = stmt.iter if type(stmt) is cst.For else stmt.test
        out.extend(self.events(head, sid, ctx))
        var, each, known = self.each_optimizer(stmt, ctx.fid)
        # the variable of a loop over the optimizers holds one of them, whatever its name; over
        # a container known to hold none (`for opt in self.opt_models`), none, whatever its name
        inner = ctx
        if var:
            inner = ctx.replace(drawn=tuple(v for v in ctx.drawn if v != var) + ((var,) if each else ()),
                                undrawn=tuple(v for v in ctx.undrawn if v != var) + (() if each else (var,)))
        body = self.block(_suite(stmt.body), inner, "loop")
        body = whole_model_clear(stmt, body) or body
        if each and all(e.kind in _PER_OPTIMIZER for e in iter_events(body)):
            # `for opt in self.optimizers: scaler.step(opt)`: one update of every optimizer,
            # not a loop of steps
            body = _drawn_from(dataclasses.replace(body, kind="body"), var, each, known)
        out.append(body)
        if stmt.orelse is not None:
            out.extend(self.block(_suite(stmt.orelse.body), ctx, "body").items)
        return out

    while_stmt = for_stmt

    def with_stmt(self, stmt: cst.With, sid: int, ctx: "_Ctx", *_) -> list:
        out: list[Block | Event] = []
        ctx = ctx.replace(parent_stmt=sid)
        for item in stmt.items:
            out.extend(self.events(item.item, sid, ctx))
        outside = "inference" if ctx.inference else "off" if ctx.nograd else None
        state = grad_state(outside, with_items(stmt), self.qualify)
        own = [m for m in (grad_mode(e, self.qualify) for e in with_items(stmt)) if m is not None]
        # (a block of a switch whose mode is computed at run time is neither)
        mode = "" if not own or own[-1] == "unknown" else "nograd" if is_off(state) else "enablegrad"
        inner = ctx.replace(nograd=is_off(state), inference=state == "inference") if mode else ctx
        out.append(self.block(_suite(stmt.body), inner, "with", mode=mode, accumulates=accumulates(stmt)))
        return out

    def try_stmt(self, stmt: cst.Try | cst.TryStar, sid: int, ctx: "_Ctx", *_) -> list:
        out: list[Block | Event] = []
        outer, ctx = ctx, ctx.replace(parent_stmt=sid)
        alts = [self.block(_suite(stmt.body), ctx, "branch")]
        for h in stmt.handlers:
            alts.append(self.block(_suite(h.body), ctx, "branch"))
        if stmt.orelse is not None:
            first = alts[0]
            alts[0] = Block("branch", first.id, first.items + self.block(_suite(stmt.orelse.body), ctx, "body").items)
        rest = self._rest_after.pop(id(stmt), None)
        if rest is not None:
            # every handler leaves the block: what follows runs only after the body completed; a
            # finally runs on every path, before the handler's jump and before what follows
            if stmt.finalbody is not None:
                alts = [Block("branch", a.id, a.items + self.block(_suite(stmt.finalbody.body), ctx, "body").items)
                        for a in alts]
            first = alts[0]
            tail = self.block(rest[0], outer, "body", stmt_block=rest[1], first_index=rest[2])
            alts[0] = Block("branch", first.id, first.items + tail.items)
        out.append(Block("if", self.block_id(), tuple(alts), test="try"))
        if stmt.finalbody is not None and rest is None:
            out.extend(self.block(_suite(stmt.finalbody.body), ctx, "body").items)
        return out

    def function_def(self, stmt: cst.FunctionDef, sid: int, ctx: "_Ctx", *_) -> list:
        self.function(stmt, stmt.name.value, None, ctx.fid)
        return []

    def class_def(self, stmt: cst.ClassDef, sid: int, ctx: "_Ctx", bid: int, index: int) -> list:
        ctx = ctx.replace(parent_stmt=sid)
        cls_ctx = ctx.replace(in_class=stmt.name.value, parent_of_class=ctx.fid)
        for inner in _suite(stmt.body):
            if type(inner) is cst.FunctionDef:
                self.function(inner, inner.name.value, stmt.name.value, ctx.fid)
            elif type(inner) is cst.ClassDef:
                self.statement(inner, bid, index, ctx)
            elif type(inner) is cst.SimpleStatementLine:
                # class attributes (`optimizer = ...`) are assignments of the class body;
                # no finding points into them, so they get no positions
                saved, self._where = self._where, 0
                try:
                    for small in inner.body:
                        self.small(small, -1, cls_ctx)
                finally:
                    self._where = saved
        return []

    def match_stmt(self, stmt: cst.Match, sid: int, ctx: "_Ctx", *_) -> list:
        out: list[Block | Event] = []
        ctx = ctx.replace(parent_stmt=sid)
        alts = [self.block(_suite(case.body), ctx, "branch") for case in stmt.cases]
        out.extend(self.events(stmt.subject, sid, ctx))
        out.append(Block("if", self.block_id(), tuple(alts), test=_text(stmt.subject)))
        return out

    def if_block(self, stmt: cst.If, sid: int, ctx: "_Ctx") -> Block:
        test_text = _text(stmt.test)
        accum = _is_accum_expr(stmt.test)
        if not accum:
            for name in _names_in(stmt.test):
                if self._accum_names[ctx.fid].get(name):
                    accum = True
        pre = list(self.events(stmt.test, sid, ctx))
        inner = ctx.with_test(test_text).replace(parent_stmt=sid)
        then = self.block(_suite(stmt.body), inner, "branch")
        rest = self._rest_after.pop(id(stmt), None)
        if rest is not None:
            other = self.block(rest[0], ctx.with_test(test_text), "branch", stmt_block=rest[1], first_index=rest[2])
        elif stmt.orelse is None:
            other = Block("branch", self.block_id())
        elif type(stmt.orelse) is cst.If:
            esid = self.record_stmt(stmt.orelse, self.block_id(), 0, ctx)
            other = Block("branch", self.block_id(), (self.if_block(stmt.orelse, esid, inner),))
        else:
            other = self.block(_suite(stmt.orelse.body), inner, "branch")
        block = Block("if", self.block_id(), (then, other), test=test_text, accum=accum)
        if pre:
            # events in the test run before either branch
            return Block("body", self.block_id(), tuple(pre) + (block,))
        return block

    def assign_stmt(self, small: cst.Assign | cst.AnnAssign | cst.AugAssign, sid: int, ctx: "_Ctx") -> list[Event]:
        out: list[Event] = []
        value = small.value
        targets = [t.target for t in small.targets] if type(small) is cst.Assign else [small.target]
        for t in targets:
            out.extend(self.grad_clear_target(t, sid, ctx, value))
        if value is not None:
            out.extend(self.events(value, sid, ctx))
            if type(small) is not cst.AugAssign:
                for t in targets:
                    for name in _target_texts(t):
                        self.assign(name, value, ctx, small)
            elif type(small.operator) is cst.ModuloAssign:
                # `acc_step += 1; acc_step %= k` (a name or an attribute): an accumulation counter,
                # as `acc_step = (acc_step + 1) % k` is; other operators leave it what it was
                for name in _target_texts(small.target):
                    self._accum_names[ctx.fid][name] = True
        return out

    ann_assign_stmt = aug_assign_stmt = assign_stmt

    def expr_stmt(self, small: cst.Expr, sid: int, ctx: "_Ctx") -> list[Event]:
        out = self.events(small.value, sid, ctx)
        self._appended(small, ctx)
        return out

    def _appended(self, small: cst.Expr, ctx: "_Ctx") -> None:
        """`xs.append(v)` / `xs.extend(vs)`: what xs holds is also made from v (an Assign of kind
        'append': a loss of `torch.stack(xs)` comes from the appended outputs, for GL207)."""
        call = small.value
        if not (type(call) is cst.Call and type(call.func) is cst.Attribute and call.func.attr.value in ("append", "extend")
                and len(call.args) == 1 and not call.args[0].star and call.args[0].keyword is None):
            return
        target = dotted(call.func.value)
        if not target:
            return
        value = call.args[0].value
        calls = tuple(self._call_kinds(value))
        self.assigns.append(Assign(target=target, func=ctx.fid, line=self.span(small).line, kind="append",
                                   uses=_names_in(value), calls=calls, nograd=ctx.nograd,
                                   passed=self._passed(value, calls)))

    def _labels(self, value: cst.BaseExpression) -> tuple[str, ...]:
        """The names `value` reads only as the target of `F.cross_entropy` / `F.nll_loss`
        (Assign.labels): class indices, which carry no gradient (measured, torch 2.13: a loss of a
        no-grad output and integer targets raises "element 0 of tensors does not require grad")."""
        found: list[str] = []
        for n in walk(value):
            if type(n) is not cst.Call or self.qualify(n.func).isdisjoint(_CLASS_INDEX_LOSSES):
                continue
            target = _arg(n, 1, "target")
            if target is not None and type(target) is cst.Name:
                found.append(target.value)
        if not found:
            return ()
        reads = Counter(_name_reads(value))
        return tuple(dict.fromkeys(name for name in found if reads[name] == found.count(name)))

    def del_stmt(self, small: cst.Del, sid: int, ctx: "_Ctx") -> list[Event]:
        return self.grad_clear_target(small.target, sid, ctx)

    def return_stmt(self, small: cst.Return, sid: int, ctx: "_Ctx") -> list[Event]:
        if small.value is None:
            return []
        calls = tuple(self._call_kinds(small.value))
        self.returns.append(Assign(target="", func=ctx.fid, line=self.span(small).line, kind="return",
                                   uses=_names_in(small.value), calls=calls, nograd=ctx.nograd,
                                   passed=self._passed(small.value, calls), labels=self._labels(small.value)))
        return self.events(small.value, sid, ctx)

    def other_small(self, small: cst.BaseSmallStatement, *context) -> list[Event]:
        return []

    raise_stmt = assert_stmt = other_small

    def grad_clear_target(self, target: cst.BaseExpression, sid: int, ctx: "_Ctx",
                          value: cst.BaseExpression | None = None) -> list[Event]:
        """`p.grad = ...` / `del p.grad`: a clear of p's gradient, unless the value is computed from
        that gradient (`p.grad = p.grad / k`, `p.grad = p.grad.clamp(-c, c)`: a rescale keeps it;
        `torch.zeros_like(p.grad)` takes only its shape: a clear)."""
        out = []
        zeroed = value is not None and fresh_tensor(value)
        read = {_text(n) for n in walk(value) if type(n) is cst.Attribute} if value is not None and not zeroed else set()
        for t in (el.value for el in target.elements) if type(target) in (cst.Tuple, cst.List) else (target,):
            base = t.value if type(t) is cst.Subscript else t
            if type(base) is cst.Attribute and base.attr.value == "grad" and _text(base) not in read:
                out.append(Event("clear", self.span(t), ctx.fid, sid, ctx.nograd,
                                 via="grad-zero" if zeroed else "grad-none", target=_text(base.value)))
        return out

    # -- assignments ---------------------------------------------------------------------------
    def _sets_up(self, call: cst.Call, fid: int) -> bool:
        """`fabric.setup(...)` on a Lightning Fabric, `acc.prepare(...)` on an accelerate
        Accelerator, as the engine knows the receiver where this function reads it."""
        func = call.func
        if type(func) is not cst.Attribute or func.attr.value not in ("setup", "prepare"):
            return False
        recv = dotted(func.value)
        if not recv:
            return False
        value = self.pre.value_of(recv, self._scope_nodes.get(fid))
        return type(value) is Ctor and not self.qualify(value.node.func).isdisjoint(ACCELERATORS | FABRICS)

    def assign(self, target: str, value: cst.BaseExpression, ctx: "_Ctx", node: cst.CSTNode) -> None:
        line = self.span(node).line
        # (an attribute too: lingua's `train_state.acc_step = train_state.acc_step % k`, then
        # `if train_state.acc_step == 0: optimizer.step()`)
        self._accum_names[ctx.fid][target] = _is_accum_expr(value)
        calls = tuple(self._call_kinds(value))
        base = dict(target=target, func=ctx.fid, line=line, uses=_names_in(value), calls=calls, nograd=ctx.nograd,
                    passed=self._passed(value, calls), labels=self._labels(value), implies=implied_true(value))
        if type(value) is cst.Call and value.args and type(value.args[0].value) in (cst.Name, cst.Attribute) \
                and value.args[0].keyword is None and not value.args[0].star \
                and (wraps_module(value) or not self.qualify(value.func).isdisjoint(MODEL_WRAPPERS)):
            base["wraps"] = dotted(value.args[0].value) or ""
        elif type(node) is cst.Assign and type(value) is cst.Call:
            handed = handed_back(node, value, target, self._sets_up(value, ctx.fid))
            if handed:
                base["wraps"] = handed
        call = value
        while type(call) is cst.Call:
            if type(call.func) is cst.Attribute and call.func.attr.value in _MOVE_METHODS \
                    and type(call.func.value) is cst.Call:
                call = call.func.value
            elif wraps_module(call):
                call = call.args[0].value  # `nn.DataParallel(LM())`: the module it runs
            else:
                break
        if _number(value) is not None:
            self.assigns.append(Assign(kind="const", **base))
            return
        if type(call) is not cst.Call:
            self.assigns.append(Assign(**base))
            return
        func_text = dotted(call.func) or ""
        last = func_text.rsplit(".", 1)[-1]
        q = self.qualify(call.func)
        if not q.isdisjoint(GRAD_SCALERS) or last == "GradScaler":
            enabled = _arg(call, -1, "enabled")
            disabled = type(enabled) is cst.Name and enabled.value == "False"
            self.assigns.append(Assign(kind="scaler", disabled=disabled, cls=last, **base))
            return
        if not q.isdisjoint(ACCELERATORS):
            # accelerate's Accelerator: with mixed_precision="fp16" (written so), its backward
            # scales the loss by a GradScaler of its own, as `scaler.scale(loss).backward()` does;
            # any other setting (bf16, none, one read from a config or `accelerate launch`) is
            # not known to scale: `disabled`
            precision = next((a.value for a in call.args if a.keyword is not None
                              and a.keyword.value == "mixed_precision"), None)
            # (no scaler of its own under DeepSpeed or Megatron-LM, on the CPU, or when a handler
            # may configure it away; `**kwargs` may hold any of them)
            other = {a.keyword.value for a in call.args if a.keyword is not None}
            fp16 = type(precision) is cst.SimpleString and precision.evaluated_value == "fp16" and \
                not any(a.star for a in call.args) and other.isdisjoint(_NO_SCALER_ARGS)
            accum = self.value(_arg(call, -1, "gradient_accumulation_steps"), ctx.fid, ())
            self.assigns.append(Assign(kind="accelerator", disabled=not fp16, cls=last, accum_steps=accum, **base))
            return
        if not q.isdisjoint(FABRICS):
            self.assigns.append(Assign(kind="fabric", disabled=not fabric_fp16(call), cls=last, **base))
            return
        splat = any(a.star for a in call.args)  # Trainer(**cfg): we cannot know
        if not q.isdisjoint(PL_TRAINERS) or (last == "Trainer" and any(x.startswith(("pytorch_lightning", "lightning")) for x in q)):
            clip = _arg(call, -1, "gradient_clip_val")
            configured = clip is not None and not (type(clip) is cst.Name and clip.value == "None") and _number(clip) != 0
            configured = None if splat and not configured else configured
            self.assigns.append(Assign(kind="pl_trainer", clip_config=configured, cls=last, **base))
            return
        if "deepspeed.initialize" in q:
            # (engine, optimizer, loader, scheduler): the engine's step clips as its config says
            if type(node) is cst.Assign and target == _target_texts(node.targets[0].target)[0]:
                config = _arg(call, -1, "config") or _arg(call, -1, "config_params")
                items = self.env.field.written_dict(config, self._scope_nodes.get(ctx.fid), call) \
                    if config is not None and self.env.field is not None else None
                model = _arg(call, 1, "model")
                self.assigns.append(Assign(kind="ds_engine", clip_config=deepspeed_clipping(items), cls=last,
                                           model_arg=_text(model) if model is not None else "", **base))
                return
        if not q.isdisjoint(IGNITE_TRAINERS):  # (its update never clips: clip_config False)
            model = _arg(call, 0, "model")
            self.assigns.append(Assign(kind="ignite_trainer", clip_config=False, cls=last,
                                       model_arg=_text(model) if model is not None else "", **base))
            return
        if not q.isdisjoint(HF_ARGS):
            clip = _arg(call, -1, "max_grad_norm")
            # Hugging Face clips at 1.0 unless told otherwise
            configured = clip is None or not ((type(clip) is cst.Name and clip.value == "None") or _number(clip) == 0)
            configured = None if splat and not configured else configured
            self.assigns.append(Assign(kind="hf_args", clip_config=configured, cls=last, **base))
            return
        if not q.isdisjoint(HF_TRAINERS):
            model = _arg(call, 0, "model")
            args = _arg(call, 1, "args")
            self.assigns.append(Assign(kind="hf_trainer", cls=last, model_arg=_text(model) if model is not None else "",
                                       args_arg=_text(args) if args is not None else "", **base))
            return
        is_optim = (any(x.startswith("torch.optim.") and ".lr_scheduler" not in x and not x.startswith("torch.optim.swa_utils") for x in q)
                    or last in OPTIMIZER_CLASSES or last.endswith("Optimizer") or last in OPTIMIZER_FACTORIES
                    or func_text == "self.optimizers")
        if is_optim:
            owners = ["self"] if func_text == "self.optimizers" else _parameter_owners(call)
            self.assigns.append(Assign(kind="optimizer", owners=tuple(owners), cls=last, **base))
            return
        recurrent = next((TORCH_RECURRENT[x] for x in q if x in TORCH_RECURRENT), "")
        blocks = 0
        if "torch.nn.Transformer" in q:
            enc = _number(_arg(call, 2, "num_encoder_layers") or cst.Integer("6")) or 0
            dec = _number(_arg(call, 3, "num_decoder_layers") or cst.Integer("6")) or 0
            blocks = int(enc + dec)
        elif not q.isdisjoint({"torch.nn.TransformerEncoder", "torch.nn.TransformerDecoder"}):
            blocks = int(_number(_arg(call, 1, "num_layers") or cst.Integer("0")) or 0)
        if last[:1].isupper() or recurrent or blocks:
            self.assigns.append(Assign(kind="model", cls=last, ref=func_text, torch_recurrent=recurrent, torch_blocks=blocks, **base))
            return
        if type(call.func) is cst.Name:
            # a function of this file: the optimizer its returns make (`g = build(model)`: one
            # rebuilt each iteration when the call stands in the loop). Not a scaler: whether
            # the one it returns is enabled is not carried across the call.
            made = self.pre.returned(Returns(call.func.value))
            if type(made) is Ctor and self.pre.class_kind(made.cls, self.qualify) == "optimizer":
                self.assigns.append(Assign(kind="optimizer", cls=made.cls.rsplit(".", 1)[-1], **base))
                return
        self.assigns.append(Assign(**base))



# What a loop over the optimizers may do and still be one update of each (no backward, no call).
_PER_OPTIMIZER = frozenset({"step", "clear", "unscale", "clip"})
# Losses whose target is class indices (Assign.labels): nll_loss's always; cross_entropy's but for
# probability targets, which a training step's labels are not.
_CLASS_INDEX_LOSSES = frozenset({"torch.nn.functional.cross_entropy", "torch.nn.functional.nll_loss"})


def _jumps_over_rest(stmt: cst.CSTNode) -> bool:
    """An `if` with no else whose body ends in a jump, or a `try` whose every handler does (and
    whose finally, if any, does not: a jump there would leave on every path): the statements after
    it run only on the other path."""
    if type(stmt) is cst.If:
        return stmt.orelse is None and _ends_in_jump(stmt.body)
    if type(stmt) in (cst.Try, cst.TryStar):
        return bool(stmt.handlers) and all(_ends_in_jump(h.body) for h in stmt.handlers) and (
            stmt.finalbody is None or not _ends_in_jump(stmt.finalbody.body))
    return False


def _ends_in_jump(body: cst.BaseSuite) -> bool:
    """Whether a suite's last statement leaves the block (continue, break, return, raise)."""
    stmts = body.body if type(body) is cst.IndentedBlock else (body,)
    last = stmts[-1] if stmts else None
    if type(last) not in (cst.SimpleStatementLine, cst.SimpleStatementSuite) or not last.body:
        return False
    return type(last.body[-1]) in (cst.Continue, cst.Break, cst.Return, cst.Raise)


def _is_body_continue(body: cst.BaseSuite) -> bool:
    stmts = body.body if type(body) is cst.IndentedBlock else (body,)
    smalls = []
    for s in stmts:
        if type(s) is cst.SimpleStatementLine:
            smalls.extend(s.body)
        elif type(s) is cst.SimpleStatementSuite:
            smalls.extend(s.body)
        else:
            return False
    return len(smalls) == 1 and type(smalls[0]) is cst.Continue


@dataclass(frozen=True)
class _Ctx:
    fid: int
    cls: str | None
    nograd: bool
    tests: tuple[str, ...]
    in_class: str | None = None
    parent_of_class: int | None = None
    parent_stmt: int = -1
    # variables of the loops over the optimizers around this point (`o` of `for o in self.optimizers`)
    drawn: tuple[str, ...] = ()
    # variables of the loops over containers known to hold no optimizer (`for opt in self.opt_models`)
    undrawn: tuple[str, ...] = ()
    # under inference_mode: no enable_grad() inside records again
    inference: bool = False

    def replace(self, **kw) -> "_Ctx":
        return dataclasses.replace(self, **kw)

    def with_test(self, test: str) -> "_Ctx":
        return self.replace(tests=self.tests + (test,))


# ---------------------------------------------------------------------------------------------
# Call resolution: after every function is known


def _project_numbers(src, configs):
    """Env.imported for one file: a name or attribute its imports make of another project
    module's constant (memoised: a name is read once per file)."""
    from gradlint.source.constants import NOT_KNOWN

    found: dict[frozenset[str], Any] = {}

    def number(node: cst.BaseExpression) -> Any:
        names = src.imports.qualify(node)
        if not names:
            return UNKNOWN
        if names not in found:
            value = configs.constant(names)
            found[names] = UNKNOWN if value is NOT_KNOWN else value
        return found[names]

    return number


def _resolve_calls(facts: TrainingFacts) -> TrainingFacts:
    by_name: dict[str, list[Function]] = {}
    for f in facts.functions:
        by_name.setdefault(f.name, []).append(f)

    def ancestors(fid: int | None) -> list[int | None]:
        out: list[int | None] = []
        while fid is not None:
            out.append(fid)
            fid = facts.functions[fid].parent
        out.append(None)
        return out

    def method_in(cls: str, name: str) -> tuple[int, ...]:
        found = method_id(facts, cls, name)
        return () if found is None else (found,)

    def resolve(ev: Event, fn: Function) -> tuple[int, ...]:
        name = ev.name
        if ev.ref:
            return method_in(ev.ref, name)
        if ev.kind == "step":
            name = ev.name.rsplit(".", 1)[-1]
            receiver = ev.name.rsplit(".", 1)[0] if "." in ev.name else None
        else:
            receiver = ev.target.rsplit(".", 1)[0] if "." in ev.target else None
        candidates = by_name.get(name, [])
        if receiver in ("self", "cls"):
            own = method_in(fn.cls, name) if fn.cls else ()
            if own:
                return own
            methods = [c for c in candidates if c.cls is not None]
            return (methods[0].id,) if len(methods) == 1 else ()
        if receiver is not None:
            return ()
        scope = ancestors(fn.id)
        plain = [c for c in candidates if c.cls is None]
        for s in scope:
            inner = [c for c in plain if c.parent == s]
            if inner:
                return (inner[-1].id,)
        return ()

    def fix_block(block: Block, fn: Function) -> Block:
        items = []
        for it in block.items:
            if isinstance(it, Block):
                items.append(fix_block(it, fn))
            elif it.callees == (-1,):  # marked "resolve me" by the extractor
                items.append(_copied_clip(dataclasses.replace(it, callees=resolve(it, fn)), facts))
            else:
                items.append(it)
        return dataclasses.replace(block, items=tuple(items))

    functions = tuple(dataclasses.replace(f, body=fix_block(f.body, f)) for f in facts.functions)
    return dataclasses.replace(facts, functions=functions)



# An environment that binds nothing: what an expression is by itself.
_NO_NAMES = Env()


def _copied_clip(ev: Event, facts: TrainingFacts) -> Event:
    """A call of this file's own `clip_grad_norm_(parameters, max_norm)` whose body clips by hand
    (no torch clip, no unscale inside): a clip like torch's, with the threshold the call passes."""
    if ev.kind != "call" or ev.ref or len(ev.callees) != 1 or ev.name not in CLIP_NAMES:
        return ev
    fn = facts.functions[ev.callees[0]]
    if any(e.kind in ("clip", "unscale", "call", "step", "backward") and not (e.kind == "clip" and e.via == "hand")
           for e in iter_events(fn.body)):
        return ev  # it calls a clip (or more) we can follow
    args = dict(ev.args)
    params = [p for p in fn.params if p not in ("self", "cls")]
    defaults = dict(fn.defaults)

    def passed(position: int, names: tuple[str, ...], by_position: bool = True) -> Value | None:
        own = params[position] if position < len(params) else None
        if not by_position and own not in names:
            # a role only a name gives: the copy's third parameter may be anything (`eps=1e-6`)
            own = next((p for p in params if p in names), None)
            position = params.index(own) if own is not None else -1
        for name in (own, *names):
            if name is not None and name in args:
                return args[name]
        if str(position) in args:
            return args[str(position)]
        if own in defaults:
            # a default is evaluated where the function is defined: a literal, or nothing known
            try:
                expr = cst.parse_expression(defaults[own])
            except cst.ParserSyntaxError:
                return Value(defaults[own])
            return _fact(expr, _NO_NAMES.number(expr, None), ())
        return None

    return Event("clip", ev.span, ev.func, ev.stmt, ev.nograd, via="torch", name=ev.name,
                 target=args["0"].text if "0" in args else "",
                 value=passed(1, ("max_norm", "clip_value", "max_grad_norm")),
                 norm_type=passed(2, ("norm_type",), by_position=False) if ev.name.startswith("clip_grad_norm") else None)


# Every GL2xx rule needs one of these words in the file: a backward, a clip, or a framework
# trainer whose configuration decides the clipping; or a loop that runs them through a project
# class of another file (`loss_scaler(loss, optimizer)`, then `optimizer.zero_grad()`).
# (Substring tests: a regular expression of alternatives scans the text five times slower.)
# (`automatic_optimization`: a base LightningModule that only sets manual optimisation is read
# for its subclasses in other files)
_SNIFF = ("backward(", "clip_grad", "Trainer(", "TrainingArguments", "zero_grad(", "Scaler(", "scaler(", "_trainer(",
          "automatic_optimization")


def extract(src, configs=None, own=None, whole: bool = False) -> TrainingFacts:
    """Training-loop facts of one parsed file (gradlint.source.SourceFile); `configs`: the file's
    configs.ConfigReader, which reads the numbers it imports from other project modules
    (`from hparams import GRAD_CLIP`) and the config classes they define, or None (no file on
    disk: stdin, a notebook); `own`: the file's own config classes (configs.FileConfigs), or None.
    `whole`: read the file even when it names none of the words a loop needs (a caller that a
    search for a function's callers reaches: its calls and what they pass)."""
    text = src.text
    if not whole and not any(word in text for word in _SNIFF):
        return TrainingFacts(skipped=True)
    ex = _Extractor(src)
    if configs is not None:
        ex.env.imported = _project_numbers(src, configs)
    if configs is not None or own is not None:
        ex.env.field = config_fields(ex.src, ex.pre, configs, own)
    try:
        return _resolve_calls(ex.run())
    except RecursionError:
        # a statement nested too deep for libcst's own recursive code (code generation, visitors):
        # half-read loop facts could mislead the rules, so this file gives none
        return TrainingFacts()
