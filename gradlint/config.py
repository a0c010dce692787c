"""[tool.gradlint] in pyproject.toml (or --config) -> a frozen, validated Config."""

from __future__ import annotations

import fnmatch
import os

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI (a dependency there)
    import tomli as tomllib  # type: ignore[no-redef]
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from gradlint.findings import Severity
from gradlint.inputs import Refused, kind_of, read_bounded
from gradlint.registry import get_rule, is_known_selector, load_rules, select_codes

DEFAULT_EXCLUDE = (
    ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", ".eggs", "__pycache__",
    "node_modules", "build", "dist", ".mypy_cache", ".pytest_cache", ".ruff_cache",
    "site-packages", ".gradlint_cache",
)

TOP_LEVEL_KEYS = (
    "select", "extend-select", "ignore", "per-file-ignores", "exclude", "extend-exclude",
    "fail-on", "respect-gitignore", "cache-dir", "max-file-size", "read-libraries", "library-paths",
)
# A configuration file is text a person wrote; one larger than this is refused unread (pyproject
# files of large projects are tens of KiB).
MAX_CONFIG_SIZE = 16 << 20
# Source files larger than this are reported (GL001) and never read: 7x the largest module of
# transformers, timm or torchvision, far below what makes a parse take minutes.
DEFAULT_MAX_FILE_SIZE = 2 << 20


class ConfigError(Exception):
    """A configuration problem; the message names the file and the key."""


@dataclass(frozen=True)
class Config:
    select: tuple[str, ...] | None = None
    extend_select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    per_file_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    extend_exclude: tuple[str, ...] = ()
    fail_on: Severity = Severity.INFO
    respect_gitignore: bool = True
    cache_dir: str = ".gradlint_cache"
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    # Installed libraries' sources read (never imported) to model the blocks a network uses;
    # library_paths: folders searched first, absolute (written relative to the config file).
    read_libraries: bool = True
    library_paths: tuple[str, ...] = ()
    # rule code -> ((option, value), ...), only the options the user set
    rule_options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    root: str = "."
    path: str | None = None
    # setting -> where its value came from ("default", "pyproject.toml", "--select"...)
    origins: tuple[tuple[str, str], ...] = ()

    def enabled_codes(self) -> frozenset[str]:
        return select_codes(self.select, self.extend_select, self.ignore)

    def options_for(self, code: str) -> dict[str, Any]:
        rule = load_rules()[code]
        values = {k: opt.default for k, opt in rule.options.items()}
        for c, opts in self.rule_options:
            if c == code:
                values.update(dict(opts))
        return values

    def ignored_codes_for(self, relpath: str) -> tuple[str, ...]:
        """Selectors ignored for one file by per-file-ignores (patterns relative to the root)."""
        out: list[str] = []
        name = relpath.rsplit("/", 1)[-1]
        for pattern, codes in self.per_file_ignores:
            if fnmatch.fnmatch(relpath, pattern) or fnmatch.fnmatch(name, pattern) or (
                pattern.endswith("/") and relpath.startswith(pattern)
            ):
                out.extend(codes)
        return tuple(out)

    def origin(self, key: str) -> str:
        return dict(self.origins).get(key, "default")


def holds_config(candidate: Path) -> bool:
    """Whether a pyproject.toml is gradlint's configuration: it has a [tool.gradlint] table, or it
    names gradlint and cannot be read as TOML (a broken configuration of ours is an error:
    silence would hide the user's settings). A broken pyproject that never names gradlint (a
    test fixture, another tool's typo) is not ours, and a file that names no `gradlint` is not
    parsed at all. One that is there but cannot be read at all (a folder, a FIFO, a broken link,
    no permission) may hold our settings, and is ours too: load_config says why it is broken."""
    if not os.path.lexists(candidate):
        return False
    try:
        data = read_config_bytes(candidate)
    except ConfigError:
        return True
    if b"gradlint" not in data:
        return False
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True
    tool = table.get("tool", {})
    return not isinstance(tool, dict) or "gradlint" in tool


def read_config_bytes(path: Path) -> bytes:
    """The bytes of a configuration file; ConfigError naming it and why when it cannot be read.
    A FIFO, device or folder is refused by os.stat before any open (a FIFO named pyproject.toml
    blocked `open` forever), and a file is read at most MAX_CONFIG_SIZE + 1 bytes."""
    try:
        return read_bounded(path, MAX_CONFIG_SIZE, "16 MiB for a configuration file")
    except Refused as exc:
        raise ConfigError(f"{path}: cannot read: {_why_unread(path, exc)}") from None


