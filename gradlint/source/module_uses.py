"""Where a class uses each submodule outside its forward: what may run it with gradient, what hands
its parameters to an optimizer, what freezes it, what holds it; read once per class.

GL403's facts (numerics_sites) ask two questions of a forward that cuts something from the graph:
does another method train that module anyway (a GAN's `training_step` runs the generator that
forward runs under no_grad), and does the class give the cut module's parameters to an optimizer
(A-GCN's `get_config_optim`, queenie88/A-GCN#4)? Both were answered by regular expressions over
each method's text, per candidate module, which read docstrings and comments, took any method
call (`self.m.init_weights()`) for a run, missed `checkpoint(self.m, x)`, aliases and containers,
and cost methods x modules x returns searches. This reads the tree once: every `self.X` in a method
other than forward, by what surrounds it. Whatever is unsure may run the module (quiet is the
safe answer): a read that runs nothing (its parameters listed, its weights initialised or
printed, a method that moves or builds it), one under no_grad, and the methods that initialise or
describe the class are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import libcst as cst

from gradlint.source import catalog as C
from gradlint.source.engine.walk import children, walk
from gradlint.source.freezes import frozen_paths
from gradlint.source.names import decorators, dotted, grad_state, with_items

Qualify = Callable[[cst.BaseExpression], frozenset[str]]

# Methods of an nn.Module (or of a container) that run no forward: reading its parameters, moving
# it, initialising it, adding to it. Any other (`.forward_features(x)`, `.encode(x)`) may run it.
_NOT_RUNNING = frozenset(
    "parameters named_parameters buffers named_buffers modules named_modules children named_children "
    "state_dict load_state_dict to cuda cpu half float double bfloat16 type train eval requires_grad_ "
    "zero_grad apply add_module extra_repr reset_parameters init_weights init_weight _init_weights "
    "flatten_parameters append extend insert freeze unfreeze share_memory get_submodule get_parameter "
    "register_buffer register_parameter register_module register_forward_hook register_forward_pre_hook "
    "register_full_backward_hook register_backward_hook".split())
_PARAMETER_READS = frozenset({"parameters", "named_parameters"})
# Methods that only register a hook on a module (a layer found to be hooked runs nothing there).
_HOOKING = frozenset("register_forward_hook register_forward_pre_hook register_full_backward_hook "
                     "register_full_backward_pre_hook register_backward_hook".split())
# A statement that gives parameters to an optimizer: a param group's key, an optimizer's class.
_OPTIMIZING = re.compile(r"""['"]params['"]|\boptim\b|torch\.optim|Optimizer\(|\b(Adam|AdamW|SGD|RMSprop|Adagrad|"""
                         r"""Adadelta|Adamax|NAdam|RAdam|LBFGS|Lion|Adafactor|LAMB|Lamb)\(""")
# torch.nn classes with no parameter: a module of one trains nothing wherever it runs.
PARAMETER_FREE = (frozenset(C.ACTIVATION_MODULES) - {"PReLU"}) | frozenset(C.PASSTHROUGH_MODULES)


@dataclass
class ModuleUses:
    """What a class's methods other than forward do with each attribute `self.X` (by name X)."""

    runs: set[str] = field(default_factory=set)  # another method may run it with gradient
    # a method that hands it back as it is (`def eject(self): ...; return self.vit`) -> those
    # attributes: it runs nothing there; whoever calls the method may (numerics_sites asks the file)
    getters: dict[str, set[str]] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)  # __init__ passes it on (a container, a helper): it may run there
    members: dict[str, set[str]] = field(default_factory=dict)  # X -> the attributes __init__ builds X of
    handed: set[str] = field(default_factory=set)  # a method gives its parameters to an optimizer
    frozen: set[str] = field(default_factory=set)  # the class freezes it (or part of it)
    parameter_free: set[str] = field(default_factory=set)  # built as a torch.nn module with no parameter


# Methods that initialise or describe a class (`init_weights`, `_reset_parameters`, `extra_repr`):
# what they read of a module runs nothing. Whole names only: `initial_guess` and
# `get_representation` may run it.
_SETUP = re.compile(r"^_*(init(iali[sz]e)?(_?(weights?|param(eter)?s))?|reset_?param(eter)?s|extra_repr|repr|str)_*$")
# Calls that only look at what they are given.
_LOOKING = frozenset({"print", "repr", "str", "len", "isinstance", "hasattr", "id", "type", "format"})
# Reads of a module's attribute chain that carry no gradient to its parameters.
_NO_VALUES = frozenset({"data", "shape", "dtype", "device", "training", "ndim"})


