"""GL703 nonfinite-gradient: NaN or Inf appeared while `gradlint probe` ran the model."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Rule


class NonfiniteGradient(Rule):
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
    probe_only = True
