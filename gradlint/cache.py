"""The per-file facts cache: plain JSON inside the project, validated on load, never executed.

A repository can ship anything under its cache folder, so every entry is untrusted input:
- the format is JSON with an explicit schema version; records are rebuilt from an allow-list of
  gradlint's own dataclasses, field by field, each value checked against the field's type; a
  name outside the allow-list is an error, never an import or a call;
- the key mixes in a salt that gradlint writes into the folder and the salt file's inode and
  change time, which a repository cannot know in advance: an entry made elsewhere never hits;
- the folder is reached from the project root one component at a time with O_NOFOLLOW, files are
  created with O_EXCL and O_NOFOLLOW inside it, and nothing is written through a symbolic link;
- entries are lines of one pack per checked folder, written once per run, after the facts are
  collected (a file created per entry made the first cached run slower than no cache at all);
- a damaged, unknown, oversized or mismatched entry is a miss: the file is checked and the
  entry rewritten. Nothing about the cache can fail a run.
"""

from __future__ import annotations

import dataclasses
import errno
import gc
import hashlib
import json
import os
import stat
import time
import typing
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradlint import __version__
from gradlint.codec import CacheError, _NoCycleCollection, decode, dumps, encode, loads, record_type, to_json  # noqa: F401
from gradlint.inputs import fingerprint_dependency, read_fd

SCHEMA = 6
# The entries of one folder's files: p-<32 hex digits>.jsonl, one JSON document a line.
PACK_PREFIX = "p-"
PACK_SUFFIX = ".jsonl"
# An entry holds a file's text and its facts; anything larger is not ours.
MAX_ENTRY_BYTES = 64 << 20
# A pack is read whole; a larger one is not ours, and a write keeps the newest entries under it.
MAX_PACK_BYTES = 128 << 20
# Files one entry may depend on (an ONNX model's external-data files); more is not an entry of ours.
MAX_DEPS = 10_000
SALT_NAME = "salt"
_SALT_BYTES = 32
MARKER = "# created by gradlint: the per-file cache (plain JSON); safe to delete\n*\n"

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


# --- keys -----------------------------------------------------------------------------------------

_CODE_FINGERPRINT: str | None = None


def code_fingerprint() -> str:
    """gradlint's own code, by file sizes and times: a cache written by other front-end code
    (an upgrade without a version bump, a development checkout) is never read back."""
    global _CODE_FINGERPRINT
    if _CODE_FINGERPRINT is None:
        # os.walk, not Path.rglob: rglob took ~40 ms for gradlint's ~120 files, paid by every
        # worker of a cached run (open_store computes it before the workers fork, too).
        here = os.path.dirname(os.path.abspath(__file__))
        parts = []
        for folder, subfolders, names in os.walk(here):
            subfolders[:] = [d for d in subfolders if d != "__pycache__"]
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    st = os.stat(path)
                    parts.append(f"{os.path.relpath(path, here)}:{st.st_size}:{st.st_mtime_ns};")
        h = hashlib.sha256(f"{__version__}:{SCHEMA}".encode())
        for part in sorted(parts):
            h.update(part.encode("utf-8", "surrogateescape"))
        _CODE_FINGERPRINT = h.hexdigest()
    return _CODE_FINGERPRINT


# --- the folder -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Store:
    """A cache folder that passed the checks of `open_store`; cheap to send to a worker."""

    root: str  # the project root, resolved
    rel: str  # cache-dir, relative to the root
    salt: str  # hex: the salt file's bytes, inode and change time


def _open_dir_chain(root: str, rel: str, *, create: bool) -> int:
    """An fd of root/rel, reached one component at a time without following any link."""
    fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for part in Path(rel).parts:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                nfd = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _Unsafe(f"{part!r} is a symbolic link or not a folder") from None
                raise
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


class _Unsafe(Exception):
    pass


# When the run that opened the store began (ns): entries of files that depend on one changed
# since are not made (entry). Forked workers inherit it.
_RUN_STARTED: int | None = None

# (root, cache-dir) -> an open fd of the folder, checked by open_store or a worker's own walk.
_FDS: dict[tuple[str, str], int] = {}


