"""Room on CPython's frame stack for a deep recursive run, so that it does not map and unmap memory
at every call.

CPython (3.11 to 3.13, until gh-142183's fix) keeps the frames of Python calls in 16 KiB chunks
that it maps when a call does not fit in the current chunk and unmaps as soon as that call
returns. A recursive evaluator (libcst's code generator, the engine's walkers) goes up and down
across a chunk's boundary all the time: on timm + torchvision a run made ~150 000 `mmap` and
`munmap` pairs, each new chunk faulted in again, ~1.3 s of system time (6% of a cold run).

`roomy(fn, *args)` calls `fn` from a frame that reserves `_RESERVED` slots of evaluation stack it
never uses: that frame gets a chunk of its own of twice its size, and every deeper frame fits in
the rest of that chunk (about 2 MiB: thousands of frames), mapped once per call. A frame's unused
stack is never written nor scanned (the collector reads up to the used top), so the reserve
costs untouched virtual memory only. Elsewhere than CPython, or if the code object cannot be
changed, `roomy` is a plain call.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")

# Slots (pointers) of stack the calling frame reserves: 2 MiB; CPython gives the frame a chunk
# of the next power of two that holds it, 4 MiB, leaving ~2 MiB to the frames below it.
_RESERVED = 1 << 18

_inside = threading.local()  # the calling thread runs below a roomy frame already


def _call(fn, args, kwargs):
    return fn(*args, **kwargs)


def _reserve() -> bool:
    if sys.implementation.name != "cpython":
        return False
    try:
        _call.__code__ = _call.__code__.replace(co_stacksize=_RESERVED)
    except (AttributeError, TypeError, ValueError):
        return False
    return True


_RESERVING = _reserve()


def roomy(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs), its frames in one chunk of CPython's frame stack (above)."""
    if not _RESERVING or getattr(_inside, "on", False):
        return fn(*args, **kwargs)
    _inside.on = True
    try:
        return _call(fn, args, kwargs)
    finally:
        _inside.on = False
