"""The cache's JSON text of facts, written straight from the records (gradlint.cache's layout).

`make_writer(encoding, fallback)` gives a function `text(value)` whose result is exactly
`fallback(value)` (the JSON encoder run over `cache.encode(value)`), character for character,
for every value; it is only faster. Encoding the facts of every file was most of what the first
cached run does more than `--no-cache` (about 2.5 M instructions of the 3.5 M more per file of a
cold run over small modules): `encode` built a JSON-ready copy of the whole tree in Python, one
call per record and container, then the JSON encoder walked that copy again.

Here each record type gets a writer made once from a fixed template (like the methods
`dataclasses` generates): it reads the record's init fields in one call and writes each field's
text inline when the value is exactly a str, int, bool, None or the empty tuple (the type tested
with `is`, so a subclass is never taken for its base); anything else goes through `text` (a tuple,
another record) and, for what is rare in facts (a float that is not finite, a list, set, dict,
enum, or a type that is not ours), through `fallback` itself, which also raises CacheError for what
cannot be stored. The template's text holds no name of anything: only the field count varies; the
record's tag reaches the writer as a value. Nothing read from a cache entry is ever compiled.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Callable

# json's own string writer (its C speedup), the one its encoder uses with ensure_ascii.
_string = json.encoder.encode_basestring_ascii
_int = int.__repr__
_float = float.__repr__
_STRINGS = frozenset({str})

# One field's text. `t` is the exact type: bool before int is not needed (a bool's type is bool).
_FIELD = ("(_string({v}) if (t := type({v})) is str else _int({v}) if t is int else "
          "('true' if {v} else 'false') if t is bool else 'null' if {v} is None else "
          "'[]' if t is tuple and not {v} else _text({v}))")
_TEMPLATE = "def write(o):\n    {names}, = get(o)\n    return head + ','.join(({fields},)) + ']}}'\n"


def make_writer(encoding: Callable[[type], tuple[str, Callable[[Any], tuple]]],
                fallback: Callable[[Any], str]) -> Callable[[Any], str]:
    """`text(value)`: the JSON text `fallback(value)` gives. `encoding(cls)` is the record type's
    tag and the getter of its init fields' values (a tuple), and raises for a type outside the
    allow-list."""
    writers: dict[type, Callable[[Any], str]] = {
        str: _string, int: _int, bool: lambda v: "true" if v else "false", type(None): lambda _v: "null"}
    one_of: dict[type, frozenset] = {}

    def text(value: Any) -> str:
        write = writers.get(type(value))
        if write is None:
            write = record_writer(type(value))
            if write is None:
                return fallback(value)
        return write(value)

    def finite(value: float) -> str:
        # json writes a finite float as float.__repr__ does; the others are {"$float": ...}
        return _float(value) if math.isfinite(value) else fallback(value)

    def sequence(value: tuple) -> str:
        if not value:
            return "[]"
        first = type(value[0])
        if first is str:
            if _STRINGS.issuperset(map(type, value)):
                return "[" + ",".join(map(_string, value)) + "]"
        else:
            same = one_of.get(first)
            if same is not None and same.issuperset(map(type, value)):  # records of one type
                return "[" + ",".join(map(writers[first], value)) + "]"
        return "[" + ",".join(map(text, value)) + "]"

    writers[float] = finite
    writers[tuple] = sequence

    def record_writer(kind: type) -> Callable[[Any], str] | None:
        if not dataclasses.is_dataclass(kind):
            return None
        tag, get = encoding(kind)  # raises for a record type outside the allow-list
        head = "{" + _string(tag) + ":["
        count = sum(1 for f in dataclasses.fields(kind) if f.init)  # as many as get(o) gives
        if count == 0:
            write = lambda _o: head + "]}"  # noqa: E731
        else:
            names = ", ".join(f"v{i}" for i in range(count))
            fields = ", ".join(_FIELD.format(v=f"v{i}") for i in range(count))
            namespace = {"get": get, "head": head, "_string": _string, "_int": _int, "_text": text}
            exec(compile(_TEMPLATE.format(names=names, fields=fields), "<gradlint.cache_writer>", "exec"), namespace)
            write = namespace["write"]
        writers[kind] = write
        one_of[kind] = frozenset({kind})
        return write

    return text

