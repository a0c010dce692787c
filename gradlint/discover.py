"""File discovery for api.check_paths: folders walked recursively, exclude patterns and .gitignore."""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from gradlint.config import DEFAULT_EXCLUDE, Config

SUFFIXES = (".py", ".ipynb", ".onnx")


@dataclass
class Discovered:
    files: list[tuple[Path, str]] = field(default_factory=list)  # (path, display path)
    missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool
    base: str  # folder of the .gitignore, relative to the walk's root, posix, '' for the root


def _glob_to_regex(glob: str) -> str:
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = glob.find("]", i + 1)
            if j == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = glob[i + 1 : j].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j + 1
        elif c == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def parse_gitignore(text: str, base: str) -> list[_Pattern]:
    patterns: list[_Pattern] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        if line.startswith("\\"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        line = line.lstrip("/")
        body = _glob_to_regex(line)
        regex = re.compile(("^" if anchored else "^(?:.*/)?") + body + "$")
        patterns.append(_Pattern(regex, negate, dir_only, base))
    return patterns


def _ignored(rel: str, is_dir: bool, patterns: list[_Pattern]) -> bool:
    verdict = False
    for p in patterns:
        if p.base:
            if not rel.startswith(p.base + "/"):
                continue
            sub = rel[len(p.base) + 1 :]
        else:
            sub = rel
        if p.dir_only and not is_dir:
            continue
        if p.regex.match(sub):
            verdict = not p.negate
    return verdict


def _excluded(path: Path, root: Path, patterns: tuple[str, ...]) -> bool:
    """ruff-style exclude: a pattern matches a path component's name or the path from the root."""
    name = path.name
    try:
        rel = path.resolve().relative_to(root).as_posix()
    except ValueError:
        rel = path.as_posix()
    for pattern in patterns:
        p = pattern.rstrip("/")
        if fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, p + "/*"):
            return True
    return False


def _display(path: Path) -> str:
    try:
        rel = os.path.relpath(path, Path.cwd())
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def discover(paths: list[Path], config: Config) -> Discovered:
    found = Discovered()
    root = Path(config.root).resolve()
    user_excludes = tuple(config.extend_exclude) + tuple(p for p in config.exclude if p not in DEFAULT_EXCLUDE)
    all_excludes = tuple(config.exclude) + tuple(config.extend_exclude)
    seen: set[Path] = set()
    for given in paths:
        if not given.exists() and not given.is_symlink():
            found.missing.append(str(given))
            continue
        if given.is_file():
            # A file named on the command line is checked even if its suffix is unusual (pre-commit
            # passes exactly what it wants checked) unless the user's own excludes say otherwise.
            if _excluded(given, root, user_excludes):
                continue
            resolved = given.resolve()
            if resolved not in seen:
                seen.add(resolved)
                found.files.append((given, _display(given)))
            continue
        found.files.extend(_walk(given, root, all_excludes, config.respect_gitignore, seen))
    return found


def _repo_root(folder: Path) -> Path:
    for parent in [folder, *folder.parents]:
        if (parent / ".git").exists():
            return parent
    return folder


def _walk(top: Path, root: Path, excludes: tuple[str, ...], gitignore: bool, seen: set[Path]) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    top_resolved = top.resolve()
    # Paths are matched relative to the repository root, so that .gitignore files above the
    # folder we were given (anchored patterns included) apply exactly as git applies them.
    base_root = _repo_root(top_resolved) if gitignore else top_resolved
    patterns: list[_Pattern] = []
    if gitignore:
        for parent in reversed(top_resolved.parents):
            if parent == base_root or base_root in parent.parents:
                gi = parent / ".gitignore"
                if gi.is_file():
                    patterns.extend(_load(gi, _rel(parent, base_root)))
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        current = Path(dirpath)
        rel_dir = _rel(current.resolve(), base_root)
        if gitignore and (current / ".gitignore").is_file():
            patterns = patterns + _load(current / ".gitignore", rel_dir)
        keep = []
        for d in sorted(dirnames):
            sub = current / d
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if _excluded(sub, root, excludes) or (gitignore and _ignored(rel, True, patterns)):
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if not name.endswith(SUFFIXES):
                continue
            path = current / name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if _excluded(path, root, excludes) or (gitignore and _ignored(rel, False, patterns)):
                continue
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            out.append((path, _display(path)))
    return out


def _rel(folder: Path, base: Path) -> str:
    rel = folder.relative_to(base).as_posix() if folder != base else ""
    return "" if rel == "." else rel


def _load(path: Path, base: str) -> list[_Pattern]:
    try:
        return parse_gitignore(path.read_text(encoding="utf-8", errors="replace"), base)
    except OSError:
        return []
