"""The numerics evaluator: expressions to tensors with properties (`engine/tensors.V`).

Names, attributes, operators, and calls (torch functions, tensor methods, module instances of the
file or of other files, the file's own functions) are evaluated to what the numerics rules need:
probabilities, logits, sums of squares, parameters, cuts from the graph. Calls that may be hazards
are handed to the site checks (`numerics_sites.SiteChecks`) as they are met.
"""

from __future__ import annotations

import sys

import libcst as cst

from gradlint.facts.numerics import Call
from gradlint.source.budget import MAX_EXPR_DEPTH
from gradlint.source.engine.calls import arg as _arg
from gradlint.source.engine.calls import split as _args
from gradlint.source.engine.fold import constant, number
from gradlint.source.engine.tensors import V, UNKNOWN, _TRAINABLE, replace, _combine, merge, _item, knows_nothing
from gradlint.source.engine.walk import comprehensions as _comprehensions
from gradlint.source.engine.walk import suite
from gradlint.source.names import dotted


F = "torch.nn.functional."
SOFTMAX = frozenset({"torch.softmax", F + "softmax", "torch.special.softmax", "torch.Tensor.softmax"})
SIGMOID = frozenset({"torch.sigmoid", F + "sigmoid", "torch.special.expit", "torch.Tensor.sigmoid"})
LOG_SOFTMAX = frozenset({"torch.log_softmax", F + "log_softmax", "torch.special.log_softmax"})
LOGSIGMOID = frozenset({F + "logsigmoid"})
LOSS_FUNCTIONS = {
    F + "cross_entropy": "ce",
    F + "binary_cross_entropy": "bce",
    F + "binary_cross_entropy_with_logits": "bce_logits",
}
LOSS_MODULES = {
    "torch.nn.CrossEntropyLoss": "ce",
    "torch.nn.BCELoss": "bce",
    "torch.nn.BCEWithLogitsLoss": "bce_logits",
}
PROB_MODULES = {"torch.nn.Softmax": "softmax", "torch.nn.Sigmoid": "sigmoid",
                "torch.nn.LogSoftmax": "log_softmax", "torch.nn.LogSigmoid": "logsigmoid"}
FACTORIES = frozenset("torch." + n for n in (
    "zeros ones empty full rand randn randint randperm arange linspace logspace eye zeros_like "
    "ones_like empty_like full_like rand_like randn_like randint_like normal bernoulli multinomial "
    "tril_indices triu_indices").split())
TENSOR_FROM_DATA = frozenset({"torch.tensor", "torch.as_tensor", "torch.from_numpy", "torch.Tensor",
                              "torch.FloatTensor", "torch.DoubleTensor", "torch.LongTensor",
                              "torch.cuda.FloatTensor", "torch.scalar_tensor"})
VARIABLE = frozenset({"torch.autograd.Variable", "torch.autograd.variable.Variable"})
GRADCHECK = frozenset({"torch.autograd.gradcheck", "torch.autograd.gradgradcheck",
                       "torch.autograd.gradcheck.gradcheck", "torch.autograd.gradcheck.gradgradcheck",
                       "torch.testing._internal.common_utils.gradcheck"})
# Methods that move, reshape or re-type a tensor: what a value is survives them.
KEEP = frozenset(
    "view view_as reshape reshape_as flatten squeeze unsqueeze permute transpose contiguous float "
    "double half bfloat16 to type type_as clone cuda cpu t expand expand_as gather index_select "
    "masked_select narrow select movedim swapaxes flip roll repeat tile squeeze_ unsqueeze_".split())
CUTTING_METHODS = {"item": ".item()", "tolist": ".tolist()", "numpy": ".numpy()",
                   "argmax": "argmax", "argmin": "argmin", "round": "round", "detach": ".detach()",
                   "detach_": ".detach_()", "long": "an integer cast", "int": "an integer cast",
                   "bool": "a bool cast"}
CUTTING_FUNCTIONS = {"torch.argmax": "argmax", "torch.argmin": "argmin", "torch.round": "round"}
_BACKWARD_HOSTS = frozenset({"accelerator", "fabric", "engine", "model_engine", "deepspeed", "strategy",
                             "trainer", "self", "amp", "booster"})


def _shape(v: V) -> str:
    """An argument as a caller in another file needs it (Call.args): '' when nothing useful."""
    if v.crit:
        return "crit:" + v.crit
    if len(v.inst) == 1 and not v.crit:
        return "inst:" + next(iter(v.inst))
    return ""


def _function_value(names: frozenset[str]) -> V | None:
    """A torch loss function named as a value (`self.loss_func = F.binary_cross_entropy_with_logits`)
    is a criterion: calling it is the loss."""
    for qn, kind in LOSS_FUNCTIONS.items():
        if qn in names:
            return V(crit=kind)
    return None


def _int_index(node: cst.Subscript) -> int | None:
    """The integer of `x[1]` / `x[-1]` as the engine folds it; None for slices, several indices
    and anything that is no integer known here."""
    if len(node.slice) != 1 or type(node.slice[0].slice) is not cst.Index:
        return None
    v = constant(node.slice[0].slice.value)
    return v if type(v) is int else None


