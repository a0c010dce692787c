"""Parameters bound from the project's callers (issue 9, calls): a loss on a function's model and
criterion parameters is reported at its line when every caller in the project, in the same file or
another, passes a model and a criterion that make it a bug; the file's findings are the same
whether it is checked alone or with its folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradlint.api import check_paths
from gradlint.config import Config

FOLDER = Path(__file__).resolve().parent.parent / "fixtures" / "numerics" / "callers"
EXPECT = re.compile(r"#\s*expect:\s*(GL\d{3})")


def _expected(path: Path) -> set[tuple[str, int, str]]:
    return {(path.name, n, m.group(1)) for n, line in enumerate(path.read_text().splitlines(), 1)
            if (m := EXPECT.search(line))}


def _found_in(root: Path, paths) -> set[tuple[str, int, str]]:
    """The GL3xx findings of checking `paths` in the project at `root`, by (file name, line, code)."""
    result = check_paths(paths, Config(select=("GL3",), root=str(root)), use_cache=False, jobs=1)
    assert not result.internal_errors
    return {(Path(f.path).name, f.span.line, f.code) for f in result.findings}


def _found(paths) -> set[tuple[str, int, str]]:
    return _found_in(FOLDER, paths)


def test_callers_in_another_file_bind_the_parameters():
    engine = FOLDER / "engine.py"
    expected = _expected(engine)
    assert len(expected) == 3
    assert _found([FOLDER]) == expected
    assert _found([engine]) == expected  # alone: main.py is found by scanning for the name


def test_without_the_callers_the_parameters_are_unknown(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    for name in ("nets.py", "engine.py"):
        (tmp_path / name).write_text((FOLDER / name).read_text())
    result = check_paths([tmp_path], Config(select=("GL3",), root=str(tmp_path)), use_cache=False, jobs=1)
    assert [f for f in result.findings if f.code == "GL304"] == []


# -- methods, `__init__` stored on self, and the other sites on parameters (GL302, GL404) -------

NETS = '''\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 1)

    def forward(self, x):
        return torch.sigmoid(self.fc(x))


class Logits(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 1)

    def forward(self, x):
        return self.fc(x)


class Config:
    pass
'''

ENGINE = '''\
import torch


class Trainer:
    def __init__(self, model, criterion):
        self.model = model
        self.criterion = criterion

    def train_step(self, model, criterion, x, y):
        loss = criterion(model(x), y)  # expect: GL304
        loss.backward()

    def fit(self, x, y):
        loss = self.criterion(self.model(x), y)  # expect: GL304
        loss.backward()

    def log_prob(self, model, x):
        return torch.log(model(x)).mean()  # expect: GL302

    def freeze(self, model):
        model.requires_grad = False  # expect: GL404


def log_prob(model, x):
    return torch.log(model(x)).mean()  # expect: GL302


def freeze(model):
    model.requires_grad = False  # expect: GL404
'''

# every method and function of ENGINE called once, with what makes each line a bug
MAIN = '''\
from torch import nn

import engine
from engine import Trainer
from nets import Net


def main(x, y):
    trainer = Trainer(Net(), criterion=nn.BCEWithLogitsLoss())
    trainer.train_step(Net(), nn.BCEWithLogitsLoss(), x, y)
    trainer.fit(x, y)
    trainer.log_prob(Net(), x)
    trainer.freeze(model=Net())
    engine.log_prob(Net(), x)
    engine.freeze(Net())
'''


def _project(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "pyproject.toml").write_text("")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def _run(paths, root: Path) -> set[tuple[str, int, str]]:
    result = check_paths(paths, Config(select=("GL3", "GL4"), root=str(root)), use_cache=False, jobs=1)
    assert not result.internal_errors
    return {(Path(f.path).name, f.span.line, f.code) for f in result.findings}


def _expected_text(name: str, text: str) -> set[tuple[str, int, str]]:
    return {(name, n, m.group(1)) for n, line in enumerate(text.splitlines(), 1) if (m := EXPECT.search(line))}


def test_methods_init_and_functions_are_bound_by_callers_in_another_module(tmp_path):
    root = _project(tmp_path, {"nets.py": NETS, "engine.py": ENGINE, "main.py": MAIN})
    expected = _expected_text("engine.py", ENGINE)
    assert len(expected) == 6
    assert _run([root], root) == expected
    assert _run([root / "engine.py"], root) == expected  # alone: the index finds main.py by the names


def test_callers_that_pass_safe_values_leave_the_parameters_quiet(tmp_path):
    main = (MAIN.replace("freeze(model=Net())", "freeze(model=Config())")  # not a module
            .replace("engine.freeze(Net())", "engine.freeze(Config())")
            .replace("Net()", "Logits()")  # logits into BCEWithLogitsLoss, log of logits: right
            .replace("from nets import Net", "from nets import Config, Logits"))
    root = _project(tmp_path, {"nets.py": NETS, "engine.py": ENGINE, "main.py": main})
    assert _run([root], root) == set()


def test_callers_that_disagree_leave_the_parameters_unknown(tmp_path):
    other = MAIN.replace("Net()", "Logits()").replace("from nets import Net", "from nets import Logits")
    root = _project(tmp_path, {"nets.py": NETS, "engine.py": ENGINE, "main.py": MAIN, "other.py": other})
    assert _run([root], root) == set()
    assert _run([root / "engine.py"], root) == set()


def test_without_callers_methods_and_init_parameters_are_unknown(tmp_path):
    root = _project(tmp_path, {"nets.py": NETS, "engine.py": ENGINE})
    assert _run([root], root) == set()


RECEIVERS = {
    "a subclass (its calls and overrides are not followed)":
        "class Sub(Trainer):\n    pass\n\n\ndef more(x, y):\n    Sub(Logits(), nn.BCELoss())\n",
    "the method read as a value":
        "def more(x, y):\n    t = Trainer(Net(), nn.BCEWithLogitsLoss())\n    step = t.train_step\n"
        "    step(Logits(), nn.BCELoss(), x, y)\n",
    "the method called on its class (the arguments shift)":
        "def more(t, x, y):\n    Trainer.train_step(t, Net(), nn.BCEWithLogitsLoss(), x, y)\n",
    "a receiver of unknown class":
        "def more(t, x, y):\n    t.train_step(Net(), nn.BCEWithLogitsLoss(), x, y)\n",
}


@pytest.mark.parametrize("why", sorted(RECEIVERS))
def test_calls_whose_target_or_arguments_are_not_known_give_unknown(tmp_path, why):
    head = "from torch import nn\n\nfrom engine import Trainer\nfrom nets import Logits, Net\n\n\n"
    root = _project(tmp_path, {"nets.py": NETS, "engine.py": ENGINE, "main.py": MAIN, "more.py": head + RECEIVERS[why]})
    found = {line for name, line, code in _run([root / "engine.py"], root) if code == "GL304"}
    # the line that reads the parameters those calls may change is quiet; the other one holds
    assert found == ({10} if "subclass" in why else {14})


def test_a_receiver_of_an_unrelated_class_is_another_method(tmp_path):
    other = ("from torch import nn\n\nfrom nets import Logits\n\n\nclass Runner:\n"
             "    def train_step(self, model, criterion, x, y):\n        pass\n\n\n"
             "def more(x, y):\n    r = Runner()\n    r.train_step(Logits(), nn.BCELoss(), x, y)\n")
    root = _project(tmp_path, {"nets.py": NETS, "engine.py": ENGINE, "main.py": MAIN, "other.py": other})
    assert ("engine.py", 10, "GL304") in _run([root / "engine.py"], root)


def test_a_name_held_by_too_many_files_leaves_the_parameters_unknown(tmp_path, monkeypatch):
    from gradlint.facts import callgraph

    root = _project(tmp_path, {"nets.py": NETS, "engine.py": ENGINE, "main.py": MAIN})
    monkeypatch.setattr(callgraph, "MAX_CALLER_MODULES", 1)  # engine.py and main.py name each function
    assert _run([root / "engine.py"], root) == set()


# -- a criterion from its parameter's constructor default -----------------------------------------

DEFAULTS = '''\
import torch
from torch import nn

from nets import Net


class Trainer:
    def __init__(self, model, criterion=nn.BCEWithLogitsLoss()):
        self.model = model
        self.criterion = criterion

    def fit(self, x, y):
        return self.criterion(self.model(x), y)


class Owner:
    def __init__(self, criterion=nn.BCEWithLogitsLoss()):
        self.model = Net()
        self.criterion = criterion

    def fit(self, x, y):
        return self.criterion(self.model(x), y)
'''


@pytest.mark.parametrize("passed,expected", [
    ("", {13: "GL304", 22: "GL304"}),  # the default stands: no caller replaces it
    (", nn.BCELoss()", {13: "GL301"}),  # replaced by BCELoss: a sigmoid into BCELoss
    (", criterion=crit", {}),  # replaced by something unknown
    (", *extra", {}),
])
def test_a_default_criterion_holds_unless_a_caller_elsewhere_passes_another(tmp_path, passed, expected):
    main = ("from torch import nn\n\nfrom engine import Owner, Trainer\nfrom nets import Net\n\n\n"
            f"def main(x, y, crit, extra):\n    Trainer(Net(){passed}).fit(x, y)\n"
            f"    owner = Owner({passed.lstrip(', ')})\n    owner.fit(x, y)\n")
    root = _project(tmp_path, {"nets.py": NETS, "engine.py": DEFAULTS, "main.py": main})
    found = {line: code for name, line, code in _run([root / "engine.py"], root)}
    assert found == expected


def test_a_class_read_as_a_value_in_its_own_file_has_callers_not_all_known(tmp_path):
    engine = ENGINE + "\n\nTRAINERS = {'default': Trainer}\n"
    root = _project(tmp_path, {"nets.py": NETS, "engine.py": engine, "main.py": MAIN})
    found = {line for name, line, code in _run([root / "engine.py"], root) if code == "GL304"}
    assert found == {10}  # Trainer(...)'s arguments (line 14) may come from TRAINERS[name](...)


# -- receivers whose class the caller knows: an attribute set in __init__, a class called there ---

RUNNER = '''\
from torch import nn

from engine import Trainer
from nets import Net


class Runner:
    def __init__(self):
        self.trainer = Trainer(Net(), nn.BCEWithLogitsLoss())

    def run(self, x, y):
        self.trainer.train_step(Net(), nn.BCEWithLogitsLoss(), x, y)


def once(x):
    return Trainer(Net(), nn.BCEWithLogitsLoss()).log_prob(Net(), x)
'''


def test_receivers_held_by_self_or_constructed_in_place_bind_the_method(tmp_path):
    root = _project(tmp_path, {"nets.py": NETS, "engine.py": ENGINE, "runner.py": RUNNER})
    # train_step through self.trainer, fit through the constructor's arguments, log_prob through
    # Trainer(...).log_prob; freeze and the module functions have no caller
    expected = {("engine.py", 10, "GL304"), ("engine.py", 14, "GL304"), ("engine.py", 18, "GL302")}
    assert _run([root], root) == expected
    assert _run([root / "engine.py"], root) == expected  # alone: runner.py is found by the names


RUNNER_LOOKALIKES = {
    "a receiver of unknown class": RUNNER.replace("self.trainer = Trainer(", "self.trainer = make(")
    .replace("Trainer(Net(), nn.BCEWithLogitsLoss()).log_prob", "make(Net(), nn.BCEWithLogitsLoss()).log_prob")
    + "\n\ndef make(*args):\n    return Trainer(*args)\n",
    "a subclass": RUNNER.replace("self.trainer = Trainer(", "self.trainer = Sub(")
    .replace("Trainer(Net(), nn.BCEWithLogitsLoss()).log_prob", "Sub(Net(), nn.BCEWithLogitsLoss()).log_prob")
    + "\n\nclass Sub(Trainer):\n    pass\n",
    "callers that disagree": RUNNER.replace("from nets import Net", "from nets import Logits, Net")
    + "\n\ndef other(x, y):\n    Runner().trainer.train_step(Logits(), nn.BCELoss(), x, y)\n"
    "    Trainer(Logits(), nn.BCELoss()).log_prob(Logits(), x)\n",
}


@pytest.mark.parametrize("why", sorted(RUNNER_LOOKALIKES))
def test_receivers_of_unknown_class_subclasses_and_disagreeing_callers_stay_quiet(tmp_path, why):
    runner = RUNNER_LOOKALIKES[why]
    root = _project(tmp_path, {"nets.py": NETS, "engine.py": ENGINE, "runner.py": runner})
    found = _run([root / "engine.py"], root)
    assert found == _run([root], root)
    if why == "a subclass":
        assert found == set()  # Sub's calls are not followed, nor Trainer's whose class it derives
    elif why == "a receiver of unknown class":
        assert found == set()  # not even Trainer's constructor: `make(*args)` passes what it is given
    else:
        # train_step through `Runner().trainer` (Runner's __init__ says Trainer) and log_prob are
        # called with logits and BCELoss elsewhere, and so is the constructor: nothing holds
        assert found == set()


# -- GL404 on a submodule of a model the callers of another file pass ---------------------------

FREEZER = '''\
import torch


def freeze_encoder(model):
    model.encoder.requires_grad = False  # expect: GL404


class Wrapper:
    def __init__(self, model):
        self.model = model
        self.model.encoder.fc.requires_grad = False  # expect: GL404

    def freeze_head(self, model):
        model.weight.requires_grad = False
'''

ENC_NETS = '''\
import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.weight = nn.Parameter(torch.zeros(4))

    def forward(self, x):
        return self.encoder(x) * self.weight


class Flat(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = 3

    def forward(self, x):
        return x
'''

FREEZE_MAIN = '''\
import torch

from freezer import Wrapper, freeze_encoder
from nets import Net


def main():
    freeze_encoder(Net())
    w = Wrapper(Net())
    w.freeze_head(Net())
'''


def test_a_submodule_of_a_model_passed_from_another_file_is_a_module(tmp_path):
    root = _project(tmp_path, {"nets.py": ENC_NETS, "freezer.py": FREEZER, "main.py": FREEZE_MAIN})
    expected = _expected_text("freezer.py", FREEZER)
    assert len(expected) == 2
    assert _run([root], root) == expected
    assert _run([root / "freezer.py"], root) == expected  # alone: main.py and nets.py found by the names


@pytest.mark.parametrize("main", [
    FREEZE_MAIN.replace("Net()", "Flat()").replace("import Net", "import Flat"),  # no module there
    FREEZE_MAIN + "\n\ndef other(m):\n    freeze_encoder(m)\n    Wrapper(m)\n",  # a caller passes something unknown
    FREEZE_MAIN.replace("    freeze_encoder(Net())\n    w = Wrapper(Net())\n", ""),  # no caller
])
def test_a_submodule_path_the_callers_model_does_not_hold_stays_quiet(tmp_path, main):
    root = _project(tmp_path, {"nets.py": ENC_NETS, "freezer.py": FREEZER, "main.py": main})
    assert _run([root / "freezer.py"], root) == set()
    assert _run([root], root) == set()


# -- callers in a file that names no torch: read when a search for callers reaches it -------------

PLAIN_ENGINE = '''\
import torch
from torch import nn


class Trainer:
    def __init__(self, model):
        self.model = model
        self.criterion = nn.BCEWithLogitsLoss()

    def fit(self, x, y):
        loss = self.criterion(self.model(x), y)  # expect: GL304
        loss.backward()


def log_prob(model, x):
    return torch.log(model(x)).mean()  # expect: GL302
'''

# imports only the project's trainer and models: the extraction reads its names, not its code
PLAIN_MAIN = '''\
from engine import Trainer, log_prob
from nets import Net


def main(x, y):
    Trainer(Net()).fit(x, y)
    log_prob(Net(), x)
'''


def _plain(tmp_path: Path, main: str = PLAIN_MAIN, more: dict[str, str] | None = None) -> Path:
    for text in (main, *(more or {}).values()):
        assert not re.search(r"torch|\bnn\b|backward|autograd", text)  # nothing the extraction looks for
    return _project(tmp_path, {"nets.py": NETS, "engine.py": PLAIN_ENGINE, "main.py": main, **(more or {})})


def test_a_caller_that_names_no_torch_binds_the_parameters(tmp_path):
    root = _plain(tmp_path)
    expected = _expected_text("engine.py", PLAIN_ENGINE)
    assert {code for _n, _l, code in expected} == {"GL304", "GL302"}
    assert _run([root], root) == expected
    assert _run([root / "engine.py"], root) == expected  # main.py is not checked: read on demand
    assert _run([root / "main.py"], root) == set()  # main.py's own findings: none, as before


def test_a_caller_that_names_no_torch_passing_logits_is_quiet(tmp_path):
    main = PLAIN_MAIN.replace("Net", "Logits")
    root = _plain(tmp_path, main)
    assert _run([root], root) == set()
    assert _run([root / "engine.py"], root) == set()


def test_a_file_naming_the_callee_in_a_string_or_comment_changes_nothing(tmp_path):
    notes = ('"""Usage: Trainer(Logits()).fit(x, y), then log_prob(Logits(), x)."""\n'
             "# Trainer(Logits()).fit(x, y)\nUSAGE = 'log_prob(Logits(), x)'\n")
    root = _plain(tmp_path, more={"notes.py": notes})
    expected = _expected_text("engine.py", PLAIN_ENGINE)
    assert _run([root / "engine.py"], root) == _run([root], root) == expected
    (root / "main.py").unlink()  # no caller at all: unknown, the notes do not make one
    assert _run([root / "engine.py"], root) == set()


UNREADABLE_CALLERS = {
    "Python refuses it": "from engine import Trainer\nfrom nets import Net\n\ndef more(x, y)\n"
                         "    Trainer(Net()).fit(x, y)\n",
    # CPython accepts the indentation (a tab, then spaces and a tab); libcst does not
    "libcst refuses it": "from engine import Trainer\nfrom nets import Net\n\ndef more(x, y):\n"
                         "\tif x:\n        \tTrainer(Net()).fit(x, y)\n",
}


@pytest.mark.parametrize("why", sorted(UNREADABLE_CALLERS))
def test_a_caller_that_names_no_torch_and_cannot_be_read_leaves_the_parameters_unknown(tmp_path, why):
    root = _plain(tmp_path, more={"more.py": UNREADABLE_CALLERS[why]})
    # more.py passes what main.py does, but its call is not read: it might pass anything, so
    # Trainer's parameter is unknown; log_prob's, which more.py does not name, is still bound
    assert _run([root / "engine.py"], root) == {("engine.py", 16, "GL302")}
    result = check_paths([root], Config(select=("GL3", "GL4"), root=str(root)), use_cache=False, jobs=1)
    assert not result.internal_errors
    assert {f.code for f in result.findings if f.path.endswith("more.py")} == (
        {"GL001"} if why == "Python refuses it" else set())
    # the same call, readable, agrees with main.py's: the parameter is bound again
    (root / "more.py").write_text("from engine import Trainer\nfrom nets import Net\n\n\ndef more(x, y):\n"
                                  "    if x:\n        Trainer(Net()).fit(x, y)\n")
    assert _run([root / "engine.py"], root) == _expected_text("engine.py", PLAIN_ENGINE)


def test_a_warm_run_reads_the_calls_of_a_file_without_torch_from_the_cache(tmp_path, monkeypatch):
    import gradlint.source as source

    parsed: list[str] = []
    extract = source.extract_python_text

    def counting(text, display, **kw):
        if kw.get("calls_only"):
            parsed.append(Path(display).name)
        return extract(text, display, **kw)

    monkeypatch.setattr(source, "extract_python_text", counting)
    root = _plain(tmp_path)
    config = Config(select=("GL3", "GL4"), root=str(root))

    def warm(paths) -> set[tuple[str, int, str]]:
        result = check_paths(paths, config, use_cache=True, jobs=1)
        assert not result.internal_errors
        return {(Path(f.path).name, f.span.line, f.code) for f in result.findings}

    expected = _expected_text("engine.py", PLAIN_ENGINE)
    assert warm([root / "engine.py"]) == expected and parsed == ["main.py"]
    # engine.py changed: its rules run again, and main.py's calls come from the cache
    (root / "engine.py").write_text(PLAIN_ENGINE + "\n# touched\n")
    assert warm([root / "engine.py"]) == expected and parsed == ["main.py"]
    # main.py changed: engine.py's findings depend on it, and its calls are read again
    (root / "main.py").write_text(PLAIN_MAIN.replace("Net", "Logits"))
    assert warm([root / "engine.py"]) == set() and parsed == ["main.py", "main.py"]


def test_tensor_helpers_are_judged_with_what_callers_in_another_file_pass():
    folder = FOLDER.parent / "tensor_callers"
    helpers = folder / "helpers.py"

    expected = _expected(helpers)
    assert {code for _, _, code in expected} == {"GL306", "GL307", "GL308"}
    assert _found_in(folder, [folder]) == expected
    assert _found_in(folder, [helpers]) == expected  # alone: train.py is found by scanning for the name


def test_a_reshape_of_a_parameter_is_what_every_caller_passed():
    # GSCNN's bce2d: `input.transpose(...).contiguous().view(1, -1)` into BCE-with-logits, called
    # with a sigmoid output; arithmetic on the parameter (`2 * p - 1`) or logits stay quiet
    folder = FOLDER.parent / "reshaped_callers"
    losses = folder / "losses.py"

    expected = _expected(losses)
    assert {code for _, _, code in expected} == {"GL302", "GL304"}
    assert _found_in(folder, [folder]) == expected
    assert _found_in(folder, [losses]) == expected  # alone: train.py is found by scanning for the names


def test_a_probability_passed_to_a_loss_module_is_reported_at_the_call():
    # `crit = EdgeLoss(); crit(torch.sigmoid(z), y)` with EdgeLoss.forward feeding `pred` to
    # BCE-with-logits: the finding is the call's, whatever other callers pass; a forward that
    # takes either by a setting, a probability passed as the target, or to another keyword, is quiet
    folder = FOLDER.parent / "instance_callers"
    train = folder / "train.py"

    expected = _expected(train)
    assert {code for _, _, code in expected} == {"GL302", "GL303", "GL304"}
    assert _found_in(folder, [folder]) == expected
    assert _found_in(folder, [train]) == expected  # alone: losses.py is read through the import


def test_a_selection_of_a_parameter_marks_no_other_unknown_value(tmp_path):
    # `inp[:, 0]` of an open parameter knows nothing but where it comes from; an unknown value
    # elsewhere in the file (`other.foo()`) is no part of that parameter
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "uk.py").write_text(
        "import torch\n\n\ndef f(inp, other):\n    a = inp[:, 0]\n    return torch.acos(other.foo()) + a\n")
    (tmp_path / "main.py").write_text(
        "import torch\nimport torch.nn as nn\nfrom uk import f\n\nlin = nn.Linear(3, 3)\n"
        "h = torch.relu(lin(torch.randn(2, 3)))\nf(h, h).sum().backward()\n")
    result = check_paths([tmp_path], Config(select=("GL3",), root=str(tmp_path)), use_cache=False, jobs=1)
    assert not result.internal_errors and result.findings == []


def test_a_short_method_passing_a_constructor_parameter_on_is_read_without_error(tmp_path):
    # `def get(self): return helper(self.crit)`, read ahead of its turn (method_returns) in a walk
    # of no function of its own: the argument is __init__'s open parameter, passed on by no
    # function parameter of that walk (an internal error on transformers' finegrained_fp8.py)
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "m.py").write_text(
        "import torch\nfrom torch import nn\n\n\ndef helper(c):\n    return c\n\n\n"
        "class A(nn.Module):\n    def __init__(self, crit):\n        super().__init__()\n        self.crit = crit\n\n"
        "    def get(self):\n        return helper(self.crit)\n\n"
        "    def forward(self, x):\n        c = self.get()\n        return c(x)\n")
    result = check_paths([tmp_path], Config(root=str(tmp_path)), use_cache=False, jobs=1)
    assert not result.internal_errors and result.findings == []


def test_a_recursion_passing_its_parameter_back_is_decided_by_the_other_calls(tmp_path):
    # deep(pred, y, n) calls deep(pred, y, n - 1): that call passes back what deep was given
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "helpers.py").write_text(
        "import torch.nn.functional as F\n\n\ndef deep(pred, y, n):\n"
        "    loss = F.binary_cross_entropy_with_logits(pred, y)\n    if n > 0:\n"
        "        loss = loss + deep(pred, y, n - 1)\n    return loss\n")
    (tmp_path / "train.py").write_text(
        "import torch\nfrom helpers import deep\n\n\ndef train(net, x, y):\n"
        "    deep(torch.sigmoid(net(x)), y, 3).backward()\n")
    result = check_paths([tmp_path], Config(select=("GL3",), root=str(tmp_path)), use_cache=False, jobs=1)
    assert [(Path(f.path).name, f.span.line, f.code) for f in result.findings] == [("helpers.py", 5, "GL304")]
    # and quiet when the outside call passes logits
    (tmp_path / "train.py").write_text(
        "from helpers import deep\n\n\ndef train(net, x, y):\n    deep(net(x), y, 3).backward()\n")
    result = check_paths([tmp_path], Config(select=("GL3",), root=str(tmp_path)), use_cache=False, jobs=1)
    assert result.findings == []


@pytest.mark.parametrize("src, line, code", [
    ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\nclass MaskedBCE(nn.Module):\n"
     "    def forward(self, pred, target):\n        if pred.shape != target.shape:\n"
     "            raise ValueError('shape mismatch')\n        return F.binary_cross_entropy_with_logits(pred, target)\n\n\n"
     "def train(model, x, y):\n    crit = MaskedBCE()\n    crit(torch.sigmoid(model(x)), y).backward()\n", 15, "GL304"),
    ("import torch.nn.functional as F\n\n\ndef ce_on_logits(logits, target):\n    if logits.dim() != 2:\n"
     "        raise ValueError('expected (N, C) logits')\n    return F.cross_entropy(logits, target)\n\n\n"
     "def train(model, x, y):\n    ce_on_logits(F.softmax(model(x), dim=1), y).backward()\n", 7, "GL303"),
])
def test_a_shape_check_that_raises_leaves_the_loss_on_every_path(tmp_path, src, line, code):
    # `if ...: raise` before the loss is a guard of the one path there is, not a second result
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "train.py").write_text(src)
    result = check_paths([tmp_path], Config(select=("GL3",), root=str(tmp_path)), use_cache=False, jobs=1)
    assert [(f.span.line, f.code) for f in result.findings] == [(line, code)]


HELD = FOLDER.parent / "held_criteria"


def _held_copy(tmp_path: Path, edits: dict[str, list[tuple[str, str]]]) -> Path:
    """held_criteria copied to `tmp_path` with `edits` (file -> [(old, new)...]) made."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for f in HELD.glob("*.py"):
        text = f.read_text()
        for old, new in edits.get(f.name, ()):
            assert old in text
            text = text.replace(old, new)
        (tmp_path / f.name).write_text(text)
    return tmp_path


