"""Opening the files gradlint reads: regular files only (special files refused before any open),
read with a bound, and fingerprinted for the cache without following links out of a folder."""

from __future__ import annotations

import hashlib
import os
import stat

# Binary ONNX models are read whole (protobuf needs them in one piece) and protobuf refuses
# messages of 2 GiB and more, so that is their bound; source files take `max-file-size`.
ONNX_LIMIT = (2 << 30) - 1
# Files up to this size are fingerprinted by their content; larger ones (ONNX weights) by
# size, times, inode and device: hashing GBs on every cached run would cost more than it saves.
HASH_LIMIT = 8 << 20

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class Refused(Exception):
    """A path gradlint will not read; the message says why, in words for the user."""


def kind_of(mode: int) -> str | None:
    """What a non-regular file is ("a FIFO", "a character device"...); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return what
    return "not a regular file"


def check_regular(path: str | os.PathLike) -> os.stat_result:
    """os.stat the path (links followed, nothing opened) and refuse what is not a regular file."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise Refused(describe_error(exc)) from None
    what = kind_of(st.st_mode)
    if what:
        raise Refused(f"not a regular file ({what})")
    return st


def describe_error(exc: OSError) -> str:
    import errno

    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT:
        return "no such file or directory (a broken symbolic link?)"
    return exc.strerror or str(exc)


def _open_regular(path: str | os.PathLike) -> tuple[int, os.stat_result]:
    """An fd of a regular file (the caller closes it): special files are refused by os.stat
    before the open, the open never blocks (O_NONBLOCK: a FIFO swapped in meanwhile), and the
    open file is checked again."""
    check_regular(path)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        raise Refused(describe_error(exc)) from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise Refused(describe_error(exc)) from None
    what = kind_of(st.st_mode)
    if what:
        os.close(fd)
        raise Refused(f"not a regular file ({what})")
    return fd, st


def read_fd(fd: int, limit: int) -> bytes:
    """At most `limit` bytes from an open file, in chunks."""
    chunks, left = [], limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_bounded(path: str | os.PathLike, limit: int, limit_name: str = "max-file-size") -> bytes:
    """The bytes of a regular file of at most `limit` bytes; at most limit + 1 bytes are read.

    Special files are refused by os.stat before the open; the open itself never blocks
    (O_NONBLOCK: a FIFO swapped in meanwhile) and the open file is checked again.
    """
    fd, st = _open_regular(path)
    try:
        if st.st_size > limit:
            raise Refused(too_large(st.st_size, limit, limit_name))
        data = read_fd(fd, limit + 1)
    except OSError as exc:
        raise Refused(describe_error(exc)) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise Refused(too_large(len(data), limit, limit_name, grew=True))
    return data


def too_large(size: int, limit: int, limit_name: str, *, grew: bool = False) -> str:
    return (f"file is {human_size(size)}{' or more' if grew else ''}, over the limit of "
            f"{human_size(limit)} ({limit_name}); it was not read")


def human_size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def fingerprint_fd(fd: int, st: os.stat_result) -> str:
    """Content hash for a small file, identity and times for a large one."""
    if st.st_size > HASH_LIMIT:
        return f"stat:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"
    h = hashlib.sha256()
    left = HASH_LIMIT + 1
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        h.update(chunk)
        left -= len(chunk)
    return "sha256:" + h.hexdigest()


def fingerprint(path: str | os.PathLike) -> str:
    """Fingerprint of a file the user named or discovery found (links followed as for reading)."""
    fd, st = _open_regular(path)
    try:
        return fingerprint_fd(fd, st)
    except OSError as exc:
        raise Refused(describe_error(exc)) from None
    finally:
        os.close(fd)


# A source file a Python file's facts were read from (a config class of another file) may lie in
# a folder above the file's own (`from ..config import GPTConfig`): at most this many levels up.
MAX_UP = 16


