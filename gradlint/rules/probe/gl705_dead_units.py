"""GL705 dead-units: most units of a ReLU-family layer were never active during the probe."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Rule


class DeadUnits(Rule):
    """
    ## What it does
    Reported by `gradlint probe` when at least 70% of the units of a ReLU-family activation
    module (ReLU, ReLU6, LeakyReLU, PReLU, ELU, CELU, SELU, GELU, SiLU, Mish) were never
    active (output > 0) on any sample of the probe batches. A unit is a feature (the last
    dimension) after a Linear layer, a channel (dimension 1) after a convolution.

    ## Why is this bad?
    A ReLU unit that is never active passes no gradient to the weights in front of it: those
    weights never train, and the layer is narrower than it looks.

    ## Example
    ```python
    lin = nn.Linear(256, 256)
    nn.init.constant_(lin.bias, -10.0)
    model = nn.Sequential(lin, nn.ReLU())
    ```

    ## Use instead
    ```python
    lin = nn.Linear(256, 256)
    nn.init.zeros_(lin.bias)
    model = nn.Sequential(lin, nn.ReLU())
    ```
    """

    code = "GL705"
    name = "dead-units"
    severity = Severity.WARNING
    summary = "At least 70% of a ReLU-family layer's units never active on the probe batches"
    fix_title = "Check the bias and weight initialisation before this activation"
    probe_only = True
