"""GL403 through callables that run elsewhere (source/numerics_callbacks.py): a forward hook a class
registers on a submodule, whose stored output forward returns, and a lambda a helper of the file
applies to its argument. Shapes from vit_pytorch's Extractor (lucidrains/CoCa-pytorch#6); measured
in torch (2.13, CPU): with the hook's `output.clone().detach()` the hooked layer's weight.grad is
None after backward of a loss on forward's output, without it non-zero; the lambda applied by
`apply_tuple_or_single` cuts as the same call written in place does."""

from __future__ import annotations

import pytest

from tests.conftest import codes_for

HOOKED = """\
import torch
from torch import nn


def apply_tuple_or_single(fn, val):
    if isinstance(val, tuple):
        return tuple(map(fn, val))
    return fn(val)


class Extractor(nn.Module):
    def __init__(self, vit, layer_name="transformer"{params}):
        super().__init__()
        self.vit = vit
        self.layer_name = layer_name
        self.latents = None
        self.hooks = []
{init}
    def _hook(self, _, inputs, output):
{hook}

    def _register_hook(self):
        layer = getattr(self.vit, self.layer_name)
        self.hooks.append(layer.register_forward_hook(self._hook))

    def forward(self, img):
        self.latents = None
        self._register_hook()
        pred = self.vit(img)
{tail}


class ViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.transformer(x))


def train(loader):
    model = Extractor(ViT())
    opt = torch.optim.Adam(model.parameters())
    for x, y in loader:
        loss = (model(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
"""

RETURN_LATENTS = "        return apply_tuple_or_single(lambda t: t.to(img.device), self.latents)"
CUT_STORE = "        self.latents = apply_tuple_or_single(lambda t: t.clone().detach(), output)"


def hooked(hook: str = CUT_STORE, tail: str = RETURN_LATENTS, init: str = "", params: str = "") -> str:
    return HOOKED.format(hook=hook, tail=tail, init=init, params=params)


@pytest.mark.parametrize("source", [
    hooked(),
    hooked(hook="        self.latents = output.clone().detach()", tail="        return self.latents"),
    hooked(hook="        saved = inputs if self.layer_name == 'x' else output\n"
                "        self.latents = saved.detach()"),
    hooked(tail="        latents = self.latents\n        return latents * 2"),
    hooked().replace("        layer = getattr(self.vit, self.layer_name)\n"
                     "        self.hooks.append(layer.register_forward_hook(self._hook))\n",
                     "        self.vit.register_forward_hook(self._hook)\n"),
], ids=["extractor", "direct", "input or output", "computed from", "on the submodule itself"])
def test_a_hook_storing_a_cut_output_that_forward_returns_is_flagged(source: str) -> None:
    assert codes_for(source, select="GL403") == ["GL403"]


@pytest.mark.parametrize("source", [
    hooked(hook="        self.latents = output"),
    hooked(hook="        if self.detach:\n            output = apply_tuple_or_single(lambda t: t.clone().detach(), output)\n"
                "        self.latents = output", params=", detach=True", init="        self.detach = detach\n"),
    hooked(tail="        return pred"),
    hooked(tail="        return pred, self.latents"),
    hooked(init="        self.vit.eval()\n"),
    hooked().replace("class Extractor", "class TeacherExtractor").replace("Extractor(ViT())", "TeacherExtractor(ViT())"),
    hooked().replace("register_forward_hook(self._hook)", "register_forward_hook(self._hook, with_kwargs=True)"),
], ids=["no cut", "cut as a setting", "forward returns the prediction", "beside the prediction", "eval mode",
        "teacher", "hook with kwargs"])
def test_a_hook_whose_cut_forward_does_not_return_alone_is_quiet(source: str) -> None:
    assert codes_for(source, select="GL403") == []


APPLIED = """\
import torch
from torch import nn


{helper}


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return {ret}
"""

APPLY = "def apply_tuple_or_single(fn, val):\n    if isinstance(val, tuple):\n        return tuple(map(fn, val))\n    return fn(val)"
APPLY_EACH = "def each(fn, items):\n    return [fn(t) for t in items]"


@pytest.mark.parametrize("helper, ret", [
    (APPLY, "apply_tuple_or_single(lambda t: t.clone().detach(), self.fc(x))"),
    (APPLY, "apply_tuple_or_single(val=self.fc(x), fn=lambda t: t.detach())"),
    (APPLY, "apply_tuple_or_single(lambda t: t.to(x.device), self.fc(x).detach())"),
    (APPLY_EACH, "torch.stack(each(lambda t: t.data, [self.fc(x), self.fc(x + 1)]))"),
], ids=["lambda cuts", "keywords", "lambda keeps a cut", "comprehension"])
def test_a_lambda_a_helper_applies_cuts_as_written_in_place(helper: str, ret: str) -> None:
    assert codes_for(APPLIED.format(helper=helper, ret=ret), select="GL403") == ["GL403"]


@pytest.mark.parametrize("helper, ret", [
    (APPLY, "apply_tuple_or_single(lambda t: t.to(x.device), self.fc(x))"),
    ("def first(fn, val):\n    return val", "first(lambda t: t.detach(), self.fc(x))"),
    ("def maybe(fn, val):\n    if val is None:\n        return val\n    return fn(val)", "maybe(lambda t: t.detach(), self.fc(x))"),
    ("def rebound(fn, val):\n    fn = print\n    return fn(val)", "rebound(lambda t: t.detach(), self.fc(x))"),
    (APPLY, "apply_tuple_or_single(lambda t: t.detach(), x) + self.fc(x)"),
], ids=["no cut", "not applied", "not applied on every path", "rebound", "cut the input only"])
def test_a_lambda_not_applied_or_not_cutting_is_quiet(helper: str, ret: str) -> None:
    assert codes_for(APPLIED.format(helper=helper, ret=ret), select="GL403") == []