def _short_returns(fn: cst.FunctionDef) -> list[cst.BaseExpression] | None:
    """The returned expressions of a method of at most 5 statements whose every return (at its top
    level or in an if/else there) gives a call or an attribute; None for any other method."""
    body = suite(fn.body)
    if len(body) > 5:
        return None
    out: list[cst.BaseExpression] = []
    stack: list[cst.CSTNode] = list(body)
    while stack:
        n = stack.pop()
        if isinstance(n, cst.If):
            stack.extend(suite(n.body))
            if n.orelse is not None:
                stack.extend([n.orelse] if isinstance(n.orelse, cst.If) else suite(n.orelse.body))
        elif isinstance(n, cst.SimpleStatementLine | cst.SimpleStatementSuite):
            for small in n.body:
                if isinstance(small, cst.Return):
                    if not isinstance(small.value, cst.Call | cst.Attribute):
                        return None
                    out.append(small.value)
    return out or None


# Moving or re-typing a module or a tensor keeps everything known about it.
_EXPRESSION_TYPES: dict[type, bool] = {}
_STDLIB = frozenset(sys.stdlib_module_names)


def _is_expression(node: cst.CSTNode) -> bool:
    """isinstance(node, cst.BaseExpression) without the ABC machinery's cost, once per class."""
    cls = type(node)
    known = _EXPRESSION_TYPES.get(cls)
    if known is None:
        known = _EXPRESSION_TYPES[cls] = isinstance(node, cst.BaseExpression)
    return known


_MOVE = frozenset("to cuda cpu float double half bfloat16 train eval type".split())
_ARITH = frozenset("add sub mul div neg mean sum add_ sub_ mul_ div_ abs pow float double half to view reshape "
                   "squeeze unsqueeze".split())
# How a term of a loss sum is cut: the value is kept, its gradient is not.
_TERM_CUTS = frozenset({".item()", ".detach()", ".tolist()", "float()"}) | frozenset(
    f"{n}(...)" for n in ("tensor", "as_tensor", "Tensor", "FloatTensor", "scalar_tensor"))


def _short(names: frozenset[str]) -> str:
    return sorted(names)[0].rsplit(".", 1)[-1]


