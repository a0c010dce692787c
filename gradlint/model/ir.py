"""The model IR both front-ends lower into: a network as an ordered sequence of nodes.

Nothing here knows libcst, onnx or torch. A `Network` is what `forward` does, in order: parametric
layers (`Param`), activations, norms, residual blocks (whose body is again a node sequence; also
gates and concatenations), recurrent layers, softmax attention, and nodes the front-end could not model (`Opaque`), which break a chain so
that a guess never becomes a finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from gradlint.findings import GraphNode, SourceSpan

Origin = Union[SourceSpan, GraphNode, None]
# A fan is a number when known, a symbolic expression (the source text, e.g. "d_model") when the
# front-end knows only its name: two equal symbols cancel in a ratio, which is all that PyTorch's
# default and kaiming initialisations need.
Fan = Union[int, str, None]


@dataclass(frozen=True)
class InitSpec:
    """How a weight tensor is initialised.

    scheme: 'torch-linear' (kaiming_uniform_(a=sqrt(5)), nn.Linear/Conv default: var 1/(3 fan_in)),
    'torch-rnn' (U(-1/sqrt(hidden), 1/sqrt(hidden))), 'torch-embedding' (N(0, 1)), 'normal',
    'uniform', 'trunc_normal', 'xavier_normal', 'xavier_uniform', 'kaiming_normal',
    'kaiming_uniform', 'orthogonal', 'eye', 'zeros', 'ones', 'constant', 'measured' (ONNX: exact
    statistics in params), 'unknown'.
    params: the arguments that matter, as sorted (name, value) pairs: std, mean, a, b, gain,
    mode ('fan_in'/'fan_out'), nonlinearity, val, variance (for 'measured').
    """

    scheme: str
    params: tuple[tuple[str, object], ...] = ()
    origin: Origin = None

    def get(self, key: str, default: object = None) -> object:
        for k, v in self.params:
            if k == key:
                return v
        return default


@dataclass(frozen=True)
class Param:
    """A parametric layer: Linear, Conv*d, ConvTranspose*d, Embedding, Bilinear, ONNX Gemm/MatMul/Conv.

    fan_in/fan_out follow torch.nn.init._calculate_fan_in_and_fan_out: for a conv,
    channels x kernel elements (per group).
    """

    name: str
    op: str
    fan_in: Fan
    fan_out: Fan
    init: InitSpec
    origin: Origin = None
    # The attribute the layer is stored under in its parent, for name-guarded rules (GL105).
    attr: str = ""
    bias_init: InitSpec | None = None
    # How many input terms one output sums, over fan_in: 1 but for a transposed convolution,
    # whose output sums in_channels/groups * kernel / stride**d terms while torch's fan_in (which
    # sets the init's variance) counts out_channels/groups * kernel; the backward ratio of squared
    # norms is the same multiple (measured: bench/measure_chains.py). None: not known, and the
    # layer's factor with it.
    signal_ratio: float | None = 1.0
    # Its output units read the same inputs: False for a conv with one output channel per group
    # (a depthwise conv), whose units each read a channel of their own and never compute alike.
    alike: bool = True
    # `layer.requires_grad_(False)` (or a flag not known) in __init__: it may not train.
    frozen: bool = False


@dataclass(frozen=True)
class Activation:
    """fn: relu, leaky_relu, elu, selu, celu, gelu, silu, mish, tanh, sigmoid, hardtanh,
    softsign, softplus, hardsigmoid, hardswish, relu6, identity, prelu, softmax, logsigmoid,
    tanhshrink."""

    name: str
    fn: str
    param: float | None = None
    origin: Origin = None


@dataclass(frozen=True)
class Norm:
    """kind: batch, layer, group, instance, rms, local_response, weight_standardization."""

    name: str
    kind: str
    origin: Origin = None


@dataclass(frozen=True)
class Residual:
    """x + f(x): the body is f. scale is a literal multiplier on the skip path (DeepNorm's alpha)
    or on the branch, when the source states one. A sum of parts that all hold layers (f(x) +
    g(x), a projection shortcut, x + f(x) + g(x), MobileOne's branches) keeps each part: the
    longest is the body, the others `branches`, and skip_scale is 0.0 when x itself is not summed.

    join: 'add' (x + f(x)), 'cat' (torch.cat / torch.stack of the input and its branches:
    DenseNet, Inception, CSP) or 'mul' (an elementwise product or quotient of branches: a gate,
    x * sigmoid(g(x)), squeeze-and-excitation, GLU/SwiGLU; its factor depends on the data, so the
    scale after it is unknown). branches: further parallel bodies beside `body`, from the same
    input. skip_scale 0.0 says the input itself is not among the joined parts.
    """

    body: tuple["Node", ...]
    name: str = ""
    origin: Origin = None
    skip_scale: float | None = None
    branch_scale: float | None = None
    join: str = "add"
    branches: tuple[tuple["Node", ...], ...] = ()


@dataclass(frozen=True)
class Recurrent:
    """nn.RNN/LSTM/GRU and their cells, or ONNX RNN/LSTM/GRU."""

    name: str
    cell: str  # rnn, lstm, gru (cells: rnn_cell, lstm_cell, gru_cell)
    nonlinearity: str = "tanh"
    hidden: Fan = None
    num_layers: int = 1
    origin: Origin = None
    weight_hh_init: InitSpec | None = None


@dataclass(frozen=True)
class TransformerBlock:
    """A library transformer layer whose internals are known (nn.TransformerEncoderLayer...)."""

    name: str
    kind: str  # encoder, decoder
    norm_first: bool | None
    origin: Origin = None


@dataclass(frozen=True)
class Attention:
    """Softmax attention: `softmax(q k^T * scale) v` written out, `F.scaled_dot_product_attention`,
    or `nn.MultiheadAttention`. what: 'matmul' (a product of two branches of one input, written
    with `@`, `matmul`, `bmm` or `einsum`), 'sdpa', 'multihead'.

    Its gradient scale is data-dependent (the softmax weights depend on q and k), so the
    propagation model does not give it a gain: a chain ends at it and the scale after it is
    unknown, exactly as for an Opaque node. What it adds over Opaque is that the architecture
    rules know it is attention (a residual body holding one is a transformer sub-layer) and that
    `gradlint model` shows it as understood. projections: the parametric layers that feed it
    only through the product (q, k, v projections written as separate branches), in forward
    order; layers shared by every operand stay in the chain before it.
    """

    name: str
    what: str
    projections: tuple[Param, ...] = ()
    origin: Origin = None


# The Passthrough that marks a value computed without gradient (source/outputs.NO_GRAD).
NO_GRAD_WHAT = "computed without gradient"
# The Passthrough that marks where another input of the network starts a path of its own (an ONNX
# decoder's target after the encoder its cross-attentions read): the nodes before it do not feed
# the ones after it in order, so no chain runs across it, and what follows starts from the scale
# of the network's input.
INPUT_WHAT = "a network input"


@dataclass(frozen=True)
class Passthrough:
    """Dropout, pooling, reshapes: no parameters. One whose `what` is NO_GRAD_WHAT marks a value
    computed without gradient (under `torch.no_grad()`): the layers before it get none through
    this path, so no chain runs across it. One whose `what` is INPUT_WHAT (its name the input's)
    marks where another input of the network starts its path.

    dropout: '' for a node that is no dropout; 'inverted' for torch's dropout in train mode,
    y = x * m / (1 - p) with m ~ Bernoulli(1 - p) (nn.Dropout, Dropout1d/2d/3d, F.dropout, timm's
    DropPath, torchvision's StochasticDepth: each multiplies the second moment of the signal and
    of the gradient by 1 / (1 - p)); 'alpha' for AlphaDropout (y = a (m x + alpha' (1 - m)) + b,
    gradient a * m). p: the drop probability, None when not known; 0.0 leaves the scale alone."""

    name: str
    what: str
    origin: Origin = None
    # A mark, not an operation: an earlier value of the same path enters the block that follows
    # as a second tensor (`self.output(h, x)`, which may add x back), a block whose forward the
    # front-end does not run with both (another file's, re-run there with one input), so its
    # join is not followed: the value after the node `rejoins` places before this one (1: the
    # node just before). A block of the same file is run with both, and its sum is a Residual.
    rejoins: int | None = None
    dropout: str = ""
    p: float | None = None


@dataclass(frozen=True)
class Opaque:
    """Something the front-end cannot model (an unknown submodule, a call it cannot follow).
    It ends any chain: an unknown is never guessed into a finding."""

    name: str
    what: str
    origin: Origin = None
    # For people: what made it, where the front-end knows (the code that built an unknown module,
    # `norm_layer(in_chs)`). Not part of the node's identity: two paths that differ only in it are
    # one path, and alike branches still merge.
    detail: str = field(default="", compare=False)


@dataclass(frozen=True)
class SymArg:
    """An argument of an `Extern` known only by its source text in the caller (`dim`,
    `int(dim*mlp_ratio)`): the block re-run with it holds the caller's symbol, so that equal
    symbols of the parent and the block cancel in a ratio."""

    text: str


@dataclass(frozen=True)
class ClassArg:
    """A module class passed to an `Extern` as a value (`act_layer=nn.GELU`,
    `norm_layer=partial(nn.LayerNorm, eps=1e-6)`). kind: 'torch' (cls: the torch.nn short name),
    'library' (a block of the simplified torchvision/timm catalogue) or 'extern' (a class of
    another file: as written in the file of the `Extern` that carries it; qualified once
    model/inline.py passes it to that class's file); args, kwargs: what a
    `functools.partial` bound, each a constant, `SymArg` or `ClassArg`."""

    kind: str
    cls: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class SeqArg:
    """A list or tuple passed to an `Extern` (`mlp([obs_dim] + [256] * 12 + [1], nn.Sigmoid)` with
    the builder in another file): its items, each a constant, `SymArg`, `ClassArg` or `SeqArg`;
    is_tuple keeps a tuple apart from a list. A list with an item not known is not carried."""

    items: tuple[Any, ...] = ()
    is_tuple: bool = False


@dataclass(frozen=True)
class ConfigArg:
    """A config object passed to an `Extern` (`GPT(GPTConfig(n_layer=48))` in a training script,
    the model class in another file): the class as written in the caller, and the plain values
    its attributes hold there (source/configs.py read its class with the call's arguments; an
    attribute whose value is not a plain constant is left out, and reads as unknown)."""

    cls: str
    values: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Extern(Opaque):
    """A module built from a class of another project file (`blocks.SigmoidBlock()`), as written
    in this file: opaque until the project index finds that class's IR (`model/inline.py`), which
    the per-file lowering cannot see. cls: the class as written here. args: the call's arguments,
    ((position or keyword, (value,) or () when not known), ...), a value being a constant, a
    `SymArg`, a `ClassArg` or a `ConfigArg`; None when `*args` / `**kwargs` leave them open. inits:
    initialisations of this file that reach the block after it was built (a parent's
    `apply(fn)`, loops over `self.modules()`): (parametric ops they apply to, empty for every
    one; tensor: 'weight', 'bias' or '*'; InitSpec), in program order."""

    cls: str = ""
    args: tuple[tuple[Any, Any], ...] | None = None
    inits: tuple[tuple[tuple[str, ...], str, InitSpec], ...] = ()


Node = Union[Param, Activation, Norm, Residual, Recurrent, TransformerBlock, Attention, Passthrough, Opaque, Extern]


@dataclass(frozen=True)
class Network:
    """One model: an nn.Module class (name = class name) or an ONNX graph (name = graph name)."""

    name: str
    path: str
    nodes: tuple[Node, ...]
    origin: Origin = None
    # Every parametric layer the module owns, in definition order, whether or not forward's
    # order could be recovered: the init rules (GL105) need them even when forward is opaque.
    params: tuple[Param, ...] = field(default_factory=tuple)
    recurrents: tuple[Recurrent, ...] = field(default_factory=tuple)
    # Set when forward could not be followed at all: architecture rules about order stay quiet.
    forward_known: bool = True
    # Other paths through forward, when conditions the front-end cannot decide choose between
    # them; `nodes` is the first. A finding about order must hold on every path.
    variants: tuple[tuple[Node, ...], ...] = ()
    # Why forward was not followed (forward_known False), in words for people.
    note: str = ""
    # __init__'s parameters, as the IR was built with them: (name, keyword only?, how, default):
    # how 'default' (built with the constant default), 'symbol' (no default: the IR holds only
    # the parameter's name, so it stands for any value), 'fixed' (a default that is not a
    # constant, or a config class's defaults). Inlining into another file's model
    # (model/inline.py) needs arguments the IR was built with; None: a call may pass more.
    signature: tuple[tuple[str, bool, str, Any], ...] | None = None
    # The containers __init__ builds (`self.blocks = nn.ModuleList([...])`, `nn.Sequential`), by
    # module path, with where each is built: a finding about a stack of blocks points at the code
    # that stacks them, not at the block class that all the stacks share.
    containers: tuple[tuple[str, Origin], ...] = ()

    def stack_site(self, name: str) -> Origin:
        """Where the container holding module `name` (`blocks.3.norm1`) is built: the longest
        container path that `name` continues with an index; None when none does."""
        best, found = -1, None
        for path, origin in self.containers:
            rest = name[len(path) + 1:] if name.startswith(path + ".") else ""
            if rest.split(".", 1)[0].isdigit() and len(path) > best:
                best, found = len(path), origin
        return found

    @property
    def paths(self) -> tuple[tuple[Node, ...], ...]:
        return (self.nodes,) + self.variants


# Nodes of one forward path as `walk` yields them, at most: a loop that feeds its value to two joins
# each step (`x = f(x); x = x + g(x)`, a 100-step diffusion sampler) builds a small graph that
# stands for an exponential tree, which every walk of it (comparison, propagation, inlining) pays
# in full. Real networks: <= 1 100 (timm's InceptionResnetV2, its blocks inlined or not).
MAX_UNFOLDED = 20_000


def unfolded_size(nodes: tuple[Node, ...], memo: dict[int, int] | None = None) -> int:
    """How many nodes `walk` yields: residual bodies shared between paths (a loop that feeds the
    same value to two joins, step after step) count once per place, so a small graph can stand
    for an exponential tree; counted in time linear in the distinct nodes."""
    memo = {} if memo is None else memo
    total = 0
    for node in nodes:
        total += 1
        if isinstance(node, Residual):
            got = memo.get(id(node))
            if got is None:
                got = unfolded_size(node.body, memo) + sum(unfolded_size(b, memo) for b in node.branches)
                memo[id(node)] = got
            total += got
    return total


def walk(nodes: tuple[Node, ...]):
    """Every node, depth first, residual bodies included."""
    for node in nodes:
        yield node
        if isinstance(node, Residual):
            yield from walk(node.body)
            for branch in node.branches:
                yield from walk(branch)


_END = object()


def walk_once(nodes: tuple[Node, ...]):
    """The nodes `walk` yields, in the order they first come, but a residual met again (its body
    shared between paths) is not entered again: time linear in the distinct nodes, where `walk`
    takes the unfolded ones (7.7 million for one output of diffusers' CogVideoX decoder, whose
    blocks return tuples: choosing its main output took 4 minutes). For questions of membership."""
    entered: set[int] = set()
    todo: list = [iter(nodes)]
    while todo:
        node = next(todo[-1], _END)
        if node is _END:
            todo.pop()
            continue
        yield node
        if isinstance(node, Residual) and id(node) not in entered:
            entered.add(id(node))
            todo.extend(iter(b) for b in reversed(node.branches))
            todo.append(iter(node.body))
