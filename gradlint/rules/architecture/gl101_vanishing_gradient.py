"""GL101 vanishing-gradient: a chain whose predicted backward gain is below the threshold."""

from __future__ import annotations

from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.registry import Example, Option, Rule, RuleContext, positive_float
from gradlint.rules.architecture.common import gain_findings

DEEP_SIGMOID = """\
import torch.nn as nn

class MLP(nn.Module):
    def __init__(self, depth=12, width=256):
        super().__init__()
        layers = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)
"""


# A model built by a factory with a config of another file, made by a call (gradlint reads the
# config's file, never imports it).
TOWER_FACTORY = """\
import torch
import torch.nn as nn

from config import TowerConfig


class Tower(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(config.width, config.width) for _ in range(config.depth)])

    def forward(self, x):
        for layer in self.layers:
            x = torch.sigmoid(layer(x))
        return x


def make_model():
    return Tower(TowerConfig(depth=24))
"""
TOWER_CONFIG = (("config.py", """\
from dataclasses import dataclass


@dataclass
class TowerConfig:
    width: int = 256
    depth: int = 2
"""),)


ACTOR_CRITIC = """\
import torch
import torch.nn as nn


class ActorCritic(nn.Module):
    def __init__(self, obs_dim=64, act_dim=6, h=256):
        super().__init__()
        self.actor = nn.Sequential(nn.Linear(obs_dim, h), nn.Tanh(), nn.Linear(h, act_dim))
        critic = []
        for _ in range(12):
            critic += [nn.Linear(h if critic else obs_dim, h), nn.Sigmoid()]
        self.critic = nn.Sequential(*critic, nn.Linear(h, 1))

    def forward(self, obs):
        return self.actor(obs), self.critic(obs)
"""

DISTILL_BASE = """\
import torch
import torch.nn as nn


class Distill(nn.Module):
    def __init__(self, d=256):
        super().__init__()
        self.student = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 10))
        layers = []
        for _ in range(12):
            layers += [nn.Linear(d, d), nn.Sigmoid()]
        self.teacher = nn.Sequential(*layers, nn.Linear(d, 10))

    def forward(self, x):
        x = x / 255.0
        s = self.student(x)
        with torch.no_grad():
            t = self.teacher(x)
        return s, t
"""


