"""What `gradlint probe` measured, as plain records the probe rules (GL70x) read and judge.

The probe (gradlint/probe) runs the model and assembles these records from its measurements, the
gradient check and the static findings it already judged; the rules in gradlint/rules/probe decide
which measurements are findings and word them. No torch here: numbers, names and spans only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradlint.findings import SourceSpan


@dataclass(frozen=True)
class MeasuredChain:
    """A run of parametric layers in execution order, each fed by the one before, with no norm or
    recurrent module between them; its measured gradient gains."""

    modules: tuple[str, ...]
    gain: float | None  # ||dL/dz_first|| / ||dL/dz_last||
    worst_gain: float | None  # the largest gain over any sub-chain, through the chain (GL702)
    worst_ends: tuple[str, str]  # the sub-chain that has it
    # a static finding already predicted a vanishing (exploding) gradient on one of these modules
    predicted_vanishing: bool = False
    predicted_exploding: bool = False


@dataclass(frozen=True)
class UnitShare:
    """The share of one module call's units that are dead or saturated (the mean over the steps)."""

    site: str  # the call's name (a module path, `#k` for the k-th extra call)
    span: SourceSpan  # where the module is defined or built
    type_name: str
    share: float
    predicted: bool = False  # a static finding already covers this module


@dataclass(frozen=True)
class GradcheckFailure:
    kind: str  # 'function' (a custom autograd.Function) or 'module'
    name: str
    type_name: str
    autograd: float
    numeric: float
    detail: str = ""
    span: SourceSpan | None = None  # the Function's definition when it is in the target's file


@dataclass(frozen=True)
class ProbeFacts:
    steps: int
    chains: tuple[MeasuredChain, ...] = ()
    first_loss: float | None = None  # the loss at initialisation
    # where the first NaN/Inf appeared: phase, step, module, type, site, what...
    nonfinite: dict[str, Any] | None = None
    gradcheck_failures: tuple[GradcheckFailure, ...] = ()
    param_count: int = 0  # parameter tensors of the model
    without_grad: tuple[str, ...] = ()  # parameters that got no gradient, in order
    param_owner: tuple[tuple[str, str], ...] = ()  # parameter -> the module path that owns it
    loss_cut: bool = False  # the loss depends on no parameter at all
    cuts: tuple[tuple[int, str], ...] = ()  # stop-gradients of the target's file that ran: (line, what)
    dead: tuple[UnitShare, ...] = ()
    saturated: tuple[UnitShare, ...] = ()


@dataclass(frozen=True)
class Measured:
    """A probe rule's finding, before the probe places it: `module` is located in the user's
    source unless `span` is given."""

    message: str
    module: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    span: SourceSpan | None = None
    measured: float | None = None
    sites: tuple[str, ...] = ()
    info: bool = False  # report at info severity
