"""The architecture rules (GL101-GL107, written once for the IR) on ONNX models, and the
acceptance check that an ONNX chain and the same chain in PyTorch source predict the same gain."""

from __future__ import annotations

import importlib.util
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from gradlint.api import check_source
from gradlint.config import Config
from gradlint.model.ir import Param
from gradlint.model.propagation import analyse
from gradlint.onnx import extract_onnx
from gradlint.source import extract_python

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("onnx_fixture_gen", ROOT / "fixtures" / "onnx" / "generate.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)  # type: ignore[union-attr]


def codes(model, select: str = "GL1") -> list[str]:
    return [f.code for f in check_source(model.SerializeToString(), Config(select=(select,)), path="model.onnx")]


def test_deep_sigmoid_mlp_with_std_one_is_gl101():
    # Measured in torch on these very weights (batch 256): first/last gradient ratio 7.5e-8.
    found = check_source(gen.mlp(depth=30, width=16, std=1.0).SerializeToString(), Config(select=("GL101",)),
                         path="model.onnx")
    (f,) = found
    assert f.code == "GL101" and "30 layers" in f.message
    assert f.node is not None and f.node.name == "/body/body.0/Gemm" and f.node.op_type == "Gemm"
    assert f.data_dict["predicted"] < 1e-3


def test_wide_sigmoid_mlp_with_std_one_is_gl102():
    # width 256 measured 528 in torch; width 512 is further into the chaotic phase.
    assert "GL102" in codes(gen.mlp(depth=30, width=512, std=1.0))


def test_he_init_relu_mlp_is_quiet():
    assert codes(gen.mlp(depth=30, width=64, act="Relu", std="he")) == []


def test_post_ln_depth_14_is_gl106_and_pre_ln_is_not():
    assert codes(gen.post_ln_stack(depth=14), "GL106") == ["GL106"]
    assert codes(gen.post_ln_stack(depth=14, pre_ln=True), "GL106") == []
    assert codes(gen.post_ln_stack(depth=6), "GL106") == []


def _gl106_blocks(model) -> list[int]:
    found = check_source(model.SerializeToString(), Config(select=("GL106",)), path="model.onnx")
    return [f.data_dict["blocks"] for f in found]


@pytest.mark.parametrize("kw,blocks", [
    ({"decoder": 12}, [12]),  # the memory feeds every cross-attention: its fan-out is no stack
    ({"decoder": 6, "encoder": 6}, [12]),  # encoder, then decoder, as the source reader counts
    ({"decoder": 2, "encoder": 12}, [14]),
    ({"decoder": 6}, []),  # shallow
    ({"decoder": 3, "encoder": 3}, []),
    ({"decoder": 12, "pre_ln": True}, []),
    ({"decoder": 6, "encoder": 6, "pre_ln": True}, []),
])
def test_decoder_stacks_are_counted_on_the_target_stream(kw, blocks):
    assert _gl106_blocks(gen.transformer(**kw)) == blocks


def test_an_encoder_decoder_is_lowered_encoder_first_and_no_chain_crosses_into_the_decoder():
    from gradlint.model.blocks import transformer_blocks
    from gradlint.model.ir import INPUT_WHAT, Passthrough

    (net,) = extract_onnx_model(gen.transformer(decoder=6, encoder=6)).networks
    names = [b.name for b in transformer_blocks(net.nodes)]
    assert names == [f"encoder.layers.{i}" for i in range(6)] + [f"decoder.layers.{i}" for i in range(6)]
    # where the decoder's own input starts its path: a mark, which ends every chain
    (mark,) = [n for n in net.nodes if isinstance(n, Passthrough) and n.what == INPUT_WHAT]
    assert mark.name == "tgt"
    assert net.nodes.index(mark) == next(i for i, n in enumerate(net.nodes) if "decoder" in n.name) - 1
    for chain in analyse(net).chains:
        parts = {s.layer.name.split(".")[0] for s in chain.steps}
        assert len(parts) == 1, [s.layer.name for s in chain.steps]


def _sigmoid_decoder(encoder: bool):
    """20 x (MatMul + Sigmoid), std 1, on `tgt`, then one cross-attention sub-layer reading
    `memory`: a graph input, or the output of 3 x (MatMul + Tanh) on `src`."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def layer(scope, x, act, std=1.0):
        # each layer's weights drawn from its own seed: the same with and without the encoder
        rng = np.random.default_rng(zlib.crc32(scope.encode()))
        inits.append(numpy_helper.from_array(rng.normal(0, std, (16, 16)).astype(np.float32), f"{scope}.weight"))
        nodes.append(helper.make_node("MatMul", [x, f"{scope}.weight"], [f"/{scope}/mm"], name=f"/{scope}/MatMul"))
        if not act:
            return f"/{scope}/mm"
        nodes.append(helper.make_node(act, [f"/{scope}/mm"], [f"/{scope}/a"], name=f"/{scope}/{act}"))
        return f"/{scope}/a"

    memory = "src" if encoder else "memory"
    for i in range(3 if encoder else 0):
        memory = layer(f"encoder.{i}", memory, "Tanh", 0.25)
    h = "tgt"
    for i in range(20):
        h = layer(f"body.{i}", h, "Sigmoid")
    q, k, v = layer("attn.q", h, "", 0.25), layer("attn.k", memory, "", 0.25), layer("attn.v", memory, "", 0.25)
    nodes += [helper.make_node("Transpose", [k], ["/kT"], perm=[1, 0]),
              helper.make_node("MatMul", [q, "/kT"], ["/scores"]),
              helper.make_node("Softmax", ["/scores"], ["/p"], axis=-1),
              helper.make_node("MatMul", ["/p", v], ["/ctx"])]
    o = layer("attn.out", "/ctx", "", 0.25)
    nodes.append(helper.make_node("Add", [h, o], ["y"], name="/Add"))
    names = ("tgt", "src" if encoder else "memory")
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 16]) for n in names]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])
    graph = helper.make_graph(nodes, "decoder", inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_the_decoder_after_its_encoder_starts_from_its_own_input():
    """The stream's first chain is predicted as without the encoder before it: from the scale
    of its input, not from an unknown one (a bound) after the encoder's last node."""
    found = {}
    for encoder in (False, True):
        (f,) = check_source(_sigmoid_decoder(encoder).SerializeToString(), Config(select=("GL101",)),
                            path="model.onnx")
        found[encoder] = (f.data_dict["modules"], f.data_dict["predicted"], "at most" in f.message)
    assert found[True] == found[False]
    assert found[True][0][0] == "body.0" and not found[True][2]


def test_an_input_summed_with_another_keeps_the_input_that_feeds_most_layers():
    """`emb(ids) + pos` of two inputs has no skip operand: the count of layers chooses, as before."""
    from onnx import TensorProto, helper

    deep = gen.mlp(depth=6, width=8, act="Tanh", std="torch")
    g = deep.graph
    g.input.append(helper.make_tensor_value_info("pos", TensorProto.FLOAT, ["N", 8]))
    last = g.node[-1]  # Identity -> y
    g.node.insert(len(g.node) - 1, helper.make_node("Add", ["pos", last.input[0]], ["/sum"], name="/Add"))
    last.input[0] = "/sum"
    (net,) = extract_onnx_model(deep).networks
    assert sum(isinstance(n, Param) for n in net.nodes) == 6


def test_two_towers_joined_at_the_output_are_read_as_before():
    """A Siamese pair `f(a) + g(b)` has no residual stream: one tower is the path, as before, and
    the other is not read beside it (each tower's findings would come twice)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    for tower in ("a", "b"):
        prev = tower
        for i in range(20):
            w = f"{tower}.{i}.weight"
            inits.append(numpy_helper.from_array(rng.normal(0, 1.0, (16, 16)).astype(np.float32), w))
            nodes.append(helper.make_node("MatMul", [prev, w], [f"/{tower}.{i}/mm"], name=f"/{tower}.{i}/MatMul"))
            nodes.append(helper.make_node("Sigmoid", [f"/{tower}.{i}/mm"], [f"/{tower}.{i}/s"],
                                          name=f"/{tower}.{i}/Sigmoid"))
            prev = f"/{tower}.{i}/s"
    nodes.append(helper.make_node("Add", ["/a.19/s", "/b.19/s"], ["y"], name="/Add"))
    graph = helper.make_graph(nodes, "towers", [helper.make_tensor_value_info(t, TensorProto.FLOAT, ["N", 16])
                                                for t in ("a", "b")],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    found = check_source(model.SerializeToString(), Config(select=("GL101",)), path="model.onnx")
    assert [f.data_dict["modules"][0] for f in found] == ["a.0"]


def extract_onnx_model(model):
    return extract_onnx(Path("model.onnx"), "model.onnx", data=model.SerializeToString())


def test_rnn_with_relu_is_gl107_unless_identity_initialised():
    assert codes(gen.rnn(act="Relu"), "GL107") == ["GL107"]
    assert codes(gen.rnn(act="Tanh"), "GL107") == []
    assert codes(gen.rnn(act="Relu", identity=True), "GL107") == []


def test_resnet_like_is_quiet():
    assert codes(gen.resnet_like(blocks=4)) == []


SOURCE = """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, width={width}, depth={depth}):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        for layer in self.layers:
            nn.init.normal_(layer.weight, std={std})

    def forward(self, x):
        for layer in self.layers:
            x = torch.{act}(layer(x))
        return x
