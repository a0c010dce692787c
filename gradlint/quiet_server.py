"""Imported first by the fork server that starts gradlint's later workers: Ctrl-C is ignored there.

The fork server imports gradlint.api before it ignores SIGINT itself, and the processes it forks
restore the handler it found: a Ctrl-C meant for gradlint (the terminal sends it to the whole
process group) printed a KeyboardInterrupt traceback from the server's import or from a worker
being started, after gradlint's own 'interrupted'. Ignored from here on, in the server and in every
worker it forks; gradlint's process ends them itself.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
