"""The statements of a function's numerics walk: `FunctionWalk`, one function body (or the module
body) walked in order with an environment of abstract values (`V`, engine/tensors.py).

The file's walk (`numerics.Extractor`) makes one per function, method and module body; a walk's
expressions are `numerics_eval.py`, its calls `numerics_calls.py`, its call records
`numerics_callers.py`, the hazard sites it records `numerics_sites.py` and `x.requires_grad = ...`
(a mistake on a module, a fact of a value on a tensor) `requires_grad.py` (its mixins), and the
readings of syntax it makes `numerics_syntax.py`. Here: the statements (assignments, `with`,
loops, returns, grad mode) and the bindings they make.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import libcst as cst

from gradlint.facts.numerics import Call, Function, Site
from gradlint.source.engine.interp import StatementWalker, else_body
from gradlint.source.engine.interp import statements as interp_statements
from gradlint.source.engine.tensors import SAFETY_FACTS, V, UNKNOWN, replace, _passed, merge_env, _item, open_value, join_value, knows_nothing
from gradlint.source.engine.values import int_literal
from gradlint.source.engine.walk import children as _children
from gradlint.source.engine.walk import evaluated_children, suite, walk
from gradlint.source.metric_uses import detached, made_alone, read_only_as_metric
from gradlint.source.names import PARAMETER_CLASSES, decorators, dotted, grad_mode, grad_state, is_off, root_name, set_grad_statement, with_items
from gradlint.source.numerics_callbacks import Callbacks
from gradlint.source.numerics_calls import TensorCalls
from gradlint.source.numerics_defaults import decided
from gradlint.source.numerics_callers import CallRecords
from gradlint.source.numerics_eval import TensorEval, _entry, _string_index, exp_arguments
from gradlint.source.numerics_free import literal
from gradlint.source.numerics_quiet import quiet_function
from gradlint.source.numerics_registry import empty_dict
from gradlint.source.numerics_sites import SiteChecks
from gradlint.source.numerics_syntax import changed_in, ends_in_return, exits, keyed_returns, list_key, module_iteration
from gradlint.source.requires_grad import RequiresGradReadings

# The numerics hazards (GL301-GL309) a value can make: what `.item()` on it keeps quiet (`leaving`)
_HAZARDS = frozenset({"probability_into_loss", "probability_passed", "log_of_probability", "hand_written_unstable",
                      "sqrt_near_zero", "divide_by_norm", "acos_near_one", "unsafe_where_branch"})

if TYPE_CHECKING:
    from gradlint.source.numerics import ClassCtx, Extractor

_TENSOR_CLASSES = PARAMETER_CLASSES | {"torch.Tensor"}
_MODULE_CLASSES = frozenset({"torch.nn.Module", "torch.nn.modules.module.Module"})


# In-place clamps, as statements: the clamped tensor's name holds their result afterwards.
_CLAMPS_IN_PLACE = frozenset({"clamp_", "clamp_min_", "clip_"})


class FunctionWalk(TensorEval, TensorCalls, Callbacks, CallRecords, SiteChecks, RequiresGradReadings, StatementWalker):
    """Walks one function body in order, keeping the environment of abstract values."""

    # the local names whose dict entries the walk holds (`outputs["hm"] = ...`: _entry), and the
    # name nodes that read one of those entries (every other read of the name forgets them)
    _entry_names: frozenset[str] = frozenset()
    _entry_bases: frozenset[int] = frozenset()
    # local names bound to some of a model's modules (`.children()`, `.modules()`, a list or slice
    # of them), and those of them bound to named ones (`.named_children()`)
    _module_lists: frozenset[str] = frozenset()
    _named_module_lists: frozenset[str] = frozenset()

    # the names the functions enclosing this one bind: such a name is the closure's, so a call of
    # it is not the top-level function's plain value (Extractor.function_value)
    enclosing: frozenset[str] = frozenset()
    # the class's settings at their constructor defaults, in a walk that decides the tests on them
    # (numerics_defaults.forward_under_defaults), and those its tests read; None in every other walk
    settings: dict | None = None
    settings_read: set[str]
    # the function walked, qualified in its module ('f', 'C.m'): set by run_function; '' for the
    # module's own code and the partial walks (method_returns, numerics_defaults)
    qual = ""
    # inside a branch of an undecided `if`, a conditional expression or a `match` case, or past an
    # `if` that may return: a site on a parameter there holds only on some paths (`if
    # not self.from_logits: return bce(pred, y)` then `return bce_with_logits(pred, y)`)
    branching = 0
    exited = False
    # inside what runs on some paths only or later, if ever: the right operand of `and`/`or`,
    # a comprehension's element, a lambda's body (a call there is no call on every path)
    lazy = 0
    looping = 0  # inside a loop body (a `return` there may not run)
    # How often each local name was bound or changed in place (`x = ...`, `x.mul_(2)`, `x[i] = v`):
    # a mask made of `x` bounds only the `x` of the same version (V.mask_of)
    versions: dict[str, int] = {}
    # the enclosing loops, outermost first (what each binds or changes: loop_changed)
    loop_changes: list[cst.CSTNode] = []

    def __init__(self, x: Extractor, name: str, cls: ClassCtx | None, *, quiet: bool,
                 globals_: dict[str, V] | None = None) -> None:
        self.x = x
        # module-level names (criteria, model instances) seen from inside functions
        self.globals = globals_ if globals_ is not None else x.globals
        self.name = name
        self.cls = cls
        self.quiet = quiet  # no-grad, eval, metric or init code: no numerics hazard
        self.nograd = 0
        self.inference = False  # inside an inference_mode block: no switch turns recording back on
        # inside the receiver of `.item()`/`.tolist()`: its value leaves autograd at once (a metric)
        self.leaving = 0
        self.decorated_nograd = False
        self.env: dict[str, V] = {}
        if cls is not None:
            for attr, val in cls.attrs.items():
                self.env["self." + attr] = val
        self.memo: dict[int, V] = {}
        self.fn_node: cst.FunctionDef | None = None
        self.returns: list[V | None] = []
        self.return_nodes: list[cst.Return] = []
        self.deferred: list[cst.FunctionDef] = []
        self.module_defs: list[cst.FunctionDef | cst.ClassDef] = []
        self.calls: dict[Call, None] = {}  # in order, once each
        # id(value) -> (value, the open parameter called to make it: Extractor.open_param)
        self.param_outputs: dict[int, tuple[V, tuple[str, str, int]]] = {}
        self.carried_in: frozenset[str] = frozenset()  # (_run_function)
        # the backward of an autograd Function: autograd traces nothing there, but the values it
        # computes are the gradient, so a form whose value is NaN or inf is still a hazard
        self.computes_gradient = False
        # local name -> the argument of the exp it holds (`e = torch.exp(z)`: numerics_eval.exp_arguments)
        self.exp_names: dict[str, str] = {}

    # -- entry points --------------------------------------------------------------------------
    def run_function(self, fn: cst.FunctionDef) -> None:
        qual = ".".join([*self.x.path, self.name])
        self.qual = qual
        self.x.path.append(self.name + ".<locals>")
        self.x.walking.append(qual)
        try:
            self._run_function(fn)
        finally:
            self.x.path.pop()
            self.x.walking.pop()
            self.x.functions.append(Function(qual, nograd=self.decorated_nograd, calls=tuple(self.calls)))

    def _run_function(self, fn: cst.FunctionDef) -> None:
        self.fn_node = fn
        state = grad_state(None, decorators(fn), self.x.q)
        if is_off(state):
            # (not `quiet`: an `enable_grad()` block in the body records again, but under
            # inference_mode, where only inference_mode(False) does)
            self.nograd += 1
            self.decorated_nograd = True
            self.inference = state == "inference"
        ps = fn.params
        bound = self._bound_params(fn)
        # (a def that a later one of its name replaces is called by no one: no parameter of it is
        # what the project's callers pass)
        sig = self.x.signatures.get(self.qual) if self.x.unit != 0 and self.x.unit not in self.x.shadowed else None
        for p in list(ps.posonly_params) + list(ps.params) + list(ps.kwonly_params):
            name = p.name.value
            v = bound.get(name)
            if (v is None or v.out) and sig is not None and (name in sig[0] or name in sig[1]):
                # unknown here; a caller in another file may pass a model or a criterion (a site
                # on it names the parameter, and the rules join what the project's callers pass);
                # a model's output the callers here pass stays open, carrying its gradient
                v = open_value(v)
                self.x.open_params[id(v)] = (v, self.qual, name, sig[0].index(name) if name in sig[0] else -1)
                if literal(p.default):
                    self.x.free_defaults.add((self.qual, name))  # (a call leaving it passes no gradient)
            self.env[name] = v if v is not None else UNKNOWN
        # the parameters its callers pass a trainable parameter of theirs (`self.constraint(self.
        # kernel)`): what a cut in this function takes from it. Not a computed value with
        # gradient (a model's output): targets, assignments and pseudo-labels made of one under
        # no_grad (Sinkhorn-Knopp, a matcher, k-means) are cut on purpose.
        self.carried_in = frozenset(
            p.name.value for p in (*ps.posonly_params, *ps.params, *ps.kwonly_params)
            if (v := self.env[p.name.value]) is not UNKNOWN and v.params and v.leaf and not v.computed)
        for star in (ps.star_arg, ps.star_kwarg):
            if type(star) is cst.Param:
                self.env[star.name.value] = UNKNOWN
        try:
            self.walk(suite(fn.body))
        except RecursionError:
            # an expression too deep to follow (generated code): this function yields no facts,
            # the rest of the file still does
            self.returns = [None]

    def _bound_params(self, fn: cst.FunctionDef) -> dict[str, V]:
        """The parameters of a top-level function or method as its callers in this file pass them
        (Extractor.binding); the signature is kept so that later callers can be joined."""
        qual = self.qual
        if "<locals>" in qual or qual.count(".") > (self.cls is not None) or not self.x.unit or \
                self.x.unit in self.x.shadowed:
            return {}  # (a def that a later one of its name replaces: its callers call the later one)
        ps = fn.params
        positional = [p.name.value for p in list(ps.posonly_params) + list(ps.params)]
        if self.cls is not None:
            static = any(dotted(d.decorator) == "staticmethod" for d in fn.decorators)
            if not (positional or static):
                return {}
            if not static:
                positional = positional[1:]  # (a static method's first parameter is no `self`)
        defaults: dict[str, V] = {}
        for p in list(ps.posonly_params) + list(ps.params) + list(ps.kwonly_params):
            if type(p.default) is cst.Call:
                v = _passed(self.ev(p.default))
                if v is not UNKNOWN:
                    defaults[p.name.value] = v  # `criterion=nn.BCELoss()`
            elif p.default is not None and type(self.ev(p.default).value) in (int, float):
                defaults[p.name.value] = self.ev(p.default)  # `eps=1e-3`, unless a caller passes another
        self.x.signatures[qual] = (tuple(positional), tuple(p.name.value for p in ps.kwonly_params), defaults,
                                   self.x.unit)
        bound = self.x.walked_with[qual] = self.x.binding(qual)
        return bound

    def walk(self, stmts: Iterable[cst.CSTNode]) -> None:
        self._statements(stmts, meter=False)
        if self.deferred:
            closure = self._closure_globals()
        for fn in self.deferred:
            nested = FunctionWalk(self.x, fn.name.value, None,
                                  quiet=self.quiet or self.decorated_nograd or quiet_function(fn.name.value),
                                  globals_=closure)
            nested.enclosing = self.enclosing | frozenset(self.env)
            nested.run_function(fn)
        self.deferred = []

    def block(self, body) -> None:
        self._statements(interp_statements(body), meter=True)

    def _statements(self, stmts: Iterable[cst.CSTNode], meter: bool) -> None:
        """Run statements in order until one ends the block (`done`). `torch.set_grad_enabled(False)`
        as a statement (an inference script's, under `if __name__ == "__main__":` too) turns
        recording off for what follows in the block, `set_grad_enabled(True)` on again (not
        under inference_mode); the block's end restores the mode it began with."""
        saved = self.nograd
        steps = self.meter if meter else None
        for stmt in stmts:
            if self.done:
                break  # (set only in a walk under assumed defaults: return_stmt)
            if steps is not None:
                steps.step()
            self.statement(stmt)
            mode = set_grad_statement(stmt, self.x.q)
            if mode is False:
                self.nograd += 1
            elif mode is True and not self.inference:
                self.nograd = 0
        self.nograd = saved

    def _closure_globals(self) -> dict[str, V]:
        """The module's names as a function nested in this one reads them: a name this function
        binds too is the closure's (`eps = 1e-8` here over a module's `eps = 0`), whose plain
        value is not followed into the nested function."""
        shadowed = [k for k in self.env if k in self.globals and self.globals[k].value is not UNKNOWN]
        if not shadowed:
            return self.globals
        out = dict(self.globals)
        for k in shadowed:
            out[k] = replace(out[k], value=UNKNOWN)
        return out

    # -- statements: the walker (engine/interp.py) over V ----------------------------------------
    # No condition is decided and a `return` does not end the walk: a hazard is a fact of every
    # path that reaches it, and values join where paths meet (`merge_env`).
    def evaluate(self, node: cst.BaseExpression) -> V:
        return self.ev(node)

    def unknown(self) -> V:
        return UNKNOWN

    def function_def(self, node: cst.FunctionDef) -> None:
        if self.cls is None and self.name == "<module>":
            self.module_defs.append(node)
        else:
            self.deferred.append(node)

    def class_def(self, node: cst.ClassDef) -> None:
        if self.name == "<module>":
            self.module_defs.append(node)
        else:
            self.x.walk_class(node, self.quiet or self.decorated_nograd)

    def condition(self, stmt: cst.If) -> bool | None:
        self.x.discarded.add(id(stmt.test))
        if self.settings is not None and (got := decided(stmt.test, self.settings)) is not None:
            # a walk under the constructor's defaults (numerics_defaults): settings decide
            self.settings_read |= got[1]
            return got[0]
        self.ev(stmt.test)
        return None

    def expr_stmt(self, small: cst.Expr) -> None:
        self.x.discarded.add(id(small.value))
        val = self.ev(small.value)
        call = small.value
        if type(call) is cst.Call and type(call.func) is cst.Attribute and call.func.attr.value in _CLAMPS_IN_PLACE \
                and type(call.func.value) is cst.Name and call.func.value.value in self.env:
            # `r.clamp_(min=eps)`: r now holds what the clamp made (a guard, as `r = r.clamp(...)`)
            self.bind_name(call.func.value.value, val)

    def del_stmt(self, small: cst.Del) -> None:
        target = small.target
        for t in [e.value for e in target.elements] if type(target) is cst.Tuple else [target]:
            if type(t) is cst.Subscript:
                self.sequential_item_set(t)  # `del model[-1]`: the Sequential's last module changed

    def while_stmt(self, stmt: cst.While) -> None:
        self.x.discarded.add(id(stmt.test))
        super().while_stmt(stmt)

    def fork(self) -> dict[str, V]:
        return dict(self.env)

    def restore(self, before: dict[str, V]) -> None:
        self.env = dict(before)

    def settle(self, before: dict[str, V]) -> dict[str, V]:
        return self.env

    def branches(self, stmt: cst.If) -> None:
        self.branching += 1
        try:
            narrowed = self._tensor_test(stmt.test)
            if narrowed is None:
                super().branches(stmt)
            else:
                self._narrowed_branches(stmt, *narrowed)
        finally:
            self.branching -= 1
        if exits(stmt):
            self.exited = True

    def _tensor_test(self, test: cst.BaseExpression) -> tuple[str, V, bool] | None:
        """`isinstance(x, nn.Parameter)` (or `torch.Tensor`, or a tuple of them) on a name the walk
        reads as a module or knows nothing of: the name, what it holds in the `if` body, a
        parameter or a tensor (open_clip's `_unlock(x)`, handed a module or a parameter), and
        whether it holds it in the `else` branch instead (`if not isinstance(x, ...)`)."""
        conjoined = type(test) is cst.BooleanOperation and type(test.operator) is cst.And
        if conjoined:
            test = test.left  # `isinstance(x, nn.Parameter) and x.dim() > 1`: the body has both
        negated = type(test) is cst.UnaryOperation and type(test.operator) is cst.Not
        if negated:
            test = test.expression
        if type(test) is not cst.Call or len(test.args) != 2 or type(test.args[0].value) is not cst.Name or \
                dotted(test.func) != "isinstance" and self.x.q(test.func) != {"builtins.isinstance"}:
            return None  # (the cheap tests first: every undecided `if` asks)
        kinds = test.args[1].value
        parts = [e.value for e in kinds.elements] if type(kinds) is cst.Tuple else [kinds]
        names = [self.x.q(p) for p in parts]
        if names and all(n & _MODULE_CLASSES for n in names) and type(test) is cst.Call:
            # `if isinstance(x, nn.Module): ... else: x.requires_grad = False`: a tensor there
            negated, names = not negated, [frozenset({"torch.Tensor"})]
        if not names or not all(n & _TENSOR_CLASSES for n in names) or (conjoined and negated):
            return None  # (the else branch of `a and b` holds where either fails: nothing known)
        name = test.args[0].value.value
        held = self.env.get(name, UNKNOWN)
        if not (held.module or held.inst or knows_nothing(held)):
            return None  # a tensor the walk knows already (clamped, shifted, cut): it stays so
        param = all(n & PARAMETER_CLASSES for n in names)
        return name, (V(leaf=True, tensor=True, params=True) if param else V(tensor=True, computed=True)), negated

    def _narrowed_branches(self, stmt: cst.If, name: str, held: V, negated: bool) -> None:
        """Both branches of `if isinstance(name, ...)`, the body (the `else` branch, `negated`)
        with `name` holding `held`; after the `if`, the name holds what it held before on that
        branch's side (unless the branch binds it)."""
        state = self.fork()

        def branch(body, narrowed: bool) -> dict:
            if narrowed:
                self.env[name] = held
            self.block(body)
            got = self.settle(state)
            if narrowed and got.get(name) is held:
                got = dict(got)
                if name in state:
                    got[name] = state[name]
                else:
                    del got[name]
            return got

        first = branch(stmt.body, not negated)
        self.restore(state)
        if stmt.orelse is not None:
            second = branch(else_body(stmt), negated)
        else:
            second = self.settle(state)
        self.join_branches(stmt, state, first, second)
        if negated and stmt.orelse is None and ends_in_return(stmt.body) and self.env.get(name) is state.get(name):
            # `if not isinstance(x, nn.Parameter): ...; return` then `x.requires_grad = False`:
            # past the `if`, only the parameter's path goes on
            self.env[name] = held

    def loop_body(self, stmt: cst.For | cst.While) -> None:
        self.looping += 1
        if self.loop_changes is FunctionWalk.loop_changes:
            self.loop_changes = []
        self.loop_changes.append(stmt)  # (what it changes is read when a mask asks: loop_changed)
        try:
            super().loop_body(stmt)
        finally:
            self.looping -= 1
            self.loop_changes.pop()

    def match_stmt(self, stmt: cst.Match) -> None:
        self.branching += 1
        try:
            super().match_stmt(stmt)
        finally:
            self.branching -= 1
        if any(exits(case) for case in stmt.cases):
            self.exited = True

    @property
    def conditional(self) -> bool:
        """Whether what the walk reaches now runs on some paths only (`branching`, `exited`)."""
        return self.branching > 0 or self.exited

    def join_branches(self, stmt: cst.CSTNode, before: dict, first: dict[str, V], second: dict[str, V]) -> None:
        self.env = merge_env(first, second)
        self.x.free_env(first, second, self.env)

    def join_loop(self, stmt: cst.For | cst.While, before: dict[str, V]) -> None:
        after = self.env
        self.env = merge_env(before, after)
        self.x.free_env(before, after, self.env)
        for key, was in before.items():
            # A constant the body makes carry gradient (`d = torch.zeros(n, n)` filled by `d[i, j] =
            # dist(...)`, `total = 0; total = total + loss`) is constant only where the loop runs no
            # time, a path no hazard is read on (torchfields' softmin, seung-lab/torchfields#18): it
            # is the paths' join, not constant, with the safety facts the body gave it (a table of
            # clamped scores stays clamped). Not the body's value alone: one pass of `p = p +
            # softmax(h(x))` is a softmax, the sum of several is not.
            now = after.get(key)
            if was.const and now is not None and now is not was and not now.const and now.params and now.cut is None:
                self.env[key] = replace(self.env[key], const=False, **{f: getattr(now, f) for f in SAFETY_FACTS})

    def for_stmt(self, node: cst.For) -> None:
        it = self.ev(node.iter)
        self._bind_loop_target(node.target, node.iter, it)
        self.loop_body(node)
        self.loop_else(node)

    def with_stmt(self, node: cst.With) -> None:
        for item in node.items:
            if grad_mode(item.item, self.x.q) is None:
                val = self.ev(item.item)
                if item.asname is not None:
                    self.bind(item.asname.name, val)
        saved, inference = self.nograd, self.inference
        outside = self._grad_state()
        state = grad_state(outside, with_items(node), self.x.q)
        # (`with torch.enable_grad():` inside a no_grad function records again; inside
        # inference_mode only inference_mode(False) does)
        if state != outside:
            self.nograd = saved + 1 if is_off(state) else 0
            self.inference = state == "inference"
        self.block(node.body)
        self.nograd, self.inference = saved, inference

    def _grad_state(self) -> str | None:
        return "inference" if self.inference else "off" if self.nograd > 0 else None

    def assign_stmt(self, node: cst.Assign) -> None:
        before = len(self.x.sites)
        # `self.last_entropy = -(a * a.log()).sum().mean().detach()`: a value kept aside, cut from
        # the graph where it is made; nothing flows back through what it computes (a name is
        # judged by where it is read: _drop_metric_hazards)
        stored = detached(node.value) and all(type(t.target) in (cst.Attribute, cst.Subscript) for t in node.targets)
        self.leaving += stored
        try:
            val = self.ev(node.value)
        finally:
            self.leaving -= stored
        if len(self.x.sites) > before and len(node.targets) == 1 and type(node.targets[0].target) is cst.Name:
            self._drop_metric_hazards(node, node.targets[0].target.value, before)
        if type(node.value) is cst.Attribute and node.value.attr.value == "apply" and isinstance(
                node.value.value, cst.Name) and node.value.value.value in self.x.autograd_classes:
            for t in node.targets:
                if type(t.target) is cst.Name:
                    self.x.aliases.append((t.target.value, node.value.value.value))
        for t in node.targets:
            self.assign(t.target, val, node.value)

    def _drop_metric_hazards(self, node: cst.Assign, name: str, before: int) -> None:
        """The numerics hazards this assignment's value made, taken back when `name` is read only
        where its value leaves autograd (`ent = -(p * p.log()).sum()` then `print(ent.item())`):
        a metric, as `.item()` on the same expression is (`leaving`)."""
        root = self.scope_root()
        made = [s for s in self.x.sites[before:] if s.kind in _HAZARDS]
        if root is None or not made:
            return
        # (resolved within its function: the whole top-level statement, a class, paired otherwise)
        span = self.x.src.span(node, within=root if type(root) is cst.FunctionDef else None)
        first, last = span.line, span.end_line
        made = [s for s in made if first <= s.span.line <= last]
        if not made or not made_alone(node.value, self._torch_call) or \
                not read_only_as_metric(root, name, self.self_logs()):
            return
        dropped = {id(s) for s in made}
        self.x.sites[before:] = [s for s in self.x.sites[before:] if id(s) not in dropped]
        self.x._seen.difference_update((s.kind, s.span, s.variant) for s in made)

    def _torch_call(self, func: cst.BaseExpression) -> bool:
        names = self.x.q(func)
        return bool(names) and all(n.startswith(("torch.", "math.")) for n in names)

    def self_logs(self) -> bool:
        """Whether `self.log(...)` here is a LightningModule's (it detaches what it is given): the
        class derives from one by name and defines no `log` or `log_dict` of its own."""
        cls = self.cls
        return cls is not None and any("LightningModule" in b for b in cls.bases) and not (
            cls.methods & {"log", "log_dict"})

    def augmented(self, node: cst.AugAssign, target_val: V, val: V) -> V:
        op = node.operator
        key = list_key(node.target) if type(op) is cst.AddAssign else None
        if key and key not in self._module_lists:
            # `frozen = []; frozen += list(net.children())[:4]`: the list now holds modules (the
            # assignment that follows, with no value node, keeps what this marks)
            _, modules, named = self._modules_of(node.value)
            if modules:
                self._module_lists = self._module_lists | {key}
                if named:
                    self._named_module_lists = self._named_module_lists | {key}
        if type(op) is cst.DivideAssign:
            self.check_divide(node, target_val, val, node.value)
        return self.binop_value(_AUG.get(type(op)), target_val, val, node.target, node.value, node)

    def return_stmt(self, node: cst.Return) -> None:
        if self.settings is not None and not self.branching and not self.looping:
            # a walk under assumed defaults: this return ends every path it decided
            self.done = True
        if node.value is not None:
            val = self.ev(node.value)
            self.returns.append(None if type(node.value) is cst.Tuple else val)
            self.return_nodes.append(node)
            top = self.cls is None and self.qual == self.name
            method = self.cls is not None and self.qual == f"{self.cls.name}.{self.name}"
            if (top or method) and self.fn_node is not None and not self.x.muted:
                # a top-level function's loss (or a method's of a top-level class), for the
                # callers that backpropagate it
                parts = [self.memo.get(id(el.value), UNKNOWN) for el in node.value.elements] \
                    if type(node.value) is cst.Tuple else [val]
                keyed = keyed_returns(node.value, self.memo) if type(node.value) is cst.Dict else None
                self.x.returned_value(self.qual, parts if type(node.value) is cst.Tuple else keyed, val)
        else:
            self.returns.append(None)

    def other_small(self, node: cst.BaseSmallStatement) -> None:
        for child in evaluated_children(node):
            if isinstance(child, cst.BaseExpression):
                self.ev(child)

    def _modules_of(self, node: cst.BaseExpression) -> tuple[cst.BaseExpression, bool, bool]:
        """`module_iteration`, and also a name bound to such modules earlier in this function
        (`modules = list(resnet.children())[:-2]`, catalyst's encoder) or a list of them by
        comprehension (`[m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]`)."""
        node, module_iter, named = module_iteration(node)
        if module_iter:
            return node, True, named
        key = list_key(node)
        if key and key in self._module_lists:
            return node, True, key in self._named_module_lists
        if type(node) in (cst.ListComp, cst.GeneratorExp) and node.for_in.inner_for_in is None and \
                type(node.elt) is cst.Name and type(node.for_in.target) is cst.Name and \
                node.elt.value == node.for_in.target.value:
            _, inner, inner_named = self._modules_of(node.for_in.iter)
            return node, inner and not inner_named, False
        return node, False, False

    def _bind_loop_target(self, target: cst.BaseAssignTargetExpression, it_node: cst.BaseExpression, it: V) -> None:
        node_iter = it_node
        if type(it_node) is cst.Call and type(it_node.func) is cst.Name and it_node.func.value == "enumerate" and \
                it_node.args and not it_node.args[0].star and type(target) is cst.Tuple and len(target.elements) == 2:
            # `for i, child in enumerate(model.children())` (the common "freeze the first n" loop)
            _, module_iter, named = self._modules_of(it_node.args[0].value)
            if module_iter:
                self.bind(target.elements[0].value, UNKNOWN)
                item = target.elements[1].value
                if not named and type(item) is cst.Name:
                    self.bind_name(item.value, V(module=True))
                elif named and type(item) is cst.Tuple and len(item.elements) == 2:
                    self.bind(item.elements[0].value, UNKNOWN)
                    self.bind(item.elements[1].value, V(module=True))
                else:
                    self.bind(item, UNKNOWN)
                return
        it_node, module_iter, named = self._modules_of(it_node)
        if not module_iter and type(target) is cst.Name:
            # `for layer in self.layers[:n]` over an nn.ModuleList or nn.Sequential (any module
            # iterated by value), `for block in bert.encoder.layer`: each item is a module
            base = it if it_node is node_iter else self.ev(it_node)
            module_iter = (base.module and not base.crit and not base.inst) or self._library_submodule(it_node)
        if module_iter and not named and type(target) is cst.Name:
            self.bind_name(target.value, V(module=True))
            return
        if module_iter and named and type(target) is cst.Tuple and len(target.elements) == 2:
            first, second = target.elements
            self.bind(first.value, UNKNOWN)
            self.bind(second.value, V(module=True))
            return
        self.bind(target, UNKNOWN)

    def bind(self, target: cst.BaseExpression, val: V) -> None:
        """A target of a comprehension, a walrus or a loop gets `val` (a tuple target: `unpack`)."""
        self.assign_target(target, val)

    def unpack(self, val: V, count: int) -> list | None:
        """`validity, label = D(x)`: each target gets its element when the length is known (a
        tuple literal's, or a model output's whose forward returns a tuple); of a grad-free value
        (a call of a function that holds no parameters), each grad-free too."""
        return self.x.free_parts(val, self._unpack(val, count), count)

    def _unpack(self, val: V, count: int) -> list | None:
        if val.pieces:
            return [replace(val, pieces=False)] * count  # `x, y, z = torch.split(xyz, 1, dim=1)`
        ref = self.x.open_param(val)
        if ref is not None:
            # a parameter's elements: what the callers pass decides each (facts.bind_parameters)
            out = []
            for i in range(count):
                v = open_value()
                self.x.open_elems[id(v)] = (v, *ref, i)
                out.append(v)
            return out
        known = len(val.elems) == count if val.elems is not None else bool(val.out)
        if not known and val.returned is not None and val.returned[1] == -1:
            # `loss, log = criterion(...)`: each part is that element of the function's return
            # (and, as far as the call's own value tells, a tensor computed as it is)
            # (a function's parts stay unknown: its returns decide them, Extractor._cut_returns)
            method = "." in val.returned[0]
            part = replace(val, sq=False, sumsq=False, crit=None, callret=None, module=False, inst=frozenset(),
                           elems=None, value=UNKNOWN, nonneg=False) if method and val is not UNKNOWN else UNKNOWN
            # (an element a method of this file cuts on every return is cut here too, and one a
            # function of it cuts of what this call hands it)
            cut = self.x.method_cut if method else (
                lambda name, i: self.x.function_cut(name, i, val.params and not val.nograd, count))
            return [replace(cut(val.returned[0], i) or part, returned=(val.returned[0], i)) for i in range(count)]
        if not known and count == 1 and val is not UNKNOWN and self.x.open_param(val) is None:
            # `grad, = torch.autograd.grad(...)`: the only item, what `[0]` gives (parts of a
            # tuple of several, `values, indices = torch.topk(p, k)`, are not known apart)
            return [replace(val, sq=False, sumsq=False, crit=None, callret=None, module=False, inst=frozenset(),
                            elems=None, value=UNKNOWN, returned=None, nonneg=False)]
        return [_item(val, i) or UNKNOWN for i in range(count)] if known else None

    def changed(self, name: str) -> None:
        """`name` now holds another tensor, or its tensor changed in place."""
        if self.versions is FunctionWalk.versions:
            self.versions = {}
        self.versions[name] = self.versions.get(name, 0) + 1

    def loop_changed(self, depth: int, name: str) -> bool:
        """Whether a loop entered at `depth` or deeper binds or changes `name` anywhere in it."""
        memo = self.x.loop_names
        for loop in self.loop_changes[depth:]:
            names = memo.get(id(loop))
            if names is None:
                names = memo[id(loop)] = changed_in(loop)
            if name in names:
                return True
        return False

    def changed_in_place(self, name: str, by: list | None = None) -> None:
        """`x.mul_(10)`, `x[0] = 100`, `x.data.add_(1)`: the tensor under `name` (and under every
        name bound to the same value: `y = x; y.mul_(10)`) changed; what bounded it (a clamp, a
        shift by its max, a mask's comparison of it) no longer holds, nor that it carries no
        gradient unless what changed it (`by`: the arguments, the value written) carries none."""
        held = self.env.get(name)
        names = [name] if held is None or held is UNKNOWN else [k for k, v in self.env.items() if v is held]
        for k in names or [name]:
            self.changed(k)
            v = self.env.get(k)
            if v is None or v is UNKNOWN:
                continue
            new = v
            if v.exp_safe or v.floor_safe or v.max_shifted or v.mask_of or v.nonpos or v.bounds is not None:
                new = replace(v, exp_safe=False, floor_safe=False, max_shifted=False, mask_of=None, nonpos=False,
                              bounds=None)
            self.env[k] = self.x.changed_by(v, new, by)

    def bind_name(self, name: str, val: V) -> None:
        self.changed(name)
        if name in self._entry_names:
            self._forget_entries(name)  # a new dict (or anything) under the name: its entries go
        self._forget_module_list(name)
        self.env[name] = val
        if self.name == "<module>" and self.cls is None:
            self._module_binding(name, val)

    def _module_binding(self, name: str, val: V) -> None:
        """Every binding of a module-level name joins into its plain value (Extractor._module_value)."""
        known = self.x.module_values
        known[name] = join_value(known[name], val.value) if name in known else val.value

    def bind_attribute(self, target: cst.BaseExpression, val: V) -> None:
        key = dotted(target)
        if key:
            self.env[key] = val
            self._forget_module_list(key)

    def _forget_module_list(self, key: str) -> None:
        """A name or attribute rebound: no longer a list of modules (`assign` marks it again when
        the new value is some modules too)."""
        if key in self._module_lists:
            self._module_lists = self._module_lists - {key}
            self._named_module_lists = self._named_module_lists - {key}

    def bind_subscript(self, target: cst.Subscript, val: V) -> None:
        self.sequential_item_set(target)  # `model[-1] = nn.Identity()`
        if (root := root_name(target.value)) is not None:
            self.changed_in_place(root, [val])  # `x[:] = x * 100`
        self._dict_changed(target.value)
        self._list_set(target, val)
        self.bind_attribute(target, val)
        if type(target.value) is cst.Name:
            name = target.value.value
            key = _string_index(target)
            if key is not None and self._entry_local(name):
                # `outputs["hm"] = torch.sigmoid(outputs["hm"])`: what a later read of that entry
                # here gives, until the dict is read otherwise (the value in the dict itself is
                # not known)
                self.env[_entry(name, key)] = val
                self._entry_names = self._entry_names | {name}
            else:
                self._forget_entries(name)  # `outputs[k] = ...`: any entry may have changed

    def _entry_local(self, name: str) -> bool:
        """Whether a dict under `name` can change only where this function reads the name: a
        parameter or a local of the walked function (not a global, which another function may
        change), that no nested function, lambda or class of it mentions (a closure may)."""
        fn = self.fn_node
        if fn is None:
            return False
        memo = self.__dict__.setdefault("_entry_local_memo", {})
        if name in memo:
            return memo[name]
        ps = fn.params
        params = {p.name.value for p in (*ps.posonly_params, *ps.params, *ps.kwonly_params)}
        local = name in params
        ok = True
        stack = list(_children(fn.body))
        while stack and ok:
            n = stack.pop()
            kind = type(n)
            if kind in (cst.FunctionDef, cst.Lambda, cst.ClassDef):
                ok = not any(type(m) is cst.Name and m.value == name for m in walk(n))
                continue
            if kind in (cst.Global, cst.Nonlocal):
                ok = all(item.name.value != name for item in n.names)
                continue
            if kind is cst.AssignTarget and type(n.target) is cst.Name and n.target.value == name:
                local = True
            stack.extend(_children(n))
        memo[name] = ok and local
        return memo[name]

    def _forget_entries(self, name: str) -> None:
        prefix = name + "["
        for key in [k for k in self.env if k.startswith(prefix)]:
            del self.env[key]

    def _list_set(self, target: cst.Subscript, val: V) -> None:
        """`h_t[0] = cell(x, h_t[0])` on a list a name holds: that element is the new value (a
        literal index within the display), else the list may hold it anywhere; either way it
        carries gradient when the value does (`torch.tensor(h_t)` is then a cut)."""
        if type(target.value) is not cst.Name or target.value.value not in self.env:
            return
        name = target.value.value
        held = self.env[name]
        index = target.slice[0].slice if len(target.slice) == 1 else None
        i = None
        if type(index) is cst.Index and type(index.value) is cst.Integer:
            try:
                i = int_literal(index.value)
            except ValueError:  # more digits than Python converts
                i = None
        if held.elems is not None and type(i) is int and -len(held.elems) <= i < len(held.elems):
            items = list(held.elems)
            items[i] = val
            self.env[name] = replace(held, elems=tuple(items), value=UNKNOWN, const=held.const and val.const)
            return
        self._list_holds(name, [val])

    def assign(self, target: cst.BaseExpression, val: V, value_node: cst.BaseExpression | None = None) -> None:
        # a name bound to some of a model's modules (`modules = list(m.children())[:-2]`, then
        # `modules = modules[1:]`), which a loop over it then iterates as `for module in
        # m.children()` does (read before the binding forgets the name's old value)
        # (`self.blocks = list(resnet.children())` too; `mods += list(head.children())` keeps it)
        key = list_key(target)
        if value_node is None and key in self._module_lists:
            modules, named = True, key in self._named_module_lists  # an augmented assignment
        else:
            _, modules, named = self._modules_of(value_node) if key and value_node is not None else (None, False, False)
        self._assign(target, val, value_node)
        if modules:
            self._module_lists = self._module_lists | {key}
            if named:
                self._named_module_lists = self._named_module_lists | {key}

    def _assign(self, target: cst.BaseExpression, val: V, value_node: cst.BaseExpression | None = None) -> None:
        if type(target) is cst.Name:
            held = exp_arguments(value_node, names=self.exp_names) if type(value_node) is cst.Call else ()
            if len(held) == 1 and val.exp:
                self.exp_names[target.value] = next(iter(held))  # `e = torch.exp(z)`
            else:
                self.exp_names.pop(target.value, None)
        if type(target) is cst.Name and self.name == "<module>" and self.cls is None and empty_dict(value_node):
            # `MODELS = {}` that a registering decorator of the file fills: the classes it holds
            val = self.x.registry(target.value) or val
        if type(target) is cst.Attribute and not (type(target.value) is cst.Name and target.value.value == "self"):
            self.x.attrs_set.add(target.attr.value)  # `model.method = ...` (facts.numerics._defaults_hold)
        if self.nograd and not val.nograd:
            val = replace(val, cut="torch.no_grad()", cut_span=self.x.where(value_node) if value_node else None,
                          through=frozenset())
        if type(target) is cst.Attribute:
            attr = target.attr.value
            if attr == "require_grad":
                held = self.ev(target.value)
                if held.const and held.leaf and value_node is not None and self.ev(value_node).value is False:
                    # `pe = torch.zeros(n, d); pe.require_grad = False`: a typo, but the fresh
                    # tensor never required grad, so nothing meant is lost (neuralforecast)
                    return
                self.x.add(Site("requires_grad_on_module", "typo", self.x.span(target), detail=self.x.code(target)))
                return
            if attr == "requires_grad":
                self.requires_grad_set(target.value, value_node, self.x.where(target))
                return
            if attr == "data" or attr == "grad":
                return
        if type(target) in (cst.Tuple, cst.List) and type(value_node) in (cst.Tuple, cst.List) and len(
                target.elements) == len(value_node.elements):
            for t, v in zip(target.elements, value_node.elements):
                self.assign(t.value, self.memo.get(id(v.value), UNKNOWN), v.value)
            return
        self.assign_target(target, val)

    def _record_wrapper(self, fn: cst.FunctionDef) -> None:
        """`def op(x): return MyFn.apply(x)` makes `op` a name under which MyFn can be gradchecked."""
        if not self.x.autograd_classes:
            return
        found: set[str] = set()
        x = self.x

        class Apply(cst.CSTVisitor):
            def visit_Attribute(self, node: cst.Attribute) -> None:
                if node.attr.value == "apply" and type(node.value) is cst.Name and \
                        node.value.value in x.autograd_classes:
                    found.add(node.value.value)

        fn.visit(Apply())
        for cls in sorted(found):  # facts must not depend on the hash seed
            x.aliases.append((fn.name.value, cls))


_AUG = {cst.AddAssign: cst.Add, cst.SubtractAssign: cst.Subtract, cst.MultiplyAssign: cst.Multiply,
        cst.DivideAssign: cst.Divide, cst.PowerAssign: cst.Power}
