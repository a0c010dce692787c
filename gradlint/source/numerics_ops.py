"""What torch's functions and tensors' methods do to a value (`engine/tensors.V`): the handlers
the numerics calls dispatch to (`numerics_calls.TensorCalls`), and their tables (the torch names
they read are numerics_names').

`_QUALIFIED` holds the handlers of a callee an import names (`torch.log`, `F.softmax`,
`nn.BCELoss`), `_METHODS` those of a method (`x.sum()`, `p.clamp(min=eps)`), each table in the
order its handlers are tried; a handler that answers None leaves the call to the next one. Calls
that may be hazards are handed to the site checks (`numerics_sites.SiteChecks`) as they are met.
"""

from __future__ import annotations

import libcst as cst

from gradlint.source.budget import bounded
from gradlint.source.engine.calls import arg as _arg
from gradlint.source.engine.fold import as_float
from gradlint.source.engine import bounds
from gradlint.source.engine.tensors import (V, UNKNOWN, _TRAINABLE, replace, _combine, ratio_of, required_again, logged,
                                            broken_before_required, cosines, unit_terms, square_unit, number_of, parts_joined,
                                            weighted_squares)
from gradlint.source.engine.values import truth
from gradlint.source.numerics_names import (
    SOFTMAX, SIGMOID, LOG_SOFTMAX, LOGSIGMOID, LOSS_FUNCTIONS,
    TARGET_LOSSES, LOSS_MODULES, PROB_MODULES, NONNEG_MODULES,
    FACTORIES, TENSOR_FROM_DATA, VARIABLE, KEEP, _SELECTIONS,
    KEEP_FUNCTIONS, CUTTING_METHODS, CUTTING_FUNCTIONS, _BACKWARD_HOSTS, _MAX_REDUCTIONS, _MOVE,
    _ZERO_KEPT, SIGNAL_TRANSFORMS,
)
from gradlint.source.numerics_pairs import pair_reduction, self_gram
from gradlint.source.numerics_sequential import SequentialOps
from gradlint.source.numerics_signs import _literal, is_abs, never_negative, setting_bound
from gradlint.source.numerics_scatter import SCATTER_SUM_FUNCTIONS, SCATTER_SUM_METHODS, m_scatter_sum, q_scatter_sum
from gradlint.source.names import MODEL_WRAPPERS, PARAMETER_CLASSES, dotted


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


# What draws random numbers (numpy's and torch's generators): a fresh value, never one of a graph.
_DRAWS = frozenset({"randn", "rand", "uniform", "normal", "random", "standard_normal", "random_sample", "randint"})


def _random_draw(node) -> bool:
    """`rng.randn(n, 3).astype(np.float32)`, `np.random.uniform(-1, 1, size)`: numbers drawn from a
    random generator (through `.astype`, `.copy()`), which carry no gradient whatever the
    generator is."""
    while type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value in ("astype", "copy"):
        node = node.func.value
    return type(node) is cst.Call and type(node.func) is cst.Attribute and node.func.attr.value in _DRAWS


