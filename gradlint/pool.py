"""Worker processes for per-file jobs: a worker that dies costs only the file it was checking.

A native parser that segfaults, a SIGKILL, the OOM killer: any of them breaks a
ProcessPoolExecutor, and every pending future fails with BrokenProcessPool. Here the pool is
rebuilt and the run goes on with the files not yet started; the files that were in flight when it
broke are re-run one at a time in a pool of their own, so the one that kills its worker again is
found, and only that one is reported as failed.

Small items go to a worker several at a time (`cost`): a job's round trip through the pool (its
arguments and result pickled, passed by the parent's threads, waited for) cost about as much as
checking a small ONNX model, and each worker sat idle a third of a run over 2 000 of them. A worker
that dies on a chunk makes each item of it a suspect, run alone like any other.

The first pool forks this process (fast: nothing to import again), and its caller keeps other
threads still until its processes exist. A pool made again after a death cannot ask that: the
caller's other threads are running by then, and a process forked while one of them imports a
module inherits that module's import lock held, so a worker that imports the same module waits
forever. Those pools start their processes from a fork server (a fresh, single-threaded process)
unless the caller chose a start method.
"""

from __future__ import annotations

import gc
import multiprocessing
import signal
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Sequence


# What one job is given at most, in `cost` units (1: about what a job's round trip costs): 2 000
# small ONNX models in chunks of 32 took 1.40 s against 2.04 s one by one.
CHUNK_COST = 32.0


class Kept:
    """A pool kept from one map_isolated call to the next (the runs of several projects in one
    command: a pool costs ~100 ms to start, and 50 projects paid it 50 times). The caller shuts
    it down (`close`) when its runs are done; a pool that broke is never kept."""

    def __init__(self) -> None:
        self.pool: ProcessPoolExecutor | None = None
        self.shape: tuple | None = None  # (workers, start context) it was made for

    def take(self, workers: int, mp_context) -> ProcessPoolExecutor | None:
        if self.pool is not None and self.shape == (workers, mp_context):
            return self.pool
        self.close()
        return None

    def close(self) -> None:
        pool, self.pool, self.shape = self.pool, None, None
        if pool is not None:
            try:
                pool.shutdown(wait=True, cancel_futures=True)
            except (OSError, RuntimeError):
                pass  # (its processes are gone already: nothing is left to end)


def map_isolated(fn: Callable[[Any], Any], items: Sequence[Any], workers: int,
                 on_failure: Callable[[Any, str], Any], mp_context=None,
                 on_result: Callable[[int, Any], None] | None = None,
                 started: Callable[[], None] | None = None,
                 cost: Callable[[int], float] | None = None, kept: Kept | None = None) -> list:
    """[fn(item) for item in items] in `workers` processes, in order. An item whose worker dies
    (or whose job raises) gets on_failure(item, reason) as its result; every other item its own.
    `fn` must be picklable (a module-level function). `on_result(i, result)` is called as each
    item's result is final, in the order they come; `started()` once the first pool's processes
    exist (a caller in another thread waits for it: processes forked while a thread imports a
    module could inherit its lock held). `cost(i)`: what item i costs, in units of a job's round
    trip; consecutive items go to a worker together up to CHUNK_COST (without it, one by one).
    `kept`: the first pool is taken from it, or made and left in it, not shut down here."""
    results: list = [None] * len(items)
    todo = deque(range(len(items)))
    suspects: deque[int] = deque()
    # Enough queued work to keep every worker busy, few enough suspects when one dies.
    window = max(2 * workers, 1)
    context = mp_context
    while todo:
        broken, _ = _run(fn, items, todo, results, workers, window, on_failure, context, on_result, started, cost, kept)
        suspects.extend(sorted(broken))
        started = None
        context = _again(mp_context)
        kept = None  # (a pool made again after a death is this call's own)
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
         mp_context, on_result=None, started=None, cost=None, kept: Kept | None = None) -> tuple[list[int], str]:
    """Run items from `todo` until it is empty or the pool breaks. Returns the indices in flight
    when it broke (empty when it did not), and why it broke. With `kept`, its pool is used (or
    one made is left there) and shut down only when it breaks."""
    pool = kept.take(workers, mp_context) if kept is not None else None
    if pool is None:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp_context)
        if kept is not None:
            kept.pool, kept.shape = pool, (workers, mp_context)
    broke = True
    in_flight: dict[Future, list[int]] = {}
    processes: dict = {}
    alone: set[int] = set()  # items sent one to a job whatever their cost

    def settle(i: int, result: Any) -> None:
        results[i] = result
        if on_result is not None:
            on_result(i, result)

    try:
        while todo or in_flight:
            while todo and len(in_flight) < window:
                chunk = _take(todo, None if todo[0] in alone else cost, window)
                try:
                    in_flight[pool.submit(_chunk, fn, [items[i] for i in chunk])] = chunk
                except BrokenProcessPool:
                    # A worker died since the last wait: the pool refuses new work. These items
                    # never started (they go back first); the ones in flight are the suspects.
                    todo.extendleft(reversed(chunk))
                    return [i for held in in_flight.values() for i in held], _death_after(pool, processes)
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
                chunk = in_flight.pop(fut)
                if exc is not None and len(chunk) > 1:
                    # not an item's own exception (_chunk caught those): the chunk's results could
                    # not be sent back (one that does not pickle). Each goes again alone, so that
                    # only the one at fault fails.
                    alone.update(chunk)
                    todo.extendleft(reversed(chunk))
                    continue
                if exc is not None:
                    settle(chunk[0], on_failure(items[chunk[0]], f"{type(exc).__name__}: {exc}"))
                    continue
                for i, (failed, got) in zip(chunk, fut.result()):
                    settle(i, on_failure(items[i], got) if failed else got)
            if broken:
                return [i for held in in_flight.values() for i in held], _death_after(pool, processes)
        broke = False
        return [], ""
    finally:
        if kept is None or broke:
            pool.shutdown(wait=True, cancel_futures=True)
            if kept is not None and kept.pool is pool:
                kept.pool, kept.shape = None, None


def _take(todo: deque, cost: Callable[[int], float] | None, window: int) -> list[int]:
    """The next job's items from the front of `todo`: one without `cost`; else items while their
    cost adds up to less than CHUNK_COST, and no more than a share of what is left (the last
    items spread over the workers, not all given to one)."""
    chunk = [todo.popleft()]
    if cost is None:
        return chunk
    spent, most = cost(chunk[0]), max(1, len(todo) // window)
    while todo and len(chunk) < most and spent + cost(todo[0]) <= CHUNK_COST:
        spent += cost(todo[0])
        chunk.append(todo.popleft())
    return chunk


# Items a worker runs between two full collections of its garbage. A worker inherits the
# parent's collector switched off (the parent pauses it while facts arrive), and a pool kept for
# several runs lives through all of them: 20 projects of 49 files grew each worker to 354 MB
# (60 MB with collections).
_COLLECT_EVERY = 256
_since_collect = 0


def _chunk(fn: Callable[[Any], Any], items: list) -> list[tuple[bool, Any]]:
    """In a worker: fn of each item, as (False, result), or (True, why) for one that raised (the
    others of its chunk still get their own)."""
    global _since_collect
    _since_collect += len(items)
    if _since_collect >= _COLLECT_EVERY:
        _since_collect = 0
        gc.collect()
    out: list[tuple[bool, Any]] = []
    for item in items:
        try:
            out.append((False, fn(item)))
        except Exception as exc:  # noqa: BLE001 - an item's failure is its result
            out.append((True, f"{type(exc).__name__}: {exc}"))
    return out


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
