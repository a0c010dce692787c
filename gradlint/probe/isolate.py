"""Run the probe in a child process: the user's code can exit, hang or print without taking the
report with it.

The child imports and runs the target, renders the report and sends it back through a pipe;
the parent (which never imports torch or the user's code) prints it and sets the exit code.
- A target that calls `os._exit()`, or dies of a signal, ends only the child: exit 2 with a
  message naming what happened.
- `--timeout`: past it the child is interrupted (as by Ctrl-C) so that it can send what it
  measured, then killed after a grace period; exit 2.
- Ctrl-C: the child stops where it is and reports what was measured; exit 130.
- The child's stdout is its stderr when the report goes to stdout: the user's prints (Python
  or C level) can no longer break `--format json`.
- A non-daemon thread left by the target cannot keep the process alive: the child ends with
  `os._exit` once the report is sent.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from gradlint import PROBE_INSTALL_HINT
from gradlint.probe import INTERRUPTION

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
GRACE_SECONDS = 10.0


@dataclass
class Outcome:
    """What the child sent back (or what the parent concluded when it sent nothing)."""

    exit_code: int
    text: str = ""  # the rendered report
    error: str = ""  # a message for stderr
    user_traceback: str = ""


@dataclass
class Request:
    """Everything the child needs: picklable, so that a spawned child works as a forked one."""

    options: Any  # run.ProbeOptions
    fmt: str
    color: bool
    plot: str | None
    stdout_is_report: bool
    progress: bool


def run_isolated(request: Request, timeout: float | None) -> Outcome:
    """Run the probe in a child process and wait for its outcome, `timeout` seconds at most."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, request), daemon=True)
    child.start()
    send.close()
    deadline = None if timeout is None else time.monotonic() + timeout
    interrupted = timed_out = False
    outcome: Outcome | None = None
    stop_at: float | None = None
    while outcome is None:
        try:
            wait = 0.2
            if receive.poll(wait):
                outcome = receive.recv()
                break
            if not child.is_alive() and not receive.poll(0):
                break
            now = time.monotonic()
            if deadline is not None and not timed_out and now >= deadline:
                timed_out = True
                _interrupt(child, _TIMEOUT_SIGNAL)
                stop_at = now + GRACE_SECONDS
            if stop_at is not None and now >= stop_at:
                break
        except KeyboardInterrupt:
            if interrupted:  # a second Ctrl-C: stop waiting
                break
            interrupted = True
            _interrupt(child)  # the terminal sent it to the child too; once more is harmless
            stop_at = time.monotonic() + GRACE_SECONDS
        except EOFError:
            break
    if child.is_alive():
        child.kill()
    child.join(5)
    if timed_out:
        note = f"timed out after {timeout:g} s (--timeout)"
        text = outcome.text if outcome is not None else ""
        return Outcome(EXIT_ERROR, text, note + ("; the report above holds what was measured" if text else
                                                 ": nothing measured could be reported"))
    if outcome is not None:
        return outcome
    if interrupted:
        return Outcome(EXIT_INTERRUPTED, "", "interrupted before anything was measured")
    code = child.exitcode
    how = (f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}")
    return Outcome(EXIT_ERROR, "", f"the probe's process ended ({how}) before the probe finished: the target's code "
                                   "called os._exit() or was killed (out of memory?)")


# The signal that tells the child --timeout has passed (Ctrl-C is SIGINT): both interrupt it the
# same way, and its notes say which (gradlint.probe.INTERRUPTION).
_TIMEOUT_SIGNAL = getattr(signal, "SIGUSR1", signal.SIGINT)


def _interrupt(child: Any, signum: int = signal.SIGINT) -> None:
    try:
        os.kill(child.pid, signum)
    except (ProcessLookupError, OSError):
        pass


def _child(conn: Any, request: Request) -> None:
    """The child's whole life: run, render, send, and end without waiting for anyone's threads."""
    interrupted = [False]

    def on_sigint(signum: int, frame: Any) -> None:
        if interrupted[0]:
            return  # the terminal's and the parent's signal: one interruption
        interrupted[0] = True
        if signum != signal.SIGINT:
            INTERRUPTION[0] = "stopped at --timeout"
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    if _TIMEOUT_SIGNAL != signal.SIGINT:
        signal.signal(_TIMEOUT_SIGNAL, on_sigint)
    if request.stdout_is_report:
        sys.stdout.flush()
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    try:
        outcome = _run(request)
    except BaseException as exc:  # our own bug: say so rather than die without a word
        import traceback

        outcome = Outcome(EXIT_ERROR, "", f"internal error: {type(exc).__name__}: {exc}",
                          "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    try:
        conn.send(outcome)
        conn.close()
    finally:
        sys.stderr.flush()
        os._exit(0)


def _run(request: Request) -> Outcome:
    from gradlint.probe.target import ProbeError

    try:
        from gradlint.probe.run import preload, run_probe

        preload(request.options, plot=request.plot)
        report = run_probe(request.options, progress=Progress() if request.progress else None)
    except ProbeError as exc:
        return Outcome(EXIT_ERROR, "", exc.message, exc.user_traceback or "")
    except KeyboardInterrupt:
        return Outcome(EXIT_INTERRUPTED, "", "interrupted before anything was measured")
    except ImportError as exc:
        if exc.name == "torch":
            return Outcome(EXIT_ERROR, "", f"gradlint probe needs torch: {PROBE_INSTALL_HINT}")
        raise

    from gradlint.probe import report as render
    from gradlint.probe.join import confirmed_or_found

    if request.fmt == "json":
        text = render.render_json(report)
    elif request.fmt == "sarif":
        text = render.render_sarif(report)
    else:
        text = render.render_text(report, color=request.color)
    if request.plot:
        try:
            render.plot(report, request.plot)
        except ImportError:
            return Outcome(EXIT_ERROR, text, f"--plot needs matplotlib: {PROBE_INSTALL_HINT}")
        except OSError as exc:
            return Outcome(EXIT_ERROR, text, f"{request.plot}: cannot write the plot: {exc.strerror or exc}")
        except Exception as exc:  # noqa: BLE001 - the report is complete: it must not be lost with the plot
            return _plot_failed(exc, request.plot, text)
    if report.interrupted:
        return Outcome(EXIT_INTERRUPTED, text, "interrupted: the report holds what was measured until then")
    return Outcome(EXIT_FINDINGS if confirmed_or_found(report.verdicts) else EXIT_CLEAN, text)


def _plot_failed(exc: Exception, path: str, text: str) -> Outcome:
    """The report, then why the plot is missing: matplotlib's refusal in one line, a bug of ours
    as one, with its traceback."""
    import traceback

    from gradlint.probe.target import raised_by_gradlint

    if raised_by_gradlint(exc):
        return Outcome(EXIT_ERROR, text, f"internal error in gradlint while drawing the plot {path} (please report "
                                         f"it): {type(exc).__name__}: {exc}",
                       "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
    return Outcome(EXIT_ERROR, text, f"{path}: the plot could not be drawn: {type(exc).__name__}: {exc}")


class Progress:
    """Progress on stderr, one line redrawn per phase and step, only when stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()

    def phase(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(f"\r\x1b[Kprobe: {text}")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()

    def __call__(self, done: int, total: int) -> None:
        width = 20
        filled = width * done // max(total, 1)
        self.phase(f"[{'#' * filled}{'.' * (width - filled)}] step {done}/{total}")
