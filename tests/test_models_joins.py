"""A module called with two tensors of one forward path (issue 9, item 6): transformers' ViT layer
`self.output(mlp(norm(h)), h)`, whose child adds `h` back. The child's forward runs with both
inputs on the path (source/forward.py, Lowerer.joined_outputs), so its sum is a `Residual` whose
body is the path since `h`; a child that does not add it, `blk(x, size)` with `size` from
`x.shape`, and the same value passed twice join nothing."""

from __future__ import annotations

from gradlint.api import check_paths
from gradlint.config import Config
from gradlint.describe import describe_network, render_text
from gradlint.model.blocks import transformer_blocks
from gradlint.model.ir import Norm, Opaque, Param, Passthrough, Residual, walk
from gradlint.source import models, parse

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"

OUTPUT = """
class Output(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.dense = nn.Linear(4 * d, d)
        self.dropout = nn.Dropout(0.1)

    def forward(self, hidden_states, input_tensor):
        hidden_states = self.dense(hidden_states)
        hidden_states = self.dropout(hidden_states)
        return hidden_states + input_tensor
"""

LAYER = """
class Layer(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 4)
        self.layernorm_before = nn.LayerNorm(d)
        self.layernorm_after = nn.LayerNorm(d)
        self.intermediate = nn.Linear(d, 4 * d)
        self.output = Output(d)

    def forward(self, x):
        h = self.attn(self.layernorm_before(x), x, x)[0] + x
        out = F.gelu(self.intermediate(self.layernorm_after(h)))
        return CALL
"""


def lower(body: str, path: str = "m.py"):
    networks, _ = models.extract(parse(path, HEAD + body))
    return {n.name: n for n in networks}


def kinds(nodes) -> list[str]:
    return [type(n).__name__ for n in nodes]


def names(nodes) -> list[str]:
    return [n.name for n in nodes if isinstance(n, (Param, Norm))]


def vit(call: str = "self.output(out, h)", output: str = OUTPUT):
    return lower(output + LAYER.replace("CALL", call))["Layer"]


def test_the_child_adding_its_second_tensor_is_a_residual_of_the_path_since_that_tensor():
    net = vit()
    assert kinds(net.nodes) == ["Residual", "Residual"]
    second = net.nodes[1]
    # the nodes between `h` and the call, then the child's own before its add
    assert names(second.body) == ["layernorm_after", "intermediate", "output.dense"]
    assert kinds(second.body) == ["Norm", "Param", "Activation", "Param", "Passthrough"]
    assert second.skip_scale is None and second.branches == () and second.join == "add"
    # no mark is left: the join is in the IR
    assert not any(isinstance(n, Passthrough) and n.rejoins is not None for n in walk(net.nodes))
    # pre-LN: the norm after the first sum is on the branch, one block with its attention
    assert [b.post_norm for b in transformer_blocks(net.nodes)] == [False]


def test_the_second_tensor_given_by_keyword_joins_as_well():
    net = vit("self.output(out, input_tensor=h)")
    assert kinds(net.nodes) == ["Residual", "Residual"] and net.nodes == vit().nodes


def test_bert_layout_the_normed_sum_re_entering_stays_post_ln():
    net = lower(OUTPUT + """
class Layer(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.attn = nn.Linear(d, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.intermediate = nn.Linear(d, 4 * d)
        self.output = Output(d)

    def forward(self, x):
        h = self.norm1(self.attn(x) + x)
        return self.norm2(self.output(F.gelu(self.intermediate(h)), h))
""")["Layer"]
    assert kinds(net.nodes) == ["Residual", "Norm", "Residual", "Norm"]
    assert names(net.nodes[2].body) == ["intermediate", "output.dense"]
    assert [b.post_norm for b in transformer_blocks(net.nodes)] == [True, True]


def test_a_child_that_does_not_add_its_second_tensor_joins_nothing():
    shaped = OUTPUT.replace("return hidden_states + input_tensor", "return hidden_states.view_as(input_tensor)")
    net = vit(output=shaped)
    assert kinds(net.nodes) == ["Residual", "Norm", "Param", "Activation", "Param", "Passthrough"]
    # exactly the nodes of the child called with its first tensor alone
    alone = shaped.replace("def forward(self, hidden_states, input_tensor):", "def forward(self, hidden_states):")
    alone = alone.replace(".view_as(input_tensor)", "")
    assert vit("self.output(out)", output=alone).nodes == net.nodes