def _short_of(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _mentions_max(node: cst.BaseExpression) -> bool:
    """Whether a subtracted expression names a max (x.max(...), torch.amax, x_max)."""
    stack: list[cst.CSTNode] = [node]
    seen = 0
    while stack and seen < 64:
        n = stack.pop()
        seen += 1
        if isinstance(n, cst.Name):
            if "max" in n.value.lower():
                return True
        elif isinstance(n, cst.Attribute):
            if "max" in n.attr.value.lower():
                return True
            stack.append(n.value)
        elif isinstance(n, cst.Call):
            stack.append(n.func)
        elif isinstance(n, cst.Subscript):
            stack.append(n.value)
    return False


class TensorEval:
    """Expression evaluation of FunctionWalk (a mixin: the walk's environment, memo and file extractor)."""

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
            val = replace(val, cut="torch.no_grad()", cut_span=self.x.where(node))
        self.memo[key] = val
        return val

    def _ev(self, node: cst.BaseExpression) -> V:
        kind = type(node)  # libcst's node classes are ABCs: isinstance costs a cache lookup per miss
        if kind is cst.Name:
            if node.value in ("True", "False", "None"):
                return V(const=True)
            if node.value in self.x.ref_names and id(node) not in self.x.callees:
                self.x.references.add(node.value)
            if node.value in self.env:
                return self.env[node.value]
            if node.value in self.globals:
                return self.globals[node.value]
            if node.value in self.x.local_classes:
                if id(node) not in self.x.callees:
                    self.x.class_refs.add(node.value)
                return UNKNOWN
            if node.value in self.x.imports.names:
                fn = _function_value(self.x.q(node))
                if fn is not None:
                    return fn
            if node.value.isupper() and len(node.value) > 1:
                return V(const=True)
            return UNKNOWN
        if kind in (cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString,
                    cst.ConcatenatedString, cst.FormattedString):
            return V(const=True)
        if kind is cst.Attribute:
            return self.attribute(node)
        if kind is cst.Call:
            return self.call(node)
        if kind is cst.BinaryOperation:
            return self.binop(node)
        if kind is cst.UnaryOperation:
            inner = self.ev(node.expression)
            if isinstance(node.operator, cst.Not):
                return V(const=inner.const, cut=inner.cut or "comparison", computed=True)
            negated_square = isinstance(node.operator, cst.Minus) and (inner.sq or inner.sumsq)
            return replace(_combine([inner]), tensor=inner.tensor, exp=False,
                           prob=None, nonpos=negated_square)
        if kind is cst.Subscript:
            base = self.ev(node.value)
            for el in node.slice:
                self._ev_children(el)
            if isinstance(node.value, cst.Attribute) and node.value.attr.value == "shape":
                return V(const=True)
            if base.elems is not None or (base.out and base.out_elem is None):
                i = _int_index(node)
                item = _item(base, i) if i is not None else None
                if item is not None and base.elems is not None:
                    return item
                base = item or base
            return replace(base, sq=False, sumsq=False, crit=None, callret=None, module=False, inst=frozenset(),
                           norm=base.norm, exp=base.exp, elems=None)
        if kind is cst.Comparison:
            vals = [self.ev(node.left)] + [self.ev(c.comparator) for c in node.comparisons]
            return V(const=all(v.const for v in vals), cut="comparison", computed=True)
        if kind is cst.BooleanOperation:
            return merge(self.ev(node.left), self.ev(node.right))
        if kind is cst.IfExp:
            self.ev(node.test)
            return merge(self.ev(node.body), self.ev(node.orelse))
        if kind in (cst.Tuple, cst.List, cst.Set):
            vals = [self.ev(e.value) for e in node.elements]
            # elements kept only where one is a probability, a model's output or a criterion (what
            # unpacking it can tell a rule), and the length is known
            if vals and type(node) is not cst.Set and any(
                    v.prob or v.out or v.crit or v.callret or v.elems is not None for v in vals) and not any(
                    type(e) is cst.StarredElement for e in node.elements):
                return replace(_combine(vals), elems=tuple(vals))
            return _combine(vals) if vals else V(const=True)
        if kind in (cst.ListComp, cst.GeneratorExp, cst.SetComp):
            saved = dict(self.env)
            for comp in _comprehensions(node.for_in):
                self.ev(comp.iter)
                self.bind(comp.target, UNKNOWN)
                for cond in comp.ifs:
                    self.ev(cond.test)
            val = self.ev(node.elt)
            self.env = saved
            return _combine([val])
        if kind is cst.DictComp:
            saved = dict(self.env)
            for comp in _comprehensions(node.for_in):
                self.ev(comp.iter)
                self.bind(comp.target, UNKNOWN)
            self.ev(node.key)
            self.ev(node.value)
            self.env = saved
            return UNKNOWN
        if kind is cst.Lambda:
            saved = dict(self.env)
            for p in node.params.params:
                self.env[p.name.value] = UNKNOWN
            self.ev(node.body)
            self.env = saved
            return UNKNOWN
        if kind is cst.NamedExpr:
            val = self.ev(node.value)
            self.bind(node.target, val)
            return val
        self._ev_children(node)
        return UNKNOWN

    def _ev_children(self, node: cst.CSTNode) -> None:
        for child in node.children:
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
            return self.env[key]
        attr = node.attr.value
        names = self.x.q(node)
        if names:
            return _function_value(names) or UNKNOWN
        base = self.ev(node.value)
        if base.inst and id(node) not in self.x.callees:
            # `step = trainer.train_step`: a method of a project class read as a value may be called
            # from anywhere, so its callers are not all known (facts.numerics.bind_parameters)
            self.x.references.add(attr)
        if attr == "data":
            cut_params = base.param_cuts
            if key and key.startswith("self.") and key.count(".") == 2 and self.cls and key.split(".")[1] in self.cls.params:
                cut_params = cut_params | {(self.x.where(node), key)}
            return V(cut=".data", cut_span=self.x.where(node), tensor=True, params=base.params,
                     param_cuts=cut_params, leaf=True)
        if attr == "indices":
            # topk/sort/max indices: integers, never differentiable
            return V(cut="indices", cut_span=self.x.where(node), tensor=True, computed=True)
        if attr in ("shape", "ndim", "dtype", "device", "is_cuda", "requires_grad", "training"):
            return V(const=True)
        if attr in ("T", "mT", "H", "real", "values"):
            return base
        if isinstance(node.value, cst.Name) and node.value.value == "self":
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
            if number(node.left) == 1 and right.one_plus_exp and not right.nograd:
                self.add_305(node, "1 / (1 + exp(-x))", "sigmoid")
            if left.exp and right.sum_exp and not left.nograd:
                # measured: exp(z) / exp(z).sum() at z = [100, 1] is [nan, 0] with a NaN gradient
                self.add_305(node, "exp(z) / exp(z).sum()", "softmax")
        if op is cst.Power:
            exponent = number(node.right)
            if exponent == 0.5:
                self.check_sqrt(node, node.left, left, "** 0.5", need_tensor=True)
        return self.binop_value(op, left, right, node.left, node.right, node)

    def binop_value(self, op, left: V, right: V, lnode, rnode, node) -> V:
        res = self._binop_value(op, left, right, lnode, rnode, node)
        if op in (cst.Add, cst.Subtract):
            terms = left.cut_terms | right.cut_terms
            for side, other in ((left, right), (right, left)):
                if side.cut in _TERM_CUTS and side.cut_span is not None and not side.const \
                        and not other.nograd and (other.tensor or other.computed):
                    terms |= {(side.cut_span, side.cut)}
            if terms and not res.nograd:
                res = replace(res, cut_terms=terms)
        elif op is cst.Multiply and (number(lnode) is not None or number(rnode) is not None):
            # `0.1 * aux_loss` keeps what the term is made of
            res = replace(res, cut_terms=left.cut_terms | right.cut_terms)
        return res

    def _binop_value(self, op, left: V, right: V, lnode, rnode, node) -> V:
        base = _combine([left, right])
        ln = number(lnode) if lnode is not None else None
        rn = number(rnode) if rnode is not None else None
        if op is cst.Power:
            if rn == 2:
                return replace(base, sq=True, tensor=left.tensor, dense=left.dense)
            return base
        if op is cst.Multiply:
            if lnode is not None and rnode is not None and self.x.code(lnode) == self.x.code(rnode):
                return replace(base, sq=True, dense=left.dense)
            for lit, other in ((ln, right), (rn, left)):
                if lit is not None and lit < 0 and (other.sq or other.sumsq):
                    return replace(base, nonpos=True)  # -0.5 * x**2 (a Gaussian's exponent)
                if lit is not None and lit > 0 and other.nonpos:
                    return replace(base, nonpos=True)
                if lit is not None and lit > 0 and other.sq:
                    return replace(base, sq=True, dense=other.dense)  # 2 * s**2 is a square too
            if rn is not None and 0 < rn < 1 and left.unit in (None, "loose"):
                return replace(base, unit="strict" if left.unit else None)
            return replace(base, unit=left.unit if rn is not None and abs(rn) <= 1 else None)
        if op is cst.Divide and left.nonpos and (right.sq or right.sumsq or (rn is not None and rn > 0)):
            return replace(base, nonpos=True)  # -x**2 / (2 * s**2)
        if op is cst.Divide and left.exp and right.sum_exp:
            # a hand-written softmax: what it feeds (cross-entropy, log) sees probabilities
            return replace(base, prob="softmax", dense=True)
        if op is cst.Subtract:
            if ln == 1 and right.prob == "sigmoid":
                return replace(base, prob="one_minus_sigmoid", prob_node=right.prob_node)
            if right.is_max or (rnode is not None and _mentions_max(rnode)):
                return replace(base, max_shifted=True)
            return base
        if op is cst.Add:
            if (left.sq or left.sumsq) and (right.sq or right.sumsq):
                if left.const or right.const:
                    # a positive constant squared inside the root is the eps (sqrt(d**2 + 1**2))
                    return replace(base, clamped=True)
                return replace(base, sumsq=True, dense=left.dense and right.dense)
            if left.sq or left.sumsq or right.sq or right.sumsq:
                return replace(base, clamped=True)
            if (ln == 1 and right.exp) or (rn == 1 and left.exp):
                exp_v = right if ln == 1 else left
                return replace(base, one_plus_exp=True, const=exp_v.const)
            if left.prob or right.prob:
                p = left if left.prob else right
                return replace(base, prob=p.prob, shifted=True)
            # two learned outputs added (x + self.prompts(x)) cancel exactly with probability 0;
            # a difference of two (proj(a) - proj(b)) is 0 whenever a == b, so it is not dense
            return replace(base, clamped=True, dense=left.dense and right.dense)
        return base

    # -- calls ---------------------------------------------------------------------------------
    def call(self, node: cst.Call) -> V:
        func = node.func
        self.x.calling[id(func)] = node
        self.record_call(func)
        self._record_passed(node)
        names = self.x.q(func)
        if names:
            return self.qualified_call(node, names)
        if type(func) is cst.Attribute:
            recv = func.value
            meth = func.attr.value
            if meth in ("manual_backward", "backward") and type(recv) is cst.Name and recv.value == "self":
                return self.method_call(node, recv, meth)
            if type(recv) is cst.Name and recv.value in ("self", "cls") or (
                    type(recv) is cst.Call and type(recv.func) is cst.Name and recv.func.value == "super"):
                callee = self.ev(func)
                return self.instance_call(node, callee, owner=dotted(func))
            key = dotted(func)
            if key and key in self.env:
                return self.instance_call(node, self.env[key], owner=key)
            if type(recv) is cst.Name and recv.value in self.x.local_classes and meth == "apply":
                self._args_ev(node)
                return V(computed=True, tensor=True)
            return self.method_call(node, recv, meth)
        if type(func) is cst.Name:
            fname = func.value
            if fname in self.env or fname in self.globals:
                return self.instance_call(node, self.env.get(fname, self.globals.get(fname, UNKNOWN)), owner=fname)
            if fname in self.x.local_classes:
                self._args_ev(node)
                if fname in self.x.autograd_classes:
                    return UNKNOWN
                return V(inst=frozenset({fname}), leaf=True)
            return self.builtin_call(node, fname)
        callee = self.ev(func)
        return self.instance_call(node, callee, owner=None)

    def record_call(self, func: cst.BaseExpression) -> None:
        """An edge of the call graph (callee as written), and `func` is not a read of a value."""
        self.x.callees.add(id(func))
        text = dotted(func)
        if text is None and type(func) is cst.Attribute and type(func.value) is cst.Call and isinstance(
                func.value.func, cst.Name) and func.value.func.value == "super" and not func.value.args:
            text = "super()." + func.attr.value
        if text is not None:
            self.calls.setdefault(Call(text, nograd=self.nograd > 0, args=self._shapes(func)))

    def _shapes(self, func: cst.BaseExpression) -> tuple[tuple[str, str], ...]:
        """The models and criteria a call passes (Call.args), for callers of other files."""
        node = self.x.calling.get(id(func))
        if node is None or not node.args or type(func) is cst.Attribute and type(func.value) is not cst.Name:
            return ()
        names = self.x.q(func)
        if names and all(n.startswith(("torch.", "numpy.")) or n == "torch" or n.partition(".")[0] in _STDLIB
                         for n in names):
            return ()
        if not names and not self._may_call_project(func):
            return ()
        out = []
        position = 0
        unknown = []
        for a in node.args:
            if a.star:
                return (("*", ""),)
            key = a.keyword.value if a.keyword is not None else str(position)
            position += a.keyword is None
            shape = _shape(self.ev(a.value))
            if shape:
                out.append((key, shape))
            elif a.keyword is not None:
                unknown.append(key)
        # what else it passes, so that a parameter left to its default is told apart
        if position:
            out.append(("#", str(position)))
        if unknown:
            out.append(("=", ",".join(unknown)))
        if type(func) is cst.Attribute and not names and func.value.value not in ("self", "cls"):
            # `trainer.train_step(...)`: the class of the instance, for callers of its method
            out.append(("@", next(iter((self.env.get(func.value.value) or self.globals[func.value.value]).inst))))
        return tuple(out)

    def _args_ev(self, node: cst.Call) -> list[V]:
        return [self.ev(a.value) for a in node.args]

    def instance_call(self, node: cst.Call, callee: V, owner: str | None) -> V:
        vals = self._args_ev(node)
        ref = self.x.open_param(callee) if owner is not None else None
        if ref is not None:
            inp = _arg(node, 0, "input")
            if inp is not None:
                self.param_loss(node, None, ref, inp, self.ev(inp))
            out = V(computed=True, tensor=_combine(vals).tensor)
            self.param_outputs[id(out)] = (out, ref)
            return out
        if callee.crit:
            inp = _arg(node, 0, "input")
            if inp is not None:
                # a function-valued criterion (no constructor call): no fix renames it
                self.check_loss(node, callee.crit, inp, self.ev(inp), crit_node=callee.crit_node, owner=owner,
                                fixable=callee.crit_node is not None, default=self.x.default_param(callee))
            first = self.ev(inp) if inp is not None else UNKNOWN
            return V(computed=True, tensor=True, cut=first.cut, cut_span=first.cut_span, const=first.const)
        if callee.callret:
            first = vals[0] if vals else UNKNOWN
            return V(prob=callee.callret, computed=True, tensor=True, params=first.params,
                     out=first.out, cut=first.cut, cut_span=first.cut_span)
        if callee.inst:
            return V(out=callee.inst, computed=True, tensor=True, params=True, dense=True)
        if owner in ("self", "self.forward") and self.cls is not None:
            # `self.forward(x)` is `self(x)` (hooks aside)
            return V(out=frozenset({self.cls.name}), computed=True, tensor=True, params=True, dense=True)
        if owner and owner.startswith("self.") and owner.count(".") == 1 and (
                callee.module or callee.params or self.cls is None or owner[5:] not in self.cls.methods):
            # a submodule (or an attribute set outside __init__): its parameters carry gradient
            # whatever its input
            carries = callee.module or callee.params or bool(callee.inst)
            return V(computed=True, tensor=True, params=carries, dense=carries)
        if callee.module:
            return V(computed=True, tensor=True, params=True, dense=True)
        if owner and owner.startswith("self.") and owner.count(".") == 1 and self.cls is not None:
            made = self.method_returns(owner[5:])
            if made is not None and (made.crit or made.callret):
                return made  # `crit = self.get_loss()`: a method that returns a criterion
        res = _combine(vals)
        if knows_nothing(callee):
            # An unknown callable (a model passed as an argument, a factory's result): what it
            # returns is unknown, never "cut" because its inputs were made by torch.tensor().
            return V(computed=True, tensor=res.tensor)
        return replace(res, rg=frozenset(), tensor=res.tensor)

    def method_returns(self, meth: str) -> V | None:
        """What a short method of this class returns (`return nn.BCELoss()`, `return self.crit`):
        its returned calls and attributes evaluated once, merged, with its parameters unknown and
        no sites recorded; None for any other method."""
        cls = self.cls
        if meth in cls.returned:
            return cls.returned[meth]
        fn = cls.method_nodes.get(meth)
        exprs = _short_returns(fn) if fn is not None else None
        if not exprs:
            cls.returned[meth] = None
            return None
        cls.returned[meth] = UNKNOWN  # a method that calls itself
        walk = type(self)(self.x, meth, cls, quiet=True)  # a FunctionWalk (this is its mixin)
        ps = fn.params
        for p in (*ps.posonly_params, *ps.params, *ps.kwonly_params, ps.star_arg, ps.star_kwarg):
            if isinstance(p, cst.Param):
                walk.env[p.name.value] = UNKNOWN
        self.x.muted += 1
        try:
            vals = [walk.ev(e) for e in exprs]
        finally:
            self.x.muted -= 1
        made = vals[0]
        for v in vals[1:]:
            made = merge(made, v)
        cls.returned[meth] = made
        return made

    def builtin_call(self, node: cst.Call, fname: str) -> V:
        vals = self._args_ev(node)
        pos, kw = _args(node)
        if fname in ("float", "int", "bool") and vals:
            v = vals[0]
            if v.nograd:
                return replace(v, cut=v.cut)
            return V(cut=f"{fname}()", cut_span=self.x.where(node), computed=True)
        if fname in ("len", "range", "isinstance", "hasattr", "getattr", "print", "str", "repr", "type", "id"):
            return V(const=True)
        if fname == "max" and len(pos) == 2:
            res = _combine(vals)
            return replace(res, clamped=True)
        if fname == "sum" and vals:
            return _combine(vals[:1])
        if fname == "pow" and len(pos) == 2 and number(pos[1]) == 0.5:
            self.check_sqrt(node, pos[0], vals[0], "pow(x, 0.5)", need_tensor=True)
        if fname == "Variable":
            return self.variable(node, kw)
        res = _combine(vals)
        return replace(res, rg=frozenset())

    def variable(self, node: cst.Call, kw: dict) -> V:
        rg = kw.get("requires_grad")
        if rg is not None and isinstance(rg, cst.Name) and rg.value == "True":
            return V(cut="Variable(..., requires_grad=True)", cut_span=self.x.where(node), leaf=True, tensor=True)
        return V(leaf=True, tensor=True)

    def qualified_call(self, node: cst.Call, names: frozenset[str]) -> V:
        def isq(group) -> bool:
            return not names.isdisjoint(group)

        pos, kw = _args(node)
        if isq(GRADCHECK):
            self.record_gradcheck(node)
        vals = self._args_ev(node)
        first_node = _arg(node, 0, "input")
        first = self.ev(first_node) if first_node is not None else UNKNOWN
        span = self.x.where(node)
        if isq(SOFTMAX):
            return self.prob_value("softmax", node, first)
        if isq(SIGMOID):
            return self.prob_value("sigmoid", node, first)
        if isq(LOG_SOFTMAX):
            return replace(_combine([first]), prob="log_softmax", tensor=True)
        if isq(LOGSIGMOID):
            return replace(_combine([first]), prob="logsigmoid", tensor=True)
        for qn, kind in LOSS_FUNCTIONS.items():
            if qn in names:
                if first_node is not None:
                    self.check_loss(node, kind, first_node, first, crit_node=None)
                return V(computed=True, tensor=True, cut=first.cut, cut_span=first.cut_span, const=first.const)
        for qn, kind in LOSS_MODULES.items():
            if qn in names:
                return V(crit=kind, crit_node=node, module=True)
        for qn, kind in PROB_MODULES.items():
            if qn in names:
                return V(callret=kind, module=True)
        if "torch.nn.Sequential" in names:
            last = vals[-1] if vals else UNKNOWN
            return V(module=True, callret=last.callret)
        if "torch.nn.Parameter" in names or "torch.nn.parameter.Parameter" in names:
            return V(leaf=True, tensor=True, params=True)
        if isq(TENSOR_FROM_DATA):
            if all(v.const for v in vals):
                rg = kw.get("requires_grad")
                if isinstance(rg, cst.Name) and rg.value == "True":
                    return _TRAINABLE  # torch.tensor([1., 2.], requires_grad=True): a trainable leaf
                return V(const=True, leaf=True, tensor=True)
            return V(cut=f"{_short(names)}(...)", cut_span=span, leaf=True, tensor=True)
        if isq(VARIABLE):
            return self.variable(node, kw)
        if isq(FACTORIES):
            rg = kw.get("requires_grad")
            if isinstance(rg, cst.Name) and rg.value == "True":
                # a trainable leaf (torch.zeros(..., requires_grad=True)): carries gradient
                return V(leaf=True, tensor=True, params=True)
            return V(const=True, leaf=True, tensor=True)
        for qn, why in CUTTING_FUNCTIONS.items():
            if qn in names:
                return V(cut=why, cut_span=span, tensor=True, computed=True)
        if any(n.startswith("torch.nn.") and _short_of(n)[:1].isupper() for n in names):
            return V(module=True, leaf=True)
        if "torch.log" in names:
            if first_node is not None:
                self.check_log(node, first_node, first)
            return replace(_combine(vals), tensor=True)
        if "torch.log1p" in names:
            if first_node is not None and first.exp and not first.nograd:
                self.add_305(node, "log1p(exp(x))", "softplus")
            return replace(_combine(vals), tensor=True)
        if "torch.exp" in names:
            if first.prob == "log_softmax":
                # exp(log_softmax(x)) is softmax(x): probabilities again
                return replace(_combine([first]), prob="softmax", tensor=True, dense=True)
            return replace(_combine([first]), exp=not (first.max_shifted or first.nonpos), tensor=True,
                           const=first.const)
        if isq({"torch.sum", "torch.mean"}):
            return self.reduce_value(first, mean="torch.mean" in names)
        if isq({"torch.sqrt", "torch.rsqrt"}):
            short = "rsqrt" if "torch.rsqrt" in names else "sqrt"
            if first_node is not None:
                self.check_sqrt(node, first_node, first, f"torch.{short}", need_tensor=False)
            res = replace(_combine([first]), tensor=True)
            if first.var and short == "sqrt":
                res = replace(res, norm="sqrt(var)")
            return res
        if "torch.pow" in names and len(pos) >= 2:
            e = number(pos[1])
            if e == 0.5:
                self.check_sqrt(node, pos[0], first, "torch.pow(x, 0.5)", need_tensor=False)
            if e == 2:
                return replace(_combine([first]), sq=True, tensor=True, dense=first.dense)
            return replace(_combine(vals), tensor=True)
        if "torch.square" in names:
            return replace(_combine([first]), sq=True, tensor=True, dense=first.dense)
        if isq({"torch.norm", "torch.linalg.norm", "torch.linalg.vector_norm", "torch.frobenius_norm"}):
            return replace(_combine([first]), norm="norm()", tensor=True, dense=first.dense)
        if "torch.std" in names:
            return replace(_combine([first]), norm="std()", tensor=True)
        if "torch.var" in names:
            return replace(_combine([first]), var=True, tensor=True)
        if isq({"torch.acos", "torch.asin", "torch.arccos", "torch.arcsin"}):
            if first_node is not None:
                self.check_acos(node, first_node, first, _short(names))
            return replace(_combine([first]), tensor=True)
        if isq({"torch.clamp", "torch.clip", "torch.clamp_min"}):
            lo = _arg(node, 1, "min")
            hi = _arg(node, 2, "max") if "torch.clamp_min" not in names else None
            return self.clamp_value(first, lo, hi)
        if isq({"torch.maximum", "torch.fmax", "torch.max"}) and len(pos) == 2 and number(pos[1]) is None:
            return replace(_combine(vals), clamped=True, tensor=True)
        if isq({"torch.div", "torch.true_divide", "torch.divide"}) and len(pos) >= 2:
            den = self.ev(pos[1])
            self.check_divide(node, first, den, pos[1], numerator=pos[0])
            return replace(_combine(vals), tensor=True)
        if "torch.reciprocal" in names:
            if first.one_plus_exp and not first.const:
                self.add_305(node, "reciprocal(1 + exp(-x))", "sigmoid")
            return replace(_combine(vals), tensor=True)
        if "torch.where" in names and len(pos) >= 3:
            self.check_where(node, pos[1:3])
            return replace(_combine(vals[1:3]), tensor=True, safe_where=True, clamped=True)
        if isq({"torch.logsumexp", "torch.special.logsumexp", "torch.amax"}) or (
                "torch.max" in names and len(pos) + len(kw) >= 1):
            return replace(_combine(vals), tensor=True, is_max=True)
        if isq({"torch.autograd.backward"}):
            if first_node is not None:
                self.backward(node, first_node)
            return V(const=True)
        if any(n.startswith(("numpy.", "np.")) or n == "numpy" for n in names):
            return V(cut="numpy", cut_span=span, numpy=True, computed=True)
        if any(n.startswith("math.") for n in names):
            return V(const=True)
        if any(n.startswith("torch.") for n in names):
            return replace(_combine(vals), tensor=True, rg=frozenset())
        # an imported function of another library (or of the project): no facts
        res = _combine(vals)
        shorts = {n.rsplit(".", 1)[-1] for n in names}
        if len(shorts) == 1:
            short = shorts.pop()
            if short[:1].isupper():
                # maybe an instance of a class of the project: the project index resolves the
                # name as written here to the class, or to nothing outside the project
                written = dotted(node.func)
                return V(inst=frozenset({written}) if written else frozenset(), leaf=True)
        return replace(res, rg=frozenset())

    def prob_value(self, kind: str, node: cst.Call, first: V) -> V:
        # softmax and sigmoid outputs are strictly positive: dense
        return V(prob=kind, prob_node=node, tensor=True, computed=True, params=first.params, dense=True,
                 out=frozenset(), cut=first.cut, cut_span=first.cut_span, const=first.const,
                 param_cuts=first.param_cuts)

    def reduce_value(self, r: V, mean: bool) -> V:
        res = replace(_combine([r]), tensor=True, rg=r.rg, dense=r.dense)
        if r.sq or r.sumsq:
            res = replace(res, sumsq=True)
        if r.exp and not mean:
            res = replace(res, sum_exp=True)
        return res

    def clamp_value(self, r: V, lo: cst.BaseExpression | None, hi: cst.BaseExpression | None) -> V:
        res = replace(r, sq=False, norm=None, one_plus_exp=False, sum_exp=False, computed=True)
        lo_n = number(lo) if lo is not None else None
        hi_n = number(hi) if hi is not None else None
        if lo is not None and not (isinstance(lo, cst.Name) and lo.value == "None"):
            positive = lo_n is None or lo_n > 0
            if positive:
                res = replace(res, clamped=True, sumsq=False)
        if lo is not None and hi is not None:
            lo_strict = lo_n is None or lo_n > -1
            hi_strict = hi_n is None or hi_n < 1
            if lo_n is not None and hi_n is not None and (lo_n < -1 or hi_n > 1):
                res = replace(res, unit=None)
            else:
                res = replace(res, unit="strict" if lo_strict and hi_strict else "loose")
        if r.prob:
            res = replace(res, shifted=True)
        return res

    def method_call(self, node: cst.Call, recv_node: cst.BaseExpression, meth: str) -> V:
        r = self.ev(recv_node)
        vals = self._args_ev(node)
        pos, kw = _args(node)
        span = self.x.where(node)
        if meth == "softmax":
            return self.prob_value("softmax", node, r)
        if meth == "sigmoid" and not pos:
            return self.prob_value("sigmoid", node, r)
        if meth == "log_softmax":
            return replace(_combine([r]), prob="log_softmax", tensor=True)
        if meth == "log" and not pos and not kw:
            self.check_log(node, recv_node, r)
            return replace(_combine([r]), tensor=True)
        if meth == "log1p" and not pos and r.exp and not r.nograd:
            self.add_305(node, "log1p(exp(x))", "softplus")
        if meth == "exp" and not pos and r.prob == "log_softmax":
            return replace(_combine([r]), prob="softmax", tensor=True, dense=True)
        if meth == "exp" and not pos:
            return replace(_combine([r]), exp=not (r.max_shifted or r.nonpos), tensor=True, const=r.const)
        if meth in ("sum", "mean", "nansum") and not r.numpy:
            return self.reduce_value(r, mean=meth == "mean")
        if meth in ("add", "add_") and pos and number(pos[0]) == 1 and r.exp:
            return replace(_combine([r]), one_plus_exp=True, tensor=True)
        if meth in ("add", "add_") and pos and (r.sq or r.sumsq):
            return replace(_combine([r]), clamped=True, tensor=True)
        if meth in ("sqrt", "rsqrt") and not pos:
            self.check_sqrt(node, recv_node, r, f".{meth}()", need_tensor=False)
            res = replace(_combine([r]), tensor=True)
            return replace(res, norm="sqrt(var)") if r.var and meth == "sqrt" else res
        if meth in ("pow", "pow_") and pos:
            e = number(pos[0])
            if e == 0.5:
                self.check_sqrt(node, recv_node, r, ".pow(0.5)", need_tensor=False)
            if e == 2:
                return replace(_combine([r]), sq=True, tensor=True, dense=r.dense)
        if meth in ("max", "amax", "logsumexp"):
            return replace(_combine([r]), is_max=True, tensor=True)
        if meth == "square" and not pos:
            return replace(_combine([r]), sq=True, tensor=True, dense=r.dense)
        if meth == "norm" and not r.numpy:
            return replace(_combine([r]), norm="norm()", tensor=True, dense=r.dense)
        if meth == "std" and not r.numpy:
            return replace(_combine([r]), norm="std()", tensor=True)
        if meth == "var" and not r.numpy:
            return replace(_combine([r]), var=True, tensor=True)
        if meth in ("acos", "asin", "arccos", "arcsin", "acos_", "asin_"):
            self.check_acos(node, recv_node, r, meth)
            return replace(_combine([r]), tensor=True)
        if meth in ("clamp", "clip", "clamp_", "clip_"):
            return self.clamp_value(r, _arg(node, 0, "min"), _arg(node, 1, "max"))
        if meth in ("clamp_min", "clamp_min_"):
            return self.clamp_value(r, _arg(node, 0, "min"), None)
        if meth in ("div", "div_", "true_divide", "divide") and pos:
            self.check_divide(node, r, vals[0], pos[0], numerator=recv_node)
            return replace(_combine([r, vals[0]]), tensor=True)
        if meth == "reciprocal" and r.one_plus_exp and not r.const:
            self.add_305(node, "(1 + exp(-x)).reciprocal()", "sigmoid")
        if meth == "where" and len(pos) >= 2:
            # x.where(cond, other): x is the kept branch
            self.check_where(node, [recv_node, pos[1]])
            return replace(_combine([r, vals[1]]), tensor=True, safe_where=True, clamped=True)
        if meth in ("requires_grad_",):
            truth = not (pos and isinstance(pos[0], cst.Name) and pos[0].value == "False")
            key = dotted(recv_node)
            if r.module or (r.inst and not r.params):
                return r
            if truth and key and r.computed and not r.leaf and not r.nograd:
                ev = (self.x.where(node), key)
                self.env[key] = replace(r, rg=r.rg | {ev})
                return replace(r, rg=r.rg | {ev})
            if truth and r.leaf and r.const and r.tensor:
                # `W = torch.zeros(n, m); W.requires_grad_()`: a trainable leaf from now on
                if key:
                    self.env[key] = _TRAINABLE
                return _TRAINABLE
            return r
        if meth in ("backward", "manual_backward"):
            host = dotted(recv_node) or ""
            if meth == "manual_backward" or (pos and host.split(".")[-1] in _BACKWARD_HOSTS):
                if pos:
                    self.backward(node, pos[0])
            else:
                target = recv_node
                if isinstance(target, cst.Call) and isinstance(target.func, cst.Attribute) and \
                        target.func.attr.value == "scale" and target.args:
                    target = target.args[0].value
                self.backward(node, target)
            return V(const=True)
        if meth in CUTTING_METHODS:
            if r.nograd:
                return replace(r, computed=True)
            return V(cut=CUTTING_METHODS[meth], cut_span=span, tensor=meth.startswith(("detach", "arg", "round")),
                     params=r.params, leaf=meth.startswith("detach"),
                     param_cuts=r.param_cuts | self._param_cut(recv_node, meth), computed=True)
        if meth in _MOVE:
            return r
        if meth in KEEP:
            return replace(r, crit=None, callret=None, module=False, inst=frozenset(), dense=r.dense and not r.module,
                           tensor=r.tensor or bool(r.prob))
        if meth in ("apply",) and isinstance(recv_node, cst.Name) and recv_node.value in self.x.autograd_classes:
            return V(computed=True, tensor=True)
        if meth in ("item",):
            return V(cut=".item()", cut_span=span, computed=True)
        # unknown arguments (sizes, dims) leave the receiver's cut; one that carries gradient
        # (`x.matmul(W)` with W trainable) does not
        carried = any(v.params and not v.nograd for v in vals)
        res = replace(_combine([r] + vals), rg=r.rg if meth in _ARITH else frozenset(),
                      cut=r.cut if r.nograd and not carried else None,
                      cut_span=r.cut_span if r.nograd and not carried else None,
                      const=r.const and not carried, tensor=r.tensor)
        return res

    def _param_cut(self, recv_node: cst.BaseExpression, meth: str) -> frozenset:
        key = dotted(recv_node)
        if meth.startswith("detach") and key and key.startswith("self.") and key.count(".") == 1 and \
                self.cls and key[5:] in self.cls.params:
            return frozenset({(self.x.where(recv_node), key + ".detach()")})
        return frozenset()
