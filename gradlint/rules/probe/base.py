"""Shared behaviour of the GL70x rules: findings from what `gradlint probe` measured."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from gradlint.facts.probe import Measured, ProbeFacts, UnitShare
from gradlint.registry import Rule


class ProbeRule(Rule):
    """A rule reported only by `gradlint probe`: `measured` reads the probe's facts and the rule's
    options and yields its findings; the static pass never runs it."""

    abstract = True
    probe_only = True

    def measured(self, facts: ProbeFacts, options: Mapping[str, Any]) -> Iterator[Measured]:
        raise NotImplementedError


def chain_finding(kind: str, modules: tuple[str, ...], gain: float, ends: tuple[str, str], limit: float) -> Measured:
    """A measured chain whose gain crosses the `kind` ('vanishing', 'exploding') threshold."""
    sub = modules[modules.index(ends[0]): modules.index(ends[1]) + 1]
    msg = (f"measured gradient gain {gain:.2g} across {len(sub)} layers ({ends[0]} → {ends[1]}), "
           f"{'below' if kind == 'vanishing' else 'above'} the {kind} threshold {limit:g}; "
           "the static pass did not predict it")
    return Measured(msg, ends[0], {"modules": tuple(sub), "measured": gain, "depth": len(sub)}, measured=gain,
                    sites=tuple(sub))


def grouped(facts: ProbeFacts, items: list[UnitShare], key: str, text: str) -> Iterator[Measured]:
    """One finding per source location and module type: a loop that builds 12 saturated Tanh
    layers is one problem, named once with its modules listed."""
    groups: dict[tuple[int, int, str], list[UnitShare]] = {}
    for item in items:
        groups.setdefault((item.span.line, item.span.column, item.type_name), []).append(item)
    for (_, _, type_name), members in groups.items():
        fractions = [m.share for m in members]
        low, high = min(fractions), max(fractions)
        share = f"{high:.0%}" if f"{low:.0%}" == f"{high:.0%}" else f"{low:.0%} to {high:.0%}"
        names = [m.site for m in members]
        if len(names) == 1:
            what = f"`{names[0]}` ({type_name})"
        else:
            shown = ", ".join(names[:4]) + (", …" if len(names) > 4 else "")
            what = f"{len(names)} {type_name} modules ({shown})"
        msg = f"{share} {text.format(what=what)} over {facts.steps} probe batch{'es' if facts.steps != 1 else ''}"
        yield Measured(msg, None, {"modules": tuple(names), key: high}, span=members[-1].span, measured=high,
                       sites=tuple(names))
