"""Guard for speed work on the front-end: a digest of the facts of every corpus file, compared
before and after a change. A refactoring that only makes extraction faster must leave every
digest as it was.

    python bench/facts_diff.py save DIGESTS.json [--packages timm torchvision ...] [--jobs 2]
    python bench/facts_diff.py compare DIGESTS.json [--packages ...] [--show N]

The facts are serialised the way the cache stores them (`cache.encode`), with sets sorted, and
the script runs with PYTHONHASHSEED=0, so that the digest does not depend on string hashing.
`compare` prints each file whose facts differ and, with --show and the texts saved by
`save --texts DIR`, a unified diff of the first N of them.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import hashlib
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = Path("/work/main/bench/corpus/src")


def _canonical(value):
    """cache.encode's tree with set members in a fixed order."""
    if isinstance(value, dict):
        if len(value) == 1:
            (key, body), = value.items()
            if key in ("$set", "$frozenset"):
                items = [_canonical(v) for v in body]
                return {key: sorted(items, key=lambda v: json.dumps(v, sort_keys=True))}
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def facts_text(path: str) -> str:
    from gradlint import cache
    from gradlint.source import extract_python

    try:
        facts = extract_python(Path(path), path)
    except Exception as exc:  # noqa: BLE001 - a crash is a fact of its own
        return f"CRASH {type(exc).__name__}: {exc}"
    return json.dumps(_canonical(cache.encode(facts)), indent=1, sort_keys=True)


def _digest(path: str, texts: str | None = None) -> tuple[str, str]:
    text = facts_text(path)
    if texts:
        dest = (Path(texts) / Path(path).relative_to(CORPUS)).with_suffix(".json")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, errors="surrogatepass")
    return path, hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def files_of(packages: list[str]) -> list[str]:
    return sorted(str(p) for pkg in packages for p in (CORPUS / pkg).rglob("*.py"))


def digests(files: list[str], jobs: int, texts: str | None = None) -> dict[str, str]:
    work = functools.partial(_digest, texts=texts)
    if jobs <= 1:
        return dict(map(work, files))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return dict(pool.map(work, files, chunksize=4))


def main() -> None:
    if os.environ.get("PYTHONHASHSEED") != "0":
        # One string-hash order for every run: some facts list a set's members in its iteration
        # order (numerics' apply_aliases), which would differ between two runs of the same code.
        os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, PYTHONHASHSEED="0"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("save", "compare"))
    ap.add_argument("digests")
    ap.add_argument("--packages", nargs="*", default=["timm", "torchvision", "transformers", "diffusers"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--show", type=int, default=0, help="print a diff of the first N differing files "
                    "(needs the facts text saved by `save --texts DIR`)")
    ap.add_argument("--texts", default=None, help="save: also write each file's facts text under DIR; "
                    "compare: read the old texts from DIR for --show")
    args = ap.parse_args()
    files = files_of(args.packages)
    got = digests(files, args.jobs, args.texts if args.mode == "save" else None)
    if args.mode == "save":
        old = json.loads(Path(args.digests).read_text()) if Path(args.digests).exists() else {}
        old.update(got)
        Path(args.digests).write_text(json.dumps(old, indent=0, sort_keys=True))
        print(f"saved {len(got)} digests to {args.digests}")
        return
    want = json.loads(Path(args.digests).read_text())
    differ = [f for f in files if want.get(f) != got[f]]
    for f in differ:
        print("DIFFERS", f)
    for f in differ[:args.show]:
        if not args.texts:
            break
        before = (Path(args.texts) / Path(f).relative_to(CORPUS)).with_suffix(".json")
        old = before.read_text().splitlines() if before.exists() else []
        sys.stdout.writelines(line + "\n" for line in difflib.unified_diff(
            old, facts_text(f).splitlines(), "before", "after", lineterm="", n=2))
    print(f"{len(files)} files compared, {len(differ)} differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
