"""A module handed to a trainer with `criterion=` (skorch's convention): the criterion is applied to
the module's output (source/numerics_wrapped.py)."""

from __future__ import annotations

import pytest

from tests.conftest import codes_for

NET = """import torch
import torch.nn.functional as F
from torch import nn
from skorch import NeuralNet, NeuralNetBinaryClassifier, NeuralNetClassifier


class Net(nn.Module):
    def __init__(self, n_in=20, n_out=2):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)

    def forward(self, x):
        return {out}


{call}
"""


@pytest.mark.parametrize("call, code", [
    ("net = NeuralNetClassifier(Net, criterion=nn.CrossEntropyLoss)", "GL303"),
    ("net = NeuralNet(module=Net, criterion=nn.CrossEntropyLoss, max_epochs=3)", "GL303"),
    ("net = NeuralNet(Net(20, 2), criterion=nn.CrossEntropyLoss())", "GL303"),
    ("net = NeuralNet(Net, criterion=torch.nn.CrossEntropyLoss)", "GL303"),
])
def test_a_softmax_module_trained_on_cross_entropy_is_flagged(call, code):
    assert codes_for(NET.format(out="F.softmax(self.fc(x), dim=-1)", call=call), select="GL303") == [code]


@pytest.mark.parametrize("call", [
    "net = NeuralNetClassifier(Net)",  # NLLLoss: skorch takes the log of the probabilities
    "net = NeuralNetClassifier(Net, criterion=nn.NLLLoss)",
    "net = NeuralNet(Other, criterion=nn.CrossEntropyLoss)",  # not a class of the file
    "net = NeuralNet(criterion=nn.CrossEntropyLoss)",  # no module given
    "net = NeuralNet(*mods, criterion=nn.CrossEntropyLoss)",
    "def make(Net):\n    return NeuralNet(Net, criterion=nn.CrossEntropyLoss)",  # a parameter named alike
])
def test_no_module_of_the_file_with_a_cross_entropy_is_quiet(call):
    assert codes_for(NET.format(out="F.softmax(self.fc(x), dim=-1)", call=call), select="GL303") == []


def test_a_module_that_returns_logits_is_quiet():
    assert codes_for(NET.format(out="self.fc(x)", call="net = NeuralNet(Net, criterion=nn.CrossEntropyLoss)"),
                     select="GL303") == []


def test_a_sigmoid_module_trained_on_bce_with_logits_is_flagged():
    src = NET.format(out="torch.sigmoid(self.fc(x))",
                     call="net = NeuralNetBinaryClassifier(Net, criterion=nn.BCEWithLogitsLoss)")
    assert codes_for(src, select="GL304") == ["GL304"]
    logits = NET.format(out="self.fc(x)", call="net = NeuralNetBinaryClassifier(Net, criterion=nn.BCEWithLogitsLoss)")
    assert codes_for(logits, select="GL304") == []


def test_a_trainer_of_the_file_is_read_where_its_own_code_applies_the_criterion():
    """A Trainer class of the file that applies `self.criterion(self.model(x), y)` is read through
    what its callers pass (at the criterion's call), not again at `Trainer(...)` by this reading."""
    from gradlint.api import check_source
    from gradlint.config import Config

    src = NET.format(out="F.softmax(self.fc(x), dim=-1)", call=(
        "class Trainer:\n    def __init__(self, model, criterion):\n        self.model = model\n"
        "        self.criterion = criterion\n\n    def step(self, x, y):\n"
        "        return self.criterion(self.model(x), y)\n\n\n"
        "trainer = Trainer(Net(), criterion=nn.CrossEntropyLoss())\n"))
    at = src.splitlines().index("trainer = Trainer(Net(), criterion=nn.CrossEntropyLoss())") + 1
    found = check_source(src, Config(select=("GL303",)), path="m.py")
    assert at not in [f.span.line for f in found]