def _short_of(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def strictly_positive(v: V) -> bool:
    """Strictly positive elements: softmax or sigmoid probabilities, an exp. A product of two such matrices (torch_geometric's DMoN `s.T @ s`
    of softmax assignments) has strictly positive entries: its norm is never 0."""
    return v.prob in ("softmax", "sigmoid") or v.exp


def squares_product(x, a: V, b: V) -> V | None:
    """`weighted_squares(a, b)`, computed from the squares alone: the weights (a buffer the walk
    knows nothing of, `self.OBM`) do not keep the squares' gradient from the root, so a root in a
    helper is judged by what its callers pass for the squared parameter (`x`: the extractor)."""
    made = weighted_squares(a, b)
    if made is None:
        return None
    return x.derive_from([a if (a.sq or a.sumsq) else b], made)



class _Call:
    """One call as its handler reads it: the arguments as written and as evaluated (once, in
    order, before the dispatch, as Python evaluates them), and for a method its receiver."""

    __slots__ = ("node", "pos", "kw", "vals", "names", "first_node", "first", "span", "recv", "r", "meth")

    def __init__(self, node: cst.Call, pos: list, kw: dict, vals: list[V]) -> None:
        self.node, self.pos, self.kw, self.vals = node, pos, kw, vals


def _bounded_fill(walk, mask_node: cst.BaseExpression, mask: V, kept: cst.BaseExpression, fill: V,
                  keep: str) -> bool:
    """Whether a fill or where keeps `kept` exactly where it is at most a number (`keep` "gt":
    the mask marks the values replaced, those above it; "le": the values kept) no larger than
    bounds.EXP_SAFE, and puts such a number everywhere else: the result's exp cannot overflow. The mask
    is written as made (`mask`, `~mask`, `x <= 18`: no item or view of it) of this very tensor:
    the same local name, neither bound again nor changed in place since (`walk.versions`), in the
    same lambda, and with no loop entered since that changes it (a loop's body is read once)."""
    while type(mask_node) is cst.UnaryOperation and type(mask_node.operator) is cst.BitInvert:
        mask_node = mask_node.expression
    made = mask.mask_of
    if made is None or type(kept) is not cst.Name or type(mask_node) not in (cst.Name, cst.Comparison):
        return False
    key, rel, bound, version, depth, lazy = made
    filled = number_of(fill)
    return rel == keep and key == kept.value and version == walk.versions.get(key, 0) and lazy == walk.lazy and \
        depth <= walk.looping and not walk.loop_changed(depth, key) and \
        bound <= bounds.EXP_SAFE and filled is not None and filled <= bounds.EXP_SAFE


def _max_values(got: V, c, at: int) -> V:
    """A max over a dimension (`torch.max(x, dim=-1)`, `x.max(1)`) gives (values, indices): the
    values a max, for `m, _ = torch.max(x, -1)` then `x - m` (the stable log-sum-exp shift).
    `at`: where the dimension is among the positional arguments."""
    dim = "dim" in c.kw or "keepdim" in c.kw or (len(c.pos) > at and (
        _literal(c.pos[at]) is not None or _names_dim(c.pos[at])))
    return replace(got, elems=(got, V(const=True, tensor=True))) if dim else got


def _names_dim(node: cst.BaseExpression) -> bool:
    """A name that says it holds a dimension (`dim`, `axis`, `self.seq_dim`): `torch.max(x, dim)`
    reduces over it, where `torch.max(x, other)` of a tensor would be an elementwise maximum."""
    last = (dotted(node) or "").rpartition(".")[2].lower()
    return last in ("dim", "axis", "dimension") or last.endswith(("_dim", "_axis")) or last.startswith("dim_")


class TorchOps(SequentialOps):
    """The handlers of torch calls and tensor methods (a mixin of TensorCalls: the walk's
    evaluator `ev`, its file extractor `x` and its site checks)."""

    # -- calls of torch and numpy, by qualified name -----------------------------------------------
    def _q_softmax(self, c: _Call) -> V:
        return self.prob_value("softmax", c.node, c.first)

    def _q_sigmoid(self, c: _Call) -> V:
        return self.prob_value("sigmoid", c.node, c.first)

    def _q_log_softmax(self, c: _Call) -> V:
        # (a log-probability is never above 0: its exp cannot overflow)
        return replace(_combine([c.first]), prob="log_softmax", tensor=True, nonpos=True)

    def _q_logsigmoid(self, c: _Call) -> V:
        return replace(_combine([c.first]), prob="logsigmoid", tensor=True, nonpos=True)

    def _q_loss_function(self, c: _Call) -> V | None:
        for qn, kind in LOSS_FUNCTIONS.items():
            if qn in c.names:
                if c.first_node is not None:
                    self.check_loss(c.node, kind, c.first_node, c.first, crit_node=None)
                first = c.first
                return V(computed=True, tensor=True, cut=first.cut, cut_span=first.cut_span, const=first.const,
                         params=first.params)
        return None

    def _q_target_loss(self, c: _Call) -> V:
        """`F.mse_loss(sr.detach(), hr)`: a loss of a cut input against a target that carries no
        gradient is cut. The target must be known not to: a constant, cut itself, or a value
        nothing is known of that no call here made (`hr` drawn from the loader). What a call
        made (`student(x)` of a model parameter, `head(x)` of a built head) may carry gradient,
        and `F.mse_loss(teacher(x).detach(), student(x))` is written target-first."""
        first = c.first
        if first.cut is None:
            return _combine(c.vals)
        node = c.pos[1] if len(c.pos) > 1 else c.kw.get("target")
        target = self.ev(node) if node is not None else UNKNOWN
        if not (target is UNKNOWN or target.const or target.cut is not None) or target.params or target.rg:
            return _combine(c.vals)
        return V(computed=True, tensor=True, cut=first.cut, cut_span=first.cut_span, const=first.const and target.const,
                 params=first.params, through=first.through)

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

    def _q_wrapped(self, c: _Call) -> V | None:
        """`nn.DataParallel(Net())`, `torch.compile(model)`: the wrapper's call runs the module's
        forward, so it is that module (its class, its criterion...); None when nothing is known of it."""
        first = c.first
        if first.inst or first.crit or first.callret or first.module or first.out:
            return first
        return None

    def _q_partial(self, c: _Call) -> V | None:
        """`functools.partial(F.cross_entropy, label_smoothing=0.1)`: calling it is that loss (a
        function-valued criterion, which no fix renames)."""
        first = c.first
        if c.first_node is not None and first.crit and not first.module:
            return V(crit=first.crit)
        return None

    def _q_nonneg_module(self, c: _Call) -> V | None:
        return V(module=True, nonneg=True) if not NONNEG_MODULES.isdisjoint(c.names) else None

    def _q_parameter(self, c: _Call) -> V:
        rg = c.kw.get("requires_grad", c.pos[1] if len(c.pos) > 1 else None)
        if rg is not None and type(rg) is cst.Name and rg.value == "False":
            # `nn.Parameter(w, requires_grad=False)`: a frozen table, no gradient to carry or lose
            return V(leaf=True, tensor=True, const=False)
        return V(leaf=True, tensor=True, params=True)

    # Tensor constructors that give a tensor argument back with its graph (_q_from_data).
    _ALIASING = frozenset({"torch.as_tensor", "torch.Tensor", "torch.FloatTensor"})

    def _q_from_data(self, c: _Call) -> V:
        # (a list that got a loss on some path, `terms = []` then `terms.append(loss)` in a loop,
        # carries gradient though it was a constant display before)
        if not c.names.isdisjoint(self._ALIASING) and c.first_node is not None and c.first.cut is None and \
                not c.first.numpy and type(c.first_node) not in (cst.List, cst.Tuple, cst.ListComp, cst.GeneratorExp) \
                and not (c.first.const and not c.first.params):
            # as_tensor of a tensor in the graph gives it back, graph and all (measured:
            # `as_tensor(loss) is loss`, and with a dtype a ToCopyBackward node; the legacy
            # `torch.Tensor(t)` and `torch.FloatTensor(t)` of a float tensor alias it, an
            # AliasBackward node); of a number, a list or an array (`.item()`, `.numpy()` before
            # it) they make a new leaf, cut as below
            return c.first
        rg = c.kw.get("requires_grad")
        if all(v.const and not v.params for v in c.vals):
            if self.is_true(rg):
                return _TRAINABLE  # torch.tensor([1., 2.], requires_grad=True): a trainable leaf
            return V(const=True, leaf=True, tensor=True)
        if self.is_true(rg) and _random_draw(c.first_node):
            # `torch.tensor(rng.randn(n, 3), requires_grad=True)`: a trainable leaf made of numbers
            # drawn at random (escnn's Thomson solver optimises it with Adam(params=(X,))); made of
            # anything else (a list of losses, `loss.item()`) the graph it came from is cut
            return _TRAINABLE
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
        return logged(replace(_combine(c.vals), tensor=True), c.first if len(c.vals) == 1 else UNKNOWN)

    def _q_log1p(self, c: _Call) -> V:
        if c.first_node is not None and c.first.exp and not c.first.nograd:
            self.add_305(c.node, "log1p(exp(x))", "softplus", (c.first,))
        return replace(_combine(c.vals), tensor=True)

    def _q_exp(self, c: _Call) -> V:
        return self._exp_value(c.first)

    def _q_reduce(self, c: _Call) -> V:
        dim = c.kw.get("dim", c.kw.get("axis", c.pos[1] if len(c.pos) > 1 else None))
        return self.reduce_value(c.first, mean="torch.mean" in c.names, dims=[dim])

    def _q_sqrt(self, c: _Call) -> V:
        short = "rsqrt" if "torch.rsqrt" in c.names else "sqrt"
        if c.first_node is not None:
            self.check_sqrt(c.node, c.first_node, c.first, f"torch.{short}", need_tensor=False)
        # (the root of a double-where guarded value is guarded: `sqrt(where(nz, n2, 1))` is 1
        # where the mask is off, and a root of a positive value where it is on)
        res = replace(_combine([c.first]), tensor=True, safe_where=c.first.safe_where)
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

    def _q_mul(self, c: _Call) -> V | None:
        """`torch.mul(x, x)`: a square, as `x * x` is; any other product as before."""
        if len(c.pos) == 2 and not c.kw and self.x.code(c.pos[0]) == self.x.code(c.pos[1]):
            return self._square_value(c.vals[0])
        return unit_terms(c.vals[0], c.vals[1]) if len(c.pos) == 2 and not c.kw else None  # a cosine's terms

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

    def _q_joined(self, c: _Call) -> V | None:
        """`torch.stack(parts)`, `torch.cat(parts)`: what holds for every part holds for the
        result (`torch.stack([s[i] - s.max() for ...])` is still shifted, `-d ** 2` still never
        positive); it is constant only when every part is, and carries gradient when one does."""
        if not c.pos:
            return None
        seq = c.pos[0]
        if type(seq) in (cst.List, cst.Tuple) and seq.elements and \
                not any(type(e) is cst.StarredElement for e in seq.elements):
            parts = [self.ev(e.value) for e in seq.elements]
        elif c.first.elems is None and c.first.keyed is None and not c.first.const and c.first.computed:
            parts = [c.first]  # a list a loop appended to: what its items share (_list_holds)
        else:
            return None
        if any(p is UNKNOWN for p in parts):
            return None
        joined = parts_joined(parts)  # (merge alone keeps a max-shift either part has)
        return replace(joined, elems=None, keyed=None, value=UNKNOWN, tensor=True, computed=True,
                       const=all(p.const for p in parts), params=any(p.params for p in parts),
                       cut=joined.cut if all(p.cut for p in parts) else None,
                       cut_span=joined.cut_span if all(p.cut for p in parts) else None)

    def _q_maximum(self, c: _Call) -> V | None:
        if "torch.max" in c.names and ("dim" in c.kw or "keepdim" in c.kw or len(c.pos) == 2 and _names_dim(c.pos[1])):
            return None  # `torch.max(x, dim)`, `torch.max(x, d, keepdim=True)`: a reduction (_q_max)
        if len(c.pos) == 2 and self.num(c.pos[1]) is None:
            return replace(_combine(c.vals), clamped=True, tensor=True)
        return None

    def _q_divide(self, c: _Call) -> V | None:
        if len(c.pos) < 2:
            return None
        den = self.ev(c.pos[1])
        self.check_divide(c.node, c.first, den, c.pos[1], numerator=c.pos[0])
        return replace(_combine(c.vals), tensor=True, **ratio_of(c.first, den))

    def _q_reciprocal(self, c: _Call) -> V:
        if c.first.one_plus_exp and not c.first.const:
            self.add_305(c.node, "reciprocal(1 + exp(-x))", "sigmoid", (c.first,))
        return replace(_combine(c.vals), tensor=True)

    def _q_where(self, c: _Call) -> V | None:
        if len(c.pos) < 3:
            return None
        self.check_where(c.node, c.pos[1:3])
        self.mark_where_guarded(c.pos[0], c.pos[1])
        res = replace(_combine(c.vals[1:3]), tensor=True, safe_where=True, clamped=True)
        if _bounded_fill(self, c.pos[0], c.vals[0], c.pos[1], c.vals[2], "le") or \
                _bounded_fill(self, c.pos[0], c.vals[0], c.pos[2], c.vals[1], "gt"):
            res = replace(res, exp_safe=True)  # `torch.where(x <= 18, x, 0)`
        return res

    def _q_max(self, c: _Call) -> V | None:
        if c.names.isdisjoint(_MAX_REDUCTIONS) and len(c.pos) + len(c.kw) < 1:
            return None  # `torch.max()` with no argument: not a reduction we can read
        return _max_values(replace(_combine(c.vals), tensor=True, is_max=True), c, 1)

    def _q_zero_kept(self, c: _Call) -> V | None:
        """`torch.tanh(x)`, `F.leaky_relu(x)`...: zero only where x is, so the output of a learned
        projection stays one whose all-zero vector has probability zero (`dense`)."""
        if c.first_node is None:
            return None
        return replace(_combine([c.first]), tensor=True, dense=c.first.dense)

    def _q_transform(self, c: _Call) -> V | None:
        """`torch.stft(x, n_fft, window=self.win)`, `torch.fft.rfft(x)`: a linear transform of the
        signal, whose other arguments are settings (sizes, a window buffer) that carry no gradient
        of it; what the result is computed from is the signal alone (a loss's prediction reaches a
        spectrogram's magnitude: facts.losses). Zero where the signal is (a silent frame)."""
        if c.first_node is None:
            return None
        return self.x.derive_from([c.first], replace(_combine([c.first]), tensor=True, dense=c.first.dense))

    def _q_normalize(self, c: _Call) -> V | None:
        """`F.normalize(x)`: rows of unit length (V.normed). (Its elements reach ±1 only for a row
        along an axis: not taken as `bounded`, which a learned output's rows are not.)"""
        if c.first_node is None:
            return None
        dim = c.kw.get("dim", c.pos[2] if len(c.pos) > 2 else None)
        n = 1 if dim is None else self.num(dim)
        dim_n = int(n) if n is not None and n == int(n) else None
        return replace(_combine([c.first]), tensor=True, normed=True, normed_dim=dim_n, dense=c.first.dense)

    def _q_linear(self, c: _Call) -> V | None:
        """`F.linear(F.normalize(x), F.normalize(W))` (no bias): the cosines of x's rows with W's,
        exactly 1 for parallel rows (`bounded`); any other linear map as before."""
        return cosines(c.vals[0], c.vals[1]) if len(c.pos) == 2 and not c.kw else None

    def _q_cosine(self, c: _Call) -> V | None:
        """`F.cosine_similarity(a, b)`: in [-1, 1], exactly 1 for equal vectors (`bounded`)."""
        if len(c.vals) < 2:
            return None
        return replace(_combine(c.vals[:2]), tensor=True, unit="bounded")

    def _m_zero_kept(self, c: _Call) -> V:
        return replace(_combine([c.r]), tensor=True, dense=c.r.dense)

    def _q_autograd_grad(self, c: _Call) -> V | None:
        """`torch.autograd.grad(out, x, create_graph=True)`: the gradients are differentiable
        (a gradient penalty trains through them) whatever `out` is known to be, since autograd
        refuses inputs that require no grad; a tuple of unknown length (`grad, = ...`,
        `[0]`). Without create_graph: what the call gives by default."""
        if not self.is_true(c.kw.get("create_graph")):
            return None
        return V(params=True, tensor=True, computed=True)

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
        return replace(_combine([r]), exp=not (r.max_shifted or r.nonpos or r.exp_safe), tensor=True, const=r.const,
                       dense=True)

    def _square_value(self, r: V) -> V:
        if r.one_plus_exp:
            # `torch.pow(1 + exp(z), 2)`, `(1 + e).square()`: still inf once exp overflows (the
            # sigmoid's derivative written out: numerics_eval's binop)
            return replace(_combine([r]), tensor=True, one_plus_exp=True, const=r.const)
        return replace(_combine([r]), sq=True, tensor=True, dense=r.dense, pairs=r.pairs, unit=square_unit(r))

    def prob_value(self, kind: str, node: cst.Call, first: V) -> V:
        # softmax and sigmoid outputs are strictly positive: dense
        # (a sigmoid of a bounded argument, a cosine's, lies in an interval: engine/bounds.py)
        known = bounds.sigmoid(bounds.of(first)) if kind == "sigmoid" and first is not UNKNOWN else None
        return V(prob=kind, prob_node=node, tensor=True, computed=True, params=first.params, dense=True,
                 out=frozenset(), cut=first.cut, cut_span=first.cut_span, const=first.const,
                 param_cuts=first.param_cuts, bounds=known)

    def reduce_value(self, r: V, mean: bool, dims: list | None = None) -> V:
        """A sum or mean (`dims`: the dimension arguments as written, when known) of `r`."""
        res = replace(_combine([r]), tensor=True, rg=r.rg, dense=r.dense)
        if r.pairs and (r.sq or r.sumsq) and pair_reduction(dims or [], self.num):
            res = replace(res, pairs=True)  # `((e[:, None] - e[None]) ** 2).sum(-1)`: zero on the diagonal
        if r.cut_terms and not res.nograd:
            # a sum or mean is linear: `(log_pz + log_det.detach()).mean()` keeps the cut term
            res = replace(res, cut_terms=r.cut_terms)
        if r.sq or r.sumsq:
            res = replace(res, sumsq=True)
        if r.unit_terms is not None and dims is not None and len(dims) == 1 and dims[0] is not None \
                and self.num(dims[0]) == r.unit_terms:
            # `(F.normalize(a) * F.normalize(b)).sum(dim=1)`: a cosine, in [-1, 1] (so is its mean)
            res = replace(res, unit="bounded")
        if (r.exp or r.weighted) and not mean:
            res = replace(res, sum_exp=True, weighted=r.weighted)
        if mean and r.bounds is not None:
            res = replace(res, bounds=r.bounds, **bounds.safety(r.bounds))  # a mean stays between
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
                # (a variance clamped above 0 is no longer one its root may divide by at 0:
                # `w / var.clamp_min(eps).sqrt()`, weight standardisation)
                res = replace(res, clamped=True, sumsq=False, var=False)
            elif lo_n is not None and lo_n >= 0:
                res = replace(res, floored=True)
        if lo is not None and hi is not None:
            lo_strict = lo_n is None or lo_n > -1
            hi_strict = hi_n is None or hi_n < 1
            if lo_n is not None and hi_n is not None and (lo_n < -1 or hi_n > 1):
                res = replace(res, unit=None)
            else:
                res = replace(res, unit="strict" if lo_strict and hi_strict else "loose")
        lo_given = lo is not None and self.ev(lo).value is not None  # (not `min=None`)
        if (r.prob or r.out) and lo_given and not (lo_n is not None and lo_n <= 0):
            # a lower bound known to be 0 or less (`clamp(min=0)`, `lo = 0.0; clamp(lo, 1)`) leaves
            # a probability that underflows at 0, and so does an upper bound alone
            # (`clamp(max=1.0)`); a model's or a helper's output clamped above 0 is as safe to log
            # as a clamped probability
            res = replace(res, shifted=True)
        if r.prob and hi is not None and (hi_n is None or hi_n < 1):
            res = replace(res, capped=True)
        if hi_n is not None and hi_n <= bounds.EXP_SAFE:
            # `clamp(exponent, -50, 50)` (pytorch-metric-learning's temperature sigmoid): the exp
            # of it cannot overflow (of ten times it, it can: exp_safe, not max_shifted)
            res = replace(res, exp_safe=True)
        if lo_n is not None and lo_n >= -bounds.EXP_SAFE:
            res = replace(res, floor_safe=True)  # `z = x.clamp(-20, 20)`, then `exp(-z)`
        # A clip by settings (`th.clip(d, -self.threshold, self.threshold)`, imitation's preference
        # model, "clip to avoid overflows"; threshold 50 by default) is written to keep the exp
        # finite: no number is known for it here, and the finding would only say what it guards.
        if hi is not None and hi_n is None and setting_bound(hi, self.ev(hi)):
            res = replace(res, exp_safe=True)
        if lo is not None and lo_n is None and setting_bound(lo, self.ev(lo)):
            res = replace(res, floor_safe=True)
        known = bounds.clamped(r.bounds, lo_n if lo_given else None, hi_n, lo_given=lo_given,
                               hi_given=hi is not None and self.ev(hi).value is not None)
        if known is not None:
            res = replace(res, bounds=known, **bounds.safety(known))
        return res

    # -- methods of tensors and modules, by method name ------------------------------------------
    def _m_softmax(self, c: _Call) -> V:
        return self.prob_value("softmax", c.node, c.r)

    def _m_sigmoid(self, c: _Call) -> V | None:
        return None if c.pos else self.prob_value("sigmoid", c.node, c.r)

    def _m_log_softmax(self, c: _Call) -> V:
        return replace(_combine([c.r]), prob="log_softmax", tensor=True, nonpos=True)

    def _m_log(self, c: _Call) -> V | None:
        if c.pos or c.kw:
            return None
        self.check_log(c.node, c.recv, c.r)
        return logged(replace(_combine([c.r]), tensor=True), c.r)

    def _m_log1p(self, c: _Call) -> None:
        if not c.pos and c.r.exp and not c.r.nograd:
            self.add_305(c.node, "log1p(exp(x))", "softplus", (c.r,))

    def _m_exp(self, c: _Call) -> V | None:
        return None if c.pos else self._exp_value(c.r)

    def _m_reduce(self, c: _Call) -> V | None:
        dim = c.kw.get("dim", c.kw.get("axis", c.pos[0] if c.pos else None))  # (`axis`: numpy's name, which torch takes)
        return None if c.r.numpy else self.reduce_value(c.r, mean=c.meth == "mean", dims=[dim])

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
        res = replace(_combine([c.r]), tensor=True, safe_where=c.r.safe_where)  # (as _q_sqrt)
        return replace(res, norm="sqrt(var)") if c.r.var and c.meth == "sqrt" else res

    def _m_pow(self, c: _Call) -> V | None:
        if not c.pos:
            return None
        e = self.num(c.pos[0])
        if e == 0.5:
            self.check_sqrt(c.node, c.recv, c.r, ".pow(0.5)", need_tensor=False)
        return self._square_value(c.r) if e == 2 else None

    def _m_max(self, c: _Call) -> V:
        return _max_values(replace(_combine([c.r]), is_max=True, tensor=True), c, 0)

    def _m_neg(self, c: _Call) -> V | None:
        """`x.abs().neg()`, `(x ** 2).neg()`: as `-abs(x)` and `-x ** 2`, at most 0 (pyro's
        `logits.abs().neg().exp().log1p()`: exp of it cannot overflow)."""
        if c.pos or c.kw or c.recv is None:
            return None
        r = c.r
        if r.sq or r.sumsq or never_negative(c.recv) or (r.nonneg and not r.module):
            return replace(_combine([r]), tensor=r.tensor, nonpos=True)
        return None

    def _m_square(self, c: _Call) -> V | None:
        return None if c.pos else self._square_value(c.r)

    def _m_mul(self, c: _Call) -> V | None:
        """`x.mul(x)`: a square, as `x * x` is."""
        if len(c.pos) == 1 and not c.kw and c.recv is not None and self.x.code(c.recv) == self.x.code(c.pos[0]):
            return self._square_value(c.r)
        return unit_terms(c.r, c.vals[0]) if len(c.pos) == 1 and not c.kw else None  # a cosine's terms

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
        return replace(_combine([c.r, c.vals[0]]), tensor=True, **ratio_of(c.r, c.vals[0]))

    def _m_reciprocal(self, c: _Call) -> None:
        if c.r.one_plus_exp and not c.r.const:
            self.add_305(c.node, "(1 + exp(-x)).reciprocal()", "sigmoid", (c.r,))

    def _m_where(self, c: _Call) -> V | None:
        if len(c.pos) < 2:
            return None
        # x.where(cond, other): x is the kept branch
        self.check_where(c.node, [c.recv, c.pos[1]])
        self.mark_where_guarded(c.pos[0], c.recv)
        res = replace(_combine([c.r, c.vals[1]]), tensor=True, safe_where=True, clamped=True)
        return replace(res, exp_safe=True) if _bounded_fill(self, c.pos[0], c.vals[0], c.recv, c.vals[1], "le") else res

    def _m_masked_fill(self, c: _Call) -> V | None:
        """`x.masked_fill(~(x <= 18), 0)` (botorch's log1pexp): at most 18 everywhere, its exp
        cannot overflow. A mask of anything else (padding) leaves the generic method rule."""
        if len(c.pos) != 2 or not _bounded_fill(self, c.pos[0], c.vals[0], c.recv, c.vals[1], "gt"):
            return None
        return replace(_combine([c.r, *c.vals]), tensor=True, exp_safe=True)

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
            if type(target) is cst.Call and type(target.func) is cst.Attribute and \
                    target.func.attr.value == "scale" and target.args:
                target = target.args[0].value
            self.backward(c.node, target)
        return V(const=True)

    def _m_cutting(self, c: _Call) -> V:
        r, meth = c.r, c.meth
        if r.nograd:
            return replace(r, computed=True, through=frozenset())
        return V(cut=CUTTING_METHODS[meth], cut_span=c.span, tensor=meth.startswith(("detach", "arg", "round")),
                 params=r.params, leaf=meth.startswith("detach"), is_max=r.is_max and meth.startswith("detach"),
                 param_cuts=r.param_cuts | self._param_cut(c.recv, meth), computed=True)

    def _m_move(self, c: _Call) -> V:
        return c.r

    def _m_product(self, c: _Call) -> V | None:
        """`e.mm(e.t())`, `e.matmul(e.T)`: a product with its own transpose (V.gram); of two
        normalized tensors, cosines (`bounded`)."""
        if len(c.vals) == 1 and (made := cosines(c.r, c.vals[0])) is not None:
            return made
        if len(c.vals) == 1 and strictly_positive(c.r) and strictly_positive(c.vals[0]):
            return replace(_combine([c.r, *c.vals]), tensor=True, dense=True, nonneg=True)
        if not self_gram(c.node, self.x.code):
            return squares_product(self.x, c.r, c.vals[0]) if len(c.vals) == 1 else None
        return replace(_combine([c.r, *c.vals]), tensor=True, gram=True, dense=c.r.dense)

    def _q_product(self, c: _Call) -> V | None:
        """`torch.mm(e, e.t())`, `torch.matmul(e, e.T)` (V.gram); of two normalized tensors,
        cosines (`bounded`)."""
        if len(c.vals) == 2 and (made := cosines(c.vals[0], c.vals[1])) is not None:
            return made
        if len(c.vals) == 2 and strictly_positive(c.vals[0]) and strictly_positive(c.vals[1]):
            return replace(_combine(c.vals), tensor=True, dense=True, nonneg=True)
        if not self_gram(c.node, self.x.code):
            return squares_product(self.x, c.vals[0], c.vals[1]) if len(c.vals) == 2 else None
        return replace(_combine(c.vals), tensor=True, gram=True, dense=c.first.dense)

    def _m_gram_diag(self, c: _Call) -> V | None:
        """`dot.diag()`, `dot.diagonal()` of a product with its own transpose: the rows' sums of
        squares (numerics_pairs.gram_expansion)."""
        if not c.r.gram or c.pos or c.kw:
            return None
        return replace(_combine([c.r]), tensor=True, sumsq=True, dense=c.r.dense)

    def _q_gram_diag(self, c: _Call) -> V | None:
        """`torch.diag(dot)`, `torch.diagonal(dot)` (_m_gram_diag)."""
        if not c.first.gram or len(c.vals) != 1:
            return None
        return replace(_combine([c.first]), tensor=True, sumsq=True, dense=c.first.dense)

    def _m_pieces(self, c: _Call) -> V:
        """`x.split(1, dim=1)`, `x.chunk(3)`, `x.unbind(-1)`: pieces, each a selection of x."""
        kept = replace(self._kept(c.r, selects=True), pieces=True)
        return self._output_kept(c.r, self.x.derive_from([c.r], kept, kept=True))

    def _q_pieces(self, c: _Call) -> V | None:
        """`torch.split(x, 1, dim=1)`, `torch.chunk`, `torch.unbind`, `torch.tensor_split`."""
        if c.first_node is None:
            return None
        kept = replace(self._kept(c.first, selects=True), pieces=True)
        return self._output_kept(c.first, self.x.derive_from([c.first], kept, kept=True))

    def _m_keep(self, c: _Call) -> V:
        kept = self._kept(c.r, selects=c.meth in _SELECTIONS)
        return self._output_kept(c.r, self.x.derive_from([c.r], kept, kept=True))

    def _output_kept(self, r: V, out: V) -> V:
        """`out`, a selection or reshape of `r`: still the output of the model parameter that made
        `r` (`model(x).view(-1, 3, 3)`), for callers in other files (Call.args)."""
        ref = self.param_output(r)
        if ref is not None and out is not r:
            self.param_outputs[id(out)] = (out, ref)
        return out

    @staticmethod
    def _kept(r: V, selects: bool = False) -> V:
        """A selection (`selects`) or reshape of `r`: its elements, no longer a module or a
        criterion. A selection of pairwise distances (`d2.masked_select(off_diagonal)`) may leave
        the zero diagonal out: what it keeps are distances between different rows, taken as never
        0 (as a learned output is)."""
        pairs = r.pairs and not selects
        return replace(r, crit=None, callret=None, module=False, inst=frozenset(), dense=r.dense and not r.module,
                       nonneg=r.nonneg and not r.module,
                       tensor=r.tensor or bool(r.prob), pairs=pairs, clamped=r.clamped or r.pairs and not pairs)

    def _q_keep(self, c: _Call) -> V | None:
        if c.first_node is None:
            return None
        kept = self._kept(c.first, selects=any(name.rpartition(".")[2] in _SELECTIONS for name in c.names))
        return self._output_kept(c.first, self.x.derive_from([c.first], kept, kept=True))

    def _m_apply(self, c: _Call) -> V | None:
        if type(c.recv) is cst.Name and c.recv.value in self.x.autograd_classes:
            return V(computed=True, tensor=True)
        return None

    def _param_cut(self, recv_node: cst.BaseExpression, meth: str) -> frozenset:
        key = dotted(recv_node)
        if meth.startswith("detach") and key and key.startswith("self.") and key.count(".") == 1 and \
                self.cls and key[5:] in self.cls.params:
            return frozenset({(self.x.where(recv_node), key + ".detach()", f"{self.cls.name}.{key[5:]}")})
        return frozenset()


def _table(groups: list[tuple[frozenset[str] | dict, object]], ordered: bool) -> dict[str, tuple]:
    """name -> the handlers of the groups that hold it, in the order of `groups` (with that
    order's index when `ordered`: a call's names may hold several, tried in that order)."""
    out: dict[str, list] = {}
    for order, (group, handler) in enumerate(groups):
        for name in group:
            out.setdefault(name, []).append((order, handler) if ordered else handler)
    return {name: tuple(handlers) for name, handlers in out.items()}


T = TorchOps
_QUALIFIED_GROUPS: list = [
    (SOFTMAX, T._q_softmax), (SIGMOID, T._q_sigmoid), (LOG_SOFTMAX, T._q_log_softmax),
    (LOGSIGMOID, T._q_logsigmoid), (LOSS_FUNCTIONS, T._q_loss_function), (TARGET_LOSSES, T._q_target_loss), (LOSS_MODULES, T._q_loss_module),
    (PROB_MODULES, T._q_prob_module), (NONNEG_MODULES, T._q_nonneg_module), ({"torch.nn.Sequential"}, T._q_sequential),
    ({"torch.nn.ModuleList"}, T._q_module_list),
    (PARAMETER_CLASSES, T._q_parameter), (TENSOR_FROM_DATA, T._q_from_data),
    (VARIABLE, T._q_variable), (FACTORIES, T._q_factory), (CUTTING_FUNCTIONS, T._q_cutting),
    (MODEL_WRAPPERS, T._q_wrapped), ({"functools.partial"}, T._q_partial),
]
# Any other torch.nn class is a module: it comes after the groups above, before those below.
_MODULE_CLASS_ORDER = len(_QUALIFIED_GROUPS) - 1
_QUALIFIED_GROUPS += [
    ({"torch.log"}, T._q_log), ({"torch.log1p"}, T._q_log1p), ({"torch.exp"}, T._q_exp),
    ({"torch.sum", "torch.mean"}, T._q_reduce), ({"torch.sqrt", "torch.rsqrt"}, T._q_sqrt),
    (SCATTER_SUM_FUNCTIONS, q_scatter_sum),  # grouped sums: scatter_add, index_add, segment_csr
    ({"torch.pow"}, T._q_pow), ({"torch.square"}, T._q_square), ({"torch.mul", "torch.multiply"}, T._q_mul),
    ({"torch.norm", "torch.linalg.norm", "torch.linalg.vector_norm", "torch.frobenius_norm"}, T._q_norm),
    ({"torch.std"}, T._q_std), ({"torch.var"}, T._q_var),
    ({"torch.acos", "torch.asin", "torch.arccos", "torch.arcsin"}, T._q_acos),
    ({"torch.clamp", "torch.clip", "torch.clamp_min"}, T._q_clamp),
    ({"torch.maximum", "torch.fmax", "torch.max"}, T._q_maximum),
    ({"torch.div", "torch.true_divide", "torch.divide"}, T._q_divide), ({"torch.reciprocal"}, T._q_reciprocal),
    ({"torch.where"}, T._q_where), (_MAX_REDUCTIONS | {"torch.max"}, T._q_max),
    ({"torch.mm", "torch.matmul"}, T._q_product),
    ({"torch.stack", "torch.cat", "torch.concat", "torch.concatenate"}, T._q_joined),
    ({"torch.split", "torch.chunk", "torch.unbind", "torch.tensor_split"}, T._q_pieces), ({"torch.diag", "torch.diagonal"}, T._q_gram_diag),
    (KEEP_FUNCTIONS, T._q_keep),
    ({"torch.autograd.backward"}, T._q_backward), ({"torch.autograd.grad"}, T._q_autograd_grad),
    (_ZERO_KEPT, T._q_zero_kept), (SIGNAL_TRANSFORMS, T._q_transform),
    ({"torch.nn.functional.cosine_similarity", "torch.cosine_similarity"}, T._q_cosine),
    ({"torch.nn.functional.normalize"}, T._q_normalize), ({"torch.nn.functional.linear"}, T._q_linear),
]
_QUALIFIED = _table(_QUALIFIED_GROUPS, ordered=True)
_METHODS = _table([
    ({"softmax"}, T._m_softmax), ({"sigmoid"}, T._m_sigmoid), ({"log_softmax"}, T._m_log_softmax),
    ({"log"}, T._m_log), ({"log1p"}, T._m_log1p), ({"exp"}, T._m_exp), ({"sum", "mean", "nansum"}, T._m_reduce),
    ({"add", "add_"}, T._m_add), ({"sqrt", "rsqrt"}, T._m_sqrt), ({"pow", "pow_"}, T._m_pow),
    (SCATTER_SUM_METHODS, m_scatter_sum),
    ({"max", "amax", "logsumexp"}, T._m_max), ({"square"}, T._m_square), ({"mul", "multiply"}, T._m_mul),
    ({"neg", "negative"}, T._m_neg),
    ({"norm"}, T._m_norm),
    ({"std"}, T._m_std), ({"var"}, T._m_var),
    ({"acos", "asin", "arccos", "arcsin", "acos_", "asin_"}, T._m_acos),
    ({"clamp", "clip", "clamp_", "clip_"}, T._m_clamp), ({"clamp_min", "clamp_min_"}, T._m_clamp_min),
    ({"div", "div_", "true_divide", "divide"}, T._m_divide), ({"reciprocal"}, T._m_reciprocal),
    ({"where"}, T._m_where), ({"masked_fill"}, T._m_masked_fill), ({"requires_grad_"}, T._m_requires_grad),
    ({"backward", "manual_backward"}, T._m_backward), (CUTTING_METHODS, T._m_cutting),
    ({"mm", "matmul"}, T._m_product), ({"split", "chunk", "unbind", "tensor_split"}, T._m_pieces), ({"diag", "diagonal"}, T._m_gram_diag),
    (_MOVE, T._m_move), (KEEP, T._m_keep), ({"apply"}, T._m_apply),
    ({"tanh", "tanh_", "atan", "sinh", "asinh"}, T._m_zero_kept),
], ordered=False)
del T
