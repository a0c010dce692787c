"""Training steps whose optimizer or scaler is a parameter, decided by the callers of the whole
project (facts.training.bind_callers): a file checked alone or with its folder finds the same."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from gradlint.api import check_paths
from gradlint.config import Config
from gradlint.facts.training import iter_events
from gradlint.source import extract_facts, parse

from test_training_fixtures import TRAINING, expectations


def _found(paths, root: Path):
    result = check_paths(paths, Config(select=("GL2",), root=str(root)), use_cache=False, jobs=1)
    assert not result.internal_errors
    return {(Path(f.path).name, f.span.line, f.code) for f in result.findings}


def test_callers_in_another_file_decide_the_steps():
    folder = TRAINING / "crossfile_param"
    expected = {(p.name, line, code) for p in folder.glob("*.py") for line, code in expectations(p)}
    assert {code for _, _, code in expected} == {"GL202", "GL203"}
    assert _found([folder], folder) == expected
    # the step functions' file alone finds its callers through the project index
    assert _found([folder / "stepping.py"], folder) == expected


def test_no_caller_and_disagreeing_callers_are_quiet(tmp_path):
    for name in ("crossfile_param_nocaller", "crossfile_param_disagree"):
        folder = TRAINING / name
        assert not any(expectations(p) for p in folder.glob("*.py"))
        assert _found([folder], folder) == set(), name
        assert _found([folder / "stepping.py"], folder) == set(), name
    # the flagged fixture without its caller is the look-alike with no caller
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "pyproject.toml").write_text("")
    shutil.copy(TRAINING / "crossfile_param" / "stepping.py", alone)
    assert _found([alone], alone) == set()


def test_a_caller_that_reads_the_function_as_a_value_makes_it_unknown(tmp_path):
    shutil.copytree(TRAINING / "crossfile_param", tmp_path / "p")
    (tmp_path / "p" / "pyproject.toml").write_text("")
    (tmp_path / "p" / "hooks.py").write_text("import torch\nfrom stepping import plain_update\n\nHOOKS = [plain_update]\n")
    found = _found([tmp_path / "p" / "stepping.py"], tmp_path / "p")
    assert ("stepping.py", 11, "GL202") not in found
    assert ("stepping.py", 18, "GL203") in found  # amp_update is still only called


def test_open_steps_and_argument_kinds_in_the_facts():
    callee = extract_facts(parse("stepping.py", (TRAINING / "crossfile_param" / "stepping.py").read_text())).training
    open_steps = [e for fn in callee.functions for e in iter_events(fn.body) if e.kind == "open_step"]
    assert [(e.param, e.name) for e in open_steps] == [("o", "step"), ("s", "step")]
    assert not [e for fn in callee.functions for e in iter_events(fn.body) if e.kind == "step"]
    caller = extract_facts(parse("train.py", (TRAINING / "crossfile_param" / "train.py").read_text())).training
    calls = {e.target: dict(e.args) for fn in caller.functions for e in iter_events(fn.body) if e.kind == "invoke"}
    assert [v.kind for v in calls["amp_update"].values()] == ["", "optimizer", "scaler", ""]
    assert calls["torch.nn.Linear"] == {}  # no optimizer or scaler passed: no arguments recorded


def test_a_named_optimizer_is_decided_in_its_own_file_as_before():
    text = "import torch\n\ndef update(model, optimizer, loss):\n    loss.backward()\n    optimizer.step()\n"
    t = extract_facts(parse("t.py", text)).training
    assert [e.kind for fn in t.functions for e in iter_events(fn.body)] == ["backward", "step"]


@pytest.mark.parametrize("passed, flagged", [("sgd", True), ("m", False)])
def test_a_caller_file_without_loop_facts_is_read_when_a_search_reaches_it(tmp_path, passed, flagged):
    shutil.copytree(TRAINING / "crossfile_param", tmp_path / "p")
    (tmp_path / "p" / "pyproject.toml").write_text("")
    # no backward, clip, zero_grad, scaler or trainer in it: the loop extraction skips the file,
    # and the search for plain_update's callers reads its calls then: an optimizer passed agrees
    # with train.py's caller, a model passed for `o` does not
    (tmp_path / "p" / "more.py").write_text(
        "import torch\nfrom stepping import plain_update\n\nm = torch.nn.Linear(4, 1)\n"
        f"sgd = torch.optim.SGD(m.parameters(), lr=0.1)\nplain_update(m, {passed}, torch.randn(8, 4))\n")
    found = _found([tmp_path / "p"], tmp_path / "p")
    assert (("stepping.py", 11, "GL202") in found) == flagged and ("stepping.py", 18, "GL203") in found
    assert _found([tmp_path / "p" / "stepping.py"], tmp_path / "p") == {f for f in found if f[0] == "stepping.py"}


def test_a_warm_run_sees_a_caller_change_in_a_file_outside_the_run(tmp_path):
    from tests.test_result_cache import same_as_no_cache

    shutil.copytree(TRAINING / "crossfile_param", tmp_path / "p")
    root = tmp_path / "p"
    (root / "pyproject.toml").write_text("[tool.gradlint]\nselect = ['GL2']\n")
    codes = lambda found: sorted((line, code) for _p, code, line, _m in found)  # noqa: E731
    assert codes(same_as_no_cache(root, ["stepping.py"])) == [(11, "GL202"), (18, "GL203")]
    # the caller now passes the model for `o` of plain_update: stepping.py's result depends on it
    train = (root / "train.py").read_text()
    (root / "train.py").write_text(train.replace("plain_update(model, adam, batch)", "plain_update(model, model, batch)"))
    assert codes(same_as_no_cache(root, ["stepping.py"])) == [(18, "GL203")]


def test_a_scaler_passed_for_a_step_without_an_optimizer_is_no_step(tmp_path):
    shutil.copytree(TRAINING / "crossfile_param", tmp_path / "p")
    root = tmp_path / "p"
    (root / "pyproject.toml").write_text("")
    train = (root / "train.py").read_text()
    (root / "train.py").write_text(train.replace("plain_update(model, adam, batch)", "plain_update(model, amp, batch)"))
    assert _found([root / "stepping.py"], root) == {("stepping.py", 18, "GL203")}


# -- methods: `trainer.plain_update(adam, batch)` from other files, the receiver's class known ----


def test_callers_in_other_files_decide_the_steps_of_methods(tmp_path):
    folder = TRAINING / "crossfile_param_method"
    expected = {(p.name, line, code) for p in folder.glob("*.py") for line, code in expectations(p)}
    assert expected == {("trainer.py", 15, "GL202"), ("trainer.py", 21, "GL203")}
    assert _found([folder], folder) == expected
    assert _found([folder / "trainer.py"], folder) == expected
    # each caller alone decides it too (train.py: a module-level instance; loop.py: `self.trainer`)
    for caller in ("train.py", "loop.py"):
        root = _without(folder, {"train.py", "loop.py"} - {caller}, tmp_path / caller)
        assert _found([root / "trainer.py"], root) == expected, caller


def _without(folder: Path, names: set[str], tmp: Path) -> Path:
    """A copy of the fixture folder as a project of its own, without the files `names`."""
    root = tmp / folder.name
    shutil.copytree(folder, root)
    (root / "pyproject.toml").write_text("")
    for name in names:
        (root / name).unlink()
    return root


def test_method_callers_that_disagree_or_none_are_quiet(tmp_path):
    folder = TRAINING / "crossfile_param_method_disagree"
    assert not any(expectations(p) for p in folder.glob("*.py"))
    assert _found([folder], folder) == set()
    assert _found([folder / "trainer.py"], folder) == set()
    # no caller at all
    alone = _without(TRAINING / "crossfile_param_method", {"train.py", "loop.py"}, tmp_path)
    assert _found([alone], alone) == set()


@pytest.mark.parametrize("caller", [
    # a receiver whose class the caller does not know
    "from trainer import Trainer\n\ndef go(t, adam, batch):\n    t.plain_update(adam, batch)\n    t.zero_grad()\n",
    # the method read as a value (a hook list)
    "from trainer import Trainer\n\nt = Trainer(None)\nHOOKS = [t.plain_update]\nt.zero_grad()\n",
    # a subclass that may override it
    "from trainer import Trainer\n\nclass Fancy(Trainer):\n    def plain_update(self, o, batch):\n        o.zero_grad()\n",
    # the class called on (`Trainer.plain_update(t, ...)`: the arguments shift by one)
    "import torch\nfrom trainer import Trainer\n\nt = Trainer(None)\nsgd = torch.optim.SGD([], lr=0.1)\n"
    "Trainer.plain_update(t, sgd, None)\nt.zero_grad()\n",
    # a receiver reached through a subscript, which the call graph has no edge for (the text is
    # split: this file is in the repository's project, whose texts the scan for `].m` reads)
    "import torch\nfrom trainer import Trainer\n\nm = torch.nn.Linear(4, 1)\n"
    "sched = torch.optim.lr_scheduler.StepLR(torch.optim.SGD(m.parameters(), lr=0.1), 1)\n"
    "trainers = [Trainer(m)]\nm.zero_grad()\ntrainers[0]" ".plain_update(sched, None)\n",
    # a call the loop facts do not record (in an assert) though the call graph counts it
    "from trainer import Trainer\n\nt = Trainer(None)\nassert t.plain_update(None, None) is None\nt.zero_grad()\n",
])
def test_a_method_caller_we_cannot_read_leaves_it_unknown(tmp_path, caller):
    root = _without(TRAINING / "crossfile_param_method", set(), tmp_path)
    (root / "other.py").write_text("import torch\n" + caller)
    found = _found([root / "trainer.py"], root)
    assert ("trainer.py", 15, "GL202") not in found
    assert ("trainer.py", 21, "GL203") in found  # amp_update is still only called as before


def test_a_method_passed_a_non_optimizer_is_no_step(tmp_path):
    root = _without(TRAINING / "crossfile_param_method", set(), tmp_path)
    train = (root / "train.py").read_text()
    (root / "train.py").write_text(train.replace("trainer.plain_update(adam, batch)", "trainer.plain_update(model, batch)"))
    assert _found([root / "trainer.py"], root) == {("trainer.py", 21, "GL203")}


def test_open_steps_of_methods_in_the_facts():
    text = (TRAINING / "crossfile_param_method" / "trainer.py").read_text()
    callee = extract_facts(parse("trainer.py", text)).training
    open_steps = [e for fn in callee.functions for e in iter_events(fn.body) if e.kind == "open_step"]
    assert [(e.param, e.name) for e in open_steps] == [("o", "step"), ("s", "step")]
    # `self` itself, a decorated method, `forward` and a nested class's method are never open
    for variant in (text.replace("o.step()", "self.step()"),
                    text.replace("    def plain_update", "    @torch.no_grad()\n    def plain_update"),
                    text.replace("def plain_update", "def forward"),
                    "import torch\n\n\nclass Outer:\n    " + text.split("\n\n\n", 1)[1].replace("\n", "\n    ")):
        facts = extract_facts(parse("trainer.py", variant)).training
        assert [e.param for fn in facts.functions for e in iter_events(fn.body) if e.kind == "open_step"
                and fn.name == "plain_update"] == [], variant


def test_a_warm_run_sees_a_method_caller_change_in_a_file_outside_the_run(tmp_path):
    from tests.test_result_cache import same_as_no_cache

    root = _without(TRAINING / "crossfile_param_method", {"loop.py"}, tmp_path)
    (root / "pyproject.toml").write_text("[tool.gradlint]\nselect = ['GL2']\n")
    codes = lambda found: sorted((line, code) for _p, code, line, _m in found)  # noqa: E731
    assert codes(same_as_no_cache(root, ["trainer.py"])) == [(15, "GL202"), (21, "GL203")]
    train = (root / "train.py").read_text()
    (root / "train.py").write_text(train.replace("trainer.plain_update(adam, batch)", "trainer.plain_update(model, batch)"))
    assert codes(same_as_no_cache(root, ["trainer.py"])) == [(21, "GL203")]


# -- the model a step function trains, from its callers (GL201) ----------------------------------


def test_the_model_a_step_function_trains_comes_from_its_callers(tmp_path):
    folder = TRAINING / "crossfile_model_param"
    expected = {("stepping.py", 11, "GL201")}
    assert {(p.name, line, code) for p in folder.glob("*.py") for line, code in expectations(p)} == expected
    assert _found([folder], folder) == expected
    assert _found([folder / "stepping.py"], folder) == expected


@pytest.mark.parametrize("change", [
    # every caller passes a shallow model
    lambda main: main.replace("lm = WordLM(", "lm = Shallow(").replace("import WordLM", "import Shallow"),
    # callers disagree: a second one passes a shallow model
    lambda main: main.replace("import WordLM", "import Shallow, WordLM")
    + "fit_language_model(Shallow(10, 4), torch.optim.SGD([], lr=0.1), [])\n",
    # a caller passes what it does not know (its own parameter)
    lambda main: main + "\n\ndef again(m):\n    fit_language_model(m, torch.optim.SGD([], lr=0.1), [])\n",
    # no caller at all
    lambda main: "import torch\n",
])
def test_the_model_from_callers_look_alikes_are_quiet(tmp_path, change):
    root = _without(TRAINING / "crossfile_model_param", set(), tmp_path)
    (root / "main.py").write_text(change((root / "main.py").read_text()))
    assert _found([root / "stepping.py"], root) == set()
    assert _found([root], root) == set()


def test_the_model_of_a_method_comes_from_its_callers(tmp_path):
    root = _without(TRAINING / "crossfile_model_param", set(), tmp_path)
    step = (root / "stepping.py").read_text()
    (root / "stepping.py").write_text(step.replace(
        "def fit_language_model(model, opt, loader):", "class Runner:\n    def fit_language_model(self, model, opt, loader):"
    ).replace("\n    ", "\n        ").replace("\n        def fit", "\n    def fit"))
    main = (root / "main.py").read_text()
    (root / "main.py").write_text(main.replace("from stepping import fit_language_model", "from stepping import Runner")
                                  .replace("fit_language_model(lm", "Runner().fit_language_model(lm")
                                  .replace("Runner().fit", "runner = Runner()\nrunner.fit"))
    assert _found([root / "stepping.py"], root) == {("stepping.py", 12, "GL201")}
    (root / "main.py").write_text((root / "main.py").read_text().replace("WordLM(10000", "Shallow(10000")
                                  .replace("import WordLM", "import Shallow"))
    assert _found([root / "stepping.py"], root) == set()


def test_a_teacher_under_no_grad_is_not_the_model_trained(tmp_path):
    root = _without(TRAINING / "crossfile_model_param", set(), tmp_path)
    (root / "stepping.py").write_text(
        "import torch\n\n\ndef fit_language_model(model, teacher, opt, loader):\n    for x, y in loader:\n"
        "        with torch.no_grad():\n            target = teacher(x)\n        opt.zero_grad()\n"
        "        torch.nn.functional.mse_loss(model(x), target).backward()\n        opt.step()\n")
    main = "import torch\n\nfrom model import Shallow, WordLM\nfrom stepping import fit_language_model\n\n" \
           "fit_language_model({}(10, 4), {}(10, 4), torch.optim.SGD([], lr=0.1), [])\n"
    (root / "main.py").write_text(main.format("Shallow", "WordLM"))
    assert _found([root / "stepping.py"], root) == set()
    (root / "main.py").write_text(main.format("WordLM", "Shallow"))
    assert _found([root / "stepping.py"], root) == {("stepping.py", 10, "GL201")}


def test_a_method_called_on_an_instance_in_its_own_file(tmp_path):
    text = (TRAINING / "crossfile_param_method" / "trainer.py").read_text().replace("  # expect: GL202", "") \
        .replace("  # expect: GL203", "")
    caller = ("\n\nmodel = torch.nn.Linear(4, 1)\nadam = torch.optim.Adam(model.parameters())\n"
              "trainer = Trainer(model)\nfor batch in torch.randn(10, 8, 4):\n    trainer.plain_update(adam, batch)\n")
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "solo.py").write_text(text + caller)
    assert _found([tmp_path / "solo.py"], tmp_path) == {("solo.py", 15, "GL202")}
    (tmp_path / "solo.py").write_text(text + caller.replace("plain_update(adam", "plain_update(model"))
    assert _found([tmp_path / "solo.py"], tmp_path) == set()


# -- callers in a file that names no torch: read when the search for callers reaches it ----------

# builds its optimizer and scaler from the project's own modules (what a value is to a step comes
# from its class's name: `Lion`, `GradScaler`); "Scaler(" makes the loop extractor read it
PLAIN_TRAIN = """\
from amp import GradScaler
from optim import Lion
from stepping import amp_update, plain_update


