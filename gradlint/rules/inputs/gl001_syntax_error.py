"""GL001 syntax-error: a Python file that cannot be read, decoded or parsed."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Example
from gradlint.rules.inputs.base import InputRule


class SyntaxErrorRule(InputRule):
    """
    ## What it does
    Reports a `.py` file that cannot be read, decoded or parsed, with the parser's position.

    ## Why is this bad?
    A file gradlint cannot parse is a file it cannot check: without this finding a broken file
    would pass silently. The other files of the run are still checked.

    ## Example
    ```python
    import torch
    def forward(self, x)
        return x
    ```

    ## Use instead
    ```python
    import torch
    def forward(self, x):
        return x
    ```
    """

    code = "GL001"
    input_error = "unreadable_source"
    name = "syntax-error"
    severity = Severity.ERROR
    summary = "File cannot be read, decoded or parsed"
    invalid = [Example("import torch\ndef forward(self, x)\n    return x\n")]
    valid = [Example("import torch\ndef forward(self, x):\n    return x\n")]
