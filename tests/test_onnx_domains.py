"""Op domains: onnxruntime's com.microsoft fused ops read for what they compute, an op of an
unknown domain never matched by its type; unsorted graphs sorted, a real cycle refused; one
GL003 per refused location."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gradlint.model.ir import Activation, Norm, Opaque, Param, Residual
from gradlint.onnx import extract_onnx

W = 16


def _weight(name: str, rng) -> onnx.TensorProto:
    return numpy_helper.from_array(rng.normal(0, 0.25, (W, W)).astype(np.float32), name)


def model(nodes, inits, *, domains=(("com.microsoft", 1),), outputs=("Y",)) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4, W])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [4, W]) for o in outputs], inits)
    opsets = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, v) for d, v in domains]
    return helper.make_model(graph, opset_imports=opsets)


def lower(m: onnx.ModelProto, tmp_path: Path, name: str = "m.onnx"):
    path = tmp_path / name
    path.write_bytes(m.SerializeToString())
    return extract_onnx(path, name)


def gemm_then(op: str, domain: str = "", **attrs):
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Gemm", ["X", "W0"], ["h"], name="/fc0/Gemm", transB=1),
             helper.make_node(op, ["h"], ["a"], name="/act/X", domain=domain, **attrs),
             helper.make_node("Gemm", ["a", "W1"], ["Y"], name="/fc1/Gemm", transB=1)]
    return model(nodes, [_weight("W0", rng), _weight("W1", rng)])


@pytest.mark.parametrize("alpha,fn", [(1.0, "silu"), (1.702, "gelu")])
def test_quick_gelu_is_read_by_its_alpha(tmp_path, alpha, fn):
    (net,) = lower(gemm_then("QuickGelu", "com.microsoft", alpha=alpha), tmp_path).networks
    assert [(type(n).__name__, getattr(n, "fn", None)) for n in net.nodes][1] == ("Activation", fn)


def test_quick_gelu_with_another_alpha_is_opaque(tmp_path):
    (net,) = lower(gemm_then("QuickGelu", "com.microsoft", alpha=3.0), tmp_path).networks
    assert isinstance(net.nodes[1], Opaque)


def test_an_op_of_an_unknown_domain_is_never_matched_by_type(tmp_path):
    m = gemm_then("Relu", "my.company")
    m.opset_import.append(helper.make_opsetid("my.company", 1))
    (net,) = lower(m, tmp_path).networks
    assert isinstance(net.nodes[1], Opaque) and "my.company" in net.nodes[1].what
    assert not any(isinstance(n, Activation) for n in net.nodes)


def test_fused_gemm_is_a_layer_and_its_activation(tmp_path):
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("FusedGemm", ["X", "W0"], ["h"], name="fused /fc0/Gemm", domain="com.microsoft",
                              transB=1, activation="LeakyRelu", activation_alpha=0.2),
             helper.make_node("FusedGemm", ["h", "W1"], ["Y"], name="fused /fc1/Gemm", domain="com.microsoft",
                              transB=1, activation="Tanh")]
    (net,) = lower(model(nodes, [_weight("W0", rng), _weight("W1", rng)]), tmp_path).networks
    kinds = [(type(n).__name__, getattr(n, "fn", None), getattr(n, "param", None)) for n in net.nodes]
    assert kinds == [("Param", None, None), ("Activation", "leaky_relu", 0.2),
                     ("Param", None, None), ("Activation", "tanh", None)]
    assert net.nodes[0].fan_in == W and net.nodes[0].init.scheme == "measured"


def test_skip_layer_norm_is_residual_then_norm_unless_the_sum_goes_on(tmp_path):
    rng = np.random.default_rng(0)
    gamma = numpy_helper.from_array(np.ones(W, np.float32), "gamma")

    def block(x: str, k: int, pre_ln: bool, sum_in: str | None):
        # Post-LN: y = LN(x + fc(x)). Pre-LN (as onnxruntime writes it): the sum (output 3) is the
        # residual stream, the norm (output 0) feeds the next branch.
        outs = [f"n{k}", "", "", f"s{k}"] if pre_ln else [f"n{k}"]
        return [helper.make_node("Gemm", [x, f"W{k}"], [f"f{k}"], name=f"/b{k}/fc/Gemm", transB=1),
                helper.make_node("SkipLayerNormalization", [sum_in or x, f"f{k}", "gamma"], outs,
                                 name=f"SkipLayerNormalization_{k}", domain="com.microsoft")]

    for pre_ln in (False, True):
        nodes = []
        x, s = "X", None
        for k in range(3):
            nodes += block(x, k, pre_ln, s)
            x, s = f"n{k}", (f"s{k}" if pre_ln else None)
        nodes.append(helper.make_node("Identity", [x], ["Y"]))
        (net,) = lower(model(nodes, [_weight(f"W{k}", rng) for k in range(3)] + [gamma]), tmp_path).networks
        post = sum(isinstance(a, Residual) and isinstance(b, Norm) for a, b in zip(net.nodes, net.nodes[1:]))
        # Pre-LN: only the stack's final norm follows a residual; each body starts with its norm.
        assert post == (1 if pre_ln else 3), [type(n).__name__ for n in net.nodes]
        bodies = [n.body for n in net.nodes if isinstance(n, Residual)]
        assert len(bodies) == 3
        if pre_ln:
            assert all(isinstance(b[0], Norm) for b in bodies[1:])


def test_unsorted_graph_is_sorted_and_checked(tmp_path):
    m = gemm_then("Sigmoid")
    nodes = list(m.graph.node)
    m.graph.ClearField("node")
    m.graph.node.extend(reversed(nodes))
    facts = lower(m, tmp_path)
    assert facts.input_errors == ()
    (net,) = facts.networks
    assert [type(n).__name__ for n in net.nodes] == ["Param", "Activation", "Param"]


def test_a_real_cycle_is_gl002(tmp_path):
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Add", ["X", "b"], ["a"], name="first"),
             helper.make_node("Relu", ["a"], ["b"], name="second"),
             helper.make_node("Gemm", ["b", "W0"], ["Y"], transB=1)]
    facts = lower(model(nodes, [_weight("W0", rng)]), tmp_path)
    (err,) = facts.input_errors
    assert err.kind == "unreadable_model" and "cycle" in err.message


def test_one_gl003_per_refused_location(tmp_path):
    rng = np.random.default_rng(0)
    m = gemm_then("Relu")
    for t in m.graph.initializer:
        t.data_location = TensorProto.EXTERNAL
        t.ClearField("raw_data")
        t.ClearField("float_data")
        for k, v in (("location", "../elsewhere/weights.bin"), ("offset", "0")):
            e = t.external_data.add()
            e.key, e.value = k, v
    assert rng is not None
    facts = lower(m, tmp_path)
    gl003 = [e for e in facts.input_errors if e.kind == "unsafe_external_data"]
    assert len(gl003) == 1 and "2 tensors" in gl003[0].message


def test_nchwc_conv_is_refused_with_the_reason(tmp_path):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.1, (16, 3, 3, 3)).astype(np.float32), "reorder")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["X", "reorder"], ["c"], name="c0", domain="com.microsoft.nchwc", activation="Relu"),
         helper.make_node("ReorderOutput", ["c"], ["Y"], domain="com.microsoft.nchwc", channels=8)],
        "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 8, 8, 8])], [w])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                helper.make_opsetid("com.microsoft.nchwc", 1)])
    (net,) = lower(m, tmp_path).networks
    assert isinstance(net.nodes[0], Opaque) and "extended" in net.nodes[0].what
    assert not any(isinstance(n, (Param, Activation)) for n in net.nodes)


def test_a_custom_domain_log_is_not_onnx_log(tmp_path):
    rng = np.random.default_rng(0)
    for domain, expect in (("", ["log_of_probability"]), ("my.company", [])):
        nodes = [helper.make_node("Gemm", ["X", "W0"], ["h"], transB=1),
                 helper.make_node("Softmax", ["h"], ["p"]),
                 helper.make_node("Log", ["p"], ["Y"], domain=domain)]
        m = model(nodes, [_weight("W0", rng)], domains=(("my.company", 1),))
        facts = lower(m, tmp_path, f"log{bool(domain)}.onnx")
        assert [h.kind for h in facts.graph.hazards] == expect


def test_saturation_behind_maybe_folded_convs_is_info(tmp_path):
    """Anonymous conv weights (no exporter names or metadata): a BatchNorm may have been folded in,
    which in training would sit before the Tanh."""
    from gradlint.api import check_paths
    from gradlint.config import Config

    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "X"
    for i in range(3):
        inits.append(numpy_helper.from_array(rng.normal(0, 1.0, (4, 4, 3, 3)).astype(np.float32), f"w{i}"))
        nodes += [helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Tanh", [f"c{i}"], [f"t{i}"])]
        prev = f"t{i}"
    nodes.append(helper.make_node("Identity", [prev], ["Y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    path = tmp_path / "convs.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    found = check_paths([path], Config(select=("GL104",), root=str(tmp_path)), use_cache=False, jobs=1).findings
    (f,) = found
    assert f.severity.name == "INFO" and "BatchNorm folded" in f.message
