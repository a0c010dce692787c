"""Dataclass methods compiled at their first call (gradlint/deferred.py) behave as the ones
`dataclasses` compiles at once, and replace their stand-ins in the class."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from gradlint import deferred

# The command installs it (gradlint/cli.py); this module may run before anything imports the CLI.
deferred.install()

needs_deferral = pytest.mark.skipif(not deferred._SUPPORTED, reason="this Python compiles dataclass methods its own way")


def _record(module: str, doc: str | None = "A record.", **params):
    namespace = {"__module__": module, "__doc__": doc, "__annotations__": {"a": int, "b": str, "c": list},
                 "b": "x", "c": dataclasses.field(default_factory=list)}
    return dataclasses.dataclass(**params)(type("Rec", (), namespace))


def _generated(cls: type, name: str):
    return cls.__dict__[name]


@needs_deferral
def test_methods_of_gradlint_records_wait_for_their_first_call():
    rec = _record("gradlint.facts.example", frozen=True)
    assert hasattr(_generated(rec, "__init__"), "gradlint_deferred")
    assert hasattr(_generated(rec, "__hash__"), "gradlint_deferred")
    one = rec(1)
    init = _generated(rec, "__init__")
    assert not hasattr(init, "gradlint_deferred")
    assert init.__code__.co_filename == "<string>"  # compiled by dataclasses, from its own text
    assert init.__qualname__ == "Rec.__init__"
    assert hasattr(_generated(rec, "__eq__"), "gradlint_deferred")  # not called yet
    assert one == rec(1, "x", [])
    assert not hasattr(_generated(rec, "__eq__"), "gradlint_deferred")


@pytest.mark.parametrize("module", ["gradlint.facts.example", "libcst._nodes.example", "someone.else"])
@pytest.mark.parametrize("frozen", [True, False])
def test_deferred_records_behave_as_eager_ones(module, frozen):
    rec, eager = _record(module, frozen=frozen, order=True), _record("someone.else", frozen=frozen, order=True)
    for cls in (rec, eager):
        one, two = cls(1), cls(2, "y", [3])
        assert (one.a, one.b, one.c, two.c) == (1, "x", [], [3])
        assert one.c is not cls(1).c  # the default factory, called per instance
        assert repr(two) == "Rec(a=2, b='y', c=[3])"
        assert one == cls(1) and one != two and one < two and two >= one
        assert (one == 1) is False
        with pytest.raises(TypeError):
            cls()
        if frozen:
            with pytest.raises(dataclasses.FrozenInstanceError):
                one.a = 5
            with pytest.raises(dataclasses.FrozenInstanceError):
                del one.a
            # frozen records with mutable fields cannot be hashed (a list); with plain ones they can
        else:
            one.a = 5
            assert one.a == 5
            assert cls.__hash__ is None


@needs_deferral
def test_a_subclass_compiles_its_base_method_in_the_base():
    base = _record("gradlint.facts.example")
    sub = type("Sub", (base,), {"__module__": "gradlint.facts.example", "__doc__": "A subclass."})
    made = sub(7)
    assert made.a == 7 and type(made) is sub
    assert "__init__" not in sub.__dict__
    assert not hasattr(_generated(base, "__init__"), "gradlint_deferred")


@needs_deferral
def test_a_class_made_again_with_slots_gets_the_method_in_its_own_dict():
    # libcst's add_slots makes each node class again from the dataclass's dict, stand-ins included
    rec = _record("libcst._nodes.example", frozen=True)
    names = [f.name for f in dataclasses.fields(rec)]
    namespace = {k: v for k, v in rec.__dict__.items() if k not in (*names, "__dict__", "__weakref__")}
    slotted = type(rec)(rec.__name__, rec.__bases__, {**namespace, "__slots__": tuple(names)})
    one = slotted(1)
    assert (one.a, one.b, one.c) == (1, "x", [])
    assert slotted.__dict__["__init__"].__code__.co_filename == "<string>"
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.a = 2
    assert slotted.__dict__["__setattr__"].__code__.co_filename == "<string>"


def test_classes_of_other_packages_are_made_at_once():
    assert not hasattr(_generated(_record("someone.else"), "__init__"), "gradlint_deferred")
    assert not hasattr(_generated(_record("someone.else", doc=None), "__init__"), "gradlint_deferred")


@pytest.mark.parametrize("params", [{}, {"frozen": True}, {"slots": True}])
def test_a_class_without_a_docstring_gets_the_one_dataclasses_writes(params):
    # dataclasses writes it from the __init__ signature, which must be the real one: written when read
    want = "Rec(a: int, b: str = 'x', c: list = <factory>)"
    assert _record("someone.else", doc=None, **params).__doc__ == want
    undocumented = _record("gradlint.facts.example", doc=None, **params)
    if deferred._SUPPORTED:
        assert hasattr(_generated(undocumented, "__init__"), "gradlint_deferred")
    assert undocumented(1).__doc__ == want  # read on an instance
    assert undocumented.__doc__ == want
    assert not hasattr(_generated(undocumented, "__init__"), "gradlint_deferred")
    assert undocumented.__dict__["__doc__"] == want  # written once
    again = _record("libcst._nodes.example", doc=None, **params)
    assert again.__doc__ == want and again(2).a == 2


@needs_deferral
def test_compiled_gives_the_generated_method():
    rec = _record("gradlint.facts.example", frozen=True)
    fn = deferred.compiled(rec.__dict__["__repr__"].__wrapped__)  # __repr__ is held wrapped
    assert fn.__code__.co_filename == "<string>"
    assert deferred.compiled(len) is len


def test_gradlint_records_pickle_and_cache_as_before():
    from gradlint import cache, codec
    from gradlint.findings import SourceSpan

    span = SourceSpan(3, 4, 3, 9)
    assert pickle.loads(pickle.dumps(span)) == span
    assert hash(SourceSpan(3, 4, 3, 9)) == hash(span)
    assert cache.loads(cache.dumps(span)) == span
    # the cache builds records without their __init__ when it is the generated one
    assert codec._layout(SourceSpan).direct


def test_only_the_command_line_installs_it():
    """A program that imports gradlint's API keeps its `dataclasses` as it is; the command
    installs the deferral before any of its records or libcst's nodes is made."""
    import subprocess
    import sys

    probe = ("import dataclasses, sys; from gradlint import deferred; import gradlint.api; "
             "api = dataclasses._create_fn is deferred._create_fn; import gradlint.cli; "
             "cli = dataclasses._create_fn is deferred._deferring_create_fn; print(api, cli or not deferred._SUPPORTED)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]
