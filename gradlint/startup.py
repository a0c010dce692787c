"""Start-up of `gradlint check`: the methods `dataclasses` writes for each dataclass (libcst's nodes,
gradlint's facts and IR), compiled once and kept beside gradlint's own bytecode.

Python caches the bytecode of modules, not of what `dataclasses` generates: every start compiled
the source of about 1 100 __init__, __repr__, __eq__... functions again, half of the imports of a
one-file check (0.18 s CPU of 0.38 on the loaded 2-CPU machine). While `compiled_once()` is
active, `dataclasses` calls this module's exec instead of the builtin one (it looks `exec` up in
its own globals first), which takes the code object from `dataclass-code.<tag>.bin` in
gradlint's __pycache__ folder when it holds the same source text, and compiles otherwise; the
new code is added to the file at the end. The key is the whole source text, so a changed class
compiles again and its old entry is simply unused; the code made is what the builtin exec would
compile from that text. The file has the trust of the .pyc files beside it (the same folder,
written only where Python writes bytecode, never when told not to): it is never read from the
project being checked. Anything wrong with it (damaged, another Python) means compiling as
before.
"""

from __future__ import annotations

import builtins
import importlib.util
import marshal
import os
import sys
import types
from contextlib import contextmanager
from typing import Any, Iterator

# The file starts with Python's bytecode magic number (marshal's format follows it) and our own
# format's line.
_FORMAT = b"gradlint dataclass code 1\n"
_NAME = f"dataclass-code.{sys.implementation.cache_tag}.bin"
# More is not ours (a process that made dataclasses without end): the file then starts afresh
# with what this run used.
MAX_BYTES = 16 << 20


def default_folder() -> str | None:
    """The __pycache__ folder of gradlint's own bytecode (honouring PYTHONPYCACHEPREFIX)."""
    try:
        return os.path.dirname(importlib.util.cache_from_source(os.path.join(os.path.dirname(__file__), "__init__.py")))
    except (NotImplementedError, ValueError):  # no cache tag: bytecode is not cached at all
        return None


class _Codes:
    """The code objects of one file: module name -> {source text: code}, each module's part
    unmarshalled when a dataclass of that module is first made."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stored: dict[str, bytes] | None = None  # module -> marshal of its {source: code}
        self.modules: dict[str, dict[str, types.CodeType]] = {}
        self.changed: set[str] = set()

    def _read(self) -> dict[str, bytes]:
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(MAX_BYTES + 1)
        except OSError:
            return {}
        head = importlib.util.MAGIC_NUMBER + _FORMAT
        if len(data) > MAX_BYTES or not data.startswith(head):
            return {}
        try:
            stored = marshal.loads(data[len(head):])
        except (EOFError, ValueError, TypeError):
            return {}
        if type(stored) is not dict or not all(type(k) is str and type(v) is bytes for k, v in stored.items()):
            return {}
        return stored

    def of(self, module: str) -> dict[str, types.CodeType]:
        codes = self.modules.get(module)
        if codes is None:
            if self.stored is None:
                self.stored = self._read()
            codes = {}
            blob = self.stored.get(module)
            if blob is not None:
                try:
                    found = marshal.loads(blob)
                except (EOFError, ValueError, TypeError):
                    found = None
                if type(found) is dict and all(type(k) is str and type(v) is types.CodeType for k, v in found.items()):
                    codes = found
            self.modules[module] = codes
        return codes

    def exec(self, source: Any, globals: Any = None, locals: Any = None, /) -> None:
        """builtins.exec, with the code of a source text compiled once for all runs."""
        if globals is None:  # exec's own defaults: the caller's namespaces (dataclasses never asks)
            frame = sys._getframe(1)
            globals, locals = frame.f_globals, frame.f_locals if locals is None else locals
        elif type(source) is str and type(globals) is dict:
            module = globals.get("__name__")
            codes = self.of(module if type(module) is str else "")
            code = codes.get(source)
            if code is None:
                # what exec(source) compiles: the name '<string>', no __future__ flags of ours
                code = codes[source] = compile(source, "<string>", "exec", dont_inherit=True)
                self.changed.add(module if type(module) is str else "")
            source = code
        builtins.exec(source, globals, locals)

    def save(self) -> None:
        """Write the file again with this run's new code (temporary file, then a rename: two runs
        at once lose one's additions, never mix them). Nothing about it can fail the run."""
        if not self.changed:
            return
        stored = dict(self.stored or {})
        for module in self.changed:
            stored[module] = marshal.dumps(self.modules[module])
        data = marshal.dumps(stored)
        if len(data) + len(_FORMAT) + 16 > MAX_BYTES:
            data = marshal.dumps({m: marshal.dumps(c) for m, c in self.modules.items()})
        folder = os.path.dirname(self.path)
        tmp = os.path.join(folder, f".{_NAME}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(importlib.util.MAGIC_NUMBER + _FORMAT + data)
                os.replace(tmp, self.path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError:
            pass
        self.changed.clear()


@contextmanager
def compiled_once(folder: str | None = None) -> Iterator[None]:
    """While active, dataclasses made anywhere in the process take their methods' code from the
    file in `folder` (default: gradlint's __pycache__); new code is written there at the end,
    unless Python writes no bytecode (-B, PYTHONDONTWRITEBYTECODE). Nested or concurrent use
    leaves the first one in charge."""
    import dataclasses

    folder = folder if folder is not None else default_folder()
    if folder is None or "exec" in vars(dataclasses):
        yield
        return
    codes = _Codes(os.path.join(folder, _NAME))
    dataclasses.exec = codes.exec  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del dataclasses.exec  # type: ignore[attr-defined]
        if not sys.dont_write_bytecode:
            codes.save()
