"""The numerics evaluator's calls: what calling a torch function, a tensor method, a module, a
criterion or a function of the file gives (`engine/tensors.V`).

`qualified_call` (a callee an import names: `torch.log`, `F.softmax`, `nn.BCELoss`) and
`method_call` (`x.sum()`, `p.clamp(min=eps)`) dispatch through tables of handlers by name
(`_QUALIFIED`, `_METHODS`), each table in the order its handlers are tried; calls that may be
hazards are handed to the site checks (`numerics_sites.SiteChecks`) as they are met. Each call is
also an edge of the call graph with what it passes (`numerics_callers.CallRecords`).
"""

from __future__ import annotations

import libcst as cst

from gradlint.source.engine.calls import arg as _arg
from gradlint.source.engine.calls import split as _args
from gradlint.source.budget import bounded
from gradlint.source.engine.fold import as_float
from gradlint.source.engine.tensors import (V, UNKNOWN, _TRAINABLE, replace, _combine, merge, knows_nothing, required_again,
                                            broken_before_required)
from gradlint.source.engine.values import truth
from gradlint.source.engine.walk import suite
from gradlint.source.list_ends import list_end
from gradlint.source.names import dotted
from gradlint.source.trained_names import trained_names


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
    "masked_select narrow select movedim swapaxes flip roll repeat tile squeeze_ unsqueeze_ diagonal diag "
    "take_along_dim unflatten".split())
# The same selections and reshapes written as torch functions (`torch.diagonal(probs)`,
# `torch.gather(p, 1, idx)`): the result is what their first argument is.
KEEP_FUNCTIONS = frozenset("torch." + name for name in (
    "reshape flatten squeeze unsqueeze permute transpose t gather index_select masked_select "
    "narrow select movedim swapaxes flip roll tile diagonal take_along_dim unflatten").split())
CUTTING_METHODS = {"item": ".item()", "tolist": ".tolist()", "numpy": ".numpy()",
                   "argmax": "argmax", "argmin": "argmin", "round": "round", "detach": ".detach()",
                   "detach_": ".detach_()", "long": "an integer cast", "int": "an integer cast",
                   "bool": "a bool cast"}
CUTTING_FUNCTIONS = {"torch.argmax": "argmax", "torch.argmin": "argmin", "torch.round": "round"}
_BACKWARD_HOSTS = frozenset({"accelerator", "fabric", "engine", "model_engine", "deepspeed", "strategy",
                             "trainer", "self", "amp", "booster"})




def _short_returns(fn: cst.FunctionDef) -> list[cst.BaseExpression] | None:
    """The returned expressions of a function or method of at most 5 statements whose every return
    (at its top level or in an if/else there) gives a call or an attribute; None for any other."""
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


_MAX_REDUCTIONS = frozenset({"torch.logsumexp", "torch.special.logsumexp", "torch.amax"})
# Moving or re-typing a module or a tensor keeps everything known about it.
_MOVE = frozenset("to cuda cpu float double half bfloat16 train eval type".split())
_ARITH = frozenset("add sub mul div neg mean sum add_ sub_ mul_ div_ abs pow float double half to view reshape "
                   "squeeze unsqueeze".split())


def _converted(fname: str, value):
    """`float(v)`, `int(v)`, `bool(v)` of a plain value, or UNKNOWN (`int` of a number only)."""
    if fname == "float":
        f = as_float(value)
        return UNKNOWN if f is None else f
    if fname == "int":
        n = bounded(value)  # a finite number within budget
        n = bounded(int(n)) if n is not None else None
        return UNKNOWN if n is None else n
    t = truth(value)
    return UNKNOWN if t is None else t


def _short(names: frozenset[str]) -> str:
    return sorted(names)[0].rsplit(".", 1)[-1]


def _short_of(name: str) -> str:
    return name.rsplit(".", 1)[-1]


# Functions of model libraries that return an nn.Module: torchvision's builders, in its models
# package and subpackages (`torchvision.models.resnet18(weights=...)`, `from torchvision.models
# import vit_b_16`, `torchvision.models.detection.fasterrcnn_resnet50_fpn()`), `get_model`, and
# timm's `create_model`. Their other functions (`get_weight`, `list_models`...) are not models.
_BUILDER_PACKAGES = frozenset({"torchvision.models", "torchvision.models.detection", "torchvision.models.segmentation",
                               "torchvision.models.video", "torchvision.models.quantization",
                               "torchvision.models.optical_flow"})
_NOT_BUILDERS = frozenset({"get_weight", "get_model_weights", "list_models", "get_model_builder"})
_MODEL_FACTORIES = frozenset({"timm.create_model", "timm.models.create_model", "torchvision.models.get_model"})


