"""A block of one file re-run with the arguments a call in another file passes.

A placeholder for a class or a factory of another file (`ir.Extern`, written by `foreign.py`)
carries the caller's arguments as neutral values; `index.py` reads the defining file and asks
here for the IR of that block built with them: `lower_class` for a module class, `lower_function`
for a top-level function (or a table of the file) that returns a module. Both run the file's own
interpreters (`FileModel`, `Lowerer`) as a call of that file would, within its budget.
"""

from __future__ import annotations

from typing import Any

import libcst as cst

from gradlint.model.ir import ClassArg, ConfigArg, Network, Opaque, Extern, SeqArg, SymArg
from gradlint.source.budget import Exhausted
from gradlint.source.engine.values import Alt, ClassRef, Ctor, ListVal, Sym, UNKNOWN
from gradlint.source.foreign import _MISSING, _UNKNOWN_CALL, SUPER_NAMES, _called, _item, _self_names, _split_called, _table_name
from gradlint.source.lowering import _neutral_nodes, Lowerer
from gradlint.source.models import FileModel


def lower_class(src, name: str, args: tuple) -> Network | None:
    """The IR of module class `name` of `src` built with the arguments a call in another file
    passes (ir.Extern.args, model/inline.py): the class re-run with the caller's values, as a class
    of this file would be for a call here; an argument not known is unknown, and so are `*args` /
    `**kwargs` whatever the call gives them (their uses are open). None for a call Python would
    refuse (an argument no parameter takes, a parameter given twice) and when the class's forward
    is not followed."""
    fm = FileModel(src)
    info = fm.classes.get(name)
    init = fm._find_method(info, "__init__") if info is not None and info.is_module else None
    if init is None:
        return None
    if args is not None and any(k == SUPER_NAMES for k, _v in args):
        # `super().forward(x)` of a subclass in another file: the base's code must not touch what
        # the subclass defines or changes (its methods, its attributes, its inits of ours)
        names = next((v[0] for k, v in args if k == SUPER_NAMES and v), None)
        if not isinstance(names, str) or names and set(names.split(",")) & _self_names(fm, info):
            return None
        args = tuple((k, v) for k, v in args if k != SUPER_NAMES)

    def build(pos: list, kw: dict):
        inst = fm.instantiate(info, None, {}, bound=(pos, kw, False, False))
        low = Lowerer(fm)
        low.assign_paths(inst.attrs, "", inst.type_inits)
        return (low, *low.forward_paths(inst, ""))

    return _rerun(src, fm, info.name, info.node.name, init.params, args, 1, build)


def _rerun(src, fm: FileModel, name: str, origin: cst.Name, params: cst.Parameters, args: tuple | None, skip: int,
           build) -> Network | None:
    """The frame lower_class and lower_function share: the caller's arguments bound to `params`
    (less the first `skip`), the block built and lowered by `build(pos, kw)` -> (Lowerer, paths,
    known, note) or None, within the file's budget. None when the call cannot be bound, when
    anything was cut (a budget, the file's own cuts) or when forward is not followed."""
    bound = _bind_neutral(params, args, skip, fm, origin) if args is not None else None
    if bound is None:
        return None
    cuts = fm.cuts
    fm.meter.allow()
    try:
        made = build(*bound)
        if made is None or fm.cuts != cuts or fm.meter.exhausted:
            return None
    except (Exhausted, RecursionError):
        return None
    low, paths, known, note = made
    if not known or not paths:
        # why, for the caller's placeholder (ir.Extern), which stays opaque
        return Network(name=name, path=src.path, nodes=(), origin=src.span(origin), forward_known=False,
                       note=note) if note else None
    return Network(name=name, path=src.path, nodes=tuple(paths[0]), origin=src.span(origin),
                   params=tuple(low.params), recurrents=tuple(low.recurrents),
                   variants=tuple(tuple(p) for p in paths[1:]), note=note)


def _bind_neutral(ps: cst.Parameters, args: tuple, skip: int, fm: FileModel,
                  origin: cst.CSTNode) -> tuple[list, dict] | None:
    """A call's arguments (ir.Extern.args) as the positional and keyword values of parameters `ps`
    (less the first `skip`: `self`) in `fm` (`origin`: the block's name there); None for a call
    Python would refuse or we cannot bind."""
    if ps.posonly_params:
        return None
    positional = [p.name.value for p in list(ps.params)[skip:]]
    names = {*positional, *(p.name.value for p in ps.kwonly_params)}
    pos: list = []
    kw: dict = {}
    star, stars = type(ps.star_arg) is cst.Param, ps.star_kwarg is not None
    given = 0  # positional arguments, those *args takes included
    for key, value in args:
        v = _from_neutral(value[0], fm, origin) if value else UNKNOWN
        if isinstance(key, int) and key == given and not kw and (key < len(positional) or star):
            given += 1
            if key < len(positional):
                pos.append(v)
        elif isinstance(key, str) and key not in kw and key not in positional[:len(pos)] and (key in names or stars):
            if key in names:
                kw[key] = v
        else:
            return None
    return pos, kw


