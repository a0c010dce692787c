"""check_paths(paths, config) -> RunResult: discovery, per-file facts (pooled, cached), the project
index, the enabled rules of each file, suppressions. No printing."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Iterator

from gradlint import cache, inputs
from gradlint.config import Config, config_warnings
from gradlint.discover import discover, display_path
from gradlint.facts.files import FileFacts
from gradlint.facts.project import ProjectIndex
from gradlint.findings import FileResult, Finding, InputError, RunResult, Severity, SourceSpan
from gradlint.registry import load_rules
from gradlint.results import ResultCache, kind_of, store_entry
from gradlint.rule_run import RuleSetup, _short_traceback, enabled_rules, relative_path, run_rules
from gradlint.stack import roomy


def _extract(path: Path, display: str, data: bytes | None = None) -> FileFacts:
    """Front-end dispatch by file kind. Never raises for bad input: that becomes GL00x."""
    if path.suffix == ".ipynb":
        from gradlint.notebook import extract_notebook, extract_notebook_bytes

        # the bytes discovery already read, bounded by max-file-size
        return extract_notebook_bytes(data, display) if data is not None else extract_notebook(path, display)
    if kind_of(path, display) == "onnx":
        from gradlint.onnx import extract_onnx

        return extract_onnx(path, display, data)
    from gradlint.source import extract_python

    return extract_python(path, display, data=data)


def _facts_job(args: tuple) -> tuple[FileFacts, cache.Pending | None, str | None]:
    """One file's facts, the cache entry to write for them, if any (the parent writes them all),
    and the fingerprint of the bytes they came from. `look_up` is False when the parent already
    found no entry for the file; `keep` False when no facts entry is wanted (an ONNX model whose
    result entry the parent will store instead)."""
    path_s, display, store, max_size, look_up, keep = args
    batch = cache.Batch()
    seen: dict[str, str] = {}
    # a worker's extraction recurses deeply: its frames in one chunk of CPython's stack (stack.py)
    facts = roomy(cached_facts, Path(path_s), display, store, max_size, batch, look_up=look_up, seen=seen, keep=keep)
    return facts, (batch.entries[0] if batch.entries else None), seen.get(path_s)


def _read_and_look_up(path: Path, display: str, store: cache.Store | None, max_size: int,
                      look_up: bool = True, seen: dict[str, str] | None = None,
                      ) -> tuple[bytes | None, cache.Slot | None, FileFacts | None]:
    """A file's bytes (read once, bounded, special files refused before any open: raises
    inputs.Refused), its cache slot, and the facts the cache holds for it (None on a miss, or
    without `look_up`). `seen` gets the file's fingerprint, by path."""
    data, fingerprint = inputs.read_input(path, max_size, whole=path.suffix != ".onnx")
    if seen is not None:
        seen[str(path)] = fingerprint
    if store is None:
        return data, None, None
    where = cache.slot(store, display, kind_of(path, display), fingerprint)
    return data, where, cache.load(store, where, str(path.parent), FileFacts) if look_up else None


def _cache_hit(path: Path, display: str, store: cache.Store, max_size: int,
               seen: dict[str, str] | None = None) -> FileFacts | None:
    """The facts the cache holds for a file, or None: a miss, or a file that cannot be read (its
    job reports why). A file its folder's pack has no line for is not read at all."""
    if not cache.holds(store, display, kind_of(path, display)):
        return None
    try:
        return _read_and_look_up(path, display, store, max_size, seen=seen)[2]
    except inputs.Refused:
        return None


def cached_facts(path: Path, display: str, store: cache.Store | None, max_size: int,
                 batch: cache.Batch | None = None, *, look_up: bool = True, seen: dict[str, str] | None = None,
                 keep: bool = True) -> FileFacts:
    """One file's facts, from the cache (gradlint.cache, plain JSON) when it holds them (not
    looked up without `look_up`: the caller knows it does not). A new entry joins `batch`
    (written with the others, once per folder) or, without one, is written at once (none
    without `keep`). `seen` gets the fingerprint of the bytes the facts are of, by path."""
    kind = kind_of(path, display)
    try:
        # The key is the bytes read here, and the facts are extracted from those same bytes.
        data, where, cached = _read_and_look_up(path, display, store if look_up or keep else None, max_size,
                                                look_up, seen)
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
    if where and store and keep:
        store_entry(store, cache.entry(where, facts, folder, facts.depends), batch)
    return facts


