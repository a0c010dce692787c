"""The numerics evaluator: expressions to tensors with properties (`engine/tensors.V`).

Names, attributes, operators, subscripts, containers and comprehensions are evaluated to what the
numerics rules need: probabilities, logits, sums of squares, parameters, cuts from the graph, and
the plain value where one is known (`V.value`: literals, names bound to them, arithmetic on them
folded by engine/fold.py, module constants such as `math.pi`), which the sites read for exponents,
eps, bounds and indices instead of folding the node again; calls (torch functions, tensor
methods, module instances, the file's own functions) are `numerics_calls.py`. Operations that may
be hazards are handed to the site checks (`numerics_sites.SiteChecks`) as they are met.
"""

from __future__ import annotations

import math

import libcst as cst

from gradlint.source.budget import MAX_EXPR_DEPTH
from gradlint.source.engine.fold import binary, constant, unary
from gradlint.source.engine import bounds
from gradlint.source.engine.tensors import V, UNKNOWN, replace, _combine, merge, _item, number_of, ratio_of, square_unit, cosines, unit_terms
from gradlint.source.engine.values import str_literal
from gradlint.source.engine.walk import children as _code_children
from gradlint.source.engine.walk import comprehensions as _comprehensions
from gradlint.source.names import dotted
from gradlint.source.numerics_defaults import decided
from gradlint.source.numerics_names import LOSS_FUNCTIONS, LOSS_MODULES
from gradlint.source.numerics_ops import squares_product, strictly_positive
from gradlint.source.numerics_signs import never_negative
from gradlint.source.numerics_signs import _literal as _number_written  # (a number as written: `18`, `-5.0`)
from gradlint.source.numerics_pairs import gram_expansion, self_difference, self_gram


def _function_value(names: frozenset[str]) -> V | None:
    """A torch loss function named as a value (`self.loss_func = F.binary_cross_entropy_with_logits`)
    is a criterion: calling it is the loss. A loss module class so named (`{"bce": nn.BCELoss}`)
    is the class: calling it makes the criterion (TensorCalls.instance_call)."""
    for qn, kind in LOSS_FUNCTIONS.items():
        if qn in names:
            return V(crit=kind)
    for qn, kind in LOSS_MODULES.items():
        if qn in names:
            return V(crit_class=kind)
    return None


# One constant per plain value of a literal, shared (a V is immutable, and a literal is not an
# open parameter, whose identity counts): a file's literals repeat, and each method's walk reads
# them again.
_PLAINS: dict[tuple[type, object], V] = {}
_CONST = V(const=True)


def _plain(value) -> V:
    """A constant whose plain value is `value` (None from the folder: not known)."""
    if value is None:
        return _CONST
    key = (type(value), value)
    got = _PLAINS.get(key)
    if got is None:
        if len(_PLAINS) > 4096:
            _PLAINS.clear()
        got = _PLAINS[key] = V(const=True, value=value)
    return got


_PLAIN_NAMES = {"True": True, "False": False, "None": None}


_LITERALS: dict[tuple[type, str], V] = {}


def _literal(node: cst.BaseExpression) -> V:
    """A literal: a number as the engine folds it, a string as written; other literals (complex
    numbers, f-strings, implicit concatenations) are constants of no plain value here. Read once
    per text (`_LITERALS`)."""
    kind = type(node)
    if kind is not cst.Integer and kind is not cst.Float and kind is not cst.SimpleString:
        return _CONST
    key = (kind, node.value)
    got = _LITERALS.get(key)
    if got is None:
        if kind is not cst.SimpleString:
            got = _plain(constant(node))
        elif "\\" in node.value or node.value[:1] not in ("'", '"'):
            # escapes or a prefix (b'', r'', f''): reading it compiles the literal (measured: a
            # tenth of the walk on timm's models), and no site reads such a string
            got = _CONST
        else:
            got = _plain(str_literal(node))
        if len(_LITERALS) > 4096:
            _LITERALS.clear()
        _LITERALS[key] = got
    return got


_EXPRESSION_TYPES: dict[type, bool] = {}


def _is_expression(node: cst.CSTNode) -> bool:
    """isinstance(node, cst.BaseExpression) without the ABC machinery's cost, once per class."""
    cls = type(node)
    known = _EXPRESSION_TYPES.get(cls)
    if known is None:
        known = _EXPRESSION_TYPES[cls] = isinstance(node, cst.BaseExpression)
    return known


# How a term of a loss sum is cut: the value is kept, its gradient is not.
_TERM_CUTS = frozenset({".item()", ".detach()", ".tolist()", "float()"}) | frozenset(
    f"{n}(...)" for n in ("tensor", "as_tensor", "Tensor", "FloatTensor", "scalar_tensor"))


def exp_arguments(node: cst.BaseExpression, *, factors: bool = False, names: dict[str, str] | None = None
                  ) -> frozenset[str]:
    """The arguments (as written, spaces and outer parentheses removed) of the exps an expression
    calls: `torch.exp(a)`, `a.exp()`, and a local name bound to one (`names`: name -> its exp's
    argument); a few hundred nodes at most. factors: only the exps that are factors of it
    (`g * c * exp(z)`, `exp(z) / 2`), not those inside a sum (`exp(z) - 1`)."""
    out: set[str] = set()
    stack: list[cst.CSTNode] = [node]
    seen = 0
    while stack and seen < 256:
        n = stack.pop()
        seen += 1
        if type(n) is cst.Name and names and n.value in names:
            out.add(names[n.value])
            continue
        if type(n) is cst.Call:
            arg = None
            if type(n.func) is cst.Attribute and n.func.attr.value == "exp" and not n.args:
                arg = n.func.value  # `z.exp()`, `(-5 * x).exp()`
            elif dotted(n.func) in ("torch.exp", "exp") and n.args:
                arg = n.args[0].value
            if arg is not None:
                out.add(_bare(arg))
            if factors:
                continue
        if factors:
            if type(n) is cst.BinaryOperation and type(n.operator) in (cst.Multiply, cst.Divide):
                stack.extend((n.left,) if type(n.operator) is cst.Divide else (n.left, n.right))
            continue
        stack.extend(_code_children(n))
    return frozenset(out)