def lower_function(src, name: str, args: tuple) -> Network | None:
    """The IR of the module that top-level function `name` of `src` returns for the arguments a
    call in another file passes (ir.Extern.args): the function run in its file with the caller's
    values, as a call of this file would be; None when it returns no module we model (None, a
    number, an unknown value, a choice left open, a module whose forward is not followed), when
    Python would refuse the call, or past the budgets."""
    fm = FileModel(src)
    fn = fm.functions.get(name)
    # `ACT2CLS["gelu"](...)`, `get_act_layer(name)(...)`: the table's item, the class called
    item, called, args = _split_called(args)
    origin: cst.Name | None = fn.name if fn is not None else _table_name(fm, name)
    if origin is None or item is _MISSING and fn is None or called is _UNKNOWN_CALL:
        return None

    def build(pos: list, kw: dict):
        if fn is not None:
            value = fm._call_function(fn, None, {}, bound_self=False, bound=(pos, kw, False, False))
        else:
            value = fm.constants[name]
        if item is not _MISSING:
            value = _item(value, item)
        if called is not None:
            value = _called(fm, value, called, origin)
            if value is None:
                return None
        # One module, or one of several by a condition the run cannot decide (an `if` on a value
        # the caller does not pass): then the module is known only when every choice lowers to
        # the same IR (or all leave the gradient's scale alone). None among the choices is
        # dropped: the caller calls what it gets, so where it does, a module was returned.
        options = _leaves(value)
        if any(o is not None and not _returned_module(o) for o in options):
            return None
        options = [o for o in options if o is not None]
        if not options:
            return None
        low = Lowerer(fm)
        found: list = []
        for option in options:
            got = _returned_paths(low, option)
            if got is None:
                return None
            if got not in found:
                found.append(got)
        paths = found[0]
        if len(found) > 1 and not all(_neutral_nodes(p) for got in found for p in got):
            return low, [], False, f"returns one of {len(found)} different modules by a condition on values not known here"
        if all(all(isinstance(n, Opaque) and not isinstance(n, Extern) for n in p) for p in paths):
            return None  # nothing of it is modelled: the caller's opaque node says more
        return low, paths, True, ""

    return _rerun(src, fm, name, origin, fn.params if fn is not None else cst.Parameters(), args, 0, build)


def _leaves(value: Any) -> list:
    """The values a choice left open may be (itself when it is no choice)."""
    if isinstance(value, Alt) and not value.splice:
        return [leaf for o in value.options for leaf in _leaves(o)]
    return [value]


def _returned_module(value: Any) -> bool:
    """A module a function returns that can be lowered: a torch layer or container, a class of
    this file, a library block, or a block of another file (a placeholder of its own)."""
    return isinstance(value, Ctor) and value.kind in ("torch", "local", "pass", "unknown") and not (
        value.kind == "unknown" and value.extern is None)


def _returned_paths(low: Lowerer, value: Ctor) -> list | None:
    """The forward paths of a module a function returns, its layers under the caller's attribute
    (as lower_class names a class's); None when its forward is not followed."""
    if value.kind == "local":
        inst = value.instance
        if inst is None:
            return None
        low.assign_paths(inst.attrs, "", inst.type_inits)
        paths, known, _note = low.forward_paths(inst, "")
        return paths if known and paths else None
    if value.items is None:
        low._assign(value, "", [])  # one layer: the caller's attribute is its path
        return [low.module_nodes(value)]
    # a container: its members under the caller's attribute (`block.0`, `block.1`)
    keys = value.keys if value.keys is not None and len(value.keys) == len(value.items) else None
    if any(isinstance(i, Alt) for i in value.items):
        return None
    value.path = ""
    low.seen.add(id(value))
    for i, item in enumerate(value.items):
        low._assign(item, keys[i] if keys else str(i), [])
    return [low.module_nodes(value)]


def _from_neutral(v: Any, fm: FileModel, origin: cst.CSTNode) -> Any:
    """The interpreter's value for an argument an ir.Extern carries (the inverse of _neutral): a
    config object is an instance holding the caller's plain values (any other attribute unknown),
    as a config of another file is held where it is read (ConfigObjects._config_value)."""
    if isinstance(v, SymArg):
        return Sym(v.text)
    if isinstance(v, ClassArg):
        return ClassRef("local" if v.kind == "library" else v.kind, v.cls, tuple(_from_neutral(a, fm, origin) for a in v.args),
                        tuple((k, _from_neutral(a, fm, origin)) for k, a in v.kwargs), v.kind == "library")
    if isinstance(v, ConfigArg):
        return fm._config_value(v.cls, dict(v.values), origin)
    if isinstance(v, SeqArg):
        return ListVal([_from_neutral(a, fm, origin) for a in v.items], v.is_tuple)
    return v
