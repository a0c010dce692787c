"""Worker processes for per-file jobs: a worker that dies costs only the file it was checking.

A native parser that segfaults, a SIGKILL, the OOM killer: each worker has a connection of its
own to the parent, so the parent knows which job a dead worker held, reads the end of its
connection (a result cut off mid-message is an error there, not a wait: no other process holds
its other end), replaces the worker and goes on. The items of the job it held are run again, each
alone; one whose worker dies again is reported as failed, with how the worker died. (This pool
replaced concurrent.futures' ProcessPoolExecutor, whose workers share one result pipe: a worker
killed while it wrote its result left the parent waiting for the rest of the message forever,
7 runs in 30 under random SIGKILLs.)

Small items go to a worker several at a time (`cost`): a job's round trip (its arguments and
result pickled, passed, waited for) cost about as much as checking a small ONNX model. Each worker
holds up to two jobs, so that it finds the next one waiting when it sends a result; the thread
that reads results never writes a job (a sender thread does: a worker blocked writing a large
result to a parent blocked writing a large job to it would wait forever). One sender serves every
worker, so a job larger than a pipe's buffer (64 KiB) sent to a busy worker holds back the jobs of
the others until that worker reads it: gradlint's jobs are a few paths.

The first workers are forked from this process (fast: nothing to import again), and its caller
keeps other threads still until they exist. A worker made later cannot ask that: the caller's
other threads are running by then, and a process forked while one of them imports a module
inherits that module's import lock held, so a worker that imports the same module waits forever.
Those workers start from a fork server (a fresh, single-threaded process) unless the caller chose
a start method.

A job that runs longer than JOB_SECONDS (a native loop, a worker stopped by a signal) has its
worker killed and counts as its death; a lone item that overruns fails at once, with why. The
parent reads each result as its bytes come and never waits inside one, so a worker stopped
halfway through writing a result is such a job too.
"""

from __future__ import annotations

import atexit
import gc
import multiprocessing
import multiprocessing.util  # (registers its exit function first: ours, registered below, runs before it)
import os
import pickle
import queue
import signal
import sys
import threading
import time
import weakref
from collections import deque
from contextlib import contextmanager
from multiprocessing.connection import wait as wait_for
from typing import Any, Callable, Sequence


# What one job is given at most, in `cost` units (1: about what a job's round trip costs): 2 000
# small ONNX models in chunks of 32 took 1.40 s against 2.04 s one by one.
CHUNK_COST = 32.0

# Jobs a worker holds at once: the one it runs and the next.
DEPTH = 2

# Seconds one job may run before its worker is killed: the front-ends' budgets end a file's
# extraction within seconds (the slowest of the corpus's 13 373 files takes 3 s alone, a job of
# small files less), so a job this late is stuck (a native loop, a worker stopped by SIGSTOP),
# and without a limit the run waited for it forever.
JOB_SECONDS = 120.0

# While a job runs the parent wakes at least every _TICK seconds. A round of its loop that took
# _STALL seconds more than the wait it asked for means this process did not run meanwhile (Ctrl-Z
# then fg, a debugger's pause, a frozen machine): its workers did not either (the terminal stops
# the whole process group), so that time is not counted against their jobs: every job in flight
# was killed on resume after a Ctrl-Z longer than the limit.
_TICK = 1.0
_STALL = 2.0

# Bytes the parent reads from a worker's connection at a time (a socket's buffer holds about
# 200 KiB: one read takes all there is).
_READ = 1 << 18


# Every pool with workers, so that the process's exit (or a caller ending a thread's runs) can
# end them.
_live: "weakref.WeakSet[_Pool]" = weakref.WeakSet()
_live_lock = threading.Lock()
_exiting = False
_ended_threads: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()


class Exiting(RuntimeError):
    """No worker is started for a thread whose runs were ended, nor once the process exits."""


def end_runs_of(thread: threading.Thread) -> None:
    """End the pools `thread` runs jobs on, now, and every pool it would start from now on: its
    runs give up (their items not in yet fail). For a caller interrupted (Ctrl-C) while another
    thread runs a pool for it: the caller joins that thread before it goes on, so that no thread
    of gradlint is still running while Python shuts down (the facts thread, left running while
    the interpreter finalised, crashed it: exit -11 after 'interrupted')."""
    with _live_lock:
        _ended_threads.add(thread)
        pools = [pool for pool in _live if pool.user is thread]
    for pool in pools:
        pool.end_now()


