"""The `gradlint` command's entry point: a Ctrl-C while gradlint's modules load (click, the
command's options: the first tenth of a second) exits 130 with one line, as a Ctrl-C later does
(gradlint.cli), where it printed Python's KeyboardInterrupt traceback."""

from __future__ import annotations

import sys
from typing import Any

EXIT_INTERRUPTED = 130  # (gradlint.cli's: this module imports nothing of gradlint before the command)


def main(*args: Any, **kwargs: Any) -> Any:
    try:
        from gradlint.cli import main as command
    except KeyboardInterrupt:
        sys.stderr.write("gradlint: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    return command(*args, **kwargs)
