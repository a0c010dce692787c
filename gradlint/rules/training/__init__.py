"""Rules of the training family."""
