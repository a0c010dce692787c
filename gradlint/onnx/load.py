"""Safe loading of ONNX models: decode without external data, vet every external-data reference,
run onnx.checker on the structure, and stream weight statistics one tensor at a time.

Nothing here reads a byte outside the model's folder: external-data locations are validated
(relative, no `..`, no symlink on the way, a regular file) before any file is opened, and the
file is then opened with O_NOFOLLOW and compared with what was validated.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
import onnx.parser
from onnx import TensorProto

from gradlint.onnx.inline import INLINE_KEY, skeleton

# Elements per chunk when streaming a tensor: 4M float64 temporaries are 32 MB, so the
# statistics of a tensor of any size cost a few tens of MB beyond the graph itself.
CHUNK_ELEMS = 1 << 22

_FLOAT_DTYPES: dict[int, np.dtype] = {
    TensorProto.FLOAT: np.dtype("<f4"),
    TensorProto.DOUBLE: np.dtype("<f8"),
    TensorProto.FLOAT16: np.dtype("<f2"),
    TensorProto.BFLOAT16: np.dtype("<u2"),  # widened to float32 by _as_float
}
_DTYPES: dict[int, np.dtype] = {
    **_FLOAT_DTYPES,
    TensorProto.INT8: np.dtype("i1"),
    TensorProto.UINT8: np.dtype("u1"),
    TensorProto.INT16: np.dtype("<i2"),
    TensorProto.UINT16: np.dtype("<u2"),
    TensorProto.INT32: np.dtype("<i4"),
    TensorProto.UINT32: np.dtype("<u4"),
    TensorProto.INT64: np.dtype("<i8"),
    TensorProto.UINT64: np.dtype("<u8"),
    TensorProto.BOOL: np.dtype("?"),
}


class ModelError(Exception):
    """The model cannot be used; `kind` is 'unreadable_model' or 'unsafe_external_data' (an
    InputError's kind)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class ExternalRef:
    """A vetted external-data reference: the file (inside the model folder) and the byte range."""

    path: str
    offset: int
    length: int
    st_dev: int
    st_ino: int


# Bytes of external data read for one model, at most: protobuf's bound on a model whose weights
# are inline (2 GiB; about 7 s on a laptop). Each region is read once; a tensor whose region is
# past what is left is not read (its statistics are unknown, the file's result says so): a
# model naming a 4 TB sparse file was streamed for hours.
MAX_EXTERNAL_BYTES = 2 << 30


@dataclass
class LoadedModel:
    model: onnx.ModelProto
    model_dir: str
    # external_key(tensor) -> vetted reference; only filled when every reference of the model is safe
    external: dict[tuple, ExternalRef] = field(default_factory=dict)
    # why external data was refused (unsafe_external_data): when non-empty none is read at all
    refused: list[str] = field(default_factory=list)
    # bytes of external data that may still be read (MAX_EXTERNAL_BYTES, read when the model is)
    budget: int = -1
    # the tensors whose external data was past the budget, not read
    unread: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.budget < 0:
            self.budget = MAX_EXTERNAL_BYTES

    def charge(self, tensor: TensorProto, ref: ExternalRef) -> bool:
        """Whether `tensor`'s external region may be read now (its bytes are then spent)."""
        if ref.length > self.budget:
            if tensor.name not in self.unread:
                self.unread.append(tensor.name)
            return False
        self.budget -= ref.length
        return True


# Brackets ONNX text may nest: onnx.parser recurses on each level in C++ and overflows its stack
# (SIGSEGV) on a few thousand (`seq(` types, `If` bodies); real models: a dozen.
MAX_TEXT_NESTING = 100


def _parse_text(text: str) -> onnx.ModelProto:
    """ONNX text parsed, its nesting checked first; what the parser refuses is a ModelError."""
    depth = deepest = 0
    for ch in text:
        if ch in "([{<":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}>":
            depth -= 1
    if deepest > MAX_TEXT_NESTING:
        raise ModelError("unreadable_model", f"ONNX text nested {deepest} levels deep: over the {MAX_TEXT_NESTING} "
                                             "gradlint reads (onnx's parser crashes on a few thousand)")
    try:
        return onnx.parser.parse_model(text)
    except onnx.parser.ParseError:
        raise
    except Exception as exc:  # noqa: BLE001 - stoll's IndexError, a bad float, protobuf's depth limit
        raise ModelError("unreadable_model", f"not valid ONNX text: {type(exc).__name__}: {_one_line(exc)}") from None


