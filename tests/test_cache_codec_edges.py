"""The cache's codec over every record type it may store, with edge values in every field.

Every allow-listed record type is filled with edge values (unicode, NUL, big integers, -0.0, NaN,
infinities, nested tuples, lists, dicts, sets, enums, nested records) in each of its fields: what
`cache.dumps` writes must come back exactly, with the same types all the way down, and a value of
a subclass of str, int, float, list or dict, a foreign enum, a named tuple or a record type outside
the allow-list must be refused in any field (not written as its base type and read back as one)."""

from __future__ import annotations

import collections
import dataclasses
import enum
import importlib
import math
import pkgutil

import pytest

from gradlint import cache, codec
from gradlint.findings import Severity, SourceSpan
from gradlint.model.ir import Activation, Residual


class Text(str):
    pass


class Number(int):
    pass


class Items(list):
    pass


class Pairs(dict):
    pass


class Real(float):
    pass


class Color(enum.Enum):  # an enum outside the allow-list
    RED = 1


Pair = collections.namedtuple("Pair", "a b")


@dataclasses.dataclass(frozen=True)
class Span(SourceSpan):  # a subclass of a record, outside the allow-list
    pass


def record_types() -> list[type]:
    """Every dataclass the allow-list accepts (codec.RECORD_MODULES and the submodules of
    codec.RECORD_PACKAGES)."""
    names = list(codec.RECORD_MODULES)
    for package in codec.RECORD_PACKAGES:
        names += [f"{package}.{m.name}" for m in pkgutil.iter_modules(importlib.import_module(package).__path__)]
    found = []
    for name in names:
        for value in vars(importlib.import_module(name)).values():
            if isinstance(value, type) and dataclasses.is_dataclass(value) and \
                    cache.record_type(f"{value.__module__}.{value.__qualname__}") is value:
                found.append(value)
    return found


def blank(cls: type, values: list):
    """An instance of `cls` holding `values` in its init fields, made as the decoder makes it
    (no __init__: every value, fitting its field's type or not, is kept as given)."""
    made = object.__new__(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for name, value in zip(names, values):
        object.__setattr__(made, name, value)
    return made


SPAN = SourceSpan(1, 2, 3, 4)
# Values that round-trip: each of them alone and inside records and tuples.
STORABLE = [
    "", "plain", 'quote " backslash \\ nul \0 line\nbreak \u2028 é 𝄞', 0, -1, 2**70, True, False, None,
    0.0, -0.0, 1.5, 1e300, float("nan"), float("inf"), float("-inf"),
    (), ("a", "b"), ("a", 1, None, True), ((), ("x",), ((1,),)), (SPAN, SPAN), (SPAN, Activation("a", "relu")),
    ([1, (2,)], {"k": (1, [2])}), (float("nan"), 2.5), [], [1, (2, "x")], {"k": (1,), "j": None}, {1: 2}, {3},
    frozenset({"a", "b"}), Severity.ERROR, (Severity.WARNING,), SPAN, Residual(body=(Activation("a", "relu"),)),
]
# Values the codec refuses (CacheError) or cannot write (ValueError): the writer must too.
REFUSED = [Text("s"), Number(3), Items([1]), Pairs(a=1), Real(1.5), Color.RED, Pair(1, 2), Span(1, 1, 1, 1), object(),
           ("ok", Text("s")), (1, (Items(),)), 10**5000]


def same_text(value) -> str | None:
    """The text the codec writes of `value`; None when it refuses it (CacheError, or ValueError:
    an integer too long to write)."""
    try:
        return cache.dumps(value)
    except (cache.CacheError, ValueError):
        return None


def exact(back, made) -> bool:
    """Equal, and of the same types all the way down (a float's sign and NaN included)."""
    if type(back) is not type(made):
        return False
    if type(made) is float:
        return (math.isnan(back) and math.isnan(made)) or (back == made and math.copysign(1, back) == math.copysign(1, made))
    if isinstance(made, (tuple, list)):
        return len(back) == len(made) and all(exact(b, m) for b, m in zip(back, made))
    if isinstance(made, dict):
        return list(back) == list(made) and all(exact(back[k], made[k]) for k in made)
    if dataclasses.is_dataclass(made):
        names = [f.name for f in dataclasses.fields(made) if f.init]
        return all(exact(getattr(back, n), getattr(made, n)) for n in names)
    return back == made


@pytest.fixture
def unchecked_fields(monkeypatch):
    """Decoding with every field accepting any value: what comes back is what the layout holds,
    whatever the field's type says (the type checks have tests of their own in test_cache.py)."""
    monkeypatch.setattr(codec, "_spec", lambda _hint: codec._ANY)
    monkeypatch.setattr(codec, "_LAYOUTS", {})
    monkeypatch.setattr(codec, "_BY_TAG", {})


def test_the_allow_list_has_the_records_of_the_facts():
    names = {cls.__name__ for cls in record_types()}
    assert {"FileFacts", "Network", "Residual", "Event", "SourceSpan", "FileResult", "Finding"} <= names


def test_every_record_type_with_every_edge_value_reads_back_exactly(unchecked_fields):
    types = record_types()
    checked = 0
    for cls in types:
        count = sum(1 for f in dataclasses.fields(cls) if f.init)
        for k, value in enumerate(STORABLE):
            # the value in every field, the others cycling through the list (each field sees each value)
            values = [value if i == k % max(count, 1) else STORABLE[(k + i) % len(STORABLE)] for i in range(count)]
            made = blank(cls, values)
            text = same_text(made)
            assert text is not None, (cls, value)
            try:
                back = cache.loads(text)
            except cache.CacheError:
                # a record whose own __init__ or __post_init__ refuses the values (not rebuilt directly)
                assert not codec._layout(cls).direct, (cls, value)
                continue
            assert exact(back, made), (cls, value)
            checked += 1
    assert checked > len(types) * len(STORABLE) // 2


@pytest.mark.parametrize("bad", REFUSED, ids=[type(v).__name__ for v in REFUSED])
def test_subclasses_and_foreign_types_are_refused_in_any_record_field(bad):
    for cls in record_types():
        count = sum(1 for f in dataclasses.fields(cls) if f.init)
        for i in range(count):
            values = ["x"] * count
            values[i] = bad
            assert same_text(blank(cls, values)) is None, (cls, i)
    assert same_text(bad) is None and same_text((bad,)) is None and same_text([bad]) is None


def test_values_alone_and_in_containers_round_trip_exactly():
    for value in STORABLE + [tuple(STORABLE), [STORABLE], {"all": tuple(STORABLE)}]:
        text = same_text(value)
        assert text is not None and exact(cache.loads(text), value), value


def test_to_json_writes_what_the_encoder_writes_and_refuses_what_it_refuses() -> None:
    from gradlint.codec import _ENCODER, encode, to_json
    from gradlint.findings import FileResult

    values = [encode((FileResult(path="m0.onnx"), "", (), "")), "plain", 3, None, [1.5, "é\u2028\x00"],
              {"$dict": [["k", [True, False]]]}, encode((FileResult(path="ü/\"q\".py", internal_error="x\ny"),))]
    for value in values:
        assert to_json(value) == _ENCODER.encode(value)
    for bad in ([float("nan")], {"k": float("inf")}, [object()]):
        with pytest.raises((ValueError, TypeError)):
            to_json(bad)
