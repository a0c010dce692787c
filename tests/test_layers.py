"""The dependency contract (ARCHITECTURE.md): cli -> api -> {rules, front-ends} -> facts -> model.

Every import statement of the package (function-level ones too) is read with `ast`, so a lazy
import inside a function cannot hide an arrow that points the wrong way. import-linter would say
the same; reading the imports ourselves keeps the check free of a compiled dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gradlint"

PARSERS = ("libcst", "onnx", "onnxruntime", "torch")
# Modules under the runner (gradlint.api): they may not import it, nor the command line.
BELOW_API = ("gradlint.rules", "gradlint.source", "gradlint.onnx", "gradlint.facts", "gradlint.model",
             "gradlint.findings", "gradlint.report", "gradlint.registry", "gradlint.config",
             "gradlint.discover", "gradlint.suppress", "gradlint.docs")

# Known violations, each with why it is still there. An entry that no longer occurs fails the
# test too, so the list only shrinks.
ALLOWED: set[tuple[str, str]] = set()


def _within(name: str, prefixes: tuple[str, ...] | str) -> str | None:
    """The prefix (a module or package) `name` lies in, if any."""
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return next((p for p in prefixes if name == p or name.startswith(p + ".")), None)


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(name: str, source: str, is_package: bool = False) -> set[str]:
    """Every module an import statement of `source` names (relative imports made absolute)."""
    out: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.add(module)
            if module == "gradlint":  # `from gradlint import api` imports gradlint.api
                out.update(f"{module}.{a.name}" for a in node.names if a.name != "*")
    return out


def violations(modules: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(importer, the module or package it must not import) pairs that break the contract."""
    rules = [
        (("gradlint.facts", "gradlint.model"), PARSERS),
        (("gradlint.facts",), ("gradlint.source", "gradlint.onnx", "gradlint.rules", "gradlint.registry")),
        (("gradlint.rules",), ("gradlint.source", "gradlint.onnx")),
        (BELOW_API, ("gradlint.api", "gradlint.cli")),
        (("gradlint.report",), ("gradlint.registry",)),
        # A .py file's check runs these, and importing numpy cost a fifth of a one-file run
        # (pre-commit): numpy belongs to the ONNX front-end and the probe.
        (("gradlint.facts", "gradlint.model", "gradlint.source", "gradlint.rules"), ("numpy",)),
    ]
    bad: set[tuple[str, str]] = set()
    for importer, imported in modules.items():
        for layer, forbidden in rules:
            if not _within(importer, layer):
                continue
            for target in imported:
                hit = _within(target, forbidden)
                if hit:
                    bad.add((importer, hit))
    return bad


def package_imports() -> dict[str, set[str]]:
    return {module_name(p): imports_of(module_name(p), p.read_text(encoding="utf-8"), p.name == "__init__.py")
            for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_package_keeps_the_dependency_contract():
    found = violations(package_imports())
    assert found - ALLOWED == set(), "imports that break the layers (ARCHITECTURE.md):\n" + "\n".join(
        f"  {a} imports {b}" for a, b in sorted(found - ALLOWED))
    assert ALLOWED - found == set(), f"allow-list entries that no longer occur, remove them: {sorted(ALLOWED - found)}"


@pytest.mark.parametrize("importer, source, expected", [
    ("gradlint.facts.x", "import libcst as cst\n", ("gradlint.facts.x", "libcst")),
    ("gradlint.model.ir", "def f():\n    import torch\n", ("gradlint.model.ir", "torch")),
    ("gradlint.rules.training.gl2", "from gradlint.source.loops import Event\n",
     ("gradlint.rules.training.gl2", "gradlint.source")),
    ("gradlint.rules.x", "from gradlint import onnx\n", ("gradlint.rules.x", "gradlint.onnx")),
    ("gradlint.source.models", "def f():\n    from gradlint.api import FileFacts\n",
     ("gradlint.source.models", "gradlint.api")),
    ("gradlint.onnx.load", "from ..cli import main\n", ("gradlint.onnx.load", "gradlint.cli")),
    ("gradlint.report.text", "from gradlint.registry import get_rule\n",
     ("gradlint.report.text", "gradlint.registry")),
    ("gradlint.model.activations", "def f():\n    import numpy as np\n", ("gradlint.model.activations", "numpy")),
])
def test_each_broken_arrow_is_caught(importer, source, expected):
    assert expected in violations({importer: imports_of(importer, source)})


def test_allowed_arrows_pass():
    ok = {
        "gradlint.api": imports_of("gradlint.api", "from gradlint.source import extract_python\nimport gradlint.cli\n"),
        "gradlint.rules.x": imports_of("gradlint.rules.x", "from gradlint.facts.numerics import Site\n"),
        "gradlint.source.y": imports_of("gradlint.source.y", "import libcst\nfrom gradlint.facts.files import FileFacts\n"),
        "gradlint.probe.run": imports_of("gradlint.probe.run", "import torch\nfrom gradlint.api import check_paths\n"),
    }
    assert violations(ok) == set()


# --- no rule code in a front-end -----------------------------------------------------------------

# Packages that produce or hold facts: they say what was seen, and the rules decide what to report.
FACT_PACKAGES = ("source", "onnx", "facts", "model", "probe")
RULE_CODE = re.compile(r"GL\d{1,3}")
# Known rule codes in the code of those packages, each with why it is still there; an entry that
# no longer occurs fails the test too, so the list only shrinks.
ALLOWED_CODES: dict[tuple[str, str], str] = {
    # User-facing text that names the rule a reader looks up, not a decision: the help of
    # `--no-gradcheck` and the note that says why the gradient check was skipped.
    ("gradlint.probe.command", "GL704"): "the --no-gradcheck help names the rule it turns off",
    ("gradlint.probe.run", "GL703"): "the skipped-gradient-check note names the finding that explains it",
}


def rule_codes_in(source: str) -> set[str]:
    """The rule codes (`GL101`, or a family `GL3`) in the string literals of `source`'s code:
    f-string parts included, docstrings and comments not."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.update(RULE_CODE.findall(node.value))
    return found


def fact_package_codes() -> set[tuple[str, str]]:
    return {(module_name(p), code)
            for sub in FACT_PACKAGES for p in sorted((PACKAGE / sub).rglob("*.py"))
            for code in rule_codes_in(p.read_text(encoding="utf-8"))}


def test_no_rule_code_in_the_code_of_a_front_end():
    found = fact_package_codes()
    allowed = set(ALLOWED_CODES)
    assert found - allowed == set(), "rule codes in front-end code (a rule should decide):\n" + "\n".join(
        f"  {m}: {c}" for m, c in sorted(found - allowed))
    assert allowed - found == set(), f"allow-list entries that no longer occur, remove them: {sorted(allowed - found)}"


@pytest.mark.parametrize("source, expected", [
    ('x = Site("GL302", "softmax")\n', {"GL302"}),
    ('def f(c):\n    return f"{c} is GL101"\n', {"GL101"}),
    ('family = code[:3] == "GL3"\n', {"GL3"}),
    ('"""GL302 in a docstring."""\n# GL302 in a comment\ndef f():\n    """GL306 too."""\n    return 1\n', set()),
    ('kind = "log_of_probability"\n', set()),
])
def test_rule_codes_are_found_in_code_only(source, expected):
    assert rule_codes_in(source) == expected
