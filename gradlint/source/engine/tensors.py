"""Tensors with properties: the engine's value for what code computes from tensors.

A `V` holds what is known of an expression's value: a probability or log-probability (softmax,
sigmoid, hand-written), a loss module, the output of a model class, whether it depends on
parameters (module outputs, nn.Parameter, leaf tensors made to require grad), whether it is cut
from the graph (.item(), .detach(), numpy) and where, and the elements of a tuple. `merge` joins
two branches so that a property holds only when it holds on both (precision first); `UNKNOWN`
knows nothing and never becomes a finding. A value of plain Python (a number within budget, a
string, None, a bool, a tuple of them) is carried as `V.value`, the engine's plain value
(engine/fold.py folds it): a number bound to a name counts where the name is read. `Where` is a
node whose position is resolved only when a finding reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from dataclasses import replace as _replace_record
from typing import Any

import libcst as cst

from gradlint.findings import SourceSpan
from gradlint.source.engine import bounds
from gradlint.source.engine.bounds import hull
from gradlint.source.engine.values import UNKNOWN, Unknown, is_number


class Where:
    """A node's position, computed only when a finding reports it.

    Positions cost more than the rest of the walk (measured on timm's vision_transformer.py:
    half of the whole extraction went to spans of values that never became a finding), so a
    value keeps where it was cut as the node, and the span is resolved on first use.
    """

    __slots__ = ("node", "_src", "_span")

    def __init__(self, src, node: cst.CSTNode) -> None:
        self.node = node
        self._src = src
        self._span: SourceSpan | None = None

    @property
    def span(self) -> SourceSpan:
        if self._span is None:
            self._span = self._src.span(self.node)
        return self._span

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def column(self) -> int:
        return self.span.column


@dataclass(frozen=True)
class V:
    """The abstract value of an expression: only what the rules need, every field a fact."""

    prob: str | None = None  # softmax / sigmoid / one_minus_sigmoid / log_softmax / logsigmoid
    prob_node: cst.Call | None = None  # the call that made it, when inline (for fixes)
    shifted: bool = False  # eps-shifted or clamped probability
    # a quotient with an unguarded probability of this kind (softmax, sigmoid...) for an operand
    # (`p / q`, `p / p.sum()`): exactly 0 or inf once that probability underflows
    ratio: str | None = None
    # ... for its divisor (`p / q`, `x / q`): inf once q underflows, and the division's backward
    # NaN whatever comes after (an eps added, a clamp, a mask), so kept through them
    ratio_den: str | None = None
    capped: bool = False  # a probability clamped below 1 (`clamp(eps, 1 - eps)`): 1 - p stays > 0
    inst: frozenset[str] = frozenset()  # an instance of these user classes
    out: frozenset[str] = frozenset()  # the output of calling an instance of these classes
    crit: str | None = None  # a loss module instance: ce / bce / bce_logits
    crit_node: cst.Call | None = None
    # a loss module class named as a value (`nn.BCELoss`, `LOSSES["bce"]` of a dict display of
    # classes): calling it makes that criterion (`crit`), which no fix renames
    crit_class: str | None = None
    # a class of this file held as a value (`{"mlp": MLP}`, a registry its decorator fills):
    # calling it makes an instance of that class (`inst`), as `MLP()` does
    local_class: str | None = None
    callret: str | None = None  # a module whose call returns this probability kind
    module: bool = False  # a known nn.Module instance
    # an nn.Sequential (numerics_sequential): a module added after its last (`add_module`,
    # `append`) is what its call then ends with
    seq: bool = False
    sq: bool = False  # a square
    sumsq: bool = False  # a sum or mean of squares
    # exactly 0 somewhere whatever the operands hold: the pairwise differences of one tensor with
    # itself, their squares and sums over the features, and the squared distances by expansion
    # (source/numerics_pairs.py): a learned layer's output does not keep their root from 0
    pairs: bool = False
    # a tensor's product with its own transpose (`e @ e.t()`, `torch.mm(e, e.T)`), or a number
    # times one: its diagonal is the rows' sums of squares (`torch.diag(dot)`: numerics_pairs)
    gram: bool = False
    # pieces of one tensor (`torch.split(x, 1, dim=1)`, `x.chunk(3)`, `x.unbind(-1)`): each piece,
    # unpacked or indexed, is what a selection of the tensor is
    pieces: bool = False
    # rows scaled to unit length (`F.normalize(x)`): a product of two such (`F.linear(F.normalize(x),
    # F.normalize(W))`, ArcFace's logits) is a cosine, exactly ±1 for parallel rows
    normed: bool = False
    # the dimension F.normalize scaled along (its default 1), when a literal
    normed_dim: int | None = None
    # an elementwise product of two tensors normalised along the same dimension
    # (`F.normalize(a) * F.normalize(b)`, `torch.mul(...)`): that dimension. Its sum over it is
    # a cosine, in [-1, 1] (Cauchy-Schwarz); a sum over another dimension is not
    unit_terms: int | None = None
    # 1 - c² of a c that reaches ±1 exactly (a cosine): exactly 0 there, as a sum of squares is
    # at 0, so its root's gradient is NaN (ArcFace's `sine = sqrt(1 - cos²)`)
    sine: bool = False
    # a product of two norms (`a.norm(dim=-1) * b.norm(dim=-1)`): what a hand-written cosine
    # divides by, so the quotient lies in [-1, 1] up to rounding (unit 'bounded')
    norms: bool = False
    # clamped from below at 0 or more (`clamp(min=0)`, `clamp(0, 1)`): never negative, so any
    # positive eps added keeps it off 0 (a sine's `(1 - cos**2).clamp(0, 1) + 1e-12`)
    floored: bool = False
    # a sine plus an eps too small to keep it off 0 (`1 - cos ** 2 + 1e-12`: numerics_eval)
    thin_eps: bool = False
    norm: str | None = None  # 'x.norm()', 'x.std()', 'sqrt(var)'
    var: bool = False
    exp: bool = False
    one_plus_exp: bool = False
    sum_exp: bool = False
    # a sum over groups of elements (`scatter_add(src, index)`, `index_add`, `segment_csr`), not
    # over a dimension: a softmax with it for denominator is one per group
    grouped: bool = False
    # an exp weighted (`exp(a) * w`, w a probability, an exp, non-negative or a positive number),
    # or a sum of such: a sum of them under a log is a log-sum-exp (`logsumexp(a + log(w))`),
    # but no sigmoid or softmax written out (`exp` is off for it)
    weighted: bool = False
    max_shifted: bool = False  # x - x.max(): the stable log-sum-exp shift
    # at most a number its exp cannot overflow at (80): clamped there or masked (`clamp(max=50)`,
    # `x.masked_fill(~(x <= 18), 0)`); unlike a max-shifted value, one that is at most 0, not kept
    # through a positive scale (`10 * x.clamp(max=18)` reaches 180)
    exp_safe: bool = False
    # at least -80 (`clamp(min=-20)`, `clamp(x, -20, 20)`): the exp of its negation cannot overflow
    floor_safe: bool = False
    nonpos: bool = False  # never above 0 (-x**2, -0.5 * (x / s) ** 2): its exp cannot overflow
    # the numbers every element lies between (engine/bounds.py: a clamp with numbers, arithmetic
    # on it, a log of a positive one, a mean): `clamp(eps, 1 - eps)` then the log-odds are
    # within ±13.8 for eps = 1e-6
    bounds: tuple[float, float] | None = None
    # never below 0: the output of an nn.ReLU, ReLU6 or Softplus module; for a module, that its
    # call's output is (`self.relu = nn.ReLU()`: `exp(-self.relu(h))` cannot overflow)
    nonneg: bool = False
    # The modules (as written: `D`, `self.disc`) called on the way to this value since its last
    # cut: where its gradient goes. A cut term that then passes through a module the rest of the
    # loss also trains (`bce(D(real), 1) + bce(D(fake.detach()), 0)`) trains that module.
    through: frozenset[str] = frozenset()
    is_max: bool = False  # x.max(...), torch.amax(...)
    const: bool = False  # literal or built from literals/factories: no gradient
    cut: str | None = None  # why no gradient flows (".item()", ".detach()", "torch.tensor(...)"...)
    cut_span: Where | None = None
    numpy: bool = False
    tensor: bool = False
    clamped: bool = False  # bounded away from 0 (clamp(min>0), + eps, maximum(x, eps))
    # in [-1, 1]: clamped with a margin ('strict') or to [-1, 1] ('loose'); 'bounded': so by what
    # made it (a cosine similarity: equal vectors give 1), unclamped
    unit: str | None = None
    params: bool = False  # computed from self.* (a module's parameters)
    # The class's own parameters read as `self.w.detach()` or `self.w.data` on the way to this
    # value: (where, the text as written, 'Class.w').
    param_cuts: frozenset[tuple[Where, str, str]] = frozenset()
    # The class's own parameters ('Class.w') read with their graph on the way to this value, on
    # some path: one cut in a term (`(t - self.a.detach()) * p`) still trains through another
    # (`(t - self.a) ** 2`) when both reach the output (libauc's MIDAM losses). Meaningful only on
    # a value that is not cut itself (`live_params`); kept out of comparisons, as merge's first
    # test compares values, and joined there by hand.
    live: frozenset[str] = field(default=frozenset(), compare=False)
    rg: frozenset[tuple[Where, str]] = frozenset()  # requires_grad set on a computed value
    computed: bool = False  # made by an operation (not a parameter, literal, or factory)
    leaf: bool = False  # a fresh leaf: factory, Parameter, .detach() result
    safe_where: bool = False  # torch.where(m, x, safe): the double-where guard
    # A boolean mask true exactly where a local tensor is at most ("le") or above ("gt") a
    # number: (its name, "le" or "gt", the number, the name's version and the loop and lambda
    # depths where it was compared: FunctionWalk.versions). Filling the values above with a number
    # (`x.masked_fill(~(x <= 18), 0)`, botorch's log1pexp) bounds the result from above; a
    # padding mask, made of something else, bounds nothing. (Compared: two branches' masks of
    # other bounds join to none.)
    mask_of: tuple[str, str, float, int, int, int] | None = None
    # Terms of a sum that are cut from the graph (`aux.item()`, `reg.detach()`) while another
    # term may carry gradient: (where it was cut, how). Only sums and differences keep them: a
    # cut value used inside a computation (`(pred - target.detach()) ** 2`) is a stop-gradient.
    cut_terms: frozenset[tuple[Where, str]] = frozenset()
    # the two operands of the sum that added a cut term (merge: a path that adds it to the value
    # the other path keeps, `if adv: loss = loss + adv_loss.item()`)
    addends: tuple[V, V] | None = field(default=None, compare=False)
    # The output of a learned layer, or a square, sum, norm or positive probability made from
    # one: an all-zero vector there has probability zero, so 0/0 and sqrt(0) are not a hazard
    # (CLIP-style `emb / emb.norm()` on a projection's output; measured on the corpus: every
    # such division was harmless).
    dense: bool = False
    # an nn.ModuleList whose every item is an instance of one of these classes (empty: none put
    # there yet; None: an item of another kind, or not known): an item taken by an index is one
    # (`self.schedulers[i]`: numerics_sequential)
    holds: frozenset[str] | None = None
    # a tuple or list of known length: what each element is (`return validity, label`)
    elems: tuple[V, ...] | None = None
    # a dict display whose keys are all strings: what each key holds (`{"cls": nn.CrossEntropyLoss()}`
    # then `criteria["cls"](probs, y)`), kept, as elems, only where a value is a probability, a
    # model's output or a criterion
    keyed: tuple[tuple[str, V], ...] | None = None
    # `out` is this element of the classes' output (`a, b = model(x)`, `model(x)[1]`)
    out_elem: int | None = None
    # What a call of a top-level function of this file gave (its name, and the element of its
    # tuple return taken apart: `loss, log = criterion(...)`; -1 for the whole value): a loss
    # the callee cut is judged where the caller backpropagates it (Extractor.backpropagated)
    returned: tuple[str, int | str] | None = None  # (an int: a tuple element; a str: a dict entry)
    # The plain value (a number within budget, a string, None, a bool, a tuple of them) when one
    # is known: `p = 0.5; x ** p` is a root, `eps = 0; log(x + eps)` has no eps. UNKNOWN when not.
    value: Any = UNKNOWN

    @property
    def nograd(self) -> bool:
        return self.const or self.cut is not None


_V_FIELDS = frozenset(f.name for f in fields(V))
_V_DEFAULTS = {f.name: f.default for f in fields(V)}  # all immutable: None, False, frozenset()
_NOTHING: frozenset = frozenset()


def _v_new(cls, **values):
    """A value that knows something, or `UNKNOWN` (the engine's one bottom) when every property
    given is at its "not known" default: a `V` never stands for nothing known."""
    for v in values.values():
        if (v or (v is not None and v is not False and type(v) is not frozenset)) and v is not UNKNOWN:
            return object.__new__(cls)
    return UNKNOWN


def _knows_nothing(state: dict) -> bool:
    for v in state.values():
        if (v or (v is not None and v is not False and type(v) is not frozenset)) and v is not UNKNOWN:
            return False
    return True


def same_value(a: Any, b: Any) -> bool:
    """Two plain values are one (a join keeps it): equal and of one type (1, 1.0 and True are
    equal in Python but not one value to a rule that reads an int index or a bool flag)."""
    return a is b or (type(a) is type(b) and a == b)


def join_value(a: Any, b: Any) -> Any:
    """The plain value of a join: equal values stay, different ones give UNKNOWN."""
    return a if same_value(a, b) else UNKNOWN


def number_of(v: Any) -> float | None:
    """The number a value holds (as a float, as the numerics sites compare it), else None."""
    n = v.value
    return float(n) if is_number(n) else None


def _v_init(self, **values) -> None:
    """V's constructor: a frozen dataclass's sets each of its fields through
    object.__setattr__, and a V is made for nearly every expression."""
    if not values.keys() <= _V_FIELDS:
        raise TypeError(f"V has no field {sorted(values.keys() - _V_FIELDS)[0]!r}")
    state = self.__dict__
    state.update(_V_DEFAULTS)
    state.update(values)


V.__new__ = _v_new  # type: ignore[method-assign]
V.__init__ = _v_init  # type: ignore[method-assign]
# The unknown value reads as a value with no property: merge, _combine and every rule's test of a
# property take it as they take a tensor nothing is known of.
Unknown.reads({**_V_DEFAULTS, "nograd": False})


def open_value(carrying: V | None = None) -> V:
    """A fresh value standing for one parameter no caller of its file binds: nothing is known of
    it (it reads like `UNKNOWN`), but its identity names the parameter, so that a site on it can
    say which one (source/numerics.py `Extractor.open_params`). `carrying`: what the callers of
    its file pass when that is a model's output (`passed_tensor`): the open value carries its
    gradient, and what the output is (a probability...) stays with the callers' join."""
    new = object.__new__(V)
    new.__dict__.update(_V_DEFAULTS)
    if carrying is not None:
        new.__dict__.update(params=True, tensor=True, computed=carrying.computed, dense=carrying.dense)
    return new


def _is_open(v) -> bool:
    return type(v) is V and v.__dict__ == _V_DEFAULTS


def knows_nothing(v) -> bool:
    """`UNKNOWN`, or an open parameter (unknown too, with an identity)."""
    return v is UNKNOWN or _is_open(v)
# a leaf made to require grad (`torch.zeros(..., requires_grad=True)`, `W.requires_grad_()`)
_TRAINABLE = V(leaf=True, tensor=True, params=True)
# The cut of a value computed from parameters, detached, then made to require grad again
# (`loss = loss.detach(); loss.requires_grad = True`): backward runs and reaches no parameter
# (a detached loss alone fails loudly in backward, which is why `.detach()` is no graph break).
DETACHED_THEN_REQUIRED = ".detach(), then requires_grad set again"


def broken_before_required(v: V) -> bool:
    """Whether setting requires_grad on `v` hides a graph already broken: a value computed with
    grad, or one computed from parameters under torch.no_grad() (`requires_grad_()` then makes it
    a leaf that reaches no parameter: backward runs and trains nothing)."""
    return v.computed and not v.leaf and (not v.nograd or (v.cut == "torch.no_grad()" and v.params))


def required_again(v: V) -> V | None:
    """`v` after its requires_grad is set again, when it is a detached computation (of parameters,
    or of anything a call made: `criterion(model(x), y).detach()` with `model` a parameter): as
    the loss itself, backward then starts from a new leaf and reaches nothing."""
    return replace(v, cut=DETACHED_THEN_REQUIRED) if v.cut == ".detach()" and (v.params or v.computed) else None


def replace(obj, /, **changes):
    """dataclasses.replace; for a V (made for nearly every expression) a copy of its fields,
    without the generic per-field machinery that cost more than the walk around it."""
    if obj is UNKNOWN:
        return V(**changes)
    if type(obj) is not V:
        return _replace_record(obj, **changes)
    if not changes.keys() <= _V_FIELDS:
        raise TypeError(f"V has no field {sorted(changes.keys() - _V_FIELDS)[0]!r}")
    new = object.__new__(V)
    state = new.__dict__
    state.update(obj.__dict__)
    state.update(changes)
    if _knows_nothing(changes) and _knows_nothing(state):
        return UNKNOWN
    return new


_UNDERFLOWS = ("softmax", "sigmoid", "one_minus_sigmoid")


def ratio_of(num: V, den: V) -> dict:
    """V.ratio and V.ratio_den of a quotient: the probability kind of its unguarded probability
    operand, and of its divisor's. A KL divergence written `(p / q).log()` is -inf where p
    underflows and inf where q does (both NaN gradients, measured in torch 2.13 with logits of
    scale 10 over 1 000 classes). A probability of constants (a fixed prior) is no hazard."""
    found = [v.prob if v.prob in _UNDERFLOWS and not v.shifted and not v.const else None for v in (num, den)]
    return {"ratio": found[0] or found[1], "ratio_den": found[1] or num.ratio_den or den.ratio_den}


def _combine(vals: list[V]) -> V:
    """Generic result of an operation on these operands: no gradient only if none carries one."""
    if not vals:
        return V(computed=True)
    # One pass over the operands, and the value made as `replace` makes one (it is never
    # UNKNOWN: `computed`): a seventh of the numerics walk of a large model file went to the
    # seven generator passes and the keyword construction this replaces.
    const = all_nograd = True
    numpy = tensor = params = False
    first_cut = None
    param_cuts = rg = through = live = _NOTHING
    for v in vals:
        if v.const:
            pass
        elif v.cut is None:
            const = all_nograd = False
        else:
            const = False
        if first_cut is None and v.cut is not None:
            first_cut = v
        if v.numpy:
            numpy = True
        if v.tensor:
            tensor = True
        if v.params:
            params = True
        if v.param_cuts:
            param_cuts = param_cuts | v.param_cuts
        if v.live and v.cut is None and not v.const:
            live = live | v.live
        if v.rg:
            rg = rg | v.rg
        if v.through:
            through = through | v.through
    new = object.__new__(V)
    state = new.__dict__
    state.update(_V_DEFAULTS)
    cut = all_nograd and first_cut is not None
    state.update(const=const, cut=first_cut.cut if cut else None, cut_span=first_cut.cut_span if cut else None,
                 numpy=numpy, tensor=tensor, params=params, param_cuts=param_cuts, rg=rg, computed=True,
                 through=through, live=live)
    return new


def live_params(v: V) -> frozenset[str]:
    """The class parameters `v` reaches with their graph (V.live): none when `v` itself is cut or
    a constant, whatever it was made of."""
    return v.live if v.cut is None and not v.const else _NOTHING


def same(a: V, b: V) -> bool:
    """Whether two values are the same value (their plain values compared as same_value does)."""
    return a is b or (a == b and same_value(a.value, b.value))


def merge(a: V, b: V) -> V:
    """A value that is `a` on one path and `b` on another: hazards must hold on both."""
    if same(a, b) or (a is UNKNOWN and _is_open(b)) or (
            b is UNKNOWN and _is_open(a)):
        if a is not UNKNOWN and not b.live <= a.live:
            return replace(a, live=a.live | b.live)  # (`same` does not compare them)
        return a  # an open parameter is unknown elsewhere: the first one's identity is kept
    # An empty list display on one path (`avg = []` before a loop that appends) holds no value:
    # what is taken from the list is what the other path put in it. Its constness is vacuous, and
    # read as "a constant on one path" it made the stacked items of a loop safe (torchfields'
    # hand-written softmin over `torch.stack(avg)`, seung-lab/torchfields#18).
    if a.elems == () and b.elems is None and b.computed and not b.const:
        return b
    if b.elems == () and a.elems is None and a.computed and not a.const:
        return a
    # cut on both paths, or on one and a plain number on the other (`adv = 0; if ...: adv =
    # x.item()`): no gradient on either, and a cut where it was computed
    cut = a if a.cut and (b.cut or _plain_number(b)) else b if b.cut and _plain_number(a) else None
    return V(
        prob=a.prob if a.prob == b.prob else None,
        prob_node=a.prob_node if a.prob_node is b.prob_node else None,
        shifted=a.shifted or b.shifted,
        ratio=a.ratio if a.ratio and b.ratio else None,
        ratio_den=a.ratio_den if a.ratio_den and b.ratio_den else None,
        capped=a.capped or b.capped,
        inst=a.inst & b.inst,
        out=a.out & b.out if a.out_elem == b.out_elem else frozenset(),
        out_elem=a.out_elem if a.out_elem == b.out_elem else None,
        holds=a.holds | b.holds if a.holds is not None and b.holds is not None else None,
        elems=tuple(merge(p, q) for p, q in zip(a.elems, b.elems))
        if a.elems is not None and b.elems is not None and len(a.elems) == len(b.elems) else None,
        keyed=tuple((k, merge(p, q)) for (k, p), (_, q) in zip(a.keyed, b.keyed))
        if a.keyed is not None and b.keyed is not None and [k for k, _ in a.keyed] == [k for k, _ in b.keyed] else None,
        crit=a.crit if a.crit == b.crit else None,
        crit_node=a.crit_node if a.crit_node is b.crit_node else None,
        crit_class=a.crit_class if a.crit_class == b.crit_class else None,
        local_class=a.local_class if a.local_class == b.local_class else None,
        callret=a.callret if a.callret == b.callret else None,
        module=a.module and b.module,
        seq=a.seq and b.seq,
        sq=a.sq and b.sq,
        sumsq=a.sumsq and b.sumsq,
        pairs=a.pairs and b.pairs,
        gram=a.gram and b.gram,
        pieces=a.pieces and b.pieces,
        normed=a.normed and b.normed,
        normed_dim=a.normed_dim if a.normed_dim == b.normed_dim else None,
        unit_terms=a.unit_terms if a.unit_terms == b.unit_terms else None,
        sine=a.sine and b.sine,
        # (safe for an eps only when clamped, at 0 or above, on both paths)
        floored=(a.floored or a.clamped) and (b.floored or b.clamped),
        thin_eps=a.thin_eps or b.thin_eps,
        norm=a.norm if a.norm == b.norm else None,
        var=a.var and b.var,
        exp=a.exp and b.exp,
        one_plus_exp=a.one_plus_exp and b.one_plus_exp,
        sum_exp=a.sum_exp and b.sum_exp,
        grouped=a.grouped and b.grouped,
        weighted=a.weighted and b.weighted,
        max_shifted=a.max_shifted or b.max_shifted,
        exp_safe=a.exp_safe and b.exp_safe,
        floor_safe=a.floor_safe and b.floor_safe,
        nonpos=a.nonpos and b.nonpos,
        nonneg=a.nonneg and b.nonneg,
        bounds=hull(a.bounds, b.bounds),
        through=a.through & b.through,
        is_max=a.is_max and b.is_max,
        # (a term cut on one path and a plain number on the other is no deliberate constant)
        const=a.const and not (b.cut and _plain_number(a)) or b.const and not (a.cut and _plain_number(b)),
        cut=cut.cut if cut is not None else None,
        cut_span=cut.cut_span if cut is not None else None,
        numpy=a.numpy or b.numpy,
        tensor=a.tensor and b.tensor,
        clamped=a.clamped or b.clamped,
        unit=a.unit if a.unit == b.unit else ("strict" if "strict" in (a.unit, b.unit) else None),
        params=a.params or b.params,
        param_cuts=a.param_cuts & b.param_cuts,
        # (trained on either path: a parameter the output reaches on one path gets a gradient there)
        live=live_params(a) | live_params(b),
        rg=a.rg & b.rg,
        computed=a.computed and b.computed,
        leaf=a.leaf or b.leaf,
        safe_where=a.safe_where or b.safe_where,
        # (a path on which nothing trainable reaches the value cannot make it a hazard: a loop over
        # the layers that may run no time leaves the input there, the layers' output elsewhere)
        dense=(a.dense or not a.params) and (b.dense or not b.params) if a.params or b.params else a.dense and b.dense,
        cut_terms=_joined_cut_terms(a, b),
        value=join_value(a.value, b.value),
    )


def _joined_cut_terms(a: V, b: V) -> frozenset:
    """The cut terms of a sum on both paths; all of one path's when the other path's value is the
    very value that path added them to (`loss = l1; if adv: loss = l1 + adv_loss.item()`: the
    term is cut wherever it is added). A term cut on one path and live on the other (`main +
    reg.detach()` while warming up, `main + reg` after) is not one of them."""
    if a.cut_terms and a.addends is not None and (a.addends[0] is b or a.addends[1] is b):
        return a.cut_terms
    if b.cut_terms and b.addends is not None and (b.addends[0] is a or b.addends[1] is a):
        return b.cut_terms
    return a.cut_terms & b.cut_terms


def _plain_number(v: V) -> bool:
    """A Python number written as one (`adv = 0`): no tensor, no gradient, nothing cut."""
    return v.const and not v.tensor and type(v.value) in (int, float) and v.cut is None and not v.params


def _passed(v: V) -> V:
    """What an argument (or a member) keeps when it becomes a parameter: whether it is a model or
    a criterion; any other value stays unknown, as a parameter always was."""
    if not (v.inst or v.crit or v.callret or v.module):
        return UNKNOWN
    return V(inst=v.inst, crit=v.crit, callret=v.callret, module=v.module, leaf=v.leaf, nonneg=v.nonneg and v.module)


def passed_tensor(v: V) -> V:
    """What an argument keeps when every caller of this file passes it to a parameter
    (`numerics.Extractor.binding`): a model or a criterion as `_passed` keeps it, a number, or a tensor
    computed from parameters, which carries their gradient into the function (`def dist(e1, e2):
    return torch.sqrt(((e1 - e2) ** 2).sum(1))` called with two model outputs). What it is beyond
    that (a probability, a model's output) stays with the callers' join of open parameters."""
    kept = _passed(v)
    if kept is UNKNOWN and v.const and type(v.value) in (int, float):
        return V(const=True, value=v.value)  # a number every caller passes (or the default: `eps=1e-3`)
    if kept is not UNKNOWN or not (v.params and v.tensor) or v.nograd or v.prob or v.elems is not None \
            or v.keyed is not None:
        return kept
    # (and how it is bounded: a caller's `cos.clamp(-1 + eps, 1 - eps)` keeps acos safe inside)
    # (a trainable parameter passed as it is, `self.constraint(self.kernel)`, stays a leaf: what
    # the function cuts of it is the caller's parameter, GL403's input cut)
    return V(params=True, tensor=True, computed=v.computed, dense=v.dense, out=v.out, out_elem=v.out_elem,
             unit=v.unit, clamped=v.clamped, leaf=v.leaf and not v.computed)


def logged(res: V, of: V) -> V:
    """`res`, a log of `of`, with the interval of a bounded positive operand's log (engine/bounds.py)."""
    known = bounds.log(of.bounds) if of is not UNKNOWN else None
    return replace(res, bounds=known, **bounds.safety(known)) if known is not None else res


def cosines(a: V, b: V) -> V | None:
    """The product of two normalized tensors (V.normed: `F.linear(F.normalize(x), F.normalize(W))`,
    `xn @ wn.t()`, `torch.mm(xn, wn.T)`): cosines, exactly ±1 for parallel rows (unit
    'bounded'); None when either is not normalized."""
    if not (a.normed and b.normed):
        return None
    return replace(_combine([a, b]), tensor=True, unit="bounded")


def unit_terms(a: V, b: V) -> V | None:
    """The elementwise product of two tensors normalised along the same literal dimension
    (`F.normalize(a) * F.normalize(b)`): summed over that dimension, a cosine (V.unit_terms)."""
    if not (a.normed and b.normed) or a.normed_dim is None or a.normed_dim != b.normed_dim:
        return None
    return replace(_combine([a, b]), tensor=True, unit_terms=a.normed_dim)


def weighted_squares(a: V, b: V) -> V | None:
    """A matrix product with squares (or sums of them) for one factor (`obm @ spec ** 2`: the
    one-third-octave bands of a power spectrum, a mel filterbank over one): weighted sums of
    squares, exactly 0 wherever the squares are all 0 (a silent band, a padded frame) whatever the
    weights, so their root's gradient is NaN there as a plain sum's is. None when neither factor
    is such squares, or when they carry no gradient and may hold no zero (a constant table)."""
    squares = a if (a.sq or a.sumsq) else b if (b.sq or b.sumsq) else None
    if squares is None or squares.nograd:
        return None
    return replace(_combine([a, b]), tensor=True, sumsq=True, dense=squares.dense)


def square_unit(v: V) -> str | None:
    """The unit a square of `v` keeps: a value that reaches ±1 (a cosine, one clamped to [-1, 1])
    squares to one that reaches 1 (`1 - cos ** 2` is then 0 there: V.sine). A strict margin is
    not kept: it says nothing of how far the square is from 0 (`log(c ** 2)` of a c clamped to
    (-0.99, 0.99) is still -inf at c = 0)."""
    return v.unit if v.unit in ("bounded", "loose") else None


# The facts that make a value safe for some hazard (shifted by its max, clamped, bounded, never
# negative...). merge keeps several of them when either path has them ("hazards must hold on
# both"); a value made of several parts (torch.cat, a list's items) has one only when every part does.
SAFETY_FACTS = ("shifted", "capped", "max_shifted", "clamped", "exp_safe", "floor_safe", "nonpos", "nonneg", "floored",
                "safe_where", "dense")


def every_part(parts: list[V], joined: V) -> V:
    """`joined` with each of SAFETY_FACTS kept only where every part has it."""
    return replace(joined, **{f: all(getattr(p, f) for p in parts) for f in SAFETY_FACTS})


def parts_joined(parts: list[V]) -> V:
    """A value made of several parts (torch.cat's, a list's items): merge's join of them, with a
    safety fact only where every part has it."""
    out = parts[0]
    for p in parts[1:]:
        out = merge(out, p)
    return every_part(parts, out)


def merge_env(a: dict[str, V], b: dict[str, V]) -> dict[str, V]:
    out: dict[str, V] = {}
    for key in a.keys() | b.keys():
        x, y = a.get(key, UNKNOWN), b.get(key, UNKNOWN)
        # merge's first test, without the call: most names hold the same value on both branches
        out[key] = x if x is y else merge(x, y)
    return out


def _item(val: V, i: int) -> V | None:
    """Element `i` of a tuple value (cut where the tuple was: made under no_grad), or of a model's
    output (which the run index settles: a tuple's element, or rows of a tensor); None if unknown."""
    if val.pieces:
        return replace(val, pieces=False)
    if val.elems is not None:
        if not -len(val.elems) <= i < len(val.elems):
            return None
        e = val.elems[i]
        if val.cut is not None and not e.nograd:
            e = replace(e, cut=val.cut, cut_span=val.cut_span)
        return e
    if val.out and val.out_elem is None:
        return replace(val, out_elem=i)
    return None
