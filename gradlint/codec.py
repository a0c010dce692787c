"""The cache's codec: gradlint's records (dataclasses and enums of an allow-list of modules) to
plain JSON and back, every field checked against its type on the way back; a tag outside the
allow-list is an error, never an import of anything the entry names (gradlint.cache stores it).
"""

from __future__ import annotations

import dataclasses
import enum
import gc
import importlib
import json
import math
import operator
import re
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any

from gradlint import deferred

# Modules whose dataclasses (and enums) may appear in an entry. Fixed here: an entry names a
# record, and the name is only looked up in these modules' own definitions.
RECORD_MODULES = (
    "gradlint.findings",
    "gradlint.model.ir",
    "gradlint.notebook",
)
# Each module's facts records, if the package exists (the engine's layout): its submodules join.
RECORD_PACKAGES = ("gradlint.facts",)


class CacheError(Exception):
    """An entry that is not a valid entry of this schema (a miss, never a failure of the run)."""


# --- the codec: dataclasses <-> JSON ------------------------------------------------------------
#
# The layout (schema 5): strings, integers, booleans, null and finite floats are themselves; a tuple
# is a JSON list; a record is an object with one key, its tag ('module.Class'), whose value lists
# the record's init fields in declaration order; anything else is an object with one key that
# starts with '$': {"$float": "nan"}, {"$list": [...]}, {"$set": [...]}, {"$frozenset": [...]},
# {"$dict": [[key, value], ...]}, {"$enum": [tag, value]}. Field names are not stored (the class
# defines them; a list of another length is refused): schema 4's {"$r": tag, "f": {name: value}}
# was 40% larger, and a warm run spent about half of its decoding on the names.

_RECORDS: dict[str, type | None] = {}
_SUBMODULE = re.compile(r"[a-z][a-z0-9_]*")


def _allowed_module(name: str) -> bool:
    if name in RECORD_MODULES:
        return True
    package, _, leaf = name.rpartition(".")
    return package in RECORD_PACKAGES and bool(_SUBMODULE.fullmatch(leaf))


def record_type(tag: str) -> type | None:
    """The allow-list: 'module.Class' -> the class, when the module is one of RECORD_MODULES (or
    a submodule of RECORD_PACKAGES) and the class is a dataclass or enum defined there; else None.
    Only a listed module of gradlint's own is ever imported, and only when an entry needs it (an
    ONNX-only run never pays for libcst, a source-only run never for onnx)."""
    if tag in _RECORDS:
        return _RECORDS[tag]
    module_name, _, name = tag.rpartition(".")
    found = None
    if _allowed_module(module_name):
        try:
            module = sys.modules.get(module_name) or importlib.import_module(module_name)
        except ImportError:
            module = None
        value = vars(module).get(name) if module is not None else None
        if isinstance(value, type) and value.__module__ == module_name and value.__qualname__ == name and (
                dataclasses.is_dataclass(value) or issubclass(value, enum.Enum)):
            found = value
    _RECORDS[tag] = found
    return found