def _why_unread(path: Path, exc: Refused) -> str:
    """Refused's words, a broken link named with where it points (its words only guess a link)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        try:
            return f"a broken symbolic link (to {os.readlink(path)!r})"
        except OSError:
            pass  # (not a link, or replaced meanwhile: the words of the failed read stand)
    except OSError:
        pass
    return str(exc)


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml with a [tool.gradlint] table, from start upwards (or one that
    cannot be read, which may hold one: loading it is the error that names it)."""
    # (realpath, not resolve: a path in a link loop is the run's to report, not a RuntimeError)
    start = Path(os.path.realpath(start))
    try:
        is_dir = start.is_dir()
    except OSError:
        is_dir = False
    for folder in [start, *start.parents] if is_dir else [start.parent, *start.parent.parents]:
        candidate = folder / "pyproject.toml"
        if holds_config(candidate):
            return candidate
    return None


def rebase_pattern(pattern: str, anchor: str, root: str) -> str | None:
    """An exclude pattern of the command line, written from the folder `anchor`, as seen from a
    project rooted at `root` (None: it names a place outside that project). A name pattern
    (no '/') matches anywhere and stays as it is; a path pattern is moved lexically, and one
    whose leading globs cannot be moved stays as written."""
    if "/" not in pattern.rstrip("/") or os.path.normpath(anchor) == os.path.normpath(root):
        return pattern
    rel = os.path.relpath(os.path.normpath(os.path.join(anchor, pattern)), root)
    if rel != "." and not rel.startswith(".."):
        return Path(rel).as_posix() + ("/" if pattern.endswith("/") else "")
    return pattern if any(c in pattern for c in "*?[") else None


def load_config(config_path: str | Path | None = None, start: str | Path = ".") -> Config:
    """Read the configuration: --config if given, else the nearest pyproject.toml with our table."""
    if config_path is not None:
        path = Path(config_path)
        if not os.path.lexists(path):
            raise ConfigError(f"{path}: configuration file not found")
        # (anything else there, a folder, /dev/null or a broken link, is named by what it is)
    else:
        path = find_pyproject(Path(start))
        if path is None:
            return Config(root=str(Path(start).resolve() if Path(start).is_dir() else Path(start).resolve().parent))
    raw = read_config_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    if path.name == "pyproject.toml" or "tool" in data:
        tool = data.get("tool", {})
        if not isinstance(tool, dict):
            raise ConfigError(f"{path}: 'tool' must be a table ([tool.gradlint] holds gradlint's settings), "
                              f"got {type(tool).__name__}")
        table = tool.get("gradlint", {})
        where = "[tool.gradlint]"
    else:
        # A standalone gradlint.toml holds the settings at top level.
        table, where = data, "the file's top level (a standalone configuration)"
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.gradlint] must be a table")
    return parse_table(table, path, where)


