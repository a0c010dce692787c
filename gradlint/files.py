"""Writing the user's files: one atomic, compare-and-replace writer, under a per-file lock.

Every file gradlint writes in the user's tree (a fixed source file, a report) goes through here:
- the new content goes to a temporary file in the target's folder, which gets the target's
  owner, group and mode, is flushed to disk, then renamed over the target: a run that is killed
  leaves the old file or the new one, never half of one (and no temporary behind, unless the
  process is killed outright);
- a symlink is followed: the real file is replaced, the link stays a link;
- a fix replaces the file only if it still holds the bytes the fix was computed from (compare
  and replace), checked under an advisory lock (`flock`) on the file itself, which concurrent
  gradlint runs take too: two `--fix` runs never interleave on one file, and no lock file is
  ever left in the user's tree;
- files gradlint must not write are refused with a reason (`Refused`): read-only files (by their
  mode bits, even for root, who could write anything), hard-linked files (a rename would split
  the links, and writing in place could leave half a file), files whose owner or group a
  rename could not keep, and anything that is not a regular file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks; the compare still holds
    fcntl = None  # type: ignore[assignment]

# How long a run waits for another run's lock on one file before skipping it: a lock is held
# for the time one file takes to fix (well under a second), so this only ends a hung holder.
LOCK_WAIT_S = 60.0
_TMP_SUFFIX = ".gradlint-tmp"


class Refused(OSError):
    """gradlint will not write this file; the message says why (the caller names the file)."""


def text_digest(text: str) -> str:
    """What identifies the text a file was analysed as (kept in FileResult.analysed)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Locked:
    """A regular file, open and locked: `path` is the real file (symlinks resolved)."""

    path: Path
    fd: int
    stat: os.stat_result

    def read(self) -> bytes:
        os.lseek(self.fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _open_regular(path: Path) -> int:
    # O_NONBLOCK: a FIFO put where the file was must not block the open.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Refused("not a regular file")
    return fd


def _flock(fd: int, wait_s: float) -> None:
    if fcntl is None:  # pragma: no cover
        return
    deadline = time.monotonic() + wait_s
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        if time.monotonic() >= deadline:
            raise Refused(f"another process held its lock for {wait_s:g} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


@contextmanager
def locked(path: str | Path, wait_s: float | None = None) -> Iterator[Locked]:
    """Open and lock the real file behind `path` (exclusive, advisory), released on exit.

    The lock is on the file itself: a run that replaced the file while this one waited leaves
    the lock on the old inode, so the path is checked again after locking, and the new file
    locked instead.
    """
    real = Path(os.path.realpath(path))
    for _ in range(100):
        fd = _open_regular(real)
        try:
            _flock(fd, LOCK_WAIT_S if wait_s is None else wait_s)
            st = os.fstat(fd)
            now = os.lstat(real)
        except BaseException:
            os.close(fd)
            raise
        if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
            break
        os.close(fd)
    else:  # pragma: no cover - replaced a hundred times while we waited
        raise Refused("it keeps being replaced")
    try:
        yield Locked(real, fd, st)
    finally:
        os.close(fd)


def writable_by_mode(st: os.stat_result) -> bool:
    """Whether the mode bits let this user write the file. Root passes any permission check,
    so for root a file without any write bit counts as read-only: its owner meant it so."""
    mode = st.st_mode
    if not hasattr(os, "geteuid"):  # pragma: no cover - Windows: the read-only attribute
        return bool(mode & stat.S_IWUSR)
    euid = os.geteuid()
    if euid == 0:
        return bool(mode & 0o222)
    if st.st_uid == euid:
        return bool(mode & stat.S_IWUSR)
    if st.st_gid == os.getegid() or st.st_gid in os.getgroups():
        return bool(mode & stat.S_IWGRP)
    return bool(mode & stat.S_IWOTH)


def check_writable(st: os.stat_result) -> None:
    """Refuse what a fix must not rewrite: read-only and hard-linked files."""
    if not writable_by_mode(st):
        raise Refused("read-only file (no write permission in its mode)")
    if st.st_nlink > 1:
        # A rename would leave the other names with the old text; writing in place could leave
        # half a file if the run dies. Neither is acceptable for a linter: the user decides.
        raise Refused(f"it has {st.st_nlink} hard links (a fix would split them)")


def replace(lk: Locked, data: bytes, *, expected: bytes) -> None:
    """Compare and replace: `data` becomes the content of the locked file, only if the file
    still holds `expected` (Refused otherwise, the file untouched). Owner, group and mode kept."""
    check_writable(lk.stat)

    def still_there() -> None:
        now = os.lstat(lk.path)
        if (now.st_dev, now.st_ino) != (lk.stat.st_dev, lk.stat.st_ino):
            raise Refused("it was replaced while being fixed")
        if lk.read() != expected:
            raise Refused("it changed while being fixed")

    _write_via_temp(lk.path, data, lk.stat, before_rename=still_there)


def write_file(path: str | Path, data: bytes) -> None:
    """Create or replace a file whose whole content gradlint makes (a report), through a
    symlink if it is one, keeping an existing file's owner, group and mode."""
    real = Path(os.path.realpath(path))
    try:
        st = os.stat(real)
    except FileNotFoundError:
        _write_via_temp(real, data, None)
        return
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    with locked(real) as lk:
        if not writable_by_mode(lk.stat):
            raise PermissionError(errno.EACCES, "read-only file", str(path))
        _write_via_temp(lk.path, data, lk.stat)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_via_temp(real: Path, data: bytes, st: os.stat_result | None, before_rename=None) -> None:
    import tempfile  # (with shutil and random): only a fix writes a file, not every check

    fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=_TMP_SUFFIX)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if st is not None and hasattr(os, "fchown"):
                mine = os.fstat(fd)
                if (mine.st_uid, mine.st_gid) != (st.st_uid, st.st_gid):
                    try:
                        os.fchown(fd, st.st_uid, st.st_gid)
                    except PermissionError:
                        raise Refused("a rewrite could not keep its owner and group") from None
                # after fchown, which clears set-user-ID and set-group-ID bits
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
            elif st is None and hasattr(os, "fchmod"):
                os.fchmod(fd, 0o666 & ~_umask())
            os.fsync(fd)
        finally:
            os.close(fd)
        if before_rename is not None:
            before_rename()
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
