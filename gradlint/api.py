"""check_paths(paths, config) -> RunResult: discovery, per-file facts (pooled, cached), the project
index, the enabled rules of each file, suppressions. No printing."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import tempfile
import traceback
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Iterator

from gradlint import cache, inputs, suppress
from gradlint.config import Config
from gradlint.discover import discover, display_path
from gradlint.facts.files import FileFacts
from gradlint.facts.project import ProjectIndex
from gradlint.files import text_digest
from gradlint.findings import FileResult, Finding, InputError, RunResult, Severity, SourceSpan
from gradlint.registry import Rule, RuleContext, load_rules


def _kind(path: Path, display: str) -> str:
    return "onnx" if path.suffix == ".onnx" or display.endswith(".onnx.txt") else "python"


def _extract(path: Path, display: str, data: bytes | None = None) -> FileFacts:
    """Front-end dispatch by file kind. Never raises for bad input: that becomes GL00x."""
    if path.suffix == ".ipynb":
        from gradlint.notebook import extract_notebook, extract_notebook_bytes

        # the bytes discovery already read, bounded by max-file-size
        return extract_notebook_bytes(data, display) if data is not None else extract_notebook(path, display)
    if _kind(path, display) == "onnx":
        from gradlint.onnx import extract_onnx

        return extract_onnx(path, display, data)
    from gradlint.source import extract_python

    return extract_python(path, display, data=data)


def _facts_job(args: tuple[str, str, cache.Store | None, int, bool]) -> tuple[FileFacts, cache.Pending | None]:
    """One file's facts and the cache entry to write for them, if any (the parent writes them all).
    The last argument is False when the parent already found no entry for the file."""
    path_s, display, store, max_size, look_up = args
    batch = cache.Batch()
    facts = cached_facts(Path(path_s), display, store, max_size, batch, look_up=look_up)
    return facts, (batch.entries[0] if batch.entries else None)


def _read_and_look_up(path: Path, display: str, store: cache.Store | None, max_size: int,
                      look_up: bool = True) -> tuple[bytes | None, cache.Slot | None, FileFacts | None]:
    """A file's bytes (read once, bounded, special files refused before any open: raises
    inputs.Refused), its cache slot, and the facts the cache holds for it (None on a miss, or
    without `look_up`)."""
    data, fingerprint = inputs.read_input(path, max_size, whole=path.suffix != ".onnx")
    if store is None:
        return data, None, None
    where = cache.slot(store, display, _kind(path, display), fingerprint)
    return data, where, cache.load(store, where, str(path.parent), FileFacts) if look_up else None


def _cache_hit(path: Path, display: str, store: cache.Store, max_size: int) -> FileFacts | None:
    """The facts the cache holds for a file, or None: a miss, or a file that cannot be read (its
    job reports why). A file its folder's pack has no line for is not read at all."""
    if not cache.holds(store, display, _kind(path, display)):
        return None
    try:
        return _read_and_look_up(path, display, store, max_size)[2]
    except inputs.Refused:
        return None


def cached_facts(path: Path, display: str, store: cache.Store | None, max_size: int,
                 batch: cache.Batch | None = None, *, look_up: bool = True) -> FileFacts:
    """One file's facts, from the cache (gradlint.cache, plain JSON) when it holds them (not
    looked up without `look_up`: the caller knows it does not). A new entry joins `batch`
    (written with the others, once per folder) or, without one, is written at once."""
    kind = _kind(path, display)
    try:
        # The key is the bytes read here, and the facts are extracted from those same bytes.
        data, where, cached = _read_and_look_up(path, display, store, max_size, look_up)
    except inputs.Refused as exc:
        what = "unreadable_model" if kind == "onnx" else "unreadable_source"
        return FileFacts(path=display, kind=kind, input_errors=(InputError(what, f"cannot read file: {exc}"),))
    if cached is not None:
        return cached
    folder = str(path.parent)
    try:
        facts = _extract(path, display, data)
    except Exception:  # an internal failure on one file must not end the run
        return FileFacts(path=display, kind=kind, internal_error=_short_traceback())
    if where and store:
        _store(store, cache.entry(where, facts, folder, facts.depends), batch)
    return facts


