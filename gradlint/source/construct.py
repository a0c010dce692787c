"""Calls at construction time: what a constructor call, a factory or a helper returns while
`__init__` runs.

`ConstructCalls` is the call half of the models' evaluator (`models.FileModel`): torch.nn
constructors become `Ctor` values with their arguments; classes of the file, of other project
files and of installed libraries are instantiated by running their `__init__` with the arguments
bound (defaults, `functools.partial`; configs are built by config_objects.py); the file's
functions are evaluated with their parameters bound; anything else is an external constructor or
`UNKNOWN`. Depth and work are bounded by source/budget.py.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Iterator, TYPE_CHECKING

import libcst as cst

from gradlint.model.ir import ClassArg, ConfigArg, InitSpec, SeqArg, SymArg
from gradlint.source import catalog as C
from gradlint.source import library as L
from gradlint.source.budget import MAX_DEPTH, MAX_SAME_CLASS, Exhausted, bounded, grown
from gradlint.source.engine.values import (
    Alt, _alt, ClassInfo, ClassRef, Ctor, DictVal, HeldTensor, Instance, ListVal, spliced, Sym, TENSOR, UNKNOWN,
)
from gradlint.source.engine.values import is_number as _num
from gradlint.source.foreign import CALLED, ITEM
from gradlint.source.init_walk import _InitInterpreter
from gradlint.source.names import PARAMETER_CLASSES, dotted

if TYPE_CHECKING:
    from gradlint.source.models import FileModel


# The longest list or tuple an ir.Extern carries to the file that re-runs the block (a list of
# layer widths; a longer one is a table, not an architecture).
MAX_SEQ_ARG = 256


def _constant(v: Any) -> bool:
    return v is None or type(v) in (int, float, str, bool)


_NOT_HANDLED: Any = object()
_STR_METHODS = frozenset({"lower", "upper", "strip", "startswith", "endswith", "replace"})
_TENSOR_FACTORIES = frozenset({
    "torch.nn.Parameter", "torch.nn.parameter.Parameter", "torch.zeros", "torch.ones", "torch.randn", "torch.rand",
    "torch.empty", "torch.tensor", "torch.full", "torch.arange", "torch.linspace", "torch.eye", "torch.Tensor",
    "torch.zeros_like", "torch.ones_like", "torch.randn_like",
})


# How a factory fills the tensor it makes (ir.InitSpec's scheme and parameters); `torch.empty`
# leaves memory as it was: unknown until an init call fills it.
_FILLS = {
    "torch.zeros": ("zeros", ()), "torch.ones": ("ones", ()), "torch.randn": ("normal", (("mean", 0.0), ("std", 1.0))),
    "torch.rand": ("uniform", (("a", 0.0), ("b", 1.0))), "torch.empty": ("unknown", ()),
    "torch.Tensor": ("unknown", ()), "torch.FloatTensor": ("unknown", ()),
}


def _foreign_function(qualname: str) -> bool:
    """Whether an imported callee may be a function of the project or of an installed library that
    builds a module: not torch's, numpy's or the standard library's, named in lower case."""
    head, last = qualname.split(".", 1)[0], qualname.rsplit(".", 1)[-1]
    return (last[:1].islower() or last[:1] == "_") and head not in _NOT_PROJECT and head not in sys.stdlib_module_names


_NOT_PROJECT = frozenset({"torch", "numpy", "np", "builtins", "torchvision.ops", "einops", "scipy", "math"})

_BUILTIN_TYPES = {"str": str, "int": int, "float": float, "bool": bool}

def _foreign_value(qualname: str) -> bool:
    """Whether an imported name may be a value of a project file (a table of classes): not torch's,
    numpy's or the standard library's."""
    head = qualname.split(".", 1)[0]
    return head not in _NOT_PROJECT and head not in sys.stdlib_module_names


def _gives_a_class(held: Any) -> bool:
    """A placeholder of what a function of another file returns, with its arguments known and not
    yet called: calling it builds what the class it returns builds."""
    return (isinstance(held, Ctor) and held.kind == "unknown" and held.extern is not None and len(held.extern) > 2
            and held.extern[1] is not None and not any(k in (ITEM, CALLED) for k, _v in held.extern[1]))


def _is_ordered_dict(expr: cst.BaseExpression, fm: FileModel) -> bool:
    if type(expr) is not cst.Call:
        return False
    return "collections.OrderedDict" in fm.qual(expr.func) or dotted(expr.func) == "OrderedDict"


def _neutral(v: Any, configs: bool = False) -> tuple:
    """An argument as an ir.Extern carries it: (value,) for a constant, a symbol (ir.SymArg) or a
    torch, catalogue or project class (ir.ClassArg) whose partial arguments are such values, and
    with `configs` a config object (ir.ConfigArg: its plain values); () otherwise."""
    if _constant(v):
        return (v,)
    if configs and type(v) is Ctor and v.kind == "config" and v.instance is not None:
        return (ConfigArg(v.cls, tuple((k, x) for k, x in v.instance.attrs.items() if _constant(x))),)
    if isinstance(v, Sym):
        return (SymArg(v.text),)
    if type(v) is ListVal and len(v.items) <= MAX_SEQ_ARG:
        items = [_neutral(a) for a in v.items]
        return (SeqArg(tuple(a[0] for a in items), v.is_tuple),) if all(items) else ()
    if isinstance(v, ClassRef) and v.kind in ("torch", "extern", "local"):
        args = [_neutral(a) for a in v.args]
        kwargs = [(k, _neutral(a)) for k, a in v.kwargs]
        if all(args) and all(a for _k, a in kwargs):
            # a class of this file goes as one of another file would (kind 'extern', as this file
            # names it: model/inline.py qualifies it through this file's scope)
            kind = "library" if v.library else "extern" if v.kind == "local" else v.kind
            return (ClassArg(kind, v.cls, tuple(a[0] for a in args), tuple((k, a[0]) for k, a in kwargs)),)
    return ()


