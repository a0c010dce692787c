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
safe answer): only a read that certainly runs nothing, or one under no_grad, is left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import libcst as cst

from gradlint.source import catalog as C
from gradlint.source.engine.walk import children
from gradlint.source.freezes import frozen_paths
from gradlint.source.names import grad_mode

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
# A statement that gives parameters to an optimizer: a param group's key, an optimizer's class.
_OPTIMIZING = re.compile(r"""['"]params['"]|\boptim\b|torch\.optim|Optimizer\(|\b(Adam|AdamW|SGD|RMSprop|Adagrad|"""
                         r"""Adadelta|Adamax|NAdam|RAdam|LBFGS|Lion|Adafactor|LAMB|Lamb)\(""")
# torch.nn classes with no parameter: a module of one trains nothing wherever it runs.
_PARAMETER_FREE = (frozenset(C.ACTIVATION_MODULES) - {"PReLU"}) | frozenset(C.PASSTHROUGH_MODULES)


@dataclass
class ModuleUses:
    """What a class's methods other than forward do with each attribute `self.X` (by name X)."""

    runs: set[str] = field(default_factory=set)  # another method may run it with gradient
    held: set[str] = field(default_factory=set)  # __init__ passes it on (a container, a helper): it may run there
    members: dict[str, set[str]] = field(default_factory=dict)  # X -> the attributes __init__ builds X of
    handed: set[str] = field(default_factory=set)  # a method gives its parameters to an optimizer
    frozen: set[str] = field(default_factory=set)  # the class freezes it (or part of it)
    parameter_free: set[str] = field(default_factory=set)  # built as a torch.nn module with no parameter


def module_uses(methods: dict[str, cst.FunctionDef], code: Callable[[cst.CSTNode], str],
                qualify: Qualify) -> ModuleUses:
    """Read a class's methods once (forward only for what it freezes). `code` prints a node (the
    file's printer, memoised)."""
    uses = ModuleUses()
    for name, fn in methods.items():
        uses.frozen |= {p.split(".")[1] for p in frozen_paths(code(fn))}
        if name == "forward":
            continue
        optimizing = "optim" in name or "param_group" in name
        listed: dict[str, set[str]] = {}  # `params = list(self.m.parameters())`: the name -> the modules
        for stmt in _statements(fn):
            text = code(stmt)
            read = set(re.findall(r"\bself\.(\w+)\.(?:named_)?parameters\(\)", text))
            giving = optimizing or bool(_OPTIMIZING.search(text))
            if giving:
                uses.handed |= read
                for listing, attrs in listed.items():
                    if re.search(r"\b" + re.escape(listing) + r"\b", text):
                        uses.handed |= attrs
            elif read:
                for small in stmt.body:
                    for target in _targets(small):
                        if type(target) is cst.Name:
                            listed.setdefault(target.value, set()).update(read)
        if name == "__init__":
            _read_init(fn, uses, qualify)
            continue
        if any(grad_mode(d.decorator, qualify) == "off" for d in fn.decorators):
            continue  # (an inference method: `@torch.no_grad() def predict(...)`)
        _Reader(uses.runs, qualify).visit(fn.body, None, False)
    return uses


def outside_runs(module: cst.Module, classes: frozenset[str], qualify: Qualify) -> set[str]:
    """The attribute names that code of the file outside these classes may run on another receiver
    (`model.adjacency(inp)` in a training loop, `checkpoint(net.m, x)`): an auxiliary loss can
    train a module that the class's own forward cuts."""
    found: set[str] = set()
    reader = _Reader(found, qualify, foreign=True)
    for stmt in module.body:
        if type(stmt) is cst.ClassDef and stmt.name.value in classes:
            continue
        reader.visit(stmt, None, False)
    return found


def _statements(fn: cst.FunctionDef):
    """The simple statement lines of a function, nested ones included (a statement spans all its
    lines: `Adam(\\n    self.m.parameters(), lr=lr)` as black writes it)."""
    stack: list[cst.CSTNode] = [fn.body]
    while stack:
        n = stack.pop()
        if type(n) is cst.SimpleStatementLine:
            yield n
        elif not isinstance(n, cst.BaseExpression):
            stack.extend(reversed(list(children(n))))  # (in source order: a list, then its optimizer)


