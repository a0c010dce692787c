"""Numerics hazard sites: what `FunctionWalk` records when a value reaches a risky operation.

Each check names a pattern (a log of a probability, a probability into a loss that applies its
own softmax or sigmoid, a sqrt or division near zero, acos at the ends of [-1, 1], an unsafe
branch inside `torch.where`, a backward through a cut graph...) as a neutral `Site` with the
source pieces a fix would rewrite. Rules decide which sites to report; nothing here names a rule.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import libcst as cst

from gradlint.facts import free
from gradlint.facts.numerics import LOSS_NAMES, Pieces, Site
from gradlint.source.engine.calls import arg as _arg
from gradlint.source.engine.calls import arguments
from gradlint.source.detached_modules import CUT_WORDS, detached_modules
from gradlint.source.module_uses import PARAMETER_FREE, ModuleUses, module_uses, outside_runs
from gradlint.source.engine.walk import children, walk
from gradlint.source.engine.tensors import DETACHED_THEN_REQUIRED, V, UNKNOWN, live_params, number_of
from gradlint.source.gradchecks import made_as
from gradlint.source.numerics_bound import bound_once_on_path
from gradlint.source.numerics_guards import logs_of, positive_under
from gradlint.source.names import PARAMETER_CLASSES, dotted


# The cuts of a value computed from parameters that keep it a tensor (`.detach()`, `.data`, a
# no_grad block): GL403's cuts of a forward's output.
DETACHING = frozenset({".detach()", ".data", ".detach_()", "torch.no_grad()"})

# Words that name a network kept out of training on purpose: EMA/teacher/target networks.
_NETWORKS = frozenset("ema teacher target momentum shadow frozen old prev previous avg average swa polyak".split())
# Words that name a deliberate stop-gradient on a value: those networks' outputs, recurrent state
# carried between truncated-BPTT windows, caches.
_STOP_WORDS = _NETWORKS | frozenset("mean h c hx cx hn cn hidden hiddens state states memory mems carry cache past".split())
# ... and on a module or a class: those networks, memory banks and queues (not recurrent state).
_STOP_NETWORKS = _NETWORKS | frozenset("memory cache bank queue".split())


def _tokens(name: str) -> set[str]:
    return {t for t in re.split(r"_+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", name.strip("_")) if t} | {
        name.lower()}


def _param_data(role: str, ref: tuple[str, str, int] | None) -> list[tuple[str, Any]]:
    """A 'parameters' site's record of the open parameter playing `role` ('criterion', 'model',
    'tensor': the tensor the site reads is the parameter itself):
    its name, the function it belongs to ('f', 'C.m', 'C.__init__' for `self.criterion` set from
    `__init__`'s parameter), and its position after self (-1: keyword-only)."""
    if ref is None:
        return []
    return [(role + "_param", ref[1]), (role + "_of", ref[0]), (role + "_at", ref[2])]


_LOSSY = re.compile(r"loss|cost|objective|obj\b", re.I)
_GRAPH_BREAKS = frozenset({".item()", ".tolist()", ".numpy()", "argmax", "argmin", "round", "numpy", "float()",
                           "int()", "comparison", "Variable(..., requires_grad=True)"}) | frozenset(
    f"{n}(...)" for n in ("tensor", "as_tensor", "from_numpy", "Tensor", "FloatTensor", "DoubleTensor",
                           "LongTensor", "scalar_tensor"))


def _words(text: str) -> set[str]:
    return {w.lower() for part in re.findall(r"[A-Za-z0-9]+", text) for w in _tokens(part)}


def _stop_gradient(text: str) -> bool:
    return bool(_words(text) & _STOP_WORDS)


def _stop_network(text: str) -> bool:
    """A module or class named for a network kept out of training on purpose (an EMA, a teacher,
    a target network, a memory bank). Not the words of recurrent state (`hidden`, `state`, `c`):
    `self.hidden = nn.Linear(...)` is a layer, and a class `C` is no cell state."""
    return bool(_words(text) & _STOP_NETWORKS)


_EMBEDDINGS = frozenset({"torch.nn.Embedding", "torch.nn.EmbeddingBag", "torch.nn.modules.sparse.Embedding"})
_INTEGER_WORDS = frozenset("indices index idx ids mask masks positions position_ids lengths counts".split())


def _integer_named(text: str) -> bool:
    """Indices, masks and counts are integers or booleans by convention: no gradient to cut."""
    words = {w.lower() for part in re.findall(r"[A-Za-z0-9]+", text) for w in _tokens(part)}
    return bool(words & _INTEGER_WORDS)



def _squares(a: V) -> str:
    """What a root's operand is, for the message: pairwise distances are 0 on their diagonal."""
    if a.pairs:
        return "squared pairwise distance of a tensor with itself (0 on the diagonal)"
    if a.sine and not (a.sq or a.sumsq) and a.thin_eps:
        return ("1 - c² + an eps below 1e-6, where c can be exactly ±1 and a float32 cosine rounds a few "
                "1e-7 above it (a cosine of parallel vectors, a value clamped to [-1, 1])")
    if a.sine and not (a.sq or a.sumsq):
        return "1 - c² where c can be exactly ±1 (a cosine of parallel vectors, a value clamped to [-1, 1])"
    return "sum of squares" if a.sumsq else "square"


def _frozen_flag(call: cst.Call) -> bool:
    """`nn.Parameter(w, requires_grad=False)` (or `nn.Parameter(w, False)`): made frozen."""
    flag = next((a.value for a in call.args if a.keyword is not None and a.keyword.value == "requires_grad"), None)
    if flag is None and len(call.args) > 1 and call.args[1].keyword is None:
        flag = call.args[1].value
    return type(flag) is cst.Name and flag.value == "False"


def _off(call: cst.Call) -> bool:
    """`m.requires_grad_(False)` (not `requires_grad_()`, which turns it on)."""
    return len(call.args) == 1 and type(call.args[0].value) is cst.Name and call.args[0].value.value == "False"


# Reads of a tensor's metadata, not of its values: `self.dummy.device`
_METADATA_READS = frozenset({"device", "dtype", "shape", "ndim", "is_cuda", "size", "dim", "numel"})


def _values_read(fn: cst.FunctionDef) -> set[str]:
    """The attributes of self a method reads for their values (`self.scale * x`), not only for
    their device, dtype or shape (`x.to(self.dummy.device)`), in its code (comments aside)."""
    meta: set[int] = set()
    read: list[cst.Attribute] = []
    for n in walk(fn.body, ()):
        if type(n) is cst.Attribute:
            inner = n.value
            if type(inner) is cst.Name and inner.value == "self":
                read.append(n)
            elif n.attr.value in _METADATA_READS and type(inner) is cst.Attribute:
                meta.add(id(inner))
    return {a.attr.value for a in read if id(a) not in meta}


def _pretrained(call: cst.Call, code) -> bool:
    """A module built with pretrained weights: `from_pretrained(...)`, `pretrained=True`,
    `weights=<not None>` anywhere in the call."""
    for n in walk(call, ()):
        if type(n) is not cst.Call:
            continue
        if type(n.func) is cst.Attribute and n.func.attr.value == "from_pretrained":
            return True
        for a in n.args:
            if a.keyword is not None and (a.keyword.value == "pretrained" and code(a.value) == "True"
                                          or a.keyword.value == "weights" and code(a.value) != "None"):
                return True
    return False


# The hand-written forms (GL305 variants) whose value, not only whose gradient, is NaN or inf once
# exp overflows: inf / inf, inf / sum or log(inf). Computed in an autograd Function's backward,
# that value is the gradient (the forms whose value stays finite, `1 / (1 + exp(-x))`, are safe there).
VALUE_BROKEN = frozenset({"softmax", "softmax_weighted", "softplus", "logsumexp", "logsumexp_weighted", "sigmoid_ratio",
                          "sigmoid_derivative"})

class SiteChecks:
    """Site checks of FunctionWalk (a mixin: it reads the walk's environment and adds to its file's sites)."""

    # -- the checks ----------------------------------------------------------------------------
    def hazard_quiet(self) -> bool:
        return self.quiet or self.nograd > 0 or self.leaving > 0

    def param_loss(self, node: cst.Call, kind: str | None, criterion: tuple[str, str, int] | None,
                   inp_node: cst.BaseExpression, inp: V, extra: tuple = ()) -> None:
        """A loss whose criterion, input model or input itself is a parameter no caller of this
        file binds: a site that holds for what the project's callers pass
        (facts.numerics.bind_parameters)."""
        if self.hazard_quiet() or inp.nograd:
            return
        model = self.param_output(inp)
        # the input itself a parameter: only for a loss of known kind (a criterion parameter's
        # call may be no loss at all: `self.downsample(x)` with `downsample` from __init__)
        tensor = self.x.kept_param(inp) if not model and criterion is None else None
        elem: list[tuple[str, Any]] = []
        if not model and criterion is None and tensor is None and (got := self.x.open_elem(inp)) is not None:
            tensor, elem = got[0], [("tensor_elem", got[1])]  # `xy, wh, obj, cls = preds` of a parameter
        if criterion is not None and not model and inp.elems is not None and not inp.prob:
            # `self.criterion((seg_out, torch.sigmoid(edge)), gts)`: a tuple whose element is a
            # probability, for a criterion the callers give (a project class whose forward takes
            # the tuple apart: facts.numerics.bind_parameters)
            for i, e in enumerate(inp.elems):
                if e.prob in ("softmax", "sigmoid") and not e.shifted and not e.nograd:
                    part = inp_node.elements[i].value if type(inp_node) is cst.Tuple and \
                        len(inp_node.elements) == len(inp.elems) else inp_node
                    # at the element: one site for each (`(e, e)`), where the probability is
                    self._param_site(node, kind, criterion, None, None, part, e, [("input_elem", i)], extra,
                                     at=part if part is not inp_node else None)
            return
        if not model and not tensor and not (criterion and (inp.prob in ("softmax", "sigmoid") or inp.out)):
            return
        self._param_site(node, kind, criterion, model, tensor, inp_node, inp, elem, extra)

    def _param_site(self, node: cst.Call, kind: str | None, criterion: tuple[str, str, int] | None,
                    model: tuple[str, str, int] | None, tensor: tuple[str, str, int] | None,
                    inp_node: cst.BaseExpression, inp: V, elem: list, extra: tuple,
                    at: cst.CSTNode | None = None) -> None:
        data = [*_param_data("criterion", criterion), *_param_data("model", model), *_param_data("tensor", tensor),
                *elem, ("input", self.x.code(inp_node)[:80]), *extra]
        if criterion is not None and not (node.args and node.args[0].keyword is None and (
                node.args[0].value is inp_node or (elem and type(node.args[0].value) is cst.Tuple))):
            data.append(("input_keyword", True))  # not the criterion's first positional argument
        func = node.func
        if criterion is not None and type(func) is cst.Attribute and type(func.value) is cst.Name and \
                func.value.value == "self":
            data.append(("criterion_attr", func.attr.value))  # `self.criterion(...)`: replaced elsewhere?
        if self.conditional:
            data.append(("branch", True))  # on one path of an `if` (facts.numerics.bind_forward_call)
        if kind is not None:
            data.append(("loss", LOSS_NAMES[kind]))
        if not model:
            data.append(("input_prob", inp.prob or ""))
        self.x.add(Site("probability_into_loss", "parameters", self.x.span(at or node), detail=LOSS_NAMES.get(kind, ""),
                        classes=tuple(sorted(inp.out)) if not model and not inp.prob else (), data=tuple(data)))

    def passed_to_instance(self, node: cst.Call, cls: str) -> None:
        """A softmax or sigmoid output passed to an instance of a class (`crit(torch.sigmoid(z), y)`
        with `crit = EdgeLoss()`): a site per such argument, which holds where the class's forward
        feeds that parameter to a loss or a log (facts.numerics.bind_forward_call)."""
        args = arguments(node)
        if self.hazard_quiet() or args.star is not None or args.double_star:
            return  # (with `*args`/`**kwargs`, which parameter each value lands in is unknown)
        for at, keyword, value in (*((i, "", v) for i, v in enumerate(args.positional)),
                                   *((-1, k, v) for k, v in args.keywords.items())):
            v = self.ev(value)
            # a probability, or a tuple with one among its elements (`crit((seg, torch.sigmoid(e)), y)`)
            for elem, e in ((-1, v),) if v.elems is None or v.prob else enumerate(v.elems):
                if e.prob in ("softmax", "sigmoid") and not e.shifted and not e.nograd:
                    where = f"{keyword or at}" + (f"#{elem}" if elem >= 0 else "")
                    self.x.add(Site("probability_passed", f"{e.prob}@{where}", self.x.span(node), detail=e.prob,
                                    data=(("callee", cls), ("arg_at", at), ("arg_keyword", keyword),
                                          *((("arg_elem", elem),) if elem >= 0 else ()),
                                          ("input", self.x.code(value)[:80]))))

    def check_loss(self, node: cst.Call, kind: str, inp_node: cst.BaseExpression, inp: V,
                   crit_node: cst.Call | None, owner: str | None = None, fixable: bool = True,
                   default: tuple[str, str, int] | None = None) -> None:
        """`default`: the criterion is this parameter's constructor default (Extractor.binding); the
        site then holds unless a caller in the project passes another (facts.numerics.default_holds)."""
        if self.hazard_quiet() or inp.nograd:
            return
        extra = (*_param_data("criterion", default), ("criterion_default", "crit:" + kind)) if default else ()
        if self.param_output(inp) is not None or self.x.kept_param(inp) is not None or \
                self.x.open_elem(inp) is not None:
            self.param_loss(node, kind, None, inp_node, inp, extra)
            return
        want = "softmax" if kind == "ce" else "sigmoid"
        loss = LOSS_NAMES[kind]
        span = self.x.span(node)
        if inp.prob == want:
            pieces = self.loss_pieces(node, inp_node, inp, crit_node, owner) if fixable else None
            # (the interval a sigmoid of a bounded argument lies in: the rule judges its ends)
            known = (("input_bounds", inp.bounds),) if inp.bounds is not None else ()
            self.x.add(Site("probability_into_loss", "local", span, detail=loss, pieces=pieces,
                            data=(("loss", loss), ("input", self.x.code(inp_node)[:80]), *known, *extra)))
        elif inp.out and not inp.prob:
            self.x.add(Site("probability_into_loss", "model-output", span, detail=loss, classes=tuple(sorted(inp.out)), want=want,
                            data=(("loss", loss), ("input", self.x.code(inp_node)[:80]), *extra), element=inp.out_elem))

    def check_log(self, node: cst.Call, arg_node: cst.BaseExpression, a: V) -> None:
        if a.nograd:
            return
        if self.hazard_quiet():
            if self.computes_gradient:
                self._log_of_exps(node, a)  # (their value is inf: add_305 lets them through)
            return
        span = self.x.span(node)
        if a.prob in ("softmax", "sigmoid", "one_minus_sigmoid") and not a.shifted:
            self.x.add(Site("log_of_probability", a.prob, span, detail=a.prob, pieces=self.log_pieces(node, arg_node, a)))
        elif a.ratio_den or (a.ratio and not a.clamped):
            # `(p / q).log()`: a quotient of probabilities, 0 or inf once one underflows (inf
            # when the divisor does: no eps or clamp after the division helps then)
            self.x.add(Site("log_of_probability", "ratio", span, detail=a.ratio_den or a.ratio,
                            data=(("divisor", True),) if a.ratio_den else ()))
        elif a.out and not a.prob and not a.shifted:
            self.x.add(Site("log_of_probability", "model-output", span, detail="model output", classes=tuple(sorted(a.out)),
                            want="probability", element=a.out_elem))
        elif (model := self.param_output(a)) is not None:
            # the output of a model parameter: what the project's callers pass decides
            self.x.add(Site("log_of_probability", "parameters", span, detail="model output",
                            data=tuple(_param_data("model", model))))
        elif (tensor := self.x.kept_param(a)) is not None:
            # the parameter itself (`def nll(probs, y): ... log(probs)`): what every caller passes
            self.x.add(Site("log_of_probability", "parameters", span, detail="parameter",
                            data=(*_param_data("tensor", tensor), ("input", self.x.code(arg_node)[:80]),
                                  *((("branch", True),) if self.conditional else ()))))
        elif (got := self.x.open_elem(a)) is not None:
            # an element unpacked from a parameter: that element of what every caller passes
            self.x.add(Site("log_of_probability", "parameters", span, detail="parameter",
                            data=(*_param_data("tensor", got[0]), ("tensor_elem", got[1]),
                                  ("input", self.x.code(arg_node)[:80]))))
        else:
            self._log_of_exps(node, a)

    def _log_of_exps(self, node: cst.Call, a: V) -> None:
        """softplus and log-sum-exp written out: log(1 + exp(x)), log(sum(exp(x)))."""
        if a.one_plus_exp:
            self.add_305(node, "log(1 + exp(x))", "softplus", (a,))
        elif a.sum_exp:
            # (per group: a grouped sum, `log(scatter_add(exp(x), index))`)
            summed, grouped = ("scatter_add({}, index)", (("grouped", True),)) if a.grouped else ("sum({})", ())
            if a.weighted:
                self.add_305(node, f"log({summed.format('w * exp(x)')})", "logsumexp_weighted", (a,), grouped)
            else:
                self.add_305(node, f"log({summed.format('exp(x)')})", "logsumexp", (a,), grouped)

    def add_305(self, node: cst.CSTNode, pattern: str, instead: str, operands: tuple = (), extra: tuple = ()) -> None:
        if self.hazard_quiet() and not (self.computes_gradient and instead in VALUE_BROKEN):
            return
        # operands built from fresh tensors and this function's parameters (or its class's): no
        # gradient where every call in the project passes none there (facts.free.grad_free)
        needs = [self.x.free_given(v) for v in operands]
        union = frozenset().union(*needs) if needs and None not in needs else frozenset()
        data = (("free_if", free.encode(union)),) if union and not self.computes_gradient else ()
        self.x.add(Site("hand_written_unstable", instead, self.x.span(node), detail=pattern, data=data + extra))

    def _on_parameter(self, kind: str, how: str, ref: tuple, node: cst.CSTNode, detail: str,
                      pieces: Pieces | None = None, extra: tuple = ()) -> None:
        """A hazard on open parameters (or a value computed from them alone; `ref` is
        derived_params'): a site the callers in the project decide (facts.numerics.bind_parameters:
        variant `how` once bound). Computed from several (`pred @ target.T`), it holds when every
        caller passes a tensor that carries gradient for one of them."""
        if self.cls is not None and self.cls.quiet:
            return
        function, params = ref
        if len(params) == 1:
            data = _param_data("tensor", (function, *params[0]))
        else:
            data = [("tensor_any", ",".join(f"{name}@{at}" for name, at in params)), ("tensor_of", function)]
        self.x.add(Site(kind, "parameters", self.x.span(node), detail=detail, pieces=pieces,
                        data=(("how", how), *data, *extra)))

    def check_sqrt(self, node: cst.CSTNode, arg_node: cst.BaseExpression, a: V, how: str, need_tensor: bool) -> None:
        if not a.params and (a.sq or a.sumsq) and not (a.nograd or a.numpy or a.clamped or a.dense) \
                and not self.hazard_quiet() and (ref := self.x.derived_params(a)) is not None:
            # `def slope(g): return torch.sqrt(torch.sum(g ** 2, dim=1))` with no caller here: a
            # hazard when every caller in the project passes a tensor that carries gradient and may
            # be all zero (facts.numerics.bind_parameters)
            # (pairwise distances of the parameter with itself are zero on their diagonal whatever
            # the callers pass: any tensor that carries gradient will do)
            self._on_parameter("sqrt_near_zero", how, ref, node, _squares(a),
                               pieces=Pieces(operand=self.x.expr(arg_node)),
                               extra=(("zeros", "pairs"),) if a.pairs else ())
            return
        if self.hazard_quiet() or a.nograd or a.numpy or a.clamped or not a.params or a.dense:
            return  # no gradient carried (RULES.md: "carries gradient"), or never exactly zero
        if not (a.sq or a.sumsq or a.sine):
            return
        if need_tensor and not a.tensor:
            return
        what = _squares(a)
        self.x.add(Site("sqrt_near_zero", how, self.x.span(node), detail=what,
                        pieces=Pieces(operand=self.x.expr(arg_node), floored=a.floored)))

    def check_divide(self, node: cst.CSTNode, num: V, den: V, den_node: cst.BaseExpression,
                     numerator: cst.BaseExpression | None = None) -> None:
        if self.hazard_quiet() or not den.norm or den.clamped or den.nograd or num.nograd:
            return
        if not (den.params or num.params) and not den.dense and (ref := self.x.derived_params(num)) is not None:
            # `def unit(v): return v / v.norm()` with no caller here: a hazard when every caller
            # in the project passes a tensor that carries gradient (facts.numerics.bind_parameters)
            self._on_parameter("divide_by_norm", den.norm, ref, node, self.x.code(den_node)[:80])
            return
        if not (den.params or num.params) or den.dense:
            return  # nothing trainable upstream, or the norm of a learned projection (never 0)
        if self.cls is not None and self.cls.quiet:
            return
        self.x.add(Site("divide_by_norm", den.norm, self.x.span(node), detail=self.x.code(den_node)[:80]))

    def check_acos(self, node: cst.Call, arg_node: cst.BaseExpression, a: V, fn: str) -> None:
        if self.hazard_quiet() or a.nograd or a.unit == "strict":
            return
        kind = "loose-clamp" if a.unit == "loose" else "unclamped"
        if not a.params and (ref := self.x.derived_params(a)) is not None:
            # `def f(inp): return torch.acos(inp[:, 0])` with no caller here: a hazard when every
            # caller in the project passes a tensor that carries gradient (bind_parameters)
            self._on_parameter("acos_near_one", kind, ref, node, fn.rstrip("_"))
            return
        if not a.params:
            return
        self.x.add(Site("acos_near_one", kind, self.x.span(node), detail=fn.rstrip("_")))

    def mark_where_guarded(self, cond: cst.BaseExpression, kept: cst.BaseExpression) -> None:
        """The logs of probabilities in the branch `cond` selects whose argument it keeps positive
        (`where(p > 0, p * p.log(), 0)`): their value is never -inf, and the sites say so (the
        masked branch's NaN gradient is the where's own site, check_where)."""
        guarded = positive_under(cond, self.x.code)
        spans = {self.x.span(call) for call in logs_of(kept, guarded, self.x.code)} if guarded else set()
        if spans:
            self.x.sites[:] = [replace(s, data=(*s.data, ("where_guarded", True)))
                               if s.kind == "log_of_probability" and s.span in spans else s for s in self.x.sites]

    def check_where(self, node: cst.Call, branches: list[cst.BaseExpression]) -> None:
        if self.hazard_quiet():
            return
        for br in branches:
            # the op may be inside the branch's arithmetic (`y * torch.log(y / rate)`): its
            # backward still meets the masked-out input (0 * inf = NaN, measured)
            stack = [self._where_branch_bound(node, br)]
            while stack:
                sub = stack.pop()
                found = self._unsafe_op(sub)
                if found:
                    op, operand, ref = found
                    if ref is not None:
                        # `def deviance(rate, y): ... torch.log(y / rate)` with no caller here: a
                        # hazard when every caller in the project passes a tensor that carries
                        # gradient (facts.numerics.bind_parameters)
                        self._on_parameter("unsafe_where_branch", op, ref, sub, operand)
                    else:
                        self.x.add(Site("unsafe_where_branch", op, self.x.span(sub), detail=operand))
                    break
                if type(sub) is cst.BinaryOperation:
                    stack.extend((sub.right, sub.left))
                elif type(sub) is cst.UnaryOperation:
                    stack.append(sub.expression)

    def _where_branch_bound(self, node: cst.Call, br: cst.BaseExpression) -> cst.BaseExpression:
        """A branch written as a local name (`k_pos = a / b` then `where(c, k_pos, k_neg)`): the
        expression it is bound to once, on the function's straight path before the where (its
        backward runs all the same: kornia/kornia#3980); else the branch itself."""
        if type(br) is not cst.Name:
            return br
        value = bound_once_on_path(self.fn_node, br.value)
        if value is None or id(value) not in self.memo or self.x.span(value).line >= self.x.span(node).line:
            return br  # rebound, bound on a path that may not run, or not yet walked
        return value

    def _unsafe_op(self, br: cst.BaseExpression) -> tuple[str, str, tuple | None] | None:
        """(the op, its operand as written, None) when a branch is an unsafe op of a value that
        carries gradient; with the open parameters (derived_params) the operand is computed from
        in place of None, when it is an op's operand made of this function's parameters alone."""
        unsafe = {"log", "sqrt", "rsqrt", "reciprocal", "acos", "arccos", "asin", "arcsin", "log2", "log10"}
        if type(br) is cst.BinaryOperation and type(br.operator) is cst.Divide:
            den = br.right
            dv = self.memo.get(id(den), UNKNOWN)
            nv = self.memo.get(id(br.left), UNKNOWN)
            # A denominator without gradient still poisons the numerator's: 0 * (1/0) = NaN. But a
            # plain name (a config value, a python number) is not known to be a tensor that can be 0.
            if number_of(dv) is None and dv.tensor and not dv.clamped and not dv.safe_where and not (
                    nv.nograd and dv.nograd) and (nv.params or dv.params):
                return "division", self.x.code(den), None
            return None
        if type(br) is cst.Call:
            names = self.x.q(br.func)
            operand = None
            op = None
            if names:
                for n in names:
                    short = n.rsplit(".", 1)[-1]
                    if n.startswith("torch.") and short in unsafe:
                        op = short
                operand = _arg(br, 0, "input")
            elif type(br.func) is cst.Attribute and br.func.attr.value in unsafe and not br.args:
                op = br.func.attr.value
                operand = br.func.value
            if op and operand is not None:
                ov = self.memo.get(id(operand), UNKNOWN)
                if not ov.nograd and not ov.clamped and not ov.safe_where and number_of(ov) is None \
                        and ov.unit != "strict":
                    if ov.params:
                        return op, self.x.code(operand), None
                    ref = self.x.derived_params(ov)
                    if ref is not None:
                        return op, self.x.code(operand), ref
        return None

    def backward(self, node: cst.Call, target: cst.BaseExpression) -> None:
        """At a backward call: what the backpropagated value is made of."""
        v = self.ev(target)
        direct = dotted(target)
        for where, name in sorted(v.rg, key=lambda e: (e[0].line, e[0].column)):
            # Only the loss itself: a tensor made to require grad and then used in a computation
            # (adversarial inputs, optimised images) is a legitimate leaf.
            if name != direct and not _LOSSY.search(name):
                continue
            self.x.add(Site("requires_grad_on_loss", "requires-grad", where.span, detail=name,
                            data=(("backward_line", self.x.span(node).line),)))
        if v.cut_terms and not v.nograd:
            for where, how in sorted(v.cut_terms, key=lambda e: (e[0].line, e[0].column)):
                self.x.add(Site("loss_term_cut", how, where.span, detail=self.x.code(target)[:60],
                                data=(("backward_line", self.x.span(node).line),)))
        if graph_break(v):
            where = v.cut_span.line if v.cut_span else None
            self.x.add(Site("loss_graph_break", v.cut, self.x.span(node), detail=self.x.code(target)[:60],
                            data=(("through", v.cut), ("line", where))))
        if len(v.out) == 1 and not self.x.muted:
            # the output of a class's instance (`frames, loss = self.network(x)`): what its
            # forward cut is judged there (Extractor._returned_cuts)
            elem = v.out_elem if v.out_elem is not None else -1
            self.x.backprop_outputs.setdefault(self.x.unit, set()).add((next(iter(v.out)), elem))
        if v.returned is not None and not self.x.muted:
            # a loss a function of this file made: what it cut is judged once that function is walked
            self.x.backpropagated.append((v.returned, self.x.span(node), self.x.code(target)[:60]))
            owner = v.returned[0].partition(".")[0]
            if "." in v.returned[0] and owner not in self.x.local_classes:
                # a method of a class of another file: that file judges what its returns cut
                self.x.backprop_outputs.setdefault(self.x.unit, set()).add(v.returned)


    def check_forward_output(self) -> None:
        """A forward whose output is cut from the module's parameters."""
        if self.cls is None or not self.cls.module_like:
            return
        # (a class named for a network kept out of training, `EMAModel`, cuts its own output on
        # purpose; its submodules' cuts are read by their names and what the class does with them)
        if not _stop_network(self.cls.name):
            self._check_outputs()
        self._check_cut_submodules()

    def _check_outputs(self) -> None:
        # The parameters some return reaches with their graph (V.live): a cut of one of them on
        # the way to an output may be a stop-gradient of that term only, as in a two-time-scale
        # loss that holds `a` fixed in one term and fits it in another (libauc's MIDAM losses)
        trained = frozenset().union(*[live_params(self.memo.get(id(n.value), UNKNOWN)) for n in self.return_nodes])
        for node in self.return_nodes:
            val = self.memo.get(id(node.value))
            if val is None:
                continue
            for where, text, param in sorted(val.param_cuts, key=lambda e: (e[0].line, e[0].column)):
                if not _stop_gradient(text):
                    self.x.add(Site("forward_output_cut", "parameter-cut", where.span, detail=text,
                                    data=(("reaches_output", True),) if param in trained else ()))
            if type(node.value) is cst.Tuple:
                continue
            if type(node.value) is cst.Dict:
                val = self._dict_cut(node.value) or val
            if val.cut in DETACHING and val.params:
                text = self.x.code(node.value)
                if _stop_gradient(text) or _integer_named(text) or self._runs_modules_elsewhere() or \
                        self._inference_only():
                    continue
                built = self._built_of_called()
                span = val.cut_span.span if val.cut_span else self.x.span(node)
                if built is not None and not built:
                    # every module forward runs is a parameter-free torch layer: nothing of its own
                    # to cut, unless its callers pass it what carries gradient (LEAF's Gabor
                    # constraint, handed the layer's kernel, clamped it under no_grad)
                    if self.carried_in and not (type(node.value) is cst.Name and node.value.value in self.carried_in):
                        # (`return w` after `w.clamp_(0, 1)` under no_grad hands back the caller's
                        # parameter itself: changed in place, it still gets its gradient)
                        self.x.add(Site("forward_output_cut", "input-cut", span, detail=val.cut,
                                        data=(("inputs", ", ".join(sorted(self.carried_in))),)))
                    continue
                # (the classes of other files forward runs, when it runs only such modules: the
                # project index says whether any holds a parameter, facts.numerics.holds)
                self.x.add(Site("forward_output_cut", "output-cut", span, detail=val.cut,
                                classes=built or (), want="parametric" if built else None,
                                data=self._cut_elsewhere(span)))

    def _cut_elsewhere(self, span) -> tuple:
        """(('forward_of', class),) when the cut at `span` lies outside this forward, in a method
        of the file it calls (Extractor.method_cut): the message names whose output it is."""
        if self.fn_node is None:
            return ()
        own = self.x.span(self.fn_node)
        if own.line <= span.line <= own.end_line:
            return ()
        for hooks in self.x.callbacks.hooks.get(self.cls.name, {}).values():
            for method, _whole in hooks:
                fn = self.cls.method_nodes.get(method)
                at = self.x.span(fn) if fn is not None else None
                if at is not None and at.line <= span.line <= at.end_line:
                    # a forward hook forward's call of a submodule ran (numerics_callbacks)
                    return ("forward_of", self.cls.name), ("hook", method)
        for name, fn in self.x.module_functions.items():
            at = self.x.span(fn)
            if at.line <= span.line <= at.end_line:
                return ("forward_of", self.cls.name), ("function", name)  # (ReturnedLosses.function_cut)
        return (("forward_of", self.cls.name),)

    def _dict_cut(self, node: cst.Dict) -> V | None:
        """The first entry of a returned dict display (`{"ingr_loss": loss}`) when every entry is
        cut from the parameters it was computed from: nothing the forward gives trains them, as
        for a single value. None when an entry keeps its gradient, or when `**` adds others."""
        values = []
        for el in node.elements:
            if type(el) is not cst.DictElement:
                return None
            v = self.memo.get(id(el.value))
            if v is None or v.cut not in DETACHING or not v.params:
                return None
            values.append(v)
        return values[0] if values else None

    def _init_nodes(self):
        """Every node of `__init__`, the class's and its bases' in the file, in order."""
        for name, fn in self._methods_with_bases():
            if name == "__init__":
                yield from walk(fn.body, ())

    def _forward_calls(self) -> set[str]:
        """The attributes forward calls (`self.stft(x)`), the class's methods left out."""
        forward = self.cls.method_nodes.get("forward")
        if forward is None:
            return set()
        return set(re.findall(r"\bself\.(\w+)\s*\(", self.x.code(forward))) - set(self.cls.method_nodes)

    def _init_calls(self) -> dict[str, cst.Call]:
        """What `__init__` (the class's and its bases' in the file) builds each attribute with,
        when a call: `self.stft = STFT(sample_rate=fs)` -> that call (set again: the last)."""
        out: dict[str, cst.Call] = {}
        for n in self._init_nodes():
            if type(n) is cst.Assign and len(n.targets) == 1 and type(n.value) is cst.Call:
                t = n.targets[0].target
                if type(t) is cst.Attribute and type(t.value) is cst.Name and t.value.value == "self":
                    out[t.attr.value] = n.value
        return out

    def _inference_only(self) -> bool:
        """Whether `__init__` makes the class an inference-only wrapper: it puts itself in eval
        mode (`self.eval()`, `self.requires_grad_(False)`), or every module forward runs was put
        in eval mode or built with pretrained weights (`inception_v3(weights=...)`,
        `pretrained=True`, `from_pretrained(...)`) or an embedding whose table was made frozen
        (`nn.Parameter(w, requires_grad=False)`): a feature extractor for a metric (ignite's FID
        Inception), a fixed positional table, whose forward's cut is meant. A trainable head
        beside a pretrained backbone is not."""
        forward = self.cls.method_nodes.get("forward")
        if forward is None:
            return False
        called = self._forward_calls()
        built = self._init_calls()
        frozen: set[str] = set()
        frozen_params: set[str] = set()
        for n in self._init_nodes():
            if type(n) is cst.Call and type(n.func) is cst.Attribute and (
                    n.func.attr.value == "eval" and not n.args or n.func.attr.value == "requires_grad_" and _off(n)):
                owner = n.func.value
                if type(owner) is cst.Name and owner.value == "self":
                    return True
                if type(owner) is cst.Attribute and type(owner.value) is cst.Name and owner.value.value == "self":
                    frozen.add(owner.attr.value)
            elif type(n) is cst.Assign and len(n.targets) == 1 and type(t := n.targets[0].target) is cst.Attribute \
                    and t.attr.value == "requires_grad" and type(n.value) is cst.Name and n.value.value == "False" \
                    and type(t.value) is cst.Attribute and type(t.value.value) is cst.Name and t.value.value.value == "self":
                # `self.scale.requires_grad = False` freezes a parameter (on a module it is GL404's no-op)
                frozen_params.add(t.value.attr.value)
        if any(a in built and self.x.q(built[a].func) & PARAMETER_CLASSES and not _frozen_flag(built[a])
               and a not in frozen_params for a in _values_read(forward)):
            return False  # `(self.emb(x) * self.scale).detach()`: a parameter of its own it cuts
        tables = self._frozen_tables()
        for attr, call in built.items():
            if _pretrained(call, self.x.code) or (attr in tables and self.x.q(call.func) & _EMBEDDINGS):
                # (an embedding's table is its one parameter: `self.emb.weight = nn.Parameter(w,
                # requires_grad=False)` freezes it whole; a Linear's weight alone leaves its bias)
                frozen.add(attr)
        return bool(called) and called <= frozen

    def _frozen_tables(self) -> set[str]:
        """The attributes whose `weight` the class's own `__init__` sets, in its body (not under an
        `if`), to `nn.Parameter(w, requires_grad=False)`, and no method of it makes trainable
        again (`self.emb.weight.requires_grad = True`, `self.emb.requires_grad_()`)."""
        init = self.cls.method_nodes.get("__init__")
        if init is None or type(init.body) is not cst.IndentedBlock:
            return set()
        tables = {attr for stmt in init.body.body if type(stmt) is cst.SimpleStatementLine
                  for small in stmt.body if (attr := self._frozen_table(small)) is not None}
        for attr in list(tables):
            # (`(?!\s)` ends each run of spaces where it ends: no backtracking past the value)
            again = re.compile(rf"\bself\.{attr}(\.weight)?\.requires_grad(\s*=(?!=)\s*(?!\s)(?!False\b)|"
                               rf"_\(\s*(?!\s)(?!(requires_grad\s*=\s*)?False\b))")
            if any(again.search(self.x.code(fn)) for fn in self.cls.method_nodes.values()):
                tables.discard(attr)
        return tables

    def _frozen_table(self, n: cst.CSTNode) -> str | None:
        """`self.emb.weight = nn.Parameter(w, requires_grad=False)` in __init__: "emb"."""
        if type(n) is not cst.Assign or len(n.targets) != 1 or type(n.value) is not cst.Call:
            return None
        t = n.targets[0].target
        if not (type(t) is cst.Attribute and t.attr.value == "weight" and type(t.value) is cst.Attribute
                and type(t.value.value) is cst.Name and t.value.value.value == "self"):
            return None
        if not self.x.q(n.value.func) & PARAMETER_CLASSES:
            return None
        return t.value.attr.value if _frozen_flag(n.value) else None

    def _built_of_called(self) -> tuple[str, ...] | None:
        """The classes of the file's imports the modules forward uses (`self.stft(x)`) were built
        from, when every attribute forward reads was built in `__init__` by a call of an imported
        class or of a parameter-free torch layer, or is a plain setting: () when all are such
        torch layers (or forward reads nothing of self); None when any is something else (a
        parameter, a torch layer with weights, a container, a module of this file, a value
        passed in or registered another way)."""
        forward = self.cls.method_nodes.get("forward")
        if forward is None:
            return None
        read = set(re.findall(r"\bself\.(\w+)", self.x.code(forward))) - set(self.cls.method_nodes)
        if not read:
            return ()  # nothing of its own: what it cuts is what its callers pass (input-cut)
        built = self._init_calls()
        settings = self._init_settings()
        out: set[str] = set()
        for attr in read:
            call = built.get(attr)
            if call is None:
                if attr in settings:
                    continue  # `self.n_fft = n_fft`: a number or a flag
                return None
            names = self.x.q(call.func)
            if any(n.startswith("torch.nn.") for n in names):
                if all(n.rsplit(".", 1)[-1] in PARAMETER_FREE for n in names):
                    continue
                return None
            written = dotted(call.func)
            if not written or not names or written.split(".")[0] in self.x.local_classes \
                    or not (written.split(".")[0] in self.x.imports.names):
                return None
            out.add(written)
        return tuple(sorted(out))

    def _init_settings(self) -> set[str]:
        """The attributes `__init__` sets to a name, a literal or an arithmetic of them (`self.fs =
        sampling_rate`), not to a call: settings, not modules or tensors."""
        out: set[str] = set()
        for n in self._init_nodes():
            if type(n) is cst.Assign and len(n.targets) == 1 and not any(type(m) is cst.Call for m in walk(n.value, ())):
                t = n.targets[0].target
                # (also unpacked: `self.iters, self.eps = iters, eps`)
                for one in ([e.value for e in t.elements] if type(t) in (cst.Tuple, cst.List) else [t]):
                    if type(one) is cst.Attribute and type(one.value) is cst.Name and one.value.value == "self":
                        held = self.cls.attrs.get(one.attr.value)
                        if held is not None and (held.module or held.inst or held.params):
                            continue  # `self.backbone = backbone` with a module its callers pass
                        out.add(one.attr.value)
        return out

    def _uses(self) -> ModuleUses:
        """What the class's other methods do with its submodules (read once per class)."""
        key = id(self.cls)
        found = self.x.module_uses.get(key)
        if found is None or found[0] is not self.cls:
            found = self.x.module_uses[key] = (self.cls, module_uses(self._methods_with_bases(), self.x.code, self.x.q))
        return found[1]

    def _methods_with_bases(self) -> list[tuple[str, cst.FunctionDef]]:
        """The class's methods, then those of its bases among the file's top-level classes that it
        does not override or that its override calls (`super().aux_loss(x)`), and every `__init__`
        (`super().__init__()` runs the base's too)."""
        out = list(self.cls.method_nodes.items())
        seen = {n for n, fn in out if "super()" not in self.x.code(fn)}
        classes = self.x.top_classes
        if classes is None:
            classes = self.x.top_classes = {n.name.value: n for n in self.x.src.module.body if type(n) is cst.ClassDef}
        todo, visited = [b.rsplit(".", 1)[-1] for b in self.cls.bases], {self.cls.name}
        while todo and len(visited) < 8:
            name = todo.pop(0)
            base = classes.get(name)
            if base is None or name in visited:
                continue
            visited.add(name)
            methods = [(f.name.value, f) for f in base.body.body if type(f) is cst.FunctionDef]
            out += [(n, fn) for n, fn in methods if n not in seen or n == "__init__"]
            seen |= {n for n, fn in methods if "super()" not in self.x.code(fn)}
            todo += [(dotted(a.value) or "").rsplit(".", 1)[-1] for a in base.bases]
        return out

    def _outside_runs(self) -> set[str]:
        """The attributes that code of the file may run on another receiver than `self`."""
        if self.x.outside_runs is None:
            self.x.outside_runs = outside_runs(self.x.src.module, self.x.q)
        return self.x.outside_runs

    def _runs_modules_elsewhere(self) -> bool:
        """Whether a method of the class other than forward and __init__ may run, with gradient, a
        submodule with parameters that forward runs too, or one of the modules it is built of
        (`self.generator(z)` in a GAN's training_step, `self.actor(obs)` in an agent's update;
        `self.body = nn.Sequential(self.enc, self.dec)` with `self.dec(self.enc(x))` elsewhere):
        forward is then an inference path, and what it cuts trains there."""
        forward = self.cls.method_nodes.get("forward")
        if forward is None:
            return False
        uses = self._uses()
        mine = self._forward_calls()
        for m in list(mine):
            mine |= uses.members.get(m, set())
        return bool((mine - uses.parameter_free) & self._runs_elsewhere())

    def _runs_elsewhere(self) -> set[str]:
        """The submodules another method of the class may run with gradient (ModuleUses.runs), and
        those a method hands back as they are (`eject()` returning `self.vit`) where the file
        mentions that method anywhere but its `def`: its caller may run what it gets."""
        uses = self._uses()
        runs = set(uses.runs)
        for meth, attrs in uses.getters.items():
            if len(re.findall(rf"\b{re.escape(meth)}\b", self.x.src.text)) > 1:
                runs |= attrs
        return runs

    def _handed_to_optimizer(self, attr: str) -> bool:
        """Whether a method of the class gives `self.<attr>`'s parameters to an optimizer (a param
        group `{"params": self.m.parameters()}`, `torch.optim.Adam(self.m.parameters())`, a list of
        them an optimizer is then built of, or any read of them in `configure_optimizers` / a
        method named for param groups), while nothing freezes it and nothing else may run it:
        another method, a container `__init__` puts it in, code of the file outside the class.
        Reading them for a device or a count hands nothing."""
        uses = self._uses()
        if attr not in uses.handed or attr in uses.frozen or attr in self._runs_elsewhere() or attr in uses.held:
            return False
        return attr not in self._outside_runs()

    def _check_cut_submodules(self) -> None:
        """A submodule whose output forward detaches, which no output reaches otherwise, while a
        method of the class hands its parameters to an optimizer (`{'params':
        self.non_local.parameters()}`): they never get a gradient (A-GCN's learned adjacency,
        queenie88/A-GCN#4). A frozen feature extractor is cut so on purpose, and is given to no
        optimizer."""
        text = self.x.src.text
        if self.fn_node is None or not any(word in text for word in CUT_WORDS):
            return  # (a file with no cut at all: forward is not printed or walked again)
        methods = frozenset(n for n in self.cls.method_nodes if n != "forward")
        by_node: dict[int, tuple[cst.CSTNode, list[str]]] = {}
        for m, node in detached_modules(self.fn_node, self.x.q, methods):
            if not _stop_network(m) and self._handed_to_optimizer(m[5:]):
                by_node.setdefault(id(node), (node, []))[1].append(m)
        for node, modules in by_node.values():  # (modules cut at one place: one finding)
            self.x.add(Site("forward_output_cut", "module-cut", self.x.span(node),
                            detail=" and ".join(f"`{m}`" for m in modules)))

    def record_gradcheck(self, node: cst.Call) -> None:
        first = _arg(node, 0, "func")
        if first is None:
            return
        found: set[str] = set()

        class Names(cst.CSTVisitor):
            # names as written; the project index resolves them from this module
            def visit_Name(self, n: cst.Name) -> None:
                found.add(n.value)

            def visit_Attribute(self, n: cst.Attribute) -> None:
                text = dotted(n)
                if text:
                    found.add(text[: -len(".apply")] if text.endswith(".apply") else text)

        first.visit(Names())
        if type(first) is cst.Name and self.fn_node is not None:
            found |= made_as(first.value, self.fn_node, self.x.src.module)
        self.x.gradchecked.update(found)

    # -- the pieces a fix rewrites --------------------------------------------------------------
    def log_pieces(self, node: cst.Call, arg_node: cst.BaseExpression, a: V) -> Pieces | None:
        """The probability call, when it is written inside the log (`log(softmax(x))`,
        `log(1 - sigmoid(x))`) and the log call holds nothing else a fix would drop: another
        argument (`out=buf`: the fix once left buf unwritten) or a comment."""
        p = a.prob_node
        if p is None:
            return None
        alone = (len(node.args) == 1 and node.args[0].value is arg_node and node.args[0].keyword is None
                 and not node.args[0].star) or (not node.args and type(node.func) is cst.Attribute
                                                 and node.func.value is arg_node)
        if not alone or "#" in self.x.code(node):
            return None
        inline = arg_node is p
        if a.prob == "one_minus_sigmoid":
            inline = type(arg_node) is cst.BinaryOperation and arg_node.right is p
        return Pieces(producer=self.x.call_text(p)) if inline else None

    def loss_pieces(self, node: cst.Call, inp_node: cst.BaseExpression, inp: V, crit_node: cst.Call | None,
                    owner: str | None = None) -> Pieces | None:
        """The probability call written as the loss's input, the loss call and its criterion."""
        p = inp.prob_node
        if p is None or inp_node is not p:
            return None
        x = self.x
        return Pieces(producer=x.call_text(p), call=x.call_text(node),
                      criterion=x.call_text(crit_node) if crit_node is not None else None,
                      criterion_local=crit_node is not None and self._constructed_here(crit_node, node, owner))

    def _constructed_here(self, crit_node: cst.Call, call: cst.Call, owner: str | None) -> bool:
        """The criterion is built inline, or in this function under a local name called only here:
        changing its class then changes no other call."""
        if call.func is crit_node:
            return True
        if id(crit_node) not in self.memo or not owner or "." in owner or self.fn_node is None:
            return False
        mentions = 0
        stack: list[cst.CSTNode] = [self.fn_node.body]
        while stack:
            n = stack.pop()
            if type(n) is cst.Name and n.value == owner:
                mentions += 1
            stack.extend(children(n))
        # one binding and one call
        return mentions == 2


def graph_break(v: V) -> bool:
    """The backpropagated value is cut from the graph (`.item()`, `torch.tensor(...)`, numpy...).
    (A value detached then made to require grad is a break only as the loss itself, a leaf: one
    computed from it, `(feat ** 2).sum()` for feat.grad, is how saliency is taken.)"""
    return (v.cut in _GRAPH_BREAKS or v.cut == DETACHED_THEN_REQUIRED and v.leaf) and not v.rg