def _end_all() -> None:
    """At the process's exit: kill every pool's workers and start no more. multiprocessing's own
    exit function, which runs after this one, joins every child; a worker forked by a thread still
    running after it had killed the others waited for a job forever, and gradlint with it (hung
    after 'gradlint: interrupted', 1 Ctrl-C in 80 at 0.2-0.5 s, before end_runs_of)."""
    global _exiting
    with _live_lock:
        _exiting = True
        pools = list(_live)
    for pool in pools:
        pool.end_now()


atexit.register(_end_all)


class Kept:
    """A pool kept from one map_isolated call to the next (the runs of several projects in one
    command: a pool costs ~100 ms to start, and 50 projects paid it 50 times). The caller shuts
    it down (`close`) when its runs are done. A worker that dies is replaced, as in any pool."""

    def __init__(self) -> None:
        self.pool: _Pool | None = None

    def take(self, workers: int, mp_context) -> _Pool:
        if self.pool is None or self.pool.ended or self.pool.shape != (workers, mp_context):
            self.close()
            self.pool = _Pool(workers, mp_context)
        return self.pool

    def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.close()


def map_isolated(fn: Callable[[Any], Any], items: Sequence[Any], workers: int,
                 on_failure: Callable[[Any, str], Any], mp_context=None,
                 on_result: Callable[[int, Any], None] | None = None,
                 started: Callable[[], None] | None = None,
                 cost: Callable[[int], float] | None = None, kept: Kept | None = None) -> list:
    """[fn(item) for item in items] in `workers` processes, in order. An item whose worker dies
    twice (or whose job raises, or whose result cannot be sent back) gets on_failure(item, reason)
    as its result; every other item its own. `fn` must be picklable (a module-level function).
    `on_result(i, result)` is called as each item's result is final, in the order they come;
    `started()` once the first workers exist (a caller in another thread waits for it: processes
    forked while a thread imports a module could inherit its lock held). `cost(i)`: what item i
    costs, in units of a job's round trip; consecutive items go to a worker together up to
    CHUNK_COST (without it, one by one). `kept`: the pool is taken from it and left running."""
    results: list = [None] * len(items)
    if not items:
        if started is not None:
            started()
        return results
    pool = kept.take(workers, mp_context) if kept is not None else _Pool(workers, mp_context)
    with _live_lock:
        if threading.current_thread() in _ended_threads:
            raise Exiting("gradlint is exiting")
        pool.user = threading.current_thread()
    try:
        pool.start()
        if started is not None:
            started()
        _Run(pool, fn, items, results, on_failure, on_result, cost).go()
    except BaseException:
        # (Ctrl-C, or a caller's callback that raised: the workers may hold jobs; they go now)
        if kept is not None:
            kept.pool = None
        pool.close(at_once=True)
        raise
    if kept is None:
        pool.close()
    return results


class _Worker:
    """One process, the parent's end of its connection, and the jobs sent to it, oldest first
    (it answers them in order): each the positions of its items."""

    def __init__(self, context) -> None:
        here, there = context.Pipe(duplex=True)
        # (the worker closes the parent's end it inherits: the parent's death then ends its
        # connection, and it exits)
        self.process = context.Process(target=_serve, args=(there, here), daemon=True)
        self.process.start()
        there.close()  # (only the worker holds its end: its death ends the connection)
        self.conn = here
        self.jobs: deque[list[int]] = deque()
        self.dead = False
        # when it began its oldest job (about: when the job was sent to it idle, or when it sent
        # back the job before), or None while it holds none
        self.since: float | None = None
        self.credited = 0.0  # seconds added to `since` for this job while the parent did not run
        self.overdue = False  # killed for running its job past JOB_SECONDS
        self.inbox = bytearray()  # what came of a result not yet whole (see read)

    def read(self) -> list[bytes] | None:
        """The results made whole by what its connection holds now, read without waiting for
        more (the caller was told there is something): a worker stopped while it wrote a large
        result left connection.recv_bytes waiting for the rest, and the run with it, whatever
        the job's time limit. None once the connection has ended (mid-result or not).
        A result is its length (8 bytes, big-endian), then its bytes (_send_result)."""
        got = os.read(self.conn.fileno(), _READ)
        if not got:
            return None
        inbox = self.inbox
        inbox += got
        whole = []
        while len(inbox) >= 8:
            size = int.from_bytes(inbox[:8], "big")
            if len(inbox) < 8 + size:
                break
            whole.append(bytes(inbox[8:8 + size]))
            del inbox[:8 + size]
        return whole

    def clock(self, busy: bool) -> None:
        """Its oldest job begins now (`busy`), or it holds none."""
        self.since, self.credited = (time.monotonic() if busy else None), 0.0


