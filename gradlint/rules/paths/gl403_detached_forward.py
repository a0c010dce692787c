"""GL403 detached-forward: .detach(), .data or torch.no_grad() between a module's parameters and its output."""

from __future__ import annotations

from gradlint.findings import Severity
from gradlint.registry import Example, RuleContext
from gradlint.rules.numerics.base import SiteRule
from gradlint.facts.numerics import Site


_AGCN = """\
import torch
from torch import nn


class GCN(nn.Module):
    def __init__(self, d, n):
        super().__init__()
        self.adjacency = nn.Linear(d, d)
        self.gc = nn.Linear(d, d)

    def forward(self, inp):
        adj = self.adjacency(inp).detach()
        return torch.matmul(adj, self.gc(inp))

    def get_config_optim(self, lr):
        return [
            {'params': self.adjacency.parameters(), 'lr': lr},
            {'params': self.gc.parameters(), 'lr': lr},
        ]
"""


# A decoder whose sampling method returns its logits, and a model whose forward builds its loss
# from them (facebookresearch/inversecooking#3): `{cut}` is how `sample()` returns the logits.
_SAMPLED = """\
import torch
from torch import nn
import torch.nn.functional as F


class Decoder(nn.Module):
    def __init__(self, d, v):
        super().__init__()
        self.embed = nn.Embedding(v, d)
        self.out = nn.Linear(d, v)

    def forward(self, tokens, feats):
        return self.out(self.embed(tokens) + feats)

    def {method}(self, feats, steps=4):
        ids = [torch.zeros(feats.size(0), 1, dtype=torch.long)]
        logits = []
        for _ in range(steps):
            out = self.forward(torch.cat(ids, 1), feats)[:, -1]
            logits.append(out)
            ids.append(out.argmax(-1, keepdim=True))
        return torch.cat(ids[1:], 1), {cut}


class Model(nn.Module):
    def __init__(self, d=16, v=10):
        super().__init__()
        self.encoder = nn.Linear(8, d)
        self.decoder = Decoder(d, v)
        self.crit = nn.BCELoss()

    def forward(self, images, labels):
        feats = self.encoder(images)[:, None]
        ids, logits = self.decoder.{method}(feats)
        probs, _ = torch.max(F.softmax(logits, dim=-1), dim=1)
        return {{"loss": self.crit(probs, labels)}}
"""

_HELPER = ("import torch\nfrom torch import nn\n\n\nclass Encoder(nn.Module):\n    def __init__(self):\n"
           "        super().__init__()\n        self.fc = nn.Linear(8, 8)\n\n    def forward(self, x):\n"
           "        return self.fc(x)\n\n    def {method}(self, x):\n        h = self.fc(x)\n        return {ret}\n\n\n"
           "class Model(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.enc = Encoder()\n\n"
           "    def forward(self, x):\n        return {{\"z\": self.enc.{method}(x) * 2}}\n")


# vit_pytorch's Extractor (lucidrains/CoCa-pytorch#6): a forward hook on a layer of the wrapped
# network stores its output, and forward returns what the hook stored; `{store}` is the hook's body.
_EXTRACTOR = """\
import torch
from torch import nn


class Extractor(nn.Module):
    def __init__(self, vit, layer_name="transformer", detach=True):
        super().__init__()
        self.vit = vit
        self.layer_name = layer_name
        self.detach = detach
        self.latents = None
        getattr(self.vit, layer_name).register_forward_hook(self._hook)

    def _hook(self, _, inputs, output):
{store}

    def forward(self, img):
        self.vit(img)
        return self.latents


def build():
    return Extractor(nn.Sequential(nn.Linear(8, 8)))
"""


# A loss that holds `a` fixed in a surrogate term (libauc's MIDAM losses); `{fit}` is what the
# other term fits.
_TWO_TERMS = """\
import torch
from torch import nn


class TwoTimeScaleLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(1))
        self.b = nn.Parameter(torch.zeros(1))

    def forward(self, pred, target):
        surrogate = torch.mean((target - self.a.detach()) * pred)
        fit = torch.mean((target - {fit}) ** 2)
        return surrogate + fit
"""


