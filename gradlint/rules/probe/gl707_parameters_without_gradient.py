"""GL707 parameters-without-gradient: parameters that got no gradient in any probe step."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from gradlint.facts.probe import Measured, ProbeFacts
from gradlint.findings import Severity, SourceSpan
from gradlint.rules.probe.base import ProbeRule


class ParametersWithoutGradient(ProbeRule):
    """
    ## What it does
    Reported by `gradlint probe` when parameters that require a gradient get none — `None`,
    or exactly zero — in every probe step. The finding lists them with their module paths,
    and the `.detach()`, `.data`, `.item()` or `torch.no_grad()` in the target's file that
    cut them from the loss, found by running the forward once more with those calls watched.
    A loss that depends on no parameter at all is this finding for every parameter. When
    only `torch.no_grad()` blocks explain it and the loss still depends on some parameters (a
    backbone frozen under `no_grad`, an EMA teacher), the finding is info and does not change
    the exit code. It confirms or refutes the static GL402 and GL403 findings (parameters cut)
    and GL404 (a freeze that freezes nothing) of the class whose source holds them.
    Exactly zero gradients in a model that starts with a weight at zero (a zero head,
    `zero_init_residual`, a layer scale of 0) are by design: the layers before it get gradients
    after the first update; a note says so instead, and a chain through such a layer has no gain
    to measure (GL701, GL702).

    ## Why is this bad?
    A parameter without gradient never trains, however long the run: a `.detach()` on the
    wrong tensor, a `.data` read, or a layer that is never used in the forward leaves part of
    the model at its initial values while the loss still falls through the rest.

    ## Example
    ```python
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(64, 64)
            self.head = nn.Linear(64, 10)

        def forward(self, x):
            return self.head(self.body(x).detach())
    ```

    ## Use instead
    ```python
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(64, 64)
            self.head = nn.Linear(64, 10)

        def forward(self, x):
            return self.head(self.body(x))
    ```
    Or, when the cut is meant (a frozen backbone), say so with `requires_grad_(False)` on
    those parameters: they are then not reported.
    """

    code = "GL707"
    name = "parameters-without-gradient"
    severity = Severity.WARNING
    summary = "Parameters that require a gradient got none in any probe step"
    fix_title = "Remove the cut (.detach(), .data, no_grad) on their path, or freeze them with requires_grad_(False)"

    def measured(self, facts: ProbeFacts, options: Mapping[str, Any]) -> Iterator[Measured]:
        """One finding for every parameter that got no gradient, with the cuts that explain it."""
        names = list(facts.without_grad)
        if not names:
            return
        owner = dict(facts.param_owner)
        total = facts.param_count
        owners = list(dict.fromkeys(owner.get(n, "") or "(model)" for n in names))
        shown = ", ".join(f"`{n}`" for n in names[:4]) + (f", … ({len(names) - 4} more)" if len(names) > 4 else "")
        steps = f"{facts.steps} probe step{'s' if facts.steps != 1 else ''}"
        if facts.loss_cut:
            head = f"the loss depends on no parameter: none of the model's {total} parameter tensors gets a gradient"
        else:
            head = f"{len(names)} of {total} parameter tensors got no gradient in any of {steps}: {shown}"
        cuts = list(facts.cuts)
        if cuts:
            why = "cut by " + ", ".join(f"{what} at line {line}" for line, what in cuts)
        else:
            why = "no stop-gradient of this file ran in the forward: are they used at all?"
        # A block under no_grad is how a backbone is frozen or an EMA teacher run: deliberate,
        # worth knowing, not failing.
        explained = bool(cuts) and all(what == "torch.no_grad()" for _, what in cuts) and not facts.loss_cut
        span = SourceSpan.point(cuts[0][0], 1) if cuts else None
        yield Measured(f"{head}; {why}", owner.get(names[0]) or None,
                       {"parameters": tuple(names), "modules": tuple(owners), "loss_cut": facts.loss_cut,
                        "cuts": tuple(f"{line}:{what}" for line, what in cuts)},
                       span=span, measured=float(len(names)), sites=tuple(owners), info=explained)