def test_a_criterion_the_constructor_is_given_is_what_every_caller_passes():
    # GSCNN: `self.criterion((seg_out, edge_out), gts)` with `edge_out` a sigmoid and every
    # caller passing JointEdgeSegLoss, whose forward unpacks the tuple and hands the edge part to
    # `self.bce2d`, where it reaches BCE-with-logits reshaped. Quiet: the probability in the
    # part that goes elsewhere, a criterion that takes probabilities, a method called under a
    # setting, callers that pass different criteria.
    network, train = HELD / "network.py", HELD / "train.py"
    expected = _expected(network) | _expected(train)
    assert {(name, code) for name, _, code in expected} == {("network.py", "GL304"), ("train.py", "GL304")}
    assert len(expected) == 3
    assert _found_in(HELD, [HELD]) == expected
    assert _found_in(HELD, [network]) == _expected(network)  # alone: the callers are found by name
    assert _found_in(HELD, [train]) == _expected(train)


def test_a_method_called_on_every_path_or_one_criterion_for_every_caller_is_flagged(tmp_path):
    # the look-alikes of held_criteria are quiet for the reason they say: with the setting's
    # `if` gone, or with one criterion for every caller, they are flagged
    root = _held_copy(tmp_path, {
        "losses.py": [("        if self.with_edges:\n            loss = loss + self.edge(edge, targets[1])",
                       "        loss = loss + self.edge(edge, targets[1])")],
        "train.py": [("SharedNet(DiceLoss())", "SharedNet(EdgeLoss())"),
                     ("    swapped.loss_fn = DiceLoss()\n", "")],
    })
    lines = (root / "network.py").read_text().splitlines()
    optional = lines.index("        return self.criterion((e, e), gts)") + 1
    shared = len(lines) - lines[::-1].index("        return self.criterion(torch.sigmoid(self.edge(x)), y)")
    swapped = lines.index("        return self.loss_fn(torch.sigmoid(self.edge(x)), y)") + 1
    expected = _expected(root / "network.py") | {("network.py", n, "GL304") for n in (optional, shared, swapped)}
    assert {f for f in _found_in(root, [root]) if f[0] == "network.py"} == expected


