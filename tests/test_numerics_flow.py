"""How the numerics front-end follows values through real model code: tuple returns and unpacking,
`self.forward`, function-valued criteria and wrapper methods, leaf tensors made trainable. The
flagged shapes and their look-alikes are rule examples (rules/numerics/examples.py); these are the
edges: what no example can show (no broken fix, no duplicated facts, cuts and merges kept)."""

from __future__ import annotations

from gradlint import cache
from gradlint.api import check_source
from gradlint.config import Config
from gradlint.source import parse
from gradlint.source.numerics import extract
from gradlint.rules.numerics.examples import ATTR, GAN


def findings(src: str, select: str = "GL3", **files: str):
    return check_source(src, Config(select=(select,)), extra_files=files or None)


def test_a_function_valued_criterion_is_reported_without_a_fix():
    # the call names the attribute (`self.loss_func(...)`): renaming it would call a method that
    # does not exist, so no fix is offered
    src = ATTR.format(loss="binary_cross_entropy", input="torch.sigmoid(self.fc(x))")
    found = [f for f in findings(src, "GL301") if f.code == "GL301"]
    assert len(found) == 1 and found[0].fix is None


def test_tuple_facts_round_trip_through_the_cache():
    f = extract(parse("x.py", GAN + "    validity, label = D(x)\n    return adversarial_loss(validity, y)\n"))
    (cls,) = f.classes
    assert cls.returns is None and cls.returns_items == ("sigmoid", None)
    (site,) = f.sites
    assert site.classes == ("Discriminator",) and site.element == 0
    assert cache.loads(cache.dumps(f)) == f


def test_an_element_message_names_the_element():
    src = GAN + "    validity, label = D(x)\n    return adversarial_loss(validity, y)\n"
    (f,) = [f for f in findings(src, "GL304") if f.code == "GL304"]
    assert "element 0 of the output of Discriminator, a sigmoid" in f.message


def test_rows_of_a_returned_tensor_are_what_the_tensor_is():
    # `probs[0]` of a forward that returns one softmax tensor is still probabilities
    policy = ("import torch\nfrom torch import nn\n\nclass Policy(nn.Module):\n"
              "    def forward(self, x):\n        return torch.softmax(self.fc(x), dim=-1)\n")
    src = ("import torch\nfrom policy import Policy\n\npolicy = Policy()\n\n"
           "def step(s):\n    probs = policy(s)\n    return -torch.log(probs[0]).sum()\n")
    assert "GL302" in [f.code for f in findings(src, **{"policy.py": policy})]


def test_a_tuple_made_under_no_grad_stays_cut_when_unpacked():
    src = ("import torch\nimport torch.nn.functional as F\n\n"
           "def f(net, x, y):\n"
           "    with torch.no_grad():\n"
           "        t = (torch.sigmoid(net(x)), y)\n"
           "    p, _ = t\n"
           "    return F.binary_cross_entropy_with_logits(p, y)\n")
    assert findings(src, "GL304") == []
    # the same tuple made with grad is followed into its elements
    assert [f.code for f in findings(src.replace("    with torch.no_grad():\n        t", "    t"), "GL304")] == ["GL304"]


def test_elements_that_differ_between_branches_are_not_followed():
    src = GAN.replace("def step(x, y):\n", "def step(x, y, swap):\n") + (
        "    if swap:\n        label, validity = D(x)\n    else:\n        validity, label = D(x)\n"
        "    return adversarial_loss(validity, y)\n")
    assert findings(src, "GL304") == []


def test_a_wrapper_method_walked_ahead_adds_no_facts_twice():
    src = ("import torch\nfrom torch import nn\n\n"
           "class M(nn.Module):\n"
           "    def forward(self, x):\n"
           "        return self.logp(x)\n\n"
           "    def logp(self, x):\n"
           "        return torch.log(torch.softmax(x, -1))\n\n"
           "    def again(self):\n"
           "        return self.again()\n\n"
           "    def other(self):\n"
           "        return self.again()\n")
    f = extract(parse("x.py", src))
    names = [fn.name for fn in f.functions]
    assert len(names) == len(set(names))
    assert [(s.kind, s.function) for s in f.sites] == [("log_of_probability", "M.logp")]
    assert [c.name for c in f.classes] == ["M"]