def _short_traceback() -> str:
    return traceback.format_exc(limit=-3).strip()


def relative_path(path: Path | str, config: Config) -> str:
    """A path relative to the configuration's root, as per-file-ignores patterns are written."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path(config.root).resolve()).as_posix()
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
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
        ctx = RuleContext(rule=rule_cls(), path=facts.path, facts=facts, options=config.options_for(code), index=scope,
                          enabled=enabled)
        try:
            findings.extend(rule_cls().check(ctx))
        except Exception:
            internal = (internal + "\n" if internal else "") + f"{code} crashed on {facts.path}:\n{_short_traceback()}"
    # A rule may word a finding under a sibling code (GL0xx input errors): the file's ignores hold.
    ignored = config.ignored_codes_for(relpath)
    findings = [f for f in findings if not _matches(f.code, ignored)]
    findings = suppress.apply(findings, facts.source)
    findings.sort(key=Finding.sort_key)
    analysed = text_digest(facts.source) if facts.source is not None else None
    return FileResult(path=facts.path, findings=tuple(findings), internal_error=internal, skipped=facts.skipped,
                      analysed=analysed)


def project_index(paths: Iterable[Path], config: Config, *, use_cache: bool = True,
                  batch: cache.Batch | None = None) -> tuple[ProjectIndex, Path]:
    """An empty project index for the project the paths belong to, with a loader that summarises
    (through the cache) any module of the project a lookup reaches, or of an installed library
    (`read-libraries`: located in `library_roots`, read, never imported); and the project's root.
    New cache entries join `batch` when given (the caller writes it), else are written at once."""
    from gradlint.source.index import ProjectFiles, find_project_root, library_roots

    root = find_project_root(paths, Path(config.root))
    stores: list = []

    def summarise(path: Path) -> FileFacts:
        # the cache folder is opened (and made) only when a module outside the run is read
        if use_cache and not stores:
            stores.append(cache.open_store(config.root, config.cache_dir)[0])
        return cached_facts(path, display_path(path), stores[0] if stores else None, config.max_file_size, batch)

    def list_files() -> list[Path]:
        return [p for p, _ in discover([root], config).files if p.suffix == ".py"]

    def summarise_library(path: Path) -> FileFacts:
        # The models of a library module, cached like a project file's (in the project's cache:
        # nothing is written near the library) under their own kind, since they hold less.
        if use_cache and not stores:
            stores.append(cache.open_store(config.root, config.cache_dir)[0])
        return library_facts(path, stores[0] if stores else None, config.max_file_size, batch)

    def library_names(path: Path) -> tuple[FileFacts | None, int]:
        # Resolving one name of transformers reads ~100 package `__init__` files along its `*`
        # re-exports: their names are cached too (parsing them took 0.8 s of a warm run).
        if use_cache and not stores:
            stores.append(cache.open_store(config.root, config.cache_dir)[0])
        return library_facts(path, stores[0] if stores else None, config.max_file_size, batch, names_only=True)

    def lower(path: Path, cls: str, args: tuple, compute):
        if use_cache and not stores:
            stores.append(cache.open_store(config.root, config.cache_dir)[0])
        return rerun_block(path, cls, args, compute, stores[0] if stores else None, config.max_file_size, batch)

    libraries = library_roots(root, config.library_paths) if config.read_libraries else ()
    loader = ProjectFiles(root, summarise, list_files, libraries=libraries, extract_library=summarise_library,
                          read_library=library_names, cached_lower=lower)
    return ProjectIndex(loader), root


def library_facts(path: Path, store: cache.Store | None, max_size: int, batch: cache.Batch | None = None,
                  *, names_only: bool = False):
    """The models (networks, class summaries, symbols) of one installed library's module, named by
    its absolute path; never reported on, so an unreadable one is simply empty. `names_only`: its
    top-level names alone (None when it does not parse) and the number of bytes read, which raises
    inputs.Refused for a file that cannot be read. Cached in the project's cache, by content."""
    from gradlint.source import decode, extract_python_text
    from gradlint.source.index import module_symbols

    display = str(path)
    try:
        data, fingerprint = inputs.read_input(path, max_size)
    except inputs.Refused:
        if names_only:
            raise
        return FileFacts(path=display, kind="python")
    size = len(data or b"")
    where = cache.slot(store, display, "library-names" if names_only else "library", fingerprint) if store else None
    hit = cache.load(store, where, str(path.parent), FileFacts) if store is not None and where is not None else None
    if hit is not None:
        return (hit, size) if names_only else hit
    try:
        if names_only:
            symbols = module_symbols(decode(data or b""))
            facts = FileFacts(path=display, kind="python", symbols=symbols) if symbols is not None else None
        else:
            facts = replace(extract_python_text(decode(data or b""), display, models_only=True),
                            source=None, input_errors=())
    except Exception:  # a library we cannot read or model stays unknown; it is not the user's to fix
        facts = None if names_only else FileFacts(path=display, kind="python")
    if facts is not None and store is not None and where is not None:
        _store(store, cache.entry(where, facts, str(path.parent)), batch)
    return (facts, size) if names_only else facts