class _Pool:
    """Worker processes, each with a connection of its own, and the thread that sends them jobs."""

    def __init__(self, workers: int, mp_context) -> None:
        self.shape = (workers, mp_context)
        self.size = max(1, workers)
        self.first = mp_context if mp_context is not None else first_context()
        self.later = _again(mp_context)
        self.workers: list[_Worker] = []
        self.made = False
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.sender: threading.Thread | None = None
        self.why = ""  # why the last worker that could not be started could not
        self.ended = False  # by end_now: the process exits, or its user's runs were ended
        self.user: threading.Thread | None = None  # the thread whose map_isolated uses it

    def _add(self, at: int | None = None) -> None:
        """A worker made (appended, or put at `at`), unless the process exits (Exiting)."""
        with _live_lock:
            if _exiting or self.ended or threading.current_thread() in _ended_threads:
                self.ended = True
                raise Exiting("gradlint is exiting")
            worker = _Worker(self.later if self.made else self.first)
            if at is None:
                self.workers.append(worker)
            else:
                self.workers[at] = worker
            _live.add(self)

    def start(self) -> None:
        """Make the workers missing (the first ones forked from this process, later ones from
        `later`'s start method), and the sender."""
        with _no_sigint():
            while len(self.workers) < self.size:
                self._add()
        self.made = True
        if self.sender is None:
            self.sender = threading.Thread(target=self._send_all, name="gradlint-pool-sender", daemon=True)
            self.sender.start()

    def replace(self, dead: _Worker) -> None:
        """A worker in the dead one's place; after a few failed starts (a fork server killed as it
        forks, no memory left for a process), the pool goes on without it."""
        self.outbox.put((dead, _CLOSE))  # (the sender may still be writing to it)
        at = self.workers.index(dead)
        for wait in (0.0, 0.05, 0.2, 1.0):
            time.sleep(wait)
            try:
                with _no_sigint():
                    self._add(at)
                return
            except Exiting as exc:
                self.why = str(exc)
                break
            except Exception as exc:  # noqa: BLE001 - why a process could not start, for the report
                self.why = f"{type(exc).__name__}: {exc}"
        del self.workers[at]

    def send(self, worker: _Worker, data: bytes) -> None:
        self.outbox.put((worker, data))

    def _send_all(self) -> None:
        while (got := self.outbox.get()) is not None:
            worker, data = got
            if data is _CLOSE:
                worker.conn.close()
                continue
            try:
                worker.conn.send_bytes(data)
            except (OSError, ValueError):
                pass  # its worker died: the parent learns it from its connection

    def end_now(self) -> None:
        """Kill the workers and start no more (the process exits, or the caller ended its user's
        runs; another thread may be using the pool: its run reads their deaths, cannot replace
        them, and gives up)."""
        with _live_lock:
            self.ended = True
            workers = list(self.workers)
        for worker in workers:
            if worker.process.is_alive():
                worker.process.kill()

    def close(self, at_once: bool = False) -> None:
        """End the workers: each is told to stop once its jobs are done (one that does not within
        seconds is killed), or (`at_once`: an interrupted run) killed now; then the sender."""
        if not at_once:
            for worker in self.workers:
                self.outbox.put((worker, _STOP))
        self.outbox.put(None)
        for worker in self.workers:
            if not at_once:
                worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1)
        if self.sender is not None:
            self.sender.join(5)
            self.sender = None
        for worker in self.workers:
            worker.conn.close()
        self.workers = []


_STOP = pickle.dumps(None)
_CLOSE = b""  # (to the sender: close this worker's connection; never a message, as b"" is no pickle)