def open_store(root: str | Path, rel: str) -> tuple[Store | None, str | None]:
    """Prepare the cache folder: (store, None) when usable, (None, warning) when the folder is
    unsafe (a link in the way, a link in place of our files), (None, None) when it cannot be made
    (a read-only checkout: the run goes on uncached, in silence)."""
    global _RUN_STARTED
    _RUN_STARTED = time.time_ns()
    root = str(Path(root).resolve())
    where = os.path.join(root, rel)
    try:
        fd = _open_dir_chain(root, rel, create=True)
    except _Unsafe as exc:
        return None, f"cache folder {where} not used: {exc}; running without a cache"
    except OSError:
        return None, None
    try:
        names = sorted(os.listdir(fd))  # (once: _foreign and _remove_left_behind read it)
        foreign = _foreign(fd, names)
        if foreign:
            # `cache-dir = "src"`: its `*` .gitignore would hide the folder's files from git and
            # from gradlint's own discovery (findings vanished, exit 0)
            return None, (f"cache folder {where} not used: it holds {foreign!r}, which gradlint did not "
                          "write (cache-dir must name a folder of gradlint's own); running without a cache")
        for name, content in ((".gitignore", MARKER.encode()), (SALT_NAME, None)):
            problem = _ensure_file(fd, name, content)
            if problem:
                return None, f"cache folder {where} not used: {name} {problem}; running without a cache"
        salt = _read_salt(fd)
        if salt is None:
            return None, None
        _remove_left_behind(fd, names)
        store = Store(root=root, rel=rel, salt=salt)
        code_fingerprint()  # once, here: forked workers inherit it
        # A new run reads the packs as they are now, not as an earlier run in this process did.
        for held in [k for k in _HELD if k[:2] == (root, rel)]:
            del _HELD[held]
        # The checked folder's fd serves this process (and forked workers) from now on.
        old = _FDS.pop((root, rel), None)
        if old is not None:
            os.close(old)
        _FDS[(root, rel)], fd = fd, -1
        return store, None
    except OSError:
        return None, None
    finally:
        if fd >= 0:
            os.close(fd)


def _temporary(name: str) -> bool:
    """A temporary pack (_write_pack's `.<pack>.<pid>.<random>.tmp`)."""
    return name.startswith("." + PACK_PREFIX) and name.endswith(".tmp")


def _remove_left_behind(dfd: int, names: list[str]) -> None:
    """Remove the temporary packs of writes killed half-way (up to MAX_PACK_BYTES each, and
    nothing else ever removed them): those untouched for ten minutes (a write in progress in
    another run is younger). `names`: the folder's."""
    now = time.time()
    for name in names:
        if _temporary(name):
            try:
                if now - os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mtime > 600:
                    os.unlink(name, dir_fd=dfd)
            except OSError:
                pass


def _foreign(dfd: int, names: list[str]) -> str | None:
    """A file of the cache folder (`names`: its files) that gradlint did not write, when the
    folder has no salt yet (a folder with one is gradlint's); None when there is none. A
    .gitignore of ours cut short (a full disk, a kill) is removed, to be made again."""
    if ".gitignore" in names:
        try:
            fd = os.open(".gitignore", os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC, dir_fd=dfd)
        except OSError:
            fd = -1  # (a link, not a file: _ensure_file says so)
        held = MARKER.encode()
        if fd >= 0:
            try:
                held = read_fd(fd, len(MARKER) + 1)
            finally:
                os.close(fd)
        if held != MARKER.encode():
            if not MARKER.encode().startswith(held):
                return None if SALT_NAME in names else ".gitignore"
            os.unlink(".gitignore", dir_fd=dfd)
    if SALT_NAME in names:
        return None
    for name in names:
        if name != ".gitignore" and not (name.startswith(PACK_PREFIX) and name.endswith(PACK_SUFFIX)) \
                and not _temporary(name):
            return name
    return None


