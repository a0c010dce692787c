"""The coverage report of an ONNX graph: nodes on the data path, how many were understood, and the
top reasons for the rest, as plain data."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from gradlint.onnx.coverage import GraphCoverage, onnx_coverage
from gradlint.onnx.load import ModelError

W = 8


def _save(tmp_path, nodes, inits, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, W])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, W])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), *extra_opsets])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _w(name):
    return numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.3, (W, W)).astype(np.float32), name)


def test_counts_understood_and_opaque_nodes(tmp_path):
    nodes = [helper.make_node("Gemm", ["X", "W0"], ["a"], transB=1),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Acme", ["b"], ["c"], domain="acme"),
             helper.make_node("Acme", ["c"], ["d"], domain="acme"),
             helper.make_node("Gemm", ["d", "W1"], ["Y"], transB=1)]
    (cov,) = onnx_coverage(_save(tmp_path, nodes, [_w("W0"), _w("W1")], [helper.make_opsetid("acme", 1)]))
    assert isinstance(cov, GraphCoverage)
    assert (cov.nodes, cov.on_path, cov.understood) == (5, 5, 3)
    assert cov.opaque == (("acme op Acme (not modelled)", 2),)
    assert cov.to_dict()["opaque"] == [["acme op Acme (not modelled)", 2]]


def test_attention_like_fork_is_one_reason(tmp_path):
    nodes = [helper.make_node("Gemm", ["X", "W0"], ["q"], transB=1),
             helper.make_node("Gemm", ["X", "W1"], ["k"], transB=1),
             helper.make_node("Mul", ["q", "k"], ["Y"])]
    (cov,) = onnx_coverage(_save(tmp_path, nodes, [_w("W0"), _w("W1")]))
    assert cov.understood < cov.on_path
    assert cov.opaque[0][0].startswith("inside a fork and join")


def test_loop_bodies_have_their_own_entry(tmp_path):
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Relu", ["v_in"], ["v_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [2, W])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [2, W])])
    trip = numpy_helper.from_array(np.array(3, np.int64), "trip")
    cond = numpy_helper.from_array(np.array(True), "cond")
    nodes = [helper.make_node("Loop", ["trip", "cond", "X"], ["Y"], name="loop", body=body)]
    main, sub = onnx_coverage(_save(tmp_path, nodes, [trip, cond]))
    assert main.nodes == 1 and sub.graph.startswith("loop/body") and sub.nodes == 2 and sub.understood == 0


def test_an_unreadable_file_raises_model_error(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a model at all")
    with pytest.raises(ModelError) as err:
        onnx_coverage(path)
    assert err.value.kind == "unreadable_model"
