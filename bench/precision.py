"""Precision of gradlint's findings on the released-library corpus, against a list a person judged.

    python bench/precision.py FINDINGS.json [--judged bench/judged.tsv] [--corpus bench/corpus/src]
        [--unjudged-out FILE]

FINDINGS.json is `gradlint check --format json` over the corpus (bench/precision.sh makes it).
bench/judged.tsv holds one judged finding a line: path (relative to the corpus), line, rule,
verdict (right / wrong / debatable), and a one-line reason. A finding that is not in the list is
*unjudged*: it is printed with its source line so that someone reads it and adds a verdict.
Precision = right / (right + wrong + debatable) over judged findings; unjudged ones are counted
apart, never guessed.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_judged(path: Path) -> dict[tuple[str, int, str], tuple[str, str]]:
    judged: dict[tuple[str, int, str], tuple[str, str]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if not row or row[0].startswith("#") or row[0] == "path":
                continue
            rel, line, code, verdict, reason = (row + [""] * 5)[:5]
            if verdict not in ("right", "wrong", "debatable"):
                raise SystemExit(f"{path}: bad verdict {verdict!r} for {rel}:{line} {code}")
            judged[(rel, int(line), code)] = (verdict, reason)
    return judged


def relative(filename: str, corpus: Path) -> str:
    p = Path(filename)
    try:
        return p.resolve().relative_to(corpus.resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("findings")
    ap.add_argument("--judged", default=str(HERE / "judged.tsv"))
    ap.add_argument("--corpus", default=str(HERE / "corpus" / "src"))
    ap.add_argument("--unjudged-out", default=None, help="write unjudged findings here as TSV rows to fill in")
    args = ap.parse_args(argv)
    corpus = Path(args.corpus)
    judged = load_judged(Path(args.judged))
    findings = json.loads(Path(args.findings).read_text(encoding="utf-8"))
    per_rule: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    unjudged = []
    seen = set()
    for f in findings:
        rel = relative(f["filename"], corpus)
        key = (rel, f["location"]["row"], f["code"])
        seen.add(key)
        verdict = judged.get(key, ("unjudged", ""))[0]
        per_rule[f["code"]][verdict] += 1
        if verdict == "unjudged":
            unjudged.append((key, f))
    print(f"{'rule':6} {'findings':>8} {'right':>6} {'wrong':>6} {'debat.':>6} {'unjudged':>8}")
    total = collections.Counter()
    for code in sorted(per_rule):
        c = per_rule[code]
        total.update(c)
        print(f"{code:6} {sum(c.values()):8} {c['right']:6} {c['wrong']:6} {c['debatable']:6} {c['unjudged']:8}")
    n_judged = total["right"] + total["wrong"] + total["debatable"]
    print(f"{'all':6} {sum(total.values()):8} {total['right']:6} {total['wrong']:6} {total['debatable']:6} "
          f"{total['unjudged']:8}")
    if n_judged:
        print(f"precision (right / judged): {total['right'] / n_judged:.1%} of {n_judged} judged findings")
    lost = [k for k, (v, _) in judged.items() if v == "right" and k not in seen]
    for rel, line, code in lost:
        print(f"LOST: a finding judged right is no longer reported: {rel}:{line} {code}")
    if unjudged:
        print(f"\n{len(unjudged)} unjudged findings (read them, then add a line to {args.judged}):")
        for (rel, line, code), f in unjudged:
            src = ""
            try:
                src = (corpus / rel).read_text(encoding="utf-8").split("\n")[line - 1].strip()
            except (OSError, IndexError, UnicodeDecodeError):
                pass
            print(f"  {rel}:{line} {code} {f['message'][:140]}\n      | {src[:140]}")
        if args.unjudged_out:
            with open(args.unjudged_out, "w", encoding="utf-8") as fh:
                for (rel, line, code), _f in unjudged:
                    fh.write(f"{rel}\t{line}\t{code}\t?\t\n")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
