"""File discovery for api.check_paths: folders walked recursively, exclude patterns and .gitignore.

Nothing is opened here but .gitignore files: every candidate is os.stat'ed, and what is not a
regular file (a FIFO, a device, a socket, a broken link, a link loop) is never handed on. Met in
a folder walk, such a path is skipped with its reason; named on the command line, it is an
error. A folder that cannot be read is an error naming it; the rest of the run goes on.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gradlint.config import DEFAULT_EXCLUDE, Config, holds_config
from gradlint.inputs import Refused, describe_error, kind_of, read_bounded

SUFFIXES = (".py", ".ipynb", ".onnx")
# A .gitignore is text a person wrote; anything larger is not one we read.
MAX_GITIGNORE_BYTES = 1 << 20


@dataclass
class Discovered:
    files: list[tuple[Path, str]] = field(default_factory=list)  # (path, display path)
    missing: list[str] = field(default_factory=list)
    # (display path, reason, is_error): paths not checked; errors end the run with exit 2
    refused: list[tuple[str, str, bool]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Folders below a walked one that hold their own configuration (split_projects): not walked,
    # each is checked in a run of its own, with its own settings.
    projects: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class _Pattern:
    pattern: object  # a pathspec GitWildMatchPattern
    base: str  # folder of the .gitignore, relative to the walk's root, posix, '' for the root


# git's wildmatch (and POSIX) bracket classes; pathspec passes a bracket's body to `re`, which
# knows none of them, so they are spelled out as ranges first. No range starts with '!' or '^'
# (a negation), none names a backslash (pathspec escapes those) or '/' (pathspec splits on it;
# a bracket never matches '/' in git either).
_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z",
    "xdigit": "0-9A-Fa-f", "space": " \t\n\r\f\v", "blank": " \t", "punct": "{-~\"-.:-@[-`!",
    "cntrl": "\x00-\x1f\x7f", "print": " -.0-~", "graph": "0-~\"-.!",
}


class BadPattern(ValueError):
    pass


def _expand_classes(line: str) -> str:
    """Replace `[:alpha:]` and friends inside bracket expressions by their ranges."""
    if "[:" not in line:
        return line
    out, i, n = [], 0, len(line)
    while i < n:
        c = line[i]
        if c == "\\" and i + 1 < n:
            out.append(line[i:i + 2])
            i += 2
            continue
        if c != "[":
            out.append(c)
            i += 1
            continue
        j = i + 1
        body = ["["]
        if j < n and line[j] in "!^":
            body.append(line[j])
            j += 1
        if j < n and line[j] == "]":
            body.append("]")
            j += 1
        closed = False
        while j < n:
            if line.startswith("[:", j):
                end = line.find(":]", j + 2)
                if end == -1:
                    raise BadPattern("unterminated character class")
                name = line[j + 2:end]
                if name not in _CLASSES:
                    raise BadPattern(f"unknown character class [:{name}:]")
                body.append(_CLASSES[name])
                j = end + 2
            elif line[j] == "]":
                body.append("]")
                j += 1
                closed = True
                break
            else:
                body.append(line[j])
                j += 1
        if not closed:
            out.append(line[i])  # an unclosed bracket is a literal '[', as in git
            i += 1
            continue
        out.append("".join(body))
        i = j
    return "".join(out)


MAX_STARS = 8  # `*` wildcards in one segment of a .gitignore pattern (real ones: a few)


def compile_pattern(line: str):
    """One .gitignore line as pathspec's gitwildmatch pattern; None for blanks and comments.
    Raises BadPattern for what git treats as a pattern that matches nothing ([z-a])."""
    from pathspec.patterns.gitwildmatch import GitWildMatchPattern

    if any(segment.replace("**", "").count("*") > MAX_STARS for segment in line.split("/")):
        # each `*` of a segment is a `.*` of pathspec's regular expression, which backtracks:
        # `*a*a*a*a*a*a*a*a*a*a*a*a*b` against a name of forty a's never ended (git's own
        # matcher takes over a minute on it)
        raise BadPattern(f"more than {MAX_STARS} wildcards in one path segment: matching it could take minutes")
    with warnings.catch_warnings():
        # pathspec >= 1.0 prefers its 'gitignore' flavour (not in 0.12) and `re` warns of
        # possible nested sets in '[[' brackets: neither is the user's business.
        warnings.simplefilter("ignore")
        try:
            pattern = GitWildMatchPattern(_expand_classes(line))
        except re.error as exc:
            # (its message without the position: that is a place in the regular expression
            # pathspec made of the line, not in the line)
            raise BadPattern(exc.msg) from None
        except ValueError as exc:
            raise BadPattern(str(exc)) from None
    return pattern if pattern.include is not None else None


def parse_gitignore(text: str, base: str, source: str = ".gitignore",
                    problems: list[str] | None = None) -> list[_Pattern]:
    patterns: list[_Pattern] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        try:
            compiled = compile_pattern(raw)
        except BadPattern as exc:
            if problems is not None:
                problems.append(f"{source}:{number}: ignoring invalid pattern {raw.strip()!r} ({exc})")
            continue
        if compiled is not None:
            patterns.append(_Pattern(compiled, base))
    return patterns


def _ignored(rel: str, is_dir: bool, patterns: list[_Pattern]) -> bool:
    """git's verdict: the last pattern that matches decides (a deeper .gitignore comes later)."""
    verdict = False
    for p in patterns:
        if p.base:
            if not rel.startswith(p.base + "/"):
                continue
            sub = rel[len(p.base) + 1:]
        else:
            sub = rel
        if p.pattern.match_file(sub + "/" if is_dir else sub) is not None:
            verdict = bool(p.pattern.include)
    return verdict