def project_index(paths: Iterable[Path], config: Config, *, use_cache: bool = True,
                  batch: cache.Batch | None = None, store: cache.Store | None = None,
                  seen: dict[str, str] | None = None, root: Path | None = None) -> tuple[ProjectIndex, Path]:
    """An empty project index for the project the paths belong to, with a loader that summarises
    (through the cache) any module of the project a lookup reaches, or of an installed library
    (`read-libraries`: located in `library_roots`, read, never imported); and the project's root.
    New cache entries join `batch` when given (the caller writes it), else are written at once;
    `store`: the cache the caller opened already; `seen` gets the fingerprints of the files read,
    by path (what the result cache keys a file's findings by); `root`: the project's root when the
    caller knows it (by_project_root), else the first path's (find_project_root)."""
    from gradlint.source.index import ProjectFiles, find_project_root, library_roots

    if root is None:
        root = find_project_root(paths, Path(config.root))
    stores: list = [store] if store is not None else []

    def opened() -> cache.Store | None:
        # the cache folder is opened (and made) only when a module outside the run is read
        if use_cache and not stores:
            stores.append(cache.open_store(config.root, config.cache_dir)[0])
        return stores[0] if stores else None

    def summarise(path: Path) -> FileFacts:
        return cached_facts(path, display_path(path), opened(), config.max_file_size, batch, seen=seen)

    listed: list[list[Path]] = []

    def list_files() -> list[Path]:
        # once per run: the word scans and the result cache's project text both read it
        if not listed:
            listed.append([p for p, _ in discover([root], config).files if p.suffix == ".py"])
        return listed[0]

    def summarise_library(path: Path) -> FileFacts:
        # The models of a library module, cached like a project file's (in the project's cache:
        # nothing is written near the library) under their own kind, since they hold less.
        return library_facts(path, opened(), config.max_file_size, batch, seen=seen)

    def library_names(path: Path) -> tuple[FileFacts | None, int]:
        # Resolving one name of transformers reads ~100 package `__init__` files along its `*`
        # re-exports: their names are cached too (parsing them took 0.8 s of a warm run).
        return library_facts(path, opened(), config.max_file_size, batch, names_only=True, seen=seen)

    def lower(path: Path, cls: str, args: tuple, compute):
        return rerun_block(path, cls, args, compute, opened(), config.max_file_size, batch)

    def calls(display: str, text: str, path: Path | None = None) -> FileFacts | None:
        return calls_facts(display, text, opened(), batch, path)

    libraries = library_roots(root, config.library_paths) if config.read_libraries else ()
    loader = ProjectFiles(root, summarise, list_files, libraries=libraries, extract_library=summarise_library,
                          read_library=library_names, cached_lower=lower, extract_calls=calls)
    if seen is not None:
        # A word scan reads every listed file; the result cache keys what it answered by the
        # fingerprints of those files (ResultCache.project_text), which read each file again (0.1 s
        # on a project of 4 000 files). The fingerprint of the bytes scanned is the one
        # inputs.fingerprint makes of a file of that size; a file read before keeps its own.
        def scanned(path: Path, data: bytes) -> None:
            # (hashed once: a file read again by a later scan keeps the fingerprint it has)
            if len(data) <= inputs.HASH_LIMIT and str(path) not in seen:
                seen[str(path)] = "sha256:" + hashlib.sha256(data).hexdigest()

        loader.scanned = scanned
    return ProjectIndex(loader), root


