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