def _library_model(name: str) -> bool:
    """Whether calling `name` returns a model of torchvision or timm (above)."""
    if name in _MODEL_FACTORIES:
        return True
    package, _, last = name.rpartition(".")
    return package in _BUILDER_PACKAGES and last[:1].islower() and last not in _NOT_BUILDERS


# Methods whose result is a Python value: the receiver's computation leaves autograd at once.
_LEAVES_AUTOGRAD = frozenset({"item", "tolist"})


class _Call:
    """One call as its handler reads it: the arguments as written and as evaluated (once, in
    order, before the dispatch, as Python evaluates them), and for a method its receiver."""

    __slots__ = ("node", "pos", "kw", "vals", "names", "first_node", "first", "span", "recv", "r", "meth")

    def __init__(self, node: cst.Call, pos: list, kw: dict, vals: list[V]) -> None:
        self.node, self.pos, self.kw, self.vals = node, pos, kw, vals


def is_abs(node: cst.BaseExpression) -> bool:
    """`abs(x)`, `torch.abs(x)` or `x.abs()`: a value that is never negative."""
    if not isinstance(node, cst.Call):
        return False
    func = node.func
    return ((isinstance(func, cst.Name) and func.value == "abs")
            or (isinstance(func, cst.Attribute) and func.attr.value == "abs"))


