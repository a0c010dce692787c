"""The slowest files of the corpus to extract, each alone: an outlier hides in a total.

diffusers' autoencoder_kl_cogvideox.py took 238 s to extract (the next slowest 2.6 s) while every
benchmark measured a total: the precision run spent four minutes on it and no one saw. This times
each .py file's facts extraction alone (no cache), in worker processes, and prints the slowest;
it exits 1 when one takes more than --limit seconds (the hostile-input acceptance: 10 s).

    python bench/slowest.py [ROOT ...] [--top 12] [--limit 10] [-j 2]
    (ROOT defaults to bench/corpus/src: run bench/corpus.sh --no-check first; about 6 minutes
    on two cores for its 13 373 files)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradlint import api  # noqa: E402
from gradlint.config import Config  # noqa: E402

MAX_SIZE = Config().max_file_size


def timed(path: str) -> tuple[float, str, str]:
    """Seconds to extract one file's facts, the file, and its internal error if any."""
    start = time.perf_counter()
    try:
        facts = api._facts_job((path, path, None, MAX_SIZE, False, False))[0]
        error = facts.internal_error or ""
    except Exception as exc:  # noqa: BLE001 - a crash is a result of this benchmark
        error = f"{type(exc).__name__}: {exc}"
    return time.perf_counter() - start, path, error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="*", default=[str(Path(__file__).parent / "corpus" / "src")])
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--limit", type=float, default=10.0)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    args = parser.parse_args()
    files = [os.path.join(folder, name) for root in args.roots for folder, _dirs, names in os.walk(root)
             for name in names if name.endswith(".py")]
    files.sort(key=lambda p: -os.path.getsize(p))  # (the largest first: the pool ends sooner)
    start = time.perf_counter()
    with Pool(args.jobs) as pool:
        out = sorted(pool.imap_unordered(timed, files, chunksize=4), reverse=True)
    print(f"{len(files)} files in {time.perf_counter() - start:.0f} s wall, {sum(t for t, _p, _e in out):.0f} s "
          f"of extraction; the slowest (each alone; the first file a process extracts also pays its imports):")
    for seconds, path, error in out[:args.top]:
        print(f"{seconds:8.2f} s {os.path.getsize(path):9,d} B  {path}" + (f"  ({error[:80]})" if error else ""))
    over = [p for t, p, _e in out if t > args.limit]
    print(f"over {args.limit:g} s: {len(over)}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