def calls_facts(display: str, text: str, store: cache.Store | None, batch: cache.Batch | None = None,
                path: Path | None = None) -> FileFacts | None:
    """The numerics and training-loop facts of a project file whose facts hold its symbols only
    (no torch in its text), or whose loop facts were skipped (no backward, no clip...), read from
    `text` (the source those facts keep) when a search for a function's callers reaches it; None
    when Python or libcst refuses it or it is over budget (its calls stay unknown). `path`: its
    file, whose neighbours may define the config classes it builds. Cached by the text under
    their own kind (and the files those classes were looked for in), so a warm run parses it no
    more than the files it checks; a refusal is cached too."""
    from gradlint.files import text_digest
    from gradlint.source import extract_python_text

    where = cache.slot(store, display, "calls", "text:" + text_digest(text)) if store is not None else None
    folder = os.path.dirname(display) or "."
    hit = cache.load(store, where, folder, FileFacts) if store is not None and where is not None else None
    if hit is None:
        try:
            facts = extract_python_text(text, display, calls_only=True, origin=path)
        except Exception:  # a caller gradlint cannot read stays unknown; it is no finding of its own
            facts = None
        hit = FileFacts(path=display, kind="python")
        if facts is not None and facts.numerics is not None and not facts.skipped and not facts.input_errors:
            hit = FileFacts(path=display, kind="python", numerics=facts.numerics, training=facts.training,
                            depends=facts.depends)
        if store is not None and where is not None:
            store_entry(store, cache.entry(where, hit, folder, hit.depends), batch)
    return hit if hit.numerics is not None else None


def library_facts(path: Path, store: cache.Store | None, max_size: int, batch: cache.Batch | None = None,
                  *, names_only: bool = False, seen: dict[str, str] | None = None):
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
    if seen is not None:
        seen[display] = fingerprint
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
        store_entry(store, cache.entry(where, facts, str(path.parent)), batch)
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
    store_entry(store, cache.entry(where, FileFacts(path=display, kind="python",
                                               networks=(network,) if network is not None else ()),
                              str(path.parent)), batch)
    return network


def name_modules(index: ProjectIndex, root: Path, paths: list[Path]) -> list[tuple[str, bool, str] | None]:
    """The module of each of the run's Python files (gradlint.source.index.module_places: name,
    is a package, home; None when its path cannot be resolved), told to the index's loader, with
    the homes that name packages from the import root."""
    from gradlint.source.index import module_places

    loader = index.loader
    places, loader.homes = module_places(paths, root)
    for path, place in zip(paths, places):
        if place is not None:
            loader.checked_paths.setdefault(place[0], path)
            loader.checked_names.setdefault(os.path.realpath(path), place[0])
    return places


def add_to_index(index: ProjectIndex, root: Path, path: Path, facts: FileFacts) -> None:
    from gradlint.source.index import module_place

    if facts.kind != "python":
        index.by_path.setdefault(facts.path, "")
        return
    # (the loader's: each folder walked once however many files `gradlint model` describes)
    place = getattr(index.loader, "place", None)
    name, is_package, home = place(path) if place is not None else module_place(path, root)
    index.add(name, facts, is_package, home)


def collect_facts(files: list[tuple[Path, str]], config: Config, *, use_cache: bool = True,
                  jobs: int | None = None, warnings: list[str] | None = None,
                  opened: tuple[cache.Store | None] | None = None, seen: dict[str, str] | None = None,
                  keep: bool = True, batch: cache.Batch | None = None) -> list[FileFacts]:
    """Every file's facts, through the cache (`opened`: the store the caller opened, in a tuple).
    `seen` gets each file's fingerprint by path; without `keep`, ONNX models get no facts entry
    (the caller stores their results instead); new entries join `batch` when given."""
    if opened is not None:
        store = opened[0]
    else:
        store, warning = cache.open_store(config.root, config.cache_dir) if use_cache and files else (None, None)
        if warning and warnings is not None:
            warnings.append(warning)
    plan = _FactsPlan(files, config, store, jobs, seen, keep)
    plan.run(largest_first=True)
    return plan.finish(batch)


