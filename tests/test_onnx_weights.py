"""GL501 and GL502 on generated models: exact counts and ratios in the messages, node locations."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from onnx import numpy_helper

from gradlint.api import check_source
from gradlint.config import Config

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("onnx_fixture_gen", ROOT / "fixtures" / "onnx" / "generate.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)  # type: ignore[union-attr]


def _set(model, name: str, array: np.ndarray) -> None:
    for t in model.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(array.astype(np.float32), name))
            return
    raise KeyError(name)


def _findings(model, code: str):
    return check_source(model.SerializeToString(), Config(select=(code,)), path="model.onnx")


def test_gl501_names_the_tensor_and_counts(tmp_path: Path):
    model = gen.mlp(depth=4, width=16, std="torch")
    w = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "body.2.weight")).copy()
    w[0, :3] = np.nan
    w[1, 0] = np.inf
    _set(model, "body.2.weight", w)
    (f,) = _findings(model, "GL501")
    assert f.message == "initializer 'body.2.weight' holds 3 NaN and 1 +Inf among its 256 values"
    assert f.node.name == "/body/body.2/Gemm" and f.node.op_type == "Gemm" and f.node.index == 2
    assert f.data_dict["nan"] == 3 and f.data_dict["posinf"] == 1


def test_gl501_quiet_on_finite_model():
    assert _findings(gen.mlp(depth=4, width=16, std="torch"), "GL501") == []


def test_gl502_finds_the_one_block_off_by_45x():
    model = gen.mlp(depth=12, width=32, std=0.02, act="Relu", seed=4)
    rng = np.random.default_rng(9)
    _set(model, "body.14.weight", rng.normal(0, 0.9, (32, 32)))
    (f,) = _findings(model, "GL502")
    assert f.node.name == "/body/body.14/Gemm"
    assert "'body.14.weight'" in f.message and "layer 'body.14'" in f.message and "larger" in f.message
    assert 30 < f.data_dict["ratio"] < 60
    assert f.data_dict["shape"] == (32, 32) and f.data_dict["role"] == "linear"


def test_gl502_smaller_outlier_and_different_shapes_are_separate_groups():
    model = gen.mlp(depth=6, width=32, std=0.1, act="Relu", seed=5, out=4)
    _set(model, "body.4.weight", np.random.default_rng(1).normal(0, 0.001, (32, 32)))
    # The head has another shape: its own (single-member) group, never compared with the body.
    _set(model, "body.10.weight", np.random.default_rng(2).normal(0, 5.0, (4, 32)))
    found = _findings(model, "GL502")
    assert [f.data_dict["layer"] for f in found] == ["body.4"]
    assert "smaller" in found[0].message


def test_gl502_quiet_on_uniform_model():
    assert _findings(gen.mlp(depth=12, width=32, std="torch"), "GL502") == []


def test_initializers_naming_one_external_region_read_it_once(tmp_path: Path, monkeypatch):
    """A tiny model whose initializers all name one region of one external-data file streamed
    it once per initializer (200 references to 400 MB: 71 s). Each region is read once; every
    tensor still gets its statistics (here: the NaNs, for each)."""
    import onnx
    from onnx import TensorProto, helper

    from gradlint.api import check_paths
    from gradlint.onnx import load

    values = np.ones(64, dtype=np.float32)
    values[:3] = np.nan
    (tmp_path / "w.bin").write_bytes(values.tobytes())
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    inits = [numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")]
    for i in range(30):
        t = TensorProto(name=f"amp{i}", data_type=TensorProto.FLOAT, dims=[64])
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", "w.bin"), ("offset", "0"), ("length", str(values.nbytes))):
            e = t.external_data.add()
            e.key, e.value = k, v
        inits.append(t)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    reads = []
    real = load._external_chunks
    monkeypatch.setattr(load, "_external_chunks", lambda ref, *a: (reads.append(ref), real(ref, *a))[1])
    result = check_paths([str(tmp_path / "m.onnx")], Config(root=str(tmp_path), select=("GL501",)), use_cache=False, jobs=1)
    assert len(reads) == 1
    assert len(result.findings) == 30 and all("3 NaN" in f.message for f in result.findings)


def test_gl502_blames_the_corrupted_layers_not_the_healthy_one_between_them():
    """Three convolutions of one shape, the first and the last corrupted (100x): the healthy one
    between them has two neighbours that agree against it, theirs disagree. The model's other
    convolutions (std × √fan-in) say which are off."""
    model = gen.resnet_like(blocks=3, ch=8, seed=3)
    group = [t.name for t in model.graph.initializer if tuple(t.dims) == (16, 16, 3, 3)]
    assert group == ["layer.1.conv2.weight", "layer.2.conv1.weight", "layer.2.conv2.weight"]
    rng = np.random.default_rng(7)
    for name in (group[0], group[2]):
        _set(model, name, rng.uniform(-1, 1, (16, 16, 3, 3)) / np.sqrt(16 * 9) * 100)
    found = _findings(model, "GL502")
    assert sorted(f.data_dict["layer"] for f in found) == ["layer.1.conv2", "layer.2.conv2"]
    for f in found:
        assert "larger" in f.message and "'layer.2.conv1'" in f.message and 80 < f.data_dict["ratio"] < 125
    # The other way round (one corrupted between two healthy ones) is still the one blamed.
    model = gen.resnet_like(blocks=3, ch=8, seed=3)
    _set(model, group[1], rng.uniform(-1, 1, (16, 16, 3, 3)) / np.sqrt(16 * 9) * 100)
    (f,) = _findings(model, "GL502")
    assert f.data_dict["layer"] == "layer.2.conv1" and "its 2 neighbours" in f.message
