"""check_paths(paths, config) -> RunResult: discovery, per-file facts (pooled, cached), the project
index, the enabled rules of each file, suppressions. No printing."""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Iterable

from gradlint import __version__, suppress
from gradlint.config import Config
from gradlint.discover import discover, display_path
from gradlint.facts.files import FileFacts
from gradlint.facts.project import ProjectIndex
from gradlint.findings import FileResult, Finding, RunResult, Severity, SourceSpan
from gradlint.registry import Rule, RuleContext, load_rules


def _extract(path: Path, display: str) -> FileFacts:
    """Front-end dispatch by file kind. Never raises for bad input: that becomes GL00x."""
    if path.suffix == ".onnx" or display.endswith(".onnx.txt"):
        from gradlint.onnx import extract_onnx

        return extract_onnx(path, display)
    from gradlint.source import extract_python

    return extract_python(path, display)


_CODE_FINGERPRINT: str | None = None


def _code_fingerprint() -> str:
    """gradlint's own code, by file sizes and times: a cache written by other front-end code
    (an upgrade without a version bump, a development checkout) is never read back."""
    global _CODE_FINGERPRINT
    if _CODE_FINGERPRINT is None:
        h = hashlib.sha256(__version__.encode())
        for f in sorted(Path(__file__).parent.rglob("*.py")):
            st = f.stat()
            h.update(f"{f.relative_to(Path(__file__).parent)}:{st.st_size}:{st.st_mtime_ns};".encode())
        _CODE_FINGERPRINT = h.hexdigest()
    return _CODE_FINGERPRINT


def _cache_key(path: Path, display: str) -> str | None:
    try:
        data = path.read_bytes() if path.suffix != ".onnx" else _onnx_fingerprint(path)
    except OSError:
        return None
    h = hashlib.sha256()
    h.update(_code_fingerprint().encode())
    h.update(display.encode())
    h.update(data)
    return h.hexdigest()


def _onnx_fingerprint(path: Path) -> bytes:
    """Hashing a multi-GB model would cost more than checking it: sizes and times say enough.
    External data lies next to the model, so every file of its folder takes part: changing
    only `model.data` must not serve the old weights' findings."""
    parts = []
    for f in sorted(path.parent.iterdir()):
        try:
            st = f.lstat()
        except OSError:
            continue
        parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts).encode()


def _facts_job(args: tuple[str, str, str | None]) -> FileFacts:
    path_s, display, cache_dir = args
    return cached_facts(Path(path_s), display, cache_dir)


def cached_facts(path: Path, display: str, cache_dir: str | None) -> FileFacts:
    """One file's facts, from the cache when it holds them (the one entry point to the cache:
    the checked files and the project modules summarised on demand both come through here)."""
    key = _cache_key(path, display) if cache_dir else None
    if key and cache_dir:
        cached = Path(cache_dir) / f"{key}.pickle"
        try:
            with cached.open("rb") as fh:
                return pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
            pass
    try:
        facts = _extract(path, display)
    except Exception:  # an internal failure on one file must not end the run
        return FileFacts(path=display, kind="python", internal_error=_short_traceback())
    if key and cache_dir:
        _write_cache(Path(cache_dir), key, facts)
    return facts


def _write_cache(cache_dir: Path, key: str, facts: FileFacts) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        marker = cache_dir / ".gitignore"
        if not marker.exists():
            marker.write_text("# created by gradlint\n*\n")
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(facts, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache_dir / f"{key}.pickle")
    except OSError:
        # A read-only checkout still gets checked, just without a cache.
        pass


def _short_traceback() -> str:
    return traceback.format_exc(limit=-3).strip()


