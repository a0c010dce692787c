"""GL702 measured-exploding-gradient: `gradlint probe` measured an exploding gradient or loss."""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping

from gradlint.facts.probe import Measured, ProbeFacts
from gradlint.findings import Severity
from gradlint.registry import Option, positive_float
from gradlint.rules.probe.base import ProbeRule, chain_finding

# A loss this large at initialisation means the output scale is already out of hand.
HUGE_LOSS = 1e5


class MeasuredExplodingGradient(ProbeRule):
    """
    ## What it does
    Reported by `gradlint probe` when a measured chain (see GL701 for the definition) amplifies
    its gradient by more than `exploding-threshold` over its worst sub-chain: the largest gain
    over every pair of layers i before j, so that a stack exploding over its hidden layers is
    not diluted by a head at its end; or when the loss at initialisation is already ≥ 1e5.
    The gain of a pair is the gradient through the chain: the part of ∂L/∂z_i that comes
    through z_j (every path between them, skip connections included) over ||∂L/∂z_j||. In a
    plain chain that is ||∂L/∂z_i|| / ||∂L/∂z_j||; in a residual network most of z_i's gradient
    comes down the skip connection, beside a branch layer whose own gradient a small layer
    scale (ConvNeXt, ResMLP, CaiT) shrinks by design, and that plain ratio is no gain at all.
    The probe measures it through the chain (once more, on the first batch) for every pair
    whose plain ratio exceeds 10. A layer whose gradient is exactly zero is never a
    denominator (that is GL701 or GL707, not an infinite gain). It fires only where the
    static pass did not predict an exploding gradient for those modules.

    ## Why is this bad?
    The first layers receive gradients a thousand times larger than the last: a learning rate
    small enough for them leaves the rest untrained, a larger one diverges. A loss of 1e5 at
    initialisation means the output scale is already out of hand.

    ## Example
    ```python
    def make_model():
        layers = []
        for _ in range(8):
            lin = nn.Linear(512, 512)
            nn.init.normal_(lin.weight, std=1.0)
            layers += [lin, nn.Tanh()]
        return nn.Sequential(*layers)
    ```

    ## Use instead
    ```python
    def make_model():
        layers = []
        for _ in range(8):
            lin = nn.Linear(512, 512)
            nn.init.xavier_normal_(lin.weight, gain=nn.init.calculate_gain("tanh"))
            layers += [lin, nn.Tanh()]
        return nn.Sequential(*layers)
    ```

    ## Options
    - `exploding-threshold` (default 1e3): the measured gain above which the chain is reported.
    """

    code = "GL702"
    name = "measured-exploding-gradient"
    severity = Severity.WARNING
    summary = "Measured gradient gain across a chain above the exploding threshold, or a huge loss at init"
    fix_title = "Scale the initialisation down, add normalisation, or clip gradients"
    options = {"exploding-threshold": Option(1e3, positive_float, "measured gain above which a chain is reported")}

    def measured(self, facts: ProbeFacts, options: Mapping[str, Any]) -> Iterator[Measured]:
        limit = options["exploding-threshold"]
        for chain in facts.chains:
            if chain.worst_gain is None or chain.predicted_exploding or chain.worst_gain <= limit:
                continue
            yield chain_finding("exploding", chain.modules, chain.worst_gain, chain.worst_ends, limit)
        loss = facts.first_loss
        if loss is not None and math.isfinite(loss) and abs(loss) >= HUGE_LOSS:
            msg = f"loss {loss:.3g} at initialisation (≥ {HUGE_LOSS:g}): the output scale is already out of hand"
            yield Measured(msg, None, {"loss": loss}, measured=loss)