def module_uses(methods: list[tuple[str, cst.FunctionDef]], code: Callable[[cst.CSTNode], str],
                qualify: Qualify) -> ModuleUses:
    """Read a class's methods once, its bases' that it does not override among them (and every
    `__init__`: `super().__init__()` runs them); forward only for what it freezes. `code` prints a
    node (the file's printer, memoised)."""
    uses = ModuleUses()
    for name, fn in methods:
        uses.frozen |= {p.split(".")[1] for p in frozen_paths(code(fn))}
        if name == "forward":
            continue
        _read_handing(name, fn, uses, code)
        if name == "__init__":
            _read_init(fn, uses, qualify)
        elif not _SETUP.search(name):
            reader = _Reader(uses.runs, qualify)
            reader.visit(fn.body, grad_state(None, decorators(fn), qualify, unsure_records=True))
            if reader.returned:
                uses.getters[name] = reader.returned
    return uses


def outside_runs(module: cst.Module, qualify: Qualify) -> set[str]:
    """The attribute names that code of the file may run on another receiver than `self`
    (`model.adjacency(inp)` in a training loop, `checkpoint(net.m, x)`): an auxiliary loss can
    train a module that a class's own forward cuts. Once per file."""
    found: set[str] = set()
    _Reader(found, qualify, foreign=True).visit(module, None)
    return found


def _read_handing(name: str, fn: cst.FunctionDef, uses: ModuleUses, code: Callable[[cst.CSTNode], str]) -> None:
    """The attributes whose parameters a statement of `fn` gives to an optimizer, directly or
    through a list made on an earlier line (`params = list(self.m.parameters())`)."""
    optimizing = "optim" in name or "param_group" in name
    listed: dict[str, set[str]] = {}  # the name of a list -> the modules it holds the parameters of
    for stmt in _statements(fn):
        text = code(stmt)
        read = set(re.findall(r"\bself\.(\w+)\.(?:named_)?parameters\(\)", text))
        if optimizing or _OPTIMIZING.search(text):
            uses.handed |= read
            for listing, attrs in listed.items():
                if re.search(r"\b" + re.escape(listing) + r"\b", text):
                    uses.handed |= attrs
        elif read:
            for small in stmt.body:
                for target in _targets(small):
                    if type(target) is cst.Name:
                        listed.setdefault(target.value, set()).update(read)


def _statements(fn: cst.FunctionDef):
    """The simple statements of a function, in source order, nested ones included (a statement
    spans all its lines: `Adam(\\n    self.m.parameters(), lr=lr)` as black writes it; a one-line
    body, `def configure_optimizers(self): return Adam(...)`, is one too)."""
    stack: list[cst.CSTNode] = [fn.body]
    while stack:
        n = stack.pop()
        if type(n) in (cst.SimpleStatementLine, cst.SimpleStatementSuite):
            yield n
        elif not isinstance(n, cst.BaseExpression):
            stack.extend(reversed(list(children(n))))


def _read_init(fn: cst.FunctionDef, uses: ModuleUses, qualify: Qualify) -> None:
    """In `__init__`: what each attribute is built of (`self.body = nn.Sequential(self.enc,
    self.dec)`), which are parameter-free torch layers, and which are passed on or aliased (held):
    a module bound to another name, alone or in a display (`self.parts = [self.enc, self.dec]`), or
    as its bound `forward`; given, alone or in a display, to a call whose result is kept
    (`torch.compile(self.m)`, `partial(self.m)`) or to a class or a container's adding method
    (`nn.ModuleList([...])`, `self.blocks.append(self.m)`) — not to a look (`print`) or an
    initialiser. A call of the module itself (a dummy run for shapes), its weights initialised, a
    helper called for what it does to it (`freeze_bn(self.m)`), a loop over a tuple of modules to
    initialise them: held by nothing."""
    for stmt in _statements(fn):
        for small in stmt.body:
            targets = _targets(small)
            own = {t.attr.value for t in _flat(targets) if _self_attr(t)}
            value = getattr(small, "value", None)
            if own and type(value) is cst.Call:
                names = qualify(value.func)
                if any(n.startswith("torch.nn.") and n.rsplit(".", 1)[-1] in PARAMETER_FREE for n in names):
                    uses.parameter_free |= own
            if value is not None and len(own) == 1:
                for n in walk(value, ()):
                    if _self_attr(n):
                        uses.members.setdefault(next(iter(own)), set()).add(n.attr.value)
            if value is None:
                continue
            if targets:
                uses.held.update(_displayed(value))  # `self.alias = self.m`, `self.parts = [self.a, self.b]`
                if type(value) is cst.Attribute and _self_attr(value.value) and value.attr.value == "forward":
                    uses.held.add(value.value.attr.value)  # `self.fn = self.m.forward`
            kept = bool(targets) or type(small) is cst.Return
            for n in walk(value, ()):
                if type(n) is cst.Call and not _looks(n, qualify) and (_builds(n) or (kept and n is value)):
                    for arg in n.args:
                        uses.held.update(_displayed(arg.value))