def _ensure_file(dfd: int, name: str, content: bytes | None) -> str | None:
    """Create `name` with O_EXCL (the salt: random bytes); an existing one must be a plain file."""
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600, dir_fd=dfd)
    except FileExistsError:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            return "is a symbolic link"
        if not stat.S_ISREG(st.st_mode):
            return "is not a regular file"
        return None
    try:
        os.write(fd, content if content is not None else os.urandom(_SALT_BYTES))
    finally:
        os.close(fd)
    return None


def _read_salt(dfd: int) -> str | None:
    try:
        fd = os.open(SALT_NAME, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC, dir_fd=dfd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != _SALT_BYTES:
            # Being written by a concurrent run, or damaged: no cache this time. One left short
            # for ten seconds (a full disk when it was made) is removed, so that the next run
            # makes it again: it turned the cache off for good.
            if stat.S_ISREG(st.st_mode) and time.time() - st.st_mtime > 10:
                try:
                    os.unlink(SALT_NAME, dir_fd=dfd)
                except OSError:
                    pass
            return None
        data = os.read(fd, _SALT_BYTES)
    finally:
        os.close(fd)
    if len(data) != _SALT_BYTES:
        return None
    # The inode and change time are what a shipped salt cannot carry: ctime is set by the kernel
    # when the file lands on this disk, whatever the archive or clone says.
    return hashlib.sha256(data + f":{st.st_dev}:{st.st_ino}:{st.st_ctime_ns}".encode()).hexdigest()


def _store_fd(store: Store) -> int | None:
    """One fd per process for the folder (workers reopen it safely the first time)."""
    key = (store.root, store.rel)
    fd = _FDS.get(key)
    if fd is None:
        try:
            fd = _open_dir_chain(store.root, store.rel, create=False)
        except (OSError, _Unsafe):
            return None
        _FDS[key] = fd
    return fd


# --- entries, in one pack per folder ---------------------------------------------------------------
#
# An entry is one line of JSON; the entries of the files of one folder share a pack file. Writing
# an entry per file cost a file creation each (0.2-0.5 ms under load, as much as extracting a
# small ONNX model), so the first cached run was slower than --no-cache; a run now writes each
# folder's pack once, after its facts are collected, and reads it once per process.
#
# A line starts with its key and its file's id at fixed offsets, so a pack is indexed by slicing,
# and only a hit is parsed; the parse then checks every field again (the key included).

_HEAD = b'{"key":"'  # then 64 hex digits
_MID = b'","file":"'  # then 32 hex digits
_TAIL = b'",'
_KEY = slice(len(_HEAD), len(_HEAD) + 64)
_FILE = slice(_KEY.stop + len(_MID), _KEY.stop + len(_MID) + 32)
_FIELDS = frozenset({"key", "file", "schema", "crc", "deps", "facts"})
_DEPS = b',"deps":'  # where the part a line's crc covers begins


class Slot(typing.NamedTuple):
    """Where one file's entry lives: its key, its folder's pack, and the file's id in the pack
    (a new entry for the file replaces the pack's older ones). A named tuple: a cold run makes
    one per file, and a frozen dataclass's construction was a tenth of an entry's cost."""

    key: str
    pack: str
    file: str


def _digest(*parts: str) -> str:
    """sha256 of each part followed by a NUL (one string encoded once: the same bytes as hashing
    the parts one by one, for a third of the time)."""
    text = "\0".join(parts) + "\0" if parts else ""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


_PACK_NAMES: dict[tuple[str, str], str] = {}
# (salt, kind, name shown) -> (pack, the file's salted id, its first 32 digits as bytes): a cached
# run asks for each file's place two or three times (is there a line for it, its slot), and each
# answer cost a hash. Emptied when it grows past _PLACES_MAX (a long-lived process).
_PLACES: dict[tuple[str, str, str], tuple[str, str, bytes]] = {}
_PLACES_MAX = 1 << 16


def slot(store: Store, display: str, kind: str, fingerprint: str) -> Slot:
    """The key mixes in gradlint's code, the folder's salt, the file's name, kind and content; the
    pack is named by the folder the file is in, the id by the file (both salted: a repository cannot
    name them in advance either). Neither name mixes in gradlint's code: after an upgrade the new
    entries replace the old ones in the same packs, and no pack is left behind."""
    pack, file, _id = _place(store, display, kind)
    return Slot(_digest(code_fingerprint(), file, fingerprint), pack, file[:32])


def _place(store: Store, display: str, kind: str) -> tuple[str, str, bytes]:
    """The pack of a file's folder, the file's salted id (whole: the key mixes it in), and the id
    as a pack line holds it."""
    where = (store.salt, kind, display)
    found = _PLACES.get(where)
    if found is None:
        pack = _pack_of(store, display)
        file = _digest(store.salt, kind, display)
        if len(_PLACES) >= _PLACES_MAX:
            _PLACES.clear()
        found = _PLACES[where] = (pack, file, file[:32].encode("ascii"))
    return found


def _pack_of(store: Store, display: str) -> str:
    """The name of the pack of a file's folder."""
    folder = (store.salt, os.path.dirname(display))
    pack = _PACK_NAMES.get(folder)
    if pack is None:
        pack = _PACK_NAMES[folder] = PACK_PREFIX + _digest(*folder)[:32] + PACK_SUFFIX
    return pack


def holds(store: Store, display: str, kind: str) -> bool:
    """Whether the pack of the file's folder has a line for the file, whatever its content. A file
    without one is a miss, known without reading the file: the parent of a cold run with workers
    reads no file (its workers read each once)."""
    dfd = _store_fd(store)
    if dfd is None:
        return False
    ids = _pack_index(store, dfd, _pack_of(store, display))[1]
    # (an empty pack, the first run's, holds no file: its ids are not hashed before the pool starts)
    return bool(ids) and _place(store, display, kind)[2] in ids


def _index(data: bytes) -> dict[bytes, bytes]:
    """key -> line, for the lines that start as an entry does; the rest is not looked at."""
    index = {}
    head, mid, tail, key, file = _HEAD, _MID, _TAIL, _KEY, _FILE
    for line in data.split(b"\n"):
        if line.startswith(head) and line[key.stop:file.start] == mid and line[file.stop:file.stop + 2] == tail:
            index.setdefault(line[key], line)  # the first: a write puts the new lines first
    return index


def _read_pack(dfd: int, name: str) -> bytes:
    """A pack's bytes; b"" for anything that is not a regular file of at most MAX_PACK_BYTES (a
    link is never followed, a FIFO never waited on)."""
    try:
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC, dir_fd=dfd)
    except OSError:
        return b""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_PACK_BYTES:
            return b""
        data = read_fd(fd, MAX_PACK_BYTES + 1)
    except OSError:
        return b""
    finally:
        os.close(fd)
    return data if len(data) <= MAX_PACK_BYTES else b""


