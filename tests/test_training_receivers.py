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


def _steps(text: str):
    return [(e.target, e.via) for e in _events(text, "step")]


def test_an_object_is_what_its_value_is_whatever_its_name():
    # bound through another name (in another method) to an optimizer, a scaler
    text = """\
class T:
    def __init__(self, model):
        g = torch.optim.Adam(model.parameters())
        self.update = g
        amp = torch.cuda.amp.GradScaler()
        self.helper = amp

    def train_step(self, loss):
        self.update.step()
        self.helper.step(self.update)
"""
    assert _steps(text) == [("self.update", "optimizer"), ("self.update", "scaler")]


def test_a_name_that_says_optimizer_bound_to_a_module_is_no_optimizer():
    text = """\
class Flow(torch.nn.Module):
    def step(self, x):
        return x

class T:
    def __init__(self):
        flow = Flow()
        self.opt = flow
        self.optim = torch.nn.Linear(2, 2)
        self.optimizer = torch.optim.lr_scheduler.StepLR(o, 1)

    def train_step(self, x):
        x.backward()
        self.opt.step(x)
        self.optim.step()
        self.optimizer.step()
"""
    assert _steps(text) == []
    # nothing known: the name decides, as before
    assert _steps("def f(opt, loss):\n    loss.backward()\n    opt.step()\n") == [("opt", "optimizer")]


def test_a_container_of_optimizers_built_elsewhere_gives_an_optimizer_per_item():
    steps = _events("""\
class T:
    def __init__(self, gen, disc, a):
        self.pair = [torch.optim.Adam(gen.parameters()), torch.optim.SGD(disc.parameters(), lr=0.1)]
        self.table = {"g": torch.optim.Adam(gen.parameters()), "d": a}
        self.grown = [torch.optim.Adam(gen.parameters())]
        self.grown.append(a)

    def train_step(self, loss):
        loss.backward()
        for o in self.pair:
            o.step()
        for k, o in self.table.items():
            o.step()
        for o in self.grown:
            o.step()
""", "step")
    # the dict holds a parameter `a` (not known) whose name says nothing; the list changed in
    # place is not known either, and its name says nothing
    assert [(e.target, e.each) for e in steps] == [("o", "self.pair")]


def test_a_container_named_like_optimizers_holding_modules_or_iterated_for_keys_is_none():
    steps = _events("""\
class Flow(torch.nn.Module):
    def step(self, x):
        return x

class T:
    def __init__(self, a, b):
        self.optimizers = [Flow(), Flow()]
        self.opt_table = {"a": a, "b": b}

    def train_step(self, x):
        x.backward()
        for opt in self.optimizers:
            opt.step(x)

    def log_step(self, x):
        x.backward()
        for opt in self.opt_table:
            opt.step()
""", "step")
    assert steps == []


def test_a_container_named_like_optimizers_passed_on_is_no_optimizer():
    # what a caller passes decides a step of another file (facts.training.bind_callers): a list
    # of optimizers, even one filled later, is not an optimizer; an optimizer under any name is
    (ev,) = _events("""\
def collect(model, loss):
    seen_optimizers = []
    seen_optimizers.append(model.opt)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    loss.backward()
    update(model, seen_optimizers, sgd)
""", "invoke")
    assert [(k, v.text, v.kind) for k, v in ev.args] == [
        ("0", "model", ""), ("1", "seen_optimizers", ""), ("2", "sgd", "optimizer")]


def test_a_loop_over_modules_and_one_over_optimizers_may_share_their_variable():
    # `opt` is bound by both loops of one function (its value there is not known): each loop
    # decides what its variable is, from the container it iterates
    steps = _events("""\
class Flow(torch.nn.Module):
    def step(self, x):
        return x

class T:
    def __init__(self, model):
        self.opt_models = [Flow(), Flow()]
        self.pair = [torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.Adam(model.parameters())]

    def train_step(self, x):
        x.backward()
        for opt in self.opt_models:
            x = opt.step(x)
        for opt in self.pair:
            opt.step()
        for opt in self.opt_models:
            for opt in self.pair:
                opt.step()
""", "step")
    assert [(e.span.line, e.each) for e in steps] == [(16, "self.pair"), (19, "self.pair")]  # after `import torch`
