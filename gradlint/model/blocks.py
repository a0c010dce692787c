"""What a transformer block is, read from the IR: the one definition GL106 (deep Post-LN stacks) and
the training rules (GL201: a deep transformer needs clipping) both use.

A block is
- a library layer whose internals are known (`TransformerBlock`: nn.TransformerEncoderLayer...);
- a Post-LN sub-layer group: a residual add followed by a norm, `norm(x + f(x))`, whatever f is
  (the attention and the MLP sub-layers of one block share the block's module path, so they are
  one block); this is also how an ONNX graph shows a Post-LN block;
- a Pre-LN block: a residual add (the input among its parts, itself or through a projection
  shortcut as the ONNX lowering reads one) whose body or a parallel branch does attention (an
  `Attention` node: `nn.MultiheadAttention`, `F.scaled_dot_product_attention`, `softmax(q @ k^T)
  @ v` written out), `x + attn(norm(x))`; its MLP sub-layer that follows belongs to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from gradlint.model.ir import (
    INPUT_WHAT, Activation, Attention, Node, Norm, Param, Passthrough, Residual, TransformerBlock, walk,
)

@dataclass(frozen=True)
class Block:
    name: str  # module path of the block ('blocks.3'), or '#i' when the source gives none
    post_norm: bool | None  # None: a library layer whose norm_first is not known
    anchor: Node  # the node a finding about this block points at


def _block_id(name: str) -> str:
    # 'blocks.3.norm1' -> 'blocks.3': sublayers of one block share the prefix of their module path.
    return name.rsplit(".", 1)[0] if "." in name else name


def has_attention(nodes: Sequence[Node]) -> bool:
    return any(isinstance(n, Attention) for n in walk(tuple(nodes)))


def _plain_skip(node: Residual) -> bool:
    s = node.skip_scale
    return s is None or (not math.isnan(s) and s == 1.0)


def _transformer_sublayer(node: Residual, norm: Norm, attends: bool) -> bool:
    """Whether `norm(x + f(x))` is a transformer's sublayer: its body attends; or it holds no
    convolution and the path attends (the feed-forward sublayer beside the attention) or its
    norm is a LayerNorm/RMSNorm (`LayerNorm(dense(h) + x)` with the attention out of sight:
    BERT's output sublayers). A convolution block with a norm after its add is none, even in a
    network that attends somewhere (a pooling head); nor is a BatchNorm/GroupNorm after a body
    gradlint cannot see (a library's conv module looks as a library's attention does)."""
    parts = (*node.body, *node.branches)
    if has_attention(parts):
        return True
    if any(isinstance(p, Param) and p.op.startswith(("conv", "convtranspose")) for p in walk(parts)):
        return False
    return attends or norm.kind in ("layer", "rms")


def _has_input(node: Residual) -> bool:
    """The input is among the summed parts: itself (a skip), or through a projection shortcut
    (one layer at most, with norms and passthroughs, no activation and nothing opaque)."""
    if node.skip_scale != 0.0:
        return True
    return any(_projection(part) for part in (node.body, *node.branches))


def _projection(nodes: Sequence[Node]) -> bool:
    params = 0
    for n in nodes:
        if isinstance(n, Param):
            params += 1
        elif not (isinstance(n, (Norm, Passthrough)) or isinstance(n, Activation) and n.fn == "identity"):
            return False
    return params <= 1


def _rejoined(nodes: Sequence[Node], i: int) -> bool:
    """The sum of the residual at `i` comes back after the norm that follows it, in this
    sub-layer (transformers' ViT layer: `h = x + attn(...)`, `out = self.output(mlp(norm(h)), h)`):
    the norm is on the branch, the stream is `h`, and the layer is pre-LN. When `self.output` is
    a class of the same file, the front-end runs it with both tensors and the join is a Residual;
    when it is a block of another file, the IR cannot show that join (a Passthrough mark with
    `rejoins`): a norm followed by one is no Post-LN evidence. One that takes the value after the
    norm (BERT: `h = norm(x + attn(x))`, `self.output(mlp(h), h)`) is."""
    for j in range(i + 2, len(nodes)):
        n = nodes[j]
        if isinstance(n, (Residual, TransformerBlock)):
            return False
        if isinstance(n, Passthrough) and n.rejoins is not None and j - n.rejoins <= i:
            return True
    return False


def transformer_blocks(nodes: Sequence[Node]) -> list[Block]:
    """The transformer blocks of one forward path, in order, all stacks together."""
    return [b for stack in transformer_stacks(nodes) for b in stack]


def transformer_stacks(nodes: Sequence[Node]) -> list[list[Block]]:
    """The transformer blocks of one forward path, by stack, in order. A stack ends where another
    input of the network starts its path (the INPUT_WHAT mark: an encoder-decoder's target, after
    the encoder whose output the decoder reads in every cross-attention). The stacks say where
    the blocks are, not how deep the network is: their depths add (block_count).

    A residual with a norm after it is a Post-LN block when it is a transformer's sublayer
    (_transformer_sublayer): a post-norm convolution stack (asteroid's SuDORMRF, GroupNorm after
    each U-block's add) is no transformer, and the Post-LN results (Xiong et al.) are of
    transformers."""
    stacks: list[list[Block]] = [[]]
    blocks = stacks[0]
    attends: bool | None = None  # (walked once, when a post-norm residual first asks)
    for i, n in enumerate(nodes):
        if isinstance(n, Passthrough) and n.what == INPUT_WHAT:
            if blocks:
                blocks = []
                stacks.append(blocks)
            continue
        if isinstance(n, TransformerBlock):
            blocks.append(Block(n.name, None if n.norm_first is None else not n.norm_first, n))
            continue
        if not isinstance(n, Residual) or n.join != "add":
            continue
        nxt = nodes[i + 1] if i + 1 < len(nodes) else None
        # (a residual whose branch begins with its own norm is Pre-LN: the norm after the last
        # one is the stack's final norm, `ln_f`, not a Post-LN block of its own)
        pre_normed = bool(n.body) and isinstance(n.body[0], Norm)
        if isinstance(nxt, Norm) and _plain_skip(n) and not _rejoined(nodes, i) and not pre_normed:
            if attends is None:
                attends = has_attention(nodes)
            if not _transformer_sublayer(n, nxt, attends):
                continue
            bid = _block_id(nxt.name) if nxt.name else f"#{i}"
            if not blocks or blocks[-1].name != bid or blocks[-1].post_norm is not True:
                blocks.append(Block(bid, True, nxt))
        elif _has_input(n) and any(has_attention(part) for part in (n.body, *n.branches)):
            # x + attn(norm(x)), or a parallel block x + attn(norm(x)) + mlp(norm(x)) (GPT-J,
            # ViT-22B) whose attention may be the shorter part, or proj(x) + attn(norm(x)) where
            # the width changes (MViT, Hiera)
            blocks.append(Block(f"#{i}", False, n))
    return [stack for stack in stacks if stack]


def block_count(paths: Sequence[Sequence[Node]]) -> int:
    """Transformer blocks a network holds on every forward path (the fewest), all its stacks
    together: an encoder-decoder's depths add. Measured in torch (bench/transformer_depth.py),
    the first/last ratio of the decoder's per-layer gradient norms falls with the encoder's depth
    as well as its own (a 6-layer Post-LN decoder: 0.96 after a 1-layer encoder, 0.40 after 6,
    0.34 after 12), and a 6+6's decoder (0.40) is more unbalanced than any single stack of 12 or
    24 measured (0.76 to 1.28)."""
    return min((len(transformer_blocks(p)) for p in paths), default=0)
