"""Shared behaviour of the GL0xx rules: turn a front-end's InputError records of their kind into findings."""

from __future__ import annotations

from typing import Iterator

from gradlint.findings import Finding
from gradlint.registry import Rule, RuleContext


class InputRule(Rule):
    abstract = True
    always_on = True
    input_error: str  # the InputError kind the rule reports
    probe_measure = "not_measurable"

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        for err in ctx.facts.input_errors:
            if err.kind == self.input_error:
                yield ctx.finding(err.message, err.span, node=err.node)
