"""The project on disk: its root, each module's qualified name from its path, each file's top-level
names (ModuleSymbols), and the loader that summarises a referenced module the run did not check,
of the project or of an installed library (located on disk, never imported).

The resolution itself (imports, re-exports, `*`) is pure data and lives in gradlint.facts.project.
"""

from __future__ import annotations

import ast
import gc
import os
import stat
import sys
import sysconfig
from pathlib import Path
from typing import Callable, Container, Iterable, Mapping

from gradlint.facts.files import FileFacts, ModuleSymbols
from gradlint.facts.project import holds_word
from gradlint.inputs import read_fd

PROJECT_MARKERS = ("pyproject.toml", "setup.cfg", ".git")
# Files of the project scanned for one word (gradcheck calls), at most.
MAX_SCANNED = 20000
MAX_SCANNED_BYTES = 8 * 1024 * 1024
# Bytes of scanned files kept for the run's later word scans, at most (each scan read every file
# again: 0.3 s a word on a project of 5 000 files); files past it are read again by each scan.
MAX_KEPT_BYTES = 128 << 20
# Installed libraries: modules the lookups of one checked file read, and their bytes, at most.
# Resolving one name of timm or torchvision reads 2-5 modules; what a budget cuts resolves to
# nothing (never a finding). The budget is each file's (it was the run's: which lookups it cut
# depended on the other files of the run, and a cached run that checked one file again resolved
# what the full run had not); the run's own bounds what a repository of a thousand files, each
# naming hundreds of modules of a `library-paths` folder it ships, can make one run read.
MAX_LIBRARY_MODULES = 512
MAX_LIBRARY_BYTES = 64 << 20
MAX_RUN_LIBRARY_MODULES = 8192
MAX_RUN_LIBRARY_BYTES = 512 << 20
# Top-level packages never read from the libraries: gradlint models torch.nn from its own tables,
# and reading torch would only make names such as `nn.Module` resolve into its sources.
NEVER_READ = frozenset({"torch"})


def find_project_root(paths: Iterable[Path], fallback: Path) -> Path:
    """The nearest folder above the first checked path holding pyproject.toml, setup.cfg or .git;
    when none does, `fallback` (the configuration's root: the working folder without one) if the
    path lies below it, else the path's own folder. A file checked from an unrelated working folder
    (`cd ~ && gradlint check /tmp/x/model.py`) must not make that folder its project: the callers
    of its functions would be looked for in every file below it."""
    for p in paths:
        try:
            start = p.resolve()
            if not start.exists():
                continue
            folder = start if start.is_dir() else start.parent
            base = fallback.resolve()
        except (OSError, RuntimeError):  # unreadable, or a symlink loop (RuntimeError before 3.13)
            continue
        for cand in (folder, *folder.parents):
            if any(_exists(cand / m) for m in PROJECT_MARKERS):
                return cand
        return base if folder == base or base in folder.parents else folder
    return fallback.resolve()


def by_project_root(paths: Iterable[Path], fallback: Path) -> list[tuple[Path, list[Path]]]:
    """The paths of one run grouped by project (find_project_root of each), in the order each
    project is first named; a path inside another of the paths that is a folder goes with that
    folder, as its walk would find it. The root was the first path's project's: `check a/x.py
    b/pkg/m.py` with a/ and b/ projects of their own made a/ the root of m.py too, whose imports of
    its own package then resolved to nothing, and m.py's findings depended on the order of the
    paths (and on which files pre-commit put in one batch)."""
    paths = list(paths)
    roots: dict[Path, list[Path]] = {}
    folders: list[tuple[Path, Path]] = []  # (a folder among the paths, resolved; its root)
    memo: dict[Path, Path] = {}
    resolved: list[Path | None] = []
    for p in paths:
        try:
            real = p.resolve()
            resolved.append(real)
            if real.is_dir():
                folders.append((real, find_project_root([p], fallback)))
        except (OSError, RuntimeError):
            resolved.append(None)
    for p, real in zip(paths, resolved):
        root = None
        if real is not None:
            # (the outermost folder holding it: a folder inside another goes with that one too)
            outer = [(f, r) for f, r in folders if f != real and f in real.parents]
            if outer:
                root = min(outer, key=lambda fr: len(fr[0].parts))[1]
        if root is None:
            # (pre-commit names hundreds of files of a few folders: each folder looked up once)
            folder = None if real is None or not _exists(real) else real if real.is_dir() else real.parent
            if folder is None:
                root = find_project_root([p], fallback)  # (missing or unreadable: the fallback)
            else:
                if folder not in memo:
                    memo[folder] = find_project_root([p], fallback)
                root = memo[folder]
        roots.setdefault(root, []).append(p)
    return list(roots.items())


