"""GL106 deep-post-norm-transformer: Post-LN transformer blocks stacked deeper than the threshold."""

from __future__ import annotations

from typing import Iterator

from gradlint.findings import Finding, Severity
from gradlint.model.blocks import transformer_stacks
from gradlint.registry import Example, Option, Rule, RuleContext, positive_int
from gradlint.rules.architecture.common import location, networks

LIBRARY_POST_LN = """\
import torch.nn as nn

class Encoder(nn.Module):
    def __init__(self, d_model=512, depth=12):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, nhead=8)
        self.encoder = nn.TransformerEncoder(layer, num_layers=depth)

    def forward(self, x):
        return self.encoder(x)
"""

CUSTOM_POST_LN = """\
import torch.nn as nn

class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 8)
        self.norm1 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.norm2 = nn.LayerNorm(d)

    def forward(self, x):
        x = self.norm1(x + self.attn(x, x, x)[0])
        x = self.norm2(x + self.ff(x))
        return x

class Model(nn.Module):
    def __init__(self, d=256, n=16):
        super().__init__()
        self.blocks = nn.ModuleList([Block(d) for _ in range(n)])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x
"""


POST_NORM_CONV = """\
import torch.nn as nn

class UBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv1d(c, c, 5, padding=2, groups=c)
        self.act = nn.PReLU()
        self.conv2 = nn.Conv1d(c, c, 1)
        self.norm = nn.GroupNorm(1, c)

    def forward(self, x):
        return self.norm(x + self.conv2(self.act(self.conv1(x))))

class Separator(nn.Module):
    def __init__(self, c=128, n=16):
        super().__init__()
        self.blocks = nn.Sequential(*[UBlock(c) for _ in range(n)])

    def forward(self, x):
        return self.blocks(x)
"""

POST_LN_SUBLAYERS = """\
import torch.nn as nn

class Output(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.dense = nn.Linear(4 * d, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, h, x):
        return self.norm(self.dense(h) + x)

class Layer(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.up = nn.Linear(d, 4 * d)
        self.output = Output(d)

    def forward(self, x):
        return self.output(self.up(x), x)

class Encoder(nn.Module):
    def __init__(self, d=256, n=12):
        super().__init__()
        self.layers = nn.ModuleList([Layer(d) for _ in range(n)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x
"""


_MODULE_LEVEL = """\
import torch.nn as nn

layer = nn.TransformerEncoderLayer(d_model=512, nhead=8)
encoder = nn.TransformerEncoder(layer, num_layers=24)
"""


