"""Bounded runs of the robustness fuzzers (tests/robust_fuzz.py): hostile generated modules,
damaged fixtures and damaged ONNX models never cost gradlint an internal error, a hang, or the
report of the good file beside them. `bench/fuzz.sh source|onnx COUNT` runs long ones."""

from __future__ import annotations

import random

import pytest

from tests import robust_fuzz


@pytest.mark.parametrize("kind,count", [("source", 12), ("onnx", 12)])
def test_hostile_inputs_never_cost_the_run(kind, count):
    failures = []
    for i in range(count):
        v = robust_fuzz.trial(kind, random.Random(f"suite-{kind}-{i}"), budget_s=20.0)
        if not v.ok:
            failures.append((i, v.why))
    assert not failures, failures


def test_the_fuzzer_can_fail():
    # a trial whose good file lost its finding is a failure: the check is not vacuous
    rng = random.Random(0)
    files = robust_fuzz.sample("source", rng)
    assert "torch.log(torch.softmax" in files["good.py"]
    assert robust_fuzz.trial("source", random.Random(1)).files.keys() == {"good.py", "bad.py"}


def test_a_node_name_that_is_not_utf8_is_shown_not_a_crash(tmp_path):
    # found by the ONNX fuzzer: protobuf returns bytes for a damaged string field
    import onnx
    from onnx import helper

    from gradlint.api import check_paths
    from gradlint.config import Config

    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    data = helper.make_model(graph).SerializeToString().replace(b"relu", b"r\xffl\xfe")
    (tmp_path / "m.onnx").write_bytes(data)
    result = check_paths([tmp_path], Config(root=str(tmp_path)), use_cache=False, jobs=1)
    assert not result.internal_errors, [r.internal_error for r in result.internal_errors]
    (finding,) = result.findings
    assert finding.code == "GL002" and "not valid UTF-8" in finding.message