class DetachedForward(SiteRule):
    """
    ## What it does
    Flags an `nn.Module.forward` whose returned value is cut from the module's parameters by
    `.detach()`, `.data` or a `torch.no_grad()` block (or decorator), and a parameter read as
    `self.weight.data` / `self.weight.detach()` on the way to the output; the output may be a dict
    display whose every entry is cut (`return {"loss": ...}`), and the cut may be in what a method
    of a class of the file returns on every path (`ids, logits = self.decoder.sample(feats)` with
    `return ids, torch.stack(logits, 1).data`: reported at that cut), in a forward hook the class
    registers on a submodule or a layer of it (`getattr(self.vit, name).register_forward_hook(
    self._hook)` with `self.latents = output.clone().detach()`, forward returning the latents:
    vit_pytorch's Extractor, lucidrains/CoCa-pytorch#6), or in a lambda a helper of the file applies
    (`apply_tuple_or_single(lambda t: t.detach(), x)`), or in what a top-level function of the file
    returns of what forward hands it (`weights = weights.detach()` in deep_cage's
    `deform_with_MVC`, yifita/deep_cage#16; a caller unpacking three names reads the returns of
    three elements). Also a submodule whose
    output forward detaches before the rest uses it, that no output reaches otherwise, while a
    method of the class hands its parameters to an optimizer (`{"params":
    self.non_local.parameters()}`, A-GCN's learned adjacency, queenie88/A-GCN#4). And a module of
    no parameters of its own whose forward cuts its input while its callers pass it a trainable
    parameter (LEAF's Gabor constraint clamped the layer's kernel under `no_grad`); not one handed a
    model's output (targets, assignments and pseudo-labels are made under no_grad on purpose).

    Not flagged: deliberate stop-gradients — EMA, teacher, target and momentum networks (named
    so), hidden states detached between truncated-BPTT windows, straight-through estimators
    (`x + (q - x).detach()` keeps a path), and a frozen sub-network whose output feeds a
    trainable head (given to no optimizer by the class, or frozen with `requires_grad` or a `freeze`
    helper), and a parameter cut in one term that reaches the output with its graph through another
    (`(t - self.a.detach()) * p + (t - self.a) ** 2`, also through a method forward calls: libauc's
    MIDAM losses hold `a` fixed in the surrogate term and fit it in the other). A forward whose whole output is cut is not flagged in an inference-only wrapper (its
    `__init__` puts a module in eval mode, builds one with pretrained weights, or freezes an
    embedding's table with `nn.Parameter(w, requires_grad=False)`: ignite's FID Inception,
    neuralforecast's fixed embedding), nor when every module it runs is a parameter-free torch layer or a class of another
    project file that the run models in full with no parametric layer (speechbrain's STFT and
    beamforming modules).

    ## Why is this bad?
    The parameters upstream of the cut never receive a gradient: they stay at their
    initialisation while the loss still decreases through the rest of the model, which hides
    the bug.

    ## Example
    ```python
    def forward(self, x):
        return F.linear(x, self.weight.data, self.bias)
    ```

    ## Use instead
    ```python
    def forward(self, x):
        return F.linear(x, self.weight, self.bias)
    ```
    """

    code = "GL403"
    probe_measure = "parameters_cut"
    kinds = frozenset({"forward_output_cut"})
    name = "detached-forward"
    severity = Severity.WARNING
    summary = "A module's forward output is cut from its parameters (.detach(), .data, no_grad)"

    invalid = [
        Example("import torch\nfrom torch import nn\n\n\nclass HalfFixed(nn.Module):\n"
                "    def __init__(self, c_in, d_model):\n        super().__init__()\n"
                "        self.lin = nn.Linear(c_in, d_model)\n"
                "        self.lin.weight = nn.Parameter(torch.zeros(d_model, c_in), requires_grad=False)\n\n"
                "    def forward(self, x):\n        return self.lin(x).detach()\n",
                note="a Linear's weight frozen, its bias not: the bias never gets a gradient"),
        Example("import torch\nfrom torch import nn\n\n\nclass Head(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        self.fc = nn.Linear(4, 2)\n        self.loss_fn = nn.CrossEntropyLoss()\n\n"
                "    def forward(self, x):\n        return self.fc(x).detach()\n\n"
                "    def loss(self, x, y):\n        return self.loss_fn(self(x), y)\n",
                note="another method runs a loss module, not the one forward cuts"),
        Example(_AGCN.replace("        adj = self.adjacency(inp).detach()\n",
                              "        adj = self.adjacency(inp)\n        adj.detach_()\n"),
                note="detached in place"),
        Example(_AGCN, note="a learned adjacency detached before the graph layers use it (queenie88/A-GCN#4)"),
        Example(_AGCN.replace("        adj = self.adjacency(inp).detach()\n",
                              "        with torch.set_grad_enabled(False):\n            adj = self.adjacency(inp)\n"),
                note="computed with recording switched off by `set_grad_enabled(False)`"),
        Example(_AGCN.replace("import torch\n", "import torch\nfrom torch import no_grad as frozen\n", 1)
                .replace("        adj = self.adjacency(inp).detach()\n",
                         "        with frozen():\n            adj = self.adjacency(inp)\n"),
                note="`torch.no_grad` imported under another name"),
        Example(_AGCN.replace("        adj = self.adjacency(inp).detach()\n",
                              "        adj = self.adjacency(inp)\n        n = adj.shape[0] + adj.size(1)\n"
                              "        adj = adj.detach()[:n]\n"),
                note="its size read before the cut: a number, no gradient"),
        Example("import torch\nfrom torch import nn\nimport torch.nn.functional as F\n\n"
                "class Lin(nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.weight = nn.Parameter(torch.randn(4, 4))\n\n"
                "    def forward(self, x):\n"
                "        return F.linear(x, self.weight.data)\n"),
        Example("import torch\nfrom torch import nn\nimport torch.nn.functional as F\n\n"
                "class WSConv2d(nn.Conv2d):\n"
                "    def forward(self, x):\n"
                "        w = self.weight.data\n"
                "        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5)\n"
                "        return F.conv2d(x, w, self.bias, self.stride, self.padding)\n",
                note="a torch layer's own weight, read by a subclass (measured: weight.grad is None)"),
        Example("import torch\nfrom torch import nn\n\n"
                "class Head(nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.fc = nn.Linear(4, 2)\n\n"
                "    def forward(self, x):\n"
                "        return self.fc(x).detach()\n"),
        Example("import torch\nfrom torch import nn\n\n"
                "class Enc(nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.net = nn.Linear(4, 4)\n\n"
                "    def forward(self, x):\n"
                "        with torch.no_grad():\n"
                "            out = self.net(x)\n"
                "        return out\n"),
        Example("import math\n\nimport torch\nfrom torch import nn\n\n\nclass GaborConstraint(nn.Module):\n"
                "    def __init__(self, kernel_size):\n        super().__init__()\n        self.kernel_size = kernel_size\n\n"
                "    def forward(self, kernel):\n        with torch.no_grad():\n"
                "            mu = torch.clamp(kernel[:, 0], 0.0, math.pi)\n"
                "            sigma = torch.clamp(kernel[:, 1], 1.0, self.kernel_size / math.pi)\n"
                "            return torch.stack([mu, sigma], dim=1)\n\n\n"
                "class GaborConv1D(nn.Module):\n    def __init__(self, n, kernel_size):\n        super().__init__()\n"
                "        self.kernel = nn.Parameter(torch.rand(n, 2))\n"
                "        self.constraint = GaborConstraint(kernel_size)\n\n"
                "    def forward(self, x):\n        return x @ self.constraint(self.kernel)\n",
                note="a parameter-free module that cuts what its caller passes: the layer's kernel "
                     "(denfed/leaf-audio-pytorch#4)"),
        Example(_SAMPLED.format(method="sample", cut="torch.stack(logits, 1).data"),
                note="a loss built from what a method of a submodule returns through `.data`, in the dict "
                     "forward returns (facebookresearch/inversecooking#3)"),
        Example(_HELPER.format(method="encode", ret="h.data"),
                note="the whole value a method returns, cut"),
        Example("import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        self.fc = nn.Linear(8, 1)\n\n    def forward(self, x):\n"
                "        y = self.fc(x)\n        return {\"score\": y.detach(), \"loss\": y.pow(2).sum().detach()}\n",
                note="every entry of the returned dict cut"),
        Example(_EXTRACTOR.format(store="        self.latents = output.clone().detach()"),
                note="a forward hook stores the layer's output cut, and forward returns it "
                     "(lucidrains/CoCa-pytorch#6)"),
        Example("import torch\nfrom torch import nn\n\n\ndef deform(cage, query, verbose=False):\n"
                "    weights = torch.softmax(query @ cage.transpose(1, 2), -1).detach()\n"
                "    deformed = weights @ cage\n    if verbose:\n        return deformed, weights\n"
                "    return deformed\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        self.dec = nn.Linear(3, 3)\n\n"
                "    def forward(self, query, cage):\n"
                "        deformed, weights = deform(self.dec(cage), query, verbose=True)\n        return weights\n",
                note="a helper of the file cuts what forward hands it, and forward returns that element "
                     "(yifita/deep_cage#16)"),
        Example(_TWO_TERMS.format(fit="self.b"),
                note="the term beside the cut trains another parameter: `a` is only ever read cut"),
    ]
    valid = [
        Example(_TWO_TERMS.format(fit="self.a"),
                note="a parameter held fixed in one term and trained through another (libauc's MIDAM losses; "
                     "measured: a.grad is nonzero)"),
        Example("import torch\nfrom torch import nn\n\n\nclass Constraint(nn.Module):\n    @torch.no_grad()\n"
                "    def forward(self, w):\n        return w.clamp(0.0, 1.0)\n\n\nclass Layer(nn.Module):\n"
                "    def __init__(self):\n        super().__init__()\n"
                "        self.window = nn.Parameter(torch.rand(4, 4), requires_grad=False)\n"
                "        self.c = Constraint()\n\n    def forward(self, x):\n"
                "        return x @ self.c(self.window)\n",
                note="a frozen parameter (requires_grad=False) handed to a no_grad constraint: nothing to train"),
        Example("import torch\nfrom torch import nn\n\n\nclass Project(nn.Module):\n    def forward(self, w):\n"
                "        with torch.no_grad():\n            w.clamp_(0.0, 1.0)\n        return w\n\n\n"
                "class Layer(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                "        self.kernel = nn.Parameter(torch.rand(4, 4))\n        self.proj = Project()\n\n"
                "    def forward(self, x):\n        return x @ self.proj(self.kernel)\n",
                note="a projection in place under no_grad that returns the parameter itself: it still gets its gradient (measured)"),
        Example("import torch\nfrom torch import nn\n\n\nclass FixedEmbedding(nn.Module):\n"
                "    def __init__(self, c_in, d_model):\n        super().__init__()\n"
                "        w = torch.zeros(c_in, d_model)\n        self.emb = nn.Embedding(c_in, d_model)\n"
                "        self.emb.weight = nn.Parameter(w, requires_grad=False)\n\n"
                "    def forward(self, x):\n        return self.emb(x).detach()\n",
                note="a frozen table (its one parameter made with requires_grad=False): nothing to train (neuralforecast)"),
        Example("import torch\nfrom torch import nn\n\n\nclass Spectrogram(nn.Module):\n"
                "    def __init__(self, n_fft):\n        super().__init__()\n        self.n_fft = n_fft\n\n"
                "    def forward(self, wav):\n        with torch.no_grad():\n"
                "            return torch.stft(wav, self.n_fft, return_complex=True).abs()\n\n\n"
                "class Classifier(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                "        self.features = Spectrogram(512)\n        self.head = nn.Linear(257, 10)\n\n"
                "    def forward(self, wav):\n        return self.head(self.features(wav).mean(-1))\n",
                note="a parameter-free feature extractor under no_grad, fed the data"),
        Example("import torch\nfrom torch import nn\n\n\nclass SinkhornKnopp(nn.Module):\n"
                "    def __init__(self, iters=3, eps=0.05):\n        super().__init__()\n"
                "        self.iters, self.eps = iters, eps\n\n    @torch.no_grad()\n    def forward(self, scores):\n"
                "        q = torch.exp(scores / self.eps).t()\n        for _ in range(self.iters):\n"
                "            q = q / q.sum(dim=1, keepdim=True)\n            q = q / q.sum(dim=0, keepdim=True)\n"
                "        return q.t()\n\n\nclass SwAV(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                "        self.prototypes = nn.Linear(16, 10)\n        self.sk = SinkhornKnopp()\n\n"
                "    def forward(self, x1, x2):\n        p1, p2 = self.prototypes(x1), self.prototypes(x2)\n"
                "        return -(self.sk(p1) * torch.log_softmax(p2, -1)).sum(-1).mean()\n",
                note="codes computed under no_grad from a model's output: a target, cut on purpose (SwAV)"),
        Example("import torch\nfrom torch import nn\n\n\nclass Model(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        self.body = nn.Linear(4, 4)\n        self.head = nn.Linear(4, 2)\n\n"
                "    def forward(self, x):\n        feat = self.body(x)\n        out = dict(feat=feat.detach())\n"
                "        out.update(logits=self.head(feat))\n        return out\n",
                note="a detached copy returned beside an output added later (`update`, `append`) that trains"),
        Example(_AGCN.replace("        {'params': self.adjacency.parameters(), 'lr': lr},\n", ""),
                note="a sub-network detached and given to no optimizer: frozen on purpose"),
        Example(_AGCN.replace("adj = self.adjacency(inp).detach()", "adj = self.adjacency(inp)"),
                note="the adjacency kept in the graph"),
        Example(_AGCN.replace("        self.gc = nn.Linear(d, d)\n",
                              "        self.gc = nn.Linear(d, d)\n        freeze(self.adjacency)  # pretrained\n"),
                note="frozen by a helper (`freeze(...)`, `requires_grad_(False)`, a loop over its parameters)"),
        Example(_AGCN.replace("        adj = self.adjacency(inp).detach()\n",
                              "        with torch.set_grad_enabled(self.learn_adjacency):\n"
                              "            adj = self.adjacency(inp)\n"),
                note="a grad mode computed at run time: it may record"),
        Example(_AGCN.replace("        adj = self.adjacency(inp).detach()\n",
                              "        with torch.inference_mode(False):\n            adj = self.adjacency(inp)\n"),
                note="`inference_mode(False)` changes nothing"),
        Example("import torch\nfrom torch import nn\n\n\nclass Model(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        self.backbone = nn.Linear(8, 16)\n        self.head = nn.Linear(16, 2)\n\n"
                "    def forward(self, x):\n        feat = self.backbone(x)\n        self.stat = feat.detach().mean()\n"
                "        return torch.sigmoid(self.head(feat))\n\n"
                "    def param_groups(self):\n        return [{'params': self.backbone.parameters(), 'lr': 1e-4},\n"
                "                {'params': self.head.parameters()}]\n",
                note="a detached copy for a statistic, while the output still reaches the backbone"),
        Example("import torch\nfrom torch import nn\n\n\nclass LinearProbe(nn.Module):\n    def __init__(self, dim, n):\n"
                "        super().__init__()\n        self.encoder = nn.Sequential(nn.Linear(32, dim), nn.ReLU())\n"
                "        self.classifier = nn.Linear(dim, n)\n\n    @property\n    def device(self):\n"
                "        return next(self.encoder.parameters()).device\n\n"
                "    def forward(self, x):\n        return self.classifier(self.encoder(x).detach())\n",
                note="a frozen encoder whose parameters the class reads for their device only"),
        Example(_AGCN.replace("        adj = self.adjacency(inp).detach()\n",
                              "        adj = self.adjacency(inp)\n        if self.training and not self.learn_adjacency:\n"
                              "            adj = adj.detach()\n"),
                note="a detach on one side of an `if` only"),
        Example(_AGCN.replace("        adj = self.adjacency(inp).detach()\n        return torch.matmul(adj, self.gc(inp))\n",
                              "        h, outs = inp, []\n        for t in range(4):\n            outs.append(self.gc(h))\n"
                              "            h = torch.tanh(self.adjacency(inp) + h)\n            if t % 2:\n"
                              "                h = h.detach()\n        return torch.stack(outs)\n"),
                note="a value carried to the next pass of a loop before its detach (truncated BPTT)"),
        Example(_AGCN.replace("        adj = self.adjacency(inp).detach()\n",
                              "        self.stat = self.adjacency(inp).detach().norm()\n"
                              "        adj = torch.utils.checkpoint.checkpoint(self.adjacency, inp, use_reentrant=False)\n"),
                note="the module handed to checkpoint as well as a detached statistic"),
        Example(_AGCN.replace("        adj = self.adjacency(inp).detach()\n        return torch.matmul(adj, self.gc(inp))\n",
                              "        self.stat = self.adjacency(inp).detach().norm()\n        return self.propagate(inp)\n\n"
                              "    def propagate(self, inp):\n        return torch.matmul(self.adjacency(inp), self.gc(inp))\n"),
                note="forward hands its work to a method of the class, which uses the module"),
        Example("import torch\nfrom torch import nn\n\n\nclass GAN(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        self.generator = nn.Linear(8, 8)\n\n"
                "    def forward(self, z):\n        with torch.no_grad():\n            return self.generator(z)\n\n"
                "    def training_step(self, z):\n        return self.generator(z).pow(2).mean()\n\n"
                "    def configure_optimizers(self):\n        return torch.optim.Adam(self.generator.parameters())\n",
                note="forward samples without gradient; another method trains the module"),
        Example(_AGCN + "\n    def pretrain_loss(self, inp):\n        return self.adjacency.forward(inp).pow(2).mean()\n",
                note="another method runs the module through one of its methods"),
        Example("import torch\nfrom torch import nn\n\n"
                "class EMATeacher(nn.Module):\n"
                "    def __init__(self):\n        super().__init__()\n        self.net = nn.Linear(4, 4)\n\n"
                "    def forward(self, x):\n        with torch.no_grad():\n            return self.net(x)\n",
                note="EMA/teacher network"),
        Example("import torch\nfrom torch import nn\n\n"
                "class RNNLM(nn.Module):\n"
                "    def __init__(self):\n        super().__init__()\n        self.rnn = nn.LSTM(4, 4)\n\n"
                "    def forward(self, x, hidden):\n"
                "        out, hidden = self.rnn(x, hidden)\n"
                "        hidden = tuple(h.detach() for h in hidden)\n"
                "        return out, hidden\n", note="BPTT hidden-state detach"),
        Example("import torch\nfrom torch import nn\n\n"
                "class VQ(nn.Module):\n"
                "    def __init__(self):\n        super().__init__()\n        self.codebook = nn.Embedding(16, 4)\n\n"
                "    def forward(self, z):\n"
                "        q = self.codebook(z.argmax(-1))\n"
                "        return z + (q - z).detach()\n", note="straight-through estimator"),
        Example("import torch\nfrom torch import nn\n\n"
                "class Probe(nn.Module):\n"
                "    def __init__(self):\n        super().__init__()\n"
                "        self.backbone = nn.Linear(4, 4)\n        self.head = nn.Linear(4, 2)\n\n"
                "    def forward(self, x):\n"
                "        with torch.no_grad():\n            f = self.backbone(x)\n"
                "        return self.head(f)\n", note="frozen backbone, trainable head"),
        Example("import torch\nfrom torch import nn\nimport torch.nn.functional as F\n\n"
                "class WSConv2d(nn.Conv2d):\n"
                "    def forward(self, x):\n"
                "        w = self.weight\n"
                "        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5)\n"
                "        return F.conv2d(x, w, self.bias, self.stride, self.padding)\n",
                note="weight standardisation through the parameter itself"),
        Example(_SAMPLED.format(method="sample", cut="torch.stack(logits, 1)"),
                note="the fix of inversecooking: the logits returned with their graph"),
        Example(_SAMPLED.format(method="sample", cut="torch.stack(logits, 1) if self.training else "
                                "torch.stack(logits, 1).detach()"),
                note="cut on one path only (the join keeps the gradient)"),
        Example(_HELPER.format(method="target_features", ret="h.detach()"),
                note="a method named as a stop-gradient (a target): cut on purpose"),
        Example(_HELPER.format(method="encode", ret="h.data if x is None else h"),
                note="a return that keeps the gradient on another path"),
        Example("import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        self.fc = nn.Linear(8, 1)\n\n    def forward(self, x):\n"
                "        y = self.fc(x)\n        return {\"out\": y, \"feat\": y.detach()}\n",
                note="a dict with a detached entry beside one that trains"),
        Example(_EXTRACTOR.format(store="        if self.detach:\n            output = output.clone().detach()\n"
                                        "        self.latents = output"),
                note="the hook's cut is a setting (`Extractor(vit, detach=False)`, the fix of CoCa-pytorch)"),
    ]

    def selects(self, site: Site) -> bool:
        # a parameter cut in one term that the output also reaches with its graph (`(t -
        # self.a.detach()) * p + (t - self.a) ** 2`, libauc's MIDAM losses) gets its gradient
        # there: the cut is a stop-gradient of that term, not of the parameter
        return super().selects(site) and not (site.variant == "parameter-cut" and dict(site.data).get("reaches_output"))

    def message(self, site: Site, ctx: RuleContext) -> str:
        if site.variant == "module-cut":
            several = " and " in site.detail
            verb, it, its = ("compute", "them", "their") if several else ("computes", "it", "its")
            return (f"forward cuts what {site.detail} {verb} from the graph (`.detach()` or no_grad) and no "
                    f"output reaches {it} otherwise: {its} parameters, which the class hands to an optimizer, never "
                    "get a gradient")
        if site.variant == "input-cut":
            inputs = dict(site.data).get("inputs", "its input")
            return (f"forward's output is cut from `{inputs}` by {site.detail}, and its callers pass a trainable "
                    "parameter there: that parameter never gets a gradient through this module")
        if site.variant == "parameter-cut":
            return (f"forward reads `{site.detail}`: the parameter is cut from the graph and never gets a "
                    "gradient")
        owner = dict(site.data).get("forward_of")
        hook = dict(site.data).get("hook")
        if owner and hook:
            # the cut is in a forward hook the class registers on a submodule (vit_pytorch's Extractor)
            return (f"the forward hook `{hook}` stores the hooked module's output cut by {site.detail}, and "
                    f"`{owner}.forward` builds its output from it: the parameters of the hooked module never get a "
                    "gradient through it")
        function = dict(site.data).get("function")
        if owner and function:
            # the cut is in a top-level function of the file the forward calls (deep_cage's deform_with_MVC)
            return (f"what `{function}()` returns is cut by {site.detail} from what `{owner}.forward` hands it, "
                    "and forward builds its output from it: the parameters upstream of the cut never get a gradient")
        if owner:
            # the cut is in a method the forward calls (`self.decoder.sample(...)`): reported there
            return (f"what this method returns is cut by {site.detail}, and `{owner}.forward` builds its output "
                    "from it: the parameters upstream of the cut never get a gradient")
        return (f"forward's output is cut from the module's parameters by {site.detail}: they never get a "
                "gradient")
