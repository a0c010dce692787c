"""GL404 module-requires-grad-noop: `module.requires_grad = False` sets a plain attribute."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.numerics.base import SiteRule
from gradlint.facts.numerics import Site

_WRAPPED = """\
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(10, 10)


class Wrapper(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.model.encoder.requires_grad = False


def build():
    return Wrapper(Net())
"""


_FREEZE = "import torch\n\n\nclass Trainer:\n    def freeze(self, model):\n        model.requires_grad = False\n"
_TRAIN = ("import torch\n\nfrom example import Trainer\nfrom nets import Backbone, Config\n\n"
          "trainer = Trainer()\ntrainer.freeze(Backbone())\n")
_NETS = "from torch import nn\n\n\nclass Backbone(nn.Module):\n    pass\n\n\nclass Config:\n    pass\n"
_FREEZE_PART = "import torch\n\n\ndef freeze(model):\n    model.encoder.requires_grad = False\n"
_TRAIN_PART = "import torch\n\nfrom example import freeze\nfrom nets import Net\n\nfreeze(Net())\n"
_NETS_PART = ("from torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
              "        self.encoder = nn.Linear(4, 4)\n")


# A model nothing is known of (built by a function of a file not in the project) whose head the
# trainer means to freeze, and whose head's weights it reads (upstream: MICCAI23-ProtoContra-SFDA#18).
_ADAPT = ("import torch\nfrom models import get_model\n\n\nclass Trainer:\n"
          "    def __init__(self, opt):\n        self.model = get_model(opt)\n"
          "        self.prototypes = self.model.outc.conv.weight.view(-1)\n"
          "        self.model.outc.requires_grad = False\n")


class ModuleRequiresGradNoop(SiteRule):
    """
    ## What it does
    Flags `module.requires_grad = False` (or `= True`) on an `nn.Module` — a `torch.nn` layer,
    a model torchvision or timm builds (`torchvision.models.resnet50(...)`, `timm.create_model(...)`)
    and the submodules those libraries name (`model.layer1`, `model.features`, `vit.patch_embed`),
    a class of the run that derives from `nn.Module` (looked up across files), `self` inside
    such a class, a submodule of a model of this file (`self.model.encoder`, the model built in
    `__init__` or passed by the callers in this file) or of an instance of a class of the run
    (`m = Net(); m.backbone.requires_grad = False`, when the class holds a layer there), a parameter for which every caller in the
    project passes a module (`trainer.freeze(Backbone())` in another file) or a submodule of one
    (`model.encoder`, when every caller passes a model whose class holds a layer there), or a loop variable
    over `.modules()`/`.children()` (also `list(model.children())[:3]`), or an object nothing else
    is known of that the file uses as only a module is used (`x.parameters()`, `x.children()`,
    `x.load_state_dict(...)`, a child's weight `x.conv.weight`) — and the `.require_grad` typo on
    anything.

    Not flagged: `module.requires_grad_(False)`, and `requires_grad` on tensors and
    `nn.Parameter` attributes. `self.requires_grad = <a name>` is a setting the class keeps, not
    a freeze, where the class reads `self.requires_grad` back, where the method reads the name
    again (speechbrain's `Fbank` passes `freeze=not requires_grad` to its filterbank), or where
    the class's own code gives it no parameter or submodule (torchrl's environment wrappers);
    `self.requires_grad = False` is flagged whatever the class holds.

    ## Why is this bad?
    `nn.Module` has no `requires_grad` attribute: the assignment creates a new plain attribute
    and every parameter still trains. Measured in torch: after `m.requires_grad = False` on an
    `nn.Linear`, `m.weight.requires_grad` is still True. `.require_grad` is a typo that is
    silently accepted the same way.

    ## Example
    ```python
    model.encoder.requires_grad = False
    ```

    ## Use instead
    ```python
    model.encoder.requires_grad_(False)
    ```
    """

    code = "GL404"
    probe_measure = "parameters_still_trained"
    kinds = frozenset({"requires_grad_on_module"})
    name = "module-requires-grad-noop"
    severity = Severity.WARNING
    summary = "requires_grad assigned on an nn.Module (a no-op) or misspelt"

    invalid = [
        Example("import torch.nn as nn\nimport torchvision\n\n\nclass Encoder(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        resnet = torchvision.models.resnet18()\n"
                "        modules = list(resnet.children())[:-2]\n        for module in modules:\n"
                "            module.requires_grad = False\n        self.net = nn.Sequential(*modules)\n",
                note="a loop over a local list of a model's children (catalyst-team/catalyst#81)"),
        Example("import torchvision\n\n\ndef freeze(model, n):\n"
                "    for i, child in enumerate(model.children()):\n        if i < n:\n"
                "            child.requires_grad = False\n\n\nfreeze(torchvision.models.resnet18(), 6)\n",
                note="the children counted by enumerate"),
        Example("import torch.nn as nn\n\n\ndef freeze_bn(model):\n"
                "    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]\n"
                "    bns = bns[1:]\n    for bn in bns:\n        bn.requires_grad = False\n\n\n"
                "freeze_bn(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)))\n",
                note="a list of some of a model's modules, by comprehension, sliced again"),
        Example("import torch.nn as nn\nimport torchvision\n\n\nclass Encoder(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        resnet = torchvision.models.resnet18()\n"
                "        self.blocks = list(resnet.children())[:-2]\n        self.blocks += [nn.Conv2d(512, 64, 1)]\n"
                "        for module in self.blocks:\n            module.requires_grad = False\n"
                "        self.net = nn.Sequential(*self.blocks)\n",
                note="a list of children held in an attribute, extended"),
        Example("import torchvision\n\n\ndef freeze_stem():\n    net = torchvision.models.resnet50()\n"
                "    frozen = []\n    frozen += list(net.children())[:4]\n    for m in frozen:\n"
                "        m.requires_grad = False\n    return net\n",
                note="an empty list extended with children"),
        Example("import torch\nfrom torch import nn\n\n"
                "class M(nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.encoder = nn.Linear(4, 4)\n"
                "        self.encoder.requires_grad = False\n"),
        Example("import torch\nfrom torch import nn\n\n"
                "def freeze(model):\n"
                "    for m in model.children():\n"
                "        m.requires_grad = False\n"),
        Example("import torch\nfrom nets import Backbone\n\n"
                "backbone = Backbone()\nbackbone.requires_grad = False\n",
                files=(("nets.py", "from torch import nn\n\nclass Backbone(nn.Module):\n    pass\n"),),
                note="a class of another file"),
        Example("import torchvision\n\nbackbone = torchvision.models.resnet50(weights='DEFAULT')\n"
                "backbone.requires_grad = False\n", note="a model a library builds"),
        Example("import timm\nimport torch\n\nbackbone = timm.create_model('resnet50', pretrained=True)\n"
                "backbone.requires_grad = False\n", note="timm's create_model"),
        Example("import torch\n\ndef f(w):\n    w.require_grad = True\n", note="typo"),
        Example("import torch\nfrom torch import nn\n\n\ndef freeze(groups):\n    def _freeze(x):\n"
                "        if isinstance(x, nn.Parameter):\n            x.requires_grad = False\n"
                "        else:\n            x.requires_grad = False\n"
                "        for p in x.parameters():\n            print(p.shape)\n    for g in groups:\n        _freeze(g)\n",
                note="the else branch of the isinstance test: the module case"),
        Example("import torch\n\ndef f(n):\n    pe = torch.zeros(n, 8)\n    pe.require_grad = True\n    return pe\n",
                note="typo on a fresh tensor meant to train: it never will"),
        Example(_WRAPPED, note="a submodule of the model the caller passes"),
        Example("from torch import nn\n\n"
                "class Wrapper(nn.Module):\n"
                "    def __init__(self, model):\n"
                "        super().__init__()\n"
                "        for child in list(model.children())[:3]:\n"
                "            child.requires_grad = False\n",
                note="a slice of .children()"),
        Example(_FREEZE, files=(("train.py", _TRAIN), ("nets.py", _NETS)),
                note="the model every caller in the project passes (train.py)"),
        Example(_FREEZE_PART, files=(("train.py", _TRAIN_PART), ("nets.py", _NETS_PART)),
                note="a submodule of the model every caller in the project passes"),
        Example(_ADAPT, note="read as a module: its child's weight (ProtoContra's trainer)"),
        Example(_ADAPT.replace("self.model.outc.conv.weight.view(-1)", "list(self.model.outc.parameters())"),
                note="read as a module: its parameters"),
    ]
    valid = [
        Example("import torch\nfrom torch import nn\n\n\ndef unlock(x):\n    if isinstance(x, nn.Parameter):\n"
                "        x.requires_grad = True\n    else:\n        for p in x.parameters():\n"
                "            p.requires_grad = True\n",
                note="a parameter in the branch its isinstance test opens, though a module elsewhere (open_clip's _unlock)"),
        Example("import torch\n\ndef table(n):\n    pe = torch.zeros(n, 8).float()\n    pe.require_grad = False\n"
                "    return pe\n",
                note="a typo, but a fresh tensor never required grad: nothing meant is lost (neuralforecast)"),
        Example("import torchvision\n\n\ndef freeze_stem(net):\n    for m in list(net.children())[:4]:\n"
                "        for p in m.parameters():\n            p.requires_grad = False\n\n\n"
                "def freeze_all():\n    net = torchvision.models.resnet50()\n    for m in list(net.parameters()):\n"
                "        m.requires_grad = False\n    return net\n",
                note="`m` is a module in one function and a parameter in another"),
        Example("import torch\nimport torchvision\n\n\ndef freeze(model):\n"
                "    blocks = list(model.children())[:-1]\n    backbone = torch.nn.Sequential(*blocks)\n"
                "    for blocks in [list(backbone.parameters())]:\n        for t in blocks:\n"
                "            t.requires_grad = False\n    return backbone\n\n\nfreeze(torchvision.models.resnet18())\n",
                note="the name of a list of children rebound by a loop, to parameters"),
        Example("import torch.nn as nn\nimport torchvision\n\n\nclass Encoder(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        resnet = torchvision.models.resnet18()\n"
                "        modules = list(resnet.children())[:-2]\n        self.net = nn.Sequential(*modules)\n"
                "        modules = [p for p in self.net.parameters()]\n        for module in modules:\n"
                "            module.requires_grad = False\n",
                note="the name bound again, to parameters, before the loop"),
        Example("import torch\nfrom torch import nn\n\nm = nn.Linear(4, 4)\nm.requires_grad_(False)\n"),
        Example(_ADAPT.replace("self.model.outc.conv.weight.view(-1)", "self.model.outc.sum()"),
                note="nothing tells it is a module"),
        Example(_ADAPT.replace("self.model.outc.requires_grad = False", "self.model.outc.requires_grad_(False)"),
                note="the method"),
        Example("import torch\nfrom torch import nn\n\nclass M(nn.Module):\n"
                "    def __init__(self):\n        super().__init__()\n"
                "        self.scale = nn.Parameter(torch.ones(1))\n"
                "        self.scale.requires_grad = False\n", note="a parameter"),
        Example("import torch\n\ndef freeze(model):\n    for p in model.parameters():\n"
                "        p.requires_grad = False\n"),
        Example("import torchvision\n\nbackbone = torchvision.models.resnet50(weights='DEFAULT')\n"
                "backbone.requires_grad_(False)\n", note="the method, on a library's model"),
        Example("import torch\nimport torchvision\n\nw = torchvision.models.get_weight('ResNet50_Weights.DEFAULT')\n"
                "w.requires_grad = False\n", note="not a model: a library's other function"),
        Example("import torch\nfrom nets import Config\n\ncfg = Config()\ncfg.requires_grad = False\n",
                files=(("nets.py", "class Config:\n    pass\n"),), note="not a module"),
        Example(_WRAPPED.replace("encoder.requires_grad", "encoder.weight.requires_grad"),
                note="a parameter of the submodule"),
        Example(_FREEZE, files=(("train.py", _TRAIN.replace("Backbone()", "Config()")), ("nets.py", _NETS)),
                note="every caller passes an object that is no module"),
        Example(_FREEZE, files=(("nets.py", _NETS),), note="no caller in the project: unknown"),
        Example(_FREEZE_PART.replace("encoder.requires_grad", "encoder.weight.requires_grad"),
                files=(("train.py", _TRAIN_PART), ("nets.py", _NETS_PART)),
                note="a parameter of a submodule of the model the callers pass"),
    ]

    def message(self, site: Site, ctx: RuleContext) -> str:
        if site.variant == "typo":
            return f"`{site.detail}` is a typo of requires_grad: the assignment is silently accepted and does nothing"
        return (f"`{site.detail}.requires_grad = ...` sets a plain attribute on an nn.Module: its parameters "
                "still train; use requires_grad_(False)")
