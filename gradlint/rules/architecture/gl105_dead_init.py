"""GL105 dead-init: initialisations that make hidden layers' gradients exactly zero."""

from __future__ import annotations

import re
from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.model.init import is_dead
from gradlint.model.ir import Activation, Opaque, Param, Passthrough, walk
from gradlint.registry import Example, Rule, RuleContext
from gradlint.rules.architecture.common import RELU_FAMILY, location, networks, networks_text

# Zero-initialised on purpose: output heads and projections (a zero residual branch starts as the
# identity), gates, adaLN-Zero modulation, zero_init_residual, ControlNet zero-convs, LoRA's B,
# ReZero/Fixup scales.
_GUARDED = re.compile(
    r"(head|out|proj|gate|adaln|modulation|zero|lora|control|final|last|classifier|logit|skip|"
    r"rezero|fixup|alpha|scale|residual|readout|policy|value)", re.I)
_HIDDEN_OPS = ("linear", "conv1d", "conv2d", "conv3d", "convtranspose1d", "convtranspose2d", "convtranspose3d")

ZERO_LOOP = """\
import torch.nn as nn

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 64)
        self.fc3 = nn.Linear(64, 10)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.fc3(self.fc2(self.fc1(x).relu()).relu())
"""


def _guarded(p: Param) -> bool:
    return bool(_GUARDED.search(p.attr or "")) or bool(_GUARDED.search((p.name or "").rsplit(".", 1)[-1]))


def _zero(spec) -> bool:
    return spec is not None and spec.scheme == "zeros"


_FILTERS = '''\
import torch.nn as nn


class Filters(nn.Module):
    def __init__(self, c=3):
        super().__init__()
        self.blur = nn.Conv2d(c, c, 3, padding=1, groups={groups}, bias=False)
        self.box = nn.Conv2d(c, c, 3, padding=1, groups={groups}, bias=False)
        nn.init.constant_(self.blur.weight, 1.0 / 9)
        nn.init.constant_(self.box.weight, 1.0 / 9)
        self.{frozen}.requires_grad_(False)

    def forward(self, x):
        return self.box(self.blur(x))
'''


