"""GL706 saturated-units: most outputs of a tanh/sigmoid layer were saturated during the probe."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from gradlint.facts.probe import Measured, ProbeFacts
from gradlint.findings import Severity
from gradlint.rules.probe.base import ProbeRule, grouped

# The share of saturated outputs from which a layer is reported.
SATURATED_FRACTION = 0.7


class SaturatedUnits(ProbeRule):
    """
    ## What it does
    Reported by `gradlint probe` when at least 70% of the outputs of a Tanh, Sigmoid, Hardtanh
    or Softsign module have a derivative |φ'| < 1e-2 (averaged over the probe batches). It fires
    only where the static pass did not predict it (GL104 on the layer before the activation).

    ## Why is this bad?
    A saturated unit passes back less than 1% of its gradient: the layers in front of it stop
    learning, and the network behaves like a binary one.

    ## Example
    ```python
    lin = nn.Linear(1024, 1024)
    nn.init.normal_(lin.weight, std=1.0)
    model = nn.Sequential(lin, nn.Tanh())
    ```

    ## Use instead
    ```python
    lin = nn.Linear(1024, 1024)
    nn.init.xavier_uniform_(lin.weight, gain=nn.init.calculate_gain("tanh"))
    model = nn.Sequential(lin, nn.Tanh())
    ```
    """

    code = "GL706"
    name = "saturated-units"
    severity = Severity.WARNING
    summary = "At least 70% of a tanh/sigmoid layer's outputs saturated (|φ'| < 1e-2)"
    fix_title = "Scale the pre-activation down (initialisation, normalisation)"

    def measured(self, facts: ProbeFacts, options: Mapping[str, Any]) -> Iterator[Measured]:
        saturated = [u for u in facts.saturated if u.share >= SATURATED_FRACTION and not u.predicted]
        yield from grouped(facts, saturated, "saturated_fraction", "of the outputs of {what} are saturated (|φ'| < 1e-2)")