"""


def _source_gain(tmp_path: Path, **kw) -> float:
    path = tmp_path / "net.py"
    path.write_text(SOURCE.format(**kw))
    (net,) = extract_python(path, "net.py").networks
    (chain,) = analyse(net).chains
    return chain.gain


def _onnx_gain(path: Path) -> float:
    (net,) = extract_onnx(path, path.name).networks
    (chain,) = analyse(net).chains
    return chain.gain


@pytest.mark.parametrize("act,std", [("tanh", 0.1), ("sigmoid", 0.3), ("relu", 0.08)])
def test_onnx_chain_and_source_chain_predict_the_same_gain(tmp_path: Path, act: str, std: float):
    """The weights of the ONNX model are drawn from the distribution the source names."""
    width, depth = 256, 12
    model = gen.mlp(depth=depth, width=width, act=act.capitalize(), std=std, seed=7)
    onnx_gain = _onnx_gain(gen.save(model, tmp_path / "net.onnx"))
    source_gain = _source_gain(tmp_path, width=width, depth=depth, std=std, act=act)
    assert onnx_gain == pytest.approx(source_gain, rel=0.10)


@pytest.mark.torch
@pytest.mark.parametrize("act,std", [("tanh", 0.1), ("sigmoid", 0.3)])
def test_exported_source_model_predicts_the_same_gain_as_its_source(tmp_path: Path, act: str, std: float):
    """The same weights: the source is executed in torch, exported, and both are analysed."""
    import torch

    width, depth = 256, 12
    text = SOURCE.format(width=width, depth=depth, std=std, act=act)
    namespace: dict = {}
    exec(compile(text, "net.py", "exec"), namespace)  # the test's own source, not a checked file
    torch.manual_seed(0)
    model = namespace["Net"]().eval()
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(4, width),), str(path), dynamo=False)
    weights = [p.detach().numpy() for n, p in model.named_parameters() if n.endswith("weight")]
    stats = {w.name: w for w in extract_onnx(path, "net.onnx").graph.weights}
    measured = [s.std for s in stats.values() if s.role == "linear"]
    assert np.allclose(sorted(measured), sorted(float(w.std()) for w in weights), rtol=1e-5)
    assert _onnx_gain(path) == pytest.approx(_source_gain(tmp_path, width=width, depth=depth, std=std, act=act),
                                             rel=0.10)


@pytest.mark.torch
def test_torch_exports_are_quiet_for_gl101_and_gl102(tmp_path: Path):
    import torch
    import torch.nn as nn

    from tests.test_onnx_torch import _export, mobilenet_v3_like, resnet18_like

    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64), 3, enable_nested_tensor=False)
    cases = {
        "resnet.onnx": (resnet18_like(), (torch.randn(1, 3, 64, 64),)),
        "mobilenet.onnx": (mobilenet_v3_like(), (torch.randn(1, 3, 64, 64),)),
        "encoder.onnx": (encoder, (torch.randn(7, 2, 32),)),
    }
    for name, (model, args) in cases.items():
        path = _export(model, args, tmp_path / name)
        found = check_source(path.read_bytes(), Config(select=("GL101", "GL102")), path=name)
        assert found == [], (name, [f.message for f in found])


def test_saturation_in_a_graph_is_one_finding_with_the_count():
    """Every ONNX layer is its own node: 30 saturated layers are one GL104, not thirty."""
    found = check_source(gen.mlp(depth=30, width=512, std=1.0).SerializeToString(), Config(select=("GL104",)),
                         path="model.onnx")
    (f,) = found
    assert "and 29 more layers" in f.message
    assert len(f.data_dict["modules"]) == 30


def test_a_recurrence_whose_weights_were_not_read_is_not_judged_default_initialised(tmp_path):
    # GL003 refused the external data (a symbolic link): weight_hh's values are unknown, so the
    # default draw cannot be told from a chosen init (an identity RNN measured as one was flagged)
    import onnx

    from gradlint.api import check_paths

    model = gen.rnn(act="Relu", identity=True)
    real = tmp_path / "elsewhere"
    real.mkdir()
    from onnx.external_data_helper import convert_model_to_external_data

    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="m.onnx.data", size_threshold=0)
    onnx.save_model(model, str(real / "m.onnx"))
    (tmp_path / "m.onnx").write_bytes((real / "m.onnx").read_bytes())
    (tmp_path / "m.onnx.data").symlink_to(real / "m.onnx.data")
    config = Config(root=str(tmp_path), select=("GL003", "GL107"))
    found = [f.code for r in check_paths([tmp_path / "m.onnx"], config, use_cache=False, jobs=1).files for f in r.findings]
    assert found == ["GL003"]
    # read, the identity init is seen; a default draw is still GL107
    assert [f.code for r in check_paths([real / "m.onnx"], config, use_cache=False, jobs=1).files
            for f in r.findings] == []
    assert codes(gen.rnn(act="Relu"), "GL107") == ["GL107"]


def _conditioned_sigmoid_mlp(depth: int = 12):
    """`h = sigmoid(h @ W_i + e)` for i < depth on input `x`, with `e = c @ W_c` of a second
    input `c` added in every layer (a conditioning vector, as a time or class embedding)."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    bound = 1 / np.sqrt(64)  # nn.Linear's default init
    inits = [numpy_helper.from_array(rng.uniform(-bound, bound, (8, 64)).astype(np.float32), "cond.weight")]
    nodes = [helper.make_node("MatMul", ["c", "cond.weight"], ["/e"], name="/cond/MatMul")]
    h = "x"
    for i in range(depth):
        w = f"body.{i}.weight"
        inits.append(numpy_helper.from_array(rng.uniform(-bound, bound, (64, 64)).astype(np.float32), w))
        nodes += [helper.make_node("MatMul", [h, w], [f"/body.{i}/mm"], name=f"/body.{i}/MatMul"),
                  helper.make_node("Add", [f"/body.{i}/mm", "/e"], [f"/body.{i}/pre"], name=f"/body.{i}/Add"),
                  helper.make_node("Sigmoid", [f"/body.{i}/pre"], [f"/body.{i}/s"], name=f"/body.{i}/Sigmoid")]
        h = f"/body.{i}/s"
    return _conditioned_model("conditioned", nodes, inits, h, 64)


