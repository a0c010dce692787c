"""GL403's reading of what a class does with a submodule outside forward (source/module_uses.py):
another method, __init__, or code of the file outside the class may run it (then what forward cuts
trains there: quiet), hand its parameters to an optimizer, or freeze it. Each form from a helper's
read of the rule, both ways; gradients of each were measured in torch (adjacency grads None in the
flagged forms, non-zero in the quiet ones)."""

from __future__ import annotations

import pytest

from tests.conftest import codes_for

AGCN = """\
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class GCN(nn.Module):
    def __init__(self, d, n):
        super().__init__()
        self.adjacency = nn.Linear(d, d)
        self.gc = nn.Linear(d, d)
{init}
    def forward(self, inp):
        adj = self.adjacency(inp).detach()
        return torch.matmul(adj, self.gc(inp))

    def get_config_optim(self, lr):
        return [
            {{'params': self.adjacency.parameters(), 'lr': lr}},
            {{'params': self.gc.parameters(), 'lr': lr}},
        ]
{more}"""


def agcn(init: str = "", more: str = "") -> str:
    return AGCN.format(init=init, more=more)


@pytest.mark.parametrize("source", [
    agcn(more="\n    def reset(self):\n        self.adjacency.flatten_parameters()\n        self.adjacency.init_weights()\n"),
    agcn(init="        self.adjacency.weight.data.normal_(0, 0.01)\n        self.adjacency.apply(init)\n"),
    agcn(more='\n    def describe(self):\n        """Calls self.adjacency.forward(x) in a docstring."""\n'
              "        # self.adjacency(x) in a comment\n        return 1\n"),
    agcn(init="        with torch.no_grad():\n            self.out = self.adjacency(torch.zeros(1, d)).shape[-1]\n"),
    agcn(more="\n    @torch.no_grad()\n    def predict(self, inp):\n        return self.adjacency(inp)\n"),
    agcn(more="\n    def stats(self, inp):\n        with torch.no_grad():\n            return self.adjacency(inp).mean()\n"),
    agcn().replace("get_config_optim", "optimizer_groups").replace(
        "self.adjacency.parameters()", "[p for n, p in self.adjacency.named_parameters()]"),
    agcn(init="        self.optimizer = torch.optim.Adam(\n"
              "            list(self.adjacency.parameters()) + list(self.gc.parameters()), lr=1e-3)\n"
         ).replace("    def get_config_optim", "    def _unused").replace("'params'", "'x'"),
    agcn(init="        params = list(self.adjacency.parameters())\n        params += list(self.gc.parameters())\n"
              "        self.opt = torch.optim.SGD(params, lr=0.1)\n"
         ).replace("    def get_config_optim", "    def _unused").replace("'params'", "'x'"),
    agcn().replace("self.adjacency", "self.hidden"),
    agcn().replace("class GCN", "class StateGCN"),
    agcn().replace("class GCN", "class C"),
], ids=["non-running methods", "init-weights", "docstring", "shape run", "no-grad method", "no-grad block",
        "named_parameters", "optimizer in __init__", "params list", "named hidden", "class State", "class C"])
def test_flagged(source: str) -> None:
    assert codes_for(source, select="GL403") == ["GL403"]


@pytest.mark.parametrize("source", [
    agcn(more="\n    def pretrain_loss(self, inp):\n        return checkpoint(self.adjacency, inp).pow(2).mean()\n"),
    agcn(more="\n    def pretrain_loss(self, inp):\n        net = self.adjacency\n        return net(inp).mean()\n"),
    agcn(more="\n    def pretrain_loss(self, inp):\n        return self.adjacency.encode(inp).mean()\n"),
    agcn(init="        self.decoder = nn.Linear(d, d)\n        self.auto = nn.Sequential(self.adjacency, self.decoder)\n",
         more="\n    def recon(self, inp):\n        return self.auto(inp)\n"),
    agcn(more="\n\nmodel = GCN(4, 2)\naux = model.adjacency(torch.randn(4, 4)).pow(2).mean()\n"),
    agcn(init="        set_requires_grad(self.adjacency, False)\n"),
    agcn(init="        for name, p in self.adjacency.named_parameters():\n            p.requires_grad = False\n"),
    agcn().replace("self.adjacency", "self.ema_adjacency"),
], ids=["checkpoint", "alias", "other method", "container", "outside the class", "set_requires_grad",
        "named_parameters freeze", "named ema"])
