"""Rules of the paths family."""