class TensorCalls:
    """Call evaluation of FunctionWalk (a mixin: the walk's environment, memo and file extractor)."""

    trained_names: tuple[cst.FunctionDef, frozenset[str]] | None = None  # _trained's, for fn_node

    # -- calls ---------------------------------------------------------------------------------
    def call(self, node: cst.Call) -> V:
        func = node.func
        self.x.calling[id(func)] = node
        self.record_call(func)
        self._record_passed(node)
        names = self.x.q(func)
        if names:
            if not node.args and id(node) not in self.x.discarded:
                known = self.x.imported_constant(names, call=True)  # `from .consts import eps; eps()`
                if known is not None:
                    return known
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
            if not node.args and fname not in self.enclosing:
                known = self.x.function_value(fname)  # `def eps(): return 0.0` of this file
                if known is not None:
                    return known
            if (made := self.function_returns(fname)) is not None:
                if not made.prob:
                    self._args_ev(node)
                    return V(callret=made.callret, module=True)  # a model builder
                # `p = predict(x)` with `def predict(x): return torch.sigmoid(net(x))`: what the
                # callers' arguments carry, with the probability the function returns
                first = _combine([made, *self._args_ev(node)])
                return V(prob=made.prob, shifted=made.shifted, capped=made.capped, tensor=True, computed=True,
                         params=first.params, cut=first.cut, cut_span=first.cut_span, const=first.const,
                         param_cuts=first.param_cuts, dense=True)
            if fname in self.x.local_classes:
                self._args_ev(node)
                if fname in self.x.autograd_classes:
                    return UNKNOWN
                return V(inst=frozenset({fname}), leaf=True)
            return self.builtin_call(node, fname)
        callee = self.ev(func)
        return self.instance_call(node, callee, owner=None)

    def _trained(self, owner: str | None) -> bool:
        """Whether `owner`, a plain name, is one whose `.parameters()` this function gives to a
        torch optimizer (source/trained_names.py)."""
        fn = self.fn_node
        if not owner or fn is None or "." in owner:
            return False
        if self.trained_names is None or self.trained_names[0] is not fn:
            self.trained_names = (fn, trained_names(fn, self.x.q))  # once per walked function
        return owner in self.trained_names[1]

    def _args_ev(self, node: cst.Call) -> list[V]:
        return [self.ev(a.value) for a in node.args]

    def instance_call(self, node: cst.Call, callee: V, owner: str | None) -> V:
        vals = self._args_ev(node)
        ref = self.x.open_param(callee) if owner is not None else None
        if ref is not None:
            inp = _arg(node, 0, "input")
            if inp is not None:
                self.param_loss(node, None, ref, inp, self.ev(inp))
            trained = self._trained(owner)
            out = V(computed=True, tensor=trained or _combine(vals).tensor, params=trained, dense=trained)
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
            if made is not None and made.prob and made.params and not made.nograd:
                # `return self.decode(z), mu, logvar` with `def decode(self, z): return
                # torch.sigmoid(self.fc4(...))`: a probability of this class's own layers
                first = _combine([made, *vals])
                return V(prob=made.prob, shifted=made.shifted, capped=made.capped, tensor=True, computed=True,
                         params=True, cut=first.cut, cut_span=first.cut_span, const=first.const,
                         param_cuts=first.param_cuts, dense=True)
        res = _combine(vals)
        if knows_nothing(callee):
            # An unknown callable (a model passed as an argument, a factory's result): what it
            # returns is unknown, never "cut" because its inputs were made by torch.tensor().
            # One whose parameters this function hands to an optimizer is a model it trains: its
            # output carries their gradient (a learned layer's output: dense).
            trained = self._trained(owner)
            return V(computed=True, tensor=trained or res.tensor, params=trained, dense=trained)
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

    def function_returns(self, fname: str) -> V | None:
        """What a short top-level function of this file returns when it is a probability
        (`def occupancy(sdf): return torch.sigmoid(-sdf / beta)`): its returned calls evaluated
        once with its parameters unknown and no sites recorded, merged; None for any other
        function, for one defined more than once, decorated, or shadowed here."""
        x = self.x
        if fname in x.function_probs:
            return x.function_probs[fname]
        fn = x.module_functions.get(fname)
        if fn is None and self.name == "<module>" and self.cls is None:
            # the module body runs before its functions are collected: the defs above this call
            fn = next((d for d in self.module_defs if type(d) is cst.FunctionDef and d.name.value == fname), None)
        if fn is None or fn.decorators or fname in self.enclosing or x.def_counts.get(fname) != 1 \
                or fname in x.local_classes or fname in x.imports.names or fname in x.global_names:
            return None
        exprs = _short_returns(fn)
        if not exprs:
            x.function_probs[fname] = None
            return None
        x.function_probs[fname] = None  # a function that calls itself
        walk = type(self)(x, fname, None, quiet=True)  # a FunctionWalk (this is its mixin)
        walk.fn_node = fn  # its body, for `return nn.Sequential(*layers)` (_list_tail)
        ps = fn.params
        for p in (*ps.posonly_params, *ps.params, *ps.kwonly_params, ps.star_arg, ps.star_kwarg):
            if isinstance(p, cst.Param):
                walk.env[p.name.value] = UNKNOWN
        # read ahead of its turn: what it reads and calls is recorded when the function is walked
        seen = set(x.references), set(x.class_refs)
        passed = {q: {u: list(calls) for u, calls in by_unit.items()} for q, by_unit in x.passed.items()}
        x.muted += 1
        try:
            vals = [walk.ev(e) for e in exprs]
        finally:
            x.muted -= 1
            x.references, x.class_refs = seen
            x.passed = passed
        made = vals[0]
        for v in vals[1:]:
            made = merge(made, v)
        # a probability, or a module whose call returns one (`def make_model(): return
        # nn.Sequential(..., nn.Softmax(dim=1))`)
        got = x.function_probs[fname] = made if made.prob or (made.callret and made.module) else None
        return got

    def builtin_call(self, node: cst.Call, fname: str) -> V:
        vals = self._args_ev(node)
        pos, kw = _args(node)
        if fname in ("float", "int", "bool") and vals:
            v = vals[0]
            if v.nograd:
                return replace(v, cut=v.cut, value=_converted(fname, v.value))
            return V(cut=f"{fname}()", cut_span=self.x.where(node), computed=True)
        if fname in ("len", "range", "isinstance", "hasattr", "getattr", "print", "str", "repr", "type", "id"):
            return V(const=True)
        if fname == "max" and len(pos) == 2:
            res = _combine(vals)
            return replace(res, clamped=True)
        if fname == "sum" and vals:
            return _combine(vals[:1])
        if fname == "pow" and len(pos) == 2 and self.num(pos[1]) == 0.5:
            self.check_sqrt(node, pos[0], vals[0], "pow(x, 0.5)", need_tensor=True)
        if fname == "Variable":
            return self.variable(node, kw)
        res = _combine(vals)
        return replace(res, rg=frozenset())

    def is_true(self, node: cst.BaseExpression | None) -> bool:
        """An argument that is `True` (written, or a name bound to it: `requires_grad=flag`)."""
        return node is not None and self.ev(node).value is True

    def variable(self, node: cst.Call, kw: dict) -> V:
        rg = kw.get("requires_grad")
        if self.is_true(rg):
            return V(cut="Variable(..., requires_grad=True)", cut_span=self.x.where(node), leaf=True, tensor=True)
        return V(leaf=True, tensor=True)

    # -- calls of torch and numpy: a table of handlers by qualified name ---------------------------
    def qualified_call(self, node: cst.Call, names: frozenset[str]) -> V:
        """A call of a function or class an import names (`torch.log`, `F.softmax`, `nn.BCELoss`):
        the handlers `_QUALIFIED` holds for its names, in the order they were declared (a handler
        that answers None leaves the call to the next one), then what the name's package says."""
        pos, kw = _args(node)
        if not names.isdisjoint(GRADCHECK):
            self.record_gradcheck(node)
        c = _Call(node, pos, kw, self._args_ev(node))
        c.names = names
        c.first_node = first_node = _arg(node, 0, "input")
        c.first = self.ev(first_node) if first_node is not None else UNKNOWN
        c.span = self.x.where(node)
        if len(names) == 1:
            entries = _QUALIFIED.get(next(iter(names)), ())
        else:
            entries = sorted({e for n in names for e in _QUALIFIED.get(n, ())})
        module_class = any(n.startswith("torch.nn.") and _short_of(n)[:1].isupper() for n in names)
        for order, handler in entries:
            if module_class and order > _MODULE_CLASS_ORDER:
                break
            res = handler(self, c)
            if res is not None:
                return res
        if module_class or any(_library_model(n) for n in names):
            return V(module=True, leaf=True)  # another torch.nn class, or a model of a library: a module
        if any(n.startswith(("numpy.", "np.")) or n == "numpy" for n in names):
            return V(cut="numpy", cut_span=c.span, numpy=True, computed=True)
        if any(n.startswith("math.") for n in names):
            return V(const=True)
        if any(n.startswith("torch.") for n in names):
            return replace(_combine(c.vals), tensor=True, rg=frozenset())
        # an imported function of another library (or of the project): no facts
        res = _combine(c.vals)
        shorts = {n.rsplit(".", 1)[-1] for n in names}
        if len(shorts) == 1:
            short = shorts.pop()
            if short[:1].isupper():
                # maybe an instance of a class of the project: the project index resolves the
                # name as written here to the class, or to nothing outside the project
                written = dotted(node.func)
                return V(inst=frozenset({written}) if written else frozenset(), leaf=True)
        return replace(res, rg=frozenset())

    def _q_softmax(self, c: _Call) -> V:
        return self.prob_value("softmax", c.node, c.first)

    def _q_sigmoid(self, c: _Call) -> V:
        return self.prob_value("sigmoid", c.node, c.first)

    def _q_log_softmax(self, c: _Call) -> V:
        return replace(_combine([c.first]), prob="log_softmax", tensor=True)

    def _q_logsigmoid(self, c: _Call) -> V:
        return replace(_combine([c.first]), prob="logsigmoid", tensor=True)

    def _q_loss_function(self, c: _Call) -> V | None:
        for qn, kind in LOSS_FUNCTIONS.items():
            if qn in c.names:
                if c.first_node is not None:
                    self.check_loss(c.node, kind, c.first_node, c.first, crit_node=None)
                first = c.first
                return V(computed=True, tensor=True, cut=first.cut, cut_span=first.cut_span, const=first.const)
        return None

    def _q_loss_module(self, c: _Call) -> V | None:
        for qn, kind in LOSS_MODULES.items():
            if qn in c.names:
                return V(crit=kind, crit_node=c.node, module=True)
        return None

    def _q_prob_module(self, c: _Call) -> V | None:
        for qn, kind in PROB_MODULES.items():
            if qn in c.names:
                return V(callret=kind, module=True)
        return None

    def _q_sequential(self, c: _Call) -> V:
        args = c.node.args
        if args and args[-1].star == "*":
            # `nn.Sequential(*layers)`: the module the list ends with, when the function's last
            # statement that reads the list appends it (`layers.append(nn.Sigmoid())`)
            tail = self._list_tail(c.node, args[-1].value)
            return V(module=True, callret=tail.callret if tail is not None and tail.module else None)
        last = c.vals[-1] if c.vals else UNKNOWN
        return V(module=True, callret=last.callret)

    def _list_tail(self, call: cst.Call, listed: cst.BaseExpression) -> V | None:
        """What the list `listed` ends with where `call` reads it (source/list_ends.py: which item
        the function's statements put there last), as this walk evaluated it; None when unknown."""
        fn = getattr(self, "fn_node", None)
        item = list_end(fn, call, listed) if fn is not None else None
        if item is None:
            return None
        got = self.memo.get(id(item))
        if got is None and self.x.muted:
            got = self.ev(item)  # a builder read ahead of its turn (function_returns)
        return got

    def _q_parameter(self, c: _Call) -> V:
        return V(leaf=True, tensor=True, params=True)

    def _q_from_data(self, c: _Call) -> V:
        if all(v.const for v in c.vals):
            rg = c.kw.get("requires_grad")
            if self.is_true(rg):
                return _TRAINABLE  # torch.tensor([1., 2.], requires_grad=True): a trainable leaf
            return V(const=True, leaf=True, tensor=True)
        return V(cut=f"{_short(c.names)}(...)", cut_span=c.span, leaf=True, tensor=True)

    def _q_variable(self, c: _Call) -> V:
        return self.variable(c.node, c.kw)

    def _q_factory(self, c: _Call) -> V:
        rg = c.kw.get("requires_grad")
        if self.is_true(rg):
            # a trainable leaf (torch.zeros(..., requires_grad=True)): carries gradient
            return V(leaf=True, tensor=True, params=True)
        return V(const=True, leaf=True, tensor=True)

    def _q_cutting(self, c: _Call) -> V | None:
        for qn, why in CUTTING_FUNCTIONS.items():
            if qn in c.names:
                return V(cut=why, cut_span=c.span, tensor=True, computed=True)
        return None

    def _q_log(self, c: _Call) -> V:
        if c.first_node is not None:
            self.check_log(c.node, c.first_node, c.first)
        return replace(_combine(c.vals), tensor=True)

    def _q_log1p(self, c: _Call) -> V:
        if c.first_node is not None and c.first.exp and not c.first.nograd:
            self.add_305(c.node, "log1p(exp(x))", "softplus")
        return replace(_combine(c.vals), tensor=True)

    def _q_exp(self, c: _Call) -> V:
        return self._exp_value(c.first)

    def _q_reduce(self, c: _Call) -> V:
        return self.reduce_value(c.first, mean="torch.mean" in c.names)

    def _q_sqrt(self, c: _Call) -> V:
        short = "rsqrt" if "torch.rsqrt" in c.names else "sqrt"
        if c.first_node is not None:
            self.check_sqrt(c.node, c.first_node, c.first, f"torch.{short}", need_tensor=False)
        res = replace(_combine([c.first]), tensor=True)
        return replace(res, norm="sqrt(var)") if c.first.var and short == "sqrt" else res

    def _q_pow(self, c: _Call) -> V | None:
        if len(c.pos) < 2:
            return None
        e = self.num(c.pos[1])
        if e == 0.5:
            self.check_sqrt(c.node, c.pos[0], c.first, "torch.pow(x, 0.5)", need_tensor=False)
        if e == 2:
            return self._square_value(c.first)
        return replace(_combine(c.vals), tensor=True)

    def _q_square(self, c: _Call) -> V:
        return self._square_value(c.first)

    def _q_norm(self, c: _Call) -> V:
        return replace(_combine([c.first]), norm="norm()", tensor=True, dense=c.first.dense)

    def _q_std(self, c: _Call) -> V:
        return replace(_combine([c.first]), norm="std()", tensor=True)

    def _q_var(self, c: _Call) -> V:
        return replace(_combine([c.first]), var=True, tensor=True)

    def _q_acos(self, c: _Call) -> V:
        if c.first_node is not None:
            self.check_acos(c.node, c.first_node, c.first, _short(c.names))
        return replace(_combine([c.first]), tensor=True)

    def _q_clamp(self, c: _Call) -> V:
        lo = _arg(c.node, 1, "min")
        hi = _arg(c.node, 2, "max") if "torch.clamp_min" not in c.names else None
        return self.clamp_value(c.first, lo, hi, c.first_node)

    def _q_maximum(self, c: _Call) -> V | None:
        if len(c.pos) == 2 and self.num(c.pos[1]) is None:
            return replace(_combine(c.vals), clamped=True, tensor=True)
        return None

    def _q_divide(self, c: _Call) -> V | None:
        if len(c.pos) < 2:
            return None
        den = self.ev(c.pos[1])
        self.check_divide(c.node, c.first, den, c.pos[1], numerator=c.pos[0])
        return replace(_combine(c.vals), tensor=True)

    def _q_reciprocal(self, c: _Call) -> V:
        if c.first.one_plus_exp and not c.first.const:
            self.add_305(c.node, "reciprocal(1 + exp(-x))", "sigmoid")
        return replace(_combine(c.vals), tensor=True)

    def _q_where(self, c: _Call) -> V | None:
        if len(c.pos) < 3:
            return None
        self.check_where(c.node, c.pos[1:3])
        return replace(_combine(c.vals[1:3]), tensor=True, safe_where=True, clamped=True)

    def _q_max(self, c: _Call) -> V | None:
        if c.names.isdisjoint(_MAX_REDUCTIONS) and len(c.pos) + len(c.kw) < 1:
            return None  # `torch.max()` with no argument: not a reduction we can read
        return replace(_combine(c.vals), tensor=True, is_max=True)

    def _q_backward(self, c: _Call) -> V:
        if c.first_node is not None:
            self.backward(c.node, c.first_node)
        return V(const=True)

    # -- values several handlers make --------------------------------------------------------------
    def _exp_value(self, r: V) -> V:
        if r.prob == "log_softmax":
            # exp(log_softmax(x)) is softmax(x): probabilities again
            return replace(_combine([r]), prob="softmax", tensor=True, dense=True)
        # exp is strictly positive: its square or a sum of them is never 0 (a Gaussian policy's
        # `var = log_std.exp() ** 2` under a sqrt), as softmax outputs are dense
        return replace(_combine([r]), exp=not (r.max_shifted or r.nonpos), tensor=True, const=r.const, dense=True)

    def _square_value(self, r: V) -> V:
        return replace(_combine([r]), sq=True, tensor=True, dense=r.dense)

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

    def clamp_value(self, r: V, lo: cst.BaseExpression | None, hi: cst.BaseExpression | None,
                    operand: cst.BaseExpression | None = None) -> V:
        res = replace(r, sq=False, norm=None, one_plus_exp=False, sum_exp=False, computed=True)
        lo_n = self.num(lo) if lo is not None else None
        hi_n = self.num(hi) if hi is not None else None
        if lo is None and hi is not None and operand is not None and is_abs(operand):
            # `cos.abs().clamp(max=1 - eps)` lies in [0, 1 - eps]: inside (-1, 1) with a margin
            return replace(res, unit="strict" if hi_n is None or hi_n < 1 else ("loose" if hi_n == 1 else None))
        if lo is not None and self.ev(lo).value is not None:  # `min=None`, or a name bound to None
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
        if r.prob and not (lo_n is not None and lo_n <= 0):
            # a lower bound known to be 0 or less (`clamp(min=0)`, `lo = 0.0; clamp(lo, 1)`) leaves
            # a probability that underflows at 0
            res = replace(res, shifted=True)
        if r.prob and hi is not None and (hi_n is None or hi_n < 1):
            res = replace(res, capped=True)
        return res

    # -- methods of tensors and modules: a table of handlers by method name -----------------------
    def method_call(self, node: cst.Call, recv_node: cst.BaseExpression, meth: str) -> V:
        """`x.meth(...)` on a receiver no import names: the handlers `_METHODS` holds for `meth`
        (one answering None leaves the call to the next, then to the generic rule below)."""
        leaves = meth in _LEAVES_AUTOGRAD and not node.args
        self.leaving += leaves
        try:
            # `-torch.log(p[i]).mean().item()`: nothing in the receiver reaches a gradient
            r = self.ev(recv_node)
        finally:
            self.leaving -= leaves
        pos, kw = _args(node)
        c = _Call(node, pos, kw, self._args_ev(node))
        c.recv, c.r, c.meth = recv_node, r, meth
        c.span = self.x.where(node)
        for handler in _METHODS.get(meth, ()):
            res = handler(self, c)
            if res is not None:
                return res
        # unknown arguments (sizes, dims) leave the receiver's cut; one that carries gradient
        # (`x.matmul(W)` with W trainable) does not
        vals = c.vals
        carried = any(v.params and not v.nograd for v in vals)
        return replace(_combine([r] + vals), rg=r.rg if meth in _ARITH else frozenset(),
                       cut=r.cut if r.nograd and not carried else None,
                       cut_span=r.cut_span if r.nograd and not carried else None,
                       const=r.const and not carried, tensor=r.tensor)

    def _m_softmax(self, c: _Call) -> V:
        return self.prob_value("softmax", c.node, c.r)

    def _m_sigmoid(self, c: _Call) -> V | None:
        return None if c.pos else self.prob_value("sigmoid", c.node, c.r)

    def _m_log_softmax(self, c: _Call) -> V:
        return replace(_combine([c.r]), prob="log_softmax", tensor=True)

    def _m_log(self, c: _Call) -> V | None:
        if c.pos or c.kw:
            return None
        self.check_log(c.node, c.recv, c.r)
        return replace(_combine([c.r]), tensor=True)

    def _m_log1p(self, c: _Call) -> None:
        if not c.pos and c.r.exp and not c.r.nograd:
            self.add_305(c.node, "log1p(exp(x))", "softplus")

    def _m_exp(self, c: _Call) -> V | None:
        return None if c.pos else self._exp_value(c.r)

    def _m_reduce(self, c: _Call) -> V | None:
        return None if c.r.numpy else self.reduce_value(c.r, mean=c.meth == "mean")

    def _m_add(self, c: _Call) -> V | None:
        r = c.r
        if c.pos and self.num(c.pos[0]) == 1 and r.exp:
            return replace(_combine([r]), one_plus_exp=True, tensor=True)
        if c.pos and (r.sq or r.sumsq):
            return replace(_combine([r]), clamped=True, tensor=True)
        return None

    def _m_sqrt(self, c: _Call) -> V | None:
        if c.pos:
            return None
        self.check_sqrt(c.node, c.recv, c.r, f".{c.meth}()", need_tensor=False)
        res = replace(_combine([c.r]), tensor=True)
        return replace(res, norm="sqrt(var)") if c.r.var and c.meth == "sqrt" else res

    def _m_pow(self, c: _Call) -> V | None:
        if not c.pos:
            return None
        e = self.num(c.pos[0])
        if e == 0.5:
            self.check_sqrt(c.node, c.recv, c.r, ".pow(0.5)", need_tensor=False)
        return self._square_value(c.r) if e == 2 else None

    def _m_max(self, c: _Call) -> V:
        return replace(_combine([c.r]), is_max=True, tensor=True)

    def _m_square(self, c: _Call) -> V | None:
        return None if c.pos else self._square_value(c.r)

    def _m_norm(self, c: _Call) -> V | None:
        return None if c.r.numpy else replace(_combine([c.r]), norm="norm()", tensor=True, dense=c.r.dense)

    def _m_std(self, c: _Call) -> V | None:
        return None if c.r.numpy else replace(_combine([c.r]), norm="std()", tensor=True)

    def _m_var(self, c: _Call) -> V | None:
        return None if c.r.numpy else replace(_combine([c.r]), var=True, tensor=True)

    def _m_acos(self, c: _Call) -> V:
        self.check_acos(c.node, c.recv, c.r, c.meth)
        return replace(_combine([c.r]), tensor=True)

    def _m_clamp(self, c: _Call) -> V:
        return self.clamp_value(c.r, _arg(c.node, 0, "min"), _arg(c.node, 1, "max"), c.recv)

    def _m_clamp_min(self, c: _Call) -> V:
        return self.clamp_value(c.r, _arg(c.node, 0, "min"), None)

    def _m_divide(self, c: _Call) -> V | None:
        if not c.pos:
            return None
        self.check_divide(c.node, c.r, c.vals[0], c.pos[0], numerator=c.recv)
        return replace(_combine([c.r, c.vals[0]]), tensor=True)

    def _m_reciprocal(self, c: _Call) -> None:
        if c.r.one_plus_exp and not c.r.const:
            self.add_305(c.node, "(1 + exp(-x)).reciprocal()", "sigmoid")

    def _m_where(self, c: _Call) -> V | None:
        if len(c.pos) < 2:
            return None
        # x.where(cond, other): x is the kept branch
        self.check_where(c.node, [c.recv, c.pos[1]])
        return replace(_combine([c.r, c.vals[1]]), tensor=True, safe_where=True, clamped=True)

    def _m_requires_grad(self, c: _Call) -> V:
        r, pos = c.r, c.pos
        truth = not (pos and self.ev(pos[0]).value is False)  # `requires_grad_(False)`, or a name bound to it
        key = dotted(c.recv)
        if r.module or (r.inst and not r.params):
            return r
        if truth and key and broken_before_required(r):
            ev = (self.x.where(c.node), key)
            self.env[key] = replace(r, rg=r.rg | {ev})
            return replace(r, rg=r.rg | {ev})
        if truth and r.leaf and r.const and r.tensor:
            # `W = torch.zeros(n, m); W.requires_grad_()`: a trainable leaf from now on
            if key:
                self.env[key] = _TRAINABLE
            return _TRAINABLE
        again = required_again(r) if truth else None
        if again is not None:
            if key:
                self.env[key] = again
            return again
        return r

    def _m_backward(self, c: _Call) -> V:
        host = dotted(c.recv) or ""
        if c.meth == "manual_backward" or (c.pos and host.split(".")[-1] in _BACKWARD_HOSTS):
            if c.pos:
                self.backward(c.node, c.pos[0])
        else:
            target = c.recv
            if isinstance(target, cst.Call) and isinstance(target.func, cst.Attribute) and \
                    target.func.attr.value == "scale" and target.args:
                target = target.args[0].value
            self.backward(c.node, target)
        return V(const=True)

    def _m_cutting(self, c: _Call) -> V:
        r, meth = c.r, c.meth
        if r.nograd:
            return replace(r, computed=True)
        return V(cut=CUTTING_METHODS[meth], cut_span=c.span, tensor=meth.startswith(("detach", "arg", "round")),
                 params=r.params, leaf=meth.startswith("detach"),
                 param_cuts=r.param_cuts | self._param_cut(c.recv, meth), computed=True)

    def _m_move(self, c: _Call) -> V:
        return c.r

    def _m_keep(self, c: _Call) -> V:
        return self._kept(c.r)

    @staticmethod
    def _kept(r: V) -> V:
        """A selection or reshape of `r`: its elements, no longer a module or a criterion."""
        return replace(r, crit=None, callret=None, module=False, inst=frozenset(), dense=r.dense and not r.module,
                       tensor=r.tensor or bool(r.prob))

    def _q_keep(self, c: _Call) -> V | None:
        if c.first_node is None:
            return None
        return self._kept(c.first)

    def _m_apply(self, c: _Call) -> V | None:
        if isinstance(c.recv, cst.Name) and c.recv.value in self.x.autograd_classes:
            return V(computed=True, tensor=True)
        return None

    def _param_cut(self, recv_node: cst.BaseExpression, meth: str) -> frozenset:
        key = dotted(recv_node)
        if meth.startswith("detach") and key and key.startswith("self.") and key.count(".") == 1 and \
                self.cls and key[5:] in self.cls.params:
            return frozenset({(self.x.where(recv_node), key + ".detach()")})
        return frozenset()