def test_quiet(source: str) -> None:
    assert codes_for(source, select="GL403") == []


NET = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.act = nn.ReLU()
        self.encoder = nn.Linear(8, 4)
        self.decoder = nn.Linear(4, 8)
        self.body = nn.Sequential(self.encoder, self.decoder)

    def forward(self, x):
{forward}
{more}"""


def test_output_cut_not_hidden_by_a_parameter_free_module_or_a_no_grad_method() -> None:
    forward = "        return self.act(self.fc(x)).detach()"
    shared_act = NET.format(forward=forward, more="    def features(self, x):\n        return self.act(x)\n")
    predict = NET.format(forward=forward, more="    @torch.no_grad()\n    def predict(self, x):\n"
                                              "        return self.fc(x).argmax(-1)\n")
    assert codes_for(shared_act, select="GL403") == ["GL403"]
    assert codes_for(predict, select="GL403") == ["GL403"]


def test_output_cut_quiet_when_another_method_trains_the_members_of_what_forward_runs() -> None:
    source = NET.format(forward="        with torch.no_grad():\n            return self.body(x)",
                        more="    def training_step(self, x):\n        return self.decoder(self.encoder(x))\n")
    assert codes_for(source, select="GL403") == []


LINEAR = "        self.adjacency = nn.Linear(d, d)\n"
FORWARD_CUT = "        adj = self.adjacency(inp).detach()\n"


@pytest.mark.parametrize("source", [
    agcn().replace(LINEAR, "        self.adjacency: nn.Linear = nn.Linear(d, d)\n"),
    agcn().replace(LINEAR + "        self.gc = nn.Linear(d, d)\n",
                   "        self.adjacency, self.gc = nn.Linear(d, d), nn.Linear(d, d)\n"),
    agcn(init="        for layer in (self.adjacency, self.gc):\n            nn.init.xavier_uniform_(layer.weight)\n"),
    agcn(init="        print(self.adjacency)\n        freeze_bn(self.adjacency)\n"),
    agcn(more="\n    def reset_parameters(self):\n        nn.init.xavier_uniform_(self.adjacency.weight)\n"
              "        nn.init.zeros_(self.adjacency.bias)\n"),
    agcn(more="\n    def extra_repr(self):\n        return f'adj={self.adjacency.in_features}'\n"),
    agcn().replace(LINEAR, "        self.adjacency = Adj(d, freeze=cfg.freeze)\n"),
    agcn(init="        self.teacher = nn.Linear(d, d)\n        for p in self.adjacency.parameters():\n"
              "            p.requires_grad = True\n        for p in self.teacher.parameters():\n"
              "            p.requires_grad = False\n"),
    agcn().replace("import torch\n", "from torch import *\nimport torch\n", 1).replace(
        FORWARD_CUT, "        with no_grad():\n            adj = self.adjacency(inp)\n"),
    agcn().replace("import torch\n", "import torch\nfrom torch.autograd import inference_mode\n", 1).replace(
        FORWARD_CUT, "        with inference_mode():\n            adj = self.adjacency(inp)\n"),
    agcn(more="\n\n@torch.no_grad()\ndef evaluate(model, x):\n    return model.adjacency(x)\n"),
], ids=["annotated", "tuple target", "init loop", "print, freeze_bn", "reset_parameters", "extra_repr",
        "freeze setting", "two loops", "star import", "autograd inference_mode", "no_grad outside"])
def test_flagged_second_read(source: str) -> None:
    assert codes_for(source, select="GL403") == ["GL403"]


def test_one_line_optimizer_method() -> None:
    source = agcn().split("    def get_config_optim")[0] + (
        "    def configure_optimizers(self): return torch.optim.Adam(self.adjacency.parameters())\n")
    assert codes_for(source, select="GL403") == ["GL403"]


@pytest.mark.parametrize("source", [
    agcn(more="\n    @torch.no_grad()\n    def adapt(self, inp):\n        with torch.enable_grad():\n"
              "            loss = self.adjacency(inp).pow(2).mean()\n            loss.backward()\n"),
    agcn(more="\n\nmodel = GCN(4, 2)\naux = checkpoint(model.adjacency, torch.randn(4, 4)).pow(2).mean()\n"),
    agcn().replace("class GCN(nn.Module):", "class PretrainNet(nn.Module):\n    def pretrain_loss(self, inp):\n"
                   "        return self.adjacency(inp).pow(2).mean()\n\n\nclass GCN(PretrainNet):"),
    agcn().replace("class GCN(nn.Module):", "class FrozenNet(nn.Module):\n    def setup(self):\n"
                   "        self.adjacency.requires_grad_(False)\n\n\nclass GCN(FrozenNet):"),
], ids=["enable_grad in a no_grad method", "checkpoint outside", "base class runs", "base class freezes"])
def test_quiet_second_read(source: str) -> None:
    assert codes_for(source, select="GL403") == []


def test_output_cut_not_hidden_by_an_initialiser() -> None:
    source = NET.format(forward="        return self.fc(x).detach()",
                        more="    def reset_parameters(self):\n        nn.init.zeros_(self.fc.bias)\n")
    assert codes_for(source, select="GL403") == ["GL403"]


@pytest.mark.parametrize("source", [
    agcn(init="        self.parts = [self.adjacency, self.gc]\n",
         more="\n    def aux_loss(self, inp):\n        for m in self.parts:\n            inp = m(inp)\n        return inp\n"),
    agcn(init="        self.fast_adj = torch.compile(self.adjacency, backend='eager')\n",
         more="\n    def aux_loss(self, inp):\n        return self.fast_adj(inp).mean()\n"),
    agcn(init="        self.fn = self.adjacency.forward\n",
         more="\n    def aux_loss(self, inp):\n        return self.fn(inp).mean()\n"),
    agcn(more="\n    def aux_loss(self, inp):\n        return getattr(self.adjacency, 'forward')(inp).mean()\n"),
    agcn(more="\n    def aux_loss(self, inp):\n        return self.adjacency.float()(inp).mean()\n"),
    agcn(more="\n    def get_representation(self, inp):\n        return self.adjacency(inp)\n"),
    agcn(more="\n    def initial_guess(self, inp):\n        return self.adjacency(inp)\n"),
    agcn().replace("class GCN(nn.Module):", "class BaseNet(nn.Module):\n    def aux_loss(self, inp):\n"
                   "        return self.adjacency(inp).mean()\n\n\nclass GCN(BaseNet):").replace(
        "    def get_config_optim", "    def aux_loss(self, inp):\n        return super().aux_loss(inp) * 0.5\n\n"
        "    def get_config_optim"),
], ids=["list display", "torch.compile", "bound forward", "getattr", "float()(x)", "get_representation",
        "initial_guess", "override calling super"])
def test_quiet_ninth_read(source: str) -> None:
    """Each trains the adjacency (measured: its gradient is non-zero)."""
    assert codes_for(source, select="GL403") == []


@pytest.mark.parametrize("source", [
    agcn(more="\n\nclass Config:\n    adjacency = True\n\n\ncfg = Config()\nif cfg.adjacency:\n    pass\n"),
    agcn().replace(FORWARD_CUT, "        with torch.inference_mode(), torch.enable_grad():\n"
                                "            adj = self.adjacency(inp)\n"),
    agcn(more="\n    @torch.inference_mode()\n    def adapt(self, inp):\n        with torch.enable_grad():\n"
              "            return self.adjacency(inp).mean()\n"),
    agcn(more="\n    def aux_loss(self, inp):\n        return self.adjacency.weight.shape[0]\n"),
    agcn().replace("class GCN(nn.Module):", "class BaseNet(nn.Module):\n    def aux_loss(self, inp):\n"
                   "        return self.adjacency(inp).mean()\n\n\nclass GCN(BaseNet):").replace(
        "    def get_config_optim", "    def aux_loss(self, inp):\n        return self.gc(inp).mean()\n\n"
        "    def get_config_optim"),
], ids=["a setting named so", "enable_grad after inference_mode", "enable_grad in an inference_mode method",
        "shape of its weight", "override without super"])
def test_flagged_ninth_read(source: str) -> None:
    """Under inference_mode no enable_grad() records (measured: requires_grad False)."""
    assert codes_for(source, select="GL403") == ["GL403"]


# --- the output-cut variant: what forward runs under the cut -------------------------------------

_BEAMFORMER = """\
import torch
from dsp import {cls}