# Calls that put a module into another one (`self.blocks.append(self.m)`, `setattr(self, k, m)`).
_ADDING = frozenset({"add_module", "register_module", "setattr", "append", "extend", "insert", "update"})


def _builds(call: cst.Call) -> bool:
    """A call that may keep a module it is given: a class (`nn.Sequential(self.enc, self.dec)`, a
    wrapper of the project) or a method adding to a container. Not a helper function
    (`freeze_bn(self.m)`, `init_weights(self.m)`), which does something to it and keeps nothing."""
    last = (dotted(call.func) or "").rsplit(".", 1)[-1]
    return last[:1].isupper() or last in _ADDING


def _displayed(e: cst.BaseExpression) -> list[str]:
    """The `self.X` an argument is, or a list, tuple, set or dict display of it holds."""
    if _self_attr(e):
        return [e.attr.value]
    if type(e) in (cst.List, cst.Tuple, cst.Set):
        return [m for el in e.elements for m in _displayed(el.value)]
    if type(e) is cst.Dict:
        return [m for el in e.elements if type(el) is cst.DictElement for m in _displayed(el.value)]
    return []


def _looks(call: cst.Call, qualify: Qualify) -> bool:
    """A call that only looks at its arguments or initialises them: print, isinstance,
    torch.nn.init.*, a logger's method (outside __init__, what any other call is given may run)."""
    if type(call.func) is cst.Name and call.func.value in _LOOKING:
        return True
    if any(n.startswith("torch.nn.init.") for n in qualify(call.func)):
        return True
    return type(call.func) is cst.Attribute and call.func.attr.value in ("info", "debug", "warning", "log")


