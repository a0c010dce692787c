"""The `__init__` interpreter: statements of a module's constructor (and the helpers it calls) run
on the engine's statement walker, building the module values of `engine/values.py`.

Assignments to `self.x` set the instance's attributes; lists and containers are followed through
locals; loops over known iterables are unrolled within budgets; a condition that cannot be decided
runs both branches and joins them into choices (`Alt`), and what a branch changed without a
decidable join is poisoned to unknown rather than guessed. Expressions and calls are evaluated by
`models.FileModel`.
"""

from __future__ import annotations

from typing import Any, TYPE_CHECKING

import libcst as cst

from gradlint.model.ir import InitSpec
from gradlint.source import catalog as C
from gradlint.source.budget import MAX_DEPTH, MAX_ITEMS, Exhausted, Meter, fold, grown
from gradlint.source.engine.calls import arg as _arg_value
from gradlint.source.engine.interp import StatementWalker, else_body
from gradlint.source.engine.values import (
    Alt, _alt, AnyModule, ClassRef, Ctor, DictVal, HeldTensor, Instance, ListVal, _module_like, Sym, TensorRef, truth, UNKNOWN,
)
from gradlint.source.engine.values import is_number as _num
from gradlint.source.names import dotted
from gradlint.source.init_calls import (
    hands_over as _hands_over, may_initialise as _may_initialise, module_method_may_init, named_apply, one_positional as _one_positional, unwrap_partial,
)
from gradlint.source.init_fans import shape_draw
from gradlint.source.init_merge import merge_items, merge_values, poison_changed, snapshot
from gradlint.source.param_loops import Reader as ParamReader, read_loop, touches_init

if TYPE_CHECKING:
    from gradlint.source.models import FileModel


def _truth(v: Any) -> bool | None:
    """Python's truth value of an abstract value; None when it cannot be known."""
    known = truth(v)  # the plain values: None, bools, numbers, strings
    if known is not None:
        return known
    if isinstance(v, ClassRef):
        return True
    if isinstance(v, Alt):
        truths = {_truth(o) if not v.splice else _truth(o) for o in v.options}
        return truths.pop() if len(truths) == 1 else None
    if isinstance(v, ListVal) and any(isinstance(i, Alt) and i.splice for i in v.items):
        return True if any(not (isinstance(i, Alt) and i.splice) for i in v.items) else None
    if isinstance(v, ListVal) and UNKNOWN not in v.items:
        return bool(v.items)
    if isinstance(v, DictVal):
        return bool(v.items)
    if isinstance(v, Ctor):
        # Containers are falsy when empty (they define __len__); other modules are always true.
        if v.items is not None:
            return _truth(ListVal(v.items)) if UNKNOWN not in v.items else None
        return True if v.kind != "unknown" else None
    return None


_AUG_FOLDED = {cst.AddAssign: "+", cst.SubtractAssign: "-", cst.MultiplyAssign: "*", cst.FloorDivideAssign: "//"}


class _Walker(StatementWalker):
    """What the two interpreters of a module (__init__ and forward) walk alike: the file's
    budget, and the statements neither follows (a `with` runs its body only, a `try` its body
    only: the handlers are the failure case, `match` not at all)."""

    fm: FileModel

    @property
    def meter(self) -> Meter:
        return self.fm.meter

    def with_stmt(self, stmt: cst.With) -> None:
        self.block(stmt.body)

    def try_stmt(self, stmt: cst.Try | cst.TryStar) -> None:
        self.block(stmt.body)

    def match_stmt(self, stmt: cst.Match) -> None:
        pass

    def fork(self) -> dict:
        return dict(self.env)


