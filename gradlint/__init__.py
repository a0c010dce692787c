"""gradlint: find vanishing and exploding gradients and unsafe numerics in neural-network code."""

__version__ = "0.2.0"
# The name on the package registry (`pip install gradlint-nn`): `gradlint` there is an unrelated
# project. The command and the import package stay `gradlint`; pyproject.toml's name must match.
DISTRIBUTION = "gradlint-nn"
PROBE_INSTALL_HINT = f"pip install '{DISTRIBUTION}[probe]'"

# The generated methods of gradlint's and libcst's dataclasses are compiled when first called
# (about 1 000 of the 1 400 never are in a one-file run): see gradlint/deferred.py.
from gradlint import deferred as _deferred  # noqa: E402

_deferred.install()
