"""Rules of the weights family."""