def rerun_block(path: Path, cls: str, args: tuple, compute, store: cache.Store | None, max_size: int,
                batch: cache.Batch | None = None):
    """The IR of class `cls` of the file at `path` re-run with a caller's arguments (`compute()`:
    source.index.ProjectFiles.lower), cached by the file's content, the class and the arguments,
    so a warm run parses no other file. Nothing is cached for a file that cannot be read."""
    if store is None:
        return compute()
    try:
        _, fingerprint = inputs.read_input(path, max_size)
        shape = json.dumps(cache.encode(args), sort_keys=True)
    except (inputs.Refused, cache.CacheError, ValueError, TypeError, RecursionError):
        return compute()
    display = display_path(path)
    kind = "rerun:" + cls + ":" + hashlib.sha256(shape.encode("utf-8", "surrogatepass")).hexdigest()
    where = cache.slot(store, display, kind, fingerprint or "")
    hit = cache.load(store, where, str(path.parent), FileFacts)
    if hit is not None:
        return hit.networks[0] if hit.networks else None
    network = compute()
    _store(store, cache.entry(where, FileFacts(path=display, kind="python",
                                               networks=(network,) if network is not None else ()),
                              str(path.parent)), batch)
    return network


def _store(store: cache.Store, made: cache.Pending | None, batch: cache.Batch | None) -> None:
    """A new cache entry joins the run's batch (written once at the end), or is written now."""
    if made is None:
        return
    if batch is not None:
        batch.add(store, made)
    else:
        cache.write(store, [made])


def add_to_index(index: ProjectIndex, root: Path, path: Path, facts: FileFacts) -> None:
    from gradlint.source.index import module_name

    if facts.kind != "python":
        index.by_path.setdefault(facts.path, "")
        return
    name, is_package = module_name(path, root)
    index.add(name, facts, is_package)


def collect_facts(files: list[tuple[Path, str]], config: Config, *, use_cache: bool = True,
                  jobs: int | None = None, warnings: list[str] | None = None) -> list[FileFacts]:
    store, warning = cache.open_store(config.root, config.cache_dir) if use_cache and files else (None, None)
    if warning and warnings is not None:
        warnings.append(warning)
    args = [(str(p), d, store, config.max_file_size, True) for p, d in files]
    workers = jobs if jobs is not None else min(os.cpu_count() or 1, 8)
    results: list = [None] * len(args)
    todo = list(range(len(args)))
    if store is not None and workers > 1 and len(args) >= 32:
        # The hits are read here, each folder's pack once: workers would each read every pack
        # again and send the facts back pickled (a warm run over timm + torchvision took 2.0 s
        # with two workers, 1.6 s in one process). Only the misses go to the pool, which does not
        # look them up again.
        todo = []
        for i, (path, display) in enumerate(files):
            hit = _cache_hit(path, display, store, config.max_file_size)
            if hit is not None:
                results[i] = (hit, None)
            else:
                todo.append(i)
                args[i] = args[i][:4] + (False,)
    # A pool costs ~100 ms to start; below a few dozen files one process is faster.
    if workers <= 1 or len(todo) < 32:
        for i in todo:
            results[i] = _facts_job(args[i])
    else:
        from gradlint.pool import map_isolated

        # A worker that dies (a native crash, SIGKILL, the OOM killer) costs only its own file.
        done = map_isolated(_facts_job, [args[i] for i in todo], workers, on_failure=_job_failed)
        for i, result in zip(todo, done):
            results[i] = result
    if store is not None:
        # Every new entry at once: one write per folder's pack, not one file per entry.
        cache.write(store, [p for _f, p in results if p is not None])
    return [f for f, _p in results]


