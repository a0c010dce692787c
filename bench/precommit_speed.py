"""A pre-commit run (one staged file) against `gradlint check .` on the same project, cold and warm.

The one-file run reads, besides its file, the project modules its lookups reach (the project
index summarises them on demand); this prints how long that takes against checking the whole
project, and how many modules each one-file run read. The corpus is copied to a temporary folder
(gradlint writes its cache under the project root; the corpus stays read-only), made a project
with a pyproject.toml, and every run is a fresh `gradlint` process, as pre-commit and CI start it.

    python bench/precommit_speed.py [PROJECT] [--files F ...] [--rounds R] [--base DIR] [--no-whole]
    (PROJECT defaults to bench/corpus/src/timm: run bench/corpus.sh --no-check first)

--base DIR: another checkout of gradlint (`git archive COMMIT | tar -x -C DIR`) measured in the
same invocation, on a project copy of its own (a cache is per version of the code), each of its
runs right after the same run of this checkout: on a shared machine the load changes from one
minute to the next, so only runs side by side compare. Each line then shows this checkout's
medians, the base's, and their ratios. --no-whole: the project-wide runs fill the cache only
(once), without their medians (a cold run of timm is a minute of CPU).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_FILES = ("timm/models/vision_transformer.py", "timm/models/resnet.py", "timm/layers/mlp.py",
                 "timm/utils/cuda.py")


def gradlint(args: list[str], cwd: Path, code: Path = ROOT) -> tuple[float, float]:
    """(wall seconds, CPU seconds of gradlint and its workers): on a shared machine the wall
    time follows the load, the CPU time follows the work. `code`: the checkout that runs."""
    env = dict(os.environ, PYTHONPATH=str(code))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode compiled once, not at every start
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gradlint.cli", "check", "--exit-zero", *args], cwd=cwd,
                          env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"gradlint {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def modules_read(project: Path, file: str) -> int:
    """How many project modules a one-file run summarises besides its own file (in process)."""
    from gradlint.api import check_paths
    from gradlint.config import Config
    from gradlint.source import index

    count = 0
    original = index.ProjectFiles.load

    def counting(self, module):
        nonlocal count
        found = original(self, module)
        count += found is not None
        return found

    index.ProjectFiles.load = counting
    old = Path.cwd()
    os.chdir(project)
    try:
        check_paths([file], Config(root=str(project)), use_cache=False, jobs=1)
    finally:
        os.chdir(old)
        index.ProjectFiles.load = original
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project", nargs="?", default=str(ROOT / "bench" / "corpus" / "src" / "timm"))
    ap.add_argument("--files", nargs="*", default=list(DEFAULT_FILES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--base", type=Path, default=None, help="another gradlint checkout, measured alongside")
    ap.add_argument("--no-whole", action="store_true", help="no medians of the project-wide runs")
    args = ap.parse_args()
    source = Path(args.project)
    codes = [ROOT] + ([args.base.resolve()] if args.base else [])
    with tempfile.TemporaryDirectory() as tmp:
        projects = []
        for k, _code in enumerate(codes):
            project = Path(tmp) / str(k) / source.name
            shutil.copytree(source, project, ignore=shutil.ignore_patterns("*.pyc", "__pycache__", ".gradlint_cache"))
            (project / "pyproject.toml").write_text("[project]\nname = 'bench'\nversion = '0'\n")
            projects.append(project)
        files = [f for f in args.files if (projects[0] / f).is_file()]
        n = sum(1 for _ in projects[0].rglob("*.py"))
        print(f"project: {source} ({n} .py files), {os.cpu_count()} CPUs, median of {args.rounds} rounds"
              + (f"; base: {args.base} (each run right after this checkout's)" if args.base else ""))

        def median(cmd: list[str], edit: str | None = None) -> list[tuple[float, float]]:
            """Per checkout, the medians of `cmd`. `--no-cache` runs neither read nor write the
            cache; `edit` changes that file before each round (one changed file in a warm project)."""
            runs: list[list[tuple[float, float]]] = [[] for _ in codes]
            for i in range(args.rounds):
                for k, code in enumerate(codes):
                    if edit:
                        with (projects[k] / edit).open("a") as fh:
                            fh.write(f"\n# edited {i}\n")
                    runs[k].append(gradlint(cmd, projects[k], code))
            return [(statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)) for rs in runs]

        def fmt(ts: list[tuple[float, float]]) -> str:
            out = f"{ts[0][0]:6.2f} s wall {ts[0][1]:6.2f} s CPU"
            if len(ts) > 1:
                out += (f" (base {ts[1][0]:.2f} / {ts[1][1]:.2f}: "
                        f"{ts[0][0] / ts[1][0]:.2f}x / {ts[0][1] / max(ts[1][1], 1e-9):.2f}x)")
            return out

        if args.no_whole:
            for k, code in enumerate(codes):
                gradlint(["."], projects[k], code)  # fill the cache
            print(f"{'gradlint check .':<50} (cache filled once, not timed: --no-whole)")
            whole_cold = None
        else:
            whole_cold = median(["--no-cache", "."])
            for k, code in enumerate(codes):
                gradlint(["."], projects[k], code)  # fill the cache
            whole_warm = median(["."])
            print(f"{'gradlint check .':<50} cold {fmt(whole_cold)} | warm {fmt(whole_warm)}")
        for f in files:
            one_cold = median(["--no-cache", f])
            one_warm = median([f])
            one_changed = median([f], edit=f)
            reads = modules_read(projects[0], f)
            share = f"cold CPU {one_cold[0][1] / whole_cold[0][1]:.1%} of the project's; " if whole_cold else ""
            print(f"{'gradlint check ' + f:<50} cold {fmt(one_cold)} | warm {fmt(one_warm)} | "
                  f"changed {fmt(one_changed)} | {share}project modules read: {reads}")
        for code in codes:
            start = time.perf_counter()
            # (from the project copy: `python -c` looks in the working folder first)
            subprocess.run([sys.executable, "-c", "import gradlint.cli"], env=dict(os.environ, PYTHONPATH=str(code)),
                           check=True, cwd=projects[0])
            print(f"start-up (import gradlint.cli) of {code}: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
