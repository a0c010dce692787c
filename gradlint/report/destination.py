"""Where a report goes with `-o FILE`: the path checked before any work (a report that cannot be
written was computed, then lost; a probe ran the user's model first), and written after.

A regular file (or a new one) is replaced whole through gradlint.files (atomic, through a link,
owner and mode kept). `/dev/stdout`, `/dev/stderr` and `/dev/fd/N` are this process's
descriptors, written as they are: followed to a file, the rename replaced the file a shell had
redirected output to, and what the shell wrote after went to the unlinked one. A character
device (`/dev/null`) or a named pipe is written in place, as ruff and other tools do.

A named pipe is opened by the check, without waiting, and held until the write: one that nobody
reads is refused before the run (it was found only after all the work, or blocked the run for
ever), and the reader that was there sees no end of file while the run works (a `cat` would
have left, and the report then found nobody).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Iterable

_FD_PATH = re.compile(r"/(?:dev/fd|proc/self/fd)/(\d+)")
_STD = {"/dev/stdout": 1, "/dev/stderr": 2}
_INPUT_SUFFIXES = (".py", ".pyi", ".ipynb", ".onnx", ".onnx.txt")
# Named pipes check() opened, by real path, until write() sends the report through them.
_HELD_PIPES: dict[str, int] = {}


def _forget_pipes() -> None:
    # A forked process (the probe's child, a worker of the pool, what the user's model forks in
    # turn) must not hold the pipe: its reader would wait for an end of file after the report
    # until that process ended.
    for fd in _HELD_PIPES.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_PIPES.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pipes)


class Unwritable(Exception):
    """Why a report cannot go to the path: words for the user, after the path."""


def _descriptor(path: str) -> int | None:
    if path in _STD:
        return _STD[path]
    m = _FD_PATH.fullmatch(path)
    return int(m.group(1)) if m else None


def check(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), *, what: str = "checks") -> None:
    """Raise Unwritable when a report cannot be written to `path`, or would replace one of the
    `inputs` (the files and folders a run reads: `-o model.py` replaced the model's source with
    its report). Nothing is created; a named pipe is opened here and held for write()."""
    text = os.fspath(path)
    if not text:
        raise Unwritable("an empty path")
    if _descriptor(text) is not None:
        return
    try:
        real, st = _target(text)
    except OSError as exc:
        raise Unwritable(exc.strerror or str(exc)) from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise Unwritable("is a folder")
        if stat.S_ISREG(st.st_mode):
            if not os.access(real, os.W_OK) or not st.st_mode & 0o222:
                raise Unwritable("a read-only file")
        elif not (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            raise Unwritable("not a regular file, a character device or a pipe")
    else:
        folder = os.path.dirname(real) or "."
        if not os.path.isdir(folder):
            raise Unwritable(f"no folder {folder}")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise Unwritable(f"cannot create a file in {folder}")
    for given in inputs:
        source = os.path.realpath(given)
        if source == real:
            raise Unwritable(f"it is {given}, which the run {what}: the report would replace it")
        if st is not None and real.endswith(_INPUT_SUFFIXES) and real.startswith(source.rstrip(os.sep) + os.sep) \
                and os.path.isdir(source):
            raise Unwritable(f"it is a file under {given}, which the run {what}: the report would replace it")
    if st is not None and stat.S_ISFIFO(st.st_mode) and real not in _HELD_PIPES:
        try:
            _HELD_PIPES[real] = _open_pipe(real)
        except OSError as exc:
            raise Unwritable(exc.strerror or str(exc)) from None


def write(path: str | os.PathLike, data: bytes) -> None:
    """Write the report; raises OSError."""
    text = os.fspath(path)
    fd = _descriptor(text)
    if fd is not None:
        _write_all(fd, data)
        return
    real, st = _target(text)
    held = _HELD_PIPES.pop(real, None)
    if held is not None or (st is not None and stat.S_ISFIFO(st.st_mode)):
        out = held if held is not None else _open_pipe(real)
        try:
            os.set_blocking(out, True)
            _write_all(out, data)
        finally:
            os.close(out)
        return
    if st is not None and stat.S_ISCHR(st.st_mode):
        out = os.open(real, os.O_WRONLY | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            _write_all(out, data)
        finally:
            os.close(out)
        return
    from gradlint.files import write_file

    write_file(Path(text), data)


def _open_pipe(real: str) -> int:
    """A named pipe opened for writing without waiting for a reader (an open that waits blocks
    the run for ever when none comes); raises OSError, ENXIO when nobody reads it."""
    flags = os.O_WRONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(real, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OSError(errno.ENXIO, "a named pipe nobody reads (start its reader first)") from None
        raise


def _target(path: str) -> tuple[str, os.stat_result | None]:
    """The real path a report goes to (links followed) and what is there (None: nothing yet)."""
    real = os.path.realpath(path)
    try:
        return real, os.stat(real)
    except FileNotFoundError:
        return real, None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
