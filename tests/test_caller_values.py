"""Parameters bound from the project's callers (issue 9, calls): a loss on a function's model and
criterion parameters is reported at its line when every caller in the project, in the same file or
another, passes a model and a criterion that make it a bug; the file's findings are the same
whether it is checked alone or with its folder."""

from __future__ import annotations

import re
from pathlib import Path

from gradlint.api import check_paths
from gradlint.config import Config

FOLDER = Path(__file__).resolve().parent.parent / "fixtures" / "numerics" / "callers"
EXPECT = re.compile(r"#\s*expect:\s*(GL\d{3})")


def _expected(path: Path) -> set[tuple[str, int, str]]:
    return {(path.name, n, m.group(1)) for n, line in enumerate(path.read_text().splitlines(), 1)
            if (m := EXPECT.search(line))}


def _found(paths) -> set[tuple[str, int, str]]:
    result = check_paths(paths, Config(select=("GL3",), root=str(FOLDER)), use_cache=False, jobs=1)
    assert not result.internal_errors
    return {(Path(f.path).name, f.span.line, f.code) for f in result.findings}


def test_callers_in_another_file_bind_the_parameters():
    engine = FOLDER / "engine.py"
    expected = _expected(engine)
    assert len(expected) == 3
    assert _found([FOLDER]) == expected
    assert _found([engine]) == expected  # alone: main.py is found by scanning for the name


def test_without_the_callers_the_parameters_are_unknown(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    for name in ("nets.py", "engine.py"):
        (tmp_path / name).write_text((FOLDER / name).read_text())
    result = check_paths([tmp_path], Config(select=("GL3",), root=str(tmp_path)), use_cache=False, jobs=1)
    assert [f for f in result.findings if f.code == "GL304"] == []
