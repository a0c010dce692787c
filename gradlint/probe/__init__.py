"""`gradlint probe`: run the user's model for a few steps with torch, measure its gradients, and
confirm or refute the static findings of its file. The only package that imports torch, and only
inside functions: importing it costs nothing for `gradlint check`.

target.py loads the factory, inputs and loss (user code, run with the user's rights);
isolate.py runs all of it in a child process (stdout, exits, hangs, Ctrl-C); measure.py hooks
and measures; gradcheck.py checks backward passes in float64, with evaluate.py's replayed
stop-gradients and kink fingerprints; join.py turns numbers into verdicts and GL701-GL707
findings; report.py renders; run.py ties them together; command.py is the click command.
"""

# What interrupted the probe, for its notes: Ctrl-C, unless isolate.py's child was stopped by
# --timeout (it says so here before its KeyboardInterrupt: the note said "Ctrl-C" either way).
INTERRUPTION = ["interrupted (Ctrl-C)"]