def test_a_leaf_made_trainable_by_tensor_requires_grad():
    src = ("import torch\n\ndef fit(x):\n"
           "    w = torch.tensor([0.5, 0.5], requires_grad=True)\n"
           "    return torch.acos(x.matmul(w))\n")
    assert [f.code for f in findings(src)] == ["GL308"]
    # data re-wrapped as a leaf (`torch.tensor(loss.item(), requires_grad=True)`) is no weight:
    # it stays a graph break
    broken = ("import torch\n\ndef step(model, x):\n"
              "    loss = torch.tensor(model(x).mean().item(), requires_grad=True)\n"
              "    loss.backward()\n")
    assert "GL402" in [f.code for f in findings(broken, "GL4")]


def test_a_method_of_a_cut_receiver_with_unknown_arguments_stays_cut():
    # `torch.from_numpy(a).index_add(0, idx, src)` with unknown arguments: still cut (only an
    # argument known to carry gradient, like a trainable W, outweighs the receiver)
    src = ("import torch\n\ndef step(a, idx, src):\n"
           "    loss = torch.from_numpy(a).index_add(0, idx, src).sum()\n"
           "    loss.backward()\n")
    assert "GL402" in [f.code for f in findings(src, "GL4")]


# -- plain values carried through the evaluator (V.value) ------------------------------------------
_ROOT = ("import torch\nfrom torch import nn\n{head}\n\nclass M(nn.Module):\n"
         "    def __init__(self):\n        super().__init__()\n        self.f = nn.Linear(8, 8)\n{init}\n"
         "    def forward(self, a, b):\n        x = self.f(a) - b\n{body}")


def _gl306(head: str = "", init: str = "", body: str = "") -> list[str]:
    return [f.code for f in findings(_ROOT.format(head=head, init=init, body=body), "GL306")]


def test_arithmetic_and_conversions_on_plain_numbers_are_folded():
    # 1 / 2 and float(1) / 2 are the 0.5 of a root; int(1.5) / 2 is 0.5 too, int(3.5) / 2 is not
    assert _gl306(body="        p = 1 / 2\n        return (x * x).sum(1) ** p\n") == ["GL306"]
    assert _gl306(body="        p = float(1) / 2\n        return (x * x).sum(1) ** p\n") == ["GL306"]
    assert _gl306(body="        p = int(1.5) / 2\n        return (x * x).sum(1) ** p\n") == ["GL306"]
    assert _gl306(body="        p = int(3.5) / 2\n        return (x * x).sum(1) ** p\n") == []
    # a value rebound later in the walk is the new one where it is read
    assert _gl306(body="        p = 0.5\n        p = p * 3\n        return (x * x).sum(1) ** p\n") == []


def test_an_element_of_a_tuple_of_plain_values():
    assert _gl306(body="        ps = (0.5, 2)\n        return (x * x).sum(1) ** ps[0]\n") == ["GL306"]
    assert _gl306(body="        ps = (0.5, 2)\n        return (x * x).sum(1) ** ps[1]\n") == []
    # a list may change in place: its items are not read
    assert _gl306(body="        ps = [0.5, 2]\n        return (x * x).sum(1) ** ps[0]\n") == []


def test_a_module_constant_a_function_declares_global_is_not_known():
    head = "\nEPS = 0.0\n\n\ndef set_eps(v):\n    global EPS\n    EPS = v\n"
    body = "        return torch.sqrt((x ** 2).sum(-1) + EPS)\n"
    assert _gl306(head=head, body=body) == []
    assert _gl306(head="\nEPS = 0.0\n", body=body) == ["GL306"]


def test_a_plain_value_set_in_init_is_not_read_as_a_constant_elsewhere():
    # `self.eps = 0.0` may be set again from outside (`model.eps = 1e-6`): forward does not read 0
    body = "        return torch.sqrt((x ** 2).sum(-1) + self.eps)\n"
    assert _gl306(init="        self.eps = 0.0\n", body=body) == []
    # within one function the attribute is read where it is set
    assert _gl306(body="        self.eps = 0.0\n" + body) == ["GL306"]


def test_an_element_index_through_a_name():
    # element 0 of the GAN discriminator's output is a sigmoid (into BCE-with-logits: GL304)
    assert [f.code for f in findings(GAN + "    i = 0\n    return adversarial_loss(D(x)[i], y)\n", "GL304")] == ["GL304"]
    assert findings(GAN + "    i = 1\n    return adversarial_loss(D(x)[i], y)\n", "GL304") == []


def test_joins_keep_equal_plain_values_of_one_type_only():
    from gradlint.source.engine.tensors import UNKNOWN, V, merge

    one = V(const=True, value=1)
    assert merge(one, V(const=True, value=1)).value == 1
    assert merge(one, V(const=True, value=2)).value is UNKNOWN
    # 1, 1.0 and True are equal in Python, but not one value to an index or a flag
    assert merge(one, V(const=True, value=1.0)).value is UNKNOWN
    assert merge(one, V(const=True, value=True)).value is UNKNOWN
    assert merge(one, V(const=True)).value is UNKNOWN
    assert UNKNOWN.value is UNKNOWN