class _Reader:
    """Collects the attributes whose use may run them with gradient (into `into`): `self.X`, or,
    `foreign`, `<anything but self>.X`."""

    def __init__(self, into: set[str], qualify: Qualify, *, foreign: bool = False) -> None:
        self.into, self.qualify, self.foreign = into, qualify, foreign
        self.parent: dict[int, cst.CSTNode] = {}
        self.returned: set[str] = set()  # the attributes a `return self.X` hands back as they are
        self.scope: cst.CSTNode | None = None  # the body read (where a local name's uses are found)

    def visit(self, node: cst.CSTNode, off: str | None) -> None:
        """Read `node` with recording `off` ("off", "inference": under inference_mode, where no
        enable_grad() inside records again; None: on)."""
        self.scope = node
        stack = [(node, off)]
        while stack:
            n, off = stack.pop()
            kind = type(n)
            if kind is cst.With:
                inner = grad_state(off, with_items(n), self.qualify, unsure_records=True)
                for item in n.items:
                    self.parent[id(item)] = n
                    stack.append((item, off))
                self.parent[id(n.body)] = n
                stack.append((n.body, inner))
                continue
            if kind is cst.FunctionDef:
                # (an inference helper; an `enable_grad()` block in it records again)
                off = grad_state(off, decorators(n), self.qualify, unsure_records=True)
            if kind is cst.Attribute and self._subject(n):
                if not off and self._may_run(n):
                    self.into.add(n.attr.value)
                if not self.foreign:
                    continue
            for c in children(n):
                self.parent[id(c)] = n
                stack.append((c, off))

    def _subject(self, n: cst.Attribute) -> bool:
        if self.foreign:
            # any receiver but `self` (a class's own attributes are read with the class) and an
            # import (`F.linear` is no module attribute `linear`)
            return not (type(n.value) is cst.Name and n.value.value == "self") and not self.qualify(n)
        return _self_attr(n)

    def _may_run(self, n: cst.Attribute) -> bool:
        """The attribute `n` (`self.X`) in context: called, passed, aliased, indexed, iterated, its
        weights read may run it; its parameters listed, a method that runs nothing called on it
        (`.parameters()`, `.init_weights()`, an in-place `.weight.data.normal_()`), a read of its
        data or shape, a look (`print`, `isinstance`) or an initialiser (`nn.init.zeros_`) given
        it, or an assignment to it do not."""
        top, attrs = n, []
        up = self.parent.get(id(n))
        while type(up) is cst.Attribute and up.value is top:
            attrs.append(up.attr.value)
            top, up = up, self.parent.get(id(up))
        if type(up) is cst.Call and up.func is top:
            if not attrs:
                return True  # `self.m(x)`
            method = attrs[-1]
            called = self.parent.get(id(up))
            if type(called) is cst.Call and called.func is up:
                return True  # `self.m.float()(x)`, `self.m.to(dev)(x)`: what the method gave runs
            return not (method in _NOT_RUNNING or (len(attrs) > 1 and method.endswith("_"))
                        or any(a in _NO_VALUES for a in attrs[:-1]))
        if any(a in _NO_VALUES for a in attrs):
            return False
        if type(up) is cst.Arg:
            call = self.parent.get(id(up))
            if type(call) is cst.Call and call.args and call.args[0] is up and dotted(call.func) == "getattr":
                return not self._hooked_only(call)  # `getattr(self.vit, name)`: one of its layers
            return not (type(call) is cst.Call and _looks(call, self.qualify))
        if self.foreign:
            return False  # (`if cfg.adjacency:`, `args.backbone`: a setting's name, too common to guess)
        if type(up) is cst.Return and not attrs:
            self.returned.add(n.attr.value)  # handed back as it is: its caller decides (ModuleUses.getters)
            return False
        if attrs and self._hooked_only(top):
            return False  # `layer = self.vit.transformer; layer.register_forward_hook(self._hook)`
        return type(up) not in (cst.AssignTarget, cst.Del)

    def _hooked_only(self, node: cst.BaseExpression) -> bool:
        """Whether the module `node` gives (a layer of a submodule: `self.vit.transformer`,
        `getattr(self.vit, name)`) is only given a hook (`.register_forward_hook(self._hook)`),
        directly or through a local name bound to it whose every other mention in the body is such
        a call: registering a hook runs no forward. (Not any method that runs nothing: what
        `w = self.fc.weight; w.float()` gives may run.)"""
        up = self.parent.get(id(node))
        if type(up) is cst.Attribute and up.value is node:
            call = self.parent.get(id(up))
            return type(call) is cst.Call and call.func is up and up.attr.value in _HOOKING
        if type(up) is not cst.Assign or len(up.targets) != 1 or type(up.targets[0].target) is not cst.Name \
                or self.scope is None:
            return False
        name, mentions, methods = up.targets[0].target.value, [], {}
        for m in walk(self.scope, ()):
            if type(m) is cst.Name and m.value == name:
                mentions.append(m)
            elif type(m) is cst.Call and type(m.func) is cst.Attribute:
                methods[id(m.func.value)] = m.func.attr.value
        return len(mentions) > 1 and all(m is up.targets[0].target or methods.get(id(m)) in _HOOKING
                                         for m in mentions)


def _targets(small: cst.CSTNode) -> list[cst.BaseExpression]:
    if type(small) is cst.Assign:
        return [t.target for t in small.targets]
    if type(small) in (cst.AnnAssign, cst.AugAssign):
        return [small.target]
    return []


def _flat(targets: list[cst.BaseExpression]) -> list[cst.BaseExpression]:
    """Targets with tuples and lists taken apart (`self.a, self.b = ...`)."""
    out: list[cst.BaseExpression] = []
    for t in targets:
        if type(t) in (cst.Tuple, cst.List):
            out.extend(_flat([el.value for el in t.elements]))
        else:
            out.append(t)
    return out


def _self_attr(n: cst.CSTNode) -> bool:
    return type(n) is cst.Attribute and type(n.value) is cst.Name and n.value.value == "self"

