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


OP = ("import torch\n\n\nclass Op(torch.autograd.Function):\n    @staticmethod\n    def forward(ctx, x):\n"
      "        return x * 2\n\n    @staticmethod\n    def backward(ctx, g):\n        return g * 2\n")
GRADCHECK = ("import torch\nfrom pkg.op import Op\n\n\ndef test_op():\n"
             "    x = torch.randn(3, dtype=torch.float64, requires_grad=True)\n"
             "    assert torch.autograd.gradcheck(Op.apply, (x,))\n")


def test_a_word_scan_reads_each_project_file_once_and_its_answer_is_kept_by_content(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GL406's question scans every file of the project for `gradcheck`; the result cache keys the
    answer by those files' fingerprints, taken from the bytes the scan read (not a second read)."""
    (tmp_path / "pyproject.toml").write_text("")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "op.py").write_text(OP)
    for i in range(5):
        (pkg / f"other{i}.py").write_text(f"X = {i}\n")
    config = Config(root=str(tmp_path), select=("GL406",))
    monkeypatch.chdir(tmp_path)
    again: Counter[str] = Counter()
    real = inputs.fingerprint

    def counted(path, *args, **kwargs):
        again[Path(path).name] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(inputs, "fingerprint", counted)

    def codes(use_cache: bool) -> list[str]:
        result = api.check_paths(["pkg/op.py"], config, use_cache=use_cache, jobs=1)
        assert not result.internal_errors
        return [f.code for f in result.findings]

    assert codes(True) == ["GL406"] and not again  # scanned once, fingerprinted from that read
    assert codes(True) == ["GL406"]  # warm: the listing is fingerprinted to check the entry
    (pkg / "other3.py").write_text(GRADCHECK)  # another file now gradchecks it
    assert codes(True) == [] == codes(False)