def _excluded(rel: str, name: str, patterns: tuple[str, ...]) -> bool:
    """ruff-style exclude: a pattern matches a path component's name or the path from the root."""
    names, paths = _exclude_regexes(patterns)
    return bool(names.match(name) or paths.match(rel))


@functools.lru_cache(maxsize=16)
def _exclude_regexes(patterns: tuple[str, ...]) -> tuple[re.Pattern, re.Pattern]:
    """The exclude patterns as two regexes (fnmatch's translation, all patterns in one): for a
    name, and for a path (the pattern itself or anything below it). One match per path instead of
    three fnmatch calls per pattern: listing a project of 6 000 files took 0.6 s."""
    stripped = [p.rstrip("/") for p in patterns]
    if not stripped:
        never = re.compile(r"(?!)")
        return never, never
    names = "|".join(fnmatch.translate(p) for p in stripped)
    paths = "|".join(fnmatch.translate(q) for p in stripped for q in (p, p + "/*"))
    return re.compile(names), re.compile(paths)


def _rel_to(path: Path, root: Path) -> str:
    """Path from the root, links resolved in the folders only (a file link may loop)."""
    parent = Path(os.path.realpath(path.parent if path.name else path))
    full = parent / path.name if path.name else parent
    try:
        return full.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def display_path(path: Path, cwd: str | None = None) -> str:
    """How a file is named in findings and in its cache key: relative to the working folder
    (`cwd`: it, when the caller has asked for it already)."""
    try:
        rel = os.path.relpath(path, cwd if cwd is not None else os.getcwd())
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _folder_shown(folder: str, cwd: str) -> str | None:
    """The folder relative to the working folder, as display_path computes it for the files in
    it; None when it cannot be (another drive)."""
    try:
        return os.path.relpath(folder, cwd)
    except ValueError:
        return None


def _shown_in(folder_rel: str | None, path: Path, name: str) -> str:
    """display_path(path) of the file `name` of a folder whose relpath is `folder_rel`: relpath is
    lexical, and a file's is its folder's followed by its name (a file is never an ancestor of
    the working folder). One relpath per folder, not one per file (they were a third of a walk)."""
    if folder_rel is None:
        return str(path)
    rel = name if folder_rel == "." else folder_rel + os.sep + name
    return str(path) if rel.startswith("..") else rel


