"""Signal propagation over the IR: predicted backward gradient gain of each chain of layers.

For chain layer l with pre-activation z_l = W_l h_{l-1} + b_l and post-activation
h_l = phi_l(z_l) (phi_l: the composition of the activations between layer l and the next
parametric layer, identity if none; Passthrough nodes are transparent):

- forward:  q_l = E[z_l^2] = fan_in_l * sigma_l^2 * E[h_{l-1}^2] + E[b_l^2]
- backward: ||dL/dz_{l-1}||^2 / ||dL/dz_l||^2 = fan_in_l * sigma_l^2 * E[phi_{l-1}'(z_{l-1})^2],
  z_{l-1} ~ N(0, q_{l-1})

The backward factor uses the fan_in of the later layer: dL/dh_{l-1} = W_l^T dL/dz_l has
fan_in_l components of variance sigma_l^2 ||dL/dz_l||^2 each. (An early design note wrote fan_out_l,
which is the per-component variance ratio; for the ratio of whole gradient norms, which is what
the table there measures, fan_in_l is right; the two agree on square layers, and
bench/measure_chains.py measures a non-square chain to settle it.) The product fan_in * sigma^2
is known from the init alone for PyTorch's defaults and kaiming fan_in, even for widths known
only by name.

A chain ends at anything that resets or hides the scale: a norm, a residual block, a recurrent
layer, a library transformer block, softmax attention (its factor depends on the data), a
product of branches (a gate: a 'mul' residual), an opaque node, an embedding, an activation outside
activations.KNOWN (softmax), a dead (constant) layer, and a layer whose fan_in * sigma^2 is
unknown (which may still start the next chain: a chain's first layer takes no part in its
gain). It also ends where the forward variance is unknown and the activation is not
scale-free, since E[phi'(z)^2] then cannot be had.

Dropout is modelled in train mode, the mode in which gradients are taken. Torch's inverted
dropout y = x * m / (1 - p), m ~ Bernoulli(1 - p) drawn afresh per element, gives E[y^2] =
E[x^2] / (1 - p), and its backward dL/dx = dL/dy * m / (1 - p) (the same mask, independent of
everything else) multiplies the squared gradient norm by 1 / (1 - p): a dropout between two
layers multiplies both the next q and the step's factor by 1 / (1 - p). Where it stands among
the activations does not matter when those after it are positively homogeneous with phi(0) = 0
(ReLU, leaky ReLU, PReLU, identity: phi(m u) = m phi(u) for m in {0, 1}), so the walk moves it to
the end; before any other activation it changes the distribution the activation sees (a mixture
with an atom at 0), which is not modelled: the chain ends there and the scale after is unknown.
AlphaDropout multiplies the gradient by a * m, a = ((1 - p)(1 + p alpha'^2))^-1/2, alpha' =
1.7581: E[(a m)^2] = 1 / (1 + p alpha'^2); its output's second moment depends on its input's
mean, which the walk does not carry, so the scale after it is unknown. A dropout whose p is not
known ends the chain: its factor lies anywhere in [1, 1 / (1 - p)], and no gain is invented.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Sequence

from gradlint.model.init import bias_variance, fan_times_variance, is_dead, weight_variance, zero_mean
from gradlint.model.ir import (
    INPUT_WHAT,
    NO_GRAD_WHAT,
    Activation,
    Attention,
    InitSpec,
    Network,
    Node,
    Norm,
    Param,
    Passthrough,
    Residual,
    TransformerBlock,
)

# Activations a dropout mask commutes with (phi(m u) = m phi(u), m in {0, 1}); any other after a
# dropout ends the chain.
_MASK_COMMUTES = frozenset({"relu", "leaky_relu", "prelu", "identity"})
# AlphaDropout's alpha' = -scale * alpha of SELU (torch: aten/src/ATen/native/Dropout.cpp).
ALPHA_DROPOUT = 1.7580993408473766
EMBEDDING_OPS = frozenset({"embedding", "embedding_bag", "embeddingbag"})
# Norms whose output has unit second moment per feature at initialisation (gamma = 1, beta = 0).
UNIT_NORMS = frozenset({"batch", "layer", "group", "instance", "rms"})


def _acts():
    """The activation moments, imported on first use: they need numpy (0.2 s of start-up),
    which a run over files without networks (a pre-commit of a training script) never pays."""
    from gradlint.model import activations

    return activations


@dataclass(frozen=True)
class Step:
    """One parametric layer of a chain.

    activations: those applied after this layer, before the next parametric one.
    q: variance of this layer's pre-activation output z, None when unknown.
    factor: ||dL/dz_prev||^2 / ||dL/dz_this||^2, from this step back to the previous one;
    None for a chain's first step.
    """

    layer: Param
    activations: tuple[Activation, ...]
    q: float | None
    factor: float | None
    # the factor is an upper bound: the scale feeding the activations was not known, so each
    # was taken at its steepest (sigmoid: slope 1/4 at 0), which no input exceeds
    bound: bool = False
    # the dropouts applied after this layer, before the next one, as (kind, p): their train-mode
    # factors are in the next step's factor (and its q)
    dropouts: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Chain:
    """A run of >= 2 parametric layers with nothing between them but activations and
    passthroughs.

    gain: predicted ||dL/dz_first|| / ||dL/dz_last||, z the pre-activation outputs of the
    chain's first and last layer: sqrt of the product of the factors of steps 2..L.
    """

    steps: tuple[Step, ...]
    gain: float
    # the gain is an upper bound (a step's factor is: Step.bound): it may be smaller, never larger
    bound: bool = False

    @property
    def depth(self) -> int:
        return len(self.steps)

    @property
    def per_layer(self) -> float:
        """Geometric mean of the per-step gradient-norm ratios sqrt(factor) over steps 2..L,
        i.e. gain ** (1 / (depth - 1)): the chi-like number a message quotes per layer."""
        factors = [step.factor for step in self.steps[1:]]
        if not factors or min(factors) <= 0.0:  # type: ignore[type-var]
            return 0.0
        # In logs: a long chain's gain can underflow to 0.0 while its factors are ordinary.
        return math.exp(0.5 * sum(math.log(f) for f in factors) / len(factors))  # type: ignore[arg-type]

    @property
    def chi(self) -> float:
        """Geometric mean of the factors (squared-norm ratio per layer), per_layer ** 2: the
        "chi ~ 0.02 per layer" of a message."""
        return self.per_layer**2

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(step.layer.name for step in self.steps)

    @property
    def first(self) -> Param:
        return self.steps[0].layer


@dataclass(frozen=True)
class ActivationStat:
    """The pre-activation variance q feeding an activation, where it is known.

    layer: the Param directly before the activation (passthroughs skipped), None when
    something else is (a norm, another activation, the network input).
    """

    activation: Activation
    layer: Param | None
    q: float


@dataclass(frozen=True)
class Analysis:
    chains: tuple[Chain, ...]
    activations: tuple[ActivationStat, ...]


class _Walk:
    """One node sequence (the network, or a residual body) walked in order."""

    def __init__(self, chains: list[Chain], stats: list[ActivationStat], moment: float | None):
        self.chains, self.stats = chains, stats
        # The signal is tracked as a Gaussian source of variance `source` (a pre-activation, or
        # the input taken as N(0, E[x^2])) followed by the activations applied since.
        self.source: float | None = moment
        self.start = moment  # (a network input's scale: where another input's path starts)
        self.applied: list[Activation] = []
        self.direct: Param | None = None  # the Param directly before the next node
        self.done: list[Step] = []  # the current chain's finished steps
        self.pending: Step | None = None  # its latest step, still collecting activations
        # A constant multiplier met since the latest layer, before any activation (`tanh(0.05 *
        # fc(x))`): its square scales the source, and the next layer's backward factor
        self.scaled = 1.0
        self._clear_drops()

    def _clear_drops(self) -> None:
        # The dropouts met since the latest layer: what they multiply the second moment of the
        # signal by (None: unknown, after an AlphaDropout) and the next backward factor by.
        self.drop_moment: float | None = 1.0
        self.drop_factor = 1.0
        self.dropped: list[tuple[str, float]] = []

    def out_moment(self) -> float | None:
        """E[x^2] of the signal at this point."""
        if self.source is None or self.drop_moment is None:
            return None
        if not self.applied:
            return self.source * self.drop_moment
        return _acts().composed_moments(self._fns(), self.source)[0] * self.drop_moment

    def _fns(self) -> list[tuple[str, float | None]]:
        return [(a.fn, a.param) for a in self.applied]

    def _close_pending(self) -> None:
        if self.pending is not None:
            p = self.pending
            self.done.append(Step(p.layer, tuple(self.applied), p.q, p.factor, p.bound, tuple(self.dropped)))
            self.pending = None

    def _kind(self) -> bool | None:
        """Whether the current chain's factors are bounds (True), predictions (False), or it has
        none yet (None)."""
        steps = self.done[1:] + ([self.pending] if self.pending is not None and self.pending.factor is not None else [])
        return steps[0].bound if steps else None

    def flush(self) -> None:
        """End the current chain, reporting it when it has >= 2 steps."""
        self._close_pending()
        if len(self.done) >= 2:
            factors = [step.factor for step in self.done[1:]]
            if min(factors) <= 0.0:  # type: ignore[type-var]
                gain = 0.0
            else:
                logs = sum(math.log(f) for f in factors)  # type: ignore[arg-type]
                gain = math.exp(max(0.5 * logs, -745.0)) if logs < 1400 else math.inf
            self.chains.append(Chain(tuple(self.done), gain, any(step.bound for step in self.done[1:])))
        self.done = []

    def reset(self, moment: float | None) -> None:
        self.flush()
        self.source, self.applied, self.direct, self.scaled = moment, [], None, 1.0
        self._clear_drops()

    def run(self, nodes: Sequence[Node]) -> float | None:
        """Walk the nodes; return E[x^2] of the output (None: unknown)."""
        for node in nodes:
            if isinstance(node, Passthrough):
                if node.dropout:
                    self.dropout(node)
                elif node.what.startswith("scale:"):
                    self.scale(node.what[len("scale:"):])
                elif node.what == NO_GRAD_WHAT:
                    # computed under no_grad (a frozen backbone before a trained head): the layers
                    # before get no gradient through here, so they are no chain's first layers
                    self.done, self.pending, self.direct = [], None, None
                elif node.what == INPUT_WHAT:
                    # another input's path: nothing before feeds it in this order
                    self.reset(self.start)
                continue
            if isinstance(node, Activation):
                self.activation(node)
            elif isinstance(node, Param):
                self.param(node)
            elif isinstance(node, Norm):
                self.reset(1.0 if node.kind in UNIT_NORMS else None)
            elif isinstance(node, Residual):
                incoming = self.out_moment()
                self.reset(None)
                # A gate's branch usually starts with a reduction (global pooling: `x.mean((2, 3))`,
                # a Passthrough here) whose second moment is not its input's: it starts unknown,
                # so no saturation (GL104) is predicted from a scale the gate never sees.
                start = None if node.join == "mul" else incoming
                body = _Walk(self.chains, self.stats, start).run(node.body)
                others = [_Walk(self.chains, self.stats, start).run(branch) for branch in node.branches]
                # A concatenation mixes parts of different scales: the scale after it is unknown.
                if node.join != "add":
                    self.source = None
                elif not node.branches:
                    self.source = _residual_moment(incoming, body, node.skip_scale, node.branch_scale)
                else:
                    self.source = _sum_moment(incoming, node, [body, *others])
            elif isinstance(node, Attention):
                # Softmax attention's backward factor depends on the data (the softmax weights):
                # no gain is invented; the chain ends and the scale after it is unknown.
                self.reset(None)
            elif isinstance(node, TransformerBlock):
                # Post-LN blocks end in LayerNorm (unit scale); pre-LN ones in x + f(x).
                self.reset(1.0 if node.norm_first is False else None)
            else:
                # Recurrent, Opaque, and any node kind this module does not know: never guess.
                self.reset(None)
        out = self.out_moment()
        self.flush()
        return out

    def scale(self, text: str) -> None:
        """`c * x`, `x / c` (the front-end's `scale:c`; `scale:?` when c is not known). A known c
        before any activation scales the Gaussian source by c^2 and the gradient by |c|; after
        activations the signal is no longer a composition of them, so the chain ends there and
        what follows starts from the scaled moment. Nothing known of c: the scale is unknown."""
        try:
            c = float(text)
        except ValueError:
            c = math.nan
        if not math.isfinite(c) or c == 0.0:
            self.reset(None)
            return
        if not self.applied:
            if self.source is not None:
                self.source *= c * c
            self.scaled *= c * c
            return
        moment = self.out_moment()
        self.reset(moment * c * c if moment is not None else None)

    def dropout(self, node: Passthrough) -> None:
        """A dropout in train mode (see the module's docstring for the maths)."""
        p = node.p
        if p == 0.0:
            return
        if p is None or not 0.0 < p < 1.0 or node.dropout not in ("inverted", "alpha"):
            self.reset(None)  # p unknown (or every unit dropped): no factor is invented
            return
        if node.dropout == "inverted":
            if self.drop_moment is not None:
                self.drop_moment /= 1.0 - p
            self.drop_factor /= 1.0 - p
        else:
            self.drop_moment = None
            self.drop_factor /= 1.0 + p * ALPHA_DROPOUT * ALPHA_DROPOUT
        self.dropped.append((node.dropout, p))

    def activation(self, node: Activation) -> None:
        if node.fn not in _acts().KNOWN:
            self.reset(None)
            return
        if self.dropped and (node.fn not in _MASK_COMMUTES or self.drop_moment is None):
            # a dropout before an activation it does not commute with: the activation sees a
            # mixture, not a Gaussian, which the walk does not model
            self.reset(None)
        feeding = self.out_moment()
        if feeding is not None:
            self.stats.append(ActivationStat(node, self.direct, feeding))
        self.applied.append(node)
        self.direct = None

    def param(self, node: Param) -> None:
        incoming = self.out_moment()
        if node.op.lower() in EMBEDDING_OPS:
            self.reset(_embedding_moment(node))
            self.direct = node  # GL104 skips activations on embeddings: it must see this one
            return
        if is_dead(node.init):
            # GL105's business; what follows a constant layer is not a signal worth modelling.
            self.reset(None)
            return
        ftv = fan_times_variance(node.init, node.fan_in, node.fan_out)
        if node.init.scheme in ("eye", "dirac"):
            # An identity map mixes nothing: the units a ReLU keeps stay the ones the next keeps,
            # not a fresh half at every layer as mean field assumes (20 dirac_ ReLU convs:
            # measured first/last weight-gradient ratio 1.0, mean field 4e-4). Not modelled.
            ftv = None
        if ftv is not None and node.signal_ratio != 1.0:
            ftv = None if node.signal_ratio is None else ftv * node.signal_ratio
        q = None
        if ftv is not None and incoming is not None:
            q = ftv * incoming + bias_variance(node.bias_init, node.fan_in)
            if not math.isfinite(q):
                q = None  # overflowed: the scale is lost, not infinite
        factor, bound = None, False
        if self.pending is not None and ftv is not None:
            scale = self.scaled * self.drop_factor  # (a constant multiplier, the dropouts)
            if self.source is not None:
                factor = ftv * _acts().composed_moments(self._fns(), self.source)[1] * scale
            elif _acts().is_scale_free([a.fn for a in self.applied]):
                factor = ftv * _acts().composed_moments(self._fns(), 1.0)[1] * scale
            else:
                # the scale feeding saturating activations is not known (an embedding of unknown
                # size, a norm's output of unknown scale): each at its steepest bounds the factor
                steepest = _steepest(self.applied)
                if steepest is not None:
                    factor, bound = ftv * steepest * scale, True
        if factor is not None and self._kind() not in (None, bound):
            factor = None  # a bound is never multiplied into a prediction: a new chain starts here
        if factor is None:
            # A new chain: this layer's own factor is unknown, but a first step needs none.
            self.flush()
        else:
            self._close_pending()
        self.pending = Step(node, (), q, factor, bound)
        self.source, self.applied, self.direct, self.scaled = q, [], node, 1.0
        self._clear_drops()


# The largest squared slope of a saturating activation, over every input: what E[f'(h)^2] can
# reach at most, whatever the scale of h (sigmoid' <= 1/4 at 0; tanh', hardtanh', softsign' <= 1;
# hardsigmoid's slope is 1/6 where it is not flat; logsigmoid' = sigmoid(-h) < 1).
_STEEPEST = {"sigmoid": 1 / 16, "tanh": 1.0, "hardtanh": 1.0, "softsign": 1.0, "hardsigmoid": 1 / 36,
             "logsigmoid": 1.0}


def _steepest(applied: Sequence[Activation]) -> float | None:
    """The bound on E[f'(h)^2] of the activations applied in a row (the product of their
    steepest squared slopes); None when one is not a saturating activation we bound, or none is
    applied."""
    if not applied:
        return None
    out = 1.0
    for a in applied:
        slope = _STEEPEST.get(a.fn)
        if slope is None:
            return None
        out *= slope
    return out


def _embedding_moment(node: Param) -> float | None:
    """E[h^2] of an embedding's output: the table entries' second moment."""
    v = weight_variance(node.init, node.fan_in, node.fan_out)
    if v is None:
        return None
    mean = node.init.get("mean", 0.0) if node.init.scheme in ("measured", "normal") else 0.0
    if isinstance(mean, (int, float)) and not isinstance(mean, bool):
        v += float(mean) ** 2
    return v


def _residual_moment(
    incoming: float | None, body: float | None, skip: float | None, branch: float | None
) -> float | None:
    """E[(s x + b f(x))^2] = s^2 E[x^2] + b^2 E[f(x)^2], the branch taken as uncorrelated with
    its input (as it is at initialisation, to first order)."""
    if incoming is None or body is None:
        return None
    s = 1.0 if skip is None else skip
    b = 1.0 if branch is None else branch
    return s * s * incoming + b * b * body


def _odd_in_weights(nodes: Sequence[Node]) -> bool:
    """The part ends in a layer drawn symmetric about zero, with only norms and passthroughs
    after it: negating that layer's weights negates the part, so its product with any other part
    averages to zero over the draw."""
    for node in reversed(tuple(nodes)):
        if isinstance(node, Passthrough) and node.dropout != "alpha" or isinstance(node, Activation) and node.fn == "identity":
            continue  # (an inverted dropout of an odd part is odd; an alpha dropout adds a shift)
        if isinstance(node, Norm) and node.kind in UNIT_NORMS:
            continue  # gamma 1, beta 0 at initialisation: an odd function of its input
        if isinstance(node, Param):
            return not is_dead(node.init) and zero_mean(node.init) and zero_mean(node.bias_init)
        return False
    return False


def _sum_moment(incoming: float | None, node: Residual, moments: list[float | None]) -> float | None:
    """E[(s x + b f(x) + g_1(x) + ...)^2] of a sum of branches (body f, branches g_i): the sum of
    each part's second moment when the parts are uncorrelated, which holds when all of them but
    one are odd in weights of their own (`_odd_in_weights`); unknown otherwise. The input x is
    a part unless skip_scale is 0."""
    parts: list[tuple[tuple, float | None]] = [(node.body, moments[0])]
    parts += list(zip(node.branches, moments[1:]))
    skip = 1.0 if node.skip_scale is None else node.skip_scale
    if any(m is None for _nodes, m in parts) or (skip != 0.0 and incoming is None) or math.isnan(skip):
        return None
    even = sum(1 for nodes, _m in parts if not _odd_in_weights(nodes)) + (1 if skip != 0.0 else 0)
    if even > 1:
        return None
    b = 1.0 if node.branch_scale is None else node.branch_scale
    total = b * b * parts[0][1] + sum(m for _nodes, m in parts[1:])  # type: ignore[operator, misc]
    return total + (skip * skip * incoming if skip != 0.0 else 0.0)  # type: ignore[operator]


def analyse_nodes(nodes: Sequence[Node], input_second_moment: float | None = 1.0) -> Analysis:
    """Chains and activation statistics of a node sequence whose input has E[x^2] =
    input_second_moment (None: unknown)."""
    chains: list[Chain] = []
    stats: list[ActivationStat] = []
    if input_second_moment is not None and not (0.0 <= input_second_moment < math.inf):
        input_second_moment = None
    _Walk(chains, stats, input_second_moment).run(tuple(nodes))
    return Analysis(tuple(chains), tuple(stats))


def analyse(network: Network, input_second_moment: float | None = 1.0) -> Analysis:
    """analyse_nodes over the network's forward order; nothing when forward was not followed.

    When forward has several paths (conditions the front-end could not decide), a chain or an
    activation statistic is kept only when every path has it, unchanged: a finding must hold
    whichever way the model runs."""
    if not network.forward_known:
        return Analysis((), ())
    first = analyse_nodes(network.nodes, input_second_moment)
    if not network.variants:
        return first
    chains, stats = list(first.chains), list(first.activations)
    for other in network.variants:
        a = analyse_nodes(other, input_second_moment)
        chains = [c for c in chains if c in a.chains]
        stats = [s for s in stats if s in a.activations]
    return Analysis(tuple(chains), tuple(stats))


def replace_inits(nodes: Sequence[Node], init_for: Callable[[Param], InitSpec | None]) -> tuple[Node, ...]:
    """The node sequence with each Param's init replaced by init_for(param) (None: kept),
    residual bodies included: for "what would the gain be with a matching init" (GL103)."""
    out: list[Node] = []
    for node in nodes:
        if isinstance(node, Param):
            new = init_for(node)
            out.append(node if new is None else dataclasses.replace(node, init=new))
        elif isinstance(node, Residual):
            out.append(dataclasses.replace(node, body=replace_inits(node.body, init_for),
                                           branches=tuple(replace_inits(b, init_for) for b in node.branches)))
        else:
            out.append(node)
    return tuple(out)
