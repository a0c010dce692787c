"""ONNX graph hazards (GL302, GL306-GL309): every `# expect:` line of the ONNX text fixtures is
matched, nothing else is, and nodes named ok_* (the must-not-flag cases) stay quiet."""

from __future__ import annotations

import re
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from gradlint.onnx import extract_onnx
from gradlint.registry import load_rules

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "onnx"
CASES = sorted(p for p in FIXTURES.glob("gl3*.onnx.txt"))
_EXPECT = re.compile(r"^#\s*expect:\s*(GL\d{3})\s+node=(\S+)", re.M)


def _rule(hazard):
    """The rule that reports a hazard: the ONNX-reading rule whose kinds hold the hazard's kind."""
    (rule,) = [r for r in load_rules().values() if "onnx" in r.inputs and hazard.kind in getattr(r, "kinds", ())]
    return rule


def _code(hazard) -> str:
    return _rule(hazard).code


def _hazards(path: Path):
    facts = extract_onnx(path, path.name)
    assert not facts.input_errors, facts.input_errors
    return facts.graph.hazards


def test_there_are_fixtures_for_every_graph_code():
    codes = {m.group(1) for p in CASES for m in _EXPECT.finditer(p.read_text())}
    assert codes == {"GL302", "GL306", "GL307", "GL308", "GL309"}


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_fixture_expectations(path: Path):
    expected = sorted((m.group(1), m.group(2)) for m in _EXPECT.finditer(path.read_text()))
    # (the rule decides which of its kind's hazards it reports: GL307 not a learned layer's norm)
    found = sorted((_code(h), h.node.name) for h in _hazards(path) if _rule(h)().graph_selects(h))
    assert found == expected
    assert not [n for _, n in found if n.startswith("ok_")]


def test_hazard_record_carries_node_reason_and_data():
    hz = [h for h in _hazards(FIXTURES / "gl308_acos_without_margin.onnx.txt") if h.node.name == "acos_clip_unit"][0]
    assert hz.node.op_type == "Acos" and hz.node.index == 2
    message = _rule(hz)().graph_message(hz)
    assert "[-1, 1]" in message and "infinite" in message
    assert hz.data["lower"] == -1.0 and hz.data["upper"] == 1.0
    assert hz.span is None


def test_hazards_inside_if_and_loop_bodies_are_found(tmp_path: Path):
    then = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["p"]), helper.make_node("Log", ["p"], ["lp"], name="log_in_then")],
        "then_g", [], [helper.make_tensor_value_info("lp", TensorProto.FLOAT, ["N", 4])])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["o"])], "else_g", [],
                              [helper.make_tensor_value_info("o", TensorProto.FLOAT, ["N", 4])])
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("ReduceSumSquare", ["x"], ["ss"], keepdims=0),
         helper.make_node("Sqrt", ["ss"], ["n"], name="sqrt_in_loop")],
        "body_g",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("n", TensorProto.FLOAT, ["N"])])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then, else_branch=other),
         helper.make_node("Loop", ["trip", "c"], ["scan_n"], name="loop", body=body)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("trip", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("scan_n", TensorProto.FLOAT, [None, "N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "sub.onnx"
    path.write_bytes(model.SerializeToString())
    found = {(_code(h), h.node.name) for h in _hazards(path)}
    assert found == {("GL302", "branch/then_branch/log_in_then"), ("GL306", "loop/body/sqrt_in_loop")}


def test_clip_attributes_before_opset_11(tmp_path: Path):
    text = """<ir_version: 5, opset_import: ["" : 10]>
g (float[N] x) => (float[N] a, float[N] b) {
  c1 = Clip <min = -1.0, max = 1.0> (x)
  [unit] a = Acos(c1)
  c2 = Clip <min = -0.99, max = 0.99> (x)
  [margin] b = Acos(c2)
}
"""
    path = tmp_path / "old.onnx.txt"
    path.write_text(text)
    assert [(_code(h), h.node.name) for h in _hazards(path)] == [("GL308", "unit")]


def test_shape_computations_are_not_hazards(tmp_path: Path):
    # Exporters compute attention scales as Sqrt(Cast(Shape(x)[-1])): no gradient flows there.
    text = """<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) <int64[1] last = {-1}> {
  s = Shape(x)
  d = Gather(s, last)
  f = Cast <to = 1> (d)
  sq = Mul(f, f)
  r = Sqrt(sq)
  y = Div(x, r)
}
"""
    path = tmp_path / "scale.onnx.txt"
    path.write_text(text)
    assert _hazards(path) == ()


def test_text_fixture_parses_like_onnx_parser():
    model = onnx.parser.parse_model((FIXTURES / "gl302_log_of_probability.onnx.txt").read_text())
    onnx.checker.check_model(model)


@pytest.mark.parametrize("ops,flagged", [
    # F.logsigmoid as the dynamo exporter writes it: Sigmoid then Log, both of aten.log_sigmoid
    (("aten.log_sigmoid.default", "aten.log_sigmoid.default"), False),
    # torch.log(torch.sigmoid(x)) written so: two ops
    (("aten.sigmoid.default", "aten.log.default"), True),
    # no metadata (the TorchScript exporter writes logsigmoid the same way): the graph is what it is
    ((None, None), True),
])
def test_a_log_of_a_sigmoid_from_one_stable_torch_op_is_not_gl302(tmp_path: Path, ops, flagged):
    nodes = [helper.make_node("Sigmoid", ["x"], ["p"], name="sig"), helper.make_node("Log", ["p"], ["y"], name="log")]
    for node, op in zip(nodes, ops):
        if op is not None:
            node.metadata_props.add(key="namespace", value=f": __main__.M/{op.split('.')[1]}: {op}")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    path = tmp_path / "m.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    assert [h.kind for h in _hazards(path)] == (["log_of_probability"] if flagged else [])