def fingerprint_dependency(folder: str, rel: str, not_after: int | None = None) -> str | None:
    """Fingerprint of a file a cache entry depends on, `rel` relative to `folder`. ONNX external
    data stays inside the model's folder (fingerprint_within); a `.py` file may also lie up to
    MAX_UP folders above it (`../config.py`, the config class a model file imports), reached by
    name from that folder and never through a link below it. None when the file changed after
    `not_after` (ns, the run's start): what the run read of it may not be what it holds now."""
    parts = rel.replace("\\", "/").split("/")
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    if ups and rel.endswith(".py") and ups <= MAX_UP and ".." not in parts[ups:]:
        return fingerprint_within(os.path.normpath(os.path.join(folder, *parts[:ups])), "/".join(parts[ups:]),
                                  not_after)
    return fingerprint_within(folder, rel, not_after)


def fingerprint_within(folder: str, rel: str, not_after: int | None = None) -> str | None:
    """Fingerprint of `rel` inside `folder` (an ONNX model's external data), never leaving it:
    no absolute path, no `..`, no symbolic link on the way. What cannot be reached is fingerprinted
    by why, so that it becoming reachable changes the fingerprint too."""
    parts = rel.replace("\\", "/").split("/")
    if not rel or os.path.isabs(rel) or ".." in parts:
        return "outside"
    parts = [p for p in parts if p not in ("", ".")]
    if not parts:
        return "outside"
    try:
        dfd = os.open(folder, os.O_RDONLY | _DIRECTORY)
    except OSError as exc:
        return f"error:{exc.errno}"
    try:
        for part in parts[:-1]:
            try:
                nfd = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=dfd)
            except OSError as exc:
                return f"error:{exc.errno}"
            os.close(dfd)
            dfd = nfd
        name = parts[-1]
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except OSError as exc:
            return f"error:{exc.errno}"
        if stat.S_ISLNK(st.st_mode):
            return "link:" + os.readlink(name, dir_fd=dfd)
        if not stat.S_ISREG(st.st_mode):
            return f"special:{stat.S_IFMT(st.st_mode)}"
        try:
            fd = os.open(name, _READ_FLAGS | _NOFOLLOW, dir_fd=dfd)
        except OSError as exc:
            return f"error:{exc.errno}"
        try:
            st = os.fstat(fd)
            if not_after is not None and st.st_ctime_ns > not_after:
                return None
            return fingerprint_fd(fd, st)
        finally:
            os.close(fd)
    except OSError as exc:
        return f"error:{exc.errno}"
    finally:
        os.close(dfd)


# how much larger than max-file-size a notebook may be (its outputs count in its size, not its code)
NOTEBOOK_FACTOR = 16


def read_input(path: str | os.PathLike, limit: int, *, whole: bool = True) -> tuple[bytes | None, str]:
    """(bytes, fingerprint) of a file to check. Source files (`whole`) are read here, at most
    `limit` + 1 bytes. A binary ONNX model small enough to be hashed is read here too, once: the
    front-end decodes these bytes, so the facts are those of the bytes the key was made from
    (reading the file twice let a model rewritten in between be cached under the old content).
    A larger one is fingerprinted by identity and times, and its front-end reads it in its own
    way (bounded by protobuf's 2 GiB): the bytes are None."""
    if whole:
        if os.fspath(path).endswith(".ipynb"):
            # a notebook's bytes are mostly its outputs (a plot is ~100 kB of base64): its code
            # is what max-file-size is for, and the parse budget bounds that once it is read
            data = read_bounded(path, limit * NOTEBOOK_FACTOR, f"{NOTEBOOK_FACTOR} x max-file-size for a notebook")
        else:
            data = read_bounded(path, limit)
        return data, "sha256:" + hashlib.sha256(data).hexdigest()
    fd, st = _open_regular(path)
    try:
        if st.st_size > ONNX_LIMIT:
            raise Refused(too_large(st.st_size, ONNX_LIMIT, "protobuf's 2 GiB"))
        if st.st_size <= HASH_LIMIT:
            data = read_fd(fd, HASH_LIMIT + 1)
            if len(data) <= HASH_LIMIT:
                return data, "sha256:" + hashlib.sha256(data).hexdigest()
            st = os.fstat(fd)  # it grew while read: fingerprinted as a large file
        return None, fingerprint_fd(fd, st)
    except OSError as exc:
        raise Refused(describe_error(exc)) from None
    finally:
        os.close(fd)
