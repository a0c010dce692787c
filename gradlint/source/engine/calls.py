"""Arguments of a call as written: positional and keyword, with what `*args` and `**kwargs` hide."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

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