def _read_init(fn: cst.FunctionDef, uses: ModuleUses, qualify: Qualify) -> None:
    """In `__init__`: what each attribute is built of (`self.body = nn.Sequential(self.enc,
    self.dec)`), what is passed on or aliased (held), and which are parameter-free torch layers.
    A call of the module itself there (a dummy run for shapes) trains nothing."""
    for stmt in _statements(fn):
        for small in stmt.body:
            targets = _targets(small)
            own = {t.attr.value for t in targets if _self_attr(t)}
            value = getattr(small, "value", None)
            if own and type(value) is cst.Call:
                names = qualify(value.func)
                if any(n.startswith("torch.nn.") and n.rsplit(".", 1)[-1] in _PARAMETER_FREE for n in names):
                    uses.parameter_free |= own
            for n in _walk(small):
                if not _self_attr(n) or any(n is t for t in targets):
                    continue
                for x in own - {n.attr.value}:
                    uses.members.setdefault(x, set()).add(n.attr.value)
    reader = _Reader(uses.held, qualify, init=True)
    reader.visit(fn.body, None, False)


class _Reader:
    """Collects the attributes `self.X` whose use may run them (into `into`)."""

    def __init__(self, into: set[str], qualify: Qualify, *, init: bool = False, foreign: bool = False) -> None:
        self.into, self.qualify, self.init, self.foreign = into, qualify, init, foreign

    def visit(self, node: cst.CSTNode, parent: cst.CSTNode | None, nograd: bool) -> None:
        stack = [(node, parent, nograd)]
        while stack:
            n, up, off = stack.pop()
            kind = type(n)
            if kind is cst.With:
                modes = {grad_mode(item.item, self.qualify) for item in n.items}
                inner = False if ("on" in modes or "unknown" in modes) else (off or "off" in modes)
                stack.extend((item, n, off) for item in n.items)
                stack.append((n.body, n, inner))
                continue
            if kind is cst.FunctionDef and up is not None:
                if any(grad_mode(d.decorator, self.qualify) == "off" for d in n.decorators):
                    continue
            if kind is cst.Attribute and self._subject(n):
                if not off and self._may_run(n, up):
                    self.into.add(n.attr.value)
                if self.foreign:
                    stack.append((n.value, n, off))  # (`self.gcn.adjacency`: `self.gcn` is read too)
                continue
            stack.extend((c, n, off) for c in children(n))

    def _subject(self, n: cst.Attribute) -> bool:
        if self.foreign:
            # any receiver but `self` (another class's own attributes are its business) and an
            # import (`F.linear` is no module attribute `linear`)
            return not (type(n.value) is cst.Name and n.value.value == "self") and not self.qualify(n)
        return _self_attr(n)

    def _may_run(self, n: cst.Attribute, up: cst.CSTNode | None) -> bool:
        """`self.X` in context: called, passed, aliased, indexed, iterated, its weights read... may
        run it; the receiver of a method that runs nothing (`self.X.parameters()`) does not, nor
        (in __init__) a call of it (a dummy run for shapes) or the target it is assigned to."""
        if type(up) is cst.Call and up.func is n:
            return not self.init
        if type(up) is cst.Attribute and up.value is n:
            # (in __init__, `self.m.weight.data.normal_()` initialises it: no run)
            return not self.init and up.attr.value not in _NOT_RUNNING
        if self.init and type(up) is cst.AssignTarget:
            return False
        if self.foreign:
            return False  # (a bare `model.adjacency` read on another receiver: too common a name to guess)
        return type(up) not in (cst.AssignTarget, cst.Del)


def _targets(small: cst.CSTNode) -> list[cst.BaseExpression]:
    if type(small) is cst.Assign:
        return [t.target for t in small.targets]
    if type(small) in (cst.AnnAssign, cst.AugAssign):
        return [small.target]
    return []


def _self_attr(n: cst.CSTNode) -> bool:
    return type(n) is cst.Attribute and type(n.value) is cst.Name and n.value.value == "self"


def _walk(node: cst.CSTNode):
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(children(n))
