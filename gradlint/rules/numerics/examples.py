"""Example programs that more than one numerics rule shows: the model, criterion and tensor shapes
the front-end follows (tuple returns, function-valued criteria, wrapper methods, imported classes)."""

from __future__ import annotations

# A GAN discriminator whose forward returns (validity, label): validity a sigmoid, label logits.
GAN = ("import torch\nfrom torch import nn\n\n"
       "class Discriminator(nn.Module):\n"
       "    def __init__(self):\n"
       "        super().__init__()\n"
       "        self.adv = nn.Sequential(nn.Linear(10, 1), nn.Sigmoid())\n"
       "        self.aux = nn.Linear(10, 1)\n\n"
       "    def forward(self, x):\n"
       "        validity = self.adv(x)\n"
       "        label = self.aux(x)\n"
       "        return validity, label\n\n"
       "D = Discriminator()\nadversarial_loss = nn.BCEWithLogitsLoss()\n\n"
       "def step(x, y):\n")
# A trainer given its models by its callers (another file), held with a tuple assignment.
TRAINER = ("import torch\nfrom torch import nn\n\n\n"
           "class GANTrainer:\n"
           "    def __init__(self, gen, disc):\n"
           "        self.gen, self.disc = gen, disc\n"
           "        self.criterion = nn.BCEWithLogitsLoss()\n\n"
           "    def d_loss(self, real):\n"
           "        return self.criterion(self.disc(real), torch.ones(real.size(0), 1))\n")
TRAINER_MAIN = ("import torch\nfrom torch import nn\nfrom example import GANTrainer\n\n\n"
                "class D(nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.net = nn.Sequential(nn.Linear(784, 1){act})\n\n"
                "    def forward(self, x):\n"
                "        return self.net(x)\n\n\n"
                "trainer = GANTrainer(None, D())\n")
# A criterion held as a function-valued attribute.
ATTR = ("import torch\nfrom torch import nn\nimport torch.nn.functional as F\n\n"
        "class Model(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(10, 1)\n"
        "        self.loss_func = F.{loss}\n\n"
        "    def forward(self, x, y):\n"
        "        return self.loss_func({input}, y)\n")
# A criterion returned by a wrapper method.
WRAPPER = ("import torch\nfrom torch import nn\n\n"
           "class Model(nn.Module):\n"
           "    def __init__(self):\n"
           "        super().__init__()\n"
           "        self.fc = nn.Linear(10, 1)\n\n"
           "    def get_loss(self):\n"
           "        return nn.{loss}()\n\n"
           "    def training_step(self, x, y):\n"
           "        crit = self.get_loss()\n"
           "        return crit(torch.sigmoid(self.fc(x)), y)\n")
# nets.py: a class named in capitals, ending in the activation given
MLP = ("from torch import nn\n\n"
       "class MLP(nn.Module):\n"
       "    def __init__(self):\n"
       "        super().__init__()\n"
       "        self.fc = nn.Linear(10, 1)\n"
       "        self.act = nn.{act}()\n\n"
       "    def forward(self, x):\n"
       "        return self.act(self.fc(x))\n")
RUN_MLP = ("from torch import nn\nfrom nets import MLP\n\n"
           "def run(x, y):\n"
           "    m = MLP()\n"
           "    crit = nn.BCEWithLogitsLoss()\n"
           "    out = m(x)\n"
           "    loss = crit(out, y)\n"
           "    loss.backward()\n")
# `self.forward(x)` in another method, whose forward returns the expression given
SELF_FORWARD = ("import torch\nfrom torch import nn\nimport torch.nn.functional as F\n\n"
                "class Net(nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.fc = nn.Linear(10, 3)\n\n"
                "    def forward(self, x):\n"
                "        return {out}\n\n"
                "    def loss(self, x, y):\n"
                "        probs = self.forward(x)\n"
                "        return F.cross_entropy(probs, y)\n")
# A heteroscedastic classifier: forward returns (class probabilities, a variance)
HETERO = ("import torch\nfrom torch import nn\nimport torch.nn.functional as F\n\n"
          "class Net(nn.Module):\n"
          "    def __init__(self):\n"
          "        super().__init__()\n"
          "        self.fc = nn.Linear(10, 3)\n"
          "        self.var = nn.Linear(10, 1)\n\n"
          "    def forward(self, x):\n"
          "        return torch.softmax(self.fc(x), dim=-1), F.softplus(self.var(x))\n\n"
          "net = Net()\n\n"
          "def step(x, y):\n")
# A weight matrix made as a plain tensor (`make` may add statements), used in `use`
LEAF = ("import torch\n\n"
        "def fit(x):\n"
        "    W = {make}\n"
        "    return {use}\n")
