"""A model wrapped in nn.DataParallel, DistributedDataParallel or torch.compile is the model it
wraps: calling the wrapper runs its forward (numerics: what the forward returns; training
loops: what the model holds). Sweep b24: `net = UNet(); if n_gpu > 1: net = nn.DataParallel(net)`."""

from __future__ import annotations

from pathlib import Path

from gradlint.api import check_paths
from gradlint.config import Config

NET = """import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 1)

    def forward(self, x):
        return torch.sigmoid(self.fc(x))


class Logits(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 1)

    def forward(self, x):
        return self.fc(x)


def train(loader, rank):
    a = nn.DataParallel(Net())
    b = torch.compile(Net())
    c = DDP(Net().to(rank), device_ids=[rank])
    d = Net()
    if torch.cuda.device_count() > 1:
        d = nn.DataParallel(d)
    e = nn.DataParallel(Logits())
    crit = nn.BCEWithLogitsLoss()
    params = [*a.parameters(), *b.parameters(), *c.parameters(), *d.parameters(), *e.parameters()]
    opt = torch.optim.SGD(params, lr=0.1)
    for x, y in loader:
        loss = crit(a(x), y)  # expect: GL304
        loss = loss + crit(b(x), y)  # expect: GL304
        loss = loss + crit(c(x), y)  # expect: GL304
        loss = loss + crit(d(x), y)  # expect: GL304
        loss = loss + crit(e(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
"""

LM = """import torch
import torch.nn as nn


class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 32)
        self.rnn = nn.LSTM(32, 64, num_layers=2)
        self.out = nn.Linear(64, 100)

    def forward(self, x):
        h, _ = self.rnn(self.emb(x))
        return self.out(h)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(32, 100)

    def forward(self, x):
        return self.fc(x)


def fit(loader, model):
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    crit = nn.CrossEntropyLoss()
    for x, y in loader:
        opt.zero_grad()
        loss = crit(model(x).view(-1, 100), y.view(-1))
        loss.backward()
        opt.step()


def main(loader):
    model = nn.DataParallel(LM())
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    crit = nn.CrossEntropyLoss()
    for x, y in loader:
        opt.zero_grad()
        loss = crit(model(x).view(-1, 100), y.view(-1))
        loss.backward()
        opt.step()  # expect: GL201


def main_compiled(loader):
    model = LM()
    if torch.cuda.device_count() > 1:
        model = nn.DataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    crit = nn.CrossEntropyLoss()
    for x, y in loader:
        opt.zero_grad()
        loss = crit(model(x).view(-1, 100), y.view(-1))
        loss.backward()
        opt.step()  # expect: GL201


def main_mlp(loader):
    model = torch.compile(nn.DataParallel(MLP()))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    crit = nn.CrossEntropyLoss()
    for x, y in loader:
        opt.zero_grad()
        loss = crit(model(x).view(-1, 100), y.view(-1))
        loss.backward()
        opt.step()
"""


def _expected(text: str) -> set[tuple[int, str]]:
    return {(n, line.rsplit("expect: ", 1)[1].strip()) for n, line in enumerate(text.splitlines(), 1)
            if "# expect: " in line}


def _found(tmp_path: Path, text: str, select: tuple[str, ...]) -> set[tuple[int, str]]:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "m.py").write_text(text)
    result = check_paths([tmp_path], Config(select=select, root=str(tmp_path)), use_cache=False, jobs=1)
    assert not result.internal_errors
    return {(f.span.line, f.code) for f in result.findings}


def test_a_wrapped_model_returns_what_its_forward_returns(tmp_path: Path) -> None:
    expected = _expected(NET)
    assert len(expected) == 4
    assert _found(tmp_path, NET, ("GL3",)) == expected


def test_a_wrapped_recurrent_model_needs_clipping(tmp_path: Path) -> None:
    expected = _expected(LM)
    assert len(expected) == 2
    assert _found(tmp_path, LM, ("GL201",)) == expected


def test_a_model_name_is_local_to_the_function_that_binds_it(tmp_path: Path) -> None:
    """`model = MLP()` in one function is not another function's `model = LM()`: the MLP step
    needs no clipping (it was flagged "LM holds nn.LSTM")."""
    two = LM.replace("model = torch.compile(nn.DataParallel(MLP()))", "model = MLP()")
    assert "model = MLP()" in two
    assert _found(tmp_path, two, ("GL201",)) == _expected(two)


TRAINER = """import torch
import torch.nn as nn
import torch.nn.functional as F


class Trainer:
    def __init__(self, model, optimizer):
        self.model = model
        self.optimizer = optimizer

    def rebuilt_loss(self, out, y, r):
        losses = [F.cross_entropy(out, y), F.mse_loss(out[:, 0], r)]
        loss = torch.tensor(losses, requires_grad=True).sum()
        return loss

    def summed_loss(self, out, y, r):
        losses = [F.cross_entropy(out, y), F.mse_loss(out[:, 0], r)]
        loss = torch.stack(losses).sum()
        return loss

    def weighted_loss(self, out, y):
        ce = F.cross_entropy(out, y)
        loss = 0.5 * ce
        return loss

    def criterion(self):
        crit = nn.BCELoss()
        return crit

    def train_epoch(self, loader):
        for x, y, r in loader:
            self.optimizer.zero_grad()
            total = self.rebuilt_loss(self.model(x), y, r)
            total.backward()  # expect: GL402
            self.optimizer.step()

    def train_ok(self, loader):
        for x, y, r in loader:
            self.optimizer.zero_grad()
            total = self.summed_loss(self.model(x), y, r) + self.weighted_loss(self.model(x), y)
            total.backward()
            self.optimizer.step()

    def train_probs(self, loader):
        for x, y, r in loader:
            self.optimizer.zero_grad()
            loss = self.criterion()(torch.softmax(self.model(x), -1)[:, 0], r)
            loss.backward()
            self.optimizer.step()
"""


