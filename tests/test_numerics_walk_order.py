"""The numerics walk reaches the same findings whatever order a file's functions and classes are
written in: callers above or below what they call, chains of calls longer than one round of
walking again, members read before their class is walked, recursion, a def replaced by a later
one of the same name (numerics.Extractor._settle)."""

from __future__ import annotations

import itertools

import pytest

from gradlint.api import check_source
from gradlint.config import Config

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


def found(src: str) -> list[tuple[str, int]]:
    return sorted((f.code, f.span.line) for f in check_source(src, Config(select=("GL",))))


def line_of(src: str, text: str) -> int:
    (line,) = [n for n, row in enumerate(src.splitlines(), 1) if text in row]
    return line


def layouts(units: list[str]) -> list[str]:
    """The program with its units in file order, reversed, and (for three or four) every order."""
    orders = itertools.permutations(units) if len(units) <= 4 else [units, units[::-1]]
    return [HEAD + "\n\n" + "\n\n".join(order) for order in orders]


CHAIN = [
    "def main():\n    model = nn.Sequential(nn.Linear(10, 5), MODEL_END)\n    run(model, nn.CrossEntropyLoss())\n",
    "def run(model, criterion):\n    for _ in range(3):\n        epoch(model, criterion)\n",
    "def epoch(model, criterion):\n    for _ in range(10):\n        step(model, criterion)\n",
    "def step(model, criterion):\n    compute(model, criterion)\n",
    "def compute(model, criterion):\n    x = torch.randn(4, 10)\n    y = torch.randint(0, 5, (4,))\n"
    "    loss = criterion(model(x), y)\n    loss.backward()\n",
]

EPS_CHAIN = [
    "class Embed(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 4)\n\n"
    "    def forward(self, x):\n        return self.fc(x)\n",
    "def loss_a(p, t, eps=0.0):\n    return loss_b(p, t, eps)\n",
    "def loss_b(p, t, eps=0.0):\n    return loss_c(p, t, eps)\n",
    "def loss_c(p, t, eps=0.0):\n    return loss_d(p, t, eps)\n",
    "def loss_d(p, t, eps=0.0):\n    return torch.sqrt((p - t) ** 2 + eps).mean()\n",
    "def train(loader):\n    net = Embed()\n    for a, b in loader:\n        loss = loss_a(net(a), b PASSED)\n"
    "        loss.backward()\n",
]

MEMBERS = [
    "def fit(loader):\n    trainer = Trainer(nn.Linear(10, 1), CRITERION)\n    crit = trainer.criterion\n"
    "    model = trainer.model\n    for x, y in loader:\n        loss = crit(torch.sigmoid(model(x)), y)\n"
    "        loss.backward()\n",
    "class Trainer:\n    def __init__(self, model, criterion):\n        self.model = model\n"
    "        self.criterion = criterion\n",
]

GETTER = [
    "class Trainer:\n    def __init__(self):\n        self.model = nn.Sequential(nn.Linear(8, 3), MODEL_END)\n\n\n"
    "trainer = Trainer()\n",
    "def get_model():\n    return trainer.model\n",
    "def train(loader):\n    model = get_model()\n    for x, y in loader:\n"
    "        F.cross_entropy(model(x), y).backward()\n",
]

RECURSION = [
    "def train(root):\n    model = nn.Sequential(nn.Linear(4, 3), MODEL_END)\n"
    "    tree_loss(root, model, nn.CrossEntropyLoss()).backward()\n",
    "def tree_loss(node, model, criterion):\n    loss = criterion(model(node.x), node.y)\n"
    "    for child in node.children:\n        loss = loss + tree_loss(child, model, criterion)\n    return loss\n",
]

MUTUAL = [
    "def train(x, y):\n    model = nn.Sequential(nn.Linear(4, 3), MODEL_END)\n"
    "    even(model, nn.CrossEntropyLoss(), x, y, 5).backward()\n",
    "def even(model, crit, x, y, n):\n    if n == 0:\n        return crit(model(x), y)  # even\n"
    "    return odd(model, crit, x, y, n - 1)\n",
    "def odd(model, crit, x, y, n):\n    if n == 0:\n        return crit(model(x), y)  # odd\n"
    "    return even(model, crit, x, y, n - 1)\n",
]


def _with(units: list[str], old: str, new: str) -> list[str]:
    return [u.replace(old, new) for u in units]


@pytest.mark.parametrize("src", layouts(_with(CHAIN, "MODEL_END", "nn.Softmax(dim=1)")))
def test_a_chain_of_five_calls_carries_the_model_and_criterion_in_any_order(src):
    # (one more link than rounds of walking again could reach before)
    assert found(src) == [("GL303", line_of(src, "loss = criterion(model(x), y)"))]


