"""Speed of gradlint's source front-end against a baseline measured in the same process.

Baseline: what a straightforward libcst linter does per file: parse, resolve PositionProvider for
the whole module, and one full visitor pass (here: the import table). gradlint: the real
`extract_python` (lazy per-statement positions, statement-only import walk, model lowering).
Both run over the same files, alternating, several rounds; the ratio of medians is printed.

    python bench/check_speed.py [FOLDER] [--files N] [--rounds R]
    (FOLDER defaults to bench/corpus/src: run bench/corpus.sh --no-check first)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradlint.source import extract_python  # noqa: E402


class _Imports(cst.CSTVisitor):
    def __init__(self) -> None:
        self.n = 0

    def visit_Import(self, node: cst.Import) -> None:
        self.n += 1

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        self.n += 1


def baseline(path: Path) -> None:
    module = cst.parse_module(path.read_text(encoding="utf-8"))
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    wrapper.resolve(PositionProvider)
    wrapper.module.visit(_Imports())


def gradlint(path: Path) -> None:
    extract_python(path, str(path))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default=str(Path(__file__).parent / "corpus" / "src"))
    ap.add_argument("--files", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    files = [p for p in sorted(Path(args.folder).rglob("*.py")) if b"nn.Module" in p.read_bytes()]
    step = max(1, len(files) // args.files)
    files = files[::step][: args.files]
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in files)
    times: dict[str, list[float]] = {"baseline": [], "gradlint": []}
    for _ in range(args.rounds):
        for name, fn in (("baseline", baseline), ("gradlint", gradlint)):
            t0 = time.perf_counter()
            for p in files:
                fn(p)
            times[name].append(time.perf_counter() - t0)
    b, g = statistics.median(times["baseline"]), statistics.median(times["gradlint"])
    print(f"{len(files)} files, {lines} lines (files that define nn.Module classes)")
    print(f"baseline (parse + full PositionProvider + visitor pass): {b:.2f} s")
    print(f"gradlint extract_python (parse + lowering + lazy positions): {g:.2f} s")
    print(f"ratio gradlint/baseline: {g / b:.2f}")


if __name__ == "__main__":
    main()