def test_a_method_called_in_a_loop_after_and_or_under_no_grad_is_no_route(tmp_path):
    # WeightedEdges calls `self.edge(edge, ...)` in a loop over a setting, after `and`, and under
    # no_grad: none runs on every path with gradient. Called plainly instead, WeightedNet's
    # `(e, e)` is flagged.
    loop = "        for w in self.edge_weights:\n            loss = loss + w * self.edge(edge, targets[1])\n"
    and_ = "        extra = self.edge_weights and self.edge(edge, targets[1])\n"
    no_grad = "        with torch.no_grad():\n            logged = self.edge(edge, targets[1])\n"
    plain = "        loss = loss + self.edge(edge, targets[1])\n"
    lines = (HELD / "network.py").read_text().splitlines()
    weighted = ("network.py", [n for n, line in enumerate(lines, 1) if line == "        return self.criterion((e, e), gts)"][-1],
                "GL304")
    assert weighted not in _found_in(HELD, [HELD])
    for kept in (loop, and_, no_grad, plain):
        body = kept + "".join(f"        {v} = 0\n" for v in ("extra", "logged") if v not in kept)
        root = _held_copy(tmp_path / str(len(kept)), {"losses.py": [(loop + and_ + no_grad, body)]})
        assert (weighted in _found_in(root, [root])) == (kept is plain)