def _tag(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# What a field's annotation accepts, as (exact, check): a decoded value fits when exact is None
# (anything), or its type is one of `exact`, or check(value) holds (check None: nothing else fits).
# Most fields are plain types or records, tested by one set lookup and no call.
Spec = tuple[frozenset | None, Any]


@dataclass(frozen=True)
class _Layout:
    """What the codec needs of one record type, computed once: its tag, its init fields (names,
    and a getter of their values as a tuple), and the spec of each field."""

    cls: type
    tag: str
    names: tuple[str, ...]
    get: Any
    specs: tuple[Spec, ...]
    # Built without calling __init__ (the fields set as __init__ would set them, for less than
    # half the time): a dataclass whose __init__ is the generated one, that sets every field and
    # does nothing else (no __post_init__), with no __new__ or __slots__ of its own.
    direct: bool


_LAYOUTS: dict[type, _Layout] = {}
# Tag -> layout of the allow-listed records decoded so far: a warm run decodes ~300 records a
# file, and the allow-list lookup of each tag was a tenth of it. Only tags that passed it enter.
_BY_TAG: dict[str, _Layout] = {}


def _layout(cls: type) -> _Layout:
    layout = _LAYOUTS.get(cls)
    if layout is None:
        tag = _tag(cls)
        if record_type(tag) is not cls:
            raise CacheError(f"not an allowed record type: {tag}")
        names, get = _fields(cls)
        try:
            hints = typing.get_type_hints(cls)
        except Exception:
            # An annotation that cannot be resolved: the values are still plain data or
            # allow-listed records, only their types go unchecked.
            hints = {}
        specs = tuple(_spec(hints.get(n, Any)) for n in names)
        layout = _LAYOUTS[cls] = _Layout(cls, tag, names, get, specs, _direct(cls, names))
    return layout


def _fields(cls: type) -> tuple[tuple[str, ...], Any]:
    """A record type's init fields, and a getter of their values as a tuple."""
    names = tuple(f.name for f in dataclasses.fields(cls) if f.init)
    if len(names) > 1:
        get = operator.attrgetter(*names)
    elif names:
        get = (lambda one: lambda value: (getattr(value, one),))(names[0])
    else:
        get = lambda _value: ()  # noqa: E731
    return names, get


def _encoding(cls: type) -> tuple[str, Any]:
    """What encode needs of a record type: its tag (once it passed the allow-list) and the getter
    of its fields. Not the field types, which only decoding checks: resolving them (typing's
    get_type_hints, then a spec per field) was ~9 ms of each worker of a cold run."""
    known = _ENCODING.get(cls)
    if known is None:
        layout = _LAYOUTS.get(cls)
        if layout is not None:
            known = (layout.tag, layout.get)
        else:
            tag = _tag(cls)
            if record_type(tag) is not cls:
                raise CacheError(f"not an allowed record type: {tag}")
            known = (tag, _fields(cls)[1])
        _ENCODING[cls] = known
    return known


_new = object.__new__


def _direct(cls: type, names: tuple[str, ...]) -> bool:
    # (a generated method not called yet is a stand-in until then: gradlint/deferred.py)
    init = getattr(deferred.compiled(cls.__init__), "__code__", None)
    return (cls.__new__ is object.__new__ and not hasattr(cls, "__post_init__") and "__slots__" not in vars(cls)
            and getattr(cls, "__dataclass_params__", None) is not None and cls.__dataclass_params__.init
            and names == tuple(f.name for f in dataclasses.fields(cls))
            # the generated __init__ (dataclasses compiles it from text), not one the class defines
            and init is not None and init.co_filename == "<string>")


_PLAIN = frozenset({str, int, bool, type(None)})
# What json.loads gives that decodes to itself.
_DECODED = _PLAIN | {float}


def encode(value: Any) -> Any:
    """A JSON-ready form of facts (the layout above). Raises CacheError on anything else.

    Most calls are saved: the JSON encoder writes a tuple as a list, so a tuple (or a record's
    tuple of field values) whose members are all plain is handed to it as it is, after one check
    of their types in C; other plain members are taken without a call. (Encoding a record met
    again, the same object, only once cost more than it saved.)"""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is tuple:
        if _PLAIN.issuperset(map(type, value)):
            return value
        return [v if type(v) in _PLAIN or v is _EMPTY else encode(v) for v in value]
    known = _ENCODING.get(kind)
    if known is None and dataclasses.is_dataclass(kind):
        known = _encoding(kind)
    if known is not None:
        tag, get = known
        values = get(value)
        if _PLAIN.issuperset(map(type, values)):
            return {tag: values}
        # (an empty tuple, a third of them, is the one empty tuple: a test by identity)
        return {tag: [v if type(v) in _PLAIN or v is _EMPTY else encode(v) for v in values]}
    if kind is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, enum.Enum):
        tag = _tag(kind)
        if record_type(tag) is not kind:
            raise CacheError(f"not an allowed record type: {tag}")
        return {"$enum": [tag, encode(value.value)]}
    if kind is list:
        return {"$list": [encode(v) for v in value]}
    if kind is frozenset or kind is set:
        return {"$frozenset" if kind is frozenset else "$set": [encode(v) for v in value]}
    if kind is dict:
        return {"$dict": [[encode(k), encode(v)] for k, v in value.items()]}
    raise CacheError(f"cannot store a {kind.__name__}")