def _str_list(value: Any, key: str, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: '{key}' must be a list of strings, got {value!r}")
    return tuple(value)


def normalise_selector(item: str) -> str | None:
    """A selector as the registry matches it: a code or prefix (GL1, GL101, ALL) upper-cased, or a
    rule's kebab-case name (vanishing-gradient) turned into its code; None when unknown."""
    item = item.strip()
    if is_known_selector(item):
        return item.upper()
    rule = get_rule(item) if "-" in item else None
    return rule.code if rule is not None else None


def check_ignorable(selector: str) -> None:
    """GL0xx (the file cannot be read at all) are always on: an `ignore` that would only name
    them would be accepted and do nothing, so it is refused. per-file-ignores can still silence
    them for files the user chooses, and `exclude` keeps a file out of the run."""
    matched = [r for c, r in load_rules().items() if selector == "ALL" or c.startswith(selector)]
    if matched and all(r.always_on for r in matched):
        names = ", ".join(r.code for r in matched)
        raise ConfigError(
            f"{selector} cannot be ignored: {names} {'is' if len(matched) == 1 else 'are'} always on "
            "(a file gradlint cannot read is never clean); use per-file-ignores or exclude for such files"
        )


def pattern_problem(pattern: str) -> str | None:
    """Why an exclude or per-file-ignores glob cannot mean what it says, or None. fnmatch accepts
    every string, so a mistake was silent: an empty pattern matches no path, and a range written
    backwards ([z-a]) no character (fnmatch drops it; in [!z-a] it then matches any). The
    brackets are read as fnmatch reads them: an unclosed '[' is a literal, a ']' first in a
    bracket is a member, and a '-' after its first member joins its neighbours into a range."""
    if not pattern:
        return "an empty pattern matches no path"
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c != "[":
            continue
        j = i
        if j < n and pattern[j] == "!":
            j += 1
        if j < n and pattern[j] == "]":
            j += 1
        while j < n and pattern[j] != "]":
            j += 1
        if j >= n:
            continue  # an unclosed '[': a literal
        body, i = pattern[i:j], j + 1
        chunks, start, k = [], 0, 2 if body.startswith("!") else 1
        while (k := body.find("-", k)) >= 0:
            chunks.append(body[start:k])
            start, k = k + 1, k + 3
        if body[start:]:
            chunks.append(body[start:])
        else:
            chunks[-1] += "-"  # (a '-' last in the bracket is a member)
        for low, high in zip(chunks, chunks[1:]):
            if low[-1] > high[0]:
                return f"the range {low[-1]}-{high[0]} is written backwards: it holds no character"
    return None


def check_patterns(patterns: Iterable[str], where: str) -> None:
    """ConfigError naming `where` (a file and key, or a flag) and the first glob that can never
    match (pattern_problem)."""
    for pattern in patterns:
        if (problem := pattern_problem(pattern)) is not None:
            raise ConfigError(f"{where}: pattern {pattern!r}: {problem}")


def _patterns(value: Any, key: str, path: Path) -> tuple[str, ...]:
    """exclude and extend-exclude: a list of globs, each one that can match."""
    patterns = _str_list(value, key, path)
    check_patterns(patterns, f"{path}: '{key}'")
    return patterns


def _selectors(value: Any, key: str, path: Path) -> tuple[str, ...]:
    items = _str_list(value, key, path)
    out = []
    for item in items:
        code = normalise_selector(item)
        if code is None:
            raise ConfigError(f"{path}: '{key}' names unknown rule code {item!r}")
        if key == "ignore":
            try:
                check_ignorable(code)
            except ConfigError as exc:
                raise ConfigError(f"{path}: 'ignore': {exc}") from None
        out.append(code)
    return tuple(out)


def _cache_dir(value: Any, path: Path) -> str:
    """A folder below the project root: the cache is written nowhere else."""
    if not isinstance(value, str):
        raise ConfigError(f"{path}: 'cache-dir' must be a string, got {value!r}")
    if any(ord(c) < 32 for c in value):
        raise ConfigError(f"{path}: 'cache-dir' must not hold control characters, got {value!r}")
    parts = value.replace("\\", "/").split("/")
    if Path(value).is_absolute() or value.startswith(("/", "\\")) or (len(value) > 1 and value[1] == ":"):
        raise ConfigError(f"{path}: 'cache-dir' must be a folder relative to the project root, got an absolute path {value!r}")
    if ".." in parts:
        raise ConfigError(f"{path}: 'cache-dir' must stay inside the project root, got {value!r} ('..')")
    clean = [p for p in parts if p not in ("", ".")]
    if not clean:
        raise ConfigError(f"{path}: 'cache-dir' must name a folder below the project root, got {value!r}")
    return "/".join(clean)


def _library_paths(value: Any, path: Path) -> tuple[str, ...]:
    """Folders to look for installed libraries in, relative to the configuration file's folder
    (or absolute). A folder that does not exist is kept and simply holds nothing: the same file
    serves machines where a virtual environment is and is not there (a run warns of it:
    config_warnings)."""
    items = _str_list(value, "library-paths", path)
    out: list[str] = []
    for item in items:
        if not item.strip() or "\0" in item:
            raise ConfigError(f"{path}: 'library-paths' entries must be folder paths, got {item!r}")
        folder = Path(item).expanduser()
        if not folder.is_absolute():
            folder = path.resolve().parent / folder
        out.append(str(folder))
    return tuple(out)


def config_warnings(config: Config) -> list[str]:
    """What a run says of its settings without stopping: a `library-paths` folder that is not
    there. It is no error (one file serves machines where a virtual environment is and is not
    there yet), but a folder the user named that gives nothing was silent; each run that reads
    libraries says so, naming the file and the folder."""
    if not config.read_libraries:
        return []
    out = []
    for folder in config.library_paths:
        try:
            st = os.stat(folder)
        except FileNotFoundError:
            why = "is a broken symbolic link" if os.path.islink(folder) else "does not exist"
        except OSError as exc:
            why = f"cannot be read ({exc.strerror or exc})"
        else:
            what = kind_of(st.st_mode)
            if what == "a directory":
                continue
            why = f"is not a folder ({what or 'a regular file'})"
        out.append(f"{config.origin('library-paths')}: 'library-paths': {folder} {why}; no library is read from it")
    return out


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}


def _size(value: Any, key: str, path: Path) -> int:
    """Bytes, as an integer or a string with a binary unit: 2097152, "2MB", "512 KiB"."""
    import re

    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", value)) \
            and m.group(2).lower() in _UNITS:
        size = int(m.group(1)) * _UNITS[m.group(2).lower()]
    else:
        raise ConfigError(f"{path}: '{key}' must be a size in bytes (2097152) or with a unit (\"2MB\"), got {value!r}")
    if size <= 0:
        raise ConfigError(f"{path}: '{key}' must be positive, got {value!r}")
    return size


