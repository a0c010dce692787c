"""GL701 measured-vanishing-gradient: `gradlint probe` measured a chain whose gradient vanishes."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from gradlint.facts.probe import Measured, ProbeFacts
from gradlint.findings import Severity
from gradlint.registry import Option, positive_float
from gradlint.rules.probe.base import ProbeRule, chain_finding


class MeasuredVanishingGradient(ProbeRule):
    """
    ## What it does
    Reported by `gradlint probe` when a chain of parametric layers, measured on real batches at
    initialisation, passes back less than `vanishing-threshold` of its gradient:
    ||∂L/∂z_first|| / ||∂L/∂z_last|| < 1e-3, where z are the outputs of the first and the last
    layer of the chain. A measured chain is a run of consecutive parametric leaf modules
    (Linear, Conv*, ConvTranspose*, Embedding, Bilinear) in execution order with no
    normalisation module (BatchNorm, LayerNorm, GroupNorm, InstanceNorm, RMSNorm) and no
    recurrent module between them, each fed by the one before (its input depends on the
    previous layer's output in the autograd graph, so two towers run one after the other are
    two chains); an embedding starts a new chain. The measured ratio includes the effect of
    residual connections. It
    fires only where the static pass did not already predict a vanishing gradient for those
    modules (that finding gets the verdict *confirmed* instead).

    ## Why is this bad?
    The first layers of the chain receive a gradient a thousand times smaller than the last:
    they barely train, and the optimiser's learning rate cannot suit both ends.

    ## Example
    ```python
    def make_model():
        layers = []
        for _ in range(12):
            layers += [nn.Linear(256, 256), nn.Sigmoid()]
        return nn.Sequential(*layers)
    ```

    ## Use instead
    ```python
    def make_model():
        layers = []
        for _ in range(12):
            layers += [nn.Linear(256, 256), nn.LayerNorm(256), nn.ReLU()]
        return nn.Sequential(*layers)
    ```

    ## Options
    - `vanishing-threshold` (default 1e-3): the measured gain below which the chain is reported.

    ## References
    - Glorot & Bengio, *Understanding the difficulty of training deep feedforward neural networks*, 2010.
    """

    code = "GL701"
    name = "measured-vanishing-gradient"
    severity = Severity.WARNING
    summary = "Measured gradient gain across a chain below the vanishing threshold"
    fix_title = "Add normalisation or residual connections, or use an initialisation that suits the activation"
    options = {"vanishing-threshold": Option(1e-3, positive_float, "measured gain below which a chain is reported")}

    def measured(self, facts: ProbeFacts, options: Mapping[str, Any]) -> Iterator[Measured]:
        limit = options["vanishing-threshold"]
        for chain in facts.chains:
            if chain.gain is None or chain.predicted_vanishing or chain.gain >= limit:
                continue
            yield chain_finding("vanishing", chain.modules, chain.gain, (chain.modules[0], chain.modules[-1]), limit)
