"""A clip after `scaler.step(opt)`: GL202's (the update used unclipped gradients), not GL203's
(the step has unscaled the gradients in place), and GL202's fix moves it before the step with
the `scaler.unscale_(opt)` it then needs, in one fix."""

from __future__ import annotations

import pytest

from gradlint.api import check_source
from gradlint.config import Config
from gradlint.fix import fix_text
from tests.conftest import FIXTURES

FIX_DIR = FIXTURES / "training" / "fix"

_LOOP = """\
import torch

scaler = torch.amp.GradScaler("cuda"{enabled})
for x in loader:
    optimizer.zero_grad()
    scaler.scale(model(x).mean()).backward()
{before}    scaler.step(optimizer)
{between}    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.update()
"""


def _findings(text: str, select: str):
    return check_source(text, Config(select=(select,)), path="train.py")


def _fixed_once(text: str, code: str) -> str:
    """The text after applying only the first round of `code`'s fixes (no recheck)."""
    findings = [f for f in _findings(text, code) if f.code == code]
    assert len(findings) == 1 and findings[0].fix is not None, findings
    new, applied, problems = fix_text(text, findings, unsafe=False)
    assert applied == 1 and not problems
    return new


@pytest.mark.torch
def test_scaled_gradients_are_measured_unscaled_after_the_step():
    import torch
    torch.manual_seed(0)
    m = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(m.parameters(), lr=0.0)
    scaler = torch.amp.GradScaler("cpu")
    loss = m(torch.randn(8, 4)).pow(2).mean()
    (true,) = torch.autograd.grad(loss, [m.weight], retain_graph=True)
    scaler.scale(loss).backward()
    assert torch.allclose(m.weight.grad, true * scaler.get_scale())
    scaler.step(opt)  # no unscale_ before: step unscales the gradients in place
    assert torch.allclose(m.weight.grad, true)


def test_gl203_is_quiet_after_the_step_and_gl202_owns_the_line():
    text = _LOOP.format(enabled="", before="", between="")
    assert [f.code for f in _findings(text, "GL203")] == []
    assert [(f.code, f.span.line) for f in _findings(text, "GL202")] == [("GL202", 8)]
    # the look-alike: the clip between backward and step, no unscale_
    before = text.replace("    scaler.step(optimizer)\n    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n",
                          "    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n    scaler.step(optimizer)\n")
    assert before != text
    assert [(f.code, f.span.line) for f in _findings(before, "GL203")] == [("GL203", 7)]


def test_gl202_fix_alone_inserts_the_unscale():
    case = (FIX_DIR / "move_then_unscale.in.py").read_text()
    fixed = _fixed_once(case, "GL202")
    assert fixed == (FIX_DIR / "move_then_unscale.out.py").read_text()
    assert _findings(fixed, "GL203") == [] and _findings(fixed, "GL202") == []


def test_gl202_fix_with_an_unscale_before_the_step_adds_none():
    text = _LOOP.format(enabled="", before="    scaler.unscale_(optimizer)\n", between="")
    fixed = _fixed_once(text, "GL202")
    assert fixed.count("unscale_") == 1
    assert fixed.index("unscale_") < fixed.index("clip_grad_norm_") < fixed.index("scaler.step")
    assert _findings(fixed, "GL203") == []


def test_gl202_fix_for_a_disabled_scaler_adds_none():
    text = _LOOP.format(enabled=", enabled=False", before="", between="")
    fixed = _fixed_once(text, "GL202")
    assert "unscale_" not in fixed and fixed.index("clip_grad_norm_") < fixed.index("scaler.step")


def test_no_gl202_fix_with_an_unscale_between_the_step_and_the_clip():
    text = _LOOP.format(enabled="", before="", between="    scaler.unscale_(optimizer)\n")
    found = [f for f in _findings(text, "GL202") if f.code == "GL202"]
    assert len(found) == 1 and found[0].fix is None
