"""Shared behaviour of the GL3xx/GL4xx rules: turn the numerics front-end's Sites into findings."""

from __future__ import annotations

from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.registry import Rule, RuleContext
from gradlint.facts.numerics import Site, holds, only_nograd_reachable


class SiteRule(Rule):
    """A rule whose patterns the front-end matched (gradlint/source/numerics.py) as Sites.

    Subclasses write `message(site, ctx)`; sites whose truth depends on another file of the run
    (what a model's forward returns, whether a class is an nn.Module) are settled here against
    the run index.
    """

    abstract = True
    # GL3xx: report only in code that can run with grad, i.e. not in a function that the project
    # calls only under no_grad/inference_mode (the front-end already skips no-grad blocks and
    # no-grad-decorated functions)
    needs_grad = False

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        if ctx.facts.kind == "onnx":
            yield from self.graph_hazards(ctx)
            return
        facts = getattr(ctx.facts, "numerics", None)
        if facts is None:
            return
        for site in facts.sites:
            if site.code != self.code or not holds(site, ctx.index):
                continue
            if self.needs_grad and only_nograd_reachable(ctx.index, site.function):
                continue
            message = self.message(site, ctx)
            if message is None:
                continue
            yield ctx.finding(message, site.span, fix=site.fix,
                              severity=Severity.INFO if site.info else None,
                              data=dict(site.data) | {"pattern": site.kind})

    def message(self, site: Site, ctx: RuleContext) -> str | None:
        raise NotImplementedError
