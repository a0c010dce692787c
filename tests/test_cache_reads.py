"""The first cached run reads each checked file once, as --no-cache does: the result cache takes a
checked file's fingerprint from the read its facts came from (the loader names the file by its
absolute path, discovery by the path given)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gradlint import api, inputs
from gradlint.config import Config

MODEL = "import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 4)\n\n    def forward(self, x):\n        return self.fc(x)\n"
TRAIN = "import torch\nfrom pkg.model import Net\n\n\ndef step(batch, opt):\n    model = Net()\n    opt.zero_grad()\n    loss = model(batch).sum()\n    loss.backward()\n    opt.step()\n"


@pytest.mark.parametrize("use_cache", [False, True])
def test_each_checked_file_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_cache: bool) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text(MODEL)
    (pkg / "train.py").write_text(TRAIN)
    reads: Counter[str] = Counter()
    real = inputs.read_input

    def counted(path, *args, **kwargs):
        reads[Path(path).resolve().as_posix()] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(inputs, "read_input", counted)
    monkeypatch.chdir(tmp_path)
    result = api.check_paths(["pkg"], Config(root=str(tmp_path)), use_cache=use_cache, jobs=1)
    assert sorted(r.path for r in result.files) == ["pkg/__init__.py", "pkg/model.py", "pkg/train.py"]
    assert reads and all(n == 1 for n in reads.values()), reads
    assert (tmp_path / ".gradlint_cache").exists() == use_cache