_UNREAD = object()  # (ProjectFiles._parsed: a file not parsed yet)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a folder we may not read: no marker seen there
        return False


def import_roots(root: Path) -> tuple[Path, ...]:
    """Folders absolute imports start from: `src/` first (the src layout), then the root."""
    src = root / "src"
    if src.is_dir() and not (src / "__init__.py").exists():
        return (src, root)
    return (root,)


def module_name(path: Path, root: Path, homes: Mapping[Path, str] | None = None) -> tuple[str, bool]:
    """(qualified module name, is a package) of a .py file.

    A file inside regular packages (folders with `__init__.py`) is named from the top of its
    package, as Python imports it; anything else (namespace packages, scripts) from the import
    root it lies under (`src/` or the project root). Outside the project: its stem. `homes`
    (module_places): the folders above packages whose names the run's files share, whose
    packages are named from the import root too.
    """
    name, is_package, _home = module_place(path, root, homes)
    return name, is_package


def module_place(path: Path, root: Path, homes: Mapping[Path, str] | None = None) -> tuple[str, bool, str]:
    """module_name's (name, is a package), and the module's home: the folder its absolute imports
    look in first, as a name from the import root ('' when that folder is an import root or lies
    under none). Python puts a script's folder first on its path: a script's home is its folder
    (`from utils import x` in ex/mnist/train.py is ex/mnist/utils.py, whatever the root holds),
    and a package's modules look in the folder above the package (the folder of the script that
    imports them: ex/mnist/models/blocks.py's `from models.layers import act` is
    ex/mnist/models/layers.py)."""
    return _Places(root).place(path.resolve(), homes)


def module_places(paths: list[Path], root: Path) -> tuple[list[tuple[str, bool, str] | None], dict[Path, str]]:
    """module_place of each of a run's files (None for a path that cannot be resolved), each
    folder walked once; and the homes that name packages from the import root: the folders above
    regular packages whose top-level package name two files share, or a package or module under
    an import root holds. `check ex` over
    ex/mnist/models/blocks.py and ex/cifar/models/blocks.py (each experiment's own `models`
    package, a build/lib copy beside the sources) named both `models.blocks`, and the first
    file's classes answered the other's imports. Each such folder is named from the import root
    (`ex.mnist`); a package at an import root keeps its name, as Python's path finds it first."""
    places = _Places(root)
    resolved: list[Path | None] = []
    tops: dict[str, set[Path]] = {}
    for p in paths:
        try:
            path = p.resolve()
            top, parts = places.top(path)
        except (OSError, RuntimeError, ValueError):
            resolved.append(None)
            continue
        resolved.append(path)
        if top != path.parent:
            # (by top-level package: ex/mnist's checked models/net.py and ex/cifar's checked
            # models/blocks.py share no module name, but mnist's `from models.blocks import` must
            # not reach cifar's file)
            tops.setdefault(parts[0], set()).add(top)
    for name, shared in tops.items():
        if shared <= places.roots:
            continue
        # A package of that name under an import root that the run does not check (the root's
        # `models/` beside the checked ex/cifar/models/): its name is the root's, as Python's
        # path from the root finds it (a pre-commit run of `train.py ex/cifar/models/layers.py`
        # gave train.py's `models.layers` cifar's file).
        on_disk = _find_under(places.bases, name)
        if on_disk is not None and Path(os.path.realpath(on_disk)).parent not in {top / name for top in shared}:
            shared.add(places.bases[0])
    homes: dict[Path, str] = {}
    for shared in tops.values():
        if len(shared) < 2:
            continue
        for top in shared:
            if top not in places.roots and top not in homes:
                # outside every import root: the folder's own path, still a name nobody imports
                homes[top] = places.dotted(top, []) or ".".join(map(_escape, top.parts[1:]))
    return [places.place(path, homes) if path is not None else None for path in resolved], homes