def test_a_metric_read_only_where_it_leaves_autograd_is_quiet():
    # `ent = -(p * p.log()).sum()` then `print(ent.item())`, `self.log("entropy", ...)`, a value
    # formatted or turned into a float, `return loss, entropy.detach()`: metrics, quiet as
    # `.item()` on the same expression is. The same values added to a loss, appended to a list
    # or returned are flagged, as are a class's own method named `log`, a walrus inside a logging
    # call, a helper that keeps its argument and an in-place sum (Collecting).
    folder = FOLDER.parent / "logged_metrics"
    train = folder / "train.py"
    expected = _expected(train)
    assert {code for _, _, code in expected} == {"GL302", "GL304"} and len(expected) == 7
    assert _found_in(folder, [folder]) == expected


def test_stable_hand_written_forms(tmp_path):
    # fixtures/numerics/stable_forms as a project of its own: a log-sum-exp shifted by a max that
    # is detached or unpacked from torch.max (a literal or a variable dimension), and the stable
    # sigmoid's exp(-x.clamp(min=0)) (inline or by a name, as relu and abs) or of a negated
    # nn.ReLU module's output (held, local, or ending a Sequential), and x * sigmoid(x), are quiet;
    # swish written out, x / (1 + exp(-x)), is flagged as 1 / (1 + exp(-x)) is; the unshifted
    # forms and the exp of a negated LeakyReLU's or Linear's output are flagged (the quiet ones
    # were all flagged before)
    folder = FOLDER.parent / "stable_forms"
    for f in folder.glob("*.py"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "pyproject.toml").write_text("")
    expected = _expected(tmp_path / "ops.py")
    assert len(expected) == 6
    result = check_paths([tmp_path], Config(select=("GL3", "GL4"), root=str(tmp_path)), use_cache=False, jobs=1)
    assert not result.internal_errors
    assert {(Path(f.path).name, f.span.line, f.code) for f in result.findings} == expected