class _FactsPlan:
    """The facts of a list of files: the cache's hits read here, the misses extracted by a pool of
    workers (or in this process, for a few files). `run` may go on in another thread while the
    caller takes each file's facts as they come (`get`): check_paths runs the rules of the first
    files while the workers extract the others."""

    def __init__(self, files: list[tuple[Path, str]], config: Config, store: cache.Store | None,
                 jobs: int | None, seen: dict[str, str] | None, keep: bool,
                 wanted: frozenset[int] = frozenset(), kinds: list[str] | None = None, pool=None) -> None:
        self.files, self.store, self.seen = files, store, seen
        self.kept_pool = pool  # a gradlint.pool.Kept the caller's runs share, or None
        # each file's kind_of (`kinds`: the caller's, when it worked them out)
        self.kinds = kinds if kinds is not None else [kind_of(p, d) for p, d in files]
        # Without `keep` (the caller stores each file's result), an ONNX model is neither looked up
        # nor stored (one object less to send to a worker per model), and a Python file's facts
        # are stored only when a later run will read them again (_later_read): encoding them was
        # most of what a cold cached run cost more than an uncached one.
        self.args = [(str(p), d, store, config.max_file_size, True, True) if keep
                     else (str(p), d, None, config.max_file_size, False, False) if kind == "onnx"
                     else (str(p), d, store, config.max_file_size, True, _later_read(store, d, i in wanted))
                     for i, ((p, d), kind) in enumerate(zip(files, self.kinds))]
        self.workers = jobs if jobs is not None else min(os.cpu_count() or 1, 8)
        self.results: list = [None] * len(files)
        self.stored: set[int] = set()  # the positions store_reached made an entry for
        self.arrived = [threading.Event() for _ in files]
        # set once the pool's processes exist (or none will): see check_paths
        self.launched = threading.Event()
        todo = list(range(len(files)))
        if store is not None and self.workers > 1:
            # The hits are read here, each folder's pack once: workers would each read every pack
            # again and send the facts back pickled (a warm run over timm + torchvision took 2.0 s
            # with two workers, 1.6 s in one process). Only the misses go to the pool, which does
            # not look them up again.
            todo = []
            for i, (path, display) in enumerate(files):
                if not self.args[i][4]:
                    todo.append(i)
                    continue
                hit = _cache_hit(path, display, store, config.max_file_size, seen)
                if hit is not None:
                    self._arrive(i, (hit, None, None))
                else:
                    todo.append(i)
                    self.args[i] = self.args[i][:4] + (False,) + self.args[i][5:]
        self.todo = todo
        # From two files to extract, they go to workers (unless -j1): a native crash in one
        # (libcst's parser) then costs only that file, never the run and the others' results, and
        # the workers extract beside the rules (measured, 3 runs each, -j2: 16 copies of timm's
        # resnet.py 2.6-3.5 s against 4.8-6.2 s in one process, 4 of them 1.4-1.7 s against
        # 1.7-2.2 s; 4-16 files of 4 lines 0.6-1.0 s either way). One file stays here: there is
        # nothing to overlap, and the rules' re-runs of its classes parse it again in this process
        # (vision_transformer.py: 1.28-1.57 s pooled against 1.03-1.15 s, the pre-commit case).
        # Where the first workers cannot be forked (macOS, Windows: a spawned worker imports
        # gradlint again, 0.6 s), from 32 files; never in a daemonic process (no children).
        self.pooled = self.workers > 1 and bool(todo) and _may_pool(len(todo))
        self.start_failed: str | None = None  # why the pool's processes could not be started
        # Set by a caller that keeps what is alive out of the collector's passes (check_paths'
        # _kept_for_the_run) until it joins the run's thread: see _run and frozen_until_joined.
        self.freeze_when_done = False
        self._freezing = threading.Lock()

    @contextmanager
    def frozen_until_joined(self, frozen: bool) -> Iterator[None]:
        """Inside a caller's _kept_for_the_run (entered first, left last), when it froze what was
        alive (`frozen`): the run's thread freezes the facts that came in before it resumes the
        collector, and a caller that joins the thread in here has them unfrozen with the rest.
        Left early (an exception), nothing the thread freezes later stays frozen."""
        with self._freezing:
            self.freeze_when_done = frozen
        try:
            yield
        finally:
            with self._freezing:
                self.freeze_when_done = False

    def _arrive(self, i: int, result: tuple) -> None:
        self.results[i] = result
        fingerprint = result[2]
        if self.seen is not None and fingerprint is not None:
            self.seen[str(self.files[i][0])] = fingerprint
        self.arrived[i].set()

    def get(self, i: int) -> FileFacts:
        """File `i`'s facts, once they are in."""
        self.arrived[i].wait()
        return self.results[i][0]

    def run(self, *, largest_first: bool = False, in_thread: bool = False) -> None:
        """Extract the misses. `largest_first`: submit the largest files first (the run ends when
        the last job does, and a large file started last kept one worker busy while the others
        had nothing left to do); a caller that takes the facts in order wants them in order.
        `launched` is set once the pool's processes exist: a caller in another thread waits for it
        before it goes on (a process forked while that thread imports a module could inherit the
        module's lock held); the pools made again after a worker died start from a fork server
        (gradlint.pool)."""
        try:
            self._run(largest_first)
        finally:
            self.launched.set()
        if self.start_failed is not None and not in_thread:
            self.in_process(largest_first)

    def in_process(self, largest_first: bool = False) -> None:
        """The extraction in this process, after its pool could not start (`start_failed`): the
        caller's thread, never the pool's beside the rules."""
        self.pooled = False
        self._run(largest_first)

    def _run(self, largest_first: bool) -> None:
        todo = self.todo
        if not self.pooled:
            try:
                for i in todo:
                    self._arrive(i, _facts_job(self.args[i]))
            finally:
                self._no_wait(todo)
            return
        from gradlint.pool import map_isolated

        # A worker that dies (a native crash, SIGKILL, the OOM killer) costs only its own file.
        # Here the facts only arrive (unpickled: no cycles to free), and the cyclic collector's
        # full passes went through all of them again as they piled up (a quarter second on timm
        # + torchvision): it rests until they are in.
        collecting = gc.isenabled()
        gc.disable()
        sizes = {i: _size(self.files[i][0]) for i in todo}
        if largest_first:
            todo = sorted(todo, key=lambda i: -sizes[i])
        costs = [_job_cost(self.kinds[i], sizes[i]) for i in todo]
        try:
            if any(self.kinds[i] == "python" for i in todo):
                # libcst and the extractors, imported once here and inherited by the forked
                # workers (each imported them on its own; this process needs them for re-runs
                # anyway). Inside the try: an import that fails (a broken install) left every
                # caller waiting for facts that never came; now each file is an internal error.
                from gradlint.source import loops, models, numerics  # noqa: F401
            map_isolated(_facts_job, [self.args[i] for i in todo], self.workers, on_failure=_job_failed,
                         on_result=lambda j, result: self._arrive(todo[j], result), started=self.launched.set,
                         cost=costs.__getitem__, kept=self.kept_pool)
        except Exception as exc:  # noqa: BLE001 - the pool could not start: this process extracts
            if self.launched.is_set():
                raise  # (its processes existed: a failure of the run itself)
            self.start_failed = f"{type(exc).__name__}: {exc}"
        finally:
            if collecting:
                with self._freezing:
                    if self.freeze_when_done:
                        # The facts that came in are young objects of the collector, a million
                        # over 2 000 small files: its first pass once resumed went through all of
                        # them (0.3 s, alone at the end of the run) to free nothing. They join
                        # what the caller keeps out of its passes, and leave with it.
                        gc.freeze()
                gc.enable()
            if self.start_failed is None:
                self._no_wait(todo)

    def _no_wait(self, todo: list[int]) -> None:
        """After a failure of the run itself (not of a job): what never came is an internal error,
        so that no caller waits for it."""
        for i in todo:
            if not self.arrived[i].is_set():
                self._arrive(i, _job_failed(self.args[i], "the extraction stopped"))

    def store_reached(self, reached: Iterable[int], batch: cache.Batch, until: threading.Event | None = None) -> None:
        """The facts entries of the files at `reached` (positions in this plan) that a lookup of
        another file reached but whose job stored none (_later_read), for the next run that
        reaches them (a pre-commit run of a file that imports one). Made while the caller waits
        for a file's facts (`until`: it came, stop) and, for the rest, once the rules are done:
        the 152 of timm + torchvision cost the parent 0.27 s, alone at the end of the run."""
        if self.store is None:
            return
        for k in reached:
            if until is not None and until.is_set():
                return
            got = self.results[k]
            # (a job asked to store its facts did, or could not; a file that could not be read
            # has no fingerprint; facts not in yet wait for the end)
            if k in self.stored or got is None or self.args[k][5] or got[1] is not None or got[2] is None \
                    or got[0].internal_error:
                continue
            self.stored.add(k)
            path, display = self.files[k]  # (a module: a Python file, never an ONNX model)
            facts = got[0]
            store_entry(self.store, cache.entry(cache.slot(self.store, display, self.kinds[k], got[2]),
                                                facts, str(path.parent), facts.depends), batch)

    def finish(self, batch: cache.Batch | None) -> list[FileFacts]:
        """Every file's facts; their new cache entries join `batch` (else are written now)."""
        if self.store is not None:
            # Every new entry at once: one write per folder's pack, not one file per entry.
            made = [p for _f, p, _s in self.results if p is not None]
            if batch is not None:
                for one in made:
                    batch.add(self.store, one)
            else:
                cache.write(self.store, made)
        return [f for f, _p, _s in self.results]


