"""Rules of the inputs family."""
