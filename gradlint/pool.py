"""Worker processes for per-file jobs: a worker that dies costs only the file it was checking.

A native parser that segfaults, a SIGKILL, the OOM killer: any of them breaks a
ProcessPoolExecutor, and every pending future fails with BrokenProcessPool. Here the pool is
rebuilt and the run goes on with the files not yet started; the files that were in flight when it
broke are re-run one at a time in a pool of their own, so the one that kills its worker again is
found, and only that one is reported as failed.

The first pool forks this process (fast: nothing to import again), and its caller keeps other
threads still until its processes exist. A pool made again after a death cannot ask that: the
caller's other threads are running by then, and a process forked while one of them imports a
module inherits that module's import lock held, so a worker that imports the same module waits
forever. Those pools start their processes from a fork server (a fresh, single-threaded process)
unless the caller chose a start method.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Sequence


def map_isolated(fn: Callable[[Any], Any], items: Sequence[Any], workers: int,
                 on_failure: Callable[[Any, str], Any], mp_context=None,
                 on_result: Callable[[int, Any], None] | None = None,
                 started: Callable[[], None] | None = None) -> list:
    """[fn(item) for item in items] in `workers` processes, in order. An item whose worker dies
    (or whose job raises) gets on_failure(item, reason) as its result; every other item its own.
    `fn` must be picklable (a module-level function). `on_result(i, result)` is called as each
    item's result is final, in the order they come; `started()` once the first pool's processes
    exist (a caller in another thread waits for it: processes forked while a thread imports a
    module could inherit its lock held)."""
    results: list = [None] * len(items)
    todo = deque(range(len(items)))
    suspects: deque[int] = deque()
    # Enough queued work to keep every worker busy, few enough suspects when one dies.
    window = max(2 * workers, 1)
    context = mp_context
    while todo:
        broken, _ = _run(fn, items, todo, results, workers, window, on_failure, context, on_result, started)
        suspects.extend(broken)
        started = None
        context = _again(mp_context)
    while suspects:  # one at a time: the one that dies alone is the culprit
        broken, why = _run(fn, items, suspects, results, 1, 1, on_failure, _again(mp_context), on_result)
        for i in broken:
            results[i] = on_failure(items[i], why)
            if on_result is not None:
                on_result(i, results[i])
    return results


def _again(mp_context):
    """The start method of a pool made again after a worker died: the caller's when it chose one
    (a test whose jobs are patched functions needs them forked), else a fork server where the
    platform has one (see the module's docstring), else the platform's default."""
    if mp_context is not None or "forkserver" not in multiprocessing.get_all_start_methods():
        return mp_context
    context = multiprocessing.get_context("forkserver")
    # Imported once by the server, not again by each process it forks (the suspects' pools make
    # one process per file); a module that fails to import is skipped there, not fatal.
    context.set_forkserver_preload(["gradlint.api"])
    return context


def _run(fn, items, todo: deque, results: list, workers: int, window: int, on_failure,
         mp_context, on_result=None, started=None) -> tuple[list[int], str]:
    """Run items from `todo` until it is empty or the pool breaks. Returns the indices in flight
    when it broke (empty when it did not), and why it broke."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp_context)
    in_flight: dict[Future, int] = {}
    processes: dict = {}
    try:
        while todo or in_flight:
            while todo and len(in_flight) < window:
                i = todo.popleft()
                try:
                    in_flight[pool.submit(fn, items[i])] = i
                except BrokenProcessPool:
                    # A worker died since the last wait: the pool refuses new work. This item
                    # never started (it goes back first); the ones in flight are the suspects.
                    todo.appendleft(i)
                    return sorted(in_flight.values()), _death_after(pool, processes)
                # the worker processes, kept to read the exit status of the one that died
                processes.update(getattr(pool, "_processes", None) or {})
                if started is not None:
                    started()  # the first submit has made them (a forking pool makes all at once)
                    started = None
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                exc = fut.exception()
                if isinstance(exc, BrokenProcessPool):
                    broken = True
                    continue
                i = in_flight.pop(fut)
                results[i] = on_failure(items[i], f"{type(exc).__name__}: {exc}") if exc else fut.result()
                if on_result is not None:
                    on_result(i, results[i])
            if broken:
                return sorted(in_flight.values()), _death_after(pool, processes)
        return [], ""
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _death_after(pool: ProcessPoolExecutor, processes: dict) -> str:
    """How the worker died, read once the broken pool is shut down. Its manager thread joins the
    processes as it fails the futures, so reading their exit status meanwhile polls each process
    from two threads: with a fork server both may see the status pipe readable, one reads the
    status and the other reads end-of-file, which multiprocessing records as exit status 255,
    overwriting the real one (a SIGSEGV was named 'exit status 255' about once in 40 runs)."""
    pool.shutdown(wait=True, cancel_futures=True)
    return _death(processes)


def _death(processes: dict) -> str:
    """How the worker died, from the exit status of the pool's processes. The pool may learn of the
    death (its pipe closed) a moment before the process is reaped: wait for the status briefly."""
    deadline = time.monotonic() + 2.0
    while True:
        codes = [getattr(proc, "exitcode", None) for proc in processes.values()]
        dead = [c for c in codes if c not in (None, 0)]
        if dead or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    # the pool terminates the surviving workers (SIGTERM), and a survivor may exit with a status of
    # its own as the pool breaks: a death by another signal names the culprit first, then an exit
    # status, then SIGTERM
    dead.sort(key=lambda c: (c == -signal.SIGTERM, c > 0))
    if not dead:
        return "the worker process died"
    code = dead[0]
    if code > 0:
        return f"the worker process died (exit status {code})"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"the worker process died ({name})"
