"""Names and the engine values they are bound to, with where each value came from (provenance).

A value alone does not say whether a finding may quote it as "the constant `CLIP` = 0" or "the
command-line default 0": the environment records that (`Known.source`), so no client keeps a
second lookup for it. Scopes are a module and its functions (a class body binds in the scope
around it, as the names of its methods cannot see it either way); each scope holds the join of
every value it binds to a name, wherever in the scope (a function runs after its module has
bound everything, and a name bound twice to different values is unknown in both places).
A parameter is bound to what its callers pass: unknown here. Containers and instances are the
engine's own values (`values.ListVal`, `DictVal`, `Ctor`: the models evaluate to them too).
Instances are held by their text file-wide (`self.scaler`, bound in `__init__` and read in `train_step`), as the training-loop
recorder reads them. A name bound to another name (`Ref`) or to arithmetic on names (`Expr`) is
resolved when asked, in the scope where it was written; numbers fold through both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable

import libcst as cst

from gradlint.source.engine.fold import OPERATORS, as_float, binary, constant, unary
from gradlint.source.engine.values import UNKNOWN, Ctor, DictVal, ListVal, is_number

# Where a number came from: written where it is used, a name the file binds once to a literal,
# the default of a command-line option (`parser.add_argument("--clip", default=0.0)`), or a field
# of a config object the project builds (`cfg = TrainConfig()`, then `cfg.max_grad_norm`).
LITERAL, CONSTANT, ARGPARSE, CONFIG = "literal", "constant", "argparse", "config"
_SHARED = "shared:"  # (a source mark, + the global's name: a config field of a module global, Known.shared)


@dataclass(frozen=True)
class Known:
    """An engine value (a number, or `UNKNOWN`) and its provenance ('' when nothing is known);
    `origin`: for a config field, the field as its class names it (`TrainConfig.max_grad_norm`)."""

    value: Any = UNKNOWN
    source: str = ""
    origin: str = ""
    shared: str = ""  # a config field of a module global other modules may import: its name

    @property
    def number(self) -> float | None:
        return float(self.value) if is_number(self.value) else None


NOTHING = Known()


@dataclass(frozen=True)
class Ref:
    """A name bound to what another name holds (`self.g = opt`): `text` as it is read in `scope`,
    resolved when asked, so the order in which the scopes bind does not matter. `item`: the
    variable of a loop over it holds one of its items (`for o in opts`: "each"; a dict's values,
    `for k, o in opts.items()` or `opts.values()`: "values")."""

    text: str
    scope: Hashable = None
    item: str = ""


@dataclass(frozen=True)
class Expr:
    """A name bound to arithmetic on other names (`MAX_NORM = 2 * CLIP`), as written in `scope`:
    folded when a number is asked for, so the order in which the scopes bind does not matter."""

    node: cst.BaseExpression
    scope: Hashable = None


@dataclass(frozen=True)
class Returns:
    """A call of a function of the file by its name (`opt = make_optimizer(model)`): what every
    `return` of that function gives, joined, resolved when asked (the function may be defined
    after the call). The client resolves it; a name that is not one function of the file is
    unknown."""

    name: str


def join(a: Any, b: Any) -> Any:
    """Two bindings of one name: equal values stay (`same`), anything else is unknown."""
    return a if a is b or same(a, b) else UNKNOWN


def same(a: Any, b: Any, depth: int = 0) -> bool:
    """Whether two values the environment holds are one value to it: numbers that compare equal,
    equal names and arithmetic (`Ref`, `Expr`, `Returns`), instances of one class as written
    (what a training step reads of an instance; the call that made it may differ), lists or
    tuples (not one of each) whose items are the same, dicts whose values are (in order: a step
    reads a dict's values only). The models compare these values by identity: theirs change in
    place, the environment's never do."""
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):
        return is_number(a) and is_number(b) and a == b
    if is_number(a) or kind in (Ref, Expr, Returns):
        return a == b
    if depth > 8:
        return False
    if kind is Ctor:
        return a.kind == b.kind and a.cls == b.cls
    if kind is ListVal:
        return a.is_tuple == b.is_tuple and len(a.items) == len(b.items) \
            and all(same(x, y, depth + 1) for x, y in zip(a.items, b.items))
    if kind is DictVal:
        return len(a.items) == len(b.items) \
            and all(same(x, y, depth + 1) for x, y in zip(a.items.values(), b.items.values()))
    return False


