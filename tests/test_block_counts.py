"""How many transformer blocks a stack holds (model.blocks.transformer_blocks): the final norm
of a Pre-LN stack (`self.ln_f` after the last block) is no Post-LN block of its own (a sweep
of correct programs: nanoGPT with n_layer=8 was "a transformer of 9 blocks")."""

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
