"""stack.roomy: a call whose deep recursion stays in one chunk of CPython's frame stack."""

from __future__ import annotations

import resource
import sys
import threading

import pytest

from gradlint import stack


def _down(n: int) -> int:
    return 0 if n == 0 else 1 + _down(n - 1)


def _oscillate(rounds: int) -> int:
    # 150 frames down and up again, over and over: more than a 16 KiB chunk of frames, so a
    # plain call crosses a chunk's boundary (and maps a new chunk) on every round
    total = 0
    for _ in range(rounds):
        total += _down(150)
    return total


def _faults(fn, *args) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn(*args)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_roomy_returns_what_the_call_returns_and_passes_its_arguments() -> None:
    assert stack.roomy(lambda a, b=0: (a, b), 1, b=2) == (1, 2)
    assert stack.roomy(_oscillate, 3) == 450


def test_roomy_raises_what_the_call_raises_and_can_be_used_again() -> None:
    def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        stack.roomy(boom)
    # the thread is no longer "inside": a later call gets a roomy frame of its own
    assert stack.roomy(lambda: getattr(stack._inside, "on", False)) is stack._RESERVING


def test_nested_and_threaded_calls() -> None:
    seen: list[bool] = []

    def inner() -> None:
        seen.append(getattr(stack._inside, "on", False))

    def outer() -> None:
        stack.roomy(inner)  # already below a roomy frame: a plain call
        worker = threading.Thread(target=lambda: seen.append(getattr(stack._inside, "on", False)))
        worker.start()
        worker.join()

    stack.roomy(outer)
    assert seen == [stack._RESERVING, False]  # another thread has a frame stack of its own


@pytest.mark.skipif(sys.implementation.name != "cpython" or not sys.platform.startswith("linux"),
                    reason="CPython's chunked frame stack; page faults counted by Linux")
def test_deep_recursion_below_a_roomy_frame_maps_no_new_chunks() -> None:
    assert stack._RESERVING
    stack.roomy(_oscillate, 10)  # the reserve's own pages, faulted in once
    # 3 000 rounds: a chunk mapped and faulted in at each round would be >= 3 000 faults
    assert _faults(stack.roomy, _oscillate, 3000) < 500
