"""Two readings of the architecture model that a sweep of correct programs found wrong: how many
transformer blocks a stack holds (model.blocks.transformer_blocks: the final norm of a Pre-LN
stack, `self.ln_f` after the last block, is no Post-LN block of its own; nanoGPT with n_layer=8
was "a transformer of 9 blocks"), and identity-initialised layers (dirac_, eye_), which the
mean-field gain does not describe (model.propagation)."""

from __future__ import annotations

from gradlint.model.blocks import block_count
from gradlint.source import models, parse

HEAD = "import torch\nimport torch.nn as nn\n"

PRE_LN = HEAD + """
class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, h, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc(self.ln2(x))


class LM(nn.Module):
    def __init__(self, vocab=100, d=64, n_layers=5):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, 4) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx):
        x = self.emb(idx)
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))
"""

POST_LN = HEAD + """
class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, h, batch_first=True)
        self.ln1 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)

    def forward(self, x):
        x = self.ln1(x + self.attn(x, x, x, need_weights=False)[0])
        return self.ln2(x + self.fc(x))


class LM(nn.Module):
    def __init__(self, vocab=100, d=64, n_layers=5):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, 4) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx):
        x = self.emb(idx)
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))
"""


def _blocks(source: str) -> int:
    networks, _ = models.extract(parse("m.py", source))
    net = next(n for n in networks if n.name == "LM")
    assert net.forward_known
    return block_count([net.nodes, *net.variants])


def test_the_final_norm_of_a_pre_ln_stack_is_no_block() -> None:
    assert _blocks(PRE_LN) == 5


def test_post_ln_blocks_are_each_counted_once() -> None:
    assert _blocks(POST_LN) == 5


DIRAC = HEAD + """import torch.nn.functional as F


class DiracConvNet(nn.Module):
    def __init__(self, ch=32, depth=20, n_out=10):
        super().__init__()
        self.stem = nn.Conv2d(3, ch, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(ch, ch, 3, padding=1) for _ in range(depth))
        for c in self.convs:
            nn.init.dirac_(c.weight)
            nn.init.zeros_(c.bias)
        self.fc = nn.Linear(ch, n_out)

    def forward(self, x):
        x = F.relu(self.stem(x))
        for c in self.convs:
            x = F.relu(c(x))
        return self.fc(x.mean((2, 3)))
"""


def _gl101(tmp_path, text: str) -> list[int]:
    from gradlint.api import check_paths
    from gradlint.config import Config

    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "m.py").write_text(text)
    result = check_paths([tmp_path], Config(select=("GL101",), root=str(tmp_path)), use_cache=False, jobs=1)
    return [f.span.line for f in result.findings]


def test_identity_initialised_layers_are_not_a_vanishing_chain(tmp_path) -> None:
    """20 ReLU convs initialised by dirac_ (or eye_) map their input to itself: the same units
    stay active, and the measured first/last weight-gradient ratio is 1.0 (a sweep of correct
    programs), where mean field, a fresh half of the units at each layer, predicted 4e-4. The
    same net at PyTorch's default init is flagged."""
    assert _gl101(tmp_path, DIRAC) == []
    assert _gl101(tmp_path, DIRAC.replace("nn.init.dirac_(c.weight)", "pass")) != []
