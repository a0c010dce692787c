"""Large inline models (weights as raw_data inside the .onnx) are decoded without their weights'
bytes and streamed like external data: same facts, and no way for a file to forge the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import gradlint.onnx.inline as inline
from gradlint.onnx import extract_onnx

W = 128


@pytest.fixture
def small_thresholds(monkeypatch):
    monkeypatch.setattr(inline, "MIN_FILE", 1 << 16)
    monkeypatch.setattr(inline, "MIN_TENSOR", 1 << 12)


def _mlp(path: Path, std: float = 0.05) -> Path:
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(6):
        w = rng.normal(0, std, (W, W)).astype(np.float32)
        if i == 2:
            w[0, 0] = np.nan  # GL501 must still see it
        inits.append(numpy_helper.from_array(w, f"layers.{i}.weight"))
        inits.append(numpy_helper.from_array(np.zeros(W, np.float32), f"layers.{i}.bias"))  # stays inline: small
        nodes += [helper.make_node("MatMul", [prev, f"layers.{i}.weight"], [f"m{i}"], name=f"/layers.{i}/MatMul"),
                  helper.make_node("Add", [f"m{i}", f"layers.{i}.bias"], [f"a{i}"], name=f"/layers.{i}/Add"),
                  helper.make_node("Sigmoid", [f"a{i}"], [f"s{i}"], name=f"/layers.{i}/Sigmoid")]
        prev = f"s{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", W])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", W])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_large_inline_model_is_streamed_with_the_same_facts(tmp_path, small_thresholds, monkeypatch):
    path = _mlp(tmp_path / "m.onnx")
    skeleton = inline.skeleton(str(path))
    assert skeleton is not None and len(skeleton) < path.stat().st_size / 20
    streamed = extract_onnx(path, "m.onnx")
    monkeypatch.setattr(inline, "MIN_FILE", 1 << 60)
    whole = extract_onnx(path, "m.onnx")
    assert streamed.input_errors == whole.input_errors == ()
    assert streamed.networks == whole.networks
    stats = [[(w.name, w.nan, w.std) for w in facts.graph.weights] for facts in (streamed, whole)]
    assert stats[0] == stats[1]
    assert any(w.nan == 1 for w in streamed.graph.weights)


def test_a_symlinked_model_file_is_still_read(tmp_path, small_thresholds):
    """Hub caches link model files to blobs: the file the user named is read, not refused."""
    real = _mlp(tmp_path / "blob")
    (tmp_path / "snap").mkdir()
    link = tmp_path / "snap" / "model.onnx"
    link.symlink_to(real)
    facts = extract_onnx(link, "model.onnx")
    assert facts.input_errors == () and len(facts.graph.weights) == 12


def test_a_file_cannot_forge_the_inline_reference(tmp_path, small_thresholds):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(W * W, np.nan, np.float32).tobytes())
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").symlink_to(secret)
    model = onnx.load(str(_mlp(tmp_path / "model" / "m.onnx")))
    t = model.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "w.bin"), ("offset", "0"), ("length", str(W * W * 4)),
                 ("gradlint-inline-0000000000000000", "1")):
        e = t.external_data.add()
        e.key, e.value = k, v
    path = tmp_path / "model" / "forged.onnx"
    onnx.save(model, str(path))
    facts = extract_onnx(path, "forged.onnx")
    assert [e.kind for e in facts.input_errors] == ["unsafe_external_data"]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_large_files_are_gl002(tmp_path, small_thresholds, damage):
    path = _mlp(tmp_path / "m.onnx")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x0f" * len(data))
    (err,) = extract_onnx(path, "m.onnx").input_errors
    assert err.kind == "unreadable_model"