class _Places:
    """Module names and homes of files below one project root: the import roots found once, and
    each folder's top of regular packages worked out once (a run names thousands of files of a
    few hundred folders)."""

    def __init__(self, root: Path) -> None:
        self.bases = [base.resolve() for base in import_roots(root)]
        self.roots = set(self.bases)
        self._tops: dict[Path, Path] = {}

    def top(self, path: Path) -> tuple[Path, list[str]]:
        """The top folder of the regular packages holding `path` (resolved; its own folder when
        it is in none), and the parts of its name from there."""
        parts: list[str] = [] if path.name == "__init__.py" else [path.stem]
        folder = path.parent
        top = self._tops.get(folder)
        if top is None:
            top = folder
            while (top / "__init__.py").exists() and top != top.parent:
                top = top.parent
            self._tops[folder] = top
        if top != folder:
            parts = list(folder.relative_to(top).parts) + parts
        return top, parts

    def dotted(self, folder: Path, parts: list[str]) -> str:
        """The dotted name of `parts` in `folder` from the import root it lies under ('' when none)."""
        for base in self.bases:
            try:
                rel = folder.relative_to(base)
            except ValueError:
                continue
            return ".".join([*map(_escape, rel.parts), *parts])
        return ""

    def place(self, path: Path, homes: Mapping[Path, str] | None) -> tuple[str, bool, str]:
        is_package = path.name == "__init__.py"
        top, parts = self.top(path)
        if top != path.parent:
            named = homes.get(top) if homes else None
            if named:
                return f"{named}.{'.'.join(parts)}", is_package, named
            return ".".join(parts), is_package, self.dotted(top, [])
        home = self.dotted(top, [])
        return (f"{home}.{'.'.join(parts)}" if home else ".".join(parts)) or path.stem, is_package, home