class _InitInterpreter(_Walker):
    """Statement interpreter for __init__ and the helper methods it calls."""

    def __init__(self, fm: FileModel, env: dict, inst: Instance | None) -> None:
        self.fm = fm
        self.env = env
        self.inst = inst
        self.returned: Any = None
        self.done = False
        # (if statement, value) of returns inside branches of undecided conditions, which the
        # return after them is the other choice of.
        self.early: list = []
        self.raised = False
        self.has_returned = False
        # The class whose __init__ runs, when it is a base of the instance's class (super()).
        self.owner: Any = None

    def ev(self, e: cst.BaseExpression) -> Any:
        return self.fm.eval(e, self.env)

    evaluate = ev

    def while_stmt(self, stmt: cst.While) -> None:
        """Not followed in __init__: what it builds stays out of the model."""

    def set_attr(self, name: str, value: Any, made_by: cst.BaseExpression | None = None) -> None:
        """`self.<name> = value`; made_by: the expression it came from, kept (Instance.unread)
        when its value is not known."""
        self.env["self." + name] = value
        if self.inst is not None:
            self.inst.attrs[name] = value
            self.inst.unread.pop(name, None)
            if value is UNKNOWN and made_by is not None:
                self.inst.unread[name] = made_by

    def assign(self, target: cst.BaseExpression, value: Any, node: cst.BaseExpression | None = None) -> None:
        if node is not None and type(target) is cst.Attribute and type(target.value) is cst.Name \
                and target.value.value == "self" and value is UNKNOWN and self.inst is not None:
            self.assign_target(target, value)
            self.inst.unread[target.attr.value] = node
            return
        self.assign_target(target, value)

    def bind_name(self, name: str, value: Any) -> None:
        running = self.fm.running
        if type(value) is Ctor and value.extern is not None and running is not None and any(
                p.name.value == name for p in (*running.params.params, *running.params.kwonly_params)):
            # a parameter given its value here (`config = config or XConfig()`, `if config is
            # None: config = XConfig()`): a config of another file is read as one
            value = self.fm.config_of_call(value)
        self.env[name] = value

    def bind_attribute(self, target: cst.Attribute, value: Any) -> None:
        if type(target.value) is cst.Name and target.value.value == "self":
            layer = self.inst.attrs.get("__torch__") if self.inst is not None else None
            if isinstance(layer, Ctor) and target.attr.value.startswith(("weight", "bias")):
                # a subclass of a torch.nn layer replacing one of the layer's tensors
                self.record_init(TensorRef(layer, "*"), InitSpec("unknown", origin=None))
            self.set_attr(target.attr.value, value)
            return
        # `m.weight = nn.Parameter(...)` replaces a tensor: its init is no longer the default.
        owner = self.ev(target.value)
        if isinstance(owner, (Ctor, AnyModule)) and target.attr.value in ("weight", "bias"):
            self.record_init(TensorRef(owner, target.attr.value), InitSpec("unknown", origin=None))
        elif isinstance(owner, TensorRef) and target.attr.value == "data":
            self.record_init(owner, InitSpec("unknown", origin=None))  # `m.weight.data = ...`
        elif type(owner) is HeldTensor and target.attr.value == "data":
            self.record_init(TensorRef(owner, "*"), InitSpec("unknown", origin=None))  # `self.W.data = ...`

    def bind_subscript(self, target: cst.Subscript, value: Any) -> None:
        """`x[i] = v`, `x[a:b] = [...]`, `d["k"] = v` on a list, container or dict being built: the
        item set as Python sets it; an index not known (or a list holding the runs of undecided
        branches) makes the list unknown: it is no longer what was built."""
        owner = self.ev(target.value)
        part = target.slice[0].slice if len(target.slice) == 1 else None
        if isinstance(owner, DictVal):
            # A new dict rebound to the name (or self attribute) that held it, so that undecided
            # branches and loops of unknown length see a changed value and join it as such.
            key = self.ev(part.value) if type(part) is cst.Index else UNKNOWN
            new = DictVal({**owner.items, key: value}) if isinstance(key, str) else UNKNOWN
            if type(target.value) is cst.Name:
                self.bind_name(target.value.value, new)
            elif type(target.value) is cst.Attribute and dotted(target.value.value) == "self":
                self.set_attr(target.value.attr.value, new)
            return
        if type(owner) is HeldTensor or isinstance(owner, TensorRef) and type(owner.owner) is HeldTensor:
            # `self.W[:, 0] = 1`, `self.W.data[idx] = 0`: part of a raw weight rewritten
            self.record_init(owner if isinstance(owner, TensorRef) else TensorRef(owner, "*"),
                             InitSpec("unknown", origin=None))
            return
        if not (isinstance(owner, ListVal) or isinstance(owner, Ctor) and owner.items is not None and owner.keys is None):
            return
        items = owner.items
        if not any(isinstance(i, Alt) and i.splice for i in items):
            try:
                if type(part) is cst.Index:
                    idx = self.ev(part.value)
                    if isinstance(idx, int) and not isinstance(idx, bool) and -len(items) <= idx < len(items):
                        items[idx] = value
                        return
                elif type(part) is cst.Slice and isinstance(value, ListVal):
                    bounds = [None if b is None else self.ev(b) for b in (part.lower, part.upper, part.step)]
                    if all(b is None or isinstance(b, int) and not isinstance(b, bool) for b in bounds) and bounds[2] in (None, 1):
                        items[slice(*bounds)] = list(value.items)
                        if len(items) > MAX_ITEMS:
                            raise Exhausted()
                        return
            except (ValueError, TypeError):
                pass
        items[:] = [UNKNOWN]

    def unpack(self, value: Any, count: int) -> list | None:
        return value.items if isinstance(value, ListVal) and len(value.items) == count else None

    def aug_assign_stmt(self, small: cst.AugAssign) -> None:
        cur = self.ev(small.target)
        val = self.ev(small.value)
        if isinstance(cur, ListVal) and type(small.operator) is cst.AddAssign:
            cur.items.extend(val.items if isinstance(val, ListVal) else [UNKNOWN])
            grown(cur.items)
        elif isinstance(cur, Ctor) and cur.items is not None and type(small.operator) is cst.AddAssign:
            cur.items.extend(val.items if isinstance(val, ListVal) else [UNKNOWN])
            grown(cur.items)
        elif type(cur) is HeldTensor:
            # `self.W *= 0.1`: its fill scaled when we read it
            self.assign(small.target, cur.times(val, type(small.operator).__name__.replace("Assign", "")))
        elif _num(cur) and _num(val):
            op_text = _AUG_FOLDED.get(type(small.operator))
            folded = fold(op_text, cur, val) if op_text is not None else None
            self.assign(small.target, UNKNOWN if folded is None else folded)
        else:
            self.assign(small.target, UNKNOWN)

    def expr_stmt(self, small: cst.Expr) -> None:
        if type(small.value) is cst.Call:
            self.call_stmt(small.value)
        elif type(small.value) is cst.Tuple:
            # `self.add_module('conv1', conv),` (timm and torchvision DenseNet's layers): a trailing
            # comma makes a tuple whose calls run in order, each as a statement of its own would
            for el in small.value.elements:
                if type(el.value) is cst.Call and type(el) is cst.Element:
                    self.call_stmt(el.value)

    def raise_stmt(self, small: cst.Raise) -> None:
        # A configuration that is refused: a branch that reaches this builds nothing.
        self.raised = self.done = True

    def assert_stmt(self, small: cst.Assert) -> None:
        if _truth(self.ev(small.test)) is False:
            self.raised = self.done = True

    def return_stmt(self, small: cst.Return) -> None:
        value = self.ev(small.value) if small.value is not None else None
        for key, earlier in reversed(self.early):
            value = _alt(key, (earlier, value)) if _module_like(earlier) and _module_like(value) else UNKNOWN
        self.returned = value
        self.done = self.has_returned = True

    def call_stmt(self, call: cst.Call) -> None:
        func = call.func
        fm = self.fm
        quals = fm.qual(func)
        # nn.init.xxx_(tensor, ...)
        for q in quals:
            if q.startswith("torch.nn.init.") or q.endswith(".trunc_normal_") or q == "trunc_normal_":
                self.init_call(q.rsplit(".", 1)[-1], call)
                return
        if type(func) is cst.Name and func.value in ("trunc_normal_", "normal_init", "xavier_init", "kaiming_init"):
            self.init_call(func.value if func.value == "trunc_normal_" else "unknown", call)
            return
        if type(func) is cst.Name and func.value in fm.functions and self._module_call(call):
            return
        if type(func) is cst.Attribute:
            method = func.attr.value
            owner_expr = func.value
            if method == "requires_grad_" and dotted(owner_expr) is not None:
                layer = self.ev(owner_expr)
                if isinstance(layer, Ctor):
                    # no argument: trained; False, or a flag not known: it may not be
                    flag = _arg_value(call, 0, "requires_grad")
                    layer.frozen = flag is not None and _truth(self.ev(flag)) is not True
            if method in ("append", "extend", "insert", "add_module", "register_module") or method in C.INIT_METHODS or method in _REWRITES or method == "apply":
                owner = self.ev(owner_expr)
                if type(owner) is HeldTensor:
                    owner = TensorRef(owner, "*")  # `self.W.normal_(0, 0.02)`, `self.W.mul_(s)`
            else:
                owner = None
                if dotted(owner_expr) is not None:
                    seen = self.ev(owner_expr)  # a dotted name: nothing runs, a block of another file is marked
                    if isinstance(seen, Ctor) and seen.extern is not None:
                        seen.reached = True  # `self.block.init_weights()`: not in the other file's IR
                    elif type(seen) is Instance and seen is self.inst:
                        # `module.init_weights()` in a function given the instance: as `self.init_weights()`
                        owner_expr = cst.Name("self")
                    elif type(seen) is AnyModule and module_method_may_init(method):
                        # `m.reset_parameters()`, `module.zero_init_last()` in an apply function:
                        # the layers it reaches are initialised by code the walk does not follow
                        self.record_init(TensorRef(seen, "*"), InitSpec("unknown", origin=fm.src.span(call, within=fm.running)))
                        return
            if method == "append" and call.args:
                target = owner.items if isinstance(owner, ListVal) else owner.items if isinstance(owner, Ctor) and owner.items is not None else None
                if target is not None:
                    target.append(self.ev(call.args[0].value))
                    if len(target) > MAX_ITEMS:
                        raise Exhausted()
                return
            if method == "extend" and call.args:
                target = owner.items if isinstance(owner, ListVal) else owner.items if isinstance(owner, Ctor) and owner.items is not None else None
                if target is not None:
                    v = self.ev(call.args[0].value)
                    target.extend(v.items if isinstance(v, ListVal) else [UNKNOWN])
                    grown(target)
                return
            if method in ("add_module", "register_module") and len(call.args) >= 2:
                key = self.ev(call.args[0].value)
                value = self.ev(call.args[1].value)
                if type(owner_expr) is cst.Name and owner_expr.value == "self" and isinstance(key, str):
                    # (a parameter registered as a module is one not known, not a setting)
                    self.set_attr(key, UNKNOWN if isinstance(value, Sym) else value, call.args[1].value)
                elif (type(owner_expr) is cst.Name and owner_expr.value == "self" and self.inst is not None
                      and self.inst.cls.sequential):
                    # a member of a name not known (`self.add_module(f'conv{i}', ...)` in a loop of
                    # unknown length): nn.Sequential runs it somewhere, so the members are not
                    # known; an unknown one stands for it (lowering._sequential_members)
                    name = "<" + " ".join(self.fm.src.code(call.args[0].value).split())[:40] + ">"
                    self.set_attr(name, UNKNOWN, call.args[1].value)
                elif isinstance(owner, Ctor) and owner.items is not None:
                    owner.items.append(value)
                    if owner.keys is not None:
                        owner.keys.append(str(key))
                return
            if method == "apply" and call.args and (type(owner_expr) is cst.Name and owner_expr.value == "self"
                                                    or type(owner) is Instance and owner is self.inst):
                self.apply_fn(call.args[0].value)
                return
            if method == "apply" and call.args and isinstance(owner, Ctor):
                self.apply_fn(call.args[0].value, scope_ctor=owner)
                return
            if method in C.INIT_METHODS and isinstance(owner, TensorRef):
                scheme, names = C.INIT_METHODS[method]
                params = {}
                for i, pname in enumerate(names):
                    v = _arg_value(call, i, pname)
                    if v is not None:
                        params[pname] = self.ev(v)
                if scheme == "normal":
                    params.setdefault("mean", 0.0)
                    params.setdefault("std", 1.0)
                if scheme == "uniform":
                    params.setdefault("a", 0.0)
                    params.setdefault("b", 1.0)
                if scheme == "constant" and params.get("val") == 0:
                    scheme = "zeros"
                # a spread that is arithmetic on the layer's shape (`math.sqrt(2. / n)`, n its fan)
                read = shape_draw(self.fm, self.ev, method, names, owner, owner_expr, call) if any(
                    not _num(v) for v in params.values()) else None
                if read is not None:
                    self.record_init(owner, InitSpec(*read, origin=self.fm.src.span(call, within=self.fm.running)))
                    return
                self.record_init(owner, self.spec(scheme, params, call))
                return
            if method in _REWRITES and isinstance(owner, TensorRef):  # `m.weight.data.mul_(scale)`
                self.record_init(owner, InitSpec("unknown", origin=self.fm.src.span(call, within=self.fm.running)))
                return
            if type(func.value) is cst.Call and dotted(func.value.func) == "super" and method == "__init__":
                if self.inst is not None and self.inst.cls.sequential:
                    items: list = []
                    for a in call.args:
                        v = self.ev(a.value)
                        if a.star == "*" and isinstance(v, ListVal):
                            items.extend(v.items)
                        else:
                            items.append(v)
                    self.inst.attrs["__sequential__"] = ListVal(grown(items))
                    return
                self.super_init(call)
                return
            if type(owner_expr) is cst.Name and owner_expr.value == "self":
                method_def = self.env.get("__methods__", {}).get(method)
                if method_def is None and method in _LIBRARY_INITS and not call.args:
                    # Hugging Face's `self.post_init()` (and `init_weights()`) of a base outside the
                    # file: `self.apply(self._init_weights)`; without `_init_weights` here, the
                    # initialisation of every layer is unknown
                    self.apply_fn(cst.parse_expression("self._init_weights"))
                    return
                if method_def is not None and method not in ("forward", "__init__"):
                    env = self.env
                    if self.inst is not None and env.get("__instance__") is not self.inst:
                        # in a loop over a submodule's modules (`for m in self.head.modules():
                        # self._init(m)`): what the method initialises is the head's
                        env = {**env, "__instance__": self.inst}
                    fm._call_function(method_def, call, env, bound_self=True)
                return
        found = named_apply(call, fm.qual)
        if found is not None and self._named_apply(*found):
            return
        if _may_initialise(func, self.env, fm):
            # `weight_init.c2_xavier_fill(self.fc)`, `named_apply(fn, self)`: a function of another
            # file (or a name bound here) given a module of the instance
            self._module_call(call)

    def super_init(self, call: cst.Call) -> None:
        """`super().__init__(...)` of a class whose base is a class of this file: the base's
        __init__ runs on the same instance, with the call's arguments."""
        fm = self.fm
        if self.inst is None or self.inst.cls is None or fm.depth >= MAX_DEPTH:
            return
        cls = self.owner or self.inst.cls  # the class whose __init__ this is
        if not any(fm.classes.get(base) not in (None, cls) for base in cls.bases):
            # a subclass of a torch.nn layer: the layer, built with these arguments, holds the
            # subclass's weights (`self.weight` in what follows is its tensor)
            layer = fm.torch_layer(self.inst.cls, fm.bound_args(call, self.env), call, owner=cls)
            if layer is not None:
                self.inst.attrs["__torch__"] = layer
                for tensor in ("weight", "bias"):
                    self.env["self." + tensor] = TensorRef(layer, tensor)
                return
            ref = fm.class_ref(cls.bases[0]) if len(cls.bases) == 1 else None
            if ref is not None and ref.kind == "extern" and cls is self.inst.cls:
                # a class of another file: its __init__ runs there; a placeholder of it built with
                # these arguments stands for what `super().forward(x)` does (forward.super_forward)
                ctor = Ctor("unknown", ref.cls, [], {}, call, next(fm.order))
                self.inst.attrs["__parent__"] = fm._extern(ctor, ref.cls, call, self.env)
            return
        for base in cls.bases:
            local = fm.classes.get(base)
            if local is None or local is cls:
                continue
            init = fm._find_method(local, "__init__")
            if init is None:
                return
            scope: dict = {"__methods__": self.env.get("__methods__", {}), "__instance__": self.inst}
            fm._bind_params(list(init.params.params)[1:], init.params, call, self.env, scope,
                            exact=not self.inst.cls.is_module)
            fm.depth += 1
            running, fm.running = fm.running, init
            try:
                sub = _InitInterpreter(fm, scope, self.inst)
                sub.owner = _owner_of(fm, local, init)
                sub.block(init.body)
            finally:
                fm.depth -= 1
                fm.running = running
            for k, v in self.inst.attrs.items():
                self.env["self." + k] = v
            return

    def spec(self, scheme: str, params: dict, call: cst.Call) -> InitSpec:
        clean = []
        for k, v in params.items():
            if isinstance(v, (int, float, str)) and not isinstance(v, Sym):
                clean.append((k, float(v) if _num(v) else v))
            else:
                # A parameter we cannot evaluate makes the whole initialisation unknown.
                return InitSpec("unknown", origin=self.fm.src.span(call, within=self.fm.running))
        return InitSpec(scheme, tuple(sorted(clean)), origin=self.fm.src.span(call, within=self.fm.running))

    def init_call(self, fname: str, call: cst.Call) -> None:
        scheme = C.INIT_FUNCTIONS.get(fname, "unknown")
        if not call.args:
            return
        target = self.ev(call.args[0].value)
        if type(target) is HeldTensor:
            target = TensorRef(target, "*")  # `nn.init.xavier_uniform_(self.W)`: a raw weight
        if not isinstance(target, TensorRef):
            # mmcv's `kaiming_init(self.conv)`, `normal_init(m, std=0.01)`: given a module
            self._module_call(call)
            return
        params = dict(C.INIT_DEFAULTS.get(scheme, {}))
        for i, pname in enumerate(C.INIT_POSITIONAL.get(scheme, ())):
            v = _arg_value(call, i + 1, pname)
            if v is not None:
                params[pname] = self.ev(v)
        if scheme == "constant" and params.get("val") == 0:
            scheme = "zeros"
        self.record_init(target, self.spec(scheme, params, call) if scheme != "unknown" else InitSpec("unknown", origin=self.fm.src.span(call, within=self.fm.running)))

    def record_init(self, ref: TensorRef, spec: InitSpec) -> None:
        if self.fm.undecided and not all(_asks_for(test, ref.name) for test in self.fm.undecided):
            # In a branch of an `if` the walk cannot decide (`if "head" in name:` in a loop over
            # `named_modules()`, `if getattr(m, "is_last", False):`) the initialisation may or may
            # not happen: the tensor's init is not known (recording it as made zeroed every Linear
            # of a model whose loop zeroes only its head). A test of whether the tensor exists
            # (`if m.bias is not None:`) only skips what is not there.
            spec = InitSpec("unknown", origin=spec.origin)
        if type(ref.owner) is ParamReader:  # an init in a loop over parameters: the reader keeps it
            ref.owner.take(spec)
            return
        order = next(self.fm.order)
        if type(ref.owner) is HeldTensor:
            ref.owner.inits.append((order, "*", spec))
            return
        if isinstance(ref.owner, Ctor) and ref.owner.extern is not None:
            ref.owner.reached = True
        if isinstance(ref.owner, Ctor):
            ref.owner.inits.append((order, ref.name, spec))
        elif isinstance(ref.owner, AnyModule) and self.inst is not None:
            self.inst.type_inits.append((order, ref.owner.types, ref.name, spec))

    def _named_apply(self, fn_expr: cst.BaseExpression, module_expr: cst.BaseExpression) -> bool:
        """timm's `named_apply(partial(fn, k=v), self)`: as `self.apply(fn)`, with the partial's
        keywords bound and the module's name unknown (a test of it is undecided). False when the
        module is not one the walk knows (the call then may initialise what it is given)."""
        scope_ctor = None
        if not (type(module_expr) is cst.Name and module_expr.value == "self"):
            scope_ctor = self.ev(module_expr)
            if not isinstance(scope_ctor, Ctor):
                return False
        self.apply_fn(fn_expr, scope_ctor, named=True)
        return True

    def apply_fn(self, fn_expr: cst.BaseExpression, scope_ctor: Ctor | None = None, named: bool = False) -> None:
        """`apply(fn)`, `apply(partial(fn, k=v))`: fn run on the modules, its other parameters at
        the partial's values or their defaults; `named`: named_apply's, whose `name` is unknown."""
        fn_expr, keywords = unwrap_partial(fn_expr, self.fm.qual)
        fn = None
        if type(fn_expr) is cst.Attribute and type(fn_expr.value) is cst.Name and fn_expr.value.value == "self":
            fn = self.env.get("__methods__", {}).get(fn_expr.attr.value)
            params = list(fn.params.params)[1:] if fn is not None else []
        elif type(fn_expr) is cst.Name:
            fn = self.fm.functions.get(fn_expr.value)
            params = list(fn.params.params) if fn is not None else []
        # `self.head.apply(fn)` reaches the head's layers only: its type-dispatched inits are
        # kept on the head and handed down to its children when paths are assigned.
        target = scope_ctor.scoped_inits if scope_ctor is not None else self.inst.type_inits if self.inst is not None else None
        if fn is None or not params:
            # An init function we cannot read: the initialisation of every layer it reaches becomes unknown.
            if target is not None:
                target.append((next(self.fm.order), (), "*", InitSpec("unknown", origin=self.fm.src.span(fn_expr, within=self.fm.running))))
            return
        # (apply calls fn(m), named_apply fn(module=m, name=n): the others keep their defaults)
        bound = {p.name.value: UNKNOWN if p.default is None or named and p.name.value == "name" else self.fm.eval(p.default, {})
                 for p in (*params[1:], *fn.params.kwonly_params)}
        bound.update({a.keyword.value: self.ev(a.value) for a in keywords})
        self._run_on(fn, AnyModule(), self._scoped(scope_ctor) if scope_ctor is not None else self.inst, params, bound)

    def _module_call(self, call: cst.Call) -> bool:
        """A call given the loop's module, the instance under construction (`self`) or a module
        built in it (`self.body`, a local `layer`): a function of the file runs with it, an apply
        written out (`_run_on`, `_run_given`); any other call may initialise what it is given, so
        the initialisation of the layers it reaches is unknown. False when it is given none."""
        func = call.func
        fn = self.fm.functions.get(func.value) if type(func) is cst.Name else None
        if fn is not None and _one_positional(call) and isinstance(module := self.ev(call.args[0].value), AnyModule):
            self._run_on(fn, module)  # `for m in self.modules(): init_weights(m)`
            return True
        given = self._modules_given(call)
        if not given:
            return False
        if fn is not None:
            self._run_given(fn, call, given)
        else:
            for value in given.values():
                self._unknown_init(value, call)
        return True

    def _modules_given(self, call: cst.Call) -> dict[int, Any]:
        """The arguments of `call` (by index) that are the instance under construction or a module
        built for it, read from names only (`self`, `self.body`, `layer`), in a class's construction."""
        inst = self.env.get("__instance__")
        if type(inst) is not Instance:
            return {}
        given: dict[int, Any] = {}
        for i, a in enumerate(call.args):
            if a.star or dotted(a.value) is None:
                continue
            value = inst if type(a.value) is cst.Name and a.value.value == "self" else self.ev(a.value)
            if type(value) is Instance or type(value) is Ctor and (value.kind in ("torch", "local") or value.extern is not None):
                given[i] = value
        return given

    def _unknown_init(self, value: Instance | Ctor, node: cst.CSTNode) -> None:
        """Every layer `value` holds is initialised by code the walk does not follow."""
        spec = InitSpec("unknown", origin=self.fm.src.span(node, within=self.fm.running))
        # (a block of another file keeps its forward: its layers' inits are unknown, extern_inits)
        inits = value.type_inits if type(value) is Instance else value.scoped_inits
        inits.append((next(self.fm.order), (), "*", spec))

    def _run_given(self, fn: cst.FunctionDef, call: cst.Call, given: dict[int, Any]) -> None:
        """`init_all(self)`, `init_all(self.body, std=0.02)`: a function of the file run with its
        parameters bound to the call's arguments, those of `given` to the modules themselves (the
        instance: `module.modules()`, `module.apply(fn)` and `module.head` read as `self`'s; a
        module: scoped to it, as `self.body.apply(fn)`). Where the walk cannot follow it (nested
        too deep, an argument it cannot bind), what it was given is initialised unknown."""
        fm = self.fm
        params = list(fn.params.params)
        names = {p.name.value for p in (*params, *fn.params.kwonly_params)}
        bound: dict[str, Any] = {}
        positions: set[int] = set()
        position, open_positions = 0, False
        for i, a in enumerate(call.args):
            name = None
            if a.keyword is not None:
                name = a.keyword.value if a.keyword.value in names else None
            elif a.star:
                open_positions = open_positions or a.star == "*"
                continue
            else:
                name = params[position].name.value if position < len(params) and not open_positions else None
                if i in given:
                    positions.add(position)
                position += 1
            if i in given:
                if name is None:
                    bound.clear()
                    break
                bound[name] = given[i]
        if fm.depth >= MAX_DEPTH or len(bound) != len(given):
            for value in given.values():
                self._unknown_init(value, call)
            return
        scope: dict = {k: v for k, v in self.env.items() if k.startswith("self") or k.startswith("__")}
        # the other arguments bound as a call binds them; the modules given are bound as they are
        # (not looked up as configs of other files: `fm.config_of_call`)
        pos, kw, open_pos, open_kw = fm.bound_args(call, self.env)
        pos = [None if p in positions else v for p, v in enumerate(pos)]
        kw = {k: None if k in bound else v for k, v in kw.items()}
        fm._bind_params(params, fn.params, call, self.env, scope, bound=(pos, kw, open_pos, open_kw))
        scope.update(bound)
        inst = next((v for v in given.values() if type(v) is Instance), self.inst)
        fm.depth += 1
        running, fm.running = fm.running, fn
        try:
            _InitInterpreter(fm, scope, inst).block(fn.body)
        finally:
            fm.depth -= 1
            fm.running = running

    def _run_on(self, fn: cst.FunctionDef, module: AnyModule, inst: Instance | None = None,
                params: list | None = None, bound: dict | None = None) -> None:
        """Run an init function's body with its (first) parameter bound to `module`, each module it
        is applied to: what it initialises by type goes to `inst` (the walker's by default)."""
        params = list(fn.params.params) if params is None else params
        if not params:
            return
        scope = dict(self.env)
        scope.update(bound or {})
        scope[params[0].name.value] = module
        sub = _InitInterpreter(self.fm, scope, self.inst if inst is None else inst)
        running, self.fm.running = self.fm.running, fn
        try:
            sub.block(fn.body)
        finally:
            self.fm.running = running

    def _scoped(self, owner: Ctor) -> Instance:
        """The instance an init function or loop runs with when it reaches `owner`'s modules only
        (`self.head.apply(fn)`, `for m in model.modules()`): what it initialises by type is kept on
        `owner` (Ctor.scoped_inits) and handed down to its layers when paths are assigned."""
        return Instance(self.inst.cls if self.inst is not None else None, self.inst.attrs if self.inst is not None else {},
                        owner.scoped_inits, fm=self.fm)  # type: ignore[arg-type]

    def for_stmt(self, stmt: cst.For) -> None:
        it = stmt.iter
        # for m in self.modules(): isinstance dispatch
        if type(it) is cst.Call and type(it.func) is cst.Attribute and it.func.attr.value in ("modules", "children", "named_modules", "named_children"):
            named = it.func.attr.value.startswith("named_")
            if named and not (type(stmt.target) is cst.Tuple and len(stmt.target.elements) == 2):
                return
            walker: _InitInterpreter = self
            owner_expr = it.func.value
            if not (type(owner_expr) is cst.Name and owner_expr.value == "self"):
                # `for m in self.head.modules()`, `for m in model.modules()`: that module's layers
                # only (as `self.head.apply(fn)`); of a module not known, nothing is known to be
                # reached, and nothing is recorded. `module.modules()` in a function given the
                # instance (`init_all(self)`) is a loop over `self.modules()`.
                owner = self.ev(owner_expr)
                if type(owner) is Instance and owner is self.inst:
                    pass
                elif not isinstance(owner, Ctor):
                    return
                else:
                    walker = _InitInterpreter(self.fm, self.env, self._scoped(owner))
            target = stmt.target.elements[1].value if named else stmt.target
            if named:
                walker.assign_target(stmt.target.elements[0].value, UNKNOWN)
            walker.assign_target(target, AnyModule())
            walker.block(stmt.body)
            if walker.inst is not None and type(target) is cst.Name and \
                    _hands_over(stmt.body, target.value, self.fm, self.env.get("__methods__", {})):
                # `init_weights(m)`, `m.reset_parameters()`: what the loop does to the layers is not
                # known (after what it was seen to do): their initialisation is unknown, over
                # `self.modules()` as over a submodule's or a built model's
                walker.inst.type_inits.append(
                    (next(self.fm.order), (), "*", InitSpec("unknown", origin=self.fm.src.span(stmt, within=self.fm.running))))
            return
        if type(it) is cst.Call and type(it.func) is cst.Attribute and it.func.attr.value in ("parameters", "named_parameters"):
            # What the loop does to each tensor, judged by its name and shape once the layers'
            # paths are known (param_loops); a body not read initialises every tensor unknown.
            owner = self.ev(it.func.value) if not (type(it.func.value) is cst.Name and it.func.value.value == "self") else None
            spec = InitSpec("unknown", origin=self.fm.src.span(stmt, within=self.fm.running))
            loop = read_loop(stmt, self.env, self.ev, self.call_stmt, spec.origin)
            types: tuple = ()
            if type(owner) is AnyModule:
                # `if isinstance(m, nn.Linear): for p in m.parameters()`: each such layer's own
                # tensors, by their own names; of other modules (containers), unknown
                leaf = owner.types and all(t in C.PARAM_LAYERS or t in C.RECURRENT_MODULES for t in owner.types)
                types, loop = (owner.types, loop.each()) if leaf and loop is not None else ((), None)
            if loop is not None and loop.steps or loop is None and touches_init(stmt.body):
                entry = (next(self.fm.order), types, loop or "*", spec)
                if isinstance(owner, Ctor):  # `self.rnn.named_parameters()`: the rnn and what it holds
                    owner.scoped_inits.append(entry)
                elif self.inst is not None:
                    self.inst.type_inits.append(entry)
            return
        super().for_stmt(stmt)

    def loop_items(self, stmt: cst.For) -> list | None:
        try:
            return self.fm._iterable(stmt.iter, self.env)
        except Exhausted:  # too long to unroll: as if its length were unknown
            return None

    def fork_loop(self) -> dict:
        return snapshot(self.env)

    def join_loop(self, stmt: cst.For | cst.While, before: dict) -> None:
        # Unknown trip count: effects on lists become unknown, conservatively.
        poison_changed(self.env, before)

    def if_stmt(self, stmt: cst.If) -> None:
        test = self._isinstance_test(stmt.test)
        if test is not None:
            var, types = test
            saved = self.env.get(var)
            self.env[var] = AnyModule(types)
            self.block(stmt.body)
            self.env[var] = saved
            if stmt.orelse is not None:
                self.env[var] = saved
                self.block(else_body(stmt))
                self.env[var] = saved
            return
        super().if_stmt(stmt)

    def branches(self, stmt: cst.If) -> None:
        self.fm.undecided.append(stmt.test)  # each branch may run: what they initialise is a "may"
        try:
            super().branches(stmt)
        finally:
            self.fm.undecided.pop()

    def condition(self, stmt: cst.If) -> bool | None:
        decided = _truth(self.ev(stmt.test))
        seen = self.fm.decisions
        if seen is not None:
            # a factory's run (factories.py): which of its `if`s ran one branch, and which one
            seen[id(stmt)] = decided if seen.get(id(stmt), decided) == decided else None
        return decided

    # An `if` whose condition is not known at construction: each branch runs from the same state.
    # Where they built different modules, or appended different layers to a list, the value is an
    # Alt (one forward path per choice); any other value they disagree on becomes unknown. A module
    # attribute only one branch sets is kept (it exists on some configuration).
    def fork(self) -> tuple:
        self.fm.meter.charge(len(self.env) + (len(self.inst.attrs) if self.inst is not None else 0))
        env0 = dict(self.env)
        lists = {id(v): (v, list(v.items)) for v in env0.values()
                 if isinstance(v, ListVal) or isinstance(v, Ctor) and v.items is not None}
        return env0, dict(self.inst.attrs) if self.inst is not None else {}, lists, self.returned

    def restore(self, state: tuple) -> None:
        env0, attrs0, lists, returned0 = state
        self.env.clear()
        self.env.update(env0)
        if self.inst is not None:
            self.inst.attrs.clear()
            self.inst.attrs.update(attrs0)
        for obj, items in lists.values():
            obj.items[:] = items
        self.returned, self.done, self.raised = returned0, False, False

    def settle(self, state: tuple) -> tuple:
        return (dict(self.env), dict(self.inst.attrs) if self.inst is not None else {},
                {k: list(obj.items) for k, (obj, _) in state[2].items()}, self.returned, self.done, self.raised)

    def join_branches(self, stmt: cst.CSTNode, state: tuple, first: tuple, second: tuple) -> None:
        env0, attrs0, lists, returned0 = state
        outcomes = [first, second]
        if outcomes[0][5] != outcomes[1][5]:
            # One branch refuses the configuration (raise, assert False): the other one is taken.
            env_a, attrs_a, lists_a, ret_a, done_a, _ = outcomes[1] if outcomes[0][5] else outcomes[0]
            self.env.clear()
            self.env.update(env_a)
            if self.inst is not None:
                self.inst.attrs.clear()
                self.inst.attrs.update(attrs_a)
            for k, (obj, _) in lists.items():
                obj.items[:] = lists_a[k]
            self.returned, self.done, self.raised = ret_a, done_a, False
            return
        self.raised = outcomes[0][5]
        (env_a, attrs_a, lists_a, ret_a, done_a, _), (env_b, attrs_b, lists_b, ret_b, done_b, _) = outcomes
        for k, (obj, items) in lists.items():
            obj.items[:] = merge_items(stmt, items, lists_a[k], lists_b[k])
        self.env.clear()
        self.env.update(merge_values(stmt, env0, env_a, env_b, keep_one=lambda key: key.startswith("self.")))
        if self.inst is not None:
            merged = merge_values(stmt, attrs0, attrs_a, attrs_b, keep_one=lambda key: True)
            self.inst.attrs.clear()
            self.inst.attrs.update(merged)
            for name, value in merged.items():
                self.env["self." + name] = value
        self.done = done_a and done_b
        if self.done:
            self.returned = _alt(stmt, (ret_a, ret_b)) if _module_like(ret_a) and _module_like(ret_b) else (
                ret_a if ret_a is ret_b else UNKNOWN)
        elif done_a or done_b:
            # One branch returned: the code after the `if` is the other choice of the return value.
            self.early.append((stmt, ret_a if done_a else ret_b))
            self.returned = returned0
        else:
            self.returned = returned0

    def _isinstance_test(self, test: cst.BaseExpression) -> tuple[str, tuple[str, ...]] | None:
        if type(test) is cst.BooleanOperation and type(test.operator) is cst.Or:
            # `isinstance(m, nn.Conv2d) or isinstance(m, nn.Linear)` (torchvision's googlenet)
            left, right = self._isinstance_test(test.left), self._isinstance_test(test.right)
            if left is not None and right is not None and left[0] == right[0]:
                return left[0], left[1] + right[1]
            return None
        if _is_isinstance(test) and len(test.args) == 2:
            var = test.args[0].value
            if type(var) is cst.Name and isinstance(self.env.get(var.value), AnyModule):
                types_expr = test.args[1].value
                exprs = [el.value for el in types_expr.elements] if type(types_expr) is cst.Tuple else [types_expr]
                types = []
                for t in exprs:
                    cls = self.fm.torch_class(t)
                    types.append(cls if cls is not None else (dotted(t) or "?"))
                return var.value, tuple(types)
        return None