# The packs this process has read in this run, most recent last: (root, cache-dir, name) ->
# (index, the file ids it has lines for, bytes, the file's identity when read). Files are checked
# folder by folder, so a few are enough; a process holds at most
# _HELD_PACKS of them and _HELD_BYTES in all (the pack in use always). open_store empties it:
# every run reads the packs as they are on disk then.
_HELD: dict[tuple[str, str, str], tuple[dict[bytes, bytes], frozenset[bytes], int, tuple | None]] = {}
_HELD_PACKS = 4
_HELD_BYTES = 64 << 20


def _pack_index(store: Store, dfd: int, name: str) -> tuple[dict[bytes, bytes], frozenset[bytes]]:
    """A pack's index (key -> line) and the file ids it has lines for."""
    where = (store.root, store.rel, name)
    held = _HELD.pop(where, None)
    if held is None:
        # A missing pack is held too (empty): a cold run looks it up once, not once per file.
        identity = _identity(dfd, name)  # before the read: a pack replaced meanwhile differs
        data = _read_pack(dfd, name)
        index = _index(data)
        held = (index, frozenset(line[_FILE] for line in index.values()), len(data), identity)
        total = held[2] + sum(size for _i, _f, size, _s in _HELD.values())
        while _HELD and (len(_HELD) >= _HELD_PACKS or total > _HELD_BYTES):
            total -= _HELD.pop(next(iter(_HELD)))[2]
    _HELD[where] = held
    return held[0], held[1]


