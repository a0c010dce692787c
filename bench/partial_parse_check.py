"""Re-runs of another file's classes with a partial parse against a whole parse, over a corpus.

`ProjectFiles.lower` parses only what a re-run of a class can reach (skeleton.without_units).
This runs `gradlint check` in process over the given packages of the corpus and, for every re-run
made from a partial parse, makes it again from a whole parse of the same file and compares the
two networks (their repr). Prints the counts and the first differences; exits 1 on any.

    python bench/partial_parse_check.py [PACKAGE ...]   (default: every package of bench/corpus/src)
    (run bench/corpus.sh --no-check first)
"""

from __future__ import annotations

import collections
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from gradlint import api
    from gradlint import source as S
    from gradlint.config import load_config
    from gradlint.source import rerun

    corpus = ROOT / "bench" / "corpus" / "src"
    packages = sys.argv[1:] or sorted(p.name for p in corpus.iterdir() if p.is_dir() and p.name != "__pycache__")
    whole: dict[str, object] = {}
    counts: collections.Counter = collections.Counter()
    differ: list[tuple] = []

    def compared(name: str):
        made = getattr(rerun, name)

        def run(src, cls, args):
            out = made(src, cls, args)
            if getattr(src, "units", None) is None:
                counts["whole parse"] += 1
                return out
            if src.path not in whole:
                path = Path(src.path)
                whole[src.path] = S.parsed(path if path.is_absolute() else Path.cwd() / path, src.path)
            ref = made(whole[src.path], cls, args)
            if repr(ref) == repr(out):
                counts["partial parse, same network"] += 1
            else:
                counts["partial parse, DIFFERENT network"] += 1
                differ.append((src.path, cls, repr(out)[:400], repr(ref)[:400]))
            return out

        setattr(rerun, name, run)

    compared("lower_class")
    compared("lower_function")
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "gradlint.toml"
        config_path.write_text("[tool.gradlint]\nrespect-gitignore = false\n")
        os.chdir(corpus)
        config = load_config(config_path)
        api.check_paths(packages, config, use_cache=False, jobs=1)
    for what, n in sorted(counts.items()):
        print(f"{n:6d}  {what}")
    for path, cls, got, ref in differ[:5]:
        print(f"\n{path} {cls}\n  partial: {got}\n  whole:   {ref}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
