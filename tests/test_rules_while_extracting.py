"""The rules of the first files run while the pool extracts the others (api.check_paths with
api._FactsPlan): a lookup of a checked file whose facts are not in yet waits for them, and the
findings are those of a run that extracts every file first (one process)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from gradlint.api import _FactsPlan, check_paths
from gradlint.config import Config
from gradlint.facts.files import FileFacts
from gradlint.facts.project import ProjectIndex
from gradlint.source.index import ProjectFiles
from tests.test_project_index import NOGRAD, TWOPKG, expected, project_files
from tests.conftest import FIXTURES

CROSS = FIXTURES / "architecture" / "crossfile"


def _project(tmp_path: Path) -> Path:
    """The cross-file fixtures (blocks of another file, gradchecks from another package, the
    callers of functions and trainers) in one project, with enough files for the pool."""
    root = tmp_path / "proj"
    shutil.copytree(TWOPKG, root)
    for fixture in (CROSS, NOGRAD):
        for path in project_files(fixture):
            dest = root / fixture.name / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fixture / path, dest)
    # files named to come first: their rules run before the pool has the files they look up
    for i in range(36):
        (root / f"aa_{i:02d}.py").write_text((CROSS / "model.py").read_text(encoding="utf-8").replace(
            "from blocks import", "from crossfile.blocks import").replace("from .blocks import",
                                                                           "from crossfile.blocks import"),
                                             encoding="utf-8")
    return root


def _findings(root: Path, jobs: int, monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    monkeypatch.chdir(root)
    result = check_paths(["."], Config(root=str(root), extend_select=("GL306", "GL307", "GL406")),
                         use_cache=False, jobs=jobs)
    assert not result.internal_errors, [r.internal_error for r in result.internal_errors]
    return sorted((Path(f.path).as_posix(), f.span.line, f.span.column, f.code, f.message) for f in result.findings)


def test_findings_are_those_of_extracting_every_file_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path)
    threads: list[str] = []
    run = _FactsPlan.run

    def spied(self, **kw):
        threads.append(threading.current_thread().name)
        return run(self, **kw)

    monkeypatch.setattr(_FactsPlan, "run", spied)
    alone = _findings(root, 1, monkeypatch)
    assert threads == ["MainThread"]
    pooled = _findings(root, 2, monkeypatch)
    assert threads[1:] == ["gradlint-facts"], "the pool did not run beside the rules"
    assert pooled == alone
    # and the fixtures' own findings are among them, on their marked lines
    for fixture, prefix in ((TWOPKG, ""), (CROSS, "crossfile/"), (NOGRAD, "nograd/")):
        for file in project_files(fixture):
            if fixture is TWOPKG and file.startswith(("crossfile/", "nograd/")):
                continue
            marked = expected(fixture / file)
            got = sorted((line, code) for path, line, _c, code, _m in pooled if path == prefix + file)
            assert set(marked) <= set(got), (prefix + file, marked, got)
    assert sum(1 for f in pooled if f[0].startswith("aa_") and f[3] == "GL101") >= 36


def test_a_lookup_of_a_file_still_being_extracted_waits_for_its_facts() -> None:
    arrived = threading.Event()
    facts = FileFacts(path="pkg/late.py", kind="python")
    asked: list[str] = []

    def late() -> tuple[FileFacts, bool]:
        asked.append("late")
        arrived.wait(timeout=30)
        return facts, False

    loader = ProjectFiles(Path("."), extract=lambda path: pytest.fail(f"{path} read again"))
    loader.pending = {"pkg.late": late}
    index = ProjectIndex(loader)
    assert index.known("pkg.late") and not index.known("pkg.other")
    threading.Timer(0.05, arrived.set).start()
    mod = index.module("pkg.late")
    assert mod is not None and mod.facts is facts and asked == ["late"]
    assert index.module("pkg.late") is mod and asked == ["late"]  # added: never waited for again
