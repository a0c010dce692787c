"""GL706 saturated-units: most outputs of a tanh/sigmoid layer were saturated during the probe."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Rule


class SaturatedUnits(Rule):
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
    probe_only = True