def _bare(node: cst.BaseExpression) -> str:
    """An expression's code without spaces or the parentheses around it: `(-5 * x)` is `-5*x`."""
    if getattr(node, "lpar", ()):
        node = node.with_changes(lpar=[], rpar=[])
    return "".join(cst.Module([]).code_for_node(node).split())


def _mentions_max(node: cst.BaseExpression) -> bool:
    """Whether a subtracted expression names a max (x.max(...), torch.amax, x_max)."""
    stack: list[cst.CSTNode] = [node]
    seen = 0
    while stack and seen < 64:
        n = stack.pop()
        seen += 1
        if type(n) is cst.Name:
            if "max" in n.value.lower():
                return True
        elif type(n) is cst.Attribute:
            if "max" in n.attr.value.lower():
                return True
            stack.append(n.value)
        elif type(n) is cst.Call:
            stack.append(n.func)
        elif type(n) is cst.Subscript:
            stack.append(n.value)
    return False


class TensorEval:
    """Expression evaluation of FunctionWalk (a mixin: the walk's environment, memo and file
    extractor); calls are `numerics_calls.TensorCalls`."""

    # dict entries a function stored (FunctionWalk.bind_subscript): none outside a walk of one
    _entry_names: frozenset[str] = frozenset()
    _entry_bases: frozenset[int] = frozenset()

    # -- expressions ---------------------------------------------------------------------------
    def ev(self, node: cst.BaseExpression) -> V:
        key = id(node)
        if key in self.memo:
            return self.memo[key]
        x = self.x
        if x.depth >= MAX_EXPR_DEPTH:
            return UNKNOWN  # generated code nested past the budget: not followed
        x.depth += 1
        try:
            val = self._ev(node)
        finally:
            x.depth -= 1
        if self.nograd and not val.nograd and not isinstance(node, cst.Name | cst.Attribute):
            val = replace(val, cut="torch.no_grad()", cut_span=self.x.where(node), through=frozenset())
        self.memo[key] = val
        return val

    def _ev(self, node: cst.BaseExpression) -> V:
        kind = type(node)  # libcst's node classes are ABCs: isinstance costs a cache lookup per miss
        if kind is cst.Name:
            if node.value in _PLAIN_NAMES:
                return V(const=True, value=_PLAIN_NAMES[node.value])
            if node.value in self._entry_names and id(node) not in self._entry_bases:
                # the dict read as anything but one of its entries (passed on, a method called,
                # aliased): what it holds may change there
                self._forget_entries(node.value)
            if node.value in self.x.ref_names and id(node) not in self.x.callees:
                self.x.references.add(node.value)
                (self.x.arg_refs if id(node) in self.x.fn_args else self.x.free_refs).add(node.value)
            if node.value in self.env:
                held = self.env[node.value]
                if held.keyed is not None and self.name == "<module>" and not self.x.steady_dict(node.value):
                    return UNKNOWN  # (a function the module's code calls may change it in place)
                return held
            if node.value in self.globals:
                return self.globals[node.value]
            if node.value in self.x.local_classes:
                if id(node) not in self.x.callees:
                    self.x.class_refs.add(node.value)
                # a class held as a value (`klass = Scheduler`): calling it makes an instance of it
                return V(local_class=node.value) if node.value not in self.x.autograd_classes else UNKNOWN
            if node.value in self.x.imports.names:
                names = self.x.q(node)
                fn = _function_value(names)
                if fn is not None:
                    return fn
                if id(node) not in self.x.callees and id(node) not in self.x.discarded:
                    known = self.x.imported_constant(names)  # `from .consts import EPS`
                    if known is not None:
                        return known
            if node.value.isupper() and len(node.value) > 1:
                return V(const=True)
            return UNKNOWN
        if kind in (cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString,
                    cst.ConcatenatedString, cst.FormattedString):
            return _literal(node)
        if kind is cst.Attribute:
            return self.attribute(node)
        if kind is cst.Call:
            if type(node.func) is cst.Lambda and (applied := self._applied_lambda(node)) is not None:
                return applied
            res = self.call(node)
            if not res.nonneg and not res.module and never_negative(node):
                # `pos = x.clamp(min=0)`, `r = F.relu(x)`: never negative by a name too
                res = self.x.same_origin(res, replace(res, nonneg=True))
            return res
        if kind is cst.BinaryOperation:
            return self.binop(node)
        if kind is cst.UnaryOperation:
            inner = self.ev(node.expression)
            if type(node.operator) is cst.BitInvert and inner.mask_of is not None:
                # `~(x <= 18)`: true exactly where x is above 18
                key, rel, *rest = inner.mask_of
                return replace(inner, mask_of=(key, "gt" if rel == "le" else "le", *rest), value=UNKNOWN)
            if type(node.operator) is cst.Not:
                return V(const=inner.const, cut=inner.cut or "comparison", computed=True)
            # -x**2 and -|x| are <= 0: exp of them cannot overflow (softplus as log1p(exp(-|x|)))
            negated_square = type(node.operator) is cst.Minus and (
                inner.sq or inner.sumsq or never_negative(node.expression) or (inner.nonneg and not inner.module))
            signed = unary(type(node.operator), inner.value)
            minus = type(node.operator) is cst.Minus
            res = replace(_combine([inner]), tensor=inner.tensor, exp=False,
                          prob=None, nonpos=negated_square, value=UNKNOWN if signed is None else signed,
                          # -x of x >= -80 is at most 80, and of x <= 80 at least -80
                          exp_safe=minus and inner.floor_safe, floor_safe=minus and inner.exp_safe,
                          bounds=bounds.negated(inner.bounds) if minus else None)
            if inner.cut_terms and not res.nograd:
                res = replace(res, cut_terms=inner.cut_terms)  # `-(a + b.detach())` keeps its terms
            return self.x.derive_from([inner], res)
        if kind is cst.Subscript:
            if type(node.value) is cst.Name and node.value.value in self._entry_names and _string_index(node) is not None:
                self._entry_bases = self._entry_bases | {id(node.value)}  # (reading an entry keeps the others)
            base = self.ev(node.value)
            for el in node.slice:
                self._ev_children(el)
            if type(node.value) is cst.Attribute and node.value.attr.value == "shape":
                return V(const=True)
            if base.holds and (item := self.module_list_item(base, node)) is not None:
                return item  # `self.schedulers[i]`: an instance of the classes the ModuleList holds
            if type(node.value) is cst.Name and (key := _string_index(node)) is not None:
                stored = self.env.get(_entry(node.value.value, key))
                if stored is not None:
                    return stored  # `outputs["hm"] = torch.sigmoid(...)` earlier in this function
            if base.keyed is not None:
                key = _string_index(node)
                got = next((v for k, v in base.keyed if k == key), UNKNOWN) if key is not None else UNKNOWN
                if got is not UNKNOWN and not self._local_dict_steady(node.value, got):
                    return UNKNOWN
                return got
            if base.returned is not None and base.returned[1] == -1 and (key := _string_index(node)) is not None:
                # `out = loss_function(model, x); out["loss"].backward()`: that entry of the dict
                # the function returns (Extractor._cut_returns)
                return replace(UNKNOWN, returned=(base.returned[0], key))
            if base.elems is not None or (base.out and base.out_elem is None):
                i = self._int_index(node)
                item = _item(base, i) if i is not None else None
                if item is not None and base.elems is not None:
                    return item
                base = item or base
            value = UNKNOWN
            if type(base.value) is tuple:
                i = self._int_index(node)
                if i is not None and -len(base.value) <= i < len(base.value):
                    value = base.value[i]  # `dims = (1, 2); dims[0]`
            # `p[p > 0]`: a mask of the values that are not zero, a guard (as a clamp is) and no
            # plain selection of what a caller passed
            masked = any(type(el.slice) is cst.Index and type(el.slice.value) is cst.Comparison for el in node.slice)
            return self.x.derive_from([base], replace(base, sq=False, sumsq=False, crit=None, callret=None, module=False,
                                               inst=frozenset(), nonneg=base.nonneg and not base.module, norm=base.norm, exp=base.exp, elems=None,
                                               value=value, shifted=base.shifted or (masked and bool(base.prob)),
                                               ratio=None if masked else base.ratio),
                                      kept=not masked)
        if kind is cst.Comparison:
            vals = [self.ev(node.left)] + [self.ev(c.comparator) for c in node.comparisons]
            made = _mask_of(node)
            if made is not None:
                # (which `x`: its version, and the loop and lambda depths it was made at)
                made = (*made, self.versions.get(made[0], 0), self.looping, self.lazy)
            return V(const=all(v.const for v in vals), cut="comparison", computed=True, mask_of=made)
        if kind is cst.BooleanOperation:
            left = self.ev(node.left)
            self.lazy += 1  # (the right operand runs on some paths only)
            try:
                right = self.ev(node.right)
                return self.x.free_join(left, right, merge(left, right))
            finally:
                self.lazy -= 1
        if kind is cst.IfExp:
            if self.settings is not None and (got := decided(node.test, self.settings)) is not None:
                self.settings_read |= got[1]  # a walk under assumed defaults (numerics_defaults)
                return self.ev(node.body if got[0] else node.orelse)
            self.ev(node.test)
            self.branching += 1  # (each arm runs on some paths only: FunctionWalk.conditional)
            try:
                body, orelse = self.ev(node.body), self.ev(node.orelse)
                got = merge(body, orelse)
                if body is not orelse and (got is body or got is orelse):
                    # an open parameter on one arm only (`inputs if first else inputs[::-1]`) is
                    # not that parameter: a copy, which no unpacking reads as its elements
                    got = replace(got)
                return self.x.free_join(body, orelse, got)
            finally:
                self.branching -= 1
        if kind in (cst.Tuple, cst.List, cst.Set):
            vals = [self.ev(e.value) for e in node.elements]
            # elements kept only where one is a probability, a model's output or a criterion (what
            # unpacking it can tell a rule), and the length is known
            if vals and type(node) is not cst.Set and any(
                    v.prob or v.out or v.crit or v.callret or v.elems is not None for v in vals) and not any(
                    type(e) is cst.StarredElement for e in node.elements):
                return replace(_combine(vals), elems=tuple(vals))
            if kind is cst.Tuple and all(v.value is not UNKNOWN for v in vals) and not any(
                    type(e) is cst.StarredElement for e in node.elements):
                # a tuple of plain values (a list may change in place: not followed)
                return replace(_combine(vals), value=tuple(v.value for v in vals)) if vals else _plain(())
            if not vals and kind is cst.List:
                # `[]`: of known length, nothing in it (a loop that appends joins it: merge)
                return V(const=True, elems=())
            return _combine(vals) if vals else V(const=True)
        if kind in (cst.ListComp, cst.GeneratorExp, cst.SetComp):
            scope = self.enter_own_scope()
            self.lazy += 1  # (the element runs once per item, if any: on some paths only)
            try:
                for comp in _comprehensions(node.for_in):
                    self.ev(comp.iter)
                    self.bind(comp.target, UNKNOWN)
                    for cond in comp.ifs:
                        self.ev(cond.test)
                val = self.ev(node.elt)
            finally:
                self.lazy -= 1
            self.leave_own_scope(scope)  # (its targets are its own: the function's names keep their tensors)
            return _combine([val])
        if kind is cst.Dict:
            keys, vals = [], []
            for el in node.elements:
                if type(el) is cst.DictElement:
                    self.ev(el.key)
                    keys.append(el.key.evaluated_value if type(el.key) is cst.SimpleString else None)
                    vals.append(self._dict_value(el.value))
                else:  # `**other`
                    self.ev(el.value)
                    keys.append(None)
            # string keys, one each, and a value a rule may read back (`criteria["cls"](p, y)`)
            # (or a loss term cut from the parameters: `losses = {"ce": ce, "l2": l2.detach()}`
            # summed later, GL407's cut term read back by key)
            if vals and all(type(k) is str for k in keys) and len(set(keys)) == len(keys) and any(
                    v.prob or v.out or v.crit or v.callret or v.crit_class or v.local_class or (
                        v.cut in _TERM_CUTS and v.cut_span is not None and not v.const)
                    for v in vals):
                return V(keyed=tuple(zip(keys, vals)))
            return UNKNOWN
        if kind is cst.DictComp:
            scope = self.enter_own_scope()
            for comp in _comprehensions(node.for_in):
                self.ev(comp.iter)
                self.bind(comp.target, UNKNOWN)
            self.ev(node.key)
            self.ev(node.value)
            self.leave_own_scope(scope)
            return UNKNOWN
        if kind is cst.Lambda:
            scope = self.enter_own_scope()
            for p in node.params.params:
                self.env[p.name.value] = UNKNOWN
                self.changed(p.name.value)
            self.lazy += 1  # (its body runs later, if ever)
            try:
                self.ev(node.body)
            finally:
                self.lazy -= 1
            self.leave_own_scope(scope)
            return UNKNOWN
        if kind is cst.NamedExpr:
            val = self.ev(node.value)
            self.bind(node.target, val)
            return val
        self._ev_children(node)
        return UNKNOWN


    def enter_own_scope(self) -> tuple[dict, dict]:
        """The names as they are before a comprehension's or lambda's own scope binds some."""
        return dict(self.env), dict(self.versions)

    def leave_own_scope(self, scope: tuple[dict, dict]) -> None:
        """Back to the names before the scope (`enter_own_scope`): what it bound was its own."""
        self.env, self.versions = scope

    def _applied_lambda(self, node: cst.Call) -> V | None:
        """`(lambda z: z.exp().log1p())(x.masked_fill(~mask, 0))` (botorch's log1pexp): a lambda
        called where it is written runs now, its parameters bound to the arguments; None when
        the call does not match its plain positional parameters."""
        fn = node.func
        params = fn.params
        if params.star_arg is not cst.MaybeSentinel.DEFAULT and params.star_arg is not None or params.kwonly_params \
                or params.star_kwarg is not None or params.posonly_params \
                or len(node.args) != len(params.params) or any(a.keyword is not None or a.star for a in node.args) \
                or any(p.default is not None for p in params.params):
            return None
        values = [self.ev(a.value) for a in node.args]
        scope = self.enter_own_scope()
        for p, v in zip(params.params, values):
            self.env[p.name.value] = v
            self.changed(p.name.value)
        try:
            return self.ev(fn.body)
        finally:
            self.leave_own_scope(scope)

    def _local_dict_steady(self, holder: cst.BaseExpression, got: V) -> bool:
        """Whether a dict display bound in this function still holds `got` (what its key held
        there) where it is read: every other mention of the dict in the function a read or a
        change in place (which the walk's environment follows: `_dict_changed`), none an alias,
        an argument of a call that may change it, or a change in a nested function
        (`alias = losses; alias["bce"] = nn.MSELoss()`, `setup(losses)`: function_dict_mentions). A dict of
        classes (`models = {"mlp": MLP}`) is held to one binding and no item write. A
        module-level dict is held to `ModuleValues.steady_dict` where it is bound."""
        if type(holder) is not cst.Name or self.name == "<module>" or holder.value not in self.env:
            return True
        from gradlint.source.numerics_values import function_dict_mentions

        root = self.scope_root()
        if type(root) is not cst.FunctionDef:
            return False
        mentions = function_dict_mentions(root, holder.value)
        return mentions == (1, 0) if got.local_class else mentions is not None

    def _dict_value(self, node: cst.BaseExpression) -> V:
        """A value of a dict display: a class of this file named there is held as that class
        (`{"mlp": MLP}`: `MODELS["mlp"]()` makes an MLP); elsewhere a class name read as a value
        stays unknown."""
        val = self.ev(node)
        if val is UNKNOWN and type(node) is cst.Name and node.value in self.x.local_classes and \
                node.value not in self.env and node.value not in self.globals:
            return V(local_class=node.value)
        return val

    def num(self, node: cst.BaseExpression) -> float | None:
        """The number an expression holds (`V.value`: a literal, a name bound to one, arithmetic
        on them), as the sites compare it; None when it holds none. Evaluated already where a
        site asks (the memo answers)."""
        return number_of(self.ev(node))

    def _int_index(self, node: cst.Subscript) -> int | None:
        """The integer of `x[1]` / `x[-1]` / `x[i]` with `i` bound to one; None for slices,
        several indices and anything that is no integer known here."""
        if len(node.slice) != 1 or type(node.slice[0].slice) is not cst.Index:
            return None
        v = self.ev(node.slice[0].slice.value).value
        return v if type(v) is int else None

    def _ev_children(self, node: cst.CSTNode) -> None:
        # The code children only: libcst's `node.children` visits every whitespace and comma
        # too, rebuilding the node (a tenth of the numerics walk of a large model file).
        for child in _code_children(node):
            if _is_expression(child):
                self.ev(child)
            else:
                self._ev_children(child)

    def attribute(self, node: cst.Attribute) -> V:
        key = dotted(node)
        if id(node) not in self.x.callees and (node.attr.value in self.x.def_names or (
                key is not None and key.partition(".")[0] in self.x.ref_names)):
            self.x.references.add(node.attr.value)
        if key and key in self.env:
            held = self.env[key]
            if self.cls is not None and key.count(".") == 1 and key[5:] in self.cls.params and key[:5] == "self.":
                # the class's own parameter read with its graph: whether a cut of it elsewhere in
                # forward (`self.w.detach()`) leaves it untrained depends on this use (V.live)
                return replace(held, live=held.live | {f"{self.cls.name}.{key[5:]}"})
            return held
        attr = node.attr.value
        names = self.x.q(node)
        if names:
            known = constant(node)  # `math.pi`, `torch.inf`: a number of the module
            found = _function_value(names) or (_plain(known) if known is not None else None)
            if found is None and id(node) not in self.x.callees and id(node) not in self.x.discarded:
                found = self.x.imported_constant(names)  # `consts.EPS`, `import pkg.consts as c; c.EPS`
            return found or UNKNOWN
        base = self.ev(node.value)
        if base.inst and id(node) not in self.x.callees:
            # `step = trainer.train_step`: a method of a project class read as a value may be called
            # from anywhere, so its callers are not all known (facts.numerics.bind_parameters)
            self.x.references.add(attr)
        if attr == "data":
            cut_params = base.param_cuts
            if key and key.startswith("self.") and key.count(".") == 2 and self.cls and key.split(".")[1] in self.cls.params:
                cut_params = cut_params | {(self.x.where(node), key, f"{self.cls.name}.{key.split('.')[1]}")}
            return V(cut=".data", cut_span=self.x.where(node), tensor=True, params=base.params,
                     param_cuts=cut_params, leaf=True)
        if attr == "indices":
            # topk/sort/max indices: integers, never differentiable
            return V(cut="indices", cut_span=self.x.where(node), tensor=True, computed=True)
        if attr in ("shape", "ndim", "dtype", "device", "is_cuda", "requires_grad", "training"):
            return V(const=True)
        if attr in ("T", "mT", "H", "real", "values"):
            return base
        if type(node.value) is cst.Name and node.value.value == "self":
            # an attribute __init__ did not set to a parameter or module: a buffer, a config value
            return UNKNOWN
        if len(base.inst) == 1:
            sub = self.x.member(next(iter(base.inst)), attr)  # `self.model.encoder` of a class here
            if sub is not None:
                return sub
        # `outputs.embeds` of a model's output is that output's (a learned layer's: dense)
        return V(params=base.params, cut=base.cut, cut_span=base.cut_span, const=base.const,
                 numpy=base.numpy, param_cuts=base.param_cuts, dense=base.dense)

    def binop(self, node: cst.BinaryOperation) -> V:
        left = self.ev(node.left)
        right = self.ev(node.right)
        op = type(node.operator)
        if op is cst.Divide:
            self.check_divide(node, left, right, node.right, numerator=node.left)
            if right.one_plus_exp and not right.nograd and exp_arguments(node.left, factors=True, names=self.exp_names) \
                    & exp_arguments(node.right, names=self.exp_names):
                # `exp(z) / (1 + exp(z))`, and the sigmoid's derivative `exp(z) / (exp(z) + 1) ** 2`
                # (snntorch's surrogate gradient, jeshraghian/snntorch#433): the same exp above and
                # below, so the value itself is inf / inf = NaN (measured at z = 100)
                # (a denominator that is no sum is the squared one: `** 2`, `.pow(2)`, `torch.square(...)`)
                squared = type(node.right) is not cst.Name and not (
                    type(node.right) is cst.BinaryOperation and type(node.right.operator) in (cst.Add, cst.Subtract))
                self.add_305(node, "exp(z) / (1 + exp(z)) ** 2" if squared else "exp(z) / (1 + exp(z))",
                             "sigmoid_derivative" if squared else "sigmoid_ratio", (left, right))
            elif number_of(left) == 1 and right.one_plus_exp and not right.nograd:
                self.add_305(node, "1 / (1 + exp(-x))", "sigmoid", (right,))
            elif right.one_plus_exp and not right.nograd and number_of(left) != 0:
                # swish written out, `x / (1 + exp(-x))`, or any `y / (1 + exp(-x))`: the backward's
                # inf / inf is NaN past x < -88 (measured: F.silu's gradient there is -0.0)
                self.add_305(node, "y / (1 + exp(-x))", "scaled_sigmoid", (left, right))
            if (left.exp or left.weighted) and right.sum_exp and not left.nograd:
                # measured: exp(z) / exp(z).sum() at z = [100, 1] is [nan, 0] with a NaN gradient;
                # masked (`e * mask / (e * mask).sum()`) the same
                # (per group: the denominator a grouped sum, `scatter_add(e, index)[index]`)
                summed = "scatter_add(exp(z), index)[index]" if right.grouped else "exp(z).sum()"
                grouped = (("grouped", True),) if right.grouped else ()
                if left.exp:
                    self.add_305(node, f"exp(z) / {summed}", "softmax", (left, right), grouped)
                else:
                    self.add_305(node, f"w * exp(z) / {summed}", "softmax_weighted", (left, right), grouped)
        if op is cst.Power:
            exponent = number_of(right)
            if exponent == 0.5:
                self.check_sqrt(node, node.left, left, "** 0.5", need_tensor=True)
        return self.binop_value(op, left, right, node.left, node.right, node)

    def binop_value(self, op, left: V, right: V, lnode, rnode, node) -> V:
        return self.x.derive_from([left, right], self._binop_value_of(op, left, right, lnode, rnode, node))

    def _binop_value_of(self, op, left: V, right: V, lnode, rnode, node) -> V:
        res = self._binop_value(op, left, right, lnode, rnode, node)
        folded = binary(op, left.value, right.value)
        if folded is not None:
            res = replace(res, value=folded)  # arithmetic on plain numbers: engine/fold.py's
        elif (la := bounds.of(left)) is not None and (ra := bounds.of(right)) is not None:
            # `x / (1 - x)` of `x` clamped to [eps, 1 - eps]: between eps / (1 - eps) and its inverse;
            # `-20 * (r / 0.3 - 1)` of a distance r: at most 20
            known = bounds.arith(op, la, ra)
            if known is not None:
                res = replace(res, bounds=known, **bounds.safety(known))
        elif op is cst.Divide and la is not None and rnode is not None and _temperature(rnode, right):
            # `cos / self.ssl_temp`: a temperature setting nothing here gives a number, taken as
            # at least bounds.TEMPERATURE_MIN (0.05; bench/measure_cosine_temperature.py)
            known = bounds.arith(op, la, (bounds.TEMPERATURE_MIN, math.inf))
            if known is not None:
                res = replace(res, bounds=known, **bounds.safety(known))
        den = left.ratio_den or right.ratio_den
        if den and res.ratio_den is None and op in (cst.Add, cst.Subtract, cst.Multiply, cst.Divide):
            res = replace(res, ratio_den=den)  # `p / q + eps`: the division's backward is NaN all the same
        if op in (cst.Add, cst.Subtract):
            terms = left.cut_terms | right.cut_terms
            for side, other in ((left, right), (right, left)):
                if side.cut in _TERM_CUTS and side.cut_span is not None and not side.const \
                        and not other.nograd and (other.tensor or other.computed or other is UNKNOWN) \
                        and not side.through & other.through:
                    # (a term that passes a module after its cut, which the other term also
                    # passes: it trains that module, as a discriminator's loss on a detached fake)
                    terms |= {(side.cut_span, side.cut)}
            if terms and not res.nograd:
                res = replace(res, cut_terms=terms, addends=(left, right))
        elif op is cst.Multiply and (_weight(left, lnode) or _weight(right, rnode)):
            # `0.1 * aux_loss`, `self.configs.decouple_beta * decouple_loss` keep what the term is made of
            res = replace(res, cut_terms=left.cut_terms | right.cut_terms)
            other = right if _weight(left, lnode) else left
            if res.cut is None and other.cut is not None:
                # (a setting nothing is known of, times a cut value: the cut value, weighed)
                res = replace(res, cut=other.cut, cut_span=other.cut_span, tensor=other.tensor, computed=True)
        return res

    def _binop_value(self, op, left: V, right: V, lnode, rnode, node) -> V:
        base = _combine([left, right])
        ln = number_of(left)
        rn = number_of(right)
        if (left.exp_safe and rn is not None and (op is cst.Multiply and 0 < rn <= 1 or op is cst.Divide and rn >= 1)) or (
                right.exp_safe and op is cst.Multiply and ln is not None and 0 < ln <= 1):
            return replace(base, exp_safe=True)  # `x.clamp(max=50) / 2`: at most 25
        negated = type(rnode) is cst.UnaryOperation and type(rnode.operator) is cst.Minus
        if left.max_shifted and not negated and (op is cst.Divide and not (rn is not None and rn <= 0) or op is cst.Multiply and (
                (rn is not None and rn > 0) or (rn is None and not right.tensor and not right.params))):
            # `(s - s.max()) / temperature` (kornia's ALIKED soft-argmax), `0.5 * ...`: still at
            # most 0 for a positive scale, as a temperature is; only a negative number flips it
            return replace(base, max_shifted=True)
        if op is cst.Multiply and right.max_shifted and ln is not None and ln > 0:
            return replace(base, max_shifted=True)
        if op is cst.Power:
            if left.one_plus_exp and rn is not None and rn > 0:
                # `(exp(z) + 1) ** 2`, the denominator of the sigmoid's derivative written out
                # (snntorch's surrogate gradient, jeshraghian/snntorch#433): inf once exp
                # overflows, so `exp(z) / (exp(z) + 1) ** 2` is inf / inf = NaN (measured at z = 100)
                return replace(base, one_plus_exp=True, const=left.const)
            if rn == 2:
                return replace(base, sq=True, tensor=left.tensor, dense=left.dense, pairs=left.pairs, unit=square_unit(left))
            return base
        if op is cst.MatrixMultiply:
            if (made := cosines(left, right)) is not None:
                return made  # `F.normalize(x) @ F.normalize(W).t()`
            if strictly_positive(left) and strictly_positive(right):
                return replace(base, tensor=True, dense=True, nonneg=True)  # `probs.T @ probs`
            # (of a learned output, dense: its diagonal is the rows' sums of squares of one)
            if node is not None and self_gram(node, self.x.code):
                return replace(base, gram=True, dense=left.dense or right.dense)
            return squares_product(self.x, left, right) or base
        if op is cst.Multiply:
            if (ln is not None and right.gram) or (rn is not None and left.gram):
                return replace(base, gram=True, dense=left.dense or right.dense)  # `2.0 * dot`
            for e, (w, wn) in ((left, (right, rn)), (right, (left, ln))):
                if (e.exp or e.weighted) and (w.exp or w.weighted or w.prob in ("softmax", "sigmoid") or w.nonneg
                                              or (wn is not None and wn > 0)):
                    # `exp(log_gauss) * mixing`: a weighted exp overflows (and underflows) as the
                    # exp does, and a sum of them under a log is a log-sum-exp written out; never
                    # 0 only when the weight is not (a ReLU output can be)
                    positive = (w.exp or w.prob in ("softmax", "sigmoid") or (wn is not None and wn > 0)) and e.dense
                    return replace(base, weighted=True, dense=positive)
                if e.exp and wn is None and not w.const and not w.nograd:
                    # `torch.exp(scores) * mask`: a masked softmax or log-sum-exp written out
                    # overflows as the exp does, whatever the mask (it may also be 0: not dense)
                    return replace(base, weighted=True, dense=False)
            if lnode is not None and rnode is not None and self.x.code(lnode) == self.x.code(rnode):
                return replace(base, sq=True, dense=left.dense, pairs=left.pairs, unit=square_unit(left))
            if (made := unit_terms(left, right)) is not None:
                return made  # `F.normalize(a) * F.normalize(b)`: a cosine once summed over their dimension
            for factor, other in ((lnode, right), (rnode, left)):
                if (other.sq or other.sumsq) and type(factor) is cst.UnaryOperation and \
                        type(factor.operator) is cst.Minus and self.num(factor.expression) is None:
                    # `-self.preterm * (x - c) ** 2` (monai's Parzen window): a scale negated by hand
                    # is a positive one (1 / (2 sigma**2)), so the exponent is a Gaussian's, <= 0
                    return replace(base, nonpos=True)
            for lit, other in ((ln, right), (rn, left)):
                if lit is not None and lit < 0 and _never_below_zero(other):
                    # -0.5 * x**2 (a Gaussian's exponent), -2 * |a| * |b| (a mixture's
                    # cross term, normflows' two-mode priors)
                    return replace(base, nonpos=True)
                if lit is not None and lit > 0 and other.nonpos:
                    return replace(base, nonpos=True)
                if lit is not None and lit > 0 and other.sq:
                    return replace(base, sq=True, dense=other.dense)  # 2 * s**2 is a square too
            if (left.nonpos and _never_below_zero(right)) or (right.nonpos and _never_below_zero(left)):
                return replace(base, nonpos=True)  # `-a * b.abs()`: the exp of it cannot overflow
            # the signs of a product: never below 0 when no factor is (`|a| * |b|`, `2 * |a|`),
            # so its negation, as `-x**2`, is at most 0
            signless = (_never_below_zero(left) or (ln is not None and ln >= 0)) and \
                (_never_below_zero(right) or (rn is not None and rn >= 0))
            # a value in [-1, 1] times a number of size below 1 (`cos * (1 - 1e-6)`, either side)
            # keeps a margin from ±1; times ±1 it stays what it was
            lit, other = (rn, left) if rn is not None else (ln, right)
            if lit is None or other.unit is None or abs(lit) > 1:
                return replace(base, unit=None, nonneg=signless, norms=bool(left.norm and right.norm))
            return replace(base, unit="strict" if abs(lit) < 1 else other.unit, nonneg=signless)
        if op is cst.Divide and ((got := ratio_of(left, right))["ratio"] or got["ratio_den"]):
            return replace(base, tensor=True, **got)
        if op is cst.Divide and right.norms:
            # `(a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))`, a cosine written out: in
            # [-1, 1] up to rounding (torchani's angles take `acos(0.95 * cos)`: a margin)
            return replace(base, unit="bounded")
        if op is cst.Divide and left.unit is not None and rn is not None and abs(rn) >= 1:
            # `cos / (1 + 1e-6)`: a margin, as a product is
            return replace(base, unit="strict" if abs(rn) > 1 else left.unit)
        if op is cst.Divide and left.nonpos and (right.sq or right.sumsq or (rn is not None and rn > 0)):
            return replace(base, nonpos=True)  # -x**2 / (2 * s**2)
        if op is cst.Divide and _never_below_zero(left) and (right.sq or right.sumsq or (rn is not None and rn > 0)):
            return replace(base, nonneg=True)  # |a| / 0.09, |a| / s**2
        if op is cst.Divide and (left.exp or left.weighted) and right.sum_exp:
            # a hand-written softmax: what it feeds (cross-entropy, log) sees probabilities
            return replace(base, prob="softmax", dense=True)
        if op in (cst.Add, cst.Subtract) and node is not None:
            pairs = self._pairs(op, lnode, rnode, node)
            if pairs is not None:
                return replace(base, **pairs)
        if op is cst.Subtract:
            if ln is not None and 1 <= ln < 1 + SINE_EPS and right.sq and right.unit in ("bounded", "loose"):
                # `1 - cos ** 2` of a cosine (or a value clamped to [-1, 1]): exactly 0 where it
                # is ±1, as a sum of squares is at 0 (ArcFace's sine, ronghuaiyang/arcface-pytorch#91);
                # `1.0 + 1e-12 - cos ** 2` too (an eps too small: in float32 1.0 + 1e-12 is 1.0)
                return replace(base, sine=True, thin_eps=ln > 1)
            if ln == 1 and right.prob == "sigmoid":
                # 1 - clamp(p, eps, 1 - eps) >= eps: as safe to log as the clamped p itself
                return replace(base, prob="one_minus_sigmoid", prob_node=right.prob_node, shifted=right.capped)
            if right.is_max or (rnode is not None and _mentions_max(rnode)):
                return replace(base, max_shifted=True)
            return base
        if op is cst.Add:
            # `x + eps` with eps known to be 0 (`eps = 0.0`, a module's `EPS = 0`) is x: no guard
            if rn == 0:
                return left
            if ln == 0:
                return right
            if (left.sq or left.sumsq) and (right.sq or right.sumsq):
                if left.const or right.const:
                    # a positive constant squared inside the root is the eps (sqrt(d**2 + 1**2));
                    # never negative, so its negation's exp cannot overflow (piq's Gaussian
                    # window over constant coordinates, `exp(-(w[None] + w[:, None]) / (2 * s**2))`)
                    return replace(base, clamped=True, nonneg=True)
                return replace(base, sumsq=True, dense=left.dense and right.dense)
            sine, eps = (left, rn) if left.sine else (right, ln) if right.sine else (None, None)
            if sine is not None and not sine.floored and eps is not None and 0 < eps < SINE_EPS:
                # `1 - cos ** 2 + 1e-12`: a float32 cosine of parallel vectors rounds a few ulps
                # above 1 (measured: up to 1 + 2.4e-7), so 1 - cos² reaches -4.8e-7 and so small an
                # eps leaves the root NaN (measured: NaN for eps 1e-12 and 1e-7, finite at 1e-6);
                # not once clamped at 0 (`.clamp(0, 1) + 1e-12`)
                return replace(base, sine=True, thin_eps=True)
            if left.sq or left.sumsq or right.sq or right.sumsq:
                return replace(base, clamped=True)
            if (ln == 1 and right.exp) or (rn == 1 and left.exp):
                exp_v = right if ln == 1 else left
                return replace(base, one_plus_exp=True, const=exp_v.const)
            if left.prob or right.prob:
                p = left if left.prob else right
                return replace(base, prob=p.prob, shifted=True)
            # two learned outputs added cancel exactly with probability 0, and so does a learned
            # output plus what another module made (x_clip's `t + self.prompts(t, img)`); a
            # learned output plus its own input is not dense (a zero-initialised adapter, LoRA's B,
            # gives back the input, a padding row stays 0), nor plus a rescaling of itself
            # (`h + h * (mask - 1)`); a difference of two (proj(a) - proj(b)) is 0 whenever a == b
            dense = (left.dense and right.dense) or (left.dense and bool(right.through - left.through)) or (
                right.dense and bool(left.through - right.through))
            return replace(base, clamped=True, dense=dense)
        return base

    def _pairs(self, op, lnode, rnode, node) -> dict | None:
        """What a sum or difference of pairwise distances of one tensor is (numerics_pairs): its
        differences with itself (`e[:, None] - e[None]`: zero on the diagonal), or the squared
        distances by expansion (`sq[:, None] + sq[None] - 2 * e @ e.t()` with `sq` a sum of
        squares: a sum of squares that is zero there); None for anything else."""
        code = self.x.code
        if op is cst.Subtract and lnode is not None and rnode is not None and self_difference(lnode, rnode, code):
            return {"pairs": True}
        rows = gram_expansion(node, code, lambda term: self.ev(term).gram)
        if rows is not None and self.ev(rows).sumsq:
            return {"pairs": True, "sumsq": True, "sq": False, "clamped": False, "dense": False}
        return None

    # -- calls ---------------------------------------------------------------------------------