def _may_pool(files: int) -> bool:
    """Whether `files` to extract go to worker processes (_FactsPlan.pooled)."""
    import multiprocessing

    from gradlint.pool import forks_first

    if multiprocessing.current_process().daemon:
        return False
    return files >= (2 if forks_first() else 32)


def _later_read(store: cache.Store | None, display: str, wanted: bool) -> bool:
    """Whether a Python file's facts are worth storing when the run stores its result: a later run
    reads them when its result goes stale through a module it reached (`wanted`: it is such a file
    now, and will be again), or when they were stored before (the file's module was reached by
    another file's lookup: a pre-commit run of that file reads it, as does a run whose
    configuration changed). A module reached in this run is stored by the parent
    (_FactsPlan.store_reached). A file nobody reaches is served by its result alone."""
    return wanted or (store is not None and cache.holds(store, display, "python"))


def _waiting(plan: _FactsPlan, k: int, is_package: bool):
    """A checked file's (facts, is a package), once its facts are in (ProjectFiles.pending)."""
    return lambda: (plan.get(k), is_package)


def _size(path: Path) -> int:
    """A file's size, for the order of the pool's jobs (0 when it cannot be read: its job says why)."""
    try:
        return os.stat(path).st_size
    except (OSError, ValueError):
        return 0