def run(model, batches):
    lion = Lion(model.parameters(), lr=1e-4)
    scaler = GradScaler()
    for batch in batches:
        plain_update(model, lion, batch)
        amp_update(model, lion, scaler, batch)
"""
PLAIN_HELPERS = {"optim.py": "import torch\n\n\nclass Lion(torch.optim.AdamW):\n    pass\n",
                 "amp.py": "from torch.amp import GradScaler\n"}


def _plain(tmp_path: Path, folder: str, train: str) -> Path:
    root = _without(TRAINING / folder, {p.name for p in (TRAINING / folder).glob("*.py")} & {"train.py", "loop.py"},
                    tmp_path)
    for name, text in PLAIN_HELPERS.items():
        (root / name).write_text(text)
    assert not re.search(r"torch|\bnn\b|backward|autograd", train)  # the extraction skips it
    (root / "train.py").write_text(train)
    return root


def test_a_caller_that_names_no_torch_decides_the_steps(tmp_path):
    root = _plain(tmp_path, "crossfile_param", PLAIN_TRAIN)
    expected = {("stepping.py", 11, "GL202"), ("stepping.py", 18, "GL203")}
    assert _found([root / "stepping.py"], root) == expected  # train.py not checked: read on demand
    assert _found([root], root) == expected


def test_a_caller_that_names_no_torch_passing_no_optimizer_is_no_step(tmp_path):
    train = PLAIN_TRAIN.replace("plain_update(model, lion, batch)", "plain_update(model, model, batch)")
    root = _plain(tmp_path, "crossfile_param", train)
    assert _found([root / "stepping.py"], root) == _found([root], root) == {("stepping.py", 18, "GL203")}


def test_a_method_caller_that_names_no_torch_decides_the_steps(tmp_path):
    train = (PLAIN_TRAIN.replace("from stepping import amp_update, plain_update", "from trainer import Trainer")
             .replace("    for batch", "    trainer = Trainer(model)\n    for batch")
             .replace("plain_update(model, ", "trainer.plain_update(").replace("amp_update(model, ", "trainer.amp_update("))
    root = _plain(tmp_path, "crossfile_param_method", train)
    expected = {("trainer.py", 15, "GL202"), ("trainer.py", 21, "GL203")}
    assert _found([root / "trainer.py"], root) == _found([root], root) == expected
    # the look-alike: the model passed for the optimizer
    (root / "train.py").write_text(train.replace("trainer.plain_update(lion, batch)", "trainer.plain_update(model, batch)"))
    assert _found([root / "trainer.py"], root) == {("trainer.py", 21, "GL203")}
