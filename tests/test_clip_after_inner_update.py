"""GL202 and a complete update of its own (a warm-up or recovery routine with its own backward and
step) that runs before a clip: the clip is placed by what comes before that routine and after it."""

from __future__ import annotations

import pytest

from gradlint.api import check_source
from gradlint.config import Config

# sbi's VI optimizer (held-out corpus): when the loss is not finite, `resolve_state` restores the
# parameters and re-runs a warm-up, a loop with its own backward and step; the clip after it sits
# between the step's backward and the step it guards.
_VI = """\
import torch
from torch import nn


class Optimizer:
    def __init__(self, q, prior, clip_value=10.0):
        self.q = q
        self.prior = prior
        self.clip_value = clip_value
        self._optimizer = torch.optim.Adam(q.parameters(), 1e-3)

    def warm_up(self, num_steps):
        for _ in range(num_steps):
            self._optimizer.zero_grad()
            samples = self.q.rsample((32,))
            loss = -torch.mean(self.prior.log_prob(samples) - self.q.log_prob(samples))
            loss.backward()
            self._optimizer.step()

    def resolve_state(self):
        self._optimizer.__init__(self.q.parameters(), 1e-3)
        self.warm_up(100)

    def step(self, x_o):
        self._optimizer.zero_grad()
        surrogate_loss = self.q.loss(x_o)
        surrogate_loss.backward()
        if not torch.isfinite(surrogate_loss):
            self.resolve_state()
CLIP_AND_STEP

def train(opt, x_o):
    for _ in range(1000):
        opt.step(x_o)
"""

_CLIP = "        nn.utils.clip_grad.clip_grad_norm_(self.q.parameters(), self.clip_value)\n"
_STEP = "        self._optimizer.step()\n"


def codes(text: str) -> list[str]:
    return [f.code for f in check_source(text, Config(select=("GL202",)))]


@pytest.mark.parametrize("inline", [True, False])
def test_a_clip_after_a_recovery_loop_guards_the_step_after_it(inline):
    src = _VI.replace("CLIP_AND_STEP", _CLIP + _STEP)
    if inline:
        # the warm-up written in the step itself, not in a called method
        src = src.replace("            self.resolve_state()\n",
                          "            for _ in range(100):\n                self._optimizer.zero_grad()\n"
                          "                self.q.loss(x_o).backward()\n                self._optimizer.step()\n")
    assert codes(src) == []


def test_a_clip_after_the_step_is_still_late_with_a_recovery_loop_before():
    assert codes(_VI.replace("CLIP_AND_STEP", _STEP + _CLIP)) == ["GL202"]


def test_a_clip_after_inner_updates_with_no_backward_of_its_own_is_still_late():
    # the clip follows only the inner loop's updates: the step after it re-applies their last
    # gradients, and the updates themselves went unclipped
    src = _VI.replace("CLIP_AND_STEP", _CLIP + _STEP).replace(
        "        surrogate_loss = self.q.loss(x_o)\n        surrogate_loss.backward()\n"
        "        if not torch.isfinite(surrogate_loss):\n            self.resolve_state()\n",
        "        self.warm_up(10)\n")
    assert codes(src) == ["GL202"]


def test_an_accumulation_loop_is_no_update_of_its_own():
    # the micro-batch loop holds backward but no step: the step after it is what the late clip missed
    src = ("import torch\n\n\ndef train(model, loader, opt):\n    for batch in loader:\n        opt.zero_grad()\n"
           "        for x, y in batch:\n            torch.nn.functional.mse_loss(model(x), y).backward()\n"
           "        opt.step()\n        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n")
    assert codes(src) == ["GL202"]
