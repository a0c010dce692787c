"""GL703 nonfinite-gradient: NaN or Inf appeared while `gradlint probe` ran the model."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from gradlint.facts.probe import Measured, ProbeFacts
from gradlint.findings import Severity
from gradlint.rules.probe.base import ProbeRule


class NonfiniteGradient(ProbeRule):
    """
    ## What it does
    Reported by `gradlint probe` when a NaN or an Inf appears in an activation, the loss or a
    gradient during the probe steps. It names the first module, in execution order, where the
    value appears: for the forward pass, the first module whose output is non-finite; for the
    backward pass, the module whose backward produced the first non-finite gradient (the one
    executed right after the last module whose output gradient is non-finite).

    ## Why is this bad?
    One NaN gradient poisons every parameter at the next optimiser step; the run is lost, and
    without the module's name the search starts from scratch.

    ## Example
    ```python
    class LogFeatures(nn.Module):
        def forward(self, x):
            return torch.log(x)  # x may be negative
    ```

    ## Use instead
    ```python
    class LogFeatures(nn.Module):
        def forward(self, x):
            return torch.log(x.clamp_min(1e-6))
    ```
    """

    code = "GL703"
    name = "nonfinite-gradient"
    severity = Severity.ERROR
    summary = "NaN or Inf during the probe, with the first module where it appears"
    fix_title = "Guard the operation (clamp, eps) in the named module"

    def measured(self, facts: ProbeFacts, options: Mapping[str, Any]) -> Iterator[Measured]:
        nf = facts.nonfinite
        if nf is None:
            return
        where = (f"`{nf['module'] or '(model)'}` ({nf['type']})" if nf.get("site") is not None
                 else "the loss" if nf["phase"] != "backward" else "the loss's backward")
        phase = {"forward": "the forward pass", "loss": "the loss", "backward": "the backward pass"}[nf["phase"]]
        msg = f"NaN/Inf first appears in {phase} at {where}, probe step {nf['step'] + 1}: {nf['what']}"
        yield Measured(msg, nf.get("module"), dict(nf))