class Beamformer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stft = {cls}()

    def forward(self, x):
        with torch.no_grad():
            y = self.stft(x)
        return y
"""

_DSP = """\
import torch


class STFT(torch.nn.Module):
    def __init__(self, n_fft=400):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, x):
        return torch.stft(x, self.n_fft, window=self.window, return_complex=True).abs()


class Learned(torch.nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.proj = torch.nn.Linear(d, d)

    def forward(self, x):
        return self.proj(x)
"""


def _cut_codes(tmp_path, cls: str) -> list[str]:
    from gradlint.api import check_paths
    from gradlint.config import Config

    (tmp_path / "dsp.py").write_text(_DSP)
    (tmp_path / "beam.py").write_text(_BEAMFORMER.format(cls=cls))
    found = check_paths([tmp_path / "beam.py"], Config(root=str(tmp_path), select=("GL403",)), use_cache=False, jobs=1)
    return [f.code for f in found.findings]


def test_output_cut_of_parameter_free_modules_of_another_file_is_quiet(tmp_path) -> None:
    # speechbrain's DelaySum_Beamformer: STFT, covariance, GCC-PHAT under no_grad, none with a weight
    assert _cut_codes(tmp_path, "STFT") == []


def test_output_cut_of_a_module_of_another_file_with_weights_is_flagged(tmp_path) -> None:
    assert _cut_codes(tmp_path, "Learned") == ["GL403"]


def test_output_cut_of_a_module_nothing_is_known_of_is_flagged(tmp_path) -> None:
    assert _cut_codes(tmp_path, "Missing") == ["GL403"]


@pytest.mark.parametrize("init", [
    "        self.model.eval()\n",
    "        self.model = models.inception_v3(weights=models.Inception_V3_Weights.DEFAULT)\n",
    "        self.model = models.inception_v3(pretrained=True)\n",
])
def test_output_cut_of_an_inference_only_wrapper_is_quiet(init: str) -> None:
    # ignite's FID Inception: a pretrained model in eval mode, forward decorated with no_grad
    src = ("import torch\nfrom torchvision import models\n\n\nclass InceptionModel(torch.nn.Module):\n"
           "    def __init__(self):\n        super().__init__()\n        self.model = models.inception_v3()\n"
           + init + "\n    @torch.no_grad()\n    def forward(self, data):\n        return self.model(data)\n")
    assert codes_for(src, select="GL403") == []
    assert codes_for(src.replace(init, ""), select="GL403") == ["GL403"]


@pytest.mark.parametrize("name", ["g1", "g2", "g5"])
def test_output_cut_still_flagged_beside_a_frozen_part_or_a_raw_parameter(name: str) -> None:
    # a second read's reproducers: a trainable head beside a pretrained backbone (g1), one
    # submodule put in eval mode beside trained ones (g2), a raw nn.Parameter read under the cut
    # beside a parameter-free activation (g5); measured in torch: the head's and the weight's
    # .grad stay None
    sources = {
        "g1": ("import torch\nfrom torch import nn\nimport torchvision\n\n\nclass Classifier(nn.Module):\n"
               "    def __init__(self, n):\n        super().__init__()\n"
               "        self.backbone = torchvision.models.resnet18(pretrained=True)\n"
               "        self.head = nn.Linear(512, n)\n\n    def forward(self, x):\n        with torch.no_grad():\n"
               "            out = self.head(self.backbone(x))\n        return out\n"),
        "g2": ("import torch\nfrom torch import nn\n\n\nclass Tagger(nn.Module):\n    def __init__(self, n):\n"
               "        super().__init__()\n        self.encoder = nn.LSTM(16, 32, batch_first=True)\n"
               "        self.norm = nn.BatchNorm1d(32)\n        self.norm.eval()\n        self.head = nn.Linear(32, n)\n\n"
               "    def forward(self, x):\n        with torch.no_grad():\n            h, _ = self.encoder(x)\n"
               "            out = self.head(self.norm(h[:, -1]))\n        return out\n"),
        "g5": ("import torch\nfrom torch import nn\nimport torch.nn.functional as F\n\n\nclass Net(nn.Module):\n"
               "    def __init__(self):\n        super().__init__()\n        self.weight = nn.Parameter(torch.randn(4, 16))\n"
               "        self.act = nn.ReLU()\n\n    def forward(self, x):\n        with torch.no_grad():\n"
               "            y = self.act(F.linear(x, self.weight))\n        return y\n"),
    }
    assert codes_for(sources[name], select="GL403") == ["GL403"]


# vit_pytorch's Extractor (lucidrains/CoCa-pytorch#6): methods that find a layer of the wrapped
# network to hook it, or hand the network back, run nothing of it; forward's cut stays reported.
# Measured in torch: with `return pred.clone().detach()` every ViT parameter's .grad stays None
# whether or not a hook is registered on a layer of it.
_EXTRACTOR = """\
import torch
from torch import nn


class Extractor(nn.Module):
    def __init__(self, vit, layer_name="transformer"):
        super().__init__()
        self.vit = vit
        self.layer_name = layer_name
        self.hooks = []

    def _hook(self, _, inputs, output):
        self.latents = output

{methods}
    def forward(self, img):
        pred = self.vit(img)
        return pred.clone().detach()


def build():
    return Extractor(nn.Linear(8, 8))
{more}"""

_FIND_LAYER = {
    "getattr": ("    def _register_hook(self):\n        assert hasattr(self.vit, self.layer_name)\n"
                "        layer = getattr(self.vit, self.layer_name)\n"
                "        handle = layer.register_forward_hook(self._hook)\n        self.hooks.append(handle)\n"),
    "getattr inline": ("    def _register_hook(self):\n"
                       "        self.hooks.append(getattr(self.vit, self.layer_name).register_forward_hook(self._hook))\n"),
    "attribute": ("    def _register_hook(self):\n        layer = self.vit.transformer\n"
                  "        layer.register_forward_hook(self._hook)\n"),
    "getter": "    def eject(self):\n        for hook in self.hooks:\n            hook.remove()\n        return self.vit\n",
}


def extractor(methods: str, more: str = "") -> str:
    return _EXTRACTOR.format(methods=methods, more=more)


@pytest.mark.parametrize("methods", list(_FIND_LAYER.values()), ids=list(_FIND_LAYER))
def test_hooking_a_layer_or_handing_the_module_back_runs_nothing(methods: str) -> None:
    assert codes_for(extractor(methods), select="GL403") == ["GL403"]


@pytest.mark.parametrize("methods, more", [
    ("    def features(self, img):\n        layer = getattr(self.vit, self.layer_name)\n        return layer(img)\n", ""),
    ("    def features(self, img):\n        layer = self.vit.transformer\n        layer.register_forward_hook(self._hook)\n"
     "        return layer(img)\n", ""),
    (_FIND_LAYER["getter"], "\n\ndef finetune(model, x):\n    return model.eject()(x).pow(2).mean()\n"),
    ("    def backbone(self):\n        return self.vit\n\n    def loss(self, img):\n"
     "        return self.backbone()(img).mean()\n", ""),
], ids=["layer run", "layer hooked and run", "getter called", "getter called inside"])
def test_a_layer_run_or_a_getter_called_may_run_it(methods: str, more: str) -> None:
    assert codes_for(extractor(methods, more), select="GL403") == []


def test_a_weight_read_into_a_local_and_converted_may_run_the_module() -> None:
    # (only registering a hook runs nothing: `w.float()` of a local bound to a weight is used)
    src = agcn(more="\n    def aux(self, inp):\n        w = self.adjacency.weight\n"
                    "        return torch.nn.functional.linear(inp, w.float()).mean()\n")
    assert codes_for(src, select="GL403") == []
