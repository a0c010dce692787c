"""Speed of `gradlint check` as users run it: cold (empty cache), warm (cache filled, nothing
changed) and one changed file (the pre-commit hook), against the libcst parse floor.

The parse floor is what any libcst-based linter pays at least: read and `libcst.parse_module`
every Python file that `gradlint check` discovers, in a pool of the same number of processes.
Cold and warm runs are the real command line (`python -m gradlint.cli check`), start-up included,
with a cache folder of their own. The one-file run checks one large model file with no cache entry
(it changed), start-up included: what a pre-commit hook waits for.

    python bench/speed.py [ROOT] [--packages timm torchvision] [--jobs 2] [--rounds 3] [--one-file PATH] [--profile]
    python bench/speed.py --one-file-only [--one-file PATH] [--base DIR] [--rounds 5]
    (ROOT defaults to bench/corpus/src: run bench/corpus.sh --no-check first)

--rounds N runs the floor, the cold run and the warm run N times side by side and prints medians
(on a shared VM one command's CPU time varies by 20% between minutes). --one-file-only times the one-file run and the start-up alone, `--rounds` times each (medians);
with --base DIR (another checkout of gradlint: `git archive COMMIT | tar -x -C DIR`) each run of
this checkout is followed by the same run of that one, and the ratios are printed: on a shared
machine only runs side by side compare.

Goals (issue 9): cold <= 2x the parse floor, warm <= 5% of cold, one file <= 1 s. --profile runs
the front-end over the same files in one process under cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _parse(path: str) -> int:
    import libcst as cst

    try:
        data = Path(path).read_bytes()
        cst.parse_module(data.decode("utf-8"))
    except Exception:  # noqa: BLE001 - a file libcst refuses costs what it cost
        return 0
    return 1


def _floor_worker(listing: str, jobs: int) -> None:
    files = Path(listing).read_text().splitlines()
    if jobs <= 1:
        for f in files:
            _parse(f)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(_parse, files, chunksize=8))


CHECKED: list[str] = []


def _timed(cmd: list[str], code: Path = ROOT, cwd: Path | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and every process it started); `code`: the
    gradlint checkout that runs (`python -m` looks in the working folder first: run another
    checkout from a `cwd` without one)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(code) + os.pathsep + env.get("PYTHONPATH", "")
    # An installed gradlint has its bytecode compiled; without it every start-up compiles the
    # package again (~0.1 s). __pycache__ is ignored by git.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        sys.exit(f"speed: {' '.join(cmd[:4])}... failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    # "All checks passed (N files checked)" or "Found ... in [K of] N files."
    found = re.search(r"\((\d+) files? checked\)|in (?:\d+ of )?(\d+) files?\.", proc.stdout + proc.stderr)
    CHECKED.append((found.group(1) or found.group(2)) if found else "?")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def parse_floor(files: list[str], jobs: int, tmp: Path) -> tuple[float, float]:
    listing = tmp / "files.txt"
    listing.write_text("\n".join(files))
    return _timed([sys.executable, str(Path(__file__).resolve()), "--floor-worker", str(listing), "--jobs", str(jobs)])


def run_check(targets: list[str], config: Path, jobs: int, extra: tuple[str, ...] = (),
              code: Path = ROOT, cwd: Path | None = None) -> tuple[float, float]:
    return _timed([sys.executable, "-m", "gradlint.cli", "check", "--exit-zero", "--jobs", str(jobs),
                   "--config", str(config), *extra, *targets], code, cwd)


def one_file_only(one: str, base: Path | None, rounds: int) -> None:
    """The one-file run and the start-up alone, `rounds` times each, alternated with `base`."""
    codes = [ROOT] + ([base.resolve()] if base else [])
    one = str(Path(one).resolve())
    tmp = Path(tempfile.mkdtemp(prefix="gradlint-speed-"))  # also the working folder: no gradlint in it
    try:
        config = tmp / "gradlint.toml"
        config.write_text('[tool.gradlint]\ncache-dir = "cache"\nrespect-gitignore = false\n')
        (tmp / "empty.py").write_text("")
        runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for code in codes:  # bytecode (and kept dataclass code) made once, as installed
            run_check([one], config, 1, ("--no-cache",), code, tmp)
        for _ in range(rounds):
            for what, target in (("one", one), ("start", str(tmp / "empty.py"))):
                for k, code in enumerate(codes):
                    runs.setdefault((what, k), []).append(run_check([target], config, 1, ("--no-cache",), code, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = Path(one).read_bytes().count(b"\n")
    print(f"median of {rounds} rounds{'; base: ' + str(base) + ' (each run right after this checkout' + chr(39) + 's)' if base else ''}")
    for what, label in (("one", f"one changed file ({Path(one).name}, {lines} lines)"), ("start", "start-up alone (an empty file)")):
        med = [(statistics.median(r[0] for r in runs[(what, k)]), statistics.median(r[1] for r in runs[(what, k)]))
               for k in range(len(codes))]
        out = f"{label:48}{med[0][0]:6.2f} s wall {med[0][1]:6.2f} s CPU"
        if base:
            out += f"  | base {med[1][0]:.2f} s / {med[1][1]:.2f} s: {med[0][0] / med[1][0]:.2f}x / {med[0][1] / med[1][1]:.2f}x"
        print(out)
    print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def profile(files: list[str], top: int = 25) -> None:
    import cProfile
    import pstats

    from gradlint.source import extract_python

    prof = cProfile.Profile()
    prof.enable()
    for f in files:
        try:
            extract_python(Path(f), f)
        except Exception:  # noqa: BLE001
            pass
    prof.disable()
    stats = pstats.Stats(prof)
    stats.sort_stats("cumulative").print_stats(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=str(ROOT / "bench" / "corpus" / "src"))
    ap.add_argument("--packages", nargs="*", default=["timm", "torchvision"])
    ap.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 8))
    ap.add_argument("--one-file", default=None, help="the changed file of the pre-commit run "
                    "[default: the largest .py file of the first package]")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--one-file-only", action="store_true", help="time the one-file run and the start-up only")
    ap.add_argument("--base", type=Path, default=None, help="another gradlint checkout, run after each run of this one")
    ap.add_argument("--rounds", type=int, default=None, help="runs of each: floor, cold and warm side by side "
                    "[default: 1], or the one-file run and start-up (--one-file-only) [default: 5]")
    ap.add_argument("--floor-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.floor_worker:
        _floor_worker(args.floor_worker, args.jobs)
        return
    root = Path(args.root)
    targets = [str(root / p) for p in args.packages]
    for t in targets:
        if not Path(t).is_dir():
            sys.exit(f"speed: {t}: no such folder")
    files = sorted(str(p) for t in targets for p in Path(t).rglob("*.py"))
    one = args.one_file or max((p for p in Path(targets[0]).rglob("*.py")), key=lambda p: p.stat().st_size).as_posix()
    if args.one_file_only:
        one_file_only(one, args.base, args.rounds if args.rounds is not None else 5)
        return
    lines = sum(Path(f).read_bytes().count(b"\n") for f in files)
    print(f"{len(files)} files, {lines} lines ({', '.join(args.packages)}), {args.jobs} process(es)")

    tmp = Path(tempfile.mkdtemp(prefix="gradlint-speed-"))
    rounds = args.rounds if args.rounds is not None else 1
    try:
        config = tmp / "gradlint.toml"
        # The cache lives below the configuration's folder (the project root it defines).
        config.write_text('[tool.gradlint]\ncache-dir = "cache"\nrespect-gitignore = false\n')
        (tmp / "empty.py").write_text("")
        run_check([str(tmp / "empty.py")], config, 1, ("--no-cache",))  # compiles the bytecode, if missing
        CHECKED.pop()
        runs: dict[str, list[tuple[float, float]]] = {}
        # Each round: the floor, then cold and warm runs with a cache of their own. On a shared VM
        # the CPU seconds of one command vary by 20% from minute to minute: only neighbours compare,
        # so the ratios are taken within each round and their median is printed.
        for _ in range(rounds):
            shutil.rmtree(tmp / "cache", ignore_errors=True)
            runs.setdefault("floor", []).append(parse_floor(files, args.jobs, tmp))
            runs.setdefault("cold", []).append(run_check(targets, config, args.jobs))
            runs.setdefault("warm", []).append(run_check(targets, config, args.jobs))
        single = run_check([one], config, 1, ("--no-cache",))
        start = run_check([str(tmp / "empty.py")], config, 1, ("--no-cache",))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(what: str, k: int) -> float:
        return statistics.median(r[k] for r in runs[what])

    def ratio(a: str, b: str, k: int) -> float:
        return statistics.median(x[k] / y[k] for x, y in zip(runs[a], runs[b]))

    floor, cold, warm = ((med(w, 0), med(w, 1)) for w in ("floor", "cold", "warm"))
    # Wall clock is what users wait for; CPU seconds (all processes) are what a loaded machine
    # cannot distort, and with the same process count their ratio is the wall ratio of an idle one.
    if rounds > 1:
        print(f"medians of {rounds} rounds (ratios: the median of each round's own ratio)")
    print(f"{'':34}{'wall':>8}  {'CPU':>8}  ratios (wall / CPU)")
    print(f"{'libcst parse floor':34}{floor[0]:7.2f}s  {floor[1]:7.2f}s")
    print(f"{'gradlint check, cold (no cache)':34}{cold[0]:7.2f}s  {cold[1]:7.2f}s  "
          f"{ratio('cold', 'floor', 0):.2f}x / {ratio('cold', 'floor', 1):.2f}x the parse floor (goal <= 2x)")
    print(f"{'gradlint check, warm (cache)':34}{warm[0]:7.2f}s  {warm[1]:7.2f}s  "
          f"{100 * ratio('warm', 'cold', 0):.1f}% / {100 * ratio('warm', 'cold', 1):.1f}% of cold (goal <= 5%)")
    print(f"{'one changed file (pre-commit)':34}{single[0]:7.2f}s  {single[1]:7.2f}s  {Path(one).name}, "
          f"{Path(one).read_bytes().count(bytes([10]))} lines (goal <= 1 s)")
    print(f"{'start-up alone (an empty file)':34}{start[0]:7.2f}s  {start[1]:7.2f}s")
    print(f"files checked by each run (parse floor, cold, warm, ..., one file, empty): {', '.join(CHECKED)}")
    print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.profile:
        print("\nwhere the time goes (front-end, one process, cumulative):")
        profile([f for f in files if b"torch" in Path(f).read_bytes()][:80])


if __name__ == "__main__":
    main()
