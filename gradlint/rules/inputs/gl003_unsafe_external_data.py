"""GL003 unsafe-external-data: ONNX external data outside the model's folder or behind a symlink."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.rules.inputs.base import InputRule


class UnsafeExternalDataRule(InputRule):
    """
    ## What it does
    Refuses ONNX external-data references that point outside the model's folder (`../../etc/passwd`,
    absolute paths) or through a symbolic link. Nothing at such a location is opened.

    ## Why is this bad?
    A model file from elsewhere decides which paths its loader reads. Following such a reference
    lets a downloaded model read arbitrary files of the machine that checks it.

    ## Example
    An initializer with `location: "../../secrets/weights.bin"`.

    ## Use instead
    Keep external data files next to the model (`onnx.save_model(..., save_as_external_data=True,
    location="model.data")`).
    """

    code = "GL003"
    input_error = "unsafe_external_data"
    name = "unsafe-external-data"
    severity = Severity.ERROR
    summary = "ONNX external data outside the model folder or behind a symlink"
    inputs = frozenset({"onnx"})
