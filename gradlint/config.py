"""[tool.gradlint] in pyproject.toml (or --config) -> a frozen, validated Config."""

from __future__ import annotations

import fnmatch
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI (a dependency there)
    import tomli as tomllib  # type: ignore[no-redef]
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from gradlint.findings import Severity
from gradlint.registry import get_rule, is_known_selector, load_rules, select_codes

DEFAULT_EXCLUDE = (
    ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", ".eggs", "__pycache__",
    "node_modules", "build", "dist", ".mypy_cache", ".pytest_cache", ".ruff_cache",
    "site-packages", ".gradlint_cache",
)

TOP_LEVEL_KEYS = (
    "select", "extend-select", "ignore", "per-file-ignores", "exclude", "extend-exclude",
    "fail-on", "respect-gitignore", "cache-dir",
)


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


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml with a [tool.gradlint] table, from start upwards."""
    start = start.resolve()
    for folder in [start, *start.parents] if start.is_dir() else [start.parent, *start.parent.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                # A broken pyproject that is ours to read is an error; one without our table
                # cannot be told apart, so report it: silence would hide the user's config.
                return candidate
            if "gradlint" in data.get("tool", {}):
                return candidate
    return None


def load_config(config_path: str | Path | None = None, start: str | Path = ".") -> Config:
    """Read the configuration: --config if given, else the nearest pyproject.toml with our table."""
    if config_path is not None:
        path = Path(config_path)
        if not path.is_file():
            raise ConfigError(f"{path}: configuration file not found")
    else:
        path = find_pyproject(Path(start))
        if path is None:
            return Config(root=str(Path(start).resolve() if Path(start).is_dir() else Path(start).resolve().parent))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    if path.name == "pyproject.toml" or "tool" in data:
        table = data.get("tool", {}).get("gradlint", {})
    else:
        # A standalone gradlint.toml holds the settings at top level.
        table = data
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.gradlint] must be a table")
    return parse_table(table, path)


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


def parse_table(table: Mapping[str, Any], path: Path) -> Config:
    src = str(path)
    cfg: dict[str, Any] = {"root": str(path.resolve().parent), "path": src}
    origins: dict[str, str] = {}
    rule_options: dict[str, dict[str, Any]] = {}
    for key, value in table.items():
        origins[key] = src
        if key == "select":
            cfg["select"] = _selectors(value, key, path)
        elif key == "extend-select":
            cfg["extend_select"] = _selectors(value, key, path)
        elif key == "ignore":
            cfg["ignore"] = _selectors(value, key, path)
        elif key == "exclude":
            cfg["exclude"] = _str_list(value, key, path)
        elif key == "extend-exclude":
            cfg["extend_exclude"] = _str_list(value, key, path)
        elif key == "per-file-ignores":
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: 'per-file-ignores' must be a table of pattern = [codes]")
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
            if not isinstance(value, str):
                raise ConfigError(f"{path}: 'cache-dir' must be a string, got {value!r}")
            cfg["cache_dir"] = value
        elif isinstance(value, dict) and get_rule(key) is not None:
            rule = get_rule(key)
            assert rule is not None
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
            raise ConfigError(f"{path}: unknown key '{key}' in [tool.gradlint]")
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
