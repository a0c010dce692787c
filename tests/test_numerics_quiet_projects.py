"""Look-alikes that must stay quiet (fixtures/numerics/quiet_projects: one project per folder, each
correct code a second read found flagged): no GL3xx/GL4xx finding, checked whole and file by file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradlint.api import check_paths
from gradlint.config import Config

ROOT = Path(__file__).resolve().parent.parent / "fixtures" / "numerics" / "quiet_projects"
CASES = sorted(p for p in ROOT.iterdir() if p.is_dir())


def test_there_are_cases():
    assert len(CASES) >= 10


@pytest.mark.parametrize("folder", CASES, ids=[p.name for p in CASES])
def test_quiet(folder):
    for paths in ([folder], *([p] for p in sorted(folder.glob("*.py")))):
        result = check_paths(paths, Config(select=("GL3", "GL4"), root=str(folder)), use_cache=False, jobs=1)
        assert not result.internal_errors
        assert [(Path(f.path).name, f.span.line, f.code, f.message) for f in result.findings] == []