def _table(groups: list[tuple[frozenset[str] | dict, object]], ordered: bool) -> dict[str, tuple]:
    """name -> the handlers of the groups that hold it, in the order of `groups` (with that
    order's index when `ordered`: a call's names may hold several, tried in that order)."""
    out: dict[str, list] = {}
    for order, (group, handler) in enumerate(groups):
        for name in group:
            out.setdefault(name, []).append((order, handler) if ordered else handler)
    return {name: tuple(handlers) for name, handlers in out.items()}


T = TensorCalls
_QUALIFIED_GROUPS: list = [
    (SOFTMAX, T._q_softmax), (SIGMOID, T._q_sigmoid), (LOG_SOFTMAX, T._q_log_softmax),
    (LOGSIGMOID, T._q_logsigmoid), (LOSS_FUNCTIONS, T._q_loss_function), (LOSS_MODULES, T._q_loss_module),
    (PROB_MODULES, T._q_prob_module), ({"torch.nn.Sequential"}, T._q_sequential),
    ({"torch.nn.Parameter", "torch.nn.parameter.Parameter"}, T._q_parameter), (TENSOR_FROM_DATA, T._q_from_data),
    (VARIABLE, T._q_variable), (FACTORIES, T._q_factory), (CUTTING_FUNCTIONS, T._q_cutting),
]
# Any other torch.nn class is a module: it comes after the groups above, before those below.
_MODULE_CLASS_ORDER = len(_QUALIFIED_GROUPS) - 1
_QUALIFIED_GROUPS += [
    ({"torch.log"}, T._q_log), ({"torch.log1p"}, T._q_log1p), ({"torch.exp"}, T._q_exp),
    ({"torch.sum", "torch.mean"}, T._q_reduce), ({"torch.sqrt", "torch.rsqrt"}, T._q_sqrt),
    ({"torch.pow"}, T._q_pow), ({"torch.square"}, T._q_square),
    ({"torch.norm", "torch.linalg.norm", "torch.linalg.vector_norm", "torch.frobenius_norm"}, T._q_norm),
    ({"torch.std"}, T._q_std), ({"torch.var"}, T._q_var),
    ({"torch.acos", "torch.asin", "torch.arccos", "torch.arcsin"}, T._q_acos),
    ({"torch.clamp", "torch.clip", "torch.clamp_min"}, T._q_clamp),
    ({"torch.maximum", "torch.fmax", "torch.max"}, T._q_maximum),
    ({"torch.div", "torch.true_divide", "torch.divide"}, T._q_divide), ({"torch.reciprocal"}, T._q_reciprocal),
    ({"torch.where"}, T._q_where), (_MAX_REDUCTIONS | {"torch.max"}, T._q_max), (KEEP_FUNCTIONS, T._q_keep),
    ({"torch.autograd.backward"}, T._q_backward),
]
_QUALIFIED = _table(_QUALIFIED_GROUPS, ordered=True)
_METHODS = _table([
    ({"softmax"}, T._m_softmax), ({"sigmoid"}, T._m_sigmoid), ({"log_softmax"}, T._m_log_softmax),
    ({"log"}, T._m_log), ({"log1p"}, T._m_log1p), ({"exp"}, T._m_exp), ({"sum", "mean", "nansum"}, T._m_reduce),
    ({"add", "add_"}, T._m_add), ({"sqrt", "rsqrt"}, T._m_sqrt), ({"pow", "pow_"}, T._m_pow),
    ({"max", "amax", "logsumexp"}, T._m_max), ({"square"}, T._m_square), ({"norm"}, T._m_norm),
    ({"std"}, T._m_std), ({"var"}, T._m_var),
    ({"acos", "asin", "arccos", "arcsin", "acos_", "asin_"}, T._m_acos),
    ({"clamp", "clip", "clamp_", "clip_"}, T._m_clamp), ({"clamp_min", "clamp_min_"}, T._m_clamp_min),
    ({"div", "div_", "true_divide", "divide"}, T._m_divide), ({"reciprocal"}, T._m_reciprocal),
    ({"where"}, T._m_where), ({"requires_grad_"}, T._m_requires_grad),
    ({"backward", "manual_backward"}, T._m_backward), (CUTTING_METHODS, T._m_cutting),
    (_MOVE, T._m_move), (KEEP, T._m_keep), ({"apply"}, T._m_apply),
], ordered=False)
del T
