"""Forward paths reuse a child module's nodes (lowering.Lowerer._child_nodes): a later path takes
the nodes of a child's earlier run when it decides that run's conditions alike, and the networks
are those of running every child again on every path."""

from __future__ import annotations

import pytest

from gradlint.source import lowering, models, parse

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"

# `flag`, `gate` and `last` have no default: each `if` on them is undecided, so forward has
# several paths. Block decides `gate` itself (every instance alike); Plain decides nothing.
SOURCE = HEAD + """
class Plain(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.act = nn.GELU()

    def forward(self, x):
        return self.act(self.fc(x))


class Block(nn.Module):
    def __init__(self, d, gate):
        super().__init__()
        self.gate = gate
        self.fc = nn.Linear(d, d)
        self.inner = Plain(d)

    def forward(self, x):
        y = self.inner(x)
        if self.gate:
            y = torch.sigmoid(self.fc(y))
        return x + y


class Net(nn.Module):
    def __init__(self, d, flag, gate, last):
        super().__init__()
        self.flag = flag
        self.last = last
        self.a = Block(d, gate)
        self.b = Block(d, gate)
        self.c = Plain(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        x = self.c(x)
        if self.flag:
            x = torch.tanh(x)
        x = self.a(x)
        x = self.b(x)
        if self.last:
            x = self.c(x)
        return self.head(x)
"""


def _networks():
    networks, _ = models.extract(parse("m.py", SOURCE))
    return {n.name: (n.nodes, n.variants, n.forward_known, n.params) for n in networks}


def test_reused_nodes_are_those_of_running_again(monkeypatch: pytest.MonkeyPatch) -> None:
    reused: list[int] = []
    again = lowering.Lowerer._decide_again

    def counted(self, trace):
        reused.append(len(trace))
        return again(self, trace)

    monkeypatch.setattr(lowering.Lowerer, "_decide_again", counted)
    with_reuse = _networks()
    assert reused, "no later path took a child's nodes: the test no longer exercises the reuse"
    assert any(n > 0 for n in reused), "only children that decide nothing were reused"
    # Without the reuse: every child runs again on every path.
    monkeypatch.setattr(lowering.Lowerer, "_decides_alike", lambda self, trace: False)
    assert _networks() == with_reuse
    net = with_reuse["Net"]
    assert net[2] and len(net[1]) == 7  # 2 x 2 x 2 paths, the first in `nodes`


def test_a_reuse_counts_the_steps_of_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's step budget is spent as if every child ran again on every path, so a budget
    runs out where it did without the reuse."""
    original = lowering.Lowerer.forward_paths

    def steps(reuse: bool) -> list[int]:
        after: list[int] = []

        def recorded(self, inst, prefix):
            out = original(self, inst, prefix)
            after.append(self.fm.meter.steps)
            return out

        with monkeypatch.context() as m:
            m.setattr(lowering.Lowerer, "forward_paths", recorded)
            if not reuse:
                m.setattr(lowering.Lowerer, "_decides_alike", lambda self, trace: False)
            models.extract(parse("m.py", SOURCE))
        return after

    assert steps(True) == steps(False)