# The smallest eps added to ArcFace's `1 - cos ** 2` that keeps its root finite in float32 (above
# the -4.8e-7 that a cosine rounded to 1 + 2.4e-7 gives).
SINE_EPS = 1e-6


def _entry(name: str, key: str) -> str:
    """The walk's name for the entry `key` of the dict a local `name` holds (`outputs["hm"]`),
    once the function stores into it."""
    return f"{name}[{key!r}]"


def _string_index(node: cst.Subscript) -> str | None:
    """The key of `d["cls"]`: one index that is a plain string literal; else None."""
    if len(node.slice) != 1 or type(node.slice[0].slice) is not cst.Index:
        return None
    key = node.slice[0].slice.value
    if type(key) is not cst.SimpleString:
        return None
    value = key.evaluated_value
    return value if type(value) is str else None


# Names of the objects that hold a run's settings (`args.beta`, `self.configs.decouple_beta`).
_SETTINGS_HOLDERS = frozenset("args opt opts cfg config configs conf hparams hp hps params options settings "
                              "flags".split())


def _never_below_zero(v: V) -> bool:
    """A square, a sum of squares or a value never negative (`|x|`, `relu(x)`; not a module,
    whose `nonneg` says what its call gives)."""
    return v.sq or v.sumsq or (v.nonneg and not v.module)