class DeepPostNormTransformer(Rule):
    """
    ## What it does
    Counts Post-LN transformer blocks — `nn.TransformerEncoderLayer`/`DecoderLayer` without
    `norm_first=True`, custom blocks written `norm(x + f(x))` where `f` attends, or holds no
    convolution in a network that attends or under a LayerNorm/RMSNorm (a post-norm convolution
    stack is no transformer, even with an attention pooling its output), ONNX
    `Add → LayerNormalization` —
    and reports a stack of `post-norm-depth` or more, at the code that stacks them
    (`self.blocks = nn.ModuleList([...])`, `nn.Sequential(*blocks)`) when the model builds the
    container, else at the first block: two models that stack one block class are two findings.

    ## Why is this bad?
    In a Post-LN transformer every residual path runs through a norm, so the identity path that
    lets deep networks train is gone; the parameters near the output get the largest gradients,
    and without a long learning-rate warm-up deep Post-LN stacks diverge or train poorly (Xiong
    et al. 2020; Liu et al. 2020 trace it to updates amplified through the stack more than to the
    gradients at initialisation, which need not show an imbalance yet). Pre-LN (`norm_first=True`) keeps a clean residual path and trains stably at
    depth.

    ## Example
    ```python
    layer = nn.TransformerEncoderLayer(512, nhead=8)
    self.encoder = nn.TransformerEncoder(layer, num_layers=12)
    ```

    ## Use instead
    ```python
    layer = nn.TransformerEncoderLayer(512, nhead=8, norm_first=True)
    ```
    or keep Post-LN with DeepNorm residual scaling (`norm(x * alpha + f(x))`).

    ## Options
    - `post-norm-depth` (default 12): the smallest stack reported.

    ## References
    - Xiong et al., *On Layer Normalization in the Transformer Architecture* (2020).
    - Wang et al., *DeepNet: Scaling Transformers to 1,000 Layers* (2022).
    - Liu et al., *Understanding the Difficulty of Training Transformers* (2020).
    """

    code = "GL106"
    name = "deep-post-norm-transformer"
    severity = Severity.WARNING
    summary = "Deep stack of Post-LN transformer blocks"
    inputs = frozenset({"python", "onnx"})
    options = {"post-norm-depth": Option(12, positive_int, "smallest Post-LN stack to report")}
    invalid = [Example(LIBRARY_POST_LN), Example(CUSTOM_POST_LN),
               Example(POST_LN_SUBLAYERS, note="BERT's output sublayers, `LayerNorm(dense(h) + x)`, "
                       "with the attention out of sight (another file, a dispatch table)"),
               Example(_MODULE_LEVEL, note="a stack built at module level from a layer bound there")]
    valid = [
        Example(_MODULE_LEVEL.replace("nhead=8)", "nhead=8, norm_first=True)"), note="Pre-LN, at module level"),
        Example(LIBRARY_POST_LN.replace("nhead=8)", "nhead=8, norm_first=True)"), note="Pre-LN"),
        Example(LIBRARY_POST_LN.replace("depth=12", "depth=6"), note="shallow"),
        Example(CUSTOM_POST_LN.replace("self.norm1(x + self.attn(x, x, x)[0])", "x + self.attn(self.norm1(x), x, x)[0]")
                .replace("self.norm2(x + self.ff(x))", "x + self.ff(self.norm2(x))"), note="custom Pre-LN"),
        Example(CUSTOM_POST_LN.replace("self.norm1(x + self.attn", "self.norm1(x * 2.0 + self.attn")
                .replace("self.norm2(x + self.ff", "self.norm2(x * 2.0 + self.ff"), note="DeepNorm residual scaling"),
        Example(CUSTOM_POST_LN.replace("nn.MultiheadAttention(d, 8)", "SelfAttention(d)")
                .replace("self.attn(x, x, x)[0]", "self.attn(x)").replace("nn.LayerNorm(d)", "nn.BatchNorm1d(d)")
                .replace("import torch.nn as nn\n", "import torch.nn as nn\nfrom mylib.attention import SelfAttention\n"),
                note="not read as a transformer: a BatchNorm after a body gradlint cannot see (the attention from a "
                     "library) looks as a convolution block built of a library's conv modules does"),
        Example(POST_NORM_CONV, note="a post-norm convolution stack, no transformer: nothing attends, the "
                "norm is a GroupNorm and the blocks convolve (asteroid's SuDORMRF, 16 U-blocks)"),
        Example(POST_NORM_CONV.replace("        self.blocks = nn.Sequential(*[UBlock(c) for _ in range(n)])\n",
                                       "        self.blocks = nn.Sequential(*[UBlock(c) for _ in range(n)])\n"
                                       "        self.pool = nn.MultiheadAttention(c, 4, batch_first=True)\n")
                .replace("        return self.blocks(x)\n",
                         "        h = self.blocks(x).transpose(1, 2)\n        return self.pool(h, h, h)[0]\n"),
                note="the convolution blocks are no transformer's sublayers though an attention pools their output"),
    ]

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        depth = ctx.options["post-norm-depth"]
        seen: set = set()
        for network in networks(ctx):
            # One definition of a block (gradlint.model.blocks), shared with GL201; with several
            # forward paths, the stack must be that deep on every one of them. An
            # encoder-decoder's two stacks count together (block_count: their depths add).
            per_path = [[[b for b in stack if b.post_norm] for stack in transformer_stacks(p)] for p in network.paths]
            count = min(sum(len(s) for s in stacks) for stacks in per_path)
            sizes = [len(s) for s in per_path[0] if s]
            blocks = [b for s in per_path[0] for b in s]
            if count < depth or not blocks:
                continue
            first = blocks[0].anchor
            # at the code that stacks the blocks (`self.blocks = nn.ModuleList([...])`) when the
            # model builds one container holding them all, else at the first block's norm
            sites = {network.stack_site(b.anchor.name) if b.anchor.name else None for b in blocks}
            where = sites.pop() if len(sites) == 1 and None not in sites else first.origin
            # one finding per stack and depth: the wrappers of one encoder share both, while two
            # models stacking one block class are each reported, each where it stacks them
            key = (where, count)
            if key in seen:
                continue
            seen.add(key)
            span, node = location(where)
            # an encoder-decoder: the stacks that add up to the count
            split = " + ".join(map(str, sizes))
            apart = "" if len(sizes) < 2 or sum(sizes) != count else (
                f"; {split} in an encoder and the decoder that reads it, whose depths add up" if len(sizes) == 2
                else f"; {split} on the paths of {len(sizes)} inputs, whose depths add up")
            yield ctx.finding(
                f"{count} Post-LN transformer blocks stacked in {network.name} (norm after the residual add{apart}): "
                f"every residual path runs through a norm, so a stack this deep needs a long learning-rate "
                f"warm-up or diverges (Xiong et al. 2020)",
                span, node=node, data={"network": network.name, "blocks": count},
            )