def test_a_nested_function_reads_the_closure_not_the_module():
    # `eps` of the enclosing function shadows the module's `eps = 0.0` for the nested one
    src = ("import torch\n\neps = 0.0\n\n\ndef make():\n    eps = 1e-12\n\n    def dist(x, w):\n"
           "        w = torch.nn.Parameter(w)\n        return torch.sqrt(((x - w) ** 2).sum(-1) + eps)\n\n"
           "    return dist\n")
    assert findings(src, "GL306") == []
    assert [f.code for f in findings(src.replace("    eps = 1e-12\n", ""), "GL306")] == ["GL306"]


_HELPERS = ("import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\nnet = nn.Linear(4, 3)\n\n\n"
            "def occupancy(sdf, beta=0.1):\n    return torch.sigmoid(-sdf / beta)\n\n\n"
            "def probs(x):\n    return F.softmax(net(x), dim=-1)\n\n\n"
            "def safe(x):\n    return torch.sigmoid(net(x)).clamp(1e-6, 1 - 1e-6)\n\n\n"
            "def logits(x):\n    return net(x)\n\n\n")


def test_a_short_function_of_the_file_returns_its_probability_to_the_caller():
    # a NeRF occupancy helper, a classifier's `probs` helper: the caller logs or feeds a loss with
    # what the helper returns (module level, and a function defined below the helper)
    src = _HELPERS + ("def train(x, y):\n    sdf = net(x)[:, 0]\n    a = -torch.log(occupancy(sdf)).mean()\n"
                      "    return a + F.cross_entropy(probs(x), y) + nn.BCELoss()(occupancy(sdf), y.float())\n\n\n"
                      "x = torch.randn(5, 4)\nloss = torch.log(occupancy(net(x))).mean()\n")
    got = [(f.code, f.span.line) for f in findings(src)]
    assert got == [("GL302", 26), ("GL303", 27), ("GL301", 27), ("GL302", 31)]
    assert all(f.fix is None for f in findings(src))  # the sigmoid is written in another function


def test_a_function_that_clamps_returns_logits_or_is_ambiguous_stays_quiet():
    src = _HELPERS + ("def twice(x):\n    return torch.sigmoid(x)\n\n\ndef twice(x):\n    return x\n\n\n"
                      "@torch.jit.script\ndef wrapped(x):\n    return torch.sigmoid(x)\n\n\n"
                      "def train(x, y):\n    loss = F.cross_entropy(logits(x), y) - torch.log(safe(x)).mean()\n"
                      "    loss = loss + torch.log(twice(net(x))).mean() + torch.log(wrapped(net(x))).mean()\n"
                      "    with torch.no_grad():\n        metric = torch.log(occupancy(net(x)))\n"
                      "    return loss\n")
    assert [f.code for f in findings(src)] == []


_DECODER = ("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\n"
            "class VAE(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.enc = nn.Linear(784, 40)\n        self.fc4 = nn.Linear(20, 784)\n\n"
            "    def decode(self, z):\n        return {decode}\n\n"
            "    def forward(self, x):\n        h = self.enc(x)\n        mu, logvar = h[:, :20], h[:, 20:]\n"
            "        return self.decode(mu), mu, logvar\n\n\n"
            "def train(model, x):\n    recon, mu, logvar = VAE()(x)\n"
            "    return F.binary_cross_entropy(recon, x)\n")


def test_a_forward_returning_its_own_method_s_sigmoid_returns_a_probability():
    # the PyTorch VAE example: `decode` ends in a sigmoid, forward returns `self.decode(z), mu, logvar`
    got = [(f.code, f.span.line) for f in findings(_DECODER.format(decode="torch.sigmoid(self.fc4(z))"))]
    assert got == [("GL301", 23)]


def test_a_method_returning_logits_stays_quiet():
    assert findings(_DECODER.format(decode="self.fc4(z)")) == []


def test_a_method_returning_a_sigmoid_of_its_argument_is_one_of_what_the_call_passes():
    # `self.decode(mu)` with `return torch.sigmoid(z)`: a sigmoid of the encoder's output, as
    # `torch.sigmoid(mu)` written in forward is (cogdl's VGAE.decode); of a detached one, no gradient
    got = [(f.code, f.span.line) for f in findings(_DECODER.format(decode="torch.sigmoid(z)"))]
    assert got == [("GL301", 23)]
    detached = _DECODER.format(decode="torch.sigmoid(z)").replace("self.decode(mu)", "self.decode(mu.detach())")
    assert findings(detached) == []


