"""GL707 parameters-without-gradient: parameters that got no gradient in any probe step."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Rule


class ParametersWithoutGradient(Rule):
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
    probe_only = True
