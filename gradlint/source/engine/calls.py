"""Arguments of a call as written (positional, keyword, what `*args` and `**kwargs` hide) and their binding to parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import libcst as cst


@dataclass(frozen=True)
class Arguments:
    """The arguments of one call. `positional` leaves out `*args` (what it unpacks is unknown):
    from `star` on (the count of plain positionals before the first `*args`), a positional's
    place in the callee is uncertain. `double_star`: a `**kwargs` may give any keyword."""

    positional: tuple[cst.BaseExpression, ...]
    keywords: dict[str, cst.BaseExpression]
    star: int | None = None
    double_star: bool = False


def arguments(call: cst.Call) -> Arguments:
    positional: list[cst.BaseExpression] = []
    keywords: dict[str, cst.BaseExpression] = {}
    star: int | None = None
    double_star = False
    for a in call.args:
        if a.keyword is not None:
            keywords.setdefault(a.keyword.value, a.value)
        elif a.star == "*":
            star = len(positional) if star is None else star
        elif a.star == "**":
            double_star = True
        else:
            positional.append(a.value)
    return Arguments(tuple(positional), keywords, star, double_star)


def split(call: cst.Call) -> tuple[list[cst.BaseExpression], dict[str, cst.BaseExpression]]:
    """(positional arguments, keyword arguments by name); `*args` and `**kwargs` left out."""
    args = arguments(call)
    return list(args.positional), args.keywords


def arg(call: cst.Call, position: int | None, keyword: str | Iterable[str]) -> cst.BaseExpression | None:
    """The argument bound to a parameter: passed by one of its keywords (`keyword`: a name or
    several, the first given wins), else the `position`-th positional one (`*args` not counted;
    None or a negative position: keyword-only). None when it is not given."""
    keywords = (keyword,) if isinstance(keyword, str) else tuple(keyword)
    for a in call.args:
        if a.keyword is not None and a.keyword.value in keywords:
            return a.value
    if position is None or position < 0:
        return None
    k = 0
    for a in call.args:
        if a.keyword is None and not a.star:
            if k == position:
                return a.value
            k += 1
    return None


@dataclass(frozen=True)
class Binding:
    """How a call's arguments bind to a function's parameters, as Python binds them.

    values: parameter -> the argument the caller passed (as the caller evaluated it).
    defaults: parameter -> its default expression (not passed; evaluate it in the callee's module).
    open: parameters an unexpanded `*args` / `**kwargs` of the call may have given: unknown.
    missing: required parameters not given (a call Python refuses).
    rest / rest_keywords: the arguments no parameter takes, for the callee's own `*args` /
    `**kwargs` (Python refuses the call when it has none); None when open.
    """

    values: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, cst.BaseExpression] = field(default_factory=dict)
    open: frozenset[str] = frozenset()
    missing: frozenset[str] = frozenset()
    rest: tuple | None = ()
    rest_keywords: dict[str, Any] | None = field(default_factory=dict)


def bind(params: cst.Parameters, positional: Sequence[Any], keywords: Mapping[str, Any], *,
         open_positional: bool = False, open_keywords: bool = False, skip: int = 0) -> Binding:
    """Bind evaluated arguments to `params` (a `def`'s or a lambda's). `positional`: the values
    before any `*args` the caller could not expand (`open_positional` then); `keywords`: the
    named ones (`open_keywords`: a `**kwargs` could not be expanded); `skip`: leading positional
    parameters already bound (`self` of a bound method)."""
    values: dict[str, Any] = {}
    defaults: dict[str, cst.BaseExpression] = {}
    open_: set[str] = set()
    missing: set[str] = set()
    ordered = [*params.posonly_params, *params.params][skip:]
    posonly = {id(p) for p in params.posonly_params}
    kwonly = params.kwonly_params
    used: set[str] = set()
    for i, p in enumerate([*ordered, *kwonly]):
        name = p.name.value
        by_position = i < len(ordered)
        if by_position and i < len(positional):
            values[name] = positional[i]
        elif id(p) not in posonly and name in keywords:
            values[name] = keywords[name]
            used.add(name)
        elif (by_position and open_positional) or (open_keywords and id(p) not in posonly):
            open_.add(name)
        elif p.default is not None:
            defaults[name] = p.default
        else:
            missing.add(name)
    rest = None if open_positional else tuple(positional[len(ordered):])
    extra = None if open_keywords else {k: v for k, v in keywords.items() if k not in used}
    return Binding(values=values, defaults=defaults, open=frozenset(open_), missing=frozenset(missing),
                   rest=rest, rest_keywords=extra)