_TUPLE_MODEL = ("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\n"
                "class VAE(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                "        self.fc = nn.Linear(784, 784)\n\n"
                "    def forward(self, x):\n        h = self.fc(x)\n        return torch.sigmoid(h), h\n\n\n"
                "def loss_function(recon_x, x):\n    return F.binary_cross_entropy(recon_x, x, reduction='sum')\n\n\n"
                "def train(x):\n    recon, logits = VAE()(x)\n{calls}")


def test_a_helper_fed_an_element_of_a_returned_tuple_by_every_caller_is_bound():
    # `recon, mu, logvar = model(x)` then `loss_function(recon, x, ...)`: element 0 is the sigmoid
    src = _TUPLE_MODEL.format(calls="    return loss_function(recon, x)\n")
    got = [(f.code, f.span.line) for f in findings(src)]
    assert got == [("GL301", 17)]
    assert "element 0 of the output of" in findings(src)[0].message


def test_a_helper_fed_another_element_or_disagreeing_elements_stays_quiet():
    # element 1 is the logits; two callers passing elements 0 and 1 do not agree
    assert findings(_TUPLE_MODEL.format(calls="    return loss_function(logits, x)\n")) == []
    both = "    return loss_function(recon, x) + loss_function(logits, x)\n"
    assert findings(_TUPLE_MODEL.format(calls=both)) == []


_BUILDER = ("import torch\nfrom torch import nn\n\n\ndef make_model(d_in=20, n_classes=5):\n{body}\n\n\n"
            "def train(xb, yb):\n    model = make_model()\n    criterion = nn.CrossEntropyLoss()\n"
            "    loss = criterion(model(xb), yb)\n    loss.backward()\n")


def test_a_builder_returning_a_sequential_that_ends_in_softmax_makes_a_softmax_model():
    body = "    return nn.Sequential(nn.Linear(d_in, 64), nn.ReLU(), nn.Linear(64, n_classes), nn.Softmax(dim=1))"
    got = [(f.code, f.span.line) for f in findings(_BUILDER.format(body=body))]
    assert got == [("GL303", 12)]


def test_a_builder_returning_logits_or_a_softmax_on_one_branch_only_stays_quiet():
    logits = "    return nn.Sequential(nn.Linear(d_in, 64), nn.ReLU(), nn.Linear(64, n_classes))"
    assert findings(_BUILDER.format(body=logits)) == []
    branch = ("    if n_classes > 2:\n        return nn.Sequential(nn.Linear(d_in, n_classes), nn.Softmax(dim=1))\n"
              "    return nn.Sequential(nn.Linear(d_in, n_classes))")
    assert findings(_BUILDER.format(body=branch)) == []


def test_gl306_the_square_of_an_exp_is_never_zero():
    # a Gaussian policy's `var = log_std.exp() ** 2` under `sqrt(2 * pi * var)`: exp is > 0
    assert _gl306(body="        var = x.exp() ** 2\n        return torch.sqrt(2 * 3.14159 * var)\n") == []
    assert _gl306(body="        std = torch.exp(0.5 * x)\n        return torch.sqrt((std ** 2).sum(-1))\n") == []


def test_gl306_the_square_of_a_value_that_can_be_zero_under_the_same_root_is_flagged():
    assert _gl306(body="        var = x ** 2\n        return torch.sqrt(2 * 3.14159 * var)\n") == ["GL306"]
    assert _gl306(body="        std = torch.abs(0.5 * x)\n        return torch.sqrt((std ** 2).sum(-1))\n") == ["GL306"]


_LAYERS = ("import torch\nfrom torch import nn\n\n\nclass MLP(nn.Module):\n    def __init__(self, d_in, hidden=(64, 32)):\n"
           "        super().__init__()\n        layers = []\n        for h in hidden:\n"
           "            layers += [nn.Linear(d_in, h), nn.ReLU()]\n            d_in = h\n{tail}"
           "        self.net = nn.Sequential(*layers)\n\n    def forward(self, x):\n        return self.net(x)\n\n\n"
           "def make_mlp(d_in):\n    layers = [nn.Linear(d_in, 16), nn.ReLU()]\n{builder}"
           "    return nn.Sequential(*layers)\n\n\n"
           "def train(x, y):\n    crit = nn.BCEWithLogitsLoss()\n    model = make_mlp(8)\n"
           "    return crit(MLP(8)(x), y) + crit(model(x), y)\n")


