"""Values of other files the models' lowering reaches: the keys a placeholder (ir.Extern) carries
beside a callee's own arguments, and how the other file reads them.

A table of classes imported from another file (`ACT2CLS["gelu"](...)`), the class a function of
another file returns then called (`get_act_layer(name)(...)`) and `super().forward(x)` of a base of
another file are placeholders of the table, function or base class: construct.py and forward.py
write them, rerun.lower_function / lower_class read them in the file that defines the name (the
project index passes the arguments over: model/inline.py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import libcst as cst

from gradlint.source.engine.values import Alt, _alt, ClassRef, DictVal, UNKNOWN

if TYPE_CHECKING:
    from gradlint.source.models import FileModel

# Keys of ir.Extern.args that are not parameters of the function the placeholder names: ITEM, the
# key of a table (`ACT2CLS["gelu"]`), then CALLED, the arguments the class it gives is called with.
ITEM = "[]"
CALLED = "()"


# The key of ir.Extern.args under which a `super().forward(x)` placeholder carries the names its
# class reads or sets on `self` (comma-separated): not a parameter of the base's __init__.
SUPER_NAMES = "self."
_SELF_NAME = re.compile(r"\bself\.([A-Za-z_]\w*)")


def _self_names(fm: Any, info: Any) -> set[str]:
    """Every `self.<name>` the class's code (and that of its bases in this file) mentions and the
    methods it defines, less the settings every module has."""
    out: set[str] = set()
    seen: set[int] = set()
    todo = [info]
    while todo:
        cls = todo.pop()
        if id(cls) in seen:
            continue
        seen.add(id(cls))
        out.update(_SELF_NAME.findall(fm.src.code(cls.node)))
        out.update(m for m in cls.methods if m not in ("__init__", "forward"))  # overrides
        todo.extend(c for c in (fm.classes.get(b) for b in cls.bases) if c is not None)
    return out - {"training"}


_MISSING: Any = object()
_UNKNOWN_CALL: Any = object()


def _split_called(args: tuple | None) -> tuple:
    """(table key or _MISSING, the arguments the class is called with or None, the function's own
    arguments) of an ir.Extern.args (ITEM, CALLED)."""
    if args is None:
        return _MISSING, None, None
    item, called, rest = _MISSING, None, []
    for key, value in args:
        if key == ITEM:
            item = value[0] if value else UNKNOWN
        elif key == CALLED:
            called = value[0] if value else _UNKNOWN_CALL
        else:
            rest.append((key, value))
    return item, called, tuple(rest)


def _table_name(fm: FileModel, name: str) -> cst.Name | None:
    """The name a module-level table of classes of the file is bound to (its position), or None."""
    if not isinstance(fm.constants.get(name), DictVal):
        return None
    for stmt in fm.src.module.body:
        if type(stmt) is cst.SimpleStatementLine:
            for small in stmt.body:
                if type(small) is cst.Assign and type(small.targets[0].target) is cst.Name and (
                        small.targets[0].target.value == name):
                    return small.targets[0].target
    return None


def _item(value: Any, key: Any) -> Any:
    """value[key] for a table of classes (each option of a choice left open)."""
    if isinstance(value, Alt) and not value.splice:
        return _alt(value.key, tuple(_item(o, key) for o in value.options))
    if isinstance(value, DictVal) and value.table and isinstance(key, str):
        return value.items.get(key, None)  # a missing key raises: nothing is built
    return UNKNOWN


def _called(fm: FileModel, value: Any, args: tuple, origin: cst.Name) -> Any:
    """What calling `value` (a class, or one of several) with a call's neutral arguments builds;
    None among the choices stays None (the caller guards such a call), anything else not a class
    makes the whole unknown (None returned)."""
    pos: list = []
    kw: dict = {}
    for key, v in args:
        got = _neutral_value(v[0], fm, origin) if v else UNKNOWN
        if isinstance(key, int):
            if key != len(pos):
                return None
            pos.append(got)
        else:
            kw[key] = got
    options = []
    for leaf in _leaves_of(value):
        if leaf is None:
            options.append(None)
        elif isinstance(leaf, ClassRef):
            options.append(fm.construct(leaf, (list(pos), dict(kw), False, False), origin))
        else:
            return None
    if not options:
        return None
    return options[0] if len(options) == 1 else _alt(origin, tuple(options))


def _leaves_of(value: Any) -> list:
    from gradlint.source.rerun import _leaves  # rerun builds on this module: imported when used

    return _leaves(value)


def _neutral_value(v: Any, fm: FileModel, origin: cst.CSTNode) -> Any:
    from gradlint.source.rerun import _from_neutral

    return _from_neutral(v, fm, origin)