def _job_cost(kind: str, size: int) -> float:
    """What a file's job costs, in units of a job's round trip through the pool (gradlint.pool
    sends the small ones several at a time): about 0.3 ms a small ONNX model, whatever its
    weights (their statistics are numpy's), and about a round trip per 256 bytes of Python."""
    return 1.0 + size / (65536 if kind == "onnx" else 256)


def _job_failed(args: tuple, reason: str) -> tuple[FileFacts, None, None]:
    """The facts of a file whose worker died: an internal error that names the file (args is
    _facts_job's: the path, then the name shown); nothing to cache."""
    display = args[1]
    return FileFacts(path=display, kind="python", internal_error=f"{reason} while checking {display}"), None, None


def check_paths(paths: Iterable[str | Path], config: Config, *, use_cache: bool = True,
                jobs: int | None = None, split_projects: bool = False, pool=None) -> RunResult:
    """Check files and folders; the result holds every file's findings, sorted. With
    split_projects, folders holding their own configuration are not checked but listed in
    .projects (gradlint.projects checks each with its settings). `pool`: a gradlint.pool.Kept
    whose worker processes several runs share (the caller closes it)."""
    # the rules, the re-run classes of other files and a one-process extraction recurse deeply:
    # their frames in one chunk of CPython's frame stack (stack.py)
    return roomy(_check_paths, paths, config, use_cache=use_cache, jobs=jobs, split_projects=split_projects, pool=pool)


def _check_paths(paths: Iterable[str | Path], config: Config, *, use_cache: bool,
                 jobs: int | None, split_projects: bool = False, pool=None) -> RunResult:
    """check_paths, one run for each project root the paths lie in (by_project_root), merged."""
    from gradlint.pool import Kept
    from gradlint.source.index import by_project_root

    groups = by_project_root([Path(p) for p in paths], Path(config.root))
    if len(groups) <= 1:
        given, root = (groups[0][1], groups[0][0]) if groups else ([], None)
        return _check_project(given, root, config, use_cache=use_cache, jobs=jobs,
                              split_projects=split_projects, pool=pool)
    # (the runs share one pool of workers, as gradlint.projects' do)
    shared = pool if pool is not None else Kept()
    merged = RunResult()
    seen: set[str] = set()
    for root, given in groups:
        result = _check_project(given, root, config, use_cache=use_cache, jobs=jobs,
                                split_projects=split_projects, pool=shared)
        merged.warnings += [w for w in result.warnings if w not in merged.warnings]
        merged.projects += [p for p in result.projects if p not in merged.projects]
        # (a file two roots reach, a link named beside its target: the first run's)
        merged.files += [r for r in result.files if r.path not in seen]
        seen.update(r.path for r in result.files)
    if pool is None:
        shared.close()  # (not on Ctrl-C, as gradlint.projects.check: the process's exit ends it)
    return merged


