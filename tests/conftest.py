"""Shared test helpers: run gradlint on snippets and on fixture files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradlint.api import check_source
from gradlint.config import Config

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
# The OASIS SARIF 2.1.0 schema: CI has the shared folder beside the checkout, a git worktree under
# wt/<name>/ one level further up; a clone anywhere else (the README's set-up commands in a fresh
# folder) uses the copy of the same file kept in tests/data/.
SARIF_SCHEMA = next(
    p for p in (ROOT.parent / "shared" / "schemas" / "sarif-schema-2.1.0.json",
                ROOT.parent.parent / "shared" / "schemas" / "sarif-schema-2.1.0.json",
                ROOT / "tests" / "data" / "sarif-schema-2.1.0.json") if p.is_file()
)


def example_bytes(source: str, kind: str) -> tuple[str | bytes, str]:
    """(content, file name) for a rule example: python text, or ONNX text parsed to a model."""
    if kind == "python":
        return source, "example.py"
    if kind == "onnx-text":
        import onnx.parser

        model = onnx.parser.parse_model(source)
        return model.SerializeToString(), "example.onnx"
    raise ValueError(kind)


def codes_for(source: str, select: str | None = None, kind: str = "python", **kw) -> list[str]:
    content, name = example_bytes(source, kind)
    config = Config(select=(select,)) if select else Config()
    return [f.code for f in check_source(content, config, path=name, **kw)]


def run_cli(*args: str, cwd: Path | str | None = None, env: dict | None = None, input: str | None = None):
    """Run `gradlint` as a user would, in a subprocess, with this checkout on the path."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.pop("NO_COLOR", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "gradlint.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, input=input, timeout=300)


@pytest.fixture
def cli():
    return run_cli