_EMPTY = ()
# Record type -> (tag, getter of its field values), for encode.
_ENCODING: dict[type, tuple[str, Any]] = {}


def decode(data: Any) -> Any:
    """Rebuild what `encode` wrote; records are checked field by field against their types."""
    kind = type(data)
    if kind is list:
        return tuple([v if type(v) in _DECODED else decode(v) for v in data])
    if kind in _DECODED:
        return data
    if kind is not dict or len(data) != 1:
        if kind is dict:
            raise CacheError(f"unknown object with keys {sorted(data)[:4]}")
        raise CacheError(f"unexpected JSON value {kind.__name__}")
    (tag, body), = data.items()
    layout = _BY_TAG.get(tag)
    if layout is None:
        if tag[:1] == "$":
            return _decode_other(tag, body)
        cls = record_type(tag)
        if cls is None or not dataclasses.is_dataclass(cls):
            raise CacheError(f"unknown record type {tag!r}")
        layout = _BY_TAG[tag] = _layout(cls)
    if type(body) is not list or len(body) != len(layout.names):
        raise CacheError(f"{tag}: the fields differ from {list(layout.names)}")
    values = [v if type(v) in _DECODED else decode(v) for v in body]
    for value, (exact, check) in zip(values, layout.specs):
        if exact is not None and type(value) not in exact and (check is None or not check(value)):
            raise CacheError(f"{tag}: a {type(value).__name__} does not fit the field's type")
    if layout.direct:
        made = _new(layout.cls)
        vars(made).update(zip(layout.names, values))
        return made
    try:
        return layout.cls(*values)
    except Exception as exc:  # a record's own __post_init__ refusing the values
        raise CacheError(f"{tag}: {exc}") from None


def _decode_other(key: str, body: Any) -> Any:
    if key == "$float" and body in ("nan", "inf", "-inf"):
        return float(body)
    if type(body) is not list:
        raise CacheError(f"unknown object {key!r}")
    if key in ("$list", "$set", "$frozenset", "$dict"):
        items = [decode(v) for v in body]
        if key == "$list":
            return items
        try:
            if key == "$dict":
                if not all(type(kv) is tuple and len(kv) == 2 for kv in items):
                    raise CacheError("a $dict holds [key, value] pairs")
                return dict(items)
            return set(items) if key == "$set" else frozenset(items)
        except TypeError:  # an unhashable key or member
            raise CacheError(f"unhashable member in {key}") from None
    if key == "$enum" and len(body) == 2 and type(body[0]) is str:
        cls = record_type(body[0])
        if cls is None or not issubclass(cls, enum.Enum):
            raise CacheError(f"unknown enum {body[0]!r}")
        try:
            return cls(decode(body[1]))
        except (ValueError, TypeError):
            raise CacheError(f"bad value for {body[0]}") from None
    raise CacheError(f"unknown object {key!r}")


_SPECS: dict[Any, Spec] = {}
_SIMPLE = {int: (int,), float: (float, int), str: (str,), bool: (bool,), type(None): (type(None),)}
_ANY: Spec = (None, None)
_NOTHING: Spec = (frozenset(), None)


def _spec(hint: Any) -> Spec:
    """The spec of a type annotation, built once per annotation. An annotation form it does not
    know accepts nothing."""
    try:
        return _SPECS[hint]
    except (KeyError, TypeError):
        pass
    spec = _build_spec(hint)
    try:
        _SPECS[hint] = spec
    except TypeError:
        pass
    return spec


def _fits(value: Any, spec: Spec) -> bool:
    exact, check = spec
    return exact is None or type(value) in exact or (check is not None and check(value))