def relative_path(path: Path | str, config: Config) -> str:
    """A path relative to the configuration's root, as per-file-ignores patterns are written."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path(config.root).resolve()).as_posix()
    except (ValueError, OSError):
        return path.as_posix()


def _matches(code: str, selectors: Iterable[str]) -> bool:
    return any(code.startswith(sel) for sel in selectors)


def enabled_rules(config: Config, relpath: str, rules: dict[str, type[Rule]] | None = None) -> frozenset[str]:
    """The codes that apply to one file: those the selection enables (select, extend-select,
    ignore) and the always-on input rules, less the file's per-file-ignores. The one place this
    is decided, for check, fix and probe alike."""
    rules = rules if rules is not None else load_rules()
    on = config.enabled_codes() | {c for c, r in rules.items() if r.always_on}
    ignored = config.ignored_codes_for(relpath)
    return frozenset(c for c in on if not _matches(c, ignored))


def run_rules(facts: FileFacts, config: Config, index: ProjectIndex | None, rules: dict[str, type[Rule]],
              relpath: str) -> FileResult:
    """Run the rules enabled for one file on its facts, then suppressions."""
    findings: list[Finding] = []
    internal = facts.internal_error
    enabled = enabled_rules(config, relpath, rules)
    scope = index.scope(facts) if index is not None else None
    for code in sorted(enabled):
        rule_cls = rules[code]
        if facts.kind not in rule_cls.inputs or rule_cls.probe_only:
            continue
        ctx = RuleContext(rule=rule_cls(), path=facts.path, facts=facts, options=config.options_for(code), index=scope)
        try:
            findings.extend(rule_cls().check(ctx))
        except Exception:
            internal = (internal + "\n" if internal else "") + f"{code} crashed on {facts.path}:\n{_short_traceback()}"
    # A rule may word a finding under a sibling code (GL0xx input errors): the file's ignores hold.
    ignored = config.ignored_codes_for(relpath)
    findings = [f for f in findings if not _matches(f.code, ignored)]
    findings = suppress.apply(findings, facts.source)
    findings.sort(key=Finding.sort_key)
    return FileResult(path=facts.path, findings=tuple(findings), internal_error=internal, skipped=facts.skipped)


def project_index(paths: Iterable[Path], config: Config, *, use_cache: bool = True) -> tuple[ProjectIndex, Path]:
    """An empty project index for the project the paths belong to, with a loader that summarises
    (through the cache) any module of the project a lookup reaches; and the project's root."""
    from gradlint.source.index import ProjectFiles, find_project_root

    root = find_project_root(paths, Path(config.root))
    cache_dir = str(Path(config.root) / config.cache_dir) if use_cache else None

    def list_files() -> list[Path]:
        return [p for p, _ in discover([root], config).files if p.suffix == ".py"]

    loader = ProjectFiles(root, lambda path: cached_facts(path, display_path(path), cache_dir), list_files)
    return ProjectIndex(loader), root


def add_to_index(index: ProjectIndex, root: Path, path: Path, facts: FileFacts) -> None:
    from gradlint.source.index import module_name

    if facts.kind != "python":
        index.by_path.setdefault(facts.path, "")
        return
    name, is_package = module_name(path, root)
    index.add(name, facts, is_package)


def collect_facts(files: list[tuple[Path, str]], config: Config, *, use_cache: bool = True,
                  jobs: int | None = None) -> list[FileFacts]:
    cache_dir = str(Path(config.root) / config.cache_dir) if use_cache else None
    args = [(str(p), d, cache_dir) for p, d in files]
    workers = jobs if jobs is not None else min(os.cpu_count() or 1, 8)
    # A pool costs ~100 ms to start; below a few dozen files one process is faster.
    if workers <= 1 or len(args) < 32:
        return [_facts_job(a) for a in args]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_facts_job, args, chunksize=8))


def check_paths(paths: Iterable[str | Path], config: Config, *, use_cache: bool = True,
                jobs: int | None = None) -> RunResult:
    """Check files and folders; the result holds every file's findings, sorted."""
    given = [Path(p) for p in paths]
    found = discover(given, config)
    result = RunResult()
    for missing in found.missing:
        result.files.append(FileResult(path=missing, internal_error=None, skipped="no such file or directory"))
    facts = collect_facts(found.files, config, use_cache=use_cache, jobs=jobs)
    index, root = project_index(given, config, use_cache=use_cache)
    for (path, _display), f in zip(found.files, facts):
        add_to_index(index, root, path, f)
    rules = load_rules()
    for (path, _display), f in zip(found.files, facts):
        result.files.append(run_rules(f, config, index, rules, relative_path(path, config)))
    return result


def check_source(source: str | bytes, config: Config | None = None, *, path: str = "example.py",
                 extra_files: dict[str, str] | None = None) -> list[Finding]:
    """Check source text as if it were a file of a run (tests, examples, the probe)."""
    config = config or Config()
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        target = tmpdir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            target.write_text(source, encoding="utf-8")
        for name, text in (extra_files or {}).items():
            other = tmpdir / name
            other.parent.mkdir(parents=True, exist_ok=True)
            other.write_text(text, encoding="utf-8")
        config = replace(config, root=str(tmpdir))
        old = os.getcwd()
        os.chdir(tmpdir)
        try:
            result = check_paths(["."], config, use_cache=False, jobs=1)
        finally:
            os.chdir(old)
    return [f for f in result.findings if Path(f.path).as_posix().endswith(path)]


def exit_code(result: RunResult, fail_on: Severity, *, exit_zero: bool = False) -> int:
    if result.internal_errors or any(r.skipped == "no such file or directory" for r in result.files):
        return 2
    if exit_zero:
        return 0
    return 1 if any(f.severity >= fail_on for f in result.findings) else 0


__all__ = [
    "check_paths", "check_source", "exit_code", "run_rules", "collect_facts", "enabled_rules",
    "project_index", "relative_path", "SourceSpan",
]
