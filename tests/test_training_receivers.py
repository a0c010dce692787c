"""Receivers of loop calls: optimizers drawn from a container by a loop (`for o in
self.optimizers`, a dict's values, a literal tuple) are optimizers whatever the variable's name."""

from __future__ import annotations

from gradlint.facts.training import iter_events
from gradlint.source import extract_facts, parse


def _events(text: str, kind: str):
    t = extract_facts(parse("t.py", "import torch\n" + text)).training
    return [e for fn in t.functions for e in iter_events(fn.body) if e.kind == kind]


def test_the_variable_of_a_loop_over_optimizers_is_an_optimizer():
    steps = _events("""\
def f(model, optimizers, opt_g, opt_d, loss):
    loss.backward()
    for o in optimizers:
        o.step()
    for name, o in optimizers.items():
        o.step()
    for o in (opt_g, opt_d):
        o.step()
    for s in schedulers:
        s.step()
    for name, s in schedulers.items():
        s.step()
    for o in (a, b):
        o.step()
""", "step")
    assert [(e.target, e.each) for e in steps] == [
        ("o", "optimizers"), ("o", "optimizers.values()"), ("o", "(opt_g, opt_d)")]


def test_the_variable_counts_inside_its_loop_only():
    steps = _events("""\
def f(optimizers, loss):
    for o in optimizers:
        o.zero_grad()
    loss.backward()
    o.step()
""", "step")
    assert steps == []  # after the loop `o` is only a name