def test_a_sequential_of_a_list_that_ends_in_a_sigmoid_returns_a_sigmoid():
    # a tabular MLP built in a loop, its head appended last: `nn.Sequential(*layers)` ends in a sigmoid
    src = _LAYERS.format(tail="        layers += [nn.Linear(d_in, 1), nn.Sigmoid()]\n",
                         builder="    layers.append(nn.Linear(16, 1))\n    layers.append(nn.Sigmoid())\n")
    got = [(f.code, f.span.line) for f in findings(src)]
    assert got == [("GL304", 29), ("GL304", 29)]


def test_a_list_changed_after_its_sigmoid_or_ending_in_logits_stays_quiet():
    # the last statement naming the list is a branch, another method, an item assignment or a call
    # that takes it: what it ends with is unknown; a list ending in a Linear gives logits
    for tail in ("        layers += [nn.Linear(d_in, 1), nn.Sigmoid()]\n        if h:\n            layers.pop()\n",
                 "        layers += [nn.Linear(d_in, 1), nn.Sigmoid()]\n        layers[-1] = nn.Identity()\n",
                 "        layers += [nn.Linear(d_in, 1), nn.Sigmoid()]\n        strip_head(layers)\n",
                 "        layers += [nn.Linear(d_in, 1), nn.Sigmoid()]\n        layers = layers[:-1]\n",
                 "        layers += [nn.Sigmoid(), nn.Linear(d_in, 1)]\n"):
        src = _LAYERS.format(tail=tail, builder="    layers.append(nn.Linear(16, 1))\n")
        assert findings(src) == [], tail


_HEAD = ("import torch\nfrom torch import nn\n\n\nclass Head(nn.Module):\n    def __init__(self):\n"
         "        super().__init__()\n        self.conv = nn.Conv2d(16, 6, 1)\n\n    def forward(self, x):\n"
         "        p = self.conv(x)\n        return p[:, 0:2], p[:, 2].sigmoid(), p[:, 3:]\n\n\n"
         "def compute_loss(preds, t_obj, t_cls):\n    box, obj, cls = preds\n"
         "    return nn.BCELoss()({obj}, t_obj) + nn.BCEWithLogitsLoss()(cls, t_cls)\n\n\n"
         "def train(x, t_obj, t_cls):\n{calls}")


def test_an_element_unpacked_from_a_helper_parameter_is_what_every_caller_passes_there():
    # a detection loss `box, obj, cls = preds` on the head's output: element 1 is a sigmoid
    src = _HEAD.format(obj="obj", calls="    return compute_loss(Head()(x), t_obj, t_cls)\n")
    got = [(f.code, f.span.line) for f in findings(src)]
    assert got == [("GL301", 17)]
    assert "element 1 of the output of" in findings(src)[0].message


def test_an_unpacked_element_of_logits_or_of_a_parameter_callers_disagree_on_stays_quiet():
    # element 0 is a box regression, not a probability; callers passing different things, a
    # model output's element, or a tuple literal leave the parameter unknown
    assert findings(_HEAD.format(obj="box", calls="    return compute_loss(Head()(x), t_obj, t_cls)\n")) == []
    two = "    return compute_loss(Head()(x), t_obj, t_cls) + compute_loss(x, t_obj, t_cls)\n"
    assert findings(_HEAD.format(obj="obj", calls=two)) == []
    lit = "    h = Head()(x)\n    return compute_loss((h[0], h[1], h[2]), t_obj, t_cls)\n"
    assert findings(_HEAD.format(obj="obj", calls=lit)) == []


_TRAIN = ("import torch\n\n\ndef train(net, head, loader):\n    opt = torch.optim.SGD({trained}, lr=0.1)\n"
          "    for a, b in loader:\n        e1, e2 = net(a), net(b)\n"
          "        loss = torch.sqrt(((e1 - e2) ** 2).sum(dim=1)).mean()\n"
          "        opt.zero_grad()\n        loss.backward()\n        opt.step()\n")


def test_a_callable_whose_parameters_the_function_hands_to_an_optimizer_is_a_trained_model():
    # `net` is only a parameter, but `SGD(net.parameters())` says the loop trains it: its outputs
    # carry gradient (a Siamese distance of two of them is 0 for identical pairs)
    assert [f.code for f in findings(_TRAIN.format(trained="net.parameters()"), "GL306")] == ["GL306"]
    wrapped = "list(net.parameters()) + list(head.parameters())"
    assert [f.code for f in findings(_TRAIN.format(trained=wrapped), "GL306")] == ["GL306"]
    groups = '[{"params": net.parameters(), "lr": 1e-3}]'
    assert [f.code for f in findings(_TRAIN.format(trained=groups), "GL306")] == ["GL306"]