def decode(path: Path, given: bytes | None = None) -> onnx.ModelProto:
    """Decode a binary model (external data left unread) or ONNX text (`*.txt`); `given`: the
    file's bytes, already read (bounded) by the caller."""
    from gradlint.inputs import ONNX_LIMIT, Refused, check_regular, read_bounded

    try:
        if given is not None:
            data = given
            if path.suffix == ".txt":
                return _parse_text(data.decode("utf-8"))
        elif path.suffix == ".txt":
            # Bounded, and a special file is refused before any open (gradlint.inputs).
            data = read_bounded(path, ONNX_LIMIT, "protobuf's 2 GiB")
            return _parse_text(data.decode("utf-8"))
        else:
            # A special file is refused before any open; a large model is decoded without its big
            # initializers' bytes (read later, in chunks), so it is never read whole.
            check_regular(path)
            data = skeleton(str(path)) or read_bounded(path, ONNX_LIMIT, "protobuf's 2 GiB")
    except onnx.parser.ParseError as exc:
        raise ModelError("unreadable_model", f"not valid ONNX text: {_one_line(exc)}") from None
    except UnicodeDecodeError as exc:
        raise ModelError("unreadable_model", f"ONNX text is not UTF-8: {exc.reason}") from None
    except Refused as exc:
        raise ModelError("unreadable_model", f"cannot read the file: {exc}") from None
    kind = _sniff(data)
    if kind:
        raise ModelError("unreadable_model", f"not an ONNX model: the file is {kind}")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError, but RuntimeError has been seen too
        reason = _one_line(exc)
        if len(data) < 16:
            reason = f"{len(data)} bytes only"
        raise ModelError("unreadable_model", f"cannot decode the model (truncated or not ONNX): {reason}") from None
    if not model.HasField("graph") or model.ir_version <= 0:
        raise ModelError("unreadable_model", "cannot decode the model: no graph or IR version (not an ONNX file?)")
    return model


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a zip archive (a PyTorch checkpoint?)"),
    (b"\x1f\x8b", "gzip-compressed"),
    (b"%PDF", "a PDF document"),
    (b"version https://git-lfs", "a Git LFS pointer, not the model (run `git lfs pull`)"),
    (b"\x80\x02", "a Python pickle"),
    (b"\x80\x04", "a Python pickle"),
)


def _sniff(data: bytes) -> str | None:
    if not data:
        return "empty"
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return what
    if data[:1] == b"<" and b"ir_version" in data[:200]:
        return "ONNX text (name it *.onnx.txt)"
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc.args[0] if exc.args else None, bytes):
        text = exc.args[0].decode("utf-8", "replace")
    return " ".join(text.split())[:300] or type(exc).__name__