def test_gl407_a_generator_step_on_a_detached_fake_is_a_cut_term(tmp_path):
    # the classic GAN mistake: `g_loss = l1(fake, real) + bce(D(fake.detach()), ones)` stepped by
    # opt_g: that term reaches no parameter of G (every G gradient of it is None)
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "gan.py").write_text(
        "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\n"
        "def train(loader, zdim=16):\n"
        "    D = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1), nn.Sigmoid())\n"
        "    G = nn.Sequential(nn.Linear(zdim, 16), nn.ReLU(), nn.Linear(16, 8))\n"
        "    opt_g = torch.optim.Adam(G.parameters())\n"
        "    for real in loader:\n"
        "        fake = G(torch.randn(real.size(0), zdim))\n"
        "        g_loss = F.l1_loss(fake, real) + F.mse_loss(D(fake.detach()), torch.ones(real.size(0), 1))\n"
        "        opt_g.zero_grad()\n        g_loss.backward()\n        opt_g.step()\n")
    result = check_paths([tmp_path], Config(select=("GL407",), root=str(tmp_path)), use_cache=False, jobs=1)
    assert [(f.span.line, f.code) for f in result.findings] == [(12, "GL407")]


@pytest.mark.parametrize("name", ["numerics/model_methods.py", "paths/trainer_methods.py"])
def test_a_numerics_fixture_alone_in_a_project_of_its_own(tmp_path, name):
    # (inside the repository, neighbouring fixtures take part in what the project index and the
    # file's neighbours resolve; alone, only the file's own code decides)
    source = FOLDER.parent.parent / name
    name = source.name
    (tmp_path / name).write_text(source.read_text())
    (tmp_path / "pyproject.toml").write_text("")
    expected = _expected(tmp_path / name)
    assert expected
    result = check_paths([tmp_path], Config(select=("GL3", "GL4"), root=str(tmp_path)), use_cache=False, jobs=1)
    assert not result.internal_errors
    assert {(Path(f.path).name, f.span.line, f.code) for f in result.findings} == expected


