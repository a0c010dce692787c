"""The cache against --no-cache on many small files in one folder: ONNX models or torch modules.

At 0.1 every model's key listed its whole folder (O(N^2) stats: 2 000 models took 70 s cached
against 11 s uncached). Keys now cover the model and the files it names, so a warm cached run
must not be slower than an uncached one. A cold run (the first, which stores every file's facts)
must not be slower either: it writes one pack per folder, not one file per entry.

    python bench/cache_speed.py [--kind onnx|py] [--models 2000] [--jobs 2] [--repeat 3] [--against DIR]

Runs `gradlint check` as a user would (a child process each time) in a temporary folder: each
repeat runs --no-cache, a cold cached run (the cache folder deleted first) and a warm one, one
after the other (the uncached run first in even repeats, last in odd ones), so that each cached
run is compared with the uncached run next to it (the load of a shared machine moves all three
alike). Prints each repeat's wall ratios cached / uncached,
their median, and the best wall and CPU time of each mode; exits 1 when the median warm or cold
wall ratio is above 1. `--against DIR` runs the gradlint of another checkout (a base snapshot)
the same way in the same repeats, alternating with this one.

`--instructions` counts instead of timing: each mode once, -j1, under valgrind's callgrind (which
counts the instructions the process runs, the same whatever the machine's load, where a wall ratio
moved 0.84 to 1.53 between repeats); prints the counts and the ratios cached / uncached. Slow (about
50 times a plain run): use --models 300. Exits 1 when the cold run counts more than the uncached one.
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
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent


def make_models(folder: Path, n: int) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = model.SerializeToString()
    for i in range(n):
        (folder / f"m{i}.onnx").write_bytes(data)


# A small module per file, each a little different (widths, depth), as a model zoo's files are.
PY_MODEL = """import torch
import torch.nn as nn


class Block{i}(nn.Module):
    def __init__(self, width: int = {width}) -> None:
        super().__init__()
        self.body = nn.Sequential(*[nn.Linear(width, width) for _ in range({depth})])
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.act(self.body(x)))


def train_step(model: nn.Module, batch, optimizer) -> float:
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(batch[0]), batch[1])
    loss.backward()
    optimizer.step()
    return loss.item()
"""


def make_py(folder: Path, n: int) -> None:
    for i in range(n):
        (folder / f"m{i}.py").write_text(PY_MODEL.format(i=i, width=16 * (1 + i % 8), depth=1 + i % 4))


def run(folder: Path, jobs: int, *extra: str, code: Path = ROOT) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the child and its workers) of one run of the
    gradlint in `code`."""
    env = dict(os.environ, PYTHONPATH=str(code))
    # Without bytecode files a checkout compiles every module on every run (a fresh snapshot too).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gradlint.cli", "check", "-q", "-j", str(jobs), *extra, "."],
                          cwd=folder, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"gradlint failed (exit {proc.returncode}):\n{proc.stderr}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def instructions(folder: Path, *extra: str, code: Path = ROOT) -> int:
    """Instructions of one -j1 run of the gradlint in `code`, counted by callgrind."""
    env = dict(os.environ, PYTHONPATH=str(code))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
                           "gradlint.cli", "check", "-q", "-j", "1", *extra, "."],
                          cwd=folder, env=env, capture_output=True, text=True)
    counted = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode not in (0, 1) or counted is None:
        raise SystemExit(f"gradlint under callgrind failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(counted.group(1))


def count(folder: Path, code: Path) -> bool:
    """--instructions: each mode once; whether the cold run counts no more than the uncached one."""
    instructions(folder, "--no-cache", code=code)  # untimed, as in the timed runs: bytecode files
    uncached = instructions(folder, "--no-cache", code=code)
    shutil.rmtree(folder / ".gradlint_cache", ignore_errors=True)
    cold = instructions(folder, code=code)
    warm = instructions(folder, code=code)
    print(f"instructions (callgrind, -j1): --no-cache {uncached:,}   cold {cold:,} ({cold / uncached:.4f})"
          f"   warm {warm:,} ({warm / uncached:.4f})")
    return cold <= uncached


def report(name: str, uncached: list, cold: list, warm: list) -> bool:
    """Print one checkout's times; whether its median cold and warm wall ratios are at most 1."""
    base, base_cpu = min(w for w, _ in uncached), min(c for _, c in uncached)
    print(f"{name}: --no-cache   {base:7.2f} s wall {base_cpu:7.2f} s cpu (best)")
    fine = True
    for mode, times in (("cold", cold), ("warm", warm)):
        ratios = [w / u for (w, _), (u, _) in zip(times, uncached)]
        cpu = [c / u for (_, c), (_, u) in zip(times, uncached)]
        wall, best_cpu = min(w for w, _ in times), min(c for _, c in times)
        print(f"{name}: {mode} cache   {wall:7.2f} s wall {best_cpu:7.2f} s cpu (best)   wall ratio per run "
              f"{' '.join(f'{r:.2f}' for r in ratios)}  median {statistics.median(ratios):.2f}"
              f"   cpu ratio per run {' '.join(f'{r:.2f}' for r in cpu)}  median {statistics.median(cpu):.2f}")
        fine = fine and statistics.median(ratios) <= 1
    return fine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("onnx", "py"), default="onnx")
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another checkout's root, run alternately with this one")
    parser.add_argument("--instructions", action="store_true", help="count instructions under callgrind instead")
    args = parser.parse_args()
    if args.instructions:
        folder = Path(tempfile.mkdtemp(prefix="gradlint-cache-bench-"))
        try:
            (make_models if args.kind == "onnx" else make_py)(folder, args.models)
            print(f"{args.models} {args.kind} files")
            return 0 if count(folder, ROOT) else 1
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    codes = {"this": ROOT, **({"against": args.against.resolve()} if args.against else {})}
    folder = Path(tempfile.mkdtemp(prefix="gradlint-cache-bench-"))
    times: dict[str, tuple[list, list, list]] = {name: ([], [], []) for name in codes}
    try:
        (make_models if args.kind == "onnx" else make_py)(folder, args.models)
        for code in codes.values():
            # untimed: the first run of a checkout writes its bytecode files and reads the files
            # from disk (a first repeat's --no-cache run took 2.4 times the CPU of the cold run after it)
            run(folder, args.jobs, "--no-cache", code=code)
        for r in range(args.repeat):
            for name, code in codes.items():
                uncached, cold, warm = times[name]
                # The uncached run comes first in even repeats and last in odd ones: whatever a
                # run's place does to it (caches of the kernel and the processor warmed by the run
                # before) is not given to one mode every time.
                if r % 2 == 0:
                    uncached.append(run(folder, args.jobs, "--no-cache", code=code))
                shutil.rmtree(folder / ".gradlint_cache", ignore_errors=True)
                cold.append(run(folder, args.jobs, code=code))
                warm.append(run(folder, args.jobs, code=code))
                if r % 2 == 1:
                    uncached.append(run(folder, args.jobs, "--no-cache", code=code))
            shutil.rmtree(folder / ".gradlint_cache", ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    # Wall time is what a user waits; CPU time is the work done, and moves less when other
    # processes share the machine (compare both; `uptime` tells the load).
    print(f"{args.models} {args.kind} files, -j{args.jobs}, {args.repeat} repeats, load {os.getloadavg()[0]:.1f}")
    fine = [report(f"{name} ({code})", *times[name]) for name, code in codes.items()]
    return 0 if fine[0] else 1


if __name__ == "__main__":
    sys.exit(main())