def _check_project(given: list[Path], root: Path | None, config: Config, *, use_cache: bool,
                   jobs: int | None, split_projects: bool = False, pool=None) -> RunResult:
    """check_paths of paths of one project (`root`: its root; None: the configuration's)."""
    found = discover(given, config, split_projects=split_projects)
    result = RunResult(warnings=config_warnings(config) + found.warnings, projects=[str(p) for p in found.projects])
    for missing in found.missing:
        result.files.append(FileResult(path=missing, skipped="no such file or directory", error=True))
    for path, reason, error in found.refused:
        result.files.append(FileResult(path=path, skipped=reason, error=error))
    files = found.files
    store, warning = cache.open_store(config.root, config.cache_dir) if use_cache and files else (None, None)
    if warning:
        result.warnings.append(warning)
    later = cache.Batch()  # the modules a lookup summarises, written once at the end
    # path -> fingerprint of the bytes read, this run: what the result cache keys findings by (a
    # run without the cache hashes nothing for it: a word scan read 5 000 files of the project)
    seen: dict[str, str] | None = {} if use_cache else None
    index, root = project_index(given, config, use_cache=use_cache, batch=later, store=store, seen=seen, root=root)
    # Each Python file's module; the first file of a name holds it (as ProjectIndex.add decides).
    kinds = [kind_of(p, d) for p, d in files]
    placed = iter(name_modules(index, root, [p for (p, _d), kind in zip(files, kinds) if kind == "python"]))
    places = [next(placed) if kind == "python" else None for kind in kinds]
    names: list[tuple[str, bool] | None] = [place[:2] if place is not None else None for place in places]
    holder: dict[str, int] = {}
    for i, named in enumerate(names):
        if named is not None:
            holder.setdefault(named[0], i)
    reuse = ResultCache(store, config, root, index.loader, files, kinds, names, holder, seen, later) if store is not None else None
    done: list[FileResult | None] = [reuse.lookup(i) if reuse is not None else None for i in range(len(files))]
    stale = [i for i, r in enumerate(done) if r is None]
    plan = _FactsPlan([files[i] for i in stale], config, store, jobs, seen, keep=reuse is None,
                      wanted=frozenset(k for k, i in enumerate(stale) if i in reuse.through_deps) if reuse else frozenset(),
                      kinds=[kinds[i] for i in stale], pool=pool)
    loader = index.loader
    # The files whose results came from the cache join the index only when a lookup reaches them.
    loader.checked = {name: (files[i][0], names[i][1]) for name, i in holder.items() if done[i] is not None}
    displays = {str(files[i][0]): files[i][1] for i in holder.values()}
    loader.extract_checked = lambda path: cached_facts(path, displays[str(path)], store, config.max_file_size,
                                                       later, seen=seen)
    # The rules of the first files run while the pool extracts the others (the parent's part of a
    # cold run, ~3 s over timm + torchvision, came after the pool's). Every re-run file is the
    # index's module from the start, as when all were added before any rule ran: a lookup of one
    # whose facts are not in yet waits for them (ProjectFiles.load_checked), and each file is
    # named by its module before its facts come (ProjectIndex.by_path).
    at = {i: k for k, i in enumerate(stale)}
    loader.pending = {name: _waiting(plan, at[i], names[i][1]) for name, i in holder.items() if i in at}
    loader.pending_paths = {name: files[i][0] for name, i in holder.items() if i in at}
    for i in stale:
        index.by_path.setdefault(files[i][1], names[i][0] if names[i] is not None else "")
    extraction = None
    if plan.pooled:
        extraction = threading.Thread(target=plan.run, kwargs={"in_thread": True}, name="gradlint-facts", daemon=True)
    with _joined_if_interrupted(extraction):
        if extraction is not None:
            extraction.start()
            # The pool forks its processes at its first job: this thread does nothing (no import, no
            # lock taken) until they exist, so that none inherits a lock held here.
            plan.launched.wait()
            if plan.start_failed is not None:
                extraction.join()
                extraction = None
                result.warnings.append(f"worker processes could not be started ({plan.start_failed}): "
                                       "the files are checked in this process")
                plan.in_process()
        else:
            plan.run(largest_first=False)

        def checked_at(modules: Iterable[str]) -> list[int]:
            """The positions in `plan` of the modules, among those it extracts."""
            return [at[holder[name]] for name in modules if holder.get(name) in at]

        refreeze = not gc.get_freeze_count()
        with _kept_for_the_run(), plan.frozen_until_joined(refreeze):
            rules = load_rules() if stale else {}
            setup = RuleSetup(config, rules)
            for k, i in enumerate(stale):
                if reuse is not None and extraction is not None and not plan.arrived[k].is_set():
                    # Waiting for the workers: the facts of the modules reached so far are stored now,
                    # and the result entries of the files done, 64 at a time at least (one entry
                    # between two files' rules cost five times as much).
                    if reuse.fresh:
                        fresh, reuse.fresh = reuse.fresh, []
                        plan.store_reached(checked_at(fresh), later, until=plan.arrived[k])
                    if len(reuse.kept) >= 64:
                        reuse.flush(index, until=plan.arrived[k])
                f = plan.get(k)
                if f.kind != "python" or names[i] is None:
                    index.by_path.setdefault(f.path, "")
                else:
                    name, is_package = names[i]
                    if holder[name] != i:
                        index.module(name)  # the file holding the name first, also when it is not re-run
                    index.add(name, f, is_package, places[i][2])
                if refreeze and extraction is not None and not extraction.is_alive():
                    gc.freeze()  # the facts that came in since the rules began (_kept_for_the_run)
                    refreeze = False
                start = index.start_file()
                rel = relative_path(files[i][0], config, setup.folders)
                done[i] = _in_cells(run_rules(f, config, index, rules, rel, setup), f)
                if reuse is not None:
                    reuse.keep(i, done[i], f, *index.read_since(start))
            if extraction is not None:
                extraction.join()  # inside: what it froze is unfrozen with the rest
    plan.finish(later)
    if reuse is not None:
        plan.store_reached(checked_at(sorted(reuse.reached)), later)
        reuse.flush(index)
    later.write()  # facts, results and the modules read: each folder's pack written once
    result.files.extend(r for r in done if r is not None)
    return result