def discover(paths: list[Path], config: Config, *, split_projects: bool = False) -> Discovered:
    """The files under paths that config lets through. With split_projects, a folder met in a walk
    whose pyproject.toml holds its own [tool.gradlint] is left out and listed in .projects."""
    found = Discovered()
    root = Path(config.root).resolve()
    user_excludes = _user_excludes(config)
    all_excludes = tuple(config.exclude) + tuple(config.extend_exclude)
    # each file found, by device and inode: its place in found.files (-1: named on the command
    # line, kept as named)
    seen: dict[tuple[int, int], int] = {}
    # the working folder, asked for once per discovery (not once per file: a listing of the project
    # for a word scan named 5 000 files) and only when a name is needed
    cwd = functools.cache(os.getcwd)
    for given in paths:
        try:
            st = os.stat(given)
        except FileNotFoundError:
            if os.path.lexists(given):
                found.refused.append((str(given), "broken symbolic link", True))
            else:
                found.missing.append(str(given))
            continue
        except OSError as exc:
            found.refused.append((str(given), describe_error(exc), True))
            continue
        if stat.S_ISDIR(st.st_mode):
            _walk(given, root, all_excludes, config.respect_gitignore, seen, found, cwd, split_projects)
            continue
        # A file named on the command line is checked even if its suffix is unusual (pre-commit
        # passes exactly what it wants checked) unless the user's own excludes say otherwise.
        if _excluded(_rel_to(given, root), given.name, user_excludes):
            continue
        what = kind_of(st.st_mode)
        if what:
            found.refused.append((display_path(given, cwd()), f"not a regular file ({what}); it was not opened", True))
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen[(st.st_dev, st.st_ino)] = -1
            found.files.append((given, display_path(given, cwd())))
    return found


def _user_excludes(config: Config) -> tuple[str, ...]:
    """The excludes the user wrote (not the defaults): those that apply to a path named on the
    command line."""
    return tuple(config.extend_exclude) + tuple(p for p in config.exclude if p not in DEFAULT_EXCLUDE)


def excluded_within(path: Path, config: Config) -> bool:
    """Whether config's own excludes leave out path, or a folder above it inside config's root: a
    path named on the command line inside a project nested in config's project, which a walk of
    config's project would not have entered."""
    try:
        rel = Path(os.path.realpath(path)).relative_to(Path(config.root).resolve())
    except ValueError:
        return False
    patterns = _user_excludes(config)
    parts = rel.parts
    return any(_excluded("/".join(parts[:i]), parts[i - 1], patterns) for i in range(1, len(parts) + 1))


def _repo_root(folder: Path) -> Path:
    for parent in [folder, *folder.parents]:
        try:
            if os.path.lexists(parent / ".git"):
                return parent
        except OSError:
            continue
    return folder


