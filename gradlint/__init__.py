"""gradlint: find vanishing and exploding gradients and unsafe numerics in neural-network code."""

__version__ = "0.2.0"
# The name on the package registry (`pip install gradlint-nn`): `gradlint` there is an unrelated
# project. The command and the import package stay `gradlint`; pyproject.toml's name must match.
DISTRIBUTION = "gradlint-nn"
PROBE_INSTALL_HINT = f"pip install '{DISTRIBUTION}[probe]'"