def test_a_trainer_method_that_returns_a_local(tmp_path: Path) -> None:
    """`loss = torch.tensor(losses, requires_grad=True).sum(); return loss` in a trainer method
    (the Hugging Face compute_loss shape) cuts what the loop backpropagates, as the same
    expression returned directly does; a sum or a weighted loss returned through a local is
    fine (sweep b14)."""
    assert _found(tmp_path, TRAINER, ("GL402", "GL407")) == _expected(TRAINER)


CTOR = """import torch
import torch.nn as nn


class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 8, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0]


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return self.fc(x)


class Trainer:
    def __init__(self, model, lr=1e-3):
        self.model = model
        self.opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(self, x, y):
        loss = nn.functional.mse_loss(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()  # expect: GL201


class Held:
    def __init__(self, net, opt):
        self.net = net
        self.opt = opt

    def step(self, x, y):
        loss = nn.functional.mse_loss(self.net(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()  # expect: GL201


class Plain:
    def __init__(self, model):
        self.model = model
        self.opt = torch.optim.Adam(model.parameters())

    def step(self, x, y):
        loss = nn.functional.mse_loss(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


class Clipped:
    def __init__(self, model):
        self.model = model
        self.opt = torch.optim.Adam(model.parameters())

    def step(self, x, y):
        loss = nn.functional.mse_loss(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()


def main(loader):
    trainer = Trainer(LM())
    lm = LM()
    held = Held(lm, torch.optim.SGD(lm.parameters(), lr=0.1))
    plain = Plain(MLP())
    clipped = Clipped(LM())
    for x, y in loader:
        trainer.step(x, y)
        held.step(x, y)
        plain.step(x, y)
        clipped.step(x, y)
"""


def test_a_model_the_constructor_is_given(tmp_path: Path) -> None:
    """`Trainer(LM())` with `self.model = model` and the optimizer built from it in __init__
    (sweep b21): the step of an LSTM model is not clipped; an MLP's needs no clip, a clipped
    step is fine."""
    assert _found(tmp_path, CTOR, ("GL201",)) == _expected(CTOR)


def test_callers_that_disagree_leave_the_constructor_parameter_unknown(tmp_path: Path) -> None:
    both = CTOR.replace("    plain = Plain(MLP())\n", "    plain = Plain(MLP())\n    other = Trainer(MLP())\n")
    assert _found(tmp_path, both, ("GL201",)) == {(44, "GL201")}


def test_names_a_step_reads_are_those_in_its_scope(tmp_path: Path) -> None:
    """fixtures/training/names_in_scope: an optimizer name two functions share (the step function
    run from `__main__` reads its own `opt`), and a script that rebinds `model` for a later
    loop (its step trains the binding that reaches it), as a project of its own."""
    folder = Path(__file__).resolve().parent.parent / "fixtures" / "training" / "names_in_scope"
    for f in folder.glob("*.py"):
        text = f.read_text()
        found = _found(tmp_path, text, ("GL201",))
        assert found == _expected(text), f.name
        assert len(found) == 1, f.name


def test_a_model_is_judged_as_built_not_by_its_class_defaults(tmp_path: Path) -> None:
    """fixtures/training/instance_args: `GPT(GPTConfig(n_layer=2))` is a two-block transformer
    (the class default is twelve): its step needs no clip; the twelve-block one does."""
    folder = Path(__file__).resolve().parent.parent / "fixtures" / "training" / "instance_args"
    for f in folder.glob("*.py"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "pyproject.toml").write_text("")
    text = (tmp_path / "train.py").read_text()
    result = check_paths([tmp_path], Config(select=("GL201",), root=str(tmp_path)), use_cache=False, jobs=1)
    assert not result.internal_errors
    found = {(f.span.line, f.code) for f in result.findings if Path(f.path).name == "train.py"}
    assert found == _expected(text) and len(found) == 1
    assert "GPT is a transformer of 12 blocks" in next(f.message for f in result.findings)


def test_a_lightning_module_of_another_file_that_clips_itself(tmp_path: Path) -> None:
    """fixtures/training/lightning_other_file: a LightningModule in modules.py that clips in
    configure_gradient_clipping, on_before_optimizer_step or its manual step needs no
    gradient_clip_val (as when the class is in the Trainer's file); one that does not clip is
    flagged, each fit judged by the binding of its own function."""
    folder = Path(__file__).resolve().parent.parent / "fixtures" / "training" / "lightning_other_file"
    for f in folder.glob("*.py"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "pyproject.toml").write_text("")
    text = (tmp_path / "train.py").read_text()
    result = check_paths([tmp_path], Config(select=("GL201",), root=str(tmp_path)), use_cache=False, jobs=1)
    assert not result.internal_errors
    assert {(f.span.line, f.code) for f in result.findings} == _expected(text)
    assert "PlainGRU is recurrent" in result.findings[0].message
