"""Rules of the architecture family."""
