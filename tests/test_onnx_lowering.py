"""Lowering ONNX graphs to the model IR: layers, fans, measured init, activations, norms,
residual blocks, recurrences, and module paths recovered from exporter names."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from onnx import helper, numpy_helper

from gradlint.model.ir import Activation, Norm, Param, Passthrough, Recurrent, Residual, walk
from gradlint.onnx import extract_onnx
from gradlint.onnx.lower import module_path, torch_fans

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "onnx"
_spec = importlib.util.spec_from_file_location("onnx_fixture_gen", FIXTURES / "generate.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)  # type: ignore[union-attr]


def lower(tmp_path: Path, model, name: str = "m.onnx"):
    path = gen.save(model, tmp_path / name)
    facts = extract_onnx(path, name)
    assert facts.input_errors == (), facts.input_errors
    (net,) = facts.networks
    return net


def kinds(nodes) -> list[str]:
    return [type(n).__name__ for n in nodes]


@pytest.mark.parametrize("gemm", [True, False], ids=["gemm-transB", "matmul-bias"])
def test_deep_sigmoid_mlp_with_std_one(tmp_path: Path, gemm: bool):
    net = lower(tmp_path, gen.mlp(depth=30, width=64, std=1.0, gemm=gemm))
    assert kinds(net.nodes) == ["Param", "Activation"] * 30
    params = [n for n in net.nodes if isinstance(n, Param)]
    assert all(p.op == "linear" and p.fan_in == 64 and p.fan_out == 64 for p in params)
    assert all(p.init.scheme == "measured" for p in params)
    variances = [p.init.get("variance") for p in params]
    assert np.allclose(variances, 1.0, atol=0.05)
    assert {n.fn for n in net.nodes if isinstance(n, Activation)} == {"sigmoid"}
    assert [p.name for p in params[:2]] == ["body.0", "body.2"]
    assert params[0].origin.op_type == ("Gemm" if gemm else "MatMul")
    assert params[0].origin.name == ("/body/body.0/Gemm" if gemm else "/body/body.0/MatMul")
    assert net.params == tuple(params) and net.name == "main_graph" and net.path == "m.onnx"


def test_gemm_transposes_give_torch_fans(tmp_path: Path):
    w = np.random.default_rng(0).normal(0, 0.5, (3, 5)).astype(np.float32)  # [in=3, out=5]
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], name="g0", alpha=2.0),
             helper.make_node("Gemm", ["h", "Wt"], ["y"], name="g1", transB=1)]
    wt = np.ones((7, 5), np.float32)  # transB: [out=7, in=5], as torch's nn.Linear(5, 7) stores it
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(wt, "Wt")]
    net = lower(tmp_path, gen._model(nodes, inits, ["N", 3], ["N", 7]))
    p0, p1 = net.nodes
    assert (p0.fan_in, p0.fan_out) == (3, 5)
    # alpha scales the weight: variance x alpha^2, measured exactly
    assert p0.init.get("variance") == pytest.approx(4 * float(w.astype(np.float64).var()))
    assert (p1.fan_in, p1.fan_out) == (5, 7)


def test_conv_fans_follow_torch():
    assert torch_fans((16, 8, 3, 3)) == (72, 144)
    assert torch_fans((8, 4, 5)) == (20, 40)
    assert torch_fans((4, 4)) == (4, 4)
    assert torch_fans((7,)) is None


def test_resnet_like_blocks_are_residuals_with_bn(tmp_path: Path):
    net = lower(tmp_path, gen.resnet_like(blocks=4))
    assert kinds(net.nodes[:3]) == ["Param", "Norm", "Activation"]
    assert net.nodes[0].op == "conv2d" and (net.nodes[0].fan_in, net.nodes[0].fan_out) == (27, 72)
    residuals = [n for n in net.nodes if isinstance(n, Residual)]
    assert len(residuals) == 4
    # The projection shortcut (1x1 conv + BN) is the skip, the 3x3 path the body.
    for r in residuals:
        assert kinds(r.body) == ["Param", "Norm", "Activation", "Param", "Norm"]
    assert residuals[1].body[0].name == "layer.1.conv1" and residuals[1].name == "layer.1"
    assert isinstance(net.nodes[-1], Passthrough) and net.nodes[-1].what == "GlobalAveragePool"


def test_post_ln_stack_is_residual_then_layernorm(tmp_path: Path):
    net = lower(tmp_path, gen.post_ln_stack(depth=14))
    pairs = sum(1 for a, b in zip(net.nodes, net.nodes[1:])
                if isinstance(a, Residual) and isinstance(b, Norm) and b.kind == "layer")
    assert pairs == 14
    assert kinds(net.nodes[0].body) == ["Param", "Activation", "Param"]


def test_pre_ln_stack_has_norm_first_in_each_body(tmp_path: Path):
    net = lower(tmp_path, gen.post_ln_stack(depth=14, pre_ln=True))
    assert kinds(net.nodes) == ["Residual"] * 14
    assert all(isinstance(r.body[0], Norm) for r in net.nodes)


@pytest.mark.parametrize("act,identity,expected", [("Relu", False, "relu"), ("Tanh", False, "tanh"),
                                                   ("Relu", True, "relu")])
def test_rnn_nonlinearity_and_identity_init(tmp_path: Path, act: str, identity: bool, expected: str):
    net = lower(tmp_path, gen.rnn(act=act, identity=identity))
    rec = net.nodes[0]
    assert isinstance(rec, Recurrent) and rec.cell == "rnn" and rec.nonlinearity == expected
    assert rec.hidden == 16 and net.recurrents == (rec,)
    assert (rec.weight_hh_init.scheme if rec.weight_hh_init else None) == ("eye" if identity else None)


def test_decomposed_gelu_layernorm_and_silu_fuse():
    facts = extract_onnx(FIXTURES / "decomposed_ops.onnx.txt", "decomposed_ops.onnx.txt")
    (net,) = facts.networks
    assert kinds(net.nodes) == ["Param", "Activation", "Norm", "Activation", "Param"]
    assert [net.nodes[1].fn, net.nodes[2].kind, net.nodes[3].fn] == ["gelu", "layer", "silu"]
    assert [net.nodes[0].name, net.nodes[2].name, net.nodes[4].name] == ["fc1", "norm", "fc2"]
    assert net.nodes[4].init.get("variance") == pytest.approx(1.0)


def _text(tmp_path: Path, body: str, inits: str = "", inputs: str = "float[N, 4] x", outputs: str = "float[N, 4] y",
          opset: int = 18):
    text = (f'<ir_version: {9 if opset >= 20 else 8}, opset_import: ["" : {opset}]>\ng ({inputs}) => ({outputs}) <{inits}> {{\n{body}\n}}\n')
    if not inits:
        text = text.replace(" <> {", " {")
    path = tmp_path / "t.onnx.txt"
    path.write_text(text)
    facts = extract_onnx(path, "t.onnx.txt")
    assert facts.input_errors == (), facts.input_errors
    return facts.networks[0]


W4 = "float[4, 4] W = {1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0}"


@pytest.mark.parametrize("op,attrs,fn,param", [
    ("Relu", "", "relu", None), ("LeakyRelu", "<alpha = 0.2>", "leaky_relu", 0.2), ("Tanh", "", "tanh", None),
    ("Sigmoid", "", "sigmoid", None), ("Gelu", "", "gelu", None), ("Softplus", "", "softplus", None),
    ("HardSigmoid", "", "hardsigmoid", 0.2), ("Elu", "", "elu", 1.0), ("Selu", "", "selu", None),
    ("HardSwish", "", "hardswish", None), ("Mish", "", "mish", None), ("Softsign", "", "softsign", None),
])
def test_activation_ops(tmp_path: Path, op, attrs, fn, param):
    opset = 20 if op == "Gelu" else 18
    net = _text(tmp_path, f"  h = MatMul(x, W)\n  y = {op} {attrs} (h)", W4, opset=opset)
    assert kinds(net.nodes) == ["Param", "Activation"]
    assert net.nodes[1].fn == fn and net.nodes[1].param == param


@pytest.mark.parametrize("op,kind,extra", [
    ("LayerNormalization", "layer", "s, b"), ("InstanceNormalization", "instance", "s, b"),
    ("BatchNormalization", "batch", "s, b, b, s"),
])
def test_norm_ops(tmp_path: Path, op, kind, extra):
    inits = W4 + ", float[4] s = {1.0, 1.0, 1.0, 1.0}, float[4] b = {0.0, 0.0, 0.0, 0.0}"
    net = _text(tmp_path, f"  h = MatMul(x, W)\n  y = {op}(h, {extra})", inits)
    assert kinds(net.nodes) == ["Param", "Norm"] and net.nodes[1].kind == kind


def test_clip_as_relu6_and_relu(tmp_path: Path):
    inits = W4 + ", float z = {0.0}, float six = {6.0}"
    net = _text(tmp_path, "  h = MatMul(x, W)\n  a = Clip(h, z, six)\n  y = Clip(a, z)", inits)
    assert [n.fn for n in net.nodes[1:]] == ["relu6", "relu"]


def test_unknown_op_on_the_path_is_opaque(tmp_path: Path):
    net = _text(tmp_path, "  h = MatMul(x, W)\n  e = Exp(h)\n  y = MatMul(e, W)", W4)
    assert kinds(net.nodes) == ["Param", "Opaque", "Param"]
    assert net.nodes[1].origin.op_type == "Exp"


def test_scaling_by_a_constant_is_opaque_not_a_guess(tmp_path: Path):
    net = _text(tmp_path, "  h = MatMul(x, W)\n  s = Mul(h, c)\n  y = MatMul(s, W)", W4 + ", float c = {8.0}")
    assert kinds(net.nodes) == ["Param", "Opaque", "Param"]


def test_gating_join_is_opaque(tmp_path: Path):
    # x * sigmoid(W x): a gate, not a residual.
    net = _text(tmp_path, "  h = MatMul(x, W)\n  g = Sigmoid(h)\n  y = Mul(x, g)", W4)
    assert kinds(net.nodes) == ["Opaque"] and "Mul joining 2 branches" in net.nodes[0].what


def test_embedding_gather(tmp_path: Path):
    table = "float[5, 4] E = {" + ", ".join(["0.5", "-0.5"] * 10) + "}"
    net = _text(tmp_path, "  e = Gather(E, ids)\n  y = MatMul(e, W)", table + ", " + W4,
                inputs="int64[N] ids", outputs="float[N, 4] y")
    assert kinds(net.nodes) == ["Param", "Param"]
    emb = net.nodes[0]
    assert emb.op == "embedding" and (emb.fan_in, emb.fan_out) == (4, 5)
    assert emb.init.get("variance") == pytest.approx(0.25)


def test_side_inputs_do_not_hide_the_main_path(tmp_path: Path):
    # A mask input joins late; the main input is the one that feeds the layers, and the add of
    # the mask, which depends on nothing on the path, passes its gradient on as a bias does.
    net = _text(tmp_path, "  h = MatMul(x, W)\n  r = Relu(h)\n  y = Add(r, mask)", W4,
                inputs="float[N, 4] mask, float[N, 4] x")
    assert kinds(net.nodes) == ["Param", "Activation"]
    assert net.nodes[0].name != "mask" and "mask" not in [n.name for n in net.nodes]


def test_scaled_skip_is_recorded(tmp_path: Path):
    body = ("  h = MatMul(x, W)\n  r = Relu(h)\n  f = MatMul(r, W)\n  sx = Mul(x, alpha)\n"
            "  [\"/layers.0/Add\"] y = Add(sx, f)")
    net = _text(tmp_path, body, W4 + ", float alpha = {2.5}")
    (res,) = net.nodes
    assert isinstance(res, Residual) and res.skip_scale == 2.5 and kinds(res.body) == ["Param", "Activation", "Param"]
    assert res.name == "layers.0"


@pytest.mark.parametrize("name,weight,expected", [
    ("/body/body.0/Gemm", None, "body.0"),
    ("/enc.0/body/body.0/Gemm", None, "enc.0.body.0"),
    ("/layers.0/self_attn/MatMul", None, "layers.0.self_attn"),
    ("/net/net.0/net.0.1/Conv", None, "net.0.1"),
    ("/Softmax", None, "/Softmax"),
    ("MatMul_3", None, "MatMul_3"),
    ("/x/MatMul", "encoder.layer.3.weight", "encoder.layer.3"),
    ("/x/MatMul", "onnx::MatMul_12", "x"),
])
def test_module_path(name, weight, expected):
    assert module_path(name, weight) == expected


def test_every_walked_node_has_a_graph_origin(tmp_path: Path):
    net = lower(tmp_path, gen.resnet_like(blocks=2))
    for node in walk(net.nodes):
        assert node.origin is not None and node.origin.op_type


def test_conv_transpose_signal_ratio_and_chain_gain(tmp_path: Path):
    # Five ConvTranspose(64, 64, 4, stride 2) + Relu with kaiming_normal_(relu) weights, as torch
    # draws them (std sqrt(2 / fan_in), fan_in = out_channels * 16): each output sums 64 * 16 / 4
    # terms, so a step keeps a quarter of the squared norm; torch measures 0.0575 for the chain
    # (bench/measure_chains.py), fan_in alone predicted 1.
    from gradlint.model.propagation import analyse

    rng = np.random.default_rng(0)
    nodes, inits, h = [], [], "x"
    for i in range(5):
        w = rng.normal(0, (2 / (64 * 16)) ** 0.5, (64, 64, 4, 4)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"up.{i}.weight"))
        out = "y" if i == 4 else f"r{i}"
        nodes.append(helper.make_node("ConvTranspose", [h, f"up.{i}.weight"], [f"z{i}"], name=f"ct{i}",
                                      strides=[2, 2], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"z{i}"], [out], name=f"relu{i}"))
        h = out
    net = lower(tmp_path, gen._model(nodes, inits, [1, 64, 4, 4], [1, 64, 128, 128]))
    params = [n for n in net.nodes if isinstance(n, Param)]
    assert [p.op for p in params] == ["conv_transpose2d"] * 5
    assert all(p.signal_ratio == pytest.approx(0.25) for p in params)
    (chain,) = analyse(net).chains
    assert chain.gain == pytest.approx(0.0575, rel=0.15)


def test_conv_transpose_groups_and_default_strides(tmp_path: Path):
    w = np.full((8, 2, 3), 0.1, np.float32)  # ConvTranspose1d(8, 4, 3, groups=2): (in, out/groups, k)
    nodes = [helper.make_node("ConvTranspose", ["x", "W"], ["y"], name="ct", group=2)]
    net = lower(tmp_path, gen._model(nodes, [numpy_helper.from_array(w, "W")], [1, 8, 10], [1, 4, 12]))
    (p,) = net.nodes
    # an output sums 8/2 * 3 terms; torch's fan_in is 2 * 3
    assert (p.fan_in, p.fan_out, p.signal_ratio) == (6, 24, pytest.approx(2.0))