def test_the_output_of_a_function_of_another_file_that_returns_a_probability(tmp_path):
    # `from utils import predict_scores` with `return torch.sigmoid(model(x))`: its output fed to
    # BCE-with-logits, cross_entropy or a log is flagged where the loss is; logits, a loss that
    # takes probabilities, or a clamped probability are quiet. Checked alone, train.py reads
    # utils.py through its import.
    folder = FOLDER.parent / "function_outputs"
    for f in folder.glob("*.py"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "pyproject.toml").write_text("")
    expected = _expected(tmp_path / "train.py")
    assert {code for _, _, code in expected} == {"GL302", "GL303", "GL304"}
    assert _found_in(tmp_path, [tmp_path]) == expected
    assert _found_in(tmp_path, [tmp_path / "train.py"]) == expected
    messages = check_paths([tmp_path], Config(select=("GL304",), root=str(tmp_path)), use_cache=False, jobs=1).findings
    assert "the output of `predict_scores()`, which returns a sigmoid" in messages[0].message


def test_gl407_a_detached_fake_through_the_module_the_loss_trains_is_no_cut_term(tmp_path):
    # the discriminator's step: `bce(D(real), 1) + bce(D(fake.detach()), 0)` stepped by opt_d;
    # the fake's term passes D after its cut, as the real term does: it trains D. A term that
    # passes only a module the rest does not (the generator's mistake), one whose module has no
    # weights, and one cut after the module (`.item()`) stay flagged.
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "gan.py").write_text(
        "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\n"
        "def train(loader, zdim=16):\n"
        "    D = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1), nn.Sigmoid())\n"
        "    G = nn.Sequential(nn.Linear(zdim, 16), nn.ReLU(), nn.Linear(16, 8))\n"
        "    squash = nn.Sequential(nn.Tanh(), nn.Sigmoid())\n"
        "    opt_d = torch.optim.Adam(D.parameters())\n"
        "    opt_g = torch.optim.Adam(G.parameters())\n"
        "    for real in loader:\n"
        "        n = real.size(0)\n"
        "        fake = G(torch.randn(n, zdim))\n"
        "        d_loss = F.mse_loss(D(real), torch.ones(n, 1)) + F.mse_loss(D(fake.detach()), torch.zeros(n, 1))\n"
        "        opt_d.zero_grad()\n        d_loss.backward()\n        opt_d.step()\n"
        "        g_loss = F.l1_loss(fake, real) + F.mse_loss(D(fake.detach()), torch.ones(n, 1))\n"
        "        h = squash(fake)\n"
        "        aux = F.mse_loss(squash(h.detach()), real) + F.mse_loss(h, real)\n"
        "        item = F.mse_loss(fake, real) + D(fake).mean().item()\n"
        "        opt_g.zero_grad()\n        (g_loss + aux + item).backward()\n        opt_g.step()\n")
    result = check_paths([tmp_path], Config(select=("GL407",), root=str(tmp_path)), use_cache=False, jobs=1)
    assert not result.internal_errors
    assert [(f.span.line, f.code) for f in result.findings] == [(19, "GL407"), (21, "GL407"), (22, "GL407")]


