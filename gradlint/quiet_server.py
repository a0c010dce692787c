"""Imported first by the fork server that starts gradlint's later workers: Ctrl-C is ignored there.

The fork server imports gradlint.api before it ignores SIGINT itself, and the processes it forks
restore the handler it found: a Ctrl-C meant for gradlint (the terminal sends it to the whole
process group) printed a KeyboardInterrupt traceback from the server's import or from a worker
being started, after gradlint's own 'interrupted'. Ignored from here on, in the server and in every
worker it forks; gradlint's process ends them itself.

A worker being started reads what to run from gradlint's process; when that process is gone
mid-start (Ctrl-C, a kill), the read ends early and the fork server printed the traceback of an
EOFError or of an UnpicklingError ('pickle data was truncated') after gradlint's 'interrupted'.
The parent gone, a worker has nothing to report: such an error ends it silently. Any other error
is printed as before.
"""

import pickle
import signal
import sys

signal.signal(signal.SIGINT, signal.SIG_IGN)


def _hook(kind, value, traceback) -> None:
    """sys.excepthook of the server and the workers it forks (before they run their job: a
    worker's own errors are caught by multiprocessing, or by gradlint.pool._serve)."""
    if issubclass(kind, (EOFError, BrokenPipeError, ConnectionResetError)) or (
            issubclass(kind, pickle.UnpicklingError) and "truncated" in str(value)):
        return  # (gradlint's process is gone: it stopped reading, and nobody reads stderr's words)
    sys.__excepthook__(kind, value, traceback)


sys.excepthook = _hook
