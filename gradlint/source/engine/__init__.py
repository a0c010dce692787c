"""The shared core of the source front-end's interpreters: values, folding, call arguments, positions, walks.

models.py (the IR lowering), numerics.py (tensor flows) and loops.py (training steps) stand on
these modules instead of each keeping its own copy; ARCHITECTURE.md ("The engine") says where
they are to converge.
"""