class DeadInit(Rule):
    """
    ## What it does
    Reports initialisations that leave hidden layers with exactly zero gradient: every hidden
    Linear/Conv weight zeroed by an init loop; a zero weight with no bias (or a zero bias) feeding
    a ReLU-family activation; two constant-initialised layers in a row, the second zero or the
    first with no bias or a constant one (a random bias, torch's default, makes the first's units
    differ, and training breaks the symmetry; so does a depthwise first layer, whose units read a
    channel each), unless the first is frozen (`requires_grad_(False)`: fixed filters).

    ## Why is this bad?
    With W = 0, the gradient reaching the layers below is Wᵀg = 0; a ReLU fed by exact zeros has
    derivative 0; constant weights give every unit the same gradient, so they never become
    different. These networks do not train, whatever the optimiser.

    ## Example
    ```python
    for m in self.modules():
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)
    ```

    ## Use instead
    Zero only the layers meant to start at zero (an output head, the last layer of a residual
    branch, adaLN-Zero modulation, LoRA's B) and give hidden layers a random init:
    ```python
    for m in self.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    ```

    ## References
    - Goodfellow, Bengio & Courville, *Deep Learning* (2016), §8.4: breaking symmetry.
    """

    code = "GL105"
    probe_measure = "zero_weight_gradient"
    name = "dead-init"
    severity = Severity.ERROR
    summary = "Initialisation leaves hidden layers with exactly zero gradient"
    inputs = frozenset({"python"})
    invalid = [
        Example(_FILTERS.format(groups=1, frozen="box"), note="the second layer frozen, the first trained: its channels stay alike (measured: its change has rank 1 of 3)"),
        Example("import torch\nfrom torch import nn\n\n\nclass Layer(nn.Module):\n    def __init__(self, dim):\n"
                "        super().__init__()\n        self.fusion = nn.Linear(dim, dim)\n"
                "        self.res_gate = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.ReLU(),\n"
                "                                      nn.Linear(dim, dim, bias=False), nn.Tanh())\n"
                "        nn.init.zeros_(self.res_gate[0].weight)\n        nn.init.zeros_(self.res_gate[2].weight)\n\n"
                "    def forward(self, x):\n        x_residual = self.fusion(x)\n"
                "        x = x + self.res_gate(x_residual) * x_residual\n        return x_residual, x\n",
                note="a forward that returns a tuple: of the outputs made from the first, the one through "
                     "most of the network is read (LAVT's gated fusion, yz93/LAVT-RIS#25)"),
        Example("import torch.nn.functional as F\nfrom torch import nn\n\n\nclass MultiTask(nn.Module):\n"
                "    def __init__(self, dim=32):\n        super().__init__()\n        self.stem = nn.Linear(dim, dim)\n"
                "        self.seg_hidden = nn.Linear(dim, dim, bias=False)\n        nn.init.zeros_(self.seg_hidden.weight)\n"
                "        self.seg_out = nn.Linear(dim, 10)\n"
                "        self.depth = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(),\n"
                "                                   nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))\n\n"
                "    def forward(self, x):\n        f = F.relu(self.stem(x))\n"
                "        seg = self.seg_out(F.relu(self.seg_hidden(f)))\n        return seg, self.depth(f)\n",
                note="the main output of a multi-task model, whatever the length of the other head"),
        Example("import torch.nn as nn\n\n\nclass Detector(nn.Module):\n    def __init__(self, c=64, n_cls=80):\n"
                "        super().__init__()\n"
                "        self.backbone = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())\n"
                "        self.cls_head = nn.Conv2d(c, n_cls, 1)\n"
                "        self.box_head = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),\n"
                "                                      nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, 4, 1))\n"
                "        for m in self.box_head.modules():\n            if isinstance(m, nn.Conv2d):\n"
                "                nn.init.zeros_(m.weight)\n\n"
                "    def forward(self, x):\n        f = self.backbone(x)\n        return self.cls_head(f), self.box_head(f)\n",
                note="the second output of a forward that returns a tuple (a detector's box head) is read too"),
        Example(ZERO_LOOP),
        Example("""\
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(32, 64, bias=False)
        nn.init.zeros_(self.hidden.weight)
        self.act = nn.ReLU()
        self.head = nn.Linear(64, 1)

    def forward(self, x):
        return self.head(self.act(self.hidden(x)))
""", note="zero weight, no bias, into ReLU"),
        Example("""\
import torch.nn as nn
import torch.nn.functional as F

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(32, 64, bias=False)
        nn.init.zeros_(self.proj.weight)
        self.fc = nn.Linear(64, 1)

    def forward(self, x):
        return self.fc(F.relu(self.proj(x)))
""", note="into a ReLU, whatever the layer is called"),
        Example("""\
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 16, bias=False)
        self.b = nn.Linear(16, 16)
        nn.init.constant_(self.a.weight, 0.5)
        nn.init.constant_(self.b.weight, 0.5)

    def forward(self, x):
        return self.b(self.a(x).tanh())
""", note="two constant-initialised layers in a row"),
        Example("""\
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)
        nn.init.constant_(self.a.weight, 0.5)
        nn.init.zeros_(self.a.bias)
        nn.init.constant_(self.b.weight, 0.5)

    def forward(self, x):
        return self.b(self.a(x).tanh())
""", note="a zero bias keeps the first layer's units alike"),
    ]
    valid = [
        Example(_FILTERS.format(groups=1, frozen="blur"), note="fixed filters: the first layer does not train"),
        Example(_FILTERS.format(groups="c", frozen="box"), note="a depthwise first layer: its units read a channel each (measured: the change of its weights has rank 3 of 3)"),
        Example(ZERO_LOOP.replace("nn.init.zeros_(m.weight)", "nn.init.kaiming_normal_(m.weight)"),
                note="only biases zeroed"),
        Example("""\
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)
        nn.init.constant_(self.a.weight, 0.5)
        nn.init.constant_(self.b.weight, 0.5)

    def forward(self, x):
        return self.b(self.a(x).tanh())
""", note="torch's default random bias makes the first layer's units differ: training breaks the symmetry"),
        Example("""\
import torch.nn as nn

class Block(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.fc1 = nn.Linear(d, d)
        self.proj = nn.Linear(d, d)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        return x + self.proj(self.fc1(x).relu())
""", note="zero-initialised residual projection"),
        Example("""\
import torch.nn as nn
import torch.nn.functional as F

class Block(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        nn.init.zeros_(self.conv2.weight)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))
""", note="a residual branch's last conv zeroed: the ReLU gets x + 0"),
        Example("""\
import torch.nn as nn

class LoRA(nn.Module):
    def __init__(self, d=64, r=4):
        super().__init__()
        self.lora_A = nn.Linear(d, r, bias=False)
        self.lora_B = nn.Linear(r, d, bias=False)
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x):
        return self.lora_B(self.lora_A(x))
""", note="LoRA B"),
        Example("""\
import torch.nn as nn

class Tok(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16, padding_idx=0)
        self.emb.weight.data[0].zero_()

    def forward(self, x):
        return self.emb(x)
""", note="weight[padding_idx]"),
    ]

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        seen: set = set()

        def emit(where, message, network, modules) -> Finding | None:
            key = (where, message)
            if key in seen:
                return None
            seen.add(key)
            span, node = location(where)
            return ctx.finding(message, span, node=node, data={"network": network.name, "modules": tuple(modules)})

        # (a) one init statement zeroes every Linear/Conv weight of the model: one finding per
        # statement, naming every network it zeroes (a class, and the script's model of it
        # initialised again with the same function)
        zeroed: dict = {}
        for network in networks(ctx):
            hidden = [p for p in network.params if p.op in _HIDDEN_OPS]
            # (a part the model does not see, a block of another file or library, may hold
            # weights of its own that are not zero: ControlNet-XS's zero convs beside its resnets)
            if len(hidden) >= 2 and all(_zero(p.init) for p in hidden) and \
                    not any(isinstance(n, Opaque) for n in walk(network.nodes)):
                origins = {p.init.origin for p in hidden}
                if len(origins) == 1:
                    zeroed.setdefault(next(iter(origins)), []).append((network, hidden))
        for where, found in zeroed.items():
            network, hidden = found[0]
            others = tuple(dict.fromkeys(n.name for n, _h in found[1:] if n.name != network.name))
            f = emit(where, f"every Linear/Conv weight of {network.name} ({len(hidden)} layers{same_in(others)}) is "
                            f"zero-initialised: the gradient reaching hidden layers is exactly zero and they never train",
                     network, [p.name for p in hidden])
            if f:
                yield f
        done = {id(n) for found in zeroed.values() for n, _h in found}
        # A block class of the file lowered alone keeps its own inits; a model of the file that
        # holds it may draw them again (Hugging Face's `_init_weights` through `post_init()` over
        # zero placeholders): a layer built at one place that some network initialises otherwise
        # is no dead layer of the class as it is used.
        # origin -> {(network, layer name)} of the layers built there, not dead (each pair once: a
        # layer used at 4 000 places of a loop made every question scan 4 000 copies)
        drawn: dict = {}
        for network in networks(ctx):
            for p in _flatten(network.nodes):
                if isinstance(p, Param) and p.origin is not None and not is_dead(p.init):
                    drawn.setdefault(p.origin, {})[(id(network), p.name)] = None

        def redrawn(n: Param, network) -> bool:
            # the same layer (`up` of the block alone, `experts.up` in the model) in another network
            return any(net != id(network) and (name == n.name or name.endswith("." + n.name))
                       for net, name in drawn.get(n.origin, ()))

        for network in networks(ctx):
            if id(network) in done:
                continue
            nodes = list(_flatten(network.nodes))
            in_run: set[int] = set()
            for i, n in enumerate(nodes):
                if not isinstance(n, Param) or n.op not in _HIDDEN_OPS or redrawn(n, network):
                    continue
                # (b) zero weight, no or zero bias, into a ReLU-family activation (whatever the
                # layer's name: a zero output into a ReLU is dead; at the end of a residual branch
                # the ReLU gets x + 0 and _next_activation stops at the branch's end)
                if _zero(n.init) and (n.bias_init is not None and n.bias_init.scheme in ("none", "zeros")):
                    nxt = _next_activation(nodes, i)
                    if nxt is not None and nxt.fn in RELU_FAMILY:
                        f = emit(n.init.origin or n.origin,
                                 f"{n.name} has zero weights and no bias feeding {nxt.fn}: its output is exactly 0, "
                                 f"where the ReLU derivative is 0, so no gradient flows through it",
                                 network, [n.name])
                        if f:
                            yield f
                        continue
                # (c) two constant-initialised layers in a row (a longer run: one finding for it)
                if is_dead(n.init) and not _guarded(n) and id(n) not in in_run:
                    run = [n]
                    while True:
                        nxt_param = _next_param(nodes, nodes.index(run[-1], i))
                        if nxt_param is None or not is_dead(nxt_param.init) or _guarded(nxt_param) or nxt_param in run \
                                or redrawn(nxt_param, network) or not _stuck_pair(run[-1], nxt_param):
                            break
                        run.append(nxt_param)
                    if len(run) < 2:
                        continue
                    in_run.update(id(p) for p in run)
                    if len(run) == 2:
                        message = (f"{n.name} and {run[1].name} are both constant-initialised ({n.init.scheme}, "
                                   f"{run[1].init.scheme}): every unit gets the same gradient, or none")
                    else:
                        schemes = ", ".join(dict.fromkeys(p.init.scheme for p in run))
                        message = (f"{n.name} .. {run[-1].name} ({len(run)} layers in a row) are all "
                                   f"constant-initialised ({schemes}): every unit gets the same gradient, or none")
                    f = emit(n.init.origin or n.origin, message, network, [p.name for p in run])
                    if f:
                        yield f