def _conditioned_model(name: str, nodes: list, inits: list, out: str, width: int):
    """A model of `nodes` with inputs x (N, width) and the conditioning c (N, 8), its output `out`."""
    from onnx import TensorProto, helper

    nodes = [*nodes, helper.make_node("Identity", [out], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width]),
              helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N", 8])]
    graph = helper.make_graph(nodes, name, inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_a_conditioning_vector_added_in_every_layer_is_no_residual_stream():
    """`sigmoid(W h + e)` reads e on its way through the earlier layers, as an attention block
    reads its skip: e must not be taken for the skip of a stream that leads to the conditioning
    input `c` (the path would be c's one layer and a fan-out into all twelve)."""
    (net,) = extract_onnx_model(_conditioned_sigmoid_mlp()).networks
    body = [n.name for n in net.nodes if isinstance(n, Param) and n.name.startswith("body.")]
    assert len(body) == 12


def test_a_stream_that_also_reads_a_conditioning_vector_is_still_the_stream():
    """`h = h + f(LayerNorm(h + e))` with e from a second input: h is added twice (to e and to
    f's output) but skipped over once; the stream is x's, with c's layer read beside it."""
    from onnx import helper, numpy_helper

    from gradlint.model.ir import INPUT_WHAT, Passthrough, Residual

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.1, (8, 16)).astype(np.float32), "cond.weight"),
             numpy_helper.from_array(rng.normal(0, 0.1, (16, 16)).astype(np.float32), "inp.weight"),
             numpy_helper.from_array(np.ones(16, np.float32), "ln.g")]
    nodes = [helper.make_node("MatMul", ["c", "cond.weight"], ["/e"], name="/cond/MatMul"),
             helper.make_node("MatMul", ["x", "inp.weight"], ["/h0"], name="/inp/MatMul")]
    h = "/h0"
    for i in range(4):
        for j in (1, 2):
            inits.append(numpy_helper.from_array(rng.normal(0, 0.1, (16, 16)).astype(np.float32), f"b{i}.{j}.weight"))
        p = f"/blocks.{i}"
        nodes += [helper.make_node("Add", [h, "/e"], [f"{p}/t"], name=f"{p}/Add"),
                  helper.make_node("LayerNormalization", [f"{p}/t", "ln.g"], [f"{p}/n"], name=f"{p}/norm/LayerNormalization"),
                  helper.make_node("MatMul", [f"{p}/n", f"b{i}.1.weight"], [f"{p}/m1"], name=f"{p}/fc1/MatMul"),
                  helper.make_node("Relu", [f"{p}/m1"], [f"{p}/r"], name=f"{p}/Relu"),
                  helper.make_node("MatMul", [f"{p}/r", f"b{i}.2.weight"], [f"{p}/m2"], name=f"{p}/fc2/MatMul"),
                  helper.make_node("Add", [h, f"{p}/m2"], [f"{p}/out"], name=f"{p}/Add_1")]
        h = f"{p}/out"
    (net,) = extract_onnx_model(_conditioned_model("cond_stream", nodes, inits, h, 16)).networks
    marks = [n.name for n in net.nodes if isinstance(n, Passthrough) and n.what == INPUT_WHAT]
    assert marks == ["x"]
    assert sum(isinstance(n, Residual) for n in net.nodes) == 4


def test_a_conditioning_vector_added_before_each_activation_is_a_bias_of_the_chain():
    """`sigmoid(W h + e)` with e from another input passes h's gradient through the add as a
    bias does: the twelve layers are one chain (torch measures a first/last gradient ratio of
    about 1e-10 for this model with nn.Linear's default init; predicted 4e-10)."""
    (f,) = check_source(_conditioned_sigmoid_mlp().SerializeToString(), Config(select=("GL101",)),
                        path="model.onnx")
    assert list(f.data_dict["modules"]) == [f"body.{i}" for i in range(12)]
