"""Shared behaviour of the GL3xx/GL4xx rules: select the numerics front-end's Sites by kind and
turn them into findings, and spell a replacement torch function through the file's imports."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

from gradlint.findings import Finding, Fix, Severity
from gradlint.registry import Rule, RuleContext
from gradlint.facts.callgraph import only_nograd_reachable
from gradlint.facts.free import grad_free
from gradlint.facts.numerics import (NumericsFacts, Site, backpropagated_elsewhere, bind_forward_call, bind_parameters,
                                     default_holds, forward_assumes, holds, imported_criterion)

F = "torch.nn.functional."


class SiteRule(Rule):
    """A rule on the patterns the numerics front-end saw (gradlint/source/numerics.py) as Sites.

    Subclasses name the site `kinds` they report, may narrow them in `selects`, and write
    `message(site, ctx)` and, when they fix, `fix(site, facts)`; sites whose truth depends on
    another file of the run (what a model's forward returns, whether a class is an nn.Module)
    are settled here against the run index.
    """

    abstract = True
    kinds: frozenset[str] = frozenset()
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
            if site.variant == "parameters":
                # a loss on parameters: what the project's callers pass decides what it is
                if site.kind not in self.kinds:
                    continue
                site = bind_parameters(site, ctx.index)
                if site is None:
                    continue
            elif site.data and dict(site.data).get("returned_by"):
                # a term cut in what a forward returns: only where a caller backpropagates it
                if not backpropagated_elsewhere(site, ctx.index):
                    continue
            elif site.variant == "imported-criterion":
                # a probability into a criterion another project module binds at its top level
                if site.kind not in self.kinds:
                    continue
                site = imported_criterion(site, ctx.index)
                if site is None:
                    continue
            elif site.kind == "probability_passed":
                # a probability passed to a class's instance: what its forward does with it
                site = bind_forward_call(site, ctx.index)
                if site is None or site.kind not in self.kinds:
                    continue
            elif site.data and site.kind in self.kinds:
                # a criterion from its parameter's default: unless a caller elsewhere passes another
                site = default_holds(site, ctx.index)
                if site is None:
                    continue
            if not self.selects(site) or not holds(site, ctx.index):
                continue
            if self.needs_grad and only_nograd_reachable(ctx.index, site.function):
                continue
            if self.needs_grad and site.data and grad_free(dict(site.data), ctx.index):
                continue  # built from fresh tensors and what every caller passes without gradient
            if site.classes and site.element is None and (assumed := forward_assumes(ctx.index, site.classes[0])):
                site = replace(site, data=site.data + (("assuming", assumed),))  # for output_of
            message = self.message(site, ctx)
            if message is None:
                continue
            yield ctx.finding(message, site.span, fix=self.fix(site, facts),
                              severity=Severity.INFO if site.info else None,
                              data={k: v for k, v in site.data if k != "free_if"} | {"pattern": site.variant})

    def graph_hazards(self, ctx: RuleContext) -> Iterator[Finding]:
        """Findings for the ONNX graph patterns of this rule's kinds.

        The ONNX front-end puts `GraphHazard(kind, node, data)` records in `facts.graph.hazards`;
        the rule words them in `graph_message`, so it stays one class for both inputs.
        """
        graph = getattr(ctx.facts, "graph", None)
        for hazard in getattr(graph, "hazards", ()) or ():
            if hazard.kind in self.kinds and self.graph_selects(hazard):
                yield ctx.finding(self.graph_message(hazard), getattr(hazard, "span", None), node=hazard.node,
                                  data=getattr(hazard, "data", None) or {})

    def graph_selects(self, hazard) -> bool:
        """Whether a GraphHazard of this rule's kinds is reported (all are, unless a rule narrows)."""
        return True

    def graph_message(self, hazard) -> str:
        """The message for a GraphHazard (gradlint.facts.graph) of one of this rule's kinds."""
        raise NotImplementedError

    def selects(self, site: Site) -> bool:
        return site.kind in self.kinds

    def message(self, site: Site, ctx: RuleContext) -> str | None:
        raise NotImplementedError

    def fix(self, site: Site, facts: NumericsFacts) -> Fix | None:
        return None


def output_of(site: Site, kind: str) -> str:
    """How a message names the model output a conditional site is about: the whole output, or one
    element of the tuple a forward returns (`validity, label = D(x)`)."""
    if site.classes[0].startswith("fn:"):
        return f"the output of `{site.classes[0][3:]}()`, which returns a {kind}"
    if site.classes[0].startswith("mk:"):
        return f"the output of the module `{site.classes[0][3:]}()` builds, whose call returns a {kind}"
    only = dict(site.data).get("only_model")
    if only:
        # no call in the project passes the model parameter: the file's one model class
        return (f"the output of `{only}`, read as {site.classes[0].rpartition('.')[2]} (no call in the project passes a model, and "
                f"it is the only model this file defines), whose forward returns a {kind}")
    if site.element is None:
        assumed = dict(site.data).get("assuming")
        if assumed:
            # the forward's return rests on constructor defaults (`if self.method == 'multiclass'`)
            return f"the output of {site.classes[0]}, whose forward returns a {kind} with its default `{assumed}`"
        return f"the output of {site.classes[0]}, whose forward returns a {kind}"
    return f"element {site.element} of the output of {site.classes[0]}, a {kind}"


def passed_as(site: Site, what: str) -> str:
    """How a message names the tensor a site reads: `what` it is, or, for a parameter of the
    function that every caller in the project passes so (facts.numerics.bind_parameters), the
    parameter with what the callers make of it."""
    data = dict(site.data)
    if data.get("trainer"):
        # `NeuralNetClassifier(Net, criterion=nn.CrossEntropyLoss)`: the trainer's loop applies it
        return f"{what}, by `{data['trainer']}`'s own training loop (its `criterion=`)"
    param = data.get("passed")
    if not param:
        return what
    if data.get("through"):
        # a call of a class's instance: the loss or log is in its forward, fed this parameter,
        # or in a method its forward hands the value to (`self.bce2d(edgein, edgemask)`)
        if ":" in data["through"]:
            cls, _, helper = data["through"].partition(":")  # a function of the class's file
            return f"{what} (passed here to `{cls}`, whose forward hands it to `{helper}` as `{param}`)"
        cls, _, method = data["through"].rpartition(".")
        if method != "forward":
            return f"{what} (passed here to `{cls}`, whose forward hands it to `self.{method}` as `{param}`)"
        return f"{what} (passed here as `{param}` of `{data['through']}`)"
    if data.get("passed_as"):
        # `input.transpose(1, 2).view(1, -1)`: its elements are the parameter's
        return f"`{data['passed_as']}`, a reshape or selection of `{param}` ({what}, as every caller passes it)"
    return f"`{param}` ({what}, as every caller passes it)"


def functional(facts: NumericsFacts, function: str) -> str | None:
    """A spelling of `torch.nn.functional.<function>` through the file's existing imports."""
    names = facts.torch_imports
    for local, targets in names:
        if F + function in targets:
            return local
    for local, targets in names:
        if "torch.nn.functional" in targets:
            return f"{local}.{function}"
    for local, targets in names:
        if "torch.nn" in targets:
            return f"{local}.functional.{function}"
    for local, targets in names:
        if "torch" in targets and local == "torch":
            return f"torch.nn.functional.{function}"
    return None


def spelling(facts: NumericsFacts, qualified: str) -> str | None:
    """A local spelling of a qualified torch name, e.g. BCEWithLogitsLoss or nn.BCEWithLogitsLoss."""
    head, _, last = qualified.rpartition(".")
    for local, targets in facts.torch_imports:
        if qualified in targets:
            return local
    for local, targets in facts.torch_imports:
        if head in targets:
            return f"{local}.{last}"
    return None