def test_a_size_read_from_the_shape_is_no_second_tensor():
    body = """
class Blk(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x, size):
        H, W = size
        return self.fc(x).reshape(-1, H, W) + x

class Net(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.stem = nn.Linear(d, d)
        self.blk = Blk(d)

    def forward(self, x):
        x = self.stem(x)
        size = x.shape[-2:]
        return self.blk(torch.relu(x), SIZE)
"""
    with_size = lower(body.replace("SIZE", "size"))["Net"]
    literal = lower(body.replace("SIZE", "(4, 4)"))["Net"]
    assert with_size.nodes == literal.nodes
    assert kinds(with_size.nodes) == ["Param", "Activation", "Residual"]
    assert names(with_size.nodes[2].body) == ["blk.fc"]


def test_the_same_value_passed_twice_joins_nothing():
    net = vit("self.output(out, out)")
    assert kinds(net.nodes) == ["Residual", "Norm", "Param", "Activation", "Param", "Passthrough"]


def test_a_decoder_concatenating_its_skip_is_a_cat_residual():
    net = lower("""
class Up(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.conv = nn.Conv2d(2 * c, c, 3, padding=1)

    def forward(self, x, skip):
        return self.conv(torch.cat([self.up(x), skip], dim=1))

class UNet(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.enc = nn.Conv2d(c, c, 3, padding=1)
        self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.dec = Up(c)

    def forward(self, x):
        skip = torch.relu(self.enc(x))
        return self.dec(torch.relu(self.down(skip)), skip)
""")["UNet"]
    assert kinds(net.nodes) == ["Param", "Activation", "Residual", "Param"]
    cat = net.nodes[2]
    assert cat.join == "cat" and cat.skip_scale is None
    assert names(cat.body) == ["down", "dec.up"]
    assert names(net.nodes[3:]) == ["dec.conv"]
    assert not [n for n in walk(net.nodes) if isinstance(n, Opaque)]


def test_a_child_whose_forward_is_not_followed_keeps_the_nodes_since_the_earlier_value():
    net = vit(output=OUTPUT.replace("return hidden_states + input_tensor", "return"))
    assert kinds(net.nodes) == ["Residual", "Norm", "Param", "Activation", "Opaque"]
    assert net.nodes[-1].what == "Output: forward not followed"


def test_gradlint_model_shows_the_residual_of_the_vit_style_layer():
    text = render_text([describe_network(vit(), "m.py")])
    lines = text.splitlines()
    assert [line.split()[0] for line in lines[1:3]] == ["residual", "|"]
    second = next(i for i, line in enumerate(lines) if line.split()[:1] == ["residual"] and i > 1)
    body = [line.split()[2] for line in lines[second + 1:] if line.lstrip().startswith("|")]
    assert body[:4] == ["layernorm_after", "intermediate", "-", "output.dense"]
    assert "0 opaque nodes" in text and "earlier value" not in text


CROSS_OUTPUT = """import torch.nn as nn


class Output(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.dense = nn.Linear(4 * d, d)

    def forward(self, hidden_states, input_tensor):
        return self.dense(hidden_states) + input_tensor
"""

CROSS_MODEL = """import torch
import torch.nn as nn
import torch.nn.functional as F

from out import Output


class Layer(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 4)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.intermediate = nn.Linear(d, 4 * d)
        self.output = Output(d)

    def forward(self, x):
        FORWARD


class Deep(nn.Module):
    def __init__(self, d=64, depth=16):
        super().__init__()
        self.blocks = nn.Sequential(*[Layer(d) for _ in range(depth)])

    def forward(self, x):
        return self.blocks(x)
"""

PRE_LN = """h = self.attn(self.norm1(x), x, x)[0] + x
        return self.output(F.gelu(self.intermediate(self.norm2(h))), h)"""
POST_LN = """h = self.norm1(self.attn(x, x, x)[0] + x)
        return self.norm2(self.output(F.gelu(self.intermediate(h)), h))"""


def test_a_block_of_another_file_given_an_earlier_value_keeps_the_mark(tmp_path):
    # Its forward is re-run in its own file with one input, so the join is not followed; the
    # mark keeps a pre-LN layer from reading as Post-LN, and BERT's layout is still Post-LN.
    def gl106(forward: str) -> list[str]:
        root = tmp_path / ("pre" if forward is PRE_LN else "post")
        root.mkdir()
        (root / "pyproject.toml").write_text("")
        (root / "out.py").write_text(CROSS_OUTPUT)
        (root / "model.py").write_text(CROSS_MODEL.replace("FORWARD", forward))
        result = check_paths([str(root)], Config(root=str(root)), use_cache=False, jobs=1)
        assert not result.internal_errors
        return [f.code for f in result.findings if f.code == "GL106"]

    assert gl106(PRE_LN) == []
    assert gl106(POST_LN) == ["GL106"]
