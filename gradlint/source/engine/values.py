"""The values of the engine: plain values (what a number is, literals read fast, Python's truth
value), and the containers and instances the models' interpreters and the training-loop
environment (engine/env.py) both evaluate to (`ListVal`, `DictVal`, `Ctor`).

Tensors with properties are numerics' (engine/tensors.py); whatever is not a plain value is the
interpreter's to judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import libcst as cst


class Unknown:
    """Nothing is known about the value: an operation on it gives it again, and it never becomes
    a finding. One object (`UNKNOWN`), whichever interpreter made it."""

    _inst = None

    def __new__(cls):
        if cls._inst is None:
            cls._inst = super().__new__(cls)
        return cls._inst

    def __repr__(self) -> str:
        return "UNKNOWN"

    @classmethod
    def reads(cls, properties: dict) -> None:
        """Declare properties an interpreter reads on its values, each with what it is when
        nothing is known (engine/tensors.py: a tensor's `prob` is None, `params` False...). The
        unknown value answers them, so that it is the bottom of that domain too: no interpreter
        needs a "nothing known" value of its own."""
        for name, value in properties.items():
            if name in cls.__dict__ and getattr(cls, name) != value:
                raise ValueError(f"Unknown.{name} is already declared with another value")
            setattr(cls, name, value)


UNKNOWN: Any = Unknown()


def is_number(v: Any) -> bool:
    """An int or float the folder may compute with (bools are flags, not numbers)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def int_literal(e: cst.Integer) -> int:
    """The value of an integer literal; ValueError past Python's int_max_str_digits."""
    # libcst's evaluated_value compiles the literal with ast.literal_eval: a compile per number.
    text = e.value.replace("_", "")
    return int(text, 0) if not (len(text) > 1 and text[0] == "0" and text[1].isdigit()) else int(e.evaluated_value)


def float_literal(e: cst.Float) -> float:
    """The value of a float literal (inf when it is too large: `1e400`)."""
    return float(e.value.replace("_", ""))


_TRIPLE = ("\"" * 3, "'" * 3)


def str_literal(e: cst.SimpleString) -> Any:
    """The value of a string literal (bytes for a bytes literal), without a compile when it has
    no escapes and no prefix."""
    v = e.value
    if "\\" not in v and v[:1] in ("'", '"'):
        q = 3 if v[:3] in _TRIPLE else 1
        return v[q:-q]
    return e.evaluated_value


def truth(v: Any) -> bool | None:
    """Python's truth value of a plain value (None, a bool, a number, a string); None when `v` is
    not one: an interpreter's own values are judged by the interpreter."""
    if v is None or isinstance(v, bool):
        return bool(v)
    if is_number(v) or isinstance(v, (str, bytes)):
        return bool(v)
    return None


# Choices one value of __init__ may hold when conditions cannot be decided (see Alt).
MAX_OPTIONS = 4


class _Tensor:
    """A tensor built in __init__ (nn.Parameter, torch.zeros...): not None, value unknown."""

    _inst = None

    def __new__(cls):
        if cls._inst is None:
            cls._inst = super().__new__(cls)
        return cls._inst

    def __repr__(self) -> str:
        return "TENSOR"


TENSOR: Any = _Tensor()  # the mark of a tensor made in __init__ whose making is not read


@dataclass(eq=False)
class HeldTensor:
    """A tensor built in __init__ whose making we read (`nn.Parameter(torch.zeros(d_in, d_out))`,
    `torch.randn(n, d) * 0.02`): its dims (ints, None where not known), how its factory fills it
    (an ir.InitSpec), and the init calls that reached it later ((order, '*', InitSpec), as
    Ctor.inits). A raw weight multiplied in forward (`x @ self.W`) is a layer with this shape."""

    shape: tuple
    made: Any
    order: int = 0  # when it was made (FileModel.order), as Ctor.order
    inits: list = field(default_factory=list)
    path: str | None = None  # its module path, once lowering assigns one (`weights.3`)
    # wrapped in nn.Parameter (trained): a plain tensor attribute (`self.mix = torch.zeros(T, T)`,
    # a buffer filled later) is no layer whose init we claim
    param: bool = False

    def init(self) -> Any:
        """The InitSpec the tensor holds after __init__: the last init call's, else its factory's."""
        return max(self.inits, key=lambda t: t[0])[2] if self.inits else self.made

    def times(self, other: Any, op: str, left: bool = True) -> Any:
        """The tensor scaled by a number (`torch.randn(n, d) * 0.02`, `W / 10`; op: 'Multiply' or
        'Divide', `left`: the tensor is the left operand): the same dims, its fill scaled;
        TENSOR for anything else (`torch.rand(d) * 2 - 1`, a fill changed by an init call)."""
        from gradlint.model.ir import InitSpec

        factor = None
        if is_number(other) and op == "Multiply":
            factor = float(other)
        elif is_number(other) and op == "Divide" and left and other:
            factor = 1.0 / float(other)
        spec, made = None, self.made
        if factor is not None and not self.inits:
            if made.scheme == "zeros":
                spec = made
            elif made.scheme == "normal":
                spec = InitSpec("normal", (("mean", float(made.get("mean", 0.0)) * factor),
                                           ("std", abs(float(made.get("std", 1.0)) * factor))), made.origin)
            elif made.scheme == "uniform":
                a, b = float(made.get("a", 0.0)) * factor, float(made.get("b", 1.0)) * factor
                spec = InitSpec("uniform", (("a", min(a, b)), ("b", max(a, b))), made.origin)
            elif made.scheme == "ones":
                spec = InitSpec("zeros", (), made.origin) if factor == 0 else \
                    InitSpec("constant", (("val", factor),), made.origin)
        return TENSOR if spec is None else HeldTensor(self.shape, spec, self.order, param=self.param)


def held_tensor(v: Any) -> bool:
    """A tensor built in __init__, shape read or not."""
    return v is TENSOR or type(v) is HeldTensor


@dataclass(frozen=True)
class ClassRef:
    """A module class as a value (`act_layer=nn.GELU`, `partial(nn.LayerNorm, eps=1e-6)`): calling
    it builds the module. kind: 'torch' (torch.nn short name), 'local' (class of the file, or of
    the library catalogue when `library` is set)."""

    kind: str
    cls: str
    args: tuple = ()
    kwargs: tuple = ()  # (name, value) pairs bound by functools.partial
    library: bool = False


@dataclass(eq=False)
class DictVal:
    """A dict, by key: the models' evaluator keeps only dicts with string keys; the training-loop
    environment also keeps numbers and, for a key known only by its text, a `Sym` (what it reads
    of a dict is its values). table: a module-level dict of classes or of plain rows the file
    never changes (`ACT2CLS = {"silu": nn.SiLU}`, `cfgs = {"A": [64, "M"]}`): the only kind whose
    items a subscript reads, since item assignments to other dicts are not followed."""

    items: dict
    table: bool = False


@dataclass(frozen=True)
class Sym:
    """A value known only by its source text (`d_model`, `config.hidden_size`); whitespace is
    dropped so that `4 * d` and `4*d` are one symbol."""

    text: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", "".join(self.text.split()))


@dataclass(eq=False)
class Ctor:
    """An instance made by a constructor call (`node`, the call): in the models, a module built
    in __init__ (a torch.nn class, a class of this file, a config, or unknown); in the
    training-loop environment, an instance of the class `cls` as written, kind 'unknown' (what it
    is to a training step is judged from the class: loop_env._PrePass.kind)."""

    kind: str  # 'torch' (short name in `cls`), 'local' (class of this file), 'unknown' (as written)
    cls: str
    args: list
    kwargs: dict
    node: cst.CSTNode
    order: int
    items: list | None = None  # containers: their members in order
    keys: list | None = None  # ModuleDict keys
    instance: "Instance | None" = None  # local classes: their interpreted __init__
    # (order, tensor name, InitSpec): explicit initialisations that reached this module
    inits: list = field(default_factory=list)
    path: str | None = None
    # The user's call that built this module when it was built inside a library block: its
    # position stands for the layer's (the catalogue's own positions mean nothing to the user).
    site: Any = None
    # (order, types, tensor, InitSpec) from `this.apply(fn)`: they reach this module and its children.
    scoped_inits: list = field(default_factory=list)
    # Why a class of this file is 'unknown': a nesting limit, not a class gradlint cannot see.
    why: str | None = None
    # `self.conv.requires_grad_(False)` (or a flag not known) in __init__ (ir.Param.frozen)
    frozen: bool = False
    # A class of another file (kind 'unknown'): (the class as written, its arguments as
    # ir.Extern.args or None), for the placeholder the project index may resolve (model/inline.py).
    extern: tuple | None = None
    # Set when __init__ reaches inside such a module (`self.block.fc.weight`, a method call on
    # it, an init of its tensors): what it did is not in the other file's IR, so it stays opaque.
    reached: bool = False


@dataclass(eq=False)
class ListVal:
    """A list or tuple. is_tuple: written as a tuple (a display, `enumerate`/`zip` items); the
    training-loop environment tells them apart when it joins two bindings, the models read both
    alike. The models may change `items` in place (`append`, `x[i] = v`)."""

    items: list
    is_tuple: bool = False


@dataclass(eq=False)
class Alt:
    """A module __init__ built one of several ways, chosen by a condition it cannot decide
    (`nn.Identity() if linear_out else act()`, `if expand_ratio != 1: layers.append(conv)`).
    key: that `if` or conditional expression. Forward is lowered once per choice (Lowerer.decide:
    one decision per key and run), so each choice is a path of its own and a finding about order
    must hold on every path. splice: the options are runs of list items (what each branch
    appended), spliced into the list or container that holds this value."""

    key: Any
    options: tuple
    splice: bool = False


def spliced(v: Any) -> list:
    """The items a starred value adds to a list or a Sequential (`[*a]`, `nn.Sequential(*layers)`):
    a list's or a built container's items; one `UNKNOWN` when they are not known (their count
    neither)."""
    if isinstance(v, ListVal):
        return list(v.items)
    if isinstance(v, Ctor) and v.items is not None:
        return list(v.items)
    return [UNKNOWN]


def _alt(key: Any, options: tuple, splice: bool = False) -> Any:
    """One of `options` (distinct by identity), or the one value when they are all the same;
    unknown past MAX_OPTIONS choices in all (a long if/elif dispatch on a name we do not know
    would multiply the forward paths for nothing: no finding holds on all of them)."""
    out: list = []
    for o in options:
        if not any(o is x for x in out):
            out.append(o)
    if len(out) == 1 and not splice:
        return out[0]
    if sum(_leaves(o) for o in out) > MAX_OPTIONS:
        return UNKNOWN
    return Alt(key, tuple(out), splice)


def _leaves(v: Any) -> int:
    return sum(_leaves(o) for o in v.options) if isinstance(v, Alt) and not v.splice else 1


def _module_like(v: Any) -> bool:
    """A value an undecided branch may choose between and still be lowered: a module, a module
    class, or None (no module)."""
    return v is None or isinstance(v, (Ctor, ClassRef, Alt))


@dataclass(frozen=True)
class AnyModule:
    """The loop variable of `for m in self.modules()` / the argument of an `apply` function;
    `types` is set inside an isinstance branch."""

    types: tuple[str, ...] = ()


@dataclass(frozen=True)
class TensorRef:
    """A parameter tensor of a module: `self.fc.weight`, `m.bias`."""

    owner: Any  # Ctor or AnyModule
    name: str


@dataclass(frozen=True)
class PathVal:
    """A value in forward: the nodes applied to input `root` so far. parts: when it is what a
    module of the file returned as a tuple, that tuple's items (source/outputs.parts_of), read
    where the caller takes it apart (`x, h = blk(x)`, `blk(x)[1]`); the path itself is the
    module's main output, which any other use follows. Not part of its identity."""

    root: str
    nodes: tuple
    parts: Any = field(default=None, compare=False)


@dataclass(eq=False)
class Instance:
    """An interpreted class instance: attributes, type-dispatched inits, its class."""

    cls: "ClassInfo"
    attrs: dict
    type_inits: list  # (order, types tuple, tensor name, InitSpec)
    attention: bool = False
    fm: Any = None  # the FileModel whose class this is (the library catalogue's, for its blocks)
    # A config object was bound to a parameter of its __init__ (models' factories: a model built
    # with a config made by a call differs from its class's own network)
    configured: bool = False
    # attribute -> the expression __init__ set it from whose value it could not follow
    # (`self.act = act_layer()`, `self.add_module('conv1', layer_fn(...))`): said in the opaque
    # node of calling it, for people
    unread: dict = field(default_factory=dict)


@dataclass
class ClassInfo:
    name: str
    node: cst.ClassDef
    bases: tuple[str, ...]
    methods: dict
    is_module: bool = False
    sequential: bool = False


def items_of(container: ListVal | DictVal) -> list:
    """The items of a list or tuple, the values of a dict (what a loop over `.values()` draws)."""
    return list(container.items.values()) if type(container) is DictVal else container.items
