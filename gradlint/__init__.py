"""gradlint: find vanishing and exploding gradients and unsafe numerics in neural-network code."""

__version__ = "0.1.0"