class Env:
    """Scopes of bindings (keyed by any hashable: the client's scope nodes, None for the module),
    each with its parent and its parameters; and the defaults of the file's command-line options,
    which `args.<dest>` reads on whatever object holds the parsed arguments."""

    def __init__(self) -> None:
        self._bindings: dict[Hashable, dict[str, Any]] = {}
        self._params: dict[Hashable, frozenset[str]] = {}
        self._parent: dict[Hashable, Hashable] = {}
        self._options: dict[str, Any] = {}
        self._held: dict[str, Any] = {}
        # What a name no scope of the file binds, or a module's attribute (`from hparams import
        # CLIP`, `hparams.CLIP`), stands for in another project module: a number, else UNKNOWN
        # (the client's resolver: loops reads configs.ConfigReader.constant). None: not looked up.
        self.imported: Callable[[cst.BaseExpression], Any] | None = None
        # What `obj.field` reads in a scope when `obj` is an instance the client can evaluate (a
        # config built with its defaults): (value, `Class.field`), or None. None: not looked up.
        self.field: Callable[[cst.Attribute, Hashable], tuple[Any, str, str] | None] | None = None

    # -- binding -------------------------------------------------------------------------------
    def bind(self, scope: Hashable, name: str, value: Any) -> None:
        table = self._bindings.setdefault(scope, {})
        table[name] = join(table[name], value) if name in table else value

    def open_scope(self, scope: Hashable, parent: Hashable, params: frozenset[str] | set[str]) -> None:
        """`scope` (a function) sits in `parent` and binds `params` to what its callers pass."""
        self._parent[scope] = parent
        self._params[scope] = frozenset(params)

    def option(self, dest: str, default: Any) -> None:
        """A command-line option `dest` whose default is `default` (UNKNOWN: none we can read)."""
        self._options[dest] = join(self._options[dest], default) if dest in self._options else default

    def hold(self, text: str, value: Any) -> None:
        """`text` (a name or `self.attr`, as written, file-wide) is bound to `value` somewhere."""
        held = self._held
        held[text] = join(held[text], value) if text in held else value

    # -- lookup --------------------------------------------------------------------------------
    def lookup(self, scope: Hashable, name: str) -> Any:
        """The value `name` has in `scope`: its own binding, else the enclosing scopes', out to
        the module's (None); UNKNOWN when unbound or bound by a parameter on the way."""
        seen = 0
        while True:
            if name in self._params.get(scope, ()):
                return UNKNOWN
            table = self._bindings.get(scope)
            if table is not None and name in table:
                return table[name]
            if scope is None or seen > 64:
                return UNKNOWN
            scope = self._parent.get(scope)
            seen += 1

    def binder(self, scope: Hashable, name: str) -> Hashable:
        """The scope whose binding of `name` a read in `scope` sees: the nearest scope from
        `scope` out that binds it (a parameter or an assignment), else the module's (None)."""
        seen = 0
        while scope is not None and seen <= 64 and not self.binds(scope, name):
            scope = self._parent.get(scope)
            seen += 1
        return scope if seen <= 64 else None

    def is_param(self, scope: Hashable, name: str) -> bool:
        """Whether `name` is a parameter of the function `scope` itself."""
        return name in self._params.get(scope, ())

    def assigns(self, scope: Hashable, name: str) -> bool:
        """Whether `scope` itself binds `name` by an assignment (not only as a parameter)."""
        return name in self._bindings.get(scope, ())

    def binds(self, scope: Hashable, name: str) -> bool:
        """Whether `scope` itself binds `name` (a parameter or an assignment of it)."""
        return name in self._params.get(scope, ()) or name in self._bindings.get(scope, ())

    def held(self, text: str) -> Any:
        """What `text` holds wherever the file binds it (`hold`); UNKNOWN when never, or when two
        bindings disagree."""
        return self._held.get(text, UNKNOWN)

    def default(self, dest: str) -> Any:
        return self._options.get(dest, UNKNOWN)

    # -- evaluation ----------------------------------------------------------------------------
    def number(self, node: cst.BaseExpression, scope: Hashable) -> Known:
        """The number an expression stands for and where it came from: a literal (folded:
        `1e-3`, `-1`, `float("inf")`), a name bound to one (through other names and arithmetic:
        `2 * CLIP`, `MAX_NORM = CLIP`), a command-line default read as an attribute (`args.clip`),
        a field of a config object (`field`), or arithmetic on them; NOTHING else. The provenance
        of a number folded from several is `argparse` when a command-line default enters it, else
        `config` when a config field does (its origin: the first such field), else `constant`."""
        value = constant(node)
        if value is not None:
            return Known(value, LITERAL)
        sources: set[str] = set()
        value = self._fold(node, scope, sources, 0)
        if not is_number(value):
            return NOTHING
        if ARGPARSE in sources:
            return Known(value, ARGPARSE)
        fields = sorted(s for s in sources if s.startswith(CONFIG + ":"))
        if fields:
            shared = sorted(s[len(_SHARED):] for s in sources if s.startswith(_SHARED))
            return Known(value, CONFIG, fields[0][len(CONFIG) + 1:], shared=shared[0] if shared else "")
        return Known(value, CONSTANT)

    def _fold(self, node: cst.BaseExpression, scope: Hashable, sources: set, depth: int) -> Any:
        if depth > 16:
            return UNKNOWN
        value = constant(node)
        if value is not None:
            return value
        kind = type(node)
        if kind is cst.Name:
            value = self.lookup(scope, node.value)
            if value is UNKNOWN and self.imported is not None and self._free(scope, node.value):
                return self._imported(node, sources)
            return self._bound(value, sources, depth + 1)
        if kind is cst.Attribute:
            value = self.default(node.attr.value)
            if is_number(value):
                sources.add(ARGPARSE)
                return value
            if self.field is not None:
                got = self.field(node, scope)
                if got is not None:
                    if is_number(got[0]):
                        sources.add(f"{CONFIG}:{got[1]}")
                        if got[2]:
                            sources.add(_SHARED + got[2])
                        return got[0]
                    return UNKNOWN  # a field we know is not a number: not a module's constant
            return self._imported(node, sources) if self.imported is not None else UNKNOWN
        if kind is cst.UnaryOperation and type(node.operator) in (cst.Minus, cst.Plus):
            return _known(unary(type(node.operator), self._fold(node.expression, scope, sources, depth + 1)))
        if kind is cst.BinaryOperation and type(node.operator) in OPERATORS:
            left = self._fold(node.left, scope, sources, depth + 1)
            right = self._fold(node.right, scope, sources, depth + 1) if is_number(left) else UNKNOWN
            return _known(binary(type(node.operator), left, right)) if is_number(right) else UNKNOWN
        if kind is cst.Call and type(node.func) is cst.Name and node.func.value == "float" \
                and len(node.args) == 1 and node.args[0].keyword is None and not node.args[0].star:
            return _known(as_float(self._fold(node.args[0].value, scope, sources, depth + 1)))
        return UNKNOWN

    def _free(self, scope: Hashable, name: str) -> bool:
        """No scope from `scope` out to the module's binds `name` or has it as a parameter."""
        return not self.binds(self.binder(scope, name), name)

    def _imported(self, node: cst.BaseExpression, sources: set) -> Any:
        value = self.imported(node)  # type: ignore[misc]
        if not is_number(value):
            return UNKNOWN
        sources.add(CONSTANT)
        return value

    def _bound(self, value: Any, sources: set, depth: int) -> Any:
        """The number a name's binding stands for: a number, another name, arithmetic."""
        if is_number(value):
            sources.add(CONSTANT)
            return value
        if type(value) is Ref and not value.item and "." not in value.text and depth <= 16:
            return self._bound(self.lookup(value.scope, value.text), sources, depth + 1)
        if type(value) is Expr:
            return self._fold(value.node, value.scope, sources, depth + 1)
        return UNKNOWN


def _known(value: Any) -> Any:
    return UNKNOWN if value is None else value
