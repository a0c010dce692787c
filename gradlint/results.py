"""The result cache of a run (ResultCache): each checked file's findings, stored with what they were
computed from and reused while none of it changed; and the helpers the runner (gradlint.api)
shares with it: a file's cache kind, and an entry joining the run's batch."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path

from gradlint import cache, inputs
from gradlint.config import Config
from gradlint.facts.files import FileFacts
from gradlint.facts.project import ProjectIndex
from gradlint.findings import FileResult


def kind_of(path: Path, display: str) -> str:
    return "onnx" if path.suffix == ".onnx" or display.endswith(".onnx.txt") else "python"


def store_entry(store: cache.Store, made: cache.Pending | None, batch: cache.Batch | None) -> None:
    """A new cache entry joins the run's batch (written once at the end), or is written now."""
    if made is None:
        return
    if batch is not None:
        batch.add(store, made)
    else:
        cache.write(store, [made])


class ResultCache:
    """The result cache of one run: each checked file's FileResult, kept after its rules ran, stored
    once all have run (`flush`), and reused while nothing it was computed from changed. Its key is the file's content, the run's
    configuration (all of it), root and library folders, and gradlint's code (cache.slot); the
    entry holds what each module the file's lookups reached resolved to (the file, by content, or
    nothing: a module created later invalidates it), and, when a lookup scanned the project's
    text (ProjectIndex.mentioning), the project's file list by content. Checked again on a warm
    run without reading any facts."""

    def __init__(self, store: cache.Store, config: Config, root: Path, loader, files: list[tuple[Path, str]],
                 kinds: list[str], names: list[tuple[str, bool] | None], holder: dict[str, int],
                 seen: dict[str, str], batch: cache.Batch) -> None:
        self.store, self.loader, self.files, self.names, self.holder, self.seen = (
            store, loader, files, names, holder, seen)
        self.max_size = config.max_file_size
        # Everything that can change a finding besides the files: the whole configuration (repr:
        # every field, rule options included), the project root, the library folders searched,
        # and Python's version (its `ast` reads library modules' names).
        self.run = hashlib.sha256(repr((config, str(root), loader.libraries, sys.version)).encode(
            "utf-8", "surrogateescape")).hexdigest()
        self.kinds = ["result:" + kind for kind in kinds]  # each file's entry kind (kind_of: the caller's)
        self.resolved: dict[str, str] = {}
        self.listing: str | None = None
        self.by_abspath: dict[str, str] | None = None  # a checked file's absolute path -> its key in seen
        self.batch = batch
        self.kept: list[tuple] = []  # the results `keep` was given, for `flush`
        self.kept_late: list[tuple] = []  # those of them that read a word scan
        # The files whose result went stale through what their lookups reached, the file itself
        # unchanged (lookup): their facts are stored for the next time (_later_read).
        self.through_deps: set[int] = set()
        # The modules the lookups of this run's files reached (keep): their facts are stored.
        self.reached: set[str] = set()
        self.fresh: list[str] = []  # the names reached since the caller last took them
        self._real: dict[str, str] = {}  # a file's folder -> its real path (_slot)

    def _slot(self, i: int, fingerprint: str) -> cache.Slot:
        # The file's real place too: two identical files shown alike (`m.py` checked from
        # a/pkg/ and from b/pkg/, one module name) shared one entry, though per-file-ignores
        # and the project around each differ (its folder resolved once per run)
        path = self.files[i][0]
        folder = self._real.get(str(path.parent))
        if folder is None:
            folder = self._real[str(path.parent)] = os.path.realpath(path.parent)
        return cache.slot(self.store, self.files[i][1], self.kinds[i],
                          f"{fingerprint}:{self.run}:{os.path.join(folder, path.name)}")

    def _own(self, i: int) -> str:
        named = self.names[i]
        return f"{named[0]}:{int(named[1])}" if named is not None else ""

    def lookup(self, i: int) -> FileResult | None:
        """The stored result of file `i`, when everything it depends on is as it was; else None."""
        path, display = self.files[i]
        if not cache.holds(self.store, display, self.kinds[i]):
            return None
        try:
            _data, fingerprint = inputs.read_input(path, self.max_size, whole=path.suffix != ".onnx")
        except inputs.Refused:
            return None
        self.seen[str(path)] = fingerprint
        got = cache.load(self.store, self._slot(i, fingerprint), str(path.parent), tuple)
        if not (got is not None and len(got) == 4 and type(got[0]) is FileResult and got[1] == self._own(i)
                and type(got[2]) is tuple and type(got[3]) is str):
            return None
        for dep in got[2]:
            if not (type(dep) is tuple and len(dep) == 2 and type(dep[0]) is str) or self.resolve(dep[0]) != dep[1]:
                self.through_deps.add(i)
                return None
        if got[3] and got[3] != self.project_text():
            self.through_deps.add(i)
            return None
        return got[0]

    def keep(self, i: int, result: FileResult, facts: FileFacts, modules: frozenset[str],
             words: frozenset[str]) -> None:
        """Keep file `i`'s result (not a failure of gradlint's own: that is tried again). Its entry
        is made by `flush`, with the others."""
        if modules:
            named = self.names[i]
            for m in modules:
                if m not in self.reached and (named is None or m != named[0]):
                    self.reached.add(m)
                    self.fresh.append(m)
        if result.internal_error or facts.internal_error:
            return
        # (a result that read a word scan is made last: its project text wants every file read)
        (self.kept_late if words else self.kept).append((i, result, facts.depends, modules, words))

    def flush(self, index: ProjectIndex | None = None, until: threading.Event | None = None) -> None:
        """The entries of the results kept, made one after another: made one at a time between
        two files' rules, each cost about five times as much (the code and data of the encoder
        gone from the processor's caches each time). `index`: the run's project index, whose
        modules' own dependencies join each entry's. With `until`, while the caller waits for the
        workers (stopping once it is set): the results that read no word scan are made then,
        the rest (`kept_late`) when the rules are done."""
        if until is None:
            kept, self.kept, self.kept_late = self.kept + self.kept_late, [], []
        else:
            kept, self.kept = self.kept, []
        # (names bound once: a cold run over 2 000 small files makes 2 000 entries here, and the
        # lookups of attributes and globals were a third of an entry's cost)
        files, seen, store, slot, entry, add = self.files, self.seen, self.store, self._slot, cache.entry, self.batch.add
        for n, (i, result, depends, modules, words) in enumerate(kept):
            if until is not None and until.is_set():
                self.kept.extend(kept[n:])
                return
            path = str(files[i][0])
            fingerprint = seen.get(path)
            if fingerprint is None:
                continue
            # (the folder as str(path.parent) names it, without making a Path: 2 000 ONNX models)
            folder = os.path.dirname(path) or "."
            if modules:
                deps = tuple([(name, self.resolve(name)) for name in sorted(modules)])
                depends = depends + self._reached_depends(modules, index, folder)
            else:
                deps = ()
            payload = (result, self._own(i), deps, self.project_text() if words else "")
            made = entry(slot(i, fingerprint), payload, folder, depends)
            if made is not None:
                add(store, made)

    def _reached_depends(self, modules: frozenset[str], index: ProjectIndex | None, folder: str) -> tuple[str, ...]:
        """The files the facts of the modules a file's lookups reached were read from besides
        their own (the config classes of other files their models were built with:
        FileFacts.depends), relative to that file's folder: a class summary or IR of a module
        changes with them."""
        if index is None or not modules:
            return ()
        out: dict[str, None] = {}
        here = os.path.abspath(folder)
        for name in sorted(modules):
            mod = index.modules.get(name)
            if mod is None or mod.library or not mod.facts.depends:
                continue
            i = self.holder.get(name)
            where = self.files[i][0] if i is not None else (self.loader.locate(name) or (None, None))[1]
            if where is None:
                continue
            there = os.path.dirname(os.path.abspath(str(where)))
            for dep in mod.facts.depends:
                out.setdefault(os.path.relpath(os.path.normpath(os.path.join(there, dep)), here).replace(os.sep, "/"))
        return tuple(out)

    def _fingerprint(self, path: Path) -> str:
        found = self.seen.get(str(path))
        if found is None:
            # A module's file as the loader finds it (absolute, under the project root) is often a
            # checked file, whose fingerprint `seen` holds under the path discovery gave it: the
            # bytes its facts were made from (reading it again cost a cached run a second read of
            # every file).
            if self.by_abspath is None:
                self.by_abspath = {os.path.abspath(str(p)): str(p) for p, _d in self.files}
            same = self.by_abspath.get(str(path))
            found = self.seen.get(same) if same is not None else None
        if found is None:
            try:
                found = inputs.read_input(path, self.max_size)[1]
            except inputs.Refused as exc:
                found = f"refused:{exc}"
            self.seen[str(path)] = found
        return found

    def resolve(self, module: str) -> str:
        """What a lookup of `module` reaches now: a checked file, another file of the project or
        of a library (each with its fingerprint), or nothing."""
        found = self.resolved.get(module)
        if found is None:
            where = self.loader.locate(module)
            found = "-" if where is None else f"{where[0]}:{where[1]}:{self._fingerprint(where[1])}"
            i = self.holder.get(module)
            if i is not None:
                # the checked file holds the name; a re-run of a class of it reads the file found
                path, display = self.files[i]
                found = f"checked:{display}:{self._fingerprint(path)}|{found}"
            self.resolved[module] = found
        return found

    def project_text(self) -> str:
        """The project's files that a scan for a word reads (ProjectFiles.modules_mentioning) and
        the checked files, by content: any change to one of them changes it."""
        if self.listing is None:
            from gradlint.source.index import MAX_SCANNED

            listed = self.loader.list_files()[:MAX_SCANNED] if self.loader.list_files is not None else []
            # and the checked files (GL406's question reads those outside the listing too)
            listed = [*listed, *(self.files[i][0] for i in self.holder.values())]
            h = hashlib.sha256()
            for path in listed:
                found = self.seen.get(str(path))
                if found is None:
                    try:
                        found = inputs.fingerprint(path)
                    except (inputs.Refused, OSError) as exc:
                        found = f"refused:{exc}"
                h.update(f"{path}\0{found}\0".encode("utf-8", "surrogateescape"))
            self.listing = h.hexdigest()
        return self.listing