def test_the_output_of_a_model_another_file_builds(tmp_path):
    # `D = make_disc()` with `return nn.Sequential(..., nn.Sigmoid())` in nets.py: D's output fed
    # to BCE-with-logits, BCELoss or cross_entropy is flagged at the loss (also called at once,
    # `make_classifier()(x)`); a builder of logits, or one that returns either, is quiet.
    # Checked alone, train.py reads nets.py through its imports.
    folder = FOLDER.parent / "function_modules"
    for f in folder.glob("*.py"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "pyproject.toml").write_text("")
    expected = _expected(tmp_path / "train.py")
    assert {code for _, _, code in expected} == {"GL301", "GL303", "GL304"} and len(expected) == 4
    assert _found_in(tmp_path, [tmp_path]) == expected
    assert _found_in(tmp_path, [tmp_path / "train.py"]) == expected
    messages = check_paths([tmp_path], Config(select=("GL304",), root=str(tmp_path)), use_cache=False, jobs=1).findings
    assert "the output of the module `make_disc()` builds, whose call returns a sigmoid" in messages[0].message


def test_gl407_a_term_cut_in_a_returned_dict(tmp_path):
    # `return {"loss": rec + beta * kld.detach(), "kld": kld.detach()}` then
    # `out["loss"].backward()` (the PyTorch-VAE / Lightning convention; sweep b25): the KL term
    # trains nothing. The same dict with the term live, or only the logged entry detached, is
    # quiet, as is backpropagating another entry.
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "vae.py").write_text(
        "import torch\nimport torch.nn.functional as F\n\n\n"
        "def cut_loss(model, x):\n"
        "    out = model(x)\n    rec = F.mse_loss(out, x)\n    kld = out.pow(2).mean()\n"
        "    return {\"loss\": rec + 4.0 * kld.detach(), \"kld\": kld.detach()}\n\n\n"
        "def live_loss(model, x):\n"
        "    out = model(x)\n    rec = F.mse_loss(out, x)\n    kld = out.pow(2).mean()\n"
        "    return {\"loss\": rec + 4.0 * kld, \"kld\": kld.detach(), \"rec\": rec.item() + kld}\n\n\n"
        "def train(loader):\n"
        "    model = torch.nn.Linear(8, 8)\n    opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "    for x in loader:\n"
        "        a = cut_loss(model, x)\n        b = live_loss(model, x)\n"
        "        opt.zero_grad()\n"
        "        a[\"loss\"].backward()\n        b[\"loss\"].backward()\n"
        "        opt.step()\n")
    result = check_paths([tmp_path], Config(select=("GL402", "GL407"), root=str(tmp_path)), use_cache=False, jobs=1)
    assert not result.internal_errors
    assert [(f.span.line, f.code) for f in result.findings] == [(9, "GL407")]