def test_a_callable_no_optimizer_of_the_function_trains_stays_unknown():
    # the optimizer trains `head` only; `net` may be a frozen feature extractor or a plain function
    assert findings(_TRAIN.format(trained="head.parameters()"), "GL306") == []
    # what a scheduler (or anything but an optimizer) is given shows nothing trained
    sched = _TRAIN.format(trained="head.parameters()").replace(
        "    for a", "    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)\n"
                    "    n = sum(p.numel() for p in net.parameters())\n    for a")
    assert findings(sched, "GL306") == []


_HELPER = ("import torch\nfrom torch import nn\n\n\ndef dist(e1, e2):\n    return torch.sqrt(((e1 - e2) ** 2).sum(dim=1))\n\n\n"
           "def angle(u, v):\n    return torch.acos((u * v).sum(-1))\n\n\n"
           "def train(loader):\n    net = nn.Linear(4, 4)\n    for a, b in loader:\n        loss = {loss}\n        loss.backward()\n")


def test_a_helper_every_caller_feeds_model_outputs_carries_their_gradient():
    # `def dist(e1, e2)` of a loss helper: its callers pass two outputs of a trained layer
    got = findings(_HELPER.format(loss="dist(net(a), net(b)).mean()"), "GL306")
    assert [(f.code, f.span.line) for f in got] == [("GL306", 6)]
    got = findings(_HELPER.format(loss="angle(net(a), net(b)).mean()"), "GL308")
    assert [(f.code, f.span.line) for f in got] == [("GL308", 10)]


def test_a_helper_fed_data_or_detached_outputs_stays_quiet():
    assert findings(_HELPER.format(loss="dist(a, b).mean() + net(a).sum()"), "GL306") == []
    detached = "dist(net(a).detach(), net(b).detach()).mean() + net(a).sum()"
    assert findings(_HELPER.format(loss=detached), "GL306") == []
    assert findings(_HELPER.format(loss="angle(a, b).mean() + net(a).sum()"), "GL308") == []


_CRITERION = ("import torch\nfrom torch import nn\n\n\nclass ContrastiveLoss(nn.Module):\n"
              "    def forward(self, e1, e2, same):\n        d = torch.sqrt(((e1 - e2) ** 2).sum(dim=1))\n"
              "        return (same * d ** 2 + (1 - same) * torch.relu(1.0 - d) ** 2).mean()\n\n\n"
              "class Trainer:\n    def __init__(self):\n        self.net = nn.Linear(4, 4)\n"
              "        self.crit = ContrastiveLoss()\n\n    def step(self, a, b, y):\n        return {step}\n\n\n"
              "def train(loader):\n    net = nn.Linear(4, 4)\n    crit = ContrastiveLoss()\n    for a, b, y in loader:\n"
              "        {loss}.backward()\n")


def test_calling_an_instance_of_a_module_class_of_the_file_binds_its_forward():
    # `crit = ContrastiveLoss(); crit(net(a), net(b), y)`: the calls of the instance are the
    # callers of its forward, so e1 and e2 carry the network's gradient
    src = _CRITERION.format(step="a", loss="crit(net(a), net(b), y)")
    assert [(f.code, f.span.line) for f in findings(src, "GL306")] == [("GL306", 7)]
    # the same through an attribute set in __init__
    src = _CRITERION.format(step="self.crit(self.net(a), self.net(b), y)", loss="Trainer().step(a, b, y)")
    assert [(f.code, f.span.line) for f in findings(src, "GL306")] == [("GL306", 7)]


def test_an_instance_called_with_data_only_leaves_its_forward_quiet():
    src = _CRITERION.format(step="self.crit(a, b, y)", loss="(crit(a, b, y) + net(a).sum())")
    assert findings(src, "GL306") == []


_SQUARE_MODEL = ("import torch\nfrom torch import nn\n\n\nclass Embed(nn.Module):\n    def __init__(self):\n"
                 "        super().__init__()\n        self.fc = nn.Linear(4, 4)\n\n    def forward(self, x):\n"
                 "        return self.fc(x)\n\n\n{helper}\n\n\ndef train(loader):\n    net = Embed()\n"
                 "    for a, b in loader:\n        loss = {loss}\n        loss.backward()\n")


