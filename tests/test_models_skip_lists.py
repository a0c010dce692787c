"""A forward's own lists (source/forward.py, ForwardInterpreter.list_method) and the parts of a
concatenation nothing is known of (ForwardInterpreter.join): a U-Net that keeps its encoder's
outputs in a list and concatenates them into the decoder (speechbrain's SEGAN generator) was
modelled as one plain chain, the skips dropped, and GL101 said its first layers barely train."""

from __future__ import annotations

from gradlint.api import check_paths
from gradlint.config import Config
from gradlint.model.ir import Opaque, Param, Residual, walk
from gradlint.source import models, parse

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"

UNET = """
class UNet(nn.Module):
    def __init__(self, depth=6):
        super().__init__()
        self.enc = nn.ModuleList([nn.Linear(8, 8) for _ in range(depth)])
        self.dec = nn.ModuleList([nn.Linear(16, 8) for _ in range(depth)])

    def forward(self, x):
        skips = []
        for layer in self.enc:
            x = F.leaky_relu(layer(x), 0.3)
            SAVE
        for i, layer in enumerate(self.dec):
            x = torch.cat((x, TAKE), 1)
            x = F.leaky_relu(layer(x), 0.3)
        return x
"""


def lower(body: str):
    networks, _ = models.extract(parse("m.py", HEAD + body))
    return {n.name: n for n in networks}


def nesting(nodes) -> int:
    """How deep the concatenation residuals nest."""
    inner = [nesting(n.body) for n in nodes if isinstance(n, Residual) and n.join == "cat"]
    return 1 + max(inner) if inner else 0


def test_skips_appended_and_indexed_are_nested_concatenations():
    net = lower(UNET.replace("SAVE", "skips.append(x.clone())").replace("TAKE", "skips[-1 * (i + 1)]"))["UNet"]
    assert net.forward_known and not any(isinstance(n, Opaque) for n in walk(net.nodes))
    # enc.0's output is concatenated into the last decoder layer: the outermost skip
    assert [n.name for n in net.nodes if isinstance(n, Param)] == ["enc.0", "dec.5"]
    assert nesting(net.nodes) == 5
    assert len([n for n in walk(net.nodes) if isinstance(n, Param)]) == 12


def test_skips_popped_are_the_same_skips():
    net = lower(UNET.replace("SAVE", "skips.append(x)").replace("TAKE", "skips.pop()"))["UNet"]
    assert [n.name for n in net.nodes if isinstance(n, Param)] == ["enc.0", "dec.5"] and nesting(net.nodes) == 5
    inserted = lower(UNET.replace("SAVE", "skips.insert(0, x)").replace("TAKE", "skips[i]"))["UNet"]
    assert nesting(inserted.nodes) == 5


def test_no_vanishing_finding_through_the_skips(tmp_path):
    (tmp_path / "unet.py").write_text(HEAD + UNET.replace("depth=6", "depth=12").replace(
        "SAVE", "skips.append(x)").replace("TAKE", "skips[-1 * (i + 1)]"))
    plain = HEAD + UNET.replace("depth=6", "depth=12").replace("SAVE", "pass").replace(
        "torch.cat((x, TAKE), 1)", "torch.cat((x, x), 1)")
    (tmp_path / "plain.py").write_text(plain)
    found = check_paths([tmp_path], Config(root=str(tmp_path)), use_cache=False, jobs=1)
    # the same 24 layers without the skips vanish; with them the gradient reaches enc.0 in two
    assert sorted((f.path.rsplit("/", 1)[-1], f.code) for f in found.findings) == [("plain.py", "GL101")]


def test_an_unknown_part_computed_from_the_path_is_not_a_constant():
    # a list the forward cannot follow (filled by a helper): its parts may be earlier outputs
    net = lower(UNET.replace("SAVE", "self.keep(skips, x)").replace("TAKE", "skips[-1 * (i + 1)]")
                + "\n    def keep(self, skips, x):\n        skips.append(x)\n")["UNet"]
    assert any(isinstance(n, Opaque) and n.what == "concatenation of unknown parts" for n in walk(net.nodes))


def test_a_class_token_and_a_position_table_are_constants_beside_the_path():
    body = """
class Embed(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.proj = nn.Linear(4, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.reg_token = nn.Parameter(torch.zeros(1, 1, d))

    def forward(self, x):
        x = self.proj(x)
        extra = []
        extra.append(self.reg_token.expand(x.shape[0], -1, -1))
        x = torch.cat(extra + [x], dim=1)
        return torch.cat((self.cls_token.expand(x.size(0), -1, -1), x), dim=1)
"""
    net = lower(body)["Embed"]
    assert net.forward_known and not any(isinstance(n, Opaque) for n in walk(net.nodes))
    assert [n.name for n in walk(net.nodes) if isinstance(n, Param)] == ["proj"]


JK = """
class JumpingKnowledge(nn.Module):
    def __init__(self, depth=12):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(8, 8) for _ in range(depth)])
        self.head = nn.Linear(8 * depth, 2)

    def forward(self, x):
        xs = []
        for layer in self.layers:
            x = torch.sigmoid(layer(x))
            xs.append(x)
        return self.head(torch.cat(xs, dim=-1))
"""


def test_every_layers_output_concatenated_is_nested_joins_not_one_deep_chain(tmp_path):
    # a jumping-knowledge network (torch_geometric): each layer's output reaches the head in one
    # join; measured in torch, layers.0's weight gradient is a fifth of layers.11's, not 1e-9
    net = lower(JK)["JumpingKnowledge"]
    assert nesting(net.nodes) == 11
    (tmp_path / "jk.py").write_text(HEAD + JK)
    found = check_paths([tmp_path], Config(root=str(tmp_path)), use_cache=False, jobs=1)
    assert [f.code for f in found.findings] == []


def test_a_list_that_cannot_be_followed_is_not_a_list_of_constants():
    # appended through another name (an alias made before the appends): the pops find nothing
    alias = UNET.replace("skips = []", "feats = []\n        skips = feats").replace(
        "SAVE", "feats.append(x)").replace("TAKE", "skips.pop()")
    net = lower(alias)["UNet"]
    assert any(isinstance(n, Opaque) and n.what == "concatenation of unknown parts" for n in walk(net.nodes))