def _walk(top: Path, root: Path, excludes: tuple[str, ...], gitignore: bool, seen: dict[tuple[int, int], int],
          found: Discovered, cwd: Callable[[], str], split_projects: bool = False) -> None:
    top_resolved = top.resolve()
    # Paths are matched relative to the repository root, so that .gitignore files above the
    # folder we were given (anchored patterns included) apply exactly as git applies them.
    base_root = _repo_root(top_resolved) if gitignore else top_resolved
    patterns: list[_Pattern] = []
    if gitignore:
        for parent in reversed(top_resolved.parents):
            if parent == base_root or base_root in parent.parents:
                patterns.extend(_load(parent, _rel(parent, base_root), found))

    def unreadable(exc: OSError) -> None:
        where = display_path(Path(exc.filename)) if exc.filename else display_path(top)
        found.refused.append((where, f"cannot read folder: {describe_error(exc)}", True))

    # A folder the walk enters is a real one (links are not followed) inside a folder already
    # resolved: its real path is that folder's and its name, without the lstat of every
    # component that realpath makes (8 500 of them for the corpus' 850 folders).
    resolved_in: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(top, onerror=unreadable, followlinks=False):
        current = Path(dirpath)
        shown: list[str | None] = []  # the folder from the working folder, at its first file
        resolved = resolved_in.pop(dirpath, None) or os.path.realpath(dirpath)
        resolved_dir = Path(resolved)
        rel_dir = _rel(resolved_dir, base_root)
        # Excludes match paths from the project root: one realpath per folder, none per file.
        try:
            from_root = resolved_dir.relative_to(root).as_posix()
        except ValueError:
            from_root = resolved_dir.as_posix()
        from_root = "" if from_root == "." else from_root + "/"
        if gitignore:
            patterns = patterns + _load(current, rel_dir, found)
        keep = []
        for d in sorted(dirnames):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if _excluded(from_root + d, d, excludes) or (gitignore and _ignored(rel, True, patterns)):
                continue
            # (a linked folder is never walked, project or not: os.walk does not follow it)
            if split_projects and not os.path.islink(current / d) and holds_config(current / d / "pyproject.toml"):
                found.projects.append(current / d)
                continue
            keep.append(d)
            resolved_in[os.path.join(dirpath, d)] = os.path.join(resolved, d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if not name.endswith(SUFFIXES):
                continue
            path = current / name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if _excluded(from_root + name, name, excludes) or (gitignore and _ignored(rel, False, patterns)):
                continue
            try:
                st = os.stat(path)
            except OSError as exc:
                reason = "broken symbolic link" if isinstance(exc, FileNotFoundError) else describe_error(exc)
                found.refused.append((display_path(path, cwd()), reason, False))
                continue
            what = kind_of(st.st_mode)
            if what:
                if not stat.S_ISDIR(st.st_mode):
                    found.refused.append((display_path(path, cwd()), f"not a regular file ({what}); it was not opened", False))
                continue
            at = seen.get((st.st_dev, st.st_ino))
            if at is not None:
                # The same file twice (a link beside its target): the file itself is the one
                # reported and fixed, not the link that sorts first (link.py -> train.py).
                if at >= 0 and os.path.islink(found.files[at][0]) and not os.path.islink(path):
                    if not shown:
                        shown.append(_folder_shown(dirpath, cwd()))
                    found.files[at] = (path, _shown_in(shown[0], path, name))
                continue
            seen[(st.st_dev, st.st_ino)] = len(found.files)
            if not shown:
                shown.append(_folder_shown(dirpath, cwd()))
            found.files.append((path, _shown_in(shown[0], path, name)))


def _rel(folder: Path, base: Path) -> str:
    try:
        rel = folder.relative_to(base).as_posix() if folder != base else ""
    except ValueError:
        return ""
    return "" if rel == "." else rel


def _load(folder: Path, base: str, found: Discovered) -> list[_Pattern]:
    """The patterns of folder/.gitignore. Like git, a symbolic link is not followed; a file that
    is not a regular one is never opened; a bad line is skipped with a warning naming it."""
    path = folder / ".gitignore"
    try:
        st = os.lstat(path)
    except OSError:
        return []
    display = display_path(path)
    if stat.S_ISLNK(st.st_mode):
        found.warnings.append(f"{display}: not read: a symbolic link (git does not follow it either)")
        return []
    if not stat.S_ISREG(st.st_mode):
        found.warnings.append(f"{display}: not read: not a regular file ({kind_of(st.st_mode)})")
        return []
    try:
        text = read_bounded(path, MAX_GITIGNORE_BYTES, "1 MiB for a .gitignore").decode("utf-8", errors="replace")
    except Refused as exc:
        found.warnings.append(f"{display}: not read: {exc}")
        return []
    return parse_gitignore(text, base, display, found.warnings)
