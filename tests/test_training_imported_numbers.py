"""Clip thresholds imported from another module of the project (`from hparams import GRAD_CLIP`,
`hparams.GRAD_CLIP`): the training-loop facts read their value there, as the numerics read
imported constants; a warm run sees a change of that module."""

from __future__ import annotations

import pytest

from gradlint.api import check_paths
from gradlint.config import Config

TRAIN = """import torch
import torch.nn as nn
{imports}


def train(model, loader, opt{params}):
    for x, y in loader:
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
{clip}
        opt.step()
"""
CLIP = "        torch.nn.utils.clip_grad_norm_(model.parameters(), {value})"
GUARDED = "        if GRAD_CLIP > 0:\n    " + CLIP


def project(tmp_path, imports: str, value: str, hparams: str = "GRAD_CLIP = 0.0\n", clip: str = CLIP,
            params: str = ""):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "hparams.py").write_text(hparams)
    (tmp_path / "train.py").write_text(TRAIN.format(imports=imports, clip=clip.format(value=value), params=params))


def findings(tmp_path, *, cache: bool = False):
    result = check_paths([tmp_path / "train.py"], Config(root=str(tmp_path)), use_cache=cache, jobs=1)
    assert not result.internal_errors
    return [(f.code, f.span.line, f.message) for f in result.findings]


@pytest.mark.parametrize("imports, value", [
    ("from hparams import GRAD_CLIP", "GRAD_CLIP"),
    ("import hparams", "hparams.GRAD_CLIP"),
    ("from hparams import GRAD_CLIP as CLIP", "2 * CLIP"),
])
def test_a_zero_threshold_imported_from_the_project_is_gl204(tmp_path, imports, value):
    project(tmp_path, imports, value)
    ((code, line, message),) = findings(tmp_path)
    assert (code, line) == ("GL204", 11)
    assert "= 0 zeroes every gradient" in message


@pytest.mark.parametrize("hparams, clip, params", [
    ("GRAD_CLIP = 1.0\n", CLIP, ""),
    # a value computed at import time is no constant of the module
    ("import os\nGRAD_CLIP = float(os.environ['CLIP'])\n", CLIP, ""),
    # guarded, as RULES.md wants: clipping only when a threshold is set
    ("GRAD_CLIP = 0.0\n", GUARDED, ""),
    # the function's own parameter of that name, which no caller passes, hides the import
    ("GRAD_CLIP = 0.0\n", CLIP, ", GRAD_CLIP=None"),
], ids=["one", "computed", "guarded", "shadowed"])
def test_imported_thresholds_that_are_not_zero_or_are_guarded_stay_quiet(tmp_path, hparams, clip, params):
    project(tmp_path, "from hparams import GRAD_CLIP", "GRAD_CLIP", hparams, clip, params)
    assert findings(tmp_path) == []


def test_a_warm_run_sees_the_imported_module_change(tmp_path):
    project(tmp_path, "from hparams import GRAD_CLIP", "GRAD_CLIP")
    assert [c for c, _, _ in findings(tmp_path, cache=True)] == ["GL204"]
    (tmp_path / "hparams.py").write_text("GRAD_CLIP = 1.0\n")
    assert findings(tmp_path, cache=True) == []
