"""The front-end tests node classes exactly (`type(n) is cst.Name`, `type(n) in (cst.If, cst.Try)`)
where isinstance would ask libcst's ABC machinery (a Python frame per test, a million per run over
timm and torchvision). That is the same test only for a class nothing derives from: this holds it
for every class so tested, in every module of the package."""

from __future__ import annotations

import re
from pathlib import Path

import libcst as cst

PACKAGE = Path(__file__).resolve().parent.parent / "gradlint"
EXACT = re.compile(r"type\([^()]*(?:\([^()]*\))?[^()]*\) (?:is not|is|not in|in) \(?((?:cst\.\w+(?:, )?)+)\)?")


def test_every_class_tested_exactly_has_no_subclass():
    tested: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for match in EXACT.finditer(path.read_text(encoding="utf-8")):
            for name in re.findall(r"cst\.(\w+)", match.group(1)):
                tested.setdefault(name, set()).add(path.name)
    assert len(tested) > 40  # the scan finds them (walk.py, model_eval.py, forward.py...)
    wrong = {name: sorted(where) for name, where in tested.items()
             if not isinstance(getattr(cst, name, None), type) or getattr(cst, name).__subclasses__()}
    assert not wrong, f"classes with subclasses (or not libcst's) tested by type: {wrong}"


def test_the_scan_sees_an_abstract_class():
    line = "if type(node) is cst.BaseExpression and type(x) in (cst.Name, cst.CSTNode):"
    names = [n for m in EXACT.finditer(line) for n in re.findall(r"cst\.(\w+)", m.group(1))]
    assert names == ["BaseExpression", "Name", "CSTNode"]
    assert cst.BaseExpression.__subclasses__() and cst.CSTNode.__subclasses__()
