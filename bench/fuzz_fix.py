"""Long fuzz run of --fix against line-break characters libcst does not count as line breaks.

Generates COUNT fixable programs (GL202 clip after step, GL203 clip before unscale_, GL301,
GL302, GL306), inserts \\v, \\f, \\x1c-\\x1e, \\x85, U+2028 or U+2029 at random (comments,
strings, a form feed as whitespace), and checks that each fix lands on its own line: the fix of
the program with the character, the character removed, equals the fix of the program without
it (tests/fix_fuzz.py; the test suite runs a few of these). Failing programs are written to
--out for a look. Exit 1 if any program fails.

    python bench/fuzz_fix.py [COUNT] [--seed S] [--jobs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import fix_fuzz  # noqa: E402


def _run(args: tuple[int, int, int]) -> list[tuple[int, bool, str, tuple[str, ...], int, str, str]]:
    seed, start, stop = args
    out = []
    for i in range(start, stop):
        rng = random.Random(f"{seed}-{i}")
        v = fix_fuzz.trial(rng)
        out.append((i, v.ok, v.sample.char, v.sample.kinds + (f"newline {v.sample.newline!r}",), v.applied, v.why,
                    v.sample.odd if not v.ok else ""))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", "-j", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="folder for failing programs")
    a = parser.parse_args()
    t0 = time.perf_counter()
    step = max(1, min(50, a.count // max(1, a.jobs * 4)))
    chunks = [(a.seed, s, min(s + step, a.count)) for s in range(0, a.count, step)]
    if a.jobs > 1:
        with ProcessPoolExecutor(a.jobs) as pool:
            rows = [r for chunk in pool.map(_run, chunks) for r in chunk]
    else:
        rows = [r for chunk in map(_run, chunks) for r in chunk]
    by_char: collections.Counter = collections.Counter()
    by_kind: collections.Counter = collections.Counter()
    failed = [r for r in rows if not r[1]]
    for _, _, char, kinds, _, _, _ in rows:
        by_char[repr(char)] += 1
        by_kind.update(kinds)
    fixes = sum(r[4] for r in rows)
    print(f"{len(rows)} programs ({fixes} fixes applied) in {time.perf_counter() - t0:.0f} s: "
          f"{len(rows) - len(failed)} right, {len(failed)} wrong")
    print("characters: " + ", ".join(f"{c} {n}" for c, n in sorted(by_char.items())))
    print("insertions: " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())))
    for i, _, char, kinds, _, why, odd in failed[:20]:
        print(f"  program {i} ({char!r}, {', '.join(kinds)}): {why}")
        if a.out is not None:
            a.out.mkdir(parents=True, exist_ok=True)
            (a.out / f"program_{i}.py").write_text(odd, encoding="utf-8", newline="")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