def _weight(v: V, node) -> bool:
    """A factor that weighs a loss term: a number, a setting read from a settings object
    (`args.beta`, `self.configs.decouple_beta`, `self.hparams.lam`) of which nothing else is known,
    or an attribute set to a literal in `__init__` (`self.alpha = 0.1`). Not a tensor, a parameter
    or any other attribute: `rollout.log_probs * adv.detach()` (policy gradient) and
    `agent.log_alpha * (logp + target).detach()` (SAC) are stop-gradients, not weighted terms."""
    if number_of(v) is not None:
        return True
    if type(node) is not cst.Attribute:
        return False
    if v is not UNKNOWN:
        return v.const and not v.tensor and not v.computed
    parts = (dotted(node) or "").split(".")
    holders = parts[1:-1] if parts[:1] == ["self"] else parts[:-1]
    return any(p.lower() in _SETTINGS_HOLDERS for p in holders)


_AT_MOST = (cst.LessThan, cst.LessThanEqual)
_ABOVE = (cst.GreaterThan, cst.GreaterThanEqual)


def _mask_of(node: cst.Comparison) -> tuple | None:
    """`x <= 18`, `x > c`, `18 >= x` of a local name: (x, "le" or "gt", the number), the mask a
    fill or a where can bound x by (V.mask_of); None for anything else (a chain, `==`, an
    attribute, a comparison of two tensors, a bound that is no number written). `<` and `<=` bound
    alike."""
    if len(node.comparisons) != 1:
        return None
    op = type(node.comparisons[0].operator)
    if op not in _AT_MOST and op not in _ABOVE:
        return None
    right = node.comparisons[0].comparator
    for named, number, at_most in ((node.left, right, op in _AT_MOST), (right, node.left, op in _ABOVE)):
        bound = _number_written(number)
        if type(named) is cst.Name and bound is not None:
            return named.value, "le" if at_most else "gt", bound
    return None



_TEMPERATURE_NAMES = ("temp", "tau")


def _temperature(node, v: V) -> bool:
    """A divisor named as a temperature (`self.ssl_temp`, `args.tau`, `temperature`: the last part
    holds "temp" or "tau", or is `t`/`T`) that holds no number known here and is no tensor, learned
    parameter or computed value: a setting (a config value, an attribute set from one, a
    function's parameter). A learned scale (`self.logit_scale.exp()`, CLIP's, which reaches 100)
    is a tensor of parameters: not one."""
    if number_of(v) is not None or v.tensor or v.params or v.computed or v.module:
        return False
    if type(node) is cst.Attribute:
        name = node.attr.value
    elif type(node) is cst.Name:
        name = node.value
    else:
        return False
    low = name.lower()
    return name in ("t", "T") or any(part in low for part in _TEMPERATURE_NAMES)