def _asks_for(test: cst.BaseExpression, tensor: str) -> bool:
    """Whether an `if` test asks only whether the tensor exists (`m.bias is not None`, `m.bias is
    None`, `m.bias`, `hasattr(m, "bias")`, their `not`): a branch it skips holds no such tensor to
    initialise. A test that also asks anything else (`m.bias is not None and "head" in name`) is
    no such test."""
    if type(test) is cst.BooleanOperation and type(test.operator) is cst.And:
        # `hasattr(m, "bias") and m.bias is not None`; `isinstance(m, nn.Linear) and m.bias is not
        # None` (timm's inits, repeating the dispatch they are in) asks the module's kind as well
        # each side read once: a chain of `and`s nests to the left, and reading a side twice
        # would double the work at every level (150 terms never finished)
        asked = [_asks_for(t, tensor) for t in (test.left, test.right)]
        kinds = [_is_isinstance(t) for t in (test.left, test.right)]
        return any(asked) and all(a or k for a, k in zip(asked, kinds))
    while type(test) is cst.UnaryOperation and type(test.operator) is cst.Not:
        test = test.expression
    if type(test) is cst.Comparison and len(test.comparisons) == 1 and type(
            test.comparisons[0].operator) in (cst.Is, cst.IsNot) and type(test.comparisons[0].comparator) is cst.Name \
            and test.comparisons[0].comparator.value == "None":
        test = test.left
    if type(test) is cst.Attribute:
        return test.attr.value == tensor
    if type(test) is cst.Call and dotted(test.func) in ("hasattr", "getattr") and len(test.args) >= 2:
        name = test.args[1].value
        return type(name) is cst.SimpleString and name.value[1:-1] == tensor
    return False


def _is_isinstance(test: cst.BaseExpression) -> bool:
    return type(test) is cst.Call and dotted(test.func) == "isinstance"


def _owner_of(fm: FileModel, info: Any, init: cst.FunctionDef) -> Any:
    """The class of this file that defines `init` (`info` or the base it inherits it from)."""
    return next((cls for cls in fm.lineage(info) if cls.methods.get("__init__") is init), info)


# Methods a library base defines that initialise the model's layers with `_init_weights`.
_LIBRARY_INITS = frozenset({"post_init", "init_weights"})
# In-place methods that change a tensor's values from what its init made them.
_REWRITES = frozenset({"copy_", "mul_", "div_", "add_", "sub_", "clamp_", "clamp_min_", "clamp_max_", "pow_", "abs_",
                       "neg_", "sign_", "masked_fill_", "index_fill_", "scatter_", "bernoulli_", "exponential_",
                       "geometric_", "log_normal_", "cauchy_", "random_"})
