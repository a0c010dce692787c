"""Long robustness fuzz runs of `gradlint check` (tests/robust_fuzz.py; the suite runs a few).

    python bench/fuzz_robust.py source|onnx [COUNT] [--seed S]

source: generated nn.Modules with hostile twists (huge or self-referencing sizes, squaring loops,
self-instantiation, 900-term sums, deep parentheses) and damaged real fixtures; onnx: damaged
binary and text models. Each sits beside a good file whose finding must be reported. Prints each
failing trial and a count; exit 1 if any failed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import robust_fuzz  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=("source", "onnx"))
    ap.add_argument("count", nargs="?", type=int, default=1000)
    ap.add_argument("--seed", default="bench")
    ap.add_argument("--budget", type=float, default=10.0, help="seconds a trial may take")
    args = ap.parse_args()
    start = time.perf_counter()
    bad = 0
    slowest = 0.0
    for i in range(args.count):
        v = robust_fuzz.trial(args.kind, random.Random(f"{args.seed}-{args.kind}-{i}"), budget_s=args.budget)
        slowest = max(slowest, v.seconds)
        if not v.ok:
            bad += 1
            print(f"trial {i}: {v.why[-500:]}")
    print(f"{args.kind}: {args.count - bad} right, {bad} wrong in {time.perf_counter() - start:.0f} s "
          f"(slowest trial {slowest:.1f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