def iter_tensors(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    """Every tensor a graph holds: initializers, sparse ones, Constant values, subgraphs too."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from iter_tensors(attr.g)
            for g in attr.graphs:
                yield from iter_tensors(g)


def external_locations(model: onnx.ModelProto) -> tuple[str, ...]:
    """Every external-data location the model names, as written, in order of first use."""
    seen: dict[str, None] = {}
    for tensor in iter_tensors(model.graph):
        if is_external(tensor):
            for e in tensor.external_data:
                if e.key == "location":
                    seen.setdefault(e.value)
    return tuple(seen)


def is_external(tensor: TensorProto) -> bool:
    return tensor.data_location == TensorProto.EXTERNAL


def external_key(tensor: TensorProto) -> tuple:
    # Protobuf wrappers are not stable objects (no id()); the reference itself identifies the bytes.
    return tuple((e.key, e.value) for e in tensor.external_data)


def vet_external(model: onnx.ModelProto, model_dir: str) -> LoadedModel:
    """Validate every external-data reference before anything is opened.

    Refusals (unsafe external data) are collected rather than raised so the structure can still
    be checked; an unreadable model (missing file, bad offsets) raises.
    """
    loaded = LoadedModel(model=model, model_dir=model_dir)
    vetted: dict[str, tuple[str, os.stat_result] | str] = {}
    refs: dict[tuple, ExternalRef] = {}
    refused: dict[str, tuple[str, list[str]]] = {}
    for tensor in iter_tensors(model.graph):
        if not is_external(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if info.get(INLINE_KEY) == "1":
            # The bytes are in the model file itself (see inline.py): the file the user named.
            full = os.path.realpath(os.path.join(model_dir, location))
            st = os.stat(full)
            refs[external_key(tensor)] = ExternalRef(full, int(info["offset"]), int(info["length"]),
                                                     st.st_dev, st.st_ino)
            continue
        if location not in vetted:
            vetted[location] = _vet_location(model_dir, location)
        result = vetted[location]
        if isinstance(result, str):
            refused.setdefault(location, (result, []))[1].append(tensor.name)
            continue
        full, st = result
        try:
            offset = int(info.get("offset", "0") or 0)
            expected = _nbytes(tensor)
            length = int(info["length"]) if info.get("length") else expected
        except ValueError:
            raise ModelError("unreadable_model", f"external data of tensor {tensor.name!r} has a bad offset or length") from None
        if offset < 0 or length < 0:
            raise ModelError("unreadable_model", f"external data of tensor {tensor.name!r} has a negative offset or length")
        if expected is not None and length != expected:
            raise ModelError("unreadable_model", f"external data of tensor {tensor.name!r} holds {length} bytes, "
                                      f"its shape and type need {expected}")
        if offset + length > st.st_size:
            raise ModelError("unreadable_model", f"external data file {location!r} is {st.st_size} bytes, tensor "
                                      f"{tensor.name!r} needs bytes {offset}..{offset + length} (truncated?)")
        refs[external_key(tensor)] = ExternalRef(full, offset, length, st.st_dev, st.st_ino)
    # One refusal per location, however many tensors point there.
    for reason, names in refused.values():
        loaded.refused.append(f"external data of {tensors_named(names)} {reason}; it was not read")
    if not loaded.refused:
        loaded.external = refs
    return loaded


def tensors_named(names: list[str]) -> str:
    """`tensor 'w'`, or `12 tensors ('w', ...)`: the tensors a message is about."""
    return f"tensor {names[0]!r}" if len(names) == 1 else f"{len(names)} tensors ({names[0]!r}, ...)"


_DRIVE = re.compile(r"^[A-Za-z]:")


def _vet_location(model_dir: str, location: str) -> tuple[str, os.stat_result] | str:
    """(full path, lstat) of a safe location, or why it is refused. Only lstat is used."""
    if not location:
        return "has no location"
    if "\x00" in location:
        return f"location {location!r} holds a NUL byte"
    if location.startswith(("/", "\\")) or _DRIVE.match(location) or os.path.isabs(location):
        return f"location {location!r} is an absolute path outside the model's folder"
    parts = [p for p in re.split(r"[/\\]+", location) if p not in ("", ".")]
    if not parts:
        return f"location {location!r} names no file"
    if ".." in parts:
        return f"location {location!r} escapes the model's folder"
    current = model_dir
    for i, part in enumerate(parts):
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            raise ModelError("unreadable_model", f"external data file {location!r} does not exist next to the model") from None
        except OSError as exc:
            raise ModelError("unreadable_model", f"external data file {location!r} cannot be read: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            where = "is a symbolic link" if i == len(parts) - 1 else f"goes through the symbolic link {'/'.join(parts[: i + 1])!r}"
            return f"location {location!r} {where}"
    if not stat.S_ISREG(st.st_mode):
        return f"location {location!r} is not a regular file"
    return current, st


def _nbytes(tensor: TensorProto) -> int | None:
    dtype = _DTYPES.get(tensor.data_type)
    if dtype is None:
        return None
    return int(np.prod(tensor.dims, dtype=np.int64)) * dtype.itemsize


def sort_nodes(graph: onnx.GraphProto) -> None:
    """Put the nodes of a graph (and its subgraphs) in topological order, in place.

    onnxruntime's float16 converter writes nodes out of order and onnxruntime runs such models;
    only a real cycle is an error. Among ready nodes the original order is kept, so a sorted
    graph is left as it is. Names no node of this graph produces (inputs, initializers, values of
    enclosing graphs) are available from the start.
    """
    import heapq

    nodes = list(graph.node)
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("g"):
                sort_nodes(attr.g)
            for g in attr.graphs:
                sort_nodes(g)
    producer: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for out in node.output:
            if out:
                producer.setdefault(out, i)
    needs: list[set[int]] = []
    users: dict[int, list[int]] = {}
    for i, node in enumerate(nodes):
        deps = {producer[x] for x in _used_names(node) if x in producer and producer[x] != i}
        needs.append(deps)
        for d in deps:
            users.setdefault(d, []).append(i)
    if all(d < i for i, deps in enumerate(needs) for d in deps):
        return
    ready = [i for i, deps in enumerate(needs) if not deps]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users.get(i, ()):
            needs[u].discard(i)
            if not needs[u]:
                heapq.heappush(ready, u)
    if len(order) < len(nodes):
        placed = set(order)  # (once: built per index, a 40 000-node chain took 20 s)
        stuck = next(i for i in range(len(nodes)) if i not in placed)
        name = nodes[stuck].name or f"{nodes[stuck].op_type} #{stuck}"
        raise ModelError("unreadable_model", f"the graph {graph.name or 'main'!r} has a cycle through node {name!r}")
    graph.ClearField("node")
    graph.node.extend(nodes[i] for i in order)


def _used_names(node: onnx.NodeProto) -> Iterator[str]:
    """Inputs of a node, and the names its subgraphs read from enclosing scopes."""
    yield from (x for x in node.input if x)
    for attr in node.attribute:
        for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            defined = {i.name for i in g.input} | {t.name for t in g.initializer}
            for n in g.node:
                defined.update(o for o in n.output if o)
            for n in g.node:
                yield from (x for x in _used_names(n) if x not in defined)


def _names_are_text(graph: onnx.GraphProto) -> bool:
    """ONNX names are UTF-8 strings; protobuf hands back bytes for one that is not (a damaged
    file), which the checker lets through."""
    for node in graph.node:
        for value in (node.name, node.op_type, node.domain, *node.input, *node.output):
            if isinstance(value, bytes):
                return False
        for attr in node.attribute:
            if attr.HasField("g") and not _names_are_text(attr.g):
                return False
            if any(not _names_are_text(g) for g in attr.graphs):
                return False
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        if isinstance(value.name, bytes):
            return False
    return True


def check_structure(model: onnx.ModelProto) -> None:
    """onnx.checker on the model, with external tensors turned into graph inputs.

    The checker resolves external locations against the current directory (not the model's),
    so it must never see them: the copy it checks has no external references at all.
    """
    if not _names_are_text(model.graph):
        raise ModelError("unreadable_model", "a node or tensor name is not valid UTF-8 (the file is damaged)")
    target = model
    if any(is_external(t) for t in iter_tensors(model.graph)):
        target = onnx.ModelProto()
        target.CopyFrom(model)
        _strip_external(target.graph)
        # What is left (sparse initializers, tensors in other ops' attributes) becomes inline
        # zeros of the same type and shape: the checker sees its structure, never a location.
        for tensor in iter_tensors(target.graph):
            if is_external(tensor):
                _inline_zeros(tensor)
    try:
        onnx.checker.check_model(target)
    except Exception as exc:  # ValidationError, but a C++ failure surfaces as others
        raise ModelError("unreadable_model", f"fails onnx.checker: {_one_line(exc)}") from None


# Larger external tensors outside the initializers are given a single zero element instead: the
# checker then reports a size mismatch the user's model does not have, so this stays generous.
_PLACEHOLDER_BYTES = 64 << 20


def _inline_zeros(tensor: TensorProto) -> None:
    tensor.ClearField("external_data")
    tensor.data_location = TensorProto.DEFAULT
    nbytes = _nbytes(tensor)
    if nbytes is not None and nbytes > _PLACEHOLDER_BYTES:
        del tensor.dims[:]
        nbytes = _nbytes(tensor)
    tensor.raw_data = b"\0" * (nbytes or 0)


def _strip_external(graph: onnx.GraphProto) -> None:
    from onnx import helper

    inputs = {i.name for i in graph.input}
    keep = [t for t in graph.initializer if not is_external(t)]
    moved = [t for t in graph.initializer if is_external(t)]
    graph.ClearField("initializer")
    graph.initializer.extend(keep)
    for t in moved:
        if t.name not in inputs:
            graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    nodes = list(graph.node)
    graph.ClearField("node")
    for node in nodes:
        if node.op_type == "Constant" and any(a.HasField("t") and is_external(a.t) for a in node.attribute):
            t = next(a.t for a in node.attribute if a.HasField("t"))
            graph.input.append(helper.make_tensor_value_info(node.output[0], t.data_type, list(t.dims)))
            continue
        for attr in node.attribute:
            if attr.HasField("g"):
                _strip_external(attr.g)
            for g in attr.graphs:
                _strip_external(g)
        graph.node.append(node)


# -- reading tensor values, one chunk at a time --------------------------------------------------

def float_dtype(tensor: TensorProto) -> bool:
    return tensor.data_type in _FLOAT_DTYPES


def chunks(tensor: TensorProto, loaded: LoadedModel | None, chunk_elems: int = CHUNK_ELEMS) -> Iterator[np.ndarray]:
    """The tensor's values as flat arrays of at most chunk_elems, never the whole external tensor.

    Yields nothing when the data cannot be read safely (refused external data).
    """
    dtype = _DTYPES.get(tensor.data_type)
    if dtype is None:
        return
    if is_external(tensor):
        ref = loaded.external.get(external_key(tensor)) if loaded is not None else None
        if ref is None or not loaded.charge(tensor, ref):
            return
        yield from _external_chunks(ref, dtype, tensor.data_type, chunk_elems)
        return
    if tensor.HasField("raw_data"):
        raw = np.frombuffer(tensor.raw_data, dtype=dtype)
        for start in range(0, raw.size, chunk_elems):
            yield _as_float(raw[start : start + chunk_elems], tensor.data_type)
        return
    # Typed fields (float_data, int32_data for float16...) are small: exporters use raw_data for weights.
    from onnx import numpy_helper

    arr = numpy_helper.to_array(tensor).reshape(-1)
    if tensor.data_type == TensorProto.BFLOAT16:
        arr = arr.astype(np.float32)
    yield arr


def _external_chunks(ref: ExternalRef, dtype: np.dtype, data_type: int, chunk_elems: int) -> Iterator[np.ndarray]:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(ref.path, flags)
    try:
        st = os.fstat(fd)
        # The file opened must be the file vetted: a swap for a link in between is refused.
        if (st.st_dev, st.st_ino) != (ref.st_dev, ref.st_ino) or not stat.S_ISREG(st.st_mode):
            raise ModelError("unsafe_external_data", f"external data file {ref.path!r} changed while it was checked")
        step = chunk_elems * dtype.itemsize
        pos, end = ref.offset, ref.offset + ref.length
        while pos < end:
            n = min(step, end - pos)
            buf = os.pread(fd, n, pos) if hasattr(os, "pread") else _read_at(fd, n, pos)
            if len(buf) != n:
                raise ModelError("unreadable_model", f"external data file {ref.path!r} ended early")
            yield _as_float(np.frombuffer(buf, dtype=dtype), data_type)
            pos += n
    finally:
        os.close(fd)


def _read_at(fd: int, n: int, pos: int) -> bytes:
    os.lseek(fd, pos, os.SEEK_SET)
    return os.read(fd, n)


def _as_float(arr: np.ndarray, data_type: int) -> np.ndarray:
    if data_type == TensorProto.BFLOAT16:
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr


def small_value(tensor: TensorProto, loaded: LoadedModel | None, limit: int = 4096) -> np.ndarray | None:
    """The whole value of a small tensor (thresholds, exponents, shapes), or None."""
    if _DTYPES.get(tensor.data_type) is None:
        return None
    n = int(np.prod(tensor.dims, dtype=np.int64))
    if n > limit:
        return None
    parts = list(chunks(tensor, loaded, chunk_elems=limit))
    if not parts:
        return None
    arr = np.concatenate(parts) if len(parts) > 1 else parts[0]
    if arr.size != n:
        return None
    return arr.reshape(tuple(tensor.dims))


@dataclass(frozen=True)
class TensorStats:
    """Exact statistics of one tensor, over its finite values."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    count: int
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    mean: float | None = None
    variance: float | None = None

    @property
    def nonfinite(self) -> int:
        return self.nan + self.posinf + self.neginf

    @property
    def std(self) -> float | None:
        return None if self.variance is None else float(np.sqrt(self.variance))


def dequantized_stats(tensor: TensorProto, scale: np.ndarray | None, zero: np.ndarray | None, axis: int,
                      loaded: LoadedModel | None) -> TensorStats | None:
    """Mean and variance of (q - zero) * scale over a quantized tensor, streamed: per tensor, or
    per channel along `axis` when the scale has one value per channel."""
    if scale is None or tensor.data_type not in _DTYPES or tensor.data_type in _FLOAT_DTYPES:
        return None
    dims = [int(d) for d in tensor.dims]
    scale = scale.astype(np.float64).reshape(-1)
    zero = np.zeros(1) if zero is None else zero.astype(np.float64).reshape(-1)
    inner = channels = 1
    if scale.size > 1:
        if not dims:
            return None
        axis = axis % len(dims)
        if dims[axis] != scale.size:
            return None
        channels, inner = dims[axis], int(np.prod(dims[axis + 1:], dtype=np.int64))
    if zero.size not in (1, scale.size):
        return None
    n_tot, mean, m2, pos = 0, 0.0, 0.0, 0
    for chunk in chunks(tensor, loaded):
        x = chunk.astype(np.float64)
        if scale.size > 1:
            idx = (np.arange(pos, pos + x.size) // inner) % channels
            x = (x - (zero[idx] if zero.size > 1 else zero[0])) * scale[idx]
            del idx
        else:
            x = (x - zero[0]) * scale[0]
        pos += x.size
        n = x.size
        if n == 0:
            continue
        c_mean = float(x.mean())
        x -= c_mean
        c_m2 = float(np.dot(x, x))
        total = n_tot + n
        delta = c_mean - mean
        mean += delta * n / total
        m2 += c_m2 + delta * delta * n_tot * n / total
        n_tot = total
    if n_tot == 0:
        return None
    return TensorStats(name=tensor.name, dtype="float32", shape=tuple(dims), count=n_tot,
                       mean=mean, variance=m2 / n_tot)


def tensor_stats(tensor: TensorProto, loaded: LoadedModel | None, name: str | None = None,
                 memo: dict | None = None) -> TensorStats | None:
    """Streaming mean/variance (Chan's parallel update) and non-finite counts of a float tensor.
    `memo`: the moments of the external-data regions read so far, by file, range and type: a tiny
    model whose initializers all name one 400 MB region streamed it once per initializer (200
    references: 71 s)."""
    if not float_dtype(tensor):
        return None
    region = None
    if memo is not None and loaded is not None and is_external(tensor):
        ref = loaded.external.get(external_key(tensor))
        if ref is not None:
            region = (ref.st_dev, ref.st_ino, ref.offset, ref.length, tensor.data_type)
            if region in memo:
                return _stats(tensor, name, *memo[region])
    n_tot, mean, m2 = 0, 0.0, 0.0
    nan = posinf = neginf = 0
    seen = 0
    for chunk in chunks(tensor, loaded):
        seen += chunk.size
        finite = np.isfinite(chunk)
        if not finite.all():
            nan += int(np.isnan(chunk).sum())
            posinf += int(np.isposinf(chunk).sum())
            neginf += int(np.isneginf(chunk).sum())
            chunk = chunk[finite]
        del finite
        n = chunk.size
        if n == 0:
            continue
        x = chunk.astype(np.float64)
        c_mean = float(x.mean())
        x -= c_mean
        c_m2 = float(np.dot(x, x))
        del x
        total = n_tot + n
        delta = c_mean - mean
        mean += delta * n / total
        m2 += c_m2 + delta * delta * n_tot * n / total
        n_tot = total
    if region is not None:
        memo[region] = (seen, n_tot, mean, m2, nan, posinf, neginf)
    return _stats(tensor, name, seen, n_tot, mean, m2, nan, posinf, neginf)


def _stats(tensor: TensorProto, name: str | None, seen: int, n_tot: int, mean: float, m2: float,
           nan: int, posinf: int, neginf: int) -> TensorStats | None:
    count = int(np.prod(tensor.dims, dtype=np.int64))
    if seen == 0 and count > 0:
        return None  # unreadable (refused external data)
    return TensorStats(
        name=name or tensor.name,
        dtype=TensorProto.DataType.Name(tensor.data_type).lower(),
        shape=tuple(int(d) for d in tensor.dims),
        count=count,
        nan=nan,
        posinf=posinf,
        neginf=neginf,
        mean=mean if n_tot else None,
        variance=m2 / n_tot if n_tot else None,
    )