class ConstructCalls:
    """Call evaluation of FileModel (a mixin: the file's classes, functions, names and budget)."""

    def _call(self, call: cst.Call, env: dict) -> Any:
        if self.running is not None:
            self.holder[id(call)] = self.running
        func = call.func
        name = dotted(func)
        quals = self.qual(func)
        special = self._call_values(call, name, quals, env)
        if special is not _NOT_HANDLED:
            return special
        if type(func) is cst.Attribute and func.attr.value in _STR_METHODS:
            base = self._eval(func.value, env)
            if isinstance(base, str):
                args = [self._eval(a.value, env) for a in call.args]
                if all(isinstance(a, (str, ListVal)) for a in args) and not any(a.keyword or a.star for a in call.args):
                    args = [tuple(a.items) if isinstance(a, ListVal) else a for a in args]
                    if all(isinstance(a, str) or all(isinstance(i, str) for i in a) for a in args):
                        return getattr(base, func.attr.value)(*args)
        if (type(func) is cst.Attribute and func.attr.value == "verify" and len(call.args) == 1 and not call.args[0].star
                and type(func.value) is cst.Name and _weights_enum(self.classes.get(func.value.value))):
            # torchvision's `VGG16_Weights.verify(weights)` gives None for None: the entry called
            # bare builds the model from scratch (its init applies); other values name weights
            v = self._eval(call.args[0].value, env)
            return None if v is None else UNKNOWN
        if "typing.cast" in quals and len(call.args) == 2 and not any(a.star or a.keyword for a in call.args):
            return self._eval(call.args[1].value, env)  # `cast(int, v)` is v, as at run time
        if name == "str" and len(call.args) == 1:
            v = self._eval(call.args[0].value, env)
            return str(v) if isinstance(v, (int, str)) and not isinstance(v, bool) else UNKNOWN
        if name in ("int", "float") and call.args:
            v = self._eval(call.args[0].value, env)
            v = bounded(type(0 if name == "int" else 0.0)(v)) if _num(v) else None
            return UNKNOWN if v is None else v
        if name == "len" and call.args:
            items = self.items_of(self._eval(call.args[0].value, env))
            return UNKNOWN if items is None else len(items)
        if name in ("list", "tuple") and call.args:
            seq = self._iterable(call.args[0].value, env)
            return ListVal(seq) if seq is not None else UNKNOWN
        if quals & {"math.sqrt", "numpy.sqrt"} and call.args:
            v = self._eval(call.args[0].value, env)
            return math.sqrt(v) if _num(v) else (Sym(self.src.code(call)) if isinstance(v, Sym) else UNKNOWN)
        if "torch.nn.init.calculate_gain" in quals:
            nl = self._eval(call.args[0].value, env) if call.args else None
            param = self._eval(call.args[1].value, env) if len(call.args) > 1 else None
            try:
                from gradlint.model.init import gain

                return gain(nl, param if _num(param) else None) if isinstance(nl, str) else UNKNOWN
            except Exception:
                return UNKNOWN
        cls = self.torch_class(func)
        if cls is not None and (cls in C.PARAM_LAYERS or cls in C.ACTIVATION_MODULES or cls in C.NORM_MODULES
                                or cls in C.PASSTHROUGH_MODULES or cls in C.RECURRENT_MODULES
                                or cls in C.TRANSFORMER_LAYERS or cls in C.TRANSFORMER_STACKS
                                or cls in C.CONTAINERS or cls in C.ATTENTION_MODULES or cls == "Transformer"):
            return self._torch_ctor(cls, call, env)
        if cls is not None and cls[:1].isupper():
            return Ctor("unknown", cls, [], {}, call, next(self.order))
        local = self.classes.get(name or "")
        if local is not None and local.is_module and not quals:
            return self._local_ctor(local, call, env)
        if local is not None and not quals and self.depth < MAX_DEPTH:
            return self.config(local, self.bound_args(call, env))
        # A method of the class under construction that builds layers (`self._make_layer(...)`)
        if type(func) is cst.Attribute and type(func.value) is cst.Name and func.value.value == "self":
            method = env.get("__methods__", {}).get(func.attr.value)
            if method is not None:
                return self._call_function(method, call, env, bound_self=True)
        if type(func) is cst.Name and func.value in self.functions and not quals:
            return self._call_function(self.functions[func.value], call, env, bound_self=False)
        if type(func) is cst.Attribute and func.attr.value in C.MODULE_MOVES:
            base = self._eval(func.value, env)
            if isinstance(base, Ctor) and base.kind in ("local", "torch"):
                # `Generator(ngpu).to(device)`, `.cuda()`, `.train()`: nn.Module's methods that
                # return the module itself (its layers and initialisation unchanged)
                return base
        if name and name[:1].isupper() and not quals:
            # A class from another file (or one we do not model): a module we know nothing about.
            return self._extern(Ctor("unknown", name, [], {}, call, next(self.order)), name, call, env)
        if quals and any(q.rsplit(".", 1)[-1][:1].isupper() for q in quals):
            return self._extern(Ctor("unknown", sorted(quals)[0], [], {}, call, next(self.order)), name, call, env)
        if name and quals and all(_foreign_function(q) for q in quals) and not isinstance(self.src, L.LibrarySource):
            # A function of another file (`create_conv2d(...)`, `make_block(cfg.width)`): what it
            # returns is not known here, maybe a module; the project index may run it in its file
            # with these arguments (a third entry in `extern`: not a class, it may give None).
            ctor = self._extern(Ctor("unknown", name, [], {}, call, next(self.order)), name, call, env)
            ctor.extern = (*ctor.extern, "function")
            return ctor
        return UNKNOWN

    def _extern(self, ctor: Ctor, name: str | None, call: cst.Call, env: dict) -> Ctor:
        """Mark a module of a class this file does not define, named as written, with the call's
        arguments when every one is a constant: the project index may splice the class in."""
        if name and not isinstance(self.src, L.LibrarySource):
            pos, kw, open_pos, open_kw = self.bound_args(call, env)
            configs = self.configs_to_externs
            if configs:
                # `GPT(GPTConfig(n_layer=48))`: the config as its class makes it (source/configs.py)
                pos = [self.config_of_call(v) for v in pos]
                kw = {k: self.config_of_call(v) for k, v in kw.items()}
            args: tuple | None = tuple((k, _neutral(v, configs)) for k, v in (*enumerate(pos), *kw.items()))
            ctor.extern = (name, None if open_pos or open_kw else args)
        return ctor

    def _foreign_item(self, sub: cst.Subscript, call: cst.Call, env: dict) -> Ctor | None:
        """`ACT2CLS[name](...)` with ACT2CLS imported from another file: a placeholder of what
        the class that file's table holds at this key builds with these arguments (the project
        index reads the table in its file: rerun.lower_function); None when the table is not
        of the project or the key is not a constant."""
        text = dotted(sub.value)
        if not text or isinstance(self.src, L.LibrarySource) or len(sub.slice) != 1:
            return None
        if type(sub.slice[0].slice) is not cst.Index:
            return None
        quals = self.qual(sub.value)
        if not quals or not all(_foreign_value(q) for q in quals):
            return None
        key = self.eval(sub.slice[0].slice.value, env)
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            return None
        return self._called_result(None, text, ((ITEM, (key,)),), call, env, f"{text}[{key!r}]")

    def _called_result(self, held: Ctor | None, name: str, args: tuple | None, call: cst.Call, env: dict,
                       shown: str | None = None) -> Ctor:
        """A placeholder of the module that calling what another file's function (or table item)
        gives builds: the function's arguments, then the call's under the key CALLED."""
        ctor = self._extern(Ctor("unknown", shown or (held.cls if held else name), [], {}, call,
                                 next(self.order)), name, call, env)
        called = ctor.extern[1] if ctor.extern else None
        ctor.extern = (name, None if args is None or called is None else args + ((CALLED, (called,)),), "function")
        return ctor

    def _made_tensor(self, call: cst.Call, quals: frozenset[str], env: dict) -> Any:
        """A tensor factory's result: a HeldTensor with the dims and fill it makes
        (`torch.zeros(d_in, d_out)`, `nn.Parameter(torch.randn(n, d) * 0.02)`), else TENSOR
        (`torch.tensor(data)`, a frozen `nn.Parameter(..., requires_grad=False)`)."""
        args = call.args
        if quals & PARAMETER_CLASSES:
            if not args or args[0].keyword is not None or args[0].star:
                return TENSOR
            frozen = next((a.value for a in args[1:] if a.keyword is not None and a.keyword.value == "requires_grad"),
                          args[1].value if len(args) > 1 and args[1].keyword is None else None)
            if frozen is not None and self.eval(frozen, env) is not True:
                return TENSOR  # a buffer in all but name: no layer of the network
            inner = self.eval(args[0].value, env)
            if type(inner) is not HeldTensor:
                return TENSOR
            inner.param = True  # (the factory's tensor, made for this call alone)
            return inner
        fill = next((_FILLS[q] for q in sorted(quals) if q in _FILLS), None)
        if fill is None or any(a.star for a in args):
            return TENSOR
        dims = [a.value for a in args if a.keyword is None]
        size = next((a.value for a in args if a.keyword is not None and a.keyword.value == "size"), None)
        values = [self.eval(d, env) for d in dims] if dims else []
        if size is not None and not dims:
            values = [self.eval(size, env)]
        if len(values) == 1 and isinstance(values[0], ListVal):
            values = list(values[0].items)
        shape = tuple(v if type(v) is int else None for v in values)
        if not shape:
            return TENSOR
        return HeldTensor(shape, InitSpec(fill[0], fill[1], origin=self.src.span(call, within=self.running)),
                          next(self.order))

    def _call_values(self, call: cst.Call, name: str | None, quals: frozenset[str], env: dict) -> Any:
        """Calls of values rather than of names: class references held in variables, partials,
        tensors made in __init__, the library catalogue, switches known to be False."""
        held = env.get(name) if name is not None and name in env else None
        if held is None and type(call.func) is cst.Name and isinstance(self.constants.get(name), ClassRef):
            held = self.constants[name]  # `ReluRNN(4, 64)` with a module-level partial (FileModel)
        if type(call.func) is cst.Subscript and type(call.func.value) in (cst.Name, cst.Attribute):
            held = self.eval(call.func, env)  # `ACT2CLS[act_fn]()`: a class from a table of classes
            if not isinstance(held, (ClassRef, Alt)):
                foreign = self._foreign_item(call.func, call, env)
                if foreign is not None:
                    return foreign
        elif type(call.func) is cst.Call:
            held = self.eval(call.func, env)  # `get_norm_layer(name)(dim)`: the class a call gives
        if type(call.func) in (cst.Name, cst.Call) and _gives_a_class(held):
            # `act_layer = get_act_layer(name)` (a function of another file), then `act_layer(...)`
            return self._called_result(held, held.extern[0], held.extern[1], call, env)
        if held is None and type(call.func) is cst.Attribute and type(call.func.value) is cst.Name \
                and call.func.value.value == "self":
            # `self.block_cls(d)` with `block_cls = PostLNBlock` in the body of the instance's class
            # (a subclass choosing the block its base builds)
            known = self._class_attribute("self", call.func.attr.value, env)
            if isinstance(known, ClassRef):
                held = known
        if held is None and type(call.func) is cst.Attribute:
            # `layers.act(inplace=True)`: a class held by a config object (timm's LayerFn dataclass)
            owner = env.get(dotted(call.func.value) or "")
            if isinstance(owner, Ctor) and owner.kind == "config" and owner.instance is not None:
                held = owner.instance.attrs.get(call.func.attr.value)
        if isinstance(held, ClassRef):
            return self.construct(held, self.bound_args(call, env), call)
        if isinstance(held, Alt) and not held.splice:
            bound = self.bound_args(call, env)
            return _alt(held.key, tuple(self.construct(o, bound, call) if isinstance(o, ClassRef) else UNKNOWN
                                        for o in held.options))
        if quals & L.FALSE_FUNCTIONS:
            return False
        if "functools.partial" in quals and call.args:
            target = self.eval(call.args[0].value, env)
            if isinstance(target, ClassRef):
                pos, kw, open_pos, open_kw = self.bound_args(call, env)
                if open_pos or open_kw:
                    return UNKNOWN
                return ClassRef(target.kind, target.cls, target.args + tuple(pos[1:]),
                                tuple({**dict(target.kwargs), **kw}.items()), target.library)
            return UNKNOWN
        if quals & _TENSOR_FACTORIES:
            return self._made_tensor(call, quals, env)
        if quals & {"collections.OrderedDict", "typing.OrderedDict"} and not call.args:
            return DictVal({})  # filled by `layers[f"block{i}"] = ...`, then nn.Sequential(layers)
        if name == "dict" and not quals:
            pos, kw, open_pos, open_kw = self.bound_args(call, env)
            return DictVal(kw) if not pos and not open_pos and not open_kw else UNKNOWN
        if name in ("max", "min") and not quals and call.args:
            vals = [self.eval(a.value, env) for a in call.args if a.keyword is None and not a.star]
            if vals and all(_num(v) for v in vals) and len(vals) == len(call.args):
                return max(vals) if name == "max" else min(vals)
            return _NOT_HANDLED
        if name == "isinstance" and len(call.args) == 2 and not quals:
            v = self.eval(call.args[0].value, env)
            kinds = {dotted(el.value) for el in call.args[1].value.elements} if type(call.args[1].value) is cst.Tuple else {dotted(call.args[1].value)}
            if kinds <= {"list", "tuple"} and (isinstance(v, ListVal) or _num(v) or isinstance(v, (str, bool, ClassRef))):
                return isinstance(v, ListVal)
            if kinds <= _BUILTIN_TYPES.keys() and (_constant(v) or isinstance(v, ClassRef)):
                # `isinstance(name, str)` on a name or a class (timm's get_act_layer)
                return isinstance(v, tuple(_BUILTIN_TYPES[k] for k in kinds)) if _constant(v) else False
            if isinstance(v, Ctor) and v.kind == "torch":
                # `if isinstance(self.fc, nn.Linear):` on a layer built here; only torch layers
                # no other exported torch.nn class derives from are decided False (ReLU6 is a
                # Hardtanh, LazyLinear a Linear)
                types = call.args[1].value
                exprs = [el.value for el in types.elements] if type(types) is cst.Tuple else [types]
                shorts = [self.torch_class(t) for t in exprs]
                cls = v.cls[4:] if v.cls.startswith("Lazy") else v.cls
                if cls != v.cls and not cls.startswith(("Linear", "Conv")):
                    return _NOT_HANDLED  # a LazyBatchNorm2d is no BatchNorm2d until its first call
                if cls in shorts:
                    return True
                if shorts and all(t in _LEAF_LAYERS for t in shorts):
                    return False
            return _NOT_HANDLED
        if quals:
            lib = L.library_name(quals, self.src.path)
            if lib is not None:
                return self._library_call(lib, call, env)
        elif name is not None and isinstance(self.src, L.LibrarySource) and name in L.PASS:
            return self._library_call(name, call, env)
        return _NOT_HANDLED

    def _library_call(self, lib: str, call: cst.Call, env: dict) -> Any:
        if lib in L.PASS:
            # Stochastic depth's drop probability scales the branch in train mode (model/ir.Passthrough),
            # and a LayerScale's init_values it
            pos, kw = ([], {}) if lib not in L.DROP_PATHS and lib not in L.LAYER_SCALES else self.bound_args(call, env)[:2]
            ctor = Ctor("pass", L.PASS[lib], pos, kw, call, next(self.order))
            ctor.site = self.site
            return ctor
        if lib in ("to_2tuple", "to_ntuple"):
            v = self.eval(call.args[0].value, env) if call.args else UNKNOWN
            return v if isinstance(v, ListVal) else ListVal([v, v])
        if lib in ("make_divisible", "_make_divisible"):
            pos, kw, _, _ = self.bound_args(call, env)
            v = pos[0] if pos else kw.get("v", UNKNOWN)
            d = pos[1] if len(pos) > 1 else kw.get("divisor", 8)
            if _num(v) and isinstance(d, int) and d > 0:
                new = max(d, int(v + d / 2) // d * d)
                return new + d if new < 0.9 * v else new
            return UNKNOWN
        if lib == "use_fused_attn":
            return True  # the fused kernel and the written-out attention are the same function
        if lib in L.CHECKPOINT_FUNCTIONS or lib in L.PASS_FUNCTIONS or lib in L.NORM_FUNCTIONS:
            return UNKNOWN
        libfm = self.library()
        bound = self.bound_args(call, env)
        site = self.site if self.site is not None else call
        if lib in libfm.classes:
            return libfm.construct(ClassRef("local", lib, library=True), bound, call, site=site)
        fn = libfm.functions.get(lib)
        if fn is None:
            return UNKNOWN
        saved, libfm.site = libfm.site, site
        try:
            return libfm._call_function(fn, None, {}, bound_self=False, bound=bound)
        finally:
            libfm.site = saved

    def bound_args(self, call: cst.Call, env: dict) -> tuple[list, dict, bool, bool]:
        """The call's arguments evaluated here: positional values, keyword values, and whether a
        `*args` / `**kwargs` we could not expand leaves the rest open."""
        pos: list = []
        kw: dict = {}
        open_pos = open_kw = False
        for a in call.args:
            if a.star == "*":
                v = self.eval(a.value, env)
                if isinstance(v, ListVal) and not open_pos:
                    pos.extend(v.items)
                else:
                    open_pos = True
            elif a.star == "**":
                v = self.eval(a.value, env)
                if isinstance(v, DictVal):
                    kw.update(v.items)
                else:
                    open_kw = True
            elif a.keyword is not None:
                kw[a.keyword.value] = self.eval(a.value, env)
            elif not open_pos:
                pos.append(self.eval(a.value, env))
        return pos, kw, open_pos, open_kw

    def construct(self, ref: ClassRef, bound: tuple, call: cst.Call, site: Any = None) -> Any:
        """Build the module a class reference names, with already evaluated arguments."""
        pos, kw, open_pos, open_kw = bound
        pos = list(ref.args) + pos
        kw = {**dict(ref.kwargs), **kw}
        if ref.library and site is None:
            site = self.site if self.site is not None else call
        if ref.kind == "extern":
            ctor = Ctor("unknown", ref.cls, [], {}, call, next(self.order))
            args = tuple((k, _neutral(v)) for k, v in (*enumerate(pos), *kw.items()))
            ctor.extern = (ref.cls, None if open_pos or open_kw else args)
            return ctor
        if ref.kind == "torch":
            if ref.cls in C.CONTAINERS:
                return Ctor("unknown", ref.cls, [], {}, call, next(self.order))
            ctor = Ctor("torch", ref.cls, pos, kw, call, next(self.order))
            ctor.site = site if site is not None else self.site
            return ctor
        fm = self.library() if ref.library and not isinstance(self.src, L.LibrarySource) else self
        if ref.kind == "local" and not ref.library and isinstance(self.src, L.LibrarySource):
            # a class of the user's file handed to a catalogue block (`Mlp(dim, act_layer=StarReLU)`):
            # the user's class, never a catalogue block of the same name
            fm = self.user
            if fm is None:
                return Ctor("unknown", ref.cls, [], {}, call, next(self.order))
        info = fm.classes.get(ref.cls)
        if info is None:
            return Ctor("unknown", ref.cls, [], {}, call, next(self.order))
        base = fm.torch_base(info)
        if base is not None:
            return self.construct(ClassRef("torch", base), (pos, kw, open_pos, open_kw), call, site=site)
        ctor = Ctor("local", ref.cls, [], {}, call, next(self.order))
        ctor.site = site if site is not None else self.site
        if fm.depth >= MAX_DEPTH:
            ctor.kind, ctor.why = "unknown", f"nested deeper than {MAX_DEPTH} modules"
            return ctor
        saved = fm.site
        if ref.library:
            fm.site = ctor.site
        fm.depth += 1
        try:
            ctor.instance = fm.instantiate(info, None, {}, bound=(pos, kw, open_pos, open_kw))
        finally:
            fm.depth -= 1
            fm.site = saved
        return ctor

    def _call_function(self, fn: cst.FunctionDef, call: cst.Call | None, env: dict, bound_self: bool,
                       bound: tuple | None = None) -> Any:
        if self.depth >= MAX_DEPTH:
            return UNKNOWN
        scope: dict = {k: v for k, v in env.items() if k.startswith("self") or k.startswith("__")}
        params = list(fn.params.params)
        if bound_self and params:
            params = params[1:]
        # A call binds the function's `*args`/`**kwargs` to what is left of its arguments, as
        # Python does, when they are all known (`create_shortcut(..., apply_act=False, **dd)` ->
        # `DownsampleAvg(..., **kwargs)` leaves DownsampleAvg's other parameters at their
        # defaults); a splat of the caller's own unknown `**kwargs` leaves them open.
        self._bind_params(params, fn.params, call, env, scope, bound=bound,
                          exact=call is not None or bound is not None)
        self.depth += 1
        running, self.running = self.running, fn
        try:
            interp = _InitInterpreter(self, scope, inst=env.get("__instance__"))
            interp.block(fn.body)
            # `return None` is None (no anti-aliasing layer); no return seen at all is unknown.
            return interp.returned if interp.returned is not None or interp.has_returned else UNKNOWN
        finally:
            self.depth -= 1
            self.running = running

    def _bind_params(self, params: list, all_params: cst.Parameters, call: cst.Call | None, env: dict, scope: dict,
                     bound: tuple | None = None, exact: bool = False) -> None:
        """Bind the arguments to the parameters in `scope`. `exact`: the call is the whole story (a
        config built with its defaults, or a config's `super().__init__(...)`), so `*args` and
        `**kwargs` hold what is left over, as Python binds them; otherwise they stay unknown."""
        if bound is None:
            bound = self.bound_args(call, env) if call is not None else ([], {}, False, False)
        positional, keywords, open_pos, open_kw = bound
        kwonly = list(all_params.kwonly_params)
        # `i < len(params)`, not `p in params`: a list search through libcst's Python __eq__ per
        # parameter (700 000 calls over timm + torchvision)
        own = min(len(params), len(positional))
        for i, p in enumerate(params + kwonly):
            pname = p.name.value
            if i < own:
                scope[pname] = self.config_of_call(positional[i])
            elif pname in keywords:
                scope[pname] = self.config_of_call(keywords[pname])
            elif open_pos or open_kw:
                scope[pname] = Sym(pname)
            elif p.default is not None:
                scope[pname] = self.eval(p.default, {})
            else:
                scope[pname] = self.config_default(p) or Sym(pname)
        if exact and not (open_pos or open_kw):
            named = {p.name.value for p in params + kwonly}
            star = all_params.star_arg
            if type(star) is cst.Param:
                scope[star.name.value] = ListVal(list(positional[len(params):]))
            elif len(positional) > len(params):
                return
            if all_params.star_kwarg is not None:
                scope[all_params.star_kwarg.name.value] = DictVal({k: v for k, v in keywords.items() if k not in named})

    def _torch_ctor(self, cls: str, call: cst.Call, env: dict) -> Ctor:
        args = [self.eval(a.value, env) if a.star == "" else UNKNOWN for a in call.args if a.keyword is None]
        kwargs = {a.keyword.value: self.eval(a.value, env) for a in call.args if a.keyword is not None}
        ctor = Ctor("torch", cls, args, kwargs, call, next(self.order))
        ctor.site = self.site
        if cls in ("Sequential", "ModuleList", "ParameterList"):
            items: list = []
            for a in call.args:
                if a.keyword is not None:
                    continue
                v = self.eval(a.value, env)
                if a.star == "*" or cls != "Sequential":
                    items.extend(spliced(v))
                else:
                    if isinstance(v, Ctor) and v.cls == "OrderedDict":
                        items.append(UNKNOWN)
                    else:
                        items.append(v)
            grown(items)
            if len(call.args) == 1 and call.args[0].star == "" and cls == "Sequential" and _is_ordered_dict(call.args[0].value, self):
                items, keys = self._ordered_dict(call.args[0].value, env)
                ctor.keys = keys
            elif len(call.args) == 1 and call.args[0].star == "" and cls == "Sequential":
                v = self.eval(call.args[0].value, env)
                if isinstance(v, DictVal) and not v.table:  # an OrderedDict built by item assignments
                    items, ctor.keys = list(v.items.values()), list(v.items)
            ctor.items = items
        elif cls == "ModuleDict":
            ctor.items, ctor.keys = [], []
            if call.args and type(call.args[0].value) is cst.Dict:
                for el in call.args[0].value.elements:
                    if type(el) is cst.DictElement:
                        k = self.eval(el.key, env)
                        ctor.keys.append(str(k) if isinstance(k, (str, int)) else "?")
                        ctor.items.append(self.eval(el.value, env))
            elif len(call.args) == 1 and call.args[0].keyword is None and not call.args[0].star:
                # `nn.ModuleDict(dict(wte=..., h=...))` (nanoGPT) or a name bound to a dict
                v = self.eval(call.args[0].value, env)
                if isinstance(v, DictVal) and not v.table:
                    ctor.keys, ctor.items = [str(k) for k in v.items], list(v.items.values())
        return ctor

    def _ordered_dict(self, expr: cst.BaseExpression, env: dict) -> tuple[list, list]:
        items, keys = [], []
        assert type(expr) is cst.Call
        if expr.args and type(expr.args[0].value) in (cst.List, cst.Tuple):
            for el in expr.args[0].value.elements:
                pair = el.value
                if type(pair) is cst.Tuple and len(pair.elements) == 2:
                    k = self.eval(pair.elements[0].value, env)
                    keys.append(str(k) if isinstance(k, (str, int)) else "?")
                    items.append(self.eval(pair.elements[1].value, env))
        return items, keys

    def torch_base(self, info: ClassInfo) -> str | None:
        """The torch.nn layer a class only renames (`class LayerNorm2d(nn.LayerNorm): pass`: no
        __init__, no forward of its own), built with the same arguments."""
        methods = self._methods(info)
        if "__init__" in methods or "forward" in methods:
            return None
        return self.layer_base(info)

    def layer_base(self, info: ClassInfo) -> str | None:
        """The torch.nn layer class `info` derives from (directly or through classes of this
        file), one gradlint models: its short name, or None."""
        for cls in self.lineage(info):
            for base in cls.bases:
                local = self.classes.get(base)
                if local is not None and local is not cls:
                    continue  # (a class of this file: later in the lineage)
                for q in self.imports.qualify_dotted(base):
                    s = C.short(q)
                    if s is not None and (s in C.PARAM_LAYERS or s in C.NORM_MODULES or s in C.ACTIVATION_MODULES
                                          or s in C.PASSTHROUGH_MODULES):
                        return s
        return None

    def torch_layer(self, info: ClassInfo, bound: tuple, call: cst.CSTNode, owner: ClassInfo | None = None) -> Ctor | None:
        """The torch.nn layer a subclass of one builds with `super().__init__(...)` (or, without an
        __init__ of its own, with its constructor's arguments): its weights are the subclass's,
        and `super().forward(x)` (or no forward of its own) applies it. A `reset_parameters` the
        subclass overrides runs in the layer's __init__: its initialisation is then unknown.
        owner: the class whose `super().__init__` this is (a base of `info` in this file)."""
        base = self.layer_base(owner or info)
        if base is None:
            return None
        ctor = self.construct(ClassRef("torch", base), bound, call)
        if not isinstance(ctor, Ctor) or ctor.kind != "torch":
            return None
        if "reset_parameters" in self._methods(info):
            ctor.inits.append((next(self.order), "*", InitSpec("unknown", origin=None)))
        return ctor

    def _local_ctor(self, info: ClassInfo, call: cst.Call, env: dict) -> Ctor:
        base = self.torch_base(info)
        if base is not None:
            return self._torch_ctor(base, call, env)
        ctor = Ctor("local", info.name, [], {}, call, next(self.order))
        ctor.site = self.site
        building = self.building.get(info.name, 0)
        # A class built inside its own __init__ (k copies of itself: k**depth instances) is
        # followed MAX_SAME_CLASS levels deep, then unknown.
        if self.depth >= MAX_DEPTH or building >= MAX_SAME_CLASS:
            ctor.kind = "unknown"
            ctor.why = (f"built inside its own __init__ more than {MAX_SAME_CLASS} levels deep"
                        if building >= MAX_SAME_CLASS else f"nested deeper than {MAX_DEPTH} modules")
            return ctor
        self.depth += 1
        self.building[info.name] = building + 1
        try:
            ctor.instance = self.instantiate(info, call, env)
        finally:
            self.depth -= 1
            self.building[info.name] = building
        return ctor

    def instantiate(self, info: ClassInfo, call: cst.Call | None, env: dict, bound: tuple | None = None) -> Instance:
        """Interpret __init__ (the class's or its nearest local base's) with the call's arguments."""
        inst = Instance(info, {}, [], fm=self)
        scope: dict = {"__methods__": self._methods(info), "__instance__": inst}
        init = self._find_method(info, "__init__")
        if init is not None:
            params = list(init.params.params)[1:]
            self._bind_params(params, init.params, call, env, scope, bound=bound,
                              # (as _call_function's; a class lowered on its own, with no
                              # call, keeps its splats open)
                              exact=not info.is_module or call is not None or bound is not None)
            inst.configured = any(type(v) is Ctor and v.kind == "config" for v in scope.values())
            interp = _InitInterpreter(self, scope, inst)
            running, self.running = self.running, init
            try:
                interp.block(init.body)
            except Exhausted:
                inst.attrs["__budget__"] = UNKNOWN
                self.cuts += 1
            finally:
                self.running = running
        else:
            # no __init__ of its own: a torch.nn layer's, with the constructor's arguments (none
            # known for a class lowered on its own: its sizes are then unknown)
            if bound is None:
                bound = self.bound_args(call, env) if call is not None else ([], {}, False, False)
            layer = self.torch_layer(info, bound, call or info.node)
            if layer is not None:
                inst.attrs["__torch__"] = layer
        if info.sequential and (call is not None or bound is not None):
            # A subclass of nn.Sequential passes its layers to super().__init__(*layers)
            seq = inst.attrs.get("__sequential__")
            if isinstance(seq, ListVal):
                inst.attrs.update({str(i): v for i, v in enumerate(seq.items)})
        return inst

    def lineage(self, info: ClassInfo) -> tuple[ClassInfo, ...]:
        """`info` and the classes of this file it derives from, in the order Python looks a name
        up in them (C3, as Python's MRO), each once; worked out once per class. Each class's
        bases were walked again for every class below it: a lattice of diamonds 60 classes deep
        never ended, a chain of 1 000 subclasses took minutes."""
        memo: dict[int, tuple] = self.__dict__.setdefault("_lineages", {})
        got = memo.get(id(info))
        if got is None:
            _lineages(info, self.classes, memo)
            got = memo[id(info)]
        return got[1]

    def _methods(self, info: ClassInfo) -> dict:
        """The methods `info` has, its own and inherited from classes of this file, by name (the
        table is shared: callers read it)."""
        memo: dict[int, tuple] = self.__dict__.setdefault("_method_tables", {})
        got = memo.get(id(info))
        if got is None:
            methods: dict = {}
            for cls in reversed(self.lineage(info)):
                methods.update(cls.methods)
            memo[id(info)] = got = (info, methods)
        return got[1]

    def _find_method(self, info: ClassInfo, name: str) -> cst.FunctionDef | None:
        return self._methods(info).get(name)

    def defining(self, info: ClassInfo, name: str) -> ClassInfo:
        """The class of this file that defines method `name` for `info` (itself or a base; `info`
        when none does)."""
        return next((cls for cls in self.lineage(info) if name in cls.methods), info)


# Classes of one lineage at most (real ones: under 10 in a file); past it a base's methods are
# not seen (a hostile chain of thousands of subclasses).
MAX_LINEAGE = 64


def bases_first(top: ClassInfo, classes: dict, done) -> Iterator[ClassInfo]:
    """`top` and the classes of this file it derives from, each after the ones it derives from,
    leaving out those whose id is in `done` (the caller adds each class it is given), without
    recursion (a chain of thousands of classes). A base that is its own subclass (`class A(B)`,
    `class B(A)`: Python refuses to run it) ends the walk there."""
    active: set[int] = set()
    stack: list[tuple[ClassInfo, bool]] = [(top, False)]
    while stack:
        cls, ready = stack.pop()
        if id(cls) in done or (not ready and id(cls) in active):
            continue  # (done, or pushed again below itself: a cycle)
        if not ready:
            active.add(id(cls))
            stack.append((cls, True))
            stack.extend((c, False) for c in (classes.get(b) for b in reversed(cls.bases))
                         if c is not None and c is not cls)
            continue
        active.discard(id(cls))
        yield cls


def _lineages(top: ClassInfo, classes: dict, memo: dict[int, tuple]) -> None:
    """The lineage (ConstructCalls.lineage) of `top` and of each class of the file it derives
    from, into `memo` (id -> (class, lineage))."""
    for cls in bases_first(top, classes, memo):
        parents = [c for c in (classes.get(b) for b in cls.bases) if c is not None and c is not cls]
        memo[id(cls)] = (cls, _merged(cls, [memo[id(p)][1] if id(p) in memo else (p,) for p in parents], parents))


def _merged(cls: ClassInfo, lineages: list[tuple], parents: list) -> tuple:
    """C3: `cls`, then the parents' lineages merged so that each class comes before its bases and
    the bases keep their written order; where they cannot (an order Python refuses), the first
    candidate. At most MAX_LINEAGE classes."""
    if len(parents) == 1:
        return ((cls,) + tuple(c for c in lineages[0] if c is not cls))[:MAX_LINEAGE]  # (a cycle: once)
    seqs = [list(s) for s in lineages] + [list(parents)]
    out = [cls]
    while len(out) < MAX_LINEAGE:
        seqs = [s for s in seqs if s]
        if not seqs:
            break
        tails = {id(c) for s in seqs for c in s[1:]}
        head = next((s[0] for s in seqs if id(s[0]) not in tails), seqs[0][0])
        if head is cls:  # (a base of itself)
            seqs = [[c for c in s if c is not cls] for s in seqs]
            continue
        out.append(head)
        seqs = [[c for c in s if c is not head] for s in seqs]
    return tuple(out)


# torch.nn layers that no other exported torch.nn class derives from (but their Lazy forms)
_LEAF_LAYERS = frozenset({
    "Linear", "Bilinear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "Embedding", "EmbeddingBag",
    "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "MultiheadAttention",
})


def _weights_enum(info: ClassInfo | None) -> bool:
    """A class of the file derived from torchvision's WeightsEnum (`class VGG16_Weights(WeightsEnum)`)."""
    return info is not None and any(b.rsplit(".", 1)[-1] == "WeightsEnum" for b in info.bases)