class _Run:
    """One map_isolated call on a pool: jobs handed out, results and deaths read as they come."""

    def __init__(self, pool: _Pool, fn, items, results: list, on_failure, on_result, cost) -> None:
        self.pool, self.fn, self.items, self.results = pool, fn, items, results
        self.on_failure, self.on_result, self.cost = on_failure, on_result, cost
        self.todo: deque[int] = deque(range(len(items)))
        self.alone: set[int] = set()  # items sent one to a job whatever their cost: suspects
        self.left = len(items)
        self.window = max(self.pool.size * DEPTH, 1)

    def settle(self, i: int, result: Any) -> None:
        self.results[i] = result
        self.left -= 1
        if self.on_result is not None:
            self.on_result(i, result)

    def go(self) -> None:
        last = time.monotonic()
        while self.left:
            if not self.pool.workers or self.pool.ended:
                self.give_up()
                return
            self.hand_out()
            # A worker's death is read from its connection, which ends with its process (only it
            # holds the other end), not from its process's sentinel: a worker started by a fork
            # server that died looks dead to its sentinel (exit status 255) while it still runs.
            by_conn = {worker.conn: worker for worker in self.pool.workers}
            until = self.until_overdue()
            asked = 0.0 if until is None else min(until, _TICK)
            for ready in wait_for(list(by_conn), timeout=None if until is None else asked):
                worker = by_conn[ready]
                if not worker.dead:
                    self.receive(worker)
            now = time.monotonic()
            if now - last - asked > _STALL:
                self.not_run(now - last - asked)
            last = now
            self.stop_overdue()

    def until_overdue(self) -> float | None:
        """Seconds until the first busy worker's job runs past JOB_SECONDS (None: none is busy)."""
        starts = [w.since for w in self.pool.workers if w.since is not None and not w.dead]
        return max(0.0, min(starts) + JOB_SECONDS - time.monotonic()) if starts else None

    def not_run(self, seconds: float) -> None:
        """This process was stopped (or starved) for about `seconds`: not counted against the
        jobs in flight (see _STALL), up to JOB_SECONDS a job (a parent slow at every round would
        otherwise put off the end of a hung job for as long as it stays slow)."""
        for worker in self.pool.workers:
            if worker.since is not None:
                add = min(seconds, JOB_SECONDS - worker.credited)
                if add > 0:
                    worker.since += add
                    worker.credited += add

    def stop_overdue(self) -> None:
        """Kill each worker whose job has run past JOB_SECONDS; that is its death (`died`). Not
        one whose result is waiting to be read (the parent was late, not the job: the next round
        reads it)."""
        now = time.monotonic()
        for worker in list(self.pool.workers):
            if not worker.dead and worker.since is not None and now - worker.since >= JOB_SECONDS \
                    and not _answered(worker):
                worker.overdue = True
                worker.process.kill()
                self.died(worker)

    def hand_out(self) -> None:
        """Jobs to the workers that hold fewer than DEPTH, one to each in turn (the largest items
        come first: two of them queued on one worker ran one after the other while another was
        idle)."""
        for depth in range(DEPTH):
            for worker in self.pool.workers:
                while self.todo and len(worker.jobs) == depth:
                    head = self.todo[0]
                    chunk = _take(self.todo, None if head in self.alone else self.cost, self.window)
                    try:
                        job = pickle.dumps((self.fn, [self.items[i] for i in chunk]), pickle.HIGHEST_PROTOCOL)
                    except Exception as exc:  # noqa: BLE001 - an item that cannot be sent fails alone
                        self.cannot(chunk, f"the job could not be sent: {type(exc).__name__}: {exc}")
                        continue
                    worker.jobs.append(chunk)
                    if worker.since is None:
                        worker.clock(True)
                    self.pool.send(worker, job)

    def cannot(self, chunk: list[int], why: str) -> None:
        """A chunk that could not be sent or read back: each of its items alone again, so that only
        the one at fault fails; one item alone fails with `why`."""
        if len(chunk) == 1:
            self.settle(chunk[0], self.on_failure(self.items[chunk[0]], why))
            return
        self.alone.update(chunk)
        self.todo.extendleft(reversed(chunk))

    def receive(self, worker: _Worker) -> None:
        """The results the worker's connection completes, oldest job first; a connection that
        ends (mid-result or between results) is its death."""
        try:
            results = worker.read()
        except OSError:
            results = None
        if results is None:
            self.died(worker)
            return
        for data in results:
            chunk = worker.jobs.popleft()
            worker.clock(bool(worker.jobs))
            try:
                got = pickle.loads(data)
            except Exception as exc:  # noqa: BLE001 - a result the parent cannot read: find whose
                self.cannot(chunk, f"the result could not be read: {type(exc).__name__}: {exc}")
                continue
            if isinstance(got, str):  # the job as a whole failed in the worker (its arguments)
                got = [(True, got)] * len(chunk)
            for i, (failed, value) in zip(chunk, got):
                self.settle(i, self.on_failure(self.items[i], value) if failed else value)

    def died(self, worker: _Worker) -> None:
        """A worker's process ended (or its connection did): the job it was running is suspect,
        each of its items run again alone; an item that was already a suspect is the culprit.
        Jobs it never started go back first. The worker is replaced."""
        worker.dead = True
        worker.process.join(2)
        why = _death(worker.process.exitcode)
        if worker.overdue:
            why = f"stopped after {JOB_SECONDS:g} s (its worker process was killed)"
        if worker.process.is_alive():  # (its connection ended, not its process)
            worker.process.kill()
            worker.process.join(1)
        jobs = list(worker.jobs)
        for chunk in reversed(jobs[1:]):
            self.todo.extendleft(reversed(chunk))
        for i in reversed(jobs[0] if jobs else []):
            # (a lone item that ran past the limit is slow itself: run again, it would be again)
            if len(jobs[0]) == 1 and (i in self.alone or worker.overdue):
                self.settle(i, self.on_failure(self.items[i], why))
            else:
                self.alone.add(i)
                self.todo.appendleft(i)
        self.pool.replace(worker)

    def give_up(self) -> None:
        """No worker could be started again: what is left fails, with why."""
        why = f"no worker process could be started ({self.pool.why})"
        while self.todo:
            i = self.todo.popleft()
            self.settle(i, self.on_failure(self.items[i], why))