def same_in(others: tuple[str, ...]) -> str:
    """`; the same in make and build` after a layer count; empty for none."""
    return f"; the same in {networks_text(list(others))}" if others else ""


# Where a residual branch starts or ends in the flattened nodes: what follows a layer across it
# is not fed by that layer alone (`relu(x + conv2(...))` gets x + 0 from a zeroed conv2).
_BRANCH_EDGE = object()


def _flatten(nodes):
    from gradlint.model.ir import Residual

    for n in nodes:
        if isinstance(n, Residual):
            yield _BRANCH_EDGE
            yield from _flatten(n.body)
            yield _BRANCH_EDGE
        else:
            yield n


def _stuck_pair(first: Param, second: Param) -> bool:
    """Whether two constant-initialised layers in a row keep the first from training: the second
    is zero (Wᵀg = 0 reaches the first, whatever its bias), or the first's units are all alike,
    its bias absent or constant too, so the second's equal columns hand each the same gradient.
    A random bias (torch's default; None: that, or a bias not known) makes the units differ and
    training breaks the symmetry. Measured on Linear(16, 16) → tanh → Linear(16, 16), both
    weights 0.5: the first weight's change after 200 SGD steps has rank 10 with the default
    bias, 1 with a zero bias or none; three zero-weight convs with default biases: the first
    weight's gradient is 0, then 3e-5 after 30 steps, its change of rank 1. A first layer that
    does not train (`requires_grad_(False)`: fixed filters) has no symmetry to break, and a
    depthwise one's units each read a channel of their own (measured, a trainable 3-channel
    depthwise box filter before another: 9 distinct gradient values per channel, all 27 weights
    apart after 3 steps)."""
    if first.frozen:
        return False
    if _zero(second.init):
        return True
    return first.alike and first.bias_init is not None and (first.bias_init.scheme == "none" or is_dead(first.bias_init))


def _next_activation(nodes, i):
    """The activation the layer at `i` feeds directly (passthroughs between), else None."""
    for n in nodes[i + 1:]:
        if isinstance(n, Passthrough):
            continue
        return n if isinstance(n, Activation) else None
    return None


def _next_param(nodes, i):
    """The layer the layer at `i` feeds through activations and passthroughs only, else None."""
    for n in nodes[i + 1:]:
        if isinstance(n, (Activation, Passthrough)):
            continue
        return n if isinstance(n, Param) else None
    return None
