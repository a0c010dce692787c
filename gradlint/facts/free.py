"""Grad-free values across files: the conditions under which a site's operand carries no gradient
(`Cond`, made by source/numerics_free.py and kept on the site as `free_if`), and the query that
decides them against every call in the project (`grad_free`, with facts.callgraph's
`passed_everywhere`: a call passes a fresh tensor, a literal or a cut value as 'free').
"""

from __future__ import annotations

from typing import NamedTuple

from gradlint.facts.callgraph import passed_everywhere, project_calls
from gradlint.facts.numerics import attr_set_elsewhere
from gradlint.facts.project import Scope


class Cond(NamedTuple):
    """What a value needs to carry no gradient. `kind`:
    - 'free': every call of `function` in the project passes a grad-free value for `param`
      (position `at` after self, -1 keyword-only), and there is one such call at least;
    - 'free-or-default': the same, a call leaving it at its literal default counting as one (a
      constructor's: no call of the class at all leaves it so, as numerics_defaults believes);
    - 'default': a callable parameter of a constructor that every call leaves at its default (a
      function that holds no parameters: `noise_schedule=logsnr_schedule_cosine`);
    - 'attr': nothing of parameters.
    And for each of `attrs` (the attributes the value was read through, `self.gamma`), that no file
    sets it on an object (`model.gamma = ...`)."""

    kind: str
    function: str
    param: str
    at: int
    attrs: tuple[str, ...]


def encode(conds) -> str:
    """Conditions as a site's data holds them (plain text: the cache stores sites as data)."""
    return ";".join(sorted(f"{c.kind}|{c.function}|{c.param}|{c.at}|{','.join(c.attrs)}" for c in conds))


def decode(text: str) -> list[Cond]:
    out = []
    for part in text.split(";"):
        kind, function, param, at, attrs = part.split("|")
        out.append(Cond(kind, function, param, int(at), tuple(a for a in attrs.split(",") if a)))
    return out


def grad_free(data: dict, scope: Scope | None) -> bool:
    """Whether a site's operand carries no gradient: every condition its data holds (`free_if`)
    holds in the project. False when there are none, or when the calls cannot all be known."""
    text = data.get("free_if")
    if not text or scope is None or not scope.module:
        return False
    for cond in decode(text):
        if any(attr_set_elsewhere(scope.index, attr) for attr in cond.attrs):
            return False
        if cond.kind == "attr":
            continue
        if cond.kind == "default":
            if passed_everywhere(scope.index, scope.module, cond.function, cond.param, cond.at,
                                 default="=default") != "=default":
                return False
            continue
        if cond.kind == "free" or not cond.function.endswith(".__init__"):
            # a function no call in the project reaches is called by its users: with anything
            if not project_calls(scope.index, scope.module, cond.function):
                return False
        default = "free" if cond.kind == "free-or-default" else None
        if passed_everywhere(scope.index, scope.module, cond.function, cond.param, cond.at, default) != "free":
            return False
    return True
