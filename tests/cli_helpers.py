"""Helpers for the CLI tests: build file trees, run gradlint in a subprocess (optionally with the
test-only GL990 rule registered), and assert the one-line-error contract."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

_BOOT = "import sys, tests.plugin_rule; from gradlint.cli import main; main(prog_name='gradlint')"

# A syntax error CPython places at line 3, column 21 ("expected ':'"); `import torch` makes
# sure the front-end parses the file rather than skipping it as unrelated to torch.
BROKEN = "import torch\n\ndef forward(self, x)\n    return x\n"
GOOD = "import torch\n\n\ndef forward(self, x):\n    return x\n"


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def gradlint(*args: str, cwd: Path | str, plugin: bool = False, env: dict | None = None):
    """Run the CLI as a user would; with plugin=True the test-only rule GL990 is registered."""
    args = tuple(args)
    if "check" in args[:1] and "--no-cache" not in args:
        args = args[:1] + ("--no-cache",) + args[1:]
    if not plugin:
        return run_cli(*args, cwd=cwd, env=env)
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.pop("NO_COLOR", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", _BOOT, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc, *needles: str) -> str:
    """Exit 2, one line on stderr naming what is wrong, nothing on stdout, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def finding_lines(stdout: str) -> list[str]:
    """The `path:line:col: CODE message` lines of a text report, without the summary."""
    return [line for line in stdout.splitlines() if ": GL" in line]


@pytest.fixture
def plugin_rule():
    """GL990 registered in this process for one test, then removed so no other test sees it."""
    import importlib

    from gradlint import registry

    registry.load_rules()
    if "tests.plugin_rule" in sys.modules:
        module = importlib.reload(sys.modules["tests.plugin_rule"])
    else:
        module = importlib.import_module("tests.plugin_rule")
    try:
        yield module.MarkerRule
    finally:
        registry._RULES.pop("GL990", None)