def module_symbols(source: str | ast.Module) -> ModuleSymbols | None:
    """Top-level imports and bindings of a module (its text, or CPython's AST of it), read with
    CPython's parser (runs nothing); None when it does not parse."""
    if isinstance(source, ast.Module):
        tree = source
    else:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
    imports: dict[str, list[str]] = {}
    classes: list[str] = []
    defined: list[str] = []
    star: list[str] = []
    stack: list[ast.stmt] = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    imports.setdefault(alias.asname, []).append(alias.name)
                else:
                    head = alias.name.split(".", 1)[0]
                    imports.setdefault(head, []).append(head)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            for alias in node.names:
                if alias.name == "*":
                    star.append(base)
                    continue
                full = f"{base}{alias.name}" if base.endswith(".") or not base else f"{base}.{alias.name}"
                imports.setdefault(alias.asname or alias.name, []).append(full)
        elif isinstance(node, ast.ClassDef):
            classes.append(node.name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defined.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        defined.append(n.id)
        elif isinstance(node, (ast.If, ast.Try, ast.With)) or type(node).__name__ == "TryStar":
            # `try: from a import X except ImportError: X = None` binds X both ways
            inner: list[ast.stmt] = list(node.body)
            for handler in getattr(node, "handlers", []) or []:
                inner.extend(handler.body)
            inner += list(getattr(node, "orelse", []) or []) + list(getattr(node, "finalbody", []) or [])
            stack.extend(reversed(inner))
    return ModuleSymbols(
        imports=tuple((k, tuple(dict.fromkeys(v))) for k, v in sorted(imports.items())),
        classes=tuple(dict.fromkeys(classes)),
        defined=tuple(dict.fromkeys(d for d in defined if d not in imports)),
        star=tuple(dict.fromkeys(star)),
    )


def site_packages(venv: Path) -> list[Path]:
    """The site-packages folders of a virtual environment: `lib/pythonX.Y/site-packages` (the
    running Python's version first, then the others, newest first) and Windows' `Lib/site-packages`."""
    mine = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    try:
        found = [p for p in (venv / "lib").glob("python*/site-packages") if p.is_dir()]
    except OSError:
        found = []
    found.sort(key=lambda p: (p.parent.name != mine, _version(p.parent.name)))
    windows = venv / "Lib" / "site-packages"
    if _is_dir(windows) and windows not in found:
        found.append(windows)
    return found


def _version(name: str) -> tuple[int, ...]:
    """'python3.12' -> (-3, -12): newest first when sorted."""
    digits = name.removeprefix("python").split(".")
    return tuple(-int(d) if d.isdigit() else 0 for d in digits)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def library_roots(root: Path, configured: Iterable[str | Path] = (),
                  environ: Mapping[str, str] | None = None, *, interpreter: bool = True) -> tuple[Path, ...]:
    """The folders installed libraries are looked for in, first match wins:

    1. `library-paths` of the configuration, in the order written (the user said so);
    2. the project's own virtual environment, `.venv/` then `venv/` under the project root: the
       libraries the project runs with, also when gradlint runs in another environment (the
       pre-commit hook runs it in its own);
    3. the active environment, `$VIRTUAL_ENV` (pre-commit sets it to the hook's own);
    4. the site-packages of the Python running gradlint (sysconfig's purelib and platlib).

    Folders that do not exist are left out, and so is the project itself (its modules are found
    first anyway)."""
    env = os.environ if environ is None else environ
    cands: list[Path] = [Path(p) for p in configured]
    root = root.resolve()
    for name in (".venv", "venv"):
        cands.extend(site_packages(root / name))
    if env.get("VIRTUAL_ENV"):
        cands.extend(site_packages(Path(env["VIRTUAL_ENV"])))
    if interpreter:
        paths = sysconfig.get_paths()
        cands.extend(Path(paths[k]) for k in ("purelib", "platlib") if paths.get(k))
    out: list[Path] = []
    for cand in cands:
        try:
            real = cand.resolve()
        except (OSError, RuntimeError):
            continue
        if real in out or real == root or not _is_dir(real):
            continue
        out.append(real)
    return tuple(out)


def _safe(module: str) -> bool:
    """Whether `module` can name a file below a folder: dotted identifiers, or (a home's name,
    made from folder names: `my-exp.models`) parts that are no path of their own."""
    return bool(module) and all(p.isidentifier() or (p and p not in (".", "..") and not any(
        c in p for c in "/\\\0:")) for p in module.split("."))


def _escape(folder: str) -> str:
    """A folder's name as a part of a module name: its dots (and the escape character) escaped,
    so that ex/v1.2 and ex/v1/2 name two homes, not one (_find_under undoes it)."""
    return folder.replace("%", "%25").replace(".", "%2e") if "." in folder or "%" in folder else folder


def _find_under(bases: Iterable[Path], module: str) -> Path | None:
    """The file of `module` under the first of `bases` that holds one: `a/b.py`, then
    `a/b/__init__.py` (a regular file, links followed). String paths and one stat each: the
    result cache locates every checked file's module, and pathlib cost ten times the stat."""
    parts = module.split(".")
    if "%" in module:
        parts = [p.replace("%2e", ".").replace("%25", "%") for p in parts]
    rel = os.path.join(*parts) if module else ""
    for base in bases:
        folder = str(base)
        for cand in (os.path.join(folder, rel + ".py") if rel else None, os.path.join(folder, rel, "__init__.py")):
            if cand is None:
                continue
            try:
                if stat.S_ISREG(os.stat(cand).st_mode):
                    return Path(cand)
            except (OSError, ValueError):
                continue
    return None


class ProjectFiles:
    """gradlint.facts.project.ModuleLoader over the files of one project folder, and of the
    installed libraries found in `libraries` (folders, searched in order after the project).

    `extract(path)` gives a file's facts (the runner passes its cached extraction, which names
    the file as discovery would, so a module is cached once whether checked or referenced);
    `list_files()` the project's .py files, honouring excludes and .gitignore. A library module
    is read in two steps: its top-level names first (`load_library`: CPython's `ast`, what
    resolving re-exports needs; `read_library(path)` gives them and the bytes read), then its
    models only when a class of it is asked for (`library_facts`, through `extract_library`).
    Neither runs anything of the library.
    """

    def __init__(self, root: Path, extract: Callable[[Path], FileFacts],
                 list_files: Callable[[], list[Path]] | None = None, *,
                 libraries: Iterable[Path] = (), extract_library: Callable[[Path], FileFacts] | None = None,
                 read_library: Callable[[Path], tuple[FileFacts | None, int]] | None = None,
                 cached_lower: Callable[..., object] | None = None,
                 checked: Mapping[str, tuple[Path, bool]] | None = None,
                 extract_checked: Callable[[Path], FileFacts] | None = None,
                 extract_calls: Callable[..., FileFacts | None] | None = None) -> None:
        self.root = root.resolve()
        # checked files of the run that were not added to the index (their results came from the
        # cache): module name -> (path, is a package), summarised by extract_checked when reached
        self.checked = checked or {}
        self.extract_checked = extract_checked
        # checked files of the run whose facts are still being extracted: module name -> what
        # waits for them and gives (facts, is a package); the runner adds them to the index too
        self.pending: dict[str, Callable[[], tuple[FileFacts, bool]]] = {}
        self.pending_paths: dict[str, Path] = {}  # and their files
        # cached_lower(path, cls, args, compute): the runner's cache around a re-run (parsing the
        # block's file is most of it: 2 s of a warm run over timm and torchvision without it)
        self.cached_lower = cached_lower
        # extract_calls(display, text): the calls of a file whose facts hold its symbols only (the
        # runner's calls_facts, cached); `load_calls` hands it the text those facts keep
        self.extract_calls = extract_calls
        self.roots = import_roots(self.root)
        # the folders whose packages are named from the import root in this run (module_places)
        self.homes: dict[Path, str] = {}
        # every checked Python file of the run by its module name, and the names by real path:
        # a name is that file before any other (a root's `models/blocks.py` must not stand for
        # the checked ex/mnist/models/blocks.py named `models.blocks`), and a file reached by
        # another name (its home's) is the checked module (`alias`)
        self.checked_paths: dict[str, Path] = {}
        self.checked_names: dict[str, str] = {}
        self._places: _Places | None = None  # (place's: each folder's package top found once)
        self.extract = extract
        self.list_files = list_files
        self._files: list[Path] | None = None  # listed once per run: every scanned word reuses it
        # The bytes the first word scan read, for the later ones (None: not scanned, a FIFO, too
        # large), within MAX_KEPT_BYTES; a file missing here is read again.
        self._kept: dict[Path, bytes | None] = {}
        self._kept_bytes = 0
        self._parsed: dict[Path, object] = {}  # SourceFile (or None) of the files lower() re-runs
        self.libraries = tuple(libraries)
        self.extract_library = extract_library
        self.read_library = read_library
        self.library_paths: dict[str, Path] = {}  # module -> the file its names were read from
        self.library_modules = self.library_bytes = 0  # read for the file being checked
        self.run_modules = self.run_bytes = 0  # read in the run
        self.cut = 0  # modules a budget kept from being read (ProjectIndex: not "absent")
        # scanned(path, data): told the whole bytes of each file a word scan read (the runner keeps
        # their fingerprint: its result cache needs those of every listed file, and read each again)
        self.scanned: Callable[[Path, bytes], None] | None = None

    def find(self, module: str) -> Path | None:
        checked = self.checked_paths.get(module)
        return checked if checked is not None else _find_under(self.roots, module)

    def alias(self, module: str) -> str | None:
        """The name the run gives the checked file that `module` names from the import root, when
        that is another name (`ex.mnist.models.blocks`, a home's name for the checked
        `models.blocks`): one module, not two."""
        if not self.checked_names or not _safe(module):
            return None
        path = _find_under(self.roots, module)
        if path is None:
            return None
        name = self.checked_names.get(os.path.realpath(path))
        return name if name is not None and name != module else None

    def load(self, module: str) -> tuple[FileFacts, bool] | None:
        if not _safe(module):
            return None
        path = self.find(module)
        if path is None:
            return None
        return self.extract(path), path.name == "__init__.py"

    def place(self, path: Path) -> tuple[str, bool, str]:
        """module_place of a file, with this run's homes, each folder's package top found once (a
        word scan names every file that holds the word)."""
        if self._places is None:
            self._places = _Places(self.root)
        return self._places.place(path.resolve(), self.homes)

    def home_of(self, module: str) -> str:
        """The home of project module `module` (module_place): where its absolute imports look
        first, as a name; '' when it has none or is not a file of the project."""
        path = self.find(module) if _safe(module) else None
        if path is None:
            return ""
        try:
            return self.place(path)[2]
        except (OSError, RuntimeError, ValueError):
            return ""

    def load_checked(self, module: str) -> tuple[FileFacts, bool] | None:
        """The facts of a checked file the run did not add to the index, by its module name: one
        whose result came from the cache, or one whose facts are not in yet (this waits)."""
        waiting = self.pending.get(module)
        if waiting is not None:
            return waiting()
        hit = self.checked.get(module)
        if hit is None or self.extract_checked is None:
            return None
        return self.extract_checked(hit[0]), hit[1]

    def load_calls(self, facts: FileFacts, module: str = "") -> FileFacts | None:
        """The numerics and training-loop facts of a project module whose `facts` hold its symbols
        only (no torch in its text: the extraction skipped it) or whose loop facts were skipped,
        read from the text those facts keep, so both are of the same bytes (and the result
        cache's record of the module covers them); None when that text cannot be parsed or
        extracted. `module`: its name, whose file's neighbours may define its config classes."""
        if self.extract_calls is None or facts.source is None:
            return None
        path = self.find(module) if module else None
        return self.extract_calls(facts.path, facts.source, path)

    def checked_mentioning(self, word: str) -> list[str]:
        """The module names of the checked files not added to the index whose text holds `word`
        (the index holds the added ones: ProjectIndex.gradchecked looks at both)."""
        needle = word.encode()
        return [module for module, (path, _is_package) in self.checked.items() if _holds(path, needle)]

    def pending_mentioning(self, word: str, skip: Container[str] = ()) -> list[str]:
        """The module names of the checked files whose facts may still be on their way (`pending`)
        whose text holds `word`, but those in `skip` (the ones the index holds already)."""
        needle = word.encode()
        return [module for module, path in self.pending_paths.items() if module not in skip and _holds(path, needle)]

    def lower(self, module: str, display: str, cls: str, args: tuple, function: bool = False) -> object | None:
        """The IR of class `cls` of `module` built with a caller's arguments (ir.Extern.args), or
        None (gradlint.model.inline); each file parsed once per run. `function`: `cls` names a
        top-level function, and the IR is that of the module it returns (rerun.lower_function)."""
        from gradlint.source import parsed, rerun

        path = self.find(module) if _safe(module) else None
        if path is None:
            # a block of an installed library that load_library read (through the safe reader)
            path = self.library_paths.get(module)
        if path is None:
            # a checked file the import roots do not reach (a package below another folder): the
            # file its facts name, when that is the module (display paths are relative to the
            # working folder, as discovery names them)
            cand = Path(display)
            try:
                if not cand.suffix == ".py" or not cand.is_file() or self.place(cand)[0] != module:
                    return None
            except OSError:
                return None
            path = cand

        def compute() -> object | None:
            # The file's trees stay alive for the run (one parse per file): the cyclic collector's
            # full passes, started by the parse's millions of allocations, walked them again and
            # again (0.3 s of the re-runs on timm + torchvision) to free nothing. It rests
            # meanwhile, as in extract_python_text.
            collecting = gc.isenabled()
            gc.disable()
            try:
                # Only what a re-run of `cls` can reach is parsed (the bodies of the file's other
                # classes and functions are left out, lines kept: vision_transformer.py's 5 300
                # lines for its Block); a later re-run that needs more parses again, keeping both.
                src = self._parsed.get(path, _UNREAD)
                if src is _UNREAD or (src is not None and src.units is not None and cls not in src.units):
                    wanted = {cls} | (src.units if src is not _UNREAD else frozenset())
                    src = self._parsed[path] = parsed(path, display, wanted=wanted)
                if src is None:
                    return None
                return rerun.lower_function(src, cls, args) if function else rerun.lower_class(src, cls, args)
            finally:
                if collecting:
                    gc.enable()

        # the cache's key names the definition: `def:` never begins a class name
        key = "def:" + cls if function else cls
        return self.cached_lower(path, key, args, compute) if self.cached_lower is not None else compute()

    def load_library(self, module: str) -> tuple[FileFacts, bool] | None:
        """The top-level names of module `module` of an installed library (no networks yet), and
        whether it is a package; None when no library folder holds it, when the project has a
        top-level module of that name (it shadows the library, as on Python's path), when it is
        torch, or past the file's or the run's budget (`cut` counts those)."""
        if self.read_library is None:
            return None
        path = self.library_file(module)
        if path is None:
            return None
        if (self.library_modules >= MAX_LIBRARY_MODULES or self.library_bytes >= MAX_LIBRARY_BYTES
                or self.run_modules >= MAX_RUN_LIBRARY_MODULES or self.run_bytes >= MAX_RUN_LIBRARY_BYTES):
            self.cut += 1
            return None
        self.library_modules += 1
        self.run_modules += 1
        try:
            # the runner's reader: special files refused before any open, at most max-file-size
            # read, the names cached like a file's facts
            facts, size = self.read_library(path)
        except Exception:  # inputs.Refused: a library we cannot read is unknown
            return None
        self.library_bytes += size
        self.run_bytes += size
        if facts is None or facts.symbols is None:
            return None
        self.library_paths[module] = path
        return facts, path.name == "__init__.py"

    def start_file(self) -> None:
        """The rules of another checked file begin: its own library budget."""
        self.library_modules = self.library_bytes = 0

    def library_file(self, module: str) -> Path | None:
        """The file of an installed library that module `module` would be read from (the run's
        budgets aside)."""
        if not self.libraries:
            return None
        parts = module.split(".")
        if not module or any(not p.isidentifier() for p in parts) or parts[0] in NEVER_READ:
            return None
        if self.find(parts[0]) is not None:
            return None
        return _find_under(self.libraries, module)

    def locate(self, module: str) -> tuple[str, Path] | None:
        """Where a lookup of module `module` leads when no checked file holds it: a file of the
        project ('project'), of an installed library ('library'), or nowhere (None); a re-run of
        one of its classes reads that file too. The result cache keys findings by it."""
        if not _safe(module):
            return None
        path = self.find(module)
        if path is not None:
            return "project", path
        path = self.library_file(module) if self.read_library is not None else None
        return ("library", path) if path is not None else None

    def library_facts(self, module: str) -> FileFacts | None:
        """The models of a library module `load_library` read (the networks and class summaries
        of its classes; never its training loops or numerics: nothing in it is reported)."""
        path = self.library_paths.get(module)
        if path is None or self.extract_library is None:
            return None
        return self.extract_library(path)

    def modules_mentioning(self, word: str, whole: bool = False) -> list[str]:
        if self.list_files is None:
            return []
        needle = word.encode()
        out: list[str] = []
        if self._files is None:
            self._files = self.list_files()[:MAX_SCANNED]
        scanned = self.scanned
        kept = self._kept
        for path in self._files:
            text = kept.get(path, b"")
            if text is None:
                continue  # not a file a scan reads
            if not text and path not in kept:
                data = _scan(path)
                if data is None:
                    kept[path] = None
                    continue
                text = data[0]
                if scanned is not None and data[1]:
                    scanned(path, text)
                if self._kept_bytes + len(text) <= MAX_KEPT_BYTES:
                    kept[path] = text
                    self._kept_bytes += len(text)
            if holds_word(text, needle, whole):
                try:
                    out.append(self.place(path)[0])
                except OSError:
                    continue
        return out


_SCAN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def _holds(path: Path, needle: bytes) -> bool:
    """Whether the file's bytes hold `needle` (_scan)."""
    data = _scan(path)
    return data is not None and needle in data[0]


def _scan(path: Path) -> tuple[bytes, bool] | None:
    """The bytes of a file a word scan reads, and whether they are all of it (False: it grew while
    read); None for what is not scanned. Only regular files of a sane size: a FIFO or a
    device named x.py would hang or exhaust memory (the open never blocks, the open file is
    checked), and no source file that long calls gradcheck. One open, fstat and read, without
    pathlib: a scan reads every file of the project (0.25 s for 5 000 files, now 0.15 s)."""
    try:
        fd = os.open(path, _SCAN_FLAGS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SCANNED_BYTES:
            return None
        data = read_fd(fd, st.st_size + 1)
        return data, len(data) <= st.st_size
    except OSError:
        return None
    finally:
        os.close(fd)

