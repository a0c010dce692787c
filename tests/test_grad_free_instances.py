"""Grad-free values through instances of the file's classes (source/numerics_free.py): a method
called on an instance (`sched.q_sample(x, t)`), an instance taken by an index from an
nn.ModuleList that holds only such instances (`self.noise_schedulers[i]`, V.holds), a class held
as a value (`klass = Scheduler`), a method that returns fresh tensors, and a parameter that is
constant on one path only (`if isinstance(t, float): t = torch.full(...)`).

Measured in torch (CPU): with two such schedulers in an nn.ModuleList (no parameters), the
log-SNR of sampled times has requires_grad False while the noised image has True; with times
computed from a layer's output it has True, and the min-SNR weight `snr.clamp(max=5) / (snr + 1)`
at log-SNR 100 has a NaN gradient (imagen-pytorch's p_losses)."""

from __future__ import annotations

import pytest

from gradlint.api import check_source
from gradlint.config import Config


def _lines(src: str) -> list[int]:
    return [f.span.line for f in check_source(src, Config(select=("GL305",)))]


_IMAGEN = '''\
import torch
from torch import nn


def beta_linear_log_snr(t):
    return -torch.log(torch.expm1(1e-4 + 10 * (t ** 2)))


class Sched(nn.Module):
    def __init__(self, *, noise_schedule, timesteps=1000):
        super().__init__()
        if noise_schedule == "linear":
            self.log_snr = beta_linear_log_snr
        else:
            raise ValueError(noise_schedule)
        self.num_timesteps = timesteps

    def sample_random_times(self, batch_size, *, device):
        return torch.zeros((batch_size,), device=device).float().uniform_(0, 1)

    def q_sample(self, x_start, t, noise=None):
        if isinstance(t, float):
            t = torch.full((x_start.shape[0],), t, device=x_start.device)
        log_snr = self.log_snr(t).type(x_start.dtype)
        alpha = torch.sqrt(torch.sigmoid(log_snr))
        sigma = torch.sqrt(torch.sigmoid(-log_snr))
        return alpha * x_start + sigma * noise, log_snr, alpha, sigma


class Imagen(nn.Module):
    def __init__(self, unets, noise_schedules=("linear",)):
        super().__init__()
        self.unets = nn.ModuleList(unets)
        klass = Sched
        self.noise_schedulers = nn.ModuleList([])
        for s in noise_schedules:
            noise_scheduler = klass(noise_schedule=s)
            self.noise_schedulers.append(noise_scheduler)

    def p_losses(self, unet, x_start, times, *, noise_scheduler, min_snr_gamma=None):
        noise = torch.randn_like(x_start)
        x_noisy, log_snr, alpha, sigma = noise_scheduler.q_sample(x_start=x_start, t=times, noise=noise)
        pred = unet(x_noisy, times)
        losses = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
        snr = log_snr.exp()
        maybe_clipped_snr = snr.clone()
        if min_snr_gamma is not None:
            maybe_clipped_snr.clamp_(max=min_snr_gamma)
        loss_weight = maybe_clipped_snr / (snr + 1)
        return (losses * loss_weight).mean()

    def forward(self, images, unet_number=1):
        unet_index = unet_number - 1
        unet = self.unets[unet_index]
        noise_scheduler = self.noise_schedulers[unet_index]
        times = noise_scheduler.sample_random_times(images.shape[0], device=images.device)
        return self.p_losses(unet, images, times, noise_scheduler=noise_scheduler)
'''


def _site(src: str) -> int:
    """The line of `maybe_clipped_snr / (snr + 1)`."""
    return src.count("\n", 0, src.index("loss_weight = maybe_clipped_snr")) + 1

_LEARNED = '''

class Learned(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 1)

    def sample_random_times(self, batch_size, *, device):
        return torch.zeros((batch_size,), device=device).float().uniform_(0, 1)

    def q_sample(self, x_start, t, noise=None):
        log_snr = self.fc(t[:, None]).squeeze(-1)
        return x_start, log_snr, log_snr, log_snr
'''


def test_schedulers_taken_from_a_module_list_by_index_are_quiet():
    # (imagen-pytorch: `self.noise_schedulers[unet_index]` handed to p_losses as a keyword)
    assert _lines(_IMAGEN) == []