def _all_fit(container: type, spec: Spec):
    """A check of a container whose members all fit `spec`: by their types alone, in one C call,
    when they can be."""
    exact, check = spec
    if exact is None:
        return None
    if check is None:
        return lambda v: type(v) is container and exact.issuperset(map(type, v))
    return lambda v: type(v) is container and (exact.issuperset(map(type, v)) or all(
        type(x) in exact or check(x) for x in v))


def _build_spec(hint: Any) -> Spec:
    if hint is Any or hint is object:
        return _ANY
    if hint is None:
        hint = type(None)
    if hint in _SIMPLE:
        return frozenset(_SIMPLE[hint]), None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        parts = [_spec(a) for a in args]
        if any(exact is None for exact, _check in parts):
            return _ANY
        checks = [check for _exact, check in parts if check is not None]
        exact = frozenset().union(*(e for e, _c in parts))
        if not checks:
            return exact, None
        if len(checks) == 1:
            return exact, checks[0]
        return exact, lambda v: any(c(v) for c in checks)
    if origin is typing.Literal:
        return frozenset(), lambda v: any(type(v) is type(a) and v == a for a in args)
    if origin is tuple:
        if not args:
            return frozenset({tuple}), None
        if len(args) == 2 and args[1] is Ellipsis:
            check = _all_fit(tuple, _spec(args[0]))
            return (frozenset({tuple}), None) if check is None else (frozenset(), check)
        items = [_spec(a) for a in args]
        return frozenset(), lambda v: type(v) is tuple and len(v) == len(items) and all(
            _fits(x, s) for x, s in zip(v, items))
    if origin in (list, set, frozenset):
        check = _all_fit(origin, _spec(args[0]) if args else _ANY)
        return (frozenset({origin}), None) if check is None else (frozenset(), check)
    if origin is dict:
        key, val = (_spec(args[0]), _spec(args[1])) if args else (_ANY, _ANY)
        return frozenset(), lambda v: type(v) is dict and all(_fits(k, key) and _fits(x, val) for k, x in v.items())
    if origin is not None:
        return _NOTHING
    if hint in (tuple, list, dict, set, frozenset):
        return frozenset({hint}), None
    if isinstance(hint, type) and (dataclasses.is_dataclass(hint) or issubclass(hint, enum.Enum)):
        # Exactly the class by a set lookup; a subclass (ir.Extern for ir.Opaque) by isinstance.
        return frozenset({hint}), lambda v: isinstance(v, hint)
    return _NOTHING


# encode builds a fresh tree, which cannot hold a cycle (a cycle in the facts is a RecursionError
# in encode): the encoder's own cycle check would cost a quarter of the dump for nothing.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False)
# The C encoder _ENCODER.encode makes on every call, made once (half of its 3.5 us on a small
# result entry, of which a cold run makes one per file); None where CPython's C module is absent.
_C_ENCODE = json.encoder.c_make_encoder(
    None, _ENCODER.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False,
) if json.encoder.c_make_encoder is not None else None


def to_json(value: Any) -> str:
    """What _ENCODER.encode writes for a JSON-ready value (encode's output)."""
    if _C_ENCODE is None or type(value) is str:
        return _ENCODER.encode(value)
    return "".join(_C_ENCODE(value, 0))


class _NoCycleCollection:
    """Encoding and decoding make thousands of small containers, none of them in a cycle: the
    cyclic garbage collector, run every 700 allocations, found nothing to free and, with the facts
    of earlier files alive, made a warm run's decoding twice as slow (and encoding too). It is
    paused while one entry is made or read, and resumed as it was (memory is still freed by
    reference counting)."""

    def __enter__(self) -> None:
        self.resume = gc.isenabled()
        gc.disable()

    def __exit__(self, *_exc: object) -> None:
        if self.resume:
            gc.enable()


def dumps(value: Any) -> str:
    with _NoCycleCollection():
        return to_json(encode(value))


def loads(text: str | bytes) -> Any:
    try:
        with _NoCycleCollection():
            return decode(json.loads(text))
    except CacheError:
        raise
    except (ValueError, TypeError, RecursionError, MemoryError) as exc:
        raise CacheError(f"not valid JSON: {type(exc).__name__}") from None