def _identity(dfd: int, name: str) -> tuple[int, ...] | None:
    """What tells one version of a pack file from another without reading it (None: no file).
    Every write renames a new file over the pack, which changes at least its inode or times."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def load(store: Store, where: Slot, folder: str, expect: type) -> Any | None:
    """The facts stored for `where`, or None (a miss) for anything but a valid, current entry.

    `folder` is the checked file's folder: the files an entry depends on (ONNX external data,
    config classes of other files) are fingerprinted again from it and must match what the entry
    recorded.
    """
    dfd = _store_fd(store)
    if dfd is None:
        return None
    line = _pack_index(store, dfd, where.pack)[0].get(where.key.encode("ascii"))
    if line is None or len(line) > MAX_ENTRY_BYTES:
        return None
    try:
        with _NoCycleCollection():
            return _entry_facts(line, where, folder, expect)
    except (CacheError, ValueError, TypeError, RecursionError, MemoryError):
        return None


def _entry_facts(line: bytes, where: Slot, folder: str, expect: type) -> Any | None:
    """The facts of one pack line, checked against its slot; None for anything else. Raises
    CacheError (and what json.loads raises) on a damaged line."""
    raw = json.loads(line)
    if not isinstance(raw, dict) or raw.keys() != _FIELDS:
        return None
    if raw["schema"] != SCHEMA or raw["key"] != where.key or raw["file"] != where.file:
        return None
    # A line damaged on disk (a flipped bit, a hand edit) that still parses was served, and
    # --fix applied a stored edit it changed: the crc of its dependencies and facts must match.
    at = line.find(_DEPS)
    if at < 0 or type(raw["crc"]) is not int or zlib.crc32(line[at:]) != raw["crc"]:
        return None
    if not isinstance(raw["deps"], list) or len(raw["deps"]) > MAX_DEPS:
        return None
    for dep in raw["deps"]:
        if not (isinstance(dep, list) and len(dep) == 2 and all(isinstance(d, str) for d in dep)):
            return None
        if fingerprint_dependency(folder, dep[0]) != dep[1]:
            return None  # external data or a config file changed: the entry is stale
    facts = decode(raw["facts"])
    return facts if type(facts) is expect else None


# An entry waiting to be written: (pack, file id, line). Plain data: a worker process returns it
# with the facts, and the parent writes every pack once.
Pending = tuple[str, str, bytes]


def entry(where: Slot, facts: Any, folder: str, depends: tuple[str, ...] = ()) -> Pending | None:
    """The line storing `facts` under `where`, or None when they cannot be stored (not gradlint's
    records, or over MAX_ENTRY_BYTES). Nothing is written here."""
    try:
        # (fingerprinted now, but read earlier in the run: a dependency changed since the run
        # began may not be what the facts came from, and the entry would serve them with its new
        # fingerprint until it changed again; no entry then)
        deps = [[d, fingerprint_dependency(folder, d, _RUN_STARTED)] for d in depends] if depends else None
        if deps and any(fp is None for _d, fp in deps):
            return None
        collecting = gc.isenabled()  # as _NoCycleCollection, for less than a result entry costs
        gc.disable()
        try:
            body = to_json(encode(facts))
            listed = to_json(deps) if deps else "[]"
        finally:
            if collecting:
                gc.enable()
        # The key and id (hex digits) first, at fixed offsets: _index slices them. The line is
        # what json.dumps writes for {"key", "file", "schema", "crc", "deps", "facts"} in this
        # order; the crc is of the rest of the line from `,"deps":`.
        rest = f',"deps":{listed},"facts":{body}}}'.encode("ascii")
        line = f'{{"key":"{where.key}","file":"{where.file}","schema":{SCHEMA},"crc":{zlib.crc32(rest)}'.encode(
            "ascii") + rest
    except (CacheError, ValueError, TypeError, RecursionError):  # (UnicodeEncodeError: a ValueError)
        return None
    return (where.pack, where.file, line) if len(line) <= MAX_ENTRY_BYTES else None


@dataclass
class Batch:
    """New entries kept for one write at the end (of a job, of a run), with the store they are for."""

    store: Store | None = None
    entries: list = dataclasses.field(default_factory=list)

    def add(self, store: Store, made: Pending) -> None:
        self.store = store
        self.entries.append(made)

    def write(self) -> int:
        done = write(self.store, self.entries) if self.store is not None and self.entries else 0
        self.entries.clear()
        return done


def write(store: Store, pending: typing.Iterable[Pending]) -> int:
    """Write the pending entries, each folder's pack once; the number of entries written. Nothing
    about it can fail the run: a pack that cannot be written is simply not, and left as it was."""
    by_pack: dict[str, dict[str, bytes]] = {}
    for pack, file, line in pending:
        by_pack.setdefault(pack, {})[file] = line
    dfd = _store_fd(store) if by_pack else None
    if dfd is None:
        return 0
    written = 0
    for pack, lines in by_pack.items():
        held = _HELD.pop((store.root, store.rel, pack), None)
        # The pack as this run read it, when the file on disk is still that one: a one-file run
        # read its folder's pack (11 MB for timm/models) to look the file up, and read and
        # indexed it again here.
        known = held[0] if held is not None and held[3] is not None and held[3] == _identity(dfd, pack) else None
        if _write_pack(dfd, pack, lines, known):
            written += len(lines)
    return written


def _write_pack(dfd: int, pack: str, new: dict[str, bytes], known: dict[bytes, bytes] | None = None) -> bool:
    """The pack's new lines, then the lines on disk now of the folder's other files (a file's
    newer entry replaces its older ones; a damaged line is dropped), up to MAX_PACK_BYTES; written
    through a temporary file created with O_EXCL, then a rename inside the folder. `known`: the
    index of the pack on disk, when the caller holds it (else the pack is read).

    Two runs writing one pack at once: the last rename wins and the other's new entries are
    missing, never wrong, since every line is checked against its key when read."""
    lines, size = [], 0
    for line in new.values():
        if size + len(line) + 1 <= MAX_PACK_BYTES:
            lines.append(line)
            size += len(line) + 1
    old = known if known is not None else _index(_read_pack(dfd, pack))
    if old:  # (a first run's pack has no lines: nothing to leave out, no sets of 2 000 ids made)
        ids = {f.encode("ascii") for f in new}
        keys = {line[_KEY] for line in lines}
        for line in old.values():
            if line[_FILE] not in ids and line[_KEY] not in keys and size + len(line) + 1 <= MAX_PACK_BYTES:
                lines.append(line)
                size += len(line) + 1
    tmp = f".{pack}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600, dir_fd=dfd)
    except OSError:
        return False
    try:
        try:
            _write_lines(fd, lines)
        finally:
            os.close(fd)
        # rename replaces a link or file in the way, never writes through it; a folder in the
        # way makes it fail, and the entries are simply not stored.
        os.replace(tmp, pack, src_dir_fd=dfd, dst_dir_fd=dfd)
        return True
    except BaseException as exc:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        if isinstance(exc, OSError):
            return False
        raise


_NEWLINE = b"\n"


def _write_lines(fd: int, lines: list[bytes]) -> None:
    """Each line, then a newline, written to `fd`. With writev, from the lines themselves: joining
    them first copied the whole pack once more (20 MB for 2 000 small files, at the end of a cold
    run, when nothing else runs)."""
    if not hasattr(os, "writev"):
        view = memoryview(_NEWLINE.join(lines) + _NEWLINE)
        while view:
            view = view[os.write(fd, view):]
        return
    parts: list = []
    for line in lines:
        parts += (line, _NEWLINE)
    step = _IOV_MAX
    start = 0
    while start < len(parts):
        done = os.writev(fd, parts[start:start + step])
        # the parts written whole are done; of one written in part, the rest goes first next time
        while start < len(parts) and done >= len(parts[start]):
            done -= len(parts[start])
            start += 1
        if done:
            parts[start] = memoryview(parts[start])[done:]


def _iov_max() -> int:
    try:
        found = os.sysconf("SC_IOV_MAX")
    except (AttributeError, ValueError, OSError):
        found = -1
    return found if found > 0 else 16  # (POSIX's least: _XOPEN_IOV_MAX)


_IOV_MAX = _iov_max()