def _job_failed(args: tuple, reason: str) -> tuple[FileFacts, None]:
    """The facts of a file whose worker died: an internal error that names the file (args is
    _facts_job's: the path, then the name shown); nothing to cache."""
    display = args[1]
    return FileFacts(path=display, kind="python", internal_error=f"{reason} while checking {display}"), None


def check_paths(paths: Iterable[str | Path], config: Config, *, use_cache: bool = True,
                jobs: int | None = None) -> RunResult:
    """Check files and folders; the result holds every file's findings, sorted."""
    given = [Path(p) for p in paths]
    found = discover(given, config)
    result = RunResult(warnings=list(found.warnings))
    for missing in found.missing:
        result.files.append(FileResult(path=missing, skipped="no such file or directory", error=True))
    for path, reason, error in found.refused:
        result.files.append(FileResult(path=path, skipped=reason, error=error))
    facts = collect_facts(found.files, config, use_cache=use_cache, jobs=jobs, warnings=result.warnings)
    later = cache.Batch()  # the modules a lookup summarises, written once at the end
    with _kept_for_the_run():
        index, root = project_index(given, config, use_cache=use_cache, batch=later)
        for (path, _display), f in zip(found.files, facts):
            add_to_index(index, root, path, f)
        rules = load_rules()
        for (path, _display), f in zip(found.files, facts):
            result.files.append(_in_cells(run_rules(f, config, index, rules, relative_path(path, config)), f))
    later.write()
    return result


@contextmanager
def _kept_for_the_run() -> Iterator[None]:
    """Every file's facts stay alive while the rules run: the cyclic garbage collector, run every
    700 allocations, went through them again and again (a tenth of a warm run over timm and
    torchvision) to free nothing. What is alive now is left out of its passes until the rules are
    done (gc.freeze); the rules' own garbage is collected as usual. Nothing is changed when
    someone else has frozen objects already."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _in_cells(result: FileResult, facts: FileFacts) -> FileResult:
    if facts.cells is None:
        return result
    from gradlint.notebook import locate

    return locate(result, facts.cells)


def check_text(display: str, data: bytes, config: Config, *, use_cache: bool = True) -> RunResult:
    """Check one file's content held in memory (stdin: `--stdin-filename PATH -`), reported as
    `display`; a .ipynb name reads the content as a notebook. The file is checked alone."""
    from gradlint.notebook import extract_notebook_bytes
    from gradlint.source import decode, extract_python_text

    if display.endswith(".onnx"):
        return RunResult(files=[FileResult(path=display, skipped="an ONNX model cannot be read from stdin")])
    if display.endswith(".ipynb"):
        facts = extract_notebook_bytes(data, display)
    else:
        try:
            facts = extract_python_text(decode(data), display)
        except (UnicodeDecodeError, SyntaxError, LookupError) as exc:
            facts = FileFacts(path=display, kind="python", input_errors=(InputError("unreadable_source", f"cannot decode: {exc}"),))
    rules = load_rules()
    # Names resolve across the project of `display`, as in `gradlint check` of that file.
    later = cache.Batch()
    index, root = project_index([Path(display)], config, use_cache=use_cache, batch=later)
    add_to_index(index, root, Path(display), facts)
    result = run_rules(facts, config, index, rules, relative_path(display, config))
    later.write()
    return RunResult(files=[_in_cells(result, facts)])


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
    if result.internal_errors or any(r.error for r in result.files):
        return 2
    if exit_zero:
        return 0
    return 1 if any(f.severity >= fail_on for f in result.findings) else 0


__all__ = [
    "check_paths", "check_source", "check_text", "exit_code", "run_rules", "collect_facts", "enabled_rules",
    "project_index", "relative_path", "SourceSpan",
]
