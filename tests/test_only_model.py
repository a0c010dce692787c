"""A model parameter no call in the project passes a model to, read as the one model class its file
defines (facts.numerics.only_model): also in a file named as a function of it (`train.py` holding
`def train(model, ...)`, the commonest script layout), where the class's qualified name would
resolve to the function."""

from __future__ import annotations

from pathlib import Path

from gradlint.api import check_paths
from gradlint.config import Config

SCRIPT = """\
import torch
from torch import nn


class Ranker(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        return self.softmax(self.fc(x))


def train(model, loader, optimizer):
    criterion = nn.CrossEntropyLoss()
    for x, y in loader:
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
"""


def _codes(tmp_path: Path, name: str, text: str) -> list[str]:
    (tmp_path / name).write_text(text)
    found = check_paths([tmp_path / name], Config(root=str(tmp_path)), use_cache=False, jobs=1)
    return [f.code for f in found.findings]


def test_the_guess_holds_in_a_file_named_as_its_function(tmp_path: Path) -> None:
    assert _codes(tmp_path, "train.py", SCRIPT) == ["GL303"]


def test_the_guess_holds_in_any_file(tmp_path: Path) -> None:
    assert _codes(tmp_path, "script.py", SCRIPT) == ["GL303"]


def test_no_guess_under_no_grad(tmp_path: Path) -> None:
    # (a backward under no_grad is GL207's; the softmax into the loss is not reported)
    src = SCRIPT.replace("def train(", "@torch.no_grad()\ndef train(")
    assert "GL303" not in _codes(tmp_path, "script.py", src)