@pytest.mark.parametrize("src", layouts(_with(CHAIN, "MODEL_END", "nn.ReLU()")))
def test_a_chain_of_five_calls_without_softmax_is_quiet(src):
    assert found(src) == []


@pytest.mark.parametrize("src", layouts(_with(EPS_CHAIN, " PASSED", "")))
def test_an_eps_default_of_zero_reaches_the_root_through_four_calls(src):
    assert found(src) == [("GL306", line_of(src, "torch.sqrt("))]


@pytest.mark.parametrize("src", layouts(_with(EPS_CHAIN, " PASSED", ", eps=1e-6")))
def test_an_eps_the_caller_passes_through_four_calls_guards_the_root(src):
    assert found(src) == []


@pytest.mark.parametrize("src", layouts(_with(MEMBERS, "CRITERION", "nn.BCELoss()")))
def test_a_criterion_read_as_a_member_of_a_class_above_or_below(src):
    assert found(src) == [("GL301", line_of(src, "loss = crit(torch.sigmoid"))]


@pytest.mark.parametrize("src", layouts(_with(MEMBERS, "CRITERION", "nn.MSELoss()")))
def test_another_criterion_read_as_a_member_is_quiet(src):
    assert found(src) == []


@pytest.mark.parametrize("src", layouts(_with(GETTER, "MODEL_END", "nn.Softmax(dim=-1)")))
def test_a_getter_of_a_module_instance_member_in_any_order(src):
    # the getter read before the class was walked is asked again once it is
    assert found(src) == [("GL303", line_of(src, "F.cross_entropy"))]


@pytest.mark.parametrize("src", layouts(_with(GETTER, "MODEL_END", "nn.ReLU()")))
def test_a_getter_of_a_model_without_softmax_is_quiet(src):
    assert found(src) == []


@pytest.mark.parametrize("src", layouts(_with(RECURSION, "MODEL_END", "nn.Softmax(dim=-1)")))
def test_a_recursive_function_keeps_what_its_caller_passes(src):
    # its own call passes its parameter back: that is no other value to join
    assert found(src) == [("GL303", line_of(src, "loss = criterion(model(node.x)"))]


@pytest.mark.parametrize("src", layouts(_with(MUTUAL, "MODEL_END", "nn.Softmax(dim=-1)")))
def test_mutually_recursive_functions_keep_what_their_caller_passes(src):
    assert found(src) == sorted([("GL303", line_of(src, "# even")), ("GL303", line_of(src, "# odd"))])


@pytest.mark.parametrize("src", layouts(_with(MUTUAL, "MODEL_END", "nn.ReLU()")))
def test_mutually_recursive_functions_without_softmax_are_quiet(src):
    assert found(src) == []


EMBED = ("class Embed(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 4)\n\n"
         "    def forward(self, x):\n        return self.fc(x)\n")
TRAIN = "def train(loader):\n    net = Embed()\n    for a, b in loader:\n        loss = charbonnier(net(a), b)\n        loss.backward()\n"


def test_a_def_replaced_by_a_later_one_of_its_name_gets_no_callers_arguments():
    # the later charbonnier is the one that runs: its unguarded root is reported, the first one's
    # eps is not mistaken for it
    src = HEAD + "\n\n" + "\n\n".join([
        EMBED, TRAIN,
        "def charbonnier(p, t):\n    return torch.sqrt((p - t) ** 2 + 1e-6).mean()  # first\n",
        "def charbonnier(p, t):\n    return torch.sqrt(((p - t) ** 2).sum(-1)).mean()  # later\n",
    ])
    assert found(src) == [("GL306", line_of(src, "# later"))]
    # the other way round: the guarded one runs, nothing to report
    src = HEAD + "\n\n" + "\n\n".join([
        EMBED, TRAIN,
        "def charbonnier(p, t):\n    return torch.sqrt(((p - t) ** 2).sum(-1)).mean()  # first\n",
        "def charbonnier(p, t):\n    return torch.sqrt((p - t) ** 2 + 1e-6).mean()  # later\n",
    ])
    assert found(src) == []


def test_a_replaced_def_is_not_walked_with_the_callers_eps():
    # both unguarded, with eps=0.0 defaults: only the def that runs is reported
    body = "def charbonnier(p, t, eps=0.0):\n    return torch.sqrt((p - t) ** 2 + eps).mean()  # {}\n"
    src = HEAD + "\n\n" + "\n\n".join([EMBED, body.format("first"), body.format("later"), TRAIN])
    assert found(src) == [("GL306", line_of(src, "# later"))]