def parse_table(table: Mapping[str, Any], path: Path, where: str = "[tool.gradlint]") -> Config:
    src = str(path)
    cfg: dict[str, Any] = {"root": str(path.resolve().parent), "path": src}
    origins: dict[str, str] = {}
    rule_options: dict[str, dict[str, Any]] = {}
    rule_keys: dict[str, str] = {}  # rule code -> the key its options were read from
    for key, value in table.items():
        origins[key] = src
        if key == "select":
            cfg["select"] = _selectors(value, key, path)
        elif key == "extend-select":
            cfg["extend_select"] = _selectors(value, key, path)
        elif key == "ignore":
            cfg["ignore"] = _selectors(value, key, path)
        elif key == "exclude":
            cfg["exclude"] = _patterns(value, key, path)
        elif key == "extend-exclude":
            cfg["extend_exclude"] = _patterns(value, key, path)
        elif key == "per-file-ignores":
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: 'per-file-ignores' must be a table of pattern = [codes]")
            check_patterns(value, f"{path}: 'per-file-ignores'")
            cfg["per_file_ignores"] = tuple(
                (pattern, _selectors(codes, f"per-file-ignores.{pattern}", path)) for pattern, codes in value.items()
            )
        elif key == "fail-on":
            try:
                cfg["fail_on"] = Severity.parse(value) if isinstance(value, str) else Severity.parse(repr(value))
            except ValueError as exc:
                raise ConfigError(f"{path}: 'fail-on': {exc}") from None
        elif key == "respect-gitignore":
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: 'respect-gitignore' must be true or false, got {value!r}")
            cfg["respect_gitignore"] = value
        elif key == "cache-dir":
            cfg["cache_dir"] = _cache_dir(value, path)
        elif key == "max-file-size":
            cfg["max_file_size"] = _size(value, key, path)
        elif key == "read-libraries":
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: 'read-libraries' must be true or false, got {value!r}")
            cfg["read_libraries"] = value
        elif key == "library-paths":
            cfg["library_paths"] = _library_paths(value, path)
        elif (rule := get_rule(key)) is not None:
            if not isinstance(value, dict):
                header = f"[tool.gradlint.{key}]" if where == "[tool.gradlint]" else f"[{key}]"
                raise ConfigError(f"{path}: '{key}' must be a table of {rule.code} {rule.name}'s options "
                                  f"({header}), got {value!r}")
            # One table per rule: by code and by name ([GL101] and [vanishing-gradient], or
            # [GL101] and [gl101]) the second silently overrode the first's options.
            if rule.code in rule_keys:
                raise ConfigError(f"{path}: '{rule_keys[rule.code]}' and '{key}' both hold the options of "
                                  f"{rule.code} {rule.name}: keep one table")
            rule_keys[rule.code] = key
            opts = rule_options.setdefault(rule.code, {})
            for opt_key, opt_value in value.items():
                option = rule.options.get(opt_key)
                if option is None:
                    known = ", ".join(rule.options) or "none"
                    raise ConfigError(
                        f"{path}: unknown option '{key}.{opt_key}' ({rule.code} {rule.name} takes: {known})"
                    )
                try:
                    opts[opt_key] = option.convert(opt_value)
                except ValueError as exc:
                    raise ConfigError(f"{path}: '{key}.{opt_key}': {exc}") from None
                origins[f"{rule.code}.{opt_key}"] = src
        else:
            raise ConfigError(f"{path}: unknown key '{key}' in {where}")
    if cfg.get("library_paths") and cfg.get("read_libraries") is False:
        raise ConfigError(f"{path}: 'library-paths' is set but 'read-libraries' is false: remove one")
    cfg["rule_options"] = tuple((c, tuple(sorted(o.items()))) for c, o in sorted(rule_options.items()))
    cfg["origins"] = tuple(sorted(origins.items()))
    return Config(**cfg)


def with_overrides(config: Config, **overrides: Any) -> Config:
    """Apply command-line settings on top of the file's; each records '--flag' as its origin."""
    origins = dict(config.origins)
    changes: dict[str, Any] = {}
    for key, (value, flag) in overrides.items():
        if value is None:
            continue
        changes[key] = value
        origins[key.replace("_", "-")] = flag
    changes["origins"] = tuple(sorted(origins.items()))
    return replace(config, **changes)


def parse_selector_option(values: tuple[str, ...], flag: str) -> tuple[str, ...]:
    """--select GL1,GL201,log-of-probability and repeated flags alike; unknown codes raise ConfigError."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            code = normalise_selector(part)
            if code is None:
                raise ConfigError(f"{flag}: unknown rule code {part!r}")
            if flag == "--ignore":
                try:
                    check_ignorable(code)
                except ConfigError as exc:
                    raise ConfigError(f"--ignore: {exc}") from None
            out.append(code)
    return tuple(out)