@pytest.mark.parametrize("change", [
    # a single scheduler held as an attribute, its methods called through it
    ("        noise_scheduler = self.noise_schedulers[unet_index]\n",
     "        noise_scheduler = self.sched\n"),
    # the ModuleList built from a comprehension of the class
    ("        klass = Sched\n        self.noise_schedulers = nn.ModuleList([])\n        for s in noise_schedules:\n"
     "            noise_scheduler = klass(noise_schedule=s)\n            self.noise_schedulers.append(noise_scheduler)\n",
     "        self.noise_schedulers = nn.ModuleList([Sched(noise_schedule=s) for s in noise_schedules])\n"),
])
def test_other_ways_of_holding_the_schedulers_are_quiet(change):
    src = _IMAGEN.replace(*change).replace("        self.unets = nn.ModuleList(unets)\n",
                                           "        self.unets = nn.ModuleList(unets)\n"
                                           "        self.sched = Sched(noise_schedule='linear')\n")
    assert src != _IMAGEN
    assert _lines(src) == []


@pytest.mark.parametrize("change", [
    # the times carry the image's gradient (the isinstance branch's constant is on one path only)
    ("        times = noise_scheduler.sample_random_times(images.shape[0], device=images.device)\n",
     "        times = images.mean((1, 2, 3))\n"),
    # the ModuleList also holds a learned module
    ("            self.noise_schedulers.append(noise_scheduler)\n",
     "            self.noise_schedulers.append(noise_scheduler)\n        self.noise_schedulers.append(nn.Linear(1, 1))\n"),
    # an item replaced by something of no known class
    ("            self.noise_schedulers.append(noise_scheduler)\n",
     "            self.noise_schedulers.append(noise_scheduler)\n        self.noise_schedulers[0] = unets[0]\n"),
    # a list of modules of no known class
    ("        self.noise_schedulers = nn.ModuleList([])\n", "        self.noise_schedulers = nn.ModuleList(unets)\n"),
    # the schedule is a module: its parameters may reach log_snr
    ("            self.log_snr = beta_linear_log_snr\n", "            self.log_snr = nn.Linear(1, 1)\n"),
    # a subclass of the file may override q_sample
    ("class Imagen(nn.Module):\n", "class Shifted(Sched):\n    def q_sample(self, x_start, t, noise=None):\n"
                                   "        return x_start, t, t, t\n\n\nclass Imagen(nn.Module):\n"),
    # a learned scheduler among the items: its q_sample returns its layer's output
    ("        klass = Sched\n", "        klass = Learned\n"),
    ("        self.noise_schedulers = nn.ModuleList([])\n",
     "        self.noise_schedulers = nn.ModuleList([Sched(noise_schedule='linear'), Learned()])\n"),
])
def test_schedulers_where_something_may_carry_gradient_are_flagged(change):
    src = _IMAGEN.replace(*change)
    assert src != _IMAGEN
    assert _lines(src + _LEARNED) == [_site(src)]


def test_a_method_returning_fresh_tensors_is_fresh():
    src = ("import torch\nfrom torch import nn\n\n\nclass Sched(nn.Module):\n"
           "    def times(self, n, *, device):\n        return torch.zeros((n,), device=device).uniform_(0, 1)\n\n"
           "    def weight(self, x):\n        snr = self.times(x.shape[0], device=x.device).exp()\n"
           "        return snr / (snr + 1)\n")
    assert _lines(src) == []
    learned = src.replace("        return torch.zeros((n,), device=device).uniform_(0, 1)\n",
                          "        return self.fc(torch.zeros((n, 1), device=device)).squeeze(-1)\n")
    assert _lines(learned) == [11]


def test_a_part_a_method_of_another_class_cuts_stays_cut_for_the_caller():
    """Reading methods of instances of the file's classes for grad-free values must keep a return
    cut from parameters as a cut (inversecooking's `sample()` returning `torch.stack(logits,
    1).data`, whose caller's loss GL403 reports): it lost the cut once, read as fresh."""
    from tests.conftest import codes_for

    src = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\n"
           "class Decoder(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
           "        self.linear = nn.Linear(8, 8)\n\n    def forward(self, x):\n        return self.linear(x)\n\n"
           "    def sample(self, x):\n        logits = [self.forward(x) for _ in range(3)]\n"
           "        return x.argmax(-1), torch.stack(logits, 1){cut}\n\n\n"
           "class Model(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
           "        self.decoder = Decoder()\n        self.crit = nn.BCELoss()\n\n"
           "    def forward(self, x, y):\n        ids, logits = self.decoder.sample(x)\n"
           "        probs, _ = torch.max(F.softmax(logits, dim=-1), dim=1)\n        return self.crit(probs, y)\n\n\n"
           "def train(model, loader, opt):\n    for x, y in loader:\n        loss = model(x, y)\n"
           "        opt.zero_grad()\n        loss.backward()\n        opt.step()\n")
    assert codes_for(src.format(cut=".data"), select="GL403") == ["GL403"]
    assert codes_for(src.format(cut=""), select="GL403") == []
