"""Which configuration checks which path: each path takes the nearest [tool.gradlint] above it (as
ruff does), a folder of a walk holding its own is checked with its own, and the runs are merged.

`gradlint check backend/` run from a monorepo's root took the root's settings (or none) while the
settings of backend/pyproject.toml were ignored without a word, and `gradlint check sub/x.py`
(pre-commit passes file names) and `gradlint check .` disagreed about sub/x.py. Now a file's
settings, root, cache and per-file-ignores are those of its own project wherever gradlint runs
from; a path with no configuration above it takes the current folder's (the nearest above it),
and `--config FILE` applies one file to every path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from gradlint.config import Config, ConfigError, find_pyproject
from gradlint.discover import excluded_within
from gradlint.findings import FileResult, RunResult

if TYPE_CHECKING:
    from gradlint.fix import FixOutcome

# Builds the run's Config from a configuration file (None: the current folder's, or the
# defaults), command-line overrides applied; raises ConfigError.
Loader = Callable[[Path | None], Config]


@dataclass
class Project:
    """The paths one configuration checks, and what the last run of them gave."""

    config: Config
    paths: list[str] = field(default_factory=list)
    result: RunResult | None = None  # (gradlint model's runs: a gradlint.describe.Described)


def plan(paths: list[str], load: Loader, *, explicit: bool) -> list[Project]:
    """The projects of the given paths. explicit: --config was given, and its file applies to
    every path. A file belongs to the project of its real location (a link to a file of another
    project is that project's). A path inside a project nested in another is left out when the
    outer project's own excludes leave out its folder, as a walk of the outer one would. A
    ConfigError of a path's configuration is raised."""
    if explicit:
        return [Project(load(None), list(paths))]
    by_file: dict[Path | None, Project] = {}
    nearest: dict[str, Path | None] = {}  # (pre-commit names hundreds of files of a few folders)
    outer: dict[Path, Config | None] = {}

    def above(folder: str) -> Path | None:
        if folder not in nearest:
            nearest[folder] = find_pyproject(Path(folder))
        return nearest[folder]

    def left_out(real: str, own: Path) -> bool:
        root = own.parent
        while root.parent != root and (file := above(str(root.parent))) is not None:
            if file not in outer:
                try:
                    outer[file] = load(file)
                except ConfigError:
                    outer[file] = None  # (not this path's configuration: its own run reports it)
            config = outer[file]
            if config is None:
                return False
            if excluded_within(Path(real), config):
                return True
            root = file.parent
        return False

    for path in paths:
        real = os.path.realpath(path)
        own = _nearest(real, above)
        if own is None:
            own = above(os.getcwd())
        elif left_out(real, own):
            continue
        if own not in by_file:
            by_file[own] = Project(outer.get(own) or load(own))
        by_file[own].paths.append(path)
    return list(by_file.values())


def config_for(path: str, load: Loader, *, explicit: bool) -> Config:
    """The configuration `check` applies to path, which need not exist (an editor's unsaved
    buffer): its nearest above its real location, else the current folder's."""
    if explicit:
        return load(None)
    own = _nearest(os.path.realpath(path), lambda folder: find_pyproject(Path(folder)))
    return load(own if own is not None else find_pyproject(Path.cwd()))


def _nearest(real: str, above: Callable[[str], Path | None]) -> Path | None:
    """The configuration file nearest above a path's real location (`above`: of a folder)."""
    return above(real if os.path.isdir(real) else os.path.dirname(real))


def _key(config: Config) -> str | None:
    return str(Path(config.path).resolve()) if config.path else None


def _depth(project: Project) -> int:
    return len(Path(project.config.root).resolve().parts)


def check(projects: list[Project], load: Loader, *, explicit: bool, use_cache: bool,
          jobs: int | None) -> RunResult:
    """Check every project, and the nested projects their walks meet, each with its own settings,
    outer projects first (so that a nested one found by a walk joins its run before it starts);
    the results merged, and a file reached by two runs kept in the first only. Each Project keeps
    its result (its exit code depends on its fail-on; --fix reads it). A nested project whose
    configuration is broken is an error naming it, and the others are still checked."""
    from gradlint.api import check_paths
    from gradlint.pool import Kept

    known = {_key(p.config): p for p in projects}
    # The runs share one pool of workers (a pool costs ~100 ms to start: 50 projects of 40 small
    # files took 19-21 s with a pool each, 13-17 s shared).
    pool = Kept()

    def run(project: Project):
        return check_paths(project.paths, project.config, use_cache=use_cache, jobs=jobs,
                           split_projects=not explicit, pool=pool)

    broken: list[tuple[str, ConfigError]] = []
    _each(projects, load, known, broken, run)
    refused = [FileResult(path=_shown(folder), skipped=f"not checked: {exc}", error=True) for folder, exc in broken]
    pool.close()  # (not on Ctrl-C: the facts thread may be using it; the process's exit ends it)
    seen: set[str] = set()
    for project in projects:
        if project.result is not None:
            project.result.files = [r for r in project.result.files if r.path not in seen]
            seen.update(r.path for r in project.result.files)
    return merge([p.result for p in projects if p.result is not None], refused)


def describe(projects: list[Project], load: Loader, *, explicit: bool):
    """`gradlint model`'s runs (gradlint.describe), each project with its settings and the nested
    projects their walks meet with theirs, as `check` takes them; one Described of them all. A
    nested project whose configuration is broken is an error naming it."""
    from gradlint.describe import NOTHING_FOUND, Described, describe_paths

    broken: list[tuple[str, ConfigError]] = []
    _each(projects, load, {_key(p.config): p for p in projects}, broken,
          lambda project: describe_paths(project.paths, project.config, split_projects=not explicit))
    out = Described(errors=[str(exc) for _folder, exc in broken])  # (the message names the file)
    seen: set[str] = set()
    empty = True
    for project in projects:
        got = project.result
        if got is None:
            continue
        # (a file two runs reached, a walk out of another root: its models once, the first run's,
        # and its errors once)
        fresh = {m.get("filename") for m in got.models} - seen
        out.models += [m for m in got.models if m.get("filename") in fresh]
        seen |= fresh
        out.errors += [e for e in got.errors if e not in out.errors]
        # (a nested project with nothing to read is no warning while another run found files)
        empty = empty and not got.found
        out.warnings += [w for w in got.warnings if w not in out.warnings]
        out.files += got.files
    if empty:
        out.warnings.append(NOTHING_FOUND)
    return out


def _each(projects: list[Project], load: Loader, known: dict, broken: list[tuple[str, ConfigError]], run) -> None:
    """Run each project (`run(project)`: a result whose .projects lists the nested folders its walk
    met), the shallowest waiting first; the nested projects join `projects` (a folder whose
    configuration cannot be read joins `broken`, with why)."""
    while (waiting := [p for p in projects if p.result is None]):
        project = min(waiting, key=_depth)
        project.result = run(project)
        for folder in project.result.projects:
            own = Path(folder) / "pyproject.toml"
            try:
                config = load(own)
            except ConfigError as exc:
                broken.append((folder, exc))
                continue
            nested = known.get(_key(config))
            if nested is None or nested.result is not None:
                # (a project already run, named again by a walk out of another root: a run of
                # its own, whose files already reported are dropped below)
                nested = Project(config)
                known[_key(config)] = nested
                projects.append(nested)
            nested.paths.append(folder)


def merge(results: list[RunResult], refused: list[FileResult] = ()) -> RunResult:
    """One report of several runs: each path once (the first run's), sorted as one run sorts."""
    if len(results) == 1 and not refused:
        return results[0]
    merged = RunResult()
    seen: set[str] = set()
    for result in results:
        for warning in result.warnings:
            if warning not in merged.warnings:
                merged.warnings.append(warning)
        for r in result.files:
            if r.path not in seen:
                seen.add(r.path)
                merged.files.append(r)
    merged.files.extend(refused)
    return merged


def fix(projects: list[Project], *, write: bool, unsafe: bool, use_cache: bool) -> FixOutcome:
    """--fix and --diff over every project's result, each re-checked with its own settings."""
    from gradlint.fix import FixOutcome, apply_fixes

    outcomes = []
    for p in projects:
        if p.result is not None:
            outcomes.append(apply_fixes(p.result, write=write, unsafe=unsafe, config=p.config, use_cache=use_cache))
            p.result = outcomes[-1].remaining  # (what the exit code reads)
    if len(outcomes) == 1:
        return outcomes[0]
    out = FixOutcome(remaining=merge([o.remaining for o in outcomes]))
    for o in outcomes:
        out.diff += o.diff
        out.problems += o.problems
        out.fixed += o.fixed
        out.fixed_findings += o.fixed_findings
        out.files_fixed += o.files_fixed
        out.skipped += o.skipped
        out.changed += o.changed
    return out


def exit_code(projects: list[Project], merged: RunResult, *, exit_zero: bool) -> int:
    """2 for an error anywhere; else (unless exit_zero) 1 when a project has a finding at or
    above its own fail-on."""
    from gradlint.api import exit_code as one

    if merged.has_errors:
        return 2
    if exit_zero:
        return 0
    return max((one(p.result, p.config.fail_on) for p in projects if p.result is not None), default=0)


def _shown(folder: str) -> str:
    try:
        rel = os.path.relpath(folder)
    except ValueError:
        return folder
    return folder if rel.startswith("..") else rel