def test_a_helper_fed_outputs_of_a_model_class_carries_them_and_keeps_the_callers_join():
    # the parameter stays open (the callers' join still names what they pass) and carries gradient
    helper = "def dist(e1, e2):\n    return torch.sqrt(((e1 - e2) ** 2).sum(dim=1))"
    got = findings(_SQUARE_MODEL.format(helper=helper, loss="dist(net(a), net(b)).mean()"), "GL306")
    assert [(f.code, f.span.line) for f in got] == [("GL306", 15)]
    src = _TUPLE_MODEL.format(calls="    return loss_function(recon, x)\n")
    (f,) = findings(src)
    assert "`recon_x` (element 0 of the output of" in f.message and "as every caller passes it" in f.message


def test_a_number_parameter_left_to_its_default_is_that_number():
    # a Charbonnier loss `sqrt(d ** 2 + eps ** 2)` with `eps=1e-3`: the default is the eps
    helper = "def charbonnier(p, t, eps=1e-3):\n    return torch.sqrt((p - t) ** 2 + eps ** 2).mean()"
    assert findings(_SQUARE_MODEL.format(helper=helper, loss="charbonnier(net(a), b)"), "GL306") == []
    # a default of 0, or 0 passed by every caller, is no eps
    zero = helper.replace("eps=1e-3", "eps=0.0").replace("eps ** 2", "eps")
    assert [f.code for f in findings(_SQUARE_MODEL.format(helper=zero, loss="charbonnier(net(a), b)"), "GL306")] == ["GL306"]
    passed = helper.replace("eps ** 2", "eps")
    assert [f.code for f in findings(_SQUARE_MODEL.format(helper=passed, loss="charbonnier(net(a), b, 0)"),
                                     "GL306")] == ["GL306"]


def test_an_absolute_value_clamped_below_one_is_strictly_inside_acos_domain():
    # `|<q1, q2>|` of unit quaternions clamped to 1 - eps lies in [0, 1 - eps]
    helper = "def quat_angle(q1, q2):\n    return 2 * torch.acos({d})"
    for d, expected in [("(q1 * q2).sum(-1).abs().clamp(max=1 - 1e-6)", []),
                        ("torch.clamp(torch.abs((q1 * q2).sum(-1)), max=1 - 1e-6)", []),
                        ("(q1 * q2).sum(-1).clamp(max=1 - 1e-6)", ["GL308"]),
                        ("(q1 * q2).sum(-1).abs().clamp(max=1.0)", ["GL308"])]:
        src = _SQUARE_MODEL.format(helper=helper.format(d=d), loss="quat_angle(net(a), net(b)).mean()")
        assert [f.code for f in findings(src, "GL308")] == expected, d


def test_a_cosine_similarity_times_a_margin_is_strictly_inside_acos_domain():
    # F.cosine_similarity lies in [-1, 1] (1.0000002 for equal vectors in float32); a margin
    # written as a product or a division keeps acos's gradient finite (test_numerics_measured)
    helper = "import torch.nn.functional as F\n\n\ndef angle(a, b):\n    cos = F.cosine_similarity(a, b, dim=-1)\n    return torch.acos({d})"
    for d, expected in [("cos * (1 - 1e-6)", []), ("(1 - 1e-6) * cos", []), ("cos / (1 + 1e-6)", []),
                        ("0.999999 * torch.cosine_similarity(a, b)", []),
                        ("cos", ["GL308"]), ("cos * 1.0", ["GL308"]), ("cos / 1", ["GL308"]),
                        # a number above 1 can push it out of the domain: still a hazard
                        ("cos * 1.5", ["GL308"]), ("cos / 0.5", ["GL308"]),
                        # a value not known to lie in [-1, 1]: a product is no margin
                        ("(a * b).sum(-1) * (1 - 1e-6)", ["GL308"])]:
        src = _SQUARE_MODEL.format(helper=helper.format(d=d), loss="angle(net(a), net(b)).mean()")
        assert [f.code for f in findings(src, "GL308")] == expected, d


def test_a_product_of_a_value_with_itself_written_as_a_call_is_a_square():
    # torch.mul(d, d) and d.mul(d) are d * d (the Sobel edge loss of sobel-operator-pytorch#1)
    for body, expected in [("torch.sum(torch.mul(d, d), dim=1)", ["GL306"]), ("d.mul(d).sum(dim=1)", ["GL306"]),
                           ("torch.multiply(d, d).sum(1)", ["GL306"]),
                           ("torch.sum(torch.mul(d, e1), dim=1)", []), ("d.mul(e1).sum(dim=1)", []),
                           ("torch.sum(torch.mul(d, d), dim=1) + 1e-8", [])]:
        helper = f"def dist(e1, e2):\n    d = e1 - e2\n    return torch.sqrt({body})"
        got = findings(_SQUARE_MODEL.format(helper=helper, loss="dist(net(a), net(b)).mean()"), "GL306")
        assert [f.code for f in got] == expected, body