class VanishingGradient(Rule):
    """
    ## What it does
    Predicts, from the layers, activations and initialisation written in the source (or the real
    weights of an ONNX model), how much the gradient shrinks from the last layer of a chain to its
    first, and reports chains whose predicted gain ‖∂L/∂z_first‖ / ‖∂L/∂z_last‖ is below
    `vanishing-threshold`. A chain is a run of Linear/Conv layers with no normalisation and no
    residual connection between them; each layer multiplies the squared gradient norm by
    χ = fan_in·σ²·E[φ'(z)²] (see ARCHITECTURE.md), which for PyTorch's default init before a sigmoid is
    about 0.02. Gradients are taken in train mode, where each dropout between two layers multiplies
    χ (and the next layer's input variance) by 1/(1-p): eight `Linear(1024), ReLU, Dropout(0.5)`
    layers under PyTorch's default init have χ ≈ 1/3, not 1/6 (measured gain 1.2e-2, not 7.7e-4).
    A dropout whose `p` cannot be read ends the chain.

    ## Why is this bad?
    The first layers of such a chain receive gradients many orders of magnitude smaller than the
    last: they barely train, and the loss plateaus after hours of GPU time. Twelve
    `Linear(256) + Sigmoid` layers with PyTorch's default initialisation have a measured gain of
    4e-10.

    ## Example
    ```python
    layers = []
    for _ in range(12):
        layers += [nn.Linear(256, 256), nn.Sigmoid()]
    self.body = nn.Sequential(*layers)
    ```

    ## Use instead
    Use a ReLU-family activation with He initialisation, or break the chain with normalisation or
    residual connections:
    ```python
    for _ in range(12):
        lin = nn.Linear(256, 256)
        nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        layers += [lin, nn.ReLU()]
    ```

    ## Options
    - `vanishing-threshold` (default 1e-3): report chains whose predicted gain is below this.

    ## References
    - Glorot & Bengio, *Understanding the difficulty of training deep feedforward neural networks* (2010).
    - Schoenholz et al., *Deep Information Propagation* (2017): the χ criterion.
    - `bench/measure_chains.py` measures the predictions in torch (ARCHITECTURE.md's table).
    """

    code = "GL101"
    probe_measure = "vanishing_gain"
    name = "vanishing-gradient"
    severity = Severity.WARNING
    summary = "Predicted gradient gain across a chain of layers is vanishingly small"
    inputs = frozenset({"python", "onnx"})
    options = {"vanishing-threshold": Option(1e-3, positive_float, "report chains with predicted gain below this")}
    invalid = [
        Example("import torch\nimport torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.layers = nn.ModuleList([nn.Linear(64, 64) for _ in range(20)])\n"
                "        self.head = nn.Linear(64, 10)\n"
                "        self.register_buffer(\"mean\", torch.zeros(64))\n\n    def forward(self, x):\n"
                "        for lin in self.layers:\n            x = torch.sigmoid(lin(x))\n"
                "        with torch.no_grad():\n            self.mean.lerp_(x.mean(0), 0.01)\n"
                "            feats = x\n        return self.head(feats)\n",
                note="a no_grad block that updates a statistic and only names x: x keeps its gradient, the 21 sigmoid layers still vanish"),
        Example(ACTOR_CRITIC, note="the second output of a forward: a critic of its own beside the actor"),
        Example(ACTOR_CRITIC + "\n    @torch.no_grad()\n    def act(self, obs):\n        logits, value = self(obs)\n"
                "        return torch.distributions.Categorical(logits=logits).sample(), value\n",
                note="the critic trains in forward: a method that acts without gradient does not freeze it"),
        Example(ACTOR_CRITIC + "\n    def set_critic_grad(self, flag):\n        for p in self.critic.parameters():\n"
                "            p.requires_grad = flag\n",
                note="a method that may switch the critic's gradients off or on: not a frozen module"),
        Example(ACTOR_CRITIC + "\n    def train(self, mode=True):\n        super().train(mode)\n"
                "        self.critic.train(False)  # do not freeze: BatchNorm statistics only\n        return self\n",
                note="`.train(False)` puts a module in eval mode; its parameters still train"),
        Example(ACTOR_CRITIC.replace("        return self.actor(obs), self.critic(obs)\n",
                                     "        with torch.no_grad():\n            feats = obs * 1.0\n"
                                     "        return self.actor(obs), self.critic(feats)\n"),
                note="a critic on features computed without gradient still trains its own layers"),
        Example(DEEP_SIGMOID),
        Example("""\
import torch.nn as nn
from torch.nn import ReLU

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(512, 512) for _ in range(16)])
        self.act = ReLU()

    def forward(self, x):
        for layer in self.layers:
            x = self.act(layer(x))
        return x
""", note="16 x Linear(512) + ReLU with PyTorch's default init: 1.6e-6 measured"),
        Example(TOWER_FACTORY, files=TOWER_CONFIG,
                note="24 sigmoid layers: the depth a factory's config call gives (config.py's dataclass)"),
    ]
    valid = [
        Example("import torch\nimport torch.nn as nn\n\n\nclass Probe(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.backbone = nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.Sigmoid()) for _ in range(20)])\n"
                "        self.head = nn.Linear(64, 10)\n\n    def forward(self, x):\n        with torch.no_grad():\n"
                "            f = self.backbone(x)\n        return self.head(f)\n",
                note="a frozen backbone run under no_grad before a trained head: its layers get no gradient, "
                     "they do not 'barely train'"),
        Example("import torch\nimport torch.nn as nn\n\n\nclass Features(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.body = nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.Sigmoid()) for _ in range(20)])\n\n"
                "    @torch.no_grad()\n    def forward(self, x):\n        return self.body(x)\n",
                note="a forward decorated with no_grad"),
        Example("import torch\nimport torch.nn as nn\n\n\nclass Distill(nn.Module):\n    def __init__(self, d=256):\n"
                "        super().__init__()\n        self.student = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 10))\n"
                "        layers = []\n        for _ in range(12):\n            layers += [nn.Linear(d, d), nn.Sigmoid()]\n"
                "        self.teacher = nn.Sequential(*layers, nn.Linear(d, 10))\n\n    def forward(self, x):\n"
                "        s = self.student(x)\n        with torch.no_grad():\n            t = self.teacher(x)\n"
                "        return s, t\n",
                note="a second output from another model run beside this one (a frozen teacher): not its path"),
        Example(DISTILL_BASE.replace("class Distill(", "class Wrapper(") + "\n\nclass Distill(Wrapper):\n    pass\n",
                note="a teacher run under no_grad after a step both models share (`x / 255.0`), in a base class"),
        Example(DISTILL_BASE.replace("        with torch.no_grad():\n            t = self.teacher(x)\n",
                                     "        t = self.teacher(x)\n")
                .replace("        self.teacher = nn.Sequential(*layers, nn.Linear(d, 10))\n",
                         "        self.teacher = nn.Sequential(*layers, nn.Linear(d, 10))\n"
                         "        for p in self.teacher.parameters():\n            p.requires_grad = False\n"),
                note="a teacher whose parameters the class freezes"),
        Example(DISTILL_BASE.replace("        with torch.no_grad():\n            t = self.teacher(x)\n",
                                     "        t = self.teacher(x)\n")
                .replace("        self.teacher = nn.Sequential(*layers, nn.Linear(d, 10))\n",
                         "        self.teacher = nn.Sequential(*layers, nn.Linear(d, 10))\n"
                         "        for name, p in self.teacher.named_parameters():\n            # the teacher is fixed\n"
                         "            p.requires_grad = False\n"),
                note="a teacher frozen through named_parameters()"),
        Example(DISTILL_BASE.replace("            t = self.teacher(x)\n        return s, t\n",
                                     "            out = {'logits': self.teacher(x)}\n        return s, out['logits']\n"),
                note="a teacher's output kept in a dict under no_grad"),
        Example(TOWER_FACTORY.replace("depth=24", "depth=2"), files=TOWER_CONFIG,
                note="the same factory with a shallow config"),
        Example(DEEP_SIGMOID.replace("nn.Linear(width, width), nn.Sigmoid()",
                                     "nn.Linear(width, width), nn.LayerNorm(width), nn.Sigmoid()"),
                note="a norm after every layer breaks the chain"),
        Example("""\
import torch.nn as nn

class Net(nn.Module):
    def __init__(self, d=256, n=12):
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(d, d) for _ in range(n))

    def forward(self, x):
        for fc in self.fcs:
            x = x + fc(x).sigmoid()
        return x
""", note="residual connections"),
        Example("""\
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.fc2 = nn.Linear(64, 1)

    def forward(self, x):
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(x))))
""", note="a final output sigmoid is not part of any chain"),
        Example("""\
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(128, 128, num_layers=4)
        self.out = nn.Linear(128, 10)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.out(y)
""", note="LSTM gate internals are not a chain"),
    ]

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        threshold = ctx.options["vanishing-threshold"]
        yield from gain_findings(ctx, threshold, lambda chain: chain.gain < threshold,
                                 lambda a, b: a.gain < b.gain, "the first layers barely train")
