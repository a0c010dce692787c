"""GL002 unreadable-model: an ONNX file that cannot be decoded or fails onnx.checker."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.rules.inputs.base import InputRule


class UnreadableModelRule(InputRule):
    """
    ## What it does
    Reports an ONNX file that cannot be decoded (truncated, not ONNX at all) or that fails
    `onnx.checker`, with the reason.

    ## Why is this bad?
    A model gradlint cannot read is a model it cannot check; the rest of the run goes on.

    ## Example
    A `model.onnx` that is really a PNG, or a download cut off half-way.

    ## Use instead
    Re-export the model (`torch.onnx.export(...)`) and check that `onnx.checker.check_model`
    accepts it.
    """

    code = "GL002"
    input_error = "unreadable_model"
    name = "unreadable-model"
    severity = Severity.ERROR
    summary = "ONNX file cannot be decoded or fails onnx.checker"
    inputs = frozenset({"onnx"})
