"""Operands that carry no gradient because of what the project passes (source/numerics_free.py,
facts/free.py): GL305 stays quiet on a value built from fresh tensors, literals and parameters that
every call in the project hands such values, through torch operations, functions of the file that
hold no parameters, callable attributes `__init__` sets to them and the class's own methods; and
flags the look-alikes where something on the way may carry gradient."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradlint.api import check_paths, check_source
from gradlint.config import Config


def _lines(src: str) -> list[int]:
    return [f.span.line for f in check_source(src, Config(select=("GL305",)))]


def _project(tmp_path: Path, files: dict[str, str]) -> set[tuple[str, int]]:
    (tmp_path / "pyproject.toml").write_text("")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = check_paths([tmp_path], Config(select=("GL305",), root=str(tmp_path)), use_cache=False, jobs=1)
    assert not result.internal_errors
    return {(Path(f.path).name, f.span.line) for f in result.findings}


# -- one file ------------------------------------------------------------------------------------

_WEIGHT = "import torch\nfrom torch import nn\n\n\ndef weight(times):\n    snr = times.exp()\n    return snr / (snr + 1)\n\n\n"


@pytest.mark.parametrize("caller", [
    "def run(n):\n    return weight(torch.zeros((n,)).float().uniform_(0, 1))\n",
    "def run(n):\n    t = torch.rand(n)\n    return weight(t * 2 - 1)\n",
    "def run(n, x):\n    return weight(torch.linspace(0, 1, n)) + weight(x.detach())\n",
])
def test_a_parameter_every_caller_hands_a_fresh_tensor_is_quiet(caller):
    assert _lines(_WEIGHT + caller) == []


@pytest.mark.parametrize("caller", [
    "",  # no caller: its users may pass anything
    "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 1)\n\n"
    "    def forward(self, x):\n        return weight(self.fc(x))\n",
    "def run(n):\n    return weight(torch.zeros(n, requires_grad=True))\n",
    "def run(n):\n    t = torch.rand(n)\n    t.requires_grad_()\n    return weight(t)\n",
    "def run(n, x):\n    return weight(torch.rand(n)) + weight(x)\n",  # one caller hands an unknown tensor
    "def run(n, w):\n    t = torch.rand(n)\n    t.add_(w)\n    return weight(t)\n",  # changed in place by an unknown
    "def run(n):\n    return weight(*[torch.rand(n)])\n",
])
def test_a_parameter_a_caller_may_hand_a_gradient_is_flagged(caller):
    assert _lines(_WEIGHT + caller) == [7]


_SCHEDULE = '''\
import math
from functools import wraps

import torch
from torch import nn


def log(t, eps=1e-20):
    return torch.log(t.clamp(min=eps))


def cosine(t, logsnr_min=-15, logsnr_max=15):
    t_min = math.atan(math.exp(-0.5 * logsnr_max))
    t_max = math.atan(math.exp(-0.5 * logsnr_min))
    return -2 * log(torch.tan(t_min + t * (t_max - t_min)))


def shifted(fn, image_d, noise_d):
    shift = 2 * math.log(noise_d / image_d)

    @wraps(fn)
    def inner(*args, **kwargs):
        nonlocal shift
        return fn(*args, **kwargs) + shift
    return inner


class Diffusion(nn.Module):
    def __init__(self, model, *, noise_schedule=cosine, noise_d=None):
        super().__init__()
        self.model = model
        self.log_snr = noise_schedule
        if noise_d is not None:
            self.log_snr = shifted(self.log_snr, 64, noise_d)

    def q_sample(self, x_start, times):
        log_snr = self.log_snr(times)
        return x_start * log_snr.sigmoid(), log_snr

    def p_losses(self, x_start, times):
        x, log_snr = self.q_sample(x_start=x_start, times=times)
        snr = log_snr.exp()
        clipped = snr.clone()
        clipped.clamp_(max=5)
        return self.model(x).mean() * (clipped / (snr + 1))

    def forward(self, img, *args, **kwargs):
        times = torch.zeros((img.shape[0],)).float().uniform_(0, 1)
        return self.p_losses(img, times, *args, **kwargs)
'''
_SITE = 45  # `clipped / (snr + 1)`


def test_a_schedule_of_sampled_times_through_methods_and_a_callable_attribute_is_quiet():
    # (denoising-diffusion-pytorch's simple_diffusion: min-SNR loss weight of sampled times)
    assert _lines(_SCHEDULE) == []


@pytest.mark.parametrize("change", [
    # the schedule is a module: its parameters may reach log_snr
    ("self.log_snr = noise_schedule\n", "self.log_snr = nn.Linear(1, 1)\n"),
    # a default schedule that reads a module-level model
    ("def cosine(t, logsnr_min=-15, logsnr_max=15):\n", "NET = nn.Linear(1, 1)\n\n\ndef cosine(t, logsnr_min=-15, logsnr_max=15):\n"
                                                         "    t = NET(t)\n"),
    # another method sets the attribute again
    ("    def q_sample(self, x_start, times):\n", "    def learn(self, net):\n        self.log_snr = net\n\n"
                                                  "    def q_sample(self, x_start, times):\n"),
    # the times carry the model's gradient
    ("times = torch.zeros((img.shape[0],)).float().uniform_(0, 1)", "times = self.model(img).sigmoid()"),
    # a trainable leaf
    ("times = torch.zeros((img.shape[0],)).float().uniform_(0, 1)",
     "times = torch.zeros((img.shape[0],), requires_grad=True)"),
])
def test_a_schedule_where_something_may_carry_gradient_is_flagged(change):
    src = _SCHEDULE.replace(*change)
    assert src != _SCHEDULE
    assert len(_lines(src)) == 1


# -- across files ----------------------------------------------------------------------------------

_MAIN = "import torch\n\nfrom diffusion import Diffusion\n\n\ndef main(unet, img):\n    return Diffusion(unet{args})(img)\n"


@pytest.mark.parametrize("args,flagged", [
    ("", False),  # the default schedule: no call passes another
    (", noise_d=32", False),  # wrapped by a function that holds no parameters
    (", noise_schedule=torch.nn.Linear(1, 1)", True),  # a learned schedule
    (", noise_schedule=unet.schedule", True),  # something unknown
])
def test_a_callable_attribute_holds_while_the_project_leaves_its_default(tmp_path, args, flagged):
    found = _project(tmp_path, {"diffusion.py": _SCHEDULE, "main.py": _MAIN.format(args=args)})
    assert found == ({("diffusion.py", _SITE)} if flagged else set())


def test_an_attribute_another_file_sets_is_flagged(tmp_path):
    main = _MAIN.format(args="") + "\n\ndef tune(model, net):\n    model.log_snr = net\n"
    assert _project(tmp_path, {"diffusion.py": _SCHEDULE, "main.py": main}) == {("diffusion.py", _SITE)}


_HELPER = "import torch\n\n\ndef weight(times):\n    snr = times.exp()\n    return snr / (snr + 1)\n"


@pytest.mark.parametrize("call,flagged", [
    ("weight(torch.rand(n))", False),
    ("weight(torch.arange(8) / 8)", False),
    ("weight(torch.arange(8) / n)", True),  # `n` is main's own parameter: a tensor with gradient, maybe
    ("weight(torch.rand(n, requires_grad=True))", True),
    ("weight(net(torch.rand(n)))", True),
])
def test_callers_in_another_file_decide_a_helper(tmp_path, call, flagged):
    main = f"import torch\n\nfrom helpers import weight\n\n\ndef main(net, n):\n    return {call}\n"
    found = _project(tmp_path, {"helpers.py": _HELPER, "main.py": main})
    assert found == ({("helpers.py", 6)} if flagged else set())


def test_a_class_of_the_same_name_read_in_another_file_is_another_class(tmp_path):
    # (denoising-diffusion-pytorch: several modules define their own `GaussianDiffusion` and test
    # `type(self) == GaussianDiffusion`; those are no reads of this class as a value)
    other = ("import torch\nfrom torch import nn\n\n\nclass Diffusion(nn.Module):\n    def __init__(self):\n"
             "        super().__init__()\n        assert type(self) == Diffusion\n")
    assert _project(tmp_path, {"diffusion.py": _SCHEDULE, "other.py": other}) == set()


_IMPURE = "import torch\nfrom torch import nn\n\nNET = nn.Linear(1, 1)\n\n\ndef sched(t):\n    return NET(t)\n\n\n"


@pytest.mark.parametrize("body", [
    # a function of the file that reads a module-level model: what it makes of a fresh tensor is not fresh
    "def weight(t):\n    snr = t.exp()\n    return snr / (snr + 1)\n\n\ndef run(n):\n    return weight(sched(torch.rand(n, 1)))\n",
    "def run(n):\n    snr = sched(torch.rand(n, 1)).exp()\n    return snr / (snr + 1)\n",
])
def test_a_fresh_tensor_through_a_function_that_reads_a_model_is_flagged(body):
    assert _lines(_IMPURE + body) == [13]


def test_a_fresh_tensor_through_a_function_of_another_module_is_flagged(tmp_path):
    helpers = "import torch\n\n\ndef sched(t):\n    return t * 2\n"
    main = ("import torch\n\nfrom helpers import sched\n\n\ndef run(n):\n    snr = sched(torch.rand(n)).exp()\n"
            "    return snr / (snr + 1)\n")
    # (what another file's function does is not read here: it may hold parameters)
    assert _project(tmp_path, {"helpers.py": helpers, "main.py": main}) == {("main.py", 8)}
