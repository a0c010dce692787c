"""Dataclass methods of libcst's nodes and gradlint's records compiled when first called, not when
their class is made: a third of a one-file run's start-up.

Python's `dataclasses` (up to 3.12) writes each generated method (`__init__`, `__repr__`,
`__eq__`, `__hash__`, a frozen class's `__setattr__` and `__delattr__`...) as source text and
compiles it on the spot with `exec`, one compile per method: about 1 400 compiles (0.15-0.2 s)
for the ~270 dataclasses libcst and gradlint define, of which a run calls about 350. Here each of
those methods starts as a small stand-in that holds the arguments `dataclasses` gave; its first
call compiles the method from the very same text, exactly as `dataclasses` would have, puts it in
the class in the stand-in's place and runs it. Nothing is read from a file or kept across runs: a
store of compiled dataclass code in `__pycache__` was tried and removed (`check` must never load
executable code from a file); this only moves the same compile to the first call.

Only classes of the `gradlint` and `libcst` packages are deferred; every other dataclass of the
process is made as before. For a class without a docstring, `dataclasses` writes one from the
signature of its `__init__` (`Name(a: int, b: str = 'x')`), which would compile it at once: that
docstring is written when first read instead (`_Doc`), from the compiled `__init__`, the same text. On a Python whose `dataclasses` is not the one described (3.13
compiles a class's methods in one go), nothing is changed.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from typing import Any, Callable

_DEFERRED_PACKAGES = ("gradlint", "libcst")
_create_fn = getattr(dataclasses, "_create_fn", None)
_process_class = getattr(dataclasses, "_process_class", None)
# (3.10 to 3.12 share these two functions' signatures; a stand-in relies on nothing else.)
_SUPPORTED = (
    sys.version_info < (3, 13) and _create_fn is not None and _process_class is not None
    and _create_fn.__code__.co_varnames[:3] == ("name", "args", "body")
    and set(_create_fn.__code__.co_varnames[3:6]) == {"globals", "locals", "return_type"}
)


class _Making(threading.local):
    """Whether the methods of the class being made in this thread wait for their first call."""

    defer: bool = False


_MAKING = _Making()


def _deferring_create_fn(name: str, args: Any, body: Any, *, globals: Any = None, locals: Any = None,
                         return_type: Any = dataclasses.MISSING) -> Callable:
    if not _MAKING.defer:
        return _create_fn(name, args, body, globals=globals, locals=locals, return_type=return_type)
    return _stand_in(name, (name, args, body, globals, locals, return_type))


def _stand_in(name: str, how: tuple) -> Callable:
    real: list = []

    def stand_in(*args: Any, **kwargs: Any) -> Any:
        return (real[0] if real else _compile(stand_in, how, real, args))(*args, **kwargs)

    # named as dataclasses names the method until the class renames it (`_set_qualname`)
    stand_in.__name__ = name
    stand_in.__qualname__ = f"__create_fn__.<locals>.{name}"
    if how[3] is not None:
        stand_in.__module__ = how[3].get("__name__")
    stand_in.gradlint_deferred = (how, real)
    return stand_in


def _compile(stand_in: Callable, how: tuple, real: list, args: tuple = ()) -> Callable:
    """The method `dataclasses` would have made; when called on an instance (`args[0]`, every
    generated method's `self`), put in the instance's class that holds the stand-in, in its
    place: later calls go straight to it. The class is looked up from the instance, not kept from
    when it was made: libcst makes each node class again with `__slots__` (`add_slots`), and the
    class in use is that copy. (A `__repr__` is held wrapped: it keeps its stand-in.)"""
    name, fn_args, body, globals_, locals_, return_type = how
    fn = _create_fn(name, fn_args, body, globals=globals_, locals=locals_, return_type=return_type)
    fn.__qualname__ = stand_in.__qualname__
    real.append(fn)
    if args:
        for owner in type(args[0]).__mro__:
            if owner.__dict__.get(name) is stand_in:
                setattr(owner, name, fn)
                break
    return fn


class _Doc:
    """The docstring `dataclasses` writes for a class without one, written at its first reading
    (a class's `__doc__` that is a descriptor is read through it, `type.__doc__` included): the
    class's name and the signature of its `__init__`, compiled then. While the class is made it
    reads as a placeholder, so that `dataclasses` leaves it be."""

    def __init__(self) -> None:
        self.making = True

    def __get__(self, instance: Any, owner: type | None = None) -> str:
        if self.making:
            return "(docstring written when first read)"
        cls = owner if owner is not None else type(instance)
        for klass in cls.__mro__:  # the real __init__, as inspect.signature must see it
            init = klass.__dict__.get("__init__")
            if hasattr(init, "gradlint_deferred"):
                setattr(klass, "__init__", compiled(init))
        import inspect

        try:  # dataclasses' own words
            text_sig = str(inspect.signature(cls)).replace(" -> None", "")
        except (TypeError, ValueError):
            text_sig = ""
        doc = cls.__name__ + text_sig
        if cls.__dict__.get("__doc__") is self:
            cls.__doc__ = doc
        return doc


def _deferring_process_class(cls: type, *args: Any, **kwargs: Any) -> type:
    module = getattr(cls, "__module__", None) or ""
    outer = _MAKING.defer
    _MAKING.defer = module.split(".", 1)[0] in _DEFERRED_PACKAGES
    doc = None
    if _MAKING.defer and not cls.__dict__.get("__doc__"):
        doc = cls.__doc__ = _Doc()
    try:
        return _process_class(cls, *args, **kwargs)
    finally:
        _MAKING.defer = outer
        if doc is not None:
            doc.making = False


def compiled(fn: Any) -> Any:
    """`fn` itself, or, for a stand-in, the method it stands for (compiled now if not yet): for
    code that reads a generated method's code object (gradlint.cache)."""
    deferred = getattr(fn, "gradlint_deferred", None)
    if deferred is None:
        return fn
    how, real = deferred
    return real[0] if real else _compile(fn, how, real)


def install() -> None:
    """Defer the methods of the gradlint and libcst dataclasses made from now on (once)."""
    if _SUPPORTED and dataclasses._process_class is _process_class and dataclasses._create_fn is _create_fn:
        dataclasses._create_fn = _deferring_create_fn
        dataclasses._process_class = _deferring_process_class