def test_gl401_requires_grad_on_the_loss_a_helper_returns(tmp_path):
    # `loss.requires_grad_(True)` in a loss helper, on a loss built through argmax, that the
    # loop backpropagates (sweep b15): flagged in the helper, as the same line in the loop is.
    # An input made to require grad there (an adversarial step) is quiet, as is a helper that
    # returns its loss as computed.
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "t.py").write_text(
        "import torch\nimport torch.nn.functional as F\n\n\n"
        "def grade_loss(logits, target):\n"
        "    pred = logits.argmax(dim=1).float()\n"
        "    loss = torch.abs(pred - target.float()).mean()\n"
        "    loss.requires_grad_(True)\n"
        "    return loss\n\n\n"
        "def adversarial_loss(model, x, y):\n"
        "    x = x.clone().requires_grad_(True)\n"
        "    return F.cross_entropy(model(x), y)\n\n\n"
        "def plain_loss(model, x, y):\n"
        "    loss = F.cross_entropy(model(x), y)\n"
        "    return loss\n\n\n"
        "def train(model, optimizer, loader):\n"
        "    for x, y in loader:\n"
        "        optimizer.zero_grad()\n"
        "        loss = grade_loss(model(x), y)\n"
        "        loss.backward()\n"
        "        adversarial_loss(model, x, y).backward()\n"
        "        plain_loss(model, x, y).backward()\n"
        "        optimizer.step()\n")
    result = check_paths([tmp_path], Config(select=("GL401",), root=str(tmp_path)), use_cache=False, jobs=1)
    assert not result.internal_errors
    assert [(f.span.line, f.code) for f in result.findings] == [(8, "GL401")]
    assert "backpropagated at line 26" in result.findings[0].message


def test_a_probability_into_a_criterion_another_module_binds_at_its_top_level():
    # fixtures/numerics/imported_criteria: `from losses import criterion` with `criterion =
    # nn.CrossEntropyLoss()` (or a partial of F.cross_entropy) in losses.py
    folder = FOLDER.parent / "imported_criteria"
    train = folder / "train.py"
    expected = _expected(train)
    assert {code for _, _, code in expected} == {"GL301", "GL303", "GL304"}
    assert _found_in(folder, [folder]) == expected
    assert _found_in(folder, [train]) == expected  # alone: losses.py is read through the import


def test_a_loss_passed_as_a_value_is_called_where_the_loop_calls_its_parameter(tmp_path):
    # `fit(Model(), [], deviance)` in train.py with engine.py's `def fit(model, loader, loss_fn):
    # ... loss_fn(model(x), counts)`: deviance's `rate` is the model's output, and its where takes
    # log(0) in the masked-out branch (GL309). A clamped deviance, or one the loop calls on a
    # detached output, is quiet. Copied out of the repository, whose other files name `fit` too.
    folder = FOLDER.parent / "passed_functions"
    for f in folder.glob("*.py"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "pyproject.toml").write_text("")
    expected = _expected(tmp_path / "losses.py")
    assert {code for _, _, code in expected} == {"GL309"} and len(expected) == 1
    assert _found_in(tmp_path, [tmp_path]) == expected
    assert _found_in(tmp_path, [tmp_path / "losses.py"]) == expected  # alone: train.py and engine.py are read
    assert _found_in(tmp_path, [tmp_path / "train.py"]) == set()
