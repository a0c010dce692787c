"""How much of real model code the source front-end understands: nn.Module classes modelled with no
opaque node, classes with an analysable chain, and why the rest stop (top opaque reasons).

    python bench/coverage.py [ROOT] [--packages timm torchvision] [--top 25] [--examples]
    (ROOT defaults to bench/corpus/src: run bench/corpus.sh --no-check first)

A class counts as "modelled with no opaque node" when its forward was followed and no node of its
IR (residual bodies included) is Opaque; "with an analysable chain" when the propagation model
finds at least one chain of >= 2 parametric layers in it (what GL101/GL102 read). Each class
contributes each distinct reason once, so the reason counts are numbers of classes.

--inline: each class as the architecture rules see it, with the blocks of other files of the
package inlined through the project index (gradlint.model.inline: re-run with the caller's
arguments); this extracts every file in full, so it takes minutes, not seconds.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradlint.model.ir import Attention, Extern, Opaque, Residual, walk  # noqa: E402
from gradlint.model.propagation import analyse  # noqa: E402
from gradlint.source import decode, parse  # noqa: E402
from gradlint.source import models  # noqa: E402
from gradlint.source.configs import ConfigReader  # noqa: E402
from gradlint.source.index import module_symbols  # noqa: E402

# Reasons that name one class or module path are grouped by their shape, so that the table shows
# "module Foo" once per Foo but "loop of unknown length" once in all.
_GROUP = re.compile(r"^(unknown module|local module|library module) ")


def classify(path: Path, project=None):
    """Yield (class name, status, reasons, has_chain, kinds) for every nn.Module class of one file;
    kinds: 'attention' and 'gate' when a forward path holds such a node (modelled, no gain).
    project: (index, facts) by path for --inline."""
    if project is not None:
        from gradlint.model.inline import finder, inline

        if path not in project:
            return
        index, got = project[path]
        find = finder(index.scope(got))
        networks = [inline(n, find) for n in got.networks]
        for before, after in zip(got.networks, networks):
            _count_placeholders(before, "found")
            _count_placeholders(after, "left")
        summaries = got.classes
        yield from _statuses(networks, summaries)
        return
    try:
        text = decode(path.read_bytes())
        src = parse(str(path), text)
    except Exception as exc:  # noqa: BLE001 - a file the parser refuses is not a class we model
        yield (f"<{path.name}>", "unparsed", (f"parse: {type(exc).__name__}",), False, ())
        return
    try:
        # as `gradlint check` reads the file: config classes of other files from its neighbours
        configs = ConfigReader(path, module_symbols(text))
        networks, summaries = models.extract(src, configs)
    except Exception as exc:  # noqa: BLE001 - a crash is a finding of this benchmark
        yield (f"<{path.name}>", "crash", (f"crash: {type(exc).__name__}: {exc}"[:120],), False, ())
        return
    yield from _statuses(networks, summaries)


# --inline: placeholders of blocks of other files (ir.Extern), by kind (a class, or a function
# whose returned module is wanted), found in the per-file IR and left after inlining.
PLACEHOLDERS: collections.Counter = collections.Counter()


def _count_placeholders(network, when: str) -> None:
    for path in network.paths:
        for n in walk(path):
            if isinstance(n, Extern):
                kind = "function" if n.what.endswith("returns") else "class"
                PLACEHOLDERS[(when, kind)] += 1
                if when == "left":
                    PLACEHOLDERS[("left-by-name", f"{kind} {n.cls}")] += 1


def _project(root: Path, files: list[Path]):
    """Every file's facts in its package's project index (the classes of other files of the package
    resolve through it): one index per package folder, each a project of its own (corpus.sh
    writes a pyproject.toml marker at each root; one index for all put torchvision's modules
    under timm's root, where none of its imports resolved)."""
    from gradlint.api import _extract, add_to_index, project_index
    from gradlint.config import Config

    indexes: dict[str, tuple] = {}
    facts = {}
    for path in files:
        pkg = path.relative_to(root).parts[0]
        if pkg not in indexes:
            indexes[pkg] = project_index([path], Config(root=str(root / pkg)), use_cache=False)
        index, proot = indexes[pkg]
        got = _extract(path, str(path))
        add_to_index(index, proot, path, got)
        facts[path] = (index, got)
    return facts


# reason -> Counter of the patterns of its nodes' details (--detail)
DETAILS: dict = collections.defaultdict(collections.Counter)


def _pattern(detail: str) -> str:
    """A detail without what names one class (argument lists, item places), so that
    `norm_layer(in_chs, **dd), item 0 of downsample: ...` counts as `norm_layer(...): ...`."""
    where, _, what = detail.rpartition(": ")
    code = re.sub(r"\(.*", "(...)", where.split(", item ")[0].split(", self.")[0])
    if code.startswith("item "):
        code = "(an item of a container filled by append/add_module: code not kept)"
    elif code.startswith("self."):
        code = "(code not kept)"
    return f"{code}: {what}" if code else what


def _statuses(networks, summaries):
    by_name = {n.name: n for n in networks}
    for s in summaries:
        if not s.is_module:
            continue
        net = by_name.get(s.name)
        if net is None:
            yield (s.name, "budget", ("interpretation budget exceeded",), False, ())
            continue
        if not net.forward_known:
            yield (s.name, "forward", (getattr(net, "note", "") or "forward not followed",), False, ())
            continue
        # Every forward path counts: a class is clean only when none of its paths is opaque.
        nodes = [n for p in net.paths for n in walk(p)]
        reasons = tuple(dict.fromkeys(n.what for n in nodes if isinstance(n, Opaque)))
        for r in reasons:
            # what each class's first such node says it was (unknown modules: which code built it)
            detail = next((n.detail for n in nodes if isinstance(n, Opaque) and n.what == r and n.detail), "")
            if detail:
                DETAILS[r][_pattern(detail)] += 1
        kinds = tuple(k for k, hit in (("attention", any(isinstance(n, Attention) for n in nodes)),
                                       ("gate", any(isinstance(n, Residual) and n.join == "mul" for n in nodes))) if hit)
        try:
            chain = bool(analyse(net).chains)
        except (ValueError, ArithmeticError, KeyError):
            chain = False
        yield (s.name, "opaque" if reasons else "clean", reasons, chain, kinds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=str(Path(__file__).parent / "corpus" / "src"))
    ap.add_argument("--packages", nargs="*", default=["timm", "torchvision"])
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--examples", action="store_true", help="print one class per reason")
    ap.add_argument("--inline", action="store_true", help="with the blocks of other files inlined (minutes)")
    ap.add_argument("--detail", nargs="*", default=["unknown module"], metavar="REASON",
                    help="reasons whose details (what the value was, which code built it) to break down")
    args = ap.parse_args()
    root = Path(args.root)
    files: list[Path] = []
    for pkg in args.packages:
        found = sorted((root / pkg).rglob("*.py"))
        if not found:
            sys.exit(f"coverage: no Python files under {root / pkg}")
        files.extend(found)
    t0 = time.perf_counter()
    project = _project(root, [p for p in files if b"Module" in p.read_bytes() or b"nn." in p.read_bytes()]) if args.inline else None
    total = clean = chained = 0
    kinds_seen: collections.Counter = collections.Counter()
    status: collections.Counter = collections.Counter()
    reasons: collections.Counter = collections.Counter()
    example: dict[str, str] = {}
    per_pkg: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for path in files:
        if b"Module" not in path.read_bytes() and b"nn." not in path.read_bytes():
            continue
        pkg = path.relative_to(root).parts[0]
        for name, st, why, chain, kinds in classify(path, project):
            total += 1
            status[st] += 1
            per_pkg[pkg][0] += 1
            if st == "clean":
                clean += 1
                per_pkg[pkg][1] += 1
            kinds_seen.update(kinds)
            if chain:
                chained += 1
                per_pkg[pkg][2] += 1
            for r in why:
                key = _GROUP.sub(lambda m: m.group(1) + " ", r)
                reasons[key] += 1
                example.setdefault(key, f"{path.relative_to(root)}:{name}")
    elapsed = time.perf_counter() - t0
    if not total:
        sys.exit("coverage: no nn.Module classes found")
    print(f"{len(files)} files, {total} nn.Module classes ({', '.join(args.packages)}), {elapsed:.1f} s")
    print(f"modelled with no opaque node: {clean}/{total} = {100 * clean / total:.1f}%")
    print(f"with an analysable chain:     {chained}/{total} = {100 * chained / total:.1f}%")
    print(f"with softmax attention:       {kinds_seen['attention']}/{total}, with a gate (product of branches): "
          f"{kinds_seen['gate']}/{total} (modelled without a gain: they end chains)")
    for pkg, (n, c, ch) in sorted(per_pkg.items()):
        print(f"  {pkg}: {n} classes, no opaque {100 * c / n:.1f}%, chain {100 * ch / n:.1f}%")
    print("status: " + ", ".join(f"{k} {v}" for k, v in status.most_common()))
    if args.inline:
        print("placeholders of other files' blocks (nodes, every path): "
              + ", ".join(f"{kind} {PLACEHOLDERS[('left', kind)]} left of {PLACEHOLDERS[('found', kind)]}"
                          for kind in ("class", "function")))
        named = [(k[1], v) for k, v in PLACEHOLDERS.most_common() if k[0] == "left-by-name"][:10]
        print("  most left: " + ", ".join(f"{name} {count}" for name, count in named))
    print("top opaque reasons (classes):")
    for reason, count in reasons.most_common(args.top):
        tail = f"   e.g. {example[reason]}" if args.examples else ""
        print(f"  {count:5d}  {reason}{tail}")
    for reason in args.detail:
        if DETAILS.get(reason):
            print(f"{reason!r} by what it was (classes):")
            for pattern, count in DETAILS[reason].most_common(args.top):
                print(f"  {count:5d}  {pattern}")


if __name__ == "__main__":
    main()
