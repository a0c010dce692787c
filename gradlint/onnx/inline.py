"""Decoding a large ONNX file without holding its weights: the protobuf is walked field by field
from the file, and every large `raw_data` of a graph initializer is left where it is and referred
to like external data, at its offset in the model file itself. The weights are then streamed
tensor by tensor, as for a model saved with external data.

Without this, decoding holds the file's bytes and the decoded message at once (about 2.9x the
file at peak). The reference carries a per-process random key, so a model file cannot forge one to
reach a file its own external-data references could not.
"""

from __future__ import annotations

import os
import secrets

# Files smaller than this are decoded whole: the saving would be small.
MIN_FILE = 64 << 20
# raw_data at least this large is left in the file.
MIN_TENSOR = 1 << 20
# The external_data key that marks a reference into the model file itself.
INLINE_KEY = f"gradlint-inline-{secrets.token_hex(8)}"

_MODEL_GRAPH = 7  # ModelProto.graph
_GRAPH_INITIALIZER = 5  # GraphProto.initializer
_TENSOR_RAW_DATA = 9  # TensorProto.raw_data
_TENSOR_EXTERNAL_DATA = 13  # TensorProto.external_data
_TENSOR_DATA_LOCATION = 14  # TensorProto.data_location
_ENTRY_KEY, _ENTRY_VALUE = 1, 2  # StringStringEntryProto
_EXTERNAL = 1  # TensorProto.EXTERNAL


class _Malformed(Exception):
    pass


def skeleton(path: str) -> bytes | None:
    """The model's bytes with large initializer payloads replaced by references into the file,
    or None when the file is small or not a protobuf this walk understands (then it is decoded
    whole, and the decoder reports what is wrong with it)."""
    try:
        size = os.path.getsize(path)
        if size < MIN_FILE:
            return None
        with open(path, "rb") as fh:
            return _message(fh, 0, size, _model_field, os.path.basename(path))
    except (_Malformed, OSError, ValueError):
        return None


def _model_field(fh, field: int, wire: int, start: int, length: int, name: str) -> bytes | None:
    if field == _MODEL_GRAPH and wire == 2:
        return _message(fh, start, start + length, _graph_field, name)
    return None


def _graph_field(fh, field: int, wire: int, start: int, length: int, name: str) -> bytes | None:
    if field == _GRAPH_INITIALIZER and wire == 2 and length >= MIN_TENSOR:
        return _tensor(fh, start, start + length, name)
    return None


def _tensor(fh, start: int, end: int, name: str) -> bytes | None:
    out = bytearray()
    payload: tuple[int, int] | None = None
    for field, wire, header, body, length in _fields(fh, start, end):
        if field == _TENSOR_RAW_DATA and wire == 2 and length >= MIN_TENSOR:
            payload = (body, length)
            continue
        if field in (_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION):
            return None  # already external: leave the tensor as it is
        out += _read(fh, header, body + length - header)
    if payload is None:
        return None
    for key, value in (("location", name), ("offset", str(payload[0])), ("length", str(payload[1])),
                       (INLINE_KEY, "1")):
        entry = _bytes_field(_ENTRY_KEY, key.encode()) + _bytes_field(_ENTRY_VALUE, value.encode())
        out += _bytes_field(_TENSOR_EXTERNAL_DATA, entry)
    out += _varint((_TENSOR_DATA_LOCATION << 3) | 0) + _varint(_EXTERNAL)
    return bytes(out)


def _message(fh, start: int, end: int, rewrite, name: str) -> bytes:
    """The bytes of a message between start and end, with the fields rewrite() changes."""
    out = bytearray()
    for field, wire, header, body, length in _fields(fh, start, end):
        new = rewrite(fh, field, wire, body, length, name) if wire == 2 else None
        if new is None:
            out += _read(fh, header, body + length - header)
        else:
            out += _bytes_field(field, new)
    return bytes(out)


def _fields(fh, start: int, end: int):
    """(field, wire type, offset of the key, offset of the value, value length) of each field."""
    pos = start
    while pos < end:
        head = _read(fh, pos, min(20, end - pos))
        key, n = _decode_varint(head, 0)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _Malformed("field 0")
        if wire == 0:
            _, m = _decode_varint(head, n)
            yield field, wire, pos, pos + n, m - n
            pos += m
        elif wire == 1:
            yield field, wire, pos, pos + n, 8
            pos += n + 8
        elif wire == 5:
            yield field, wire, pos, pos + n, 4
            pos += n + 4
        elif wire == 2:
            length, m = _decode_varint(head, n)
            if pos + m + length > end:
                raise _Malformed("field runs past its message")
            yield field, wire, pos, pos + m, length
            pos += m + length
        else:
            raise _Malformed(f"wire type {wire}")
    if pos != end:
        raise _Malformed("message ends inside a field")


def _read(fh, pos: int, n: int) -> bytes:
    fh.seek(pos)
    data = fh.read(n)
    if len(data) != n:
        raise _Malformed("file ends early")
    return data


def _decode_varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise _Malformed("bad varint")
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _bytes_field(field: int, payload: bytes) -> bytes:
    return _varint((field << 3) | 2) + _varint(len(payload)) + payload


__all__ = ["skeleton", "INLINE_KEY", "MIN_FILE", "MIN_TENSOR"]
