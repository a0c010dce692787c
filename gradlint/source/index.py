"""The project on disk: its root, each module's qualified name from its path, each file's top-level
names (ModuleSymbols), and the loader that summarises a referenced module the run did not check.

The resolution itself (imports, re-exports, `*`) is pure data and lives in gradlint.facts.project.
"""

from __future__ import annotations

import ast
import stat
from pathlib import Path
from typing import Callable, Iterable

from gradlint.facts.files import FileFacts, ModuleSymbols

PROJECT_MARKERS = ("pyproject.toml", "setup.cfg", ".git")
# Files of the project scanned for one word (gradcheck calls), at most.
MAX_SCANNED = 20000
MAX_SCANNED_BYTES = 8 * 1024 * 1024


def find_project_root(paths: Iterable[Path], fallback: Path) -> Path:
    """The nearest folder above the first checked path holding pyproject.toml, setup.cfg or .git;
    `fallback` (the configuration's root) when none does."""
    for p in paths:
        try:
            start = p.resolve()
            if not start.exists():
                continue
            folder = start if start.is_dir() else start.parent
        except (OSError, RuntimeError):  # unreadable, or a symlink loop (RuntimeError before 3.13)
            continue
        for cand in (folder, *folder.parents):
            if any(_exists(cand / m) for m in PROJECT_MARKERS):
                return cand
        break
    return fallback.resolve()


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


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """(qualified module name, is a package) of a .py file.

    A file inside regular packages (folders with `__init__.py`) is named from the top of its
    package, as Python imports it; anything else (namespace packages, scripts) from the import
    root it lies under (`src/` or the project root). Outside the project: its stem.
    """
    path = path.resolve()
    is_package = path.name == "__init__.py"
    parts: list[str] = [] if is_package else [path.stem]
    folder = path.parent
    top = folder
    while (top / "__init__.py").exists() and top != top.parent:
        top = top.parent
    if top != folder:
        parts = list(folder.relative_to(top).parts) + parts
        return ".".join(parts), is_package
    for base in import_roots(root):
        try:
            rel = folder.relative_to(base.resolve())
        except ValueError:
            continue
        return ".".join([*rel.parts, *parts]), is_package
    return ".".join(parts) or path.stem, is_package


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


class ProjectFiles:
    """gradlint.facts.project.ModuleLoader over the files of one project folder.

    `extract(path)` gives a file's facts (the runner passes its cached extraction, which names
    the file as discovery would, so a module is cached once whether checked or referenced);
    `list_files()` the project's .py files, honouring excludes and .gitignore.
    """

    def __init__(self, root: Path, extract: Callable[[Path], FileFacts],
                 list_files: Callable[[], list[Path]] | None = None) -> None:
        self.root = root.resolve()
        self.roots = import_roots(self.root)
        self.extract = extract
        self.list_files = list_files
        self._files: list[Path] | None = None  # listed once per run: every scanned word reuses it
        self._parsed: dict[Path, object] = {}  # SourceFile (or None) of the files lower() re-runs

    def find(self, module: str) -> Path | None:
        rel = Path(*module.split("."))
        for base in self.roots:
            for cand in (base / rel.with_suffix(".py") if rel.name else None, base / rel / "__init__.py"):
                if cand is not None and cand.is_file():
                    return cand
        return None

    def load(self, module: str) -> tuple[FileFacts, bool] | None:
        if not module or any(not p.isidentifier() for p in module.split(".")):
            return None
        path = self.find(module)
        if path is None:
            return None
        return self.extract(path), path.name == "__init__.py"

    def lower(self, module: str, display: str, cls: str, args: tuple) -> object | None:
        """The IR of class `cls` of `module` built with a caller's arguments (ir.Extern.args), or
        None (gradlint.model.inline); each file parsed once per run."""
        from gradlint.source import models, parsed

        path = self.find(module) if module and all(p.isidentifier() for p in module.split(".")) else None
        if path is None:
            # a checked file the import roots do not reach (a package below another folder): the
            # file its facts name, when that is the module (display paths are relative to the
            # working folder, as discovery names them)
            cand = Path(display)
            try:
                if not cand.suffix == ".py" or not cand.is_file() or module_name(cand, self.root)[0] != module:
                    return None
            except OSError:
                return None
            path = cand
        if path not in self._parsed:
            self._parsed[path] = parsed(path, display)
        src = self._parsed[path]
        return models.lower_class(src, cls, args) if src is not None else None

    def modules_mentioning(self, word: str) -> list[str]:
        if self.list_files is None:
            return []
        needle = word.encode()
        out: list[str] = []
        if self._files is None:
            self._files = self.list_files()[:MAX_SCANNED]
        for path in self._files:
            try:
                # Only regular files of a sane size: a FIFO or a device named x.py would hang or
                # exhaust memory, and no source file that long calls gradcheck.
                st = path.stat()
                if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SCANNED_BYTES:
                    continue
                if needle in path.read_bytes():
                    out.append(module_name(path, self.root)[0])
            except OSError:
                continue
        return out