@contextmanager
def _joined_if_interrupted(extraction: threading.Thread | None) -> Iterator[None]:
    """Ctrl-C (or a failure) in this thread while the facts thread runs the pool: that thread's
    runs are ended and it is joined before the error goes on, so that no thread of gradlint runs
    while Python shuts down (one left running crashed the interpreter's finalisation: exit -11
    after 'gradlint: interrupted', for a Ctrl-C sent 0.25-0.6 s into a run)."""
    try:
        yield
    except BaseException:
        if extraction is not None and extraction.is_alive():
            from gradlint.pool import end_runs_of

            end_runs_of(extraction)
            extraction.join(10)
        raise


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
    from gradlint.source import decode, decode_error, extract_python_text

    if display.endswith(".onnx"):
        return RunResult(files=[FileResult(path=display, skipped="an ONNX model cannot be read from stdin")])
    if display.endswith(".ipynb"):
        facts = extract_notebook_bytes(data, display)
    else:
        try:
            facts = extract_python_text(decode(data), display)
        except (UnicodeDecodeError, SyntaxError, LookupError) as exc:
            facts = FileFacts(path=display, kind="python", input_errors=(decode_error(data, exc),))
    rules = load_rules()
    # Names resolve across the project of `display`, as in `gradlint check` of that file.
    later = cache.Batch()
    index, root = project_index([Path(display)], config, use_cache=use_cache, batch=later)
    add_to_index(index, root, Path(display), facts)
    result = run_rules(facts, config, index, rules, relative_path(display, config))
    later.write()
    return RunResult(files=[_in_cells(result, facts)], warnings=config_warnings(config))


def check_source(source: str | bytes, config: Config | None = None, *, path: str = "example.py",
                 extra_files: dict[str, str] | None = None) -> list[Finding]:
    """Check source text as if it were a file of a run (tests, examples, the probe)."""
    import tempfile  # (and shutil, random, bz2...: tests and examples only, not `gradlint check`)

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
