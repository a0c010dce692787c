"""What forward paths cost (lowering.Lowerer.forward_paths): an `if` that only sets constants is
merged instead of doubling the paths, paths that cannot all be run go to the merged run at
once, and a class whose forward ran out of budget under one factory is not lowered again under
the others (factories._configured)."""

from __future__ import annotations

import pytest

from gradlint.source import factories, lowering, models, parse

HEAD = "import torch\nimport torch.nn as nn\n"


def _nets(source: str) -> dict:
    networks, _ = models.extract(parse("m.py", source))
    return {n.name: n for n in networks}


# Four undecided ifs that only set constants, then one whose sides run different layers: with
# each constant `if` a path of its own, 2**5 paths would pass MAX_PATHS and the class would be
# one merged run ("branches differ"); merged, the two sides of the last `if` are two paths.
CONSTANT_IFS = HEAD + """
class Net(nn.Module):
    def __init__(self, d, use_tanh):
        super().__init__()
        self.use_tanh = use_tanh
        self.fc = nn.Linear(d, d)
        self.head = nn.Linear(d, d)

    def forward(self, x):
        shift = [3, 3]
        pad = 0
        if x.shape[1] >= 7:
            shift[0] = 0
        if x.shape[2] >= 7:
            shift[1] = 0
        if x.shape[0] > 1:
            pad = 2
        else:
            pad = -1
        if x.shape[-1] == 5:
            pass
        x = self.fc(x)
        if self.use_tanh:
            x = torch.tanh(x)
        else:
            x = torch.relu(x)
        return self.head(x)
"""


def test_constant_ifs_are_merged_not_paths() -> None:
    net = _nets(CONSTANT_IFS)["Net"]
    assert net.forward_known
    assert not any(getattr(n, "kind", "") == "opaque" or type(n).__name__ == "Opaque" for n in net.nodes), net.nodes
    assert len(net.variants) == 1  # tanh and relu: two paths, the first in `nodes`


def test_an_if_with_a_call_or_arithmetic_is_still_a_decision() -> None:
    """Only literal assignments merge: an `if` that adds a residual (arithmetic on the input) or
    calls anything keeps its two paths."""
    source = HEAD + """
class Net(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        y = self.fc(x)
        if x.shape[1] == y.shape[1]:
            y = x + y
        return y
"""
    net = _nets(source)["Net"]
    assert net.forward_known and len(net.variants) == 1


def test_past_max_paths_the_merged_run_comes_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """With more decisions than MAX_PATHS, the paths would end in the merged run whatever they
    found: it is run after the first path, not after MAX_PATHS of them."""
    ifs = "".join(f"        if x.shape[{i}] > 1:\n            x = self.fc(x)\n" for i in range(lowering.MAX_PATHS))
    source = HEAD + f"""
class Net(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x):
{ifs}        return x
"""
    runs: list[int] = []
    forward = lowering.Lowerer.forward

    def counted(self, inst, prefix, *rest):
        if inst.cls.name == "Net":
            runs.append(1)
        return forward(self, inst, prefix, *rest)

    monkeypatch.setattr(lowering.Lowerer, "forward", counted)
    net = _nets(source)["Net"]
    assert len(runs) == 2  # the first path, then the merged run
    assert not net.variants


SPENT = HEAD + """
class Big(nn.Module):
    def __init__(self, depth=2, d=8):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(d, d) for _ in range(depth)])

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return x


def big_a():
    return Big(depth=3, d=16)


def big_b():
    return Big(depth=4, d=32)


def big_c():
    return Big(depth=5, d=64)
"""


def test_a_forward_out_of_budget_is_not_lowered_again(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []
    paths = lowering.Lowerer.forward_paths

    def exhausting(self, inst, prefix):
        if inst.cls.name == "Big" and self.fm.running is None and prefix == "" and tried is not None:
            out = paths(self, inst, prefix)
            if getattr(self.fm, "_configuring", False):
                tried.append(inst.cls.name)
                self.fm.meter.steps = self.fm.meter.limit + 1  # as a forward past its budget leaves it
            return out
        return paths(self, inst, prefix)

    configured = factories._configured

    def marked(fm, *args, **kwargs):
        fm._configuring = True
        try:
            return configured(fm, *args, **kwargs)
        finally:
            fm._configuring = False

    monkeypatch.setattr(lowering.Lowerer, "forward_paths", exhausting)
    monkeypatch.setattr(factories, "_configured", marked)
    _nets(SPENT)
    assert tried == ["Big"]  # big_a's ran out; big_b and big_c were not lowered again


def test_factories_within_budget_are_each_lowered() -> None:
    """The skip is for a forward that ran out: factories of a forward that fits are all kept."""
    nets = _nets(SPENT)
    assert {"big_a", "big_b", "big_c"} <= set(nets), sorted(nets)