def _answered(worker: _Worker) -> bool:
    """Whether the worker's connection has something to read: a result, or its end."""
    try:
        return worker.conn.poll(0)
    except (OSError, ValueError):
        return True  # (its end: the next round reads it as its death)


def _serve(conn, parents_end) -> None:
    """A worker: run the jobs its connection brings until told to stop (or the parent is gone).
    Ctrl-C is the parent's to handle: it ends the workers."""
    parents_end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            job = pickle.loads(data)
        except Exception as exc:  # noqa: BLE001 - a job that cannot be read fails its items
            job = f"the job could not be read: {type(exc).__name__}: {exc}"
        if isinstance(job, str):
            try:
                _send_result(conn, pickle.dumps(job))
            except OSError:
                return
            continue
        if job is None:
            return
        fn, items = job
        try:
            _send_result(conn, _packed(_chunk(fn, items)))
        except OSError:
            return  # (the parent is gone)


def _send_result(conn, data: bytes) -> None:
    """A result to the parent, as _Worker.read takes it: its length, then its bytes."""
    fd = conn.fileno()
    head = len(data).to_bytes(8, "big")
    # (a small result in one write, so that the parent wakes once for it; a large one is not
    # copied to join its length)
    for part in ((head + data,) if len(data) <= 65536 else (head, data)):
        view = memoryview(part)
        while view:
            view = view[os.write(fd, view):]


def _packed(out: list[tuple[bool, Any]]) -> bytes:
    """A job's results, pickled; one that cannot be pickled is replaced by its failure (the
    others still go back)."""
    try:
        return pickle.dumps(out, pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - find the one at fault
        kept = []
        for failed, got in out:
            try:
                pickle.dumps(got, pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # noqa: BLE001
                failed, got = True, f"the result could not be sent back: {type(exc).__name__}: {exc}"
            kept.append((failed, got))
        return pickle.dumps(kept, pickle.HIGHEST_PROTOCOL)


def first_context():
    """The start method of a pool's first workers when the caller chose none: fork where the
    platform forks by default or only lacks it as a default from Python 3.14 on (Linux: a fork
    server's start cost a one-file run 0.6 s), else the platform's default (macOS and Windows
    spawn: forking there is unsafe or impossible)."""
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def forks_first() -> bool:
    """Whether a pool's first workers start by fork (cheap: callers pool small runs too)."""
    return first_context().get_start_method() == "fork"


@contextmanager
def _no_sigint():
    """SIGINT held back from this thread while it forks workers: a forked worker inherits the
    mask, so a Ctrl-C before it ignores SIGINT (_serve) cannot interrupt it (the parent's main
    thread still gets the signal). A fork server does not keep the mask (a process started with
    exec resets it): gradlint.quiet_server covers it."""
    if threading.current_thread() is threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield  # (the main thread must keep receiving it)
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _again(mp_context):
    """The start method of a worker made after the first ones: the caller's when it chose one
    (a test whose jobs are patched functions needs them forked), else a fork server where the
    platform has one (see the module's docstring), else the platform's default."""
    if mp_context is not None or "forkserver" not in multiprocessing.get_all_start_methods():
        return mp_context if mp_context is not None else multiprocessing.get_context()
    context = multiprocessing.get_context("forkserver")
    # Imported once by the server, not again by each process it forks; a module that fails to
    # import is skipped there, not fatal. quiet_server first: Ctrl-C ignored by the server and
    # its workers (gradlint ends them).
    context.set_forkserver_preload(["gradlint.quiet_server", "gradlint.api"])
    return context


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


def _death(code: int | None) -> str:
    """How a worker died, from its exit status."""
    if code is None or code == 0:
        return "the worker process died"
    if code > 0:
        return f"the worker process died (exit status {code})"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"the worker process died ({name})"
