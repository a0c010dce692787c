"""Recall benchmark: how many real, upstream-fixed gradient/numerics/training-loop bugs gradlint catches.

Usage: python bench/recall/recall.py [--gradlint CMD] [--cases TSV] [--json OUT] [-j N]

Each row of cases.tsv names a case, the rule code its bug falls under and the thread where a
public project fixed it. cases/<name>_bug.py reproduces the code as the project had it and
cases/<name>_fixed.py the same code with the upstream fix. Every file is checked alone, copied
into a fresh temporary folder (so no pyproject.toml applies and the cases do not see one
another through the project index), with every opt-in rule enabled:

    <CMD> check --no-cache --exit-zero --format json -j 1 --extend-select <opt-in rules> FILE

CMD defaults to `<this interpreter> -m gradlint.cli`. A case is *caught* when the bug file gets
a finding of the expected code, *fixed quiet* when the fixed file gets none of that code.
A catch by a rule that is off by default is reported apart ("opt-in"): a default run misses it.
Cases whose thread is cited by the rules, their tests or fixtures ("seen") were known while the
rules were written; their recall is shown apart from the held-out rest. Needs only the standard library and
gradlint. Exit status 0 after a run (whatever the recall), 2 when gradlint cannot run or a case
file does not parse.

To add a case: a row in cases.tsv (name, rule code, thread URL, one-line description) and the two
files cases/<name>_bug.py and cases/<name>_fixed.py, each opening with a one-line docstring and a
comment with the URL; reproduce the project's shape (classes, helpers, the loop that trains it),
not a shape gradlint is known to catch.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FAMILIES = {
    "GL1": "architecture (GL1xx)",
    "GL2": "training loop (GL2xx)",
    "GL3": "numerics (GL3xx)",
    "GL4": "gradient paths (GL4xx)",
}


def gradlint_env() -> dict[str, str]:
    """The environment for gradlint runs: the repository on PYTHONPATH, so a checkout works uninstalled."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def run(cmd: list[str], cwd: str | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=gradlint_env(), capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}:\n{proc.stderr.strip()}")
    return proc.stdout


def rule_table(base: list[str]) -> dict[str, dict]:
    """Every rule gradlint knows, by code (from `gradlint rules --format json`)."""
    return {r["code"]: r for r in json.loads(run(base + ["rules", "--format", "json"]))}


def check_file(base: list[str], path: Path, opt_in: list[str]) -> list[dict]:
    """Findings for one file, checked alone in a fresh temporary folder."""
    with tempfile.TemporaryDirectory(prefix="gradlint-recall-") as tmp:
        target = Path(tmp) / path.name
        shutil.copyfile(path, target)
        cmd = base + ["check", "--no-cache", "--exit-zero", "--format", "json", "-j", "1"]
        if opt_in:
            cmd += ["--extend-select", ",".join(opt_in)]
        out = run(cmd + [target.name], cwd=tmp)
    findings = json.loads(out) if out.strip() else []
    broken = [f for f in findings if f["code"] in ("GL001",)]
    if broken:
        raise RuntimeError(f"{path.name}: {broken[0]['message']}")
    return findings


_DEV_TEXT: list[str] | None = None


def development_text() -> list[str]:
    """The text of the rule pages, rule sources, tests and fixtures: what the rules were written against."""
    global _DEV_TEXT
    if _DEV_TEXT is None:
        files = [p for d in ("rules", "gradlint", "tests", "fixtures") for p in (REPO / d).rglob("*")
                 if p.suffix in (".md", ".py", ".toml", ".txt", ".tsv") and p.is_file()]
        _DEV_TEXT = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    return _DEV_TEXT


def seen_in_development(url: str) -> bool:
    """Whether the rules, their tests or fixtures cite this thread: the full URL, or owner/repo
    together with its number (`owner/repo#N`, or `owner/repo#M and its fix #N`)."""
    parts = url.rstrip("/").split("/")
    if len(parts) < 7:
        return any(url in text for text in development_text())
    repo, number = f"{parts[3]}/{parts[4]}", parts[-1]
    return any(url in text or (repo in text and f"#{number}" in text) for text in development_text())


def pct(num: int, den: int) -> str:
    return f"{num}/{den} ({100.0 * num / den:.0f}%)" if den else "0/0"


def main() -> int:
    try:
        return benchmark()
    except (RuntimeError, OSError, json.JSONDecodeError) as exc:
        print(f"recall.py: gradlint failed: {exc}", file=sys.stderr)
        return 2


