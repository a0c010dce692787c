"""GL705 dead-units: most units of a ReLU-family layer were never active during the probe."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from gradlint.facts.probe import Measured, ProbeFacts
from gradlint.findings import Severity
from gradlint.rules.probe.base import ProbeRule, grouped

# The share of never-active units from which a layer is reported.
DEAD_FRACTION = 0.7


class DeadUnits(ProbeRule):
    """
    ## What it does
    Reported by `gradlint probe` when at least 70% of the units of an activation whose
    derivative is exactly zero over a region were never active on any sample of the probe
    batches. Active means: ReLU output > 0; ReLU6 output strictly between 0 and 6; Threshold
    output above its threshold. LeakyReLU, PReLU, RReLU, ELU, CELU, SELU, GELU, SiLU and Mish
    pass a gradient for every input, so none of their units is dead and they are not
    measured. A unit is a feature (the last dimension) after a Linear layer, a channel
    (dimension 1) after a convolution.

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
    summary = "At least 70% of a ReLU/ReLU6/Threshold layer's units never active on the probe batches"
    fix_title = "Check the bias and weight initialisation before this activation"

    def measured(self, facts: ProbeFacts, options: Mapping[str, Any]) -> Iterator[Measured]:
        dead = [u for u in facts.dead if u.share >= DEAD_FRACTION]
        yield from grouped(facts, dead, "dead_fraction", "of the units of {what} were never active")