_PIECES_HEAD = ("import torch\nfrom torch import nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n"
                "        super().__init__()\n        self.f = nn.Linear(8, 8)\n\n    def forward(self, a):\n        e = self.f(a)\n")


def test_pieces_of_a_tensor_keep_what_it_is() -> None:
    # split, chunk and unbind give pieces that are selections of the tensor (V.pieces): a
    # softmax's pieces are probabilities, unpacked or indexed
    body = ("        p = e.softmax(-1)\n        a, b = p.split(4, dim=-1)\n        c = torch.chunk(p, 2, -1)[0]\n"
            "        d, f = p.unbind(0)\n        return torch.log(a) + torch.log(c) + torch.log(d)\n")
    found = check_source(_PIECES_HEAD + body, Config(select=("GL302",)))
    assert [f.span.column for f in found] == [16, 31, 46]


def test_a_stored_dict_entry_is_forgotten_wherever_the_dict_may_change() -> None:
    # (a second read's cases: each clamps the entry where the walk does not see it)
    head = "import torch\n\nOUT = {}\n\n\ndef clamp_all(d):\n    d['p'] = d['p'].clamp(1e-4, 1 - 1e-4)\n\n\n"
    quiet = [
        "def f(outputs):\n    outputs['p'] = torch.sigmoid(outputs['p'])\n"
        "    outputs.update({'p': outputs['p'].clamp(1e-4, 1 - 1e-4)})\n    return torch.log(outputs['p']).sum()\n",
        "def f(outputs):\n    outputs['p'] = torch.sigmoid(outputs['p'])\n    clamp_all(outputs)\n"
        "    return torch.log(outputs['p']).sum()\n",
        "def f(outputs):\n    outputs['p'] = torch.sigmoid(outputs['p'])\n    o = outputs\n"
        "    o['p'] = o['p'].clamp(1e-4, 1 - 1e-4)\n    return torch.log(outputs['p']).sum()\n",
        "def f(outputs):\n    outputs['p'] = torch.sigmoid(outputs['p'])\n\n    def fix():\n"
        "        outputs['p'] = outputs['p'].clamp(1e-4, 1 - 1e-4)\n    fix()\n    return torch.log(outputs['p']).sum()\n",
        "def f(x):\n    OUT['p'] = torch.sigmoid(x)\n    g()\n    return torch.log(OUT['p']).sum()\n\n\n"
        "def g():\n    OUT['p'] = OUT['p'].clamp(1e-4, 1 - 1e-4)\n",
    ]
    for body in quiet:
        assert findings(head + body, "GL302") == [], body
    flagged = ("def f(outputs):\n    outputs['p'] = torch.sigmoid(outputs['p'])\n    z = outputs['q'] * 2\n"
               "    return torch.log(outputs['p']).sum() + z\n")
    assert [f.code for f in findings(head + flagged, "GL302")] == ["GL302"]


def test_a_loss_forward_hands_the_probability_only_to_the_function_its_name_is() -> None:
    helper = "def _neg_loss(pred, gt):\n    return -(torch.log(pred) * gt).sum()\n\n\n"
    caller = ("class ComputeLoss(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
              "        self.focal = FocalLoss()\n\n    def forward(self, x, target):\n"
              "        return self.focal(torch.sigmoid(x), target)\n")
    forward = "class FocalLoss(nn.Module):\n    def forward(self, out, target{extra}):\n{body}        return _neg_loss(out, target)\n\n\n"
    safe = "-(torch.log(pred.clamp(1e-4, 1 - 1e-4)) * gt).sum()"
    head = "import torch\nfrom torch import nn\n\n\n"
    flagged = head + helper + forward.format(extra="", body="") + caller
    assert [f.code for f in findings(flagged, "GL302")] == ["GL302"]
    for variant in (
            head + helper + forward.format(extra="", body=f"        def _neg_loss(pred, gt):\n            return {safe}\n") + caller,
            head + helper + f"def _safe(pred, gt):\n    return {safe}\n\n\n_neg_loss = _safe\n\n\n"
            + forward.format(extra="", body="") + caller,
            head + helper + forward.format(extra=", _neg_loss=None", body="") + caller):
        assert findings(variant, "GL302") == [], variant
