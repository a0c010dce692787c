"""How the `__init__` interpreter (init_walk.py) joins what the two branches of an undecided `if`
left: names and attributes both agree on are kept, module choices become an `Alt`, lists that grew
on a branch splice each branch's run, and anything else becomes unknown rather than guessed.
"""

from __future__ import annotations

from typing import Any

from gradlint.source.engine.values import Alt, _alt, Ctor, DictVal, Instance, ListVal, _module_like, UNKNOWN

_MISSING: Any = object()


def merge_items(key: Any, before: list, a: list, b: list) -> list:
    """A list after an undecided `if`: unchanged, or with what each branch appended spliced in as
    an Alt; any other change (an item replaced or removed) makes it unknown."""
    if len(a) == len(b) and all(x is y for x, y in zip(a, b)):
        return a
    n = len(before)
    if all(len(side) >= n and all(x is y for x, y in zip(side, before)) for side in (a, b)):
        return before + [Alt(key, (ListVal(a[n:]), ListVal(b[n:])), splice=True)]
    return [UNKNOWN]


def merge_values(key: Any, before: dict, a: dict, b: dict, keep_one) -> dict:
    """Names (or attributes) after an undecided `if` whose branches left them as `a` and `b`."""
    out: dict = {}
    for k in list(dict.fromkeys([*a, *b])):
        va, vb = a.get(k, _MISSING), b.get(k, _MISSING)
        if va is vb:
            out[k] = va
        elif k.startswith("__"):
            out[k] = va if va is not _MISSING else vb
        elif va is _MISSING or vb is _MISSING:
            one = vb if va is _MISSING else va
            if k in before:  # deleted on one side: unknown
                out[k] = UNKNOWN
            elif keep_one(k) or _module_like(one) and not (one is None):
                out[k] = one
            else:
                out[k] = UNKNOWN
        elif _module_like(va) and _module_like(vb):
            out[k] = _alt(key, (va, vb))
        elif _module_run(key, va) and _module_run(key, vb):
            # a list of modules bound anew on a branch (`proj = [pool] + proj`): one of the two
            # runs, spliced where the list is (as appends on branches are: merge_items)
            out[k] = ListVal([Alt(key, (ListVal(list(va.items)), ListVal(list(vb.items))), splice=True)])
        elif type(va) is type(vb) and isinstance(va, (int, float, str, bool)) and va == vb:
            out[k] = va
        elif isinstance(va, DictVal) and isinstance(vb, DictVal) and not va.table and not vb.table:
            # `kwargs["rd_ratio"] = 0.25` on one branch: the items both agree on are kept, any
            # other (a key one branch set) is unknown, whether it is passed on or not
            both = merge_values(key, {}, va.items, vb.items, keep_one=lambda _k: False)
            out[k] = DictVal({name: v if name in va.items and name in vb.items else UNKNOWN for name, v in both.items()})
        else:
            out[k] = UNKNOWN
    return out


def _module_run(key: Any, v: Any) -> bool:
    """A list of modules (or of runs of them) as a branch left it: not one whose items the merge of
    this `if` already made (a list both branches share, appended to on one: merge_items)."""
    return isinstance(v, ListVal) and all(
        isinstance(i, Ctor) or isinstance(i, Alt) and i.key is not key and (i.splice or all(isinstance(o, Ctor) for o in i.options))
        for i in v.items)


def snapshot(env: dict) -> dict:
    return {k: (v, len(v.items) if isinstance(v, ListVal) else len(v.items) if isinstance(v, Ctor) and v.items is not None else None)
            for k, v in env.items()}


def poison_changed(env: dict, before: dict, keep_new_attrs: bool = False, inst: Instance | None = None) -> None:
    """After code that may or may not have run: values it changed become unknown. A module
    attribute only one branch creates is kept (it exists on some configuration), but lists that
    grew by an unknown amount become unknown."""
    for key, value in list(env.items()):
        old = before.get(key)
        if old is None:
            if keep_new_attrs and key.startswith("self."):
                continue
            if not key.startswith("__"):
                env[key] = UNKNOWN
            continue
        old_value, old_len = old
        now_len = len(value.items) if isinstance(value, ListVal) else len(value.items) if isinstance(value, Ctor) and value.items is not None else None
        if value is not old_value or now_len != old_len:
            env[key] = UNKNOWN
            if key.startswith("self.") and inst is not None:
                inst.attrs[key[5:]] = UNKNOWN
            if isinstance(value, ListVal):
                value.items[:] = [UNKNOWN]
            elif isinstance(value, Ctor) and value.items is not None:
                value.items[:] = [UNKNOWN]
