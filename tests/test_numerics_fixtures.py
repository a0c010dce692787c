"""fixtures/numerics and fixtures/paths: each family folder is checked as one run (so the
cross-file cases work), and the GL3xx/GL4xx findings must be exactly the `# expect:` lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradlint.api import check_paths
from gradlint.config import Config

ROOT = Path(__file__).resolve().parent.parent
EXPECT = re.compile(r"#\s*expect:\s*(GL\d{3}(?:\s*,\s*GL\d{3})*)")


def _files(family: str) -> list[Path]:
    return [p for p in sorted((ROOT / "fixtures" / family).glob("*.py"))
            if not p.name.endswith((".in.py", ".out.py"))]


def _expected(paths: list[Path]) -> set[tuple[str, int, str]]:
    out = set()
    for path in paths:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            m = EXPECT.search(line)
            if m:
                for code in re.split(r"\s*,\s*", m.group(1)):
                    out.add((path.name, lineno, code))
    return out


@pytest.mark.parametrize("family", ["numerics", "paths"])
def test_fixture_findings_match_expectations(family):
    files = _files(family)
    assert files
    result = check_paths(files, Config(select=("GL3", "GL4"), root=str(ROOT)), use_cache=False, jobs=1)
    assert not result.internal_errors, result.internal_errors
    got = {(Path(f.path).name, f.span.line, f.code) for f in result.findings}
    expected = _expected(files)
    assert got - expected == set(), "unexpected findings"
    assert expected - got == set(), "missing findings"