def benchmark() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gradlint", metavar="CMD", default=None,
                        help="command that runs gradlint (default: this interpreter with -m gradlint.cli)")
    parser.add_argument("--cases", type=Path, default=HERE / "cases.tsv", help="the case table (default: %(default)s)")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="also write per-case results here")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="parallel gradlint runs")
    args = parser.parse_args()

    base = shlex.split(args.gradlint) if args.gradlint else [sys.executable, "-m", "gradlint.cli"]
    rules = rule_table(base)
    opt_in = sorted(c for c, r in rules.items() if not r["default"] and not r.get("probe_only"))

    with args.cases.open(newline="", encoding="utf-8") as fh:
        cases = list(csv.DictReader(fh, delimiter="\t"))
    case_dir = args.cases.parent / "cases"
    for case in cases:
        if case["rule"] not in rules:
            raise SystemExit(f"{case['name']}: unknown rule {case['rule']}")
        for variant in ("bug", "fixed"):
            if not (case_dir / f"{case['name']}_{variant}.py").is_file():
                raise SystemExit(f"missing {case_dir / (case['name'] + '_' + variant + '.py')}")

    jobs = [(c["name"], v) for c in cases for v in ("bug", "fixed")]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        found = dict(zip(jobs, pool.map(
            lambda job: check_file(base, case_dir / f"{job[0]}_{job[1]}.py", opt_in), jobs)))

    results = []
    for case in cases:
        code = case["rule"]
        bug = found[(case["name"], "bug")]
        fixed = found[(case["name"], "fixed")]
        hits = [f for f in bug if f["code"] == code]
        false_hits = [f for f in fixed if f["code"] == code]
        results.append({
            "name": case["name"], "rule": code, "url": case["url"],
            "caught": bool(hits),
            "opt_in": not rules[code]["default"],
            "fixed_quiet": not false_hits,
            "seen": seen_in_development(case["url"]),
            "bug_codes": sorted({f["code"] for f in bug}),
            "fixed_codes": sorted({f["code"] for f in fixed}),
            "hit_lines": [f["location"]["row"] for f in hits],
            "false_findings": [f"{f['location']['row']}: [{f['severity']}] {f['message']}" for f in false_hits],
        })

    width = max(len(r["name"]) for r in results)
    print(f"gradlint recall benchmark: {len(results)} cases, opt-in rules enabled: {', '.join(opt_in) or 'none'}")
    print(f"{'case':<{width}}  rule   caught        fixed quiet  seen  other codes: bug file / fixed file")
    for r in results:
        caught = ("yes" + (" (opt-in)" if r["opt_in"] else "")) if r["caught"] else "NO"
        other_bug = ",".join(c for c in r["bug_codes"] if c != r["rule"]) or "-"
        other_fixed = ",".join(c for c in r["fixed_codes"] if c != r["rule"]) or "-"
        seen = "yes" if r["seen"] else "-"
        print(f"{r['name']:<{width}}  {r['rule']}  {caught:<12}  {'yes' if r['fixed_quiet'] else 'NO':<11}  "
              f"{seen:<4}  {other_bug} / {other_fixed}")

    n = len(results)
    caught = [r for r in results if r["caught"]]
    by_default = [r for r in caught if not r["opt_in"]]
    print()
    print(f"recall (caught / cases):             {pct(len(caught), n)}")
    print(f"  with default rules only:           {pct(len(by_default), n)}")
    print(f"  caught only through opt-in rules:  {len(caught) - len(by_default)} "
          f"(of {sum(r['opt_in'] for r in results)} cases under opt-in rules)")
    print(f"fixed files quiet for the case code: {pct(sum(r['fixed_quiet'] for r in results), n)}")
    seen = [r for r in results if r["seen"]]
    unseen = [r for r in results if not r["seen"]]
    print(f"recall, threads seen in development: {pct(sum(r['caught'] for r in seen), len(seen))}")
    print(f"recall, threads not seen (held out): {pct(sum(r['caught'] for r in unseen), len(unseen))}")
    print("per family:")
    for prefix, label in FAMILIES.items():
        fam = [r for r in results if r["rule"].startswith(prefix)]
        if fam:
            print(f"  {label:<24} {pct(sum(r['caught'] for r in fam), len(fam))}")
    print("per rule:")
    for code in sorted({r["rule"] for r in results}):
        rs = [r for r in results if r["rule"] == code]
        tag = "opt-in" if not rules[code]["default"] else "default"
        print(f"  {code} {rules[code]['name']:<36} {tag:<7} {pct(sum(r['caught'] for r in rs), len(rs))}")

    missed = [r for r in results if not r["caught"]]
    if missed:
        print("missed:")
        for r in missed:
            print(f"  {r['name']} ({r['rule']})  {r['url']}")
    noisy = [r for r in results if not r["fixed_quiet"]]
    if noisy:
        print("FIXED files flagged with the case's code (false findings):")
        for r in noisy:
            for f in r["false_findings"]:
                print(f"  {r['name']}_fixed.py:{f}")

    if args.json_out:
        args.json_out.write_text(json.dumps({"opt_in": opt_in, "cases": results}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
