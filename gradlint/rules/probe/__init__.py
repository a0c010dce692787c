"""Rules of the probe family."""
