"""A throwaway rule for CLI/config tests, so they need no real rule but GL001.

Importing this module registers GL990 `test-marker`: it flags every line carrying a
`# mark: error|warning|info` comment with that severity, crashes on `# mark: crash` (to test
internal-error handling) and has one option, `limit`. Tests import it in a subprocess
(`run_cli_with_plugin`) or through the `plugin_rule` fixture, which unregisters it afterwards;
it is never imported at collection time, so the rest of the suite never sees it.
"""

from __future__ import annotations

import re
from typing import Iterator

from gradlint.findings import Finding, Severity, SourceSpan
from gradlint.registry import Example, Option, Rule, RuleContext, positive_int

_MARK = re.compile(r"#\s*mark:\s*(error|warning|info|crash)")


class MarkerRule(Rule):
    """
    ## What it does
    Test-only: flags lines marked `# mark: <severity>`.

    ## Why is this bad?
    It is not; it gives the CLI tests findings of every severity without depending on real rules.

    ## Example
    ```python
    x = 1  # mark: warning
    ```

    ## Use instead
    ```python
    x = 1
    ```

    ## Options
    `limit`: report at most this many lines per file.
    """

    code = "GL990"
    name = "test-marker"
    severity = Severity.INFO
    summary = "Test-only marker rule"
    options = {"limit": Option(100, positive_int, "Report at most this many lines per file.")}
    invalid = [Example("x = 1  # mark: info\n")]
    valid = [Example("x = 1\n")]

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        source = ctx.facts.source or ""
        count = 0
        for number, line in enumerate(source.splitlines(), start=1):
            m = _MARK.search(line)
            if not m:
                continue
            if m.group(1) == "crash":
                raise RuntimeError("test-marker was asked to crash")
            if count >= ctx.options["limit"]:
                return
            count += 1
            yield ctx.finding(f"marked {m.group(1)}", SourceSpan(number, 1, number, len(line) + 1),
                              severity=Severity.parse(m.group(1)))
